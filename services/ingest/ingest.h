/* ingest.h: the ingest service's parts — the POST /chat handler, the
 * pipeline thread that stores what it accepts, and the repair thread that
 * keeps Redis's hot index complete — and the state they share. */
#ifndef INGEST_H
#define INGEST_H

#include <stdint.h>

#include "snap/batcher.h"
#include "snap/cold_store.h"
#include "snap/service.h"

struct pipeline;
struct repair;

/* ctx->data of a running ingest service (main.c). */
struct ingest_state {
    struct repair *repair;
    struct pipeline *pipeline;
};

/* POST /chat: validates, honours Idempotency-Key, hands the message to the
 * pipeline, then answers 201 {"id"} + Location or the failure. */
void ingest_chat_send(const struct http_req *r, struct http_res *res);

/* One send on its way through the pipeline; lives on the request thread's
 * stack. The caller fills msg (all but id) and request_id; the pipeline
 * fills the rest. */
struct send_job {
    struct batch_job base;  /* first: the batcher's queue link and wake-up      */
    struct cold_msg msg;    /* msg.text is borrowed until pipeline_send returns */
    const char *request_id; /* for the pipeline's log lines                     */
    int64_t deadline;       /* deadline.h time; 0: none                         */
    int rc;                 /* SNAP_OK: durable and deliverable, msg.id set;
                               SNAP_EEXIST: msg.idem is another message's;
                               SNAP_EFULL: the inbox is full                    */
    const char *store;      /* on failure: "redis" or "cold" ...                */
    const char *what;       /* ... and what it was doing, for the reply         */
    struct snap_err err;
    int attempts;
};

/* The send pipeline (pipeline.c): one thread stores queued sends in
 * batches. pipeline_stop() lets it finish every queued send first. */
int pipeline_start(struct snap_ctx *ctx, struct repair *repair, struct pipeline **out,
                   struct snap_err *err);
void pipeline_stop(struct pipeline *p); /* NULL is fine */

/* Queues job and waits until it is stored or has failed; returns job->rc. */
int pipeline_send(struct pipeline *p, struct send_job *job);

/* The repair (repair.c): a thread that puts back into Redis what the hot
 * index may have lost — after a lost connection, everything created since
 * shortly before it; after Redis came back empty, everything claimable. */
struct repair *repair_start(struct snap_ctx *ctx, struct snap_err *err);
void repair_stop(struct repair *rp); /* NULL is fine */

/* Asks for a repair of what was created at since_ms or later. Never blocks;
 * safe from any thread, also from hot_on_connection_lost's hook. */
void repair_note_lost(struct repair *rp, int64_t since_ms);

/* How many losses were noted so far: the pipeline re-checks the id counter
 * whenever this moves (Redis may have come back with an older counter). */
unsigned repair_losses(struct repair *rp);

#endif
