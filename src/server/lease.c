/*
 * lease.c - machine ids leased from etcd through its v3 JSON gateway.
 *
 * Protocol (etcd 3.4 serves the gateway under /v3/; keys and values are
 * base64 in JSON, 64-bit integers are JSON strings):
 *
 *   claim:     POST /v3/lease/grant {TTL}            -> lease ID, TTL
 *              POST /v3/kv/range   {prefix, keys_only} -> ids taken
 *              POST /v3/kv/txn     create_revision(key) == 0 ->
 *                                  put key = {host, pid, started} w/ lease
 *              the lowest id whose txn succeeds is ours.
 *   keepalive: POST /v3/lease/keepalive {ID} every TTL/3; a result without
 *              a TTL means etcd no longer knows the lease.
 *   stop:      POST /v3/lease/revoke {ID}: the key goes with the lease.
 *
 * Safety: the id may be used until (start of the last successful renewal
 * request) + TTL - margin, margin = max(1 s, TTL/5). etcd starts its own
 * TTL count no earlier than it receives the request, so our deadline falls
 * before etcd's expiry as long as the two clocks' rates differ by less than
 * margin/TTL. The deadline lives in an atomic and sf__lease_machine_id()
 * compares it with the clock on every call: a keepalive thread that stalls
 * cannot extend it.
 *
 * Threads: sf__lease_start() and sf__lease_stop() use a curl handle of
 * their own; the keepalive thread has its own. Only the keepalive thread
 * writes the id/deadline pair after start.
 */
#include "lease.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#if SF_WITH_ETCD

#include <curl/curl.h>
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define MAX_ENDPOINTS 16
#define MAX_RESPONSE (8u << 20) /* a range over 2^20 keys fits easily */

struct sf_lease {
  /* configuration, immutable after start */
  char *endpoints_buf;
  char *endpoints[MAX_ENDPOINTS];
  int n_endpoints;
  char *prefix;
  int ttl_req_s; /* the TTL asked for */
  uint64_t max_id;
  int64_t last_id;     /* the id last claimed; keepalive thread only */
  char value_b64[512]; /* the key's value: who holds it, base64 */

  /* read by any thread */
  _Atomic int64_t machine_id;  /* -1 when none */
  _Atomic int64_t deadline_ns; /* clock ns after which the id is unsafe */
  _Atomic uint64_t generation; /* bumped by every publish() */
  _Atomic int state;           /* sf_lease_state */
  _Atomic int64_t lease_id;
  _Atomic int ttl_s; /* as granted by etcd */
  _Atomic uint64_t acquisitions, renewals, renew_errors, losses;
  atomic_bool stopping;

  /* keepalive thread */
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
};

/* One HTTP client: a curl handle plus the endpoint it last reached. */
typedef struct conn {
  CURL *h;
  sf_lease *l;
  int ep; /* index of the endpoint to try first */
  long timeout_ms;
  char *buf;
  size_t len, cap;
  bool overflow;
} conn;

/* ------------------------------------------------ libcurl, at run time */

/* libcurl is loaded by sf__lease_start(), not linked: its TLS, GSSAPI and
 * LDAP dependencies cost every snowflaked about 6 MB of RSS at start, and
 * only MACHINE_ID=auto needs them. <curl/curl.h> stays a build dependency
 * and types the table, so each entry has libcurl's own prototype. The
 * library is never unloaded (libcurl does not support it, and the
 * keepalive threads of any lease use it). */
static struct {
  __typeof__(curl_global_init) *global_init;
  __typeof__(curl_easy_init) *easy_init;
  __typeof__(curl_easy_setopt) *easy_setopt;
  __typeof__(curl_easy_perform) *easy_perform;
  __typeof__(curl_easy_getinfo) *easy_getinfo;
  __typeof__(curl_easy_strerror) *easy_strerror;
  __typeof__(curl_easy_cleanup) *easy_cleanup;
  __typeof__(curl_slist_append) *slist_append;
  __typeof__(curl_slist_free_all) *slist_free_all;
} cu;

#define CURL_LIB "libcurl.so.4"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static char curl_error[512]; /* empty once libcurl is loaded and ready */

/* curl_load_once opens libcurl, resolves the table and runs
 * curl_global_init; on failure curl_error says why. */
