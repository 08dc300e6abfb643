/*
 * etcd.c - the gateway operations on one node's machine-id keys, base64 and
 * the parsers of etcd's replies (see etcd.h for the key layout).
 *
 *   grant:     POST /v3/lease/grant     {TTL}          -> lease ID, TTL
 *   keepalive: POST /v3/lease/keepalive {ID}           -> {result: {TTL}}
 *   revoke:    POST /v3/lease/revoke    {ID}
 *   scan:      POST /v3/kv/range        every key under the prefix
 *   claim:     POST /v3/kv/txn  if create_revision(P<id>) == 0:
 *                                 put P<id> = holder, lease; get P<id>/mark
 *                               else: get P<id>; get P<id>/mark
 *   owner:     POST /v3/kv/range        P<id>, keys only -> its lease
 *   raise_mark POST /v3/kv/txn  if lease(P<id>) == ours and
 *                                  value(P<id>/mark) < new (or no mark yet):
 *                                 put P<id>/mark = new
 *                               else: get P<id>; get P<id>/mark
 *
 * Why a handover never repeats an ID. A holder issues only IDs below a mark
 * etcd has acknowledged; the next holder's claim reads the mark in the
 * transaction that creates its key, and issues only above it. That is
 * enough only if the mark a claim reads is at least every mark any earlier
 * holder was told was stored. Two things make it so:
 *   1. The fence: a mark write applies only while the writer's key is bound
 *      to the writer's lease, and a claim succeeds only when no key exists;
 *      so no earlier holder's write applies after a later claim.
 *   2. Marks only go up: every write is a compare-and-set that applies only
 *      above the stored mark. Marks are 13 zero-padded digits, so etcd's
 *      byte comparison (value < new) is the numeric one; a missing mark is
 *      created only while none exists (create_revision == 0).
 * Without 2, a write that lands late lowers the mark: the transport resends
 * a timed-out request to the next endpoint while the first copy may still
 * sit in a frozen member or a slow network, and the holder goes on writing
 * higher marks and issuing below them; when the old copy lands (even after
 * its writer died, as long as its lease lives) the fence passes and the
 * mark drops below IDs already issued. With 2 it fails and changes nothing.
 *
 * Every other request, landing late, twice or on a member that was behind:
 *   claim      a copy that applied earlier than its answer (lost, timed
 *              out, resent) finds our own key: the failure branch reads it
 *              and its mark, and the claim counts as won; the mark read is
 *              the one the claim saw, since only the key's holder writes it.
 *              A copy landing after we revoked the lease fails (no lease).
 *   grant      a duplicate makes a second lease with no key on it; it
 *              expires after one TTL.
 *   keepalive  a late copy restarts etcd's TTL later than we count from
 *              (our deadline runs from the request's start): safe side.
 *   revoke     a late or second copy ends a lease already given up.
 *   scan       only orders the candidates; the claim reads the mark itself.
 *   owner      read while our lease is alive, so our key cannot go between
 *              the keepalive that proved the lease and the read.
 * Reads and transactions go through raft (the gateway's range is
 * linearizable unless asked otherwise), so a member that was behind answers
 * only once it has caught up; compares are evaluated when a transaction is
 * applied, not when it was sent.
 */
#include "etcd.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sf_etcd {
  sf_etcd_http *http;
  char *prefix;
  size_t plen;
  char *value_b64; /* the holder key's value */
  char *raw;       /* scratch for a key: plen + 32 bytes */
  char *k1, *k2;   /* scratch for two base64 keys */
};

/* ------------------------------------------------------------- base64 */

/* OpenSSL does the conversion (EVP_EncodeBlock / EVP_DecodeBlock, which
 * take int lengths: long inputs go in pieces of whole groups); the strict
 * checks of what etcd may send are ours, since EVP_DecodeBlock skips
 * white space and takes '=' inside the text. */
