/*
 * test_srv_h2.c - HTTP/2 and gRPC as bytes in, bytes out (h2.c, grpc.c):
 * an nghttp2 client session in the same process talks to sf__proto_h2
 * through memory, with no sockets, on a fake clock and a fake lease.
 */
#include "node_fx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "h2.h"
#include "h2_int.h"
#include "snowflake/internal/descriptor.pb-c.h"
#include "snowflake/v1/snowflake.pb-c.h"

#define MAX_STREAMS 256

/* What the client saw on one stream. */
typedef struct answer {
  int status, grpc_status, reset, closed;
  char grpc_message[256], content_type[256];
  uint8_t *body;
  size_t body_len, body_cap;
} answer;

typedef struct fixture {
  node_fx n; /* its lease is on only in tests that want one */
  void *pc;  /* the server's connection */
  nghttp2_session *cli;
  answer ans[MAX_STREAMS];
  int goaway;
} fixture;

static answer *ans_of(fixture *f, int32_t id) {
  assert_true(id > 0 && (id - 1) / 2 < MAX_STREAMS);
  return &f->ans[(id - 1) / 2];
}

static int cli_header(nghttp2_session *s, const nghttp2_frame *fr,
                      const uint8_t *name, size_t nl, const uint8_t *value,
                      size_t vl, uint8_t flags, void *ud) {
  answer *a = ans_of(ud, fr->hd.stream_id);
  char v[256];
  (void)s;
  (void)flags;
  snprintf(v, sizeof v, "%.*s", (int)vl, (const char *)value);
  if (nl == 7 && !memcmp(name, ":status", 7))
    a->status = atoi(v);
  else if (nl == 11 && !memcmp(name, "grpc-status", 11))
    a->grpc_status = atoi(v);
  else if (nl == 12 && !memcmp(name, "grpc-message", 12))
    strcpy(a->grpc_message, v);
  else if (nl == 12 && !memcmp(name, "content-type", 12))
    snprintf(a->content_type, sizeof a->content_type, "%s", v);
  return 0;
}

static int cli_data(nghttp2_session *s, uint8_t flags, int32_t id,
                    const uint8_t *data, size_t len, void *ud) {
  answer *a = ans_of(ud, id);
  (void)s;
  (void)flags;
  if (a->body_len + len > a->body_cap) {
    a->body_cap = (a->body_len + len) * 2;
    a->body = realloc(a->body, a->body_cap);
    assert_non_null(a->body);
  }
  memcpy(a->body + a->body_len, data, len);
  a->body_len += len;
  return 0;
}

static int cli_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud) {
  answer *a = ans_of(ud, id);
  (void)s;
  a->closed = 1;
  a->reset = code != 0;
  return 0;
}

static int cli_frame(nghttp2_session *s, const nghttp2_frame *fr, void *ud) {
  (void)s;
  if (fr->hd.type == NGHTTP2_GOAWAY)
    ((fixture *)ud)->goaway = 1;
  return 0;
}

static fixture *fx_new(void) {
  fixture *f = calloc(1, sizeof *f);
  nghttp2_session_callbacks *cb;
  assert_non_null(f);
  node_fx_init(&f->n, 1000);
  f->n.still_node_clock = 1;
  f->pc = sf__proto_h2.conn_new(&f->n.w);
  assert_non_null(f->pc);
  assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
  nghttp2_session_callbacks_set_on_header_callback(cb, cli_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, cli_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, cli_frame);
  assert_int_equal(nghttp2_session_client_new(&f->cli, cb, f), 0);
  nghttp2_session_callbacks_del(cb);
  assert_int_equal(nghttp2_submit_settings(f->cli, NGHTTP2_FLAG_NONE, NULL, 0),
                   0);
  return f;
}

static void fx_free(fixture *f) {
  for (int i = 0; i < MAX_STREAMS; i++)
    free(f->ans[i].body);
  nghttp2_session_del(f->cli);
  sf__proto_h2.conn_free(f->pc);
  node_fx_free(&f->n);
  free(f);
}

/* server_to_client moves what the server has to send to the client:
 * returns the bytes moved. */
static size_t server_to_client(fixture *f) {
  const char *out;
  size_t n = sf__proto_h2.output(f->pc, &out);
  if (n) {
    assert_int_equal(nghttp2_session_mem_recv(f->cli, (const uint8_t *)out, n),
                     (ssize_t)n);
    sf__proto_h2.sent(f->pc);
  }
  return n;
}

/* exchange runs both ends until neither has anything to say, cutting the
 * client's bytes into reads of at most chunk bytes (0: whole). */
static void exchange(fixture *f, size_t chunk) {
  for (int round = 0; round < 10000; round++) {
    const uint8_t *d;
    ssize_t n = nghttp2_session_mem_send(f->cli, &d);
    size_t moved = 0;
    assert_true(n >= 0);
    while (n > 0) {
      size_t k = chunk && (size_t)n > chunk ? chunk : (size_t)n;
      size_t used = sf__proto_h2.feed(f->pc, (const char *)d, k);
      if (used == 0)
        assert_true(server_to_client(f) > 0); /* paused: output waits */
      d += used;
      n -= (ssize_t)used;
      moved += used;
    }
    moved += server_to_client(f);
    if (moved == 0)
      return;
  }
  fail_msg("no quiet after 10000 rounds");
}

