/*
 * server.h - the listeners and event loops: one libuv loop per thread, each
 * with its own SO_REUSEPORT socket per listener, all sharing one node (and
 * generator). Each listener speaks one protocol (proto.h).
 */
#ifndef SF_SRV_SERVER_H
#define SF_SRV_SERVER_H

#include <stddef.h>

#include "node.h"
#include "proto.h"

#define SF_SRV_MAX_LISTENERS 4

typedef struct sf_server sf_server;

typedef struct sf_listen_spec {
  const char *name; /* for messages: "PORT", "REDIS_PORT", ... */
  unsigned port;    /* 0: an ephemeral port */
  const sf_proto *proto;
  const sf_proto *h2; /* h2c prior-knowledge connections, or NULL */
} sf_listen_spec;

/* sf__server_start binds and listens on every spec (at most
 * SF_SRV_MAX_LISTENERS) on cfg's address with cfg->threads sockets each,
 * then starts one event loop thread per socket set. Returns 0, or -1 with
 * a message in err. node must outlive the server. */
int sf__server_start(sf_node *node, const sf_listen_spec *specs,
                     unsigned nspecs, sf_server **out, char *err,
                     size_t errlen);
/* sf__server_port returns the port listener i listens on (the real one
 * for port 0). */
unsigned sf__server_port(const sf_server *s, unsigned i);
/* sf__server_stop stops accepting, lets every thread finish what is in
 * flight (at most about 500 ms), joins them and frees s. */
void sf__server_stop(sf_server *s);

#endif /* SF_SRV_SERVER_H */
