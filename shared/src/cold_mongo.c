/* cold_mongo.c: the MongoDB driver of the cold store (cold_store.h), picked
 * by cold_open() for mongodb:// urls (its open also takes mongodb+srv://,
 * should cold_store.c ever route that scheme here). With its private half
 * cold_mongo_doc.c (the message document, both ways) it is the whole
 * driver; it is the only file that includes mongoc.h, and it exports
 * nothing but cold_mongo_ops. This file is the operations: the pool, the
 * commands and their replies.
 *
 * Layout in the url's database (default "snaptext"), docs/MONGODB.md:
 *   messages  {_id: int64 id, username, from: string|null, text,
 *              created_at: date, expires_at: date, state: int32,
 *              closed_at: date, claim: string, claim_op: ObjectId,
 *              idem: string} (closed_at, claim, claim_op, idem absent
 *              until set)
 *             indexes username_1; idem_1 (unique, partial: idem exists);
 *             username_1_claim_1 (partial: claim exists);
 *             state_1_expires_at_1__id_1
 *   users     {_id: username, username, password_hash, role,
 *              created_at: date}                   unique index username_1
 * Users are keyed by their name as _id so that a second registration of a
 * name fails on the always-present _id index (code 11000), even before or
 * without username_1; username_1 (unique) serves the lookup by username.
 *
 * What each operation sends (on messages unless named):
 *   ensure_schema  createIndexes messages (the four above), then users
 *   msg_put_many   one insert, ordered: false; a duplicate _id is that
 *                  message's SNAP_ECONFLICT, a duplicate idem (idem_1) its
 *                  SNAP_EEXIST, and the others still go in
 *   msg_get        find {_id}, limit 1
 *   msg_claim      one update, ordered: false, one statement per claim:
 *                  {_id: {$in: ids}, username, state: 0, expires_at: {$gt:
 *                  now}} -> {$set: {state: 1, closed_at: now, claim:
 *                  token (if any), claim_op: a new ObjectId}}, multi;
 *                  then per claim find {_id: {$in: ids}, claim_op}, _id
 *                  only, by _id
 *   msg_claimed    find {username, claim: token, state: 1, closed_at:
 *                  {$gte: since}}, by _id
 *   msg_close      update {_id: {$in: ids}, state: 0, expires_at: {$gt:
 *                  at}} -> {$set: {state, closed_at: at}}, multi, at most
 *                  MONGO_IDS_PER_UPDATE ids each; nModified is *n_closed
 *   msg_find_idem  find {idem}, limit 1
 *   msg_release_idem  update {_id} -> {$unset: {idem: ""}}
 *   msg_scan_open  find {state: 0, expires_at: {$gt: now}, created_at:
 *                  {$gte: since}[, $or: past the cursor]}, sorted
 *                  {expires_at: 1, _id: 1}, limit max
 *   msg_max_id     find {}, sort {_id: -1}, limit 1, _id only
 *   users          insert / find {username} limit 1 / update $set role
 * The finds that decide a claim's outcome read from the primary, whatever
 * read preference the url sets.
 *
 * Connections: one mongoc_client_pool_t per store; every operation pops a
 * client, runs, and pushes it back, so worker threads never share a client.
 * Defaults added when the url does not set them (docs/MONGODB.md):
 * serverSelectionTimeoutMS=1500, connectTimeoutMS=1000, socketTimeoutMS=2000
 * (a dead server is SNAP_EUNAVAIL in about 2 s, never a hang), and the write
 * concern {w: "majority", j: true} for every write (an rcs[i] of 0 from
 * msg_put_many, or a claim's SNAP_OK, means majority-acknowledged and
 * journaled); the url's w / journal win. A write concern error or a failed
 * command fails every message or claim that has no write error of its own.
 *
 * Every value sent is typed BSON built from validated C fields; no request
 * text is ever parsed as JSON, BSON or a query. Driver error text goes only
 * into err->msg (for the log), and libmongoc's own log lines go to log.h.
 * Not here: the document mapping (cold_mongo_doc.c), choosing the driver
 * (cold_store.c), the SQLite twin (cold_sqlite.c), Redis (hot_store.h). */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#include "snap/cold_store.h"
#include "snap/err.h"
#include "snap/log.h"
#include "cold_mongo_doc.h"

#define MONGO_DEFAULT_DB     "snaptext"
#define MONGO_DB_NAME_MAX    63 /* MongoDB's own limit is 64 bytes */
#define MONGO_COLL_MESSAGES  "messages"
#define MONGO_COLL_USERS     "users"
#define MONGO_INDEX_USERNAME "username_1"
#define MONGO_IDS_PER_UPDATE 1000 /* ids per close statement, far below 16 MB */
#define MONGO_INDEX_IDEM     "idem_1"

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
    mongoc_read_prefs_t *primary;   /* owned; for the finds of a claim   */
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

/* Debian's libmongoc initialises itself before main() (its automatic init)
 * and creates /dev/shm/mongoc-<pid> for its performance counters, removed
 * only by a clean exit. A SIGKILLed process would leave the file behind, and
 * a later process that draws the same pid would print "Falling back to malloc
 * for counters" on stderr, outside the JSON log. Nothing here reads those
 * counters, so the name is unlinked as soon as libmongoc has made it: an
 * executable's constructors run after those of the libraries it links, and
 * every program that links this driver gets this one. The mapping stays
 * valid; libmongoc's own unlink at exit then finds nothing, which it ignores.
 * (Setting MONGOC_DISABLE_SHM from inside the process is too late or, from
 * .preinit_array, undone by libc's own start-up.) */
