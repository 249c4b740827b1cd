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

#define COLD_ROLE_MAX  15
#define COLD_HASH_MAX  255
#define COLD_TOKEN_MAX 64                        /* a claim token's bytes     */
#define COLD_IDEM_MAX  (SNAP_USERNAME_MAX + 1 + COLD_TOKEN_MAX) /* "<from>/<key>" */

/* What became of a message. Only a COLD_OPEN message whose expires_ms is
 * still ahead can be claimed by a read or unsent: every other state is
 * final. closed_ms says when it left COLD_OPEN. */
enum cold_state {
    COLD_OPEN = 0,    /* stored and unread: deliverable until expires_ms      */
    COLD_READ = 1,    /* claimed by a read (its token in the store) at closed */
    COLD_UNSENT = 2,  /* withdrawn by its sender or an admin at closed        */
    COLD_REFUSED = 3, /* its send was not answered 201: never deliverable     */
};

/* One message. In results (cold_msg_get, lists), text is heap memory owned
 * by the struct: release with cold_msg_cleanup() / cold_msg_list_free().
 * For puts the caller owns everything and the store copies what it keeps. */
struct cold_msg {
    int64_t id;                              /* from the Redis counter, > 0   */
    char username[SNAP_USERNAME_MAX + 1];    /* recipient                     */
    char from[SNAP_USERNAME_MAX + 1];        /* sender; "" when has_from == 0 */
    int has_from;                            /* 0: sent in open mode (null)   */
    char *text;                              /* UTF-8, NUL-free               */
    size_t text_len;
    int64_t created_ms;
    int64_t expires_ms;                      /* end of its timeout, never moved */
    int state;                               /* enum cold_state; puts: OPEN   */
    int64_t closed_ms;                       /* left COLD_OPEN at; 0 if open  */
    char idem[COLD_IDEM_MAX + 1];            /* "" or the send's Idempotency-Key,
                                                scoped: "<from>/<key>"         */
};

struct cold_msg_list {
    struct cold_msg *items; /* ascending order (see each call) */
    size_t len;
};

struct cold_user {
    char username[SNAP_USERNAME_MAX + 1];
    char password_hash[COLD_HASH_MAX + 1];   /* crypt(3) string, never a password */
    char role[COLD_ROLE_MAX + 1];            /* "user" | "admin"              */
    int64_t created_ms;
};

/* One read's claim, for cold_msg_claim(). The caller fills the inputs;
 * claimed must have room for n ids. */
struct cold_claim {
    const char *username;  /* the inbox read                                 */
    const char *token;     /* 1..COLD_TOKEN_MAX bytes: recorded on each won
                              message (cold_msg_claimed finds them by it);
                              NULL for a read no retry can name (no
                              Idempotency-Key): nothing is recorded          */
    const int64_t *ids;    /* candidates (from the hot index), any order     */
    size_t n;
    int64_t *claimed;      /* out: the ids this claim won, ascending         */
    size_t n_claimed;      /* out                                            */
    int rc;                /* out: SNAP_OK or why this claim failed          */
};

/* A driver: each cold_<name>.c exports one const instance and nothing else.
 * state is the driver's own handle, made by open and released by close.
 * Drivers may assume the checks of cold_store.c (see there). */
struct cold_ops {
    const char *name;                        /* "sqlite", "mongodb"           */
    const char *scheme;                      /* "sqlite://", "mongodb://"     */
    int (*open)(const char *url, void **state, struct snap_err *err);
    void (*close)(void *state);              /* NULL state is fine            */
    int (*ensure_schema)(void *state, struct snap_err *err); /* idempotent    */
    int (*ping)(void *state, struct snap_err *err);
    int (*msg_put_many)(void *state, const struct cold_msg *msgs, size_t n, int *rcs,
                        struct snap_err *err);
    int (*msg_get)(void *state, int64_t id, struct cold_msg *out, struct snap_err *err);
    int (*msg_claim)(void *state, struct cold_claim *claims, size_t n, int64_t now_ms,
                     struct snap_err *err);
    int (*msg_claimed)(void *state, const char *username, const char *token, int64_t since_ms,
                       struct cold_msg_list *out, struct snap_err *err);
    int (*msg_close)(void *state, const int64_t *ids, size_t n, int to_state, int64_t at_ms,
                     size_t *n_closed, struct snap_err *err);
    int (*msg_find_idem)(void *state, const char *idem, struct cold_msg *out,
                         struct snap_err *err);
    int (*msg_release_idem)(void *state, int64_t id, struct snap_err *err);
    int (*msg_scan_open)(void *state, int64_t since_ms, int64_t now_ms, int64_t after_exp,
                         int64_t after_id, size_t max, struct cold_msg_list *out,
                         struct snap_err *err);
    int (*msg_max_id)(void *state, int64_t *out, struct snap_err *err);
    int (*user_put)(void *state, const struct cold_user *u, struct snap_err *err);
    int (*user_get)(void *state, const char *username, struct cold_user *out,
                    struct snap_err *err);
    int (*user_set_role)(void *state, const char *username, const char *role,
                         struct snap_err *err);
};

struct cold_store;

/* SNAP_OK when url's scheme names a driver of this build (and more follows);
 * else SNAP_EINVAL with the accepted schemes in err. Opens nothing. */
int cold_url_check(const char *url, struct snap_err *err);

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

