/*
 * uuid.c - the UUIDv7 view of an ID (RFC 9562 section 5.7), and the views
 * of every format behind one pair of functions.
 *
 * The 74 bits a UUIDv7 leaves free (rand_a, 12, then rand_b, 62) hold the
 * ID's sequence then its machine id from the top, the rest zero (see
 * snowflake.h for why zero). The sequence right after the timestamp is
 * section 6.2's method 1 (a dedicated counter), so one node's UUIDs sort as
 * its IDs do.
 */
#include "sf_internal.h"

#include <string.h>

#define FREE_BITS 74u /* rand_a + rand_b */
#define RAND_B_BITS 62u
#define RAND_B_MASK ((UINT64_C(1) << RAND_B_BITS) - 1)
#define UUID_TEXT_LEN 36
#define UNIX_TS_BITS 48u

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static uint64_t get_be64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | p[i];
  return v;
}

/* The counter (sequence, then machine id) and how far below the top of the
 * 74 free bits it ends. Valid layouts keep it at most 42 bits wide. */
static unsigned counter_shift(const sf_layout *l) {
  return FREE_BITS - (l->sequence_bits + l->machine_bits);
}

int sf_uuid_from_id(const sf_layout *l, uint64_t id, uint8_t uuid[16]) {
  sf_parts p;
  /* A layout with a wide timestamp can outrun unix_ts_ms's 48 bits (in the
   * year 10889). */
  if (sf_decode(l, id, &p) != SF_OK || (uint64_t)p.unix_ms >> UNIX_TS_BITS != 0)
    return SF_ERANGE;
  uint64_t counter = p.sequence << l->machine_bits | p.machine_id;
  unsigned shift = counter_shift(l);
  uint64_t rand_a, rand_b;
  if (shift >= RAND_B_BITS) {
    rand_a = counter << (shift - RAND_B_BITS);
    rand_b = 0;
  } else {
    rand_a = counter >> (RAND_B_BITS - shift);
    rand_b = (counter << shift) & RAND_B_MASK;
  }
  uint64_t hi = (uint64_t)p.unix_ms << 16 | UINT64_C(7) << 12 | rand_a;
  uint64_t lo = UINT64_C(2) << 62 | rand_b;
  put_be64(uuid, hi);
  put_be64(uuid + 8, lo);
  return SF_OK;
}

int sf_uuid_to_id(const sf_layout *l, const uint8_t uuid[16], uint64_t *id) {
  uint64_t hi = get_be64(uuid), lo = get_be64(uuid + 8);
  if ((hi >> 12 & 0xf) != 7 || lo >> 62 != 2)
    return SF_EUUIDVERSION;
  uint64_t rand_a = hi & 0xfff, rand_b = lo & RAND_B_MASK;
  unsigned shift = counter_shift(l);
  uint64_t counter;
  if (shift >= RAND_B_BITS) {
    uint64_t low = (UINT64_C(1) << (shift - RAND_B_BITS)) - 1;
    if (rand_b != 0 || (rand_a & low) != 0)
      return SF_EUUIDBITS;
    counter = rand_a >> (shift - RAND_B_BITS);
  } else {
    if ((rand_b & ((UINT64_C(1) << shift) - 1)) != 0)
      return SF_EUUIDBITS;
    counter = rand_a << (RAND_B_BITS - shift) | rand_b >> shift;
  }
  int64_t unix_ms = (int64_t)(hi >> 16);
  int64_t ts = unix_ms - l->epoch_ms;
  uint64_t machine = counter & sf_layout_max_machine(l);
  uint64_t sequence = counter >> l->machine_bits;
  if (ts < 0 || ts > sf_layout_max_timestamp(l))
    return SF_ERANGE;
  return sf_compose(l, ts, machine, sequence, id);
}

static const char hex_digits[] = "0123456789abcdef";

static int is_hyphen_at(size_t i) {
  return i == 8 || i == 13 || i == 18 || i == 23;
}

int sf_uuid_format(const uint8_t uuid[16], char *buf, size_t len) {
  if (len < SF_UUID_BUFSIZE)
    return SF_ENOSPC;
  char *p = buf;
  for (size_t i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10)
      *p++ = '-';
    *p++ = hex_digits[uuid[i] >> 4];
    *p++ = hex_digits[uuid[i] & 0xf];
  }
  *p = '\0';
  return UUID_TEXT_LEN;
}

static int hex_value(unsigned char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  c |= 0x20; /* ASCII letters to lower case; nothing else maps to a-f */
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  return -1;
}

int sf_uuid_parse(const char *s, size_t len, uint8_t uuid[16]) {
  if (s == NULL || len != UUID_TEXT_LEN)
    return SF_EPARSE;
  uint8_t out[16];
  size_t n = 0;
  for (size_t i = 0; i < UUID_TEXT_LEN; i++) {
    if (is_hyphen_at(i)) {
      if (s[i] != '-')
        return SF_EPARSE;
      continue;
    }
    int d = hex_value((unsigned char)s[i]);
    if (d < 0)
      return SF_EPARSE;
    if (n % 2 == 0)
      out[n / 2] = (uint8_t)(d << 4);
    else
      out[n / 2] |= (uint8_t)d;
    n++;
  }
  memcpy(uuid, out, sizeof out);
  return SF_OK;
}

sf_format sf_format_guess(const char *s, size_t len) {
  if (s == NULL || len != UUID_TEXT_LEN)
    return SF_FORMAT_DEC;
  for (size_t i = 8; i <= 23; i += 5)
    if (s[i] != '-')
      return SF_FORMAT_DEC;
  return SF_FORMAT_UUID;
}

int sf_view_encode(const sf_layout *l, uint64_t id, sf_format f, char *buf,
                   size_t len) {
  if (f != SF_FORMAT_UUID)
    return sf_encode(id, f, buf, len);
  if (l == NULL || buf == NULL)
    return SF_EINVAL;
  uint8_t u[16];
  int rc = sf_uuid_from_id(l, id, u);
  if (rc != SF_OK)
    return rc;
  return sf_uuid_format(u, buf, len);
}

int sf_view_parse(const sf_layout *l, const char *s, size_t len, sf_format f,
                  uint64_t *id) {
  if (f != SF_FORMAT_UUID)
    return sf_parse(s, len, f, id);
  if (l == NULL)
    return SF_EINVAL;
  uint8_t u[16];
  int rc = sf_uuid_parse(s, len, u);
  if (rc != SF_OK)
    return rc;
  return sf_uuid_to_id(l, u, id);
}
