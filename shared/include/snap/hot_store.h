/* hot_store.h: the Redis side of snaptext — the message id counter, the
 * hot index of each user's unread messages, and bearer-token sessions.
 *
 * Redis does not decide delivery: the cold store does (cold_msg_claim).
 * The inbox here is an index of candidates, which may miss entries (a lost
 * write, an empty restart) or hold stale ones (a resurrected entry, an
 * already-read message): the claim refuses what is not deliverable, and
 * the repair (ingest's repair.c) puts back what is missing.
 *
 * Key layout (every key of one user carries the username as a hash tag, so
 * the same commands work on Redis Cluster; see docs/REDIS.md):
 *   snap:next_id                      STRING  INCR counter of message ids
 *   snap:{<user>}:msgs                ZSET    score id, member
 *                                             "<id> <expires_ms> <text>";
 *                                             key TTL = latest expiry in it
 *   snap:session:<sha256 hex>         STRING  "<role> <username>", TTL = session
 *   snap:epoch                        STRING  random; gone = Redis lost its data
 *
 * Threading: a struct hot_store wraps one hiredis connection and is NOT
 * thread-safe: each worker thread owns one. It connects lazily; after any
 * I/O error the connection is dropped and the next call reconnects, so the
 * services ride out a Redis restart without being restarted themselves.
 * Every call is bounded by a short connect/command timeout (SNAP_EUNAVAIL).
 * Behind Sentinel (cfg->redis_sentinels), session writes also wait until a
 * replica has them, so a failover cannot take back a login or a logout.
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

/* Adds message id to user's inbox, deliverable until expires_ms. Putting
 * the same message again changes nothing. */
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

/* The send pipeline's round trip: puts[0..n) as hot_inbox_put() would do
 * each (rcs[i] is the outcome of puts[i]); when reserve > 0, reserve fresh
 * ids from the counter (INCRBY): *first_id .. *first_id + reserve - 1, or
 * *first_id = 0 when that failed; and the number of entries in each inbox
 * of count_users[0..ncount) after the puts, in counts[] (-1 when unknown).
 * Returns SNAP_OK when every part did, otherwise the first failure (err
 * says which). n and ncount may be 0. */
int hot_inbox_put_many(struct hot_store *h, const struct hot_put *puts, size_t n, int *rcs,
                       size_t reserve, int64_t *first_id, const char *const *count_users,
                       size_t ncount, int64_t *counts, struct snap_err *err);

/* One inbox's candidates, from hot_inbox_peek_many(). */
struct hot_peek {
    int rc;                   /* SNAP_OK, or this peek failed (all empty)   */
    struct hot_msg_list msgs; /* unexpired entries, oldest first            */
    int64_t *dead;            /* ids of expired or malformed entries seen   */
    size_t n_dead;
    int64_t total;            /* entries in the inbox (ZCARD), dead included */
};

/* For each users[i]: its oldest limits[i] entries, without removing any,
 * in one round trip for all. outs[i] is the caller's: hot_peek_free(). */
int hot_inbox_peek_many(struct hot_store *h, const char *const *users, const size_t *limits,
                        size_t n, int64_t now_ms, struct hot_peek *outs, struct snap_err *err);
void hot_peek_free(struct hot_peek *p); /* NULL is fine */
void hot_msg_list_free(struct hot_msg_list *l); /* NULL and empty are fine */

/* Entries to remove from one inbox (claimed, or never deliverable). */
struct hot_drop {
    const char *user;
    const int64_t *ids;
    size_t n;
};

/* Removes exactly those entries, in one round trip for all. Idempotent. */
int hot_inbox_drop_many(struct hot_store *h, const struct hot_drop *drops, size_t n,
                        struct snap_err *err);

/* Waiting for user's inbox to get an entry (a read with ?wait=S). The
 * handle's connection subscribes to the inbox's wake channel
 * (hot_wait_begin), waits (hot_wait_for: SNAP_OK when an entry may have
 * arrived, SNAP_ENOTFOUND after timeout_ms, SNAP_EGONE as soon as client_fd
 * (-1: none) is closed by its peer), and is closed by hot_wait_end(), which
 * must follow every hot_wait_begin(); the next call reconnects. */
int hot_wait_begin(struct hot_store *h, const char *user, struct snap_err *err);
int hot_wait_for(struct hot_store *h, int timeout_ms, int client_fd, struct snap_err *err);
void hot_wait_end(struct hot_store *h);

/* The epoch of Redis's data (see hot_store.c): SNAP_ENOTFOUND when unset.
 * out holds cap bytes. hot_epoch_set() sets it only when it is unset. */
int hot_epoch_get(struct hot_store *h, char *out, size_t cap, struct snap_err *err);
int hot_epoch_set(struct hot_store *h, const char *value, struct snap_err *err);

/* Registers fn (once, before any thread uses a handle): called, on the
 * thread that saw it, whenever a handle drops a connection after a failure,
 * with the wall-clock time of that handle's last completed round trip.
 * Whatever it wrote after that may be lost, and its next connection may
 * reach another server (a failover). fn must not block. */
void hot_on_connection_lost(void (*fn)(int64_t since_ms, void *arg), void *arg);

/* Sessions, keyed by the SHA-256 hex of the token (never the token). */
int hot_session_put(struct hot_store *h, const char *token_hash, const char *username,
                    const char *role, long ttl_s, struct snap_err *err);
/* SNAP_ENOTFOUND for an unknown, revoked or expired token. username holds
 * SNAP_USERNAME_MAX+1 bytes, role 16. */
int hot_session_get(struct hot_store *h, const char *token_hash, char *username,
                    char *role, struct snap_err *err);
int hot_session_del(struct hot_store *h, const char *token_hash, struct snap_err *err);

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
