/*
 * lease.c - the machine-id lease's state machine and keepalive thread, on
 * an etcd operations table (etcd.h: the real client, or a fake in tests);
 * the claim and the marks are lease_claim.c's.
 *
 * Publishing: the keepalive thread is the only writer after start (start
 * and stop write while it is not running). The published fields (id,
 * generation, floor, mark, deadline) are written under a seqlock, so a
 * reader always gets a set that belongs together.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "lease_int.h"

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

/* set_why records why no id is held ("": one is), and logs each change of
 * cause once, not each failed try. */
static void set_why(sf_lease *l, const char *why) {
  char w[sizeof l->why];
  snprintf(w, sizeof w, "%s", why);
  for (char *p = w; *p; p++) /* one line in every protocol */
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      *p = ' ';
  pthread_mutex_lock(&l->why_mu);
  bool changed = strcmp(l->why, w) != 0;
  if (changed)
    memcpy(l->why, w, sizeof w);
  pthread_mutex_unlock(&l->why_mu);
  if (changed && *w)
    fprintf(stderr, "snowflaked: etcd: no machine id: %s (retrying)\n", w);
}

/* lose gives up the id; a held id counts as a loss once. */
static void lose(sf_lease *l, const char *why) {
  if (atomic_load(&l->state) == SF_LEASE_HELD) {
    atomic_fetch_add(&l->losses, 1);
    fprintf(stderr, "snowflaked: etcd: machine id %lld given up: %s\n",
            (long long)l->held_id, why);
  }
  sf__lease_pub(l, -1, 0, 0, 0, true);
  char w[SF_LEASE_WHY_MAX];
  snprintf(w, sizeof w, "machine id %lld given up: %s", (long long)l->held_id,
           why);
  set_why(l, w);
}

/* backoff_ms is the wait before the next try while no id is held: doubling
 * from SF_LEASE_BACKOFF_MIN_MS up to SF_LEASE_BACKOFF_MAX_MS, each drawn
 * from [half, whole] so that nodes started together spread out. */
static int64_t backoff_ms(sf_lease *l) {
  int64_t b = l->backoff_ms ? l->backoff_ms * 2 : SF_LEASE_BACKOFF_MIN_MS;
  l->backoff_ms = b < SF_LEASE_BACKOFF_MAX_MS ? b : SF_LEASE_BACKOFF_MAX_MS;
  l->rng ^= l->rng << 13;
  l->rng ^= l->rng >> 7;
  l->rng ^= l->rng << 17;
  return l->backoff_ms / 2 +
         (int64_t)(l->rng % (uint64_t)(l->backoff_ms / 2 + 1));
}

/* recover runs while no id is held: take the old id back if etcd still has
 * the lease and our key on it (its floor and mark are still ours);
 * otherwise claim afresh. */
static void try_recover(sf_lease *l, char *err, size_t errlen) {
  int64_t lease = atomic_load(&l->lease_id);
  if (lease != 0) {
    int ttl = 0;
    int64_t t0 = now_ns(), owner = 0;
    int rc = l->ops->keepalive(l->etcd, lease, &ttl, err, errlen);
    if (rc == SF_ETCD_UNREACHABLE) {
      atomic_fetch_add(&l->renew_errors, 1);
      return;
    }
    if (rc == SF_ETCD_OK && ttl > 0 && l->held_id >= 0) {
      rc = l->ops->owner(l->etcd, (uint64_t)l->held_id, &owner, err, errlen);
      if (rc == SF_ETCD_UNREACHABLE)
        return;
      if (rc == SF_ETCD_OK && owner == lease) {
        atomic_store(&l->ttl_s, ttl);
        atomic_fetch_add(&l->renewals, 1);
        sf__lease_pub(l, l->held_id, l->held_floor, l->held_mark,
                      deadline_after(t0, ttl), true);
        fprintf(stderr,
                "snowflaked: etcd: lease renewed; machine id %lld "
                "held again\n",
                (long long)l->held_id);
        return;
      }
    }
    /* etcd dropped the lease, or our key is gone from it: start over. */
    l->ops->revoke(l->etcd, lease, err, errlen);
    atomic_store(&l->lease_id, 0);
  }
  if (sf__lease_claim(l, err, errlen) == CLAIM_OK)
    fprintf(stderr, "snowflaked: etcd: took machine id %lld (lease %llx)\n",
            (long long)l->held_id,
            (unsigned long long)atomic_load(&l->lease_id));
}

