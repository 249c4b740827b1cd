/* cold_mongo.c: the MongoDB driver of the cold store (cold_store.h), picked
 * by cold_open() for mongodb:// urls (its open also takes mongodb+srv://,
 * should cold_store.c ever route that scheme here). It is the only file that
 * includes mongoc.h, and it exports nothing but cold_mongo_ops.
 *
 * Layout in the url's database (default "snaptext"):
 *   messages  {_id: int64 id, username, from: string|null, text,
 *              created_at: date, expiration_date: date}   index username_1
 *   users     {_id: username, username, password_hash, role,
 *              created_at: date}                   unique index username_1
 * Users are keyed by their name as _id so that a second registration of a
 * name fails on the always-present _id index (code 11000), even before or
 * without username_1; username_1 (unique) serves the lookup by username.
 *
 * Connections: one mongoc_client_pool_t per store; every operation pops a
 * client, runs, and pushes it back, so worker threads never share a client.
 * Defaults added when the url does not set them (docs/MONGODB.md):
 * serverSelectionTimeoutMS=1500, connectTimeoutMS=1000, socketTimeoutMS=2000
 * (a dead server is SNAP_EUNAVAIL in about 2 s, never a hang), and the write
 * concern {w: "majority", j: true} for every write (a 0 return from msg_put,
 * or an rcs[i] of 0 from msg_put_many, means majority-acknowledged and
 * journaled); the url's w / journal win.
 * msg_put_many sends its batch as one unordered insert (ordered: false):
 * a taken _id (11000) is that message's SNAP_ECONFLICT and the others still
 * go in; a write concern error or a failed command fails every message that
 * has no write error of its own.
 *
 * Every value sent is typed BSON built from validated C fields; no request
 * text is ever parsed as JSON, BSON or a query. Driver error text goes only
 * into err->msg (for the log), and libmongoc's own log lines go to log.h.
 * Not here: choosing the driver (cold_store.c), the SQLite twin
 * (cold_sqlite.c), Redis (hot_store.c). */
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mongoc/mongoc.h>

#include "snap/cold_store.h"
#include "snap/err.h"
#include "snap/log.h"

#define MONGO_DEFAULT_DB     "snaptext"
#define MONGO_DB_NAME_MAX    63 /* MongoDB's own limit is 64 bytes */
#define MONGO_COLL_MESSAGES  "messages"
#define MONGO_COLL_USERS     "users"
#define MONGO_INDEX_USERNAME "username_1"
#define MONGO_EXPIRE_BATCH   1000 /* ids per update, far below 16 MB */

#define MONGO_DEFAULT_SERVER_SELECTION_MS 1500
#define MONGO_DEFAULT_CONNECT_MS          1000
#define MONGO_DEFAULT_SOCKET_MS           2000

/* Duplicate-key codes: 11000 today, 11001 / 12582 from older servers. */
#define MONGO_DUP_KEY        11000
#define MONGO_DUP_KEY_OLD    11001
#define MONGO_DUP_KEY_MONGOS 12582
/* Index exists under this name with other options / keys. */
#define MONGO_INDEX_OPTIONS_CONFLICT   85
#define MONGO_INDEX_KEY_SPECS_CONFLICT 86

/* The state behind the void *state of cold_ops. Owned by the caller of
 * mongo_open(); released by mongo_close(). */
struct mongo_store {
    mongoc_uri_t *uri;              /* owned; outlives the pool          */
    mongoc_client_pool_t *pool;     /* owned; shared by all threads      */
    char db[MONGO_DB_NAME_MAX + 1]; /* database name from the url path   */
};

/* A client borrowed from the pool and one collection handle on it, for the
 * length of one operation. lease_end() returns both. */
struct lease {
    mongoc_client_t *client;
    mongoc_collection_t *coll; /* NULL for database-level commands */
};

/* ---- process-wide init ------------------------------------------------------ */

/* mongoc_init() must run once per process before anything else in libmongoc.
 * mongoc_cleanup() is deliberately never called by this driver: other stores
 * (or other code in the process) may still be using libmongoc when one store
 * is closed, and libmongoc cannot be re-initialised after cleanup. A program
 * that wants a leak-free exit calls it itself after its last cold_close(). */
static pthread_once_t mongo_once = PTHREAD_ONCE_INIT;

/* libmongoc's own diagnostics (monitor errors, deprecation warnings). Its
 * default handler prints plain text, DEBUG and INFO on stdout, which would
 * break the JSON-lines log of log.h: send them there instead, as event
 * "mongodb_driver". TRACE is dropped. */
static void mongo_log(mongoc_log_level_t level, const char *domain, const char *message,
                      void *unused)
{
    enum snap_log_level to;

    (void)unused;
    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        to = SNAP_LOG_ERROR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        to = SNAP_LOG_WARN;
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
    case MONGOC_LOG_LEVEL_INFO:
        to = SNAP_LOG_INFO;
        break;
    case MONGOC_LOG_LEVEL_DEBUG:
        to = SNAP_LOG_DEBUG;
        break;
    default:
        return;
    }
    if (log_enabled(to))
        log_event(to, NULL, "mongodb_driver", "%s: %s", domain ? domain : "mongoc",
                  message ? message : "");
}

