/*
 * etcd_tls.h - TLS for the etcd transport (etcd_http.c), with OpenSSL.
 *
 * One client context for the process, made at start from ETCD_CACERT,
 * ETCD_CERT and ETCD_KEY and checked then (a file that cannot be read, a
 * key that is not the certificate's, a certificate already expired: an
 * error naming the setting). Sessions run on the transport's non-blocking
 * sockets: each step returns at once, saying which way (POLLIN or POLLOUT)
 * to wait before trying again, so the transport keeps its own deadline and
 * abort flag. etcd's certificate is verified against ETCD_CACERT (or the
 * system's trust store) and must name the endpoint's host (a DNS or IP
 * subjectAltName); TLS 1.2 is the oldest version spoken. Every failure is
 * told in words that say what to look at (the CA, the host name, our
 * certificate, the expiry), never with a secret in them.
 */
#ifndef SF_SRV_ETCD_TLS_H
#define SF_SRV_ETCD_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct ssl_st; /* OpenSSL's SSL: only etcd_tls.c looks inside */

/* Results of the session steps besides a byte count. */
enum {
  SF_TLS_ERROR = -1, /* failed: the cause is in err */
  SF_TLS_WANT = -2   /* wait for *ev (POLLIN or POLLOUT), then call again */
};

/* sf__etcd_tls_setup makes the process's client context: CA certificates
 * from cacert (NULL or "": the system's trust store), our certificate
 * chain and its key from cert and key (NULL or "": none). 0, or -1 with a
 * message naming ETCD_CACERT, ETCD_CERT or ETCD_KEY in err. At start, before
 * any session; a second call replaces the context. */
int sf__etcd_tls_setup(const char *cacert, const char *cert, const char *key,
                       char *err, size_t errlen);
/* sf__etcd_tls_ready says whether sf__etcd_tls_setup succeeded. */
bool sf__etcd_tls_ready(void);
/* sf__etcd_tls_teardown frees the context (sessions keep their own
 * reference, so their order does not matter). */
void sf__etcd_tls_teardown(void);

/* sf__etcd_tls_open starts a client session for host (a name or an IP
 * literal without brackets, which etcd's certificate must name) on the
 * connected socket fd: the session, or NULL with err. */
struct ssl_st *sf__etcd_tls_open(int fd, const char *host, char *err,
                                 size_t errlen);
/* sf__etcd_tls_handshake runs the handshake: 0 when done, SF_TLS_WANT with
 * *ev, or SF_TLS_ERROR with the cause in err. */
int sf__etcd_tls_handshake(struct ssl_st *s, short *ev, char *err,
                           size_t errlen);
/* sf__etcd_tls_send writes up to n bytes of p: the count written (> 0),
 * SF_TLS_WANT with *ev, or SF_TLS_ERROR with err. */
long sf__etcd_tls_send(struct ssl_st *s, const void *p, size_t n, short *ev,
                       char *err, size_t errlen);
/* sf__etcd_tls_recv reads up to n bytes into p: the count read, 0 when etcd
 * closed the connection, SF_TLS_WANT with *ev, or SF_TLS_ERROR with err. */
long sf__etcd_tls_recv(struct ssl_st *s, void *p, size_t n, short *ev,
                       char *err, size_t errlen);
/* sf__etcd_tls_close frees the session (the socket stays open: the caller
 * closes it). NULL is allowed. */
void sf__etcd_tls_close(struct ssl_st *s);

#endif /* SF_SRV_ETCD_TLS_H */
