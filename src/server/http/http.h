/*
 * http.h - one HTTP/1.x connection as a pure function: request bytes in,
 * response bytes appended to the connection's output buffer. No sockets and
 * no event loop here, so unit tests and fuzzers drive it directly.
 *
 * Requests are parsed with llhttp; responses to pipelined requests are
 * appended in order. The caller writes out[0..out_len) to the peer, then
 * calls sf__http_sent(); when sf__http_closing() is true it closes the
 * connection once the output is written.
 */
#ifndef SF_SRV_HTTP_H
#define SF_SRV_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "node.h"
#include "proto.h"
#include "route.h"
#include "text.h"

#define SF_HTTP_URL_INLINE 256  /* request target kept inside the conn */
#define SF_HTTP_OUT_INLINE 2048 /* output kept inside the connection */
#define SF_HTTP_HEADROOM 512    /* room reserved for response headers */

/* Idle, a connection holds only its inline buffers: a request target
 * longer than SF_HTTP_URL_INLINE moves to the heap until its request is
 * answered, and output that outgrows out_inline moves to the heap until it
 * is sent (sf__http_sent). */
typedef struct sf_http_conn {
  llhttp_t parser;
  sf_worker *w;
  char *out; /* out_inline, or the heap once a response outgrew it */
  size_t out_len, out_cap;
  char *url; /* url_inline, or the heap for a long request target */
  size_t url_len, url_cap, header_bytes;
  sf_st err_st; /* found by a callback (414, 431...), SF_ST_COUNT: none */
  const char *err_msg;
  int closing;    /* close once out is written; further input ignored */
  int spoke;      /* a request line began: the peer speaks HTTP/1.x */
  int keep_alive; /* of the current request */
  int has_body;   /* of the current request */
  int http10;     /* the current request is HTTP/1.0 */
  int head;       /* the current request is HEAD: no body sent */
  sf_ep ep;       /* the current request's endpoint, for metrics */
  char url_inline[SF_HTTP_URL_INLINE];
  char out_inline[SF_HTTP_OUT_INLINE];
} sf_http_conn;

/* sf__http_init readies c for a new connection served by w; it writes
 * neither inline buffer, so they need no zeroing. */
void sf__http_init(sf_http_conn *c, sf_worker *w);
/* sf__http_free releases what c allocated; c can be initialized again. */
void sf__http_free(sf_http_conn *c);
/* sf__http_feed parses data and appends the responses to c->out. Returns
 * the bytes consumed: less than len only when parsing stopped because
 * SF_HTTP_OUT_PAUSE bytes of output wait; feed the rest after sending. */
size_t sf__http_feed(sf_http_conn *c, const char *data, size_t len);
/* sf__http_sent empties c->out after the caller wrote all of it and gives
 * a heap output buffer back: idle connections hold no heap. */
void sf__http_sent(sf_http_conn *c);
static inline int sf__http_closing(const sf_http_conn *c) {
  return c->closing;
}

/* ---- for the routes: building responses in c->out ---- */

/* sf__http_body reserves room for a body of at most max bytes after the
 * headroom and returns where to write it, or NULL when out of memory. */
char *sf__http_body(sf_http_conn *c, size_t max);
/* sf__http_respond writes the status line and headers in front of the body
 * written at sf__http_body() (dropped for HEAD) and counts the request.
 * extra: more header lines, each ending in CRLF, or NULL. */
void sf__http_respond(sf_http_conn *c, sf_st st, const char *ctype,
                      size_t body_len, const char *extra, size_t extra_len);
/* sf__http_error answers st with {"error": msg} (msg is JSON-escaped). */
void sf__http_error(sf_http_conn *c, sf_st st, const char *msg,
                    const char *extra, size_t extra_len);

#endif /* SF_SRV_HTTP_H */
