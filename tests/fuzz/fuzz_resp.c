/*
 * fuzz_resp.c - libFuzzer target for the RESP2 connection (resp.c,
 * resp_cmd.c): command bytes in, replies out, no sockets. Input format:
 * fuzz_proto.h.
 *
 * Checked beyond ASan/UBSan: each feed makes progress, the output waiting
 * at once stays bounded, the output is a sequence of well-formed RESP2
 * values (simple strings and errors without CR or LF inside, bulk strings
 * whose length matches, arrays of such), and a node that cannot issue
 * issues nothing. On such a node (the same answers whatever the clock) the
 * bytes are fed again one at a time, which never takes resp.c's one-pass
 * path, and the answers must be the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_proto.h"
#include "resp.h"

/* value checks one RESP2 value at o[*off..n) and moves *off past it. */
static void value(const char *o, size_t n, size_t *off, int depth) {
  const char *p = o + *off, *crlf;
  size_t left = n - *off;
  long long v;
  char *end;
  CHECK(left >= 3 && depth < 3);
  crlf = memchr(p, '\r', left);
  CHECK(crlf != NULL && (size_t)(crlf - p) + 1 < left && crlf[1] == '\n');
  CHECK(memchr(p, '\n', (size_t)(crlf - p)) == NULL);
  *off += (size_t)(crlf - p) + 2;
  switch (p[0]) {
  case '+':
  case '-':
    return;
  case ':':
  case '$':
  case '*':
    v = strtoll(p + 1, &end, 10);
    CHECK(end == crlf && end > p + 1);
    break;
  default:
    CHECK(!"a reply begins with + - : $ or *");
    return;
  }
  if (p[0] == '$' && v >= 0) {
    CHECK((size_t)v + 2 <= n - *off);
    CHECK(!memcmp(o + *off + v, "\r\n", 2));
    *off += (size_t)v + 2;
  } else if (p[0] == '$') {
    CHECK(v == -1);
  } else if (p[0] == '*') {
    CHECK(v >= 0);
    for (long long i = 0; i < v; i++)
      value(o, n, off, depth + 1);
  }
}

/* same_answers feeds data (a no-lease input) again a byte at a time and
 * checks the answers equal out[0..n), runs of digits aside. */
static void same_answers(const uint8_t *data, size_t size, const char *out,
                         size_t n) {
  static uint8_t *in;
  static char *first;
  size_t m, i = 0, j = 0;
  const char *again;
  in = realloc(in, size);
  first = realloc(first, n + 1);
  CHECK(in != NULL && first != NULL);
  if (n > 0)
    memcpy(first, out, n);
  memcpy(in, data, size);
  in[1] = 1;
  again = drive(&sf__proto_redis, in, size, SF_RESP_OUT_PAUSE,
                SF_RESP_OUT_PAUSE, &m);
  while (i < n && j < m) {
    int da = first[i] >= '0' && first[i] <= '9';
    int db = again[j] >= '0' && again[j] <= '9';
    CHECK(da == db);
    if (da) {
      while (i < n && first[i] >= '0' && first[i] <= '9')
        i++;
      while (j < m && again[j] >= '0' && again[j] <= '9')
        j++;
      continue;
    }
    CHECK(first[i] == again[j]);
    i++;
    j++;
  }
  CHECK(i == n && j == m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t issued;
  size_t n, off = 0;
  const char *out;
  setup();
  issued = atomic_load(&stats->ids_issued);
  out = drive(&sf__proto_redis, data, size, SF_RESP_OUT_PAUSE,
              SF_RESP_OUT_PAUSE, &n);
  while (off < n)
    value(out, n, &off, 0);
  if (size >= 2 && (data[0] & 1)) {
    CHECK(atomic_load(&stats->ids_issued) == issued);
    if (data[1] != 1)
      same_answers(data, size, out, n);
  }
  return 0;
}