static void curl_load_once(void) {
  void *h = dlopen(CURL_LIB, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(curl_error, sizeof curl_error,
             "etcd support needs " CURL_LIB " (Debian package libcurl4): %s",
             dlerror());
    return;
  }
  static const struct {
    const char *name;
    size_t off;
  } syms[] = {
#define SYM(f) {"curl_" #f, offsetof(__typeof__(cu), f)}
      SYM(global_init),  SYM(easy_init),    SYM(easy_setopt),
      SYM(easy_perform), SYM(easy_getinfo), SYM(easy_strerror),
      SYM(easy_cleanup), SYM(slist_append), SYM(slist_free_all),
#undef SYM
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
    void *f = dlsym(h, syms[i].name);
    if (!f) {
      snprintf(curl_error, sizeof curl_error,
               "etcd support needs " CURL_LIB " (Debian package libcurl4): %s",
               dlerror());
      return;
    }
    /* POSIX guarantees that a dlsym() result converts to a function
     * pointer; every entry of cu is one, so copy the pointer's bytes. */
    _Static_assert(sizeof f == sizeof cu.easy_init, "function pointer size");
    memcpy((char *)&cu + syms[i].off, &f, sizeof f);
  }
  CURLcode rc = cu.global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    snprintf(curl_error, sizeof curl_error, "curl_global_init failed: %s",
             cu.easy_strerror(rc));
    return;
  }
}

/* ------------------------------------------------------------- clocks */

/* CLOCK_BOOTTIME is CLOCK_MONOTONIC that keeps counting while the machine
 * is suspended: etcd's lease keeps expiring during our suspend, so our
 * deadline must too. */
#ifdef CLOCK_BOOTTIME
#define LEASE_CLOCK CLOCK_BOOTTIME
#else
#define LEASE_CLOCK CLOCK_MONOTONIC
#endif

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(LEASE_CLOCK, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t margin_ns(int ttl_s) {
  int64_t ttl = (int64_t)ttl_s * 1000000000;
  int64_t m = ttl / 5;
  return m < 1000000000 ? 1000000000 : m;
}

/* ------------------------------------------------------------- base64 */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_encode writes the base64 of src[0..n) and a NUL into dst (at least
 * 4 * ((n + 2) / 3) + 1 bytes). */
static void b64_encode(const unsigned char *src, size_t n, char *dst) {
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v =
        (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
    *dst++ = b64chars[v >> 18];
    *dst++ = b64chars[(v >> 12) & 63];
    *dst++ = b64chars[(v >> 6) & 63];
    *dst++ = b64chars[v & 63];
  }
  if (i < n) {
    uint32_t v = (uint32_t)src[i] << 16;
    if (i + 1 < n)
      v |= (uint32_t)src[i + 1] << 8;
    *dst++ = b64chars[v >> 18];
    *dst++ = b64chars[(v >> 12) & 63];
    *dst++ = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
    *dst++ = '=';
  }
  *dst = '\0';
}

static int b64_val(char c) {
  const char *p = c ? strchr(b64chars, c) : NULL;
  return p ? (int)(p - b64chars) : -1;
}

/* b64_decode decodes src into dst (cap bytes); returns the length or -1. */
static long b64_decode(const char *src, unsigned char *dst, size_t cap) {
  size_t out = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (; *src && *src != '='; src++) {
    int v = b64_val(*src);
    if (v < 0)
      return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (out == cap)
        return -1;
      dst[out++] = (unsigned char)(acc >> bits);
    }
  }
  return (long)out;
}

/* key_b64 writes base64(prefix + id) into dst (256 bytes). */
static void key_b64(const sf_lease *l, uint64_t id, char *dst) {
  char key[160];
  int n =
      snprintf(key, sizeof key, "%s%llu", l->prefix, (unsigned long long)id);
  b64_encode((const unsigned char *)key, (size_t)n, dst);
}

/* ---------------------------------------------------------------- HTTP */

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud) {
  conn *c = ud;
  size_t n = size * nmemb;
  if (c->len + n + 1 > c->cap) {
    size_t cap = c->cap ? c->cap : 4096;
    while (cap < c->len + n + 1)
      cap *= 2;
    if (cap > MAX_RESPONSE) {
      c->overflow = true;
      return 0;
    }
    char *b = realloc(c->buf, cap);
    if (!b)
      return 0;
    c->buf = b;
    c->cap = cap;
  }
  memcpy(c->buf + c->len, p, n);
  c->len += n;
  c->buf[c->len] = '\0';
  return n;
}

