/* batcher.c: the queue and thread behind batcher.h.
 *
 * The queue is a singly linked list under one mutex; each caller sleeps on
 * its own semaphore, so finishing a batch wakes exactly its jobs' threads.
 * Not here: what a batch does (the services' batch functions). */
#include "snap/batcher.h"

#include <pthread.h>
#include <stdlib.h>

struct batcher {
    batch_fn fn;
    void *arg;
    size_t max;
    pthread_t thread;
    pthread_mutex_t mu;     /* guards head, tail and stopping */
    pthread_cond_t wake;    /* a job was queued, or stop      */
    struct batch_job *head; /* oldest first                   */
    struct batch_job **tail;
    int stopping;
    struct batch_job **jobs; /* the thread's own: max entries  */
};

/* Takes up to b->max queued jobs into b->jobs, waiting for one only when
 * wait is set and no stop was asked for. Returns how many. */
static size_t take(struct batcher *b, int wait)
{
    size_t n = 0;

    (void)pthread_mutex_lock(&b->mu);
    while (wait && b->head == NULL && !b->stopping) (void)pthread_cond_wait(&b->wake, &b->mu);
    while (b->head != NULL && n < b->max) {
        struct batch_job *job = b->head;
        b->head = job->next;
        job->next = NULL;
        b->jobs[n++] = job;
    }
    if (b->head == NULL) b->tail = &b->head;
    (void)pthread_mutex_unlock(&b->mu);
    return n;
}

static void *batcher_main(void *arg)
{
    struct batcher *b = arg;
    int holding = 0;

    for (;;) {
        size_t n = take(b, !holding);

        if (n == 0 && !holding) break; /* stopping, and nothing left */
        holding = b->fn(b->arg, b->jobs, n);
    }
    return NULL;
}

struct batcher *batcher_start(size_t max, batch_fn fn, void *arg, struct snap_err *err)
{
    struct batcher *b = calloc(1, sizeof *b);

    if (b == NULL || max == 0 || fn == NULL) {
        free(b);
        snap_err_set(err, SNAP_ERR, "batcher: out of memory or no batch function");
        return NULL;
    }
    b->fn = fn;
    b->arg = arg;
    b->max = max;
    b->tail = &b->head;
    b->jobs = calloc(max, sizeof *b->jobs);
    if (b->jobs == NULL) {
        free(b);
        snap_err_set(err, SNAP_ERR, "batcher: out of memory for %zu jobs", max);
        return NULL;
    }
    (void)pthread_mutex_init(&b->mu, NULL);
    (void)pthread_cond_init(&b->wake, NULL);
    if (pthread_create(&b->thread, NULL, batcher_main, b) != 0) {
        (void)pthread_cond_destroy(&b->wake);
        (void)pthread_mutex_destroy(&b->mu);
        free(b->jobs);
        free(b);
        snap_err_set(err, SNAP_ERR, "batcher: cannot start its thread");
        return NULL;
    }
    return b;
}

int batcher_run(struct batcher *b, struct batch_job *job, struct snap_err *err)
{
    if (sem_init(&job->done, 0, 0) != 0)
        return snap_err_set(err, SNAP_ERR, "batcher: cannot create a semaphore");
    job->next = NULL;
    (void)pthread_mutex_lock(&b->mu);
    *b->tail = job;
    b->tail = &job->next;
    (void)pthread_cond_signal(&b->wake);
    (void)pthread_mutex_unlock(&b->mu);
    while (sem_wait(&job->done) != 0) {
    } /* EINTR only */
    (void)sem_destroy(&job->done);
    return SNAP_OK;
}

void batcher_done(struct batch_job *job)
{
    (void)sem_post(&job->done);
}

void batcher_requeue(struct batcher *b, struct batch_job *job)
{
    (void)pthread_mutex_lock(&b->mu);
    job->next = b->head;
    b->head = job;
    if (b->tail == &b->head) b->tail = &job->next;
    (void)pthread_mutex_unlock(&b->mu);
}

void batcher_stop(struct batcher *b)
{
    if (b == NULL) return;
    (void)pthread_mutex_lock(&b->mu);
    b->stopping = 1;
    (void)pthread_cond_signal(&b->wake);
    (void)pthread_mutex_unlock(&b->mu);
    (void)pthread_join(b->thread, NULL);
    (void)pthread_cond_destroy(&b->wake);
    (void)pthread_mutex_destroy(&b->mu);
    free(b->jobs);
    free(b);
}
