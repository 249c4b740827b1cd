/* cold_sqlite.c: the SQLite driver of the cold store (cold_store.h): its
 * SQL, its schema and the mapping of rows to structs, and the operations
 * table cold_sqlite_ops. A store is one database file, named by
 * sqlite:///abs/path.db or sqlite://relative/path.db, shared by every
 * worker thread.
 *
 * The driver is three files around one private header (cold_sqlite_int.h):
 *   cold_sqlite.c         this file: what is stored and how it is asked for
 *   cold_sqlite_conn.c    connections: settings, the pool, cached
 *                         statements, what a result code means
 *   cold_sqlite_writer.c  how writes reach the file: the writer's lock,
 *                         the group commit, the background checkpointer
 * Reads take a pooled connection (sq_read_begin); every message write is
 * queued for the group commit, which runs it here (sq_req_run) inside one
 * transaction with the rest of its batch.
 *
 * Only the driver's files include sqlite3.h (through cold_sqlite_int.h);
 * the driver exports cold_sqlite_ops and nothing else to snaptext. Not here:
 * argument checks (cold_store.c does them once for every driver), anything
 * about Redis or HTTP. */
#include "cold_sqlite_int.h"

#include <limits.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#define SQ_SCHEME         "sqlite://"
#define SQ_PATH_MAX       4096 /* longest database path accepted       */
#define SQ_SCHEMA_VERSION 3    /* PRAGMA user_version this code writes */

/* ---- SQL ------------------------------------------------------------------ */

/* The columns row_to_msg() reads, in its order. */
#define SQ_MSG_COLS "id, username, sender, text, created_ms, expires_ms, state, closed_ms, idem"

const char *const sq_stmt_sql[ST__COUNT] = {
    /* IMMEDIATE takes the write lock at BEGIN, where the busy timeout
     * applies, instead of failing later when a read lock is upgraded. */
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PING] = "SELECT count(*) FROM sqlite_master",
    [ST_MSG_PUT] = "INSERT INTO messages (id, username, sender, text, created_ms, expires_ms,"
                   " state, idem) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
    [ST_MSG_GET] = "SELECT " SQ_MSG_COLS " FROM messages WHERE id = ?1",
    /* The claim: one conditional write per read. ?3 is a JSON array of the
     * candidate ids; only open, unexpired messages of the inbox are won. */
    [ST_MSG_CLAIM] = "UPDATE messages SET state = 1, closed_ms = ?1, claim = ?2"
                     " WHERE id IN (SELECT value FROM json_each(?3)) AND username = ?4"
                     " AND state = 0 AND expires_ms > ?1 RETURNING id",
    [ST_MSG_CLAIMED] = "SELECT " SQ_MSG_COLS " FROM messages WHERE username = ?1 AND claim = ?2"
                       " AND state = 1 AND closed_ms >= ?3 ORDER BY id",
    [ST_MSG_CLOSE] = "UPDATE messages SET state = ?1, closed_ms = ?2"
                     " WHERE id IN (SELECT value FROM json_each(?3))"
                     " AND state = 0 AND expires_ms > ?2",
    [ST_MSG_FIND_IDEM] = "SELECT " SQ_MSG_COLS " FROM messages WHERE idem = ?1",
    [ST_MSG_RELEASE_IDEM] = "UPDATE messages SET idem = NULL WHERE id = ?1",
    /* "state = 0" as written here lets SQLite use the partial index
     * messages_open, which holds only what a read could still claim. */
    [ST_MSG_SCAN_OPEN] = "SELECT " SQ_MSG_COLS " FROM messages WHERE state = 0"
                         " AND expires_ms > ?1 AND created_ms >= ?2"
                         " AND (expires_ms, id) > (?3, ?4) ORDER BY expires_ms, id LIMIT ?5",
    [ST_MSG_MAX_ID] = "SELECT max(id) FROM messages",
    [ST_USER_PUT] = "INSERT INTO users (username, password_hash, role, created_ms)"
                    " VALUES (?1, ?2, ?3, ?4)",
    [ST_USER_GET] = "SELECT password_hash, role, created_ms FROM users WHERE username = ?1",
    [ST_USER_SET_ROLE] = "UPDATE users SET role = ?2 WHERE username = ?1",
};