/* Aborts a transfer in flight when sf__lease_stop() runs. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut,
                       curl_off_t un) {
  (void)dt, (void)dn, (void)ut, (void)un;
  const conn *c = ud;
  return atomic_load(&c->l->stopping) ? 1 : 0;
}

static int conn_init(conn *c, sf_lease *l, bool abortable) {
  memset(c, 0, sizeof *c);
  c->l = l;
  c->h = cu.easy_init();
  if (!c->h)
    return -1;
  /* Each request gets about a third of the TTL, so a dead endpoint still
   * leaves time to try the next one before the id's deadline. */
  long t = (long)l->ttl_req_s * 1000 / 3;
  c->timeout_ms = t < 300 ? 300 : t > 3000 ? 3000 : t;
  cu.easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
  cu.easy_setopt(c->h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
  cu.easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS,
                 c->timeout_ms < 1000 ? c->timeout_ms : 1000L);
  cu.easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_body);
  cu.easy_setopt(c->h, CURLOPT_WRITEDATA, c);
  cu.easy_setopt(c->h, CURLOPT_POST, 1L);
  cu.easy_setopt(c->h, CURLOPT_PROTOCOLS_STR, "http,https");
  if (abortable) {
    cu.easy_setopt(c->h, CURLOPT_XFERINFOFUNCTION, on_progress);
    cu.easy_setopt(c->h, CURLOPT_XFERINFODATA, c);
    cu.easy_setopt(c->h, CURLOPT_NOPROGRESS, 0L);
  }
  return 0;
}

static void conn_free(conn *c) {
  if (c->h)
    cu.easy_cleanup(c->h);
  free(c->buf);
  memset(c, 0, sizeof *c);
}

enum { HTTP_OK = 0, HTTP_UNREACHABLE = -1, HTTP_REFUSED = -2 };

/* post sends body (consumed) to path on the first endpoint that answers.
 * Returns HTTP_OK with *resp set, HTTP_REFUSED when etcd answered with an
 * error (message in err), or HTTP_UNREACHABLE when no endpoint answered. */
static int post(conn *c, const char *path, json_t *body, json_t **resp,
                char *err, size_t errlen) {
  *resp = NULL;
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    return HTTP_UNREACHABLE;
  }
  struct curl_slist *hdr =
      cu.slist_append(NULL, "Content-Type: application/json");
  cu.easy_setopt(c->h, CURLOPT_HTTPHEADER, hdr);
  cu.easy_setopt(c->h, CURLOPT_POSTFIELDS, text);
  int rc = HTTP_UNREACHABLE;
  snprintf(err, errlen, "no endpoint tried");
  for (int i = 0; i < c->l->n_endpoints && !atomic_load(&c->l->stopping); i++) {
    const char *ep = c->l->endpoints[c->ep];
    char url[512];
    snprintf(url, sizeof url, "%s%s", ep, path);
    cu.easy_setopt(c->h, CURLOPT_URL, url);
    c->len = 0;
    c->overflow = false;
    CURLcode cr = cu.easy_perform(c->h);
    long status = 0;
    cu.easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (cr != CURLE_OK || status == 0 || status >= 500) {
      if (cr != CURLE_OK)
        snprintf(err, errlen, "%s: %s", ep,
                 c->overflow ? "response too large" : cu.easy_strerror(cr));
      else
        snprintf(err, errlen, "%s: HTTP %ld", ep, status);
      c->ep = (c->ep + 1) % c->l->n_endpoints;
      continue;
    }
    json_error_t je;
    json_t *j = json_loadb(c->buf ? c->buf : "", c->len, 0, &je);
    if (!j || !json_is_object(j)) {
      snprintf(err, errlen, "%s%s: HTTP %ld, not a JSON object: %s", ep, path,
               status, je.text);
      json_decref(j);
      c->ep = (c->ep + 1) % c->l->n_endpoints;
      continue;
    }
    if (status != 200) {
      const char *m = json_string_value(json_object_get(j, "message"));
      snprintf(err, errlen, "%s%s: HTTP %ld: %s", ep, path, status,
               m ? m : "error");
      json_decref(j);
      rc = HTTP_REFUSED;
      break;
    }
    *resp = j;
    rc = HTTP_OK;
    break;
  }
  cu.easy_setopt(c->h, CURLOPT_POSTFIELDS, NULL);
  cu.easy_setopt(c->h, CURLOPT_HTTPHEADER, NULL);
  cu.slist_free_all(hdr);
  free(text);
  return rc;
}

/* get_i64 reads an int64 that the gateway sends as a string (or a number);
 * absent or malformed reads as 0. */
static int64_t get_i64(const json_t *o, const char *name) {
  const json_t *v = json_object_get(o, name);
  if (json_is_integer(v))
    return (int64_t)json_integer_value(v);
  const char *s = json_string_value(v);
  if (!s)
    return 0;
  char *end;
  errno = 0;
  long long x = strtoll(s, &end, 10);
  return (errno || *end || end == s) ? 0 : (int64_t)x;
}

