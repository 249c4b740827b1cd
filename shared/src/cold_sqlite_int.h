/* cold_sqlite_int.h: private to the SQLite driver of the cold store, shared
 * by its three files and included by no other: cold_sqlite.c (the SQL and
 * the row mapping), cold_sqlite_conn.c (connections, the pool, cached
 * statements) and cold_sqlite_writer.c (the writer's lock, the group
 * commit and the background checkpointer). It holds the driver's state
 * and the functions one file calls in another, all prefixed sq_; they are
 * internal to the driver even though the linker sees them (cold_store.h's
 * rule: the driver exports cold_sqlite_ops and nothing else to the rest of
 * snaptext).
 * Not here: SQL text (cold_sqlite.c), argument checks (cold_store.c). */
#ifndef SNAP_COLD_SQLITE_INT_H
#define SNAP_COLD_SQLITE_INT_H

#include <pthread.h>
#include <semaphore.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "snap/cold_store.h"

#define SQ_BUSY_TIMEOUT_MS                                                                         \
    2000 /* wait this long for another process's lock: well                                        \
          * inside HAProxy's 10 s server timeout */

/* Every statement a connection may cache. No SQL is ever built from input:
 * values go through sqlite3_bind_* only. */
enum sq_stmt {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PING,
    ST_MSG_PUT,
    ST_MSG_GET,
    ST_MSG_CLAIM,
    ST_MSG_CLAIMED,
    ST_MSG_CLOSE,
    ST_MSG_FIND_IDEM,
    ST_MSG_RELEASE_IDEM,
    ST_MSG_SCAN_OPEN,
    ST_MSG_MAX_ID,
    ST_USER_PUT,
    ST_USER_GET,
    ST_USER_SET_ROLE,
    ST__COUNT
};

/* ---- state ---------------------------------------------------------------- */

struct sq_conn {
    sqlite3 *db;                   /* owned: closed by conn_close()        */
    sqlite3_stmt *stmt[ST__COUNT]; /* owned, prepared on first use          */
    int broken;                    /* 1: close it instead of pooling it     */
    struct sq_conn *next;          /* free-list link while idle             */
};

struct sq_locker;

struct sq_state {
    char *path;                /* owned: the database file             */
    pthread_mutex_t pool_lock; /* guards idle and nidle                */
    struct sq_conn *idle;      /* owned: connections nobody is using   */
    size_t nidle;
    pthread_mutex_t write_lock; /* one writing thread per process        */
    int writer_fd;              /* <path>-writer.lock, flock()ed by the
                                   writing thread: -1 when unavailable      */
    struct sq_locker *locker;   /* the thread that waits for that flock
                                   (cold_sqlite_writer.c); NULL: poll       */
    /* Group commit of message writes (cold_sqlite_writer.c). */
    pthread_mutex_t gc_lock;   /* guards the three fields below          */
    struct write_req *gc_head; /* queued writes, oldest first            */
    struct write_req **gc_tail;
    int gc_leader; /* 1 while some thread commits a batch    */
    /* The checkpointer (cold_sqlite_writer.c). */
    pthread_t ckpt_thread;
    int ckpt_running;
    pthread_mutex_t ckpt_lock; /* guards ckpt_stop */
    pthread_cond_t ckpt_wake;
    int ckpt_stop;
};

/* One caller's write, on its stack while it waits in sq_group_commit. */
enum write_kind { W_PUT, W_CLAIM, W_CLOSE };

struct write_req {
    enum write_kind kind;
    const struct cold_msg *msgs; /* W_PUT: msgs[0..n), outcomes in rcs[]  */
    int *rcs;
    struct cold_claim *claims; /* W_CLAIM: claims[0..n) at at_ms        */
    const int64_t *ids;        /* W_CLOSE: ids[0..n) to to_state at at_ms */
    int to_state;
    size_t n_closed;
    size_t n;
    int64_t at_ms;
    int rc; /* its outcome, valid once done           */
    struct snap_err err;
    int done;   /* set under gc_lock by the leader        */
    sem_t wake; /* posted when done, or to make it leader */
    struct write_req *next;
};

