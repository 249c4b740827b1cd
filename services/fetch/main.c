/* fetch: the service that delivers snaps (GET /chats/{username}, read-once)
 * and the admin lookup (GET /chat/{id}). Its surface is the route table
 * below; handlers are in handlers.c, the batched inbox reads in reads.c,
 * the retry of cold-store expiry updates in expire_retry.c, everything else
 * in shared/ (service.h). */
#include <stdlib.h>

#include "fetch.h"

static const struct http_route routes[] = {
    {"GET", "/chats/{}", fetch_chats_read, HTTP_AUTH_OWNER, 0},
    {"GET", "/chat/{}", fetch_chat_lookup, HTTP_AUTH_ADMIN, 0},
};

/* Starts the two background threads; ctx->data is their struct fetch_state. */
static int fetch_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct fetch_state *fs = calloc(1, sizeof *fs);

    if (fs == NULL) return snap_err_set(err, SNAP_ERR, "out of memory for the fetch state");
    fs->retry = expire_retry_start(ctx, err);
    if (fs->retry != NULL) fs->reads = reads_start(ctx, fs->retry, err);
    if (fs->reads == NULL) {
        expire_retry_stop(fs->retry);
        free(fs);
        return SNAP_ERR;
    }
    ctx->data = fs;
    return SNAP_OK;
}

/* Reads first: what they still defer goes to the retry worker, which then
 * pushes anything it could not apply to Redis as it stops. */
static void fetch_stop(struct snap_ctx *ctx)
{
    struct fetch_state *fs = ctx->data;

    if (fs == NULL) return;
    reads_stop(fs->reads);
    expire_retry_stop(fs->retry);
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
