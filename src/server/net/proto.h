/*
 * proto.h - a protocol that a connection speaks, as server.c sees it:
 * bytes in, bytes out, no sockets and no event loop, so each protocol is
 * unit tested and fuzzed on its own (http.c is the model).
 *
 * server.c owns the socket. It feeds what it reads, writes what output()
 * hands it, calls sent() once all of that is written, and closes the
 * connection once closing() is true and the output is out. While a write is
 * in flight it stops reading, so a peer that never reads holds only its own
 * buffers. A listener has one protocol; on an HTTP/1.x listener a
 * connection whose first bytes are the HTTP/2 client preface is handed to
 * the listener's h2 protocol instead (prior knowledge, h2c), the preface
 * included.
 */
#ifndef SF_SRV_PROTO_H
#define SF_SRV_PROTO_H

#include <stddef.h>

#include "node.h"

/* The limits every protocol keeps alike (HTTP/1.x's, HTTP/2's, a RESP
 * command's and a memcached line's). */
#define SF_HTTP_URL_MAX 2048     /* longer request target: 414 */
#define SF_HTTP_HEADER_MAX 8192  /* larger header section: 431 */
#define SF_HTTP_OUT_PAUSE 262144 /* stop parsing with this much unsent */

typedef struct sf_proto {
  const char *name; /* "http", "h2", "redis", "memcached" */
  /* conn_new allocates a connection's state for worker w: NULL when out
   * of memory. */
  void *(*conn_new)(sf_worker *w);
  /* feed consumes input and queues the answers. Returns the bytes
   * consumed: less than len only when it stopped because too much output
   * waits; the rest is fed again after sent(). */
  size_t (*feed)(void *pc, const char *data, size_t len);
  /* output points *buf at the bytes waiting to be written and returns
   * their count (0: nothing to write). */
  size_t (*output)(void *pc, const char **buf);
  /* sent tells that every byte output() handed out was written. */
  void (*sent)(void *pc);
  /* closing is true once the connection should close after its output. */
  int (*closing)(const void *pc);
  void (*conn_free)(void *pc);
  /* goaway queues the protocol's goodbye when the server shuts down (an
   * HTTP/2 GOAWAY: no new streams), for output() to hand out before the
   * connection closes; NULL: the connection just closes. */
  void (*goaway)(void *pc);
  /* tick is called about every 250 ms: it may queue output (a change a
   * stream reports) and returns nonzero while the connection holds a
   * stream the server drives (it is then not idle); NULL: none. */
  int (*tick)(void *pc);
  /* busy is sent to a connection refused at MAX_CONNECTIONS before it is
   * closed (the protocol's own "server busy" answer), or NULL. */
  const char *busy;
} sf_proto;

/* The HTTP/1.x protocol (http.c). */
extern const sf_proto sf__proto_http;
/* HTTP/2 with prior knowledge, gRPC included (h2.c). */
extern const sf_proto sf__proto_h2;

#endif /* SF_SRV_PROTO_H */
