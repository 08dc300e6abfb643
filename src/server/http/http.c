/*
 * http.c - llhttp callbacks, the output buffer and response framing.
 */
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct status_line {
  const char *s;
  size_t len;
} status_line;

static const status_line status_lines[SF_ST_COUNT] = {
#define SF__ST_LINE(code, reason)                                              \
  {"HTTP/1.1 " #code " " reason "\r\n",                                        \
   sizeof("HTTP/1.1 " #code " " reason "\r\n") - 1},
    SF_STATUS_MAP(SF__ST_LINE)
#undef SF__ST_LINE
};

/* ---------------------------------------------------------------- output */

/* reserve makes room for n more bytes: 0 or -1. Output that outgrows
 * out_inline moves to the heap, in one step to the next power of two that
 * fits; sf__http_sent gives it back once written. */
static int reserve(sf_http_conn *c, size_t n) {
  size_t need = c->out_len + n, cap;
  char *p;
  if (need <= c->out_cap)
    return 0;
  for (cap = c->out_cap * 2; cap < need; cap *= 2)
    ;
  if (c->out == c->out_inline) {
    p = malloc(cap);
    if (p)
      memcpy(p, c->out, c->out_len);
  } else {
    p = realloc(c->out, cap);
  }
  if (!p)
    return -1;
  c->out = p;
  c->out_cap = cap;
  return 0;
}

char *sf__http_body(sf_http_conn *c, size_t max) {
  if (reserve(c, SF_HTTP_HEADROOM + max))
    return NULL;
  return c->out + c->out_len + SF_HTTP_HEADROOM;
}

void sf__http_respond(sf_http_conn *c, sf_st st, const char *ctype,
                      size_t body_len, const char *extra, size_t extra_len) {
  char *start = c->out + c->out_len, *p = start;
  const char *body = start + SF_HTTP_HEADROOM;
  size_t ctlen = strlen(ctype);
  const sf_worker *w = c->w;

  memcpy(p, status_lines[st].s, status_lines[st].len);
  p += status_lines[st].len;
  memcpy(p, w->date, w->date_len);
  p += w->date_len;
  SF_PUT(p, "Content-Type: ");
  memcpy(p, ctype, ctlen);
  p += ctlen;
  SF_PUT(p, "\r\nContent-Length: ");
  p += sf__u64_dec(p, body_len);
  SF_PUT(p, "\r\n");
  if (c->closing)
    SF_PUT(p, "Connection: close\r\n");
  else if (c->http10)
    SF_PUT(p, "Connection: keep-alive\r\n");
  if (extra) {
    memcpy(p, extra, extra_len);
    p += extra_len;
  }
  SF_PUT(p, "\r\n");
  if (!c->head) {
    memmove(p, body, body_len);
    p += body_len;
  }
  c->out_len += (size_t)(p - start);
  sf__ctr_add(&w->stats->requests[c->ep][st], 1);
  sf__ctr_add(&w->stats->proto_requests[SF_PROTO_HTTP1], 1);
}

void sf__http_error(sf_http_conn *c, sf_st st, const char *msg,
                    const char *extra, size_t extra_len) {
  char *b = sf__http_body(c, SF_JSON_ERROR_MAX(strlen(msg)));
  if (!b) {
    c->closing = 1;
    return;
  }
  sf__http_respond(c, st, "application/json", sf__json_error(b, msg), extra,
                   extra_len);
}

static char *answer_body(void *ctx, size_t max) {
  return sf__http_body(ctx, max);
}

/* dispatch answers the complete request in c through the routes and
 * frames the answer as HTTP/1.x. */
static void dispatch(sf_http_conn *c) {
  const char *q = memchr(c->url, '?', c->url_len);
  int method = llhttp_get_method(&c->parser);
  char extra[64], *p = extra;
  size_t al;
  sf_req r;
  sf_answer a;

  r.path = c->url;
  r.path_len = q ? (size_t)(q - c->url) : c->url_len;
  r.query = q ? q + 1 : c->url + c->url_len;
  r.query_len = q ? c->url_len - r.path_len - 1 : 0;
  r.method = method == HTTP_GET    ? SF_M_GET
             : method == HTTP_HEAD ? SF_M_HEAD
                                   : SF_M_OTHER;
  r.has_body = c->has_body;
  memset(&a, 0, sizeof a);
  a.w = c->w;
  a.body_alloc = answer_body;
  a.ctx = c;
  a.ep = SF_EP_OTHER;
  sf__route(&r, &a);
  c->ep = a.ep;
  if (a.oom) {
    c->closing = 1;
    return;
  }
  if (a.retry_after_s > 0) {
    SF_PUT(p, "Retry-After: ");
    p += sf__u64_dec(p, (uint64_t)a.retry_after_s);
    SF_PUT(p, "\r\n");
  }
  if (a.allow) { /* a short literal of the routes */
    al = strlen(a.allow);
    SF_PUT(p, "Allow: ");
    memcpy(p, a.allow, al);
    p += al;
    SF_PUT(p, "\r\n");
  }
  sf__http_respond(c, a.st, a.ctype, a.body_len, p > extra ? extra : NULL,
                   (size_t)(p - extra));
}

/* -------------------------------------------------------- llhttp glue */

static sf_http_conn *conn_of(llhttp_t *p) {
  return (sf_http_conn *)p->data;
}

static int on_message_begin(llhttp_t *p) {
  sf_http_conn *c = conn_of(p);
  c->url_len = 0;
  c->header_bytes = 0;
  c->has_body = 0;
  c->head = 0;
  c->ep = SF_EP_OTHER;
  return 0;
}

/* url_release moves c back to its inline request target buffer. */
static void url_release(sf_http_conn *c) {
  if (c->url != c->url_inline) {
    free(c->url);
    c->url = c->url_inline;
    c->url_cap = sizeof c->url_inline;
  }
}

static int on_url(llhttp_t *p, const char *at, size_t len) {
  sf_http_conn *c = conn_of(p);
  c->spoke = 1;
  if (len > SF_HTTP_URL_MAX - c->url_len) {
    c->err_st = SF_ST_414;
    c->err_msg = "request target longer than 2048 bytes";
    return -1;
  }
  if (len > c->url_cap - c->url_len) {
    /* Longer than url_inline (rare): the heap, at the most 414 allows,
     * until the request is answered. */
    char *u = malloc(SF_HTTP_URL_MAX);
    if (!u) {
      c->err_st = SF_ST_503;
      c->err_msg = "out of memory";
      return -1;
    }
    memcpy(u, c->url, c->url_len);
    c->url = u;
    c->url_cap = SF_HTTP_URL_MAX;
  }
  memcpy(c->url + c->url_len, at, len);
  c->url_len += len;
  return 0;
}

static int on_header_bytes(llhttp_t *p, const char *at, size_t len) {
  sf_http_conn *c = conn_of(p);
  (void)at;
  c->header_bytes += len + 2; /* ": " or CRLF, roughly */
  if (c->header_bytes > SF_HTTP_HEADER_MAX) {
    c->err_st = SF_ST_431;
    c->err_msg = "request header fields larger than 8192 bytes";
    return -1;
  }
  return 0;
}

static int on_headers_complete(llhttp_t *p) {
  sf_http_conn *c = conn_of(p);
  if (p->http_major != 1 || p->http_minor > 1) {
    c->err_st = SF_ST_505;
    c->err_msg = "only HTTP/1.0 and HTTP/1.1 are supported";
    return -1;
  }
  c->http10 = p->http_minor == 0;
  c->head = p->method == HTTP_HEAD;
  /* An Upgrade or CONNECT request is answered as a plain one, and then the
   * connection ends: say so in the answer. */
  c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  c->has_body = (p->flags & F_CHUNKED) ||
                ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  sf_http_conn *c = conn_of(p);
  if (!c->keep_alive)
    c->closing = 1;
  dispatch(c);
  url_release(c);
  if (c->closing || c->out_len >= SF_HTTP_OUT_PAUSE)
    return HPE_PAUSED;
  return 0;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_bytes,
    .on_header_value = on_header_bytes,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void sf__http_init(sf_http_conn *c, sf_worker *w) {
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  c->w = w;
  c->out = c->out_inline;
  c->out_len = 0;
  c->out_cap = sizeof c->out_inline;
  c->url = c->url_inline;
  c->url_cap = sizeof c->url_inline;
  c->url_len = c->header_bytes = 0;
  c->err_st = SF_ST_COUNT;
  c->err_msg = NULL;
  c->closing = c->keep_alive = c->has_body = c->http10 = c->head = 0;
  c->spoke = 0;
  c->ep = SF_EP_OTHER;
}

void sf__http_free(sf_http_conn *c) {
  url_release(c);
  if (c->out != c->out_inline)
    free(c->out);
  c->out = c->out_inline;
  c->out_cap = sizeof c->out_inline;
  c->out_len = 0;
}

void sf__http_sent(sf_http_conn *c) {
  c->out_len = 0;
  /* An answer that outgrew out_inline (a large /ids, /metrics, a deep
   * pipelined burst) does not pin its heap buffer while the connection
   * idles: one malloc/free per such burst, none for the usual answers.
   * The request target stays: a partly received request may be in it. */
  if (c->out != c->out_inline) {
    free(c->out);
    c->out = c->out_inline;
    c->out_cap = sizeof c->out_inline;
  }
}

/* parse_error answers a request llhttp refused, then closes. A peer that
 * does not speak HTTP/1.x gets no answer: one whose first bytes are no
 * method, or an HTTP/2 client whose preface went wrong (PRI is its method
 * only; server.c takes the right preface to h2.c). An answer in HTTP/1.1
 * cannot help either, and RFC 9113 section 3.4 has an invalid preface
 * just close the connection (h2spec 3.5/2). */
static void parse_error(sf_http_conn *c, llhttp_errno_t e) {
  char msg[160];
  const char *reason = llhttp_get_error_reason(&c->parser);
  c->closing = 1;
  if ((e == HPE_INVALID_METHOD && !c->spoke) || e == HPE_PAUSED_H2_UPGRADE ||
      c->parser.method == HTTP_PRI)
    return;
  c->head = 0;
  c->ep = SF_EP_OTHER;
  if (c->err_st != SF_ST_COUNT) {
    sf__http_error(c, c->err_st, c->err_msg, NULL, 0);
    return;
  }
  if (e == HPE_INVALID_VERSION) {
    sf__http_error(c, SF_ST_505, "only HTTP/1.0 and HTTP/1.1 are supported",
                   NULL, 0);
    return;
  }
  strcpy(msg, "malformed request: ");
  strncat(msg, reason ? reason : llhttp_errno_name(e),
          sizeof msg - strlen(msg) - 1);
  sf__http_error(c, SF_ST_400, msg, NULL, 0);
}

size_t sf__http_feed(sf_http_conn *c, const char *data, size_t len) {
  llhttp_errno_t e;
  if (c->closing)
    return len;
  e = llhttp_execute(&c->parser, data, len);
  if (e == HPE_OK)
    return len;
  if (e == HPE_PAUSED) {
    const char *pos = llhttp_get_error_pos(&c->parser);
    llhttp_resume(&c->parser);
    if (c->closing || !pos)
      return len;
    return (size_t)(pos - data);
  }
  if (e == HPE_PAUSED_UPGRADE) { /* answered as a plain request; done */
    c->closing = 1;
    return len;
  }
  parse_error(c, e);
  return len;
}

/* ------------------------------------------------------ as an sf_proto */

static void *proto_new(sf_worker *w) {
  sf_http_conn *c = malloc(sizeof *c);
  if (c)
    sf__http_init(c, w);
  return c;
}

static size_t proto_feed(void *pc, const char *data, size_t len) {
  return sf__http_feed(pc, data, len);
}

static size_t proto_output(void *pc, const char **buf) {
  const sf_http_conn *c = pc;
  *buf = c->out;
  return c->out_len;
}

static void proto_sent(void *pc) {
  sf__http_sent(pc);
}

static int proto_closing(const void *pc) {
  return sf__http_closing(pc);
}

static void proto_free(void *pc) {
  sf__http_free(pc);
  free(pc);
}

const sf_proto sf__proto_http = {
    .name = "http",
    .conn_new = proto_new,
    .feed = proto_feed,
    .output = proto_output,
    .sent = proto_sent,
    .closing = proto_closing,
    .conn_free = proto_free,
    .busy = "HTTP/1.1 503 Service Unavailable\r\n"
            "Content-Type: application/json\r\n"
            "Content-Length: 45\r\n"
            "Connection: close\r\n"
            "Retry-After: 1\r\n"
            "\r\n"
            "{\"error\": \"too many open connections, retry\"}",
};
