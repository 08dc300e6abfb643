/*
 * etcd.h - the etcd client snowflaked's machine-id leases use: etcd's v3
 * JSON gateway over HTTP/1.1, plain or TLS (etcd 3.4 serves it under /v3/;
 * keys and values are base64 in JSON, 64-bit integers are JSON strings).
 *
 * Two layers, four files:
 *   etcd_http.c  the transport: endpoints "http[s]://host:port,...", one
 *                keep-alive connection, failover to the next endpoint when
 *                one does not answer; llhttp parses the replies (the same
 *                llhttp the server already links), so a static binary
 *                needs nothing more than libc and OpenSSL.
 *   etcd_tls.c   TLS on the transport's sockets (OpenSSL; etcd_tls.h).
 *   etcd_auth.c  the TLS and auth settings, checked at start; etcd's
 *                authentication (token, renewed when etcd drops it) and the
 *                words added to etcd's refusals.
 *   etcd.c       the gateway operations on one node's keys (grant,
 *                keepalive, revoke, scan, claim, fenced mark write), base64,
 *                and the parsers of etcd's replies (pure: unit tested).
 *
 * The keys under the prefix P:
 *   P<id>        who holds machine id <id>, bound to the holder's lease
 *   P<id>/mark   the id's handover mark: unix ms, 13 decimal digits (zero
 *                padded, so etcd's byte comparison orders marks as numbers);
 *                no lease, so it outlives every holder; it only goes up
 * One prefix holds both, so one etcd role (RBAC: read/write on P) is all a
 * node needs.
 *
 * A client is used by one thread at a time (the lease hands it from the
 * starting thread to the keepalive thread and back with pthread_create /
 * pthread_join).
 */
#ifndef SF_SRV_ETCD_H
#define SF_SRV_ETCD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Outcomes of every operation. */
enum {
  SF_ETCD_OK = 0,
  SF_ETCD_UNREACHABLE = -1, /* no endpoint answered (or we were stopped) */
  SF_ETCD_REFUSED = -2      /* etcd answered with an error (message in err) */
};

#define SF_ETCD_MAX_ENDPOINTS 16

/* ------------------------------------------------------------ transport */

typedef struct sf_etcd_http sf_etcd_http;

/* The TLS and auth settings every client uses (NULL or "": unset). */
typedef struct sf_etcd_security {
  const char *cacert, *cert, *key; /* ETCD_CACERT, ETCD_CERT, ETCD_KEY */
  const char *username, *password, *password_file;
} sf_etcd_security;

/* sf__etcd_security_setup takes the settings of every client made after
 * it: when endpoints has an https:// one, makes the TLS context from the
 * files (etcd_tls.h); reads ETCD_PASSWORD_FILE once to check it. 0, or -1
 * with a message naming the setting in err. At start, before any client
 * (the settings are the process's, as its environment is). */
int sf__etcd_security_setup(const sf_etcd_security *s, const char *endpoints,
                            char *err, size_t errlen);
/* sf__etcd_security_teardown forgets them (the password wiped). */
void sf__etcd_security_teardown(void);

/* sf__etcd_http_new parses endpoints ("http[s]://host:port[,...]") and
 * makes a client whose requests give up after timeout_ms each and at once
 * when *abort becomes true (abort may be NULL). 0, or -1 with a message
 * naming ETCD_ENDPOINTS in err. https:// needs sf__etcd_security_setup
 * first. */
int sf__etcd_http_new(const char *endpoints, int timeout_ms,
                      const atomic_bool *abort, sf_etcd_http **out, char *err,
                      size_t errlen);
/* sf__etcd_http_free closes the connection and frees c; NULL is allowed. */
void sf__etcd_http_free(sf_etcd_http *c);
/* sf__etcd_http_post sends the JSON body to path on the endpoint that last
 * answered, then on the others in turn, as ETCD_USERNAME when set (the
 * token fetched, and fetched again when etcd drops it). SF_ETCD_OK with
 * *resp (malloc'd, NUL-terminated, the caller frees) when one answered 2xx
 * or 4xx; SF_ETCD_REFUSED when etcd refused the user (err names the
 * endpoint and says why); SF_ETCD_UNREACHABLE with the last endpoint's
 * error in err otherwise. */
int sf__etcd_http_post(sf_etcd_http *c, const char *path, const char *body,
                       char **resp, int *status, char *err, size_t errlen);
/* sf__etcd_http_url is the URL of the endpoint that answered last. */
const char *sf__etcd_http_url(const sf_etcd_http *c);

/* ------------------------------------------------------------- auth */

/* sf__etcd_auth_on says whether ETCD_USERNAME is set. */
bool sf__etcd_auth_on(void);
/* sf__etcd_auth_body makes the JSON body of /v3/auth/authenticate (*body
 * malloc'd: the caller wipes and frees it): 0, or -1 with err (the password
 * file cannot be read). */
int sf__etcd_auth_body(char **body, char *err, size_t errlen);
/* sf__etcd_auth_reply reads authenticate's reply (HTTP status, text):
 * SF_ETCD_OK with *token (malloc'd; "" when etcd has auth off),
 * SF_ETCD_REFUSED with etcd's reason in err (a 4xx: a wrong password), or
 * SF_ETCD_UNREACHABLE with err for any other answer. */
int sf__etcd_auth_reply(int status, const char *text, char **token, char *err,
                        size_t errlen);
/* sf__etcd_auth_token_gone says whether a reply means the token must be
 * fetched again (expired, unknown, or the auth store changed). */
bool sf__etcd_auth_token_gone(int status, const char *body);
/* sf__etcd_hint is what to add to etcd's message said when it refuses a
 * request (which setting to look at): a constant, "" when none. */
const char *sf__etcd_hint(const char *said);

