/* cold_store.h: the durable record of every message and every user account.
 *
 * One interface, several drivers: cold_open() reads the scheme of
 * SNAPTEXT_STORE and picks the SQLite driver (sqlite:///path) or the MongoDB
 * driver (mongodb://...). Services only see struct cold_store; no file but
 * the driver itself includes sqlite3.h or mongoc.h.
 *
 * Thread safety: a struct cold_store is shared by all worker threads; every
 * operation may be called concurrently (each driver pools its connections).
 * Times are Unix epoch milliseconds (UTC).
 * Failures: SNAP_EUNAVAIL when the store cannot be reached or refuses the
 * write (the caller answers 503), SNAP_ENOTFOUND / SNAP_ECONFLICT as named
 * below. err->msg may hold driver text: log it, never send it to a client.
 * Not here: the hot copy in Redis (hot_store.h). */
#ifndef SNAP_COLD_STORE_H
#define SNAP_COLD_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "snap/config.h"
#include "snap/err.h"

#define COLD_ROLE_MAX 15
#define COLD_HASH_MAX 255

/* One message. In cold_msg_get() results, text is heap memory owned by the
 * struct: release with cold_msg_cleanup(). For cold_msg_put() the caller
 * owns everything and the store copies what it keeps. */
struct cold_msg {
    int64_t id;                              /* from the Redis counter, > 0   */
    char username[SNAP_USERNAME_MAX + 1];    /* recipient                     */
    char from[SNAP_USERNAME_MAX + 1];        /* sender; "" when has_from == 0 */
    int has_from;                            /* 0: sent in open mode (null)   */
    char *text;                              /* UTF-8, NUL-free               */
    size_t text_len;
    int64_t created_ms;
    int64_t expires_ms;                      /* "expiration_date"             */
};

struct cold_user {
    char username[SNAP_USERNAME_MAX + 1];
    char password_hash[COLD_HASH_MAX + 1];   /* crypt(3) string, never a password */
    char role[COLD_ROLE_MAX + 1];            /* "user" | "admin"              */
    int64_t created_ms;
};

/* A driver: each cold_<name>.c exports one const instance and nothing else.
 * state is the driver's own handle, made by open and released by close. */
struct cold_ops {
    const char *name;                        /* "sqlite", "mongodb"           */
    const char *scheme;                      /* "sqlite://", "mongodb://"     */
    int (*open)(const char *url, void **state, struct snap_err *err);
    void (*close)(void *state);              /* NULL state is fine            */
    int (*ensure_schema)(void *state, struct snap_err *err); /* idempotent    */
    int (*ping)(void *state, struct snap_err *err);
    int (*msg_put)(void *state, const struct cold_msg *m, struct snap_err *err);
    int (*msg_put_many)(void *state, const struct cold_msg *msgs, size_t n, int *rcs,
                        struct snap_err *err);
    int (*msg_get)(void *state, int64_t id, struct cold_msg *out, struct snap_err *err);
    int (*msg_expire)(void *state, const int64_t *ids, size_t n, int64_t at_ms,
                      struct snap_err *err);
    int (*msg_max_id)(void *state, int64_t *out, struct snap_err *err);
    int (*user_put)(void *state, const struct cold_user *u, struct snap_err *err);
    int (*user_get)(void *state, const char *username, struct cold_user *out,
                    struct snap_err *err);
    int (*user_set_role)(void *state, const char *username, const char *role,
                         struct snap_err *err);
};

struct cold_store;

/* Opens the store named by url and makes sure its schema and indexes exist.
 * On success *out belongs to the caller: release it with cold_close().
 * Returns SNAP_EINVAL for an unknown scheme or malformed url, SNAP_EUNAVAIL
 * when the store cannot be reached. */
int cold_open(const char *url, struct cold_store **out, struct snap_err *err);
void cold_close(struct cold_store *cs); /* NULL is fine */

/* Name of the driver in use ("sqlite" or "mongodb"). */
const char *cold_driver_name(const struct cold_store *cs);

/* 0 when the store answers now. */
int cold_ping(struct cold_store *cs, struct snap_err *err);

/* Records m durably (a 0 return means it is on disk / majority-acknowledged).
 * SNAP_ECONFLICT when a message with m->id already exists. */
int cold_msg_put(struct cold_store *cs, const struct cold_msg *m, struct snap_err *err);

/* Records msgs[0..n) as one batch: one transaction and one fsync on SQLite,
 * one unordered insert on MongoDB. rcs[i] receives the outcome of msgs[i]:
 * SNAP_OK (durable, as for cold_msg_put), SNAP_ECONFLICT (its id is already
 * stored; the stored message is left alone) or the failure of the batch
 * (then the message must be treated as not recorded). Returns SNAP_OK when
 * every rcs[i] is SNAP_OK; otherwise the first failure that is not a
 * conflict, or SNAP_ECONFLICT, with err describing it. A message that fails
 * the checks of cold_msg_put fails the whole call with SNAP_EINVAL before
 * anything is written. */
int cold_msg_put_many(struct cold_store *cs, const struct cold_msg *msgs, size_t n, int *rcs,
                      struct snap_err *err);

/* Fills *out with message id, expired or not. SNAP_ENOTFOUND if unknown.
 * On success out->text is owned by *out: release with cold_msg_cleanup(). */
int cold_msg_get(struct cold_store *cs, int64_t id, struct cold_msg *out,
                 struct snap_err *err);

/* Sets expires_ms = at_ms for each of ids whose expires_ms is later than
 * at_ms (a read expires what it returns). Unknown ids are skipped. Safe to
 * repeat: retrying the same call is harmless. */
int cold_msg_expire(struct cold_store *cs, const int64_t *ids, size_t n, int64_t at_ms,
                    struct snap_err *err);

/* Highest message id stored, 0 when there is none. */
int cold_msg_max_id(struct cold_store *cs, int64_t *out, struct snap_err *err);

/* Frees what cold_msg_get() put in m and zeroes it. NULL is fine. */
void cold_msg_cleanup(struct cold_msg *m);

/* Creates a user. SNAP_ECONFLICT when the username is taken. */
int cold_user_put(struct cold_store *cs, const struct cold_user *u, struct snap_err *err);

/* Fills *out. SNAP_ENOTFOUND if no such user. */
int cold_user_get(struct cold_store *cs, const char *username, struct cold_user *out,
                  struct snap_err *err);

/* Changes the role of an existing user. SNAP_ENOTFOUND if no such user. */
int cold_user_set_role(struct cold_store *cs, const char *username, const char *role,
                       struct snap_err *err);

/* The drivers, for cold_store.c and the contract tests. */
extern const struct cold_ops cold_sqlite_ops;
extern const struct cold_ops cold_mongo_ops;

#endif
