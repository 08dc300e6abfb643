/*
 * mint.h - the one module that issues IDs under a machine id.
 *
 * Every front end (HTTP/1.x routes, HTTP/2, gRPC, RESP, memcached) calls
 * sf__mint() and only formats its answer: none of them knows of leases,
 * high-water marks or bit layouts. sf__mint() checks the machine id before
 * minting (a lease must be held; a newly leased id is handed to the
 * generator together with the handover floor stored for it), runs the
 * generator, and checks again after minting (the same lease generation, each
 * ID's machine field the leased id, each ID's time inside what etcd has
 * stored for the id). IDs that fail the check after minting are dropped:
 * the generator never issues them again, and the caller sends none of them.
 */
#ifndef SF_SRV_MINT_H
#define SF_SRV_MINT_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

/* X(name, label): why the node could not issue. */
#define SF_MINT_STATUS_MAP(X)                                                  \
  X(OK, "ok")                                                                  \
  X(NO_LEASE, "no_lease")           /* no machine id held (etcd) */            \
  X(CLOCK_BEHIND, "clock_behind")   /* clock behind the newest ID or floor */  \
  X(NOT_PERSISTED, "not_persisted") /* state file or etcd mark not stored */   \
  X(EXHAUSTED, "exhausted")         /* the timestamp ran out of bits */        \
  X(INTERNAL, "internal")

typedef enum sf_mint_status {
#define SF__MINT_ENUM(name, label) SF_MINT_##name,
  SF_MINT_STATUS_MAP(SF__MINT_ENUM)
#undef SF__MINT_ENUM
      SF_MINT_STATUS_COUNT
} sf_mint_status;

typedef struct sf_mint_error {
  sf_mint_status status;
  int64_t retry_ms; /* try again after this long; 0: no retry expected */
  char msg[520];    /* one line naming the reason, for any protocol */
} sf_mint_error;

/* sf__mint issues n increasing IDs (1 <= n <= the node's max_batch) into
 * ids and counts them in w's stats. Returns 0, or -1 with *e filled; then no
 * ID in ids may be sent. Safe from every worker thread at once. */
int sf__mint(sf_worker *w, uint64_t *ids, size_t n, sf_mint_error *e);
/* sf__mint_ready returns 0 when the node could issue now (a lease is held,
 * the clock is not behind beyond the tolerance), else -1 with *e filled.
 * Issues nothing: for health checks. */
int sf__mint_ready(sf_node *n, sf_mint_error *e);
/* sf__mint_machine_of returns the machine field of id under the node's
 * layout (0 for an id with the sign bit set). */
uint64_t sf__mint_machine_of(const sf_node *n, uint64_t id);
/* sf__mint_status_label returns the static label of s, e.g. "no_lease". */
const char *sf__mint_status_label(sf_mint_status s);

#endif /* SF_SRV_MINT_H */