static void mongo_init_once(void)
{
    /* The handler first, so that nothing mongoc_init() says is lost. */
    mongoc_log_set_handler(mongo_log, NULL);
    mongoc_init();
}

/* ---- helpers ---------------------------------------------------------------- */

/* Returns SNAP_OK, or SNAP_EUNAVAIL when the pool hands out no client (its
 * topology is unusable, e.g. a mongodb+srv:// name that did not resolve). */
static int lease_begin(struct mongo_store *s, const char *coll, struct lease *l,
                       struct snap_err *err)
{
    l->coll = NULL;
    l->client = mongoc_client_pool_pop(s->pool);
    if (!l->client)
        return snap_err_set(err, SNAP_EUNAVAIL, "mongodb: the client pool gave no client");
    if (coll) l->coll = mongoc_client_get_collection(l->client, s->db, coll);
    return SNAP_OK;
}

static void lease_end(struct mongo_store *s, struct lease *l)
{
    if (l->coll) mongoc_collection_destroy(l->coll);
    if (l->client) mongoc_client_pool_push(s->pool, l->client);
    l->coll = NULL;
    l->client = NULL;
}

static bool is_dup_key(const bson_error_t *e)
{
    if (e->domain != MONGOC_ERROR_SERVER && e->domain != MONGOC_ERROR_COLLECTION &&
        e->domain != MONGOC_ERROR_QUERY && e->domain != MONGOC_ERROR_COMMAND)
        return false;
    return e->code == MONGO_DUP_KEY || e->code == MONGO_DUP_KEY_OLD ||
           e->code == MONGO_DUP_KEY_MONGOS;
}

/* Maps a libmongoc error to a status. Only errors built on our side of the
 * wire (a BSON document we failed to build, an argument libmongoc rejects)
 * are SNAP_ERR: they are bugs. Everything the server or the network says,
 * apart from a duplicate key, means "the store refused or cannot be reached"
 * and the caller answers 503. */
static int status_of(const bson_error_t *e)
{
    if (is_dup_key(e)) return SNAP_ECONFLICT;
    if (e->domain == MONGOC_ERROR_BSON) return SNAP_ERR;
    if (e->domain == MONGOC_ERROR_COMMAND && e->code == MONGOC_ERROR_COMMAND_INVALID_ARG)
        return SNAP_ERR;
    return SNAP_EUNAVAIL;
}

/* Fills err from a libmongoc error and returns the status. The numbers come
 * first so that they survive the truncation of err->msg. */
static int fail(struct snap_err *err, const bson_error_t *e, const char *what)
{
    return snap_err_set(err, status_of(e), "mongodb %s: [%u/%u] %s", what, (unsigned)e->domain,
                        (unsigned)e->code, e->message);
}

static int fail_build(struct snap_err *err, const char *what)
{
    return snap_err_set(err, SNAP_ERR, "mongodb %s: document too large to build", what);
}

/* strnlen-based check: s is a NUL-terminated string of 1..max bytes. */
static bool str_ok(const char *s, size_t max)
{
    if (!s) return false;
    size_t n = strnlen(s, max + 1);
    return n >= 1 && n <= max;
}

/* Copies a UTF-8 field of doc into out (cap bytes including the NUL).
 * Returns false when the field is missing, not a string, holds a NUL byte
 * or does not fit. */
static bool get_str(const bson_t *doc, const char *key, char *out, size_t cap)
{
    bson_iter_t it;
    uint32_t len = 0;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it)) return false;
    const char *v = bson_iter_utf8(&it, &len);
    if ((size_t)len >= cap || memchr(v, '\0', len) != NULL) return false;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

static bool get_date(const bson_t *doc, const char *key, int64_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DATE_TIME(&it)) return false;
    *out = bson_iter_date_time(&it);
    return true;
}

/* The message id is written as int64; a document edited by hand may hold an
 * int32, which is accepted. Anything else is not one of ours. */
static bool get_id(const bson_t *doc, int64_t *out)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id")) return false;
    if (BSON_ITER_HOLDS_INT64(&it))
        *out = bson_iter_int64(&it);
    else if (BSON_ITER_HOLDS_INT32(&it))
        *out = bson_iter_int32(&it);
    else
        return false;
    return true;
}

/* Runs find(filter, opts) on l->coll and copies the first document into
 * *out (initialised on every return; the caller destroys it). Returns
 * SNAP_OK, SNAP_ENOTFOUND (no document) or the mapped error. */
static int find_first(struct lease *l, const bson_t *filter, const bson_t *opts, bson_t *out,
                      const char *what, struct snap_err *err)
{
    bson_error_t e;
    const bson_t *doc = NULL;
    int rc = SNAP_ENOTFOUND;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(l->coll, filter, opts, NULL);

    bson_init(out);
    if (mongoc_cursor_next(cur, &doc)) {
        bson_destroy(out);
        bson_copy_to(doc, out);
        rc = SNAP_OK;
    } else if (mongoc_cursor_error(cur, &e)) {
        rc = fail(err, &e, what);
    }
    mongoc_cursor_destroy(cur);
    if (rc == SNAP_ENOTFOUND)
        (void)snap_err_set(err, SNAP_ENOTFOUND, "mongodb %s: no such document", what);
    return rc;
}

