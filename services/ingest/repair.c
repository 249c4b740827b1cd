/* repair.c: keeps Redis's hot index complete (one thread per ingest process).
 *
 * The cold store decides delivery; Redis only indexes the candidates a read
 * will try to claim. What Redis may lose — the last second of writes with
 * appendfsync everysec, a hot put whose reply was lost, everything after a
 * restart without its data or a failover to a lagging replica — stays
 * claimable in the cold store, and this thread puts it back:
 *
 *   - after any of this process's Redis connections was lost (the hook of
 *     hot_on_connection_lost, noted by main.c) or a hot put failed
 *     (pipeline.c): every claimable message created since REPAIR_MARGIN_MS
 *     before the last moment that connection was known to be fine;
 *   - when the epoch key is gone (Redis came back empty) or changed (another
 *     process saw it gone), and once at start: every claimable message, and
 *     the id counter is raised past the highest stored id first.
 *
 * A repair reads the cold store in pages (cold_msg_scan_open) and puts each
 * page in one round trip; putting a message that is already there changes
 * nothing, so repairs may overlap and repeat. Each pass runs at most
 * REPAIR_PASS_MS and then yields, keeping its cursor; a failed round trip
 * leaves the cursor where it was for the next pass. It never puts anything
 * the cold store does not hold as claimable, so it cannot make a refused,
 * read or unsent message deliverable. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ingest.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/hot_ids.h"
#include "snap/hot_inbox.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"

#define REPAIR_PERIOD_MS 1000  /* epoch check, and the longest wait for work */
#define REPAIR_MARGIN_MS 30000 /* covers everysec's loss and replica lag    */
#define REPAIR_PAGE      256   /* messages read and put per round trip      */
#define REPAIR_PASS_MS   500   /* longest stretch of work before yielding   */
#define REPAIR_EPOCH_MAX 64

struct repair {
    struct snap_ctx *ctx;
    struct hot_store *hot; /* the thread's own connection */
    pthread_t thread;
    pthread_mutex_t lock; /* guards stop, with wake */
    pthread_cond_t wake;
    int stop;
    _Atomic int64_t asked; /* earliest since_ms asked for, INT64_MAX: none */
    _Atomic unsigned losses; /* connections lost so far (repair_losses) */
    /* The thread's own: */
    char epoch[REPAIR_EPOCH_MAX]; /* last seen or set; "" unknown */
    int job;                      /* 1 while a repair is under way */
    int full;                     /* the job covers everything (and raises ids) */
    int set_epoch;                /* set a new epoch when the full job is done */
    int64_t since;                /* the job's lower bound on created_ms */
    int64_t cur_exp, cur_id;      /* its cursor */
    size_t put_total;
};

void repair_note_lost(struct repair *rp, int64_t since_ms)
{
    int64_t cur;

    if (rp == NULL) return;
    atomic_fetch_add(&rp->losses, 1);
    cur = atomic_load(&rp->asked);
    while (since_ms < cur && !atomic_compare_exchange_weak(&rp->asked, &cur, since_ms)) {
    }
    (void)pthread_cond_signal(&rp->wake);
}

unsigned repair_losses(struct repair *rp)
{
    return rp != NULL ? atomic_load(&rp->losses) : 0;
}

/* A fresh random epoch value. */
static void new_epoch(char out[REPAIR_EPOCH_MAX])
{
    unsigned char b[12] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

    if (fd >= 0) {
        ssize_t got = read(fd, b, sizeof b);
        (void)got;
        (void)close(fd);
    }
    int n = snprintf(out, REPAIR_EPOCH_MAX, "%lld-", (long long)clock_now_ms());
    for (size_t i = 0; i < sizeof b && n + 2 < REPAIR_EPOCH_MAX; i++)
        n += snprintf(out + n, (size_t)(REPAIR_EPOCH_MAX - n), "%02x", b[i]);
}

/* Starts (or widens) the job: from the start of the cursor, since the
 * earlier of its bound and since. */
static void job_begin(struct repair *rp, int full, int64_t since)
{
    if (!rp->job || since < rp->since) rp->since = since;
    if (full) {
        rp->full = 1;
        rp->since = 0;
    }
    if (!rp->job) rp->put_total = 0;
    rp->job = 1;
    rp->cur_exp = rp->cur_id = 0;
}

/* The epoch check: a missing or changed epoch means Redis lost its data. */
static void check_epoch(struct repair *rp)
{
    char seen[REPAIR_EPOCH_MAX];
    struct snap_err err;
    int rc = hot_epoch_get(rp->hot, seen, sizeof seen, &err);

    if (rc == SNAP_ENOTFOUND) {
        if (rp->job && rp->full && rp->set_epoch) return; /* that rebuild is under way */
        if (rp->epoch[0] != '\0')
            log_event(SNAP_LOG_WARN, NULL, "repair",
                      "Redis holds no epoch (restarted empty?): rebuilding the hot index");
        job_begin(rp, 1, 0);
        rp->set_epoch = 1;
    } else if (rc == SNAP_OK) {
        if (rp->epoch[0] != '\0' && strcmp(seen, rp->epoch) != 0) {
            log_event(SNAP_LOG_WARN, NULL, "repair",
                      "Redis's epoch changed: rebuilding the hot index");
            job_begin(rp, 1, 0);
        }
        memcpy(rp->epoch, seen, sizeof seen);
    }
    /* Any other failure: Redis is out of reach; the lost connection has
     * been noted, and the next pass tries again. */
}

