/* batcher.h: one thread that serves many request threads' jobs in batches.
 *
 * A storage round trip or an fsync costs about the same for one job as for
 * fifty, and each blocking call costs its thread two context switches. So a
 * request thread queues its job with batcher_run() and sleeps once; the
 * batcher's thread takes every queued job at once (up to max) and hands
 * them to the service's batch function, which ends each one with
 * batcher_done(). Used by ingest (sends) and fetch (inbox reads).
 *
 * Ownership: a job lives in its caller (usually on the request thread's
 * stack) from batcher_run() until batcher_done() wakes it; the batch
 * function must not touch it after that. */
#ifndef SNAP_BATCHER_H
#define SNAP_BATCHER_H

#include <semaphore.h>
#include <stddef.h>

#include "snap/err.h"

/* The first member of a service's job struct. */
struct batch_job {
    sem_t done;
    struct batch_job *next;
};

/* Serves jobs[0..n) (n may be 0, see below) and returns 1 when it still
 * holds jobs of its own to finish: then it is called again at once, with
 * whatever was queued meanwhile, instead of waiting for a new job. */
typedef int (*batch_fn)(void *arg, struct batch_job **jobs, size_t n);

struct batcher;

/* Starts the thread. arg is passed to fn as is and must outlive the
 * batcher. NULL on failure, with the reason in err. */
struct batcher *batcher_start(size_t max, batch_fn fn, void *arg, struct snap_err *err);

/* Queues job and waits until batcher_done(job). SNAP_OK, or SNAP_ERR when no
 * semaphore could be made (then the job was never queued). */
int batcher_run(struct batcher *b, struct batch_job *job, struct snap_err *err);

/* Ends job: wakes its caller. From the batch function only. */
void batcher_done(struct batch_job *job);

/* Queues job again, ahead of everything waiting (a retry). From the batch
 * function only. */
void batcher_requeue(struct batcher *b, struct batch_job *job);

/* Serves every job still queued, until fn holds none, then stops the thread
 * and frees b. NULL is fine. */
void batcher_stop(struct batcher *b);

#endif
