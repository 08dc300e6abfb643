/*
 * test_srv_http.c - the pure connection core: bytes in, responses out, no
 * sockets. A fake clock makes the generator's answers predictable.
 */
#include "node_fx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"

typedef struct fixture {
  node_fx n;
  sf_http_conn c;
} fixture;

/* fx_new builds a node whose state file's mark is floor_unix_ms (0: none)
 * and one connection. */
static fixture *fx_new(int64_t floor_unix_ms) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  node_fx_init(&f->n, 10000);
  node_fx_floor(&f->n, floor_unix_ms);
  sf__http_init(&f->c, &f->n.w);
  return f;
}

static void fx_free(fixture *f) {
  sf__http_free(&f->c);
  node_fx_free(&f->n);
  free(f);
}

/* feed_all feeds s, draining the output as a writer would, and returns
 * every response byte as a NUL-terminated heap string. */
static char *feed_all(fixture *f, const char *s, size_t len) {
  size_t cap = 1 << 16, n = 0;
  char *out = malloc(cap);
  assert_non_null(out);
  for (;;) {
    size_t used = sf__http_feed(&f->c, s, len);
    if (n + f->c.out_len + 1 > cap) {
      while (n + f->c.out_len + 1 > cap)
        cap *= 2;
      char *bigger = realloc(out, cap);
      assert_non_null(bigger);
      out = bigger;
    }
    memcpy(out + n, f->c.out, f->c.out_len);
    n += f->c.out_len;
    sf__http_sent(&f->c);
    s += used;
    len -= used;
    if (len == 0)
      break;
  }
  out[n] = 0;
  return out;
}

static char *feed_str(fixture *f, const char *s) {
  return feed_all(f, s, strlen(s));
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

static void test_id(void **state) {
  fixture *f = fx_new(0);
  char *out = feed_str(f, "GET /id HTTP/1.1\r\nHost: x\r\n\r\n");
  (void)state;
  assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(out, "Content-Type: application/json\r\n"));
  assert_non_null(strstr(out, "\"machine_id\": 7}"));
  assert_non_null(strstr(out, "{\"id\": "));
  assert_false(sf__http_closing(&f->c));
  free(out);
  fx_free(f);
}

static void test_pipelined_in_order_and_byte_by_byte(void **state) {
  fixture *f = fx_new(0);
  const char *req = "GET /health HTTP/1.1\r\n\r\nGET /nope HTTP/1.1\r\n\r\n"
                    "GET /decode/4198400 HTTP/1.1\r\n\r\n";
  char *all = feed_str(f, req), *one;
  size_t cap = 8192, n = 0;
  (void)state;
  assert_int_equal(count(all, "HTTP/1.1 "), 3);
  assert_true(strstr(all, " 200 OK") < strstr(all, " 404 Not Found"));
  assert_true(strstr(all, " 404 Not Found") < strstr(all, "\"sequence\": 0"));
  assert_non_null(strstr(all, "\"machine_id\": 1, "));
  /* The same bytes one at a time give the same answers (Date aside). */
  one = malloc(cap);
  for (size_t i = 0; i < strlen(req); i++) {
    char *o = feed_all(f, req + i, 1);
    size_t l = strlen(o);
    assert_true(n + l < cap);
    memcpy(one + n, o, l);
    n += l;
    free(o);
  }
  one[n] = 0;
  assert_string_equal(one, all);
  free(one);
  free(all);
  fx_free(f);
}

static void test_head_no_body(void **state) {
  fixture *f = fx_new(0);
  char *out = feed_str(f, "HEAD /health HTTP/1.1\r\n\r\n");
  (void)state;
  assert_non_null(strstr(out, "Content-Length: 2\r\n"));
  assert_int_equal(strcmp(out + strlen(out) - 4, "\r\n\r\n"), 0);
  free(out);
  fx_free(f);
}