__attribute__((constructor)) static void mongo_counters_unlink(void)
{
    char name[32];

    snprintf(name, sizeof name, "/mongoc-%u", (unsigned)getpid());
    (void)shm_unlink(name);
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
/* Runs one update on l->coll (of every match when many, else of the
 * first) and reads the count named count ("modifiedCount", "matchedCount")
 * of its reply into *n: -1 when the reply has none, as with a url with
 * w=0, where nothing was confirmed. */
static int update_counted(struct lease *l, const bson_t *filter, const bson_t *update, bool many,
                          const char *count, int64_t *n, const char *what, struct snap_err *err)
{
    bson_t reply;
    bson_iter_t it;
    bson_error_t e;
    bool done = many ? mongoc_collection_update_many(l->coll, filter, update, NULL, &reply, &e)
                     : mongoc_collection_update_one(l->coll, filter, update, NULL, &reply, &e);
    int rc = done ? SNAP_OK : fail(err, &e, what);

    *n = -1;
    if (done && bson_iter_init_find(&it, &reply, count) && BSON_ITER_HOLDS_NUMBER(&it))
        *n = bson_iter_as_int64(&it);
    bson_destroy(&reply); /* initialised by the driver on every return */
    return rc;
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
    if (s->primary) mongoc_read_prefs_destroy(s->primary);
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
    if (strncmp(url, "mongodb://", 10) != 0 && strncmp(url, "mongodb+srv://", 14) != 0)
        return snap_err_set(err, SNAP_EINVAL, "mongodb: url must start with mongodb://");

    (void)pthread_once(&mongo_once, mongo_init_once);

    s = calloc(1, sizeof *s);
    if (!s) return snap_err_set(err, SNAP_ERR, "mongodb: out of memory");
    s->primary = mongoc_read_prefs_new(MONGOC_READ_PRIMARY);

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

/* One index of ensure_schema. keys are ascending; partial names a field
 * the index covers only where it exists (partialFilterExpression). */
struct index_spec {
    const char *coll;
    const char *name;
    const char *keys[3]; /* NULL-terminated when shorter */
    bool unique;
    const char *partial; /* NULL: the whole collection */
};

/* Grouped by collection: one createIndexes per run of the same coll. */
static const struct index_spec index_specs[] = {
    {MONGO_COLL_MESSAGES, MONGO_INDEX_USERNAME, {MDOC_USER}, false, NULL},
    {MONGO_COLL_MESSAGES, MONGO_INDEX_IDEM, {MDOC_IDEM}, true, MDOC_IDEM},
    {MONGO_COLL_MESSAGES, "username_1_claim_1", {MDOC_USER, MDOC_CLAIM}, false, MDOC_CLAIM},
    {MONGO_COLL_MESSAGES, "state_1_expires_at_1__id_1", {MDOC_STATE, MDOC_EXPIRES, MDOC_ID},
     false, NULL},
    {MONGO_COLL_USERS, MONGO_INDEX_USERNAME, {"username"}, true, NULL},
};
#define N_INDEX_SPECS (sizeof index_specs / sizeof index_specs[0])

/* Appends {key: {...}, name[, unique: true][, partialFilterExpression:
 * {field: {$exists: true}}]} to indexes under array key k. */
static bool append_index(bson_t *indexes, const char *k, const struct index_spec *x)
{
    bson_t idx, key, pfe, cond;
    bool ok = true;

    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(indexes, k, &idx);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
    for (size_t i = 0; ok && i < sizeof x->keys / sizeof x->keys[0] && x->keys[i]; i++)
        ok = BSON_APPEND_INT32(&key, x->keys[i], 1);
    ok = ok && bson_append_document_end(&idx, &key);
    ok = ok && BSON_APPEND_UTF8(&idx, "name", x->name);
    if (x->unique) ok = ok && BSON_APPEND_BOOL(&idx, "unique", true);
    if (x->partial) {
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&idx, "partialFilterExpression", &pfe);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&pfe, x->partial, &cond);
        ok = ok && BSON_APPEND_BOOL(&cond, "$exists", true);
        ok = ok && bson_append_document_end(&pfe, &cond);
        ok = ok && bson_append_document_end(&idx, &pfe);
    }
    ok = ok && bson_append_document_end(indexes, &idx);
    return ok;
}

/* {createIndexes: coll, indexes: [specs[0..n)]}. Creating an index that
 * already exists with the same spec is a no-op on the server, so this is
 * safe at every start. */
