/*
 * views.c - the text views of an ID over HTTP: format= on /id and /ids,
 * /decode/<id> of every view, and /bounds. The bit layouts stay in the
 * library (sf_view_encode, sf_view_parse, sf_decode, sf_bounds); this file
 * parses queries and writes JSON.
 */
#include <stdio.h>
#include <string.h>

#include "route.h"
#include "text.h"
#include "views.h"

int sf__query_param(const sf_req *r, const char *name, const char **val,
                    size_t *vlen) {
  size_t nl = strlen(name);
  const char *q = r->query, *end = r->query + r->query_len;
  while (q < end) {
    const char *amp = memchr(q, '&', (size_t)(end - q));
    const char *stop = amp ? amp : end;
    if ((size_t)(stop - q) > nl && !memcmp(q, name, nl) && q[nl] == '=') {
      *val = q + nl + 1;
      *vlen = (size_t)(stop - q) - nl - 1;
      return 1;
    }
    if ((size_t)(stop - q) == nl && !memcmp(q, name, nl)) {
      *val = stop;
      *vlen = 0;
      return 1;
    }
    q = stop + 1;
  }
  return 0;
}

/* ---------------------------------------------------------------- format= */

/* X(name, format, quoted, in /id, in /ids, in /decode) */
#define VIEW_NAME_MAP(X)                                                       \
  X("number", SF_FORMAT_DEC, 0, 0, 1, 0)                                       \
  X("string", SF_FORMAT_DEC, 1, 0, 1, 0)                                       \
  X("dec", SF_FORMAT_DEC, 1, 0, 0, 1)                                          \
  X("hex", SF_FORMAT_HEX, 1, 1, 1, 1)                                          \
  X("base62", SF_FORMAT_BASE62, 1, 1, 1, 1)                                    \
  X("base32", SF_FORMAT_BASE32, 1, 1, 1, 1)                                    \
  X("uuid", SF_FORMAT_UUID, 1, 1, 1, 1)

typedef struct view_name {
  const char *name;
  sf_format f;
  int quoted;
  int in[3]; /* by sf_view_set */
} view_name;

static const view_name view_names[] = {
#define VIEW_ROW(name, f, q, id, ids, dec) {name, f, q, {id, ids, dec}},
    VIEW_NAME_MAP(VIEW_ROW)
#undef VIEW_ROW
};
#define NVIEWS (sizeof view_names / sizeof view_names[0])

static const char *const view_errors[] = {
    "format must be one of uuid, hex, base62, base32",
    "format must be one of number, string, uuid, hex, base62, base32",
    "format must be one of dec, hex, base62, base32, uuid",
};

int sf__view_param(const sf_req *r, sf_answer *a, sf_view_set set, sf_format *f,
                   int *quoted) {
  const char *v;
  size_t vl;
  if (!sf__query_param(r, "format", &v, &vl))
    return 0;
  for (size_t i = 0; i < NVIEWS; i++) {
    const view_name *w = &view_names[i];
    if (w->in[set] && strlen(w->name) == vl && !memcmp(w->name, v, vl)) {
      *f = w->f;
      *quoted = w->quoted;
      return 1;
    }
  }
  sf__answer_error(a, SF_ST_400, view_errors[set]);
  return -1;
}

size_t sf__view_put(const sf_node *n, uint64_t id, sf_format f, char *dst) {
  /* Every issued ID has a view in every format: no error to answer. */
  int len = sf_view_encode(n->layout, id, f, dst, SF_UUID_BUFSIZE);
  return len > 0 ? (size_t)len : 0;
}

/* ---------------------------------------------------------------- decode */

/* X(format, rc, message): why /decode/<id> is a 400. SF_FORMAT_DEC rows
 * name the digits of each non-UUID format through "%s". */
