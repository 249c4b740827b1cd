/* service.h: the life of one snaptext service process — configuration,
 * logging, stores, the civetweb server with its route table, clean stop.
 *
 * Each services/<name>/main.c fills a struct service_def and calls
 * service_run(); everything they have in common lives here, so a service
 * is its routes and handlers and nothing else.
 * Order: config_load -> log_init -> cold_open -> def->start -> listen
 * (logs "listening port=N") -> wait for SIGTERM/SIGINT -> drain for
 * SNAPTEXT_DRAIN_MS (still serving, but /readyz answers 503 and replies close
 * their connections, so the load balancer stops sending here) -> stop
 * accepting, finish in-flight requests -> def->stop -> close stores -> exit 0. */
#ifndef SNAP_SERVICE_H
#define SNAP_SERVICE_H

#include <stddef.h>
#include "snap/config.h"
#include "snap/err.h"
#include "snap/http.h"

struct cold_store;
struct hot_store;
struct metrics;

/* Per worker thread (civetweb thread pointer): what one thread owns. */
struct snap_worker {
    struct hot_store *hot;      /* this thread's Redis connection          */
};

/* Process-wide state, read-only for handlers after start. */
struct snap_ctx {
    const struct service_def *def;
    struct snap_config cfg;
    struct cold_store *cold;    /* thread-safe                             */
    struct metrics *metrics;    /* thread-safe                             */
    void *data;                 /* the service's own state (def->start)    */
    volatile int draining;      /* set on SIGTERM: /readyz answers 503 and
                                   every reply closes its connection         */
};

/* service_def.flags */
#define SERVICE_NO_STORES 0x1u /* opens neither Redis nor the cold store:
                                  ctx->cold and every worker's hot are NULL,
                                  and /readyz is ready while it serves   */

struct service_def {
    const char *name;                 /* "ingest": logs, metrics           */
    int default_port;                 /* SNAPTEXT_LISTEN default           */
    const struct http_route *routes;
    size_t nroutes;
    /* Optional. Runs after the stores are open, before listening. A non-zero
     * return stops the service (err is logged). May set ctx->data. */
    int (*start)(struct snap_ctx *ctx, struct snap_err *err);
    /* Optional. Runs after the server stopped; releases ctx->data. */
    void (*stop)(struct snap_ctx *ctx);
    unsigned flags;                   /* SERVICE_NO_STORES                 */
};

/* Runs the service until SIGTERM/SIGINT. Returns the process exit code:
 * 0 after a clean stop, 1 on a bad setting or a failed start. */
int service_run(const struct service_def *def);

/* Index of route in def->routes, for metrics. */
size_t service_route_index(const struct snap_ctx *ctx, const struct http_route *route);

#endif
