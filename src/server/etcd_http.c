/*
 * etcd_http.c - the etcd transport: JSON POSTs over HTTP/1.1 with endpoint
 * failover, on plain sockets, with llhttp parsing the replies.
 *
 * Why not libcurl: the production image is one static binary FROM scratch,
 * and Debian's libcurl.a cannot be linked statically (it needs static
 * librtmp, libssh2, libpsl, GSSAPI and LDAP, which Debian does not ship);
 * loaded with dlopen() it cost every MACHINE_ID=auto node its TLS stack
 * (the README has the PSS figures). etcd's gateway needs one request shape,
 * and llhttp, already linked for the server, parses every reply shape etcd
 * sends (Content-Length, chunked, close-delimited).
 *
 * One connection is kept open between requests (etcd keeps HTTP/1.1
 * connections alive), so a keepalive costs one round trip. A request that
 * fails on an open connection is retried once on a fresh one to the same
 * endpoint (etcd may have closed an idle connection), then on the next
 * endpoints. Names are resolved with getaddrinfo() at each connect: in a
 * static glibc binary that still reads /etc/hosts and /etc/resolv.conf
 * (glibc 2.34 and later build the files and dns NSS modules into libc), which
 * Docker provides even in a FROM scratch image.
 */
#include "etcd.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_RESPONSE (8u << 20) /* a range over 2^20 keys fits easily */
#define SLICE_MS 50             /* how often a wait looks at *abort */

typedef struct endpoint {
  char host[256];
  char port[8];
  char url[300]; /* as given, for messages */
} endpoint;

struct sf_etcd_http {
  endpoint ep[SF_ETCD_MAX_ENDPOINTS];
  int n;
  int cur; /* the endpoint to try first: the one that answered last */
  int fd;  /* open connection to ep[cur], or -1 */
  int timeout_ms;
  const atomic_bool *abort;
  /* the reply being read */
  llhttp_t parser;
  llhttp_settings_t settings;
  char *body;
  size_t len, cap;
  bool complete, overflow;
};

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool aborted(const sf_etcd_http *c) {
  return c->abort && atomic_load(c->abort);
}

/* parse_endpoint splits "http://host[:port][/]" (host may be [v6]). */
static int parse_endpoint(const char *s, endpoint *e, char *err,
                          size_t errlen) {
  snprintf(e->url, sizeof e->url, "%s", s);
  if (strncmp(s, "https://", 8) == 0) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: \"%s\": https is not supported (snowflaked "
             "speaks plain HTTP to etcd; use http:// on a private network "
             "or a local TLS proxy)",
             s);
    return -1;
  }
  if (strncmp(s, "http://", 7) != 0) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: \"%s\" is not an http:// URL (expected "
             "http://host:port)",
             s);
    return -1;
  }
  const char *h = s + 7, *end = h + strcspn(h, "/"), *colon;
  if (*end && end[strspn(end, "/")]) {
    snprintf(err, errlen, "ETCD_ENDPOINTS: \"%s\": a path is not allowed", s);
    return -1;
  }
  const char *hend;
  if (*h == '[') {
    hend = memchr(h, ']', (size_t)(end - h));
    if (!hend)
      goto bad;
    colon = hend + 1 < end && hend[1] == ':' ? hend + 1 : NULL;
    h++;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    hend = colon ? colon : end;
  }
  size_t hl = (size_t)(hend - h);
  const char *p = colon ? colon + 1 : "2379";
  size_t pl = colon ? (size_t)(end - p) : 4;
  if (hl == 0 || hl >= sizeof e->host || pl == 0 || pl >= sizeof e->port ||
      strspn(p, "0123456789") < pl)
    goto bad;
  memcpy(e->host, h, hl);
  e->host[hl] = '\0';
  memcpy(e->port, p, pl);
  e->port[pl] = '\0';
  long port = strtol(e->port, NULL, 10);
  if (port < 1 || port > 65535)
    goto bad;
  return 0;
