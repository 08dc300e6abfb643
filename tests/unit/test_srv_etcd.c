/*
 * test_srv_etcd.c - the etcd client's pure pieces: base64, and the parsers
 * of etcd's replies, fed the JSON etcd 3.4's gateway sends.
 */
#include "sf_test.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "etcd.h"

static void test_b64_round_trip(void **state) {
  (void)state;
  static const struct {
    const char *raw, *b64;
  } cases[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"/snowflake/machines/7/mark", "L3Nub3dmbGFrZS9tYWNoaW5lcy83L21hcms="},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char enc[64];
    unsigned char dec[64];
    size_t n = strlen(cases[i].raw);
    sf__b64_encode(cases[i].raw, n, enc);
    assert_string_equal(enc, cases[i].b64);
    assert_int_equal(sf__b64_decode(cases[i].b64, dec, sizeof dec), (long)n);
    assert_memory_equal(dec, cases[i].raw, n);
  }
  /* Every byte value survives. */
  unsigned char all[256], back[256];
  char enc[SF_B64_LEN(256)];
  for (int i = 0; i < 256; i++)
    all[i] = (unsigned char)i;
  sf__b64_encode(all, sizeof all, enc);
  assert_int_equal(sf__b64_decode(enc, back, sizeof back), 256);
  assert_memory_equal(all, back, 256);
}

static void test_b64_rejects(void **state) {
  (void)state;
  unsigned char out[16];
  static const char *bad[] = {"Zm9v!", "Zg=x", "Zg===", "Z", "Zm9=v", "Zg="};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(sf__b64_decode(bad[i], out, sizeof out), -1);
  /* Too long for the buffer. */
  assert_int_equal(sf__b64_decode("Zm9vYmFy", out, 5), -1);
  /* White space and '=' inside are refused (OpenSSL's decoder would take
   * them); padding may be left out. */
  static const char *strict[] = {" Zg==", "Zm9v\n", "Zm9v Zg==", "Zg==Zg=="};
  for (size_t i = 0; i < sizeof strict / sizeof strict[0]; i++)
    assert_int_equal(sf__b64_decode(strict[i], out, sizeof out), -1);
  assert_int_equal(sf__b64_decode("Zm9vYg", out, sizeof out), 4);
  assert_memory_equal(out, "foob", 4);
  assert_int_equal(sf__b64_decode("Zm8", out, 2), 2);
  assert_memory_equal(out, "fo", 2);
}

/* Inputs longer than one piece handed to OpenSSL (3 MiB) round-trip. */
static void test_b64_long(void **state) {
  (void)state;
  size_t n = (3u << 20) * 2 + 5;
  unsigned char *raw = malloc(n), *back = malloc(n);
  char *enc = malloc(SF_B64_LEN(n));
  assert_non_null(raw);
  assert_non_null(back);
  assert_non_null(enc);
  for (size_t i = 0; i < n; i++)
    raw[i] = (unsigned char)(i * 7 + (i >> 9));
  sf__b64_encode(raw, n, enc);
  assert_int_equal(strlen(enc), SF_B64_LEN(n) - 1);
  assert_int_equal(sf__b64_decode(enc, back, n), (long)n);
  assert_memory_equal(raw, back, n);
  assert_int_equal(sf__b64_decode(enc, back, n - 1), -1);
  free(raw);
  free(back);
  free(enc);
}

static void test_parse_i64(void **state) {
  (void)state;
  json_t *j = json_loads("{\"ID\":\"7587869227413364226\",\"TTL\":10,"
                         "\"bad\":\"12x\",\"neg\":\"-3\"}",
                         0, NULL);
  assert_non_null(j);
  assert_true(sf__etcd_parse_i64(j, "ID") == INT64_C(7587869227413364226));
  assert_int_equal(sf__etcd_parse_i64(j, "TTL"), 10);
  assert_int_equal(sf__etcd_parse_i64(j, "bad"), 0);
  assert_int_equal(sf__etcd_parse_i64(j, "neg"), -3);
  assert_int_equal(sf__etcd_parse_i64(j, "missing"), 0);
  json_decref(j);
}