/* recover tries once to hold an id again, and records why not. */
static void recover(sf_lease *l) {
  char err[512] = "";
  try_recover(l, err, sizeof err);
  atomic_fetch_add(&l->attempts, 1);
  set_why(l, atomic_load(&l->state) == SF_LEASE_HELD ? "" : err);
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
    sf__lease_read_view(l, &v);
    atomic_store(&l->ttl_s, ttl);
    sf__lease_pub(l, v.id, v.floor, v.mark, deadline_after(t0, ttl), false);
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
  int rc = sf__lease_store_mark(l, (uint64_t)l->held_id,
                                atomic_load(&l->lease_id), &mark);
  if (rc == MARK_STORED) {
    l->held_mark = mark;
    view v;
    sf__lease_read_view(l, &v);
    sf__lease_pub(l, v.id, v.floor, mark, v.deadline, false);
  } else if (rc == MARK_FENCED) {
    lose(l, "its key in etcd is no longer bound to our lease");
  } else {
    l->mark_retry_ns = now_ns() + RETRY_MS * 1000000;
  }
}

static void *keepalive_main(void *arg) {
  sf_lease *l = arg;
  int64_t next_ka = now_ns(); /* no id yet: claim at once */
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
      if (atomic_load(&l->state) == SF_LEASE_HELD) {
        l->backoff_ms = 0;
        next_ka = now_ns() + (int64_t)atomic_load(&l->ttl_s) * 1000000000 / 3;
      } else {
        next_ka = now_ns() + backoff_ms(l) * 1000000;
      }
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
  pthread_mutex_destroy(&l->why_mu);
  free(l->prefix);
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
  l->min_id = c->min_id;
  l->max_id = c->max_id;
  pthread_mutex_init(&l->why_mu, NULL);
  snprintf(l->why, sizeof l->why, "no machine id claimed yet");
  l->rng = (uint64_t)now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)l;
  l->rng += !l->rng; /* xorshift's state must not be 0 */
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
  if (c->max_id >= SF_LEASE_MAX_IDS || c->min_id > c->max_id) {
    snprintf(err, errlen,
             "machine id range %llu..%llu not possible for etcd leases "
             "(at most 0..%u, low to high)",
             (unsigned long long)c->min_id, (unsigned long long)c->max_id,
             SF_LEASE_MAX_IDS - 1);
    return -1;
  }
  l->prefix =
      strdup(c->prefix && *c->prefix ? c->prefix : SF_LEASE_DEFAULT_PREFIX);
  if (!l->prefix) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  if (c->ops)
    return 0;
  /* Each request gets about a third of the TTL, so a dead endpoint still
   * leaves time to try the next one before the id's deadline. */
  long t = (long)l->ttl_req_s * 1000 / 3;
  int rc = sf__etcd_new(c->endpoints, l->prefix,
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
  if (pthread_create(&l->thread, NULL, keepalive_main, l) != 0) {
    snprintf(err, errlen, "cannot start the lease keepalive thread");
    lease_free(l);
    return -1;
  }
  l->thread_started = true;
  /* A moment for the first claim, so that the start-up line can name the
   * id; no longer: the node listens (503 with the cause) while it waits. */
  int64_t until = now_ns() + (int64_t)SF_LEASE_START_WAIT_MS * 1000000;
  while (atomic_load(&l->attempts) == 0 && now_ns() < until)
    usleep(5 * 1000);
  *out = l;
  return 0;
}

int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s) {
  view v = {.id = -1};
  if (l)
    sf__lease_read_view(l, &v);
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
  o->attempts = atomic_load(&l->attempts);
  sf__lease_why(l, o->why, sizeof o->why);
}

void sf__lease_why(sf_lease *l, char *buf, size_t len) {
  if (!l || len == 0) {
    if (len)
      buf[0] = '\0';
    return;
  }
  pthread_mutex_lock(&l->why_mu);
  snprintf(buf, len, "%s", l->why);
  pthread_mutex_unlock(&l->why_mu);
}

void sf__lease_stop(sf_lease *l) {
  if (!l)
    return;
  atomic_store(&l->stopping, true);
  wake(l);
  if (l->thread_started)
    pthread_join(l->thread, NULL);
  sf__lease_pub(l, -1, 0, 0, 0, true);
  atomic_store(&l->state, SF_LEASE_STOPPED);
  int64_t lease = atomic_load(&l->lease_id);
  if (lease != 0) {
    char err[256];
    atomic_store(&l->stopping, false); /* the transport checks it */
    l->ops->revoke(l->etcd, lease, err, sizeof err);
  }
  lease_free(l);
}