typedef struct bad_case {
  const char *req;
  const char *status;
} bad_case;

/* Bytes that are no HTTP/1.x (no method first, a broken HTTP/2 preface)
 * get no answer: the connection just closes. After a request, a bad method
 * is a malformed request: 400. */
static void test_not_http(void **state) {
  static const char *const cases[] = {"\x01\x02garbage\r\n\r\n",
                                      "INVALID CONNECTION PREFACE\r\n\r\n",
                                      "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"};
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fixture *f = fx_new(0);
    char *out = feed_str(f, cases[i]);
    assert_string_equal(out, "");
    assert_true(sf__http_closing(&f->c));
    free(out);
    fx_free(f);
  }
  fixture *f = fx_new(0);
  char *out = feed_str(f, "GET /health HTTP/1.1\r\n\r\nGTE / HTTP/1.1\r\n\r\n");
  assert_non_null(strstr(out, "200 OK"));
  assert_non_null(strstr(out, "400 Bad Request"));
  free(out);
  fx_free(f);
}

static void test_bad_requests(void **state) {
  static char long_url[4000], big_hdr[10000];
  const bad_case cases[] = {
      {"GET /id\x01 HTTP/1.1\r\n\r\n", "400 Bad Request"},
      {"GET /id HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: "
       "3\r\n\r\n",
       "400 Bad Request"},
      {"GET /id HTTP/3.0\r\n\r\n", "505 HTTP Version Not Supported"},
      {long_url, "414 URI Too Long"},
      {big_hdr, "431 Request Header Fields Too Large"},
  };
  (void)state;
  snprintf(long_url, sizeof long_url, "GET /%03000d HTTP/1.1\r\n\r\n", 1);
  snprintf(big_hdr, sizeof big_hdr, "GET / HTTP/1.1\r\nX: %09000d\r\n\r\n", 1);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fixture *f = fx_new(0);
    char *out = feed_str(f, cases[i].req);
    assert_non_null(strstr(out, cases[i].status));
    assert_non_null(strstr(out, "Connection: close\r\n"));
    assert_non_null(strstr(out, "{\"error\": \""));
    assert_true(sf__http_closing(&f->c));
    /* Input after the error is ignored. */
    assert_int_equal(sf__http_feed(&f->c, "GET /id HTTP/1.1\r\n\r\n", 20), 20);
    assert_int_equal(f->c.out_len, 0);
    free(out);
    fx_free(f);
  }
}

static void test_methods_and_params(void **state) {
  fixture *f = fx_new(0);
  char *out = feed_str(f, "POST /id HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"
                          "GET /ids?count=0 HTTP/1.1\r\n\r\n"
                          "GET /ids?count=3&format=string HTTP/1.1\r\n\r\n"
                          "GET /decode/x1 HTTP/1.1\r\n\r\n");
  (void)state;
  assert_non_null(strstr(out, "405 Method Not Allowed"));
  assert_non_null(strstr(out, "Allow: GET, HEAD\r\n"));
  assert_non_null(strstr(out, "count must be an integer in 1..10000"));
  assert_int_equal(count(out, "\"ids\": [\""), 1);
  assert_non_null(strstr(out, "id must be a decimal integer"));
  assert_false(sf__http_closing(&f->c));
  free(out);
  fx_free(f);
}

static void test_http10_closes(void **state) {
  fixture *f = fx_new(0);
  char *out =
      feed_str(f, "GET /health HTTP/1.0\r\n\r\nGET /id HTTP/1.0\r\n\r\n");
  (void)state;
  assert_int_equal(count(out, "HTTP/1.1 200"), 1);
  assert_non_null(strstr(out, "Connection: close\r\n"));
  assert_true(sf__http_closing(&f->c));
  free(out);
  fx_free(f);
}