#define B64_PIECE (3u << 20) /* bytes: a multiple of 3, far below INT_MAX */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void sf__b64_encode(const void *src_, size_t n, char *dst) {
  const unsigned char *src = src_;
  *dst = '\0';
  while (n > 0) {
    size_t k = n < B64_PIECE ? n : B64_PIECE;
    dst += EVP_EncodeBlock((unsigned char *)dst, src, (int)k);
    src += k;
    n -= k;
  }
}

long sf__b64_decode(const char *src, unsigned char *dst, size_t cap) {
  size_t nchars = strspn(src, b64chars), pad = strspn(src + nchars, "=");
  /* Padding: only '=' up to a multiple of four characters, nothing after. */
  if (src[nchars + pad] != '\0' || pad > 2 || (pad && (nchars + pad) % 4) ||
      nchars % 4 == 1)
    return -1;
  size_t groups = nchars / 4, tail = nchars % 4;
  size_t out = groups * 3 + (tail ? tail - 1 : 0);
  if (out > cap)
    return -1;
  for (size_t done = 0; done < groups;) {
    size_t k = groups - done < B64_PIECE / 3 ? groups - done : B64_PIECE / 3;
    if (EVP_DecodeBlock(dst + done * 3, (const unsigned char *)src + done * 4,
                        (int)(k * 4)) < 0)
      return -1;
    done += k;
  }
  if (tail) { /* the last 2 or 3 characters, padded here if they were not */
    unsigned char last[4] = {'=', '=', '=', '='}, bytes[3];
    memcpy(last, src + groups * 4, tail);
    if (EVP_DecodeBlock(bytes, last, 4) < 0)
      return -1;
    memcpy(dst + groups * 3, bytes, tail - 1);
  }
  return (long)out;
}

/* ------------------------------------------------------------ replies */

int64_t sf__etcd_parse_i64(const json_t *obj, const char *field) {
  const json_t *v = json_object_get(obj, field);
  if (json_is_integer(v))
    return (int64_t)json_integer_value(v);
  const char *s = json_string_value(v);
  if (!s || !*s || strspn(s, "-0123456789") != strlen(s))
    return 0;
  return strtoll(s, NULL, 10);
}

int64_t sf__etcd_parse_mark_value(const char *b64) {
  unsigned char v[24];
  long n = b64 ? sf__b64_decode(b64, v, sizeof v - 1) : -1;
  if (n <= 0 || n > 18)
    return -1;
  v[n] = '\0';
  if (strspn((const char *)v, "0123456789") != (size_t)n)
    return -1;
  return strtoll((const char *)v, NULL, 10);
}

/* key_id reads "<digits>" or "<digits>/mark" after the prefix: the id and
 * *is_mark, or -1 for a key of another shape. */
static int64_t key_id(const unsigned char *rest, size_t n, bool *is_mark) {
  size_t d = 0;
  while (d < n && d < 8 && rest[d] >= '0' && rest[d] <= '9')
    d++;
  if (d == 0 || (d < n && rest[d] >= '0' && rest[d] <= '9'))
    return -1;
  if (d == n)
    *is_mark = false;
  else if (n - d == 5 && memcmp(rest + d, "/mark", 5) == 0)
    *is_mark = true;
  else
    return -1;
  int64_t id = 0;
  for (size_t i = 0; i < d; i++)
    id = id * 10 + (rest[i] - '0');
  return id;
}

int sf__etcd_parse_scan(const char *text, const char *prefix,
                        sf_etcd_ids *ids) {
  json_t *root = json_loads(text, 0, NULL);
  if (!json_is_object(root)) {
    json_decref(root);
    return -1;
  }
  size_t plen = strlen(prefix), i;
  const json_t *kv;
  /* Our keys are at most 13 bytes longer than the prefix: longer ones
   * fail to decode into this buffer and are skipped. */
  unsigned char *key = malloc(plen + 16);
  if (!key) {
    json_decref(root);
    return -1;
  }
  json_array_foreach(json_object_get(root, "kvs"), i, kv) {
    const char *kb = json_string_value(json_object_get(kv, "key"));
    long n = kb ? sf__b64_decode(kb, key, plen + 16) : -1;
    if (n <= (long)plen || memcmp(key, prefix, plen) != 0)
      continue;
    bool is_mark = false;
    int64_t id = key_id(key + plen, (size_t)n - plen, &is_mark);
    if (id < 0 || (uint64_t)id > ids->max_id)
      continue;
    if (!is_mark) {
      ids->taken[id / 8] |= (unsigned char)(1u << (id % 8));
      continue;
    }
    int64_t m = sf__etcd_parse_mark_value(
        json_string_value(json_object_get(kv, "value")));
    ids->mark[id] = m > 0 ? m : 0;
  }
  free(key);
  json_decref(root);
  return 0;
}