/* The schema, version 3. A new file gets all of it; a version 1 file (no
 * message states) is brought up to date by schema_v2_from_v1, and every
 * file then gets schema_indexes (version 3 differs from 2 only there). All
 * of it runs inside one transaction by ensure_schema.
 *   state      0 open, 1 read, 2 unsent, 3 refused (enum cold_state)
 *   closed_ms  when it left state 0 (read, unsent, refused); NULL while open
 *   claim      the token (Idempotency-Key) of the read that claimed it;
 *              NULL after a read without one
 *   idem       the scoped Idempotency-Key of its send, while held */
static const char schema_v2[] =
    "CREATE TABLE IF NOT EXISTS messages ("
    " id INTEGER PRIMARY KEY," /* the rowid: the Redis counter's id  */
    " username TEXT NOT NULL," /* recipient                          */
    " sender TEXT,"            /* NULL for a message sent in open mode */
    " text TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " state INTEGER NOT NULL DEFAULT 0,"
    " closed_ms INTEGER,"
    " claim TEXT,"
    " idem TEXT);"
    "CREATE TABLE IF NOT EXISTS users ("
    " username TEXT PRIMARY KEY NOT NULL," /* NOT NULL: SQLite would allow a
                                              NULL key otherwise              */
    " password_hash TEXT NOT NULL,"
    " role TEXT NOT NULL,"
    " created_ms INTEGER NOT NULL);";

static const char schema_v2_from_v1[] =
    "ALTER TABLE messages ADD COLUMN state INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE messages ADD COLUMN closed_ms INTEGER;"
    "ALTER TABLE messages ADD COLUMN claim TEXT;"
    "ALTER TABLE messages ADD COLUMN idem TEXT;";

/* No index on username alone: no statement needs one (a claim finds its
 * rows by id, a retried read by messages_claim), and the inserts of a
 * batch, spread over many users, would each dirty a page of it (5.7 against
 * 1.1 KB of WAL per send, batches of 20 over 1,000 users). Versions 1 and
 * 2 had it. */
static const char schema_indexes[] =
    "DROP INDEX IF EXISTS messages_username;"
    "CREATE INDEX IF NOT EXISTS messages_claim ON messages (username, claim)"
    " WHERE claim IS NOT NULL;"
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_idem ON messages (idem) WHERE idem IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS messages_open ON messages (expires_ms, id) WHERE state = 0;"
    "PRAGMA user_version = " SQ_STR(SQ_SCHEMA_VERSION) ";";

/* ---- row helpers ------------------------------------------------------------ */

/* Text with its exact byte length. SQLITE_STATIC: every statement is
 * stepped and reset before the caller's buffer can go away. */
static int bind_text(sqlite3_stmt *s, int i, const char *p, size_t len)
{
    if (len > INT_MAX) return SQLITE_TOOBIG;
    return sqlite3_bind_text(s, i, p, (int)len, SQLITE_STATIC);
}

/* Copies a text column into a fixed array of cap bytes (NUL included).
 * -1 when the column is NULL or does not fit. */
static int column_copy(sqlite3_stmt *s, int col, char *out, size_t cap)
{
    const unsigned char *p = sqlite3_column_text(s, col);
    int n = sqlite3_column_bytes(s, col);

    if (p == NULL || n < 0 || (size_t)n >= cap) return -1;
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    return 0;
}

/* ---- open / close / schema ----------------------------------------------- */

/* Checks the url and returns its file path in *path (heap, the caller's). */
static int parse_url(const char *url, char **path, struct snap_err *err)
{
    const char *p;
    size_t len;

    *path = NULL;
    if (strncmp(url, SQ_SCHEME, strlen(SQ_SCHEME)) != 0)
        return snap_err_set(err, SNAP_EINVAL, "sqlite store url must start with %s", SQ_SCHEME);
    p = url + strlen(SQ_SCHEME);
    len = strlen(p);
    if (len == 0)
        return snap_err_set(err, SNAP_EINVAL,
                            "sqlite store url has no file path: use sqlite:///abs/path.db "
                            "or sqlite://relative/path.db");
    if (len > SQ_PATH_MAX)
        return snap_err_set(err, SNAP_EINVAL, "sqlite store path is longer than %d bytes",
                            SQ_PATH_MAX);
    if (p[len - 1] == '/')
        return snap_err_set(err, SNAP_EINVAL,
                            "sqlite store path \"%s\" names a directory, not a file", p);
    /* ":memory:" would give every pooled connection its own empty database;
     * "file:" would be read as an SQLite URI with its own options. */
    if (strcmp(p, ":memory:") == 0 || strncmp(p, "file:", 5) == 0)
        return snap_err_set(err, SNAP_EINVAL,
                            "sqlite store must be a plain file path, not \"%.40s\"", p);
    if (strpbrk(p, "?#") != NULL)
        return snap_err_set(err, SNAP_EINVAL, "sqlite store url takes no ?options or #fragment");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f)
            return snap_err_set(err, SNAP_EINVAL, "sqlite store path holds a control character");
    }
    *path = strdup(p);
    if (*path == NULL) return snap_err_set(err, SNAP_ERR, "sqlite: out of memory");
    return SNAP_OK;
}

