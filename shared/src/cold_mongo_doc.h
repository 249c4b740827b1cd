/* cold_mongo_doc.h: private to the MongoDB driver (cold_mongo.c). How a
 * struct cold_msg maps to a document of the messages collection and back,
 * and the small typed readers both directions need. Only libbson here: no
 * client, no command, no wire (those are cold_mongo.c's).
 *
 * The message document (docs/MONGODB.md):
 *   {_id: int64, username, from: string|null, text, created_at: date,
 *    expires_at: date, state: int32, closed_at: date (absent while open),
 *    claim: string and claim_op: ObjectId (absent until claimed), idem:
 *    string (absent if none)}
 * Not here: users (cold_mongo.c reads them with the helpers below). */
#ifndef SNAP_COLD_MONGO_DOC_H
#define SNAP_COLD_MONGO_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "snap/cold_store.h"

/* Field names, shared with the filters and updates of cold_mongo.c. */
#define MDOC_ID      "_id"
#define MDOC_USER    "username"
#define MDOC_FROM    "from"
#define MDOC_TEXT    "text"
#define MDOC_CREATED "created_at"
#define MDOC_EXPIRES "expires_at"
#define MDOC_STATE   "state"
#define MDOC_CLOSED  "closed_at"
#define MDOC_CLAIM   "claim"
#define MDOC_CLAIM_OP "claim_op"
#define MDOC_IDEM    "idem"

/* Copies the UTF-8 field key of doc into out (cap bytes with the NUL).
 * False when it is missing, not a string, holds a NUL or does not fit. */
bool mongo_doc_str(const bson_t *doc, const char *key, char *out, size_t cap);

/* The date field key of doc in epoch ms. False when missing or not a date. */
bool mongo_doc_date(const bson_t *doc, const char *key, int64_t *out);

/* _id as an int64 (an int32 written by hand is accepted). */
bool mongo_doc_id(const bson_t *doc, int64_t *out);

/* Appends to doc (initialised and destroyed by the caller) the document an
 * insert of m sends: state COLD_OPEN, idem only when m->idem is not "",
 * no closed_at and no claim. Returns SNAP_OK, SNAP_EINVAL for a text or
 * idem that BSON cannot carry (over INT_MAX bytes, not UTF-8), or SNAP_ERR
 * when the document cannot be built. */
int mongo_doc_of_msg(const struct cold_msg *m, bson_t *doc);

/* Fills *out (zeroed by the caller) from a stored message document, every
 * field checked against the struct's bounds: the database is trusted for
 * content, not for sizes. On success out->text is heap memory owned by
 * *out (cold_msg_cleanup). On failure *out holds no heap memory (its other
 * fields may be half-filled: cold_store.c zeroes a failed output) and the
 * return is SNAP_ERR with *bad naming the field, or NULL when out of memory. */
int mongo_doc_to_msg(const bson_t *doc, struct cold_msg *out, const char **bad);

/* Appends key: {$in: [int64 ids[0..n)]} to parent. False on build failure. */
bool mongo_doc_append_in(bson_t *parent, const char *key, const int64_t *ids, size_t n);

#endif
