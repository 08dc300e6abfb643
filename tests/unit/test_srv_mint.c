/*
 * test_srv_mint.c - the one minting call (mint.c) against a fake lease:
 * the checks before and after minting, the handover floor and mark, and
 * what every front end is told when the node cannot issue.
 */
#include "node_fx.h"

#include <stdlib.h>
#include <string.h>

#include "mint.h"

typedef struct fixture {
  node_fx n; /* first: the hooks below get &n */
  /* On its flip_at-th snapshot (counted in calls; 0: never) the fake lease
   * answers flip from then on, as if the keepalive thread had published
   * between the mint's two checks. */
  unsigned calls, flip_at;
  sf_lease_snap flip;
  /* When steal is set, the generator's next clock read first sets its
   * machine id to steal_machine: another thread's lease id landing between
   * the check before and the mint. */
  int steal;
  uint64_t steal_machine;
} fixture;

static void fx_flip(node_fx *n) {
  fixture *f = (fixture *)n;
  if (f->flip_at && ++f->calls == f->flip_at)
    n->lease = f->flip;
}

static void fx_steal(node_fx *n) {
  fixture *f = (fixture *)n;
  if (f->steal) {
    f->steal = 0;
    assert_int_equal(sf_gen_set_machine_id(n->gen, f->steal_machine), 0);
  }
}

/* The fake clock stands at epoch + 1000 s. */
#define NOW_MS (SF_DEFAULT_EPOCH_MS + 1000000)

static fixture *fx_new(void) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  node_fx_init(&f->n, 10000);
  f->n.still_node_clock = 1;
  f->n.on_gen_clock = fx_steal;
  f->n.on_snapshot = fx_flip;
  node_fx_lease_on(&f->n, 12);
  return f;
}

static void fx_free(fixture *f) {
  node_fx_free(&f->n);
  free(f);
}

static sf_parts parts(const fixture *f, uint64_t id) {
  sf_parts p;
  assert_int_equal(sf_decode(f->n.node.layout, id, &p), 0);
  return p;
}

static void test_mints_under_the_leased_id(void **state) {
  fixture *f = fx_new();
  uint64_t ids[5];
  sf_mint_error e;
  (void)state;
  assert_int_equal(sf__mint(&f->n.w, ids, 5, &e), 0);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(sf__mint_machine_of(&f->n.node, ids[i]), 12);
    assert_int_equal(parts(f, ids[i]).machine_id, 12);
    if (i)
      assert_true(ids[i] > ids[i - 1]);
  }
  assert_int_equal(f->n.stats->ids_issued, 5);
  assert_int_equal(sf__mint_ready(&f->n.node, &e), 0);
  fx_free(f);
}

static void test_no_lease(void **state) {
  fixture *f = fx_new();
  uint64_t id;
  sf_mint_error e;
  (void)state;
  f->n.lease.id = -1;
  assert_int_equal(sf__mint(&f->n.w, &id, 1, &e), -1);
  assert_int_equal(e.status, SF_MINT_NO_LEASE);
  assert_int_equal(e.retry_ms, 1000);
  assert_string_equal(e.msg, "no machine id lease is held (etcd)");
  assert_int_equal(sf__mint_ready(&f->n.node, &e), -1);
  assert_int_equal(e.status, SF_MINT_NO_LEASE);
  assert_int_equal(f->n.stats->mint_refusals[SF_MINT_NO_LEASE], 1);
  assert_int_equal(f->n.stats->ids_issued, 0);
  assert_string_equal(sf__mint_status_label(SF_MINT_NO_LEASE), "no_lease");
  fx_free(f);
}

static void test_lease_change_while_minting(void **state) {
  /* Each case: the lease as the check before sees it, then as the check
   * after sees it. The same id under a new generation is an id claimed
   * again after a gap: IDs minted in between may collide. */
  static const struct {
    int64_t id0;
    uint64_t gen0;
    int64_t id1;
    uint64_t gen1;
  } cases[] = {
      {12, 1, 12, 2}, /* lost and claimed again: same id, new generation */
      {12, 1, -1, 1}, /* lapsed */
      {12, 1, 13, 1}, /* another id (generation left alone) */
      {12, 1, 13, 2}, /* another id */
  };
  static const size_t sizes[] = {1, 5, 5000};
  fixture *f = fx_new();
  uint64_t *ids = calloc(5000, sizeof *ids);
  sf_mint_error e;
  (void)state;
  assert_non_null(ids);
  for (size_t r = 0; r < sizeof sizes / sizeof sizes[0]; r++) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      uint64_t issued = f->n.stats->ids_issued,
               dropped = f->n.stats->ids_dropped;
      f->n.lease = (sf_lease_snap){cases[i].id0, cases[i].gen0, 0, INT64_MAX};
      f->flip = (sf_lease_snap){cases[i].id1, cases[i].gen1, 0, INT64_MAX};
      f->calls = 0;
      f->flip_at = 2;
      assert_int_equal(sf__mint(&f->n.w, ids, sizes[r], &e), -1);
      assert_int_equal(f->calls, 2); /* checked before and after */
      assert_int_equal(e.status, SF_MINT_NO_LEASE);
      assert_int_equal(f->n.stats->ids_issued, issued);
      assert_int_equal(f->n.stats->ids_dropped, dropped + sizes[r]);

      /* The next mint, with the lease stable (held again if it had
       * lapsed), is served under the id the lease holds. */
      f->flip_at = 0;
      if (f->n.lease.id < 0)
        f->n.lease =
            (sf_lease_snap){cases[i].id0, cases[i].gen1 + 1, 0, INT64_MAX};
      assert_int_equal(sf__mint(&f->n.w, ids, sizes[r], &e), 0);
      assert_int_equal(sf__mint_machine_of(&f->n.node, ids[0]),
                       (uint64_t)f->n.lease.id);
      assert_int_equal(sf__mint_machine_of(&f->n.node, ids[sizes[r] - 1]),
                       (uint64_t)f->n.lease.id);
    }
  }
  free(ids);
  fx_free(f);
}

