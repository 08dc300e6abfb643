/*
 * test_views.c - the views of an ID: the UUIDv7 view against RFC 9562's
 * version-7 layout and its test vector, the fixed-width strings, their
 * order, time bounds, and the default clock across a suspend.
 */
#include "sf_test.h"

#include <string.h>

#include "../../src/lib/sf_internal.h"

/* RFC 9562 appendix A.6: unix_ts_ms 0x017F22E279B0 (2022-02-22T19:22:22Z),
 * ver 7, rand_a 0xCC3, var 0b10, rand_b 0x18C4DC0C0C07398F. */
static const char rfc_vector[] = "017F22E2-79B0-7CC3-98C4-DC0C0C07398F";
#define RFC_UNIX_MS INT64_C(0x017F22E279B0)
#define RFC_RAND_A 0xCC3u
#define RFC_RAND_B UINT64_C(0x18C4DC0C0C07398F)

static uint64_t be_bits(const uint8_t *u, unsigned from, unsigned n) {
  uint64_t v = 0;
  for (unsigned i = from; i < from + n; i++)
    v = v << 1 | ((u[i / 8] >> (7 - i % 8)) & 1u);
  return v;
}

/* An epoch before the vector's time, so the vector's ms is an ID's. */
static void layout_2020(sf_layout *l) {
  sf_layout_default(l);
  l->epoch_ms = INT64_C(1577836800000);
}

static void test_rfc_vector_fields(void **state) {
  (void)state;
  uint8_t u[16];
  assert_int_equal(sf_uuid_parse(rfc_vector, 36, u), SF_OK);
  /* The field positions of section 5.7, read back bit by bit. */
  assert_int_equal(be_bits(u, 0, 48), RFC_UNIX_MS);
  assert_int_equal(be_bits(u, 48, 4), 7);
  assert_int_equal(be_bits(u, 52, 12), RFC_RAND_A);
  assert_int_equal(be_bits(u, 64, 2), 2);
  assert_int_equal(be_bits(u, 66, 62), RFC_RAND_B);
  char out[SF_UUID_BUFSIZE];
  assert_int_equal(sf_uuid_format(u, out, sizeof out), 36);
  /* Written in lower case, as section 4 recommends. */
  assert_string_equal(out, "017f22e2-79b0-7cc3-98c4-dc0c0c07398f");
  /* Its low 52 bits are random, so it is no ID's view. */
  sf_layout l;
  layout_2020(&l);
  uint64_t id = 5;
  assert_int_equal(sf_uuid_to_id(&l, u, &id), SF_EUUIDBITS);
  assert_int_equal(id, 5);
}

static void test_view_matches_vector_fields(void **state) {
  (void)state;
  sf_layout l;
  layout_2020(&l);
  /* The ID with the vector's time, rand_a as its sequence and the top 10
   * bits of rand_b as its machine id. */
  uint64_t machine = RFC_RAND_B >> 52, id;
  assert_int_equal(
      sf_compose(&l, RFC_UNIX_MS - l.epoch_ms, machine, RFC_RAND_A, &id),
      SF_OK);
  uint8_t u[16];
  assert_int_equal(sf_uuid_from_id(&l, id, u), SF_OK);
  assert_int_equal(be_bits(u, 0, 48), RFC_UNIX_MS);
  assert_int_equal(be_bits(u, 48, 4), 7);
  assert_int_equal(be_bits(u, 52, 12), RFC_RAND_A);
  assert_int_equal(be_bits(u, 64, 2), 2);
  assert_int_equal(be_bits(u, 66, 10), machine);
  assert_int_equal(be_bits(u, 76, 52), 0);
  char out[SF_UUID_BUFSIZE];
  assert_int_equal(sf_view_encode(&l, id, SF_FORMAT_UUID, out, sizeof out), 36);
  /* Equal to the vector up to the machine id's last bit. */
  assert_string_equal(out, "017f22e2-79b0-7cc3-98c0-000000000000");
  assert_memory_equal(out, "017f22e2-79b0-7cc3-98c", 22);
  uint64_t back = 0;
  assert_int_equal(sf_view_parse(&l, out, 36, SF_FORMAT_UUID, &back), SF_OK);
  assert_int_equal(back, id);
}

