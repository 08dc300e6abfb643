/*
 * grpc_stream.c - streaming gRPC calls (grpc.h): request messages taken
 * as their bytes arrive, whole or cut across DATA frames; framed replies
 * queued until the peer takes them; a status once the call ends. The
 * methods that stream (Health/Watch in grpc.c, reflection in
 * grpc_reflect.c) sit above it.
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

#include "grpc_int.h"

#define SF_GRPC_OUT_MAX (256 * 1024)

static void *arena_alloc(void *data, size_t size) {
  sf_grpc_arena *a = data;
  size_t at = (a->used + 15) & ~(size_t)15;
  if (size > SF_GRPC_ARENA || at > SF_GRPC_ARENA - size)
    return NULL;
  a->used = at + size;
  return a->mem + at;
}

static void arena_free(void *data, void *p) {
  (void)data;
  (void)p;
}

void sf__grpc_arena_init(sf_grpc_arena *a) {
  a->used = 0;
  a->alloc.alloc = arena_alloc;
  a->alloc.free = arena_free;
  a->alloc.allocator_data = a;
}

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
