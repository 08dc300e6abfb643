/*
 * server.h - the listeners and event loops: one libuv loop per thread, each
 * with its own SO_REUSEPORT socket, all sharing one node (and generator).
 */
#ifndef SF_SRV_SERVER_H
#define SF_SRV_SERVER_H

#include <stddef.h>

#include "node.h"

typedef struct sf_server sf_server;

/* sf__server_start binds and listens on cfg's address with cfg->threads
 * sockets, then starts one event loop thread per socket. Returns 0, or -1
 * with a message in err. node must outlive the server. */
int sf__server_start(sf_node *node, sf_server **out, char *err, size_t errlen);
/* sf__server_port returns the port listened on (the real one for PORT=0). */
unsigned sf__server_port(const sf_server *s);
/* sf__server_stop stops accepting, lets every thread finish what is in
 * flight (at most about 500 ms), joins them and frees s. */
void sf__server_stop(sf_server *s);

#endif /* SF_SRV_SERVER_H */