static void sq_close(void *state)
{
    struct sq_state *st = state;

    if (st == NULL) return;
    sq_checkpointer_stop(st);
    /* No operation may be in flight: every connection is back in the pool. */
    while (st->idle != NULL) {
        struct sq_conn *c = st->idle;
        st->idle = c->next;
        sq_conn_close(c);
    }
    sq_writer_cleanup(st);
    (void)pthread_mutex_destroy(&st->pool_lock);
    free(st->path);
    free(st);
}

static int sq_open(const char *url, void **state, struct snap_err *err)
{
    struct sq_state *st;
    struct sq_conn *c;
    int rc;

    *state = NULL;
    if (!sqlite3_threadsafe())
        return snap_err_set(err, SNAP_ERR, "sqlite library was built without thread support");
    /* Process-wide, and only possible before SQLite's first use (later it is
     * refused, harmlessly): no memory statistics, whose global mutex every
     * worker thread would take on each allocation. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    st = calloc(1, sizeof *st);
    if (st == NULL) return snap_err_set(err, SNAP_ERR, "sqlite: out of memory");
    if (pthread_mutex_init(&st->pool_lock, NULL) != 0) {
        free(st);
        return snap_err_set(err, SNAP_ERR, "sqlite: cannot create a mutex");
    }
    if (sq_writer_init(st) != 0) {
        (void)pthread_mutex_destroy(&st->pool_lock);
        free(st);
        return snap_err_set(err, SNAP_ERR, "sqlite: cannot create a mutex");
    }
    /* From here on sq_close() releases everything. */
    rc = parse_url(url, &st->path, err);
    if (rc == SNAP_OK)
        rc = sq_conn_open(st, 1, &c, err); /* fail now, at start, if the file is unusable */
    if (rc != SNAP_OK) {
        sq_close(st);
        return rc;
    }
    sq_writer_open(st);
    sq_pool_give(st, c);
    /* Without the thread, SQLite's fallback checkpoint still bounds the WAL. */
    sq_checkpointer_start(st);
    *state = st;
    return SNAP_OK;
}

static int sq_ensure_schema(void *state, struct snap_err *err)
{
    struct sq_state *st = state;
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int version = 0, rc;

    rc = sq_pool_take(st, &c, err);
    if (rc != SNAP_OK) return rc;
    rc = sq_writer_enter(st, err);
    if (rc != SNAP_OK) {
        sq_pool_give(st, c);
        return rc;
    }
    rc = sq_stmt_run(c, ST_BEGIN, "begin schema", err);
    if (rc != SNAP_OK) goto done;
    /* Read once at start, so not worth a cached statement. */
    rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) {
        rc = sq_fail(c, rc, "read user_version", err);
        goto done;
    }
    version = sqlite3_column_int(s, 0);
    (void)sqlite3_finalize(s); /* done: DROP INDEX refuses to run beside a live statement */
    s = NULL;
    if (version > SQ_SCHEMA_VERSION) {
        rc = snap_err_set(err, SNAP_ERR,
                          "sqlite \"%s\": schema version %d is newer than this build's %d",
                          st->path, version, SQ_SCHEMA_VERSION);
        goto done;
    }
    /* Version 1 had no message states: its messages become open ones (those
     * it read carry their read time as expires_ms, so they show expired). */
    rc = version == 1 ? sq_conn_exec(c, schema_v2_from_v1, "upgrade schema to v2", err)
                      : sq_conn_exec(c, schema_v2, "create schema", err);
    if (rc == SNAP_OK) rc = sq_conn_exec(c, schema_indexes, "create indexes", err);
    if (rc == SNAP_OK) rc = sq_stmt_run(c, ST_COMMIT, "commit schema", err);