/* Leases a client for coll and finds the first document matching filter
 * (limit 1) into *doc, which is initialised on every return and destroyed
 * by the caller. SNAP_ENOTFOUND when there is none. */
static int find_one(struct mongo_store *s, const char *coll, const bson_t *filter, bson_t *doc,
                    const char *what, struct snap_err *err)
{
    struct lease l;
    bson_t opts;
    int rc;

    bson_init(doc);
    bson_init(&opts);
    if (!BSON_APPEND_INT64(&opts, "limit", 1)) {
        bson_destroy(&opts);
        return fail_build(err, what);
    }
    rc = lease_begin(s, coll, &l, err);
    if (rc == SNAP_OK) {
        bson_destroy(doc);
        rc = find_first(&l, filter, &opts, doc, what, err);
        lease_end(s, &l);
    }
    bson_destroy(&opts);
    return rc;
}

/* Sets an int32 url option unless the url already has it. */
static bool default_int_option(mongoc_uri_t *uri, const char *key, int32_t value)
{
    if (mongoc_uri_has_option(uri, key)) return true;
    return mongoc_uri_set_option_as_int32(uri, key, value);
}

/* {w: "majority", j: true} unless the url chose w or journal itself. A url
 * with w=0 keeps an unacknowledged write concern and gets no journal flag
 * (the two cannot be combined): such a deployment gives up durability. */
static void default_write_concern(mongoc_uri_t *uri)
{
    const mongoc_write_concern_t *given = mongoc_uri_get_write_concern(uri);
    mongoc_write_concern_t *wc =
        given ? mongoc_write_concern_copy(given) : mongoc_write_concern_new();
    int32_t w = mongoc_write_concern_get_w(wc);

    if (w == MONGOC_WRITE_CONCERN_W_DEFAULT) {
        mongoc_write_concern_set_wmajority(wc, mongoc_write_concern_get_wtimeout(wc));
        w = MONGOC_WRITE_CONCERN_W_MAJORITY;
    }
    if (!mongoc_write_concern_journal_is_set(wc) && w != 0)
        mongoc_write_concern_set_journal(wc, true);
    mongoc_uri_set_write_concern(uri, wc);
    mongoc_write_concern_destroy(wc);
}

/* ---- open / close ----------------------------------------------------------- */

static void mongo_close(void *state)
{
    struct mongo_store *s = state;
    if (!s) return;
    /* The pool first: its clients and monitor threads use the uri. */
    if (s->pool) mongoc_client_pool_destroy(s->pool);
    if (s->uri) mongoc_uri_destroy(s->uri);
    free(s);
    /* No mongoc_cleanup() here: see mongo_init_once(). */
}

/* On success *state is a struct mongo_store owned by the caller (release
 * with mongo_close()). Nothing is sent on the wire yet: the pool connects
 * on first use, so an unreachable server shows up in ensure_schema / ping. */
static int mongo_open(const char *url, void **state, struct snap_err *err)
{
    bson_error_t e;
    struct mongo_store *s = NULL;
    const char *db;
    int rc = SNAP_OK;

    *state = NULL;
    if (!url || (strncmp(url, "mongodb://", 10) != 0 && strncmp(url, "mongodb+srv://", 14) != 0))
        return snap_err_set(err, SNAP_EINVAL, "mongodb: url must start with mongodb://");

    (void)pthread_once(&mongo_once, mongo_init_once);

    s = calloc(1, sizeof *s);
    if (!s) return snap_err_set(err, SNAP_ERR, "mongodb: out of memory");

    memset(&e, 0, sizeof e);
    s->uri = mongoc_uri_new_with_error(url, &e);
    if (!s->uri) {
        /* libmongoc's parse messages name the problem, not the credentials. */
        rc = snap_err_set(err, SNAP_EINVAL, "mongodb: bad url: %s", e.message);
        goto done;
    }

    db = mongoc_uri_get_database(s->uri);
    if (!db || !*db) db = MONGO_DEFAULT_DB;
    if (strlen(db) > MONGO_DB_NAME_MAX) {
        rc = snap_err_set(err, SNAP_EINVAL, "mongodb: database name longer than %d bytes",
                          MONGO_DB_NAME_MAX);
        goto done;
    }
    memcpy(s->db, db, strlen(db) + 1);

    if (!default_int_option(s->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                            MONGO_DEFAULT_SERVER_SELECTION_MS) ||
        !default_int_option(s->uri, MONGOC_URI_CONNECTTIMEOUTMS, MONGO_DEFAULT_CONNECT_MS) ||
        !default_int_option(s->uri, MONGOC_URI_SOCKETTIMEOUTMS, MONGO_DEFAULT_SOCKET_MS)) {
        rc = snap_err_set(err, SNAP_ERR, "mongodb: cannot set default timeouts");
        goto done;
    }
    default_write_concern(s->uri);
    if (!mongoc_uri_get_appname(s->uri)) (void)mongoc_uri_set_appname(s->uri, "snaptext");

    s->pool = mongoc_client_pool_new_with_error(s->uri, &e);
    if (!s->pool) {
        /* A mongodb+srv:// name that does not resolve (now) is the store
         * being unreachable; anything else is a url the driver refuses. */
        bool dns = e.domain == MONGOC_ERROR_STREAM && e.code == MONGOC_ERROR_STREAM_NAME_RESOLUTION;
        rc = snap_err_set(err, dns ? SNAP_EUNAVAIL : SNAP_EINVAL,
                          "mongodb: cannot create client pool: %s", e.message);
        goto done;
    }
    if (!mongoc_client_pool_set_error_api(s->pool, MONGOC_ERROR_API_VERSION_2)) {
        rc = snap_err_set(err, SNAP_ERR, "mongodb: cannot select error api 2");
        goto done;
    }

done:
    if (rc != SNAP_OK) {
        mongo_close(s);
        return rc;
    }
    *state = s;
    return SNAP_OK;
}

