/*
 * wire.c - the output buffer and counter sums of the RESP and memcached
 * connections.
 */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

void sf__obuf_init(sf_obuf *b, char *inl, size_t inl_cap) {
  b->p = b->inl = inl;
  b->cap = b->inl_cap = inl_cap;
  b->len = 0;
}

char *sf__obuf_reserve(sf_obuf *b, size_t n) {
  size_t need = b->len + n, cap;
  char *p;
  if (need <= b->cap)
    return b->p + b->len;
  for (cap = b->cap * 2; cap < need; cap *= 2)
    ;
  if (b->p == b->inl) {
    p = malloc(cap);
    if (p)
      memcpy(p, b->p, b->len);
  } else {
    p = realloc(b->p, cap);
  }
  if (!p)
    return NULL;
  b->p = p;
  b->cap = cap;
  return b->p + b->len;
}

int sf__obuf_put(sf_obuf *b, const void *src, size_t n) {
  char *d = sf__obuf_reserve(b, n);
  if (!d)
    return -1;
  memcpy(d, src, n);
  b->len += n;
  return 0;
}

void sf__obuf_sent(sf_obuf *b) {
  b->len = 0;
  if (b->p != b->inl) {
    free(b->p);
    b->p = b->inl;
    b->cap = b->inl_cap;
  }
}

uint64_t sf__stats_total(const sf_node *n, size_t field) {
  uint64_t sum = 0;
  for (unsigned i = 0; i < n->nstats; i++)
    sum += atomic_load_explicit(
        (const _Atomic uint64_t *)((const char *)&n->stats[i] + field),
        memory_order_relaxed);
  return sum;
}
