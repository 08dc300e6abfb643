/*
 * proto_fx.h - a node on a fake clock (node_fx.h) and one connection of
 * any sf_proto, driven as server.c drives it: feed, take the output,
 * sent(), feed the rest. Shared by the RESP and memcached tests.
 */
#ifndef SF_PROTO_FX_H
#define SF_PROTO_FX_H

#include "node_fx.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

typedef struct proto_fx {
  node_fx n;
  const sf_proto *proto;
  void *c;
} proto_fx;

static inline proto_fx *fx_new(const sf_proto *proto, unsigned max_batch) {
  proto_fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  node_fx_init(&f->n, max_batch);
  f->proto = proto;
  f->c = proto->conn_new(&f->n.w);
  assert_non_null(f->c);
  return f;
}

/* fx_lose_lease makes the node hold no machine id lease. */
static inline void fx_lose_lease(proto_fx *f) {
  node_fx_lease_on(&f->n, -1);
}

/* fx_reconnect gives f a fresh connection. */
static inline void fx_reconnect(proto_fx *f) {
  f->proto->conn_free(f->c);
  f->c = f->proto->conn_new(&f->n.w);
  assert_non_null(f->c);
}

static inline void fx_free(proto_fx *f) {
  f->proto->conn_free(f->c);
  node_fx_free(&f->n);
  free(f);
}

/* fx_feed feeds s[0..len) in reads of at most chunk bytes (0: all at
 * once), draining the output as a writer would, until all is used or the
 * connection closes. Returns every output byte as a NUL-terminated heap
 * string; *out_len gets its length unless NULL. */
static inline char *fx_feed(proto_fx *f, const char *s, size_t len,
                            size_t chunk, size_t *out_len) {
  size_t cap = 1 << 16, n = 0;
  char *out = malloc(cap);
  assert_non_null(out);
  while (len > 0 && !f->proto->closing(f->c)) {
    size_t k = chunk && chunk < len ? chunk : len;
    size_t used = f->proto->feed(f->c, s, k);
    const char *o;
    size_t ol = f->proto->output(f->c, &o);
    assert_true(used <= k);
    assert_true(used > 0 || ol > 0); /* progress, or output to send */
    if (n + ol + 1 > cap) {
      char *bigger;
      while (n + ol + 1 > cap)
        cap *= 2;
      bigger = realloc(out, cap);
      assert_non_null(bigger);
      out = bigger;
    }
    memcpy(out + n, o, ol);
    n += ol;
    f->proto->sent(f->c);
    s += used;
    len -= used;
  }
  out[n] = 0;
  if (out_len)
    *out_len = n;
  return out;
}

static inline char *fx_str(proto_fx *f, const char *s) {
  return fx_feed(f, s, strlen(s), 0, NULL);
}

/* fx_count counts needle in hay. */
static inline int fx_count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* assert_increasing_machine7 checks that ids[0..n) carry the fixture's
 * machine id 7 and increase. */
static inline void assert_increasing_machine7(const proto_fx *f,
                                              const uint64_t *ids, size_t n) {
  for (size_t i = 0; i < n; i++) {
    sf_parts parts;
    assert_int_equal(sf_decode(f->n.node.layout, ids[i], &parts), 0);
    assert_int_equal(parts.machine_id, 7);
    if (i > 0)
      assert_true(ids[i] > ids[i - 1]);
  }
}

#endif /* SF_PROTO_FX_H */