/* ---- schema and ping -------------------------------------------------------- */

/* {createIndexes: coll, indexes: [{key: {username: 1}, name: "username_1"
 * [, unique: true]}]}. Creating an index that already exists with the same
 * spec is a no-op on the server, so this is safe at every start. */
static int create_username_index(struct mongo_store *s, struct lease *l, const char *coll,
                                 bool unique, struct snap_err *err)
{
    bson_t cmd, indexes, idx, key, reply;
    bson_error_t e;
    bool ok = true;
    int rc = SNAP_OK;

    bson_init(&cmd);
    ok = ok && BSON_APPEND_UTF8(&cmd, "createIndexes", coll);
    ok = ok && BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &idx);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
    ok = ok && BSON_APPEND_INT32(&key, "username", 1);
    ok = ok && bson_append_document_end(&idx, &key);
    ok = ok && BSON_APPEND_UTF8(&idx, "name", MONGO_INDEX_USERNAME);
    if (unique) ok = ok && BSON_APPEND_BOOL(&idx, "unique", true);
    ok = ok && bson_append_document_end(&indexes, &idx);
    ok = ok && bson_append_array_end(&cmd, &indexes);
    if (!ok) {
        bson_destroy(&cmd);
        return fail_build(err, "createIndexes");
    }

    if (!mongoc_client_write_command_with_opts(l->client, s->db, &cmd, NULL, &reply, &e)) {
        if (e.domain == MONGOC_ERROR_SERVER &&
            (e.code == MONGO_INDEX_OPTIONS_CONFLICT || e.code == MONGO_INDEX_KEY_SPECS_CONFLICT))
            /* An operator made a different username_1: starting anyway would
             * lose the uniqueness we rely on, so say exactly what to fix. */
            rc = snap_err_set(err, SNAP_ERR,
                              "mongodb: index %s.%s exists with another spec, drop it: %s", coll,
                              MONGO_INDEX_USERNAME, e.message);
        else
            rc = fail(err, &e, "createIndexes");
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}

static int mongo_ensure_schema(void *state, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    int rc;

    rc = lease_begin(s, NULL, &l, err);
    if (rc != SNAP_OK) return rc;
    rc = create_username_index(s, &l, MONGO_COLL_MESSAGES, false, err);
    if (rc == SNAP_OK) rc = create_username_index(s, &l, MONGO_COLL_USERS, true, err);
    lease_end(s, &l);
    return rc;
}

static int mongo_ping(void *state, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t cmd, reply;
    bson_error_t e;
    int rc = SNAP_OK;

    bson_init(&cmd);
    if (!BSON_APPEND_INT32(&cmd, "ping", 1)) {
        bson_destroy(&cmd);
        return fail_build(err, "ping");
    }
    rc = lease_begin(s, NULL, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_client_command_simple(l.client, "admin", &cmd, NULL, &reply, &e))
            rc = fail(err, &e, "ping");
        bson_destroy(&reply);
        lease_end(s, &l);
    }
    bson_destroy(&cmd);
    return rc;
}

/* ---- messages --------------------------------------------------------------- */

/* Checks m as every insert of a message does (on top of cold_store.c's
 * checks: a text BSON can hold, valid UTF-8) and appends its fields to doc,
 * an empty document the caller initialised and destroys:
 *   {_id: int64 id, username, from: string|null, text, created_at: date,
 *    expiration_date: date}
 * what names the caller in err. */
static int msg_doc(const struct cold_msg *m, bson_t *doc, const char *what, struct snap_err *err)
{
    bool ok = true;

    if (!m || m->id <= 0 || !str_ok(m->username, SNAP_USERNAME_MAX) ||
        (m->has_from && !str_ok(m->from, SNAP_USERNAME_MAX)) || (!m->text && m->text_len > 0) ||
        m->text_len > (size_t)INT_MAX ||
        (m->text && !bson_utf8_validate(m->text, m->text_len, false)))
        return snap_err_set(err, SNAP_EINVAL, "mongodb %s: invalid message", what);

    ok = ok && BSON_APPEND_INT64(doc, "_id", m->id);
    ok = ok && BSON_APPEND_UTF8(doc, "username", m->username);
    if (m->has_from)
        ok = ok && BSON_APPEND_UTF8(doc, "from", m->from);
    else
        ok = ok && BSON_APPEND_NULL(doc, "from");
    ok = ok && bson_append_utf8(doc, "text", 4, m->text ? m->text : "", (int)m->text_len);
    ok = ok && BSON_APPEND_DATE_TIME(doc, "created_at", m->created_ms);
    ok = ok && BSON_APPEND_DATE_TIME(doc, "expiration_date", m->expires_ms);
    return ok ? SNAP_OK : fail_build(err, what);
}