static void test_parse_mark_value(void **state) {
  (void)state;
  char b[64];
  sf__b64_encode("1700000000123", 13, b);
  assert_true(sf__etcd_parse_mark_value(b) == INT64_C(1700000000123));
  sf__b64_encode("17x", 3, b);
  assert_int_equal(sf__etcd_parse_mark_value(b), -1);
  assert_int_equal(sf__etcd_parse_mark_value(""), -1);
  assert_int_equal(sf__etcd_parse_mark_value(NULL), -1);
  sf__b64_encode("12345678901234567890", 20, b); /* overflows int64 */
  assert_int_equal(sf__etcd_parse_mark_value(b), -1);
}

/* kv is one {"key":..., "value":...} of a range reply, in b. */
static void kv(char *b, size_t cap, const char *key, const char *value) {
  char k[128], v[128];
  sf__b64_encode(key, strlen(key), k);
  sf__b64_encode(value, strlen(value), v);
  size_t n = strlen(b);
  snprintf(b + n, cap - n,
           "%s{\"key\":\"%s\",\"create_revision\":\"5\",\"mod_revision\":"
           "\"9\",\"version\":\"1\",\"value\":\"%s\"}",
           n > 40 ? "," : "", k, v);
}

static void test_parse_scan(void **state) {
  (void)state;
  char text[4096] = "{\"header\":{\"revision\":\"9\"},\"kvs\":[";
  kv(text, sizeof text, "/p/0", "{\"pid\":1}");
  kv(text, sizeof text, "/p/0/mark", "1700000000000");
  kv(text, sizeof text, "/p/3/mark", "1700000005000");
  kv(text, sizeof text, "/p/5", "x");
  kv(text, sizeof text, "/p/1024", "x");      /* past max_id: ignored */
  kv(text, sizeof text, "/p/2/other", "x");   /* not ours */
  kv(text, sizeof text, "/p/x", "x");         /* not ours */
  kv(text, sizeof text, "/p/4/mark", "junk"); /* bad mark: none */
  kv(text, sizeof text, "/q/6", "x");         /* another prefix */
  strcat(text, "],\"count\":\"9\"}");
  unsigned char taken[128] = {0};
  int64_t mark[1024] = {0};
  sf_etcd_ids ids = {.max_id = 1023, .taken = taken, .mark = mark};
  assert_int_equal(sf__etcd_parse_scan(text, "/p/", &ids), 0);
  assert_int_equal(taken[0], (1u << 0) | (1u << 5));
  for (size_t i = 1; i < sizeof taken; i++)
    assert_int_equal(taken[i], 0);
  assert_true(mark[0] == INT64_C(1700000000000));
  assert_true(mark[3] == INT64_C(1700000005000));
  assert_int_equal(mark[4], 0);
  assert_int_equal(mark[5], 0);
  /* An empty prefix: no kvs at all. */
  memset(taken, 0, sizeof taken);
  assert_int_equal(
      sf__etcd_parse_scan("{\"header\":{\"revision\":\"3\"}}", "/p/", &ids), 0);
  assert_int_equal(taken[0], 0);
  assert_int_equal(sf__etcd_parse_scan("not json", "/p/", &ids), -1);
}

