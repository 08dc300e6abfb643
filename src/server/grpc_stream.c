/*
 * grpc_stream.c - streaming gRPC calls (grpc.h): request messages taken
 * as their bytes arrive, whole or cut across DATA frames; framed replies
 * queued until the peer takes them; a status once the call ends. And the
 * one server-streaming method of grpc.health.v1.Health, Watch.
 *
 * Bounds: a request message of at most SF_GRPC_MSG_MAX bytes (gathered in
 * a buffer only when it arrives cut), at most SF_GRPC_OUT_MAX bytes of
 * replies waiting (a client that sends but does not read: the call ends
 * RESOURCE_EXHAUSTED).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "grpc_int.h"

#define SF_GRPC_OUT_MAX (256 * 1024)

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}

void sf__grpc_end(sf_grpc_call *c, sf_grpc_status st, const char *fmt, ...) {
  va_list ap;
  if (c->ended)
    return;
  c->ended = 1;
  c->status = st;
  va_start(ap, fmt);
  vsnprintf(c->text, sizeof c->text, fmt, ap);
  va_end(ap);
}

void sf__grpc_send(sf_grpc_call *c, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  size_t waiting = c->out_len - c->out_off;
  uint8_t *p;
  if (c->ended)
    return;
  if (waiting + 5 + n > SF_GRPC_OUT_MAX) {
    sf__grpc_end(c, SF_GRPC_RESOURCE_EXHAUSTED,
                 "more than %d bytes of replies wait: the client does not "
                 "read them",
                 SF_GRPC_OUT_MAX);
    return;
  }
  if (c->out_off > 0) { /* what was sent makes room */
    memmove(c->out, c->out + c->out_off, waiting);
    c->out_len = waiting;
    c->out_off = 0;
  }
  if (c->out_len + 5 + n > c->out_cap) {
    size_t cap = c->out_cap * 2 > c->out_len + 5 + n ? c->out_cap * 2
                                                     : c->out_len + 5 + n;
    p = realloc(c->out, cap);
    if (!p) {
      sf__grpc_end(c, SF_GRPC_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    c->out = p;
    c->out_cap = cap;
  }
  p = c->out + c->out_len;
  p[0] = 0; /* not compressed */
  p[1] = (uint8_t)(n >> 24);
  p[2] = (uint8_t)(n >> 16);
  p[3] = (uint8_t)(n >> 8);
  p[4] = (uint8_t)n;
  protobuf_c_message_pack(m, p + 5);
  c->out_len += 5 + n;
}

sf_grpc_call *sf__grpc_open(sf_worker *w, const sf_grpc_method *m) {
  sf_grpc_call *c = calloc(1, sizeof *c);
  if (!c)
    return NULL;
  c->w = w;
  c->ops = sf__grpc_streamer(m);
  c->last = -1;
  return c;
}

/* prefix_bad ends c for a message prefix it cannot take: 1, else 0. */
static int prefix_bad(sf_grpc_call *c, uint8_t flag, uint32_t len) {
  if (flag != 0)
    sf__grpc_end(c, SF_GRPC_UNIMPLEMENTED,
                 "compressed messages are not supported (grpc-encoding: "
                 "identity)");
  else if (len > SF_GRPC_MSG_MAX)
    sf__grpc_end(c, SF_GRPC_RESOURCE_EXHAUSTED,
                 "request message of %u bytes is larger than %d", len,
                 SF_GRPC_MSG_MAX);
  return c->ended;
}

static void take(sf_grpc_call *c, const uint8_t *m, size_t n) {
  c->msgs++;
  c->ops->msg(c, m, n);
}

void sf__grpc_input(sf_grpc_call *c, const uint8_t *p, size_t n) {
  while (n > 0 && !c->ended) {
    size_t need, k;
    if (c->in_len == 0 && n >= 5) { /* whole messages: read in place */
      uint32_t len = be32(p + 1);
      if (prefix_bad(c, p[0], len))
        return;
      if (n - 5 >= len) {
        take(c, p + 5, len);
        p += 5 + len;
        n -= 5 + len;
        continue;
      }
    }
    if (!c->in && !(c->in = malloc(5 + SF_GRPC_MSG_MAX))) {
      sf__grpc_end(c, SF_GRPC_RESOURCE_EXHAUSTED, "out of memory");
      return;
    }
    need = c->in_len < 5 ? 5 - c->in_len : 5 + be32(c->in + 1) - c->in_len;
    k = n < need ? n : need;
    memcpy(c->in + c->in_len, p, k);
    c->in_len += k;
    p += k;
    n -= k;
    if (c->in_len == 5 && prefix_bad(c, c->in[0], be32(c->in + 1)))
      return;
    if (c->in_len >= 5 && c->in_len == 5 + be32(c->in + 1)) {
      take(c, c->in + 5, c->in_len - 5);
      c->in_len = 0;
      free(c->in); /* a call seldom gets another cut message */
      c->in = NULL;
    }
  }
}

void sf__grpc_half_close(sf_grpc_call *c) {
  if (c->ended)
    return;
  if (c->in_len > 0)
    sf__grpc_end(c, SF_GRPC_INTERNAL,
                 "the request ended inside a message (%zu bytes of it)",
                 c->in_len);
  else
    c->ops->half_close(c);
}

int sf__grpc_poll(sf_grpc_call *c) {
  return !c->ended && c->ops->poll ? c->ops->poll(c) : 0;
}

void sf__grpc_shutdown(sf_grpc_call *c) {
  if (!c->ended)
    c->ops->shutdown(c);
}

size_t sf__grpc_output(const sf_grpc_call *c, const uint8_t **p) {
  *p = c->out ? c->out + c->out_off : NULL;
  return c->out_len - c->out_off;
}

void sf__grpc_consumed(sf_grpc_call *c, size_t n) {
  c->out_off += n;
  if (c->out_off == c->out_len) { /* an idle call holds no reply buffer */
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_off = c->out_cap = 0;
  }
}

int sf__grpc_ended(const sf_grpc_call *c, sf_grpc_status *st,
                   const char **text) {
  *st = c->status;
  *text = c->text;
  return c->ended;
}

void sf__grpc_close(sf_grpc_call *c) {
  if (!c)
    return;
  free(c->in);
  free(c->out);
  free(c);
}

/* ------------------------------------------------- grpc.health.v1 Watch */

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