/* One pass of the job, at most REPAIR_PASS_MS. */
static void run_job(struct repair *rp)
{
    struct cold_msg_list page = {0};
    struct hot_put puts[REPAIR_PAGE];
    int rcs[REPAIR_PAGE];
    struct snap_err err;
    int64_t start = clock_mono_ns(), max_id = 0;

    if (rp->full && rp->cur_exp == 0 && rp->cur_id == 0) {
        /* An empty Redis also lost the id counter. */
        if (cold_msg_max_id(rp->ctx->cold, &max_id, &err) != SNAP_OK ||
            hot_id_floor(rp->hot, max_id, &err) != SNAP_OK) {
            log_event(SNAP_LOG_WARN, NULL, "repair", "raising the id counter: %s", err.msg);
            return;
        }
    }
    while ((clock_mono_ns() - start) / 1000000 < REPAIR_PASS_MS) {
        int64_t now = clock_now_ms();
        if (cold_msg_scan_open(rp->ctx->cold, rp->since, now, rp->cur_exp, rp->cur_id,
                               REPAIR_PAGE, &page, &err) != SNAP_OK) {
            log_event(SNAP_LOG_WARN, NULL, "repair", "reading the cold store: %s", err.msg);
            return;
        }
        for (size_t i = 0; i < page.len; i++) {
            const struct cold_msg *m = &page.items[i];
            puts[i] = (struct hot_put){m->username, m->id, m->expires_ms, m->text, m->text_len};
        }
        if (page.len > 0 && hot_inbox_put_many(rp->hot, puts, page.len, rcs, 0, NULL, NULL, 0,
                                               NULL, &err) != SNAP_OK) {
            log_event(SNAP_LOG_WARN, NULL, "repair", "putting %zu messages back: %s", page.len,
                      err.msg);
            cold_msg_list_free(&page);
            return; /* the cursor stays: this page again next pass */
        }
        rp->put_total += page.len;
        metrics_add(rp->ctx->metrics, METRIC_MESSAGES_REPAIRED, page.len);
        if (page.len > 0) {
            rp->cur_exp = page.items[page.len - 1].expires_ms;
            rp->cur_id = page.items[page.len - 1].id;
        }
        size_t got = page.len;
        cold_msg_list_free(&page);
        if (got < REPAIR_PAGE) { /* done */
            log_event(SNAP_LOG_INFO, NULL, "repair", "hot index repaired: %zu messages %s",
                      rp->put_total, rp->full ? "(all claimable)" : "(recent)");
            if (rp->set_epoch) {
                char fresh[REPAIR_EPOCH_MAX];
                new_epoch(fresh);
                if (hot_epoch_set(rp->hot, fresh, &err) != SNAP_OK) return; /* next pass */
                rp->epoch[0] = '\0'; /* adopt whatever is there now (ours or a peer's) */
                (void)hot_epoch_get(rp->hot, rp->epoch, sizeof rp->epoch, &err);
                rp->set_epoch = 0;
            }
            rp->job = rp->full = 0;
            return;
        }
    }
}

static void *repair_main(void *arg)
{
    struct repair *rp = arg;

    (void)pthread_mutex_lock(&rp->lock);
    while (!rp->stop) {
        struct timespec until;
        int64_t asked;

        (void)clock_gettime(CLOCK_REALTIME, &until);
        long wait_ms = rp->job ? 20 : REPAIR_PERIOD_MS;
        until.tv_nsec += wait_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        if (atomic_load(&rp->asked) == INT64_MAX)
            (void)pthread_cond_timedwait(&rp->wake, &rp->lock, &until);
        if (rp->stop) break;
        (void)pthread_mutex_unlock(&rp->lock);
        /* No lock held from here: a hot call may run the lost-connection
         * hook, which calls repair_note_lost. */
        check_epoch(rp);
        asked = atomic_exchange(&rp->asked, INT64_MAX);
        if (asked != INT64_MAX) job_begin(rp, 0, asked - REPAIR_MARGIN_MS);
        if (rp->job) run_job(rp);
        (void)pthread_mutex_lock(&rp->lock);
    }
    (void)pthread_mutex_unlock(&rp->lock);
    return NULL;
}

struct repair *repair_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct repair *rp = calloc(1, sizeof *rp);

    if (rp == NULL) {
        snap_err_set(err, SNAP_ERR, "out of memory for the repair thread");
        return NULL;
    }
    rp->ctx = ctx;
    atomic_init(&rp->asked, INT64_MAX);
    rp->hot = hot_new(&ctx->cfg, err);
    if (rp->hot == NULL) {
        free(rp);
        return NULL;
    }
    /* At start nothing is known of what happened while this process was not
     * running: rebuild everything once (cheap when nothing is missing). */
    job_begin(rp, 1, 0);
    if (pthread_mutex_init(&rp->lock, NULL) != 0 || pthread_cond_init(&rp->wake, NULL) != 0 ||
        pthread_create(&rp->thread, NULL, repair_main, rp) != 0) {
        snap_err_set(err, SNAP_ERR, "cannot start the repair thread");
        hot_free(rp->hot);
        free(rp);
        return NULL;
    }
    return rp;
}

void repair_stop(struct repair *rp)
{
    if (rp == NULL) return;
    (void)pthread_mutex_lock(&rp->lock);
    rp->stop = 1;
    (void)pthread_cond_signal(&rp->wake);
    (void)pthread_mutex_unlock(&rp->lock);
    (void)pthread_join(rp->thread, NULL);
    (void)pthread_cond_destroy(&rp->wake);
    (void)pthread_mutex_destroy(&rp->lock);
    hot_free(rp->hot);
    free(rp);
}