static json_t *i64_json(int64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%lld", (long long)v);
  return json_string(b);
}

/* ------------------------------------------------------------ etcd ops */

/* grant asks for a lease; on success *id and *ttl_s are set and *t0 is the
 * clock at the request's start. */
static int grant(conn *c, int64_t *id, int *ttl_s, int64_t *t0, char *err,
                 size_t errlen) {
  json_t *resp;
  *t0 = now_ns();
  int rc = post(c, "/v3/lease/grant",
                json_pack("{s:I}", "TTL", (json_int_t)c->l->ttl_req_s), &resp,
                err, errlen);
  if (rc != HTTP_OK)
    return rc;
  *id = get_i64(resp, "ID");
  *ttl_s = (int)get_i64(resp, "TTL");
  const char *e = json_string_value(json_object_get(resp, "error"));
  if (*id == 0 || *ttl_s <= 0 || (e && *e)) {
    snprintf(err, errlen, "lease grant refused: %s", e && *e ? e : "no ID");
    json_decref(resp);
    return HTTP_REFUSED;
  }
  json_decref(resp);
  return HTTP_OK;
}

/* keepalive renews lease id once: *ttl_s is the TTL etcd restarted (0 when
 * etcd no longer knows the lease). */
static int keepalive(conn *c, int64_t id, int *ttl_s, char *err,
                     size_t errlen) {
  json_t *resp;
  int rc = post(c, "/v3/lease/keepalive",
                json_pack("{s:o}", "ID", i64_json(id)), &resp, err, errlen);
  if (rc != HTTP_OK)
    return rc;
  /* The gateway streams: {"result":{...}} or {"error":{...}}. */
  const json_t *r = json_object_get(resp, "result");
  if (!json_is_object(r)) {
    snprintf(err, errlen, "keepalive: no result in the answer");
    json_decref(resp);
    return HTTP_REFUSED;
  }
  *ttl_s = (int)get_i64(r, "TTL");
  json_decref(resp);
  return HTTP_OK;
}

static void lease_revoke(conn *c, int64_t id) {
  json_t *resp;
  char err[256];
  if (post(c, "/v3/lease/revoke", json_pack("{s:o}", "ID", i64_json(id)), &resp,
           err, sizeof err) == HTTP_OK)
    json_decref(resp);
}

/* prefix_end is the range end of every key that starts with p: p with its
 * last byte incremented (bytes 0xff are dropped first). */
static size_t prefix_end(const char *p, unsigned char *out) {
  size_t n = strlen(p);
  memcpy(out, p, n);
  while (n > 0 && out[n - 1] == 0xff)
    n--;
  if (n > 0)
    out[n - 1]++;
  return n;
}

/* taken marks in bits[] the ids that have a key under the prefix. */
static int taken_ids(conn *c, unsigned char *bits, char *err, size_t errlen) {
  char k[256], e[256];
  unsigned char end[160] = {0};
  size_t plen = strlen(c->l->prefix);
  b64_encode((const unsigned char *)c->l->prefix, plen, k);
  size_t elen = prefix_end(c->l->prefix, end);
  b64_encode(end, elen, e);
  json_t *resp;
  int rc =
      post(c, "/v3/kv/range",
           json_pack("{s:s,s:s,s:b}", "key", k, "range_end", e, "keys_only", 1),
           &resp, err, errlen);
  if (rc != HTTP_OK)
    return rc;
  size_t i;
  const json_t *kv;
  json_array_foreach(json_object_get(resp, "kvs"), i, kv) {
    const char *kb = json_string_value(json_object_get(kv, "key"));
    unsigned char key[160];
    long n = kb ? b64_decode(kb, key, sizeof key - 1) : -1;
    if (n <= (long)plen || memcmp(key, c->l->prefix, plen) != 0)
      continue;
    key[n] = '\0';
    const char *d = (const char *)key + plen;
    if (strspn(d, "0123456789") != strlen(d) || strlen(d) > 9)
      continue; /* not one of ours */
    unsigned long long id = strtoull(d, NULL, 10);
    if (id <= c->l->max_id)
      bits[id / 8] |= (unsigned char)(1u << (id % 8));
  }
  json_decref(resp);
  return HTTP_OK;
}

/* try_put creates prefix+id bound to lease unless the key exists; returns
 * HTTP_OK with *won set. */
