/*
 * clock.c - the clocks a generator can read, and waiting on them.
 *
 * The default clock is the wall time read once per process, advanced by
 * CLOCK_MONOTONIC. A running process never sees the wall clock step (NTP,
 * an operator's `date -s`), so it never has to refuse or wait for a step;
 * the price is that it drifts from the wall clock by whatever NTP steps or
 * slews after start (slewing changes CLOCK_MONOTONIC's rate too, so only
 * steps count). A restart re-reads the wall time; the state file's
 * high-water mark covers a restart with the wall clock behind.
 */
#include "sf_internal.h"

#include <pthread.h>
#include <time.h>

/* Sleep only while more than this is left; spin on the clock for the rest.
 * nanosleep oversleeps by 50..150 us on a loaded Linux box (timer slack and
 * wake-up latency), and the seed's 200 us naps lost up to a fifth of each
 * millisecond. */
#define SPIN_NS INT64_C(200000)
/* Never nap for less than this: a shorter sleep is all overhead. */
#define MIN_SLEEP_NS INT64_C(50000)

static int64_t read_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * INT64_C(1000000000) + ts.tv_nsec;
}

int64_t sf_clock_wall(void *ctx) {
  (void)ctx;
  return read_ns(CLOCK_REALTIME);
}

static pthread_once_t mono_once = PTHREAD_ONCE_INIT;
static int64_t mono_offset_ns; /* wall - monotonic at the first call */

static void mono_init(void) {
  int64_t wall = read_ns(CLOCK_REALTIME);
  int64_t mono = read_ns(CLOCK_MONOTONIC);
  mono_offset_ns = wall - mono;
}

int64_t sf_clock_monotonic(void *ctx) {
  (void)ctx;
  pthread_once(&mono_once, mono_init);
  return read_ns(CLOCK_MONOTONIC) + mono_offset_ns;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

void sf__sleep_until(sf_clock_fn clock, void *ctx, int64_t target_ns) {
  for (;;) {
    int64_t left = target_ns - clock(ctx);
    if (left <= 0)
      return;
    if (left >= SPIN_NS + MIN_SLEEP_NS) {
      int64_t nap = left - SPIN_NS;
      struct timespec ts = {.tv_sec = (time_t)(nap / 1000000000),
                            .tv_nsec = (long)(nap % 1000000000)};
      nanosleep(&ts, NULL); /* early (EINTR): the loop re-reads the clock */
    } else {
      cpu_relax();
    }
  }
}