static int create_indexes(struct mongo_store *s, struct lease *l, const struct index_spec *specs,
                          size_t n, struct snap_err *err)
{
    bson_t cmd, indexes, reply;
    bson_error_t e;
    bool ok = true;
    int rc = SNAP_OK;

    bson_init(&cmd);
    ok = ok && BSON_APPEND_UTF8(&cmd, "createIndexes", specs[0].coll);
    ok = ok && BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &indexes);
    for (size_t i = 0; ok && i < n; i++) {
        char keybuf[16];
        const char *k;
        (void)bson_uint32_to_string((uint32_t)i, &k, keybuf, sizeof keybuf);
        ok = append_index(&indexes, k, &specs[i]);
    }
    ok = ok && bson_append_array_end(&cmd, &indexes);
    if (!ok) {
        bson_destroy(&cmd);
        return fail_build(err, "createIndexes");
    }

    if (!mongoc_client_write_command_with_opts(l->client, s->db, &cmd, NULL, &reply, &e)) {
        if (e.domain == MONGOC_ERROR_SERVER &&
            (e.code == MONGO_INDEX_OPTIONS_CONFLICT || e.code == MONGO_INDEX_KEY_SPECS_CONFLICT))
            /* An operator made one of these names with another spec:
             * starting anyway could lose a uniqueness we rely on, so say
             * exactly what to fix (the server's text names the index). */
            rc = snap_err_set(err, SNAP_ERR,
                              "mongodb: an index of %s exists with another spec, drop it: %s",
                              specs[0].coll, e.message);
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
    size_t at = 0;
    int rc;

    rc = lease_begin(s, NULL, &l, err);
    while (rc == SNAP_OK && at < N_INDEX_SPECS) {
        size_t run = 1;
        while (at + run < N_INDEX_SPECS &&
               strcmp(index_specs[at + run].coll, index_specs[at].coll) == 0)
            run++;
        rc = create_indexes(s, &l, &index_specs[at], run, err);
        at += run;
    }
    if (l.client) lease_end(s, &l); /* lease_begin() failed: nothing to return */
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

/* ---- messages: replies ------------------------------------------------------ */

/* A duplicate key on idem_1 is SNAP_EEXIST, on _id SNAP_ECONFLICT. */
static bool is_conflict(int rc)
{
    return rc == SNAP_ECONFLICT || rc == SNAP_EEXIST;
}

/* Keeps in *sum the outcome a batch returns, as its outcomes are filled:
 * the failure that is not a conflict at the lowest index, else the
 * conflict at the lowest index (cold_store.h). one is entry i's outcome,
 * never SNAP_OK; sum->code is SNAP_OK until the first call. */
static void keep_first(struct snap_err *sum, size_t *sum_at, size_t i, const struct snap_err *one)
{
    bool take;

    if (sum->code == SNAP_OK)
        take = true;
    else if (is_conflict(sum->code) != is_conflict(one->code))
        take = is_conflict(sum->code);
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

/* 1 when the sub-document under it (keyPattern or keyValue of a write
 * error) names the idem field, 0 when it names others, -1 when it is not a
 * document. */
static int names_idem(const bson_iter_t *it)
{
    bson_iter_t sub;

    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) return -1;
    return bson_iter_find(&sub, MDOC_IDEM) ? 1 : 0;
}

/* Marks in rcs[] (all SNAP_OK on entry) the entries that have a write error
 * in reply: {index, code, errmsg[, keyPattern, keyValue]} gives entry index
 * the status status_of() gives the same server error, except that a
 * duplicate key on idem_1 is SNAP_EEXIST: keyPattern / keyValue name the
 * index's field (servers 4.4+), else errmsg names the index. Returns how
 * many it marked, or -1 when an entry has no code or names an index outside
 * the batch or twice: such a reply says nothing reliable about any entry.
 * what names the command in the messages. */
static long mark_write_errors(const bson_t *reply, size_t n, int *rcs, struct snap_err *sum,
                              size_t *sum_at, const char *what)
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
        int idem = -1; /* -1: neither keyPattern nor keyValue said */

        memset(&e, 0, sizeof e);
        if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &doc)) return -1;
        while (bson_iter_next(&doc)) {
            if (BSON_ITER_IS_KEY(&doc, "index") && BSON_ITER_HOLDS_NUMBER(&doc))
                index = bson_iter_as_int64(&doc);
            else if (BSON_ITER_IS_KEY(&doc, "code") && BSON_ITER_HOLDS_NUMBER(&doc))
                e.code = (uint32_t)bson_iter_as_int64(&doc);
            else if (BSON_ITER_IS_KEY(&doc, "errmsg") && BSON_ITER_HOLDS_UTF8(&doc))
                msg = bson_iter_utf8(&doc, NULL);
            else if ((BSON_ITER_IS_KEY(&doc, "keyPattern") || BSON_ITER_IS_KEY(&doc, "keyValue")) &&
                     idem != 1)
                idem = names_idem(&doc);
        }
        if (index < 0 || (uint64_t)index >= n || rcs[index] != SNAP_OK || e.code == 0) return -1;
        e.domain = MONGOC_ERROR_SERVER; /* where error api 2 puts a write error */
        rcs[index] = status_of(&e);
        if (rcs[index] == SNAP_ECONFLICT &&
            (idem == 1 || (idem == -1 && strstr(msg, "index: " MONGO_INDEX_IDEM " ") != NULL)))
            rcs[index] = SNAP_EEXIST;
        (void)snap_err_set(&one, rcs[index], "mongodb %s: [%u/%u] entry %lld: %s", what,
                           (unsigned)e.domain, (unsigned)e.code, (long long)index, msg);
        keep_first(sum, sum_at, (size_t)index, &one);
        marked++;
    }
    return marked;
}