#define SQ_STR_(x) #x
#define SQ_STR(x)  SQ_STR_(x)

/* ---- cold_sqlite.c, for the other two ------------------------------------- */

/* The SQL of each cached statement, by enum sq_stmt. */
extern const char *const sq_stmt_sql[ST__COUNT];

/* Runs r's SQL on c inside the transaction the caller opened, and sets
 * r->rc (and r's per-part outcomes). */
void sq_req_run(struct sq_conn *c, struct write_req *r);

/* ---- cold_sqlite_conn.c, for the other two -------------------------------- */

/* Turns SQLite result rc into a status, writes the reason into err and
 * marks c broken when it should not be reused. Call it right after the
 * failing call, before anything else runs on c, so the message matches. */
int sq_fail(struct sq_conn *c, int rc, const char *what, struct snap_err *err);

/* Opens one connection to st->path with the per-connection settings; only
 * create (the first, at open) may create the file. *out is the caller's
 * (sq_pool_give or sq_conn_close). */
int sq_conn_open(const struct sq_state *st, int create, struct sq_conn **out, struct snap_err *err);
void sq_conn_close(struct sq_conn *c); /* NULL is a no-op */

/* Runs a pragma or DDL script that takes no input. */
int sq_conn_exec(struct sq_conn *c, const char *sql, const char *what, struct snap_err *err);

/* Takes an idle connection or opens a new one. *out is the caller's until
 * sq_pool_give(). */
int sq_pool_take(struct sq_state *st, struct sq_conn **out, struct snap_err *err);

/* Returns c to the pool, or closes it when it is broken, still inside a
 * transaction, or the pool already has enough idle ones. Takes ownership. */
void sq_pool_give(struct sq_state *st, struct sq_conn *c);

/* The cached statement which of c, prepared on first use; sq_stmt_done()
 * readies it for its next use. */
int sq_stmt_get(struct sq_conn *c, enum sq_stmt which, sqlite3_stmt **out, struct snap_err *err);
void sq_stmt_done(sqlite3_stmt *s);

/* A read outside the writer's turn: a pooled connection and its cached
 * statement which, both the caller's until sq_read_end(); on failure
 * nothing is held. */
int sq_read_begin(struct sq_state *st, enum sq_stmt which, struct sq_conn **c, sqlite3_stmt **s,
                  struct snap_err *err);
void sq_read_end(struct sq_state *st, struct sq_conn *c, sqlite3_stmt *s);

/* Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK). */
int sq_stmt_run(struct sq_conn *c, enum sq_stmt which, const char *what, struct snap_err *err);

/* SNAP_OK while c's file is still the one at st->path (see
 * cold_sqlite_conn.c). */
int sq_check_not_moved(struct sq_conn *c, const struct sq_state *st, struct snap_err *err);

/* ---- cold_sqlite_writer.c, for the driver ------------------------------------ */

/* Makes the writer's part of st (its locks, the queue, the checkpointer's
 * condition; writer_fd -1). 0 on success; on failure it has released what
 * it made. Undone by sq_writer_cleanup(). */
int sq_writer_init(struct sq_state *st);
void sq_writer_cleanup(struct sq_state *st); /* after sq_checkpointer_stop() */

/* Opens <path>-writer.lock; st->writer_fd stays -1 when it cannot. */
void sq_writer_open(struct sq_state *st);

/* Takes this process's write turn (bounded by the thread's deadline):
 * SNAP_OK, or SNAP_EUNAVAIL with nothing held. */
int sq_writer_enter(struct sq_state *st, struct snap_err *err);
void sq_writer_leave(struct sq_state *st);

/* The busy handler every connection installs (sqlite3_busy_handler); arg
 * is the store's sq_state. */
int sq_busy_wait(void *arg, int count);

/* Starts / stops the background checkpointer; stop is safe when start
 * failed or never ran. */
void sq_checkpointer_start(struct sq_state *st);
void sq_checkpointer_stop(struct sq_state *st);

/* Queues req for the next group commit and returns its outcome once it is
 * durable (or failed), with err filled on failure. */
int sq_group_commit(struct sq_state *st, struct write_req *req, struct snap_err *err);

#endif
