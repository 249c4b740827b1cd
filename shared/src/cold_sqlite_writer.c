/* cold_sqlite_writer.c: how the SQLite driver writes (see cold_sqlite.c
 * for the rest of it). Three pieces of concurrency, each bounded in time:
 *   - the writer's lock: one writing thread per process (a mutex) and one
 *     writing process per file among ours (an flock on a side file), plus
 *     the busy handler that waits for anybody else;
 *   - the group commit: message writes (puts, claims, closes) that arrive
 *     while a commit runs are queued and committed together by the next;
 *   - the background checkpointer, so no commit pays for a checkpoint.
 * Not here: the SQL each write runs (sq_req_run in cold_sqlite.c), the
 * connection pool, argument checks (cold_store.c). */
#include "cold_sqlite_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "snap/deadline.h"

#define SQ_CHECKPOINT_MS 200 /* background WAL checkpoint period */

/* ---- the writer's part of the state ---------------------------------------- */

static void locker_stop(struct sq_state *st);

int sq_writer_init(struct sq_state *st)
{
    if (pthread_mutex_init(&st->write_lock, NULL) != 0) return -1;
    if (pthread_mutex_init(&st->gc_lock, NULL) != 0) goto no_gc;
    if (pthread_mutex_init(&st->ckpt_lock, NULL) != 0) goto no_ckpt_lock;
    if (pthread_cond_init(&st->ckpt_wake, NULL) != 0) goto no_ckpt_wake;
    st->gc_tail = &st->gc_head;
    st->writer_fd = -1;
    st->locker = NULL;
    return 0;
no_ckpt_wake:
    (void)pthread_mutex_destroy(&st->ckpt_lock);
no_ckpt_lock:
    (void)pthread_mutex_destroy(&st->gc_lock);
no_gc:
    (void)pthread_mutex_destroy(&st->write_lock);
    return -1;
}

void sq_writer_cleanup(struct sq_state *st)
{
    locker_stop(st);
    if (st->writer_fd >= 0) (void)close(st->writer_fd);
    st->writer_fd = -1;
    (void)pthread_cond_destroy(&st->ckpt_wake);
    (void)pthread_mutex_destroy(&st->ckpt_lock);
    (void)pthread_mutex_destroy(&st->gc_lock);
    (void)pthread_mutex_destroy(&st->write_lock);
}

/* ---- the writer's lock ----------------------------------------------------- */

/* Every process sharing the file (ingest, fetch and users, and several
 * instances of each) writes through SQLite's single write lock, and a
 * process that finds it taken can only poll for it (sq_busy_wait). Between
 * our own processes, an flock() on a side file hands the turn over at
 * once instead: the writer takes it around each transaction, and a waiter
 * sleeps in the kernel until it is released. SQLite's own locking still
 * guards the data; anything else writing the file (the sqlite3 shell, a
 * backup) is still met by sq_busy_wait and its time limit. Without the side
 * file (read-only directory), writers just poll as before.
 *
 * Every wait here is bounded: by the thread's deadline (deadline.h), and by
 * SQ_BUSY_TIMEOUT_MS when there is none, so a process that holds the side
 * file forever (stopped, or not ours) costs a 503 within the deadline, never
 * a request that outlives it. A blocking flock() has no timeout, so the
 * waiting is done by a helper thread (the locker): the writer first tries
 * without blocking, and when the file is taken asks the locker, which
 * sleeps in flock(LOCK_EX) in the kernel, and waits for it on a condition
 * with the deadline. A writer that gives up leaves the locker blocked; when
 * the locker gets the lock and nobody wants it any more, it lets it go at
 * once. The flock belongs to the open file, not to a thread, so the writer
 * then holds it as if it had taken it itself.
 *
 * The locker's state is its own heap block (with its own copy of the fd):
 * at close, a locker still blocked in flock() cannot be joined, so it frees
 * the block itself when it comes back and finds it was told to stop. */
static __thread int writer_held; /* this thread holds the flock */

