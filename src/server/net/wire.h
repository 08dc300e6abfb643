/*
 * wire.h - what the RESP and memcached connections share: an output buffer
 * that lives inside its connection while small and moves to the heap only
 * while a large answer waits (http.c's habit), and the node-wide counters
 * that INFO and stats report.
 */
#ifndef SF_SRV_WIRE_H
#define SF_SRV_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"
typedef struct sf_obuf {
  char *p; /* inl, or the heap once the output outgrew it */
  size_t len, cap;
  char *inl; /* the owner's inline storage */
  size_t inl_cap;
} sf_obuf;

/* sf__obuf_init points b at the caller's inline storage (not written). */
void sf__obuf_init(sf_obuf *b, char *inl, size_t inl_cap);
/* sf__obuf_reserve makes room for n more bytes: returns where they go, or
 * NULL when out of memory. Output that outgrows the inline storage moves to
 * the heap, in one step to the next power of two that fits. */
char *sf__obuf_reserve(sf_obuf *b, size_t n);
/* sf__obuf_put appends n bytes: 0, or -1 when out of memory. */
int sf__obuf_put(sf_obuf *b, const void *src, size_t n);
/* sf__obuf_sent empties b and gives a heap buffer back: idle connections
 * hold no heap. */
void sf__obuf_sent(sf_obuf *b);

/* sf__stats_total sums the counter at byte offset field of sf_srv_stats
 * over every worker (relaxed loads: a moment's view). */
uint64_t sf__stats_total(const sf_node *n, size_t field);
#define SF_STATS_TOTAL(n, field)                                               \
  sf__stats_total((n), offsetof(sf_srv_stats, field))

#endif /* SF_SRV_WIRE_H */
