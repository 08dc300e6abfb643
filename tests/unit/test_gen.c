/* test_gen.c - the generator on a fake clock: order, exhaustion, clock
 * steps, floors, persistence, validation. Nothing here asserts timing. */
#include "sf_test.h"

#include <stdlib.h>
#include <time.h>

static sf_gen *must_gen(const sf_config *c) {
  sf_gen *g = NULL;
  int rc = sf_gen_new(c, &g);
  if (rc != SF_OK)
    fail_msg("sf_gen_new: %s", sf_err_name(rc));
  return g;
}

static sf_parts parts(uint64_t id) {
  sf_layout l;
  sf_layout_default(&l);
  sf_parts p;
  assert_int_equal(sf_decode(&l, id, &p), SF_OK);
  return p;
}

static void test_new_errors(void **state) {
  (void)state;
  fake_clock clk = {at_ms(1000), 0, 0};
  sf_config c;
  sf_gen *g = (sf_gen *)&clk; /* must stay untouched on error */
  sf_gen *const sentinel = g;

  fake_config(&c, &clk, 1024);
  assert_int_equal(sf_gen_new(&c, &g), SF_EMACHINE);
  fake_config(&c, &clk, 0);
  c.layout.machine_bits = 21;
  assert_int_equal(sf_gen_new(&c, &g), SF_EBITS);
  fake_config(&c, &clk, 0);
  c.layout.sequence_bits = 0;
  assert_int_equal(sf_gen_new(&c, &g), SF_EBITS);
  fake_config(&c, &clk, 0);
  c.layout.sequence_bits = 23;
  assert_int_equal(sf_gen_new(&c, &g), SF_EBITS);
  fake_config(&c, &clk, 0);
  c.layout.machine_bits = 20;
  c.layout.sequence_bits = 12; /* 31 timestamp bits */
  assert_int_equal(sf_gen_new(&c, &g), SF_EBITS);
  fake_config(&c, &clk, 0);
  c.layout.epoch_ms = SF_DEFAULT_EPOCH_MS + 1001; /* after the clock */
  assert_int_equal(sf_gen_new(&c, &g), SF_EEPOCH);
  fake_config(&c, &clk, 0);
  c.layout.epoch_ms = -5;
  assert_int_equal(sf_gen_new(&c, &g), SF_EEPOCH);
  fake_config(&c, &clk, 0);
  c.tolerance_ms = -1;
  assert_int_equal(sf_gen_new(&c, &g), SF_EINVAL);
  fake_config(&c, &clk, 0);
  c.floor_unix_ms = -1;
  assert_int_equal(sf_gen_new(&c, &g), SF_EINVAL);
  fake_config(&c, &clk, 0);
  c.persist = sf_statefile_persist;
  c.persist_lead_ms = 0;
  assert_int_equal(sf_gen_new(&c, &g), SF_EINVAL);
  assert_int_equal(sf_gen_new(NULL, &g), SF_EINVAL);
  assert_ptr_equal(g, sentinel);

  fake_config(&c, &clk, 1023);
  c.layout.epoch_ms = SF_DEFAULT_EPOCH_MS + 1000; /* exactly now is fine */
  g = must_gen(&c);
  assert_int_equal(sf_gen_machine_id(g), 1023);
  assert_int_equal(sf_gen_layout(g)->epoch_ms, SF_DEFAULT_EPOCH_MS + 1000);
  assert_int_equal(sf_gen_set_machine_id(g, 1024), SF_EMACHINE);
  assert_int_equal(sf_gen_machine_id(g), 1023);
  sf_gen_free(g);
  sf_gen_free(NULL);
}

/* The first ID of a generator is the seed's number for (ms, machine, 0). */
static void test_first_id(void **state) {
  (void)state;
  fake_clock clk = {at_ms(65621974499) + 123456, 0, 0};
  sf_config c;
  fake_config(&c, &clk, 1);
  sf_gen *g = must_gen(&c);
  uint64_t id;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(id, UINT64_C(275238510129057792));
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(id, UINT64_C(275238510129057793));
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  assert_int_equal(st.last_unix_ms, SF_DEFAULT_EPOCH_MS + 65621974499);
  assert_int_equal(st.mark_unix_ms, 0);
  sf_gen_free(g);
}

