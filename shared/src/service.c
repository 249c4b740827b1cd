/* service.c: the life of one snaptext service process, shared by all three.
 *
 * config_load -> log_init -> check the Redis URL -> cold_open (retried while
 * the store is unreachable, so a service may start before its database) ->
 * def->start -> civetweb on SNAPTEXT_LISTEN -> "listening port=N" -> sigwait
 * for SIGTERM/SIGINT -> mg_stop (in-flight requests finish) -> def->stop ->
 * close stores -> exit 0. Each civetweb worker thread owns a struct
 * snap_worker (its Redis connection), made in init_thread and freed in
 * exit_thread.
 * Not here: routing and replies (http.c), what the routes do (services/). */
#include "snap/service.h"

#include <civetweb.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"

#define COLD_OPEN_RETRY_MS 1000

size_t service_route_index(const struct snap_ctx *ctx, const struct http_route *route)
{
    if (!route || route < ctx->def->routes || route >= ctx->def->routes + ctx->def->nroutes)
        return ctx->def->nroutes;
    return (size_t)(route - ctx->def->routes);
}

static void *worker_init(const struct mg_context *mg, int thread_type)
{
    if (thread_type != 1) return NULL; /* only request workers talk to Redis */
    struct snap_ctx *ctx = mg_get_user_data(mg);
    if (ctx->def->flags & SERVICE_NO_STORES) return NULL;
    struct snap_worker *w = calloc(1, sizeof *w);
    if (!w) {
        log_event(SNAP_LOG_ERROR, NULL, "worker", "out of memory for a worker");
        return NULL;
    }
    struct snap_err err;
    w->hot = hot_new(&ctx->cfg, &err);
    if (!w->hot) log_event(SNAP_LOG_ERROR, NULL, "worker", "redis handle: %s", err.msg);
    return w;
}

static void worker_exit(const struct mg_context *mg, int thread_type, void *p)
{
    (void)mg;
    (void)thread_type;
    struct snap_worker *w = p;
    if (!w) return;
    hot_free(w->hot);
    free(w);
}

static int civetweb_log(const struct mg_connection *conn, const char *message)
{
    (void)conn;
    log_event(SNAP_LOG_WARN, NULL, "civetweb", "%s", message);
    return 1; /* handled: civetweb prints nothing itself */
}

/* "METHOD path" labels for the metrics, one per route. Owned by the caller:
 * free each string, then the array. */
static char **route_names_new(const struct service_def *def)
{
    char **names = calloc(def->nroutes ? def->nroutes : 1, sizeof *names);
    if (!names) return NULL;
    for (size_t i = 0; i < def->nroutes; i++) {
        size_t n = strlen(def->routes[i].method) + strlen(def->routes[i].path) + 2;
        names[i] = malloc(n);
        if (!names[i]) {
            for (size_t j = 0; j < i; j++) free(names[j]);
            free(names);
            return NULL;
        }
        snprintf(names[i], n, "%s %s", def->routes[i].method, def->routes[i].path);
    }
    return names;
}

