/* pipeline.c: the one thread per ingest process that stores every send.
 *
 * The cold store decides delivery (docs/RELIABILITY.md), so a send costs
 * one wait on durable storage: the commit of its cold record (an fsync).
 * Its id (Redis INCRBY) and its hot copy (a Redis write, not fsynced:
 * appendfsync everysec) are cheap round trips. The request threads queue
 * their messages and sleep once (a batcher, snap/batcher.h); its thread
 * does the work for all of them in batches, one cycle at a time:
 *
 *   1. one Redis round trip: the hot copies of the batch committed in the
 *      previous cycle, INCRBY n for the n sends queued since, and the size
 *      of each of their inboxes;
 *   2. answer the previous batch: 201 for every message, since each is
 *      durable and claimable; a hot copy that failed only makes the repair
 *      (repair.c) put it back from the cold store;
 *   3. refuse what may not be stored (past its deadline: 503; a full inbox:
 *      429), give the rest ids in queue order and commit them to the cold
 *      store as one transaction (cold_msg_put_many).
 *
 * So a 201 means the message is durable and deliverable, and a reader that
 * reads right after it finds the hot copy. Anything but a 201 means never
 * delivered: a send refused before its commit is not stored at all, and a
 * commit that failed is closed as COLD_REFUSED (in case it did reach the
 * disk), so that no claim can ever win it. An id that the cold store
 * already holds (Redis lost its last INCRs) makes the counter jump past the
 * highest stored id, and the message goes round again with a new id, up to
 * PIPE_ATTEMPTS times. An Idempotency-Key that another message holds ends
 * the send with SNAP_EEXIST (handlers.c answers with that message).
 *
 * Stop: pipeline_stop() lets the batcher finish every queued send first. */
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "snap/batcher.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/deadline.h"
#include "snap/hot_ids.h"
#include "snap/hot_inbox.h"
#include "snap/hot_store.h"
#include "snap/log.h"

#define PIPE_BATCH_MAX 512 /* sends stored per cycle at most            */
#define PIPE_ATTEMPTS  3   /* ids tried per send before it gives up     */
#define PIPE_COMMIT_MS 50  /* a send with less time left is not stored  */

