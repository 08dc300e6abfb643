/*
 * routes.c - the endpoints: a static table from path to handler.
 *
 * The server knows nothing of bit layouts: IDs come from sf_gen_next*, and
 * their parts from sf_decode.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "http.h"

#define PUT(p, lit)                                                            \
  (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)
#define ALLOW_GET_HEAD "Allow: GET, HEAD\r\n"

typedef struct req {
  const char *path, *query; /* not NUL-terminated */
  size_t path_len, query_len;
} req;

typedef void (*handler_fn)(sf_http_conn *c, const req *r);

static void oom(sf_http_conn *c) {
  c->closing = 1;
}

/* retry_after writes "Retry-After: <s>\r\n" for wait_ms, rounded up. */
static size_t retry_after(char *buf, int64_t wait_ms) {
  char *p = buf;
  int64_t s = wait_ms <= 0 ? 1 : (wait_ms + 999) / 1000;
  PUT(p, "Retry-After: ");
  p += sf__u64_dec(p, (uint64_t)s);
  PUT(p, "\r\n");
  return (size_t)(p - buf);
}

static void clock_behind(sf_http_conn *c, int64_t wait_ms) {
  char msg[96], hdr[48];
  size_t n = retry_after(hdr, wait_ms);
  snprintf(msg, sizeof msg,
           "clock is behind the last issued ID by %lld ms beyond the "
           "tolerance",
           (long long)wait_ms);
  sf__http_error(c, SF_ST_503, msg, hdr, n);
}

/* gen_error answers a failed sf_gen_next*. */
static void gen_error(sf_http_conn *c, int rc, int64_t wait_ms) {
  static const char one[] = "Retry-After: 1\r\n";
  switch (rc) {
  case SF_ECLOCKBACK:
    clock_behind(c, wait_ms);
    break;
  case SF_ESTATE:
    sf__http_error(c, SF_ST_503, "the high-water mark could not be persisted",
                   one, sizeof one - 1);
    break;
  case SF_EOVERFLOW:
    sf__http_error(c, SF_ST_503,
                   "the timestamp has run out of bits for this epoch", NULL, 0);
    break;
  default:
    sf__http_error(c, SF_ST_500, sf_strerror(rc), NULL, 0);
  }
}

static void no_lease(sf_http_conn *c) {
  static const char one[] = "Retry-After: 1\r\n";
  sf__http_error(c, SF_ST_503, "no machine id lease is held (etcd)", one,
                 sizeof one - 1);
}

/* The leased machine id and the lease's generation as the pre-check saw
 * them (lease_id is NULL: the id is fixed and neither check runs). */
typedef struct lease_snap {
  int64_t id;
  uint64_t gen;
} lease_snap;

/* machine_ready is the check before minting: 0 with s set, or -1 after
 * answering 503. A new lease id is handed to the generator. */
static int machine_ready(sf_http_conn *c, lease_snap *s) {
  sf_node *n = c->w->node;
  s->id = -1;
  s->gen = 0;
  if (!n->lease_id)
    return 0;
  s->id = n->lease_id(n->lease_ctx, &s->gen);
  if (s->id < 0) {
    no_lease(c);
    return -1;
  }
  if ((uint64_t)s->id != sf_gen_machine_id(n->gen) &&
      sf_gen_set_machine_id(n->gen, (uint64_t)s->id) != 0) {
    sf__http_error(c, SF_ST_500, "leased machine id out of range", NULL, 0);
    return -1;
  }
  return 0;
}

static uint64_t machine_of(const sf_node *n, uint64_t id) {
  sf_parts p;
  if (sf_decode(n->layout, id, &p) != 0)
    return 0;
  return p.machine_id;
}

