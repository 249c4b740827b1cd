/* reads.c: claims inboxes for GET /chats/{username} in batches.
 *
 * Redis holds each inbox's candidates; the cold store decides which of them
 * a read gets (cold_msg_claim: only unread, unexpired, not unsent messages,
 * each won by one claim, ever). Each request thread queues its read and
 * sleeps once (a batcher, snap/batcher.h); the batcher's thread serves all
 * queued reads at a time:
 *   1. one clock reading, the read time of the whole batch;
 *   2. one Redis round trip: the oldest `limit` entries of each inbox and
 *      its size, removing nothing (hot_inbox_peek_many);
 *   3. one cold-store commit claiming every read's candidates with its own
 *      token — a resurrected or stale entry simply is not won;
 *   4. wake the readers with what they won;
 *   5. one Redis round trip dropping what was settled (won, not winnable,
 *      expired) from the index. Losing that round trip costs nothing but a
 *      stale entry, which the next claim refuses.
 * If step 2 or 3 fails the read answers 503 and the index still holds its
 * candidates: nothing is lost and nothing is given twice. A read past its
 * deadline claims nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"
#include "snap/clock.h"
#include "snap/deadline.h"
#include "snap/log.h"
#include "snap/metrics.h"

#define READS_BATCH_MAX 512

struct reads {
    struct snap_ctx *ctx;
    struct batcher *batcher;
    struct hot_store *hot; /* the batcher thread's own Redis connection */
    /* The batcher thread's own, READS_BATCH_MAX each. */
    const char **users;
    size_t *limits;
    struct hot_peek *peeks;
    struct cold_claim *claims;
    size_t *claim_of; /* job index -> claims index, or SIZE_MAX */
    struct hot_drop *drops;
    char (*names)[SNAP_USERNAME_MAX + 1]; /* the drops' own copies of the users */
    int64_t *ids; /* candidates, won ids and dropped ids of a batch; grows */
    size_t ids_cap;
};

static struct read_job *read_of(struct batch_job *b)
{
    return (struct read_job *)b; /* base is the first member */
}

/* Room for the id lists of the batch: per job, its candidates, the ids it
 * won and the ids to drop (candidates + dead). */
static int ids_room(struct reads *rd, size_t need)
{
    if (need <= rd->ids_cap) return 0;
    int64_t *ids = realloc(rd->ids, need * sizeof *ids);
    if (ids == NULL) return -1;
    rd->ids = ids;
    rd->ids_cap = need;
    return 0;
}

/* Keeps in job->msgs the peeked messages whose ids are in won[0..n_won)
 * (both ascending) and frees the others. */
static void keep_won(struct read_job *job, struct hot_peek *pk, const int64_t *won, size_t n_won)
{
    size_t k = 0, out = 0;

    for (size_t i = 0; i < pk->msgs.len; i++) {
        struct hot_msg *m = &pk->msgs.items[i];
        while (k < n_won && won[k] < m->id) k++;
        if (k < n_won && won[k] == m->id)
            pk->msgs.items[out++] = *m;
        else
            free(m->text);
    }
    pk->msgs.len = out;
    if (out == 0) hot_msg_list_free(&pk->msgs); /* the array too: a caller that reads again
                                                   overwrites an empty job->msgs */
    job->msgs = pk->msgs;
    pk->msgs = (struct hot_msg_list){0};
}

/* Ends job with rc (and err, store on failure) and wakes its thread. */
static void finish(struct read_job *job, int rc, const char *store, const struct snap_err *err)
{
    job->rc = rc;
    job->store = store;
    if (rc != SNAP_OK && err != NULL) job->err = *err;
    batcher_done(&job->base);
}

