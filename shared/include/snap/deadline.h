/* deadline.h: the time by which the current piece of work must be done.
 *
 * Every request gets a deadline below HAProxy's `timeout server` (10 s):
 * SNAP_DEADLINE_MS after it was read. Work that waits — a lock, a queue, a
 * store — asks how long it may still wait, and work whose deadline has
 * passed stops before it changes anything a client was not told about.
 * The deadline is a thread-local value: a request thread sets it for
 * itself, and a batcher thread sets the earliest one of the batch it
 * serves. 0 means "none set": waits then use their own fixed bounds.
 * Not here: the bounds of each wait (the store drivers own those). */
#ifndef SNAP_DEADLINE_H
#define SNAP_DEADLINE_H

#include <stdint.h>

/* A request's budget: 8 s of HAProxy's 10 s `timeout server`. */
#define SNAP_DEADLINE_MS 8000

/* Sets (or, with 0, clears) this thread's deadline, in CLOCK_MONOTONIC ms. */
void deadline_set(int64_t at_mono_ms);

/* This thread's deadline, 0 when none. */
int64_t deadline_get(void);

/* CLOCK_MONOTONIC now, in ms: the clock deadlines are written in. */
int64_t deadline_now(void);

/* Milliseconds this thread may still wait, at most cap_ms: cap_ms when no
 * deadline is set, 0 once it has passed. */
int64_t deadline_left(int64_t cap_ms);

#endif