/* machine_kept is the check after minting ids[0..count): 0 when they may
 * be sent, or -1 after answering 503 (they are dropped; the generator never
 * issues them again).
 *
 * Why this is enough: the pre-check saw (id, gen) with the id's deadline
 * still ahead, so etcd held our lease L then (the deadline ends a margin
 * before etcd's expiry). If this check sees the same id and generation,
 * again before the deadline, etcd still holds the same L now: only
 * publish() changes the id or L, and it always moves the generation (a
 * lease that expired at etcd fails its keepalive and the id must be
 * claimed again, a new publish). An etcd lease never comes back once
 * expired, so L, and the key <prefix><id> bound to it, lived through the
 * whole interval, and every ID minted in it was minted under a lease etcd
 * held. The IDs' own machine field must be id too: another thread may have
 * set the generator to a different leased id between the checks. The fence
 * keeps this check's loads and clock read after the mint. */
static int machine_kept(sf_http_conn *c, const lease_snap *s,
                        const uint64_t *ids, size_t count) {
  sf_node *n = c->w->node;
  uint64_t gen;
  int64_t id;
  if (!n->lease_id)
    return 0;
  atomic_thread_fence(memory_order_seq_cst);
  id = n->lease_id(n->lease_ctx, &gen);
  if (id < 0 || id != s->id || gen != s->gen) {
    no_lease(c);
    return -1;
  }
  for (size_t i = 0; i < count; i++)
    if (machine_of(n, ids[i]) != (uint64_t)id) {
      no_lease(c);
      return -1;
    }
  return 0;
}

/* ------------------------------------------------------------- handlers */

static void h_health(sf_http_conn *c, const req *r) {
  sf_node *n = c->w->node;
  sf_gen_stats s;
  int64_t now_ms, high, behind;
  char *b;
  (void)r;
  if (n->lease_id && n->lease_id(n->lease_ctx, NULL) < 0) {
    no_lease(c);
    return;
  }
  sf_gen_stats_get(n->gen, &s);
  now_ms = n->clock(n->clock_ctx) / 1000000;
  high = s.last_unix_ms > n->floor_unix_ms ? s.last_unix_ms : n->floor_unix_ms;
  behind = high - now_ms;
  if (behind > n->cfg->clock_tolerance_ms) {
    clock_behind(c, behind);
    return;
  }
  b = sf__http_body(c, 2);
  if (!b) {
    oom(c);
    return;
  }
  memcpy(b, "ok", 2);
  sf__http_respond(c, SF_ST_200, "text/plain; charset=utf-8", 2, NULL, 0);
}

static void h_id(sf_http_conn *c, const req *r) {
  sf_node *n = c->w->node;
  lease_snap ls;
  uint64_t id;
  int64_t wait_ms = 0;
  int rc;
  char *b, *p;
  size_t dl;
  (void)r;
  if (machine_ready(c, &ls))
    return;
  rc = sf_gen_next(n->gen, &id, &wait_ms);
  if (rc != 0) {
    gen_error(c, rc, wait_ms);
    return;
  }
  if (machine_kept(c, &ls, &id, 1))
    return;
  sf__ctr_add(&c->w->stats->ids_issued, 1);
  b = p = sf__http_body(c, 96);
  if (!b) {
    oom(c);
    return;
  }
  PUT(p, "{\"id\": ");
  dl = sf__u64_dec(p, id);
  p += dl;
  PUT(p, ", \"id_str\": \"");
  memcpy(p, p - dl - 13, dl); /* the digits just written */
  p += dl;
  PUT(p, "\", \"machine_id\": ");
  p += sf__u64_dec(p, machine_of(n, id));
  *p++ = '}';
  sf__http_respond(c, SF_ST_200, "application/json", (size_t)(p - b), NULL, 0);
}

/* param finds name=value in the query: 1 with *val set, or 0. */
static int param(const req *r, const char *name, const char **val,
                 size_t *vlen) {
  size_t nl = strlen(name);
  const char *q = r->query, *end = r->query + r->query_len;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *stop = amp ? amp : end;
    if ((size_t)(stop - q) > nl && !memcmp(q, name, nl) && q[nl] == '=') {
      *val = q + nl + 1;
      *vlen = (size_t)(stop - q) - nl - 1;
      return 1;
    }
    if ((size_t)(stop - q) == nl && !memcmp(q, name, nl)) {
      *val = stop;
      *vlen = 0;
      return 1;
    }
    q = stop + 1;
  }
  return 0;
}

