/* test_encode.c - text encodings both ways, and strict integer parsing. */
#include "sf_test.h"

#include <string.h>

static const sf_format formats[] = {SF_FORMAT_DEC, SF_FORMAT_HEX,
                                    SF_FORMAT_BASE62, SF_FORMAT_BASE32};

static const struct {
  uint64_t id;
  const char *dec, *hex, *b62, *b32;
} vectors[] = {
    /* All but decimal are zero-padded to 16, 11 and 13 digits. */
    {0, "0", "0000000000000000", "00000000000", "0000000000000"},
    {1, "1", "0000000000000001", "00000000001", "0000000000001"},
    {31, "31", "000000000000001f", "0000000000V", "000000000000Z"},
    {32, "32", "0000000000000020", "0000000000W", "0000000000010"},
    {61, "61", "000000000000003d", "0000000000z", "000000000001X"},
    {62, "62", "000000000000003e", "00000000010", "000000000001Y"},
    {UINT64_C(275238510129057792), "275238510129057792", "03d1d7f778c01000",
     "0KKauJoWRSC", "07MEQYXWC0400"},
    {(uint64_t)INT64_MAX, "9223372036854775807", "7fffffffffffffff",
     "AzL8n0Y58m7", "7ZZZZZZZZZZZZ"},
};

static void test_vectors(void **state) {
  (void)state;
  char buf[SF_ID_BUFSIZE];
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
    const char *want[4] = {vectors[i].dec, vectors[i].hex, vectors[i].b62,
                           vectors[i].b32};
    for (size_t f = 0; f < 4; f++) {
      int n = sf_encode(vectors[i].id, formats[f], buf, sizeof buf);
      assert_int_equal(n, (int)strlen(want[f]));
      assert_string_equal(buf, want[f]);
      uint64_t back = 1;
      assert_int_equal(sf_parse(buf, (size_t)n, formats[f], &back), SF_OK);
      assert_int_equal(back, vectors[i].id);
    }
  }
}

static void test_round_trips(void **state) {
  (void)state;
  char buf[SF_ID_BUFSIZE];
  uint64_t x = UINT64_C(0x9E3779B97F4A7C15);
  for (int i = 0; i < 200000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t id = (x >> (i % 64)) & (uint64_t)INT64_MAX;
    for (size_t f = 0; f < 4; f++) {
      int n = sf_encode(id, formats[f], buf, sizeof buf);
      assert_true(n > 0);
      uint64_t back;
      assert_int_equal(sf_parse(buf, (size_t)n, formats[f], &back), SF_OK);
      assert_int_equal(back, id);
    }
  }
}

static void test_encode_errors(void **state) {
  (void)state;
  char buf[SF_ID_BUFSIZE];
  /* 19 digits need 20 bytes with the NUL. */
  assert_int_equal(sf_encode((uint64_t)INT64_MAX, SF_FORMAT_DEC, buf, 19),
                   SF_ENOSPC);
  assert_int_equal(sf_encode((uint64_t)INT64_MAX, SF_FORMAT_DEC, buf, 20), 19);
  assert_int_equal(sf_encode(0, SF_FORMAT_HEX, buf, 16), SF_ENOSPC);
  assert_int_equal(sf_encode(0, SF_FORMAT_HEX, buf, 17), 16);
  assert_int_equal(sf_encode(0, (sf_format)9, buf, sizeof buf), SF_EINVAL);
  /* Every ID fits SF_ID_BUFSIZE in every format. */
  for (size_t f = 0; f < 4; f++)
    assert_true(sf_encode(UINT64_MAX, formats[f], buf, sizeof buf) > 0);
}

static void test_parse_errors(void **state) {
  (void)state;
  static const struct {
    sf_format f;
    const char *s;
    int want;
  } bad[] = {
      {SF_FORMAT_DEC, "", SF_EPARSE},
      {SF_FORMAT_DEC, "-1", SF_EPARSE},
      {SF_FORMAT_DEC, "+1", SF_EPARSE},
      {SF_FORMAT_DEC, " 1", SF_EPARSE},
      {SF_FORMAT_DEC, "1 ", SF_EPARSE},
      {SF_FORMAT_DEC, "12a", SF_EPARSE},
      {SF_FORMAT_DEC, "9223372036854775808", SF_ERANGE},
      {SF_FORMAT_DEC, "18446744073709551615", SF_ERANGE},
      {SF_FORMAT_DEC, "99999999999999999999999999", SF_ERANGE},
      {SF_FORMAT_DEC, "99999999999999999999999999x", SF_EPARSE},
      {SF_FORMAT_HEX, "0x10", SF_EPARSE},
      {SF_FORMAT_HEX, "g", SF_EPARSE},
      {SF_FORMAT_HEX, "8000000000000000", SF_ERANGE},
      {SF_FORMAT_HEX, "", SF_EPARSE},
      {SF_FORMAT_BASE62, "AzL8n0Y58m8", SF_ERANGE},
      {SF_FORMAT_BASE62, "-", SF_EPARSE},
      {SF_FORMAT_BASE62, "a_b", SF_EPARSE},
      {SF_FORMAT_BASE32, "U", SF_EPARSE},
      {SF_FORMAT_BASE32, "8000000000000", SF_ERANGE},
      {SF_FORMAT_BASE32, "*", SF_EPARSE},
      {SF_FORMAT_BASE32, "1-2", SF_EPARSE},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 77;
    int rc = sf_parse(bad[i].s, strlen(bad[i].s), bad[i].f, &v);
    if (rc != bad[i].want)
      fail_msg("sf_parse(\"%s\", %s) = %s, want %s", bad[i].s,
               sf_format_name(bad[i].f), sf_err_name(rc),
               sf_err_name(bad[i].want));
    assert_int_equal(v, 77);
  }
  uint64_t v;
  /* Exactly len bytes: a NUL inside is a bad digit, trailing bytes ignored. */
  assert_int_equal(sf_parse("12\0"
                            "3",
                            4, SF_FORMAT_DEC, &v),
                   SF_EPARSE);
  assert_int_equal(sf_parse("123456", 3, SF_FORMAT_DEC, &v), SF_OK);
  assert_int_equal(v, 123);
  assert_int_equal(sf_parse(NULL, 0, SF_FORMAT_DEC, &v), SF_EPARSE);
  assert_int_equal(sf_parse("1", 1, (sf_format)9, &v), SF_EINVAL);
}

