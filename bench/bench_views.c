/*
 * bench_views.c - what each text view of an ID costs, in process.
 *
 *   bench_views [--seconds S]
 *
 * Encodes the same 10,000 increasing IDs (as one /ids?count=10000 answer
 * holds) into one buffer, over and over for S seconds (default 1) per
 * format, and prints ns per ID and the ratio to decimal. bench_views.sh
 * measures the same through the server. Prints numbers, never passes or
 * fails on them.
 */
#include "snowflake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { N = 10000 };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  double seconds = 1;
  if (argc == 3 && strcmp(argv[1], "--seconds") == 0)
    seconds = atof(argv[2]);
  if (seconds <= 0 || seconds > 60) {
    fputs("usage: bench_views [--seconds 0.01..60]\n", stderr);
    return 2;
  }
  static const sf_format fmts[] = {SF_FORMAT_DEC, SF_FORMAT_HEX,
                                   SF_FORMAT_BASE62, SF_FORMAT_BASE32,
                                   SF_FORMAT_UUID};
  sf_layout l;
  sf_layout_default(&l);
  static uint64_t ids[N];
  static char out[N * (SF_UUID_BUFSIZE + 3)];
  /* Four runs of 2,500 in consecutive ms from 2026, machine 9. */
  for (size_t i = 0; i < N; i++)
    sf_compose(&l, INT64_C(70000000000) + (int64_t)(i / 2500), 9, i % 2500,
               &ids[i]);
  double dec_ns = 0;
  printf("%-8s %10s %12s %10s\n", "format", "ns/ID", "bytes/ID", "ratio");
  for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
    uint64_t rounds = 0;
    size_t len = 0;
    double t0 = now_s(), t1;
    do {
      char *p = out;
      for (size_t i = 0; i < N; i++) {
        int n = sf_view_encode(&l, ids[i], fmts[f], p, SF_UUID_BUFSIZE);
        p += n;
        *p++ = ',';
      }
      len = (size_t)(p - out);
      rounds++;
      t1 = now_s();
    } while (t1 - t0 < seconds);
    double ns = (t1 - t0) * 1e9 / ((double)rounds * N);
    if (f == 0)
      dec_ns = ns;
    printf("%-8s %10.2f %12.1f %10.3f\n", sf_format_name(fmts[f]), ns,
           (double)len / N, ns / dec_ns);
  }
  return 0;
}
