/*
 * lease.h - machine ids leased from etcd (v3 API, JSON gateway over HTTP).
 *
 * A node grants an etcd lease, claims the lowest free key
 * <prefix><id> with a transaction that succeeds only if the key does not
 * exist, and keeps the lease alive from a thread of its own. The id is safe
 * to use only until the lease could have expired on etcd's side, less a
 * safety margin; sf__lease_machine_id() checks that deadline against the
 * monotonic clock on every call, so a stalled keepalive thread can never
 * make the server issue IDs under a lease that may be gone.
 *
 * Built only when SF_WITH_ETCD is 1 (libcurl's header and jansson found).
 * libcurl itself is not linked: sf__lease_start() loads libcurl.so.4 with
 * dlopen() on first use, so servers with a numeric MACHINE_ID never map it.
 */
#ifndef SF_LEASE_H
#define SF_LEASE_H

#include <stddef.h>
#include <stdint.h>

/* The one source of the etcd settings' defaults and limits (config.c
 * parses them, lease.c relies on them). */
#define SF_LEASE_DEFAULT_PREFIX "/snowflake/machines/"
#define SF_LEASE_PREFIX_MAX 120 /* bytes: a key with its id fits 160 */
#define SF_LEASE_DEFAULT_TTL_S 10
#define SF_LEASE_DEFAULT_TTL_STR "10"
#define SF_LEASE_MAX_TTL_S 3600

typedef struct sf_lease sf_lease;

typedef struct sf_lease_config {
  const char *endpoints; /* "http://127.0.0.1:2379[,http://...]" */
  const char *prefix;    /* key prefix, default "/snowflake/machines/" */
  int ttl_s;             /* lease TTL in seconds, default 10 */
  uint64_t max_id;       /* the largest machine id the layout allows */
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
  uint64_t acquisitions; /* ids claimed, the first included */
  uint64_t renewals;     /* keepalives that succeeded */
  uint64_t renew_errors; /* keepalives that failed */
  uint64_t losses;       /* times the id was given up as unsafe */
} sf_lease_stats;

/* sf__lease_start grants a lease and claims an id, trying for at most about
 * one TTL, then starts the keepalive thread. Returns 0, or -1 with a message
 * naming what was wrong in err (no endpoints, etcd unreachable, every id
 * taken). */
int sf__lease_start(const sf_lease_config *c, sf_lease **out, char *err,
                    size_t errlen);
/* sf__lease_machine_id returns the id that may be used now, or -1. Cheap
 * (atomic loads and one monotonic clock read), safe from any thread. When
 * gen is not NULL it receives the lease's generation, read in the same
 * snapshot as the id: a number that changes every time the id is published
 * anew (claimed, given up, or taken back after a loss) and never while one
 * lease stays held. Two answers >= 0 with the same id and generation mean
 * that etcd held that lease, with our key on it, at every moment between
 * them: a lease that expires at etcd never comes back, and keeping the id
 * after any gap means publishing it again. Renewals that only extend the
 * deadline keep the generation. */
int64_t sf__lease_machine_id(sf_lease *l, uint64_t *gen);
/* One consistent view of the lease for the mint (mint.c). */
typedef struct sf_lease_snap {
  int64_t id;       /* the machine id held, -1: none */
  uint64_t gen;     /* the lease generation (see sf__lease_machine_id) */
  int64_t floor_ms; /* issue only IDs above this unix ms (0: no floor) */
  int64_t mark_ms;  /* issue no ID at or past this unix ms (INT64_MAX: no
                       mark in use) */
} sf_lease_snap;

/* sf__lease_snapshot fills *s in one snapshot (id, gen, floor and mark
 * belong together) and returns 0 when the id may be used now, else -1 with
 * s->id = -1. Cheap, safe from any thread. */
int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s);
/* sf__lease_kick asks the keepalive thread to move the mark forward now.
 * Never blocks. */
void sf__lease_kick(sf_lease *l);
/* sf__lease_stats_get copies the lease's state and counters. */
void sf__lease_stats_get(sf_lease *l, sf_lease_stats *out);
/* sf__lease_state_name returns "held", "lost" or "stopped". */
const char *sf__lease_state_name(sf_lease_state s);
/* sf__lease_stop stops the keepalive thread, revokes the lease so the id is
 * free at once, and frees l. NULL is allowed. */
void sf__lease_stop(sf_lease *l);

#endif /* SF_LEASE_H */
