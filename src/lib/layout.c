/* layout.c - bit layouts, composing and taking IDs apart, ISO-8601 times. */
#include "sf_internal.h"

#include <string.h>

#define MIN_MACHINE_BITS 0u
#define MAX_MACHINE_BITS 20u
#define MIN_SEQUENCE_BITS 1u
#define MAX_SEQUENCE_BITS 22u
#define MIN_TIMESTAMP_BITS 32u

void sf_layout_default(sf_layout *l) {
  l->epoch_ms = SF_DEFAULT_EPOCH_MS;
  l->machine_bits = SF_DEFAULT_MACHINE_BITS;
  l->sequence_bits = SF_DEFAULT_SEQUENCE_BITS;
}

int sf_layout_check(const sf_layout *l, int64_t now_ms) {
  if (l == NULL)
    return SF_EINVAL;
  /* MIN_MACHINE_BITS is 0: an unsigned width is never below it. */
  if (l->machine_bits > MAX_MACHINE_BITS ||
      l->sequence_bits < MIN_SEQUENCE_BITS ||
      l->sequence_bits > MAX_SEQUENCE_BITS ||
      63u - l->machine_bits - l->sequence_bits < MIN_TIMESTAMP_BITS)
    return SF_EBITS;
  /* Up to year 9999, so epoch + any timestamp fits in an int64_t. */
  if (l->epoch_ms < 0 || l->epoch_ms > SF__MAX_UNIX_MS)
    return SF_EEPOCH;
  if (now_ms >= 0 && l->epoch_ms > now_ms)
    return SF_EEPOCH;
  return SF_OK;
}

uint64_t sf_layout_max_machine(const sf_layout *l) {
  return (UINT64_C(1) << l->machine_bits) - 1;
}

uint64_t sf_layout_max_sequence(const sf_layout *l) {
  return (UINT64_C(1) << l->sequence_bits) - 1;
}

int64_t sf_layout_max_timestamp(const sf_layout *l) {
  unsigned bits = 63u - l->machine_bits - l->sequence_bits;
  return (int64_t)((UINT64_C(1) << bits) - 1);
}

int64_t sf_layout_end_ms(const sf_layout *l) {
  return l->epoch_ms + sf_layout_max_timestamp(l) + 1;
}

uint64_t sf_layout_max_rate(const sf_layout *l) {
  return (sf_layout_max_sequence(l) + 1) * 1000u;
}

int sf_compose(const sf_layout *l, int64_t timestamp, uint64_t machine,
               uint64_t sequence, uint64_t *id) {
  if (timestamp < 0 || timestamp > sf_layout_max_timestamp(l))
    return SF_EOVERFLOW;
  if (machine > sf_layout_max_machine(l))
    return SF_EMACHINE;
  if (sequence > sf_layout_max_sequence(l))
    return SF_ERANGE;
  *id = ((uint64_t)timestamp << (l->machine_bits + l->sequence_bits)) |
        (machine << l->sequence_bits) | sequence;
  return SF_OK;
}

int sf_decode(const sf_layout *l, uint64_t id, sf_parts *out) {
  if (id > (uint64_t)INT64_MAX)
    return SF_ERANGE;
  out->timestamp = (int64_t)(id >> (l->machine_bits + l->sequence_bits));
  out->unix_ms = out->timestamp + l->epoch_ms;
  out->machine_id = (id >> l->sequence_bits) & sf_layout_max_machine(l);
  out->sequence = id & sf_layout_max_sequence(l);
  return SF_OK;
}

int sf_bounds(const sf_layout *l, int64_t unix_ms, uint64_t *min_id,
              uint64_t *max_id) {
  if (unix_ms < l->epoch_ms || unix_ms >= sf_layout_end_ms(l))
    return SF_ERANGE;
  unsigned shift = l->machine_bits + l->sequence_bits;
  uint64_t lo = (uint64_t)(unix_ms - l->epoch_ms) << shift;
  *min_id = lo;
  *max_id = lo | ((UINT64_C(1) << shift) - 1);
  return SF_OK;
}

/* ------------------------------------------------------------------ time */

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil); no timegm, no locale, no time zone. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  unsigned yoe = (unsigned)(y - era * 400);
  unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
  z += 719468;
  int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  unsigned doe = (unsigned)(z - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *p, unsigned v, int n) {
  for (int i = n - 1; i >= 0; i--) {
    p[i] = (char)('0' + v % 10);
    v /= 10;
  }
}

int sf_format_time(int64_t unix_ms, char *buf, size_t len) {
  if (unix_ms < 0 || unix_ms > SF__MAX_UNIX_MS)
    return SF_ERANGE;
  if (len < SF_TIME_BUFSIZE)
    return SF_ENOSPC;
  int64_t days = unix_ms / 86400000;
  int64_t rem = unix_ms % 86400000;
  int64_t y;
  unsigned mo, d;
  civil_from_days(days, &y, &mo, &d);
  unsigned ms = (unsigned)(rem % 1000);
  unsigned secs = (unsigned)(rem / 1000);
  memcpy(buf, "0000-00-00T00:00:00.000Z", SF_TIME_BUFSIZE);
  put_digits(buf, (unsigned)y, 4);
  put_digits(buf + 5, mo, 2);
  put_digits(buf + 8, d, 2);
  put_digits(buf + 11, secs / 3600, 2);
  put_digits(buf + 14, secs / 60 % 60, 2);
  put_digits(buf + 17, secs % 60, 2);
  put_digits(buf + 20, ms, 3);
  return SF_TIME_BUFSIZE - 1;
}

/* Reads n digits at p into *v: 0 or -1. */
static int get_digits(const char *p, int n, unsigned *v) {
  unsigned x = 0;
  for (int i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return -1;
    x = x * 10 + (unsigned)(p[i] - '0');
  }
  *v = x;
  return 0;
}

static int is_leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int sf_parse_time(const char *s, int64_t *unix_ms) {
  if (s == NULL || unix_ms == NULL)
    return SF_EPARSE;
  size_t n = strlen(s);
  if (n > 0 && strspn(s, "0123456789") == n) {
    uint64_t v;
    if (sf_parse_uint(s, (uint64_t)INT64_MAX, &v) != SF_OK)
      return SF_EPARSE;
    *unix_ms = (int64_t)v;
    return SF_OK;
  }
  /* YYYY-MM-DDTHH:MM:SS[.mmm]Z */
  if (n != 20 && n != 24)
    return SF_EPARSE;
  unsigned y, mo, d, h, mi, sec, ms = 0;
  if (get_digits(s, 4, &y) || s[4] != '-' || get_digits(s + 5, 2, &mo) ||
      s[7] != '-' || get_digits(s + 8, 2, &d) || s[10] != 'T' ||
      get_digits(s + 11, 2, &h) || s[13] != ':' || get_digits(s + 14, 2, &mi) ||
      s[16] != ':' || get_digits(s + 17, 2, &sec) || s[n - 1] != 'Z')
    return SF_EPARSE;
  if (n == 24 && (s[19] != '.' || get_digits(s + 20, 3, &ms)))
    return SF_EPARSE;
  static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30,
                                     31, 31, 30, 31, 30, 31};
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
    return SF_EPARSE;
  unsigned dim = mdays[mo - 1] + (mo == 2 && is_leap(y));
  if (d > dim)
    return SF_EPARSE;
  int64_t days = days_from_civil(y, mo, d);
  *unix_ms = ((days * 24 + h) * 60 + mi) * INT64_C(60000) + sec * 1000 + ms;
  return SF_OK;
}