/* range_kv is kvs[0] of the range in responses[i] of a transaction reply,
 * NULL when there is none; *is_range says whether responses[i] is a range. */
static const json_t *range_kv(const json_t *root, size_t i, bool *is_range) {
  const json_t *rr = json_object_get(
      json_array_get(json_object_get(root, "responses"), i), "response_range");
  *is_range = json_is_object(rr);
  return json_array_get(json_object_get(rr, "kvs"), 0);
}

/* kv_mark reads the mark in kv (NULL: none, 0): 0, or -1 when not one. */
static int kv_mark(const json_t *kv, int64_t *mark) {
  *mark = 0;
  if (!kv)
    return 0;
  *mark = sf__etcd_parse_mark_value(
      json_string_value(json_object_get(kv, "value")));
  return *mark < 0 ? -1 : 0;
}

int sf__etcd_parse_claim(const char *text, int64_t lease, bool *won,
                         int64_t *mark) {
  json_t *root = json_loads(text, 0, NULL);
  *won = false;
  *mark = 0;
  if (!json_is_object(root)) {
    json_decref(root);
    return -1;
  }
  /* Both branches end with the mark's range; the failure branch starts
   * with the holder key's: ours when an earlier copy of this claim won. */
  bool range0 = false, range1 = false;
  bool created = json_is_true(json_object_get(root, "succeeded"));
  const json_t *holder = created ? NULL : range_kv(root, 0, &range0);
  const json_t *mk = range_kv(root, 1, &range1);
  *won = created || (holder && sf__etcd_parse_i64(holder, "lease") == lease);
  int rc = 0;
  if (*won && (!range1 || kv_mark(mk, mark) != 0))
    rc = -1;
  json_decref(root);
  return rc;
}

int sf__etcd_parse_raise(const char *text, int64_t lease, bool *raised,
                         bool *owned, int64_t *stored) {
  json_t *root = json_loads(text, 0, NULL);
  *raised = *owned = false;
  *stored = 0;
  if (!json_is_object(root)) {
    json_decref(root);
    return -1;
  }
  int rc = 0;
  if (json_is_true(json_object_get(root, "succeeded"))) {
    *raised = *owned = true;
  } else {
    bool r0 = false, r1 = false;
    const json_t *holder = range_kv(root, 0, &r0);
    const json_t *mk = range_kv(root, 1, &r1);
    *owned = holder && sf__etcd_parse_i64(holder, "lease") == lease;
    if (!r0 || !r1 || kv_mark(mk, stored) != 0)
      rc = -1;
  }
  json_decref(root);
  return rc;
}

/* --------------------------------------------------------- operations */

/* call posts body (consumed) to path: SF_ETCD_OK with *resp, or an error
 * with err. An HTTP status other than 200 is etcd refusing. */
static int call(sf_etcd *e, const char *path, json_t *body, json_t **resp,
                char *err, size_t errlen) {
  *resp = NULL;
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text) {
    snprintf(err, errlen, "out of memory");
    return SF_ETCD_UNREACHABLE;
  }
  char *reply = NULL;
  int status = 0;
  int rc =
      sf__etcd_http_post(e->http, path, text, &reply, &status, err, errlen);
  free(text);
  if (rc != SF_ETCD_OK)
    return rc;
  json_t *j = json_loads(reply, 0, NULL);
  if (status != 200 || !json_is_object(j)) {
    const char *m = json_string_value(json_object_get(j, "message"));
    snprintf(err, errlen, "%s: %s: HTTP %d: %.200s%s",
             sf__etcd_http_url(e->http), path, status, m ? m : reply,
             sf__etcd_hint(m ? m : reply));
    free(reply);
    json_decref(j);
    return SF_ETCD_REFUSED;
  }
  free(reply);
  *resp = j;
  return SF_ETCD_OK;
}

