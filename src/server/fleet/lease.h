/*
 * lease.h - machine ids leased from etcd, with a handover mark per id.
 *
 * A node grants an etcd lease, claims a free key <prefix><id> with a
 * transaction that succeeds only if the key does not exist, and keeps the
 * lease alive from a thread of its own. The id is safe to use only until
 * the lease could have expired on etcd's side, less a safety margin;
 * sf__lease_snapshot() checks that deadline against the boot-time clock on
 * every call, so a stalled keepalive thread can never make the server issue
 * IDs under a lease that may be gone.
 *
 * The handover mark: <prefix><id>/mark holds a unix ms that no holder of
 * the id ever issues an ID at or past. It is not bound to any lease, so it
 * outlives its holders. A holder writes it ahead of use (now + leap, from
 * the keepalive thread, when less than half a leap is left), fenced on its
 * own key still being bound to its lease; a new holder reads it in the
 * transaction that claims the id and issues only above it. So whatever the
 * clocks of two successive holders did, the new one's IDs under the id are
 * greater than the old one's (README, "Guarantees").
 *
 *
 * Which id: a free id whose mark is behind our clock is preferred, because a
 * node that took an id whose mark is ahead (its last holder's clock ran ahead,
 * or wrote its mark just before dying) cannot issue until its clock passes the
 * mark. Any free id serves as well as another, so a free id usable now wins;
 * only when every free id's mark is ahead does the node take the nearest one
 * and answer 503 CLOCK_BEHIND (/health 503) until its clock gets there.
 *
 * Safety of the lease: the id may be used until (start of the last
 * successful renewal request) + TTL - margin, margin = max(1 s, TTL/5).
 * etcd starts its own TTL count no earlier than it receives the request, so
 * our deadline falls before etcd's expiry as long as the two clocks' rates
 * differ by less than margin/TTL. The deadline is checked on every
 * snapshot: a keepalive thread that stalls cannot extend it.
 *
 * Files: lease.c (this state machine and the keepalive thread),
 * lease_claim.c (the claim and the marks), lease_int.h, etcd.c and
 * etcd_http.c (the etcd client), lease_none.c (the build without etcd,
 * WITH_ETCD=0: every start fails with a message saying so).
 */
#ifndef SF_LEASE_H
#define SF_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "snowflake.h"

/* The one source of the etcd settings' defaults and limits (config.c's
 * table parses them, lease.c relies on them). */
#define SF_LEASE_DEFAULT_PREFIX "/snowflake/machines/"
#define SF_LEASE_PREFIX_MAX 1023 /* bytes: sf_srv_config.etcd_prefix */
#define SF_LEASE_DEFAULT_TTL_S 10
#define SF_LEASE_DEFAULT_TTL_STR "10"
#define SF_LEASE_MIN_TTL_S 2 /* the safety margin is at least 1 s */
#define SF_LEASE_MAX_TTL_S 3600
#define SF_LEASE_MAX_LEAP_MS 86400000
/* The ids etcd leases are limited to 0..2^20-1: a claim scans them all. */
#define SF_LEASE_MAX_IDS (1u << 20)
/* How long start-up waits for the first claim (so that the start-up line
 * can name the id) before it listens anyway; the claims' backoff, capped. */
#define SF_LEASE_START_WAIT_MS 1000
/* The longest cause sf__lease_why gives, NUL included. */
#define SF_LEASE_WHY_MAX 480
#define SF_LEASE_BACKOFF_MIN_MS 250
#define SF_LEASE_BACKOFF_MAX_MS 5000

typedef struct sf_lease sf_lease;
struct sf_etcd_ops;

typedef struct sf_lease_config {
  const char *endpoints; /* "http://127.0.0.1:2379[,http://...]" */
  const char *prefix;    /* key prefix; NULL or "": the default */
  int ttl_s;             /* lease TTL in seconds; 0: the default */
  uint64_t min_id;       /* the ids to claim: min_id..max_id, within the */
  uint64_t max_id;       /* layout's (MACHINE_ID_RANGE) */
  int64_t leap_ms;       /* how far ahead the mark is written; 0: one TTL */
  sf_clock_fn clock;     /* the generator's clock; NULL: sf_clock_monotonic */
  void *clock_ctx;
  /* The etcd operations; NULL: the real client on endpoints and prefix.
   * Tests pass a fake etcd here. */
  const struct sf_etcd_ops *ops;
  void *ops_ctx;
} sf_lease_config;

