/*
 * h2_answer.c - the answers of HTTP/2 requests: HTTP routes (sf__route)
 * framed as HEADERS and DATA, gRPC calls (grpc.c) as HEADERS, the framed
 * reply in DATA and trailers, or Trailers-Only for a status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2_int.h"

void sf__h2_stream_free(stream *st) {
  if (st->path != st->path_inline)
    free(st->path);
  if (st->body != st->body_inline)
    free(st->body);
  free(st->answer_heap);
  sf__grpc_reply_free(&st->g);
  sf__grpc_close(st->call);
  free(st);
}

/* ---------------------------------------------------------------- answers */

#define NV(n, v, vl, fl)                                                       \
  ((nghttp2_nv){(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), (fl)})
#define NV_STATIC (NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE)
#define NV_LIT(n, v) NV(n, v, sizeof(v) - 1, NV_STATIC)

static ssize_t read_data(nghttp2_session *s, int32_t id, uint8_t *buf,
                         size_t len, uint32_t *flags, nghttp2_data_source *src,
                         void *ud) {
  h2c *c = ud;
  stream *st = src->ptr;
  size_t n = st->data_len - st->data_off;
  if (n > len)
    n = len;
  memcpy(buf, st->data + st->data_off, n);
  st->data_off += n;
  c->pending -= n;
  if (st->data_off == st->data_len) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (st->grpc) {
      nghttp2_nv t[] = {NV_LIT("grpc-status", "0")};
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      if (nghttp2_submit_trailer(s, id, t, 1) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
  }
  return (ssize_t)n;
}

/* submit sends the HEADERS in nv and, when st->data_len > 0, the DATA. */
static void submit(h2c *c, stream *st, const nghttp2_nv *nv, size_t nnv) {
  nghttp2_data_provider prd;
  prd.source.ptr = st;
  prd.read_callback = read_data;
  if (nghttp2_submit_response(c->s, st->id, nv, nnv,
                              st->data_len ? &prd : NULL) != 0)
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->id,
                              NGHTTP2_INTERNAL_ERROR);
}

#define STR_(x) #x
#define STR(x) STR_(x)

/* over_msg says which header limit st->over is. */
static const char *over_msg(sf_st over) {
  return over == SF_ST_414
             ? "request target longer than " STR(SF_HTTP_URL_MAX) " bytes"
             : "request header fields larger than " STR(
                   SF_H2_HEADER_MAX) " bytes";
}

int sf__h2_streaming(const stream *st) {
  return st->grpc > 0 && st->gm && sf__grpc_streams(st->gm);
}

int sf__h2_early(const stream *st) {
  if (st->over)
    return 1;
  if (st->grpc) /* a streaming call opens now */
    return st->grpc < 0 || st->enc_bad || !st->gm || !st->post ||
           sf__grpc_streams(st->gm);
  return st->gm != NULL;
}

/* refuse fills st->g with the status of a call that cannot run: 1, or 0
 * when it can. */
static int refuse(stream *st) {
  sf_grpc_reply *g = &st->g;
  g->status = SF_GRPC_UNIMPLEMENTED;
  if (st->over) {
    g->status = SF_GRPC_RESOURCE_EXHAUSTED;
    strcpy(g->text, over_msg(st->over));
  } else if (st->grpc < 0)
    strcpy(g->text, "only protobuf messages are served: content-type "
                    "application/grpc or application/grpc+proto");
  else if (st->enc_bad)
    strcpy(g->text, "compressed messages are not supported (grpc-encoding: "
                    "identity)");
  else if (!st->gm)
    sf__grpc_unknown(st->path, st->path_len, g);
  else if (!st->post)
    strcpy(g->text, "gRPC calls are POST requests");
  else if (st->body_over) {
    g->status = SF_GRPC_RESOURCE_EXHAUSTED;
    strcpy(g->text, "request message larger than 4096 bytes");
  } else
    return 0;
  return 1;
}

