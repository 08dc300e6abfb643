/*
 * sf_internal.h - private to libsnowflake: includes the public header with
 * default visibility (the library is built with -fvisibility=hidden, so
 * only the functions declared in snowflake.h are exported).
 */
#ifndef SF_INTERNAL_H
#define SF_INTERNAL_H

#pragma GCC visibility push(default)
#include "snowflake.h"
#pragma GCC visibility pop

#include <time.h>

/* Nanoseconds per millisecond. */
#define SF__NS_PER_MS INT64_C(1000000)
/* The last millisecond sf_format_time can print: 9999-12-31T23:59:59.999Z. */
#define SF__MAX_UNIX_MS INT64_C(253402300799999)

/* The clock the default clock advances by: CLOCK_BOOTTIME counts time
 * suspended, so a resumed machine's IDs carry the time of day (clock.c). */
#ifdef CLOCK_BOOTTIME
#define SF__STEADY_CLOCK CLOCK_BOOTTIME
#else
#define SF__STEADY_CLOCK CLOCK_MONOTONIC
#endif

/* sf__clock_set_source rebuilds sf_clock_monotonic on other sources of the
 * wall and steady time in ns (NULL: the kernel's), re-reading its offset;
 * for tests only, with no other thread reading the clock. */
void sf__clock_set_source(int64_t (*wall_ns)(void), int64_t (*steady_ns)(void));

/* sf__sleep_until waits until clock(ctx) reaches target_ns without
 * oversleeping: it sleeps only for the part well before the target and spins
 * on the clock for the rest. */
void sf__sleep_until(sf_clock_fn clock, void *ctx, int64_t target_ns);

#endif /* SF_INTERNAL_H */
