/*
 * sockaddr.h - one socket-address filler for the listener and the
 * healthcheck client, and the port a listener got.
 */
#ifndef SF_SRV_SOCKADDR_H
#define SF_SRV_SOCKADDR_H

#include <sys/socket.h>

/* sf__sockaddr fills *ss with the numeric address addr (IPv6 when v6, no
 * brackets) and port, and returns its length. With to_self, an unspecified
 * or unparsable address becomes the loopback one: where a client on this
 * host reaches a server bound to addr. */
socklen_t sf__sockaddr(const char *addr, int v6, unsigned port, int to_self,
                       struct sockaddr_storage *ss);

/* sf__sockaddr_port returns the port socket fd is bound to (0: unknown). */
unsigned sf__sockaddr_port(int fd);

#endif /* SF_SRV_SOCKADDR_H */
