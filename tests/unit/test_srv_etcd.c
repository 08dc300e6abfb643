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
      {"127.0.0.1:2379", "not an http:// URL"},
      {"https://etcd:2379", "https is not supported"},
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
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_b64_round_trip),
      cmocka_unit_test(test_b64_rejects),
      cmocka_unit_test(test_parse_i64),
      cmocka_unit_test(test_parse_mark_value),
      cmocka_unit_test(test_parse_scan),
      cmocka_unit_test(test_parse_claim),
      cmocka_unit_test(test_parse_raise),
      cmocka_unit_test(test_endpoints_are_checked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