/* 10 million IDs, each larger than the one before, on a clock that runs a
 * little faster than the sequence can keep up with. */
static void test_ten_million_increasing(void **state) {
  (void)state;
  fake_clock clk = {at_ms(1000), 200, 0}; /* 5000 reads per ms */
  sf_config c;
  fake_config(&c, &clk, 77);
  sf_gen *g = must_gen(&c);
  uint64_t prev = 0;
  for (int i = 0; i < 10000000; i++) {
    uint64_t id;
    int rc = sf_gen_next(g, &id, NULL);
    if (rc != SF_OK)
      fail_msg("ID %d: %s", i, sf_err_name(rc));
    if (id <= prev)
      fail_msg("ID %d: %llu after %llu", i, (unsigned long long)id,
               (unsigned long long)prev);
    prev = id;
  }
  assert_int_equal(parts(prev).machine_id, 77);
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  assert_true(st.sequence_waits > 0);
  assert_int_equal(st.clock_back_waits, 0);
  sf_gen_free(g);
}

/* The real default clock: a million IDs in order. */
static void test_real_clock_increasing(void **state) {
  (void)state;
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 5;
  sf_gen *g = must_gen(&c);
  uint64_t prev = 0;
  for (int i = 0; i < 1000000; i++) {
    uint64_t id;
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    if (id <= prev)
      fail_msg("ID %d not increasing", i);
    prev = id;
  }
  sf_gen_free(g);
}

/* A clock held still: the whole sequence, then a wait, then the next ms. */
static void test_clock_held_still(void **state) {
  (void)state;
  fake_clock clk = {at_ms(5000) + 1, 0, 0};
  sf_config c;
  fake_config(&c, &clk, 3);
  sf_gen *g = must_gen(&c);
  uint64_t id = 0;
  for (uint64_t s = 0; s < 4096; s++) {
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    sf_parts p = parts(id);
    assert_int_equal(p.timestamp, 5000);
    assert_int_equal(p.sequence, s);
    assert_int_equal(p.machine_id, 3);
  }
  assert_int_equal(clk.now_ns, at_ms(5000) + 1); /* never moved */
  clk.step_ns = 300000; /* the clock runs again while the generator waits */
  uint64_t prev = id;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_true(id > prev);
  assert_int_equal(parts(id).timestamp, 5001);
  assert_int_equal(parts(id).sequence, 0);
  assert_true(clk.now_ns >= at_ms(5001)); /* it did wait for the clock */
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  assert_int_equal(st.sequence_waits, 1);
  sf_gen_free(g);
}

/* Stepped back within the tolerance: the last ms's sequence goes on, then
 * the generator waits for the clock to pass it. */
static void test_clock_back_within_tolerance(void **state) {
  (void)state;
  fake_clock clk = {at_ms(9000), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 1);
  sf_gen *g = must_gen(&c);
  uint64_t prev = 0, id;
  for (int i = 0; i < 10; i++) {
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    prev = id;
  }
  clk.now_ns = at_ms(9000 - 7); /* 7 ms back, tolerance 10 */
  for (int i = 10; i < 4096; i++) {
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    assert_true(id > prev);
    assert_int_equal(parts(id).timestamp, 9000);
    assert_int_equal(parts(id).sequence, (uint64_t)i);
    prev = id;
  }
  clk.step_ns = 1000000;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_true(id > prev);
  assert_true(parts(id).timestamp > 9000);
  assert_int_equal(parts(id).sequence, 0);
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  assert_int_equal(st.clock_back_waits, 1);
  assert_int_equal(st.clock_back_errors, 0);
  sf_gen_free(g);
}

/* Stepped back beyond the tolerance: SF_ECLOCKBACK with the gap, no ID;
 * once the clock is back, IDs go on above the old ones. */
static void test_clock_back_beyond_tolerance(void **state) {
  (void)state;
  fake_clock clk = {at_ms(9000), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 1);
  c.tolerance_ms = 10;
  sf_gen *g = must_gen(&c);
  uint64_t prev, id;
  assert_int_equal(sf_gen_next(g, &prev, NULL), SF_OK);
  clk.now_ns = at_ms(9000 - 11);
  id = 99;
  int64_t wait = -1;
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, 11);
  assert_int_equal(id, 99);
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_ECLOCKBACK); /* NULL ok */
  uint64_t ids[3] = {0};
  wait = -1;
  assert_int_equal(sf_gen_next_n(g, ids, 3, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, 11);
  clk.now_ns = at_ms(9000 - 3600000); /* an hour back */
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, 3600000);
  clk.now_ns = at_ms(9000 - 10); /* exactly the tolerance: goes on */
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_OK);
  assert_true(id > prev);
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  assert_int_equal(st.clock_back_errors, 4);
  sf_gen_free(g);
}

