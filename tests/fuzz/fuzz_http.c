/*
 * fuzz_http.c - libFuzzer target for snowflaked's request path: bytes in,
 * response bytes out, through sf__http_feed() and the routes, with no
 * sockets.
 *
 * Input: byte 0 picks the node's state, byte 1 how the bytes are cut into
 * reads, the rest is what a client sent.
 *   byte 0 bit 0-1: machine id fixed (0, 3), leased (1) or lease lost (2)
 *          bit 2:   the clock is 5 s behind the newest ID for this input
 *          bit 3:   when leased, the lease is published anew (a new
 *                   generation, the id alternating 5/6) on every call, so
 *                   the check after each mint fails and no ID may be
 *                   issued
 *   byte 1: read size 1..256 (0: all at once)
 *
 * Checked beyond ASan/UBSan: the connection always makes progress (a feed
 * consumes input or leaves output to send), the output is a sequence of
 * well-formed responses with known status codes and a Content-Length that
 * matches the body, and every response to a non-HEAD request carries that
 * body.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_node.h"
#include "http.h"
#include "snowflake.h"

static int64_t lease_val;
static uint64_t lease_gen;
static int lease_flaps;

static int fuzz_lease_snap(void *ctx, sf_lease_snap *s) {
  (void)ctx;
  if (lease_flaps && lease_val >= 0) {
    lease_gen++;
    lease_val = 5 + (int64_t)(lease_gen & 1);
  }
  s->id = lease_val;
  s->gen = lease_gen;
  s->floor_ms = 0;
  s->mark_ms = INT64_MAX;
  return lease_val < 0 ? -1 : 0;
}

static void fuzz_lease_stats(void *ctx, sf_lease_stats *out) {
  (void)ctx;
  memset(out, 0, sizeof *out);
  out->machine_id = lease_val;
  out->state = SF_LEASE_HELD;
  out->ttl_s = 10;
}

static const sf_lease_ops fuzz_lease = {fuzz_lease_snap, NULL, fuzz_lease_stats,
                                        NULL};

static int known_status(int code) {
  for (int i = 0; i < SF_ST_COUNT; i++)
    if (sf__st_code[i] == code)
      return 1;
  return 0;
}

/* find returns the first occurrence of needle in hay[0..n), or NULL. */
static const char *find(const char *hay, size_t n, const char *needle) {
  size_t nl = strlen(needle);
  for (size_t i = 0; i + nl <= n; i++)
    if (!memcmp(hay + i, needle, nl))
      return hay + i;
  return NULL;
}

/* check_responses walks the output. HEAD answers carry no body, so when the
 * request bytes hold "HEAD" a response may also end right after its
 * headers. */
static void check_responses(const char *out, size_t n, int maybe_head) {
  size_t off = 0;
  while (off < n) {
    const char *r = out + off, *end, *cl;
    size_t left = n - off, hlen, body;
    int code;
    CHECK(left >= 17 && !memcmp(r, "HTTP/1.1 ", 9));
    CHECK(r[9] >= '1' && r[9] <= '5' && r[10] >= '0' && r[10] <= '9' &&
          r[11] >= '0' && r[11] <= '9' && r[12] == ' ');
    code = (r[9] - '0') * 100 + (r[10] - '0') * 10 + (r[11] - '0');
    CHECK(known_status(code));
    end = find(r, left, "\r\n\r\n");
    CHECK(end != NULL);
    hlen = (size_t)(end - r) + 4;
    cl = find(r, hlen, "\r\nContent-Length: ");
    CHECK(cl != NULL);
    body = (size_t)strtoull(cl + 18, NULL, 10);
    if (code == 503 && (find(r, hlen, "Retry-After: ") == NULL)) {
      /* Only the timestamp running out is a 503 without Retry-After. */
      CHECK(find(r, left, "run out of bits") != NULL);
    }
    if (maybe_head && !(hlen + body == left ||
                        (hlen + body < left && left - hlen - body >= 9 &&
                         !memcmp(r + hlen + body, "HTTP/1.1 ", 9)))) {
      /* A HEAD answer: the headers alone, then the next response. */
      CHECK(hlen == left ||
            (left - hlen >= 9 && !memcmp(r + hlen, "HTTP/1.1 ", 9)));
      off += hlen;
      continue;
    }
    CHECK(hlen + body <= left);
    if (code >= 400 && body > 0)
      CHECK(r[hlen] == '{' && r[hlen + body - 1] == '}');
    off += hlen + body;
  }
}

/* take_output appends what c has to send to *out, as a writer would. */
static void take_output(sf_http_conn *c, char **out, size_t *len, size_t *cap) {
  if (c->out_len == 0)
    return;
  if (*len + c->out_len > *cap) {
    size_t n = *cap ? *cap : 65536;
    while (n < *len + c->out_len)
      n *= 2;
    *out = realloc(*out, n);
    CHECK(*out != NULL);
    *cap = n;
  }
  memcpy(*out + *len, c->out, c->out_len);
  *len += c->out_len;
  sf__http_sent(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  static sf_http_conn conn;
  static char *out;
  static size_t out_cap;
  static int dump = -1;
  size_t out_len = 0, chunk;
  const char *in;
  size_t left;
  int mode;
  uint64_t issued_before;

  if (!ready) {
    setup();
    ready = 1;
  }
  if (size < 2)
    return 0;
  issued_before = atomic_load(&stats->ids_issued);
  mode = data[0] & 3;
  node.lease = NULL;
  lease_flaps = mode == 1 && (data[0] & 8);
  if (mode == 1 || mode == 2) {
    lease_val = mode == 1 ? 5 : -1;
    node.lease = &fuzz_lease;
  }
  clock_ns += NS_PER_MS;
  clock_back_ns = (data[0] & 4) ? 5000 * NS_PER_MS : 0;
  chunk = data[1] ? data[1] : size;
  in = (const char *)data + 2;
  left = size - 2;

  sf__http_init(&conn, &worker);
  while (left > 0 && !sf__http_closing(&conn)) {
    size_t n = left < chunk ? left : chunk;
    size_t used = sf__http_feed(&conn, in, n);
    CHECK(used <= n);
    /* A feed that takes nothing must have output waiting to be sent. */
    CHECK(used > 0 || conn.out_len > 0);
    take_output(&conn, &out, &out_len, &out_cap);
    in += used;
    left -= used;
  }
  take_output(&conn, &out, &out_len, &out_cap);
  sf__http_free(&conn);
  if (dump < 0)
    dump = getenv("FUZZ_HTTP_DUMP") != NULL;
  if (dump && out_len > 0)
    fwrite(out, 1, out_len, stderr);
  check_responses(out, out_len,
                  find((const char *)data + 2, size - 2, "HEAD") != NULL);
  if (lease_flaps)
    CHECK(atomic_load(&stats->ids_issued) == issued_before);
  return 0;
}
