/*
 * fuzz_proto.h - what the RESP and memcached fuzz targets share: a node on
 * a clock that moves 1 us per read, and a loop that drives one connection
 * of an sf_proto as server.c does, collecting its output.
 *
 * Input: byte 0 picks the node's state, byte 1 how the bytes are cut into
 * reads, the rest is what a client sent.
 *   byte 0 bit 0: the lease is lost (no machine id): nothing may be issued
 *          bit 1: the clock is 5 s behind the newest ID for this input
 *          bit 2: MAX_BATCH is 3 instead of 1000
 *   byte 1: read size 1..255 (0: all at once)
 */
#ifndef SF_FUZZ_PROTO_H
#define SF_FUZZ_PROTO_H

#include <string.h>

#include "fuzz.h"
#include "fuzz_node.h"
#include "proto.h"
#include "snowflake.h"

static int fuzz_no_lease(void *ctx, sf_lease_snap *s) {
  (void)ctx;
  s->id = -1;
  s->gen = 1;
  s->floor_ms = 0;
  s->mark_ms = INT64_MAX;
  return -1;
}

static void fuzz_kick(void *ctx) {
  (void)ctx;
}

static const sf_lease_ops no_lease_ops = {fuzz_no_lease, fuzz_kick, NULL, NULL};

/* drive feeds data to a new connection of p as server.c would and returns
 * everything it answered (*out_len bytes, in a buffer reused across
 * calls). Checks that each feed makes progress and that the output waiting
 * at once stays under pause + slack. */
static const char *drive(const sf_proto *p, const uint8_t *data, size_t size,
                         size_t pause, size_t slack, size_t *out_len) {
  static char *out;
  static size_t cap;
  size_t n = 0, chunk, left;
  const char *in;
  void *c;
  setup();
  *out_len = 0;
  if (size < 2)
    return "";
  node.lease = (data[0] & 1) ? &no_lease_ops : NULL;
  clock_ns += NS_PER_MS;
  clock_back_ns = (data[0] & 2) ? 5000 * NS_PER_MS : 0;
  cfg.max_batch = (data[0] & 4) ? 3 : 1000;
  chunk = data[1] ? data[1] : size;
  in = (const char *)data + 2;
  left = size - 2;
  c = p->conn_new(&worker);
  CHECK(c != NULL);
  while (left > 0 && !p->closing(c)) {
    size_t k = left < chunk ? left : chunk;
    size_t used = p->feed(c, in, k);
    const char *o;
    size_t ol = p->output(c, &o);
    CHECK(used <= k);
    CHECK(used > 0 || ol > 0); /* progress, or output to send */
    CHECK(ol < pause + slack);
    if (n + ol > cap) {
      size_t m = cap ? cap : 65536;
      while (m < n + ol)
        m *= 2;
      out = realloc(out, m);
      CHECK(out != NULL);
      cap = m;
    }
    if (ol > 0)
      memcpy(out + n, o, ol);
    n += ol;
    p->sent(c);
    in += used;
    left -= used;
  }
  p->conn_free(c);
  *out_len = n;
  return out;
}

#endif /* SF_FUZZ_PROTO_H */
