/*
 * mint.c - issuing IDs under a machine id: the lease checks before and
 * after minting, the handover floor and mark, and the generator.
 *
 * Why the check after minting is enough. The check before saw (id, gen)
 * with the id's deadline still ahead, so etcd held our lease L then (the
 * deadline ends a margin before etcd's expiry). If the check after sees the
 * same id and generation, again before the deadline, etcd still holds the
 * same L now: only the lease's publish() changes the id or L, and it always
 * moves the generation (a lease that expired at etcd fails its keepalive
 * and the id must be claimed again, a new publish). An etcd lease never
 * comes back once expired, so L, and the key <prefix><id> bound to it,
 * lived through the whole interval, and every ID minted in it was minted
 * under a lease etcd held. The IDs' own machine field must be id too:
 * another thread may have set the generator to a different leased id
 * between the checks. The fence keeps the second check's loads and clock
 * read after the mint.
 *
 * Handover. The lease also hands out, per generation, a floor (the mark
 * etcd held for the id when this node claimed it: earlier holders issued
 * nothing above it) and a mark (what this node has stored in etcd, fenced
 * by its lease: it issues nothing at or past it). The generator's floor is
 * raised to the floor before the first mint of a generation, and the check
 * after minting drops any ID outside (floor, mark), so uniqueness across a
 * handover depends on what etcd stored, never on two clocks agreeing.
 */
#include "mint.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

static const char *const status_label[SF_MINT_STATUS_COUNT] = {
#define SF__MINT_LABEL(name, label) label,
    SF_MINT_STATUS_MAP(SF__MINT_LABEL)
#undef SF__MINT_LABEL
};

_Static_assert(SF_MINT_STATUS_COUNT <=
                   sizeof(((sf_srv_stats *)0)->mint_refusals) /
                       sizeof(((sf_srv_stats *)0)->mint_refusals[0]),
               "sf_srv_stats.mint_refusals has a slot per status");

const char *sf__mint_status_label(sf_mint_status s) {
  return (unsigned)s < SF_MINT_STATUS_COUNT ? status_label[s] : "unknown";
}

__attribute__((format(printf, 4, 5))) static int fail(sf_mint_error *e,
                                                      sf_mint_status st,
                                                      int64_t retry_ms,
                                                      const char *fmt, ...);
static int fail(sf_mint_error *e, sf_mint_status st, int64_t retry_ms,
                const char *fmt, ...) {
  va_list ap;
  e->status = st;
  e->retry_ms = retry_ms;
  va_start(ap, fmt);
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  return -1;
}

/* no_lease answers that no id is held, and why when the lease says. */
static int no_lease(const sf_node *n, sf_mint_error *e) {
  char why[sizeof e->msg];
  why[0] = '\0';
  if (n->lease->why)
    n->lease->why(n->lease_ctx, why, sizeof why);
  return fail(e, SF_MINT_NO_LEASE, 1000,
              "no machine id lease is held (etcd)%s%s", why[0] ? ": " : "",
              why);
}

static int clock_behind(sf_mint_error *e, int64_t behind_ms) {
  return fail(e, SF_MINT_CLOCK_BEHIND, behind_ms,
              "clock is behind the last issued ID by %lld ms beyond the "
              "tolerance",
              (long long)behind_ms);
}

/* gen_error maps a failed sf_gen_next*. */
static int gen_error(sf_mint_error *e, int rc, int64_t wait_ms) {
  switch (rc) {
  case SF_ECLOCKBACK:
    return clock_behind(e, wait_ms);
  case SF_ESTATE:
    return fail(e, SF_MINT_NOT_PERSISTED, 1000,
                "the high-water mark could not be persisted");
  case SF_EOVERFLOW:
    return fail(e, SF_MINT_EXHAUSTED, 0,
                "the timestamp has run out of bits for this epoch");
  default:
    return fail(e, SF_MINT_INTERNAL, 0, "%s", sf_strerror(rc));
  }
}

uint64_t sf__mint_machine_of(const sf_node *n, uint64_t id) {
  sf_parts p;
  if (sf_decode(n->layout, id, &p) != 0)
    return 0;
  return p.machine_id;
}

/* machine_ready is the check before minting: 0 with *s set (s->id = -1
 * when the id is fixed), or -1. A new generation's floor and id are handed
 * to the generator. */
