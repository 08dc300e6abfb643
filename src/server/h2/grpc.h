/*
 * grpc.h - the gRPC services of snowflaked as a pure function: a method
 * (found by its path when the request headers end, so that an unknown one
 * is answered at once) and a request body (length-prefixed messages, as
 * HTTP/2 DATA carried them) in, a framed reply message or a status out. No
 * HTTP/2 here: h2_answer.c frames what this returns (HEADERS, DATA,
 * trailers).
 *
 * Services: snowflake.v1.Snowflake (Next, Decode; proto/snowflake/v1) and
 * grpc.health.v1.Health (Check, and Watch: a server stream). Messages are
 * packed and unpacked by protobuf-c from the checked-in .proto files.
 *
 * A streaming call is an object fed request bytes as they arrive and
 * drained of framed reply messages as the peer takes them, until it ends
 * with a status (trailers).
 */
#ifndef SF_SRV_GRPC_H
#define SF_SRV_GRPC_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

#define SF_GRPC_MSG_MAX                                                        \
  4096                    /* a larger request message: RESOURCE_EXHAUSTED      \
                           */
#define SF_GRPC_INLINE 96 /* reply bytes kept inside sf_grpc_reply */

/* X(name, code): the gRPC status codes snowflaked answers with. */
#define SF_GRPC_STATUS_MAP(X)                                                  \
  X(OK, 0)                                                                     \
  X(INVALID_ARGUMENT, 3)                                                       \
  X(NOT_FOUND, 5)                                                              \
  X(RESOURCE_EXHAUSTED, 8)                                                     \
  X(FAILED_PRECONDITION, 9)                                                    \
  X(UNIMPLEMENTED, 12)                                                         \
  X(INTERNAL, 13)                                                              \
  X(UNAVAILABLE, 14)

typedef enum sf_grpc_status {
#define SF__GRPC_ENUM(name, code) SF_GRPC_##name = code,
  SF_GRPC_STATUS_MAP(SF__GRPC_ENUM)
#undef SF__GRPC_ENUM
} sf_grpc_status;

/* A call's outcome: status OK with one framed reply message (5-byte
 * prefix + protobuf) in msg[0..msg_len), or another status with text. */
typedef struct sf_grpc_reply {
  sf_grpc_status status;
  uint8_t *msg; /* buf, or the heap for a long reply (sf__grpc_reply_free) */
  size_t msg_len;
  char text[160]; /* grpc-message, "" when OK */
  uint8_t buf[SF_GRPC_INLINE];
} sf_grpc_reply;

/* A method of a service (grpc.c's table). */
typedef struct sf_grpc_method sf_grpc_method;

/* sf__grpc_find returns the method at path (e.g.
 * "/snowflake.v1.Snowflake/Next"), or NULL when no service has it. */
const sf_grpc_method *sf__grpc_find(const char *path, size_t path_len);
/* sf__grpc_unknown fills r with UNIMPLEMENTED for a path sf__grpc_find
 * did not know, naming the service or the method that is missing. */
void sf__grpc_unknown(const char *path, size_t path_len, sf_grpc_reply *r);
/* sf__grpc_content_type classifies a request's content-type: 1 for gRPC
 * with protobuf messages (application/grpc, application/grpc+proto, either
 * with parameters), -1 for gRPC with another codec (application/grpc+json),
 * 0 for anything else (not a gRPC request). */
int sf__grpc_content_type(const uint8_t *v, size_t len);
/* sf__grpc_call runs the unary method m on the request body and fills *r.
 * Never fails: every error is a status in *r. */
void sf__grpc_call(sf_worker *w, const sf_grpc_method *m, const uint8_t *body,
                   size_t body_len, sf_grpc_reply *r);
/* A streaming call (grpc_stream.c). */
typedef struct sf_grpc_call sf_grpc_call;

/* sf__grpc_streams is true for a streaming method: its call opens when the
 * request headers end and takes DATA as it comes; a unary method's body is
 * collected for sf__grpc_call instead. */
int sf__grpc_streams(const sf_grpc_method *m);
/* sf__grpc_open starts a call of streaming method m for w: NULL when out
 * of memory. */
sf_grpc_call *sf__grpc_open(sf_worker *w, const sf_grpc_method *m);
/* sf__grpc_input hands c request bytes as DATA carried them (messages cut
 * anywhere); replies go to its output. */
void sf__grpc_input(sf_grpc_call *c, const uint8_t *p, size_t n);
/* sf__grpc_half_close tells c the client sent all it will. */
void sf__grpc_half_close(sf_grpc_call *c);
/* sf__grpc_poll re-checks what c reports (Watch: the serving status): 1
 * when it added output. */
int sf__grpc_poll(sf_grpc_call *c);
/* sf__grpc_shutdown ends c because the server stops. */
void sf__grpc_shutdown(sf_grpc_call *c);
/* sf__grpc_output points *p at the reply bytes waiting and returns their
 * count; sf__grpc_consumed says n of them were taken. */
size_t sf__grpc_output(const sf_grpc_call *c, const uint8_t **p);
void sf__grpc_consumed(sf_grpc_call *c, size_t n);
/* sf__grpc_ended is 1 once c has its status (*st, *text), else 0. */
int sf__grpc_ended(const sf_grpc_call *c, sf_grpc_status *st,
                   const char **text);
/* sf__grpc_close frees c (NULL: nothing). */
void sf__grpc_close(sf_grpc_call *c);

/* sf__grpc_reply_free releases a heap reply; r can be reused. */
void sf__grpc_reply_free(sf_grpc_reply *r);
/* sf__grpc_message_escape percent-encodes text for the grpc-message
 * trailer into dst (3 * strlen(text) + 1 bytes suffice); returns its
 * length. */
size_t sf__grpc_message_escape(const char *text, char *dst);

#endif /* SF_SRV_GRPC_H */
