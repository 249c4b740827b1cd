/* cold_sqlite_conn.c: the SQLite driver's connections to its one database
 * file: opening one with the per-connection settings (WAL, synchronous=FULL,
 * a small page cache, checkpoints left to the background), the pool that
 * hands them to threads, the statements each keeps prepared, and what an
 * SQLite result code means for the caller.
 *
 * Threads: connections are opened with SQLITE_OPEN_NOMUTEX, so each one is
 * used by one thread at a time. The pool is a free list under a mutex; a
 * new connection is opened when none is free. Each connection prepares a
 * statement (sq_stmt_sql, cold_sqlite.c) the first time it needs it and
 * keeps it until it is closed.
 *
 * Errors (sq_fail): busy/locked after the timeout, read-only, cannot open,
 * I/O, disk full, corruption -> SNAP_EUNAVAIL (the caller answers 503); a
 * connection that saw one of these (busy/locked aside) is closed, never
 * pooled again. SQLite's own message goes into err->msg, for the log only.
 * Not here: the SQL text and the rows (cold_sqlite.c), the writer's lock
 * and group commit (cold_sqlite_writer.c). */
#include "cold_sqlite_int.h"

#include <stdlib.h>
#include <string.h>

#define SQ_IDLE_MAX      32   /* idle connections kept; extra ones closed  */
#define SQ_CACHE_KIB_NEG -256 /* page cache per connection: 256 KiB        */
/* SQLite's own checkpoint, run inside a commit, only as a fallback when
 * the background one falls behind: 16384 pages of 4 KiB, 64 MiB of WAL. */
#define SQ_AUTOCHECKPOINT_PAGES 16384

/* ---- errors --------------------------------------------------------------- */

/* Turns SQLite result rc into a status, writes the reason into err and
 * marks c broken when it should not be reused. Call it right after the
 * failing call, before anything else runs on c, so the message matches. */
int sq_fail(struct sq_conn *c, int rc, const char *what, struct snap_err *err)
{
    int status;

    switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
        status = rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE
                     ? SNAP_ECONFLICT
                     : SNAP_ERR;
        break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        /* Another process held the lock past the busy timeout; the
         * connection itself is fine. */
        status = SNAP_EUNAVAIL;
        break;
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_PROTOCOL:
    case SQLITE_PERM:
    case SQLITE_NOLFS:
    case SQLITE_AUTH:
        /* The file or the disk under it failed: this connection may hold a
         * stale view (moved file, half-written WAL), so a fresh one is
         * opened next time. */
        status = SNAP_EUNAVAIL;
        c->broken = 1;
        break;
    default:
        /* SQLITE_ERROR (bad SQL, missing table), MISUSE, NOMEM, TOOBIG... :
         * a bug or out of memory, not an outage. */
        status = SNAP_ERR;
        break;
    }
    return snap_err_set(err, status, "sqlite %s: %s (%d)", what,
                        c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc), rc);
}

/* ---- connections ------------------------------------------------------------ */

void sq_conn_close(struct sq_conn *c)
{
    if (c == NULL) return;
    for (int i = 0; i < ST__COUNT; i++) (void)sqlite3_finalize(c->stmt[i]); /* NULL is a no-op */
    /* _v2: should anything still be live, SQLite closes it once it is
     * finalized instead of refusing and leaking the handle. */
    (void)sqlite3_close_v2(c->db);
    free(c);
}

/* Runs a pragma or DDL script that takes no input. */
int sq_conn_exec(struct sq_conn *c, const char *sql, const char *what, struct snap_err *err)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SNAP_OK : sq_fail(c, rc, what, err);
}

/* sqlite3_exec callback: keeps the first column of the first row. */
static int first_value(void *arg, int ncol, char **vals, char **names)
{
    char *out = arg; /* 16 bytes */

    (void)names;
    if (ncol > 0 && vals[0] != NULL && out[0] == '\0') {
        strncpy(out, vals[0], 15);
        out[15] = '\0';
    }
    return 0;
}

