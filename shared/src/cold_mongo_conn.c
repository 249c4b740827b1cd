/* cold_mongo_conn.c: the MongoDB driver's connection layer: libmongoc's
 * process-wide init and its log lines, the client pool of a store (open,
 * close, ping, the url defaults), the lease of a client for one operation,
 * what a libmongoc error means for the caller, and the two command shapes
 * every operation uses (an update with its count, a find of one document).
 *
 * Connections: one mongoc_client_pool_t per store; every operation pops a
 * client, runs, and pushes it back, so worker threads never share a client.
 * Defaults added when the url does not set them (docs/MONGODB.md):
 * serverSelectionTimeoutMS=1500, connectTimeoutMS=1000, socketTimeoutMS=2000
 * (a dead server is SNAP_EUNAVAIL in about 2 s, never a hang), and the write
 * concern {w: "majority", j: true} for every write; the url's w / journal
 * win. libmongoc's own log lines go to log.h.
 * Not here: what is sent (cold_mongo.c), the document (cold_mongo_doc.c). */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "snap/log.h"
#include "cold_mongo_int.h"

#define MONGO_DEFAULT_DB                  "snaptext"
#define MONGO_DEFAULT_SERVER_SELECTION_MS 1500
#define MONGO_DEFAULT_CONNECT_MS          1000
#define MONGO_DEFAULT_SOCKET_MS           2000

/* Duplicate-key codes: 11000 today, 11001 / 12582 from older servers. */
#define MONGO_DUP_KEY        11000
#define MONGO_DUP_KEY_OLD    11001
#define MONGO_DUP_KEY_MONGOS 12582

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
int mongo_lease_begin(struct mongo_store *s, const char *coll, struct mongo_lease *l,
                      struct snap_err *err)
{
    l->coll = NULL;
    l->client = mongoc_client_pool_pop(s->pool);
    if (!l->client)
        return snap_err_set(err, SNAP_EUNAVAIL, "mongodb: the client pool gave no client");
    if (coll) l->coll = mongoc_client_get_collection(l->client, s->db, coll);
    return SNAP_OK;
}

void mongo_lease_end(struct mongo_store *s, struct mongo_lease *l)
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
int mongo_status_of(const bson_error_t *e)
{
    if (is_dup_key(e)) return SNAP_ECONFLICT;
    if (e->domain == MONGOC_ERROR_BSON) return SNAP_ERR;
    if (e->domain == MONGOC_ERROR_COMMAND && e->code == MONGOC_ERROR_COMMAND_INVALID_ARG)
        return SNAP_ERR;
    return SNAP_EUNAVAIL;
}

/* Fills err from a libmongoc error and returns the status. The numbers come
 * first so that they survive the truncation of err->msg. */
int mongo_fail(struct snap_err *err, const bson_error_t *e, const char *what)
{
    return snap_err_set(err, mongo_status_of(e), "mongodb %s: [%u/%u] %s", what,
                        (unsigned)e->domain, (unsigned)e->code, e->message);
}

int mongo_fail_build(struct snap_err *err, const char *what)
{
    return snap_err_set(err, SNAP_ERR, "mongodb %s: document too large to build", what);
}
/* Runs one update on l->coll (of every match when many, else of the
 * first) and reads the count named count ("modifiedCount", "matchedCount")
 * of its reply into *n: -1 when the reply has none, as with a url with
 * w=0, where nothing was confirmed. */
int mongo_update_counted(struct mongo_lease *l, const bson_t *filter, const bson_t *update,
                         bool many, const char *count, int64_t *n, const char *what,
                         struct snap_err *err)
{
    bson_t reply;
    bson_iter_t it;
    bson_error_t e;
    bool done = many ? mongoc_collection_update_many(l->coll, filter, update, NULL, &reply, &e)
                     : mongoc_collection_update_one(l->coll, filter, update, NULL, &reply, &e);
    int rc = done ? SNAP_OK : mongo_fail(err, &e, what);

    *n = -1;
    if (done && bson_iter_init_find(&it, &reply, count) && BSON_ITER_HOLDS_NUMBER(&it))
        *n = bson_iter_as_int64(&it);
    bson_destroy(&reply); /* initialised by the driver on every return */
    return rc;
}

/* Runs find(filter, opts) on l->coll and copies the first document into
 * *out (initialised on every return; the caller destroys it). Returns
 * SNAP_OK, SNAP_ENOTFOUND (no document) or the mapped error. */
int mongo_find_first(struct mongo_lease *l, const bson_t *filter, const bson_t *opts, bson_t *out,
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
        rc = mongo_fail(err, &e, what);
    }
    mongoc_cursor_destroy(cur);
    if (rc == SNAP_ENOTFOUND)
        (void)snap_err_set(err, SNAP_ENOTFOUND, "mongodb %s: no such document", what);
    return rc;
}

/* Leases a client for coll and finds the first document matching filter
 * (limit 1) into *doc, which is initialised on every return and destroyed
 * by the caller. SNAP_ENOTFOUND when there is none. */
int mongo_find_one(struct mongo_store *s, const char *coll, const bson_t *filter, bson_t *doc,
                   const char *what, struct snap_err *err)
{
    struct mongo_lease l;
    bson_t opts;
    int rc;

    bson_init(doc);
    bson_init(&opts);
    if (!BSON_APPEND_INT64(&opts, "limit", 1)) {
        bson_destroy(&opts);
        return mongo_fail_build(err, what);
    }
    rc = mongo_lease_begin(s, coll, &l, err);
    if (rc == SNAP_OK) {
        bson_destroy(doc);
        rc = mongo_find_first(&l, filter, &opts, doc, what, err);
        mongo_lease_end(s, &l);
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

void mongo_close(void *state)
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
int mongo_open(const char *url, void **state, struct snap_err *err)
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

/* ---- ping ------------------------------------------------------------------- */

int mongo_ping(void *state, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct mongo_lease l;
    bson_t cmd, reply;
    bson_error_t e;
    int rc = SNAP_OK;

    bson_init(&cmd);
    if (!BSON_APPEND_INT32(&cmd, "ping", 1)) {
        bson_destroy(&cmd);
        return mongo_fail_build(err, "ping");
    }
    rc = mongo_lease_begin(s, NULL, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_client_command_simple(l.client, "admin", &cmd, NULL, &reply, &e))
            rc = mongo_fail(err, &e, "ping");
        bson_destroy(&reply);
        mongo_lease_end(s, &l);
    }
    bson_destroy(&cmd);
    return rc;
}
