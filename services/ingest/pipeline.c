/* pipeline.c: the one thread per ingest process that stores every send.
 *
 * A send costs three waits on storage: its id (Redis INCR), its durable
 * record (a cold-store commit, an fsync) and its hot copy (Redis MULTI,
 * another fsync with appendfsync always). Done by each request thread on
 * its own, that is three round trips and six context switches per send.
 * Here the request threads queue their messages and sleep once (a batcher,
 * snap/batcher.h); its thread does the work for all of them in batches, one
 * cycle at a time:
 *
 *   1. one Redis round trip: the hot copies of the batch committed in the
 *      previous cycle, and INCRBY n for the n sends queued since;
 *   2. answer the previous batch (201, or the failure of its hot copy);
 *   3. give the new batch its ids, in queue order, and commit it to the
 *      cold store as one transaction (cold_msg_put_many).
 *
 * So the order of each send is the one handlers.c promises: id, then the
 * durable record, then the hot copy; a 201 waits for both. Ids stay
 * increasing in the order sends reached this process.
 *
 * Failures, per message: no id -> 503, nothing stored; cold store failed
 * -> 503, nothing deliverable; hot copy failed -> the cold record is marked
 * expired at its send time (shown as never delivered) and 503. An id that
 * the cold store already holds (Redis lost its last INCRs in a crash) makes
 * the counter jump past the highest stored id, and the message goes round
 * again with a new id, up to PIPE_ATTEMPTS times.
 *
 * Stop: pipeline_stop() lets the batcher finish every queued send first. */
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "snap/batcher.h"
#include "snap/cold_store.h"
#include "snap/hot_store.h"
#include "snap/log.h"

#define PIPE_BATCH_MAX 512 /* sends stored per cycle at most            */
#define PIPE_ATTEMPTS  3   /* ids tried per send before it gives up     */

struct pipeline {
    struct snap_ctx *ctx;
    struct batcher *batcher;
    struct hot_store *hot; /* the batcher thread's own Redis connection */
    /* The batcher thread's own, PIPE_BATCH_MAX each: prev holds the sends
     * stored in the cold store whose hot copies go out next cycle. */
    struct send_job **prev;
    size_t nprev;
    struct cold_msg *msgs;
    struct hot_put *puts;
    int *rcs;
};

/* The send_job whose base is b (base is its first member). */
static struct send_job *send_of(struct batch_job *b)
{
    return (struct send_job *)b;
}

/* Ends job with rc (SNAP_OK or a failure of store doing what) and wakes its
 * request thread. job may be gone once this returns. */
static void finish(struct send_job *job, int rc, const char *store, const char *what,
                   const struct snap_err *err)
{
    job->rc = rc;
    job->store = store;
    job->what = what;
    if (rc != SNAP_OK && err != NULL) job->err = *err;
    batcher_done(&job->base);
}

/* The message of job whose hot copy failed: stored but never deliverable,
 * so its cold record is expired at its send time. */
static void undeliverable(struct pipeline *p, struct send_job *job)
{
    struct snap_err err;
    const struct cold_msg *m = &job->msg;

    if (cold_msg_expire(p->ctx->cold, &m->id, 1, m->created_ms, &err) != SNAP_OK)
        log_event(SNAP_LOG_ERROR, job->request_id, "undeliverable",
                  "message %lld is stored but not deliverable and could not be marked "
                  "expired: %s",
                  (long long)m->id, err.msg);
}

/* Redis lost INCRs: raises the counter past the highest stored id. */
static void raise_counter(struct pipeline *p, const struct send_job *job)
{
    struct snap_err err;
    int64_t max_id = 0;

    log_event(SNAP_LOG_WARN, job->request_id, "id_conflict",
              "id %lld already stored (Redis lost writes?); raising the counter",
              (long long)job->msg.id);
    if (cold_msg_max_id(p->ctx->cold, &max_id, &err) != SNAP_OK ||
        hot_id_floor(p->hot, max_id, &err) != SNAP_OK)
        log_event(SNAP_LOG_WARN, job->request_id, "id_conflict", "raising the counter: %s",
                  err.msg);
}

/* Step 3: ids from first_id on for batch[0..n), then one cold-store batch.
 * What got stored moves to p->prev; conflicts go round again; the rest is
 * answered. */
