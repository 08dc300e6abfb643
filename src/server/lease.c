/*
 * lease.c - the machine-id lease's state machine and keepalive thread, on
 * an etcd operations table (etcd.h: the real client, or a fake in tests).
 *
 * Claim: grant a lease; scan the prefix (ids held, marks stored); try the
 * free ids in order - first those whose mark is not ahead of our clock,
 * lowest id first, then the rest, lowest mark first - until a claim
 * transaction wins. The claim returns the id's stored mark M. Write the
 * first mark of our own (max(now, M) + leap, fenced) and publish. (Why
 * this order, and the lease's deadline: lease.h.)
 *
 * The floor, exactly: every holder issues only IDs whose unix ms is below
 * a mark etcd acknowledged (sf_lease_snap.mark_ms is strict), and etcd's
 * mark never goes down (etcd.c: each write is a compare-and-set upwards).
 * So every ID an earlier holder issued has a unix ms <= M - 1, M the mark
 * our claim read: floor_ms = M - 1, and we issue only at M or later.
 *
 * Publishing: the keepalive thread is the only writer after start (start
 * and stop write while it is not running). The published fields (id,
 * generation, floor, mark, deadline) are written under a seqlock, so a
 * reader always gets a set that belongs together.
 */
#include "lease.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "etcd.h"

#define RETRY_MS 250 /* between failed attempts */

struct sf_lease {
  /* immutable after start */
  const sf_etcd_ops *ops;
  void *etcd;
  sf_etcd *owned; /* the real client, when ops was not given */
  int ttl_req_s;
  uint64_t max_id;
  int64_t leap_ms; /* 0: one TTL as granted */
  sf_clock_fn clock;
  void *clock_ctx;