static int try_put(conn *c, uint64_t id, int64_t lease, bool *won, char *err,
                   size_t errlen) {
  char k[256];
  key_b64(c->l, id, k);
  json_t *body =
      json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s,s:o}}]}", "compare",
                "target", "CREATE", "result", "EQUAL", "key", k,
                "create_revision", "0", "success", "request_put", "key", k,
                "value", c->l->value_b64, "lease", i64_json(lease));
  json_t *resp;
  int rc = post(c, "/v3/kv/txn", body, &resp, err, errlen);
  if (rc != HTTP_OK)
    return rc;
  *won = json_is_true(json_object_get(resp, "succeeded"));
  json_decref(resp);
  return HTTP_OK;
}

/* key_owner reads the lease that prefix+id is bound to (0 when no key). */
static int key_owner(conn *c, uint64_t id, int64_t *lease, char *err,
                     size_t errlen) {
  char k[256];
  key_b64(c->l, id, k);
  json_t *resp;
  int rc =
      post(c, "/v3/kv/range", json_pack("{s:s,s:b}", "key", k, "keys_only", 1),
           &resp, err, errlen);
  if (rc != HTTP_OK)
    return rc;
  *lease = get_i64(json_array_get(json_object_get(resp, "kvs"), 0), "lease");
  json_decref(resp);
  return HTTP_OK;
}

/* publish makes id usable until deadline. The deadline is cleared first so
 * that a reader never pairs a new id with an old deadline or the reverse;
 * the generation moves while the deadline is 0, so a reader that sees the
 * same deadline on both sides of its reads also sees the generation that
 * goes with the id (sf__lease_machine_id). Every change of the id, a loss
 * included, comes through here; a renewal that keeps the lease only stores
 * a later deadline and keeps the generation. */
static void publish(sf_lease *l, int64_t id, int64_t deadline) {
  atomic_store(&l->deadline_ns, 0);
  atomic_store(&l->machine_id, id);
  atomic_fetch_add(&l->generation, 1);
  atomic_store(&l->deadline_ns, deadline);
  atomic_store(&l->state, id >= 0 ? SF_LEASE_HELD : SF_LEASE_LOST);
}

enum { CLAIM_OK = 0, CLAIM_RETRY = -1, CLAIM_FULL = -2 };

/* claim grants a new lease and takes the lowest free id under it. */
static int claim(conn *c, char *err, size_t errlen) {
  sf_lease *l = c->l;
  int64_t lease, t0;
  int ttl;
  if (grant(c, &lease, &ttl, &t0, err, errlen) != HTTP_OK)
    return CLAIM_RETRY;
  size_t nbytes = (size_t)(l->max_id / 8 + 1);
  unsigned char *bits = calloc(nbytes, 1);
  if (!bits) {
    snprintf(err, errlen, "out of memory");
    lease_revoke(c, lease);
    return CLAIM_RETRY;
  }
  int rc = taken_ids(c, bits, err, errlen);
  for (uint64_t id = 0; rc == HTTP_OK && id <= l->max_id; id++) {
    if (bits[id / 8] & (1u << (id % 8)))
      continue;
    bool won = false;
    rc = try_put(c, id, lease, &won, err, errlen);
    if (rc == HTTP_OK && won) {
      free(bits);
      l->last_id = (int64_t)id;
      atomic_store(&l->lease_id, lease);
      atomic_store(&l->ttl_s, ttl);
      atomic_fetch_add(&l->acquisitions, 1);
      publish(l, (int64_t)id, t0 + (int64_t)ttl * 1000000000 - margin_ns(ttl));
      return CLAIM_OK;
    }
  }
  free(bits);
  lease_revoke(c, lease);
  if (rc == HTTP_OK) {
    snprintf(err, errlen,
             "every machine id 0..%llu under etcd prefix \"%s\" is taken",
             (unsigned long long)l->max_id, l->prefix);
    return CLAIM_FULL;
  }
  return CLAIM_RETRY;
}

/* ------------------------------------------------------ keepalive thread */

/* wait_ms sleeps up to ms, or less when sf__lease_stop() runs. */
static void wait_ms(sf_lease *l, int64_t ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  int64_t ns = ts.tv_nsec + (ms % 1000) * 1000000;
  ts.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
  ts.tv_nsec = (long)(ns % 1000000000);
  pthread_mutex_lock(&l->mu);
  while (!atomic_load(&l->stopping) &&
         pthread_cond_timedwait(&l->cv, &l->mu, &ts) != ETIMEDOUT)
    ;
  pthread_mutex_unlock(&l->mu);
}

/* mark_lost gives up the id; a held id whose deadline passed counts as a
 * loss once. */
static void mark_lost(sf_lease *l) {
  if (atomic_load(&l->state) == SF_LEASE_HELD)
    atomic_fetch_add(&l->losses, 1);
  publish(l, -1, 0);
}