#define DECODE_ERROR_MAP(X)                                                    \
  X(SF_FORMAT_DEC, SF_EPARSE,                                                  \
    "id must be a decimal integer (digits 0-9 only)")                          \
  X(SF_FORMAT_DEC, SF_ERANGE, "id is larger than 9223372036854775807")         \
  X(SF_FORMAT_HEX, SF_EPARSE,                                                  \
    "id must be hex digits 0-9a-f (16 at most "                                \
    "with the zero padding)")                                                  \
  X(SF_FORMAT_HEX, SF_ERANGE, "id is larger than 7fffffffffffffff")            \
  X(SF_FORMAT_BASE62, SF_EPARSE, "id must be base62 digits 0-9A-Za-z")         \
  X(SF_FORMAT_BASE62, SF_ERANGE, "id is larger than AzL8n0Y58m7")              \
  X(SF_FORMAT_BASE32, SF_EPARSE,                                               \
    "id must be Crockford base32 digits 0-9A-Z without U")                     \
  X(SF_FORMAT_BASE32, SF_ERANGE, "id is larger than 7ZZZZZZZZZZZZ")            \
  X(SF_FORMAT_UUID, SF_EPARSE,                                                 \
    "id must be a UUID xxxxxxxx-xxxx-7xxx-xxxx-xxxxxxxxxxxx (hex digits)")     \
  X(SF_FORMAT_UUID, SF_EUUIDVERSION,                                           \
    "UUID is not version 7 with variant 10 (RFC 9562)")                        \
  X(SF_FORMAT_UUID, SF_EUUIDBITS,                                              \
    "UUID bits past the machine id are not zero: not the view of an ID")       \
  X(SF_FORMAT_UUID, SF_ERANGE,                                                 \
    "UUID's time is outside this node's epoch "                                \
    "range")

typedef struct decode_error {
  sf_format f;
  int rc;
  const char *msg;
} decode_error;

static const decode_error decode_errors[] = {
#define DECODE_ROW(f, rc, msg) {f, rc, msg},
    DECODE_ERROR_MAP(DECODE_ROW)
#undef DECODE_ROW
};

static const char *decode_message(sf_format f, int rc) {
  for (size_t i = 0; i < sizeof decode_errors / sizeof decode_errors[0]; i++)
    if (decode_errors[i].f == f && decode_errors[i].rc == rc)
      return decode_errors[i].msg;
  return "id cannot be decoded";
}

void sf__h_decode(const sf_req *r, sf_answer *a) {
  sf_node *n = a->w->node;
  const char *s = r->path + 8; /* after "/decode/" */
  size_t len = r->path_len - 8;
  sf_format f;
  int quoted, given, rc, tl;
  uint64_t id;
  sf_parts parts;
  char t[SF_TIME_BUFSIZE], *b, *p;

  given = sf__view_param(r, a, SF_VIEWS_DECODE, &f, &quoted);
  if (given < 0)
    return;
  if (len == 0) {
    sf__answer_error(a, SF_ST_400,
                     "missing id: use /decode/<id>[?format=hex|base62|base32|"
                     "uuid]");
    return;
  }
  /* No format: a UUID by its shape, else decimal. */
  if (!given)
    f = sf_format_guess(s, len);
  rc = sf_view_parse(n->layout, s, len, f, &id);
  if (rc == 0)
    rc = sf_decode(n->layout, id, &parts);
  if (rc != 0) {
    sf__answer_error(a, SF_ST_400, decode_message(f, rc));
    return;
  }
  tl = sf_format_time(parts.unix_ms, t, sizeof t);
  if (tl < 0) {
    sf__answer_error(a, SF_ST_400, "id's time is outside the years 1970..9999");
    return;
  }
  b = p = sf__answer_body(a, 256);
  if (!b)
    return;
  SF_PUT(p, "{\"id\": ");
  p += sf__u64_dec(p, id);
  SF_PUT(p, ", \"id_str\": \"");
  p += sf__u64_dec(p, id);
  SF_PUT(p, "\", \"timestamp_ms\": ");
  p += sf__u64_dec(p, (uint64_t)parts.unix_ms);
  SF_PUT(p, ", \"time\": \"");
  memcpy(p, t, (size_t)tl);
  p += tl;
  SF_PUT(p, "\", \"machine_id\": ");
  p += sf__u64_dec(p, parts.machine_id);
  SF_PUT(p, ", \"sequence\": ");
  p += sf__u64_dec(p, parts.sequence);
  *p++ = '}';
  a->st = SF_ST_200;
  a->ctype = "application/json";
  a->body_len = (size_t)(p - b);
}

