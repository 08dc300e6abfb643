/*
 * node_fx.h - one server node on a fake clock for the server's unit tests:
 * its config, the generator, one worker with its counters, and a fake
 * machine id lease the test sets. Embed a node_fx (first, when a hook
 * needs the embedding fixture) and build it with node_fx_init.
 */
#ifndef SF_NODE_FX_H
#define SF_NODE_FX_H

#include "sf_test.h"

#include <stdlib.h>
#include <string.h>

#include "node.h"

typedef struct node_fx {
  sf_srv_config cfg;
  fake_clock clk;      /* epoch + 1000 s, 1 us a read */
  sf_gen *gen;         /* machine 7 until a lease or the test sets another */
  sf_srv_stats *stats; /* the one worker's counters, 64-byte aligned */
  sf_node node;
  sf_worker w;
  sf_lease_snap lease;  /* what the fake lease answers; id < 0: none held */
  unsigned kicks;       /* sf__lease_kick calls */
  int still_node_clock; /* 1: the node's clock reads clk without moving it */
  /* When set, called before each generator clock read and each lease
   * snapshot: a test's hook to act between two steps of the code. */
  void (*on_gen_clock)(struct node_fx *f);
  void (*on_snapshot)(struct node_fx *f);
} node_fx;

static int node_fx_snapshot(void *ctx, sf_lease_snap *s) {
  node_fx *f = ctx;
  if (f->on_snapshot)
    f->on_snapshot(f);
  *s = f->lease;
  return s->id < 0 ? -1 : 0;
}

static void node_fx_kick(void *ctx) {
  ((node_fx *)ctx)->kicks++;
}

static const sf_lease_ops node_fx_lease_ops = {node_fx_snapshot, node_fx_kick,
                                               NULL, NULL};

static int64_t node_fx_gen_clock(void *ctx) {
  node_fx *f = ctx;
  if (f->on_gen_clock)
    f->on_gen_clock(f);
  return fake_clock_read(&f->clk);
}

static int64_t node_fx_node_clock(void *ctx) {
  node_fx *f = ctx;
  return f->still_node_clock ? f->clk.now_ns : fake_clock_read(&f->clk);
}

/* node_fx_init builds f (any contents) with max_batch, no lease, no floor. */
static inline void node_fx_init(node_fx *f, unsigned max_batch) {
  sf_config gc;
  memset(f, 0, sizeof *f);
  f->cfg.max_batch = max_batch;
  f->cfg.threads = 1;
  f->cfg.clock_tolerance_ms = 10;
  f->clk.now_ns = at_ms(1000000);
  f->clk.step_ns = 1000; /* 1 us a read: sequence waits end */
  sf_config_init(&gc);
  gc.machine_id = 7;
  gc.clock = node_fx_gen_clock;
  gc.clock_ctx = f;
  assert_int_equal(sf_gen_new(&gc, &f->gen), 0);
  f->stats = aligned_alloc(64, sizeof *f->stats);
  assert_non_null(f->stats);
  memset(f->stats, 0, sizeof *f->stats);
  f->node.gen = f->gen;
  f->node.layout = sf_gen_layout(f->gen);
  f->node.cfg = &f->cfg;
  f->node.clock = node_fx_node_clock;
  f->node.clock_ctx = f;
  f->node.stats = f->stats;
  f->node.nstats = 1;
  f->node.start_unix_ms = SF_DEFAULT_EPOCH_MS;
  assert_int_equal(sf__worker_init(&f->w, &f->node, f->stats), 0);
}

/* node_fx_floor gives the node, before its first ID, the state file's mark
 * floor_unix_ms (0: none), as a start from that state file would. */
static inline void node_fx_floor(node_fx *f, int64_t floor_unix_ms) {
  assert_int_equal(sf_gen_raise_floor(f->gen, floor_unix_ms), 0);
  f->node.floor_unix_ms = floor_unix_ms;
}

/* node_fx_lease_on puts the node under the fake lease, answering id
 * (< 0: none held) in generation 1 with no floor and no mark. */
static inline void node_fx_lease_on(node_fx *f, int64_t id) {
  f->lease = (sf_lease_snap){id, 1, 0, INT64_MAX};
  f->node.lease = &node_fx_lease_ops;
  f->node.lease_ctx = f;
}

/* node_fx_free frees what node_fx_init allocated, not f itself. */
static inline void node_fx_free(node_fx *f) {
  sf__worker_free(&f->w);
  sf_gen_free(f->gen);
  free(f->stats);
}

#endif /* SF_NODE_FX_H */