struct sq_locker {
    int fd;               /* owned: a dup() of writer_fd, the same open file */
    pthread_mutex_t m;    /* guards the fields below                          */
    pthread_cond_t cv;    /* signalled for the locker and for the waiter      */
    int acquiring;        /* the locker is asked to / is blocked in flock()   */
    int waiting;          /* a writer waits for the lock                      */
    int got;              /* the locker took it for that writer               */
    int held;             /* a writer of this process holds the flock now     */
    int stop;             /* the store is closing: exit (and free) when idle  */
};

static void *locker_main(void *arg)
{
    struct sq_locker *lk = arg;

    (void)pthread_mutex_lock(&lk->m);
    for (;;) {
        while (!lk->acquiring && !lk->stop) (void)pthread_cond_wait(&lk->cv, &lk->m);
        if (!lk->acquiring) break; /* stop, idle */
        (void)pthread_mutex_unlock(&lk->m);
        while (flock(lk->fd, LOCK_EX) != 0 && errno == EINTR) {
        }
        (void)pthread_mutex_lock(&lk->m);
        lk->acquiring = 0;
        if (lk->waiting && !lk->stop) {
            lk->got = 1;
            lk->held = 1;
            (void)pthread_cond_broadcast(&lk->cv);
        } else if (!lk->held) {
            /* Its writer gave up meanwhile. (When a writer of ours holds it
             * now, having taken it without waiting, it is that writer's.) */
            (void)flock(lk->fd, LOCK_UN);
        }
    }
    (void)pthread_mutex_unlock(&lk->m);
    (void)close(lk->fd);
    (void)pthread_cond_destroy(&lk->cv);
    (void)pthread_mutex_destroy(&lk->m);
    free(lk);
    return NULL;
}

/* Starts the locker for st->writer_fd; without one, writers poll. */
static void locker_start(struct sq_state *st)
{
    struct sq_locker *lk = calloc(1, sizeof *lk);
    pthread_attr_t attr;
    pthread_t t;

    st->locker = NULL;
    if (lk == NULL) return;
    lk->fd = dup(st->writer_fd);
    if (lk->fd < 0 || pthread_mutex_init(&lk->m, NULL) != 0) goto fail;
    if (pthread_cond_init(&lk->cv, NULL) != 0) goto fail_m;
    if (pthread_attr_init(&attr) != 0) goto fail_cv;
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, locker_main, lk) != 0) {
        (void)pthread_attr_destroy(&attr);
        goto fail_cv;
    }
    (void)pthread_attr_destroy(&attr);
    st->locker = lk;
    return;
fail_cv:
    (void)pthread_cond_destroy(&lk->cv);
fail_m:
    (void)pthread_mutex_destroy(&lk->m);
fail:
    if (lk->fd >= 0) (void)close(lk->fd);
    free(lk);
}

static void locker_stop(struct sq_state *st)
{
    struct sq_locker *lk = st->locker;

    if (lk == NULL) return;
    (void)pthread_mutex_lock(&lk->m);
    lk->stop = 1;
    (void)pthread_cond_broadcast(&lk->cv);
    (void)pthread_mutex_unlock(&lk->m);
    st->locker = NULL; /* the locker frees it */
}

/* abs = now (CLOCK_REALTIME) + ms. */
static void abs_after(int64_t ms, struct timespec *abs)
{
    (void)clock_gettime(CLOCK_REALTIME, abs);
    abs->tv_sec += ms / 1000;
    abs->tv_nsec += (ms % 1000) * 1000000L;
    if (abs->tv_nsec >= 1000000000L) {
        abs->tv_sec++;
        abs->tv_nsec -= 1000000000L;
    }
}