/* call_text is call() for the replies the pure parsers read: the reply as
 * compact JSON text in *text (malloc'd, the caller frees; NULL when out of
 * memory) once etcd answered 200. */
static int call_text(sf_etcd *e, const char *path, json_t *body, char **text,
                     char *err, size_t errlen) {
  json_t *r;
  int rc = call(e, path, body, &r, err, errlen);
  *text = NULL;
  if (rc != SF_ETCD_OK)
    return rc;
  *text = json_dumps(r, JSON_COMPACT);
  json_decref(r);
  return SF_ETCD_OK;
}

static json_t *i64_json(int64_t v) {
  char b[24];
  snprintf(b, sizeof b, "%lld", (long long)v);
  return json_string(b);
}

/* key writes base64(prefix + id + suffix) into dst (e->k1 or e->k2). */
static char *key(sf_etcd *e, char *dst, uint64_t id, const char *suffix) {
  int n = snprintf(e->raw, e->plen + 32, "%s%llu%s", e->prefix,
                   (unsigned long long)id, suffix);
  sf__b64_encode(e->raw, (size_t)n, dst);
  return dst;
}

static int op_grant(void *ctx, int ttl_s, int64_t *lease, int *ttl_out,
                    char *err, size_t errlen) {
  json_t *r;
  int rc = call(ctx, "/v3/lease/grant",
                json_pack("{s:o}", "TTL", i64_json(ttl_s)), &r, err, errlen);
  if (rc != SF_ETCD_OK)
    return rc;
  *lease = sf__etcd_parse_i64(r, "ID");
  *ttl_out = (int)sf__etcd_parse_i64(r, "TTL");
  const char *m = json_string_value(json_object_get(r, "error"));
  if (*lease == 0 || *ttl_out <= 0 || (m && *m)) {
    snprintf(err, errlen, "lease grant refused: %s", m && *m ? m : "no ID");
    rc = SF_ETCD_REFUSED;
  }
  json_decref(r);
  return rc;
}

static int op_keepalive(void *ctx, int64_t lease, int *ttl_out, char *err,
                        size_t errlen) {
  json_t *r;
  int rc = call(ctx, "/v3/lease/keepalive",
                json_pack("{s:o}", "ID", i64_json(lease)), &r, err, errlen);
  if (rc != SF_ETCD_OK)
    return rc;
  /* The gateway streams: {"result":{...}} or {"error":{...}}. */
  const json_t *res = json_object_get(r, "result");
  if (!json_is_object(res)) {
    snprintf(err, errlen, "keepalive: no result in the answer");
    rc = SF_ETCD_REFUSED;
  } else {
    *ttl_out = (int)sf__etcd_parse_i64(res, "TTL");
  }
  json_decref(r);
  return rc;
}

static int op_revoke(void *ctx, int64_t lease, char *err, size_t errlen) {
  json_t *r;
  int rc = call(ctx, "/v3/lease/revoke",
                json_pack("{s:o}", "ID", i64_json(lease)), &r, err, errlen);
  json_decref(r);
  return rc;
}

/* prefix_end is the range end of every key that starts with p: p with its
 * last byte incremented (bytes 0xff are dropped first). */
static size_t prefix_end(const char *p, size_t n, unsigned char *out) {
  memcpy(out, p, n);
  while (n > 0 && out[n - 1] == 0xff)
    n--;
  if (n > 0)
    out[n - 1]++;
  return n;
}