static void test_parse_claim(void **state) {
  (void)state;
  bool won;
  int64_t mark;
  char v[32], text[512];
  sf__b64_encode("1700000009999", 13, v);
  snprintf(text, sizeof text,
           "{\"header\":{},\"succeeded\":true,\"responses\":["
           "{\"response_put\":{\"header\":{}}},"
           "{\"response_range\":{\"header\":{},\"kvs\":[{\"key\":\"eA==\","
           "\"value\":\"%s\"}],\"count\":\"1\"}}]}",
           v);
  assert_int_equal(sf__etcd_parse_claim(text, 7, &won, &mark), 0);
  assert_true(won);
  assert_true(mark == INT64_C(1700000009999));
  /* Won, and no mark stored yet. */
  assert_int_equal(
      sf__etcd_parse_claim("{\"succeeded\":true,\"responses\":[{"
                           "\"response_put\":{}},{\"response_range\":{"
                           "\"header\":{}}}]}",
                           7, &won, &mark),
      0);
  assert_true(won);
  assert_int_equal(mark, 0);
  /* Lost: etcd leaves "succeeded" out when it is false; the failure
   * branch shows the holder key, on another lease. */
  snprintf(
      text, sizeof text,
      "{\"header\":{},\"responses\":["
      "{\"response_range\":{\"kvs\":[{\"key\":\"eA==\",\"lease\":\"8\"}]}},"
      "{\"response_range\":{\"kvs\":[{\"key\":\"eQ==\",\"value\":\"%s\"}]}}]}",
      v);
  assert_int_equal(sf__etcd_parse_claim(text, 7, &won, &mark), 0);
  assert_false(won);
  assert_int_equal(mark, 0);
  /* The key is on our lease: an earlier copy of this claim won (its answer
   * was lost, the transport resent it); the mark is the one it saw. */
  assert_int_equal(sf__etcd_parse_claim(text, 8, &won, &mark), 0);
  assert_true(won);
  assert_true(mark == INT64_C(1700000009999));
  /* Won, but the reply lacks the range: not a claim reply. */
  assert_int_equal(sf__etcd_parse_claim("{\"succeeded\":true}", 7, &won, &mark),
                   -1);
  assert_int_equal(sf__etcd_parse_claim("[]", 7, &won, &mark), -1);
}

static void test_parse_raise(void **state) {
  (void)state;
  bool raised, owned;
  int64_t stored;
  char v[32], text[512];
  /* Raised: the put's reply. */
  assert_int_equal(
      sf__etcd_parse_raise("{\"header\":{},\"succeeded\":true,\"responses\":"
                           "[{\"response_put\":{}}]}",
                           7, &raised, &owned, &stored),
      0);
  assert_true(raised && owned);
  /* Not raised: the holder key on our lease and a mark already as high. */
  sf__b64_encode("1700000009999", 13, v);
  snprintf(
      text, sizeof text,
      "{\"responses\":["
      "{\"response_range\":{\"kvs\":[{\"key\":\"eA==\",\"lease\":\"7\"}]}},"
      "{\"response_range\":{\"kvs\":[{\"key\":\"eQ==\",\"value\":\"%s\"}]}}]}",
      v);
  assert_int_equal(sf__etcd_parse_raise(text, 7, &raised, &owned, &stored), 0);
  assert_false(raised);
  assert_true(owned);
  assert_true(stored == INT64_C(1700000009999));
  /* The same on another lease: fenced out. */
  assert_int_equal(sf__etcd_parse_raise(text, 9, &raised, &owned, &stored), 0);
  assert_false(raised || owned);
  /* No holder key, no mark. */
  assert_int_equal(
      sf__etcd_parse_raise("{\"responses\":[{\"response_range\":{}},"
                           "{\"response_range\":{}}]}",
                           7, &raised, &owned, &stored),
      0);
  assert_false(raised || owned);
  assert_int_equal(stored, 0);
  /* A mark that is not a decimal, a reply without the ranges, not JSON. */
  sf__b64_encode("junk", 4, v);
  snprintf(text, sizeof text,
           "{\"responses\":[{\"response_range\":{}},"
           "{\"response_range\":{\"kvs\":[{\"value\":\"%s\"}]}}]}",
           v);
  assert_int_equal(sf__etcd_parse_raise(text, 7, &raised, &owned, &stored), -1);
  assert_int_equal(
      sf__etcd_parse_raise("{\"header\":{}}", 7, &raised, &owned, &stored), -1);
  assert_int_equal(sf__etcd_parse_raise("[", 7, &raised, &owned, &stored), -1);
}

