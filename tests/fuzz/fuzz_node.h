/*
 * fuzz_node.h - the node every server fuzz target drives: the default
 * layout, machine id 7, MAX_BATCH 1000, one worker, on a clock that moves
 * 1 us per read (so a generator waiting for the next millisecond finishes)
 * and can be set behind by clock_back_ns.
 */
#ifndef SF_FUZZ_NODE_H
#define SF_FUZZ_NODE_H

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "node.h"
#include "snowflake.h"

#define NS_PER_MS INT64_C(1000000)

static int64_t clock_ns, clock_back_ns;

static int64_t fuzz_clock(void *ctx) {
  (void)ctx;
  clock_ns += 1000;
  return clock_ns - clock_back_ns;
}

static sf_srv_config cfg;
static sf_gen *gen;
static sf_srv_stats *stats;
static sf_node node;
static sf_worker worker;

/* setup builds the node once; later calls do nothing. */
static void setup(void) {
  static int ready;
  sf_config gc;
  if (ready)
    return;
  ready = 1;
  cfg.max_batch = 1000;
  cfg.threads = 1;
  cfg.clock_tolerance_ms = SF_DEFAULT_TOLERANCE_MS;
  cfg.idle_timeout_ms = 1000;
  cfg.max_connections = 100;
  cfg.max_machine_id = 1023;
  cfg.epoch_ms = SF_DEFAULT_EPOCH_MS;
  clock_ns = (SF_DEFAULT_EPOCH_MS + INT64_C(86400000)) * NS_PER_MS;
  sf_config_init(&gc);
  gc.machine_id = 7;
  gc.clock = fuzz_clock;
  CHECK(sf_gen_new(&gc, &gen) == 0);
  stats = aligned_alloc(64, sizeof *stats);
  CHECK(stats != NULL);
  memset(stats, 0, sizeof *stats);
  node.gen = gen;
  node.layout = sf_gen_layout(gen);
  node.cfg = &cfg;
  node.clock = fuzz_clock;
  node.stats = stats;
  node.nstats = 1;
  node.start_unix_ms = SF_DEFAULT_EPOCH_MS;
  CHECK(sf__worker_init(&worker, &node, stats) == 0);
}

#endif /* SF_FUZZ_NODE_H */