/* recover runs while no id is held: renew the old lease if etcd still has
 * it and our key is still on it; otherwise claim afresh. */
static void recover(conn *c) {
  sf_lease *l = c->l;
  char err[512];
  int64_t lease = atomic_load(&l->lease_id);
  if (lease != 0) {
    int ttl = 0;
    int64_t t0 = now_ns();
    int rc = keepalive(c, lease, &ttl, err, sizeof err);
    if (rc == HTTP_UNREACHABLE) {
      atomic_fetch_add(&l->renew_errors, 1);
      return;
    }
    if (rc == HTTP_OK && ttl > 0 && l->last_id >= 0) {
      /* etcd kept the lease: if our key is still on it, the id is ours. */
      int64_t owner = 0;
      rc = key_owner(c, (uint64_t)l->last_id, &owner, err, sizeof err);
      if (rc == HTTP_UNREACHABLE)
        return;
      if (rc == HTTP_OK && owner == lease) {
        atomic_store(&l->ttl_s, ttl);
        atomic_fetch_add(&l->renewals, 1);
        publish(l, l->last_id, t0 + (int64_t)ttl * 1000000000 - margin_ns(ttl));
        fprintf(stderr,
                "snowflaked: etcd: lease renewed; machine id %lld "
                "held again\n",
                (long long)l->last_id);
        return;
      }
    }
    /* Either etcd dropped the lease or we cannot tell which id it carried:
     * start over with a new lease. */
    lease_revoke(c, lease);
    atomic_store(&l->lease_id, 0);
  }
  int rc = claim(c, err, sizeof err);
  if (rc == CLAIM_OK) {
    fprintf(stderr,
            "snowflaked: etcd: took machine id %lld again (lease %llx)\n",
            (long long)atomic_load(&l->machine_id),
            (unsigned long long)atomic_load(&l->lease_id));
  }
}

static void *keepalive_main(void *arg) {
  sf_lease *l = arg;
  conn c;
  if (conn_init(&c, l, true) != 0)
    return NULL;
  char err[512];
  int64_t last_start = now_ns(); /* start of the last renewal attempt */
  bool last_failed = false;
  while (!atomic_load(&l->stopping)) {
    int ttl = atomic_load(&l->ttl_s);
    int64_t every_ms = (int64_t)ttl * 1000 / 3;
    int64_t retry_ms = every_ms < 250 ? every_ms : 250;
    int64_t wait =
        (last_failed ? retry_ms : every_ms) - (now_ns() - last_start) / 1000000;
    if (wait > 0)
      wait_ms(l, wait);
    if (atomic_load(&l->stopping))
      break;
    if (atomic_load(&l->state) != SF_LEASE_HELD) {
      last_start = now_ns();
      recover(&c);
      last_failed = atomic_load(&l->state) != SF_LEASE_HELD;
      continue;
    }
    int64_t t0 = now_ns();
    last_start = t0;
    int new_ttl = 0;
    int rc =
        keepalive(&c, atomic_load(&l->lease_id), &new_ttl, err, sizeof err);
    if (atomic_load(&l->stopping))
      break;
    if (rc == HTTP_OK && new_ttl > 0) {
      atomic_store(&l->ttl_s, new_ttl);
      atomic_store(&l->deadline_ns,
                   t0 + (int64_t)new_ttl * 1000000000 - margin_ns(new_ttl));
      atomic_fetch_add(&l->renewals, 1);
      last_failed = false;
      continue;
    }
    atomic_fetch_add(&l->renew_errors, 1);
    last_failed = true;
    if (rc == HTTP_OK) { /* etcd answered: the lease is gone */
      fprintf(
          stderr,
          "snowflaked: etcd: lease %llx expired; machine id %lld given up\n",
          (unsigned long long)atomic_load(&l->lease_id),
          (long long)atomic_load(&l->machine_id));
      mark_lost(l);
      atomic_store(&l->lease_id, 0);
    } else if (now_ns() >= atomic_load(&l->deadline_ns)) {
      fprintf(stderr,
              "snowflaked: etcd: cannot renew lease (%s); machine id %lld "
              "given up until etcd answers\n",
              err, (long long)atomic_load(&l->machine_id));
      mark_lost(l);
    }
  }
  conn_free(&c);
  return NULL;
}

/* ------------------------------------------------------------- public */

static void lease_free(sf_lease *l) {
  if (!l)
    return;
  pthread_cond_destroy(&l->cv);
  pthread_mutex_destroy(&l->mu);
  free(l->endpoints_buf);
  free(l->prefix);
  free(l);
}