#define NV(n, v)                                                               \
  {                                                                            \
    (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v),                  \
        NGHTTP2_NV_FLAG_NONE                                                   \
  }

static int32_t get(fixture *f, const char *method, const char *path) {
  nghttp2_nv nv[] = {NV(":method", method), NV(":scheme", "http"),
                     NV(":path", path), NV(":authority", "t")};
  int32_t id = nghttp2_submit_request(f->cli, NULL, nv, 4, NULL, NULL);
  assert_true(id > 0);
  return id;
}

typedef struct body_src {
  const uint8_t *p;
  size_t len, off;
} body_src;

static ssize_t body_read(nghttp2_session *s, int32_t id, uint8_t *buf,
                         size_t len, uint32_t *flags, nghttp2_data_source *src,
                         void *ud) {
  body_src *b = src->ptr;
  size_t n = b->len - b->off < len ? b->len - b->off : len;
  (void)s;
  (void)id;
  (void)ud;
  memcpy(buf, b->p + b->off, n);
  b->off += n;
  if (b->off == b->len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* call posts one gRPC request: prefix flags byte flag, message msg. */
static int32_t call(fixture *f, const char *path, const ProtobufCMessage *msg,
                    uint8_t flag, body_src *b) {
  static uint8_t buf[4][256];
  static int next;
  uint8_t *p = buf[next++ & 3];
  size_t n = msg ? protobuf_c_message_pack(msg, p + 5) : 0;
  nghttp2_nv nv[] = {NV(":method", "POST"),
                     NV(":scheme", "http"),
                     NV(":path", path),
                     NV(":authority", "t"),
                     NV("content-type", "application/grpc"),
                     NV("te", "trailers")};
  nghttp2_data_provider prd;
  int32_t id;
  p[0] = flag;
  p[1] = p[2] = 0;
  p[3] = (uint8_t)(n >> 8);
  p[4] = (uint8_t)n;
  b->p = p;
  b->len = 5 + n;
  b->off = 0;
  prd.source.ptr = b;
  prd.read_callback = body_read;
  id = nghttp2_submit_request(f->cli, NULL, nv, 6, &prd, NULL);
  assert_true(id > 0);
  return id;
}

static ssize_t body_never(nghttp2_session *s, int32_t id, uint8_t *buf,
                          size_t len, uint32_t *flags, nghttp2_data_source *src,
                          void *ud) {
  (void)s, (void)id, (void)buf, (void)len, (void)flags, (void)src, (void)ud;
  return NGHTTP2_ERR_DEFERRED;
}

/* open_call sends only the request headers of a POST (no END_STREAM: the
 * body never comes), with content-type ct and grpc-encoding enc (NULL:
 * none). */
static int32_t open_call(fixture *f, const char *path, const char *ct,
                         const char *enc) {
  nghttp2_nv nv[] = {NV(":method", "POST"),
                     NV(":scheme", "http"),
                     NV(":path", path),
                     NV(":authority", "t"),
                     NV("content-type", ct),
                     NV("te", "trailers"),
                     NV("grpc-encoding", enc ? enc : "")};
  nghttp2_data_provider prd;
  int32_t id;
  prd.source.ptr = NULL;
  prd.read_callback = body_never;
  id = nghttp2_submit_request(f->cli, NULL, nv, enc ? 7 : 6, &prd, NULL);
  assert_true(id > 0);
  return id;
}

/* reply_of returns the message of a gRPC answer, checked framed. */
static const uint8_t *reply_of(const answer *a, size_t *len) {
  assert_int_equal(a->status, 200);
  assert_int_equal(a->grpc_status, 0);
  assert_true(a->body_len >= 5);
  assert_int_equal(a->body[0], 0);
  *len = (size_t)a->body[3] << 8 | a->body[4];
  assert_int_equal(*len + 5, a->body_len);
  return a->body + 5;
}

static void test_id_over_h2(void **state) {
  fixture *f = fx_new();
  int32_t a, b;
  (void)state;
  a = get(f, "GET", "/id");
  b = get(f, "HEAD", "/health");
  exchange(f, 0);
  assert_int_equal(ans_of(f, a)->status, 200);
  assert_string_equal(ans_of(f, a)->content_type, "application/json");
  assert_non_null(ans_of(f, a)->body);
  assert_non_null(strstr((char *)ans_of(f, a)->body, "\"machine_id\": 7}"));
  assert_int_equal(ans_of(f, b)->status, 200);
  assert_int_equal(ans_of(f, b)->body_len, 0); /* HEAD */
  assert_int_equal(f->n.stats->requests[SF_EP_ID][SF_ST_200], 1);
  assert_int_equal(f->n.stats->proto_requests[SF_PROTO_H2], 2);
  assert_int_equal(f->n.stats->ids_issued, 1);
  fx_free(f);
}

static void test_routes_errors_over_h2(void **state) {
  fixture *f = fx_new();
  int32_t a, b, c;
  (void)state;
  a = get(f, "GET", "/nope");
  b = get(f, "DELETE", "/id");
  c = get(f, "GET", "/ids?count=0");
  exchange(f, 1); /* one byte per read */
  assert_int_equal(ans_of(f, a)->status, 404);
  assert_int_equal(ans_of(f, b)->status, 405);
  assert_int_equal(ans_of(f, c)->status, 400);
  assert_int_equal(f->n.stats->ids_issued, 0);
  fx_free(f);
}

static void test_grpc_next(void **state) {
  fixture *f = fx_new();
  Snowflake__V1__NextRequest q = SNOWFLAKE__V1__NEXT_REQUEST__INIT;
  Snowflake__V1__NextReply *r;
  body_src b1, b2;
  const uint8_t *m;
  size_t len;
  int32_t one, many;
  (void)state;
  one = call(f, "/snowflake.v1.Snowflake/Next", &q.base, 0, &b1);
  q.count = 300;
  many = call(f, "/snowflake.v1.Snowflake/Next", &q.base, 0, &b2);
  exchange(f, 7);
  m = reply_of(ans_of(f, one), &len);
  r = snowflake__v1__next_reply__unpack(NULL, len, m);
  assert_non_null(r);
  assert_int_equal(r->n_ids, 1);
  assert_int_equal(r->machine_id, 7);
  snowflake__v1__next_reply__free_unpacked(r, NULL);
  m = reply_of(ans_of(f, many), &len);
  r = snowflake__v1__next_reply__unpack(NULL, len, m);
  assert_non_null(r);
  assert_int_equal(r->n_ids, 300);
  for (size_t i = 1; i < r->n_ids; i++)
    assert_true(r->ids[i] > r->ids[i - 1]);
  snowflake__v1__next_reply__free_unpacked(r, NULL);
  assert_string_equal(ans_of(f, one)->content_type, "application/grpc");
  assert_int_equal(f->n.stats->proto_requests[SF_PROTO_GRPC], 2);
  assert_int_equal(f->n.stats->ids_issued, 301);
  fx_free(f);
}

static void test_grpc_decode(void **state) {
  fixture *f = fx_new();
  Snowflake__V1__DecodeRequest q = SNOWFLAKE__V1__DECODE_REQUEST__INIT;
  Snowflake__V1__DecodeReply *r;
  body_src b;
  const uint8_t *m;
  size_t len;
  int32_t id;
  (void)state;
  /* 1,000,000 ms after the epoch, machine 7, sequence 5. */
  q.id = (UINT64_C(1000000) << 22) | (7 << 12) | 5;
  id = call(f, "/snowflake.v1.Snowflake/Decode", &q.base, 0, &b);
  exchange(f, 0);
  m = reply_of(ans_of(f, id), &len);
  r = snowflake__v1__decode_reply__unpack(NULL, len, m);
  assert_non_null(r);
  assert_int_equal(r->id, q.id);
  assert_int_equal(r->unix_ms, SF_DEFAULT_EPOCH_MS + 1000000);
  assert_string_equal(r->time, "2024-01-01T00:16:40.000Z");
  assert_int_equal(r->machine_id, 7);
  assert_int_equal(r->sequence, 5);
  snowflake__v1__decode_reply__free_unpacked(r, NULL);
  fx_free(f);
}

/* X(path, request flag byte, count, status, a word of the message) */
#define GRPC_ERRORS(X)                                                         \
  X("/snowflake.v1.Snowflake/Next", 0, 1001, 3, "1..1000")                     \
  X("/snowflake.v1.Snowflake/Nope", 0, 1, 12, "Nope")                          \
  X("/snowflake.v1.Snowflake/Next", 1, 1, 12, "compressed")

static void test_grpc_errors(void **state) {
  static const struct {
    const char *path;
    uint8_t flag;
    uint32_t count;
    int status;
    const char *word;
  } cases[] = {
#define SF__CASE(p, fl, c, st, w) {p, fl, c, st, w},
      GRPC_ERRORS(SF__CASE)
#undef SF__CASE
  };
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fixture *f = fx_new();
    Snowflake__V1__NextRequest q = SNOWFLAKE__V1__NEXT_REQUEST__INIT;
    body_src b;
    int32_t id;
    q.count = cases[i].count;
    id = call(f, cases[i].path, &q.base, cases[i].flag, &b);
    exchange(f, 0);
    assert_int_equal(ans_of(f, id)->status, 200);
    assert_int_equal(ans_of(f, id)->grpc_status, cases[i].status);
    assert_non_null(strstr(ans_of(f, id)->grpc_message, cases[i].word));
    assert_int_equal(ans_of(f, id)->body_len, 0); /* Trailers-Only */
    assert_int_equal(f->n.stats->ids_issued, 0);
    fx_free(f);
  }
}

static void test_grpc_no_lease(void **state) {
  fixture *f = fx_new();
  Snowflake__V1__NextRequest q = SNOWFLAKE__V1__NEXT_REQUEST__INIT;
  Grpc__Health__V1__HealthCheckRequest h =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  Grpc__Health__V1__HealthCheckResponse *hr;
  body_src b1, b2, b3;
  const uint8_t *m;
  size_t len;
  int32_t serving, next, not_serving;
  (void)state;
  node_fx_lease_on(&f->n, 5);
  serving = call(f, "/grpc.health.v1.Health/Check", &h.base, 0, &b1);
  exchange(f, 0);
  f->n.lease.id = -1; /* the lease is lost */
  next = call(f, "/snowflake.v1.Snowflake/Next", &q.base, 0, &b2);
  not_serving = call(f, "/grpc.health.v1.Health/Check", &h.base, 0, &b3);
  exchange(f, 0);
  m = reply_of(ans_of(f, serving), &len);
  hr = grpc__health__v1__health_check_response__unpack(NULL, len, m);
  assert_non_null(hr);
  assert_int_equal(
      hr->status,
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
  grpc__health__v1__health_check_response__free_unpacked(hr, NULL);
  assert_int_equal(ans_of(f, next)->grpc_status, 14); /* UNAVAILABLE */
  assert_non_null(strstr(ans_of(f, next)->grpc_message, "lease"));
  m = reply_of(ans_of(f, not_serving), &len);
  hr = grpc__health__v1__health_check_response__unpack(NULL, len, m);
  assert_non_null(hr);
  assert_int_equal(
      hr->status,
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
  grpc__health__v1__health_check_response__free_unpacked(hr, NULL);
  assert_int_equal(f->n.stats->ids_issued, 0);
  fx_free(f);
}

/* X(path, content-type, grpc-encoding, HTTP status, gRPC status, a word of
 * the message or the body): requests answered at the end of their headers.
 */
#define EARLY(X)                                                               \
  X("/snowflake.v1.Snowflake/Nope", "application/grpc", NULL, 200, 12,         \
    "unknown method Nope for service snowflake.v1.Snowflake")                  \
  X("/nope.v1.Svc/Next", "application/grpc", NULL, 200, 12,                    \
    "unknown service nope.v1.Svc")                                             \
  X("/snowflake.v1.Snowflake/Next", "application/grpc+json", NULL, 200, 12,    \
    "protobuf")                                                                \
  X("/snowflake.v1.Snowflake/Next", "application/grpc", "gzip", 200, 12,       \
    "grpc-encoding")                                                           \
  X("/snowflake.v1.Snowflake/Next", "application/json", NULL, 415, 0,          \
    "application/grpc")

/* Answers known at the end of the request headers come then, without
 * waiting for a body that may never come; the stream is then reset with
 * NO_ERROR (the client need not send the rest). */
static void test_answered_at_end_of_headers(void **state) {
  static const struct {
    const char *path, *ct, *enc;
    int status, grpc_status;
    const char *word;
  } cases[] = {
#define SF__CASE(p, ct, enc, st, gs, w) {p, ct, enc, st, gs, w},
      EARLY(SF__CASE)
#undef SF__CASE
  };
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fixture *f = fx_new();
    int32_t id = open_call(f, cases[i].path, cases[i].ct, cases[i].enc);
    answer *a = ans_of(f, id);
    exchange(f, 0);
    assert_int_equal(a->status, cases[i].status);
    assert_int_equal(a->grpc_status, cases[i].grpc_status);
    if (cases[i].grpc_status) {
      assert_non_null(strstr(a->grpc_message, cases[i].word));
      assert_int_equal(a->body_len, 0); /* Trailers-Only */
    } else {
      assert_non_null(a->body);
      assert_non_null(
          memmem(a->body, a->body_len, cases[i].word, strlen(cases[i].word)));
    }
    assert_true(a->closed);
    assert_false(a->reset); /* RST_STREAM NO_ERROR */
    assert_int_equal(f->n.stats->ids_issued, 0);
    fx_free(f);
  }
}

/* Header limits as on HTTP/1.1: 8 KiB of fields (431), a 2 KiB :path
 * (414), for gRPC RESOURCE_EXHAUSTED; answered at the end of the headers,
 * and the connection goes on. */
static void test_header_limits(void **state) {
  static char big[9000], path[3001];
  fixture *f = fx_new();
  nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = body_never};
  int32_t a, b, g, ok;
  (void)state;
  memset(big, 'a', sizeof big - 1);
  memset(path, 'p', sizeof path - 1);
  path[0] = '/';
  nghttp2_nv nv[] = {
      NV(":method", "GET"), NV(":scheme", "http"),
      NV(":path", "/id"),   NV(":authority", "t"),
      NV("x-big", big),     NV("content-type", "application/grpc")};
  a = nghttp2_submit_request(f->cli, NULL, nv, 5, NULL, NULL);
  b = get(f, "GET", path);
  nv[0] = (nghttp2_nv)NV(":method", "POST");
  nv[2] = (nghttp2_nv)NV(":path", "/snowflake.v1.Snowflake/Next");
  g = nghttp2_submit_request(f->cli, NULL, nv, 6, &prd, NULL);
  ok = get(f, "GET", "/health");
  exchange(f, 0);
  assert_int_equal(ans_of(f, a)->status, 431);
  assert_non_null(
      memmem(ans_of(f, a)->body, ans_of(f, a)->body_len, "8192", 4));
  assert_int_equal(ans_of(f, b)->status, 414);
  assert_int_equal(ans_of(f, g)->grpc_status, 8); /* RESOURCE_EXHAUSTED */
  assert_true(ans_of(f, g)->closed);
  assert_int_equal(ans_of(f, ok)->status, 200);
  assert_int_equal(f->n.stats->ids_issued, 0);
  fx_free(f);
}

/* watch_statuses decodes the HealthCheckResponse messages of a stream's
 * body into st: their count. */
static size_t watch_statuses(const answer *a, int *st, size_t max) {
  size_t n = 0, off = 0;
  while (off + 5 <= a->body_len && n < max) {
    size_t len = (size_t)a->body[off + 3] << 8 | a->body[off + 4];
    Grpc__Health__V1__HealthCheckResponse *r;
    assert_int_equal(a->body[off], 0);
    assert_true(off + 5 + len <= a->body_len);
    r = grpc__health__v1__health_check_response__unpack(NULL, len,
                                                        a->body + off + 5);
    assert_non_null(r);
    st[n++] = (int)r->status;
    grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    off += 5 + len;
  }
  assert_int_equal(off, a->body_len);
  return n;
}

/* Health/Watch: the status now, then each change the tick finds (the lease
 * lost: NOT_SERVING; back: SERVING); a service the server lacks is
 * SERVICE_UNKNOWN, the call staying open; at shutdown NOT_SERVING, then
 * UNAVAILABLE. The request arrives a byte at a time. */
static void test_health_watch(void **state) {
  fixture *f = fx_new();
  Grpc__Health__V1__HealthCheckRequest h =
      GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  body_src b1, b2;
  int st[8];
  int32_t all, other;
  (void)state;
  node_fx_lease_on(&f->n, 5);
  all = call(f, "/grpc.health.v1.Health/Watch", &h.base, 0, &b1);
  h.service = "nope.v1.Svc";
  other = call(f, "/grpc.health.v1.Health/Watch", &h.base, 0, &b2);
  exchange(f, 1);
  assert_int_equal(sf__proto_h2.tick(f->pc), 1); /* calls open: not idle */
  exchange(f, 0);
  assert_int_equal(watch_statuses(ans_of(f, all), st, 8), 1);
  assert_int_equal(st[0], 1); /* SERVING */
  assert_int_equal(watch_statuses(ans_of(f, other), st, 8), 1);
  assert_int_equal(st[0], 3); /* SERVICE_UNKNOWN */
  f->n.lease.id = -1;         /* the lease is lost */
  sf__proto_h2.tick(f->pc);
  exchange(f, 0);
  f->n.lease.id = 5; /* and back */
  sf__proto_h2.tick(f->pc);
  sf__proto_h2.tick(f->pc); /* no change: nothing more */
  exchange(f, 0);
  assert_int_equal(watch_statuses(ans_of(f, all), st, 8), 3);
  assert_int_equal(st[1], 2); /* NOT_SERVING */
  assert_int_equal(st[2], 1);
  assert_int_equal(watch_statuses(ans_of(f, other), st, 8), 1);
  assert_false(ans_of(f, all)->closed);
  sf__proto_h2.goaway(f->pc);
  exchange(f, 0);
  assert_int_equal(watch_statuses(ans_of(f, all), st, 8), 4);
  assert_int_equal(st[3], 2);
  assert_int_equal(ans_of(f, all)->grpc_status, 14); /* UNAVAILABLE */
  assert_int_equal(ans_of(f, other)->grpc_status, 14);
  assert_true(ans_of(f, all)->closed && ans_of(f, other)->closed);
  assert_int_equal(sf__proto_h2.tick(f->pc), 0);
  fx_free(f);
}

/* reflect_call sends requests (each framed) on one reflection stream,
 * then half-closes: the stream id. */
static int32_t reflect_call(fixture *f, const char *path,
                            Grpc__Reflection__V1__ServerReflectionRequest **q,
                            size_t nq, body_src *b) {
  static uint8_t buf[1024];
  nghttp2_nv nv[] = {NV(":method", "POST"), NV(":scheme", "http"),
                     NV(":path", path), NV(":authority", "t"),
                     NV("content-type", "application/grpc")};
  nghttp2_data_provider prd = {.source.ptr = b, .read_callback = body_read};
  size_t off = 0;
  int32_t id;
  for (size_t i = 0; i < nq; i++) {
    size_t n = protobuf_c_message_pack(&q[i]->base, buf + off + 5);
    buf[off] = buf[off + 1] = buf[off + 2] = 0;
    buf[off + 3] = (uint8_t)(n >> 8);
    buf[off + 4] = (uint8_t)n;
    off += 5 + n;
  }
  b->p = buf;
  b->len = off;
  b->off = 0;
  id = nghttp2_submit_request(f->cli, NULL, nv, 5, &prd, NULL);
  assert_true(id > 0);
  return id;
}

/* reflect_reply unpacks the i-th response message of a stream's body. */
static Grpc__Reflection__V1__ServerReflectionResponse *
reflect_reply(const answer *a, size_t i) {
  size_t off = 0, len = 0;
  for (size_t k = 0; k <= i; k++) {
    off += k ? 5 + len : 0;
    assert_true(off + 5 <= a->body_len);
    len = (size_t)a->body[off + 1] << 24 | (size_t)a->body[off + 2] << 16 |
          (size_t)a->body[off + 3] << 8 | a->body[off + 4];
    assert_true(off + 5 + len <= a->body_len);
  }
  return grpc__reflection__v1__server_reflection_response__unpack(
      NULL, len, a->body + off + 5);
}

/* Server reflection, v1 and v1alpha: services, the file defining a symbol,
 * a file by name, NOT_FOUND in the stream for an unknown symbol; one
 * response per request, in order; OK when the client half-closes. */
static void test_reflection(void **state) {
  static const char *const paths[] = {
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"};
  (void)state;
  for (size_t p = 0; p < 2; p++) {
    fixture *f = fx_new();
    Grpc__Reflection__V1__ServerReflectionRequest r[4], *q[4];
    Grpc__Reflection__V1__ServerReflectionResponse *a;
    Snowflake__Internal__File *file;
    body_src b;
    int32_t id;
    for (int i = 0; i < 4; i++) {
      r[i] = (Grpc__Reflection__V1__ServerReflectionRequest)
          GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
      q[i] = &r[i];
    }
    r[0].message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    r[0].list_services = "*";
    r[1].message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r[1].file_containing_symbol = "snowflake.v1.Snowflake.Next";
    r[2].message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    r[2].file_containing_symbol = "nope.Symbol";
    r[3].message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    r[3].file_by_filename = "grpc/health/v1/health.proto";
    r[3].host = "h";
    id = reflect_call(f, paths[p], q, 4, &b);
    exchange(f, 3);
    assert_int_equal(ans_of(f, id)->status, 200);
    assert_int_equal(ans_of(f, id)->grpc_status, 0);
    assert_true(ans_of(f, id)->closed);
    a = reflect_reply(ans_of(f, id), 0);
    assert_non_null(a);
    assert_int_equal(a->list_services_response->n_service, 4);
    assert_string_equal(a->list_services_response->service[0]->name,
                        "snowflake.v1.Snowflake");
    assert_string_equal(a->list_services_response->service[3]->name,
                        "grpc.reflection.v1alpha.ServerReflection");
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);
    a = reflect_reply(ans_of(f, id), 1);
    assert_int_equal(a->file_descriptor_response->n_file_descriptor_proto, 1);
    file = snowflake__internal__file__unpack(
        NULL, a->file_descriptor_response->file_descriptor_proto[0].len,
        a->file_descriptor_response->file_descriptor_proto[0].data);
    assert_string_equal(file->name, "snowflake/v1/snowflake.proto");
    assert_int_equal(file->n_service, 1);
    snowflake__internal__file__free_unpacked(file, NULL);
    assert_string_equal(a->original_request->file_containing_symbol,
                        "snowflake.v1.Snowflake.Next");
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);
    a = reflect_reply(ans_of(f, id), 2);
    assert_int_equal(a->error_response->error_code, 5); /* NOT_FOUND */
    assert_non_null(strstr(a->error_response->error_message, "nope.Symbol"));
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);
    a = reflect_reply(ans_of(f, id), 3);
    assert_string_equal(a->valid_host, "h");
    file = snowflake__internal__file__unpack(
        NULL, a->file_descriptor_response->file_descriptor_proto[0].len,
        a->file_descriptor_response->file_descriptor_proto[0].data);
    assert_string_equal(file->name, "grpc/health/v1/health.proto");
    snowflake__internal__file__free_unpacked(file, NULL);
    grpc__reflection__v1__server_reflection_response__free_unpacked(a, NULL);
    fx_free(f);
  }
}

