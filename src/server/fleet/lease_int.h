/*
 * lease_int.h - the lease's insides, shared by lease.c (the state machine,
 * the keepalive thread, publishing) and lease_claim.c (which id to claim,
 * the claim and the marks). Nothing else includes it.
 */
#ifndef SF_SRV_LEASE_INT_H
#define SF_SRV_LEASE_INT_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "etcd.h"
#include "lease.h"

#define RETRY_MS 250 /* between failed attempts */

struct sf_lease {
  /* immutable after start */
  const sf_etcd_ops *ops;
  void *etcd;
  sf_etcd *owned; /* the real client, when ops was not given */
  int ttl_req_s;
  uint64_t min_id, max_id; /* the ids this node may claim */
  char *prefix;            /* for messages */
  int64_t leap_ms;         /* 0: one TTL as granted */
  sf_clock_fn clock;
  void *clock_ctx;

  /* the keepalive thread's (start's and stop's while it is not running) */
  int64_t held_id; /* the id last claimed, -1 */
  int64_t held_floor, held_mark;
  int64_t mark_retry_ns; /* no mark write before this after a failure */
  bool mark_refused;     /* the last mark write was refused (logged once) */
  int64_t backoff_ms;    /* the last wait between claims while none is held */
  uint64_t rng;          /* xorshift64 state: the backoff's jitter */

  /* published under the seqlock */
  _Atomic uint64_t seq; /* odd while a write is in progress */
  _Atomic int64_t id, floor_ms, mark_ms, deadline_ns;
  _Atomic uint64_t gen;

  /* read by any thread */
  _Atomic int state; /* sf_lease_state */
  _Atomic int64_t lease_id;
  _Atomic int ttl_s; /* as granted by etcd */
  _Atomic uint64_t acquisitions, renewals, renew_errors, losses;
  _Atomic uint64_t mark_writes, mark_errors;
  atomic_bool stopping, kicked;
  _Atomic uint64_t attempts; /* tries to hold an id, taken back or claimed */
  pthread_mutex_t why_mu;
  char why[SF_LEASE_WHY_MAX]; /* why no id is held ("" while one is) */

  int wake_fd; /* eventfd: sf__lease_kick and sf__lease_stop */
  pthread_t thread;
  bool thread_started;
};

/* CLOCK_BOOTTIME is CLOCK_MONOTONIC that keeps counting while the machine
 * is suspended: etcd's lease keeps expiring during our suspend, so our
 * deadline must too. */
#ifdef CLOCK_BOOTTIME
#define LEASE_CLOCK CLOCK_BOOTTIME
#else
#define LEASE_CLOCK CLOCK_MONOTONIC
#endif

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(LEASE_CLOCK, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t margin_ns(int ttl_s) {
  int64_t ttl = (int64_t)ttl_s * 1000000000;
  int64_t m = ttl / 5;
  return m < 1000000000 ? 1000000000 : m;
}

/* gen_ms is the generator's clock in unix ms: the time IDs carry. */
static inline int64_t gen_ms(const sf_lease *l) {
  return l->clock(l->clock_ctx) / 1000000;
}

static inline int64_t leap_ms(const sf_lease *l) {
  return l->leap_ms ? l->leap_ms : (int64_t)atomic_load(&l->ttl_s) * 1000;
}

typedef struct view {
  int64_t id, floor, mark, deadline;
  uint64_t gen;
} view;

/* sf__lease_pub writes the published fields under the seqlock; new_gen
 * moves the generation (a new id, a loss, an id taken back), otherwise the
 * same lease goes on. sf__lease_read_view reads them, all of one write.
 * Inline, so that lease_claim.c and lease.c share them without calling
 * each other both ways. */
static inline void sf__lease_pub(sf_lease *l, int64_t id, int64_t floor,
                                 int64_t mark, int64_t deadline, bool new_gen) {
  uint64_t s = atomic_load_explicit(&l->seq, memory_order_relaxed);
  atomic_store_explicit(&l->seq, s + 1, memory_order_relaxed);
  atomic_thread_fence(memory_order_release);
  atomic_store_explicit(&l->id, id, memory_order_relaxed);
  atomic_store_explicit(&l->floor_ms, floor, memory_order_relaxed);
  atomic_store_explicit(&l->mark_ms, mark, memory_order_relaxed);
  atomic_store_explicit(&l->deadline_ns, deadline, memory_order_relaxed);
  if (new_gen)
    atomic_fetch_add_explicit(&l->gen, 1, memory_order_relaxed);
  atomic_store_explicit(&l->seq, s + 2, memory_order_release);
  if (new_gen)
    atomic_store(&l->state, id >= 0 ? SF_LEASE_HELD : SF_LEASE_LOST);
}

static inline void sf__lease_read_view(sf_lease *l, view *v) {
  for (unsigned tries = 0;; tries++) {
    uint64_t s = atomic_load_explicit(&l->seq, memory_order_acquire);
    if (!(s & 1)) {
      v->id = atomic_load_explicit(&l->id, memory_order_relaxed);
      v->floor = atomic_load_explicit(&l->floor_ms, memory_order_relaxed);
      v->mark = atomic_load_explicit(&l->mark_ms, memory_order_relaxed);
      v->deadline = atomic_load_explicit(&l->deadline_ns, memory_order_relaxed);
      v->gen = atomic_load_explicit(&l->gen, memory_order_relaxed);
      atomic_thread_fence(memory_order_acquire);
      if (atomic_load_explicit(&l->seq, memory_order_relaxed) == s)
        return;
    }
    if (tries > 16)
      sched_yield(); /* the writer was preempted mid-write */
  }
}

static inline int64_t deadline_after(int64_t t0, int ttl) {
  return t0 + (int64_t)ttl * 1000000000 - margin_ns(ttl);
}

enum { CLAIM_OK = 0, CLAIM_RETRY = -1, CLAIM_FULL = -2 };

/* sf__lease_claim grants a new lease and takes a free id under it (its
 * first mark stored, the id published): CLAIM_OK, CLAIM_FULL (every id
 * taken) or CLAIM_RETRY, with err, and the lease revoked, unless OK. */
int sf__lease_claim(sf_lease *l, char *err, size_t errlen);

enum { MARK_STORED, MARK_FENCED, MARK_FAILED };

/* sf__lease_store_mark raises id's mark to *mark (etcd.c: only upwards)
 * and counts it: MARK_STORED with *mark as stored (higher when a write of
 * ours counted as failed landed after all), MARK_FENCED, or MARK_FAILED. */
int sf__lease_store_mark(sf_lease *l, uint64_t id, int64_t lease,
                         int64_t *mark);

#endif /* SF_SRV_LEASE_INT_H */
