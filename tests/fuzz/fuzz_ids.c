/*
 * fuzz_ids.c - libFuzzer target for ID parsing, the text encodings and the
 * time functions of libsnowflake.
 *
 * Properties checked (any violation aborts, so libFuzzer keeps the input):
 *   - sf_parse of any bytes in every format either fails with SF_EPARSE or
 *     SF_ERANGE, or yields an ID <= INT64_MAX whose sf_encode parses back to
 *     the same ID; the encoding equals the input once the input is brought to
 *     canonical form (leading zeros dropped, case and Crockford aliases
 *     folded).
 *   - 8 bytes taken as an ID: sf_encode into every buffer size either fits
 *     or returns SF_ENOSPC, and the text parses back to the ID.
 *   - sf_decode then sf_compose gives the ID back, for any valid layout.
 *   - sf_format_time and sf_parse_time agree with each other.
 *   - sf_parse_uint agrees with sf_parse in decimal and honours its limit.
 *   - sf_uuid_parse of any bytes fails with SF_EPARSE or reads a UUID that
 *     sf_uuid_format writes back as the input in lower case; sf_view_parse
 *     of a UUID fails with the documented codes or yields an ID whose view
 *     is that UUID; sf_format_guess says UUID only for its shape.
 *   - the UUID view of any ID, under any valid layout, gives the ID back.
 *   - sf_bounds of any time holds exactly that millisecond's IDs.
 */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "snowflake.h"

static const sf_format formats[] = {SF_FORMAT_DEC, SF_FORMAT_HEX,
                                    SF_FORMAT_BASE62, SF_FORMAT_BASE32};
#define NFORMATS (sizeof formats / sizeof formats[0])

/* The fixed width of each format's text (0: none, decimal). */
static const size_t widths[] = {0, 16, 11, 13};

static size_t strip_zeros(const char *s, size_t len, sf_format f, char *out);

/* canonical writes the form sf_encode would give for text s that sf_parse
 * accepted in format f: without leading zeros, then padded to the format's
 * width. Returns its length. */
static size_t canonical(const char *s, size_t len, sf_format f, char *out) {
  char tmp[256];
  size_t n = strip_zeros(s, len, f, tmp);
  size_t pad = widths[f] > n ? widths[f] - n : 0;
  memset(out, '0', pad);
  memcpy(out + pad, tmp, n);
  return pad + n;
}

static size_t strip_zeros(const char *s, size_t len, sf_format f, char *out) {
  size_t i = 0, n = 0;
  while (i + 1 < len && s[i] == '0')
    i++;
  for (; i < len; i++) {
    char c = s[i];
    if (f == SF_FORMAT_HEX && c >= 'A' && c <= 'F')
      c = (char)(c - 'A' + 'a');
    if (f == SF_FORMAT_BASE32) {
      if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
      if (c == 'I' || c == 'L')
        c = '1';
      else if (c == 'O')
        c = '0';
    }
    out[n++] = c;
  }
  /* Folding O to 0 can create new leading zeros. */
  i = 0;
  while (i + 1 < n && out[i] == '0')
    i++;
  memmove(out, out + i, n - i);
  return n - i;
}

static void check_text(const char *s, size_t len) {
  for (size_t k = 0; k < NFORMATS; k++) {
    uint64_t id = 0;
    int rc = sf_parse(s, len, formats[k], &id);
    if (rc != 0) {
      CHECK(rc == SF_EPARSE || rc == SF_ERANGE);
      continue;
    }
    CHECK(len > 0);
    CHECK(id <= (uint64_t)INT64_MAX);
    char enc[SF_ID_BUFSIZE];
    int n = sf_encode(id, formats[k], enc, sizeof enc);
    CHECK(n > 0 && (size_t)n < sizeof enc);
    CHECK(enc[n] == '\0');
    uint64_t back = 0;
    CHECK(sf_parse(enc, (size_t)n, formats[k], &back) == 0);
    CHECK(back == id);
    if (len <= 200) {
      char canon[256];
      size_t cn = canonical(s, len, formats[k], canon);
      CHECK(cn == (size_t)n && memcmp(canon, enc, cn) == 0);
    }
  }
}

