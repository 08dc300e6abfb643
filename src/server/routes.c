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
#include "route.h"

typedef void (*handler_fn)(const sf_req *r, sf_answer *a);

/* body asks the framing protocol for room for max bytes of body. */
static char *body(sf_answer *a, size_t max) {
  a->body = a->body_alloc(a->ctx, max);
  if (!a->body)
    a->oom = 1;
  return a->body;
}

static void ok(sf_answer *a, const char *ctype, size_t len) {
  a->st = SF_ST_200;
  a->ctype = ctype;
  a->body_len = len;
}

size_t sf__json_error(char *dst, const char *msg) {
  static const char hex[] = "0123456789abcdef";
  char *p = dst;
  SF_PUT(p, "{\"error\": \"");
  for (const unsigned char *m = (const unsigned char *)msg; *m; m++) {
    if (*m == '"' || *m == '\\') {
      *p++ = '\\';
      *p++ = (char)*m;
    } else if (*m < 0x20 || *m >= 0x7f) {
      SF_PUT(p, "\\u00");
      *p++ = hex[*m >> 4];
      *p++ = hex[*m & 15];
    } else {
      *p++ = (char)*m;
    }
  }
  SF_PUT(p, "\"}");
  return (size_t)(p - dst);
}

/* error answers st with {"error": msg}. */
static void error(sf_answer *a, sf_st st, const char *msg) {
  char *b = body(a, SF_JSON_ERROR_MAX(strlen(msg)));
  if (!b)
    return;
  a->st = st;
  a->ctype = "application/json";
  a->body_len = sf__json_error(b, msg);
}

/* mint_error answers a refused mint: 503 (500 for an internal error) with
 * the reason, and Retry-After when the node expects to recover. */
static void mint_error(sf_answer *a, const sf_mint_error *e) {
  if (e->retry_ms > 0)
    a->retry_after_s = (e->retry_ms + 999) / 1000;
  error(a, e->status == SF_MINT_INTERNAL ? SF_ST_500 : SF_ST_503, e->msg);
}

/* ------------------------------------------------------------- handlers */

static void h_health(const sf_req *r, sf_answer *a) {
  sf_mint_error e;
  char *b;
  (void)r;
  if (sf__mint_ready(a->w->node, &e) != 0) {
    mint_error(a, &e);
    return;
  }
  b = body(a, 2);
  if (!b)
    return;
  memcpy(b, "ok", 2);
  ok(a, "text/plain; charset=utf-8", 2);
}

static void h_id(const sf_req *r, sf_answer *a) {
  sf_mint_error e;
  uint64_t id;
  char *b, *p;
  size_t dl;
  (void)r;
  if (sf__mint(a->w, &id, 1, &e) != 0) {
    mint_error(a, &e);
    return;
  }
  b = p = body(a, 96);
  if (!b)
    return;
  SF_PUT(p, "{\"id\": ");
  dl = sf__u64_dec(p, id);
  p += dl;
  SF_PUT(p, ", \"id_str\": \"");
  memcpy(p, p - dl - 13, dl); /* the digits just written */
  p += dl;
  SF_PUT(p, "\", \"machine_id\": ");
  p += sf__u64_dec(p, sf__mint_machine_of(a->w->node, id));
  *p++ = '}';
  ok(a, "application/json", (size_t)(p - b));
}

/* param finds name=value in the query: 1 with *val set, or 0. */
static int param(const sf_req *r, const char *name, const char **val,
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

static void h_ids(const sf_req *r, sf_answer *a) {
  sf_node *n = a->w->node;
  const char *v;
  size_t vl, count = 0;
  int strings = 0;
  unsigned max = n->cfg->max_batch;
  sf_mint_error e;
  char msg[96], *b, *p;

  if (!param(r, "count", &v, &vl)) {
    snprintf(msg, sizeof msg, "count is required: an integer in 1..%u", max);
    error(a, SF_ST_400, msg);
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
    error(a, SF_ST_400, msg);
    return;
  }
  if (param(r, "format", &v, &vl)) {
    if (vl == 6 && !memcmp(v, "string", 6))
      strings = 1;
    else if (!(vl == 6 && !memcmp(v, "number", 6))) {
      error(a, SF_ST_400, "format must be \"number\" or \"string\"");
      return;
    }
  }
  if (sf__mint(a->w, a->w->ids, count, &e) != 0) {
    mint_error(a, &e);
    return;
  }
  b = p = body(a, 64 + count * (SF_ID_BUFSIZE + 4));
  if (!b)
    return;
  SF_PUT(p, "{\"ids\": [");
  for (size_t i = 0; i < count; i++) {
    if (i)
      SF_PUT(p, ", ");
    if (strings)
      *p++ = '"';
    p += sf__u64_dec(p, a->w->ids[i]);
    if (strings)
      *p++ = '"';
  }
  SF_PUT(p, "], \"machine_id\": ");
  p += sf__u64_dec(p, sf__mint_machine_of(n, a->w->ids[0]));
  *p++ = '}';
  ok(a, "application/json", (size_t)(p - b));
}

static void h_decode(const sf_req *r, sf_answer *a) {
  sf_node *n = a->w->node;
  const char *s = r->path + 8; /* after "/decode/" */
  size_t len = r->path_len - 8;
  uint64_t id;
  sf_parts parts;
  char t[SF_TIME_BUFSIZE], *b, *p;
  int rc, tl;

  if (len == 0) {
    error(a, SF_ST_400, "missing id: use /decode/<decimal id>");
    return;
  }
  rc = sf_parse(s, len, SF_FORMAT_DEC, &id);
  if (rc == SF_ERANGE) {
    error(a, SF_ST_400, "id is larger than 9223372036854775807");
    return;
  }
  if (rc != 0) {
    error(a, SF_ST_400, "id must be a decimal integer (digits 0-9 only)");
    return;
  }
  if (sf_decode(n->layout, id, &parts) != 0) {
    error(a, SF_ST_400, "id cannot be decoded");
    return;
  }
  tl = sf_format_time(parts.unix_ms, t, sizeof t);
  if (tl < 0) {
    error(a, SF_ST_400, "id's time is outside the years 1970..9999");
    return;
  }
  b = p = body(a, 256);
  if (!b)
    return;
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
  ok(a, "application/json", (size_t)(p - b));
}

/* ---------------------------------------------------------------- metrics */

static void h_metrics(const sf_req *r, sf_answer *a) {
  sf_node *n = a->w->node;
  char *b;
  size_t len;
  (void)r;
  b = body(a, SF_METRICS_MAX);
  if (!b)
    return;
  /* This scrape is answered below, after it is counted. */
  len = sf__metrics_render(n, b, SF_METRICS_MAX, SF_EP_METRICS);
  ok(a, "text/plain; version=0.0.4; charset=utf-8", len);
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

void sf__route(const sf_req *r, sf_answer *a) {
  const route *rt = NULL;
  for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
    const route *t = &routes[i];
    if (t->prefix
            ? r->path_len >= t->len && !memcmp(r->path, t->path, t->len)
            : r->path_len == t->len && !memcmp(r->path, t->path, t->len)) {
      rt = t;
      break;
    }
  }
  if (!rt) {
    error(a, SF_ST_404, "no such endpoint");
    return;
  }
  a->ep = rt->ep;
  if (r->method != SF_M_GET && r->method != SF_M_HEAD) {
    a->allow = "GET, HEAD";
    error(a, SF_ST_405, "only GET and HEAD are allowed");
    return;
  }
  if (r->has_body) {
    error(a, SF_ST_400, "a request body is not accepted");
    return;
  }
  rt->fn(r, a);
}
