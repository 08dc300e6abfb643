/*
 * views.h - the text views of an ID over HTTP (views.c): the format=
 * parameter of /id and /ids, and the /decode and /bounds routes. Layouts
 * stay in the library: these call sf_view_encode, sf_view_parse, sf_bounds.
 */
#ifndef SF_SRV_VIEWS_H
#define SF_SRV_VIEWS_H

#include <stddef.h>
#include <stdint.h>

#include "route.h"

/* sf__query_param finds name=value in r's query: 1 with *val and *vlen set
 * (a bare "name" gives an empty value), or 0. */
int sf__query_param(const sf_req *r, const char *name, const char **val,
                    size_t *vlen);

/* The formats a query may name (format=...), by endpoint. */
typedef enum sf_view_set {
  SF_VIEWS_ID,     /* /id: uuid hex base62 base32 */
  SF_VIEWS_IDS,    /* /ids: number string uuid hex base62 base32 */
  SF_VIEWS_DECODE, /* /decode: dec hex base62 base32 uuid */
} sf_view_set;

/* sf__view_param reads r's format= for endpoint set: 1 with *f set (*quoted
 * is 0 only for /ids' "number"), 0 when absent, or -1 after answering 400
 * into a, naming the formats accepted. */
int sf__view_param(const sf_req *r, sf_answer *a, sf_view_set set, sf_format *f,
                   int *quoted);
/* sf__view_put writes id in format f (a JSON string's content) at dst,
 * which has SF_UUID_BUFSIZE bytes; returns the length written. */
size_t sf__view_put(const sf_node *n, uint64_t id, sf_format f, char *dst);

/* GET /decode/<id>[?format=...]: any view of an ID taken apart. */
void sf__h_decode(const sf_req *r, sf_answer *a);
/* GET /bounds?time=...: the smallest and largest ID of a millisecond. */
void sf__h_bounds(const sf_req *r, sf_answer *a);

#endif /* SF_SRV_VIEWS_H */