typedef enum sf_lease_state {
  SF_LEASE_HELD = 0, /* an id is held and the lease is fresh */
  SF_LEASE_LOST,     /* renewal failed past the safety margin: no id */
  SF_LEASE_STOPPED   /* sf__lease_stop() ran: the lease was revoked */
} sf_lease_state;

typedef struct sf_lease_stats {
  int64_t machine_id; /* the id held, -1 when none */
  sf_lease_state state;
  int64_t lease_id; /* etcd's lease id, 0 when none */
  int ttl_s;
  uint64_t acquisitions;      /* ids claimed, the first included */
  uint64_t renewals;          /* keepalives that succeeded */
  uint64_t renew_errors;      /* keepalives that failed */
  uint64_t losses;            /* times the id was given up as unsafe */
  int64_t mark_ms;            /* the mark stored for the id held (0: none) */
  int64_t floor_ms;           /* the mark found when the id was claimed */
  uint64_t mark_writes;       /* marks stored */
  uint64_t mark_errors;       /* mark writes that failed (etcd unreachable) */
  uint64_t attempts;          /* tries to hold an id (claims, takings back) */
  char why[SF_LEASE_WHY_MAX]; /* why no id is held ("" while one is) */
} sf_lease_stats;

/* One consistent view of the lease, for the mint (mint.c). */
typedef struct sf_lease_snap {
  int64_t id;       /* the machine id held, -1: none */
  uint64_t gen;     /* the lease generation: changes whenever the id is
                       published anew (claimed, lost, taken back), never while
                       one lease stays held */
  int64_t floor_ms; /* unix ms: IDs under id at or below it may exist from
                       earlier holders; issue only above it (0: none) */
  int64_t mark_ms;  /* unix ms stored in etcd for this holder, fenced: issue
                       no ID at or past it (INT64_MAX: no mark) */
} sf_lease_snap;

/* sf__lease_start starts the keepalive thread, which claims an id and keeps
 * it, and waits for its first try for at most SF_LEASE_START_WAIT_MS. While
 * no id is held (etcd unreachable or refusing, every id taken, the id lost)
 * the thread tries again with a capped, jittered backoff; sf__lease_why
 * says why. Returns 0, or -1 with a message naming the setting in err (bad
 * endpoints, a range too large) or the resource (a thread, an eventfd). */
int sf__lease_start(const sf_lease_config *c, sf_lease **out, char *err,
                    size_t errlen);
/* sf__lease_snapshot fills *s in one snapshot (id, gen, floor and mark
 * belong together) and returns 0 when the id may be used now (held, before
 * the deadline), else -1 with s->id = -1. Two snapshots with the same id
 * and generation mean that etcd held our lease, with our key on it, at
 * every moment between them. Every mark_ms shown was stored in etcd before
 * any snapshot could show it. Cheap (a seqlock read and one clock read),
 * safe from any thread. */
int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s);
/* sf__lease_kick asks the keepalive thread to move the mark forward now (a
 * mint found its IDs at or past mark_ms). Never blocks; NULL is allowed. */
void sf__lease_kick(sf_lease *l);
/* sf__lease_why copies why no id is held into buf ("" while one is, and
 * for a NULL l). */
void sf__lease_why(sf_lease *l, char *buf, size_t len);
/* sf__lease_stats_get copies the lease's state and counters. */
void sf__lease_stats_get(sf_lease *l, sf_lease_stats *out);
/* sf__lease_state_name returns "held", "lost" or "stopped". */
static inline const char *sf__lease_state_name(sf_lease_state s) {
  return s == SF_LEASE_HELD ? "held" : s == SF_LEASE_LOST ? "lost" : "stopped";
}
/* sf__lease_stop stops the keepalive thread, revokes the lease so the id is
 * free at once (its mark stays), and frees l. NULL is allowed. */
void sf__lease_stop(sf_lease *l);

#endif /* SF_LEASE_H */