struct pipeline {
    struct snap_ctx *ctx;
    struct repair *repair;
    struct batcher *batcher;
    struct hot_store *hot; /* the batcher thread's own Redis connection */
    /* The batcher thread's own, PIPE_BATCH_MAX each: prev holds the sends
     * stored in the cold store whose hot copies go out next cycle. */
    struct send_job **prev;
    size_t nprev;
    struct send_job **keep; /* this cycle's sends that go on to the commit */
    struct cold_msg *msgs;
    struct hot_put *puts;
    int *rcs;
    const char **users;
    int64_t *counts;
    unsigned losses_seen; /* repair_losses() when the counter was last checked */
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

/* Redis may have lost writes (a lost connection was noted since the last
 * check): raises the counter past the highest stored id, and when the ids
 * just reserved from first_id are not above it, reserves n fresh ones.
 * Ids then stay increasing across a Redis restart that lost INCRs. */
static int recheck_ids(struct pipeline *p, size_t n, int64_t *first_id, struct snap_err *err)
{
    unsigned losses = repair_losses(p->repair);
    int64_t max_id = 0;

    if (losses == p->losses_seen) return SNAP_OK;
    if (cold_msg_max_id(p->ctx->cold, &max_id, err) != SNAP_OK ||
        hot_id_floor(p->hot, max_id, err) != SNAP_OK)
        return SNAP_EUNAVAIL;
    p->losses_seen = losses;
    if (*first_id > max_id) return SNAP_OK;
    log_event(SNAP_LOG_WARN, NULL, "id_counter",
              "Redis handed out id %lld, not above the stored %lld: counter raised",
              (long long)*first_id, (long long)max_id);
    return hot_inbox_put_many(p->hot, NULL, 0, NULL, n, first_id, NULL, 0, NULL, err);
}

/* The commit of ids[0..n) failed, so their sends are answered 503; should
 * it have reached the disk anyway, they must never be claimed. */
static void refuse(struct pipeline *p, const int64_t *ids, size_t n)
{
    struct snap_err err;
    size_t closed = 0;

    if (n == 0) return;
    if (cold_msg_close(p->ctx->cold, ids, n, COLD_REFUSED, clock_now_ms(), &closed, &err) !=
        SNAP_OK) {
        /* The commit failed, so these are almost surely not stored; the
         * repair only ever puts back what it reads from the store. */
        log_event(SNAP_LOG_WARN, NULL, "refuse",
                  "could not mark %zu failed sends refused (ids %lld..): %s", n,
                  (long long)ids[0], err.msg);
    } else if (closed > 0) {
        log_event(SNAP_LOG_WARN, NULL, "refuse",
                  "%zu of %zu failed sends had reached the store; marked refused", closed, n);
    }
}

/* Step 3, part one: which of batch[0..n) may be stored. The others are
 * answered now; the kept ones go to p->keep. Returns how many are kept. */
static size_t admit(struct pipeline *p, struct batch_job **batch, size_t n)
{
    const struct snap_config *cfg = &p->ctx->cfg;
    int64_t now = deadline_now();
    size_t kept = 0, i, j;

    for (i = 0; i < n; i++) {
        struct send_job *job = send_of(batch[i]);
        struct snap_err err;

        if (job->deadline > 0 && job->deadline - now < PIPE_COMMIT_MS) {
            snap_err_set(&err, SNAP_ETIMEOUT, "the send waited past its deadline; not stored");
            finish(job, SNAP_ETIMEOUT, "ingest", "queueing the message", &err);
            continue;
        }
        if (p->counts[i] >= 0 && p->counts[i] + (int64_t)kept >= cfg->max_inbox) {
            int64_t ahead = p->counts[i]; /* this inbox's entries, plus sends to it kept here */
            for (j = 0; j < kept; j++) ahead += strcmp(p->keep[j]->msg.username, p->users[i]) == 0;
            if (ahead >= cfg->max_inbox) {
                snap_err_set(&err, SNAP_EFULL, "inbox holds %lld messages", (long long)ahead);
                finish(job, SNAP_EFULL, "redis", "checking the inbox", &err);
                continue;
            }
        }
        p->keep[kept++] = job;
    }
    return kept;
}

/* Step 3, part two: ids from first_id on for p->keep[0..n), then one
 * cold-store batch. What got stored moves to p->prev; id conflicts go
 * round again; the rest is answered. */
static void record(struct pipeline *p, size_t n, int64_t first_id)
{
    struct snap_err err;
    int64_t min_deadline = 0;
    size_t i, nfail = 0;
    int conflicted = 0, rc;

    for (i = 0; i < n; i++) {
        struct send_job *job = p->keep[i];
        job->msg.id = first_id + (int64_t)i;
        p->msgs[i] = job->msg;
        if (job->deadline > 0 && (min_deadline == 0 || job->deadline < min_deadline))
            min_deadline = job->deadline;
    }
    deadline_set(min_deadline); /* bounds the store's lock waits */
    rc = cold_msg_put_many(p->ctx->cold, p->msgs, n, p->rcs, &err);
    deadline_set(0);
    if (rc != SNAP_OK && rc != SNAP_ECONFLICT && rc != SNAP_EEXIST) {
        for (i = 0; i < n; i++) /* the failed ones, for refuse() */
            if (p->rcs[i] != SNAP_OK && p->rcs[i] != SNAP_ECONFLICT && p->rcs[i] != SNAP_EEXIST)
                p->msgs[nfail++].id = p->keep[i]->msg.id;
    }
    for (i = 0; i < n; i++) {
        struct send_job *job = p->keep[i];
        int one = p->rcs[i];
        if (one == SNAP_OK) {
            p->prev[p->nprev++] = job;
        } else if (one == SNAP_ECONFLICT && ++job->attempts < PIPE_ATTEMPTS) {
            if (!conflicted++) raise_counter(p, job);
            batcher_requeue(p->batcher, &job->base);
        } else if (one == SNAP_ECONFLICT) {
            snap_err_set(&err, SNAP_ERR, "ids kept conflicting after %d attempts", PIPE_ATTEMPTS);
            finish(job, SNAP_ERR, "cold", "recording the message", &err);
        } else if (one == SNAP_EEXIST) {
            finish(job, SNAP_EEXIST, "cold", "recording the message", NULL);
        } else {
            finish(job, one, "cold", "recording the message", &err);
        }
    }
    if (nfail > 0) {
        int64_t *ids = malloc(nfail * sizeof *ids);
        if (ids != NULL) {
            for (i = 0; i < nfail; i++) ids[i] = p->msgs[i].id;
            refuse(p, ids, nfail);
            free(ids);
        }
    }
}

/* One cycle (batch_fn): jobs are the sends queued since the last one. */
static int pipeline_cycle(void *arg, struct batch_job **jobs, size_t n)
{
    struct pipeline *p = arg;
    struct snap_err err;
    int64_t first_id = 0, lost_since = 0;
    size_t i, kept;

    for (i = 0; i < p->nprev; i++) {
        const struct cold_msg *m = &p->prev[i]->msg;
        p->puts[i] = (struct hot_put){m->username, m->id, m->expires_ms, m->text, m->text_len};
    }
    for (i = 0; i < n; i++) p->users[i] = send_of(jobs[i])->msg.username;
    /* Steps 1 and 2. */
    int rc = hot_inbox_put_many(p->hot, p->puts, p->nprev, p->rcs, n, &first_id, p->users, n,
                                p->counts, &err);
    for (i = 0; i < p->nprev; i++) {
        struct send_job *job = p->prev[i];
        if (p->rcs[i] != SNAP_OK && (lost_since == 0 || job->msg.created_ms < lost_since))
            lost_since = job->msg.created_ms;
        finish(job, SNAP_OK, NULL, NULL, NULL);
    }
    if (lost_since > 0) {
        log_event(SNAP_LOG_WARN, NULL, "hot_put", "hot copies failed (%s); repairing them",
                  err.msg);
        repair_note_lost(p->repair, lost_since);
    }
    p->nprev = 0;
    if (n == 0) return 0;
    if (first_id != 0 && recheck_ids(p, n, &first_id, &err) != SNAP_OK) {
        rc = SNAP_EUNAVAIL;
        first_id = 0;
    }
    if (first_id == 0) {
        if (rc == SNAP_OK) snap_err_set(&err, SNAP_ERR, "no ids reserved");
        for (i = 0; i < n; i++)
            finish(send_of(jobs[i]), rc == SNAP_OK ? SNAP_ERR : rc, "redis", "taking a message id",
                   &err);
        return 0;
    }
    /* Ids are handed out in queue order, so the kept sends take the first
     * ones of the reserved range; the rest of it is simply never used. */
    kept = admit(p, jobs, n);
    if (kept > 0) record(p, kept, first_id); /* step 3 */
    return p->nprev > 0;
}

int pipeline_send(struct pipeline *p, struct send_job *job)
{
    job->rc = SNAP_ERR;
    job->attempts = 0;
    job->deadline = deadline_get();
    if (batcher_run(p->batcher, &job->base, &job->err) != SNAP_OK) return SNAP_ERR;
    return job->rc;
}

static void pipeline_free(struct pipeline *p)
{
    if (p == NULL) return;
    hot_free(p->hot);
    free(p->prev);
    free(p->keep);
    free(p->msgs);
    free(p->puts);
    free(p->rcs);
    free(p->users);
    free(p->counts);
    free(p);
}

int pipeline_start(struct snap_ctx *ctx, struct repair *repair, struct pipeline **out,
                   struct snap_err *err)
{
    struct pipeline *p = calloc(1, sizeof *p);

