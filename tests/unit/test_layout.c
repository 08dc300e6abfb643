/* test_layout.c - layouts, seed-compatible IDs, decoding, times, errors. */
#include "sf_test.h"

#include <string.h>

/* (ms since epoch, machine, sequence) -> the seed's number,
 * (ms << 22) | (machine << 12) | sequence. */
static const struct {
  int64_t ms;
  uint64_t machine, seq, id;
} seed_vectors[] = {
    {0, 0, 0, 0},
    {0, 0, 1, 1},
    {0, 1, 0, 4096},
    {1, 0, 0, 4194304},
    {0, 1023, 4095, 4194303},
    {65621974499, 1, 0, UINT64_C(275238510129057792)}, /* the seed README's */
    {65621974499, 1, 4095, UINT64_C(275238510129061887)},
    {INT64_C(2199023255551), 1023, 4095, (uint64_t)INT64_MAX},
    {INT64_C(1000000000), 9, 77,
     (UINT64_C(1000000000) << 22) | (9u << 12) | 77},
};

static void test_seed_vectors(void **state) {
  (void)state;
  sf_layout l;
  sf_layout_default(&l);
  for (size_t i = 0; i < sizeof seed_vectors / sizeof seed_vectors[0]; i++) {
    uint64_t id = 0;
    assert_int_equal(sf_compose(&l, seed_vectors[i].ms, seed_vectors[i].machine,
                                seed_vectors[i].seq, &id),
                     SF_OK);
    assert_int_equal(id, seed_vectors[i].id);
    sf_parts p;
    assert_int_equal(sf_decode(&l, id, &p), SF_OK);
    assert_int_equal(p.timestamp, seed_vectors[i].ms);
    assert_int_equal(p.unix_ms, seed_vectors[i].ms + SF_DEFAULT_EPOCH_MS);
    assert_int_equal(p.machine_id, seed_vectors[i].machine);
    assert_int_equal(p.sequence, seed_vectors[i].seq);
  }
}

static void test_default_layout(void **state) {
  (void)state;
  sf_layout l;
  sf_layout_default(&l);
  assert_int_equal(l.epoch_ms, INT64_C(1704067200000));
  assert_int_equal(l.machine_bits, 10);
  assert_int_equal(l.sequence_bits, 12);
  assert_int_equal(sf_layout_max_machine(&l), 1023);
  assert_int_equal(sf_layout_max_sequence(&l), 4095);
  assert_int_equal(sf_layout_max_timestamp(&l), INT64_C(2199023255551));
  assert_int_equal(sf_layout_max_rate(&l), 4096000);
  assert_int_equal(sf_layout_check(&l, INT64_C(1800000000000)), SF_OK);
}

static void test_layout_errors(void **state) {
  (void)state;
  static const struct {
    unsigned mb, sb;
    int want;
  } widths[] = {
      {0, 1, SF_OK},      {20, 11, SF_OK},    {0, 22, SF_OK},
      {9, 22, SF_OK},     {21, 1, SF_EBITS},  {0, 0, SF_EBITS},
      {0, 23, SF_EBITS},  {20, 12, SF_EBITS}, {10, 22, SF_EBITS},
      {100, 1, SF_EBITS}, {1, 100, SF_EBITS},
  };
  sf_layout l;
  sf_layout_default(&l);
  for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
    l.machine_bits = widths[i].mb;
    l.sequence_bits = widths[i].sb;
    assert_int_equal(sf_layout_check(&l, -1), widths[i].want);
  }
  sf_layout_default(&l);
  int64_t now = INT64_C(1800000000000);
  l.epoch_ms = now + 1; /* in the future */
  assert_int_equal(sf_layout_check(&l, now), SF_EEPOCH);
  assert_int_equal(sf_layout_check(&l, -1), SF_OK); /* now not checked */
  l.epoch_ms = now;
  assert_int_equal(sf_layout_check(&l, now), SF_OK);
  l.epoch_ms = -1; /* before 1970 */
  assert_int_equal(sf_layout_check(&l, now), SF_EEPOCH);
  l.epoch_ms = INT64_C(253402300800000); /* past 9999 */
  assert_int_equal(sf_layout_check(&l, -1), SF_EEPOCH);
  assert_int_equal(sf_layout_check(NULL, now), SF_EINVAL);
}

static void test_compose_errors(void **state) {
  (void)state;
  sf_layout l;
  sf_layout_default(&l);
  uint64_t id = 42;
  assert_int_equal(sf_compose(&l, -1, 0, 0, &id), SF_EOVERFLOW);
  assert_int_equal(sf_compose(&l, INT64_C(2199023255552), 0, 0, &id),
                   SF_EOVERFLOW);
  assert_int_equal(sf_compose(&l, 0, 1024, 0, &id), SF_EMACHINE);
  assert_int_equal(sf_compose(&l, 0, 0, 4096, &id), SF_ERANGE);
  assert_int_equal(id, 42); /* untouched */
  sf_parts p;
  assert_int_equal(sf_decode(&l, (uint64_t)INT64_MAX + 1, &p), SF_ERANGE);
  assert_int_equal(sf_decode(&l, UINT64_MAX, &p), SF_ERANGE);
}