/* Fills rcs[0..n) after a batch write (an insert of n documents, or an
 * update of n statements) failed with e and reply, and returns the status
 * of the call with err to match. An entry with a write error gets its own
 * status. The others count as applied only when the reply says so: no
 * write concern error, and (for an insert, count_key "insertedCount") the
 * count equal to the entries without a write error (libmongoc sends a
 * batch past the server's limits as several commands, and one of them may
 * fail outright; pass NULL when no count can tell). Otherwise they get the
 * failure of the batch (a conflict there cannot be one entry's:
 * SNAP_EUNAVAIL). */
static int batch_failure(const bson_t *reply, const bson_error_t *e, size_t n, int *rcs,
                         const char *count_key, const char *what, struct snap_err *err)
{
    struct snap_err sum, batch;
    size_t sum_at = 0;
    bson_iter_t it;
    int64_t count = -1;
    uint32_t code;
    const char *msg;
    long marked;

    snap_err_clear(&sum);
    snap_err_clear(&batch);
    for (size_t i = 0; i < n; i++) rcs[i] = SNAP_OK;
    marked = mark_write_errors(reply, n, rcs, &sum, &sum_at, what);
    if (count_key && bson_iter_init_find(&it, reply, count_key) && BSON_ITER_HOLDS_NUMBER(&it))
        count = bson_iter_as_int64(&it);

    if (marked < 0) {
        snap_err_clear(&sum);
        for (size_t i = 0; i < n; i++) rcs[i] = SNAP_OK;
        (void)snap_err_set(&batch, SNAP_EUNAVAIL, "mongodb %s: malformed writeErrors in the reply",
                           what);
    } else if (first_error(reply, "writeConcernErrors", &code, &msg)) {
        (void)snap_err_set(&batch, SNAP_EUNAVAIL, "mongodb %s: [%u/%u] %s", what,
                           (unsigned)MONGOC_ERROR_WRITE_CONCERN, (unsigned)code, msg);
    } else if (marked == 0) {
        /* Neither kind of error in the reply: the network, the server or
         * libmongoc refused the whole command. */
        if (fail(&batch, e, what) == SNAP_ECONFLICT) batch.code = SNAP_EUNAVAIL;
    } else if (count_key && count != (int64_t)n - marked) {
        (void)snap_err_set(&batch, SNAP_EUNAVAIL,
                           "mongodb %s: %lld of %zu writes confirmed, %ld refused", what,
                           (long long)count, n, marked);
    }

    for (size_t i = 0; batch.code != SNAP_OK && i < n; i++) {
        if (rcs[i] != SNAP_OK) continue;
        rcs[i] = batch.code;
        keep_first(&sum, &sum_at, i, &batch);
    }
    /* sum is set: every branch above marks at least one entry. */
    return snap_err_set(err, sum.code, "%s", sum.msg);
}

/* ---- messages: insert and lookups ------------------------------------------- */

/* One unordered insert for the whole batch, with the write concern of the
 * url: the server tries every document, so one taken id or idem does not
 * stop the others. rcs[i] is set on every return. */