__attribute__((unused)) static int mongo_msg_put(void *state, const struct cold_msg *m, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t doc;
    bson_error_t e;
    int rc;

    bson_init(&doc);
    rc = msg_doc(m, &doc, "msg_put", err);
    if (rc == SNAP_OK) rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    /* The write concern comes from the url (see default_write_concern). */
    if (rc == SNAP_OK) {
        if (!mongoc_collection_insert_one(l.coll, &doc, NULL, NULL, &e))
            rc = fail(err, &e, "insert messages");
        lease_end(s, &l);
    }
    bson_destroy(&doc);
    return rc;
}

/* Keeps in *sum the outcome a batch insert returns, as its rcs[] are
 * filled: the failure that is not a conflict at the lowest index, else the
 * conflict at the lowest index (cold_store.h). one is message i's outcome,
 * never SNAP_OK; sum->code is SNAP_OK until the first call. */
static void keep_first(struct snap_err *sum, size_t *sum_at, size_t i, const struct snap_err *one)
{
    bool take;

    if (sum->code == SNAP_OK)
        take = true;
    else if ((sum->code == SNAP_ECONFLICT) != (one->code == SNAP_ECONFLICT))
        take = sum->code == SNAP_ECONFLICT;
    else
        take = i < *sum_at;
    if (take) {
        *sum = *one;
        *sum_at = i;
    }
}

/* Reads the first entry of the array key of reply ({code, errmsg}, as in
 * writeErrors and writeConcernErrors) into *code and *msg (borrowed from
 * reply). False when there is no such entry. */
static bool first_error(const bson_t *reply, const char *key, uint32_t *code, const char **msg)
{
    bson_iter_t it, arr, doc;

    *code = 0;
    *msg = "";
    if (!bson_iter_init_find(&it, reply, key) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &arr) || !bson_iter_next(&arr) || !BSON_ITER_HOLDS_DOCUMENT(&arr) ||
        !bson_iter_recurse(&arr, &doc))
        return false;
    while (bson_iter_next(&doc)) {
        if (BSON_ITER_IS_KEY(&doc, "code") && BSON_ITER_HOLDS_NUMBER(&doc))
            *code = (uint32_t)bson_iter_as_int64(&doc);
        else if (BSON_ITER_IS_KEY(&doc, "errmsg") && BSON_ITER_HOLDS_UTF8(&doc))
            *msg = bson_iter_utf8(&doc, NULL);
    }
    return true;
}

/* Marks in rcs[] (all SNAP_OK on entry) the messages that have an entry in
 * the writeErrors of reply: {index, code, errmsg} gives message index the
 * status msg_put gives the same server error (status_of: 11000 is
 * SNAP_ECONFLICT). Returns how many it marked, or -1 when an entry has no
 * code or names an index outside the batch or twice: such a reply says
 * nothing reliable about any message. */
static long mark_write_errors(const bson_t *reply, size_t n, int *rcs, struct snap_err *sum,
                              size_t *sum_at)
{
    bson_iter_t it, arr, doc;
    long marked = 0;

    if (!bson_iter_init_find(&it, reply, "writeErrors")) return 0;
    if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) return -1;
    while (bson_iter_next(&arr)) {
        bson_error_t e;
        struct snap_err one;
        int64_t index = -1;
        const char *msg = "";

        memset(&e, 0, sizeof e);
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &doc)) return -1;
        while (bson_iter_next(&doc)) {
            if (BSON_ITER_IS_KEY(&doc, "index") && BSON_ITER_HOLDS_NUMBER(&doc))
                index = bson_iter_as_int64(&doc);
            else if (BSON_ITER_IS_KEY(&doc, "code") && BSON_ITER_HOLDS_NUMBER(&doc))
                e.code = (uint32_t)bson_iter_as_int64(&doc);
            else if (BSON_ITER_IS_KEY(&doc, "errmsg") && BSON_ITER_HOLDS_UTF8(&doc))
                msg = bson_iter_utf8(&doc, NULL);
        }
        if (index < 0 || (uint64_t)index >= n || rcs[index] != SNAP_OK || e.code == 0) return -1;
        e.domain = MONGOC_ERROR_SERVER; /* where error api 2 puts a write error */
        rcs[index] = status_of(&e);
        (void)snap_err_set(&one, rcs[index], "mongodb insert messages: [%u/%u] message %lld: %s",
                           (unsigned)e.domain, (unsigned)e.code, (long long)index, msg);
        keep_first(sum, sum_at, (size_t)index, &one);
        marked++;
    }
    return marked;
}

/* Fills rcs[0..n) after insert_many failed with e and reply, and returns
 * the status of the call with err to match. A message with a write error
 * gets its own status. The others count as stored only when the reply
 * says so: no write concern error, and insertedCount equal to the messages
 * without a write error (libmongoc sends a batch past the server's limits
 * as several commands, and one of them may fail outright). Otherwise they
 * get the failure of the batch, as msg_put maps it (a conflict there
 * cannot be one message's: SNAP_EUNAVAIL). */
