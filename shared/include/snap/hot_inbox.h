/* hot_inbox.h: the hot index of each user's unread messages in Redis —
 * put (with a wake-up), peek, drop — plus waiting for an inbox to get an
 * entry and the epoch that tells whether Redis still holds the index.
 * The index only names candidates; the cold store decides delivery.
 * Not here: the handle (snap/hot_store.h), ids (snap/hot_ids.h). */
#ifndef SNAP_HOT_INBOX_H
#define SNAP_HOT_INBOX_H

#include <stddef.h>
#include <stdint.h>
#include "snap/err.h"
#include "snap/config.h"

struct hot_store; /* snap/hot_store.h */

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

/* The epoch of Redis's data (see hot_inbox.c): SNAP_ENOTFOUND when unset.
 * out holds cap bytes. hot_epoch_set() sets it only when it is unset. */
int hot_epoch_get(struct hot_store *h, char *out, size_t cap, struct snap_err *err);
int hot_epoch_set(struct hot_store *h, const char *value, struct snap_err *err);

#endif