static void record(struct pipeline *p, struct batch_job **batch, size_t n, int64_t first_id)
{
    struct snap_err err;
    size_t i;
    int conflicted = 0;

    for (i = 0; i < n; i++) {
        send_of(batch[i])->msg.id = first_id + (int64_t)i;
        p->msgs[i] = send_of(batch[i])->msg;
    }
    (void)cold_msg_put_many(p->ctx->cold, p->msgs, n, p->rcs, &err);
    for (i = 0; i < n; i++) {
        struct send_job *job = send_of(batch[i]);
        if (p->rcs[i] == SNAP_OK) {
            p->prev[p->nprev++] = job;
        } else if (p->rcs[i] == SNAP_ECONFLICT && ++job->attempts < PIPE_ATTEMPTS) {
            if (!conflicted++) raise_counter(p, job);
            batcher_requeue(p->batcher, &job->base);
        } else if (p->rcs[i] == SNAP_ECONFLICT) {
            snap_err_set(&err, SNAP_ERR, "ids kept conflicting after %d attempts", PIPE_ATTEMPTS);
            finish(job, SNAP_ERR, "cold", "recording the message", &err);
        } else {
            finish(job, p->rcs[i], "cold", "recording the message", &err);
        }
    }
}

/* One cycle (batch_fn): jobs are the sends queued since the last one. */
static int pipeline_cycle(void *arg, struct batch_job **jobs, size_t n)
{
    struct pipeline *p = arg;
    struct snap_err err;
    int64_t first_id = 0;
    size_t i;

    for (i = 0; i < p->nprev; i++) {
        const struct cold_msg *m = &p->prev[i]->msg;
        p->puts[i] = (struct hot_put){m->username, m->id, m->expires_ms, m->text, m->text_len};
    }
    /* Steps 1 and 2. */
    int rc = hot_inbox_put_many(p->hot, p->puts, p->nprev, p->rcs, n, &first_id, &err);
    for (i = 0; i < p->nprev; i++) {
        struct send_job *job = p->prev[i];
        if (p->rcs[i] != SNAP_OK) undeliverable(p, job);
        finish(job, p->rcs[i], "redis", "making the message deliverable", &err);
    }
    p->nprev = 0;
    if (n == 0) return 0;
    if (first_id == 0) {
        if (rc == SNAP_OK) snap_err_set(&err, SNAP_ERR, "no ids reserved");
        for (i = 0; i < n; i++)
            finish(send_of(jobs[i]), rc == SNAP_OK ? SNAP_ERR : rc, "redis", "taking a message id",
                   &err);
        return 0;
    }
    record(p, jobs, n, first_id); /* step 3 */
    return p->nprev > 0;
}

int pipeline_send(struct pipeline *p, struct send_job *job)
{
    job->rc = SNAP_ERR;
    job->attempts = 0;
    if (batcher_run(p->batcher, &job->base, &job->err) != SNAP_OK) return SNAP_ERR;
    return job->rc;
}

static void pipeline_free(struct pipeline *p)
{
    if (p == NULL) return;
    hot_free(p->hot);
    free(p->prev);
    free(p->msgs);
    free(p->puts);
    free(p->rcs);
    free(p);
}

int pipeline_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct pipeline *p = calloc(1, sizeof *p);

    if (p == NULL) return snap_err_set(err, SNAP_ERR, "out of memory for the send pipeline");
    p->ctx = ctx;
    p->prev = calloc(PIPE_BATCH_MAX, sizeof *p->prev);
    p->msgs = calloc(PIPE_BATCH_MAX, sizeof *p->msgs);
    p->puts = calloc(PIPE_BATCH_MAX, sizeof *p->puts);
    p->rcs = calloc(PIPE_BATCH_MAX, sizeof *p->rcs);
    if (!p->prev || !p->msgs || !p->puts || !p->rcs) {
        pipeline_free(p);
        return snap_err_set(err, SNAP_ERR, "out of memory for the send pipeline");
    }
    p->hot = hot_new(&ctx->cfg, err);
    if (p->hot == NULL ||
        (p->batcher = batcher_start(PIPE_BATCH_MAX, pipeline_cycle, p, err)) == NULL) {
        pipeline_free(p);
        return SNAP_ERR;
    }
    ctx->data = p;
    return SNAP_OK;
}

void pipeline_stop(struct snap_ctx *ctx)
{
    struct pipeline *p = ctx->data;

    if (p == NULL) return;
    batcher_stop(p->batcher); /* serves what is queued first */
    pipeline_free(p);
    ctx->data = NULL;
}
