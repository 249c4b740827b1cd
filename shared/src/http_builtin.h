/* http_builtin.h: private to shared/src — the routes every service answers
 * without a route table entry (/healthz, /readyz, /metrics), for the
 * dispatcher (http.c). */
#ifndef SNAP_HTTP_BUILTIN_H
#define SNAP_HTTP_BUILTIN_H

#include <stddef.h>

#include "snap/http.h"

enum http_builtin {
    HTTP_BUILTIN_NONE,
    HTTP_BUILTIN_HEALTHZ,
    HTTP_BUILTIN_READYZ,
    HTTP_BUILTIN_METRICS
};

/* Which built-in route path[0..len) is, HTTP_BUILTIN_NONE for none. */
enum http_builtin http_builtin_of(const char *path, size_t len);

/* "/healthz", "/readyz", "/metrics" (NULL for HTTP_BUILTIN_NONE). */
const char *http_builtin_path(enum http_builtin b);

/* Answers GET of built-in b into res: liveness, readiness (Redis and the
 * cold store pinged, unless the service opens none) or the Prometheus text. */
void http_builtin_serve(const struct http_req *r, enum http_builtin b, struct http_res *res);

#endif