/* ---------------------------------------------------- base64, replies */

/* sf__b64_len is the size sf__b64_encode needs for n bytes, NUL included. */
#define SF_B64_LEN(n) (4 * (((n) + 2) / 3) + 1)
/* sf__b64_encode writes the base64 of src[0..n) and a NUL into dst (at
 * least SF_B64_LEN(n) bytes). */
void sf__b64_encode(const void *src, size_t n, char *dst);
/* sf__b64_decode decodes the NUL-terminated src into dst (cap bytes): the
 * length, or -1 for a character outside base64, misplaced padding or a
 * result longer than cap. */
long sf__b64_decode(const char *src, unsigned char *dst, size_t cap);

/* What a scan of the prefix found: for each id 0..max_id, whether a holder
 * key exists and the stored mark (0: none). */
typedef struct sf_etcd_ids {
  uint64_t max_id;
  unsigned char *taken; /* bit per id */
  int64_t *mark;        /* max_id + 1 entries */
} sf_etcd_ids;

/* sf__etcd_parse_i64 reads a JSON reply's 64-bit integer field (etcd sends
 * them as strings; a number is accepted too): 0 when absent or not one. */
struct json_t;
int64_t sf__etcd_parse_i64(const struct json_t *obj, const char *field);
/* sf__etcd_parse_scan fills ids (taken and mark arrays zeroed by the
 * caller) from the text of a range reply over prefix: 0, or -1 when text is
 * not a range reply. Keys of other shapes under the prefix are skipped. */
int sf__etcd_parse_scan(const char *text, const char *prefix, sf_etcd_ids *ids);
/* sf__etcd_parse_claim reads a claim transaction's reply for lease: 0 with
 * *won (created now, or held by lease already) and *mark (0: no mark
 * stored), or -1 when text is not such a reply. */
int sf__etcd_parse_claim(const char *text, int64_t lease, bool *won,
                         int64_t *mark);
/* SF_ETCD_MARK_DIGITS is the width of a stored mark; a mark must be below
 * 10^13 ms (the year 2286; the layout ends long before). */
#define SF_ETCD_MARK_DIGITS 13
#define SF_ETCD_MARK_MAX INT64_C(9999999999999)
/* sf__etcd_parse_raise reads a raise_mark transaction's reply for lease:
 * 0 with *raised (the compare held and the mark was put), *owned (P<id> is
 * bound to lease) and *stored (the mark read, 0: none; meaningful only when
 * not raised), or -1 when text is not such a reply or the mark stored is
 * not a decimal. */
int sf__etcd_parse_raise(const char *text, int64_t lease, bool *raised,
                         bool *owned, int64_t *stored);
/* sf__etcd_parse_mark_value reads a mark's stored value (base64 of a
 * decimal unix ms): the ms, or -1 when it is not one. */
int64_t sf__etcd_parse_mark_value(const char *b64);

/* ------------------------------------------------------ the operations */

/* What the lease state machine (lease.c) asks of etcd: a table, so that
 * unit tests run the state machine against a fake etcd. Every entry
 * returns SF_ETCD_OK, SF_ETCD_UNREACHABLE or SF_ETCD_REFUSED, with a
 * message in err (errlen bytes) unless OK. */
typedef struct sf_etcd_ops {
  /* grant asks for a lease of ttl_s: etcd's lease id and granted TTL. */
  int (*grant)(void *ctx, int ttl_s, int64_t *lease, int *ttl_out, char *err,
               size_t errlen);
  /* keepalive renews lease once: *ttl_out is the TTL restarted, 0 when
   * etcd no longer knows the lease. */
  int (*keepalive)(void *ctx, int64_t lease, int *ttl_out, char *err,
                   size_t errlen);
  /* revoke ends lease (and the holder key bound to it). */
  int (*revoke)(void *ctx, int64_t lease, char *err, size_t errlen);
  /* scan lists the ids held and the marks stored under the prefix. */
  int (*scan)(void *ctx, sf_etcd_ids *ids, char *err, size_t errlen);
  /* claim creates P<id> bound to lease unless it exists, and in the same
   * transaction reads P<id>/mark: *won, and *mark (0: none) when won. A
   * claim of ours applied earlier (a resent or late copy) counts as won. */
  int (*claim)(void *ctx, uint64_t id, int64_t lease, bool *won, int64_t *mark,
               char *err, size_t errlen);
  /* owner reads the lease P<id> is bound to (0: no such key). */
  int (*owner)(void *ctx, uint64_t id, int64_t *lease, char *err,
               size_t errlen);
  /* raise_mark stores mark_ms in P<id>/mark only while P<id> is bound to
   * lease (the fence) and only above the mark stored (marks only go up):
   * *owned says whether P<id> is bound to lease, *stored is the mark etcd
   * holds after the call (0: none; >= mark_ms when it was raised, or was
   * already that high). A copy of the request that lands late or twice
   * can only raise the mark. */
  int (*raise_mark)(void *ctx, uint64_t id, int64_t lease, int64_t mark_ms,
                    bool *owned, int64_t *stored, char *err, size_t errlen);
} sf_etcd_ops;

/* The real operations; their ctx is an sf_etcd. */
extern const sf_etcd_ops sf__etcd_ops;

typedef struct sf_etcd sf_etcd;

/* sf__etcd_new makes the client of one node's keys under prefix (its
 * holder keys say who holds them: host name, pid, start time). 0, or -1
 * with err. */
int sf__etcd_new(const char *endpoints, const char *prefix, int timeout_ms,
                 const atomic_bool *abort, sf_etcd **out, char *err,
                 size_t errlen);
/* sf__etcd_free frees e; NULL is allowed. */
void sf__etcd_free(sf_etcd *e);

#endif /* SF_SRV_ETCD_H */