static int op_scan(void *ctx, sf_etcd_ids *ids, char *err, size_t errlen) {
  sf_etcd *e = ctx;
  unsigned char *end = (unsigned char *)e->raw;
  size_t elen = prefix_end(e->prefix, e->plen, end);
  sf__b64_encode(e->prefix, e->plen, e->k1);
  sf__b64_encode(end, elen, e->k2);
  char *text;
  int rc = call_text(e, "/v3/kv/range",
                     json_pack("{s:s,s:s}", "key", e->k1, "range_end", e->k2),
                     &text, err, errlen);
  if (rc != SF_ETCD_OK)
    return rc;
  if (!text || sf__etcd_parse_scan(text, e->prefix, ids) != 0) {
    snprintf(err, errlen, "range: not a range reply");
    rc = SF_ETCD_REFUSED;
  }
  free(text);
  return rc;
}

static int op_claim(void *ctx, uint64_t id, int64_t lease, bool *won,
                    int64_t *mark, char *err, size_t errlen) {
  sf_etcd *e = ctx;
  const char *k = key(e, e->k1, id, ""), *mk = key(e, e->k2, id, "/mark");
  json_t *body =
      json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s,s:o}},{s:{s:s}}],"
                "s:[{s:{s:s,s:b}},{s:{s:s}}]}",
                "compare", "target", "CREATE", "result", "EQUAL", "key", k,
                "create_revision", "0", "success", "request_put", "key", k,
                "value", e->value_b64, "lease", i64_json(lease),
                "request_range", "key", mk, "failure", "request_range", "key",
                k, "keys_only", 1, "request_range", "key", mk);
  char *text;
  int rc = call_text(e, "/v3/kv/txn", body, &text, err, errlen);
  if (rc != SF_ETCD_OK)
    return rc;
  if (!text || sf__etcd_parse_claim(text, lease, won, mark) != 0) {
    snprintf(err, errlen, "claim: not a transaction reply (or a bad mark)");
    rc = SF_ETCD_REFUSED;
  }
  free(text);
  return rc;
}

static int op_owner(void *ctx, uint64_t id, int64_t *lease, char *err,
                    size_t errlen) {
  sf_etcd *e = ctx;
  json_t *r;
  int rc =
      call(e, "/v3/kv/range",
           json_pack("{s:s,s:b}", "key", key(e, e->k1, id, ""), "keys_only", 1),
           &r, err, errlen);
  if (rc != SF_ETCD_OK)
    return rc;
  *lease =
      sf__etcd_parse_i64(json_array_get(json_object_get(r, "kvs"), 0), "lease");
  json_decref(r);
  return SF_ETCD_OK;
}

/* raise_once sends one raise transaction: when none is stored yet, the
 * mark is created only while none exists; otherwise put only above it. */
static int raise_once(sf_etcd *e, uint64_t id, int64_t lease, const char *val,
                      bool create, bool *raised, bool *owned, int64_t *stored,
                      char *err, size_t errlen) {
  const char *k = key(e, e->k1, id, ""), *mk = key(e, e->k2, id, "/mark");
  json_t *body = json_pack(
      "{s:[{s:s,s:s,s:s,s:o},{s:s,s:s,s:s,s:s}],s:[{s:{s:s,s:s}}],"
      "s:[{s:{s:s,s:b}},{s:{s:s}}]}",
      "compare", "target", "LEASE", "result", "EQUAL", "key", k, "lease",
      i64_json(lease), "target", create ? "CREATE" : "VALUE", "result",
      create ? "EQUAL" : "LESS", "key", mk,
      create ? "create_revision" : "value", create ? "0" : val, "success",
      "request_put", "key", mk, "value", val, "failure", "request_range", "key",
      k, "keys_only", 1, "request_range", "key", mk);
  char *text;
  int rc = call_text(e, "/v3/kv/txn", body, &text, err, errlen);
  if (rc != SF_ETCD_OK)
    return rc;
  if (!text || sf__etcd_parse_raise(text, lease, raised, owned, stored) != 0) {
    snprintf(err, errlen,
             "raising the mark %s%llu/mark: not a transaction reply (or the "
             "stored mark is not a decimal)",
             e->prefix, (unsigned long long)id);
    rc = SF_ETCD_REFUSED;
  }
  free(text);
  return rc;
}

