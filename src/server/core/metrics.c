/*
 * metrics.c - /metrics: per-thread counters summed at scrape time (each
 * worker writes only its own), the generator's and the lease's state.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "mint.h"
#include "text.h"

static const char *const proto_label[SF_PROTO_COUNT] = {
#define SF__PROTO_LABEL(name, label) label,
    SF_PROTO_MAP(SF__PROTO_LABEL)
#undef SF__PROTO_LABEL
};

typedef struct mbuf {
  char *p;
  size_t len, cap;
} mbuf;

__attribute__((format(printf, 2, 3))) static void mput(mbuf *m, const char *fmt,
                                                       ...);
static void mput(mbuf *m, const char *fmt, ...) {
  va_list ap;
  int n;
  if (m->len >= m->cap)
    return;
  va_start(ap, fmt);
  n = vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
  va_end(ap);
  if (n > 0)
    m->len += (size_t)n < m->cap - m->len ? (size_t)n : m->cap - m->len;
}

static uint64_t ld(_Atomic uint64_t *v) {
  return atomic_load_explicit(v, memory_order_relaxed);
}

static void metric(mbuf *m, const char *name, const char *type,
                   const char *help, uint64_t v) {
  mput(m, "# HELP snowflake_%s %s\n# TYPE snowflake_%s %s\nsnowflake_%s %llu\n",
       name, help, name, type, name, (unsigned long long)v);
}

/* The per-worker counters, summed. */
typedef struct totals {
  uint64_t req[SF_EP_COUNT][SF_ST_COUNT];
  uint64_t proto[SF_PROTO_COUNT];
  uint64_t refusals[SF_MINT_STATUS_COUNT];
  uint64_t issued, dropped, accepted, refused, idle;
} totals;

static void sum(const sf_node *n, totals *t) {
  memset(t, 0, sizeof *t);
  for (unsigned w = 0; w < n->nstats; w++) {
    sf_srv_stats *s = &n->stats[w];
    for (int e = 0; e < SF_EP_COUNT; e++)
      for (int k = 0; k < SF_ST_COUNT; k++)
        t->req[e][k] += ld(&s->requests[e][k]);
    for (int p = 0; p < SF_PROTO_COUNT; p++)
      t->proto[p] += ld(&s->proto_requests[p]);
    for (int r = 0; r < SF_MINT_STATUS_COUNT; r++)
      t->refusals[r] += ld(&s->mint_refusals[r]);
    t->issued += ld(&s->ids_issued);
    t->dropped += ld(&s->ids_dropped);
    t->accepted += ld(&s->conns_accepted);
    t->refused += ld(&s->conns_refused);
    t->idle += ld(&s->conns_idle_closed);
  }
}

static void requests(mbuf *m, const totals *t) {
  mput(m, "# HELP snowflake_requests_total HTTP requests by endpoint and "
          "status.\n# TYPE snowflake_requests_total counter\n");
  for (int e = 0; e < SF_EP_COUNT; e++)
    for (int k = 0; k < SF_ST_COUNT; k++)
      if (t->req[e][k] || (k == SF_ST_200 && e != SF_EP_OTHER))
        mput(m,
             "snowflake_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
             sf__ep_label[e], sf__st_code[k], (unsigned long long)t->req[e][k]);
  mput(m, "# HELP snowflake_protocol_requests_total Requests by the protocol "
          "they came in on.\n"
          "# TYPE snowflake_protocol_requests_total counter\n");
  for (int p = 0; p < SF_PROTO_COUNT; p++)
    mput(m, "snowflake_protocol_requests_total{protocol=\"%s\"} %llu\n",
         proto_label[p], (unsigned long long)t->proto[p]);
  mput(m, "# HELP snowflake_mint_refusals_total Requests for IDs refused, by "
          "reason.\n# TYPE snowflake_mint_refusals_total counter\n");
  for (int r = 1; r < SF_MINT_STATUS_COUNT; r++)
    mput(m, "snowflake_mint_refusals_total{reason=\"%s\"} %llu\n",
         sf__mint_status_label((sf_mint_status)r),
         (unsigned long long)t->refusals[r]);
}

static void generator(mbuf *m, const sf_node *n) {
  sf_gen_stats gs;
  sf_gen_stats_get(n->gen, &gs);
  mput(m,
       "# HELP snowflake_clock_backwards_total Clock steps back seen by the "
       "generator, by what it did.\n"
       "# TYPE snowflake_clock_backwards_total counter\n"
       "snowflake_clock_backwards_total{action=\"waited\"} %llu\n"
       "snowflake_clock_backwards_total{action=\"refused\"} %llu\n",
       (unsigned long long)gs.clock_back_waits,
       (unsigned long long)gs.clock_back_errors);
  metric(m, "sequence_exhaustion_waits_total", "counter",
         "Times a millisecond's sequence ran out and the generator waited.",
         gs.sequence_waits);
  metric(m, "state_persists_total", "counter", "High-water marks written.",
         gs.persists);
  metric(m, "state_persist_errors_total", "counter",
         "High-water marks that could not be written.", gs.persist_errors);
  metric(m, "machine_id", "gauge", "The machine id IDs carry now.",
         sf_gen_machine_id(n->gen));
}