static void test_endpoints_are_checked(void **state) {
  (void)state;
  static const struct {
    const char *endpoints, *says;
  } bad[] = {
      {"", "no endpoint given"},
      {"127.0.0.1:2379", "not an http:// or https:// URL"},
      {"ftp://etcd:2379", "not an http:// or https:// URL"},
      {"https://etcd:2379", "https needs the TLS settings"},
      {"http://etcd:2379/v3", "a path is not allowed"},
      {"http://:2379", "not a valid URL"},
      {"http://etcd:99999", "not a valid URL"},
      {"http://etcd:2x", "not a valid URL"},
      {"http://[::1", "not a valid URL"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sf_etcd_http *c = (sf_etcd_http *)1;
    char err[256];
    assert_int_equal(
        sf__etcd_http_new(bad[i].endpoints, 1000, NULL, &c, err, sizeof err),
        -1);
    assert_null(c);
    assert_non_null(strstr(err, "ETCD_ENDPOINTS"));
    if (!strstr(err, bad[i].says))
      fail_msg("%s: \"%s\" lacks \"%s\"", bad[i].endpoints, err, bad[i].says);
  }
  sf_etcd_http *c = NULL;
  char err[256];
  assert_int_equal(sf__etcd_http_new("http://a:1, http://[::1]:2,http://b/",
                                     1000, NULL, &c, err, sizeof err),
                   0);
  sf__etcd_http_free(c);
  /* https, once the TLS settings are read (none: the system's CAs). */
  sf_etcd_security none = {0};
  assert_int_equal(
      sf__etcd_security_setup(&none, "https://etcd", err, sizeof err), 0);
  assert_int_equal(sf__etcd_http_new("https://etcd,https://[::1]:2379/", 1000,
                                     NULL, &c, err, sizeof err),
                   0);
  assert_string_equal(sf__etcd_http_url(c), "https://etcd");
  sf__etcd_http_free(c);
  sf__etcd_security_teardown();
}

/* The files' checks; the certificates themselves are tested against a real
 * etcd (tests/integration/test_etcd_tls.py). */
static void test_security_setup_names_the_setting(void **state) {
  (void)state;
  static const struct {
    sf_etcd_security s;
    const char *says;
  } bad[] = {
      {{.cacert = "/nonexistent/ca.pem"},
       "ETCD_CACERT: cannot read \"/nonexistent/ca.pem\": No such file"},
      {{.cacert = "/dev/null"}, "ETCD_CACERT: \"/dev/null\" holds no PEM"},
      {{.cert = "/dev/null"}, "ETCD_CERT and ETCD_KEY go together"},
      {{.cert = "/nonexistent/c.pem", .key = "/dev/null"},
       "ETCD_CERT: cannot read \"/nonexistent/c.pem\""},
      {{.cert = "/dev/null", .key = "/dev/null"},
       "ETCD_CERT: \"/dev/null\" holds no PEM certificate"},
      {{.username = "sf"}, "ETCD_USERNAME needs ETCD_PASSWORD"},
      {{.username = "sf", .password_file = "/nonexistent/pw"},
       "ETCD_PASSWORD_FILE: cannot read \"/nonexistent/pw\""},
      {{.username = "sf", .password_file = "/dev/null"},
       "ETCD_PASSWORD_FILE: \"/dev/null\" must hold one password"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[256] = "";
    assert_int_equal(
        sf__etcd_security_setup(&bad[i].s, "https://e", err, sizeof err), -1);
    if (!strstr(err, bad[i].says))
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, bad[i].says);
    assert_false(sf__etcd_auth_on());
  }
  /* Without an https endpoint, no TLS file is read. */
  char err[256];
  sf_etcd_security ca = {.cacert = "/nonexistent/ca.pem"};
  assert_int_equal(sf__etcd_security_setup(&ca, "http://e", err, sizeof err),
                   0);
  sf__etcd_security_teardown();
}

static void test_auth_body_and_reply(void **state) {
  (void)state;
  char err[256], *body = NULL, *tok = NULL;
  sf_etcd_security s = {.username = "sf", .password = "p\"w"};
  assert_int_equal(sf__etcd_security_setup(&s, "http://e", err, sizeof err), 0);
  assert_true(sf__etcd_auth_on());
  assert_int_equal(sf__etcd_auth_body(&body, err, sizeof err), 0);
  assert_string_equal(body, "{\"name\":\"sf\",\"password\":\"p\\\"w\"}");
  free(body);
  /* etcd 3.4's answers, as its gateway sends them. */
  assert_int_equal(sf__etcd_auth_reply(200,
                                       "{\"header\":{\"revision\":\"1\"},"
                                       "\"token\":\"THvaxEEfAPZiPeUv.18\"}",
                                       &tok, err, sizeof err),
                   SF_ETCD_OK);
  assert_string_equal(tok, "THvaxEEfAPZiPeUv.18");
  free(tok);
  assert_int_equal(sf__etcd_auth_reply(
                       400,
                       "{\"error\":\"etcdserver: authentication failed, "
                       "invalid user ID or password\",\"message\":"
                       "\"etcdserver: authentication failed, invalid user ID "
                       "or password\",\"code\":3}",
                       &tok, err, sizeof err),
                   SF_ETCD_REFUSED);
  assert_null(tok);
  assert_non_null(strstr(err, "etcd refused user \"sf\": HTTP 400: "
                              "etcdserver: authentication failed"));
  assert_non_null(strstr(err, "check ETCD_USERNAME and ETCD_PASSWORD"));
  assert_null(strstr(err, "p\"w"));
  assert_int_equal(sf__etcd_auth_reply(400,
                                       "CommonName of client sending a request "
                                       "against gateway will be ignored and "
                                       "not used as expected",
                                       &tok, err, sizeof err),
                   SF_ETCD_REFUSED);
  assert_non_null(strstr(err, "issue ETCD_CERT without CN"));
  assert_int_equal(
      sf__etcd_auth_reply(400,
                          "{\"error\":\"etcdserver: authentication is not "
                          "enabled\",\"message\":\"etcdserver: authentication "
                          "is not enabled\",\"code\":9}",
                          &tok, err, sizeof err),
      SF_ETCD_OK);
  assert_string_equal(tok, ""); /* requests go without a token */
  free(tok);
  assert_int_equal(sf__etcd_auth_reply(503, "", &tok, err, sizeof err),
                   SF_ETCD_UNREACHABLE);
  sf__etcd_security_teardown();
  assert_false(sf__etcd_auth_on());
}

static void test_token_gone_and_hints(void **state) {
  (void)state;
  static const struct {
    int status;
    const char *body;
    bool gone;
  } replies[] = {
      {401,
       "{\"error\":\"etcdserver: invalid auth token\",\"message\":"
       "\"etcdserver: invalid auth token\",\"code\":16}",
       true},
      {400, "{\"message\":\"etcdserver: revision of auth store is old\"}",
       true},
      {400, "{\"message\":\"etcdserver: user name is empty\"}", true},
      /* keepalive streams its error inside the body */
      {200, "{\"error\":{\"message\":\"etcdserver: invalid auth token\"}}",
       true},
      {403, "{\"message\":\"etcdserver: permission denied\"}", false},
      {200, "{\"kvs\":[]}", false},
      {200, NULL, false},
  };
  for (size_t i = 0; i < sizeof replies / sizeof replies[0]; i++)
    if (sf__etcd_auth_token_gone(replies[i].status, replies[i].body) !=
        replies[i].gone)
      fail_msg("case %zu", i);
  assert_non_null(strstr(sf__etcd_hint("etcdserver: permission denied"),
                         "readwrite on ETCD_PREFIX"));
  assert_non_null(strstr(sf__etcd_hint("etcdserver: user name is empty"),
                         "set ETCD_USERNAME"));
  assert_non_null(
      strstr(sf__etcd_hint("Client sent an HTTP request to an HTTPS server."),
             "https://"));
  assert_string_equal(sf__etcd_hint("etcdserver: requested lease not found"),
                      "");
  assert_string_equal(sf__etcd_hint(NULL), "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_b64_round_trip),
      cmocka_unit_test(test_b64_rejects),
      cmocka_unit_test(test_b64_long),
      cmocka_unit_test(test_parse_i64),
      cmocka_unit_test(test_parse_mark_value),
      cmocka_unit_test(test_parse_scan),
      cmocka_unit_test(test_parse_claim),
      cmocka_unit_test(test_parse_raise),
      cmocka_unit_test(test_endpoints_are_checked),
      cmocka_unit_test(test_security_setup_names_the_setting),
      cmocka_unit_test(test_auth_body_and_reply),
      cmocka_unit_test(test_token_gone_and_hints),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
