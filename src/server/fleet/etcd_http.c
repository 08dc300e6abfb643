/*
 * etcd_http.c - the etcd transport: JSON POSTs over HTTP/1.1 with endpoint
 * failover, on plain sockets or TLS (etcd_tls.c), with llhttp parsing the
 * replies, and etcd's authentication.
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
 *
 * Auth (ETCD_USERNAME): the first request on a client gets a token from
 * /v3/auth/authenticate, and every request carries it in the Authorization
 * header (etcd's gateway passes it on as the gRPC "token"). etcd forgets a
 * simple token left unused for --auth-token-ttl (300 s) and a JWT expires:
 * when etcd answers that the token is invalid, the client authenticates
 * again and sends the request once more. The password is read again from
 * ETCD_PASSWORD_FILE at each authentication, so a rotated secret is taken.
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

#include "etcd_tls.h"

#define MAX_RESPONSE (8u << 20) /* a range over 2^20 keys fits easily */
#define SLICE_MS 50             /* how often a wait looks at *abort */

typedef struct endpoint {
  char host[256];
  char port[8];
  char url[300]; /* as given, for messages */
  bool tls;      /* https:// */
} endpoint;

struct sf_etcd_http {
  endpoint ep[SF_ETCD_MAX_ENDPOINTS];
  int n;
  int cur; /* the endpoint to try first: the one that answered last */
  int fd;  /* open connection to ep[cur], or -1 */
  struct ssl_st *ssl; /* its TLS session on an https endpoint */
  char *token;        /* etcd's auth token; "": etcd has auth off */
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

/* parse_endpoint splits "http[s]://host[:port][/]" (host may be [v6]). */
static int parse_endpoint(const char *s, endpoint *e, char *err,
                          size_t errlen) {
  snprintf(e->url, sizeof e->url, "%s", s);
  e->tls = strncmp(s, "https://", 8) == 0;
  if (!e->tls && strncmp(s, "http://", 7) != 0) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: \"%s\" is not an http:// or https:// URL "
             "(expected http://host:port)",
             s);
    return -1;
  }
  const char *h = s + (e->tls ? 8 : 7), *end = h + strcspn(h, "/"), *colon;
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
    if (c->ep[c->n].tls && !sf__etcd_tls_ready()) {
      snprintf(err, errlen,
               "ETCD_ENDPOINTS: \"%s\": https needs the TLS settings read "
               "first (sf__etcd_security_setup)",
               t);
      goto fail;
    }
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
  sf__etcd_tls_close(c->ssl);
  c->ssl = NULL;
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
}

void sf__etcd_http_free(sf_etcd_http *c) {
  if (!c)
    return;
  disconnect(c);
  free(c->token);
  free(c->body);
  free(c);
}