static int mongo_msg_put_many(void *state, const struct cold_msg *msgs, size_t n, int *rcs,
                              struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t **docs = NULL;
    bson_t opts, reply;
    bson_error_t e;
    size_t built = 0;
    bool filled = false;
    int rc = SNAP_OK;

    bson_init(&opts);
    /* bson_new() per document: an array of bson_t would break the 128-byte
     * alignment libbson declares for it. */
    docs = calloc(n, sizeof *docs);
    if (!docs) rc = snap_err_set(err, SNAP_ERR, "mongodb msg_put_many: out of memory");
    for (; rc == SNAP_OK && built < n; built++) {
        docs[built] = bson_new();
        rc = mongo_doc_of_msg(&msgs[built], docs[built]);
        if (rc == SNAP_EINVAL)
            (void)snap_err_set(err, rc, "mongodb msg_put_many: message %zu: text or idem is not "
                                        "UTF-8 or too long", built);
        else if (rc != SNAP_OK)
            (void)fail_build(err, "msg_put_many");
    }
    if (rc == SNAP_OK && !BSON_APPEND_BOOL(&opts, "ordered", false))
        rc = fail_build(err, "msg_put_many");
    if (rc == SNAP_OK) rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        /* No writeConcern in opts: the collection's, from the url, applies
         * (see default_write_concern). */
        if (!mongoc_collection_insert_many(l.coll, (const bson_t **)docs, n, &opts, &reply, &e)) {
            rc = batch_failure(&reply, &e, n, rcs, "insertedCount", "insert messages", err);
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

/* Decodes a stored message doc into *out (zeroed) for the call what. */
static int read_msg(const bson_t *doc, struct cold_msg *out, const char *what,
                    struct snap_err *err)
{
    const char *bad = NULL;
    int64_t id = 0;

    if (mongo_doc_to_msg(doc, out, &bad) == SNAP_OK) return SNAP_OK;
    if (!bad) return snap_err_set(err, SNAP_ERR, "mongodb %s: out of memory", what);
    (void)mongo_doc_id(doc, &id);
    return snap_err_set(err, SNAP_ERR, "mongodb %s: message %lld has a bad field %s", what,
                        (long long)id, bad);
}

/* Finds the one message matching filter (limit 1) into *out. */
static int find_msg(struct mongo_store *s, const bson_t *filter, struct cold_msg *out,
                    const char *what, struct snap_err *err)
{
    bson_t doc;
    int rc = find_one(s, MONGO_COLL_MESSAGES, filter, &doc, "find messages", err);

    if (rc == SNAP_OK) rc = read_msg(&doc, out, what, err);
    bson_destroy(&doc);
    return rc;
}

static int mongo_msg_get(void *state, int64_t id, struct cold_msg *out, struct snap_err *err)
{
    bson_t filter;
    int rc;

    bson_init(&filter);
    rc = BSON_APPEND_INT64(&filter, MDOC_ID, id) ? find_msg(state, &filter, out, "msg_get", err)
                                                 : fail_build(err, "msg_get");
    bson_destroy(&filter);
    return rc;
}

static int mongo_msg_find_idem(void *state, const char *idem, struct cold_msg *out,
                               struct snap_err *err)
{
    bson_t filter;
    int rc;

    bson_init(&filter);
    rc = BSON_APPEND_UTF8(&filter, MDOC_IDEM, idem)
             ? find_msg(state, &filter, out, "msg_find_idem", err)
             : fail_build(err, "msg_find_idem");
    bson_destroy(&filter);
    return rc;
}

/* Every message of find(filter, opts) on l->coll, in the server's order,
 * appended to *out (empty on entry; the caller frees it on every return). */
static int find_list(struct lease *l, const bson_t *filter, const bson_t *opts,
                     const mongoc_read_prefs_t *prefs, struct cold_msg_list *out,
                     const char *what, struct snap_err *err)
{
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(l->coll, filter, opts, prefs);
    const bson_t *doc = NULL;
    bson_error_t e;
    size_t cap = 0;
    int rc = SNAP_OK;

    while (rc == SNAP_OK && mongoc_cursor_next(cur, &doc)) {
        if (out->len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct cold_msg *grown = realloc(out->items, ncap * sizeof *grown);
            if (!grown) {
                rc = snap_err_set(err, SNAP_ERR, "mongodb %s: out of memory", what);
                break;
            }
            out->items = grown;
            cap = ncap;
        }
        memset(&out->items[out->len], 0, sizeof out->items[out->len]);
        rc = read_msg(doc, &out->items[out->len], what, err);
        if (rc == SNAP_OK) out->len++;
    }
    if (rc == SNAP_OK && mongoc_cursor_error(cur, &e)) rc = fail(err, &e, "find messages");
    mongoc_cursor_destroy(cur);
    return rc;
}

/* find_list() on a leased client; on failure cold_store.c empties *out. */
static int find_msgs(struct mongo_store *s, const bson_t *filter, const bson_t *opts,
                     const mongoc_read_prefs_t *prefs, struct cold_msg_list *out,
                     const char *what, struct snap_err *err)
{
    struct lease l;
    int rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);

    if (rc == SNAP_OK) {
        rc = find_list(&l, filter, opts, prefs, out, what, err);
        lease_end(s, &l);
    }
    return rc;
}

/* opts {sort: {k1: 1[, k2: 1]}[, limit: int64][, projection: {_id: 1}]};
 * k2 NULL for one key, limit 0 for none. */
static bool find_opts(bson_t *opts, const char *k1, const char *k2, int64_t limit, bool ids_only)
{
    bson_t sort, proj;
    bool ok = true;

    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(opts, "sort", &sort);
    ok = ok && BSON_APPEND_INT32(&sort, k1, 1);
    if (k2) ok = ok && BSON_APPEND_INT32(&sort, k2, 1);
    ok = ok && bson_append_document_end(opts, &sort);
    if (limit > 0) ok = ok && BSON_APPEND_INT64(opts, "limit", limit);
    if (ids_only) {
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(opts, "projection", &proj);
        ok = ok && BSON_APPEND_INT32(&proj, MDOC_ID, 1);
        ok = ok && bson_append_document_end(opts, &proj);
    }
    return ok;
}

/* ---- messages: the claim and the other state changes ------------------------ */

/* {_id: {$in: ids}, username, state: 0, expires_at: {$gt: now}} and
 * {$set: {state: 1, closed_at: now, claim: token, claim_op: op}}: the one
 * conditional write that decides who reads a message (no claim field when
 * the claim has no token: the document stays out of username_1_claim_1).
 * op is new for every claim of every call, so that what this claim won can
 * be told apart from what an earlier claim with the same token won. */
static bool claim_statement(const struct cold_claim *c, int64_t now_ms, const bson_oid_t *op,
                            bson_t *q, bson_t *u)
{
    bson_t gt, set;
    bool ok = true;

    ok = ok && mongo_doc_append_in(q, MDOC_ID, c->ids, c->n);
    ok = ok && BSON_APPEND_UTF8(q, MDOC_USER, c->username);
    ok = ok && BSON_APPEND_INT32(q, MDOC_STATE, COLD_OPEN);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(q, MDOC_EXPIRES, &gt);
    ok = ok && BSON_APPEND_DATE_TIME(&gt, "$gt", now_ms);
    ok = ok && bson_append_document_end(q, &gt);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(u, "$set", &set);
    ok = ok && BSON_APPEND_INT32(&set, MDOC_STATE, COLD_READ);
    ok = ok && BSON_APPEND_DATE_TIME(&set, MDOC_CLOSED, now_ms);
    if (c->token != NULL) ok = ok && BSON_APPEND_UTF8(&set, MDOC_CLAIM, c->token);
    ok = ok && BSON_APPEND_OID(&set, MDOC_CLAIM_OP, op);
    ok = ok && bson_append_document_end(u, &set);
    return ok;
}

/* What claim c won: find {_id: {$in: ids}, claim_op: op}, _id only,
 * sorted by _id, from the primary. Bounded by c->n. */
static int claim_outcome(struct mongo_store *s, struct lease *l, struct cold_claim *c,
                         const bson_oid_t *op, struct snap_err *err)
{
    bson_t filter, opts;
    bson_error_t e;
    const bson_t *doc;
    mongoc_cursor_t *cur;
    int rc = SNAP_OK;
    bool ok = true;

    bson_init(&filter);
    bson_init(&opts);
    ok = ok && mongo_doc_append_in(&filter, MDOC_ID, c->ids, c->n);
    ok = ok && BSON_APPEND_OID(&filter, MDOC_CLAIM_OP, op);
    ok = ok && find_opts(&opts, MDOC_ID, NULL, 0, true);
    if (!ok) {
        bson_destroy(&opts);
        bson_destroy(&filter);
        return fail_build(err, "msg_claim");
    }
    cur = mongoc_collection_find_with_opts(l->coll, &filter, &opts, s->primary);
    while (rc == SNAP_OK && mongoc_cursor_next(cur, &doc)) {
        int64_t id;
        if (!mongo_doc_id(doc, &id))
            rc = snap_err_set(err, SNAP_ERR, "mongodb msg_claim: a won _id is not an integer");
        else if (c->n_claimed == c->n) /* a server that ignores the filter */
            rc = snap_err_set(err, SNAP_ERR, "mongodb msg_claim: more won than offered");
        else
            c->claimed[c->n_claimed++] = id;
    }
    if (rc == SNAP_OK && mongoc_cursor_error(cur, &e)) rc = fail(err, &e, "find messages");
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    bson_destroy(&filter);
    if (rc != SNAP_OK) c->n_claimed = 0; /* a failed claim won nothing */
    return rc;
}

/* All claims as the statements of one unordered update (majority, from the
 * url), then one find per claim that the update did not fail. A claim's
 * rc is its own: a write error fails only its statement; a write concern
 * error, a failed command or a lost reply fails every claim without one
 * (they may have been applied: their messages then stay READ under their
 * token, which cold_msg_claimed() finds). A claim of no ids sends nothing. */
static int mongo_msg_claim(void *state, struct cold_claim *claims, size_t n, int64_t now_ms,
                           struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    mongoc_bulk_operation_t *bulk = NULL;
    struct snap_err first, one;
    size_t first_at = SIZE_MAX, nstmt = 0;
    size_t *claim_of = NULL; /* statement -> claim */
    bson_oid_t *ops = NULL;  /* statement -> its claim_op */
    int *rcs = NULL;
    bson_t opts, reply;
    bson_error_t e;
    int rc;

    snap_err_clear(&first);
    claim_of = calloc(n, sizeof *claim_of);
    rcs = calloc(n, sizeof *rcs);
    ops = calloc(n, sizeof *ops);
    if (!claim_of || !rcs || !ops) {
        free(claim_of);
        free(rcs);
        free(ops);
        return snap_err_set(err, SNAP_ERR, "mongodb msg_claim: out of memory");
    }
    rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc != SNAP_OK) {
        for (size_t i = 0; i < n; i++) claims[i].rc = rc;
        free(claim_of);
        free(rcs);
        free(ops);
        return rc;
    }

    bson_init(&opts);
    if (!BSON_APPEND_BOOL(&opts, "ordered", false)) rc = fail_build(err, "msg_claim");
    if (rc == SNAP_OK) bulk = mongoc_collection_create_bulk_operation_with_opts(l.coll, &opts);
    for (size_t i = 0; rc == SNAP_OK && i < n; i++) {
        bson_t q, u;
        if (claims[i].n == 0) continue;
        bson_init(&q);
        bson_init(&u);
        bson_oid_init(&ops[nstmt], NULL); /* unique across processes */
        if (!claim_statement(&claims[i], now_ms, &ops[nstmt], &q, &u))
            rc = fail_build(err, "msg_claim");
        else if (!mongoc_bulk_operation_update_many_with_opts(bulk, &q, &u, NULL, &e))
            rc = fail(err, &e, "msg_claim");
        else
            claim_of[nstmt++] = i;
        bson_destroy(&u);
        bson_destroy(&q);
    }
    if (rc != SNAP_OK) {
        /* Nothing was sent: the same failure for every claim. */
        for (size_t i = 0; i < n; i++) claims[i].rc = rc;
        nstmt = 0;
    } else if (nstmt > 0 && !mongoc_bulk_operation_execute(bulk, &reply, &e)) {
        (void)batch_failure(&reply, &e, nstmt, rcs, NULL, "update messages", &one);
        for (size_t k = 0; k < nstmt; k++) {
            claims[claim_of[k]].rc = rcs[k];
            if (rcs[k] != SNAP_OK && first_at == SIZE_MAX) {
                first = one; /* the lowest failing statement's, as batch_failure keeps it */
                first_at = claim_of[k];
            }
        }
        bson_destroy(&reply);
    } else if (nstmt > 0) {
        bson_destroy(&reply);
    }

    for (size_t k = 0; k < nstmt; k++) {
        struct cold_claim *c = &claims[claim_of[k]];
        if (c->rc != SNAP_OK) continue;
        c->rc = claim_outcome(s, &l, c, &ops[k], &one);
        if (c->rc != SNAP_OK && claim_of[k] < first_at) {
            first = one;
            first_at = claim_of[k];
        }
    }
    if (bulk) mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&opts);
    lease_end(s, &l);
    free(claim_of);
    free(rcs);
    free(ops);
    if (rc != SNAP_OK) return rc;
    if (first_at == SIZE_MAX) return SNAP_OK;
    return snap_err_set(err, first.code, "%s", first.msg);
}