done:
    (void)sqlite3_finalize(s);
    if (!sqlite3_get_autocommit(c->db)) (void)sq_stmt_run(c, ST_ROLLBACK, "rollback schema", NULL);
    sq_writer_leave(st);
    sq_pool_give(st, c);
    return rc;
}

/* ---- operations -------------------------------------------------------------- */

static int sq_ping(void *state, struct snap_err *err)
{
    struct sq_state *st = state;
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int rc = sq_read_begin(st, ST_PING, &c, &s, err);
    int step;

    if (rc != SNAP_OK) return rc;
    step = sqlite3_step(s);
    rc = step == SQLITE_ROW ? SNAP_OK : sq_fail(c, step, "ping", err);
    if (rc == SNAP_OK) rc = sq_check_not_moved(c, st, err); /* so /readyz sees a deleted file */
    sq_read_end(st, c, s);
    return rc;
}

/* ids[0..n) as a JSON array ("[1,2,3]") for json_each(), in *out (heap,
 * the caller frees). */
static int ids_json(const int64_t *ids, size_t n, char **out, size_t *len, struct snap_err *err)
{
    size_t cap = 2 + n * 21, used = 0;
    char *buf = malloc(cap);

    *out = NULL;
    if (buf == NULL) return snap_err_set(err, SNAP_ERR, "sqlite: out of memory for %zu ids", n);
    buf[used++] = '[';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(buf + used, cap - used, i ? ",%lld" : "%lld", (long long)ids[i]);
    buf[used++] = ']';
    *out = buf;
    *len = used;
    return SNAP_OK;
}

/* Binds and runs the insert of m on c (inside the caller's transaction).
 * A constraint failure undoes only this statement: a taken id is
 * SNAP_ECONFLICT, a taken idem SNAP_EEXIST. */
static int insert_one(struct sq_conn *c, const struct cold_msg *m, struct snap_err *err)
{
    sqlite3_stmt *s = NULL;
    int rc = sq_stmt_get(c, ST_MSG_PUT, &s, err);

    if (rc != SNAP_OK) return rc;
    int q = sqlite3_bind_int64(s, 1, m->id);
    if (q == SQLITE_OK) q = bind_text(s, 2, m->username, strlen(m->username));
    if (q == SQLITE_OK)
        q = m->has_from ? bind_text(s, 3, m->from, strlen(m->from)) : sqlite3_bind_null(s, 3);
    if (q == SQLITE_OK) q = bind_text(s, 4, m->text, m->text_len);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 5, m->created_ms);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 6, m->expires_ms);
    if (q == SQLITE_OK)
        q = m->idem[0] ? bind_text(s, 7, m->idem, strlen(m->idem)) : sqlite3_bind_null(s, 7);
    if (q == SQLITE_OK) q = sqlite3_step(s);
    if (q == SQLITE_DONE)
        rc = SNAP_OK;
    else if (q == SQLITE_CONSTRAINT_UNIQUE) /* the only UNIQUE index is messages_idem */
        rc = snap_err_set(err, SNAP_EEXIST, "sqlite: idempotency key already used");
    else
        rc = sq_fail(c, q, "insert message", err);
    sq_stmt_done(s);
    return rc;
}

/* Runs one claim on c (inside the caller's transaction): the conditional
 * UPDATE ... RETURNING of ST_MSG_CLAIM. */
