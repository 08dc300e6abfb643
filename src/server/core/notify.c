/*
 * notify.c - sd_notify(3)'s protocol (see notify.h): systemd reads one
 * datagram per message, each line a NAME=value, on the socket it made for
 * the unit and named in NOTIFY_SOCKET.
 */
#include "notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sf__notify(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  size_t n = path ? strlen(path) : 0, len = strlen(state);
  if (n == 0)
    return 0;
  if ((path[0] != '/' && path[0] != '@') || n >= sizeof sa.sun_path) {
    errno = EAFNOSUPPORT; /* e.g. systemd 254's vsock: addresses */
    return -1;
  }
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@')
    sa.sun_path[0] = '\0'; /* the abstract namespace */
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  ssize_t w = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n));
  int e = errno;
  close(fd);
  errno = e;
  return w == (ssize_t)len ? 1 : -1;
}