/* Every view of ids at the layout's extremes gives the ID back. */
static void test_round_trips_at_extremes(void **state) {
  (void)state;
  static const sf_format all[] = {SF_FORMAT_DEC, SF_FORMAT_HEX,
                                  SF_FORMAT_BASE62, SF_FORMAT_BASE32,
                                  SF_FORMAT_UUID};
  static const unsigned widths[][2] = {{10, 12}, {0, 1},  {0, 22}, {20, 1},
                                       {20, 11}, {9, 22}, {1, 12}};
  for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
    sf_layout l;
    sf_layout_default(&l);
    l.machine_bits = widths[w][0];
    l.sequence_bits = widths[w][1];
    assert_int_equal(sf_layout_check(&l, -1), SF_OK);
    int64_t ts_max = sf_layout_max_timestamp(&l);
    /* The UUID's 48-bit time ends in the year 10889. */
    int64_t uuid_max = (INT64_C(1) << 48) - 1 - l.epoch_ms;
    int64_t times[] = {0, 1, ts_max < uuid_max ? ts_max : uuid_max};
    uint64_t ms[] = {0, sf_layout_max_machine(&l)};
    uint64_t ss[] = {0, 1, sf_layout_max_sequence(&l)};
    for (size_t t = 0; t < 3; t++)
      for (size_t m = 0; m < 2; m++)
        for (size_t s = 0; s < 3; s++) {
          uint64_t id;
          assert_int_equal(sf_compose(&l, times[t], ms[m], ss[s], &id), SF_OK);
          for (size_t f = 0; f < 5; f++) {
            char buf[SF_UUID_BUFSIZE];
            int n = sf_view_encode(&l, id, all[f], buf, sizeof buf);
            assert_true(n > 0);
            uint64_t back = ~id;
            int rc = sf_view_parse(&l, buf, (size_t)n, all[f], &back);
            if (rc != SF_OK || back != id)
              fail_msg("layout %u/%u id %llu %s \"%s\": %s", widths[w][0],
                       widths[w][1], (unsigned long long)id,
                       sf_format_name(all[f]), buf, sf_err_name(rc));
          }
        }
    if (ts_max > uuid_max) {
      uint64_t id;
      uint8_t u[16];
      assert_int_equal(sf_compose(&l, uuid_max + 1, 0, 0, &id), SF_OK);
      assert_int_equal(sf_uuid_from_id(&l, id, u), SF_ERANGE);
    }
  }
}

static void test_fixed_widths(void **state) {
  (void)state;
  static const struct {
    sf_format f;
    int width;
    const char *zero, *max;
  } cases[] = {
      {SF_FORMAT_HEX, 16, "0000000000000000", "7fffffffffffffff"},
      {SF_FORMAT_BASE62, 11, "00000000000", "AzL8n0Y58m7"},
      {SF_FORMAT_BASE32, 13, "0000000000000", "7ZZZZZZZZZZZZ"},
  };
  for (size_t i = 0; i < 3; i++) {
    char buf[SF_ID_BUFSIZE];
    assert_int_equal(sf_encode(0, cases[i].f, buf, sizeof buf), cases[i].width);
    assert_string_equal(buf, cases[i].zero);
    assert_int_equal(
        sf_encode((uint64_t)INT64_MAX, cases[i].f, buf, sizeof buf),
        cases[i].width);
    assert_string_equal(buf, cases[i].max);
    /* The width is the width: one byte short is SF_ENOSPC. */
    assert_int_equal(sf_encode(0, cases[i].f, buf, (size_t)cases[i].width),
                     SF_ENOSPC);
  }
  /* Parsing takes them padded or not, and Crockford's letters. */
  static const struct {
    sf_format f;
    const char *s;
  } same[] = {
      {SF_FORMAT_HEX, "3d1d7f778c01000"},  {SF_FORMAT_HEX, "03D1D7F778C01000"},
      {SF_FORMAT_BASE62, "KKauJoWRSC"},    {SF_FORMAT_BASE62, "0KKauJoWRSC"},
      {SF_FORMAT_BASE32, "7MEQYXWC0400"},  {SF_FORMAT_BASE32, "07meqyxwc04oo"},
      {SF_FORMAT_BASE32, "o7MEQYXWC0400"},
  };
  for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
    uint64_t v = 0;
    assert_int_equal(sf_parse(same[i].s, strlen(same[i].s), same[i].f, &v),
                     SF_OK);
    assert_int_equal(v, UINT64_C(275238510129057792));
  }
}

/* Text order is ID order, for every fixed-width view. */
static void test_text_order(void **state) {
  (void)state;
  static const sf_format sorted[] = {SF_FORMAT_HEX, SF_FORMAT_BASE62,
                                     SF_FORMAT_BASE32, SF_FORMAT_UUID};
  sf_layout l;
  sf_layout_default(&l);
  uint64_t x = UINT64_C(0x9E3779B97F4A7C15), prev = 0;
  for (int i = 0; i < 100000; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    uint64_t id = (x >> (i % 63)) & (uint64_t)INT64_MAX;
    /* The UUID orders by time then sequence then machine: compare IDs of
     * one machine only. */
    uint64_t a = id & ~(UINT64_C(0x3ff) << 12), b = prev;
    for (size_t f = 0; f < 4; f++) {
      char sa[SF_UUID_BUFSIZE], sb[SF_UUID_BUFSIZE];
      assert_true(sf_view_encode(&l, a, sorted[f], sa, sizeof sa) > 0);
      assert_true(sf_view_encode(&l, b, sorted[f], sb, sizeof sb) > 0);
      int cmp = strcmp(sa, sb);
      if ((a < b) != (cmp < 0) || (a == b) != (cmp == 0))
        fail_msg("%s: %llu -> %s, %llu -> %s", sf_format_name(sorted[f]),
                 (unsigned long long)a, sa, (unsigned long long)b, sb);
    }
    prev = a;
  }
}