/* Opens one connection to st->path with the per-connection settings.
 * Only the first connection, made by cold_open, may create the file: if it
 * disappears later (deleted, volume unmounted), a new connection fails
 * with SNAP_EUNAVAIL instead of quietly starting an empty database.
 * On success *out belongs to the caller (sq_pool_give or sq_conn_close). */
int sq_conn_open(const struct sq_state *st, int create, struct sq_conn **out, struct snap_err *err)
{
    struct sq_conn *c;
    char mode[16] = "";
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL) return snap_err_set(err, SNAP_ERR, "sqlite: out of memory");
    if (create) flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(st->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        /* The path is configuration, not a secret: name it for the operator. */
        rc = snap_err_set(err, rc == SQLITE_NOMEM ? SNAP_ERR : SNAP_EUNAVAIL,
                          "sqlite open \"%s\": %s (%d)", st->path,
                          c->db != NULL ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc), rc);
        goto fail;
    }
    (void)sqlite3_extended_result_codes(c->db, 1); /* tell PK conflicts apart */
    (void)sqlite3_busy_handler(c->db, sq_busy_wait, (void *)st);
    if (sqlite3_db_readonly(c->db, "main") == 1) {
        /* SQLite falls back to read-only when the file is not writable; a
         * store that cannot take messages is down, so say so at once. */
        rc = snap_err_set(err, SNAP_EUNAVAIL, "sqlite open \"%s\": file is read-only", st->path);
        goto fail;
    }
    /* WAL: readers never wait for the writer, and a commit is one append. */
    rc = sqlite3_exec(c->db, "PRAGMA journal_mode=WAL", first_value, mode, NULL);
    if (rc != SQLITE_OK) {
        rc = sq_fail(c, rc, "journal_mode=WAL", err);
        goto fail;
    }
    if (strcmp(mode, "wal") != 0) {
        rc = snap_err_set(err, SNAP_EUNAVAIL,
                          "sqlite \"%s\": cannot use WAL (journal_mode is \"%s\")", st->path, mode);
        goto fail;
    }
    /* FULL, not NORMAL: in WAL mode NORMAL skips the fsync at commit, so a
     * power cut could lose a message that was already answered with 201.
     * API.md says a 201 means the message is durably recorded, so every
     * commit waits for the WAL to reach the disk. */
    rc = sq_conn_exec(c, "PRAGMA synchronous=FULL", "synchronous=FULL", err);
    if (rc != SNAP_OK) goto fail;
    /* Each pooled connection keeps its own page cache (2 MB by default), and
     * a busy service holds dozens: with lookups by key spread over the whole
     * file that was most of fetch's memory after a load. A lookup touches a
     * few pages; the kernel's page cache keeps the rest of the file warm. */
    rc = sq_conn_exec(c, "PRAGMA cache_size=" SQ_STR(SQ_CACHE_KIB_NEG), "cache_size", err);
    if (rc != SNAP_OK) goto fail;
    /* Checkpoints run in the background (cold_sqlite_writer.c), not inside a
     * commit that a 201 is waiting for. */
    rc = sq_conn_exec(c, "PRAGMA wal_autocheckpoint=" SQ_STR(SQ_AUTOCHECKPOINT_PAGES),
                      "wal_autocheckpoint", err);
    if (rc != SNAP_OK) goto fail;
    *out = c;
    return SNAP_OK;
fail:
    sq_conn_close(c);
    return rc;
}

/* ---- the pool --------------------------------------------------------------- */

/* Takes an idle connection or opens a new one. *out is the caller's until
 * sq_pool_give(). */
int sq_pool_take(struct sq_state *st, struct sq_conn **out, struct snap_err *err)
{
    struct sq_conn *c;

    (void)pthread_mutex_lock(&st->pool_lock);
    c = st->idle;
    if (c != NULL) {
        st->idle = c->next;
        st->nidle--;
    }
    (void)pthread_mutex_unlock(&st->pool_lock);
    if (c == NULL) return sq_conn_open(st, 0, out, err);
    c->next = NULL;
    *out = c;
    return SNAP_OK;
}

