/*
 * h2_ledger.c - which of the client's recent stream ids were opened and
 * which the server reset, for HEADERS frames on streams nghttp2 does not
 * hold.
 *
 * nghttp2 answers a HEADERS frame reusing a lower stream id only when it
 * still keeps that stream (closed, at most SF_H2_MAX_STREAMS of them);
 * otherwise it ignores it. RFC 9113 wants a lower id that was never opened
 * answered PROTOCOL_ERROR (section 5.1.1) and one reused after the client
 * ended or reset its stream STREAM_CLOSED (5.1), while what a client had
 * in flight on a stream the server reset is ignored. Two bits for each of
 * the last SF_H2_LEDGER client ids tell these apart; an older id is
 * ignored, as before.
 */
#include <string.h>

#include "h2_int.h"

#define SLOT(id) ((size_t)((uint32_t)(id) >> 1) % SF_H2_LEDGER)
#define BIT(set, id) ((set)[SLOT(id) / 64] >> (SLOT(id) % 64) & 1)
#define SET(set, id) ((set)[SLOT(id) / 64] |= UINT64_C(1) << (SLOT(id) % 64))
#define CLR(set, id) ((set)[SLOT(id) / 64] &= ~(UINT64_C(1) << (SLOT(id) % 64)))

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
  if ((id & 1) && id <= l->hi && l->hi - id < 2 * SF_H2_LEDGER)
    SET(l->reset, id);
}

sf_h2_verdict sf__h2_ledger_verdict(const sf_h2_ledger *l, int32_t id) {
  if (!(id & 1) || id > l->hi || l->hi - id >= 2 * SF_H2_LEDGER ||
      BIT(l->reset, id))
    return SF_H2_IGNORE;
  return BIT(l->opened, id) ? SF_H2_CLOSED : SF_H2_NEVER_OPENED;
}