bad:
  snprintf(err, errlen,
           "ETCD_ENDPOINTS: \"%s\" is not a valid URL (expected "
           "http://host:port)",
           s);
  return -1;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  sf_etcd_http *c = p->data;
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n + 1)
      cap *= 2;
    char *b = cap <= MAX_RESPONSE ? realloc(c->body, cap) : NULL;
    if (!b) {
      c->overflow = true;
      return -1;
    }
    c->body = b;
    c->cap = cap;
  }
  memcpy(c->body + c->len, at, n);
  c->len += n;
  c->body[c->len] = '\0';
  return 0;
}

static int on_complete(llhttp_t *p) {
  sf_etcd_http *c = p->data;
  c->complete = true;
  return HPE_PAUSED;
}

int sf__etcd_http_new(const char *endpoints, int timeout_ms,
                      const atomic_bool *abort, sf_etcd_http **out, char *err,
                      size_t errlen) {
  *out = NULL;
  sf_etcd_http *c = calloc(1, sizeof *c);
  char *buf = strdup(endpoints ? endpoints : "");
  if (!c || !buf) {
    free(c);
    free(buf);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char *save = NULL;
  for (char *t = strtok_r(buf, ", ", &save); t;
       t = strtok_r(NULL, ", ", &save)) {
    if (c->n == SF_ETCD_MAX_ENDPOINTS) {
      snprintf(err, errlen, "ETCD_ENDPOINTS: more than %d endpoints",
               SF_ETCD_MAX_ENDPOINTS);
      goto fail;
    }
    if (parse_endpoint(t, &c->ep[c->n], err, errlen) != 0)
      goto fail;
    c->n++;
  }
  if (c->n == 0) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: no endpoint given (expected "
             "http://host:2379[,http://...])");
    goto fail;
  }
  free(buf);
  c->fd = -1;
  c->timeout_ms = timeout_ms;
  c->abort = abort;
  llhttp_settings_init(&c->settings);
  c->settings.on_body = on_body;
  c->settings.on_message_complete = on_complete;
  *out = c;
  return 0;
fail:
  free(buf);
  free(c);
  return -1;
}

