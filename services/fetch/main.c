/* fetch: the service that delivers snaps (GET /chats/{username}, read-once)
 * and the admin lookup (GET /chat/{id}). Its surface is the route table
 * below; handlers are in handlers.c (reads) and receipts.c (status and
 * unsend), the batched inbox claims in reads.c,
 * everything else in shared/ (service.h). */
#include <stdlib.h>

#include "fetch.h"

static const struct http_route routes[] = {
    {"GET", "/chats/{}", fetch_chats_read, HTTP_AUTH_OWNER, 0},
    {"GET", "/chat/{}", fetch_chat_lookup, HTTP_AUTH_ADMIN, 0},
    {"DELETE", "/chat/{}", fetch_chat_unsend, HTTP_AUTH_USER, 0},
    {"GET", "/chat/{}/status", fetch_chat_status, HTTP_AUTH_USER, 0},
};

/* Starts the read batcher; ctx->data is the struct fetch_state. */
static int fetch_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct fetch_state *fs = calloc(1, sizeof *fs);

    if (fs == NULL) return snap_err_set(err, SNAP_ERR, "out of memory for the fetch state");
    fs->reads = reads_start(ctx, err);
    if (fs->reads == NULL) {
        free(fs);
        return SNAP_ERR;
    }
    ctx->data = fs;
    return SNAP_OK;
}

static void fetch_stop(struct snap_ctx *ctx)
{
    struct fetch_state *fs = ctx->data;

    if (fs == NULL) return;
    reads_stop(fs->reads); /* serves what is queued first */
    free(fs);
    ctx->data = NULL;
}

static const struct service_def fetch = {
    .name = "fetch",
    .default_port = 8083,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .start = fetch_start,
    .stop = fetch_stop,
};

int main(void)
{
    return service_run(&fetch);
}
