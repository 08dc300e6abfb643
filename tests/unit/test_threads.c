/* test_threads.c - many threads share one generator: no duplicate, each
 * thread's IDs increasing. Built under TSan by `make test-tsan`. */
#include "sf_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { NTHREADS = 4, PER_THREAD = 1000000, BATCH = 1000 };

typedef struct worker {
  sf_gen *g;
  uint64_t *ids;
  int batched; /* sf_gen_next_n instead of sf_gen_next */
  int rc;
} worker;

static void *work(void *arg) {
  worker *w = arg;
  w->rc = SF_OK;
  if (w->batched) {
    for (size_t i = 0; i < PER_THREAD && w->rc == SF_OK; i += BATCH)
      w->rc = sf_gen_next_n(w->g, w->ids + i, BATCH, NULL);
  } else {
    for (size_t i = 0; i < PER_THREAD && w->rc == SF_OK; i++)
      w->rc = sf_gen_next(w->g, &w->ids[i], NULL);
  }
  return NULL;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

/* Runs NTHREADS workers (every other one batched when mixed) on g and
 * checks the union of their IDs. */
static void run_threads(sf_gen *g, int mixed) {
  uint64_t *all = malloc(sizeof(uint64_t) * NTHREADS * PER_THREAD);
  assert_non_null(all);
  worker w[NTHREADS];
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    w[i] = (worker){g, all + (size_t)i * PER_THREAD, mixed && (i & 1), 0};
    assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    if (w[i].rc != SF_OK)
      fail_msg("thread %d: %s", i, sf_err_name(w[i].rc));
    for (size_t k = 1; k < PER_THREAD; k++)
      if (w[i].ids[k] <= w[i].ids[k - 1])
        fail_msg("thread %d: ID %zu not increasing", i, k);
  }
  size_t n = (size_t)NTHREADS * PER_THREAD;
  qsort(all, n, sizeof *all, cmp_u64);
  for (size_t k = 1; k < n; k++)
    if (all[k] == all[k - 1])
      fail_msg("duplicate ID %llu", (unsigned long long)all[k]);
  free(all);
}

/* The default layout and clock: 4 x 1 million at the 4,096/ms limit. */
static void test_four_threads_default(void **state) {
  (void)state;
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 12;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  run_threads(g, 0);
  sf_gen_free(g);
}

/* A wide sequence: the threads contend on the state word all the time. */
static void test_four_threads_wide(void **state) {
  (void)state;
  sf_config c;
  sf_config_init(&c);
  c.layout.machine_bits = 0;
  c.layout.sequence_bits = 22;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  run_threads(g, 1);
  sf_gen_free(g);
}

/* Runs changing the machine id while the workers issue. */
static void *flip_machine(void *arg) {
  sf_gen *g = arg;
  for (int i = 0; i < 2000; i++)
    sf_gen_set_machine_id(g, (uint64_t)(i % 7) * 100);
  return NULL;
}

static void test_machine_id_changes(void **state) {
  (void)state;
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 1;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  pthread_t flipper;
  assert_int_equal(pthread_create(&flipper, NULL, flip_machine, g), 0);
  run_threads(g, 1);
  assert_int_equal(pthread_join(flipper, NULL), 0);
  sf_gen_free(g);
}

/* Persistence under threads: a short lead makes the mark move often; every
 * ID a thread gets is below the durable mark when it returns. */
typedef struct durable {
  _Atomic int64_t mark;
  _Atomic int calls;
} durable;

static int persist_mark(void *ctx, int64_t mark) {
  durable *d = ctx;
  atomic_fetch_add(&d->calls, 1);
  int64_t old = atomic_load(&d->mark);
  if (mark <= old)
    return SF_EINVAL; /* marks must only move up */
  atomic_store(&d->mark, mark);
  return SF_OK;
}

typedef struct pworker {
  sf_gen *g;
  durable *d;
  int rc;
  int below;
} pworker;

static void *pwork(void *arg) {
  pworker *w = arg;
  sf_layout l;
  sf_layout_default(&l);
  w->below = 1;
  for (int i = 0; i < 300000 && w->rc == SF_OK; i++) {
    uint64_t id;
    w->rc = sf_gen_next(w->g, &id, NULL);
    sf_parts p;
    sf_decode(&l, id, &p);
    if (w->rc == SF_OK && p.unix_ms >= atomic_load(&w->d->mark))
      w->below = 0;
  }
  return NULL;
}

static void test_threads_persist(void **state) {
  (void)state;
  durable d = {0, 0};
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 3;
  c.persist = persist_mark;
  c.persist_ctx = &d;
  c.persist_lead_ms = 20;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  pworker w[NTHREADS];
  pthread_t th[NTHREADS];
  for (int i = 0; i < NTHREADS; i++) {
    w[i] = (pworker){g, &d, SF_OK, 1};
    assert_int_equal(pthread_create(&th[i], NULL, pwork, &w[i]), 0);
  }
  for (int i = 0; i < NTHREADS; i++) {
    assert_int_equal(pthread_join(th[i], NULL), 0);
    assert_int_equal(w[i].rc, SF_OK);
    assert_true(w[i].below);
  }
  sf_gen_stats st;
  sf_gen_stats_get(g, &st);
  assert_int_equal(st.persist_errors, 0);
  assert_int_equal(st.persists, (uint64_t)atomic_load(&d.calls));
  assert_int_equal(st.mark_unix_ms, atomic_load(&d.mark));
  assert_true(st.last_unix_ms < st.mark_unix_ms);
  sf_gen_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_four_threads_default),
      cmocka_unit_test(test_four_threads_wide),
      cmocka_unit_test(test_machine_id_changes),
      cmocka_unit_test(test_threads_persist),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
