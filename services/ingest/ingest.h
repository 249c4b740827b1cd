/* ingest.h: the ingest service's parts — the POST /chat handler and the
 * pipeline thread that stores what it accepts. */
#ifndef INGEST_H
#define INGEST_H

#include "snap/batcher.h"
#include "snap/cold_store.h"
#include "snap/service.h"

struct pipeline;

/* POST /chat: validates, hands the message to the pipeline (id, durable
 * record, hot copy), then answers 201 {"id"} + Location or the failure. */
void ingest_chat_send(struct http_req *r);

/* One send on its way through the pipeline; lives on the request thread's
 * stack. The caller fills msg (all but id) and request_id; the pipeline
 * fills the rest. */
struct send_job {
    struct batch_job base;  /* first: the batcher's queue link and wake-up      */
    struct cold_msg msg;    /* msg.text is borrowed until pipeline_send returns */
    const char *request_id; /* for the pipeline's log lines                     */
    int rc;                 /* SNAP_OK: stored and deliverable, msg.id is set   */
    const char *store;      /* on failure: "redis" or "cold" ...                */
    const char *what;       /* ... and what it was doing, for the reply         */
    struct snap_err err;
    int attempts;
};

/* service_def hooks: start the pipeline thread (ctx->data) and, at stop,
 * let it finish every queued send before it ends. */
int pipeline_start(struct snap_ctx *ctx, struct snap_err *err);
void pipeline_stop(struct snap_ctx *ctx);

/* Queues job and waits until it is stored or has failed; returns job->rc. */
int pipeline_send(struct pipeline *p, struct send_job *job);

#endif