static void h_ids(sf_http_conn *c, const req *r) {
  sf_node *n = c->w->node;
  const char *v;
  size_t vl, count = 0;
  int strings = 0, rc;
  int64_t wait_ms = 0;
  unsigned max = n->cfg->max_batch;
  lease_snap ls;
  char msg[96], *b, *p;

  if (!param(r, "count", &v, &vl)) {
    snprintf(msg, sizeof msg, "count is required: an integer in 1..%u", max);
    {
      sf__http_error(c, SF_ST_400, msg, NULL, 0);
      return;
    }
  }
  for (size_t i = 0; i < vl && count <= max; i++) {
    if (v[i] < '0' || v[i] > '9') {
      count = 0;
      break;
    }
    count = count * 10 + (size_t)(v[i] - '0');
  }
  if (count < 1 || count > max || vl == 0) {
    snprintf(msg, sizeof msg, "count must be an integer in 1..%u", max);
    {
      sf__http_error(c, SF_ST_400, msg, NULL, 0);
      return;
    }
  }
  if (param(r, "format", &v, &vl)) {
    if (vl == 6 && !memcmp(v, "string", 6))
      strings = 1;
    else if (!(vl == 6 && !memcmp(v, "number", 6))) {
      sf__http_error(c, SF_ST_400, "format must be \"number\" or \"string\"",
                     NULL, 0);
      return;
    }
  }
  if (machine_ready(c, &ls))
    return;
  rc = sf_gen_next_n(n->gen, c->w->ids, count, &wait_ms);
  if (rc != 0) {
    gen_error(c, rc, wait_ms);
    return;
  }
  if (machine_kept(c, &ls, c->w->ids, count))
    return;
  sf__ctr_add(&c->w->stats->ids_issued, count);
  b = p = sf__http_body(c, 64 + count * (SF_ID_BUFSIZE + 4));
  if (!b) {
    oom(c);
    return;
  }
  PUT(p, "{\"ids\": [");
  for (size_t i = 0; i < count; i++) {
    if (i)
      PUT(p, ", ");
    if (strings)
      *p++ = '"';
    p += sf__u64_dec(p, c->w->ids[i]);
    if (strings)
      *p++ = '"';
  }
  PUT(p, "], \"machine_id\": ");
  p += sf__u64_dec(p, machine_of(n, c->w->ids[0]));
  *p++ = '}';
  sf__http_respond(c, SF_ST_200, "application/json", (size_t)(p - b), NULL, 0);
}

static void h_decode(sf_http_conn *c, const req *r) {
  sf_node *n = c->w->node;
  const char *s = r->path + 8; /* after "/decode/" */
  size_t len = r->path_len - 8;
  uint64_t id;
  sf_parts parts;
  char t[SF_TIME_BUFSIZE], *b, *p;
  int rc, tl;

  if (len == 0) {
    sf__http_error(c, SF_ST_400, "missing id: use /decode/<decimal id>", NULL,
                   0);
    return;
  }
  rc = sf_parse(s, len, SF_FORMAT_DEC, &id);
  if (rc == SF_ERANGE) {
    sf__http_error(c, SF_ST_400, "id is larger than 9223372036854775807", NULL,
                   0);
    return;
  }
  if (rc != 0) {
    sf__http_error(c, SF_ST_400,
                   "id must be a decimal integer (digits 0-9 only)", NULL, 0);
    return;
  }
  if (sf_decode(n->layout, id, &parts) != 0) {
    sf__http_error(c, SF_ST_400, "id cannot be decoded", NULL, 0);
    return;
  }
  tl = sf_format_time(parts.unix_ms, t, sizeof t);
  if (tl < 0) {
    sf__http_error(c, SF_ST_400, "id's time is outside the years 1970..9999",
                   NULL, 0);
    return;
  }
  b = p = sf__http_body(c, 256);
  if (!b) {
    oom(c);
    return;
  }
  PUT(p, "{\"id\": ");
  p += sf__u64_dec(p, id);
  PUT(p, ", \"id_str\": \"");
  p += sf__u64_dec(p, id);
  PUT(p, "\", \"timestamp_ms\": ");
  p += sf__u64_dec(p, (uint64_t)parts.unix_ms);
  PUT(p, ", \"time\": \"");
  memcpy(p, t, (size_t)tl);
  p += tl;
  PUT(p, "\", \"machine_id\": ");
  p += sf__u64_dec(p, parts.machine_id);
  PUT(p, ", \"sequence\": ");
  p += sf__u64_dec(p, parts.sequence);
  *p++ = '}';
  sf__http_respond(c, SF_ST_200, "application/json", (size_t)(p - b), NULL, 0);
}

