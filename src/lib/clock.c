/*
 * clock.c - the clocks a generator can read, and waiting on them.
 *
 * The default clock is the wall time read once per process, advanced by
 * CLOCK_BOOTTIME. A running process never sees the wall clock step (NTP,
 * an operator's `date -s`), so it never has to refuse or wait for a step;
 * the price is that it drifts from the wall clock by whatever NTP steps or
 * slews after start (slewing changes the clock's rate too, so only steps
 * count). CLOCK_BOOTTIME rather than CLOCK_MONOTONIC: the two are the same
 * clock but for time suspended, which only CLOCK_BOOTTIME counts, so a
 * laptop or VM resumed after an hour stamps its IDs with the time of day,
 * not an hour in the past (etcd's lease deadline in lease.c is on the same
 * clock). A restart re-reads the wall time; the state file's high-water
 * mark covers a restart with the wall clock behind.
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

static int64_t kernel_wall(void) {
  return read_ns(CLOCK_REALTIME);
}

static int64_t kernel_steady(void) {
  return read_ns(SF__STEADY_CLOCK);
}

/* The kernel clocks the default clock is built from; a test swaps them. */
static int64_t (*src_wall)(void) = kernel_wall;
static int64_t (*src_steady)(void) = kernel_steady;

int64_t sf_clock_wall(void *ctx) {
  (void)ctx;
  return read_ns(CLOCK_REALTIME);
}

static pthread_once_t mono_once = PTHREAD_ONCE_INIT;
static int64_t mono_offset_ns; /* wall - steady at the first call */

#if defined(__x86_64__)
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <x86intrin.h>

/*
 * Between CLOCK_MONOTONIC reads, the clock is interpolated with the TSC.
 * clock_gettime costs about 25 ns in a VM (three times the rest of an
 * issue); rdtsc about 10. Used only when the kernel's own clocksource is
 * the TSC (so the kernel found it constant-rate and synchronised), and
 * bounded three ways: each thread re-reads CLOCK_MONOTONIC after
 * TSC_WINDOW_NS of ticks or TSC_MAX_FAST interpolated reads, whichever is
 * first, and the tick rate is taken 1% slow, so an interpolated time is
 * never ahead of the real one and falls behind it by at most ~1 us. A TSC
 * that stops or jumps back can only make a thread's clock stand still for
 * TSC_MAX_FAST reads. The rate is measured from the first read to one at
 * least TSC_CALIBRATE_NS later; until then every read is a real one.
 */
#define TSC_WINDOW_NS 100000
#define TSC_MAX_FAST 64
#define TSC_CALIBRATE_NS INT64_C(5000000)

static int tsc_usable;
static int64_t tsc_base_ns;
static uint64_t tsc_base_ticks;
static _Atomic uint64_t tsc_window_ticks;
static _Atomic uint64_t tsc_scale_q32; /* 0.99 ns per tick << 32; 0: none */

static __thread struct tsc_cache {
  int64_t last; /* the last time this thread was given */
  int64_t ns;
  uint64_t ticks;
  unsigned fast_left;
} tsc_cache __attribute__((tls_model("initial-exec")));

static void tsc_init(int64_t mono) {
  FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/"
                  "current_clocksource",
                  "re");
  char name[32] = "";
  if (f != NULL) {
    if (fgets(name, sizeof name, f) == NULL)
      name[0] = '\0';
    fclose(f);
  }
  if (strcmp(name, "tsc\n") != 0)
    return;
  tsc_base_ns = mono;
  tsc_base_ticks = __rdtsc();
  tsc_usable = 1;
}

/* A real read: anchors this thread's interpolation, and calibrates the
 * tick rate once enough time has passed since the first read. */
static int64_t tsc_anchor(void) {
  int64_t ns = src_steady() + mono_offset_ns;
  if (!tsc_usable)
    return ns;
  /* After the read (lfence: not hoisted above it), so interpolation lags. */
  _mm_lfence();
  uint64_t ticks = __rdtsc();
  /* Never behind this thread's last answer (a migration to a CPU whose TSC
   * is a few ns off must not make the clock step back). */
  if (ns < tsc_cache.last)
    ns = tsc_cache.last;
  tsc_cache.last = ns;
  tsc_cache.ns = ns;
  tsc_cache.ticks = ticks;
  tsc_cache.fast_left = TSC_MAX_FAST;
  if (atomic_load_explicit(&tsc_scale_q32, memory_order_relaxed) == 0) {
    int64_t dns = ns - mono_offset_ns - tsc_base_ns;
    uint64_t dticks = ticks - tsc_base_ticks;
    if (dns >= TSC_CALIBRATE_NS && dticks > 0 && dticks < (UINT64_C(1) << 52)) {
      double ns_per_tick = (double)dns / (double)dticks;
      uint64_t scale = (uint64_t)(ns_per_tick * 0.99 * 4294967296.0);
      uint64_t window = (uint64_t)((double)TSC_WINDOW_NS / ns_per_tick);
      if (scale > 0 && window > 0 && scale < (UINT64_C(1) << 40)) {
        atomic_store_explicit(&tsc_window_ticks, window, memory_order_relaxed);
        atomic_store_explicit(&tsc_scale_q32, scale, memory_order_release);
      }
    }
  }
  return ns;
}
#endif

static void mono_init(void) {
  int64_t wall = src_wall();
  int64_t mono = src_steady();
  mono_offset_ns = wall - mono;
#if defined(__x86_64__)
  if (src_steady == kernel_steady)
    tsc_init(mono);
#endif
}

void sf__clock_set_source(int64_t (*wall_ns)(void),
                          int64_t (*steady_ns)(void)) {
  src_wall = wall_ns ? wall_ns : kernel_wall;
  src_steady = steady_ns ? steady_ns : kernel_steady;
  pthread_once(&mono_once, mono_init);
  mono_init();
#if defined(__x86_64__)
  /* Interpolate only between reads of the kernel's own clock. */
  tsc_usable = src_steady == kernel_steady && tsc_usable;
  atomic_store(&tsc_scale_q32, 0);
  tsc_cache.last = 0;
  tsc_cache.fast_left = 0;
#endif
}

int64_t sf_clock_monotonic(void *ctx) {
  (void)ctx;
#if defined(__x86_64__)
  uint64_t scale = atomic_load_explicit(&tsc_scale_q32, memory_order_acquire);
  if (scale != 0 && tsc_cache.fast_left > 0) {
    uint64_t d = __rdtsc() - tsc_cache.ticks;
    if (d < atomic_load_explicit(&tsc_window_ticks, memory_order_relaxed)) {
      tsc_cache.fast_left--;
      int64_t ns = tsc_cache.ns + (int64_t)((d * scale) >> 32);
      if (ns < tsc_cache.last)
        ns = tsc_cache.last;
      tsc_cache.last = ns;
      return ns;
    }
  }
  pthread_once(&mono_once, mono_init);
  return tsc_anchor();
#else
  pthread_once(&mono_once, mono_init);
  return src_steady() + mono_offset_ns;
#endif
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