static int claim_one(struct sq_conn *c, struct cold_claim *cl, int64_t at_ms, struct snap_err *err)
{
    sqlite3_stmt *s = NULL;
    char *json = NULL;
    size_t json_len = 0;
    int rc = cl->n == 0 ? SNAP_OK : sq_stmt_get(c, ST_MSG_CLAIM, &s, err);

    /* cl->n_claimed is 0 (cold_store.c). */
    if (cl->n == 0 || rc != SNAP_OK) return rc;
    rc = ids_json(cl->ids, cl->n, &json, &json_len, err);
    if (rc != SNAP_OK) return rc;
    int q = sqlite3_bind_int64(s, 1, at_ms);
    /* A claim without a token leaves claim NULL: no entry in messages_claim. */
    if (q == SQLITE_OK)
        q = cl->token ? bind_text(s, 2, cl->token, strlen(cl->token)) : sqlite3_bind_null(s, 2);
    if (q == SQLITE_OK) q = bind_text(s, 3, json, json_len);
    if (q == SQLITE_OK) q = bind_text(s, 4, cl->username, strlen(cl->username));
    while (q == SQLITE_OK || q == SQLITE_ROW) {
        q = sqlite3_step(s);
        if (q == SQLITE_ROW && cl->n_claimed < cl->n)
            cl->claimed[cl->n_claimed++] = sqlite3_column_int64(s, 0);
    }
    rc = q == SQLITE_DONE ? SNAP_OK : sq_fail(c, q, "claim messages", err);
    sq_stmt_done(s);
    free(json);
    if (rc != SNAP_OK) {
        cl->n_claimed = 0;
        return rc;
    }
    /* RETURNING gives rows in no promised order. */
    for (size_t i = 1; i < cl->n_claimed; i++)
        for (size_t j = i; j > 0 && cl->claimed[j - 1] > cl->claimed[j]; j--) {
            int64_t t = cl->claimed[j];
            cl->claimed[j] = cl->claimed[j - 1];
            cl->claimed[j - 1] = t;
        }
    return SNAP_OK;
}

/* Runs r's close (unsend / refuse) on c, inside the caller's transaction. */
static int close_ids(struct sq_conn *c, struct write_req *r, struct snap_err *err)
{
    sqlite3_stmt *s = NULL;
    char *json = NULL;
    size_t json_len = 0;
    int rc = sq_stmt_get(c, ST_MSG_CLOSE, &s, err);

    if (rc == SNAP_OK) rc = ids_json(r->ids, r->n, &json, &json_len, err);
    if (rc != SNAP_OK) return rc;
    int q = sqlite3_bind_int(s, 1, r->to_state);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 2, r->at_ms);
    if (q == SQLITE_OK) q = bind_text(s, 3, json, json_len);
    if (q == SQLITE_OK) q = sqlite3_step(s);
    if (q == SQLITE_DONE) {
        r->n_closed = (size_t)sqlite3_changes(c->db);
        rc = SNAP_OK;
    } else {
        rc = sq_fail(c, q, "close messages", err);
    }
    sq_stmt_done(s);
    free(json);
    return rc;
}

/* Inserts r's messages on c (inside the caller's transaction), each
 * outcome in r->rcs[]. r->rc becomes SNAP_OK, the first conflict
 * (SNAP_ECONFLICT / SNAP_EEXIST: the others still go in), or the failure
 * that stops the batch. */
static void insert_req(struct sq_conn *c, struct write_req *r)
{
    struct snap_err one;

    r->rc = SNAP_OK;
    for (size_t i = 0; i < r->n; i++) {
        int rc = insert_one(c, &r->msgs[i], &one);
        int conflict = rc == SNAP_ECONFLICT || rc == SNAP_EEXIST;
        r->rcs[i] = rc;
        if (rc == SNAP_OK) continue;
        if (r->rc == SNAP_OK || (!conflict && (r->rc == SNAP_ECONFLICT || r->rc == SNAP_EEXIST))) {
            r->rc = rc;
            r->err = one;
        }
        if (!conflict) return;
    }
}

/* Runs r's claims on c (inside the caller's transaction). A failure stops
 * the whole transaction, so every claim of it then won nothing. */
static void claim_req(struct sq_conn *c, struct write_req *r)
{
    r->rc = SNAP_OK;
    for (size_t i = 0; i < r->n && r->rc == SNAP_OK; i++) {
        r->claims[i].rc = claim_one(c, &r->claims[i], r->at_ms, &r->err);
        r->rc = r->claims[i].rc;
    }
}

/* One queued write's SQL, for the group commit's batch (commit_batch in
 * cold_sqlite_writer.c): an insert, a claim or a close, by r->kind. */
void sq_req_run(struct sq_conn *c, struct write_req *r)
{
    if (r->kind == W_PUT)
        insert_req(c, r);
    else if (r->kind == W_CLAIM)
        claim_req(c, r);
    else
        r->rc = close_ids(c, r, &r->err);
}

