/* http_builtin.c: the routes the dispatcher answers itself, in every
 * service: GET /healthz (the process runs), GET /readyz (it can serve:
 * not stopping, and Redis and the cold store answer a ping, unless the
 * service opens no store) and GET /metrics (metrics.c's Prometheus text).
 * Not here: matching them and refusing other methods (http.c). */
#include "http_builtin.h"

#include <stdlib.h>
#include <string.h>

#include "snap/cold_store.h"
#include "snap/err.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/service.h"

static const char *const builtin_paths[] = {NULL, "/healthz", "/readyz", "/metrics"};

enum http_builtin http_builtin_of(const char *path, size_t len)
{
    int b;
    for (b = HTTP_BUILTIN_HEALTHZ; b <= HTTP_BUILTIN_METRICS; b++)
        if (strlen(builtin_paths[b]) == len && memcmp(path, builtin_paths[b], len) == 0)
            return (enum http_builtin)b;
    return HTTP_BUILTIN_NONE;
}

const char *http_builtin_path(enum http_builtin b)
{
    return (int)b > HTTP_BUILTIN_NONE && b <= HTTP_BUILTIN_METRICS ? builtin_paths[b] : NULL;
}

/* {"status": state[, "redis": ..., "store": ...]}; a 503 carries Retry-After. */
static void status_object(struct http_res *res, int status, const char *state, const char *redis,
                          const char *store)
{
    cJSON *obj = cJSON_CreateObject();
    int ok = obj != NULL && cJSON_AddStringToObject(obj, "status", state) != NULL &&
             (redis == NULL || cJSON_AddStringToObject(obj, "redis", redis) != NULL) &&
             (store == NULL || cJSON_AddStringToObject(obj, "store", store) != NULL);

    if (status == 503) (void)http_res_header(res, "Retry-After: 1\r\n");
    (void)http_res_json(res, status, obj, ok);
}

void http_builtin_serve(const struct http_req *r, enum http_builtin b, struct http_res *res)
{
    struct snap_err err;
    int redis_ok, store_ok;
    char *text = NULL;
    size_t len = 0;

    switch (b) {
    case HTTP_BUILTIN_HEALTHZ:
        status_object(res, 200, "ok", NULL, NULL);
        return;
    case HTTP_BUILTIN_READYZ:
        if (r->ctx != NULL && r->ctx->draining) {
            status_object(res, 503, "stopping", NULL, NULL);
            return;
        }
        if (r->ctx != NULL && r->ctx->def != NULL && (r->ctx->def->flags & SERVICE_NO_STORES)) {
            status_object(res, 200, "ready", NULL, NULL);
            return;
        }
        memset(&err, 0, sizeof err);
        redis_ok = r->hot != NULL && hot_ping(r->hot, &err) == 0;
        if (!redis_ok)
            log_event(SNAP_LOG_WARN, r->request_id, "readyz", "redis: %s",
                      r->hot ? err.msg : "no handle for this thread");
        memset(&err, 0, sizeof err);
        store_ok = r->ctx != NULL && r->ctx->cold != NULL && cold_ping(r->ctx->cold, &err) == 0;
        if (!store_ok)
            log_event(SNAP_LOG_WARN, r->request_id, "readyz", "store: %s",
                      r->ctx && r->ctx->cold ? err.msg : "not open");
        if (redis_ok && store_ok)
            status_object(res, 200, "ready", NULL, NULL);
        else
            status_object(res, 503, "unavailable", redis_ok ? "ok" : "down",
                                store_ok ? "ok" : "down");
        return;
    case HTTP_BUILTIN_METRICS:
        if (metrics_render(r->ctx ? r->ctx->metrics : NULL, &text, &len) != 0) {
            (void)http_res_error(res, HTTP_E_INTERNAL, "metrics could not be rendered");
            return;
        }
        (void)http_res_raw_take(res, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
        return;
    case HTTP_BUILTIN_NONE:
        break;
    }
}