static int machine_ready(sf_node *n, sf_lease_snap *s, sf_mint_error *e) {
  s->id = -1;
  if (!n->lease)
    return 0;
  if (n->lease->snapshot(n->lease_ctx, s) != 0 || s->id < 0)
    return no_lease(n, e);
  if (atomic_load(&n->lease_gen_applied) != s->gen) {
    /* Raised before the id is set: no ID under the new id lands at or
     * below the floor. Idempotent, so racing threads may both do it. */
    if (s->floor_ms > 0 && sf_gen_raise_floor(n->gen, s->floor_ms) != 0)
      return fail(e, SF_MINT_INTERNAL, 0, "handover floor out of range");
    atomic_store(&n->lease_gen_applied, s->gen);
  }
  if ((uint64_t)s->id != sf_gen_machine_id(n->gen) &&
      sf_gen_set_machine_id(n->gen, (uint64_t)s->id) != 0)
    return fail(e, SF_MINT_INTERNAL, 0, "leased machine id out of range");
  return 0;
}

/* machine_kept is the check after minting ids[0..count) (see the top of
 * the file): 0 when they may be sent, else -1. */
static int machine_kept(sf_node *n, const sf_lease_snap *s, const uint64_t *ids,
                        size_t count, sf_mint_error *e) {
  sf_lease_snap now;
  sf_parts first, last;
  if (!n->lease)
    return 0;
  atomic_thread_fence(memory_order_seq_cst);
  if (n->lease->snapshot(n->lease_ctx, &now) != 0 || now.id != s->id ||
      now.gen != s->gen)
    return no_lease(n, e);
  for (size_t i = 0; i < count; i++)
    if (sf__mint_machine_of(n, ids[i]) != (uint64_t)s->id)
      return no_lease(n, e);
  /* IDs increase, so the first and the last bound them all. */
  sf_decode(n->layout, ids[0], &first);
  sf_decode(n->layout, ids[count - 1], &last);
  if (first.unix_ms <= now.floor_ms)
    return clock_behind(e, now.floor_ms + 1 - first.unix_ms);
  if (last.unix_ms >= now.mark_ms) {
    if (n->lease->kick)
      n->lease->kick(n->lease_ctx);
    return fail(e, SF_MINT_NOT_PERSISTED, 1000,
                "the machine id's high-water mark is not yet stored in etcd");
  }
  return 0;
}

int sf__mint(sf_worker *w, uint64_t *ids, size_t n, sf_mint_error *e) {
  sf_node *node = w->node;
  sf_lease_snap ls;
  int64_t wait_ms = 0;
  int rc;
  if (n == 0 || n > node->cfg->max_batch)
    rc = fail(e, SF_MINT_INTERNAL, 0, "batch size %zu out of 1..%u", n,
              node->cfg->max_batch);
  else if ((rc = machine_ready(node, &ls, e)) == 0) {
    rc = sf_gen_next_n(node->gen, ids, n, &wait_ms);
    if (rc != 0)
      rc = gen_error(e, rc, wait_ms);
    else if ((rc = machine_kept(node, &ls, ids, n, e)) != 0)
      sf__ctr_add(&w->stats->ids_dropped, n);
  }
  if (rc != 0) {
    sf__ctr_add(&w->stats->mint_refusals[e->status], 1);
    return -1;
  }
  sf__ctr_add(&w->stats->ids_issued, n);
  return 0;
}

int sf__mint_ready(sf_node *n, sf_mint_error *e) {
  sf_gen_stats s;
  sf_lease_snap ls;
  int64_t now_ms, high, behind;
  if (n->lease && (n->lease->snapshot(n->lease_ctx, &ls) != 0 || ls.id < 0))
    return no_lease(n, e);
  sf_gen_stats_get(n->gen, &s);
  now_ms = n->clock(n->clock_ctx) / 1000000;
  high = s.last_unix_ms > n->floor_unix_ms ? s.last_unix_ms : n->floor_unix_ms;
  if (n->lease && ls.floor_ms > high)
    high = ls.floor_ms;
  behind = high - now_ms;
  if (behind > n->cfg->clock_tolerance_ms)
    return clock_behind(e, behind);
  e->status = SF_MINT_OK;
  e->retry_ms = 0;
  e->msg[0] = 0;
  return 0;
}
