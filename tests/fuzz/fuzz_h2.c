/*
 * fuzz_h2.c - libFuzzer target for snowflaked's HTTP/2 path: the client
 * preface, then the input as what a client sent, through sf__proto_h2
 * (nghttp2, the routes, the gRPC methods), with no sockets.
 *
 * Input: byte 0 picks the node's state, byte 1 how the bytes are cut into
 * reads, byte 2 how often the output is drained, the rest is sent after
 * the preface.
 *   byte 0 bit 0: the machine id is leased (else fixed); bit 1: the lease
 *          is lost; bit 2: the clock is 5 s behind the newest ID
 *   byte 1: read size 1..256 (0: all at once)
 *   byte 2: bit 0 set: the output is drained only when a feed takes nothing
 *          (a slow reader), else after every feed; bit 1: the lease flips
 *          and the server's tick runs after every feed (streaming calls
 *          report); bit 2: the server shuts down (goaway) at the end
 *
 * Checked beyond ASan/UBSan: a feed consumes input or leaves output to
 * send; the output waiting at once stays bounded (SF_H2_OUT_PAUSE and a
 * frame); the output is a sequence of whole HTTP/2 frames starting with
 * the server's SETTINGS; no ID is issued while the lease is lost.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_node.h"
#include "h2.h"
#include "snowflake.h"

#define FRAME_MAX (16777215 + 9) /* the most a peer's SETTINGS allows */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static int64_t lease_val;

static int fuzz_lease_snap(void *ctx, sf_lease_snap *s) {
  (void)ctx;
  s->id = lease_val;
  s->gen = 1;
  s->floor_ms = 0;
  s->mark_ms = INT64_MAX;
  return lease_val < 0 ? -1 : 0;
}

static const sf_lease_ops fuzz_lease = {fuzz_lease_snap, NULL, NULL, NULL};

/* The output so far, to check its framing at the end. */
static uint8_t *out;
static size_t out_len, out_cap;

static void drain(void *pc) {
  const char *b;
  size_t n = sf__proto_h2.output(pc, &b);
  if (n == 0)
    return;
  CHECK(n <= SF_H2_OUT_PAUSE + FRAME_MAX);
  if (out_len + n > out_cap) {
    out_cap = (out_len + n) * 2;
    out = realloc(out, out_cap);
    CHECK(out != NULL);
  }
  memcpy(out + out_len, b, n);
  out_len += n;
  sf__proto_h2.sent(pc);
}

/* check_frames walks the output: whole frames, SETTINGS first. */
static void check_frames(void) {
  size_t off = 0;
  if (out_len == 0)
    return;
  CHECK(out_len >= 9 && out[3] == 0x4); /* SETTINGS */
  while (off < out_len) {
    size_t len;
    CHECK(out_len - off >= 9);
    len = (size_t)out[off] << 16 | (size_t)out[off + 1] << 8 | out[off + 2];
    CHECK(out[off + 3] <= 0x9); /* a frame type of RFC 9113 */
    CHECK(out_len - off - 9 >= len);
    off += 9 + len;
  }
}

/* feed_all feeds in[0..len) in reads of chunk bytes. */
static void feed_all(void *pc, const char *in, size_t len, size_t chunk,
                     int slow, int tick) {
  while (len > 0 && !sf__proto_h2.closing(pc)) {
    size_t n = len < chunk ? len : chunk;
    size_t used = sf__proto_h2.feed(pc, in, n);
    CHECK(used <= n);
    if (used == 0) {
      const char *b;
      CHECK(sf__proto_h2.output(pc, &b) > 0);
    }
    if (tick && node.lease) {
      lease_val = lease_val < 0 ? 5 : -1;
      sf__proto_h2.tick(pc);
    }
    if (!slow || used == 0)
      drain(pc);
    in += used;
    len -= used;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  void *pc;
  uint64_t issued_before;
  int lost;

  if (!ready) {
    setup();
    ready = 1;
  }
  if (size < 3)
    return 0;
  issued_before = atomic_load(&stats->ids_issued);
  node.lease = (data[0] & 1) ? &fuzz_lease : NULL;
  lost = (data[0] & 3) == 3;
  lease_val = lost ? -1 : 5;
  clock_ns += NS_PER_MS;
  clock_back_ns = (data[0] & 4) ? 5000 * NS_PER_MS : 0;
  out_len = 0;

  pc = sf__proto_h2.conn_new(&worker);
  CHECK(pc != NULL);
  feed_all(pc, preface, sizeof preface - 1, sizeof preface, 0, 0);
  feed_all(pc, (const char *)data + 3, size - 3, data[1] ? data[1] : size,
           data[2] & 1, data[2] & 2);
  if (data[2] & 4)
    sf__proto_h2.goaway(pc);
  for (int i = 0; i < 64; i++)
    drain(pc); /* what waited */
  sf__proto_h2.conn_free(pc);
  check_frames();
  if (lost && !(data[2] & 2))
    CHECK(atomic_load(&stats->ids_issued) == issued_before);
  return 0;
}
