/* fetch.h: the parts of the fetch service — its handlers, the batcher that
 * takes inboxes (reads.c) and the retry of cold-store expiries
 * (expire_retry.c) — and the state they share (ctx->data). */
#ifndef FETCH_H
#define FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "snap/batcher.h"
#include "snap/hot_store.h"
#include "snap/service.h"

struct expire_retry;
struct reads;

/* ctx->data of a running fetch service: made by fetch_start (main.c). */
struct fetch_state {
    struct expire_retry *retry;
    struct reads *reads;
};

/* GET /chats/{username}: takes every unexpired message of the inbox (each
 * exactly once across all instances), expires them in the cold store, and
 * returns them oldest first. */
void fetch_chats_read(struct http_req *r);

/* GET /chat/{id}: the admin lookup of any message, from the cold store. */
void fetch_chat_lookup(struct http_req *r);

/* One inbox read on its way through the batcher; lives on the request
 * thread's stack. The caller sets user; reads_take() fills the rest. */
struct read_job {
    struct batch_job base; /* first: the batcher's queue link and wake-up */
    const char *user;      /* borrowed until reads_take returns           */
    int rc;                /* SNAP_OK: msgs holds what was taken          */
    struct snap_err err;
    struct hot_msg_list msgs; /* the caller's: hot_msg_list_free()           */
    size_t n_expired;
};

/* The read batcher (reads.c): one thread takes the inboxes of every queued
 * read in one Redis round trip, expires what they held in the cold store in
 * one commit, then wakes the readers. */
struct reads *reads_start(struct snap_ctx *ctx, struct expire_retry *retry, struct snap_err *err);
void reads_stop(struct reads *rd); /* serves what is queued first; NULL is fine */
int reads_take(struct reads *rd, struct read_job *job);

/* The expiry-retry worker (expire_retry.c): a thread that keeps applying
 * cold-store expiry updates that failed at read time. */
struct expire_retry *expire_retry_start(struct snap_ctx *ctx, struct snap_err *err);
void expire_retry_stop(struct expire_retry *er); /* NULL is fine */

/* Hands over expiry updates (ids read at at_ms) that could not be applied
 * now. They go to the shared Redis queue (through hot, the caller's
 * connection); if Redis refuses too, they are kept in this process until
 * the worker gets them through. Never drops. */
void expire_retry_defer(struct expire_retry *er, struct hot_store *hot, const int64_t *ids,
                        size_t n, int64_t at_ms, const char *request_id);

#endif