/* A tolerance of 0 refuses any step back at all. */
static void test_zero_tolerance(void **state) {
  (void)state;
  fake_clock clk = {at_ms(9000), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 1);
  c.tolerance_ms = 0;
  sf_gen *g = must_gen(&c);
  uint64_t id;
  int64_t wait = 0;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  clk.now_ns = at_ms(8999);
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, 1);
  sf_gen_free(g);
}

/* A floor counts as an issued ms: nothing at or below it. */
static void test_floor(void **state) {
  (void)state;
  int64_t floor_unix = SF_DEFAULT_EPOCH_MS + 20000;
  fake_clock clk = {at_ms(20000 - 500), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 2);
  c.floor_unix_ms = floor_unix;
  sf_gen *g = must_gen(&c);
  uint64_t id = 5;
  int64_t wait = 0;
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, 500);
  clk.now_ns = at_ms(20000); /* at the floor: wait for the next ms */
  clk.step_ns = 300000;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(parts(id).unix_ms, floor_unix + 1);
  assert_int_equal(parts(id).sequence, 0);
  sf_gen_free(g);

  /* A floor before the epoch is no constraint. */
  clk.now_ns = at_ms(3);
  clk.step_ns = 0;
  fake_config(&c, &clk, 2);
  c.floor_unix_ms = 1000;
  g = must_gen(&c);
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(parts(id).timestamp, 3);
  sf_gen_free(g);
}

/* Raising the floor at run time (a machine id taken over): later IDs lie
 * above it; a lower floor changes nothing; bad floors are refused. */
static void test_raise_floor(void **state) {
  (void)state;
  fake_clock clk = {at_ms(1000), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 2);
  sf_gen *g = must_gen(&c);
  uint64_t id = 0, before;
  int64_t wait = 0;
  assert_int_equal(sf_gen_next(g, &before, NULL), SF_OK);
  assert_int_equal(sf_gen_raise_floor(g, SF_DEFAULT_EPOCH_MS + 1800), SF_OK);
  assert_int_equal(sf_gen_next(g, &id, &wait), SF_ECLOCKBACK);
  assert_int_equal(wait, 800);
  assert_int_equal(sf_gen_raise_floor(g, SF_DEFAULT_EPOCH_MS + 5), SF_OK);
  clk.now_ns = at_ms(1800);
  clk.step_ns = 300000;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(parts(id).timestamp, 1801);
  assert_true(id > before);
  assert_int_equal(sf_gen_raise_floor(g, -1), SF_EINVAL);
  assert_int_equal(sf_gen_raise_floor(NULL, 5), SF_EINVAL);
  sf_gen_free(g);
}

/* Changing the machine id never yields a smaller ID: a smaller machine id
 * moves to the next millisecond. */
static void test_set_machine_id(void **state) {
  (void)state;
  fake_clock clk = {at_ms(7000), 0, 0};
  sf_config c;
  fake_config(&c, &clk, 500);
  sf_gen *g = must_gen(&c);
  uint64_t a, b;
  assert_int_equal(sf_gen_next(g, &a, NULL), SF_OK);
  assert_int_equal(sf_gen_set_machine_id(g, 4), SF_OK);
  assert_int_equal(sf_gen_machine_id(g), 4);
  clk.step_ns = 300000;
  assert_int_equal(sf_gen_next(g, &b, NULL), SF_OK);
  assert_true(b > a);
  assert_int_equal(parts(b).machine_id, 4);
  assert_int_equal(parts(b).timestamp, 7001);
  sf_gen_free(g);
}

