/* cold_mongo_int.h: private to the MongoDB driver of the cold store,
 * shared by cold_mongo.c (the schema and the operations) and
 * cold_mongo_conn.c (the client pool, its leases and what an error means)
 * and included by no other file: the store's state, the lease of a
 * client, and the few functions the operations call in the connection
 * layer, all prefixed mongo_. The driver still exports nothing but
 * cold_mongo_ops to the rest of snaptext.
 * Not here: the message document (cold_mongo_doc.h). */
#ifndef SNAP_COLD_MONGO_INT_H
#define SNAP_COLD_MONGO_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <mongoc/mongoc.h>

#include "snap/err.h"

#define MONGO_DB_NAME_MAX   63 /* MongoDB's own limit is 64 bytes */
#define MONGO_COLL_MESSAGES "messages"
#define MONGO_COLL_USERS    "users"

/* The state behind the void *state of cold_ops. Owned by the caller of
 * mongo_open(); released by mongo_close(). */
struct mongo_store {
    mongoc_uri_t *uri;              /* owned; outlives the pool          */
    mongoc_client_pool_t *pool;     /* owned; shared by all threads      */
    mongoc_read_prefs_t *primary;   /* owned; for the finds of a claim   */
    char db[MONGO_DB_NAME_MAX + 1]; /* database name from the url path   */
};

/* A client borrowed from the pool and one collection handle on it, for the
 * length of one operation. mongo_lease_end() returns both. */
struct mongo_lease {
    mongoc_client_t *client;
    mongoc_collection_t *coll; /* NULL for database-level commands */
};

/* ---- cold_mongo_conn.c, for the operations -------------------------------- */

/* cold_ops' open, close and ping. open adds the url defaults (timeouts,
 * write concern; docs/MONGODB.md) and sends nothing yet: the pool connects
 * on first use. */
int mongo_open(const char *url, void **state, struct snap_err *err);
void mongo_close(void *state);
int mongo_ping(void *state, struct snap_err *err);

/* Pops a client (and a handle on collection coll, unless NULL) for one
 * operation: SNAP_OK, or SNAP_EUNAVAIL when the pool gives none. */
int mongo_lease_begin(struct mongo_store *s, const char *coll, struct mongo_lease *l,
                      struct snap_err *err);
void mongo_lease_end(struct mongo_store *s, struct mongo_lease *l);

/* What a libmongoc error means: SNAP_ECONFLICT (duplicate key), SNAP_ERR
 * (a bug on our side of the wire) or SNAP_EUNAVAIL (anything the server or
 * the network says). mongo_fail also fills err; mongo_fail_build is the
 * SNAP_ERR of a BSON document that could not be built. */
int mongo_status_of(const bson_error_t *e);
int mongo_fail(struct snap_err *err, const bson_error_t *e, const char *what);
int mongo_fail_build(struct snap_err *err, const char *what);

/* One update on l->coll (every match when many) with the count named count
 * of its reply in *n (-1 when the reply has none, as with w=0). */
int mongo_update_counted(struct mongo_lease *l, const bson_t *filter, const bson_t *update,
                         bool many, const char *count, int64_t *n, const char *what,
                         struct snap_err *err);

/* find(filter, opts) on l->coll, its first document copied into *out
 * (initialised on every return; the caller destroys it): SNAP_OK,
 * SNAP_ENOTFOUND or the mapped error. mongo_find_one leases a client for
 * coll itself and adds limit 1. */
int mongo_find_first(struct mongo_lease *l, const bson_t *filter, const bson_t *opts, bson_t *out,
                     const char *what, struct snap_err *err);
int mongo_find_one(struct mongo_store *s, const char *coll, const bson_t *filter, bson_t *doc,
                   const char *what, struct snap_err *err);

#endif