/* Records m durably (a 0 return means it is on disk / majority-acknowledged):
 * cold_msg_put_many() of one message, with its outcome as the return.
 * The services batch every put (cold_msg_put_many); this is the one-message
 * form the contract suite, the SQLite fault tests and cold_cli write with. */
int cold_msg_put(struct cold_store *cs, const struct cold_msg *m, struct snap_err *err);

/* Records msgs[0..n) as one batch, each as COLD_OPEN (state and closed_ms
 * are ignored): one transaction and one fsync on SQLite, one unordered
 * insert on MongoDB. rcs[i] receives the outcome of msgs[i]: SNAP_OK
 * (durable), SNAP_ECONFLICT (its id is already stored; the stored message
 * is left alone), SNAP_EEXIST (its idem is already held by another message:
 * cold_msg_find_idem() tells which) or the failure of the batch (then the
 * message must be treated as perhaps recorded: see cold_msg_close()).
 * Returns SNAP_OK when every rcs[i] is SNAP_OK; otherwise the first failure
 * that is neither conflict, or the first conflict, with err describing it.
 * A message that fails the argument checks fails the whole call with
 * SNAP_EINVAL before anything is written. */
int cold_msg_put_many(struct cold_store *cs, const struct cold_msg *msgs, size_t n, int *rcs,
                      struct snap_err *err);

/* Fills *out with message id, in whatever state. SNAP_ENOTFOUND if unknown.
 * On success out->text is owned by *out: release with cold_msg_cleanup(). */
int cold_msg_get(struct cold_store *cs, int64_t id, struct cold_msg *out,
                 struct snap_err *err);

/* The arbiter of delivery. For each claims[i]: every candidate id that is a
 * message of claims[i].username, COLD_OPEN and expiring after now_ms
 * becomes COLD_READ with closed_ms = now_ms and the claim's token (if it
 * has one), in one conditional write; the ids won go to claimed[]
 * (ascending). Candidates that are unknown, of another inbox, read, unsent,
 * refused or expired are simply not won. With any number of concurrent
 * claims on any number of processes, a message is won by at most one
 * claim, ever. All claims of a call share one commit on SQLite. Returns
 * SNAP_OK when every claim did; otherwise the first failure (each
 * claims[i].rc says its own, and a failed claim won nothing). */
int cold_msg_claim(struct cold_store *cs, struct cold_claim *claims, size_t n, int64_t now_ms,
                   struct snap_err *err);

/* The messages of username claimed with token at since_ms or later, oldest
 * first: what an earlier read with the same Idempotency-Key was given.
 * *out belongs to the caller (cold_msg_list_free); empty when none. */
int cold_msg_claimed(struct cold_store *cs, const char *username, const char *token,
                     int64_t since_ms, struct cold_msg_list *out, struct snap_err *err);

/* Moves each of ids[0..n) that is COLD_OPEN and expires after at_ms to
 * to_state (COLD_UNSENT or COLD_REFUSED) with closed_ms = at_ms; the others
 * are left alone. *n_closed (may be NULL) receives how many moved. Safe to
 * repeat. Used for unsend, and by ingest to make sure a send that was not
 * answered 201 can never be claimed. */
int cold_msg_close(struct cold_store *cs, const int64_t *ids, size_t n, int to_state,
                   int64_t at_ms, size_t *n_closed, struct snap_err *err);

/* The message whose idem is idem (a retried send), SNAP_ENOTFOUND if none.
 * On success out->text is owned by *out (cold_msg_cleanup). */
int cold_msg_find_idem(struct cold_store *cs, const char *idem, struct cold_msg *out,
                       struct snap_err *err);

/* Clears the idem of message id, so that its key may be used again (a key
 * is kept 24 hours: API.md). Unknown id: success. */
int cold_msg_release_idem(struct cold_store *cs, int64_t id, struct snap_err *err);

/* One page of the messages a read could still claim: COLD_OPEN, expiring
 * after now_ms, created at since_ms or later, ordered by (expires_ms, id)
 * and after the cursor (after_exp, after_id) (0, 0 from the start); at most
 * max. This is what rebuilds the hot index in Redis. *out is the caller's. */
int cold_msg_scan_open(struct cold_store *cs, int64_t since_ms, int64_t now_ms,
                       int64_t after_exp, int64_t after_id, size_t max,
                       struct cold_msg_list *out, struct snap_err *err);

/* Highest message id stored, 0 when there is none. */
int cold_msg_max_id(struct cold_store *cs, int64_t *out, struct snap_err *err);

/* Frees what cold_msg_get() put in m and zeroes it. NULL is fine. */
void cold_msg_cleanup(struct cold_msg *m);
void cold_msg_list_free(struct cold_msg_list *l); /* NULL and empty are fine */

/* Creates a user. SNAP_ECONFLICT when the username is taken. */
int cold_user_put(struct cold_store *cs, const struct cold_user *u, struct snap_err *err);

/* Fills *out. SNAP_ENOTFOUND if no such user. */
int cold_user_get(struct cold_store *cs, const char *username, struct cold_user *out,
                  struct snap_err *err);

/* Changes the role of an existing user. SNAP_ENOTFOUND if no such user.
 * No route calls it yet (admin.c never promotes an account); the wire test
 * pins each driver's update so that an admin route has it ready. */
int cold_user_set_role(struct cold_store *cs, const char *username, const char *role,
                       struct snap_err *err);

/* The drivers, for cold_store.c and the contract tests. */
extern const struct cold_ops cold_sqlite_ops;
extern const struct cold_ops cold_mongo_ops;

#endif
