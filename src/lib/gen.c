/*
 * gen.c - the generator: one 64-bit word of state, advanced by
 * compare-and-swap, so any number of threads share a generator without a
 * lock.
 *
 * The state is the newest ID issued (at the start: the floor, written as an
 * ID whose millisecond is used up). Its machine field is the machine id that
 * ID carried, so a machine id change at run time moves to the next
 * millisecond instead of ever issuing a smaller ID. An issue reads the
 * clock, derives the next free (ms, sequence) from the state and swaps in
 * the last ID of the run it takes; a failed swap retries from the state it
 * saw. The clock is read before the swap, so an ID's millisecond is never
 * later than the clock at the time it was issued.
 *
 * The only lock guards the slow path that moves the persisted high-water
 * mark, about once per persist_lead_ms / 2.
 */
#include "sf_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_LINE 64
/* The floor and the clock are kept in ms that still fit in ns as int64. */
#define MAX_FLOOR_MS (INT64_MAX / SF__NS_PER_MS - 1)

struct sf_gen {
  /* Swapped by every issue: alone on its cache line. */
  _Alignas(CACHE_LINE) _Atomic uint64_t state;

  /* Read by every issue, written rarely. */
  _Alignas(CACHE_LINE) _Atomic uint64_t machine;
  _Atomic int64_t mark; /* durable mark (unix ms); INT64_MAX: none */
  int64_t renew_lead;   /* renew once an ID is this close to the mark */
  int64_t lead_ms;
  int64_t epoch_ms;
  int64_t tolerance_ms;
  int64_t ts_max;
  uint64_t seq_max;
  uint64_t machine_max;
  unsigned seq_bits;
  unsigned ts_shift;
  sf_clock_fn clock;
  void *clock_ctx;
  sf_persist_fn persist;
  void *persist_ctx;
  sf_layout layout;

  /* The slow path. */
  _Alignas(CACHE_LINE) pthread_mutex_t persist_mu;
  int64_t retry_after_ms; /* an early renewal failed: not again before */
  _Atomic uint64_t clock_back_waits;
  _Atomic uint64_t clock_back_errors;
  _Atomic uint64_t sequence_waits;
  _Atomic uint64_t persists;
  _Atomic uint64_t persist_errors;
};

/* floor_state is the state that stands for "nothing issued at or below
 * unix_ms": the floor's millisecond counts as used up, its machine and
 * sequence fields all ones. 0 for no floor. */
static uint64_t floor_state(const sf_gen *g, int64_t unix_ms) {
  int64_t ts = unix_ms - g->epoch_ms;
  if (unix_ms <= 0 || ts < 0)
    return 0;
  if (ts > g->ts_max)
    ts = g->ts_max;
  return ((uint64_t)ts << g->ts_shift) | (g->machine_max << g->seq_bits) |
         g->seq_max;
}

void sf_config_init(sf_config *c) {
  memset(c, 0, sizeof *c);
  sf_layout_default(&c->layout);
  c->machine_id = 0;
  c->tolerance_ms = SF_DEFAULT_TOLERANCE_MS;
  c->clock = NULL;
  c->persist = NULL;
  c->floor_unix_ms = 0;
  c->persist_lead_ms = SF_DEFAULT_PERSIST_LEAD_MS;
}

static inline int64_t floor_div_ms(int64_t ns) {
  if (ns < 0)
    return -((-(ns + 1)) / SF__NS_PER_MS) - 1;
  return ns / SF__NS_PER_MS;
}