static void test_generator_moved_while_minting(void **state) {
  /* The lease is stable at 12, but another thread hands the generator id
   * 13 between this mint's check before and the mint: the IDs carry 13,
   * not the id this mint checked, and are dropped. */
  fixture *f = fx_new();
  uint64_t ids[5];
  sf_mint_error e;
  (void)state;
  f->n.lease.gen = 7;
  for (size_t n = 1; n <= 5; n += 4) {
    f->steal = 1;
    f->steal_machine = 13;
    assert_int_equal(sf__mint(&f->n.w, ids, n, &e), -1);
    assert_int_equal(f->steal, 0);
    assert_int_equal(e.status, SF_MINT_NO_LEASE);
    assert_int_equal(sf_gen_machine_id(f->n.gen), 13);
    assert_int_equal(sf__mint(&f->n.w, ids, n, &e), 0); /* sets 12 again */
    assert_int_equal(sf__mint_machine_of(&f->n.node, ids[0]), 12);
    assert_int_equal(sf_gen_machine_id(f->n.gen), 12);
  }
  fx_free(f);
}

static void test_handover_floor(void **state) {
  /* A new generation whose id an earlier holder used up to 5.5 s past our
   * clock: nothing is issued at or below that floor, and the answer says
   * how long to wait. */
  fixture *f = fx_new();
  uint64_t id;
  sf_mint_error e;
  (void)state;
  assert_int_equal(sf__mint(&f->n.w, &id, 1, &e), 0);
  f->n.lease = (sf_lease_snap){40, 2, NOW_MS + 5500, INT64_MAX};
  assert_int_equal(sf__mint(&f->n.w, &id, 1, &e), -1);
  assert_int_equal(e.status, SF_MINT_CLOCK_BEHIND);
  assert_true(e.retry_ms >= 5490 && e.retry_ms <= 5501);
  assert_non_null(strstr(e.msg, "clock is behind"));
  assert_int_equal(sf__mint_ready(&f->n.node, &e), -1);
  assert_int_equal(e.status, SF_MINT_CLOCK_BEHIND);
  /* Once the clock passes the floor, IDs come from above it. */
  f->n.clk.now_ns = (NOW_MS + 5501) * NS_PER_MS;
  assert_int_equal(sf__mint(&f->n.w, &id, 1, &e), 0);
  assert_true(parts(f, id).unix_ms > NOW_MS + 5500);
  assert_int_equal(parts(f, id).machine_id, 40);
  fx_free(f);
}

static void test_handover_floor_within_tolerance_waits(void **state) {
  /* A floor 3 ms ahead (within the 10 ms tolerance) is waited out. */
  fixture *f = fx_new();
  uint64_t id;
  sf_mint_error e;
  (void)state;
  f->n.lease = (sf_lease_snap){41, 3, NOW_MS + 3, INT64_MAX};
  assert_int_equal(sf__mint(&f->n.w, &id, 1, &e), 0);
  assert_true(parts(f, id).unix_ms > NOW_MS + 3);
  fx_free(f);
}

static void test_mark_not_stored(void **state) {
  /* IDs at or past the mark etcd has stored are dropped, the lease is
   * asked to move the mark, and the answer says so. */
  fixture *f = fx_new();
  uint64_t ids[3];
  sf_mint_error e;
  (void)state;
  f->n.lease.mark_ms = NOW_MS;
  assert_int_equal(sf__mint(&f->n.w, ids, 3, &e), -1);
  assert_int_equal(e.status, SF_MINT_NOT_PERSISTED);
  assert_int_equal(e.retry_ms, 1000);
  assert_non_null(strstr(e.msg, "not yet stored in etcd"));
  assert_int_equal(f->n.kicks, 1);
  assert_int_equal(f->n.stats->ids_dropped, 3);
  assert_int_equal(f->n.stats->mint_refusals[SF_MINT_NOT_PERSISTED], 1);
  f->n.lease.mark_ms = NOW_MS + 60000;
  assert_int_equal(sf__mint(&f->n.w, ids, 3, &e), 0);
  assert_true(parts(f, ids[2]).unix_ms < NOW_MS + 60000);
  fx_free(f);
}

static void test_fixed_id_needs_no_lease(void **state) {
  fixture *f = fx_new();
  uint64_t id;
  sf_mint_error e;
  (void)state;
  f->n.node.lease = NULL;
  assert_int_equal(sf_gen_set_machine_id(f->n.gen, 3), 0);
  assert_int_equal(sf__mint(&f->n.w, &id, 1, &e), 0);
  assert_int_equal(sf__mint_machine_of(&f->n.node, id), 3);
  /* A batch outside 1..max_batch is the caller's error. */
  assert_int_equal(sf__mint(&f->n.w, &id, 0, &e), -1);
  assert_int_equal(e.status, SF_MINT_INTERNAL);
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mints_under_the_leased_id),
      cmocka_unit_test(test_no_lease),
      cmocka_unit_test(test_lease_change_while_minting),
      cmocka_unit_test(test_generator_moved_while_minting),
      cmocka_unit_test(test_handover_floor),
      cmocka_unit_test(test_handover_floor_within_tolerance_waits),
      cmocka_unit_test(test_mark_not_stored),
      cmocka_unit_test(test_fixed_id_needs_no_lease),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