static void disconnect(sf_etcd_http *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

void sf__etcd_http_free(sf_etcd_http *c) {
  if (!c)
    return;
  disconnect(c);
  free(c->body);
  free(c);
}

/* wait_fd polls fd for ev until the request's deadline, in slices so that
 * an abort is seen: 0 when ready, else -1 with err. */
static int wait_fd(sf_etcd_http *c, int fd, short ev, int64_t deadline,
                   char *err, size_t errlen) {
  for (;;) {
    if (aborted(c)) {
      snprintf(err, errlen, "stopped");
      return -1;
    }
    int64_t left = deadline - mono_ms();
    if (left <= 0) {
      snprintf(err, errlen, "timed out after %d ms", c->timeout_ms);
      return -1;
    }
    struct pollfd p = {.fd = fd, .events = ev};
    int r = poll(&p, 1, (int)(left < SLICE_MS ? left : SLICE_MS));
    if (r > 0)
      return 0;
    if (r < 0 && errno != EINTR) {
      snprintf(err, errlen, "poll: %s", strerror(errno));
      return -1;
    }
  }
}

/* dial connects to endpoint e before deadline: a socket, or -1 with err. */
static int dial(sf_etcd_http *c, const endpoint *e, int64_t deadline, char *err,
                size_t errlen) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(e->host, e->port, &hints, &res);
  if (rc != 0) {
    snprintf(err, errlen, "cannot resolve %s: %s", e->host, gai_strerror(rc));
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                a->ai_protocol);
    if (fd < 0) {
      snprintf(err, errlen, "socket: %s", strerror(errno));
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      snprintf(err, errlen, "connect: %s", strerror(errno));
      close(fd);
      fd = -1;
      continue;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (wait_fd(c, fd, POLLOUT, deadline, err, errlen) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
      if (soerr)
        snprintf(err, errlen, "connect: %s", strerror(soerr));
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd >= 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

static int send_all(sf_etcd_http *c, const char *p, size_t n, int64_t deadline,
                    char *err, size_t errlen) {
  while (n > 0) {
    ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EAGAIN) {
      if (wait_fd(c, c->fd, POLLOUT, deadline, err, errlen) != 0)
        return -1;
    } else if (w < 0 && errno != EINTR) {
      snprintf(err, errlen, "send: %s", strerror(errno));
      return -1;
    }
  }
  return 0;
}

/* read_reply reads one response into c->body: 0, or -1 with err. */
static int read_reply(sf_etcd_http *c, int64_t deadline, char *err,
                      size_t errlen) {
  llhttp_init(&c->parser, HTTP_RESPONSE, &c->settings);
  c->parser.data = c;
  c->len = 0;
  c->complete = c->overflow = false;
  char buf[16384];
  while (!c->complete) {
    ssize_t r = recv(c->fd, buf, sizeof buf, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && errno == EAGAIN) {
      if (wait_fd(c, c->fd, POLLIN, deadline, err, errlen) != 0)
        return -1;
      continue;
    }
    if (r < 0) {
      snprintf(err, errlen, "recv: %s", strerror(errno));
      return -1;
    }
    llhttp_errno_t e = r == 0 ? llhttp_finish(&c->parser)
                              : llhttp_execute(&c->parser, buf, (size_t)r);
    if (e != HPE_OK && e != HPE_PAUSED) {
      snprintf(err, errlen, "%s",
               c->overflow ? "reply larger than 8 MiB"
                           : "malformed HTTP reply");
      return -1;
    }
    if (r == 0 && !c->complete) {
      snprintf(err, errlen, "connection closed before the reply ended");
      return -1;
    }
  }
  return 0;
}

/* exchange runs one request on endpoint i, on the open connection when
 * there is one: 0, or -1 with err (the connection is then closed). */
static int exchange(sf_etcd_http *c, int i, const char *req, size_t n,
                    char *err, size_t errlen) {
  int64_t deadline = mono_ms() + c->timeout_ms;
  if (c->fd < 0) {
    c->fd = dial(c, &c->ep[i], deadline, err, errlen);
    if (c->fd < 0)
      return -1;
    c->cur = i;
  }
  if (send_all(c, req, n, deadline, err, errlen) != 0 ||
      read_reply(c, deadline, err, errlen) != 0) {
    disconnect(c);
    return -1;
  }
  if (!llhttp_should_keep_alive(&c->parser))
    disconnect(c);
  return 0;
}

int sf__etcd_http_post(sf_etcd_http *c, const char *path, const char *body,
                       char **resp, int *status, char *err, size_t errlen) {
  *resp = NULL;
  *status = 0;
  size_t blen = strlen(body);
  char head[512];
  char *req = NULL;
  int rc = SF_ETCD_UNREACHABLE;
  snprintf(err, errlen, "no endpoint tried");
  for (int k = 0; k < c->n && !aborted(c); k++) {
    int i = (c->cur + k) % c->n;
    if (c->fd >= 0 && i != c->cur)
      disconnect(c);
    int hl = snprintf(head, sizeof head,
                      "POST %s HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n\r\n",
                      path, c->ep[i].host, c->ep[i].port, blen);
    free(req);
    req = malloc((size_t)hl + blen);
    if (!req) {
      snprintf(err, errlen, "out of memory");
      break;
    }
    memcpy(req, head, (size_t)hl);
    memcpy(req + hl, body, blen);
    char why[256];
    /* A kept connection may have been closed by etcd while idle: one more
     * try on a fresh connection before moving on. */
    bool reused = c->fd >= 0;
    int r = exchange(c, i, req, (size_t)hl + blen, why, sizeof why);
    if (r != 0 && reused && !aborted(c))
      r = exchange(c, i, req, (size_t)hl + blen, why, sizeof why);
    if (r != 0) {
      snprintf(err, errlen, "%s: %s", c->ep[i].url, why);
      continue;
    }
    int st = (int)c->parser.status_code;
    if (st >= 500) {
      snprintf(err, errlen, "%s answered HTTP %d", c->ep[i].url, st);
      disconnect(c);
      continue;
    }
    *status = st;
    *resp = c->body ? c->body : strdup(""); /* handed over */
    c->body = NULL;
    c->len = c->cap = 0;
    if (!*resp) {
      snprintf(err, errlen, "out of memory");
      break;
    }
    rc = SF_ETCD_OK;
    break;
  }
  free(req);
  return rc;
}