/* What token won in username's inbox, closed at since_ms or later. */
static int mongo_msg_claimed(void *state, const char *username, const char *token,
                             int64_t since_ms, struct cold_msg_list *out, struct snap_err *err)
{
    struct mongo_store *s = state;
    bson_t filter, opts, gte;
    bool ok = true;
    int rc;

    bson_init(&filter);
    bson_init(&opts);
    ok = ok && BSON_APPEND_UTF8(&filter, MDOC_USER, username);
    ok = ok && BSON_APPEND_UTF8(&filter, MDOC_CLAIM, token);
    ok = ok && BSON_APPEND_INT32(&filter, MDOC_STATE, COLD_READ);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&filter, MDOC_CLOSED, &gte);
    ok = ok && BSON_APPEND_DATE_TIME(&gte, "$gte", since_ms);
    ok = ok && bson_append_document_end(&filter, &gte);
    ok = ok && find_opts(&opts, MDOC_ID, NULL, 0, false);
    rc = ok ? find_msgs(s, &filter, &opts, s->primary, out, "msg_claimed", err)
            : fail_build(err, "msg_claimed");
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}

/* One update for ids[0..n): {_id: {$in}, state: 0, expires_at: {$gt: at}}
 * -> {$set: {state: to_state, closed_at: at}}, multi; adds its nModified
 * to *n_closed. */
