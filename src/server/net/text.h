/*
 * text.h - the formatting helpers every front end writes answers with,
 * below all of them: a string literal put in place, a u64 in decimal.
 */
#ifndef SF_SRV_TEXT_H
#define SF_SRV_TEXT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "snowflake.h"

/* SF_PUT appends the string literal lit at p and moves p past it. */
#define SF_PUT(p, lit)                                                         \
  (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

/* sf__u64_dec writes v in decimal to dst (20 bytes suffice); returns the
 * length. */
static inline size_t sf__u64_dec(char *dst, uint64_t v) {
  /* The library's decimal encoder, without its NUL. */
  char tmp[SF_ID_BUFSIZE];
  int n = sf_encode(v, SF_FORMAT_DEC, tmp, sizeof tmp);
  memcpy(dst, tmp, (size_t)n);
  return (size_t)n;
}

#endif /* SF_SRV_TEXT_H */