/* read_call hands nghttp2 a streaming call's replies as they come, then
 * its status in trailers. */
static ssize_t read_call(nghttp2_session *s, int32_t id, uint8_t *buf,
                         size_t len, uint32_t *flags, nghttp2_data_source *src,
                         void *ud) {
  stream *st = src->ptr;
  const uint8_t *p;
  const char *msg;
  char code[8], text[3 * sizeof st->g.text];
  sf_grpc_status gs;
  size_t n = sf__grpc_output(st->call, &p);
  (void)ud;
  if (n > 0) {
    n = n < len ? n : len;
    memcpy(buf, p, n);
    sf__grpc_consumed(st->call, n);
    return (ssize_t)n;
  }
  if (!sf__grpc_ended(st->call, &gs, &msg))
    return NGHTTP2_ERR_DEFERRED; /* sf__h2_resume() when there is more */
  nghttp2_nv t[] = {NV("grpc-status", code,
                       (size_t)snprintf(code, sizeof code, "%d", (int)gs),
                       NGHTTP2_NV_FLAG_NO_COPY_NAME),
                    NV("grpc-message", text, sf__grpc_message_escape(msg, text),
                       NGHTTP2_NV_FLAG_NO_COPY_NAME)};
  *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  if (nghttp2_submit_trailer(s, id, t, gs == SF_GRPC_OK ? 1 : 2) != 0)
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  return 0;
}

/* open_call starts st's streaming call: HEADERS now, replies as they
 * come. */
static void open_call(h2c *c, stream *st) {
  static const nghttp2_nv nv[] = {NV_LIT(":status", "200"),
                                  NV_LIT("content-type", "application/grpc")};
  nghttp2_data_provider prd;
  st->call = sf__grpc_open(c->w, st->gm);
  prd.source.ptr = st;
  prd.read_callback = read_call;
  if (!st->call || nghttp2_submit_response(c->s, st->id, nv, 2, &prd) != 0) {
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->id,
                              NGHTTP2_INTERNAL_ERROR);
    return;
  }
  c->calls++;
  if (st->done)
    sf__grpc_half_close(st->call);
}

void sf__h2_resume(h2c *c, stream *st) {
  nghttp2_session_resume_data(c->s, st->id); /* not deferred: no matter */
}

static void answer_grpc(h2c *c, stream *st) {
  char code[8], text[3 * sizeof st->g.text];
  nghttp2_nv nv[5];
  size_t nnv = 0;
  nv[nnv++] = NV_LIT(":status", "200");
  nv[nnv++] = NV_LIT("content-type", "application/grpc");
  sf__ctr_add(&c->w->stats->proto_requests[SF_PROTO_GRPC], 1);
  if (!refuse(st)) {
    if (sf__grpc_streams(st->gm)) {
      open_call(c, st);
      return;
    }
    sf__grpc_call(c->w, st->gm, st->body, st->body_len, &st->g);
  }
  if (st->g.status == SF_GRPC_OK) {
    st->data = st->g.msg;
    st->data_len = st->g.msg_len;
    submit(c, st, nv, nnv);
    return;
  }
  /* Trailers-Only: the status in the one HEADERS frame. */
  nv[nnv++] = NV("grpc-status", code,
                 (size_t)snprintf(code, sizeof code, "%d", (int)st->g.status),
                 NGHTTP2_NV_FLAG_NO_COPY_NAME);
  nv[nnv++] =
      NV("grpc-message", text, sf__grpc_message_escape(st->g.text, text),
         NGHTTP2_NV_FLAG_NO_COPY_NAME);
  if (st->enc_bad)
    nv[nnv++] = NV_LIT("grpc-accept-encoding", "identity");
  submit(c, st, nv, nnv);
}

/* answer_body hands the route the stream's buffer for its body. */
static char *answer_body(void *ctx, size_t max) {
  stream *st = ctx;
  if (max <= sizeof st->answer_inline)
    return st->answer_inline;
  free(st->answer_heap);
  st->answer_heap = malloc(max);
  return st->answer_heap;
}