static int close_batch(struct lease *l, const int64_t *ids, size_t n, int to_state,
                       int64_t at_ms, size_t *n_closed, struct snap_err *err)
{
    bson_t filter, update, gt, set;
    int64_t modified;
    bool ok = true;
    int rc = SNAP_OK;

    bson_init(&filter);
    bson_init(&update);
    ok = ok && mongo_doc_append_in(&filter, MDOC_ID, ids, n);
    ok = ok && BSON_APPEND_INT32(&filter, MDOC_STATE, COLD_OPEN);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&filter, MDOC_EXPIRES, &gt);
    ok = ok && BSON_APPEND_DATE_TIME(&gt, "$gt", at_ms);
    ok = ok && bson_append_document_end(&filter, &gt);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
    ok = ok && BSON_APPEND_INT32(&set, MDOC_STATE, to_state);
    ok = ok && BSON_APPEND_DATE_TIME(&set, MDOC_CLOSED, at_ms);
    ok = ok && bson_append_document_end(&update, &set);

    if (!ok) {
        rc = fail_build(err, "msg_close");
    } else {
        rc = update_counted(l, &filter, &update, true, "modifiedCount", &modified,
                            "update messages", err);
        if (rc == SNAP_OK && modified >= 0) *n_closed += (size_t)modified;
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

static int mongo_msg_close(void *state, const int64_t *ids, size_t n, int to_state,
                           int64_t at_ms, size_t *n_closed, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    int rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);

    /* Batches keep each command far below the 16 MB limit. A failure part
     * way leaves earlier batches applied, which is fine: the update only
     * ever ends an open message, and the caller may repeat the whole call. */
    for (size_t off = 0; rc == SNAP_OK && off < n; off += MONGO_IDS_PER_UPDATE) {
        size_t k = n - off < MONGO_IDS_PER_UPDATE ? n - off : MONGO_IDS_PER_UPDATE;
        rc = close_batch(&l, ids + off, k, to_state, at_ms, n_closed, err);
    }
    lease_end(s, &l);
    return rc;
}

/* {_id: id} -> {$unset: {idem: ""}}: the key may be taken again. */
static int mongo_msg_release_idem(void *state, int64_t id, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t filter, update, unset;
    bson_error_t e;
    bool ok = true;
    int rc = SNAP_OK;

    bson_init(&filter);
    bson_init(&update);
    ok = ok && BSON_APPEND_INT64(&filter, MDOC_ID, id);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
    ok = ok && BSON_APPEND_UTF8(&unset, MDOC_IDEM, "");
    ok = ok && bson_append_document_end(&update, &unset);
    if (!ok) rc = fail_build(err, "msg_release_idem");
    if (rc == SNAP_OK) rc = lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_collection_update_one(l.coll, &filter, &update, NULL, NULL, &e))
            rc = fail(err, &e, "update messages");
        lease_end(s, &l);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

/* {state: 0, expires_at: {$gt: now}, created_at: {$gte: since}} and, past
 * the first page, $or: [{expires_at: {$gt: after_exp}}, {expires_at:
 * after_exp, _id: {$gt: after_id}}]; sorted {expires_at: 1, _id: 1} (the
 * index state_1_expires_at_1__id_1), limit max. */
