/*
 * sf_test.h - shared by the library's cmocka tests: the includes cmocka
 * needs, and a fake clock the tests hold still, step back or run fast.
 */
#ifndef SF_TEST_H
#define SF_TEST_H

/* cmocka needs these before its own header. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "snowflake.h"

#define NS_PER_MS INT64_C(1000000)

/* Reads now_ns, then moves it on by step_ns: a clock held still (step 0),
 * or one that runs while the generator spins waiting for it. */
typedef struct fake_clock {
  int64_t now_ns;
  int64_t step_ns;
  uint64_t reads;
} fake_clock;

static inline int64_t fake_clock_read(void *ctx) {
  fake_clock *c = ctx;
  int64_t t = c->now_ns;
  c->now_ns += c->step_ns;
  c->reads++;
  return t;
}

/* The fake clock at epoch + ms_since_epoch of the default layout. */
static inline int64_t at_ms(int64_t ms_since_epoch) {
  return (SF_DEFAULT_EPOCH_MS + ms_since_epoch) * NS_PER_MS;
}

/* A config on the fake clock c, default layout, machine m. */
static inline void fake_config(sf_config *cfg, fake_clock *c, uint64_t m) {
  sf_config_init(cfg);
  cfg->clock = fake_clock_read;
  cfg->clock_ctx = c;
  cfg->machine_id = m;
}

#endif /* SF_TEST_H */