static void test_output_pauses_parsing(void **state) {
  fixture *f = fx_new(0);
  const char *one = "GET /ids?count=10000 HTTP/1.1\r\n\r\n";
  size_t ol = strlen(one), n = 40;
  char *req = malloc(ol * n + 1), *out;
  size_t used;
  (void)state;
  /* A millisecond per clock read: 400,000 IDs never wait on the generator,
   * which would nap in real time while the fake clock crawls. */
  f->n.clk.step_ns = 1000000;
  for (size_t i = 0; i < n; i++)
    memcpy(req + i * ol, one, ol);
  req[ol * n] = 0;
  used = sf__http_feed(&f->c, req, ol * n);
  assert_true(used < ol * n);
  assert_true(f->c.out_len >= SF_HTTP_OUT_PAUSE);
  sf__http_sent(&f->c);
  out = feed_all(f, req + used, ol * n - used);
  assert_int_equal(count(out, "HTTP/1.1 200 OK"),
                   (int)(n - used / ol)); /* the rest, all answered */
  free(out);
  free(req);
  fx_free(f);
}

/* long_req writes "GET <target> HTTP/1.1" with a request target of exactly
 * url_len bytes: /ids?count=2&pad=xxx... */
static void long_req(char *buf, size_t cap, size_t url_len) {
  static const char head[] = "GET /ids?count=2&pad=";
  size_t pad = url_len - (sizeof head - 1 - 4);
  assert_true(sizeof head - 1 + pad + 32 < cap);
  memcpy(buf, head, sizeof head - 1);
  memset(buf + sizeof head - 1, 'x', pad);
  strcpy(buf + sizeof head - 1 + pad, " HTTP/1.1\r\n\r\n");
}

static void test_buffers_back_inline(void **state) {
  static char req[3000];
  fixture *f = fx_new(0);
  char *out;
  (void)state;
  /* Request targets beyond the inline buffer, up to the 414 limit, are
   * served whole, also when they arrive a byte at a time with the output
   * sent in between; then the connection holds only its inline buffers. */
  long_req(req, sizeof req, SF_HTTP_URL_MAX);
  for (size_t i = 0; req[i]; i++) {
    out = feed_all(f, req + i, 1);
    assert_true(req[i + 1] || strstr(out, "HTTP/1.1 200 OK\r\n"));
    free(out);
  }
  assert_true(f->c.url == f->c.url_inline);
  /* A long target still arriving keeps its heap when the answers before
   * it are sent. */
  strcpy(req, "GET /health HTTP/1.1\r\n\r\n");
  long_req(req + strlen(req), sizeof req - strlen(req), 2 * SF_HTTP_URL_INLINE);
  assert_int_equal(sf__http_feed(&f->c, req, strlen(req) - 16),
                   strlen(req) - 16);
  assert_true(f->c.out_len > 0);
  sf__http_sent(&f->c);
  assert_true(f->c.url != f->c.url_inline);
  out = feed_str(f, req + strlen(req) - 16);
  assert_non_null(strstr(out, "HTTP/1.1 200 OK\r\n"));
  assert_int_equal(count(out, "\"ids\": ["), 1);
  assert_true(f->c.url == f->c.url_inline);
  free(out);
  long_req(req, sizeof req, SF_HTTP_URL_INLINE + 1);
  strcat(req, "GET /health HTTP/1.1\r\n\r\n");
  out = feed_str(f, req);
  assert_int_equal(count(out, "HTTP/1.1 200 OK\r\n"), 2);
  assert_int_equal(count(out, "\"ids\": ["), 1);
  assert_true(strstr(out, "\"ids\": [") < strstr(out, "\r\n\r\nok"));
  assert_true(f->c.url == f->c.url_inline);
  free(out);
  /* An answer larger than the inline output buffer: its heap goes once
   * it is sent. */
  out = feed_str(f, "GET /ids?count=10000 HTTP/1.1\r\n\r\n");
  assert_true(strlen(out) > SF_HTTP_OUT_INLINE);
  assert_true(f->c.out == f->c.out_inline);
  assert_int_equal(f->c.out_cap, SF_HTTP_OUT_INLINE);
  free(out);
  long_req(req, sizeof req, SF_HTTP_URL_MAX + 1);
  out = feed_str(f, req);
  assert_non_null(strstr(out, "414 URI Too Long"));
  assert_true(sf__http_closing(&f->c));
  free(out);
  fx_free(f);
}