  /* the keepalive thread's (start's and stop's while it is not running) */
  int64_t held_id; /* the id last claimed, -1 */
  int64_t held_floor, held_mark;
  int64_t mark_retry_ns; /* no mark write before this after a failure */
  bool mark_refused;     /* the last mark write was refused (logged once) */

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

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(LEASE_CLOCK, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t margin_ns(int ttl_s) {
  int64_t ttl = (int64_t)ttl_s * 1000000000;
  int64_t m = ttl / 5;
  return m < 1000000000 ? 1000000000 : m;
}

/* gen_ms is the generator's clock in unix ms: the time IDs carry. */
static int64_t gen_ms(const sf_lease *l) {
  return l->clock(l->clock_ctx) / 1000000;
}

static int64_t leap_ms(const sf_lease *l) {
  return l->leap_ms ? l->leap_ms : (int64_t)atomic_load(&l->ttl_s) * 1000;
}

/* pub writes the published fields; new_gen moves the generation (a new
 * id, a loss, an id taken back), otherwise the same lease goes on. */
static void pub(sf_lease *l, int64_t id, int64_t floor, int64_t mark,
                int64_t deadline, bool new_gen) {
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

typedef struct view {
  int64_t id, floor, mark, deadline;
  uint64_t gen;
} view;

static void read_view(sf_lease *l, view *v) {
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

/* deadline_after is when an id renewed at t0 for ttl seconds stops being
 * safe. */
static int64_t deadline_after(int64_t t0, int ttl) {
  return t0 + (int64_t)ttl * 1000000000 - margin_ns(ttl);
}

enum { CLAIM_OK = 0, CLAIM_RETRY = -1, CLAIM_FULL = -2 };

typedef struct cand {
  uint32_t id;
  int64_t ahead; /* the mark when it is ahead of our clock, else -1 */
} cand;

static int cand_cmp(const void *a_, const void *b_) {
  const cand *a = a_, *b = b_;
  if (a->ahead != b->ahead)
    return a->ahead < b->ahead ? -1 : 1;
  return a->id < b->id ? -1 : a->id > b->id;
}

/* candidates lists the free ids in the order they are tried (see the top
 * of the file): the count, or -1 when out of memory. */
static long candidates(sf_lease *l, const sf_etcd_ids *ids, cand **out) {
  cand *c = malloc(sizeof *c * (size_t)(l->max_id + 1));
  if (!c)
    return -1;
  int64_t now = gen_ms(l);
  long n = 0;
  for (uint64_t id = 0; id <= l->max_id; id++) {
    if (ids->taken[id / 8] & (1u << (id % 8)))
      continue;
    c[n].id = (uint32_t)id;
    c[n].ahead = ids->mark[id] > now ? ids->mark[id] : -1;
    n++;
  }
  qsort(c, (size_t)n, sizeof *c, cand_cmp);
  *out = c;
  return n;
}

enum { MARK_STORED, MARK_FENCED, MARK_FAILED };

/* store_mark raises id's mark to *mark (etcd.c: only upwards) and counts
 * it: MARK_STORED with *mark as stored (higher when a write of ours counted
 * as failed landed after all), MARK_FENCED, or MARK_FAILED. */
static int store_mark(sf_lease *l, uint64_t id, int64_t lease, int64_t *mark) {
  char err[512];
  bool owned = false;
  int64_t stored = 0;
  int rc = l->ops->raise_mark(l->etcd, id, lease, *mark, &owned, &stored, err,
                              sizeof err);
  if (rc == SF_ETCD_OK && owned && stored >= *mark) {
    *mark = stored;
    l->mark_refused = false;
    atomic_fetch_add(&l->mark_writes, 1);
    return MARK_STORED;
  }
  if (rc == SF_ETCD_OK && !owned)
    return MARK_FENCED;
  if (rc == SF_ETCD_REFUSED && !l->mark_refused)
    fprintf(stderr, "snowflaked: etcd: %s\n", err);
  l->mark_refused = rc == SF_ETCD_REFUSED;
  atomic_fetch_add(&l->mark_errors, 1);
  return MARK_FAILED;
}

/* first_mark stores the first mark of the holder of id (claimed with the
 * stored mark stored) and publishes the id under a new generation. */
static void first_mark(sf_lease *l, uint64_t id, int64_t lease, int ttl,
                       int64_t t0, int64_t stored) {
  int64_t floor = stored > 0 ? stored - 1 : 0;
  int64_t now = gen_ms(l), mark = (now > stored ? now : stored) + leap_ms(l);
  if (store_mark(l, id, lease, &mark) != MARK_STORED) {
    /* Nothing above the floor is issuable until the keepalive thread
     * stores a mark (it tries at once). */
    mark = stored > 0 ? stored : 0;
  }
  l->held_id = (int64_t)id;
  l->held_floor = floor;
  l->held_mark = mark;
  atomic_store(&l->lease_id, lease);
  atomic_store(&l->ttl_s, ttl);
  atomic_fetch_add(&l->acquisitions, 1);
  pub(l, (int64_t)id, floor, mark, deadline_after(t0, ttl), true);
}

/* claim grants a new lease and takes a free id under it. */
static int claim(sf_lease *l, char *err, size_t errlen) {
  int64_t lease = 0, t0 = now_ns();
  int ttl = 0;
  if (l->ops->grant(l->etcd, l->ttl_req_s, &lease, &ttl, err, errlen) !=
      SF_ETCD_OK)
    return CLAIM_RETRY;
  sf_etcd_ids ids = {.max_id = l->max_id};
  ids.taken = calloc((size_t)(l->max_id / 8 + 1), 1);
  ids.mark = calloc((size_t)(l->max_id + 1), sizeof *ids.mark);
  cand *c = NULL;
  long n = -1;
  int rc = SF_ETCD_UNREACHABLE;
  if (!ids.taken || !ids.mark)
    snprintf(err, errlen, "out of memory");
  else if ((rc = l->ops->scan(l->etcd, &ids, err, errlen)) == SF_ETCD_OK &&
           (n = candidates(l, &ids, &c)) < 0)
    snprintf(err, errlen, "out of memory");
  for (long i = 0; i < n && rc == SF_ETCD_OK; i++) {
    bool won = false;
    int64_t stored = 0;
    rc = l->ops->claim(l->etcd, c[i].id, lease, &won, &stored, err, errlen);
    if (rc == SF_ETCD_OK && won) {
      first_mark(l, c[i].id, lease, ttl, t0, stored);
      break;
    }
  }
  bool ok = atomic_load(&l->lease_id) == lease;
  free(c);
  free(ids.taken);
  free(ids.mark);
  if (ok)
    return CLAIM_OK;
  char e2[64];
  l->ops->revoke(l->etcd, lease, e2, sizeof e2);
  if (rc == SF_ETCD_OK && n >= 0) {
    snprintf(err, errlen,
             "every machine id 0..%llu under the etcd prefix is "
             "taken",
             (unsigned long long)l->max_id);
    return CLAIM_FULL;
  }
  return CLAIM_RETRY;
}

/* wait_ms sleeps up to ms, or less when kicked or stopped. */
static void wait_ms(sf_lease *l, int64_t ms) {
  if (ms <= 0 || atomic_load(&l->stopping) || atomic_load(&l->kicked))
    return;
  struct pollfd p = {.fd = l->wake_fd, .events = POLLIN};
  if (poll(&p, 1, ms > 60000 ? 60000 : (int)ms) > 0) {
    uint64_t v;
    if (read(l->wake_fd, &v, sizeof v) < 0 && errno != EAGAIN)
      perror("snowflaked: lease: read(eventfd)");
  }
}

static void wake(sf_lease *l) {
  uint64_t one = 1;
  if (write(l->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
    perror("snowflaked: lease: write(eventfd)");
}

/* lose gives up the id; a held id counts as a loss once. */
static void lose(sf_lease *l, const char *why) {
  if (atomic_load(&l->state) == SF_LEASE_HELD) {
    atomic_fetch_add(&l->losses, 1);
    fprintf(stderr, "snowflaked: etcd: machine id %lld given up: %s\n",
            (long long)l->held_id, why);
  }
  pub(l, -1, 0, 0, 0, true);
}

/* recover runs while no id is held: take the old id back if etcd still has
 * the lease and our key on it (its floor and mark are still ours);
 * otherwise claim afresh. */
static void recover(sf_lease *l) {
  char err[512];
  int64_t lease = atomic_load(&l->lease_id);
  if (lease != 0) {
    int ttl = 0;
    int64_t t0 = now_ns(), owner = 0;
    int rc = l->ops->keepalive(l->etcd, lease, &ttl, err, sizeof err);
    if (rc == SF_ETCD_UNREACHABLE) {
      atomic_fetch_add(&l->renew_errors, 1);
      return;
    }
    if (rc == SF_ETCD_OK && ttl > 0 && l->held_id >= 0) {
      rc =
          l->ops->owner(l->etcd, (uint64_t)l->held_id, &owner, err, sizeof err);
      if (rc == SF_ETCD_UNREACHABLE)
        return;
      if (rc == SF_ETCD_OK && owner == lease) {
        atomic_store(&l->ttl_s, ttl);
        atomic_fetch_add(&l->renewals, 1);
        pub(l, l->held_id, l->held_floor, l->held_mark, deadline_after(t0, ttl),
            true);
        fprintf(stderr,
                "snowflaked: etcd: lease renewed; machine id %lld "
                "held again\n",
                (long long)l->held_id);
        return;
      }
    }
    /* etcd dropped the lease, or our key is gone from it: start over. */
    l->ops->revoke(l->etcd, lease, err, sizeof err);
    atomic_store(&l->lease_id, 0);
  }
  if (claim(l, err, sizeof err) == CLAIM_OK)
    fprintf(stderr, "snowflaked: etcd: took machine id %lld (lease %llx)\n",
            (long long)l->held_id,
            (unsigned long long)atomic_load(&l->lease_id));
}

/* renew sends one keepalive: true when the lease was renewed. */
static bool renew(sf_lease *l) {
  char err[512];
  int64_t t0 = now_ns();
  int ttl = 0;
  int rc = l->ops->keepalive(l->etcd, atomic_load(&l->lease_id), &ttl, err,
                             sizeof err);
  if (atomic_load(&l->stopping))
    return false;
  if (rc == SF_ETCD_OK && ttl > 0) {
    view v;
    read_view(l, &v);
    atomic_store(&l->ttl_s, ttl);
    pub(l, v.id, v.floor, v.mark, deadline_after(t0, ttl), false);
    atomic_fetch_add(&l->renewals, 1);
    return true;
  }
  atomic_fetch_add(&l->renew_errors, 1);
  if (rc == SF_ETCD_OK) { /* etcd answered: the lease is gone */
    lose(l, "the lease expired in etcd");
    atomic_store(&l->lease_id, 0);
  } else if (now_ns() >= atomic_load(&l->deadline_ns)) {
    lose(l, err);
  }
  return false;
}

/* mark_due_ms is how long until the mark must move (<= 0: now). */
static int64_t mark_due_ms(sf_lease *l) {
  if (atomic_load(&l->kicked))
    return 0;
  return l->held_mark - leap_ms(l) / 2 - gen_ms(l);
}

/* renew_mark stores the next mark, max(now, floor + 1) + leap, fenced on our
 * key being bound to our lease, and publishes it once etcd has it. */
static void renew_mark(sf_lease *l) {
  atomic_store(&l->kicked, false);
  int64_t now = gen_ms(l);
  int64_t base = now > l->held_floor ? now : l->held_floor + 1;
  int64_t mark = base + leap_ms(l);
  if (mark <= l->held_mark)
    return; /* a kick with nothing to gain: the clock did not move on */
  int rc =
      store_mark(l, (uint64_t)l->held_id, atomic_load(&l->lease_id), &mark);
  if (rc == MARK_STORED) {
    l->held_mark = mark;
    view v;
    read_view(l, &v);
    pub(l, v.id, v.floor, mark, v.deadline, false);
  } else if (rc == MARK_FENCED) {
    lose(l, "its key in etcd is no longer bound to our lease");
  } else {
    l->mark_retry_ns = now_ns() + RETRY_MS * 1000000;
  }
}

static void *keepalive_main(void *arg) {
  sf_lease *l = arg;
  int64_t next_ka = now_ns() + (int64_t)atomic_load(&l->ttl_s) * 1000000000 / 3;
  while (!atomic_load(&l->stopping)) {
    bool held = atomic_load(&l->state) == SF_LEASE_HELD;
    int64_t wait = (next_ka - now_ns()) / 1000000;
    if (held) {
      int64_t m = mark_due_ms(l);
      int64_t r = (l->mark_retry_ns - now_ns()) / 1000000;
      m = m > r ? m : r;
      wait = m < wait ? m : wait;
    }
    wait_ms(l, wait);
    if (atomic_load(&l->stopping))
      break;
    if (atomic_load(&l->state) != SF_LEASE_HELD) {
      atomic_store(&l->kicked, false); /* no mark to move */
      if (now_ns() < next_ka)
        continue; /* a kick: recovery keeps its own pace */
      recover(l);
      next_ka = now_ns() + RETRY_MS * 1000000;
      if (atomic_load(&l->state) == SF_LEASE_HELD)
        next_ka += (int64_t)atomic_load(&l->ttl_s) * 1000000000 / 3;
      continue;
    }
    if (now_ns() >= next_ka) {
      int64_t t0 = now_ns();
      bool ok = renew(l);
      int64_t every = (int64_t)atomic_load(&l->ttl_s) * 1000000000 / 3;
      next_ka = t0 + (ok ? every : RETRY_MS * 1000000);
    }
    if (atomic_load(&l->state) == SF_LEASE_HELD && mark_due_ms(l) <= 0 &&
        now_ns() >= l->mark_retry_ns) {
      renew_mark(l);
      if (atomic_load(&l->state) != SF_LEASE_HELD) /* fenced out */
        next_ka = now_ns() + RETRY_MS * 1000000;
    }
  }
  return NULL;
}

static void lease_free(sf_lease *l) {
  if (!l)
    return;
  if (l->wake_fd >= 0)
    close(l->wake_fd);
  sf__etcd_free(l->owned);
  free(l);
}

/* lease_new makes l from c, its etcd client included: 0 or -1 with err. */
static int lease_new(const sf_lease_config *c, sf_lease **out, char *err,
                     size_t errlen) {
  sf_lease *l = calloc(1, sizeof *l);
  if (!l) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  l->ttl_req_s = c->ttl_s ? c->ttl_s : SF_LEASE_DEFAULT_TTL_S;
  atomic_init(&l->ttl_s, l->ttl_req_s);
  atomic_init(&l->id, -1);
  atomic_init(&l->state, SF_LEASE_LOST);
  l->held_id = -1;
  l->max_id = c->max_id;
  l->leap_ms = c->leap_ms;
  l->clock = c->clock ? c->clock : sf_clock_monotonic;
  l->clock_ctx = c->clock_ctx;
  l->ops = c->ops ? c->ops : &sf__etcd_ops;
  l->etcd = c->ops_ctx;
  *out = l;
  if (l->wake_fd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    return -1;
  }
  if (c->max_id >= SF_LEASE_MAX_IDS) {
    snprintf(err, errlen,
             "machine id range 0..%llu too large for etcd leases "
             "(at most 0..%u)",
             (unsigned long long)c->max_id, SF_LEASE_MAX_IDS - 1);
    return -1;
  }
  if (c->ops)
    return 0;
  /* Each request gets about a third of the TTL, so a dead endpoint still
   * leaves time to try the next one before the id's deadline. */
  long t = (long)l->ttl_req_s * 1000 / 3;
  const char *prefix =
      c->prefix && *c->prefix ? c->prefix : SF_LEASE_DEFAULT_PREFIX;
  int rc = sf__etcd_new(c->endpoints, prefix,
                        t < 300    ? 300
                        : t > 3000 ? 3000
                                   : (int)t,
                        &l->stopping, &l->owned, err, errlen);
  l->etcd = l->owned;
  return rc;
}

int sf__lease_start(const sf_lease_config *cfg, sf_lease **out, char *err,
                    size_t errlen) {
  sf_lease *l = NULL;
  *out = NULL;
  if (lease_new(cfg, &l, err, errlen) != 0) {
    lease_free(l);
    return -1;
  }
  /* Keep trying for about one TTL: etcd may still be starting. */
  int64_t give_up = now_ns() + (int64_t)l->ttl_req_s * 1000000000;
  char why[512] = "";
  int rc;
  while ((rc = claim(l, why, sizeof why)) == CLAIM_RETRY && now_ns() < give_up)
    usleep(200 * 1000);
  if (rc == CLAIM_FULL) {
    snprintf(err, errlen, "%s \"%s\"", why,
             cfg->prefix && *cfg->prefix ? cfg->prefix
                                         : SF_LEASE_DEFAULT_PREFIX);
  } else if (rc != CLAIM_OK) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: no etcd answered at %s within %d s (last "
             "error: %s)",
             cfg->endpoints, l->ttl_req_s, why);
  } else if (pthread_create(&l->thread, NULL, keepalive_main, l) != 0) {
    snprintf(err, errlen, "cannot start the lease keepalive thread");
    l->ops->revoke(l->etcd, atomic_load(&l->lease_id), why, sizeof why);
  } else {
    l->thread_started = true;
    *out = l;
    return 0;
  }
  lease_free(l);
  return -1;
}

int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s) {
  view v = {.id = -1};
  if (l)
    read_view(l, &v);
  s->gen = v.gen;
  s->floor_ms = v.floor;
  s->mark_ms = v.mark;
  s->id = v.id;
  if (v.id < 0 || v.deadline == 0 || now_ns() >= v.deadline) {
    s->id = -1;
    return -1;
  }
  return 0;
}

void sf__lease_kick(sf_lease *l) {
  if (l && !atomic_exchange(&l->kicked, true))
    wake(l);
}

void sf__lease_stats_get(sf_lease *l, sf_lease_stats *o) {
  memset(o, 0, sizeof *o);
  if (!l) {
    o->machine_id = -1;
    o->state = SF_LEASE_STOPPED;
    return;
  }
  sf_lease_snap s;
  o->machine_id = sf__lease_snapshot(l, &s) == 0 ? s.id : -1;
  o->state = (sf_lease_state)atomic_load(&l->state);
  if (o->state == SF_LEASE_HELD && o->machine_id < 0)
    o->state = SF_LEASE_LOST; /* past the deadline, thread not yet aware */
  o->lease_id = atomic_load(&l->lease_id);
  o->ttl_s = atomic_load(&l->ttl_s);
  o->acquisitions = atomic_load(&l->acquisitions);
  o->renewals = atomic_load(&l->renewals);
  o->renew_errors = atomic_load(&l->renew_errors);
  o->losses = atomic_load(&l->losses);
  o->mark_ms = o->machine_id >= 0 ? s.mark_ms : 0;
  o->floor_ms = o->machine_id >= 0 ? s.floor_ms : 0;
  o->mark_writes = atomic_load(&l->mark_writes);
  o->mark_errors = atomic_load(&l->mark_errors);
}

void sf__lease_stop(sf_lease *l) {
  if (!l)
    return;
  atomic_store(&l->stopping, true);
  wake(l);
  if (l->thread_started)
    pthread_join(l->thread, NULL);
  pub(l, -1, 0, 0, 0, true);
  atomic_store(&l->state, SF_LEASE_STOPPED);
  int64_t lease = atomic_load(&l->lease_id);
  if (lease != 0) {
    char err[256];
    atomic_store(&l->stopping, false); /* the transport checks it */
    l->ops->revoke(l->etcd, lease, err, sizeof err);
  }
  lease_free(l);
}