const char *sf__etcd_http_url(const sf_etcd_http *c) {
  return c->ep[c->cur].url;
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

/* handshake runs TLS on the connected c->fd for endpoint e: 0 or -1. */
static int handshake(sf_etcd_http *c, const endpoint *e, int64_t deadline,
                     char *err, size_t errlen) {
  c->ssl = sf__etcd_tls_open(c->fd, e->host, err, errlen);
  if (!c->ssl)
    return -1;
  for (;;) {
    short ev = 0;
    int r = sf__etcd_tls_handshake(c->ssl, &ev, err, errlen);
    if (r == 0)
      return 0;
    if (r != SF_TLS_WANT || wait_fd(c, c->fd, ev, deadline, err, errlen) != 0)
      return -1;
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

/* io_send and io_recv move bytes on the connection, through TLS on an
 * https endpoint: a count (recv: 0 at the end of the stream), SF_TLS_WANT
 * with *ev, or SF_TLS_ERROR with err. */
static long io_send(sf_etcd_http *c, const char *p, size_t n, short *ev,
                    char *err, size_t errlen) {
  if (c->ssl)
    return sf__etcd_tls_send(c->ssl, p, n, ev, err, errlen);
  ssize_t w;
  while ((w = send(c->fd, p, n, MSG_NOSIGNAL)) < 0 && errno == EINTR)
    ;
  if (w >= 0)
    return (long)w;
  *ev = POLLOUT;
  if (errno == EAGAIN)
    return SF_TLS_WANT;
  snprintf(err, errlen, "send: %s", strerror(errno));
  return SF_TLS_ERROR;
}

static long io_recv(sf_etcd_http *c, char *p, size_t n, short *ev, char *err,
                    size_t errlen) {
  if (c->ssl)
    return sf__etcd_tls_recv(c->ssl, p, n, ev, err, errlen);
  ssize_t r;
  while ((r = recv(c->fd, p, n, 0)) < 0 && errno == EINTR)
    ;
  if (r >= 0)
    return (long)r;
  *ev = POLLIN;
  if (errno == EAGAIN)
    return SF_TLS_WANT;
  snprintf(err, errlen, "recv: %s", strerror(errno));
  return SF_TLS_ERROR;
}

static int send_all(sf_etcd_http *c, const char *p, size_t n, int64_t deadline,
                    char *err, size_t errlen) {
  while (n > 0) {
    short ev = 0;
    long w = io_send(c, p, n, &ev, err, errlen);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    } else if (w == SF_TLS_ERROR ||
               wait_fd(c, c->fd, ev, deadline, err, errlen) != 0) {
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
    short ev = 0;
    long r = io_recv(c, buf, sizeof buf, &ev, err, errlen);
    if (r == SF_TLS_ERROR)
      return -1;
    if (r == SF_TLS_WANT) {
      if (wait_fd(c, c->fd, ev, deadline, err, errlen) != 0)
        return -1;
      continue;
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
    if (c->ep[i].tls && handshake(c, &c->ep[i], deadline, err, errlen) != 0) {
      disconnect(c);
      return -1;
    }
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

/* roundtrip posts body to path on endpoint i, with the token when there is
 * one; the reply is in c->parser and c->body. 0, or -1 with err.
 *
 * Accept matters: etcd 3.4 knows a request came through its gateway by the
 * Accept header the gateway passes on; without one, and without a token,
 * it would take the CommonName of its own server certificate (which the
 * gateway presents to etcd) as the user. */
static int roundtrip(sf_etcd_http *c, int i, const char *path, const char *body,
                     char *err, size_t errlen) {
  const char *tok = c->token && *c->token ? c->token : NULL;
  size_t blen = strlen(body);
  /* The head's fixed text is under 160 bytes; 256 leaves room. */
  size_t cap = 256 + strlen(path) + sizeof c->ep[i].host +
               sizeof c->ep[i].port + (tok ? strlen(tok) : 0) + blen;
  char *req = malloc(cap);
  if (!req) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  int hl =
      snprintf(req, cap,
               "POST %s HTTP/1.1\r\nHost: %s:%s\r\n%s%s%s"
               "Accept: application/json\r\n"
               "Content-Type: application/json\r\n"
               "Content-Length: %zu\r\n\r\n",
               path, c->ep[i].host, c->ep[i].port, tok ? "Authorization: " : "",
               tok ? tok : "", tok ? "\r\n" : "", blen);
  if (hl < 0 || (size_t)hl + blen > cap) { /* cannot be: see cap */
    free(req);
    snprintf(err, errlen, "request head too long");
    return -1;
  }
  memcpy(req + hl, body, blen);
  /* A kept connection may have been closed by etcd while idle: one more
   * try on a fresh connection before giving up on the endpoint. */
  bool reused = c->fd >= 0;
  int r = exchange(c, i, req, (size_t)hl + blen, err, errlen);
  if (r != 0 && reused && !aborted(c))
    r = exchange(c, i, req, (size_t)hl + blen, err, errlen);
  free(req);
  if (r == 0 && c->parser.status_code >= 500) {
    snprintf(err, errlen, "answered HTTP %d", (int)c->parser.status_code);
    disconnect(c);
    return -1;
  }
  return r;
}

/* ------------------------------------------------------------- auth */

/* authenticate gets a token for the configured user from endpoint i:
 * SF_ETCD_OK, SF_ETCD_UNREACHABLE (err: why) or SF_ETCD_REFUSED (err: what
 * etcd said, after the endpoint). */
static int authenticate(sf_etcd_http *c, int i, char *err, size_t errlen) {
  char *body = NULL;
  if (sf__etcd_auth_body(&body, err, errlen) != 0)
    return SF_ETCD_REFUSED;
  free(c->token);
  c->token = NULL;
  int r = roundtrip(c, i, "/v3/auth/authenticate", body, err, errlen);
  explicit_bzero(body, strlen(body));
  free(body);
  if (r != 0)
    return SF_ETCD_UNREACHABLE;
  return sf__etcd_auth_reply((int)c->parser.status_code, c->body, &c->token,
                             err, errlen);
}

/* request posts on endpoint i as the configured user: it authenticates
 * first when it has no token yet, and once more when etcd says the token
 * is no longer good. SF_ETCD_OK with the reply in c, or an error with err. */
static int request(sf_etcd_http *c, int i, const char *path, const char *body,
                   char *err, size_t errlen) {
  int rc;
  if (sf__etcd_auth_on() && !c->token &&
      (rc = authenticate(c, i, err, errlen)) != SF_ETCD_OK)
    return rc;
  if (roundtrip(c, i, path, body, err, errlen) != 0)
    return SF_ETCD_UNREACHABLE;
  if (!sf__etcd_auth_on() ||
      !sf__etcd_auth_token_gone((int)c->parser.status_code, c->body))
    return SF_ETCD_OK;
  if ((rc = authenticate(c, i, err, errlen)) != SF_ETCD_OK)
    return rc;
  return roundtrip(c, i, path, body, err, errlen) == 0 ? SF_ETCD_OK
                                                       : SF_ETCD_UNREACHABLE;
}

int sf__etcd_http_post(sf_etcd_http *c, const char *path, const char *body,
                       char **resp, int *status, char *err, size_t errlen) {
  *resp = NULL;
  *status = 0;
  snprintf(err, errlen, "no endpoint tried");
  for (int k = 0; k < c->n && !aborted(c); k++) {
    int i = (c->cur + k) % c->n;
    if (c->fd >= 0 && i != c->cur)
      disconnect(c);
    char why[512];
    int rc = request(c, i, path, body, why, sizeof why);
    if (rc != SF_ETCD_OK)
      snprintf(err, errlen, "%s: %s", c->ep[i].url, why);
    if (rc == SF_ETCD_REFUSED) /* the user: every endpoint would refuse */
      return rc;
    if (rc != SF_ETCD_OK)
      continue;
    *status = (int)c->parser.status_code;
    while (c->len > 0 && strchr("\r\n", c->body[c->len - 1]))
      c->body[--c->len] = '\0'; /* for messages quoting a text reply */
    *resp = c->body ? c->body : strdup(""); /* handed over */
    c->body = NULL;
    c->len = c->cap = 0;
    if (!*resp) {
      snprintf(err, errlen, "out of memory");
      return SF_ETCD_UNREACHABLE;
    }
    return SF_ETCD_OK;
  }
  return SF_ETCD_UNREACHABLE;
}