static void test_uuid_errors(void **state) {
  (void)state;
  sf_layout l;
  sf_layout_default(&l);
  static const struct {
    const char *s;
    int want;
  } bad[] = {
      {"", SF_EPARSE},
      {"018c8f1a-0000-7000-8000-00000000000", SF_EPARSE},
      {"018c8f1a-0000-7000-8000-0000000000000", SF_EPARSE},
      {"018c8f1a00000-7000-8000-000000000000", SF_EPARSE},
      {"018c8f1a-0000-7000-8000-00000000000g", SF_EPARSE},
      {"{18c8f1a-0000-7000-8000-000000000000", SF_EPARSE},
      {"018c8f1a-0000-4000-8000-000000000000", SF_EUUIDVERSION},
      {"018c8f1a-0000-7000-c000-000000000000", SF_EUUIDVERSION},
      {"018c8f1a-0000-7000-0000-000000000000", SF_EUUIDVERSION},
      {"018c8f1a-0000-7000-8000-000000000001", SF_EUUIDBITS},
      {"018c8f1a-0000-7000-8008-000000000000", SF_EUUIDBITS},
      /* Before 2024 (the epoch), and past its last millisecond. */
      {"00000000-0000-7000-8000-000000000000", SF_ERANGE},
      {"ffffffff-ffff-7000-8000-000000000000", SF_ERANGE},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 77;
    int rc = sf_view_parse(&l, bad[i].s, strlen(bad[i].s), SF_FORMAT_UUID, &v);
    if (rc != bad[i].want)
      fail_msg("\"%s\": %s, want %s", bad[i].s, sf_err_name(rc),
               sf_err_name(bad[i].want));
    assert_int_equal(v, 77);
  }
  uint64_t v;
  /* Upper case reads the same. */
  assert_int_equal(sf_view_parse(&l, "01900000-0000-7FFF-BFF0-000000000000", 36,
                                 SF_FORMAT_UUID, &v),
                   SF_OK);
  sf_parts p;
  assert_int_equal(sf_decode(&l, v, &p), SF_OK);
  assert_int_equal(p.unix_ms, INT64_C(0x019000000000));
  assert_int_equal(p.sequence, 4095);
  assert_int_equal(p.machine_id, 1023);
  char buf[SF_UUID_BUFSIZE];
  assert_int_equal(sf_view_encode(&l, (uint64_t)INT64_MAX + 1, SF_FORMAT_UUID,
                                  buf, sizeof buf),
                   SF_ERANGE);
  assert_int_equal(sf_view_encode(&l, 1, SF_FORMAT_UUID, buf, 36), SF_ENOSPC);
  assert_int_equal(sf_encode(1, SF_FORMAT_UUID, buf, sizeof buf), SF_EINVAL);
  assert_int_equal(sf_parse("1", 1, SF_FORMAT_UUID, &v), SF_EINVAL);
  assert_int_equal(sf_view_parse(NULL, "1", 1, SF_FORMAT_UUID, &v), SF_EINVAL);
  sf_format f;
  assert_int_equal(sf_format_from_name("uuid", &f), SF_OK);
  assert_int_equal(f, SF_FORMAT_UUID);
  assert_string_equal(sf_format_name(f), "uuid");
}

