/*
 * lease_claim.c - which machine id a node claims, the claim, and the
 * handover marks it stores (etcd.c: why a mark only goes up).
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
 */
#include <stdio.h>
#include <stdlib.h>

#include "lease_int.h"

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
  cand *c = malloc(sizeof *c * (size_t)(l->max_id - l->min_id + 1));
  if (!c)
    return -1;
  int64_t now = gen_ms(l);
  long n = 0;
  for (uint64_t id = l->min_id; id <= l->max_id; id++) {
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

int sf__lease_store_mark(sf_lease *l, uint64_t id, int64_t lease,
                         int64_t *mark) {
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
  if (sf__lease_store_mark(l, id, lease, &mark) != MARK_STORED) {
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
  sf__lease_pub(l, (int64_t)id, floor, mark, deadline_after(t0, ttl), true);
}

int sf__lease_claim(sf_lease *l, char *err, size_t errlen) {
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
             "every machine id %llu..%llu under the etcd prefix \"%s\" is "
             "taken",
             (unsigned long long)l->min_id, (unsigned long long)l->max_id,
             l->prefix);
    return CLAIM_FULL;
  }
  return CLAIM_RETRY;
}