static void test_next_n(void **state) {
  (void)state;
  fake_clock clk = {at_ms(42), 100000, 0}; /* 10 reads a ms */
  sf_config c;
  fake_config(&c, &clk, 8);
  sf_gen *g = must_gen(&c);
  enum { N = 20000 };
  uint64_t *ids = calloc(N, sizeof *ids);
  assert_non_null(ids);
  uint64_t single;
  assert_int_equal(sf_gen_next(g, &single, NULL), SF_OK);
  assert_int_equal(sf_gen_next_n(g, ids, N, NULL), SF_OK);
  assert_true(ids[0] > single);
  for (size_t i = 1; i < N; i++) {
    assert_true(ids[i] > ids[i - 1]);
    sf_parts p = parts(ids[i]), q = parts(ids[i - 1]);
    /* Within a ms the sequence runs without gaps. */
    if (p.timestamp == q.timestamp)
      assert_int_equal(p.sequence, q.sequence + 1);
    else
      assert_int_equal(p.sequence, 0);
    assert_int_equal(p.machine_id, 8);
  }
  assert_int_equal(sf_gen_next(g, &single, NULL), SF_OK);
  assert_true(single > ids[N - 1]);
  assert_int_equal(sf_gen_next_n(g, ids, 0, NULL), SF_OK);
  assert_int_equal(sf_gen_next_n(g, NULL, 1, NULL), SF_EINVAL);
  free(ids);
  sf_gen_free(g);
}

/* Wide layout: one ms holds 4 million IDs. */
static void test_wide_layout(void **state) {
  (void)state;
  fake_clock clk = {INT64_C(1000) * NS_PER_MS, 0, 0};
  sf_config c;
  sf_config_init(&c);
  c.clock = fake_clock_read;
  c.clock_ctx = &clk;
  c.layout.epoch_ms = 0;
  c.layout.machine_bits = 0;
  c.layout.sequence_bits = 22;
  sf_gen *g = must_gen(&c);
  uint64_t id = 0, prev = 0;
  for (int i = 0; i < 100000; i++) {
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    assert_true(i == 0 || id == prev + 1);
    prev = id;
  }
  assert_int_equal(id, (UINT64_C(1000) << 22) + 99999);
  assert_int_equal(sf_gen_set_machine_id(g, 1), SF_EMACHINE);
  sf_gen_free(g);
}

/* A timestamp past its bits: SF_EOVERFLOW, never a wrapped ID. */
static void test_overflow(void **state) {
  (void)state;
  sf_config c;
  fake_clock clk = {0, 0, 0};
  sf_config_init(&c);
  c.clock = fake_clock_read;
  c.clock_ctx = &clk;
  c.layout.epoch_ms = 0;
  c.layout.machine_bits = 20;
  c.layout.sequence_bits = 11; /* 32 bits of ms: 49.7 days */
  int64_t max_ts = INT64_C(4294967295);
  clk.now_ns = max_ts * NS_PER_MS;
  sf_gen *g = must_gen(&c);
  uint64_t id;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(id >> 31, (uint64_t)max_ts);
  for (int i = 1; i < 2048; i++)
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(id, (uint64_t)INT64_MAX & ~(UINT64_C(0xFFFFF) << 11));
  /* That ms is used up and there is no next one. */
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_EOVERFLOW);
  clk.now_ns = (max_ts + 1) * NS_PER_MS;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_EOVERFLOW);
  sf_gen_free(g);
}

/* ------------------------------------------------------------ persistence */

typedef struct fake_store {
  int64_t mark; /* the durable mark */
  int calls;
  int fail; /* persist returns SF_ESTATE while set */
} fake_store;

static int fake_persist(void *ctx, int64_t mark) {
  fake_store *s = ctx;
  s->calls++;
  if (s->fail)
    return SF_ESTATE;
  assert_true(mark > s->mark); /* marks only move up */
  s->mark = mark;
  return SF_OK;
}

static void test_persist_marks(void **state) {
  (void)state;
  fake_clock clk = {at_ms(100000), 20000, 0}; /* 50 reads a ms */
  fake_store st = {0, 0, 0};
  sf_config c;
  fake_config(&c, &clk, 6);
  c.persist = fake_persist;
  c.persist_ctx = &st;
  c.persist_lead_ms = 1000;
  sf_gen *g = must_gen(&c);
  uint64_t id;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(st.calls, 1);
  assert_int_equal(st.mark, parts(id).unix_ms + 1000);
  /* About 5 simulated seconds: every ID below the durable mark, and the
   * mark renewed about every half lead, not per ID. */
  for (int i = 0; i < 250000; i++) {
    assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
    assert_true(parts(id).unix_ms < st.mark);
  }
  assert_true(st.calls >= 8 && st.calls <= 12);
  sf_gen_stats gs;
  sf_gen_stats_get(g, &gs);
  assert_int_equal(gs.persists, (uint64_t)st.calls);
  assert_int_equal(gs.mark_unix_ms, st.mark);
  sf_gen_free(g);
}

