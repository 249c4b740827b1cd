/* hot_store.h: the Redis side of snaptext — the message id counter, each
 * user's inbox of deliverable messages, bearer-token sessions, and the queue
 * of cold-store expiry updates that must be retried.
 *
 * Key layout (every key of one user carries the username as a hash tag, so
 * the same commands work on Redis Cluster; see docs/REDIS.md):
 *   snap:next_id                      STRING  INCR counter of message ids
 *   snap:{<user>}:inbox               HASH    id -> "<expires_ms> <text>";
 *                                             key TTL = latest expiry in it
 *   snap:session:<sha256 hex>         STRING  "<role> <username>", TTL = session
 *   snap:expire_retry                 LIST    "<id> <at_ms>" awaiting retry
 *
 * Threading: a struct hot_store wraps one hiredis connection and is NOT
 * thread-safe: each worker thread owns one. It connects lazily; after any
 * I/O error the connection is dropped and the next call reconnects, so the
 * services ride out a Redis restart without being restarted themselves.
 * Every call is bounded by a short connect/command timeout (SNAP_EUNAVAIL).
 * Behind Sentinel (cfg->redis_sentinels), every write a client is told
 * about (inbox put, session put/delete) also waits until a replica has it,
 * so a failover cannot take back an acknowledged write; without a replica
 * those calls fail with SNAP_EUNAVAIL (durability over availability).
 * Not here: durability (cold_store.h), token hashing (auth.h). */
#ifndef SNAP_HOT_STORE_H
#define SNAP_HOT_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "snap/config.h"
#include "snap/err.h"

struct hot_store;

/* One message taken from an inbox. text is owned by the list. */
struct hot_msg {
    int64_t id;
    int64_t expires_ms;
    char *text;
    size_t text_len;
};

struct hot_msg_list {
    struct hot_msg *items; /* sorted by id ascending */
    size_t len;
};

/* Makes an unconnected handle for cfg->redis_url (or the Sentinel master
 * named in cfg->redis_sentinels). Returns NULL on a malformed URL, with the
 * reason in err. The caller owns it: release with hot_free(). cfg must
 * outlive the handle. */
struct hot_store *hot_new(const struct snap_config *cfg, struct snap_err *err);
void hot_free(struct hot_store *h); /* NULL is fine */

/* 0 when Redis answers PING now. */
int hot_ping(struct hot_store *h, struct snap_err *err);

/* INCR snap:next_id into *id. */
int hot_next_id(struct hot_store *h, int64_t *id, struct snap_err *err);

/* Raises snap:next_id to at least floor (never lowers it): used when the
 * cold store already holds ids that a lost Redis write handed out. */
int hot_id_floor(struct hot_store *h, int64_t floor, struct snap_err *err);

/* Adds message id to user's inbox, deliverable until expires_ms. */
int hot_inbox_put(struct hot_store *h, const char *user, int64_t id, int64_t expires_ms,
                  const char *text, size_t text_len, struct snap_err *err);

/* One message for hot_inbox_put_many(); the strings are borrowed. */
struct hot_put {
    const char *user;
    int64_t id;
    int64_t expires_ms;
    const char *text;
    size_t text_len;
};

/* A batch in one round trip: puts[0..n) as hot_inbox_put() would do each
 * (rcs[i] is the outcome of puts[i]) and, when reserve > 0, reserve fresh
 * ids from the counter (INCRBY): *first_id .. *first_id + reserve - 1, or
 * *first_id = 0 when that failed. Returns SNAP_OK when every part did,
 * otherwise the first failure (err says which). n may be 0. */
int hot_inbox_put_many(struct hot_store *h, const struct hot_put *puts, size_t n, int *rcs,
                       size_t reserve, int64_t *first_id, struct snap_err *err);

/* Atomically empties user's inbox and returns the messages in it whose
 * expires_ms is later than now_ms, oldest first. With any number of
 * concurrent callers on any number of processes, each message is returned
 * to exactly one of them. *out belongs to the caller: hot_msg_list_free().
 * *n_expired (may be NULL) receives how many expired ones were dropped. */
int hot_inbox_take(struct hot_store *h, const char *user, int64_t now_ms,
                   struct hot_msg_list *out, size_t *n_expired, struct snap_err *err);
void hot_msg_list_free(struct hot_msg_list *l); /* NULL and empty are fine */

/* One inbox's outcome in hot_inbox_take_many(). */
struct hot_take {
    int rc;                   /* SNAP_OK, or this take failed (msgs empty) */
    struct hot_msg_list msgs; /* the caller's: hot_msg_list_free()        */
    size_t n_expired;
};

/* hot_inbox_take() for users[0..n) in one round trip, each inbox its own
 * atomic step (the same user twice: the second finds it empty). outs[i]
 * is the outcome for users[i]. Returns SNAP_OK when every take did,
 * otherwise the first failure (err says which). */
int hot_inbox_take_many(struct hot_store *h, const char *const *users, size_t n, int64_t now_ms,
                        struct hot_take *outs, struct snap_err *err);

/* Sessions, keyed by the SHA-256 hex of the token (never the token). */
int hot_session_put(struct hot_store *h, const char *token_hash, const char *username,
                    const char *role, long ttl_s, struct snap_err *err);
/* SNAP_ENOTFOUND for an unknown, revoked or expired token. username holds
 * SNAP_USERNAME_MAX+1 bytes, role 16. */
int hot_session_get(struct hot_store *h, const char *token_hash, char *username,
                    char *role, struct snap_err *err);
int hot_session_del(struct hot_store *h, const char *token_hash, struct snap_err *err);

/* The retry queue of cold-store expiry updates (shared by all instances). */
int hot_retry_push(struct hot_store *h, int64_t id, int64_t at_ms, struct snap_err *err);
/* Pops one entry; SNAP_ENOTFOUND when the queue is empty. */
int hot_retry_pop(struct hot_store *h, int64_t *id, int64_t *at_ms, struct snap_err *err);

/* ---- login throttle (hardening, issue 12) ------------------------------
 * Failed logins are counted per account and per client address, each in a
 * fixed window that starts with the first failure:
 *   snap:{<user>}:login_fails         STRING  counter, TTL = rest of window
 *   snap:login_fails_addr:<address>   STRING  counter, TTL = rest of window
 * Counters are not WAITed for behind Sentinel: a failover that loses a few
 * counts only gives a guesser a few more tries. */
struct hot_login_fails {
    long user_fails;      /* failures of the account in its window */
    int64_t user_left_ms; /* time left of that window (0: none open) */
    long addr_fails;      /* failures from the address in its window */
    int64_t addr_left_ms;
};

/* Reads both counters (one round trip). addr is 1..64 bytes. */
int hot_login_fails_get(struct hot_store *h, const char *user, const char *addr,
                        struct hot_login_fails *out, struct snap_err *err);
/* Counts one failure against both, opening a window_s window where none is
 * open (one round trip). */
int hot_login_fail_add(struct hot_store *h, const char *user, const char *addr, long window_s,
                       struct snap_err *err);
/* Forgets the account's failures (after a successful login). */
int hot_login_fails_clear(struct hot_store *h, const char *user, struct snap_err *err);

#endif