static inline void count(_Atomic uint64_t *c) {
  atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

int sf_gen_new(const sf_config *c, sf_gen **out) {
  if (c == NULL || out == NULL)
    return SF_EINVAL;
  sf_clock_fn clock = c->clock ? c->clock : sf_clock_monotonic;
  int64_t now_ms = floor_div_ms(clock(c->clock_ctx));
  int rc = sf_layout_check(&c->layout, now_ms < 0 ? 0 : now_ms);
  if (rc != SF_OK)
    return rc;
  if (c->machine_id > sf_layout_max_machine(&c->layout))
    return SF_EMACHINE;
  if (c->tolerance_ms < 0 || c->floor_unix_ms < 0 ||
      c->floor_unix_ms > MAX_FLOOR_MS ||
      (c->persist != NULL &&
       (c->persist_lead_ms <= 0 || c->persist_lead_ms > MAX_FLOOR_MS)))
    return SF_EINVAL;

  sf_gen *g = aligned_alloc(CACHE_LINE, sizeof *g);
  if (g == NULL)
    return SF_ENOMEM;
  memset(g, 0, sizeof *g);
  g->layout = c->layout;
  g->seq_bits = c->layout.sequence_bits;
  g->ts_shift = c->layout.sequence_bits + c->layout.machine_bits;
  g->seq_max = sf_layout_max_sequence(&c->layout);
  g->machine_max = sf_layout_max_machine(&c->layout);
  g->ts_max = sf_layout_max_timestamp(&c->layout);
  g->epoch_ms = c->layout.epoch_ms;
  g->tolerance_ms = c->tolerance_ms;
  g->clock = clock;
  g->clock_ctx = c->clock_ctx;
  g->persist = c->persist;
  g->persist_ctx = c->persist_ctx;
  if (c->persist != NULL) {
    g->lead_ms = c->persist_lead_ms;
    g->renew_lead = c->persist_lead_ms / 2;
    atomic_init(&g->mark, 0); /* the first ID persists a mark */
  } else {
    atomic_init(&g->mark, INT64_MAX);
  }
  if (pthread_mutex_init(&g->persist_mu, NULL) != 0) {
    free(g);
    return SF_ENOMEM;
  }
  atomic_init(&g->machine, c->machine_id);

  atomic_init(&g->state, floor_state(g, c->floor_unix_ms));
  *out = g;
  return SF_OK;
}

int sf_gen_raise_floor(sf_gen *g, int64_t unix_ms) {
  if (g == NULL || unix_ms < 0 || unix_ms > MAX_FLOOR_MS)
    return SF_EINVAL;
  uint64_t want = floor_state(g, unix_ms);
  uint64_t old = atomic_load_explicit(&g->state, memory_order_relaxed);
  /* Only ever forward: a swap that loses to an issue retries against the
   * newer state, and stops once the state is past the floor. */
  while (old < want &&
         !atomic_compare_exchange_weak_explicit(
             &g->state, &old, want, memory_order_seq_cst, memory_order_relaxed))
    ;
  return SF_OK;
}

void sf_gen_free(sf_gen *g) {
  if (g == NULL)
    return;
  pthread_mutex_destroy(&g->persist_mu);
  free(g);
}

static inline int64_t now_ts(const sf_gen *g) {
  return floor_div_ms(g->clock(g->clock_ctx)) - g->epoch_ms;
}

/* Moves the durable mark past unix_ms. An ID below the current mark only
 * tries (trylock, at most once a millisecond after a failure) and is never
 * refused; one at or past the mark waits for the persist and gets SF_ESTATE
 * when it fails. */
static int renew_mark(sf_gen *g, int64_t unix_ms) {
  int64_t mark = atomic_load_explicit(&g->mark, memory_order_acquire);
  int early = unix_ms < mark;
  if (early) {
    if (pthread_mutex_trylock(&g->persist_mu) != 0)
      return SF_OK;
    if (unix_ms < g->retry_after_ms) {
      pthread_mutex_unlock(&g->persist_mu);
      return SF_OK;
    }
  } else {
    pthread_mutex_lock(&g->persist_mu);
  }
  int rc = SF_OK;
  mark = atomic_load_explicit(&g->mark, memory_order_relaxed);
  if (unix_ms >= mark - g->renew_lead) {
    int64_t next = unix_ms + g->lead_ms;
    if (g->persist(g->persist_ctx, next) == SF_OK) {
      atomic_store_explicit(&g->mark, next, memory_order_release);
      count(&g->persists);
    } else {
      count(&g->persist_errors);
      g->retry_after_ms = unix_ms + 1;
      if (unix_ms >= mark)
        rc = SF_ESTATE;
    }
  }
  pthread_mutex_unlock(&g->persist_mu);
  return rc;
}

/* Takes a run of 1..want consecutive IDs, *first .. *first + *n - 1, all in
 * one millisecond. */
static inline int reserve(sf_gen *g, uint64_t want, uint64_t *first,
                          uint64_t *n, int64_t *wait_ms) {
  /* The state first, then the clock: every ID in that state was issued
   * before this clock read, so a later ms in it means the clock is behind. */
  uint64_t old = atomic_load_explicit(&g->state, memory_order_relaxed);
  int64_t now = now_ts(g);
  int64_t ts;
  uint64_t seq, base, take;
  for (;;) {
    uint64_t m = atomic_load_explicit(&g->machine, memory_order_relaxed);
    int64_t last_ts = (int64_t)(old >> g->ts_shift);
    if (now > last_ts) {
      ts = now;
      seq = 0;
    } else {
      int64_t behind = last_ts - now;
      if (behind > g->tolerance_ms) {
        count(&g->clock_back_errors);
        if (wait_ms != NULL)
          *wait_ms = behind;
        return SF_ECLOCKBACK;
      }
      uint64_t last_seq = old & g->seq_max;
      uint64_t last_m = (old >> g->seq_bits) & g->machine_max;
      if (last_m == m && last_seq < g->seq_max) {
        ts = last_ts;
        seq = last_seq + 1;
      } else {
        /* This millisecond is used up (or the clock is behind it, within
         * the tolerance): wait for the next one. */
        if (last_ts >= g->ts_max)
          return SF_EOVERFLOW;
        count(behind > 0 ? &g->clock_back_waits : &g->sequence_waits);
        sf__sleep_until(g->clock, g->clock_ctx,
                        (last_ts + 1 + g->epoch_ms) * SF__NS_PER_MS);
        old = atomic_load_explicit(&g->state, memory_order_relaxed);
        now = now_ts(g);
        continue;
      }
    }
    if (ts > g->ts_max)
      return SF_EOVERFLOW;
    take = g->seq_max - seq + 1;
    if (take > want)
      take = want;
    base = ((uint64_t)ts << g->ts_shift) | (m << g->seq_bits);
    /* Relaxed is enough: uniqueness needs only the single word's total
     * modification order; IDs carry no other data between threads. */
    if (atomic_compare_exchange_weak_explicit(
            &g->state, &old, base | (seq + take - 1), memory_order_relaxed,
            memory_order_relaxed))
      break;
    /* Another thread got in first. If it reached a later ms than our clock
     * read, our read is stale (we were preempted), not a clock step: read
     * again, so the state is always compared with a clock read after it. */
    if ((int64_t)(old >> g->ts_shift) > now)
      now = now_ts(g);
  }
  int64_t unix_ms = ts + g->epoch_ms;
  if (unix_ms >=
      atomic_load_explicit(&g->mark, memory_order_acquire) - g->renew_lead) {
    int rc = renew_mark(g, unix_ms);
    if (rc != SF_OK)
      return rc;
  }
  *first = base | seq;
  *n = take;
  return SF_OK;
}

int sf_gen_next(sf_gen *g, uint64_t *id, int64_t *wait_ms) {
  uint64_t first, n;
  int rc = reserve(g, 1, &first, &n, wait_ms);
  if (rc == SF_OK)
    *id = first;
  return rc;
}

int sf_gen_next_n(sf_gen *g, uint64_t *ids, size_t n, int64_t *wait_ms) {
  if (n > 0 && ids == NULL)
    return SF_EINVAL;
  size_t i = 0;
  while (i < n) {
    uint64_t first, got;
    int rc = reserve(g, n - i, &first, &got, wait_ms);
    if (rc != SF_OK)
      return rc;
    for (uint64_t k = 0; k < got; k++)
      ids[i++] = first + k;
  }
  return SF_OK;
}

int sf_gen_set_machine_id(sf_gen *g, uint64_t machine_id) {
  if (machine_id > g->machine_max)
    return SF_EMACHINE;
  atomic_store_explicit(&g->machine, machine_id, memory_order_relaxed);
  return SF_OK;
}

uint64_t sf_gen_machine_id(const sf_gen *g) {
  return atomic_load_explicit(&((sf_gen *)g)->machine, memory_order_relaxed);
}

const sf_layout *sf_gen_layout(const sf_gen *g) {
  return &g->layout;
}

void sf_gen_stats_get(const sf_gen *g, sf_gen_stats *out) {
  sf_gen *w = (sf_gen *)g; /* atomic loads take non-const pointers */
  out->clock_back_waits =
      atomic_load_explicit(&w->clock_back_waits, memory_order_relaxed);
  out->clock_back_errors =
      atomic_load_explicit(&w->clock_back_errors, memory_order_relaxed);
  out->sequence_waits =
      atomic_load_explicit(&w->sequence_waits, memory_order_relaxed);
  out->persists = atomic_load_explicit(&w->persists, memory_order_relaxed);
  out->persist_errors =
      atomic_load_explicit(&w->persist_errors, memory_order_relaxed);
  int64_t mark = atomic_load_explicit(&w->mark, memory_order_relaxed);
  out->mark_unix_ms = mark == INT64_MAX ? 0 : mark;
  uint64_t state = atomic_load_explicit(&w->state, memory_order_relaxed);
  out->last_unix_ms =
      state == 0 ? 0 : (int64_t)(state >> g->ts_shift) + g->epoch_ms;
}
