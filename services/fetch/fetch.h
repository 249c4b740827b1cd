/* fetch.h: the handlers and the background retry worker of the fetch
 * service, for its route table. */
#ifndef FETCH_H
#define FETCH_H

#include <stddef.h>
#include <stdint.h>

#include "snap/service.h"

/* GET /chats/{username}: takes every unexpired message of the inbox (each
 * exactly once across all instances), expires them in the cold store, and
 * returns them oldest first. */
void fetch_chats_read(struct http_req *r);

/* GET /chat/{id}: the admin lookup of any message, from the cold store. */
void fetch_chat_lookup(struct http_req *r);

/* The expiry-retry worker (expire_retry.c): a thread that keeps applying
 * cold-store expiry updates that failed at read time. Started and stopped
 * with the service (service_def.start / .stop); ctx->data holds it. */
int expire_retry_start(struct snap_ctx *ctx, struct snap_err *err);
void expire_retry_stop(struct snap_ctx *ctx);

/* Hands over expiry updates (ids read at at_ms) that could not be applied
 * now. They go to the shared Redis queue; if Redis refuses too, they are
 * kept in this process until the worker gets them through. Never drops. */
void expire_retry_defer(struct snap_ctx *ctx, struct hot_store *hot, const int64_t *ids,
                        size_t n, int64_t at_ms, const char *request_id);

#endif