static void test_base32_crockford(void **state) {
  (void)state;
  uint64_t a, b;
  /* Case folds; I and L read as 1, O as 0. */
  assert_int_equal(sf_parse("7meqyxwc0400", 12, SF_FORMAT_BASE32, &a), SF_OK);
  assert_int_equal(a, UINT64_C(275238510129057792));
  assert_int_equal(sf_parse("1O", 2, SF_FORMAT_BASE32, &a), SF_OK);
  assert_int_equal(sf_parse("I0", 2, SF_FORMAT_BASE32, &b), SF_OK);
  assert_int_equal(a, 32);
  assert_int_equal(b, 32);
  assert_int_equal(sf_parse("l0", 2, SF_FORMAT_BASE32, &b), SF_OK);
  assert_int_equal(b, 32);
  /* Hex reads either case, base62 is case sensitive. */
  assert_int_equal(sf_parse("FF", 2, SF_FORMAT_HEX, &a), SF_OK);
  assert_int_equal(a, 255);
  assert_int_equal(sf_parse("a", 1, SF_FORMAT_BASE62, &a), SF_OK);
  assert_int_equal(sf_parse("A", 1, SF_FORMAT_BASE62, &b), SF_OK);
  assert_int_equal(a, 36);
  assert_int_equal(b, 10);
}

static void test_format_names(void **state) {
  (void)state;
  static const char *const names[] = {"dec", "hex", "base62", "base32"};
  for (size_t i = 0; i < 4; i++) {
    sf_format f;
    assert_int_equal(sf_format_from_name(names[i], &f), SF_OK);
    assert_int_equal(f, formats[i]);
    assert_string_equal(sf_format_name(f), names[i]);
  }
  sf_format f;
  assert_int_equal(sf_format_from_name("DEC", &f), SF_EPARSE);
  assert_int_equal(sf_format_from_name("", &f), SF_EPARSE);
  assert_int_equal(sf_format_from_name("base64", &f), SF_EPARSE);
  assert_int_equal(sf_format_from_name(NULL, &f), SF_EPARSE);
}

static void test_parse_uint(void **state) {
  (void)state;
  uint64_t v = 5;
  assert_int_equal(sf_parse_uint("0", 0, &v), SF_OK);
  assert_int_equal(v, 0);
  assert_int_equal(sf_parse_uint("1023", 1023, &v), SF_OK);
  assert_int_equal(v, 1023);
  assert_int_equal(sf_parse_uint("007", 1023, &v), SF_OK);
  assert_int_equal(v, 7);
  assert_int_equal(sf_parse_uint("18446744073709551615", UINT64_MAX, &v),
                   SF_OK);
  assert_int_equal(v, UINT64_MAX);
  v = 5;
  assert_int_equal(sf_parse_uint("1024", 1023, &v), SF_ERANGE);
  assert_int_equal(sf_parse_uint("1", 0, &v), SF_ERANGE);
  assert_int_equal(sf_parse_uint("18446744073709551616", UINT64_MAX, &v),
                   SF_ERANGE);
  assert_int_equal(sf_parse_uint("", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint("-1", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint("+1", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint(" 1", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint("1 ", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint("0x1", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint("99999999999999999999x", 10, &v), SF_EPARSE);
  assert_int_equal(sf_parse_uint(NULL, 10, &v), SF_EPARSE);
  assert_int_equal(v, 5);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vectors),
      cmocka_unit_test(test_round_trips),
      cmocka_unit_test(test_encode_errors),
      cmocka_unit_test(test_parse_errors),
      cmocka_unit_test(test_base32_crockford),
      cmocka_unit_test(test_format_names),
      cmocka_unit_test(test_parse_uint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