/* The generator's clock against the end of the layout and the wall clock. */
static void clock_gauges(mbuf *m, const sf_node *n) {
  int64_t gen_ns = n->clock(n->clock_ctx);
  int64_t wall_ns = sf_clock_wall(NULL);
  int64_t left_ms = sf_layout_end_ms(n->layout) - gen_ns / 1000000;
  mput(m,
       "# HELP snowflake_time_left_seconds Seconds until the timestamp runs "
       "out of bits for this epoch (then no ID is issued).\n"
       "# TYPE snowflake_time_left_seconds gauge\n"
       "snowflake_time_left_seconds %.3f\n"
       "# HELP snowflake_clock_offset_seconds The generator's clock minus the "
       "wall clock (NTP steps since start under CLOCK=monotonic).\n"
       "# TYPE snowflake_clock_offset_seconds gauge\n"
       "snowflake_clock_offset_seconds %.3f\n",
       (double)(left_ms > 0 ? left_ms : 0) / 1e3,
       (double)(gen_ns - wall_ns) / 1e9);
}

static void lease(mbuf *m, const sf_node *n) {
  sf_lease_stats ls;
  if (!n->lease)
    return;
  n->lease->stats(n->lease_ctx, &ls);
  mput(m,
       "# HELP snowflake_lease_held 1 while the etcd machine id lease is "
       "held.\n# TYPE snowflake_lease_held gauge\nsnowflake_lease_held %d\n",
       ls.state == SF_LEASE_HELD && ls.machine_id >= 0);
  metric(m, "lease_acquisitions_total", "counter",
         "Machine ids claimed from etcd.", ls.acquisitions);
  metric(m, "lease_renewals_total", "counter", "Lease keepalives.",
         ls.renewals);
  metric(m, "lease_renew_errors_total", "counter",
         "Lease keepalives that failed.", ls.renew_errors);
  metric(m, "lease_losses_total", "counter",
         "Times the machine id was given up as unsafe.", ls.losses);
  metric(m, "lease_claim_attempts_total", "counter",
         "Tries to hold a machine id while none was held (claims, takings "
         "back); rising: the node waits for etcd.",
         ls.attempts);
  mput(m,
       "# HELP snowflake_lease_mark_unix_ms The handover mark stored in etcd "
       "for the id held: no ID at or past it (0: none held).\n"
       "# TYPE snowflake_lease_mark_unix_ms gauge\n"
       "snowflake_lease_mark_unix_ms %lld\n"
       "# HELP snowflake_lease_floor_unix_ms The mark found when the id was "
       "claimed: IDs only above it (0: none).\n"
       "# TYPE snowflake_lease_floor_unix_ms gauge\n"
       "snowflake_lease_floor_unix_ms %lld\n",
       (long long)ls.mark_ms, (long long)ls.floor_ms);
  metric(m, "lease_mark_writes_total", "counter",
         "Handover marks stored in etcd.", ls.mark_writes);
  metric(m, "lease_mark_errors_total", "counter",
         "Handover mark writes that failed (etcd unreachable).",
         ls.mark_errors);
}

size_t sf__metrics_render(sf_node *n, char *buf, size_t cap, sf_ep self) {
  totals t;
  mbuf m = {buf, 0, cap < SF_METRICS_MAX ? cap : SF_METRICS_MAX};
  sum(n, &t);
  if (self < SF_EP_COUNT)
    t.req[self][SF_ST_200] += 1;
  mput(&m,
       "# HELP snowflake_build_info Version of snowflaked.\n"
       "# TYPE snowflake_build_info gauge\n"
       "snowflake_build_info{version=\"%s\"} 1\n",
       SF_VERSION_STRING);
  metric(&m, "ids_issued_total", "counter", "IDs handed out.", t.issued);
  metric(&m, "ids_dropped_total", "counter",
         "IDs minted but dropped by the lease check after minting.", t.dropped);
  requests(&m, &t);
  generator(&m, n);
  clock_gauges(&m, n);
  metric(&m, "open_connections", "gauge", "Connections open now.",
         (uint64_t)atomic_load_explicit(&n->open_conns, memory_order_relaxed));
  metric(&m, "connections_accepted_total", "counter", "Connections accepted.",
         t.accepted);
  metric(&m, "connections_refused_total", "counter",
         "Connections refused at MAX_CONNECTIONS.", t.refused);
  metric(&m, "connections_idle_closed_total", "counter",
         "Connections closed after IDLE_TIMEOUT_MS.", t.idle);
  metric(&m, "threads", "gauge", "Event loop threads.", n->cfg->threads);
  metric(&m, "start_time_seconds", "gauge", "Unix time the node started.",
         (uint64_t)(n->start_unix_ms / 1000));
  lease(&m, n);
  return m.len;
}