/* The ledger of client stream ids (h2_ledger.c): closed, never opened,
 * reset by the server, too old to know. */
static void test_ledger(void **state) {
  sf_h2_ledger l;
  (void)state;
  memset(&l, 0, sizeof l);
  sf__h2_ledger_open(&l, 1);
  sf__h2_ledger_open(&l, 3);
  sf__h2_ledger_open(&l, 7); /* 5 skipped */
  sf__h2_ledger_open(&l, 4); /* even: not the client's */
  assert_int_equal(l.hi, 7);
  assert_int_equal(sf__h2_ledger_verdict(&l, 3), SF_H2_CLOSED);
  assert_int_equal(sf__h2_ledger_verdict(&l, 5), SF_H2_NEVER_OPENED);
  assert_int_equal(sf__h2_ledger_verdict(&l, 9), SF_H2_IGNORE); /* idle */
  assert_int_equal(sf__h2_ledger_verdict(&l, 2), SF_H2_IGNORE);
  sf__h2_ledger_reset(&l, 3);
  assert_int_equal(sf__h2_ledger_verdict(&l, 3), SF_H2_IGNORE);
  assert_int_equal(sf__h2_ledger_verdict(&l, 1), SF_H2_CLOSED);
  /* 2 * SF_H2_LEDGER ids on: 1 and 3 are too old to know; 3's slot now
   * holds 3 + 2 * SF_H2_LEDGER, skipped (never opened), its reset bit
   * gone */
  sf__h2_ledger_open(&l, 1 + 2 * SF_H2_LEDGER);
  sf__h2_ledger_open(&l, 5 + 2 * SF_H2_LEDGER);
  assert_int_equal(sf__h2_ledger_verdict(&l, 1), SF_H2_IGNORE);
  assert_int_equal(sf__h2_ledger_verdict(&l, 3), SF_H2_IGNORE);
  assert_int_equal(sf__h2_ledger_verdict(&l, 3 + 2 * SF_H2_LEDGER),
                   SF_H2_NEVER_OPENED);
  assert_int_equal(sf__h2_ledger_verdict(&l, 1 + 2 * SF_H2_LEDGER),
                   SF_H2_CLOSED);
  /* a jump past the window forgets everything but the new id */
  sf__h2_ledger_open(&l, 99999);
  assert_int_equal(sf__h2_ledger_verdict(&l, 99997), SF_H2_NEVER_OPENED);
  assert_int_equal(sf__h2_ledger_verdict(&l, 99999), SF_H2_CLOSED);
}

