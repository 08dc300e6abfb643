/*
 * h2_ledger.c - which of the client's recent stream ids were opened, which
 * the client ended and which the server reset, for HEADERS and DATA frames
 * on streams nghttp2 does not hold.
 *
 * nghttp2 keeps no closed stream (no_closed_streams: keeping up to
 * SF_H2_MAX_STREAMS of them cost about 1.5% of the instructions of a gRPC
 * call), so it ignores HEADERS and DATA frames on a stream that closed.
 * RFC 9113 wants HEADERS reusing a lower id that was never opened answered
 * PROTOCOL_ERROR (section 5.1.1), and HEADERS or DATA on a stream after
 * the client ended or reset it STREAM_CLOSED (5.1), while what a client
 * had in flight on a stream the server reset is ignored. Bits for each of
 * the last SF_H2_LEDGER client ids tell these apart; an older id is
 * ignored, as nghttp2 does.
 *
 * HEADERS are judged as nghttp2 meets them (on_begin in h2.c), against
 * what it holds. DATA is judged before nghttp2 reads it, by
 * sf__h2_ledger_scan(), which follows the frames in the bytes themselves:
 * DATA after the client's own END_STREAM or RST_STREAM on that stream is
 * an error whatever the server did meanwhile, unless the server reset it.
 */
#include <arpa/inet.h>
#include <string.h>

#include "h2_int.h"

#define SLOT(id) ((size_t)((uint32_t)(id) >> 1) % SF_H2_LEDGER)
#define BIT(set, id) ((set)[SLOT(id) / 64] >> (SLOT(id) % 64) & 1)
#define SET(set, id) ((set)[SLOT(id) / 64] |= UINT64_C(1) << (SLOT(id) % 64))
#define CLR(set, id) ((set)[SLOT(id) / 64] &= ~(UINT64_C(1) << (SLOT(id) % 64)))

#define IN_WINDOW(hi, id)                                                      \
  ((id)&1 && (id) <= (hi) && (hi) - (id) < 2 * SF_H2_LEDGER)

void sf__h2_ledger_open(sf_h2_ledger *l, int32_t id) {
  if (id <= l->hi || !(id & 1))
    return;
  /* The ids skipped between are closed unopened (RFC 9113 5.1.1). */
  if (id - l->hi >= 2 * SF_H2_LEDGER) {
    memset(l->opened, 0, sizeof l->opened);
    memset(l->reset, 0, sizeof l->reset);
  } else {
    for (int32_t k = l->hi + 2; k < id; k += 2) {
      CLR(l->opened, k);
      CLR(l->reset, k);
    }
  }
  SET(l->opened, id);
  CLR(l->reset, id);
  l->hi = id;
}

void sf__h2_ledger_reset(sf_h2_ledger *l, int32_t id) {
  if (IN_WINDOW(l->hi, id))
    SET(l->reset, id);
}

/* be32 reads 4 bytes in network order. */
static inline uint32_t be32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return ntohl(v);
}

/* frame records the client frame header h; 1 when it is DATA that RFC
 * 9113 makes a STREAM_CLOSED error. Every frame passes here, so it is
 * kept short: a slot of ended[] holds the stream id itself, which needs no
 * window check and no clearing when a new stream takes the slot. */
static inline int frame(sf_h2_ledger *l, const uint8_t *h) {
  uint8_t type = h[3], flags = h[4];
  int32_t id;
  if (type > NGHTTP2_RST_STREAM && type != NGHTTP2_CONTINUATION)
    return 0;
  id = (int32_t)(be32(h + 5) & 0x7fffffff);
  switch (type) {
  case NGHTTP2_DATA:
    if (l->scan_block)
      return 0; /* inside a header block: nghttp2's PROTOCOL_ERROR */
    if (id > 0 && l->ended[SLOT(id)] == id) /* 0: nghttp2's PROTOCOL_ERROR */
      return !(IN_WINDOW(l->hi, id) && BIT(l->reset, id));
    break;
  case NGHTTP2_RST_STREAM:
    flags = NGHTTP2_FLAG_END_STREAM;
    break;
  case NGHTTP2_HEADERS:
  case NGHTTP2_CONTINUATION:
    l->scan_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
    if (type == NGHTTP2_CONTINUATION)
      flags = 0; /* 0x1 is no CONTINUATION flag: ignored (RFC 9113 4.1) */
    break;
  default: /* PRIORITY */
    return 0;
  }
  if ((flags & NGHTTP2_FLAG_END_STREAM) && id > 0)
    l->ended[SLOT(id)] = id;
  return 0;
}

/* A frame's payload length: 24 bits, before its type. */
#define PAYLOAD_LEN(h) ((size_t)(be32(h) >> 8))

size_t sf__h2_ledger_scan(sf_h2_ledger *l, const uint8_t *d, size_t len) {
  size_t i = l->scan_skip; /* the next frame header */
  if (i >= len) {
    l->scan_skip = (uint32_t)(i - len);
    return len;
  }
  if (l->scan_hd_len) { /* a header split between two reads: finish it */
    size_t n = 9u - l->scan_hd_len;
    n = n < len ? n : len;
    memcpy(l->scan_hd + l->scan_hd_len, d, n);
    l->scan_hd_len = (uint8_t)(l->scan_hd_len + n);
    if (l->scan_hd_len < 9)
      return len;
    l->scan_hd_len = 0;
    if (frame(l, l->scan_hd))
      return 0; /* its first bytes went to nghttp2 before: none of these */
    i = n + PAYLOAD_LEN(l->scan_hd);
  }
  while (i + 9 <= len) {
    const uint8_t *h = d + i;
    if (frame(l, h))
      return i;
    i += 9 + PAYLOAD_LEN(h);
  }
  if (i < len) { /* a header begins here and ends in the next read */
    l->scan_hd_len = (uint8_t)(len - i);
    memcpy(l->scan_hd, d + i, len - i);
    i = len;
  }
  l->scan_skip = (uint32_t)(i - len);
  return len;
}

sf_h2_verdict sf__h2_ledger_verdict(const sf_h2_ledger *l, int32_t id) {
  if (!IN_WINDOW(l->hi, id) || BIT(l->reset, id))
    return SF_H2_IGNORE;
  return BIT(l->opened, id) ? SF_H2_CLOSED : SF_H2_NEVER_OPENED;
}
