/*
 * routes.c - the endpoints: a static table from path to handler.
 *
 * The server knows nothing of bit layouts: IDs come from sf__mint, their
 * parts from sf_decode and their text views from sf_view_encode (views.c
 * holds /decode, /bounds and the format= parameter).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "metrics.h"
#include "mint.h"
#include "route.h"
#include "views.h"

typedef void (*handler_fn)(const sf_req *r, sf_answer *a);

static void ok(sf_answer *a, const char *ctype, size_t len) {
  a->st = SF_ST_200;
  a->ctype = ctype;
  a->body_len = len;
}

/* mint_error answers a refused mint: 503 (500 for an internal error) with
 * the reason, and Retry-After when the node expects to recover. */
static void mint_error(sf_answer *a, const sf_mint_error *e) {
  if (e->retry_ms > 0)
    a->retry_after_s = (e->retry_ms + 999) / 1000;
  sf__answer_error(a, e->status == SF_MINT_INTERNAL ? SF_ST_500 : SF_ST_503,
                   e->msg);
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
  b = sf__answer_body(a, 2);
  if (!b)
    return;
  memcpy(b, "ok", 2);
  ok(a, "text/plain; charset=utf-8", 2);
}

static void h_id(const sf_req *r, sf_answer *a) {
  sf_mint_error e;
  sf_format f;
  uint64_t id;
  char *b, *p;
  size_t dl;
  int quoted, view = sf__view_param(r, a, SF_VIEWS_ID, &f, &quoted);
  if (view < 0)
    return;
  if (sf__mint(a->w, &id, 1, &e) != 0) {
    mint_error(a, &e);
    return;
  }
  b = p = sf__answer_body(a, 96 + 16 + SF_UUID_BUFSIZE);
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
  if (view) {
    /* , "<format>": "<view>" */
    const char *name = sf_format_name(f);
    SF_PUT(p, ", \"");
    memcpy(p, name, strlen(name));
    p += strlen(name);
    SF_PUT(p, "\": \"");
    p += sf__view_put(a->w->node, id, f, p);
    *p++ = '"';
  }
  *p++ = '}';
  ok(a, "application/json", (size_t)(p - b));
}

static void h_ids(const sf_req *r, sf_answer *a) {
  sf_node *n = a->w->node;
  const char *v;
  size_t vl, count = 0;
  int quoted = 0, view;
  sf_format f = SF_FORMAT_DEC;
  unsigned max = n->cfg->max_batch;
  sf_mint_error e;
  char msg[96], *b, *p;

  if (!sf__query_param(r, "count", &v, &vl)) {
    snprintf(msg, sizeof msg, "count is required: an integer in 1..%u", max);
    sf__answer_error(a, SF_ST_400, msg);
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
    sf__answer_error(a, SF_ST_400, msg);
    return;
  }
  view = sf__view_param(r, a, SF_VIEWS_IDS, &f, &quoted);
  if (view < 0)
    return;
  if (sf__mint(a->w, a->w->ids, count, &e) != 0) {
    mint_error(a, &e);
    return;
  }
  b = p = sf__answer_body(a, 64 + count * (SF_UUID_BUFSIZE + 4));
  if (!b)
    return;
  SF_PUT(p, "{\"ids\": [");
  for (size_t i = 0; i < count; i++) {
    if (i)
      SF_PUT(p, ", ");
    if (quoted)
      *p++ = '"';
    if (f == SF_FORMAT_DEC)
      p += sf__u64_dec(p, a->w->ids[i]);
    else
      p += sf__view_put(n, a->w->ids[i], f, p);
    if (quoted)
      *p++ = '"';
  }
  SF_PUT(p, "], \"machine_id\": ");
  p += sf__u64_dec(p, sf__mint_machine_of(n, a->w->ids[0]));
  *p++ = '}';
  ok(a, "application/json", (size_t)(p - b));
}

/* ---------------------------------------------------------------- metrics */

static void h_metrics(const sf_req *r, sf_answer *a) {
  sf_node *n = a->w->node;
  char *b;
  size_t len;
  (void)r;
  b = sf__answer_body(a, SF_METRICS_MAX);
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
    R("/decode/", 1, SF_EP_DECODE, sf__h_decode),
    R("/bounds", 0, SF_EP_BOUNDS, sf__h_bounds),
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
    sf__answer_error(a, SF_ST_404, "no such endpoint");
    return;
  }
  a->ep = rt->ep;
  if (r->method != SF_M_GET && r->method != SF_M_HEAD) {
    a->allow = "GET, HEAD";
    sf__answer_error(a, SF_ST_405, "only GET and HEAD are allowed");
    return;
  }
  if (r->has_body) {
    sf__answer_error(a, SF_ST_400, "a request body is not accepted");
    return;
  }
  rt->fn(r, a);
}