static int batch_failure(const bson_t *reply, const bson_error_t *e, size_t n, int *rcs,
                         struct snap_err *err)
{
    struct snap_err sum, batch;
    size_t sum_at = 0;
    bson_iter_t it;
    int64_t inserted = -1;
    uint32_t code;
    const char *msg;
    long marked;

    snap_err_clear(&sum);
    snap_err_clear(&batch);
    for (size_t i = 0; i < n; i++) rcs[i] = SNAP_OK;
    marked = mark_write_errors(reply, n, rcs, &sum, &sum_at);
    if (bson_iter_init_find(&it, reply, "insertedCount") && BSON_ITER_HOLDS_NUMBER(&it))
        inserted = bson_iter_as_int64(&it);

    if (marked < 0) {
        snap_err_clear(&sum);
        for (size_t i = 0; i < n; i++) rcs[i] = SNAP_OK;
        (void)snap_err_set(&batch, SNAP_EUNAVAIL,
                           "mongodb insert messages: malformed writeErrors in the reply");
    } else if (first_error(reply, "writeConcernErrors", &code, &msg)) {
        (void)snap_err_set(&batch, SNAP_EUNAVAIL, "mongodb insert messages: [%u/%u] %s",
                           (unsigned)MONGOC_ERROR_WRITE_CONCERN, (unsigned)code, msg);
    } else if (marked == 0) {
        /* Neither kind of error in the reply: the network, the server or
         * libmongoc refused the whole command. */
        if (fail(&batch, e, "insert messages") == SNAP_ECONFLICT) batch.code = SNAP_EUNAVAIL;
    } else if (inserted != (int64_t)n - marked) {
        (void)snap_err_set(&batch, SNAP_EUNAVAIL,
                           "mongodb insert messages: %lld of %zu inserts confirmed, %ld refused",
                           (long long)inserted, n, marked);
    }

    for (size_t i = 0; batch.code != SNAP_OK && i < n; i++) {
        if (rcs[i] != SNAP_OK) continue;
        rcs[i] = batch.code;
        keep_first(&sum, &sum_at, i, &batch);
    }
    /* sum is set: every branch above marks at least one message. */
    return snap_err_set(err, sum.code, "%s", sum.msg);
}

/* One unordered insert for the whole batch, with the write concern of the
 * url as for msg_put: the server tries every document, so one taken id
 * does not stop the others. rcs[i] is set on every return. */
static int mongo_msg_put_many(void *state, const struct cold_msg *msgs, size_t n, int *rcs,
                              struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    struct snap_err one;
    bson_t **docs = NULL;
    bson_t opts, reply;
    bson_error_t e;
    size_t built = 0;
    bool filled = false;
    int rc = SNAP_OK;

    if (n == 0) return SNAP_OK;
    bson_init(&opts);
    /* bson_new() per document: an array of bson_t would break the 128-byte
     * alignment libbson declares for it. */
    docs = calloc(n, sizeof *docs);
    if (!docs) rc = snap_err_set(err, SNAP_ERR, "mongodb msg_put_many: out of memory");
    for (; rc == SNAP_OK && built < n; built++) {
        docs[built] = bson_new();
        rc = msg_doc(&msgs[built], docs[built], "msg_put_many", &one);
        if (rc != SNAP_OK) (void)snap_err_set(err, rc, "%s (message %zu)", one.msg, built);
    }
    if (rc == SNAP_OK && !BSON_APPEND_BOOL(&opts, "ordered", false))
        rc = fail_build(err, "msg_put_many");
    if (rc == SNAP_OK) rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        /* No writeConcern in opts: the collection's, from the url, applies
         * (see default_write_concern). */
        if (!mongoc_collection_insert_many(l.coll, (const bson_t **)docs, n, &opts, &reply, &e)) {
            rc = batch_failure(&reply, &e, n, rcs, err);
            filled = true;
        }
        bson_destroy(&reply);
        lease_end(s, &l);
    }
    /* Success, or a failure before anything was sent: the same for all. */
    for (size_t i = 0; !filled && i < n; i++) rcs[i] = rc;

    for (size_t i = 0; i < built; i++) bson_destroy(docs[i]);
    free(docs);
    bson_destroy(&opts);
    return rc;
}