/* Waits for the locker to take the flock, until abs. SNAP_OK when held. */
static int locker_wait(struct sq_locker *lk, const struct timespec *abs)
{
    int got;

    (void)pthread_mutex_lock(&lk->m);
    lk->waiting = 1;
    lk->got = 0;
    if (!lk->acquiring) {
        lk->acquiring = 1;
        (void)pthread_cond_broadcast(&lk->cv);
    }
    while (!lk->got)
        if (pthread_cond_timedwait(&lk->cv, &lk->m, abs) != 0 && !lk->got) break;
    got = lk->got;
    lk->got = 0;
    lk->waiting = 0;
    (void)pthread_mutex_unlock(&lk->m);
    return got ? SNAP_OK : SNAP_EUNAVAIL;
}

/* flock(LOCK_NB) on the writer's fd; with a locker, under its mutex and
 * noted as held, so the locker never lets go of a lock a writer has. */
static int try_lock(struct sq_state *st)
{
    struct sq_locker *lk = st->locker;
    int rc, e;

    if (lk == NULL) return flock(st->writer_fd, LOCK_EX | LOCK_NB);
    (void)pthread_mutex_lock(&lk->m);
    rc = flock(st->writer_fd, LOCK_EX | LOCK_NB);
    e = errno;
    if (rc == 0) lk->held = 1;
    (void)pthread_mutex_unlock(&lk->m);
    errno = e;
    return rc;
}

#define SQ_LOCK_POLL_MIN_US 50
#define SQ_LOCK_POLL_MAX_US 800

int sq_writer_enter(struct sq_state *st, struct snap_err *err)
{
    int64_t left = deadline_left(SQ_BUSY_TIMEOUT_MS), until = deadline_now() + left;
    struct timespec abs;
    long pause_us = SQ_LOCK_POLL_MIN_US;

    abs_after(left, &abs);
    if (pthread_mutex_timedlock(&st->write_lock, &abs) != 0)
        return snap_err_set(err, SNAP_EUNAVAIL,
                            "sqlite \"%s\": this process's writers are queued past the deadline",
                            st->path);
    if (st->writer_fd < 0) return SNAP_OK;
    for (;;) {
        if (try_lock(st) == 0) break;
        if (errno == EINTR) continue;
        if (errno != EWOULDBLOCK) return SNAP_OK; /* no turn-taking: SQLite still locks */
        if (st->locker != NULL) { /* sleep in the kernel, through the locker */
            if (locker_wait(st->locker, &abs) == SNAP_OK) break;
        } else if (deadline_now() < until) { /* no locker: poll */
            struct timespec ts = {0, pause_us * 1000L};
            (void)nanosleep(&ts, NULL);
            if (pause_us < SQ_LOCK_POLL_MAX_US) pause_us *= 2;
            continue;
        }
        (void)pthread_mutex_unlock(&st->write_lock);
        return snap_err_set(err, SNAP_EUNAVAIL,
                            "sqlite \"%s\": another process held %s-writer.lock past the deadline",
                            st->path, st->path);
    }
    writer_held = 1;
    return SNAP_OK;
}

/* Gives the turn back early: called when SQLite's lock is held by a writer
 * that does not take part (see sq_busy_wait), so that our other processes are
 * not stuck behind this one for the whole busy timeout. */
static void writer_yield(const struct sq_state *st)
{
    struct sq_locker *lk = st->locker;

    if (!writer_held) return;
    if (lk != NULL) (void)pthread_mutex_lock(&lk->m);
    (void)flock(st->writer_fd, LOCK_UN);
    if (lk != NULL) {
        lk->held = 0;
        (void)pthread_mutex_unlock(&lk->m);
    }
    writer_held = 0;
}

void sq_writer_leave(struct sq_state *st)
{
    writer_yield(st);
    (void)pthread_mutex_unlock(&st->write_lock);
}