static void test_persist_failure(void **state) {
  (void)state;
  fake_clock clk = {at_ms(100000), 0, 0};
  fake_store st = {0, 0, 1};
  sf_config c;
  fake_config(&c, &clk, 6);
  c.persist = fake_persist;
  c.persist_ctx = &st;
  c.persist_lead_ms = 1000;
  sf_gen *g = must_gen(&c);
  uint64_t id = 3;
  uint64_t ids[4] = {0};
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_ESTATE);
  assert_int_equal(id, 3);
  assert_int_equal(sf_gen_next_n(g, ids, 4, NULL), SF_ESTATE);
  st.fail = 0;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  int64_t mark = st.mark;
  assert_int_equal(mark, at_ms(100000) / NS_PER_MS + 1000);

  /* Past half the lead, renewals fail but IDs below the durable mark still
   * come out; at the mark, SF_ESTATE and nothing beyond it. */
  st.fail = 1;
  clk.now_ns = (mark - 400) * NS_PER_MS;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(parts(id).unix_ms, mark - 400);
  clk.now_ns = (mark - 1) * NS_PER_MS;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  clk.now_ns = mark * NS_PER_MS;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_ESTATE);
  clk.now_ns = (mark + 5000) * NS_PER_MS;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_ESTATE);
  sf_gen_stats gs;
  sf_gen_stats_get(g, &gs);
  assert_true(gs.persist_errors >= 4);
  assert_int_equal(gs.mark_unix_ms, mark);
  st.fail = 0;
  assert_int_equal(sf_gen_next(g, &id, NULL), SF_OK);
  assert_int_equal(parts(id).unix_ms, mark + 5000);
  assert_int_equal(st.mark, mark + 6000);
  sf_gen_free(g);
}

/* The default clock: never back within a thread, close to the wall clock,
 * and it counts a sleep in full (checked loosely: this is not a speed test). */
static void test_monotonic_clock(void **state) {
  (void)state;
  int64_t first = sf_clock_monotonic(NULL);
  int64_t wall = sf_clock_wall(NULL);
  assert_true(first - wall < INT64_C(1000000000) &&
              wall - first < INT64_C(1000000000));
  int64_t prev = first;
  /* Long enough to pass the interpolation's calibration point. */
  while (prev - first < 20 * NS_PER_MS) {
    int64_t t = sf_clock_monotonic(NULL);
    if (t < prev)
      fail_msg("clock went back by %lld ns", (long long)(prev - t));
    prev = t;
  }
  struct timespec nap = {0, 30000000};
  int64_t before = sf_clock_monotonic(NULL);
  nanosleep(&nap, NULL);
  int64_t after = sf_clock_monotonic(NULL);
  assert_true(after - before >= 29 * NS_PER_MS);
  for (int i = 0; i < 1000000; i++) {
    int64_t t = sf_clock_monotonic(NULL);
    if (t < prev)
      fail_msg("clock went back by %lld ns", (long long)(prev - t));
    prev = t;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_new_errors),
      cmocka_unit_test(test_first_id),
      cmocka_unit_test(test_ten_million_increasing),
      cmocka_unit_test(test_real_clock_increasing),
      cmocka_unit_test(test_monotonic_clock),
      cmocka_unit_test(test_clock_held_still),
      cmocka_unit_test(test_clock_back_within_tolerance),
      cmocka_unit_test(test_clock_back_beyond_tolerance),
      cmocka_unit_test(test_zero_tolerance),
      cmocka_unit_test(test_floor),
      cmocka_unit_test(test_raise_floor),
      cmocka_unit_test(test_set_machine_id),
      cmocka_unit_test(test_next_n),
      cmocka_unit_test(test_wide_layout),
      cmocka_unit_test(test_overflow),
      cmocka_unit_test(test_persist_marks),
      cmocka_unit_test(test_persist_failure),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