static int mongo_msg_get(void *state, int64_t id, struct cold_msg *out, struct snap_err *err)
{
    struct mongo_store *s = state;
    bson_t filter, doc;
    bson_iter_t it;
    int rc;

    memset(out, 0, sizeof *out);
    bson_init(&filter);
    if (!BSON_APPEND_INT64(&filter, "_id", id)) {
        bson_destroy(&filter);
        return fail_build(err, "msg_get");
    }
    rc = find_one(s, MONGO_COLL_MESSAGES, &filter, &doc, "find messages", err);
    bson_destroy(&filter);
    if (rc != SNAP_OK) {
        bson_destroy(&doc);
        return rc;
    }

    /* Every field is checked against the C struct's bounds before it is
     * copied: the database is trusted for content, not for sizes. */
    const char *bad = NULL;
    if (!get_id(&doc, &out->id))
        bad = "_id";
    else if (!get_str(&doc, "username", out->username, sizeof out->username))
        bad = "username";
    else if (!get_date(&doc, "created_at", &out->created_ms))
        bad = "created_at";
    else if (!get_date(&doc, "expiration_date", &out->expires_ms))
        bad = "expiration_date";
    else if (!bson_iter_init_find(&it, &doc, "from"))
        bad = "from";
    else if (BSON_ITER_HOLDS_NULL(&it))
        out->has_from = 0;
    else if (get_str(&doc, "from", out->from, sizeof out->from))
        out->has_from = 1;
    else
        bad = "from";

    if (!bad) {
        uint32_t len = 0;
        const char *text;
        if (!bson_iter_init_find(&it, &doc, "text") || !BSON_ITER_HOLDS_UTF8(&it)) {
            bad = "text";
        } else {
            text = bson_iter_utf8(&it, &len);
            out->text = malloc((size_t)len + 1);
            if (!out->text) {
                bson_destroy(&doc);
                memset(out, 0, sizeof *out);
                return snap_err_set(err, SNAP_ERR, "mongodb msg_get: out of memory");
            }
            memcpy(out->text, text, len);
            out->text[len] = '\0';
            out->text_len = len;
        }
    }
    bson_destroy(&doc);
    if (bad) {
        free(out->text);
        memset(out, 0, sizeof *out);
        return snap_err_set(err, SNAP_ERR, "mongodb msg_get: message %lld has a bad field %s",
                            (long long)id, bad);
    }
    return SNAP_OK;
}

/* One update for ids[0..n): {_id: {$in: [...]}, expiration_date: {$gt: at}}
 * -> {$set: {expiration_date: at}}. Built from int64s only. */
static int expire_batch(struct lease *l, const int64_t *ids, size_t n, int64_t at_ms,
                        struct snap_err *err)
{
    bson_t filter, id_cond, in, exp_cond, update, set;
    bson_error_t e;
    bool ok = true;
    int rc = SNAP_OK;

    bson_init(&filter);
    bson_init(&update);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &id_cond);
    ok = ok && BSON_APPEND_ARRAY_BEGIN(&id_cond, "$in", &in);
    for (size_t i = 0; ok && i < n; i++) {
        char keybuf[16];
        const char *key;
        size_t klen = bson_uint32_to_string((uint32_t)i, &key, keybuf, sizeof keybuf);
        ok = bson_append_int64(&in, key, (int)klen, ids[i]);
    }
    ok = ok && bson_append_array_end(&id_cond, &in);
    ok = ok && bson_append_document_end(&filter, &id_cond);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&filter, "expiration_date", &exp_cond);
    ok = ok && BSON_APPEND_DATE_TIME(&exp_cond, "$gt", at_ms);
    ok = ok && bson_append_document_end(&filter, &exp_cond);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    ok = ok && BSON_APPEND_DATE_TIME(&set, "expiration_date", at_ms);
    ok = ok && bson_append_document_end(&update, &set);

    if (!ok)
        rc = fail_build(err, "msg_expire");
    else if (!mongoc_collection_update_many(l->coll, &filter, &update, NULL, NULL, &e))
        rc = fail(err, &e, "update messages");
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

__attribute__((unused)) static int mongo_msg_expire(void *state, const int64_t *ids, size_t n, int64_t at_ms,
                            struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    int rc = SNAP_OK;

    if (n == 0) return SNAP_OK;
    if (!ids) return snap_err_set(err, SNAP_EINVAL, "mongodb msg_expire: ids is NULL");

    /* Batches keep each command far below the 16 MB limit. A failure part
     * way leaves earlier batches applied, which is fine: the update is
     * idempotent and the caller may retry the whole call. */
    rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc != SNAP_OK) return rc;
    for (size_t off = 0; off < n && rc == SNAP_OK; off += MONGO_EXPIRE_BATCH) {
        size_t k = n - off < MONGO_EXPIRE_BATCH ? n - off : MONGO_EXPIRE_BATCH;
        rc = expire_batch(&l, ids + off, k, at_ms, err);
    }
    lease_end(s, &l);
    return rc;
}

static int mongo_msg_max_id(void *state, int64_t *out, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t filter, opts, sort, proj, doc;
    bool ok = true;
    int rc;

    *out = 0;
    bson_init(&filter);
    bson_init(&opts);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
    ok = ok && BSON_APPEND_INT32(&sort, "_id", -1);
    ok = ok && bson_append_document_end(&opts, &sort);
    ok = ok && BSON_APPEND_INT64(&opts, "limit", 1);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    ok = ok && BSON_APPEND_INT32(&proj, "_id", 1);
    ok = ok && bson_append_document_end(&opts, &proj);
    if (!ok) {
        bson_destroy(&opts);
        bson_destroy(&filter);
        return fail_build(err, "msg_max_id");
    }

    bson_init(&doc);
    rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        bson_destroy(&doc);
        rc = find_first(&l, &filter, &opts, &doc, "find messages max id", err);
        lease_end(s, &l);
    }
    bson_destroy(&opts);
    bson_destroy(&filter);

    if (rc == SNAP_ENOTFOUND) {
        snap_err_clear(err);
        rc = SNAP_OK; /* an empty collection: 0 */
    } else if (rc == SNAP_OK && !get_id(&doc, out)) {
        *out = 0;
        rc = snap_err_set(err, SNAP_ERR, "mongodb msg_max_id: highest _id is not an integer");
    }
    bson_destroy(&doc);
    return rc;
}