void sq_writer_open(struct sq_state *st)
{
    size_t len = strlen(st->path) + sizeof "-writer.lock";
    char *name = malloc(len);

    st->writer_fd = -1;
    if (name == NULL) return;
    (void)snprintf(name, len, "%s-writer.lock", st->path);
    st->writer_fd = open(name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(name);
    if (st->writer_fd >= 0) locker_start(st);
}

/* Busy handler: another process holds the write lock — one that does not
 * take turns through the writer's flock (see sq_writer_enter), or any of ours
 * when the flock is unavailable. SQLite's own busy_timeout backs off to
 * sleeps of up to 100 ms, which a transaction of a few hundred
 * microseconds turns into pure latency; poll every 200 us instead, up to
 * SQ_BUSY_TIMEOUT_MS in total, and never past the thread's deadline
 * (deadline.h). arg is the store's sq_state. */
#define SQ_BUSY_POLL_US 200

static __thread int64_t busy_until; /* deadline_now() ms: stop waiting then */

int sq_busy_wait(void *arg, int count)
{
    if (count == 0) {
        writer_yield(arg);
        busy_until = deadline_now() + deadline_left(SQ_BUSY_TIMEOUT_MS);
    }
    if (deadline_now() >= busy_until) return 0;
    struct timespec ts = {0, SQ_BUSY_POLL_US * 1000L};
    (void)nanosleep(&ts, NULL);
    return 1;
}

/* ---- background checkpoint ------------------------------------------------ */

/* In WAL mode a commit appends to the -wal file, and a checkpoint copies
 * those pages back into the database and fsyncs it. Left to SQLite, that
 * happens inside the commit that crosses the threshold — a commit a batch
 * of 201s is waiting for. Here one thread per process runs a PASSIVE
 * checkpoint every SQ_CHECKPOINT_MS instead: it never waits for writers or
 * readers, and writers go on appending meanwhile. When several processes
 * share the file, whichever gets there first does the work; the others
 * find SQLITE_BUSY and try again next period. A failure here costs nothing
 * but WAL growth (SQLite's own fallback checkpoint, SQ_AUTOCHECKPOINT_PAGES in
 * cold_sqlite.c, still bounds it), and any
 * real I/O trouble shows on the next write, which reports it. */
static void *checkpointer_main(void *arg)
{
    struct sq_state *st = arg;

    (void)pthread_mutex_lock(&st->ckpt_lock);
    while (!st->ckpt_stop) {
        struct timespec until;
        struct sq_conn *c = NULL;
        struct snap_err ignored;

        (void)clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += SQ_CHECKPOINT_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        (void)pthread_cond_timedwait(&st->ckpt_wake, &st->ckpt_lock, &until);
        if (st->ckpt_stop) break;
        (void)pthread_mutex_unlock(&st->ckpt_lock);
        if (sq_pool_take(st, &c, &ignored) == SNAP_OK) {
            (void)sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
            sq_pool_give(st, c);
        }
        (void)pthread_mutex_lock(&st->ckpt_lock);
    }
    (void)pthread_mutex_unlock(&st->ckpt_lock);
    return NULL;
}

void sq_checkpointer_stop(struct sq_state *st)
{
    if (!st->ckpt_running) return;
    (void)pthread_mutex_lock(&st->ckpt_lock);
    st->ckpt_stop = 1;
    (void)pthread_cond_signal(&st->ckpt_wake);
    (void)pthread_mutex_unlock(&st->ckpt_lock);
    (void)pthread_join(st->ckpt_thread, NULL);
    st->ckpt_running = 0;
}

void sq_checkpointer_start(struct sq_state *st)
{
    st->ckpt_running = pthread_create(&st->ckpt_thread, NULL, checkpointer_main, st) == 0;
}

/* Sets the failure rc (err) on r and on every part of it. */
static void req_fail(struct write_req *r, int rc, const struct snap_err *err)
{
    r->rc = rc;
    r->err = *err;
    for (size_t i = 0; r->kind == W_PUT && i < r->n; i++) r->rcs[i] = rc;
    for (size_t i = 0; r->kind == W_CLAIM && i < r->n; i++) {
        r->claims[i].rc = rc;
        r->claims[i].n_claimed = 0;
    }
    r->n_closed = 0;
}

/* Commits batch (a list of queued writes) in one transaction and sets each
 * one's outcome: a conflict for an insert of a taken id or idem (the
 * others still commit), otherwise the transaction's. */
static void commit_batch(struct sq_state *st, struct write_req *batch)
{
    struct sq_conn *c = NULL;
    struct snap_err err;
    struct write_req *r;
    int rc = sq_pool_take(st, &c, &err);

    if (rc == SNAP_OK) rc = sq_writer_enter(st, &err);
    if (rc == SNAP_OK) {
        rc = sq_stmt_run(c, ST_BEGIN, "begin write", &err);
        for (r = batch; rc == SNAP_OK && r != NULL; r = r->next) {
            sq_req_run(c, r);
            if (r->rc != SNAP_OK && r->rc != SNAP_ECONFLICT && r->rc != SNAP_EEXIST) {
                rc = r->rc; /* the disk or the file failed: nothing commits */
                err = r->err;
            }
        }
        if (rc == SNAP_OK) rc = sq_check_not_moved(c, st, &err); /* moved: roll back */
        if (rc == SNAP_OK) rc = sq_stmt_run(c, ST_COMMIT, "commit write", &err);
        if (rc == SNAP_OK) rc = sq_check_not_moved(c, st, &err);
        if (rc != SNAP_OK && !sqlite3_get_autocommit(c->db)) {
            struct snap_err ignored;
            (void)sq_stmt_run(c, ST_ROLLBACK, "rollback write", &ignored);
        }
        sq_writer_leave(st);
    }
    sq_pool_give(st, c);
    for (r = batch; r != NULL; r = r->next)
        if (rc != SNAP_OK) req_fail(r, rc, &err);
}

/* Group commit: a reply must wait for the fsync of its write (a 201 for an
 * insert, a read's 200 for the claim of what it returns), and one fsync
 * costs far more than a write, so writes that arrive while a commit is
 * running are queued and committed together by the next one. The first
 * caller to find no commit running becomes the leader: it takes the whole
 * queue, commits it as one transaction and marks every request done. Each
 * waiter sleeps on its own semaphore, so a commit wakes exactly the
 * threads it finished (a shared condition variable woke every waiter for
 * each batch); then the leader hands over to the oldest write still queued,
 * which wakes up as the next leader. A lone write is committed at once.
 * The leader's deadline bounds the lock waits of the whole batch. */
int sq_group_commit(struct sq_state *st, struct write_req *req, struct snap_err *err)
{
    int lead;

    if (sem_init(&req->wake, 0, 0) != 0)
        return snap_err_set(err, SNAP_ERR, "sqlite: cannot create a semaphore");
    (void)pthread_mutex_lock(&st->gc_lock);
    *st->gc_tail = req;
    st->gc_tail = &req->next;
    lead = !st->gc_leader;
    st->gc_leader = 1;
    (void)pthread_mutex_unlock(&st->gc_lock);
    if (!lead)
        while (sem_wait(&req->wake) != 0) {
        } /* EINTR only */
    if (!req->done) {
        /* Leader: req is still queued, so the batch holds it. */
        struct write_req *batch, *r, *next;

        (void)pthread_mutex_lock(&st->gc_lock);
        batch = st->gc_head;
        st->gc_head = NULL;
        st->gc_tail = &st->gc_head;
        (void)pthread_mutex_unlock(&st->gc_lock);

        commit_batch(st, batch);

        (void)pthread_mutex_lock(&st->gc_lock);
        for (r = batch; r != NULL; r = next) {
            next = r->next; /* r may be gone once it is woken */
            r->done = 1;
            if (r != req) (void)sem_post(&r->wake);
        }
        if (st->gc_head != NULL)
            (void)sem_post(&st->gc_head->wake); /* it leads the next batch */
        else
            st->gc_leader = 0;
        (void)pthread_mutex_unlock(&st->gc_lock);
    }
    (void)sem_destroy(&req->wake);
    if (req->rc != SNAP_OK && err != NULL) *err = req->err;
    return req->rc;
}
