/* cold_mongo.c: the MongoDB driver of the cold store (cold_store.h), picked
 * by cold_open() for mongodb:// urls (its open also takes mongodb+srv://,
 * should cold_store.c ever route that scheme here). The driver is three
 * files: this one (the schema, the operations: the commands and their
 * replies), cold_mongo_conn.c (the client pool, leases, what an error
 * means; shared through cold_mongo_int.h) and cold_mongo_doc.c (the
 * message document, both ways, with bson.h only). Only the first two
 * include mongoc.h, and the driver exports nothing but cold_mongo_ops.
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
 * Writes go with the store's write concern, {w: "majority", j: true} unless
 * the url says otherwise (cold_mongo_conn.c): an rcs[i] of 0 from
 * msg_put_many, or a claim's SNAP_OK, means majority-acknowledged and
 * journaled. A write concern error or a failed command fails every message
 * or claim that has no write error of its own.
 *
 * Every value sent is typed BSON built from validated C fields; no request
 * text is ever parsed as JSON, BSON or a query. Driver error text goes only
 * into err->msg (for the log).
 * Not here: the client pool, leases and error mapping (cold_mongo_conn.c,
 * behind cold_mongo_int.h), the document mapping (cold_mongo_doc.c), choosing the driver
 * (cold_store.c), the SQLite twin (cold_sqlite.c), Redis (hot_store.h). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/cold_store.h"
#include "snap/err.h"
#include "cold_mongo_doc.h"
#include "cold_mongo_int.h"

#define MONGO_INDEX_USERNAME "username_1"
#define MONGO_INDEX_IDEM     "idem_1"
#define MONGO_IDS_PER_UPDATE 1000 /* ids per close statement, far below 16 MB */
/* Index exists under this name with other options / keys. */
#define MONGO_INDEX_OPTIONS_CONFLICT   85
#define MONGO_INDEX_KEY_SPECS_CONFLICT 86

/* ---- schema ------------------------------------------------------------------ */

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
static int create_indexes(struct mongo_store *s, struct mongo_lease *l,
                          const struct index_spec *specs, size_t n, struct snap_err *err)
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
        return mongo_fail_build(err, "createIndexes");
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
            rc = mongo_fail(err, &e, "createIndexes");
    }
    bson_destroy(&reply);
    bson_destroy(&cmd);
    return rc;
}

static int mongo_ensure_schema(void *state, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct mongo_lease l;
    size_t at = 0;
    int rc;

    rc = mongo_lease_begin(s, NULL, &l, err);
    while (rc == SNAP_OK && at < N_INDEX_SPECS) {
        size_t run = 1;
        while (at + run < N_INDEX_SPECS &&
               strcmp(index_specs[at + run].coll, index_specs[at].coll) == 0)
            run++;
        rc = create_indexes(s, &l, &index_specs[at], run, err);
        at += run;
    }
    if (l.client) mongo_lease_end(s, &l); /* mongo_lease_begin() failed: nothing to return */
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
 * the status mongo_status_of() gives the same server error, except that a
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
        rcs[index] = mongo_status_of(&e);
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
        if (mongo_fail(&batch, e, what) == SNAP_ECONFLICT) batch.code = SNAP_EUNAVAIL;
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
    struct mongo_lease l;
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
            (void)mongo_fail_build(err, "msg_put_many");
    }
    if (rc == SNAP_OK && !BSON_APPEND_BOOL(&opts, "ordered", false))
        rc = mongo_fail_build(err, "msg_put_many");
    if (rc == SNAP_OK) rc = mongo_lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        /* No writeConcern in opts: the collection's, from the url, applies
         * (see default_write_concern). */
        if (!mongoc_collection_insert_many(l.coll, (const bson_t **)docs, n, &opts, &reply, &e)) {
            rc = batch_failure(&reply, &e, n, rcs, "insertedCount", "insert messages", err);
            filled = true;
        }
        bson_destroy(&reply);
        mongo_lease_end(s, &l);
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
    int rc = mongo_find_one(s, MONGO_COLL_MESSAGES, filter, &doc, "find messages", err);

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
                                                 : mongo_fail_build(err, "msg_get");
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
             : mongo_fail_build(err, "msg_find_idem");
    bson_destroy(&filter);
    return rc;
}

/* Every message of find(filter, opts) on l->coll, in the server's order,
 * appended to *out (empty on entry; the caller frees it on every return). */
static int find_list(struct mongo_lease *l, const bson_t *filter, const bson_t *opts,
                     const mongoc_read_prefs_t *prefs, struct cold_msg_list *out, const char *what,
                     struct snap_err *err)
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
    if (rc == SNAP_OK && mongoc_cursor_error(cur, &e)) rc = mongo_fail(err, &e, "find messages");
    mongoc_cursor_destroy(cur);
    return rc;
}

