/* fetch.h: the parts of the fetch service — its handlers and the batcher
 * that claims inboxes (reads.c) — and the state they share (ctx->data). */
#ifndef FETCH_H
#define FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "snap/batcher.h"
#include "snap/cold_store.h"
#include "snap/hot_inbox.h"
#include "snap/hot_store.h"
#include "snap/service.h"

struct reads;

/* ctx->data of a running fetch service: made by fetch_start (main.c). */
struct fetch_state {
    struct reads *reads;
    _Atomic long waiting; /* reads waiting now (?wait), at most SNAPTEXT_MAX_WAITERS */
};

/* GET /chats/{username}: claims the oldest unexpired messages of the inbox
 * (each exactly once across all instances) and returns them oldest first;
 * with an Idempotency-Key seen before, returns what that read claimed. */
void fetch_chats_read(const struct http_req *r, struct http_res *res);

/* GET /chat/{id}: the admin lookup of any message, from the cold store. */
void fetch_chat_lookup(const struct http_req *r, struct http_res *res);

/* The sender's receipts (receipts.c): GET /chat/{id}/status, and
 * DELETE /chat/{id} (unsend while unread: 204, else 409). */
void fetch_chat_status(const struct http_req *r, struct http_res *res);
void fetch_chat_unsend(const struct http_req *r, struct http_res *res);

/* One inbox read on its way through the batcher; lives on the request
 * thread's stack. The caller sets user, limit, token and deadline;
 * reads_take() fills the rest. */
struct read_job {
    struct batch_job base; /* first: the batcher's queue link and wake-up      */
    const char *user;      /* borrowed until reads_take returns                */
    size_t limit;          /* at most this many messages                       */
    const char *token;     /* the claim's token (cold_store.h), borrowed; NULL
                              for a read without an Idempotency-Key           */
    int64_t deadline;      /* deadline.h time; 0: none                         */
    int rc;                /* SNAP_OK: msgs holds what this read claimed       */
    struct snap_err err;
    const char *store;     /* on failure: "redis" or "cold"                    */
    struct hot_msg_list msgs; /* the caller's: hot_msg_list_free()            */
    int more;              /* 1: the inbox held more than limit entries        */
    size_t n_expired;      /* expired entries seen (and dropped from the index) */
};

/* The read batcher (reads.c): one thread peeks at the inboxes of every
 * queued read in one Redis round trip, claims the candidates in the cold
 * store in one commit, drops what it settled from the index, then wakes
 * the readers. */
struct reads *reads_start(struct snap_ctx *ctx, struct snap_err *err);
void reads_stop(struct reads *rd); /* serves what is queued first; NULL is fine */
int reads_take(struct reads *rd, struct read_job *job);

#endif
