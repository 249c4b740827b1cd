/* deadline.c: the thread-local request deadline of deadline.h. */
#include "snap/deadline.h"

#include <time.h>

static __thread int64_t deadline_at; /* CLOCK_MONOTONIC ms; 0: none */

void deadline_set(int64_t at_mono_ms)
{
    deadline_at = at_mono_ms;
}

int64_t deadline_get(void)
{
    return deadline_at;
}

int64_t deadline_now(void)
{
    struct timespec ts;

    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t deadline_left(int64_t cap_ms)
{
    int64_t left;

    if (deadline_at == 0) return cap_ms;
    left = deadline_at - deadline_now();
    if (left < 0) return 0;
    return left < cap_ms ? left : cap_ms;
}