static void test_no_lease_is_503(void **state) {
  fixture *f = fx_new(0);
  char *out;
  (void)state;
  node_fx_lease_on(&f->n, -1);
  out = feed_str(f, "GET /id HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
  assert_int_equal(count(out, "503 Service Unavailable"), 2);
  assert_int_equal(count(out, "Retry-After: 1\r\n"), 2);
  assert_int_equal(count(out, "no machine id lease is held"), 2);
  free(out);
  f->n.lease.id = 12;
  out = feed_str(f, "GET /id HTTP/1.1\r\n\r\n");
  assert_non_null(strstr(out, "\"machine_id\": 12}"));
  assert_int_equal(sf_gen_machine_id(f->n.gen), 12);
  free(out);
  fx_free(f);
}

static void test_mark_not_stored_is_503(void **state) {
  /* The lease is held, but etcd's mark for it is behind the clock: the
   * minted IDs are dropped and the answer says why. */
  fixture *f = fx_new(0);
  char *out;
  (void)state;
  node_fx_lease_on(&f->n, 12);
  f->n.lease.mark_ms = SF_DEFAULT_EPOCH_MS + 1000000 - 1;
  out = feed_str(f, "GET /ids?count=3 HTTP/1.1\r\n\r\n");
  assert_non_null(strstr(out, "HTTP/1.1 503 Service Unavailable\r\n"));
  assert_non_null(strstr(out, "Retry-After: 1\r\n"));
  assert_non_null(strstr(out, "high-water mark is not yet stored in etcd"));
  assert_null(strstr(out, "\"ids"));
  assert_int_equal(f->n.kicks, 1);
  assert_int_equal(f->n.stats->ids_dropped, 3);
  free(out);
  fx_free(f);
}

static void test_clock_behind_floor_is_503(void **state) {
  /* The state file's mark is 5.5 s ahead of the clock. */
  fixture *f = fx_new(SF_DEFAULT_EPOCH_MS + 1000000 + 5500);
  char *out;
  (void)state;
  out = feed_str(f, "GET /id HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
  assert_int_equal(count(out, "503 Service Unavailable"), 2);
  assert_int_equal(count(out, "Retry-After: 6\r\n"), 2);
  assert_non_null(strstr(out, "clock is behind"));
  free(out);
  fx_free(f);
}

static void test_u64_dec(void **state) {
  char b[24];
  const uint64_t v[] = {0, 9, 10, 99, 100, 12345, UINT64_MAX};
  const char *s[] = {
      "0", "9", "10", "99", "100", "12345", "18446744073709551615"};
  (void)state;
  for (size_t i = 0; i < 7; i++) {
    size_t n = sf__u64_dec(b, v[i]);
    b[n] = 0;
    assert_string_equal(b, s[i]);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id),
      cmocka_unit_test(test_pipelined_in_order_and_byte_by_byte),
      cmocka_unit_test(test_head_no_body),
      cmocka_unit_test(test_bad_requests),
      cmocka_unit_test(test_not_http),
      cmocka_unit_test(test_methods_and_params),
      cmocka_unit_test(test_http10_closes),
      cmocka_unit_test(test_output_pauses_parsing),
      cmocka_unit_test(test_buffers_back_inline),
      cmocka_unit_test(test_no_lease_is_503),
      cmocka_unit_test(test_mark_not_stored_is_503),
      cmocka_unit_test(test_clock_behind_floor_is_503),
      cmocka_unit_test(test_u64_dec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
