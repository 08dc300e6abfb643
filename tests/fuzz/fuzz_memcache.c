/*
 * fuzz_memcache.c - libFuzzer target for the memcached text protocol
 * (memcache.c): command lines in, answers out, no sockets. Input format:
 * fuzz_proto.h.
 *
 * Checked beyond ASan/UBSan: each feed makes progress, the output waiting
 * at once stays bounded, the output is a sequence of lines memcached would
 * send (VALUE blocks whose data length matches, then END; VERSION, STAT,
 * ERROR, CLIENT_ERROR, SERVER_ERROR), and a node that cannot issue issues
 * nothing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_proto.h"
#include "memcache.h"

static int starts(const char *p, size_t n, const char *w) {
  size_t l = strlen(w);
  return n >= l && !memcmp(p, w, l);
}

static void check_output(const char *o, size_t n) {
  size_t off = 0;
  while (off < n) {
    const char *p = o + off, *nl = memchr(p, '\n', n - off);
    size_t len;
    CHECK(nl != NULL && nl > p && nl[-1] == '\r');
    len = (size_t)(nl - p) - 1;
    CHECK(memchr(p, '\r', len) == NULL);
    off += len + 2;
    if (starts(p, len, "VALUE ")) {
      /* "VALUE <key> 0 <bytes>[ <cas>]": the data block follows. */
      const char *k = memchr(p + 6, ' ', len - 6);
      char *end;
      unsigned long long bytes;
      CHECK(k != NULL && starts(k, (size_t)(p + len - k), " 0 "));
      bytes = strtoull(k + 3, &end, 10);
      CHECK(end > k + 3 && (end == p + len || *end == ' '));
      CHECK(bytes + 2 <= n - off && !memcmp(o + off + bytes, "\r\n", 2));
      off += bytes + 2;
      continue;
    }
    CHECK(starts(p, len, "END") || starts(p, len, "VERSION ") ||
          starts(p, len, "STAT ") || starts(p, len, "ERROR") ||
          starts(p, len, "CLIENT_ERROR ") || starts(p, len, "SERVER_ERROR "));
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint64_t issued;
  size_t n;
  const char *out;
  setup();
  issued = atomic_load(&stats->ids_issued);
  out = drive(&sf__proto_memcached, data, size, SF_MC_OUT_PAUSE,
              SF_MC_LINE_MAX * 8, &n);
  check_output(out, n);
  if (size >= 2 && (data[0] & 1))
    CHECK(atomic_load(&stats->ids_issued) == issued);
  return 0;
}
