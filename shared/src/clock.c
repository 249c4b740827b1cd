/* clock.c: the two clocks snaptext reads (wall time in epoch milliseconds
 * for expiry dates, monotonic nanoseconds for latencies) and the single UTC
 * display format of API.md.
 * Not here: timers, sleeping, time zones other than UTC. */
#include "snap/clock.h"

#include <string.h>
#include <time.h>

/* The displayable range: "YYYY" has four digits, so years 1970..9999.
 * Earlier (negative) and later times are clamped to the ends instead of
 * producing a string that does not fit or a wrong date. */
#define CLOCK_MIN_S INT64_C(0)
#define CLOCK_MAX_S INT64_C(253402300799) /* 9999-12-31 23:59:59 UTC */

int64_t clock_now_ms(void)
{
    struct timespec ts;

    /* clock_gettime cannot fail for CLOCK_REALTIME with a valid pointer;
     * should it, the zeroed struct yields the epoch rather than garbage. */
    memset(&ts, 0, sizeof ts);
    (void)clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + (int64_t)(ts.tv_nsec / 1000000);
}

int64_t clock_mono_ns(void)
{
    struct timespec ts;

    memset(&ts, 0, sizeof ts);
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + (int64_t)ts.tv_nsec;
}

char *clock_format_utc(int64_t ms, char out[SNAP_TIME_STR_LEN])
{
    int64_t s = ms / 1000; /* truncation toward zero; negatives clamp below */
    time_t t;
    struct tm tm;

    if (s < CLOCK_MIN_S) s = CLOCK_MIN_S;
    if (s > CLOCK_MAX_S) s = CLOCK_MAX_S;
    t = (time_t)s;
    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, SNAP_TIME_STR_LEN, "%Y-%m-%d %H:%M:%S", &tm) != SNAP_TIME_STR_LEN - 1) {
        /* Unreachable inside the clamped range; keep the output well-formed. */
        memcpy(out, "1970-01-01 00:00:00", SNAP_TIME_STR_LEN);
    }
    return out;
}
