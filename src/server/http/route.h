/*
 * route.h - what an HTTP route answers, apart from how a protocol frames
 * it: HTTP/1.x (http.c) writes a status line and header lines, HTTP/2
 * (h2.c) HEADERS and DATA frames. The handlers (routes.c) only parse the
 * request and write a status, a content type, a body and the few headers
 * they need into an sf_answer.
 */
#ifndef SF_SRV_ROUTE_H
#define SF_SRV_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

typedef enum sf_method { SF_M_GET, SF_M_HEAD, SF_M_OTHER } sf_method;

typedef struct sf_req {
  const char *path, *query; /* not NUL-terminated */
  size_t path_len, query_len;
  sf_method method;
  int has_body;
} sf_req;

typedef struct sf_answer {
  sf_worker *w;
  /* body_alloc returns room for a body of at most max bytes (the framing
   * protocol's buffer, written in place), or NULL when out of memory. */
  char *(*body_alloc)(void *ctx, size_t max);
  void *ctx;
  /* Filled by the route: */
  sf_ep ep;
  sf_st st;
  const char *ctype;
  char *body; /* from body_alloc; NULL: none (out of memory) */
  size_t body_len;
  int64_t retry_after_s; /* > 0: a Retry-After header */
  const char *allow;     /* an Allow header's value, or NULL */
  int oom;               /* out of memory: the answer is lost, close */
} sf_answer;

/* sf__route answers the request r into a (whose w, body_alloc and ctx the
 * caller set, the rest zeroed). The caller counts it by a->ep and a->st. */
void sf__route(const sf_req *r, sf_answer *a);

/* sf__answer_body asks the framing protocol for room for a body of at most
 * max bytes: a->body, or NULL (a->oom set). */
char *sf__answer_body(sf_answer *a, size_t max);
/* sf__answer_error answers st with {"error": msg} into a. */
void sf__answer_error(sf_answer *a, sf_st st, const char *msg);

/* SF_JSON_ERROR_MAX is the most sf__json_error writes for a message of n
 * bytes. */
#define SF_JSON_ERROR_MAX(n) (16 + (n)*6)
/* sf__json_error writes {"error": msg} (msg JSON-escaped) at dst; returns
 * the length. */
size_t sf__json_error(char *dst, const char *msg);

#endif /* SF_SRV_ROUTE_H */