/* fh writes a frame header: payload length, type, flags, stream id. */
static size_t fh(uint8_t *p, size_t len, uint8_t type, uint8_t flags,
                 int32_t id) {
  p[0] = (uint8_t)(len >> 16);
  p[1] = (uint8_t)(len >> 8);
  p[2] = (uint8_t)len;
  p[3] = type;
  p[4] = flags;
  p[5] = (uint8_t)(id >> 24);
  p[6] = (uint8_t)(id >> 16);
  p[7] = (uint8_t)(id >> 8);
  p[8] = (uint8_t)id;
  memset(p + 9, 0xee, len); /* a payload that looks like nothing */
  return 9 + len;
}

/* sf__h2_ledger_scan: DATA after the client's END_STREAM or RST_STREAM
 * is found (the bytes before it counted), however the bytes are split;
 * DATA on an open stream, inside a header block or on a stream the server
 * reset is not. */
static void test_ledger_scan(void **state) {
  static const uint8_t ES = NGHTTP2_FLAG_END_STREAM,
                       EH = NGHTTP2_FLAG_END_HEADERS;
  uint8_t b[512];
  size_t n = 0, bad;
  sf_h2_ledger l;
  (void)state;
  memcpy(b, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", SF_H2_PREFACE_LEN);
  n = SF_H2_PREFACE_LEN;
  n += fh(b + n, 6, NGHTTP2_SETTINGS, 0, 0);
  n += fh(b + n, 3, NGHTTP2_HEADERS, EH, 1);      /* 1 open */
  n += fh(b + n, 5, NGHTTP2_DATA, 0, 1);          /* fine */
  n += fh(b + n, 5, NGHTTP2_DATA, ES, 1);         /* 1 ended */
  n += fh(b + n, 3, NGHTTP2_HEADERS, EH | ES, 3); /* 3 ended */
  n += fh(b + n, 4, NGHTTP2_RST_STREAM, 0, 5);    /* 5 reset by the client */
  n += fh(b + n, 3, NGHTTP2_HEADERS, ES, 7);      /* a block goes on */
  n += fh(b + n, 1, NGHTTP2_DATA, 0, 7);          /* nghttp2's error */
  n += fh(b + n, 3, NGHTTP2_CONTINUATION, EH, 7);
  n += fh(b + n, 8, NGHTTP2_WINDOW_UPDATE, 0, 1);
  n += fh(b + n, 3, NGHTTP2_HEADERS, EH, 9); /* 9 open */
  n += fh(b + n, 2, NGHTTP2_DATA, 0, 9);     /* fine */
  bad = n;
  n += fh(b + n, 2, NGHTTP2_DATA, 0, 3); /* after END_STREAM */
  /* whole, and split at every byte */
  for (size_t cut = 0; cut <= n; cut++) {
    size_t got;
    memset(&l, 0, sizeof l);
    l.scan_skip = SF_H2_PREFACE_LEN;
    got = sf__h2_ledger_scan(&l, b, cut);
    if (cut <= bad) {
      assert_int_equal(got, cut);
      got = cut + sf__h2_ledger_scan(&l, b + cut, n - cut);
      assert_int_equal(got, bad);
    } else if (cut < bad + 9) { /* its header split: found in the next */
      assert_int_equal(got, cut);
      assert_int_equal(sf__h2_ledger_scan(&l, b + cut, n - cut), 0);
    } else
      assert_int_equal(got, bad);
  }
  /* RST_STREAM by the client, then DATA: found */
  memset(&l, 0, sizeof l);
  n = fh(b, 3, NGHTTP2_HEADERS, EH, 5);
  n += fh(b + n, 4, NGHTTP2_RST_STREAM, 0, 5);
  bad = n;
  n += fh(b + n, 1, NGHTTP2_DATA, ES, 5);
  assert_int_equal(sf__h2_ledger_scan(&l, b, n), bad);
  /* ... unless the server had reset it: what was in flight is ignored */
  memset(&l, 0, sizeof l);
  n = fh(b, 3, NGHTTP2_HEADERS, EH | ES, 1);
  assert_int_equal(sf__h2_ledger_scan(&l, b, n), n);
  sf__h2_ledger_open(&l, 1);
  sf__h2_ledger_reset(&l, 1);
  n = fh(b, 1, NGHTTP2_DATA, 0, 1);
  assert_int_equal(sf__h2_ledger_scan(&l, b, n), n);
  /* a header split over reads, after a payload split over reads */
  memset(&l, 0, sizeof l);
  n = fh(b, 20, NGHTTP2_HEADERS, EH | ES, 1);
  bad = n;
  n += fh(b + n, 1, NGHTTP2_DATA, 0, 1);
  assert_int_equal(sf__h2_ledger_scan(&l, b, 15), 15);
  assert_int_equal(sf__h2_ledger_scan(&l, b + 15, bad + 4 - 15), bad + 4 - 15);
  assert_int_equal(sf__h2_ledger_scan(&l, b + bad + 4, n - bad - 4), 0);
  /* DATA on stream 0 is nghttp2's PROTOCOL_ERROR, not STREAM_CLOSED */
  memset(&l, 0, sizeof l);
  n = fh(b, 1, NGHTTP2_DATA, 0, 0);
  assert_int_equal(sf__h2_ledger_scan(&l, b, n), n);
  /* 0x1 on CONTINUATION is no END_STREAM: stream 1 stays open */
  memset(&l, 0, sizeof l);
  n = fh(b, 3, NGHTTP2_HEADERS, 0, 1);
  n += fh(b + n, 3, NGHTTP2_CONTINUATION, EH | ES, 1);
  n += fh(b + n, 1, NGHTTP2_DATA, 0, 1);
  assert_int_equal(sf__h2_ledger_scan(&l, b, n), n);
}

/* A client that asks for 100 large answers and reads nothing: the server
 * queues at most about SF_H2_OUT_PAUSE bytes and answers the rest once the
 * client reads. */
static void test_output_bounded_then_all_answered(void **state) {
  fixture *f = fx_new();
  const uint8_t *d;
  const char *out;
  ssize_t n;
  size_t waiting;
  int32_t ids[100];
  (void)state;
  for (int i = 0; i < 100; i++)
    ids[i] = get(f, "GET", "/ids?count=1000");
  n = nghttp2_session_mem_send(f->cli, &d);
  assert_true(n > 0);
  assert_int_equal(sf__proto_h2.feed(f->pc, (const char *)d, (size_t)n),
                   (size_t)n);
  waiting = sf__proto_h2.output(f->pc, &out);
  assert_true(waiting > 0 && waiting <= SF_H2_OUT_PAUSE + 16384 + 9);
  assert_true(f->n.stats->ids_issued < 100 * 1000); /* the rest wait */
  server_to_client(f);
  exchange(f, 0);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(ans_of(f, ids[i])->status, 200);
    assert_true(ans_of(f, ids[i])->body_len > 1000 * 14); /* 13 digits, ", " */
  }
  assert_int_equal(f->n.stats->ids_issued, 100 * 1000);
  fx_free(f);
}