/* check_uuid_text: s as a UUID, alone and as the view of an ID under l. */
static void check_uuid_text(const sf_layout *l, const char *s, size_t len) {
  uint8_t u[16];
  int rc = sf_uuid_parse(s, len, u);
  sf_format guess = sf_format_guess(s, len);
  if (rc != 0) {
    CHECK(rc == SF_EPARSE);
  } else {
    CHECK(guess == SF_FORMAT_UUID);
    char out[SF_UUID_BUFSIZE];
    CHECK(sf_uuid_format(u, out, sizeof out) == 36 && out[36] == '\0');
    for (size_t i = 0; i < 36; i++) {
      char c = s[i];
      if (c >= 'A' && c <= 'F')
        c = (char)(c - 'A' + 'a');
      CHECK(out[i] == c);
    }
  }
  if (guess == SF_FORMAT_UUID)
    CHECK(len == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' &&
          s[23] == '-');
  uint64_t id = 0;
  int vrc = sf_view_parse(l, s, len, SF_FORMAT_UUID, &id);
  if (rc != 0) {
    CHECK(vrc == SF_EPARSE);
    return;
  }
  CHECK(vrc == 0 || vrc == SF_EUUIDVERSION || vrc == SF_EUUIDBITS ||
        vrc == SF_ERANGE);
  if (vrc != 0)
    return;
  uint8_t again[16];
  CHECK(sf_uuid_from_id(l, id, again) == 0);
  CHECK(memcmp(again, u, 16) == 0);
}

/* check_views: the UUID view of id under l, and the bounds of its ms. */
static void check_views(const sf_layout *l, uint64_t id) {
  char buf[SF_UUID_BUFSIZE];
  int n = sf_view_encode(l, id, SF_FORMAT_UUID, buf, sizeof buf);
  sf_parts p;
  if (sf_decode(l, id, &p) != 0) {
    CHECK(n == SF_ERANGE);
    return;
  }
  if (p.unix_ms >= (INT64_C(1) << 48)) {
    CHECK(n == SF_ERANGE);
  } else {
    CHECK(n == 36 && sf_format_guess(buf, 36) == SF_FORMAT_UUID);
    uint64_t back = 0;
    CHECK(sf_view_parse(l, buf, 36, SF_FORMAT_UUID, &back) == 0);
    CHECK(back == id);
  }
  uint64_t lo = 0, hi = 0;
  CHECK(sf_bounds(l, p.unix_ms, &lo, &hi) == 0);
  CHECK(lo <= id && id <= hi);
  sf_parts plo, phi;
  CHECK(sf_decode(l, lo, &plo) == 0 && sf_decode(l, hi, &phi) == 0);
  CHECK(plo.unix_ms == p.unix_ms && phi.unix_ms == p.unix_ms);
  CHECK(plo.machine_id == 0 && plo.sequence == 0);
  CHECK(phi.machine_id == sf_layout_max_machine(l) &&
        phi.sequence == sf_layout_max_sequence(l));
  if (lo > 0) {
    sf_parts prev;
    CHECK(sf_decode(l, lo - 1, &prev) == 0 && prev.unix_ms == p.unix_ms - 1);
  }
}

static void check_id(uint64_t id) {
  for (size_t k = 0; k < NFORMATS; k++) {
    char full[SF_ID_BUFSIZE];
    int n = sf_encode(id, formats[k], full, sizeof full);
    CHECK(n > 0 && (size_t)n < sizeof full);
    uint64_t back = 0;
    int rc = sf_parse(full, (size_t)n, formats[k], &back);
    if (id > (uint64_t)INT64_MAX) {
      CHECK(rc == SF_ERANGE);
    } else {
      CHECK(rc == 0 && back == id);
    }
    /* Every smaller buffer: SF_ENOSPC, never a write past len (ASan
     * watches the exact-size heap buffer). */
    for (size_t len = 0; len <= (size_t)n; len++) {
      char *buf = malloc(len ? len : 1);
      CHECK(buf != NULL);
      CHECK(sf_encode(id, formats[k], buf, len) == SF_ENOSPC);
      free(buf);
    }
    char *exact = malloc((size_t)n + 1);
    CHECK(exact != NULL);
    CHECK(sf_encode(id, formats[k], exact, (size_t)n + 1) == n);
    CHECK(memcmp(exact, full, (size_t)n + 1) == 0);
    free(exact);
  }
}

