/* clock.h: wall-clock time in milliseconds and its one display format.
 * API.md renders every date as UTC "YYYY-MM-DD HH:MM:SS"; this is the only
 * place that knows that format. Not here: timers or sleeping. */
#ifndef SNAP_CLOCK_H
#define SNAP_CLOCK_H

#include <stdint.h>

#define SNAP_TIME_STR_LEN 20 /* "2026-11-23 10:15:00" + NUL */

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_now_ms(void);

/* Nanoseconds from an arbitrary origin (CLOCK_MONOTONIC), for latencies. */
int64_t clock_mono_ns(void);

/* Writes ms (Unix epoch milliseconds, truncated to the second) as UTC
 * "YYYY-MM-DD HH:MM:SS" into out, which holds SNAP_TIME_STR_LEN bytes.
 * Returns out. */
char *clock_format_utc(int64_t ms, char out[SNAP_TIME_STR_LEN]);

#endif