static int sq_msg_put_many(void *state, const struct cold_msg *msgs, size_t n, int *rcs,
                           struct snap_err *err)
{
    struct write_req req = {.kind = W_PUT, .msgs = msgs, .rcs = rcs, .n = n, .rc = SNAP_ERR};
    return sq_group_commit(state, &req, err);
}

static int sq_msg_claim(void *state, struct cold_claim *claims, size_t n, int64_t now_ms,
                        struct snap_err *err)
{
    struct write_req req = {.kind = W_CLAIM, .claims = claims, .n = n, .at_ms = now_ms,
                            .rc = SNAP_ERR};
    return sq_group_commit(state, &req, err);
}

static int sq_msg_close(void *state, const int64_t *ids, size_t n, int to_state, int64_t at_ms,
                        size_t *n_closed, struct snap_err *err)
{
    struct write_req req = {.kind = W_CLOSE, .ids = ids, .n = n, .to_state = to_state,
                            .at_ms = at_ms, .rc = SNAP_ERR};
    int rc = sq_group_commit(state, &req, err);
    *n_closed = req.n_closed;
    return rc;
}

/* Fills out (zeroed by the caller) from the current row of a statement
 * that selects SQ_MSG_COLS. out->text is heap memory owned by out; on
 * failure out holds nothing to free. */
static int row_to_msg(sqlite3_stmt *s, struct cold_msg *out, struct snap_err *err)
{
    const unsigned char *text;
    int64_t id = sqlite3_column_int64(s, 0);
    int n;

    out->id = id;
    if (column_copy(s, 1, out->username, sizeof out->username) != 0)
        return snap_err_set(err, SNAP_ERR, "sqlite: message %lld has a bad username",
                            (long long)id);
    if (sqlite3_column_type(s, 2) != SQLITE_NULL) {
        if (column_copy(s, 2, out->from, sizeof out->from) != 0)
            return snap_err_set(err, SNAP_ERR, "sqlite: message %lld has a bad sender",
                                (long long)id);
        out->has_from = 1;
    }
    out->created_ms = sqlite3_column_int64(s, 4);
    out->expires_ms = sqlite3_column_int64(s, 5);
    out->state = sqlite3_column_int(s, 6);
    out->closed_ms = sqlite3_column_int64(s, 7); /* NULL reads as 0 */
    if (sqlite3_column_type(s, 8) != SQLITE_NULL &&
        column_copy(s, 8, out->idem, sizeof out->idem) != 0)
        return snap_err_set(err, SNAP_ERR, "sqlite: message %lld has a bad idem", (long long)id);
    /* Text last, so no earlier failure leaves it allocated. */
    text = sqlite3_column_text(s, 3);
    n = sqlite3_column_bytes(s, 3);
    if (text == NULL || n < 0)
        return snap_err_set(err, SNAP_ERR, "sqlite: message %lld text unreadable", (long long)id);
    out->text = malloc((size_t)n + 1);
    if (out->text == NULL) return snap_err_set(err, SNAP_ERR, "sqlite: out of memory");
    memcpy(out->text, text, (size_t)n);
    out->text[n] = '\0';
    out->text_len = (size_t)n;
    return SNAP_OK;
}

/* Steps s (bound by the caller) and appends every row to out, at most max
 * (0: no limit). On failure out may hold the rows read so far: cold_store.c
 * frees them. */
static int rows_to_list(struct sq_conn *c, sqlite3_stmt *s, size_t max, struct cold_msg_list *out,
                        struct snap_err *err)
{
    size_t cap = 0;
    int rc = SNAP_OK, q;

    while (rc == SNAP_OK && (q = sqlite3_step(s)) == SQLITE_ROW) {
        if (max > 0 && out->len >= max) break;
        if (out->len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct cold_msg *items = realloc(out->items, ncap * sizeof *items);
            if (items == NULL) {
                rc = snap_err_set(err, SNAP_ERR, "sqlite: out of memory for %zu messages", ncap);
                break;
            }
            out->items = items;
            cap = ncap;
        }
        memset(&out->items[out->len], 0, sizeof out->items[out->len]);
        rc = row_to_msg(s, &out->items[out->len], err);
        if (rc == SNAP_OK) out->len++;
    }
    if (rc == SNAP_OK && q != SQLITE_ROW && q != SQLITE_DONE) rc = sq_fail(c, q, "select", err);
    return rc;
}