/* One batch (batch_fn). */
static int reads_batch(void *arg, struct batch_job **jobs, size_t n)
{
    struct reads *rd = arg;
    struct snap_err err, cerr;
    int64_t now = clock_now_ms(), mono = deadline_now(), min_deadline = 0; /* step 1 */
    size_t i, nclaims = 0, ndrops = 0, need = 0, at = 0;

    for (i = 0; i < n; i++) {
        rd->users[i] = read_of(jobs[i])->user;
        rd->limits[i] = read_of(jobs[i])->limit;
    }
    (void)hot_inbox_peek_many(rd->hot, rd->users, rd->limits, n, now, rd->peeks, &err); /* 2 */
    for (i = 0; i < n; i++) need += 3 * rd->peeks[i].msgs.len + rd->peeks[i].n_dead;
    if (ids_room(rd, need) != 0) {
        snap_err_set(&err, SNAP_ERR, "out of memory for the ids of %zu reads", n);
        for (i = 0; i < n; i++) {
            hot_peek_free(&rd->peeks[i]);
            finish(read_of(jobs[i]), SNAP_ERR, "fetch", &err);
        }
        return 0;
    }
    /* Step 3: a claim for every read that has candidates and time left. */
    for (i = 0; i < n; i++) {
        struct read_job *job = read_of(jobs[i]);
        struct hot_peek *pk = &rd->peeks[i];

        rd->claim_of[i] = SIZE_MAX;
        if (pk->rc != SNAP_OK || pk->msgs.len == 0) continue;
        if (job->deadline > 0 && job->deadline <= mono) continue;
        struct cold_claim *c = &rd->claims[nclaims];
        int64_t *cand = rd->ids + at;
        for (size_t j = 0; j < pk->msgs.len; j++) cand[j] = pk->msgs.items[j].id;
        *c = (struct cold_claim){.username = job->user, .token = job->token, .ids = cand,
                                 .n = pk->msgs.len, .claimed = cand + pk->msgs.len};
        at += 2 * pk->msgs.len;
        if (job->deadline > 0 && (min_deadline == 0 || job->deadline < min_deadline))
            min_deadline = job->deadline;
        rd->claim_of[i] = nclaims++;
    }
    if (nclaims > 0) {
        deadline_set(min_deadline);
        int crc = cold_msg_claim(rd->ctx->cold, rd->claims, nclaims, now, &cerr);
        deadline_set(0);
        if (crc != SNAP_OK) metrics_add(rd->ctx->metrics, METRIC_STORE_ERRORS_COLD, 1);
    }
    /* Step 4, and what step 5 drops. */
    for (i = 0; i < n; i++) {
        struct read_job *job = read_of(jobs[i]);
        struct hot_peek *pk = &rd->peeks[i];
        struct cold_claim *c = rd->claim_of[i] != SIZE_MAX ? &rd->claims[rd->claim_of[i]] : NULL;
        int64_t *drop = rd->ids + at;
        size_t nd = 0;

        if (pk->rc != SNAP_OK) {
            finish(job, pk->rc, "redis", &err);
            continue;
        }
        job->more = pk->total > (int64_t)job->limit;
        job->n_expired = pk->n_dead;
        for (size_t j = 0; j < pk->n_dead; j++) drop[nd++] = pk->dead[j];
        if (c != NULL && c->rc == SNAP_OK)
            for (size_t j = 0; j < c->n; j++) drop[nd++] = c->ids[j]; /* all settled now */
        if (nd > 0) {
            /* The job is woken below: the drop keeps its own copy of the name. */
            snprintf(rd->names[ndrops], sizeof rd->names[ndrops], "%s", job->user);
            rd->drops[ndrops] = (struct hot_drop){rd->names[ndrops], drop, nd};
            ndrops++;
            at += nd;
        }
        if (c == NULL && pk->msgs.len > 0) { /* past its deadline: claims nothing */
            hot_peek_free(pk);
            snap_err_set(&cerr, SNAP_ETIMEOUT, "the read waited past its deadline; nothing taken");
            finish(job, SNAP_ETIMEOUT, "fetch", &cerr);
        } else if (c != NULL && c->rc != SNAP_OK) {
            hot_peek_free(pk);
            finish(job, c->rc, "cold", &cerr);
        } else {
            keep_won(job, pk, c ? c->claimed : NULL, c ? c->n_claimed : 0);
            hot_peek_free(pk);
            finish(job, SNAP_OK, NULL, NULL);
        }
    }
    /* Step 5, after the readers are on their way. */
    if (ndrops > 0 && hot_inbox_drop_many(rd->hot, rd->drops, ndrops, &err) != SNAP_OK)
        log_event(SNAP_LOG_WARN, NULL, "read",
                  "dropping settled entries from the index: %s (the claim refuses them)",
                  err.msg);
    return 0;
}

int reads_take(struct reads *rd, struct read_job *job)
{
    job->rc = SNAP_ERR;
    job->msgs = (struct hot_msg_list){0};
    job->more = 0;
    job->n_expired = 0;
    job->store = NULL;
    if (batcher_run(rd->batcher, &job->base, &job->err) != SNAP_OK) return SNAP_ERR;
    return job->rc;
}

static void reads_free(struct reads *rd)
{
    if (rd == NULL) return;
    hot_free(rd->hot);
    free(rd->users);
    free(rd->limits);
    free(rd->peeks);
    free(rd->claims);
    free(rd->claim_of);
    free(rd->drops);
    free(rd->names);
    free(rd->ids);
    free(rd);
}

struct reads *reads_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct reads *rd = calloc(1, sizeof *rd);

    if (rd == NULL) {
        snap_err_set(err, SNAP_ERR, "out of memory for the read batcher");
        return NULL;
    }
    rd->ctx = ctx;
    rd->users = calloc(READS_BATCH_MAX, sizeof *rd->users);
    rd->limits = calloc(READS_BATCH_MAX, sizeof *rd->limits);
    rd->peeks = calloc(READS_BATCH_MAX, sizeof *rd->peeks);
    rd->claims = calloc(READS_BATCH_MAX, sizeof *rd->claims);
    rd->claim_of = calloc(READS_BATCH_MAX, sizeof *rd->claim_of);
    rd->drops = calloc(READS_BATCH_MAX, sizeof *rd->drops);
    rd->names = calloc(READS_BATCH_MAX, sizeof *rd->names);
    if (!rd->users || !rd->limits || !rd->peeks || !rd->claims || !rd->claim_of || !rd->drops ||
        !rd->names) {
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
