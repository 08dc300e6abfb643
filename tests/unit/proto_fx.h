/*
 * proto_fx.h - a node on a fake clock and one connection of any sf_proto,
 * driven as server.c drives it: feed, take the output, sent(), feed the
 * rest. Shared by the RESP and memcached tests.
 */
#ifndef SF_PROTO_FX_H
#define SF_PROTO_FX_H

#include "sf_test.h"

#include <stdlib.h>
#include <string.h>

#include "proto.h"

typedef struct proto_fx {
  sf_srv_config cfg;
  fake_clock clk;
  sf_gen *gen;
  sf_srv_stats *stats;
  sf_node node;
  sf_worker w;
  const sf_proto *proto;
  void *c;
  int64_t lease; /* what the fake lease answers, when it is on */
} proto_fx;

static int fx_lease_snapshot(void *ctx, sf_lease_snap *s) {
  proto_fx *f = ctx;
  s->id = f->lease;
  s->gen = 1;
  s->floor_ms = 0;
  s->mark_ms = INT64_MAX;
  return f->lease < 0 ? -1 : 0;
}

static void fx_lease_kick(void *ctx) {
  (void)ctx;
}

static const sf_lease_ops fx_lease_ops = {fx_lease_snapshot, fx_lease_kick,
                                          NULL, NULL};

static inline proto_fx *fx_new(const sf_proto *proto, unsigned max_batch) {
  proto_fx *f = calloc(1, sizeof *f);
  sf_config gc;
  assert_non_null(f);
  f->cfg.max_batch = max_batch;
  f->cfg.threads = 1;
  f->cfg.clock_tolerance_ms = 10;
  f->clk.now_ns = at_ms(1000000);
  f->clk.step_ns = 1000; /* 1 us a read: sequence waits end */
  fake_config(&gc, &f->clk, 7);
  assert_int_equal(sf_gen_new(&gc, &f->gen), 0);
  f->stats = aligned_alloc(64, sizeof *f->stats);
  assert_non_null(f->stats);
  memset(f->stats, 0, sizeof *f->stats);
  f->node.gen = f->gen;
  f->node.layout = sf_gen_layout(f->gen);
  f->node.cfg = &f->cfg;
  f->node.clock = fake_clock_read;
  f->node.clock_ctx = &f->clk;
  f->node.stats = f->stats;
  f->node.nstats = 1;
  f->node.start_unix_ms = SF_DEFAULT_EPOCH_MS;
  assert_int_equal(sf__worker_init(&f->w, &f->node, f->stats), 0);
  f->proto = proto;
  f->c = proto->conn_new(&f->w);
  assert_non_null(f->c);
  return f;
}

/* fx_lose_lease makes the node hold no machine id lease. */
static inline void fx_lose_lease(proto_fx *f) {
  f->lease = -1;
  f->node.lease = &fx_lease_ops;
  f->node.lease_ctx = f;
}

/* fx_reconnect gives f a fresh connection. */
static inline void fx_reconnect(proto_fx *f) {
  f->proto->conn_free(f->c);
  f->c = f->proto->conn_new(&f->w);
  assert_non_null(f->c);
}

static inline void fx_free(proto_fx *f) {
  f->proto->conn_free(f->c);
  sf__worker_free(&f->w);
  sf_gen_free(f->gen);
  free(f->stats);
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
    assert_int_equal(sf_decode(f->node.layout, ids[i], &parts), 0);
    assert_int_equal(parts.machine_id, 7);
    if (i > 0)
      assert_true(ids[i] > ids[i - 1]);
  }
}

#endif /* SF_PROTO_FX_H */
