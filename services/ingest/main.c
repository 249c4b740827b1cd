/* ingest: the service that accepts snaps (POST /chat).
 * Its whole surface is the route table below; the handler is in handlers.c,
 * the thread that stores sends in batches in pipeline.c, the thread that
 * keeps Redis's hot index complete in repair.c, everything else (config,
 * stores, HTTP, stop) in shared/ (service.h). */
#include <stdlib.h>

#include "ingest.h"
#include "snap/hot_store.h"

static const struct http_route routes[] = {
    {"POST", "/chat", ingest_chat_send, HTTP_AUTH_SENDER, HTTP_BODY_JSON},
};

/* hot_on_connection_lost hook: any of this process's Redis connections. */
static void on_lost(int64_t since_ms, void *arg)
{
    repair_note_lost(arg, since_ms);
}

static int ingest_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct ingest_state *st = calloc(1, sizeof *st);

    if (st == NULL) return snap_err_set(err, SNAP_ERR, "out of memory for the ingest state");
    st->repair = repair_start(ctx, err);
    if (st->repair == NULL) {
        free(st);
        return SNAP_ERR;
    }
    hot_on_connection_lost(on_lost, st->repair);
    if (pipeline_start(ctx, st->repair, &st->pipeline, err) != SNAP_OK) {
        hot_on_connection_lost(NULL, NULL);
        repair_stop(st->repair);
        free(st);
        return SNAP_ERR;
    }
    ctx->data = st;
    return SNAP_OK;
}

static void ingest_stop(struct snap_ctx *ctx)
{
    struct ingest_state *st = ctx->data;

    if (st == NULL) return;
    pipeline_stop(st->pipeline); /* finishes every queued send first */
    hot_on_connection_lost(NULL, NULL);
    repair_stop(st->repair);
    free(st);
    ctx->data = NULL;
}

static const struct service_def ingest = {
    .name = "ingest",
    .default_port = 8082,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .start = ingest_start,
    .stop = ingest_stop,
};

int main(void)
{
    return service_run(&ingest);
}