/* find_list() on a leased client; on failure cold_store.c empties *out. */
static int find_msgs(struct mongo_store *s, const bson_t *filter, const bson_t *opts,
                     const mongoc_read_prefs_t *prefs, struct cold_msg_list *out,
                     const char *what, struct snap_err *err)
{
    struct mongo_lease l;
    int rc = mongo_lease_begin(s, MONGO_COLL_MESSAGES, &l, err);

    if (rc == SNAP_OK) {
        rc = find_list(&l, filter, opts, prefs, out, what, err);
        mongo_lease_end(s, &l);
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
static int claim_outcome(struct mongo_store *s, struct mongo_lease *l, struct cold_claim *c,
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
        return mongo_fail_build(err, "msg_claim");
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
    if (rc == SNAP_OK && mongoc_cursor_error(cur, &e)) rc = mongo_fail(err, &e, "find messages");
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
    struct mongo_lease l;
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
    rc = mongo_lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc != SNAP_OK) {
        for (size_t i = 0; i < n; i++) claims[i].rc = rc;
        free(claim_of);
        free(rcs);
        free(ops);
        return rc;
    }

    bson_init(&opts);
    if (!BSON_APPEND_BOOL(&opts, "ordered", false)) rc = mongo_fail_build(err, "msg_claim");
    if (rc == SNAP_OK) bulk = mongoc_collection_create_bulk_operation_with_opts(l.coll, &opts);
    for (size_t i = 0; rc == SNAP_OK && i < n; i++) {
        bson_t q, u;
        if (claims[i].n == 0) continue;
        bson_init(&q);
        bson_init(&u);
        bson_oid_init(&ops[nstmt], NULL); /* unique across processes */
        if (!claim_statement(&claims[i], now_ms, &ops[nstmt], &q, &u))
            rc = mongo_fail_build(err, "msg_claim");
        else if (!mongoc_bulk_operation_update_many_with_opts(bulk, &q, &u, NULL, &e))
            rc = mongo_fail(err, &e, "msg_claim");
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
    mongo_lease_end(s, &l);
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
            : mongo_fail_build(err, "msg_claimed");
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}

/* One update for ids[0..n): {_id: {$in}, state: 0, expires_at: {$gt: at}}
 * -> {$set: {state: to_state, closed_at: at}}, multi; adds its nModified
 * to *n_closed. */
static int close_batch(struct mongo_lease *l, const int64_t *ids, size_t n, int to_state,
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
        rc = mongo_fail_build(err, "msg_close");
    } else {
        rc = mongo_update_counted(l, &filter, &update, true, "modifiedCount", &modified,
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
    struct mongo_lease l;
    int rc = mongo_lease_begin(s, MONGO_COLL_MESSAGES, &l, err);

    /* Batches keep each command far below the 16 MB limit. A failure part
     * way leaves earlier batches applied, which is fine: the update only
     * ever ends an open message, and the caller may repeat the whole call. */
    for (size_t off = 0; rc == SNAP_OK && off < n; off += MONGO_IDS_PER_UPDATE) {
        size_t k = n - off < MONGO_IDS_PER_UPDATE ? n - off : MONGO_IDS_PER_UPDATE;
        rc = close_batch(&l, ids + off, k, to_state, at_ms, n_closed, err);
    }
    mongo_lease_end(s, &l);
    return rc;
}

/* {_id: id} -> {$unset: {idem: ""}}: the key may be taken again. */
static int mongo_msg_release_idem(void *state, int64_t id, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct mongo_lease l;
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
    if (!ok) rc = mongo_fail_build(err, "msg_release_idem");
    if (rc == SNAP_OK) rc = mongo_lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_collection_update_one(l.coll, &filter, &update, NULL, NULL, &e))
            rc = mongo_fail(err, &e, "update messages");
        mongo_lease_end(s, &l);
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
            : mongo_fail_build(err, "msg_scan_open");
    bson_destroy(&opts);
    bson_destroy(&filter);
    return rc;
}

static int mongo_msg_max_id(void *state, int64_t *out, struct snap_err *err)
{
    struct mongo_store *s = state;
    struct mongo_lease l;
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
        return mongo_fail_build(err, "msg_max_id");
    }

    bson_init(&doc);
    rc = mongo_lease_begin(s, MONGO_COLL_MESSAGES, &l, err);
    if (rc == SNAP_OK) {
        bson_destroy(&doc);
        rc = mongo_find_first(&l, &filter, &opts, &doc, "find messages max id", err);
        mongo_lease_end(s, &l);
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
    struct mongo_lease l;
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
        return mongo_fail_build(err, "user_put");
    }

    rc = mongo_lease_begin(s, MONGO_COLL_USERS, &l, err);
    if (rc == SNAP_OK) {
        if (!mongoc_collection_insert_one(l.coll, &doc, NULL, NULL, &e))
            rc = mongo_fail(err, &e, "insert users");
        mongo_lease_end(s, &l);
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
        return mongo_fail_build(err, "user_get");
    }
    rc = mongo_find_one(s, MONGO_COLL_USERS, &filter, &doc, "find users", err);
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
    struct mongo_lease l;
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
        return mongo_fail_build(err, "user_set_role");
    }

    rc = mongo_lease_begin(s, MONGO_COLL_USERS, &l, err);
    if (rc == SNAP_OK) {
        rc = mongo_update_counted(&l, &filter, &update, false, "matchedCount", &matched,
                                  "update users", err);
        if (rc == SNAP_OK && matched == 0) /* -1, unconfirmed, is no answer either way */
            rc = snap_err_set(err, SNAP_ENOTFOUND, "mongodb user_set_role: no such user");
        mongo_lease_end(s, &l);
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