    *out = NULL;
    if (p == NULL) return snap_err_set(err, SNAP_ERR, "out of memory for the send pipeline");
    p->ctx = ctx;
    p->repair = repair;
    p->losses_seen = ~0u; /* check the counter on the first cycle */
    p->prev = calloc(PIPE_BATCH_MAX, sizeof *p->prev);
    p->keep = calloc(PIPE_BATCH_MAX, sizeof *p->keep);
    p->msgs = calloc(PIPE_BATCH_MAX, sizeof *p->msgs);
    p->puts = calloc(PIPE_BATCH_MAX, sizeof *p->puts);
    p->rcs = calloc(PIPE_BATCH_MAX, sizeof *p->rcs);
    p->users = calloc(PIPE_BATCH_MAX, sizeof *p->users);
    p->counts = calloc(PIPE_BATCH_MAX, sizeof *p->counts);
    if (!p->prev || !p->keep || !p->msgs || !p->puts || !p->rcs || !p->users || !p->counts) {
        pipeline_free(p);
        return snap_err_set(err, SNAP_ERR, "out of memory for the send pipeline");
    }
    p->hot = hot_new(&ctx->cfg, err);
    if (p->hot == NULL ||
        (p->batcher = batcher_start(PIPE_BATCH_MAX, pipeline_cycle, p, err)) == NULL) {
        pipeline_free(p);
        return SNAP_ERR;
    }
    *out = p;
    return SNAP_OK;
}

void pipeline_stop(struct pipeline *p)
{
    if (p == NULL) return;
    batcher_stop(p->batcher); /* serves what is queued first */
    pipeline_free(p);
}
