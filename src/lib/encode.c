/* encode.c - IDs as text: decimal, and hex, base62 and Crockford base32
 * zero-padded to a fixed width so that text order is numeric order. */
#include "sf_internal.h"

#include <string.h>

static const char *const format_names[] = {"dec", "hex", "base62", "base32",
                                           "uuid"};
#define NFORMATS (sizeof format_names / sizeof format_names[0])

static const char b62_digits[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static const char b32_digits[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static const char hex_digits[] = "0123456789abcdef";

/* Two decimal digits per step: the CLI prints millions of IDs a second. */
static const char dec_pairs[201] = "00010203040506070809"
                                   "10111213141516171819"
                                   "20212223242526272829"
                                   "30313233343536373839"
                                   "40414243444546474849"
                                   "50515253545556575859"
                                   "60616263646566676869"
                                   "70717273747576777879"
                                   "80818283848586878889"
                                   "90919293949596979899";

int sf_format_from_name(const char *name, sf_format *out) {
  if (name == NULL)
    return SF_EPARSE;
  for (size_t i = 0; i < NFORMATS; i++) {
    if (strcmp(name, format_names[i]) == 0) {
      *out = (sf_format)i;
      return SF_OK;
    }
  }
  return SF_EPARSE;
}

const char *sf_format_name(sf_format f) {
  if ((unsigned)f >= NFORMATS)
    return "unknown";
  return format_names[f];
}

static int encode_dec(uint64_t v, char *buf, size_t len) {
  char tmp[24];
  char *p = tmp + sizeof tmp;
  while (v >= 100) {
    unsigned i = (unsigned)(v % 100) * 2;
    v /= 100;
    *--p = dec_pairs[i + 1];
    *--p = dec_pairs[i];
  }
  if (v >= 10) {
    unsigned i = (unsigned)v * 2;
    *--p = dec_pairs[i + 1];
    *--p = dec_pairs[i];
  } else {
    *--p = (char)('0' + v);
  }
  size_t n = (size_t)(tmp + sizeof tmp - p);
  if (len < n + 1)
    return SF_ENOSPC;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return (int)n;
}

/* Any base, exactly width digits (enough for any uint64_t): least
 * significant first into a scratch, then copied out. */
static int encode_base(uint64_t v, unsigned base, const char *digits,
                       size_t width, char *buf, size_t len) {
  char tmp[72];
  char *p = tmp + sizeof tmp;
  for (size_t i = 0; i < width; i++) {
    *--p = digits[v % base];
    v /= base;
  }
  size_t n = width;
  if (len < n + 1)
    return SF_ENOSPC;
  memcpy(buf, p, n);
  buf[n] = '\0';
  return (int)n;
}

int sf_encode(uint64_t id, sf_format f, char *buf, size_t len) {
  if (buf == NULL)
    return SF_EINVAL;
  switch (f) {
  case SF_FORMAT_DEC:
    return encode_dec(id, buf, len);
  case SF_FORMAT_HEX:
    return encode_base(id, 16, hex_digits, 16, buf, len);
  case SF_FORMAT_BASE62:
    return encode_base(id, 62, b62_digits, 11, buf, len);
  case SF_FORMAT_BASE32:
    return encode_base(id, 32, b32_digits, 13, buf, len);
  case SF_FORMAT_UUID:
    break;
  }
  return SF_EINVAL;
}

/* The value of c as a digit of format f, or -1. */
static int digit_value(sf_format f, unsigned char c) {
  switch (f) {
  case SF_FORMAT_DEC:
    return c >= '0' && c <= '9' ? c - '0' : -1;
  case SF_FORMAT_HEX:
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  case SF_FORMAT_BASE62:
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'A' && c <= 'Z')
      return c - 'A' + 10;
    if (c >= 'a' && c <= 'z')
      return c - 'a' + 36;
    return -1;
  case SF_FORMAT_BASE32:
    if (c >= 'a' && c <= 'z')
      c = (unsigned char)(c - 'a' + 'A');
    if (c == 'I' || c == 'L')
      return 1;
    if (c == 'O')
      return 0;
    if (c == 'U')
      return -1;
    {
      const char *p = c ? strchr(b32_digits, c) : NULL;
      return p ? (int)(p - b32_digits) : -1;
    }
  case SF_FORMAT_UUID:
    break;
  }
  return -1;
}

static unsigned format_base(sf_format f) {
  switch (f) {
  case SF_FORMAT_DEC:
    return 10;
  case SF_FORMAT_HEX:
    return 16;
  case SF_FORMAT_BASE62:
    return 62;
  case SF_FORMAT_BASE32:
    return 32;
  case SF_FORMAT_UUID:
    break;
  }
  return 0;
}

int sf_parse(const char *s, size_t len, sf_format f, uint64_t *id) {
  unsigned base = format_base(f);
  if (base == 0)
    return SF_EINVAL;
  if (s == NULL || len == 0)
    return SF_EPARSE;
  uint64_t v = 0;
  int over = 0;
  for (size_t i = 0; i < len; i++) {
    int d = digit_value(f, (unsigned char)s[i]);
    if (d < 0)
      return SF_EPARSE;
    /* Past INT64_MAX it is out of range; keep checking the digits. */
    if (!over && v > ((uint64_t)INT64_MAX - (uint64_t)d) / base)
      over = 1;
    if (!over)
      v = v * base + (uint64_t)d;
  }
  if (over)
    return SF_ERANGE;
  *id = v;
  return SF_OK;
}

int sf_parse_uint(const char *s, uint64_t max, uint64_t *out) {
  if (s == NULL || *s == '\0')
    return SF_EPARSE;
  uint64_t v = 0;
  int over = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9')
      return SF_EPARSE;
    uint64_t d = (uint64_t)(*p - '0');
    if (!over && v > (max - d) / 10)
      over = 1;
    if (!over && d > max)
      over = 1;
    if (!over)
      v = v * 10 + d;
  }
  if (over)
    return SF_ERANGE;
  *out = v;
  return SF_OK;
}