/* ---- users ------------------------------------------------------------------ */

static int mongo_user_put(void *state, const struct cold_user *u, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t doc;
    bson_error_t e;
    bool ok = true;
    int rc = SNAP_OK;

    if (!u || !str_ok(u->username, SNAP_USERNAME_MAX) || !str_ok(u->password_hash, COLD_HASH_MAX) ||
        !str_ok(u->role, COLD_ROLE_MAX))
        return snap_err_set(err, SNAP_EINVAL, "mongodb user_put: invalid user");

    bson_init(&doc);
    ok = ok && BSON_APPEND_UTF8(&doc, "_id", u->username);
    ok = ok && BSON_APPEND_UTF8(&doc, "username", u->username);
    ok = ok && BSON_APPEND_UTF8(&doc, "password_hash", u->password_hash);
    ok = ok && BSON_APPEND_UTF8(&doc, "role", u->role);
    ok = ok && BSON_APPEND_DATE_TIME(&doc, "created_at", u->created_ms);
    if (!ok) {
        bson_destroy(&doc);
        return fail_build(err, "user_put");
    }

    rc = lease_begin(s, MONGO_COLL_USERS, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_collection_insert_one(l.coll, &doc, NULL, NULL, &e))
            rc = fail(err, &e, "insert users");
        lease_end(s, &l);
    }
    bson_destroy(&doc);
    return rc;
}

static int mongo_user_get(void *state, const char *username, struct cold_user *out,
                          struct snap_err *err)
{
    struct mongo_store *s = state;
    bson_t filter, doc;
    int rc;

    memset(out, 0, sizeof *out);
    if (!str_ok(username, SNAP_USERNAME_MAX))
        return snap_err_set(err, SNAP_EINVAL, "mongodb user_get: invalid username");

    bson_init(&filter);
    if (!BSON_APPEND_UTF8(&filter, "username", username)) {
        bson_destroy(&filter);
        return fail_build(err, "user_get");
    }
    rc = find_one(s, MONGO_COLL_USERS, &filter, &doc, "find users", err);
    bson_destroy(&filter);

    if (rc == SNAP_OK) {
        const char *bad = NULL;
        if (!get_str(&doc, "username", out->username, sizeof out->username))
            bad = "username";
        else if (!get_str(&doc, "password_hash", out->password_hash, sizeof out->password_hash))
            bad = "password_hash";
        else if (!get_str(&doc, "role", out->role, sizeof out->role))
            bad = "role";
        else if (!get_date(&doc, "created_at", &out->created_ms))
            bad = "created_at";
        if (bad) {
            memset(out, 0, sizeof *out);
            rc = snap_err_set(err, SNAP_ERR, "mongodb user_get: user has a bad field %s", bad);
        }
    }
    bson_destroy(&doc);
    return rc;
}

static int mongo_user_set_role(void *state, const char *username, const char *role,
                               struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t filter, update, set, reply;
    bson_iter_t it;
    bson_error_t e;
    bool ok = true;
    int rc = SNAP_OK;

    if (!str_ok(username, SNAP_USERNAME_MAX) || !str_ok(role, COLD_ROLE_MAX))
        return snap_err_set(err, SNAP_EINVAL, "mongodb user_set_role: invalid argument");

    bson_init(&filter);
    bson_init(&update);
    ok = ok && BSON_APPEND_UTF8(&filter, "username", username);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    ok = ok && BSON_APPEND_UTF8(&set, "role", role);
    ok = ok && bson_append_document_end(&update, &set);
    if (!ok) {
        bson_destroy(&update);
        bson_destroy(&filter);
        return fail_build(err, "user_set_role");
    }

    rc = lease_begin(s, MONGO_COLL_USERS, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_collection_update_one(l.coll, &filter, &update, NULL, &reply, &e))
            rc = fail(err, &e, "update users");
        else if (bson_iter_init_find(&it, &reply, "matchedCount") && BSON_ITER_HOLDS_NUMBER(&it) &&
                 bson_iter_as_int64(&it) == 0)
            rc = snap_err_set(err, SNAP_ENOTFOUND, "mongodb user_set_role: no such user");
        /* No matchedCount at all: a url with w=0, nothing was confirmed. */
        bson_destroy(&reply);
        lease_end(s, &l);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

/* ---- the driver ------------------------------------------------------------- */

/* Placeholder until the driver implements the claim interface. */
static int mongo_todo(void)
{
    return SNAP_ERR;
}

const struct cold_ops cold_mongo_ops = {
    .name = "mongodb",
    .scheme = "mongodb://",
    .open = mongo_open,
    .close = mongo_close,
    .ensure_schema = mongo_ensure_schema,
    .ping = mongo_ping,
    .msg_put_many = mongo_msg_put_many,
    .msg_get = mongo_msg_get,
    .msg_claim = (void *)mongo_todo,
    .msg_claimed = (void *)mongo_todo,
    .msg_close = (void *)mongo_todo,
    .msg_find_idem = (void *)mongo_todo,
    .msg_release_idem = (void *)mongo_todo,
    .msg_scan_open = (void *)mongo_todo,
    .msg_max_id = mongo_msg_max_id,
    .user_put = mongo_user_put,
    .user_get = mongo_user_get,
    .user_set_role = mongo_user_set_role,
};
