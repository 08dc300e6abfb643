/*
 * test_srv_lease.c - the lease state machine and its keepalive thread,
 * against a fake etcd (an operations table over a few arrays) and a fake
 * generator clock: claims, the handover floor, the mark written ahead of
 * use, an unreachable etcd, a holder fenced out. The thread is real: tests
 * wait for what it does (never for how long it takes).
 */
#include "sf_test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "etcd.h"
#include "lease.h"

#define NIDS 16
#define T0_MS INT64_C(1700000000000)
#define LEAP 1000

typedef struct fake_etcd {
  pthread_mutex_t mu;
  bool down;            /* every operation: unreachable */
  int64_t next_lease;   /* the last lease granted */
  bool alive[4096];     /* by lease id */
  int64_t holder[NIDS]; /* id -> lease, 0: free */
  int64_t mark[NIDS];   /* id -> stored mark, 0: none */
  unsigned mark_puts;   /* raise_mark calls that stored */
  bool hold_next;       /* the next raise is held (not applied) */
  bool lose_answer;     /* the next raise applies, its answer is lost */
  struct {
    uint64_t id;
    int64_t lease, mark;
  } held;                 /* the raise held on the way */
  _Atomic int64_t now_ms; /* the generator's clock */
} fake_etcd;

static fake_etcd fx;

#define LOCKED(body)                                                           \
  do {                                                                         \
    pthread_mutex_lock(&fx.mu);                                                \
    body;                                                                      \
    pthread_mutex_unlock(&fx.mu);                                              \
  } while (0)

static int64_t gen_clock(void *ctx) {
  (void)ctx;
  return atomic_load(&fx.now_ms) * 1000000;
}

#define DOWN_CHECK(f)                                                          \
  if ((f)->down) {                                                             \
    snprintf(err, errlen, "fake etcd is down");                                \
    pthread_mutex_unlock(&(f)->mu);                                            \
    return SF_ETCD_UNREACHABLE;                                                \
  }