/* ---------------------------------------------------------------- metrics */

#define METRICS_MAX 32768

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

static void h_metrics(sf_http_conn *c, const req *r) {
  sf_node *n = c->w->node;
  uint64_t cnt[SF_EP_COUNT][SF_ST_COUNT] = {{0}}, issued = 0, acc = 0,
           refused = 0, idle = 0;
  sf_gen_stats gs;
  mbuf m;
  (void)r;

  m.p = sf__http_body(c, METRICS_MAX);
  if (!m.p) {
    oom(c);
    return;
  }
  m.len = 0;
  m.cap = METRICS_MAX;
  /* Summed at scrape time: each worker writes only its own counters. */
  for (unsigned t = 0; t < n->nstats; t++) {
    sf_srv_stats *s = &n->stats[t];
    for (int e = 0; e < SF_EP_COUNT; e++)
      for (int k = 0; k < SF_ST_COUNT; k++)
        cnt[e][k] += ld(&s->requests[e][k]);
    issued += ld(&s->ids_issued);
    acc += ld(&s->conns_accepted);
    refused += ld(&s->conns_refused);
    idle += ld(&s->conns_idle_closed);
  }
  /* This scrape is answered below, after it is counted. */
  cnt[SF_EP_METRICS][SF_ST_200] += 1;
  sf_gen_stats_get(n->gen, &gs);

  mput(&m,
       "# HELP snowflake_build_info Version of snowflaked.\n"
       "# TYPE snowflake_build_info gauge\n"
       "snowflake_build_info{version=\"%s\"} 1\n",
       SF_VERSION_STRING);
  metric(&m, "ids_issued_total", "counter", "IDs handed out.", issued);
  mput(&m, "# HELP snowflake_requests_total HTTP requests by endpoint and "
           "status.\n# TYPE snowflake_requests_total counter\n");
  for (int e = 0; e < SF_EP_COUNT; e++)
    for (int k = 0; k < SF_ST_COUNT; k++)
      if (cnt[e][k] || (k == SF_ST_200 && e != SF_EP_OTHER))
        mput(&m,
             "snowflake_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
             sf__ep_label[e], sf__st_code[k], (unsigned long long)cnt[e][k]);
  mput(&m,
       "# HELP snowflake_clock_backwards_total Clock steps back seen by the "
       "generator, by what it did.\n"
       "# TYPE snowflake_clock_backwards_total counter\n"
       "snowflake_clock_backwards_total{action=\"waited\"} %llu\n"
       "snowflake_clock_backwards_total{action=\"refused\"} %llu\n",
       (unsigned long long)gs.clock_back_waits,
       (unsigned long long)gs.clock_back_errors);
  metric(&m, "sequence_exhaustion_waits_total", "counter",
         "Times a millisecond's sequence ran out and the generator waited.",
         gs.sequence_waits);
  metric(&m, "state_persists_total", "counter", "High-water marks written.",
         gs.persists);
  metric(&m, "state_persist_errors_total", "counter",
         "High-water marks that could not be written.", gs.persist_errors);
  metric(&m, "open_connections", "gauge", "Connections open now.",
         (uint64_t)atomic_load_explicit(&n->open_conns, memory_order_relaxed));
  metric(&m, "connections_accepted_total", "counter", "Connections accepted.",
         acc);
  metric(&m, "connections_refused_total", "counter",
         "Connections refused at MAX_CONNECTIONS.", refused);
  metric(&m, "connections_idle_closed_total", "counter",
         "Connections closed after IDLE_TIMEOUT_MS.", idle);
  metric(&m, "machine_id", "gauge", "The machine id IDs carry now.",
         sf_gen_machine_id(n->gen));
  metric(&m, "threads", "gauge", "Event loop threads.", n->cfg->threads);
  metric(&m, "start_time_seconds", "gauge", "Unix time the node started.",
         (uint64_t)(n->start_unix_ms / 1000));
  if (n->lease_stats) {
    sf_lease_stats ls;
    n->lease_stats(n->lease_ctx, &ls);
    mput(&m,
         "# HELP snowflake_lease_held 1 while the etcd machine id lease is "
         "held.\n# TYPE snowflake_lease_held gauge\nsnowflake_lease_held %d\n",
         ls.state == SF_LEASE_HELD && ls.machine_id >= 0);
    metric(&m, "lease_acquisitions_total", "counter",
           "Machine ids claimed from etcd.", ls.acquisitions);
    metric(&m, "lease_renewals_total", "counter", "Lease keepalives.",
           ls.renewals);
    metric(&m, "lease_renew_errors_total", "counter",
           "Lease keepalives that failed.", ls.renew_errors);
    metric(&m, "lease_losses_total", "counter",
           "Times the machine id was given up as unsafe.", ls.losses);
  }
  sf__http_respond(c, SF_ST_200, "text/plain; version=0.0.4; charset=utf-8",
                   m.len, NULL, 0);
}