static void test_format_guess(void **state) {
  (void)state;
  static const struct {
    const char *s;
    sf_format want;
  } cases[] = {
      {"017f22e2-79b0-7cc3-98c4-dc0c0c07398f", SF_FORMAT_UUID},
      {"not-a-uu-idxx-shap-exxxxxxxxxxxxxxxx", SF_FORMAT_DEC},
      {"zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", SF_FORMAT_UUID},
      {"384204886775959552", SF_FORMAT_DEC},
      {"017f22e279b07cc398c4dc0c0c07398f", SF_FORMAT_DEC},
      {"", SF_FORMAT_DEC},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_int_equal(sf_format_guess(cases[i].s, strlen(cases[i].s)),
                     cases[i].want);
}

static void test_bounds(void **state) {
  (void)state;
  sf_layout l;
  sf_layout_default(&l);
  uint64_t lo = 1, hi = 1;
  assert_int_equal(sf_bounds(&l, l.epoch_ms, &lo, &hi), SF_OK);
  assert_int_equal(lo, 0);
  assert_int_equal(hi, (UINT64_C(1) << 22) - 1);
  int64_t t = l.epoch_ms + 123456789;
  assert_int_equal(sf_bounds(&l, t, &lo, &hi), SF_OK);
  /* Every ID of that millisecond, any machine, lies within. */
  uint64_t a, b;
  assert_int_equal(sf_compose(&l, 123456789, 0, 0, &a), SF_OK);
  assert_int_equal(sf_compose(&l, 123456789, 1023, 4095, &b), SF_OK);
  assert_int_equal(lo, a);
  assert_int_equal(hi, b);
  assert_int_equal(sf_compose(&l, 123456788, 1023, 4095, &a), SF_OK);
  assert_int_equal(a + 1, lo);
  /* The last millisecond: 2093-09-06T15:47:35.551Z. */
  int64_t end = sf_layout_end_ms(&l);
  assert_int_equal(end, l.epoch_ms + (INT64_C(1) << 41));
  assert_int_equal(sf_bounds(&l, end - 1, &lo, &hi), SF_OK);
  assert_int_equal(hi, (uint64_t)INT64_MAX);
  lo = hi = 9;
  assert_int_equal(sf_bounds(&l, end, &lo, &hi), SF_ERANGE);
  assert_int_equal(sf_bounds(&l, l.epoch_ms - 1, &lo, &hi), SF_ERANGE);
  assert_int_equal(lo, 9);
  assert_int_equal(hi, 9);
}

/* ------------------------------------------------- the default clock */

static int64_t fake_wall_ns, fake_boot_ns, fake_mono_ns;
static int64_t read_fake_wall(void) {
  return fake_wall_ns;
}
static int64_t read_fake_boot(void) {
  return fake_boot_ns;
}
static int64_t read_fake_mono(void) {
  return fake_mono_ns;
}

/* A machine suspended for an hour: the wall clock and CLOCK_BOOTTIME count
 * the hour, CLOCK_MONOTONIC does not. Built on CLOCK_BOOTTIME, the default
 * clock keeps the time of day; on CLOCK_MONOTONIC it would be an hour
 * behind, and every ID after the resume would carry a time an hour ago. */
static void test_default_clock_counts_suspend(void **state) {
  (void)state;
  assert_int_equal(SF__STEADY_CLOCK, CLOCK_BOOTTIME);
  const int64_t hour = INT64_C(3600000000000);
  fake_wall_ns = at_ms(1000000);
  fake_boot_ns = fake_mono_ns = INT64_C(5000000000);
  sf__clock_set_source(read_fake_wall, read_fake_boot);
  assert_int_equal(sf_clock_monotonic(NULL), fake_wall_ns);

  /* Generate, suspend for an hour, resume, generate: the second ID's time
   * is the wall time after the resume. */
  sf_config c;
  sf_config_init(&c);
  c.machine_id = 3;
  sf_gen *g;
  assert_int_equal(sf_gen_new(&c, &g), SF_OK);
  uint64_t before, after;
  assert_int_equal(sf_gen_next(g, &before, NULL), SF_OK);
  fake_wall_ns += hour;
  fake_boot_ns += hour;
  assert_int_equal(sf_gen_next(g, &after, NULL), SF_OK);
  sf_parts p;
  sf_decode(sf_gen_layout(g), after, &p);
  assert_int_equal(p.unix_ms, fake_wall_ns / NS_PER_MS);
  assert_true(after > before);
  sf_gen_free(g);

  /* The same suspend on CLOCK_MONOTONIC: an hour behind the wall. */
  fake_wall_ns = at_ms(1000000);
  fake_mono_ns = INT64_C(5000000000);
  sf__clock_set_source(read_fake_wall, read_fake_mono);
  fake_wall_ns += hour;
  assert_int_equal(fake_wall_ns - sf_clock_monotonic(NULL), hour);

  /* Back to the kernel's clocks: within a second of the wall clock. */
  sf__clock_set_source(NULL, NULL);
  int64_t d = sf_clock_monotonic(NULL) - sf_clock_wall(NULL);
  assert_true(d > -INT64_C(1000000000) && d < INT64_C(1000000000));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc_vector_fields),
      cmocka_unit_test(test_view_matches_vector_fields),
      cmocka_unit_test(test_round_trips_at_extremes),
      cmocka_unit_test(test_fixed_widths),
      cmocka_unit_test(test_text_order),
      cmocka_unit_test(test_uuid_errors),
      cmocka_unit_test(test_format_guess),
      cmocka_unit_test(test_bounds),
      cmocka_unit_test(test_default_clock_counts_suspend),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
