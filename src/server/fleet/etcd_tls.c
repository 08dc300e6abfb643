/*
 * etcd_tls.c - TLS sessions to etcd with OpenSSL (see etcd_tls.h).
 *
 * Why OpenSSL: Debian ships it with static libraries (libssl.a and
 * libcrypto.a link into the production image's one binary), it is what
 * nginx, HAProxy and Redis use, and it does the hard parts this file only
 * configures: chain building, host and IP checks against the certificate's
 * subjectAltName (X509_VERIFY_PARAM_set1_host / set1_ip_asc), and the
 * handshake on a non-blocking socket.
 *
 * The messages: OpenSSL's own ("certificate verify failed") says what broke
 * but not what to do. explain() turns the verify result, or the alert etcd
 * sent, into a sentence naming the setting involved; the transport puts the
 * endpoint in front.
 */
#include "etcd_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* The process's context and what its messages need to say. Written by
 * sf__etcd_tls_setup at start only. */
static SSL_CTX *ctx;
static char cacert_path[1024], cert_path[1024];
static time_t cert_not_before, cert_not_after; /* ours; 0: no certificate */

static void utc(time_t t, char *out, size_t n) {
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static time_t asn1_time(const ASN1_TIME *t) {
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  return t && ASN1_TIME_to_tm(t, &tm) ? timegm(&tm) : 0;
}

/* A key with a passphrase would make OpenSSL ask on the terminal: refuse. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return -1;
}

/* last_reason is the reason text of OpenSSL's last queued error. */
static const char *last_reason(void) {
  const char *r = ERR_reason_error_string(ERR_peek_last_error());
  return r ? r : "unknown error";
}

/* readable opens path to learn why it cannot be read: 0, or -1 with err. */
static int readable(const char *name, const char *path, char *err,
                    size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s: cannot read \"%s\": %s", name, path,
             strerror(errno));
    return -1;
  }
  fclose(f);
  return 0;
}

static int load_ca(SSL_CTX *x, const char *cacert, char *err, size_t errlen) {
  if (!cacert || !*cacert) {
    SSL_CTX_set_default_verify_paths(x);
    return 0;
  }
  if (readable("ETCD_CACERT", cacert, err, errlen) != 0)
    return -1;
  if (SSL_CTX_load_verify_locations(x, cacert, NULL) != 1) {
    snprintf(err, errlen, "ETCD_CACERT: \"%s\" holds no PEM certificate (%s)",
             cacert, last_reason());
    return -1;
  }
  return 0;
}

/* load_key reads key and checks that it is the certificate's. */
static int load_key(SSL_CTX *x, X509 *c, const char *key, const char *cert,
                    char *err, size_t errlen) {
  FILE *f = fopen(key, "r");
  if (!f) {
    snprintf(err, errlen, "ETCD_KEY: cannot read \"%s\": %s", key,
             strerror(errno));
    return -1;
  }
  EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
  fclose(f);
  int rc = -1;
  if (!k)
    snprintf(err, errlen,
             "ETCD_KEY: \"%s\" holds no PEM private key (or one with a "
             "passphrase, which is not supported)",
             key);
  else if (X509_check_private_key(c, k) != 1)
    snprintf(err, errlen,
             "ETCD_KEY: the key in \"%s\" does not match the certificate in "
             "ETCD_CERT \"%s\"",
             key, cert);
  else if (SSL_CTX_use_PrivateKey(x, k) != 1)
    snprintf(err, errlen, "ETCD_KEY: \"%s\": %s", key, last_reason());
  else
    rc = 0;
  EVP_PKEY_free(k);
  return rc;
}