static int f_grant(void *ctx, int ttl, int64_t *lease, int *ttl_out, char *err,
                   size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  *lease = ++f->next_lease;
  f->alive[*lease] = true;
  *ttl_out = ttl;
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

static int f_keepalive(void *ctx, int64_t lease, int *ttl_out, char *err,
                       size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  *ttl_out = f->alive[lease] ? 30 : 0;
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

static int f_revoke(void *ctx, int64_t lease, char *err, size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  f->alive[lease] = false;
  for (int i = 0; i < NIDS; i++)
    if (f->holder[i] == lease)
      f->holder[i] = 0;
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

static int f_scan(void *ctx, sf_etcd_ids *ids, char *err, size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  for (uint64_t i = 0; i <= ids->max_id && i < NIDS; i++) {
    if (f->holder[i])
      ids->taken[i / 8] |= (unsigned char)(1u << (i % 8));
    ids->mark[i] = f->mark[i];
  }
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

static int f_claim(void *ctx, uint64_t id, int64_t lease, bool *won,
                   int64_t *mark, char *err, size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  *won = f->holder[id] == 0 || f->holder[id] == lease; /* or our copy's */
  if (*won) {
    f->holder[id] = lease;
    *mark = f->mark[id];
  }
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

static int f_owner(void *ctx, uint64_t id, int64_t *lease, char *err,
                   size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  *lease = f->holder[id];
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

/* apply_raise is etcd's raise transaction: fenced on the holder's lease,
 * compare-and-set upwards on the mark. */
static void apply_raise(fake_etcd *f, uint64_t id, int64_t lease,
                        int64_t mark_ms, bool *owned, int64_t *stored) {
  *owned = f->holder[id] == lease; /* the fence */
  if (*owned && f->mark[id] < mark_ms) {
    f->mark[id] = mark_ms;
    f->mark_puts++;
  }
  *stored = f->mark[id];
}

static int f_raise_mark(void *ctx, uint64_t id, int64_t lease, int64_t mark_ms,
                        bool *owned, int64_t *stored, char *err,
                        size_t errlen) {
  fake_etcd *f = ctx;
  pthread_mutex_lock(&f->mu);
  DOWN_CHECK(f);
  if (f->hold_next) { /* sits in a frozen member: the caller times out */
    f->hold_next = false;
    f->held.id = id;
    f->held.lease = lease;
    f->held.mark = mark_ms;
    snprintf(err, errlen, "fake etcd: held");
    pthread_mutex_unlock(&f->mu);
    return SF_ETCD_UNREACHABLE;
  }
  apply_raise(f, id, lease, mark_ms, owned, stored);
  if (f->lose_answer) { /* applied, but the answer never comes */
    f->lose_answer = false;
    snprintf(err, errlen, "fake etcd: answer lost");
    pthread_mutex_unlock(&f->mu);
    return SF_ETCD_UNREACHABLE;
  }
  pthread_mutex_unlock(&f->mu);
  return SF_ETCD_OK;
}

/* deliver_held applies the held raise now, late. */
static void deliver_held(void) {
  bool owned;
  int64_t stored;
  LOCKED(apply_raise(&fx, fx.held.id, fx.held.lease, fx.held.mark, &owned,
                     &stored));
}

static const sf_etcd_ops fake_ops = {
    .grant = f_grant,
    .keepalive = f_keepalive,
    .revoke = f_revoke,
    .scan = f_scan,
    .claim = f_claim,
    .owner = f_owner,
    .raise_mark = f_raise_mark,
};

static int setup(void **state) {
  (void)state;
  memset(&fx, 0, sizeof fx);
  pthread_mutex_init(&fx.mu, NULL);
  atomic_store(&fx.now_ms, T0_MS);
  fx.next_lease = 10;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  pthread_mutex_destroy(&fx.mu);
  return 0;
}

static int start(sf_lease **l, char *err, size_t errlen) {
  sf_lease_config c;
  memset(&c, 0, sizeof c);
  c.ttl_s = 30; /* keepalives every 10 s: the tests move things by kicks */
  c.max_id = NIDS - 1;
  c.leap_ms = LEAP;
  c.clock = gen_clock;
  c.ops = &fake_ops;
  c.ops_ctx = &fx;
  return sf__lease_start(&c, l, err, errlen);
}

static sf_lease *must_start(void) {
  sf_lease *l = NULL;
  char err[256];
  if (start(&l, err, sizeof err) != 0)
    fail_msg("sf__lease_start: %s", err);
  return l;
}

static int64_t stored_mark(int id) {
  int64_t m;
  LOCKED(m = fx.mark[id]);
  return m;
}

/* wait_until polls cond (an expression) for up to 20 s. */
#define WAIT_UNTIL(cond)                                                       \
  do {                                                                         \
    for (int i_ = 0; !(cond); i_++) {                                          \
      if (i_ == 20000)                                                         \
        fail_msg("timed out waiting for %s", #cond);                           \
      nanosleep(&(struct timespec){0, 1000000}, NULL);                         \
    }                                                                          \
  } while (0)

static void test_claims_lowest_free_id_and_stores_a_mark(void **state) {
  (void)state;
  fx.holder[0] = 5; /* someone else's */
  sf_lease *l = must_start();
  sf_lease_snap s;
  assert_int_equal(sf__lease_snapshot(l, &s), 0);
  assert_int_equal(s.id, 1);
  assert_int_equal(s.floor_ms, 0); /* no mark before us */
  assert_true(s.mark_ms == T0_MS + LEAP);
  assert_true(stored_mark(1) == s.mark_ms); /* stored before shown */
  sf_lease_stats st;
  sf__lease_stats_get(l, &st);
  assert_int_equal(st.machine_id, 1);
  assert_true(st.mark_ms == s.mark_ms);
  assert_int_equal(st.mark_writes, 1);
  sf__lease_stop(l);
  /* Revoked: the key is gone at once, the mark stays. */
  assert_int_equal(fx.holder[1], 0);
  assert_true(fx.mark[1] == T0_MS + LEAP);
}

static void test_new_holder_starts_above_the_stored_mark(void **state) {
  (void)state;
  /* The old holder of id 0 ran 20 s ahead; every other id is held. */
  fx.mark[0] = T0_MS + 20000;
  for (int i = 1; i < NIDS; i++)
    fx.holder[i] = 5;
  sf_lease *l = must_start();
  sf_lease_snap s;
  assert_int_equal(sf__lease_snapshot(l, &s), 0);
  assert_int_equal(s.id, 0);
  /* Every earlier ID is below the old mark: at or below floor_ms. */
  assert_true(s.floor_ms == T0_MS + 20000 - 1);
  /* Our first mark leaps from the old one, not from our clock. */
  assert_true(s.mark_ms == T0_MS + 20000 + LEAP);
  assert_true(stored_mark(0) == s.mark_ms);
  sf__lease_stop(l);
}

static void test_prefers_a_free_id_whose_mark_is_behind(void **state) {
  (void)state;
  fx.mark[0] = T0_MS + 20000; /* ahead of our clock */
  fx.mark[1] = T0_MS + 20000;
  fx.mark[2] = T0_MS - 5; /* behind it */
  sf_lease *l = must_start();
  sf_lease_snap s;
  assert_int_equal(sf__lease_snapshot(l, &s), 0);
  assert_int_equal(s.id, 2);
  assert_true(s.floor_ms == T0_MS - 6);
  sf__lease_stop(l);
  /* All free ids ahead: the nearest mark is taken. */
  teardown(NULL);
  setup(NULL);
  fx.mark[0] = T0_MS + 30000;
  for (int i = 1; i < NIDS; i++)
    fx.mark[i] = T0_MS + 20000 + i;
  l = must_start();
  assert_int_equal(sf__lease_snapshot(l, &s), 0);
  assert_int_equal(s.id, 1);
  sf__lease_stop(l);
}

static void test_mark_moves_ahead_under_the_same_generation(void **state) {
  (void)state;
  sf_lease *l = must_start();
  sf_lease_snap a, b;
  assert_int_equal(sf__lease_snapshot(l, &a), 0);
  /* Less than half a leap left: the keepalive thread writes the next one. */
  atomic_store(&fx.now_ms, T0_MS + LEAP / 2 + 1);
  sf__lease_kick(l);
  WAIT_UNTIL(sf__lease_snapshot(l, &b) == 0 && b.mark_ms > a.mark_ms);
  assert_true(b.mark_ms == T0_MS + LEAP / 2 + 1 + LEAP);
  assert_true(stored_mark(0) == b.mark_ms);
  assert_true(b.gen == a.gen);
  assert_true(b.floor_ms == a.floor_ms);
  sf__lease_stop(l);
}

static void test_unreachable_etcd_never_shows_an_unstored_mark(void **state) {
  (void)state;
  sf_lease *l = must_start();
  sf_lease_snap a, b;
  sf_lease_stats st;
  assert_int_equal(sf__lease_snapshot(l, &a), 0);
  LOCKED(fx.down = true);
  atomic_store(&fx.now_ms, T0_MS + 5 * LEAP); /* past the mark */
  sf__lease_kick(l);
  WAIT_UNTIL((sf__lease_stats_get(l, &st), st.mark_errors > 0));
  /* Still held (the lease's deadline is far), the mark where etcd has it:
   * every ID now would be at or past it, so the mint issues none. */
  assert_int_equal(sf__lease_snapshot(l, &b), 0);
  assert_true(b.mark_ms == a.mark_ms);
  assert_true(b.mark_ms == stored_mark(0));
  assert_true(b.mark_ms <= atomic_load(&fx.now_ms));
  /* etcd back: the next attempt stores and shows a mark ahead again. */
  LOCKED(fx.down = false);
  sf__lease_kick(l);
  WAIT_UNTIL(sf__lease_snapshot(l, &b) == 0 && b.mark_ms > a.mark_ms);
  assert_true(b.mark_ms == stored_mark(0));
  assert_true(b.mark_ms > atomic_load(&fx.now_ms));
  sf__lease_stop(l);
}

static void test_late_copy_of_an_older_mark_changes_nothing(void **state) {
  (void)state;
  sf_lease *l = must_start();
  sf_lease_snap a, b;
  sf_lease_stats st;
  assert_int_equal(sf__lease_snapshot(l, &a), 0);
  /* The next mark write sits in a frozen member: we time out. */
  LOCKED(fx.hold_next = true);
  atomic_store(&fx.now_ms, T0_MS + LEAP / 2 + 1);
  sf__lease_kick(l);
  WAIT_UNTIL((sf__lease_stats_get(l, &st), st.mark_errors > 0));
  /* Later writes go through and carry the mark further. */
  atomic_store(&fx.now_ms, T0_MS + 2 * LEAP);
  sf__lease_kick(l);
  WAIT_UNTIL(sf__lease_snapshot(l, &b) == 0 && b.mark_ms > a.mark_ms);
  assert_true(b.mark_ms == T0_MS + 3 * LEAP);
  /* The held write lands now, with our key still on our lease: it is below
   * the stored mark, so it changes nothing. */
  assert_true(fx.held.mark == T0_MS + LEAP / 2 + 1 + LEAP);
  deliver_held();
  assert_true(stored_mark(0) == b.mark_ms);
  assert_int_equal(sf__lease_snapshot(l, &b), 0);
  assert_true(b.mark_ms == stored_mark(0));
  sf__lease_stop(l);
}

static void test_mark_write_whose_answer_was_lost_is_adopted(void **state) {
  (void)state;
  sf_lease *l = must_start();
  sf_lease_snap a, b;
  sf_lease_stats st;
  assert_int_equal(sf__lease_snapshot(l, &a), 0);
  /* etcd stores the next mark, but its answer never reaches us. */
  LOCKED(fx.lose_answer = true);
  atomic_store(&fx.now_ms, T0_MS + LEAP / 2 + 1);
  sf__lease_kick(l);
  WAIT_UNTIL((sf__lease_stats_get(l, &st), st.mark_errors > 0));
  assert_true(stored_mark(0) == T0_MS + LEAP / 2 + 1 + LEAP);
  /* Until an answer says so, the mark shown stays the acknowledged one. */
  assert_int_equal(sf__lease_snapshot(l, &b), 0);
  assert_true(b.mark_ms <= stored_mark(0));
  /* The retry asks for the same mark: etcd has it already, so it is not
   * put again, and the holder takes it as its own. */
  WAIT_UNTIL(sf__lease_snapshot(l, &b) == 0 && b.mark_ms > a.mark_ms);
  assert_true(b.mark_ms == stored_mark(0));
  assert_int_equal(fx.mark_puts, 2);
  assert_true(b.gen == a.gen);
  sf__lease_stop(l);
}

static void test_fenced_out_holder_gives_the_id_up(void **state) {
  (void)state;
  sf_lease *l = must_start();
  sf_lease_snap a, b;
  assert_int_equal(sf__lease_snapshot(l, &a), 0);
  assert_int_equal(a.id, 0);
  /* Our lease expired in etcd and another node took id 0. */
  LOCKED({
    fx.alive[fx.holder[0]] = false;
    fx.holder[0] = 99;
  });
  atomic_store(&fx.now_ms, T0_MS + LEAP); /* the mark must move */
  sf__lease_kick(l);
  /* The fenced write fails: the id is given up, then another is claimed. */
  WAIT_UNTIL(sf__lease_snapshot(l, &b) == 0 && b.id == 1);
  assert_true(b.gen != a.gen);
  assert_int_equal(stored_mark(0), a.mark_ms); /* not written past the fence */
  sf_lease_stats st;
  sf__lease_stats_get(l, &st);
  assert_int_equal(st.losses, 1);
  assert_int_equal(st.acquisitions, 2);
  sf__lease_stop(l);
}

static void test_every_id_taken_is_waited_out(void **state) {
  (void)state;
  for (int i = 0; i < NIDS; i++)
    fx.holder[i] = 5;
  sf_lease *l = must_start(); /* starts all the same: it waits */
  sf_lease_snap s;
  sf_lease_stats st;
  char why[256];
  assert_int_equal(sf__lease_snapshot(l, &s), -1);
  sf__lease_why(l, why, sizeof why);
  assert_non_null(strstr(why, "every machine id 0..15"));
  assert_non_null(strstr(why, "taken"));
  sf__lease_stats_get(l, &st);
  assert_int_equal(st.machine_id, -1);
  assert_string_equal(st.why, why);
  LOCKED(fx.holder[9] = 0); /* one is freed: the backoff's next try takes it */
  WAIT_UNTIL(sf__lease_snapshot(l, &s) == 0);
  assert_int_equal(s.id, 9);
  sf__lease_why(l, why, sizeof why);
  assert_string_equal(why, "");
  sf__lease_stop(l);
}

static void test_etcd_down_at_start_is_waited_out(void **state) {
  (void)state;
  LOCKED(fx.down = true);
  sf_lease *l = must_start();
  sf_lease_stats st;
  sf_lease_snap s;
  char why[256];
  sf__lease_why(l, why, sizeof why);
  assert_non_null(strstr(why, "fake etcd is down"));
  WAIT_UNTIL((sf__lease_stats_get(l, &st), st.attempts >= 3)); /* it retries */
  assert_int_equal(sf__lease_snapshot(l, &s), -1);
  LOCKED(fx.down = false);
  WAIT_UNTIL(sf__lease_snapshot(l, &s) == 0);
  assert_int_equal(s.id, 0);
  sf__lease_stop(l);
}

static void test_a_range_claims_only_its_ids(void **state) {
  (void)state;
  sf_lease_config c;
  memset(&c, 0, sizeof c);
  c.ttl_s = 30;
  c.min_id = 4;
  c.max_id = 5;
  c.leap_ms = LEAP;
  c.clock = gen_clock;
  c.ops = &fake_ops;
  c.ops_ctx = &fx;
  sf_lease *a = NULL, *b = NULL, *d = NULL;
  char err[256], why[256];
  sf_lease_snap s;
  assert_int_equal(sf__lease_start(&c, &a, err, sizeof err), 0);
  assert_int_equal(sf__lease_start(&c, &b, err, sizeof err), 0);
  WAIT_UNTIL(sf__lease_snapshot(a, &s) == 0);
  assert_int_equal(s.id, 4);
  WAIT_UNTIL(sf__lease_snapshot(b, &s) == 0);
  assert_int_equal(s.id, 5);
  assert_int_equal(sf__lease_start(&c, &d, err, sizeof err), 0);
  WAIT_UNTIL((sf__lease_why(d, why, sizeof why), strstr(why, "4..5")));
  assert_int_equal(sf__lease_snapshot(d, &s), -1); /* 0..3 stay free */
  sf__lease_stop(a);
  sf__lease_stop(b);
  sf__lease_stop(d);
  /* Low above high, or past the ids a lease can hold: refused. */
  c.min_id = 6;
  assert_int_equal(sf__lease_start(&c, &a, err, sizeof err), -1);
  assert_non_null(strstr(err, "6..5"));
}

static void test_snapshot_of_no_lease(void **state) {
  (void)state;
  sf_lease_snap s;
  assert_int_equal(sf__lease_snapshot(NULL, &s), -1);
  assert_int_equal(s.id, -1);
  sf__lease_kick(NULL);
  sf__lease_stop(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
      T(test_claims_lowest_free_id_and_stores_a_mark),
      T(test_new_holder_starts_above_the_stored_mark),
      T(test_prefers_a_free_id_whose_mark_is_behind),
      T(test_mark_moves_ahead_under_the_same_generation),
      T(test_unreachable_etcd_never_shows_an_unstored_mark),
      T(test_late_copy_of_an_older_mark_changes_nothing),
      T(test_mark_write_whose_answer_was_lost_is_adopted),
      T(test_fenced_out_holder_gives_the_id_up),
      T(test_every_id_taken_is_waited_out),
      T(test_etcd_down_at_start_is_waited_out),
      T(test_a_range_claims_only_its_ids),
      T(test_snapshot_of_no_lease),
#undef T
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