static void test_garbage_after_preface_is_goaway(void **state) {
  fixture *f = fx_new();
  static const char bad[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                            "\x00\x00\x04\x01\x05\x00\x00\x00\x00"
                            "abcd";
  const char *out;
  (void)state;
  sf__proto_h2.feed(f->pc, bad, sizeof bad - 1);
  assert_true(sf__proto_h2.output(f->pc, &out) > 0);
  assert_true(nghttp2_session_mem_recv(f->cli, (const uint8_t *)out,
                                       sf__proto_h2.output(f->pc, &out)) > 0);
  sf__proto_h2.sent(f->pc);
  assert_true(f->goaway);
  assert_true(sf__proto_h2.closing(f->pc));
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_over_h2),
      cmocka_unit_test(test_routes_errors_over_h2),
      cmocka_unit_test(test_grpc_next),
      cmocka_unit_test(test_grpc_decode),
      cmocka_unit_test(test_grpc_errors),
      cmocka_unit_test(test_grpc_no_lease),
      cmocka_unit_test(test_answered_at_end_of_headers),
      cmocka_unit_test(test_header_limits),
      cmocka_unit_test(test_health_watch),
      cmocka_unit_test(test_ledger),
      cmocka_unit_test(test_ledger_scan),
      cmocka_unit_test(test_reflection),
      cmocka_unit_test(test_output_bounded_then_all_answered),
      cmocka_unit_test(test_garbage_after_preface_is_goaway),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