/* ------------------------------------------------------------ the table */

typedef struct route {
  const char *path;
  size_t len;
  int prefix; /* path is a prefix: /decode/<id> */
  sf_ep ep;
  handler_fn fn;
} route;

#define R(path, prefix, ep, fn)                                                \
  { path, sizeof(path) - 1, prefix, ep, fn }
static const route routes[] = {
    R("/id", 0, SF_EP_ID, h_id),
    R("/ids", 0, SF_EP_IDS, h_ids),
    R("/health", 0, SF_EP_HEALTH, h_health),
    R("/decode/", 1, SF_EP_DECODE, h_decode),
    R("/metrics", 0, SF_EP_METRICS, h_metrics),
};

void sf__http_dispatch(sf_http_conn *c) {
  req r;
  const char *q = memchr(c->url, '?', c->url_len);
  const route *rt = NULL;
  int method = llhttp_get_method(&c->parser);

  r.path = c->url;
  r.path_len = q ? (size_t)(q - c->url) : c->url_len;
  r.query = q ? q + 1 : c->url + c->url_len;
  r.query_len = q ? c->url_len - r.path_len - 1 : 0;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    const route *t = &routes[i];
    if (t->prefix ? r.path_len >= t->len && !memcmp(r.path, t->path, t->len)
                  : r.path_len == t->len && !memcmp(r.path, t->path, t->len)) {
      rt = t;
      break;
    }
  }
  if (!rt) {
    sf__http_error(c, SF_ST_404, "no such endpoint", NULL, 0);
    return;
  }
  c->ep = rt->ep;
  if (method != HTTP_GET && method != HTTP_HEAD) {
    sf__http_error(c, SF_ST_405, "only GET and HEAD are allowed",
                   ALLOW_GET_HEAD, sizeof ALLOW_GET_HEAD - 1);
    return;
  }
  if (c->has_body) {
    sf__http_error(c, SF_ST_400, "a request body is not accepted", NULL, 0);
    return;
  }
  rt->fn(c, &r);
}