/* ---------------------------------------------------------------- bounds */

static int hex_nibble(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  ch = (char)(ch | 0x20);
  return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* unescape copies v (percent-decoded: curl users write %3A for ':') into
 * dst with a NUL: 0, or -1 when it does not fit or has a bad escape. */
static int unescape(const char *v, size_t vl, char *dst, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < vl; i++) {
    char ch = v[i];
    if (ch == '%') {
      int hi = i + 2 < vl ? hex_nibble(v[i + 1]) : -1;
      int lo = hi >= 0 ? hex_nibble(v[i + 2]) : -1;
      if (lo < 0)
        return -1;
      ch = (char)(hi << 4 | lo);
      i += 2;
    }
    if (ch == '\0' || n + 1 >= cap)
      return -1;
    dst[n++] = ch;
  }
  dst[n] = '\0';
  return 0;
}

static void bounds_out_of_range(sf_answer *a, const sf_layout *l) {
  char first[SF_TIME_BUFSIZE], last[SF_TIME_BUFSIZE], msg[160];
  sf_format_time(l->epoch_ms, first, sizeof first);
  if (sf_format_time(sf_layout_end_ms(l) - 1, last, sizeof last) < 0)
    memcpy(last, "9999-12-31T23:59:59.999Z", SF_TIME_BUFSIZE);
  snprintf(msg, sizeof msg,
           "time is outside this node's epoch range (%s .. %s)", first, last);
  sf__answer_error(a, SF_ST_400, msg);
}

void sf__h_bounds(const sf_req *r, sf_answer *a) {
  static const char accepted[] =
      "ISO-8601 UTC (YYYY-MM-DDTHH:MM:SS[.mmm]Z) or unix ms";
  sf_node *n = a->w->node;
  const char *v;
  size_t vl;
  char tv[64], t[SF_TIME_BUFSIZE], msg[128], *b, *p;
  int64_t ms;
  uint64_t lo, hi;

  if (!sf__query_param(r, "time", &v, &vl)) {
    snprintf(msg, sizeof msg, "time is required: %s", accepted);
    sf__answer_error(a, SF_ST_400, msg);
    return;
  }
  if (unescape(v, vl, tv, sizeof tv) != 0 || sf_parse_time(tv, &ms) != 0) {
    snprintf(msg, sizeof msg, "time must be %s", accepted);
    sf__answer_error(a, SF_ST_400, msg);
    return;
  }
  if (sf_bounds(n->layout, ms, &lo, &hi) != 0 ||
      sf_format_time(ms, t, sizeof t) < 0) {
    bounds_out_of_range(a, n->layout);
    return;
  }
  b = p = sf__answer_body(a, 256);
  if (!b)
    return;
  SF_PUT(p, "{\"time\": \"");
  memcpy(p, t, SF_TIME_BUFSIZE - 1);
  p += SF_TIME_BUFSIZE - 1;
  SF_PUT(p, "\", \"timestamp_ms\": ");
  p += sf__u64_dec(p, (uint64_t)ms);
  SF_PUT(p, ", \"min_id\": ");
  p += sf__u64_dec(p, lo);
  SF_PUT(p, ", \"max_id\": ");
  p += sf__u64_dec(p, hi);
  SF_PUT(p, ", \"min_id_str\": \"");
  p += sf__u64_dec(p, lo);
  SF_PUT(p, "\", \"max_id_str\": \"");
  p += sf__u64_dec(p, hi);
  SF_PUT(p, "\"}");
  a->st = SF_ST_200;
  a->ctype = "application/json";
  a->body_len = (size_t)(p - b);
}
