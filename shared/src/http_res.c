/* http_res.c: a handler's answer before it is rendered (struct http_res in
 * http.h): the setters a handler calls, which own the body from then on.
 * Pure data, no civetweb, so handlers can be unit-tested on a fake request.
 * Not here: turning an answer into bytes on the connection, its log line
 * and metrics (http.c, render_answer). */
#include "snap/http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 0 when res is still free; otherwise notes the dropped status, -1. */
static int claim(struct http_res *res, int status)
{
    if (res->kind == HTTP_RES_NONE) return 0;
    res->dropped = status;
    return -1;
}

int http_res_json(struct http_res *res, int status, cJSON *body, int complete)
{
    if (body == NULL || !complete) {
        cJSON_Delete(body);
        return http_res_error(res, HTTP_E_INTERNAL, "out of memory");
    }
    if (claim(res, status) != 0) {
        cJSON_Delete(body);
        return -1;
    }
    res->kind = HTTP_RES_JSON;
    res->status = status;
    res->json = body;
    return 0;
}

int http_res_raw(struct http_res *res, int status, const char *content_type, const char *body,
                 size_t len)
{
    if (claim(res, status) != 0) return -1;
    res->kind = HTTP_RES_RAW;
    res->status = status;
    res->content_type = content_type;
    res->raw = body;
    res->raw_len = len;
    return 0;
}

int http_res_raw_take(struct http_res *res, int status, const char *content_type, char *body,
                      size_t len)
{
    if (http_res_raw(res, status, content_type, body, len) != 0) {
        free(body);
        return -1;
    }
    res->raw_owned = body;
    return 0;
}

int http_res_header(struct http_res *res, const char *fmt, ...)
{
    size_t room = sizeof res->headers - res->headers_len;
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(res->headers + res->headers_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        res->headers[res->headers_len] = '\0';
        return -1;
    }
    res->headers_len += (size_t)n;
    return 0;
}

static int set_error_v(struct http_res *res, enum http_error e, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static int set_error_v(struct http_res *res, enum http_error e, const char *fmt, va_list ap)
{
    if ((int)e < 0 || e >= HTTP_E__COUNT) e = HTTP_E_INTERNAL;
    if (claim(res, http_error_status(e)) != 0) return -1;
    res->kind = HTTP_RES_ERROR;
    res->status = http_error_status(e);
    res->error = e;
    (void)vsnprintf(res->message, sizeof res->message, fmt, ap); /* a cut sentence is still fine */
    return 0;
}

int http_res_error(struct http_res *res, enum http_error e, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = set_error_v(res, e, fmt, ap);
    va_end(ap);
    return rc;
}

int http_res_store_error(struct http_res *res, const char *store, const char *what,
                         const struct snap_err *err)
{
    int unavailable = err != NULL && (err->code == SNAP_EUNAVAIL || err->code == SNAP_ETIMEOUT);
    int rc = unavailable ? http_res_error(res, HTTP_E_UNAVAILABLE,
                                          "storage is unavailable while %s; retry in a moment", what)
                         : http_res_error(res, HTTP_E_INTERNAL, "internal error while %s", what);

    if (rc != 0) return rc;
    (void)snprintf(res->store, sizeof res->store, "%s", store);
    (void)snprintf(res->what, sizeof res->what, "%s", what);
    if (err != NULL)
        res->cause = *err;
    else
        (void)snap_err_set(&res->cause, SNAP_ERR, "no detail");
    return 0;
}

void http_res_cleanup(struct http_res *res)
{
    if (res == NULL) return;
    cJSON_Delete(res->json);
    res->json = NULL;
    free(res->raw_owned);
    res->raw_owned = NULL;
    res->raw = NULL;
}