static int load_cert(SSL_CTX *x, const char *cert, const char *key, char *err,
                     size_t errlen) {
  bool has_cert = cert && *cert, has_key = key && *key;
  cert_not_before = cert_not_after = 0;
  if (!has_cert && !has_key)
    return 0;
  if (has_cert != has_key) {
    snprintf(err, errlen, "ETCD_CERT and ETCD_KEY go together (%s is unset)",
             has_cert ? "ETCD_KEY" : "ETCD_CERT");
    return -1;
  }
  if (readable("ETCD_CERT", cert, err, errlen) != 0)
    return -1;
  if (SSL_CTX_use_certificate_chain_file(x, cert) != 1) {
    snprintf(err, errlen, "ETCD_CERT: \"%s\" holds no PEM certificate (%s)",
             cert, last_reason());
    return -1;
  }
  X509 *c = SSL_CTX_get0_certificate(x);
  char when[32];
  cert_not_before = asn1_time(X509_get0_notBefore(c));
  cert_not_after = asn1_time(X509_get0_notAfter(c));
  if (cert_not_after && cert_not_after < time(NULL)) {
    utc(cert_not_after, when, sizeof when);
    snprintf(err, errlen, "ETCD_CERT: the certificate in \"%s\" expired at %s",
             cert, when);
    return -1;
  }
  /* With an extendedKeyUsage, etcd wants clientAuth in it. */
  if (X509_check_purpose(c, X509_PURPOSE_SSL_CLIENT, 0) != 1) {
    snprintf(err, errlen,
             "ETCD_CERT: the certificate in \"%s\" is not for TLS clients (its "
             "extendedKeyUsage lacks clientAuth)",
             cert);
    return -1;
  }
  return load_key(x, c, key, cert, err, errlen);
}

int sf__etcd_tls_setup(const char *cacert, const char *cert, const char *key,
                       char *err, size_t errlen) {
  sf__etcd_tls_teardown();
  SSL_CTX *x = SSL_CTX_new(TLS_client_method());
  if (!x) {
    snprintf(err, errlen, "TLS: cannot make a context: %s", last_reason());
    return -1;
  }
  SSL_CTX_set_min_proto_version(x, TLS1_2_VERSION);
  /* etcd frames every reply (HTTP), so a close without close_notify
   * cannot truncate one unnoticed: take it as the end of the stream. */
  SSL_CTX_set_options(x,
                      SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(x, SSL_MODE_ENABLE_PARTIAL_WRITE);
  SSL_CTX_set_verify(x, SSL_VERIFY_PEER, NULL);
  SSL_CTX_set_default_passwd_cb(x, no_passphrase);
  if (load_ca(x, cacert, err, errlen) != 0 ||
      load_cert(x, cert, key, err, errlen) != 0) {
    SSL_CTX_free(x);
    ERR_clear_error();
    return -1;
  }
  snprintf(cacert_path, sizeof cacert_path, "%s", cacert ? cacert : "");
  snprintf(cert_path, sizeof cert_path, "%s", cert ? cert : "");
  ctx = x;
  return 0;
}

bool sf__etcd_tls_ready(void) {
  return ctx != NULL;
}

void sf__etcd_tls_teardown(void) {
  SSL_CTX_free(ctx);
  ctx = NULL;
}

struct ssl_st *sf__etcd_tls_open(int fd, const char *host, char *err,
                                 size_t errlen) {
  static const unsigned char alpn[] = "\x08http/1.1";
  unsigned char ip[16];
  SSL *s = ctx ? SSL_new(ctx) : NULL;
  if (!s || SSL_set_fd(s, fd) != 1) {
    snprintf(err, errlen, "TLS: %s",
             ctx ? last_reason() : "no TLS context (ETCD_CACERT...)");
    SSL_free(s);
    ERR_clear_error();
    return NULL;
  }
  X509_VERIFY_PARAM *vp = SSL_get0_param(s);
  int ok;
  if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(vp, host);
  } else {
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    ok = X509_VERIFY_PARAM_set1_host(vp, host, 0) &&
         SSL_set_tlsext_host_name(s, host);
  }
  /* etcd's port also speaks HTTP/2 (gRPC): ask for HTTP/1.1. */
  if (!ok || SSL_set_alpn_protos(s, alpn, sizeof alpn - 1) != 0) {
    snprintf(err, errlen, "TLS: cannot check the host name \"%s\"", host);
    SSL_free(s);
    ERR_clear_error();
    return NULL;
  }
  SSL_set_connect_state(s);
  return s;
}