/* Returns c to the pool, or closes it when it is broken, still inside a
 * transaction, or the pool already has enough idle ones. Takes ownership. */
void sq_pool_give(struct sq_state *st, struct sq_conn *c)
{
    if (c == NULL) return;
    if (!c->broken && sqlite3_get_autocommit(c->db)) {
        (void)pthread_mutex_lock(&st->pool_lock);
        if (st->nidle < SQ_IDLE_MAX) {
            c->next = st->idle;
            st->idle = c;
            st->nidle++;
            c = NULL;
        }
        (void)pthread_mutex_unlock(&st->pool_lock);
    }
    sq_conn_close(c);
}

/* ---- statements ------------------------------------------------------------- */

/* The cached statement which of c, prepared on first use. */
int sq_stmt_get(struct sq_conn *c, enum sq_stmt which, sqlite3_stmt **out, struct snap_err *err)
{
    if (c->stmt[which] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, sq_stmt_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                    &c->stmt[which], NULL);
        if (rc != SQLITE_OK) return sq_fail(c, rc, "prepare", err);
    }
    *out = c->stmt[which];
    return SNAP_OK;
}

/* Readies s for its next use; a statement left mid-step would hold a read
 * transaction open while the connection sits in the pool. */
void sq_stmt_done(sqlite3_stmt *s)
{
    (void)sqlite3_reset(s);
    (void)sqlite3_clear_bindings(s);
}

/* A read outside the writer's turn: a pooled connection and its cached
 * statement which. On SNAP_OK *c and *s are the caller's until
 * sq_read_end(); on failure nothing is held. */
int sq_read_begin(struct sq_state *st, enum sq_stmt which, struct sq_conn **c, sqlite3_stmt **s,
                  struct snap_err *err)
{
    int rc = sq_pool_take(st, c, err);

    if (rc != SNAP_OK) return rc;
    rc = sq_stmt_get(*c, which, s, err);
    if (rc != SNAP_OK) sq_pool_give(st, *c);
    return rc;
}

/* Ends sq_read_begin()'s read: readies s for its next use and gives c back. */
void sq_read_end(struct sq_state *st, struct sq_conn *c, sqlite3_stmt *s)
{
    sq_stmt_done(s);
    sq_pool_give(st, c);
}

/* Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK). */
int sq_stmt_run(struct sq_conn *c, enum sq_stmt which, const char *what, struct snap_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sq_stmt_get(c, which, &s, err);

    if (rc != SNAP_OK) return rc;
    rc = sqlite3_step(s);
    rc = rc == SQLITE_DONE ? SNAP_OK : sq_fail(c, rc, what, err);
    sq_stmt_done(s);
    return rc;
}

/* SNAP_OK while c's file is still the one at st->path. A connection keeps
 * reading and writing a file that was deleted or replaced under it, and in
 * WAL mode SQLite does not notice: a message committed there would be
 * acknowledged and lost. One stat() per write is cheap next to the fsync.
 * Checked after a write, so SNAP_OK means the data is in the named file;
 * a batch also checks before its COMMIT and rolls back when the file has
 * moved, because a failure must change nothing: a claim committed into a
 * file that is later put back would mark messages read by a read that
 * answered 503 (lost for everybody), and a send answered 503 would come
 * back open (claimable). Only a move between that check and the COMMIT
 * itself (microseconds) still commits into the moved file. */
int sq_check_not_moved(struct sq_conn *c, const struct sq_state *st, struct snap_err *err)
{
    int moved = 0;

    if (sqlite3_file_control(c->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK || !moved)
        return SNAP_OK;
    c->broken = 1;
    return snap_err_set(err, SNAP_EUNAVAIL, "sqlite \"%s\": database file was moved or deleted",
                        st->path);
}
