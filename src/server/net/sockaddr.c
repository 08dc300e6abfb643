/*
 * sockaddr.c - numeric IPv4 and IPv6 socket addresses, listening sockets,
 * and the port a socket is bound to.
 */
#include "sockaddr.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>

socklen_t sf__sockaddr(const char *addr, int v6, unsigned port, int to_self,
                       struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (v6) {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if ((inet_pton(AF_INET6, addr, &a->sin6_addr) != 1 ||
         IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr)) &&
        to_self)
      a->sin6_addr = in6addr_loopback;
    return sizeof *a;
  }
  struct sockaddr_in *a = (struct sockaddr_in *)ss;
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  if ((inet_pton(AF_INET, addr, &a->sin_addr) != 1 ||
       a->sin_addr.s_addr == htonl(INADDR_ANY)) &&
      to_self)
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sizeof *a;
}

unsigned sf__sockaddr_port(int fd) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
    return 0;
  if (ss.ss_family == AF_INET6)
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int sf__listen_socket(const char *addr, int v6, unsigned port, const char *name,
                      char *err, size_t errlen) {
  struct sockaddr_storage ss;
  socklen_t sl = sf__sockaddr(addr, v6, port, 0, &ss);
  int one = 1, fd;
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
      bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 4096) != 0) {
    snprintf(err, errlen, "%s: cannot listen on %s%s%s:%u: %s", name,
             v6 ? "[" : "", addr, v6 ? "]" : "", port, strerror(errno));
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}