/* Runs a one-row lookup (which, bound by bind) into *out: SNAP_ENOTFOUND
 * when there is no row. */
static int select_one(struct sq_state *st, enum sq_stmt which, int64_t id, const char *key,
                      struct cold_msg *out, struct snap_err *err)
{
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int rc = sq_read_begin(st, which, &c, &s, err);
    int q;

    if (rc != SNAP_OK) return rc;
    q = key != NULL ? bind_text(s, 1, key, strlen(key)) : sqlite3_bind_int64(s, 1, id);
    if (q == SQLITE_OK) q = sqlite3_step(s);
    if (q == SQLITE_ROW)
        rc = row_to_msg(s, out, err);
    else if (q == SQLITE_DONE)
        rc = snap_err_set(err, SNAP_ENOTFOUND, "message not found");
    else
        rc = sq_fail(c, q, "select message", err);
    sq_read_end(st, c, s);
    return rc;
}

static int sq_msg_get(void *state, int64_t id, struct cold_msg *out, struct snap_err *err)
{
    return select_one(state, ST_MSG_GET, id, NULL, out, err);
}

static int sq_msg_find_idem(void *state, const char *idem, struct cold_msg *out,
                            struct snap_err *err)
{
    return select_one(state, ST_MSG_FIND_IDEM, 0, idem, out, err);
}

static int sq_msg_claimed(void *state, const char *username, const char *token, int64_t since_ms,
                          struct cold_msg_list *out, struct snap_err *err)
{
    struct sq_state *st = state;
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int rc = sq_read_begin(st, ST_MSG_CLAIMED, &c, &s, err);
    int q;

    if (rc != SNAP_OK) return rc;
    q = bind_text(s, 1, username, strlen(username));
    if (q == SQLITE_OK) q = bind_text(s, 2, token, strlen(token));
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 3, since_ms);
    rc = q == SQLITE_OK ? rows_to_list(c, s, 0, out, err) : sq_fail(c, q, "bind", err);
    sq_read_end(st, c, s);
    return rc;
}

static int sq_msg_scan_open(void *state, int64_t since_ms, int64_t now_ms, int64_t after_exp,
                            int64_t after_id, size_t max, struct cold_msg_list *out,
                            struct snap_err *err)
{
    struct sq_state *st = state;
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int rc = sq_read_begin(st, ST_MSG_SCAN_OPEN, &c, &s, err);
    int q;

    if (rc != SNAP_OK) return rc;
    q = sqlite3_bind_int64(s, 1, now_ms);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 2, since_ms);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 3, after_exp);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 4, after_id);
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 5, (sqlite3_int64)max);
    rc = q == SQLITE_OK ? rows_to_list(c, s, max, out, err) : sq_fail(c, q, "bind", err);
    sq_read_end(st, c, s);
    return rc;
}

/* A single-statement write outside the group commit (rare calls: an
 * account, a released key): the writer's turn, statement which bound by
 * bind(s, arg), and the check that the file has not moved. *changes (may be
 * NULL) receives the rows it matched. */
static int single_write(struct sq_state *st, enum sq_stmt which,
                        int (*bind)(sqlite3_stmt *s, const void *arg), const void *arg,
                        const char *what, int *changes, struct snap_err *err)
{
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int rc = sq_pool_take(st, &c, err);

    if (rc != SNAP_OK) return rc;
    rc = sq_writer_enter(st, err);
    if (rc == SNAP_OK) {
        rc = sq_stmt_get(c, which, &s, err);
        if (rc == SNAP_OK) {
            int q = bind(s, arg);
            if (q == SQLITE_OK) q = sqlite3_step(s);
            rc = q == SQLITE_DONE ? SNAP_OK : sq_fail(c, q, what, err);
            if (rc == SNAP_OK && changes != NULL) *changes = sqlite3_changes(c->db);
            sq_stmt_done(s);
            if (rc == SNAP_OK) rc = sq_check_not_moved(c, st, err);
        }
        sq_writer_leave(st);
    }
    sq_pool_give(st, c);
    return rc;
}

static int bind_release_idem(sqlite3_stmt *s, const void *arg)
{
    return sqlite3_bind_int64(s, 1, *(const int64_t *)arg);
}