static int parse_endpoints(sf_lease *l, const char *s, char *err,
                           size_t errlen) {
  l->endpoints_buf = strdup(s ? s : "");
  if (!l->endpoints_buf) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  char *save = NULL;
  for (char *t = strtok_r(l->endpoints_buf, ", ", &save); t;
       t = strtok_r(NULL, ", ", &save)) {
    size_t n = strlen(t);
    while (n > 0 && t[n - 1] == '/')
      t[--n] = '\0';
    if (strncmp(t, "http://", 7) != 0 && strncmp(t, "https://", 8) != 0) {
      snprintf(err, errlen,
               "ETCD_ENDPOINTS: \"%s\" is not an http:// or https:// URL", t);
      return -1;
    }
    if (l->n_endpoints == MAX_ENDPOINTS) {
      snprintf(err, errlen, "ETCD_ENDPOINTS: more than %d endpoints",
               MAX_ENDPOINTS);
      return -1;
    }
    l->endpoints[l->n_endpoints++] = t;
  }
  if (l->n_endpoints == 0) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: no endpoint given (expected "
             "http://host:2379[,http://...])");
    return -1;
  }
  return 0;
}

static void make_value(sf_lease *l) {
  char host[256] = "unknown";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  char started[32];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_t *v = json_pack("{s:s,s:I,s:s}", "hostname", host, "pid",
                        (json_int_t)getpid(), "started", started);
  char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  if (!s)
    s = strdup("{}");
  size_t n = s ? strlen(s) : 0;
  if (n > 360)
    n = 360; /* fits value_b64 */
  b64_encode((const unsigned char *)(s ? s : ""), n, l->value_b64);
  free(s);
}

int sf__lease_start(const sf_lease_config *cfg, sf_lease **out, char *err,
                    size_t errlen) {
  *out = NULL;
  pthread_once(&curl_once, curl_load_once);
  if (curl_error[0]) {
    snprintf(err, errlen, "%s", curl_error);
    return -1;
  }
  sf_lease *l = calloc(1, sizeof *l);
  if (!l) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  pthread_mutex_init(&l->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&l->cv, &ca);
  pthread_condattr_destroy(&ca);
  atomic_init(&l->machine_id, -1);
  l->last_id = -1;
  atomic_init(&l->state, SF_LEASE_LOST);

  const char *prefix =
      cfg->prefix && *cfg->prefix ? cfg->prefix : "/snowflake/machines/";
  if (parse_endpoints(l, cfg->endpoints, err, errlen) != 0)
    goto fail;
  if (strlen(prefix) > 120) {
    snprintf(err, errlen, "ETCD_PREFIX: longer than 120 bytes");
    goto fail;
  }
  if (cfg->ttl_s < 0 || cfg->ttl_s > 3600) {
    snprintf(err, errlen, "ETCD_LEASE_TTL: must be 1..3600 seconds, got %d",
             cfg->ttl_s);
    goto fail;
  }
  if (cfg->max_id >= (1u << 20)) {
    snprintf(err, errlen, "machine id range 0..%llu too large for etcd leases",
             (unsigned long long)cfg->max_id);
    goto fail;
  }
  l->prefix = strdup(prefix);
  if (!l->prefix) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  l->ttl_req_s = cfg->ttl_s ? cfg->ttl_s : 10;
  atomic_init(&l->ttl_s, l->ttl_req_s);
  l->max_id = cfg->max_id;
  make_value(l);

  conn c;
  if (conn_init(&c, l, false) != 0) {
    snprintf(err, errlen, "curl_easy_init failed");
    goto fail;
  }
  /* Keep trying for about one TTL: etcd may still be starting. */
  int64_t give_up = now_ns() + (int64_t)l->ttl_req_s * 1000000000;
  char why[512] = "";
  int rc;
  for (;;) {
    rc = claim(&c, why, sizeof why);
    if (rc != CLAIM_RETRY || now_ns() >= give_up)
      break;
    usleep(200 * 1000);
  }
  conn_free(&c);
  if (rc == CLAIM_FULL) {
    snprintf(err, errlen, "%s", why);
    goto fail;
  }
  if (rc != CLAIM_OK) {
    snprintf(err, errlen,
             "ETCD_ENDPOINTS: no etcd answered at %s within %d s (last "
             "error: %s)",
             cfg->endpoints, l->ttl_req_s, why);
    goto fail;
  }
  if (pthread_create(&l->thread, NULL, keepalive_main, l) != 0) {
    snprintf(err, errlen, "cannot start the lease keepalive thread");
    conn c2;
    if (conn_init(&c2, l, false) == 0) {
      lease_revoke(&c2, atomic_load(&l->lease_id));
      conn_free(&c2);
    }
    goto fail;
  }
  l->thread_started = true;
  *out = l;
  return 0;
fail:
  lease_free(l);
  return -1;
}

