/*
 * sockaddr.h - one socket-address filler for the listener and the
 * healthcheck client, the listening socket, and the port a listener got.
 */
#ifndef SF_SRV_SOCKADDR_H
#define SF_SRV_SOCKADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* sf__sockaddr fills *ss with the numeric address addr (IPv6 when v6, no
 * brackets) and port, and returns its length. With to_self, an unspecified
 * or unparsable address becomes the loopback one: where a client on this
 * host reaches a server bound to addr. */
socklen_t sf__sockaddr(const char *addr, int v6, unsigned port, int to_self,
                       struct sockaddr_storage *ss);

/* sf__listen_socket makes one SO_REUSEPORT listening socket on addr
 * (IPv6 when v6) and port: the fd, or -1 with err naming the listener
 * (name), the address and the cause. */
int sf__listen_socket(const char *addr, int v6, unsigned port, const char *name,
                      char *err, size_t errlen);

/* sf__sockaddr_port returns the port socket fd is bound to (0: unknown). */
unsigned sf__sockaddr_port(int fd);

#endif /* SF_SRV_SOCKADDR_H */