static int op_raise_mark(void *ctx, uint64_t id, int64_t lease, int64_t mark_ms,
                         bool *owned, int64_t *stored, char *err,
                         size_t errlen) {
  sf_etcd *e = ctx;
  char dec[24], val[SF_B64_LEN(24)];
  *owned = false;
  *stored = 0;
  if (mark_ms < 0 || mark_ms > SF_ETCD_MARK_MAX) {
    snprintf(err, errlen, "mark %lld out of range", (long long)mark_ms);
    return SF_ETCD_REFUSED;
  }
  int n = snprintf(dec, sizeof dec, "%0*lld", SF_ETCD_MARK_DIGITS,
                   (long long)mark_ms);
  sf__b64_encode(dec, (size_t)n, val);
  /* Most writes raise an existing mark (one round trip); the first of an
   * id finds none and creates it; a create that finds one (our own earlier
   * copy landed meanwhile) raises it. */
  bool create = false;
  for (int attempt = 0; attempt < 3; attempt++) {
    bool raised = false;
    int rc = raise_once(e, id, lease, val, create, &raised, owned, stored, err,
                        errlen);
    if (rc != SF_ETCD_OK)
      return rc;
    if (raised) {
      *stored = mark_ms;
      return SF_ETCD_OK;
    }
    if (!*owned || *stored >= mark_ms)
      return SF_ETCD_OK; /* fenced out, or already that high */
    if (*stored > 0 && !create) {
      /* Numerically below ours, yet not below as bytes: not 13 digits,
       * so not written by snowflaked. */
      snprintf(err, errlen,
               "the mark %s%llu/mark holds %lld, not %d decimal digits: "
               "cannot raise it",
               e->prefix, (unsigned long long)id, (long long)*stored,
               SF_ETCD_MARK_DIGITS);
      return SF_ETCD_REFUSED;
    }
    create = *stored == 0;
  }
  snprintf(err, errlen, "raising the mark %s%llu/mark: it kept changing",
           e->prefix, (unsigned long long)id);
  return SF_ETCD_REFUSED;
}

const sf_etcd_ops sf__etcd_ops = {
    .grant = op_grant,
    .keepalive = op_keepalive,
    .revoke = op_revoke,
    .scan = op_scan,
    .claim = op_claim,
    .owner = op_owner,
    .raise_mark = op_raise_mark,
};

/* holder_value is what the holder key says: who holds the id (malloc'd). */
static char *holder_value(void) {
  char host[256] = "unknown", started[32];
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = '\0';
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
  json_t *v = json_pack("{s:s,s:I,s:s}", "hostname", host, "pid",
                        (json_int_t)getpid(), "started", started);
  char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  return s ? s : strdup("{}");
}

int sf__etcd_new(const char *endpoints, const char *prefix, int timeout_ms,
                 const atomic_bool *abort, sf_etcd **out, char *err,
                 size_t errlen) {
  *out = NULL;
  char *value = holder_value();
  size_t plen = strlen(prefix), vlen = value ? strlen(value) : 0;
  sf_etcd *e = calloc(1, sizeof *e);
  if (e) {
    e->prefix = strdup(prefix);
    e->plen = plen;
    e->value_b64 = malloc(SF_B64_LEN(vlen));
    e->raw = malloc(plen + 32);
    e->k1 = malloc(SF_B64_LEN(plen + 32));
    e->k2 = malloc(SF_B64_LEN(plen + 32));
  }
  if (!value || !e || !e->prefix || !e->value_b64 || !e->k1 || !e->k2) {
    free(value);
    sf__etcd_free(e);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  sf__b64_encode(value, vlen, e->value_b64);
  free(value);
  if (sf__etcd_http_new(endpoints, timeout_ms, abort, &e->http, err, errlen) !=
      0) {
    sf__etcd_free(e);
    return -1;
  }
  *out = e;
  return 0;
}

void sf__etcd_free(sf_etcd *e) {
  if (!e)
    return;
  sf__etcd_http_free(e->http);
  free(e->prefix);
  free(e->value_b64);
  free(e->raw);
  free(e->k1);
  free(e->k2);
  free(e);
}
