/*
 * routes.c - the endpoints: a static table from path to handler.
 *
 * The server knows nothing of bit layouts: IDs come from sf_gen_next*, and
 * their parts from sf_decode.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "metrics.h"
#include "mint.h"

#define ALLOW_GET_HEAD "Allow: GET, HEAD\r\n"

typedef struct req {
  const char *path, *query; /* not NUL-terminated */
  size_t path_len, query_len;
} req;

typedef void (*handler_fn)(sf_http_conn *c, const req *r);

static void oom(sf_http_conn *c) {
  c->closing = 1;
}

/* mint_error answers a refused mint: 503 (500 for an internal error) with
 * the reason, and Retry-After when the node expects to recover. */
static void mint_error(sf_http_conn *c, const sf_mint_error *e) {
  char hdr[48], *p = hdr;
  if (e->retry_ms > 0) {
    SF_PUT(p, "Retry-After: ");
    p += sf__u64_dec(p, (uint64_t)((e->retry_ms + 999) / 1000));
    SF_PUT(p, "\r\n");
  }
  sf__http_error(c, e->status == SF_MINT_INTERNAL ? SF_ST_500 : SF_ST_503,
                 e->msg, p > hdr ? hdr : NULL, (size_t)(p - hdr));
}

/* ------------------------------------------------------------- handlers */

static void h_health(sf_http_conn *c, const req *r) {
  sf_mint_error e;
  char *b;
  (void)r;
  if (sf__mint_ready(c->w->node, &e) != 0) {
    mint_error(c, &e);
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
  sf_mint_error e;
  uint64_t id;
  char *b, *p;
  size_t dl;
  (void)r;
  if (sf__mint(c->w, &id, 1, &e) != 0) {
    mint_error(c, &e);
    return;
  }
  b = p = sf__http_body(c, 96);
  if (!b) {
    oom(c);
    return;
  }
  SF_PUT(p, "{\"id\": ");
  dl = sf__u64_dec(p, id);
  p += dl;
  SF_PUT(p, ", \"id_str\": \"");
  memcpy(p, p - dl - 13, dl); /* the digits just written */
  p += dl;
  SF_PUT(p, "\", \"machine_id\": ");
  p += sf__u64_dec(p, sf__mint_machine_of(c->w->node, id));
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
  int strings = 0;
  unsigned max = n->cfg->max_batch;
  sf_mint_error e;
  char msg[96], *b, *p;

  if (!param(r, "count", &v, &vl)) {
    snprintf(msg, sizeof msg, "count is required: an integer in 1..%u", max);
    sf__http_error(c, SF_ST_400, msg, NULL, 0);
    return;
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
    sf__http_error(c, SF_ST_400, msg, NULL, 0);
    return;
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
  if (sf__mint(c->w, c->w->ids, count, &e) != 0) {
    mint_error(c, &e);
    return;
  }
  b = p = sf__http_body(c, 64 + count * (SF_ID_BUFSIZE + 4));
  if (!b) {
    oom(c);
    return;
  }
  SF_PUT(p, "{\"ids\": [");
  for (size_t i = 0; i < count; i++) {
    if (i)
      SF_PUT(p, ", ");
    if (strings)
      *p++ = '"';
    p += sf__u64_dec(p, c->w->ids[i]);
    if (strings)
      *p++ = '"';
  }
  SF_PUT(p, "], \"machine_id\": ");
  p += sf__u64_dec(p, sf__mint_machine_of(n, c->w->ids[0]));
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
  SF_PUT(p, "{\"id\": ");
  p += sf__u64_dec(p, id);
  SF_PUT(p, ", \"id_str\": \"");
  p += sf__u64_dec(p, id);
  SF_PUT(p, "\", \"timestamp_ms\": ");
  p += sf__u64_dec(p, (uint64_t)parts.unix_ms);
  SF_PUT(p, ", \"time\": \"");
  memcpy(p, t, (size_t)tl);
  p += tl;
  SF_PUT(p, "\", \"machine_id\": ");
  p += sf__u64_dec(p, parts.machine_id);
  SF_PUT(p, ", \"sequence\": ");
  p += sf__u64_dec(p, parts.sequence);
  *p++ = '}';
  sf__http_respond(c, SF_ST_200, "application/json", (size_t)(p - b), NULL, 0);
}

/* ---------------------------------------------------------------- metrics */

static void h_metrics(sf_http_conn *c, const req *r) {
  sf_node *n = c->w->node;
  char *b;
  size_t len;
  (void)r;
  b = sf__http_body(c, SF_METRICS_MAX);
  if (!b) {
    oom(c);
    return;
  }
  /* This scrape is answered below, after it is counted. */
  len = sf__metrics_render(n, b, SF_METRICS_MAX, SF_EP_METRICS);
  sf__http_respond(c, SF_ST_200, "text/plain; version=0.0.4; charset=utf-8",
                   len, NULL, 0);
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
