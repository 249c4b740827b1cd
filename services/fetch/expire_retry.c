/* expire_retry.c: makes sure every read message ends up expired in the cold
 * store, even when the cold store was failing at read time.
 *
 * A read that cannot update the cold store hands the ids to
 * expire_retry_defer(): they go to the Redis list snap:expire_retry, shared
 * by every fetch instance, or — if Redis refuses as well — to a list kept in
 * this process. One background thread per instance applies them, oldest
 * first, once a second, and puts back whatever still fails. Updates are
 * idempotent (cold_msg_expire only lowers an expiry), so applying one twice
 * is harmless. At stop, what is still pending here is pushed to Redis, and
 * anything even Redis refuses is logged with its ids for a human. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fetch.h"
#include "snap/cold_store.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"

#define RETRY_PERIOD_MS 1000
#define RETRY_BATCH     256

struct pending {
    int64_t id;
    int64_t at_ms;
};

struct expire_retry {
    struct snap_ctx *ctx;
    struct hot_store *hot; /* the worker thread's own Redis handle */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    int stopping;
    struct pending *local; /* guarded by mu: updates Redis refused too */
    size_t nlocal, caplocal;
};

/* Appends to the in-process list. Called with mu held. */
static int local_add(struct expire_retry *er, int64_t id, int64_t at_ms)
{
    if (er->nlocal == er->caplocal) {
        size_t cap = er->caplocal ? er->caplocal * 2 : 64;
        struct pending *p = realloc(er->local, cap * sizeof *p);
        if (!p) return -1;
        er->local = p;
        er->caplocal = cap;
    }
    er->local[er->nlocal++] = (struct pending){id, at_ms};
    return 0;
}

void expire_retry_defer(struct expire_retry *er, struct hot_store *hot, const int64_t *ids,
                        size_t n, int64_t at_ms, const char *request_id)
{
    struct snap_ctx *ctx = er->ctx;
    struct snap_err err;
    metrics_add(ctx->metrics, METRIC_EXPIRE_RETRIES, n);
    for (size_t i = 0; i < n; i++) {
        if (hot_retry_push(hot, ids[i], at_ms, &err) == SNAP_OK) continue;
        pthread_mutex_lock(&er->mu);
        int rc = local_add(er, ids[i], at_ms);
        pthread_mutex_unlock(&er->mu);
        if (rc != 0)
            log_event(SNAP_LOG_ERROR, request_id, "expire_lost",
                      "message %lld was read at %lld but its cold-store expiry could not be "
                      "queued (out of memory); expire it by hand",
                      (long long)ids[i], (long long)at_ms);
    }
    pthread_cond_signal(&er->wake);
}

/* Applies the in-process list; keeps what still fails. */
static void drain_local(struct expire_retry *er)
{
    pthread_mutex_lock(&er->mu);
    struct pending *items = er->local;
    size_t n = er->nlocal;
    er->local = NULL;
    er->nlocal = er->caplocal = 0;
    pthread_mutex_unlock(&er->mu);
    struct snap_err err;
    for (size_t i = 0; i < n; i++) {
        if (cold_msg_expire(er->ctx->cold, &items[i].id, 1, items[i].at_ms, &err) == SNAP_OK)
            continue;
        pthread_mutex_lock(&er->mu);
        for (; i < n; i++) /* the store is still down: keep the rest */
            if (local_add(er, items[i].id, items[i].at_ms) != 0)
                log_event(SNAP_LOG_ERROR, NULL, "expire_lost",
                          "message %lld: expiry at %lld dropped (out of memory)",
                          (long long)items[i].id, (long long)items[i].at_ms);
        pthread_mutex_unlock(&er->mu);
    }
    free(items);
}

/* Applies up to RETRY_BATCH entries of the shared Redis queue. */
static void drain_shared(struct expire_retry *er)
{
    struct snap_err err;
    for (int i = 0; i < RETRY_BATCH; i++) {
        int64_t id, at;
        int rc = hot_retry_pop(er->hot, &id, &at, &err);
        if (rc != SNAP_OK) {
            if (rc != SNAP_ENOTFOUND)
                log_event(SNAP_LOG_WARN, NULL, "expire_retry", "redis: %s", err.msg);
            return;
        }
        if (cold_msg_expire(er->ctx->cold, &id, 1, at, &err) == SNAP_OK) {
            log_event(SNAP_LOG_INFO, NULL, "expire_retry", "message %lld expired (retried)",
                      (long long)id);
            continue;
        }
        log_event(SNAP_LOG_WARN, NULL, "expire_retry", "cold store still failing: %s", err.msg);
        if (hot_retry_push(er->hot, id, at, &err) != SNAP_OK) {
            pthread_mutex_lock(&er->mu);
            (void)local_add(er, id, at);
            pthread_mutex_unlock(&er->mu);
        }
        return;
    }
}

static void *retry_main(void *arg)
{
    struct expire_retry *er = arg;
    pthread_mutex_lock(&er->mu);
    while (!er->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += RETRY_PERIOD_MS / 1000;
        (void)pthread_cond_timedwait(&er->wake, &er->mu, &until);
        if (er->stopping) break;
        pthread_mutex_unlock(&er->mu);
        drain_local(er);
        drain_shared(er);
        pthread_mutex_lock(&er->mu);
    }
    pthread_mutex_unlock(&er->mu);
    return NULL;
}

struct expire_retry *expire_retry_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct expire_retry *er = calloc(1, sizeof *er);
    if (!er) {
        snap_err_set(err, SNAP_ERR, "out of memory for the retry worker");
        return NULL;
    }
    er->ctx = ctx;
    er->hot = hot_new(&ctx->cfg, err);
    if (!er->hot) {
        free(er);
        return NULL;
    }
    pthread_mutex_init(&er->mu, NULL);
    pthread_cond_init(&er->wake, NULL);
    if (pthread_create(&er->thread, NULL, retry_main, er) != 0) {
        hot_free(er->hot);
        free(er);
        snap_err_set(err, SNAP_ERR, "cannot start the retry worker: %s", strerror(errno));
        return NULL;
    }
    return er;
}

void expire_retry_stop(struct expire_retry *er)
{
    if (!er) return;
    pthread_mutex_lock(&er->mu);
    er->stopping = 1;
    pthread_cond_signal(&er->wake);
    pthread_mutex_unlock(&er->mu);
    pthread_join(er->thread, NULL);

    drain_local(er); /* one last try, then hand the rest to Redis */
    struct snap_err err;
    for (size_t i = 0; i < er->nlocal; i++)
        if (hot_retry_push(er->hot, er->local[i].id, er->local[i].at_ms, &err) != SNAP_OK)
            log_event(SNAP_LOG_ERROR, NULL, "expire_lost",
                      "message %lld was read at %lld but could not be expired in the cold "
                      "store: set its expiration_date by hand",
                      (long long)er->local[i].id, (long long)er->local[i].at_ms);
    free(er->local);
    hot_free(er->hot);
    pthread_cond_destroy(&er->wake);
    pthread_mutex_destroy(&er->mu);
    free(er);
}
