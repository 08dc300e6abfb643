/*
 * answer.c - filling an sf_answer (route.h): room for the body from the
 * framing protocol, and the JSON error every route and view answers with.
 * Below routes.c and views.c, which both use it.
 */
#include "route.h"
#include "text.h"

char *sf__answer_body(sf_answer *a, size_t max) {
  a->body = a->body_alloc(a->ctx, max);
  if (!a->body)
    a->oom = 1;
  return a->body;
}

size_t sf__json_error(char *dst, const char *msg) {
  static const char hex[] = "0123456789abcdef";
  char *p = dst;
  SF_PUT(p, "{\"error\": \"");
  for (const unsigned char *m = (const unsigned char *)msg; *m; m++) {
    if (*m == '"' || *m == '\\') {
      *p++ = '\\';
      *p++ = (char)*m;
    } else if (*m < 0x20 || *m >= 0x7f) {
      SF_PUT(p, "\\u00");
      *p++ = hex[*m >> 4];
      *p++ = hex[*m & 15];
    } else {
      *p++ = (char)*m;
    }
  }
  SF_PUT(p, "\"}");
  return (size_t)(p - dst);
}

void sf__answer_error(sf_answer *a, sf_st st, const char *msg) {
  char *b = sf__answer_body(a, SF_JSON_ERROR_MAX(strlen(msg)));
  if (!b)
    return;
  a->st = st;
  a->ctype = "application/json";
  a->body_len = sf__json_error(b, msg);
}