static int sq_msg_release_idem(void *state, int64_t id, struct snap_err *err)
{
    return single_write(state, ST_MSG_RELEASE_IDEM, bind_release_idem, &id, "release idem", NULL,
                        err);
}

static int sq_msg_max_id(void *state, int64_t *out, struct snap_err *err)
{
    struct sq_state *st = state;
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    int rc = sq_read_begin(st, ST_MSG_MAX_ID, &c, &s, err);
    int q;

    if (rc != SNAP_OK) return rc;
    q = sqlite3_step(s);
    if (q == SQLITE_ROW)
        *out = sqlite3_column_type(s, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(s, 0);
    else
        rc = sq_fail(c, q, "select max id", err);
    sq_read_end(st, c, s);
    return rc;
}

static int bind_user_put(sqlite3_stmt *s, const void *arg)
{
    const struct cold_user *u = arg;
    int q = bind_text(s, 1, u->username, strlen(u->username));
    if (q == SQLITE_OK) q = bind_text(s, 2, u->password_hash, strlen(u->password_hash));
    if (q == SQLITE_OK) q = bind_text(s, 3, u->role, strlen(u->role));
    if (q == SQLITE_OK) q = sqlite3_bind_int64(s, 4, u->created_ms);
    return q;
}

static int sq_user_put(void *state, const struct cold_user *u, struct snap_err *err)
{
    return single_write(state, ST_USER_PUT, bind_user_put, u, "insert user", NULL, err);
}

static int sq_user_get(void *state, const char *username, struct cold_user *out,
                       struct snap_err *err)
{
    struct sq_state *st = state;
    struct sq_conn *c;
    sqlite3_stmt *s = NULL;
    size_t ulen = strlen(username); /* < sizeof out->username: cold_store.c checked */
    int rc = sq_read_begin(st, ST_USER_GET, &c, &s, err);
    int q;

    if (rc != SNAP_OK) return rc;
    q = bind_text(s, 1, username, ulen);
    if (q == SQLITE_OK) q = sqlite3_step(s);
    if (q == SQLITE_ROW) {
        memcpy(out->username, username, ulen + 1);
        if (column_copy(s, 0, out->password_hash, sizeof out->password_hash) != 0 ||
            column_copy(s, 1, out->role, sizeof out->role) != 0)
            rc = snap_err_set(err, SNAP_ERR, "sqlite: user row has a bad hash or role");
        out->created_ms = sqlite3_column_int64(s, 2);
    } else if (q == SQLITE_DONE) {
        rc = snap_err_set(err, SNAP_ENOTFOUND, "user not found");
    } else {
        rc = sq_fail(c, q, "select user", err);
    }
    sq_read_end(st, c, s);
    return rc;
}

struct role_args {
    const char *username, *role;
};

static int bind_set_role(sqlite3_stmt *s, const void *arg)
{
    const struct role_args *a = arg;
    int q = bind_text(s, 1, a->username, strlen(a->username));
    if (q == SQLITE_OK) q = bind_text(s, 2, a->role, strlen(a->role));
    return q;
}

static int sq_user_set_role(void *state, const char *username, const char *role,
                            struct snap_err *err)
{
    struct role_args a = {username, role};
    int changed = 0;
    int rc = single_write(state, ST_USER_SET_ROLE, bind_set_role, &a, "update role", &changed, err);

    if (rc == SNAP_OK && changed == 0) /* counts matched rows, the same role too */
        rc = snap_err_set(err, SNAP_ENOTFOUND, "user not found");
    return rc;
}

const struct cold_ops cold_sqlite_ops = {
    .name = "sqlite",
    .scheme = SQ_SCHEME,
    .open = sq_open,
    .close = sq_close,
    .ensure_schema = sq_ensure_schema,
    .ping = sq_ping,
    .msg_put_many = sq_msg_put_many,
    .msg_get = sq_msg_get,
    .msg_claim = sq_msg_claim,
    .msg_claimed = sq_msg_claimed,
    .msg_close = sq_msg_close,
    .msg_find_idem = sq_msg_find_idem,
    .msg_release_idem = sq_msg_release_idem,
    .msg_scan_open = sq_msg_scan_open,
    .msg_max_id = sq_msg_max_id,
    .user_put = sq_user_put,
    .user_get = sq_user_get,
    .user_set_role = sq_user_set_role,
};