static void check_time_ms(int64_t unix_ms) {
  char buf[SF_TIME_BUFSIZE];
  int n = sf_format_time(unix_ms, buf, sizeof buf);
  if (n < 0) {
    CHECK(n == SF_ERANGE);
    return;
  }
  CHECK((size_t)n < sizeof buf && buf[n] == '\0' && n == 24);
  int64_t back = 0;
  CHECK(sf_parse_time(buf, &back) == 0);
  CHECK(back == unix_ms);
}

static void check_layout(const uint8_t *p, uint64_t id) {
  sf_layout l;
  sf_layout_default(&l);
  l.machine_bits = p[0] % 24u;
  l.sequence_bits = p[1] % 24u;
  int64_t epoch = 0;
  memcpy(&epoch, p + 2, sizeof epoch);
  l.epoch_ms = epoch % (INT64_C(1) << 42);
  if (sf_layout_check(&l, -1) != 0)
    return;
  sf_parts parts;
  int rc = sf_decode(&l, id, &parts);
  if (id > (uint64_t)INT64_MAX) {
    CHECK(rc == SF_ERANGE);
    return;
  }
  CHECK(rc == 0);
  CHECK(parts.machine_id <= sf_layout_max_machine(&l));
  CHECK(parts.sequence <= sf_layout_max_sequence(&l));
  CHECK(parts.timestamp >= 0 && parts.timestamp <= sf_layout_max_timestamp(&l));
  CHECK(parts.unix_ms == parts.timestamp + l.epoch_ms);
  uint64_t back = 0;
  CHECK(sf_compose(&l, parts.timestamp, parts.machine_id, parts.sequence,
                   &back) == 0);
  CHECK(back == id);
  check_time_ms(parts.unix_ms);
  check_views(&l, id);
}

/* check_uint: sf_parse_uint of z under a few limits agrees with sf_parse
 * in decimal, and with itself (a larger limit never rejects more). */
static void check_uint(const char *z, size_t len) {
  static const uint64_t maxes[] = {
      0, 1, 1023, 65535, (uint64_t)INT64_MAX, UINT64_MAX};
  uint64_t dec = 0;
  int dec_rc = sf_parse(z, len, SF_FORMAT_DEC, &dec);
  int prev_rc = SF_ERANGE;
  for (size_t i = 0; i < sizeof maxes / sizeof maxes[0]; i++) {
    uint64_t v = 0;
    int rc = sf_parse_uint(z, maxes[i], &v);
    CHECK(rc == 0 || rc == SF_EPARSE || rc == SF_ERANGE);
    if (rc == 0)
      CHECK(v <= maxes[i]);
    if (rc == SF_EPARSE)
      CHECK(dec_rc == SF_EPARSE);
    if (prev_rc == 0)
      CHECK(rc == 0);
    if (rc == 0 && dec_rc == 0)
      CHECK(v == dec);
    if (maxes[i] == (uint64_t)INT64_MAX)
      CHECK(rc == dec_rc && (rc != 0 || v == dec));
    prev_rc = rc;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* The text as it is, and NUL-terminated for sf_parse_time. */
  check_text((const char *)data, size);
  sf_layout dl;
  sf_layout_default(&dl);
  check_uuid_text(&dl, (const char *)data, size);

  char *z = malloc(size + 1);
  CHECK(z != NULL);
  memcpy(z, data, size);
  z[size] = '\0';
  int64_t ms = 0;
  if (strlen(z) == size && sf_parse_time(z, &ms) == 0) {
    check_time_ms(ms);
    uint64_t lo = 0, hi = 0;
    if (sf_bounds(&dl, ms, &lo, &hi) == 0)
      check_views(&dl, lo + (hi - lo) / 2);
    else
      CHECK(ms < dl.epoch_ms || ms >= sf_layout_end_ms(&dl));
  }
  if (strlen(z) == size)
    check_uint(z, size);
  free(z);

  if (size >= 8) {
    uint64_t id = 0;
    memcpy(&id, data, sizeof id);
    check_id(id);
    check_id(id & (uint64_t)INT64_MAX);
    check_views(&dl, id);
    check_views(&dl, id & (uint64_t)INT64_MAX);
    if (size >= 18)
      check_layout(data + 8, id & (uint64_t)INT64_MAX);
    int64_t t = 0;
    memcpy(&t, data, sizeof t);
    check_time_ms(t);
    check_time_ms(t % (INT64_C(253402300800000)));
  }
  return 0;
}
