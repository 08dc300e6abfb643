/*
 * node.h - what every thread of snowflaked shares (the node) and what each
 * thread owns (the worker), plus the per-thread counters behind /metrics.
 *
 * Counters are written only by their own thread with relaxed load + store
 * (plain moves on x86, no locked instruction) and summed over all threads
 * when /metrics is scraped.
 */
#ifndef SF_SRV_NODE_H
#define SF_SRV_NODE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "lease.h"
#include "snowflake.h"

/* X(name, label): the endpoints requests are counted by. */
#define SF_EP_MAP(X)                                                           \
  X(HEALTH, "health")                                                          \
  X(ID, "id")                                                                  \
  X(IDS, "ids")                                                                \
  X(DECODE, "decode")                                                          \
  X(BOUNDS, "bounds")                                                          \
  X(METRICS, "metrics")                                                        \
  X(OTHER, "other")

typedef enum sf_ep {
#define SF__EP_ENUM(name, label) SF_EP_##name,
  SF_EP_MAP(SF__EP_ENUM)
#undef SF__EP_ENUM
      SF_EP_COUNT
} sf_ep;

/* X(code, reason): every status snowflaked answers with. */
#define SF_STATUS_MAP(X)                                                       \
  X(200, "OK")                                                                 \
  X(400, "Bad Request")                                                        \
  X(404, "Not Found")                                                          \
  X(405, "Method Not Allowed")                                                 \
  X(414, "URI Too Long")                                                       \
  X(415, "Unsupported Media Type")                                             \
  X(431, "Request Header Fields Too Large")                                    \
  X(500, "Internal Server Error")                                              \
  X(503, "Service Unavailable")                                                \
  X(505, "HTTP Version Not Supported")

typedef enum sf_st {
#define SF__ST_ENUM(code, reason) SF_ST_##code,
  SF_STATUS_MAP(SF__ST_ENUM)
#undef SF__ST_ENUM
      SF_ST_COUNT
} sf_st;

/* X(name, label): requests counted by the protocol they came in on (a gRPC
 * call counts as grpc, not h2). */
#define SF_PROTO_MAP(X)                                                        \
  X(HTTP1, "http1")                                                            \
  X(H2, "h2")                                                                  \
  X(GRPC, "grpc")                                                              \
  X(REDIS, "redis")                                                            \
  X(MEMCACHED, "memcached")

typedef enum sf_proto_id {
#define SF__PROTO_ENUM(name, label) SF_PROTO_##name,
  SF_PROTO_MAP(SF__PROTO_ENUM)
#undef SF__PROTO_ENUM
      SF_PROTO_COUNT
} sf_proto_id;

typedef struct sf_srv_stats {
  _Alignas(64) _Atomic uint64_t requests[SF_EP_COUNT][SF_ST_COUNT];
  _Atomic uint64_t proto_requests[SF_PROTO_COUNT];
  _Atomic uint64_t mint_refusals[8]; /* by sf_mint_status (mint.h) */
  _Atomic uint64_t ids_dropped;      /* minted, then failed the lease check */
  _Atomic uint64_t ids_issued;
  _Atomic uint64_t conns_accepted;
  _Atomic uint64_t conns_refused;
  _Atomic uint64_t conns_idle_closed;
} sf_srv_stats;

/* sf__ctr_add adds n to a counter only the calling thread writes. */
static inline void sf__ctr_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                        memory_order_relaxed);
}

/* What the mint needs of a lease (lease.h has the real one). */
typedef struct sf_lease_ops {
  int (*snapshot)(void *ctx, sf_lease_snap *s); /* sf__lease_snapshot */
  void (*kick)(void *ctx);                      /* sf__lease_kick */
  void (*stats)(void *ctx, sf_lease_stats *out);
  void (*why)(void *ctx, char *buf, size_t len); /* sf__lease_why; or NULL */
} sf_lease_ops;

typedef struct sf_node {
  sf_gen *gen;
  const sf_layout *layout;
  const sf_srv_config *cfg;
  sf_clock_fn clock; /* the generator's clock, for /health */
  void *clock_ctx;
  int64_t floor_unix_ms; /* the state file's mark at start, 0: none */
  /* The leased machine id, through an operations table so that the
   * server core stays free of etcd and tests can fake the lease; NULL when
   * the id is fixed. Only the mint (mint.c) calls it. */
  const sf_lease_ops *lease;
  void *lease_ctx;
  _Atomic uint64_t lease_gen_applied; /* the generation mint.c last saw */
  sf_srv_stats *stats;                /* one per worker */
  unsigned nstats;
  _Atomic int64_t open_conns;
  int64_t start_unix_ms;
} sf_node;

typedef struct sf_worker {
  sf_node *node;
  sf_srv_stats *stats; /* this worker's own counters */
  uint64_t *ids;       /* scratch for /ids, node->cfg->max_batch long */
  char date[64];       /* "Date: ...\r\n", refreshed by the event loop */
  size_t date_len;
} sf_worker;

/* The label of each endpoint and the code of each status (node.c). */
extern const char *const sf__ep_label[SF_EP_COUNT];
extern const int sf__st_code[SF_ST_COUNT];

/* sf__worker_init allocates w's scratch; 0 or -1. sf__worker_set_date
 * refreshes its Date header from unix seconds. */
int sf__worker_init(sf_worker *w, sf_node *node, sf_srv_stats *stats);
void sf__worker_free(sf_worker *w);
void sf__worker_set_date(sf_worker *w, int64_t unix_s);

#endif /* SF_SRV_NODE_H */