/* ---------------------------------------------------- failures, in words */

/* A verify result, or an alert etcd sent, and what to say about it. */
typedef struct cause {
  long code;
  const char *what;
} cause;

static const cause verify_causes[] = {
    {X509_V_ERR_HOSTNAME_MISMATCH,
     "etcd's certificate does not name this host (no matching DNS "
     "subjectAltName)"},
    {X509_V_ERR_IP_ADDRESS_MISMATCH,
     "etcd's certificate does not name this IP address (no matching IP "
     "subjectAltName)"},
    {X509_V_ERR_CERT_HAS_EXPIRED, "etcd's certificate has expired"},
    {X509_V_ERR_CERT_NOT_YET_VALID,
     "etcd's certificate is not valid yet (is this machine's clock right?)"},
};

/* explain_verify: etcd's certificate failed verification. */
static void explain_verify(long vr, char *err, size_t errlen) {
  for (size_t i = 0; i < sizeof verify_causes / sizeof *verify_causes; i++)
    if (verify_causes[i].code == vr) {
      snprintf(err, errlen, "TLS: %s", verify_causes[i].what);
      return;
    }
  if (cacert_path[0])
    snprintf(err, errlen,
             "TLS: etcd's certificate is not trusted by ETCD_CACERT \"%s\": %s",
             cacert_path, X509_verify_cert_error_string(vr));
  else
    snprintf(err, errlen,
             "TLS: etcd's certificate is not trusted by the system's trust "
             "store (ETCD_CACERT is unset): %s",
             X509_verify_cert_error_string(vr));
}

/* explain_alert: etcd ended the handshake with an alert. */
static void explain_alert(int alert, char *err, size_t errlen) {
  const char *name = SSL_alert_desc_string_long(alert);
  char when[32];
  time_t now = time(NULL);
  switch (alert) {
  case SSL_AD_BAD_CERTIFICATE:
  case SSL_AD_UNSUPPORTED_CERTIFICATE:
  case SSL_AD_CERTIFICATE_REVOKED:
  case SSL_AD_CERTIFICATE_EXPIRED:
  case SSL_AD_CERTIFICATE_UNKNOWN:
  case SSL_AD_UNKNOWN_CA:
  case SSL_AD_CERTIFICATE_REQUIRED:
    if (!cert_path[0]) {
      snprintf(err, errlen,
               "TLS: etcd wants a client certificate: set ETCD_CERT and "
               "ETCD_KEY (alert \"%s\")",
               name);
    } else if (cert_not_after && now > cert_not_after) {
      utc(cert_not_after, when, sizeof when);
      snprintf(err, errlen,
               "TLS: etcd refused our client certificate ETCD_CERT \"%s\": it "
               "expired at %s (alert \"%s\")",
               cert_path, when, name);
    } else if (cert_not_before && now < cert_not_before) {
      utc(cert_not_before, when, sizeof when);
      snprintf(err, errlen,
               "TLS: etcd refused our client certificate ETCD_CERT \"%s\": it "
               "is valid only from %s (alert \"%s\")",
               cert_path, when, name);
    } else {
      snprintf(err, errlen,
               "TLS: etcd refused our client certificate ETCD_CERT \"%s\" "
               "(alert \"%s\": expired, or not issued by a CA etcd trusts?)",
               cert_path, name);
    }
    return;
  case SSL_AD_PROTOCOL_VERSION:
    snprintf(err, errlen, "TLS: etcd speaks no TLS version from 1.2 up");
    return;
  default:
    snprintf(err, errlen, "TLS: etcd ended the handshake (alert \"%s\")", name);
  }
}