static void test_custom_layout(void **state) {
  (void)state;
  sf_layout l = {.epoch_ms = 0, .machine_bits = 0, .sequence_bits = 22};
  assert_int_equal(sf_layout_check(&l, -1), SF_OK);
  assert_int_equal(sf_layout_max_machine(&l), 0);
  assert_int_equal(sf_layout_max_rate(&l), UINT64_C(4194304000));
  uint64_t id;
  assert_int_equal(sf_compose(&l, 5, 0, 7, &id), SF_OK);
  assert_int_equal(id, (UINT64_C(5) << 22) | 7);
  assert_int_equal(sf_compose(&l, 5, 1, 7, &id), SF_EMACHINE);
  sf_parts p;
  assert_int_equal(sf_decode(&l, id, &p), SF_OK);
  assert_int_equal(p.unix_ms, 5);
  assert_int_equal(p.machine_id, 0);
  assert_int_equal(p.sequence, 7);
}

static void test_strerror(void **state) {
  (void)state;
  assert_string_equal(sf_strerror(SF_OK), "success");
  assert_string_equal(sf_err_name(SF_ECLOCKBACK), "SF_ECLOCKBACK");
  assert_string_equal(sf_err_name(SF_EINVAL), "SF_EINVAL");
  assert_string_equal(sf_err_name(SF_ENOMEM), "SF_ENOMEM");
  assert_string_equal(sf_strerror(SF_EMACHINE),
                      "machine id out of range for the layout");
  assert_string_equal(sf_strerror(-1000), "unknown error");
  assert_string_equal(sf_strerror(5), "unknown error");
  /* Every code is distinct and named. */
  int codes[] = {SF_EINVAL,    SF_EMACHINE,   SF_EEPOCH, SF_EBITS,
                 SF_EOVERFLOW, SF_ECLOCKBACK, SF_ESTATE, SF_EPARSE,
                 SF_ERANGE,    SF_ENOSPC,     SF_ENOMEM};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    assert_true(codes[i] < 0);
    assert_string_not_equal(sf_strerror(codes[i]), "unknown error");
    for (size_t j = 0; j < i; j++)
      assert_int_not_equal(codes[i], codes[j]);
  }
}

static const struct {
  int64_t ms;
  const char *iso;
} times[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {INT64_C(1704067200000), "2024-01-01T00:00:00.000Z"},
    {INT64_C(1767323045678), "2026-01-02T03:04:05.678Z"},
    {INT64_C(951782400000), "2000-02-29T00:00:00.000Z"},
    {INT64_C(4107542399999), "2100-02-28T23:59:59.999Z"},
    {INT64_C(4107542400000), "2100-03-01T00:00:00.000Z"},
    {INT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
};

static void test_time_format_parse(void **state) {
  (void)state;
  char buf[SF_TIME_BUFSIZE];
  for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
    assert_int_equal(sf_format_time(times[i].ms, buf, sizeof buf), 24);
    assert_string_equal(buf, times[i].iso);
    int64_t back = -1;
    assert_int_equal(sf_parse_time(times[i].iso, &back), SF_OK);
    assert_int_equal(back, times[i].ms);
  }
  /* Every day of 1970..2100 at noon round trips. */
  for (int64_t d = 0; d < 47847; d++) {
    int64_t ms = d * 86400000 + 43200123;
    int64_t back;
    assert_int_equal(sf_format_time(ms, buf, sizeof buf), 24);
    assert_int_equal(sf_parse_time(buf, &back), SF_OK);
    assert_int_equal(back, ms);
  }
  int64_t v;
  assert_int_equal(sf_parse_time("2024-01-01T00:00:00Z", &v), SF_OK);
  assert_int_equal(v, SF_DEFAULT_EPOCH_MS);
  assert_int_equal(sf_parse_time("1704067200000", &v), SF_OK);
  assert_int_equal(v, SF_DEFAULT_EPOCH_MS);
  assert_int_equal(sf_parse_time("0", &v), SF_OK);
  assert_int_equal(v, 0);

  assert_int_equal(sf_format_time(-1, buf, sizeof buf), SF_ERANGE);
  assert_int_equal(sf_format_time(INT64_C(253402300800000), buf, sizeof buf),
                   SF_ERANGE);
  assert_int_equal(sf_format_time(0, buf, 24), SF_ENOSPC);
}

static void test_time_parse_errors(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",
      " 2024-01-01T00:00:00Z",
      "2024-01-01T00:00:00Z ",
      "2024-01-01 00:00:00Z",
      "2024-01-01T00:00:00",
      "2024-01-01T00:00:00.000",
      "2024-01-01T00:00:00.00Z",
      "2024-01-01T00:00:00.0000Z",
      "2024-01-01T00:00:00+00:00",
      "2024-13-01T00:00:00Z",
      "2024-00-01T00:00:00Z",
      "2024-02-30T00:00:00Z",
      "2023-02-29T00:00:00Z",
      "2100-02-29T00:00:00Z",
      "2024-01-32T00:00:00Z",
      "2024-01-01T24:00:00Z",
      "2024-01-01T00:60:00Z",
      "2024-01-01T00:00:60Z",
      "1969-12-31T23:59:59Z",
      "+1704067200000",
      "-1",
      "1e12",
      "99999999999999999999",
      "2024-1-01T00:00:00Z",
      "2024-01-01t00:00:00z",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t v = 7;
    if (sf_parse_time(bad[i], &v) != SF_EPARSE)
      fail_msg("sf_parse_time accepted \"%s\"", bad[i]);
    assert_int_equal(v, 7);
  }
  int64_t v;
  assert_int_equal(sf_parse_time(NULL, &v), SF_EPARSE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seed_vectors),
      cmocka_unit_test(test_default_layout),
      cmocka_unit_test(test_layout_errors),
      cmocka_unit_test(test_compose_errors),
      cmocka_unit_test(test_custom_layout),
      cmocka_unit_test(test_strerror),
      cmocka_unit_test(test_time_format_parse),
      cmocka_unit_test(test_time_parse_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
