/*
 * grpc.c - the gRPC method table and the unary methods: de-frame the
 * request message, unpack it with protobuf-c, mint or decode, pack the
 * reply; grpc.health.v1's Check and Watch. Streaming calls run on
 * grpc_stream.c; reflection is grpc_reflect.c's.
 *
 * IDs come only from sf__mint() and their parts from sf_decode(): this file
 * knows nothing of leases or bit layouts.
 */
#include "grpc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc_int.h"
#include "mint.h"
#include "snowflake/v1/snowflake.pb-c.h"

typedef struct call {
  sf_worker *w;
  const uint8_t *in; /* the request message, without its prefix */
  size_t in_len;
  ProtobufCAllocator *alloc;
  sf_grpc_reply *r;
} call;

__attribute__((format(printf, 3, 4))) static void
fail(sf_grpc_reply *r, sf_grpc_status st, const char *fmt, ...);
static void fail(sf_grpc_reply *r, sf_grpc_status st, const char *fmt, ...) {
  va_list ap;
  r->status = st;
  va_start(ap, fmt);
  vsnprintf(r->text, sizeof r->text, fmt, ap);
  va_end(ap);
}

/* reply frames and packs m into r: the 5-byte prefix (uncompressed,
 * big-endian length), then the message. */
static void reply(sf_grpc_reply *r, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  uint8_t *p = r->buf;
  if (5 + n > sizeof r->buf) {
    p = malloc(5 + n);
    if (!p) {
      fail(r, SF_GRPC_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
  }
  p[0] = 0;
  p[1] = (uint8_t)(n >> 24);
  p[2] = (uint8_t)(n >> 16);
  p[3] = (uint8_t)(n >> 8);
  p[4] = (uint8_t)n;
  protobuf_c_message_pack(m, p + 5);
  r->msg = p;
  r->msg_len = 5 + n;
  r->status = SF_GRPC_OK;
}

/* X(mint status, gRPC status): why a node could not issue, as gRPC says
 * it. A retry helps for the first three; not once the time bits run out. */
#define MINT_TO_GRPC(X)                                                        \
  X(NO_LEASE, UNAVAILABLE)                                                     \
  X(CLOCK_BEHIND, UNAVAILABLE)                                                 \
  X(NOT_PERSISTED, UNAVAILABLE)                                                \
  X(EXHAUSTED, FAILED_PRECONDITION)                                            \
  X(INTERNAL, INTERNAL)

static sf_grpc_status mint_status(sf_mint_status s) {
  static const sf_grpc_status map[SF_MINT_STATUS_COUNT] = {
#define SF__M2G(m, g) [SF_MINT_##m] = SF_GRPC_##g,
      MINT_TO_GRPC(SF__M2G)
#undef SF__M2G
  };
  return s > SF_MINT_OK && s < SF_MINT_STATUS_COUNT ? map[s] : SF_GRPC_INTERNAL;
}

#define UNPACK(type, fn, c) ((type *)fn((c)->alloc, (c)->in_len, (c)->in))

static void m_next(call *c) {
  sf_node *n = c->w->node;
  unsigned max = n->cfg->max_batch;
  Snowflake__V1__NextRequest *q = UNPACK(
      Snowflake__V1__NextRequest, snowflake__v1__next_request__unpack, c);
  Snowflake__V1__NextReply out = SNOWFLAKE__V1__NEXT_REPLY__INIT;
  sf_mint_error e;
  size_t count;
  if (!q) {
    fail(c->r, SF_GRPC_INVALID_ARGUMENT,
         "the request is not a snowflake.v1.NextRequest");
    return;
  }
  count = q->count ? q->count : 1;
  if (count > max) {
    fail(c->r, SF_GRPC_INVALID_ARGUMENT, "count must be in 1..%u (0: 1)", max);
    return;
  }
  if (sf__mint(c->w, c->w->ids, count, &e) != 0) {
    fail(c->r, mint_status(e.status), "%s", e.msg);
    return;
  }
  out.n_ids = count;
  out.ids = c->w->ids;
  out.machine_id = (uint32_t)sf__mint_machine_of(n, c->w->ids[0]);
  reply(c->r, &out.base);
}

static void m_decode(call *c) {
  Snowflake__V1__DecodeRequest *q = UNPACK(
      Snowflake__V1__DecodeRequest, snowflake__v1__decode_request__unpack, c);
  Snowflake__V1__DecodeReply out = SNOWFLAKE__V1__DECODE_REPLY__INIT;
  sf_parts parts;
  char t[SF_TIME_BUFSIZE];
  if (!q) {
    fail(c->r, SF_GRPC_INVALID_ARGUMENT,
         "the request is not a snowflake.v1.DecodeRequest");
    return;
  }
  if (sf_decode(c->w->node->layout, q->id, &parts) != 0) {
    fail(c->r, SF_GRPC_INVALID_ARGUMENT,
         "id is larger than 9223372036854775807 (the sign bit is set)");
    return;
  }
  if (sf_format_time(parts.unix_ms, t, sizeof t) < 0) {
    fail(c->r, SF_GRPC_INVALID_ARGUMENT,
         "id's time is outside the years 1970..9999");
    return;
  }
  out.id = q->id;
  out.unix_ms = parts.unix_ms;
  out.time = t;
  out.machine_id = (uint32_t)parts.machine_id;
  out.sequence = (uint32_t)parts.sequence;
  reply(c->r, &out.base);
}

int sf__grpc_health(sf_worker *w, const char *service) {
  sf_mint_error e;
  /* "" is the server as a whole; the one service it has is the same. */
  if (service[0] && strcmp(service, "snowflake.v1.Snowflake") != 0)
    return -1;
  return sf__mint_ready(w->node, &e) == 0
             ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
             : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void m_health(call *c) {
  Grpc__Health__V1__HealthCheckRequest *q =
      UNPACK(Grpc__Health__V1__HealthCheckRequest,
             grpc__health__v1__health_check_request__unpack, c);
  Grpc__Health__V1__HealthCheckResponse out =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  int st;
  if (!q) {
    fail(c->r, SF_GRPC_INVALID_ARGUMENT,
         "the request is not a grpc.health.v1.HealthCheckRequest");
    return;
  }
  st = sf__grpc_health(c->w, q->service);
  if (st < 0) {
    fail(c->r, SF_GRPC_NOT_FOUND,
         "unknown service %.100s (this server has snowflake.v1.Snowflake, "
         "and \"\" for the server as a whole)",
         q->service);
    return;
  }
  out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
  reply(c->r, &out.base);
}

/* Health/Watch, server streaming (grpc_stream.c carries it). */

#define SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define NOT_SERVING                                                            \
  GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define SERVICE_UNKNOWN                                                        \
  GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

static void report(sf_grpc_call *c, int status) {
  Grpc__Health__V1__HealthCheckResponse out =
      GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  out.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  c->last = status;
  sf__grpc_send(c, &out.base);
}

/* The request names the service: its status now, then each change. A
 * service this server does not have is SERVICE_UNKNOWN, and the call stays
 * open (health.proto: it may become known); here it never does. */
static void watch_msg(sf_grpc_call *c, const uint8_t *m, size_t n) {
  sf_grpc_arena a;
  Grpc__Health__V1__HealthCheckRequest *q;
  int st;
  if (c->msgs > 1) {
    sf__grpc_end(c, SF_GRPC_INTERNAL,
                 "Watch takes one request message, not more");
    return;
  }
  sf__grpc_arena_init(&a);
  q = grpc__health__v1__health_check_request__unpack(&a.alloc, n, m);
  if (!q) {
    sf__grpc_end(c, SF_GRPC_INVALID_ARGUMENT,
                 "the request is not a grpc.health.v1.HealthCheckRequest");
    return;
  }
  st = sf__grpc_health(c->w, q->service);
  report(c, st < 0 ? SERVICE_UNKNOWN : st);
}

static void watch_half_close(sf_grpc_call *c) {
  if (c->msgs == 0)
    sf__grpc_end(c, SF_GRPC_INTERNAL,
                 "Watch takes one request message, and none came");
}

static int watch_poll(sf_grpc_call *c) {
  int st;
  if (c->msgs == 0 || c->last == SERVICE_UNKNOWN)
    return 0;
  st = sf__grpc_health(c->w, "");
  if (st == c->last)
    return 0;
  report(c, st);
  return 1;
}

/* At shutdown a watcher hears NOT_SERVING (send no more calls here), then
 * the call ends UNAVAILABLE, as a client retries elsewhere. */
static void watch_shutdown(sf_grpc_call *c) {
  if (c->msgs > 0 && c->last != SERVICE_UNKNOWN && c->last != NOT_SERVING)
    report(c, NOT_SERVING);
  sf__grpc_end(c, SF_GRPC_UNAVAILABLE, "the server is shutting down");
}

const sf_grpc_streamer sf__grpc_health_watch = {
    .msg = watch_msg,
    .half_close = watch_half_close,
    .poll = watch_poll,
    .shutdown = watch_shutdown,
};

struct sf_grpc_method {
  const char *path;
  size_t len;
  size_t service_len;             /* of path: "/service/" */
  void (*fn)(call *c);            /* a unary method, or */
  const sf_grpc_streamer *stream; /* a streaming one */
};

#define M(service, name, fn, stream)                                           \
  {                                                                            \
    "/" service "/" name, sizeof("/" service "/" name) - 1,                    \
        sizeof("/" service "/") - 1, fn, stream                                \
  }
static const sf_grpc_method methods[] = {
    M("snowflake.v1.Snowflake", "Next", m_next, NULL),
    M("snowflake.v1.Snowflake", "Decode", m_decode, NULL),
    M("grpc.health.v1.Health", "Check", m_health, NULL),
    M("grpc.health.v1.Health", "Watch", NULL, &sf__grpc_health_watch),
    M("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", NULL,
      &sf__grpc_reflection),
    M("grpc.reflection.v1alpha.ServerReflection", "ServerReflectionInfo", NULL,
      &sf__grpc_reflection),
};
#define NMETHODS (sizeof methods / sizeof methods[0])

const sf_grpc_method *sf__grpc_find(const char *path, size_t path_len) {
  for (size_t i = 0; i < NMETHODS; i++)
    if (methods[i].len == path_len && !memcmp(methods[i].path, path, path_len))
      return &methods[i];
  return NULL;
}

void sf__grpc_unknown(const char *path, size_t path_len, sf_grpc_reply *r) {
  const char *slash = path_len > 1 ? memrchr(path + 1, '/', path_len - 1) : 0;
  size_t sl = slash ? (size_t)(slash - path) + 1 : 0; /* "/service/" */
  int n = (int)(path_len > 100 ? 100 : path_len);
  r->msg = NULL;
  r->msg_len = 0;
  for (size_t i = 0; sl && i < NMETHODS; i++)
    if (methods[i].service_len == sl && !memcmp(methods[i].path, path, sl)) {
      fail(r, SF_GRPC_UNIMPLEMENTED, "unknown method %.*s for service %.*s",
           (int)(path_len - sl > 100 ? 100 : path_len - sl), path + sl,
           (int)sl - 2, path + 1);
      return;
    }
  if (sl)
    fail(r, SF_GRPC_UNIMPLEMENTED, "unknown service %.*s",
         (int)(sl - 2 > 100 ? 100 : sl - 2), path + 1);
  else
    fail(r, SF_GRPC_UNIMPLEMENTED, "unknown method %.*s", n, path);
}

int sf__grpc_content_type(const uint8_t *v, size_t len) {
  static const char pre[] = "application/grpc";
  const size_t n = sizeof pre - 1;
  if (len < n || memcmp(v, pre, n) != 0)
    return 0;
  if (len == n || v[n] == ';')
    return 1;
  if (v[n] != '+')
    return 0; /* application/grpc-web...: another protocol */
  /* "+proto", alone or before parameters */
  return len >= n + 6 && !memcmp(v + n + 1, "proto", 5) &&
                 (len == n + 6 || v[n + 6] == ';')
             ? 1
             : -1;
}

/* deframe finds the one request message of a unary call: 0, or -1 after
 * failing r. */
static int deframe(call *c, const uint8_t *body, size_t len) {
  uint32_t n;
  if (len < 5) {
    fail(c->r, SF_GRPC_INTERNAL,
         "the request has no length-prefixed message (%zu bytes)", len);
    return -1;
  }
  n = (uint32_t)body[1] << 24 | (uint32_t)body[2] << 16 |
      (uint32_t)body[3] << 8 | body[4];
  if (body[0] != 0) {
    fail(c->r, SF_GRPC_UNIMPLEMENTED,
         "compressed messages are not supported (grpc-encoding: identity)");
    return -1;
  }
  if (n > SF_GRPC_MSG_MAX) {
    fail(c->r, SF_GRPC_RESOURCE_EXHAUSTED,
         "request message of %u bytes is larger than %d", n, SF_GRPC_MSG_MAX);
    return -1;
  }
  if (len - 5 != n) {
    fail(c->r, SF_GRPC_INTERNAL,
         "a unary request carries one message: %zu bytes follow a prefix of "
         "%u",
         len - 5, n);
    return -1;
  }
  c->in = body + 5;
  c->in_len = n;
  return 0;
}

int sf__grpc_streams(const sf_grpc_method *m) {
  return m->stream != NULL;
}

sf_grpc_call *sf__grpc_open(sf_worker *w, const sf_grpc_method *m) {
  sf_grpc_call *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->w = w;
  c->ops = m->stream;
  c->last = -1;
  return c;
}

void sf__grpc_call(sf_worker *w, const sf_grpc_method *m, const uint8_t *body,
                   size_t body_len, sf_grpc_reply *r) {
  sf_grpc_arena a;
  call c;
  r->status = SF_GRPC_OK;
  r->msg = NULL;
  r->msg_len = 0;
  r->text[0] = '\0';
  sf__grpc_arena_init(&a);
  c.w = w;
  c.r = r;
  c.alloc = &a.alloc;
  if (deframe(&c, body, body_len) == 0)
    m->fn(&c);
}

void sf__grpc_reply_free(sf_grpc_reply *r) {
  if (r->msg && r->msg != r->buf)
    free(r->msg);
  r->msg = NULL;
  r->msg_len = 0;
}

size_t sf__grpc_message_escape(const char *text, char *dst) {
  static const char hex[] = "0123456789ABCDEF";
  char *p = dst;
  for (const unsigned char *s = (const unsigned char *)text; *s; s++) {
    if (*s >= 0x20 && *s <= 0x7e && *s != '%') {
      *p++ = (char)*s;
    } else {
      *p++ = '%';
      *p++ = hex[*s >> 4];
      *p++ = hex[*s & 15];
    }
  }
  *p = '\0';
  return (size_t)(p - dst);
}
