/* reads.c: takes inboxes for GET /chats/{username} in batches.
 *
 * A read waits on two storage steps: the atomic take of its inbox (Redis,
 * fsynced with appendfsync always, since it deletes) and the expiry of what
 * it took in the cold store (an fsync), so that the admin lookup shows the
 * read time. Each request thread queues its read and sleeps once (a
 * batcher, snap/batcher.h); the batcher's thread serves all queued reads
 * at a time:
 *   1. one clock reading, the read time of the whole batch;
 *   2. one Redis round trip with each inbox's own MULTI HGETALL DEL EXEC
 *      (hot_inbox_take_many): exactly once still holds per inbox;
 *   3. one cold-store commit expiring every message taken;
 *   4. wake the readers.
 * If step 3 fails the messages are still returned (they are out of Redis)
 * and their expiry goes to the retry worker (expire_retry.c), never
 * dropped. */
#include <stdlib.h>

#include "fetch.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/log.h"
#include "snap/metrics.h"

#define READS_BATCH_MAX 512

struct reads {
    struct snap_ctx *ctx;
    struct expire_retry *retry;
    struct batcher *batcher;
    struct hot_store *hot; /* the batcher thread's own Redis connection */
    /* The batcher thread's own, READS_BATCH_MAX each. */
    const char **users;
    struct hot_take *takes;
    int64_t *ids; /* grows with the messages of a batch */
    size_t ids_cap;
};

static struct read_job *read_of(struct batch_job *b)
{
    return (struct read_job *)b; /* base is the first member */
}

/* Step 3 for the messages of takes[0..n). */
static void expire_taken(struct reads *rd, size_t n, int64_t now)
{
    size_t total = 0, k = 0, i, j;
    struct snap_err err;

    for (i = 0; i < n; i++) total += rd->takes[i].msgs.len;
    if (total == 0) return;
    if (total > rd->ids_cap) {
        int64_t *ids = realloc(rd->ids, total * sizeof *ids);
        if (ids == NULL) {
            log_event(SNAP_LOG_ERROR, NULL, "expire",
                      "out of memory for %zu ids: their cold-store expiry is skipped", total);
            return;
        }
        rd->ids = ids;
        rd->ids_cap = total;
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < rd->takes[i].msgs.len; j++) rd->ids[k++] = rd->takes[i].msgs.items[j].id;
    if (cold_msg_expire(rd->ctx->cold, rd->ids, total, now, &err) != SNAP_OK) {
        log_event(SNAP_LOG_WARN, NULL, "expire",
                  "cold store expiry of %zu read messages deferred: %s", total, err.msg);
        metrics_add(rd->ctx->metrics, METRIC_STORE_ERRORS_COLD, 1);
        expire_retry_defer(rd->retry, rd->hot, rd->ids, total, now, NULL);
    }
}

/* One batch (batch_fn). */
static int reads_batch(void *arg, struct batch_job **jobs, size_t n)
{
    struct reads *rd = arg;
    struct snap_err err;
    int64_t now = clock_now_ms(); /* step 1 */
    size_t i;

    for (i = 0; i < n; i++) rd->users[i] = read_of(jobs[i])->user;
    (void)hot_inbox_take_many(rd->hot, rd->users, n, now, rd->takes, &err); /* step 2 */
    expire_taken(rd, n, now);
    for (i = 0; i < n; i++) { /* step 4 */
        struct read_job *job = read_of(jobs[i]);
        job->rc = rd->takes[i].rc;
        if (job->rc != SNAP_OK) job->err = err;
        job->msgs = rd->takes[i].msgs;
        job->n_expired = rd->takes[i].n_expired;
        batcher_done(&job->base);
    }
    return 0;
}

int reads_take(struct reads *rd, struct read_job *job)
{
    job->rc = SNAP_ERR;
    job->msgs = (struct hot_msg_list){0};
    job->n_expired = 0;
    if (batcher_run(rd->batcher, &job->base, &job->err) != SNAP_OK) return SNAP_ERR;
    return job->rc;
}

static void reads_free(struct reads *rd)
{
    if (rd == NULL) return;
    hot_free(rd->hot);
    free(rd->users);
    free(rd->takes);
    free(rd->ids);
    free(rd);
}

struct reads *reads_start(struct snap_ctx *ctx, struct expire_retry *retry, struct snap_err *err)
{
    struct reads *rd = calloc(1, sizeof *rd);

    if (rd == NULL) {
        snap_err_set(err, SNAP_ERR, "out of memory for the read batcher");
        return NULL;
    }
    rd->ctx = ctx;
    rd->retry = retry;
    rd->users = calloc(READS_BATCH_MAX, sizeof *rd->users);
    rd->takes = calloc(READS_BATCH_MAX, sizeof *rd->takes);
    if (rd->users == NULL || rd->takes == NULL) {
        reads_free(rd);
        snap_err_set(err, SNAP_ERR, "out of memory for the read batcher");
        return NULL;
    }
    rd->hot = hot_new(&ctx->cfg, err);
    if (rd->hot == NULL ||
        (rd->batcher = batcher_start(READS_BATCH_MAX, reads_batch, rd, err)) == NULL) {
        reads_free(rd);
        return NULL;
    }
    return rd;
}

void reads_stop(struct reads *rd)
{
    if (rd == NULL) return;
    batcher_stop(rd->batcher);
    reads_free(rd);
}