int64_t sf__lease_machine_id(sf_lease *l, uint64_t *gen) {
  if (gen)
    *gen = 0;
  if (!l)
    return -1;
  /* The deadline is read on both sides of the id and the generation: if
   * both reads agree, the id and generation belong to that deadline
   * (publish() clears the deadline before it changes either). A renewal
   * may move the deadline between the reads; read again then, a few times
   * at most. */
  for (int tries = 0; tries < 3; tries++) {
    int64_t d = atomic_load(&l->deadline_ns);
    int64_t id = atomic_load(&l->machine_id);
    uint64_t g = atomic_load(&l->generation);
    if (atomic_load(&l->deadline_ns) != d)
      continue;
    if (d == 0 || now_ns() >= d)
      return -1;
    if (gen)
      *gen = g;
    return id;
  }
  return -1;
}

int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s) {
  s->floor_ms = 0;
  s->mark_ms = INT64_MAX;
  s->id = sf__lease_machine_id(l, &s->gen);
  return s->id < 0 ? -1 : 0;
}

void sf__lease_kick(sf_lease *l) {
  (void)l;
}

void sf__lease_stats_get(sf_lease *l, sf_lease_stats *o) {
  memset(o, 0, sizeof *o);
  if (!l) {
    o->machine_id = -1;
    o->state = SF_LEASE_STOPPED;
    return;
  }
  o->machine_id = sf__lease_machine_id(l, NULL);
  o->state = (sf_lease_state)atomic_load(&l->state);
  if (o->state == SF_LEASE_HELD && o->machine_id < 0)
    o->state = SF_LEASE_LOST; /* past the deadline, thread not yet aware */
  o->lease_id = atomic_load(&l->lease_id);
  o->ttl_s = atomic_load(&l->ttl_s);
  o->acquisitions = atomic_load(&l->acquisitions);
  o->renewals = atomic_load(&l->renewals);
  o->renew_errors = atomic_load(&l->renew_errors);
  o->losses = atomic_load(&l->losses);
}

void sf__lease_stop(sf_lease *l) {
  if (!l)
    return;
  pthread_mutex_lock(&l->mu);
  atomic_store(&l->stopping, true);
  pthread_cond_broadcast(&l->cv);
  pthread_mutex_unlock(&l->mu);
  if (l->thread_started)
    pthread_join(l->thread, NULL);
  publish(l, -1, 0);
  atomic_store(&l->state, SF_LEASE_STOPPED);
  int64_t lease = atomic_load(&l->lease_id);
  if (lease != 0) {
    conn c;
    if (conn_init(&c, l, false) == 0) {
      atomic_store(&l->stopping, false); /* post() checks it */
      lease_revoke(&c, lease);
      conn_free(&c);
    }
  }
  lease_free(l);
}

#else /* !SF_WITH_ETCD */

struct sf_lease {
  int unused;
};

int sf__lease_start(const sf_lease_config *c, sf_lease **out, char *err,
                    size_t errlen) {
  (void)c;
  *out = NULL;
  snprintf(err, errlen,
           "MACHINE_ID=auto: this build has no etcd support (built with "
           "WITH_ETCD=0; use MACHINE_ID=N or MACHINE_ID=ordinal)");
  return -1;
}

int64_t sf__lease_machine_id(sf_lease *l, uint64_t *gen) {
  (void)l;
  if (gen)
    *gen = 0;
  return -1;
}

int sf__lease_snapshot(sf_lease *l, sf_lease_snap *s) {
  (void)l;
  s->id = -1;
  s->gen = 0;
  s->floor_ms = 0;
  s->mark_ms = INT64_MAX;
  return -1;
}

void sf__lease_kick(sf_lease *l) {
  (void)l;
}

void sf__lease_stats_get(sf_lease *l, sf_lease_stats *o) {
  (void)l;
  memset(o, 0, sizeof *o);
  o->machine_id = -1;
  o->state = SF_LEASE_STOPPED;
}

void sf__lease_stop(sf_lease *l) {
  (void)l;
}

#endif /* SF_WITH_ETCD */

const char *sf__lease_state_name(sf_lease_state s) {
  switch (s) {
  case SF_LEASE_HELD:
    return "held";
  case SF_LEASE_LOST:
    return "lost";
  case SF_LEASE_STOPPED:
    return "stopped";
  }
  return "unknown";
}