static int mongo_msg_scan_open(void *state, int64_t since_ms, int64_t now_ms, int64_t after_exp,
                               int64_t after_id, size_t max, struct cold_msg_list *out,
                               struct snap_err *err)
{
    struct mongo_store *s = state;
    bson_t filter, opts, c1, c2, alts, alt1, alt2, c3, c4;
    bool ok = true;
    int rc;

    bson_init(&filter);
    bson_init(&opts);
    ok = ok && BSON_APPEND_INT32(&filter, MDOC_STATE, COLD_OPEN);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&filter, MDOC_EXPIRES, &c1);
    ok = ok && BSON_APPEND_DATE_TIME(&c1, "$gt", now_ms);
    ok = ok && bson_append_document_end(&filter, &c1);
    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&filter, MDOC_CREATED, &c2);
    ok = ok && BSON_APPEND_DATE_TIME(&c2, "$gte", since_ms);
    ok = ok && bson_append_document_end(&filter, &c2);
    if (after_exp != 0 || after_id != 0) {
        ok = ok && BSON_APPEND_ARRAY_BEGIN(&filter, "$or", &alts);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&alts, "0", &alt1);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&alt1, MDOC_EXPIRES, &c3);
        ok = ok && BSON_APPEND_DATE_TIME(&c3, "$gt", after_exp);
        ok = ok && bson_append_document_end(&alt1, &c3);
        ok = ok && bson_append_document_end(&alts, &alt1);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&alts, "1", &alt2);
        ok = ok && BSON_APPEND_DATE_TIME(&alt2, MDOC_EXPIRES, after_exp);
        ok = ok && BSON_APPEND_DOCUMENT_BEGIN(&alt2, MDOC_ID, &c4);
        ok = ok && BSON_APPEND_INT64(&c4, "$gt", after_id);
        ok = ok && bson_append_document_end(&alt2, &c4);
        ok = ok && bson_append_document_end(&alts, &alt2);
        ok = ok && bson_append_array_end(&filter, &alts);
    }
    ok = ok && find_opts(&opts, MDOC_EXPIRES, MDOC_ID, (int64_t)max, false);
    rc = ok ? find_msgs(s, &filter, &opts, NULL, out, "msg_scan_open", err)
            : fail_build(err, "msg_scan_open");
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}

static int mongo_msg_max_id(void *state, int64_t *out, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t filter, opts, sort, proj, doc;
    bool ok = true;
    int rc;

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
    } else if (rc == SNAP_OK && !mongo_doc_id(&doc, out)) {
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

    bson_init(&filter);
    if (!BSON_APPEND_UTF8(&filter, "username", username)) {
        bson_destroy(&filter);
        return fail_build(err, "user_get");
    }
    rc = find_one(s, MONGO_COLL_USERS, &filter, &doc, "find users", err);
    bson_destroy(&filter);

    if (rc == SNAP_OK) {
        const char *bad = NULL;
        if (!mongo_doc_str(&doc, "username", out->username, sizeof out->username))
            bad = "username";
        else if (!mongo_doc_str(&doc, "password_hash", out->password_hash, sizeof out->password_hash))
            bad = "password_hash";
        else if (!mongo_doc_str(&doc, "role", out->role, sizeof out->role))
            bad = "role";
        else if (!mongo_doc_date(&doc, "created_at", &out->created_ms))
            bad = "created_at";
        if (bad) /* the half-filled *out is zeroed by cold_store.c */
            rc = snap_err_set(err, SNAP_ERR, "mongodb user_get: user has a bad field %s", bad);
    }
    bson_destroy(&doc);
    return rc;
}

static int mongo_user_set_role(void *state, const char *username, const char *role,
                               struct snap_err *err)
{
    struct mongo_store *s = state;
    struct lease l;
    bson_t filter, update, set;
    int64_t matched;
    bool ok = true;
    int rc = SNAP_OK;

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
        rc = update_counted(&l, &filter, &update, false, "matchedCount", &matched, "update users",
                            err);
        if (rc == SNAP_OK && matched == 0) /* -1, unconfirmed, is no answer either way */
            rc = snap_err_set(err, SNAP_ENOTFOUND, "mongodb user_set_role: no such user");
        lease_end(s, &l);
    }
    bson_destroy(&update);
    bson_destroy(&filter);
    return rc;
}

/* ---- the driver ------------------------------------------------------------- */

const struct cold_ops cold_mongo_ops = {
    .name = "mongodb",
    .scheme = "mongodb://",
    .open = mongo_open,
    .close = mongo_close,
    .ensure_schema = mongo_ensure_schema,
    .ping = mongo_ping,
    .msg_put_many = mongo_msg_put_many,
    .msg_get = mongo_msg_get,
    .msg_claim = mongo_msg_claim,
    .msg_claimed = mongo_msg_claimed,
    .msg_close = mongo_msg_close,
    .msg_find_idem = mongo_msg_find_idem,
    .msg_release_idem = mongo_msg_release_idem,
    .msg_scan_open = mongo_msg_scan_open,
    .msg_max_id = mongo_msg_max_id,
    .user_put = mongo_user_put,
    .user_get = mongo_user_get,
    .user_set_role = mongo_user_set_role,
};