/* frame_http sends the answer a route wrote into a. */
static void frame_http(h2c *c, stream *st, sf_answer *a) {
  const sf_worker *w = c->w;
  char status[4], clen[24], retry[24];
  nghttp2_nv nv[6];
  size_t nnv = 0;
  if (a->oom) {
    nghttp2_submit_rst_stream(c->s, NGHTTP2_FLAG_NONE, st->id,
                              NGHTTP2_INTERNAL_ERROR);
    return;
  }
  sf__ctr_add(&c->w->stats->requests[a->ep][a->st], 1);
  sf__ctr_add(&c->w->stats->proto_requests[SF_PROTO_H2], 1);
  snprintf(status, sizeof status, "%03d", sf__st_code[a->st]);
  nv[nnv++] = NV(":status", status, 3, NGHTTP2_NV_FLAG_NO_COPY_NAME);
  nv[nnv++] = NV("content-type", a->ctype, strlen(a->ctype), NV_STATIC);
  nv[nnv++] = NV("content-length", clen,
                 (size_t)snprintf(clen, sizeof clen, "%zu", a->body_len),
                 NGHTTP2_NV_FLAG_NO_COPY_NAME);
  /* w->date is "Date: <value>\r\n". */
  nv[nnv++] =
      NV("date", w->date + 6, w->date_len - 8, NGHTTP2_NV_FLAG_NO_COPY_NAME);
  if (a->retry_after_s > 0)
    nv[nnv++] = NV("retry-after", retry,
                   (size_t)snprintf(retry, sizeof retry, "%lld",
                                    (long long)a->retry_after_s),
                   NGHTTP2_NV_FLAG_NO_COPY_NAME);
  if (a->allow)
    nv[nnv++] = NV("allow", a->allow, strlen(a->allow), NV_STATIC);
  if (a->body && a->body == st->answer_heap && a->body_len < 4096) {
    /* A route reserves its most (/metrics: 32 KB); keep what it wrote. */
    char *b = realloc(st->answer_heap, a->body_len ? a->body_len : 1);
    if (b)
      a->body = st->answer_heap = b;
  }
  st->data = (const uint8_t *)a->body;
  st->data_len = st->method == SF_M_HEAD || !a->body ? 0 : a->body_len;
  submit(c, st, nv, nnv);
}

static void answer_http(h2c *c, stream *st) {
  const char *q = memchr(st->path, '?', st->path_len);
  sf_req r;
  sf_answer a;
  r.path = st->path;
  r.path_len = q ? (size_t)(q - st->path) : st->path_len;
  r.query = q ? q + 1 : st->path + st->path_len;
  r.query_len = q ? st->path_len - r.path_len - 1 : 0;
  r.method = st->method;
  r.has_body = st->has_body;
  memset(&a, 0, sizeof a);
  a.w = c->w;
  a.body_alloc = answer_body;
  a.ctx = st;
  a.ep = SF_EP_OTHER;
  if (st->over)
    sf__answer_error(&a, st->over, over_msg(st->over));
  else if (st->gm) /* a gRPC method, without a gRPC content-type */
    sf__answer_error(&a, SF_ST_415,
                     "gRPC methods take content-type application/grpc");
  else
    sf__route(&r, &a);
  frame_http(c, st, &a);
}

void sf__h2_answer(h2c *c, stream *st) {
  st->answered = 1;
  st->early = !st->done; /* answered before its request ended */
  c->early += (unsigned)st->early;
  if (st->grpc)
    answer_grpc(c, st);
  else
    answer_http(c, st);
  c->pending += st->data_len;
}

int sf__h2_answer_deferred(h2c *c) {
  int n = 0;
  for (stream *st = c->streams; st && c->pending < SF_H2_OUT_PAUSE;
       st = st->next)
    if (st->ready && !st->answered) {
      c->deferred--;
      sf__h2_answer(c, st);
      n++;
    }
  return n;
}