/* explain writes why the session step that returned ret failed. */
static void explain(SSL *s, int ret, char *err, size_t errlen) {
  int e = SSL_get_error(s, ret);
  unsigned long code = ERR_peek_last_error();
  int reason = ERR_GET_REASON(code);
  long vr = SSL_get_verify_result(s);
  if (e == SSL_ERROR_SSL && vr != X509_V_OK)
    explain_verify(vr, err, errlen);
  else if (code && ERR_GET_LIB(code) == ERR_LIB_SSL &&
           reason > SSL_AD_REASON_OFFSET)
    explain_alert(reason - SSL_AD_REASON_OFFSET, err, errlen);
  else if (code && reason == SSL_R_WRONG_VERSION_NUMBER)
    snprintf(err, errlen,
             "TLS: the endpoint does not speak TLS (an http:// endpoint?)");
  else if (code && (reason == SSL_R_UNSUPPORTED_PROTOCOL ||
                    reason == SSL_R_NO_PROTOCOLS_AVAILABLE))
    snprintf(err, errlen, "TLS: etcd speaks no TLS version from 1.2 up");
  else if (code)
    snprintf(err, errlen, "TLS: %s", last_reason());
  else if (e == SSL_ERROR_SYSCALL && errno)
    snprintf(err, errlen, "TLS: %s", strerror(errno));
  else
    snprintf(err, errlen, "TLS: etcd closed the connection");
  ERR_clear_error();
}

/* step_failed sorts a failed step into SF_TLS_WANT (with *ev) or an error. */
static int step_failed(SSL *s, int ret, short *ev, char *err, size_t errlen) {
  switch (SSL_get_error(s, ret)) {
  case SSL_ERROR_WANT_READ:
    *ev = POLLIN;
    return SF_TLS_WANT;
  case SSL_ERROR_WANT_WRITE:
    *ev = POLLOUT;
    return SF_TLS_WANT;
  default:
    explain(s, ret, err, errlen);
    return SF_TLS_ERROR;
  }
}

int sf__etcd_tls_handshake(struct ssl_st *s, short *ev, char *err,
                           size_t errlen) {
  ERR_clear_error();
  int r = SSL_do_handshake(s);
  return r == 1 ? 0 : step_failed(s, r, ev, err, errlen);
}

/* alert_waiting reads what etcd sent before a write failed at the socket:
 * true, with the cause in err, when it was an alert. In TLS 1.3 etcd checks
 * our certificate after our side of the handshake is done, so it may send
 * its alert and reset the connection while our request is on its way; the
 * alert is still in our receive queue, and says why. */
static bool alert_waiting(SSL *s, char *err, size_t errlen) {
  char b[256];
  size_t got = 0;
  int saved = errno;
  ERR_clear_error();
  int r = SSL_read_ex(s, b, sizeof b, &got);
  if (r != 1 && SSL_get_error(s, r) == SSL_ERROR_SSL) {
    explain(s, r, err, errlen);
    return true;
  }
  ERR_clear_error();
  errno = saved;
  return false;
}

long sf__etcd_tls_send(struct ssl_st *s, const void *p, size_t n, short *ev,
                       char *err, size_t errlen) {
  size_t w = 0;
  ERR_clear_error();
  int r = SSL_write_ex(s, p, n, &w);
  if (r == 1)
    return (long)w;
  if (SSL_get_error(s, r) == SSL_ERROR_SYSCALL && alert_waiting(s, err, errlen))
    return SF_TLS_ERROR;
  return step_failed(s, r, ev, err, errlen);
}

long sf__etcd_tls_recv(struct ssl_st *s, void *p, size_t n, short *ev,
                       char *err, size_t errlen) {
  size_t got = 0;
  ERR_clear_error();
  int r = SSL_read_ex(s, p, n, &got);
  if (r == 1)
    return (long)got;
  if (SSL_get_error(s, r) == SSL_ERROR_ZERO_RETURN) {
    ERR_clear_error();
    return 0;
  }
  return step_failed(s, r, ev, err, errlen);
}

void sf__etcd_tls_close(struct ssl_st *s) {
  /* No close_notify: etcd needs none (every reply is framed), and a write
   * on a connection etcd already dropped would only fail. */
  SSL_free(s);
}