static void route_names_free(char **names, size_t n)
{
    if (!names) return;
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* 0 when the store is open, 1 when a stop signal came while waiting for
 * it, -1 when it cannot be used at all. */
static int cold_open_retrying(struct snap_ctx *ctx, const sigset_t *stop_set)
{
    struct snap_err err;
    for (unsigned attempt = 1;; attempt++) {
        int rc = cold_open(ctx->cfg.store_url, &ctx->cold, &err);
        if (rc == SNAP_OK) {
            log_event(SNAP_LOG_INFO, NULL, "start", "cold store ready (driver %s)",
                      cold_driver_name(ctx->cold));
            return 0;
        }
        if (rc != SNAP_EUNAVAIL) {
            log_event(SNAP_LOG_ERROR, NULL, "start", "SNAPTEXT_STORE cannot be used: %s", err.msg);
            return -1;
        }
        if (attempt == 1 || attempt % 10 == 0)
            log_event(SNAP_LOG_WARN, NULL, "start",
                      "cold store unreachable (attempt %u), retrying every %d ms: %s", attempt,
                      COLD_OPEN_RETRY_MS, err.msg);
        struct timespec ts = {COLD_OPEN_RETRY_MS / 1000, (COLD_OPEN_RETRY_MS % 1000) * 1000000L};
        if (sigtimedwait(stop_set, NULL, &ts) > 0) return 1;
    }
}

/* mg_set_auth_handler hook: civetweb's own access check lets everything
 * through to the dispatcher, which does the real one. */
static int civetweb_grant(struct mg_connection *conn, void *cbdata)
{
    (void)conn;
    (void)cbdata;
    return 1;
}

int service_run(const struct service_def *def)
{
    struct snap_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.def = def;
    char msg[300];
    if (config_load(&ctx.cfg, def->default_port, msg, sizeof msg) != 0) {
        fprintf(stderr, "%s: %s\n", def->name, msg);
        return 1;
    }

    /* Block the stop signals before any thread exists (log_init starts the
     * log flusher; civetweb its workers): every thread inherits the mask,
     * so only the main thread's sigwait ever takes SIGTERM/SIGINT, and a
     * second signal during the drain cannot end the process. */
    sigset_t stop_set;
    sigemptyset(&stop_set);
    sigaddset(&stop_set, SIGTERM);
    sigaddset(&stop_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_set, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_init(def->name, ctx.cfg.log_level);

    int exit_code = 1;
    char **route_names = NULL;
    struct mg_context *mg = NULL;
    int started = 0, lib_inited = 0;

    struct snap_err err;
    int stores = !(def->flags & SERVICE_NO_STORES);

    route_names = route_names_new(def);
    if (!route_names) goto done;
    ctx.metrics = metrics_new(def->name, (const char *const *)route_names, def->nroutes);
    if (!ctx.metrics) goto done;
    int opened = stores ? cold_open_retrying(&ctx, &stop_set) : 0;
    if (opened != 0) {
        if (opened == 1) exit_code = 0; /* asked to stop while waiting: a clean stop */
        goto done;
    }
    if (def->start && def->start(&ctx, &err) != 0) {
        log_event(SNAP_LOG_ERROR, NULL, "start", "%s", err.msg);
        goto done;
    }
    started = 1;

    char ports[96], threads[16];
    snprintf(ports, sizeof ports, "%s:%d", ctx.cfg.listen_host, ctx.cfg.listen_port);
    snprintf(threads, sizeof threads, "%d", ctx.cfg.threads);
    const char *options[] = {"listening_ports",
                             ports,
                             "num_threads",
                             threads,
                             "enable_keep_alive",
                             "yes",
                             "keep_alive_timeout_ms",
                             "15000",
                             "request_timeout_ms",
                             "10000",
                             "tcp_nodelay",
                             "1",
                             "decode_url",
                             "no", /* the dispatcher decodes path parameters itself */
                             "max_request_size",
                             "16384", /* request line + headers */
                             NULL};
    struct mg_callbacks cb;
    memset(&cb, 0, sizeof cb);
    cb.init_thread = worker_init;
    cb.exit_thread = worker_exit;
    cb.log_message = civetweb_log;
    cb.http_error = http_civetweb_error;

    mg_init_library(0);
    lib_inited = 1;
    char start_err[256] = "";
    unsigned start_code = 0;
    struct mg_error_data edata = {&start_code, start_err, sizeof start_err};
    struct mg_init_data init = {&cb, &ctx, options};
    mg = mg_start2(&init, &edata);
    if (!mg) {
        log_event(SNAP_LOG_ERROR, NULL, "start", "cannot listen on %s: %s", ports,
                  start_err[0] ? start_err : "unknown civetweb error");
        goto done;
    }
    mg_set_request_handler(mg, "/", http_dispatch, &ctx);
    /* Authorization is the dispatcher's (bearer tokens, auth.h). Without a
     * handler of its own, civetweb looks for a .htpasswd file beside every
     * request path: a failed stat(2) per request. */
    mg_set_auth_handler(mg, "/", civetweb_grant, NULL);

    struct mg_server_port sp[4];
    int n = mg_get_server_ports(mg, 4, sp);
    log_event(SNAP_LOG_INFO, NULL, "start", "listening port=%d threads=%d auth=%s",
              n > 0 ? sp[0].port : ctx.cfg.listen_port, ctx.cfg.threads,
              ctx.cfg.auth == SNAP_AUTH_OPEN ? "open" : "required");

    int sig = 0;
    while (sigwait(&stop_set, &sig) != 0) {
    }
    if (ctx.cfg.drain_ms > 0) {
        ctx.draining = 1;
        log_event(SNAP_LOG_INFO, NULL, "stop", "signal %d: draining for %ld ms", sig,
                  ctx.cfg.drain_ms);
        /* A second stop signal (an impatient operator, an orchestrator that
         * repeats itself) is taken here and logged; the drain goes on. */
        int64_t end_ns = clock_mono_ns() + (int64_t)ctx.cfg.drain_ms * 1000000;
        for (int64_t left; (left = end_ns - clock_mono_ns()) > 0;) {
            struct timespec ts = {(time_t)(left / 1000000000), (long)(left % 1000000000)};
            int again = sigtimedwait(&stop_set, NULL, &ts);
            if (again > 0)
                log_event(SNAP_LOG_INFO, NULL, "stop",
                          "signal %d again: already draining, stopping when the drain ends", again);
        }
    }
    log_event(SNAP_LOG_INFO, NULL, "stop", "signal %d: finishing in-flight requests", sig);
    exit_code = 0;

done:
    if (mg) mg_stop(mg); /* waits for the workers; exit_thread frees them */
    if (lib_inited) mg_exit_library();
    if (started && def->stop) def->stop(&ctx);
    cold_close(ctx.cold);
    metrics_free(ctx.metrics);
    route_names_free(route_names, def->nroutes);
    if (exit_code == 0) log_event(SNAP_LOG_INFO, NULL, "stop", "stopped cleanly");
    return exit_code;
}
