/*
 * grpc_int.h - what the gRPC files share: grpc.c (the method table, unary
 * calls), grpc_stream.c (streaming calls, health Watch) and
 * grpc_reflect.c (server reflection). Not for other files.
 */
#ifndef SF_SRV_GRPC_INT_H
#define SF_SRV_GRPC_INT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "grpc.h"

/* Request messages are unpacked into a bump arena on the stack: no malloc
 * per message, and nothing to free. SF_GRPC_MSG_MAX bounds what
 * protobuf-c asks for (the message struct, strings and unknown fields it
 * copies). */
#define SF_GRPC_ARENA (2 * SF_GRPC_MSG_MAX + 512)

typedef struct sf_grpc_arena {
  size_t used;
  ProtobufCAllocator alloc;
  _Alignas(16) unsigned char mem[SF_GRPC_ARENA];
} sf_grpc_arena;

/* sf__grpc_arena_init empties a and points a->alloc at it. */
void sf__grpc_arena_init(sf_grpc_arena *a);

/* What a streaming method does (grpc.c's table points at one). */
typedef struct sf_grpc_streamer {
  /* msg takes one request message (its prefix stripped). */
  void (*msg)(sf_grpc_call *c, const uint8_t *m, size_t n);
  /* half_close: the client sent all its messages. */
  void (*half_close)(sf_grpc_call *c);
  /* poll re-checks what the call reports (NULL: it changes only on
   * input); 1 when it added output. */
  int (*poll)(sf_grpc_call *c);
  /* shutdown ends the call: the server stops. */
  void (*shutdown)(sf_grpc_call *c);
} sf_grpc_streamer;

/* A streaming call: the request bytes not yet a whole message, the framed
 * reply messages not yet sent, its status once it ended. */
struct sf_grpc_call {
  sf_worker *w;
  const sf_grpc_streamer *ops;
  uint8_t *in; /* a partial request message, with its prefix */
  size_t in_len;
  uint8_t *out; /* framed replies; out_off of them sent; the heap */
  size_t out_len, out_off, out_cap;
  unsigned msgs; /* request messages taken */
  int ended;
  int last; /* what the call last reported (Watch: the serving status) */
  sf_grpc_status status;
  char text[160];
};

/* sf__grpc_streamer is what streaming method m does (NULL: unary). */
const sf_grpc_streamer *sf__grpc_streamer(const sf_grpc_method *m);

/* sf__grpc_send packs m and queues it framed on c (out of memory: the call
 * ends RESOURCE_EXHAUSTED). */
void sf__grpc_send(sf_grpc_call *c, const ProtobufCMessage *m);
/* sf__grpc_end ends c with status st and a message (no more output). */
__attribute__((format(printf, 3, 4))) void
sf__grpc_end(sf_grpc_call *c, sf_grpc_status st, const char *fmt, ...);

/* sf__grpc_health is the serving status of service ("" the server as a
 * whole): SERVING or NOT_SERVING from the mint, or -1 for a service this
 * server does not have. */
int sf__grpc_health(sf_worker *w, const char *service);

/* The streaming methods. */
extern const sf_grpc_streamer sf__grpc_health_watch; /* grpc_stream.c */

#endif /* SF_SRV_GRPC_INT_H */
