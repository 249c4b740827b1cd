/* http.c: the one civetweb request handler every service installs — routing,
 * auth, reading the body — and the one place an answer (http_res.c) is
 * rendered.
 *
 * http_dispatch() takes a request through API.md's checks in their order:
 * built-in routes (http_builtin.c), then 404 (no route has this path), 405
 * with Allow, 401, 403, 413, 415 and 400 (the body is parsed by
 * json_strict.c), and only then calls the route's handler, which fills a
 * struct http_res. It owns everything in struct http_req, renders exactly
 * one reply (render_answer),
 * counts the request in the metrics and writes the access log line.
 * Request bodies are read into one buffer per worker thread of
 * SNAPTEXT_MAX_BODY_BYTES + 1 bytes; a declared length above the limit is
 * refused before anything is read.
 * Paths are matched on the raw request target, so civetweb must run with
 * decode_url=no: then "/chats/a%2Fb" reaches "/chats/{}" with the parameter
 * "a/b". With decoding left on, the dispatcher still works but cannot see
 * %2F (it says so once in the log).
 * Not here: what a route does (services/<name>/handlers.c), the JSON
 * grammar (json_strict.c), the built-in routes (http_builtin.c), starting
 * the server (service.c). */
#include "snap/http.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <civetweb.h>
#include <uuid/uuid.h>

#include "snap/auth.h"
#include "snap/clock.h"
#include "snap/deadline.h"
#include "snap/err.h"
#include "snap/fmt.h"
#include "snap/hot_store.h"
#include "snap/json_strict.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/percent.h"
#include "snap/service.h"

#include "http_builtin.h"

/* ---- the error table ----------------------------------------------------- */

#define HTTP_ERROR_STATUS(name, status, code) [name] = status,
#define HTTP_ERROR_CODE(name, status, code)   [name] = code,
static const int error_status[HTTP_E__COUNT] = {HTTP_ERRORS(HTTP_ERROR_STATUS)};
static const char *const error_code[HTTP_E__COUNT] = {HTTP_ERRORS(HTTP_ERROR_CODE)};
#undef HTTP_ERROR_STATUS
#undef HTTP_ERROR_CODE

int http_error_status(enum http_error e)
{
    return (int)e >= 0 && e < HTTP_E__COUNT ? error_status[e] : 500;
}

const char *http_error_code(enum http_error e)
{
    return (int)e >= 0 && e < HTTP_E__COUNT ? error_code[e] : "internal";
}

/* ---- percent-decoding ---------------------------------------------------- */

long http_percent_decode(const char *src, size_t len, char *dst, size_t dstlen)
{
    return percent_decode(src, len, dst, dstlen, 1); /* %00 too: param_len counts it */
}

/* 1 when every '%' in s[0..len) starts a well-formed escape. */
static int percent_well_formed(const char *s, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        if (s[i] != '%') continue;
        if (len - i < 3 || percent_hex_value(s[i + 1]) < 0 || percent_hex_value(s[i + 2]) < 0) return 0;
        i += 2;
    }
    return 1;
}

/* ---- replies ------------------------------------------------------------- */

/* 1 when the comma-separated header value holds token (any case). */
static int header_has_token(const char *value, const char *token)
{
    size_t tl = strlen(token);
    while (*value != '\0') {
        size_t n;
        while (*value == ' ' || *value == '\t' || *value == ',') value++;
        n = strcspn(value, ",");
        while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t')) n--;
        if (n == tl && strncasecmp(value, token, tl) == 0) return 1;
        value += strcspn(value, ",");
    }
    return 0;
}

/* 1 when civetweb will keep this connection open after the reply (its own
 * rule: the keep-alive option, then the client's Connection header, then
 * the HTTP version). */
static int keeps_alive(const struct http_req *r)
{
    /* The option is fixed when civetweb starts: looked up once. */
    static int enabled = -1; /* -1: not yet; a race only repeats the lookup */
    const char *conn_hdr, *ver = r->ri != NULL ? r->ri->http_version : NULL;

    if (__atomic_load_n(&enabled, __ATOMIC_RELAXED) < 0) {
        const char *opt = mg_get_option(mg_get_context(r->conn), "enable_keep_alive");
        __atomic_store_n(&enabled, opt != NULL && strcasecmp(opt, "yes") == 0, __ATOMIC_RELAXED);
    }
    if (!__atomic_load_n(&enabled, __ATOMIC_RELAXED)) return 0;
    conn_hdr = mg_get_header(r->conn, "Connection");
    if (conn_hdr != NULL) return header_has_token(conn_hdr, "keep-alive");
    return ver != NULL && strcmp(ver, "1.1") == 0;
}

/* 1 when the extra header lines set their own Cache-Control (static pages
 * do); every other reply gets "no-store". */
static int sets_cache_control(const char *headers)
{
    static const char name[] = "cache-control:";
    const char *p = headers;

    while (p != NULL && *p != '\0') {
        if (strncasecmp(p, name, sizeof name - 1) == 0) return 1;
        p = strchr(p, '\n');
        if (p != NULL) p++;
    }
    return 0;
}

/* "Date: Tue, 01 Dec 2026 10:15:00 GMT\r\n" into b, formatted once a
 * second per thread. */
static void put_date_line(struct fmt_buf *b)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static __thread time_t cached_at = (time_t)-1;
    static __thread char cached[48];
    static __thread size_t cached_len;
    time_t now = time(NULL);

    if (now != cached_at) {
        struct tm tm;
        struct fmt_buf c = fmt_buf_on(cached, sizeof cached);

        fmt_str(&c, "Date: ");
        if (gmtime_r(&now, &tm) != NULL && tm.tm_wday >= 0 && tm.tm_wday < 7 &&
            tm.tm_mon >= 0 && tm.tm_mon < 12) {
            fmt_mem(&c, days[tm.tm_wday], 3);
            fmt_str(&c, ", ");
            fmt_2d(&c, tm.tm_mday);
            fmt_char(&c, ' ');
            fmt_mem(&c, months[tm.tm_mon], 3);
            fmt_char(&c, ' ');
            fmt_dec(&c, (int64_t)tm.tm_year + 1900);
            fmt_char(&c, ' ');
            fmt_hms(&c, &tm);
            fmt_str(&c, " GMT");
        }
        fmt_str(&c, "\r\n");
        cached_len = c.len;
        cached_at = now;
    }
    fmt_mem(b, cached, cached_len);
}

#define REPLY_STACK 4096 /* replies up to this size are built on the stack */

/* Sends the whole reply (status line, headers, body) in one mg_write, so
 * a small reply is one TCP segment whatever the Nagle settings. The head
 * is appended without printf (fmt.h): it is built for every request. */
static int send_reply(struct http_req *r, int status, const char *content_type, const char *body,
                      size_t len, const char *headers, int force_close)
{
    char stack[REPLY_STACK], *out = stack;
    const char *reason, *conn_line = "", *cache;
    size_t xlen = headers ? strlen(headers) : 0, cap;
    int no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int is_head = r->ri != NULL && r->ri->request_method != NULL &&
                  strcmp(r->ri->request_method, "HEAD") == 0;
    int xcrlf = xlen >= 2 && headers[xlen - 2] == '\r' && headers[xlen - 1] == '\n';
    struct fmt_buf b;
    int rc = 0, whole = 1; /* whole: the reply is written from one buffer */

    if (r->status != 0) {
        log_event(SNAP_LOG_ERROR, r->request_id, "double_reply",
                  "bug: a second reply (%d) after %d was dropped", status, r->status);
        return -1;
    }
    if (r->ctx != NULL && r->ctx->draining)
        force_close = 1; /* stopping: let the proxy's pooled connections go */
    if (force_close) /* civetweb would otherwise wait to drain a refused body */
        mg_disable_connection_keep_alive(r->conn);
    if (force_close || !keeps_alive(r))
        conn_line = "Connection: close\r\n";
    else if (r->ri != NULL && r->ri->http_version != NULL &&
             strcmp(r->ri->http_version, "1.0") == 0)
        conn_line = "Connection: keep-alive\r\n";
    reason = mg_get_response_code_text(r->conn, status);
    cache = sets_cache_control(headers) ? "" : "Cache-Control: no-store\r\n";
    if (no_body) len = 0;
    if (xlen > 65536 || len > SIZE_MAX - 1024 - xlen) {
        log_event(SNAP_LOG_ERROR, r->request_id, "reply", "bug: response too large");
        return -1;
    }
    /* The fixed lines, the reason, content type and request id are short:
     * 1024 bytes cover them (a longer head is a bug, refused below). */
    cap = 1024 + xlen + (is_head ? 0 : len);
    if (cap > sizeof stack && (out = malloc(cap)) == NULL) {
        out = stack; /* out of memory: the head here, the rest in pieces below */
        whole = 0;
        cap = 1024;
    }
    b = fmt_buf_on(out, cap);
    fmt_str(&b, "HTTP/1.1 ");
    fmt_dec(&b, status);
    fmt_char(&b, ' ');
    fmt_str(&b, reason ? reason : "");
    fmt_str(&b, "\r\n");
    put_date_line(&b);
    fmt_str(&b, "Content-Type: ");
    fmt_str(&b, content_type);
    fmt_str(&b, "\r\n");
    if (!no_body) {
        fmt_str(&b, "Content-Length: ");
        fmt_dec(&b, (int64_t)len);
        fmt_str(&b, "\r\n");
    }
    fmt_str(&b, "X-Request-Id: ");
    fmt_str(&b, r->request_id);
    fmt_str(&b, "\r\n");
    fmt_str(&b, cache);
    fmt_str(&b, conn_line);
    if (b.len > 1024 - 4) {
        log_event(SNAP_LOG_ERROR, r->request_id, "reply", "bug: response head too long");
        if (out != stack) free(out);
        return -1;
    }
    if (is_head) len = 0; /* HEAD: the same head, no body */
    r->status = status;   /* from here on this request has its reply */
    if (whole) {
        fmt_mem(&b, headers, xlen);
        if (xlen > 0 && !xcrlf) fmt_str(&b, "\r\n");
        fmt_str(&b, "\r\n");
        fmt_mem(&b, body, len);
        if (b.full || mg_write(r->conn, out, b.len) != (int)b.len) rc = -1;
    } else if (mg_write(r->conn, out, b.len) != (int)b.len ||
               (xlen > 0 && mg_write(r->conn, headers, xlen) != (int)xlen) ||
               (xlen > 0 && !xcrlf && mg_write(r->conn, "\r\n", 2) != 2) ||
               mg_write(r->conn, "\r\n", 2) != 2 ||
               (len > 0 && mg_write(r->conn, body, len) != (int)len)) {
        rc = -1;
    }
    if (out != stack) free(out);
    if (rc != 0)
        log_event(SNAP_LOG_DEBUG, r->request_id, "reply", "client went away during the reply");
    return rc;
}

/* ---- routing ------------------------------------------------------------- */

/* The raw request target without its query string. */
static const char *request_path(const struct mg_request_info *ri, size_t *len)
{
    const char *p, *q;

    if (ri == NULL) return NULL;
    p = ri->local_uri_raw != NULL ? ri->local_uri_raw : ri->request_uri;
    if (p == NULL) return NULL;
    q = strchr(p, '?');
    *len = q != NULL ? (size_t)(q - p) : strlen(p);
    return p;
}

/* 1 when pattern matches path[0..len). A pattern with "{}" ("/chat/{}",
 * "/chat/{}/status") takes there one non-empty segment without '/',
 * returned in *seg and *seglen; the rest must match literally. */
static int path_match(const char *pattern, const char *path, size_t len, const char **seg,
                      size_t *seglen)
{
    const char *hole = strstr(pattern, "{}");
    size_t pl = strlen(pattern);

    if (hole != NULL) {
        size_t pre = (size_t)(hole - pattern), suf = pl - pre - 2;
        if (len <= pre + suf || memcmp(path, pattern, pre) != 0 ||
            memcmp(path + len - suf, hole + 2, suf) != 0 ||
            memchr(path + pre, '/', len - pre - suf) != NULL)
            return 0;
        *seg = path + pre;
        *seglen = len - pre - suf;
        return 1;
    }
    return len == pl && memcmp(path, pattern, pl) == 0;
}

/* Writes the methods that path accepts ("GET, POST") into out. Returns how
 * many routes have this path. */
static size_t allowed_methods(const struct snap_ctx *ctx, const char *path, size_t len, char *out,
                              size_t outlen)
{
    size_t i, j, matched = 0, o = 0;
    const char *seg;
    size_t seglen;

    out[0] = '\0';
    if (http_builtin_of(path, len) != HTTP_BUILTIN_NONE) {
        (void)snprintf(out, outlen, "GET");
        return 1;
    }
    if (ctx == NULL || ctx->def == NULL) return 0;
    for (i = 0; i < ctx->def->nroutes; i++) {
        const struct http_route *rt = &ctx->def->routes[i];
        int seen = 0;
        if (!path_match(rt->path, path, len, &seg, &seglen)) continue;
        matched++;
        for (j = 0; j < i && !seen; j++) {
            const struct http_route *prev = &ctx->def->routes[j];
            seen = strcmp(prev->method, rt->method) == 0 &&
                   path_match(prev->path, path, len, &seg, &seglen);
        }
        if (!seen) {
            int n = snprintf(out + o, outlen - o, "%s%s", o ? ", " : "", rt->method);
            if (n < 0 || (size_t)n >= outlen - o) break; /* cannot happen with a sane route table */
            o += (size_t)n;
        }
    }
    return matched;
}

/* ---- rendering an answer ------------------------------------------------ */

static const char oom_body[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";

/* An ERROR answer: the table's status and headers (Retry-After, Allow,
 * WWW-Authenticate) and {"error": code, "message": ...}. */
static int send_error(struct http_req *r, const struct http_res *res)
{
    char headers[256], allow[160];
    size_t plen = 0;
    const char *path;
    enum http_error e = res->error;
    cJSON *obj;
    char *text;
    int status, rc, n = 0;

    if ((int)e < 0 || e >= HTTP_E__COUNT) e = HTTP_E_INTERNAL;
    status = error_status[e];
    headers[0] = '\0';
    if (status == 503 || status == 429)
        n = snprintf(headers, sizeof headers, "Retry-After: %ld\r\n",
                     res->retry_after_s > 0 ? res->retry_after_s : 1);
    else if (status == 401)
        n = snprintf(headers, sizeof headers, "WWW-Authenticate: Bearer\r\n");
    else if (status == 405) {
        path = request_path(r->ri, &plen);
        if (path == NULL || allowed_methods(r->ctx, path, plen, allow, sizeof allow) == 0)
            (void)snprintf(allow, sizeof allow, "GET");
        n = snprintf(headers, sizeof headers, "Allow: %s\r\n", allow);
    }
    if (n < 0 || (size_t)n >= sizeof headers) headers[0] = '\0';

    obj = cJSON_CreateObject();
    if (obj == NULL || cJSON_AddStringToObject(obj, "error", error_code[e]) == NULL ||
        cJSON_AddStringToObject(obj, "message", res->message) == NULL ||
        (text = cJSON_PrintUnformatted(obj)) == NULL) {
        cJSON_Delete(obj);
        return send_reply(r, 500, "application/json", oom_body, sizeof oom_body - 1, NULL, 0);
    }
    cJSON_Delete(obj);
    rc = send_reply(r, status, "application/json", text, strlen(text), headers,
                    res->close || status == 413);
    cJSON_free(text);
    return rc;
}

/* The one place an answer becomes bytes on the connection: the bug guards
 * (no answer, a second one), the store-error log line and metric, the
 * out-of-memory answer. Releases what res owns. label names the route. */
static void render_answer(struct http_req *r, struct http_res *res, const char *label)
{
    const char *headers = res->headers_len > 0 ? res->headers : NULL;
    int close = res->close || res->status == 413;
    char *text;

    if (res->kind == HTTP_RES_NONE) {
        log_event(SNAP_LOG_ERROR, r->request_id, "dispatch",
                  "bug: the handler of %s returned without a reply", label);
        (void)http_res_error(res, HTTP_E_INTERNAL, "internal error");
    }
    if (res->dropped != 0)
        log_event(SNAP_LOG_ERROR, r->request_id, "double_reply",
                  "bug: a second reply (%d) after %d was dropped", res->dropped, res->status);
    if (res->store[0] != '\0') {
        log_event(SNAP_LOG_ERROR, r->request_id, "store_error", "%s while %s: %s (%s)", res->store,
                  res->what, res->cause.msg, snap_status_name(res->cause.code));
        if (r->ctx != NULL)
            metrics_add(r->ctx->metrics,
                        strcmp(res->store, "redis") == 0 ? METRIC_STORE_ERRORS_REDIS
                                                         : METRIC_STORE_ERRORS_COLD,
                        1);
    }
    switch (res->kind) {
    case HTTP_RES_JSON:
        text = cJSON_PrintUnformatted(res->json);
        if (text == NULL) {
            log_event(SNAP_LOG_ERROR, r->request_id, "reply", "out of memory encoding a reply");
            (void)send_reply(r, 500, "application/json", oom_body, sizeof oom_body - 1, NULL, 0);
            break;
        }
        (void)send_reply(r, res->status, "application/json", text, strlen(text), headers, close);
        cJSON_free(text);
        break;
    case HTTP_RES_RAW:
        (void)send_reply(r, res->status, res->content_type, res->raw, res->raw_len, headers, close);
        break;
    case HTTP_RES_ERROR:
    case HTTP_RES_NONE:
    default:
        (void)send_error(r, res);
        break;
    }
    http_res_cleanup(res);
}

/* ---- the dispatcher ------------------------------------------------------ */

/* One body buffer per worker thread, freed when the thread exits. */
struct body_buf {
    size_t cap;
    char data[];
};
static pthread_key_t body_key;
static pthread_once_t body_once = PTHREAD_ONCE_INIT;
static int body_key_ok;

static void body_key_make(void)
{
    body_key_ok = pthread_key_create(&body_key, free) == 0;
}

static char *body_buffer(size_t need)
{
    struct body_buf *b;

    (void)pthread_once(&body_once, body_key_make);
    if (!body_key_ok) return NULL;
    b = pthread_getspecific(body_key);
    if (b != NULL && b->cap >= need) return b->data;
    free(b);
    (void)pthread_setspecific(body_key, NULL);
    b = malloc(sizeof *b + need);
    if (b == NULL) return NULL;
    b->cap = need;
    if (pthread_setspecific(body_key, b) != 0) {
        free(b);
        return NULL;
    }
    return b->data;
}

static void request_id_init(struct http_req *r)
{
    const char *h = mg_get_header(r->conn, "X-Request-Id");
    uuid_t u;

    if (h != NULL) {
        size_t n = strnlen(h, HTTP_REQUEST_ID_MAX + 1), i;
        int ok = n >= 1 && n <= HTTP_REQUEST_ID_MAX;
        for (i = 0; ok && i < n; i++) ok = h[i] >= 0x21 && h[i] <= 0x7e;
        if (ok) {
            memcpy(r->request_id, h, n);
            r->request_id[n] = '\0';
            return;
        }
    }
    uuid_generate_random(u);
    uuid_unparse_lower(u, r->request_id);
}

/* Content-Type: application/json, any case, parameters allowed. */
static int content_type_is_json(const char *ct)
{
    static const char json[] = "application/json";
    while (*ct == ' ' || *ct == '\t') ct++;
    if (strncasecmp(ct, json, sizeof json - 1) != 0) return 0;
    ct += sizeof json - 1;
    while (*ct == ' ' || *ct == '\t') ct++;
    return *ct == '\0' || *ct == ';';
}

/* 401/403/503 per the route's auth rule. Returns 0 to go on, -1 when res
 * holds the refusal. param_ok says whether req->param holds the parameter. */
static int check_auth(struct http_req *r, struct http_res *res, int param_ok)
{
    const struct http_route *rt = r->route;
    const char *hdr = mg_get_header(r->conn, "Authorization");
    struct snap_err err;
    const char *token;
    int open = r->ctx->cfg.auth == SNAP_AUTH_OPEN, rc;

    switch (rt->auth) {
    case HTTP_AUTH_NONE:
        return 0;
    case HTTP_AUTH_SENDER:
        if (open && hdr == NULL) return 0; /* anonymous sender, who.valid stays 0 */
        break;
    case HTTP_AUTH_OWNER:
        if (open) return 0;
        break;
    case HTTP_AUTH_USER:
    case HTTP_AUTH_ADMIN:
    default:
        break;
    }

    memset(&err, 0, sizeof err);
    if (hdr == NULL || auth_bearer(hdr, &token) < 0)
        rc = SNAP_EUNAUTH; /* nothing to look up: no need to ask Redis */
    else if (r->hot == NULL)
        rc = snap_err_set(&err, SNAP_EUNAVAIL, "no redis handle on this worker thread");
    else
        rc = auth_identify(r->hot, hdr, &r->who, &err);
    if (rc == SNAP_EUNAUTH) {
        (void)http_res_error(res, HTTP_E_UNAUTHORIZED,
                               "a valid bearer token is required: send Authorization: Bearer "
                               "<token> (POST /sessions gives one)");
        return -1;
    }
    if (rc == SNAP_EUNAVAIL) {
        log_event(SNAP_LOG_WARN, r->request_id, "auth", "%s", err.msg);
        (void)http_res_error(res, HTTP_E_UNAVAILABLE,
                               "the session store is unavailable, try again shortly");
        return -1;
    }
    if (rc != 0) {
        log_event(SNAP_LOG_ERROR, r->request_id, "auth", "%s: %s", snap_status_name(rc), err.msg);
        (void)http_res_error(res, HTTP_E_INTERNAL, "internal error");
        return -1;
    }

    if (rt->auth == HTTP_AUTH_OWNER) {
        size_t ul = strnlen(r->who.username, sizeof r->who.username);
        if (!r->who.valid || !param_ok || ul != r->param_len ||
            memcmp(r->who.username, r->param, ul) != 0) {
            (void)http_res_error(res, HTTP_E_FORBIDDEN,
                                   "this token may only be used for its own user's inbox");
            return -1;
        }
    } else if (rt->auth == HTTP_AUTH_ADMIN) {
        if (!r->who.valid || strcmp(r->who.role, AUTH_ROLE_ADMIN) != 0) {
            (void)http_res_error(res, HTTP_E_FORBIDDEN, "this route needs an admin token");
            return -1;
        }
    }
    return 0;
}

/* 413 and 415 for an HTTP_BODY_JSON route; on success buf/len hold the body
 * (in this thread's buffer). Returns 0 to go on, -1 when res holds the
 * refusal. */
static int read_body(struct http_req *r, struct http_res *res, const char **buf, size_t *len)
{
    long max = r->ctx->cfg.max_body_bytes;
    long long cl = r->ri->content_length;
    const char *ct = mg_get_header(r->conn, "Content-Type");
    size_t cap, total = 0;
    char *b;
    int failed = 0;

    if (max < 0) max = 0;
    if (cl > (long long)max) {
        res->close = 1;
        (void)http_res_error(res, HTTP_E_PAYLOAD_TOO_LARGE,
                                "the request body must be at most %ld bytes", max);
        return -1;
    }
    if (cl >= 0 && ct != NULL && !content_type_is_json(ct)) {
        (void)http_res_error(res, HTTP_E_UNSUPPORTED_MEDIA_TYPE,
                               "Content-Type must be application/json");
        return -1;
    }
    cap = (size_t)max + 1;
    b = body_buffer(cap);
    if (b == NULL) {
        log_event(SNAP_LOG_ERROR, r->request_id, "body", "out of memory for the body buffer");
        res->close = 1;
        (void)http_res_error(res, HTTP_E_INTERNAL, "internal error");
        return -1;
    }
    while (total < cap) {
        int n = mg_read(r->conn, b + total, cap - total);
        if (n < 0) {
            failed = 1;
            break;
        }
        if (n == 0) break;
        total += (size_t)n;
    }
    if (total > (size_t)max) {
        res->close = 1;
        (void)http_res_error(res, HTTP_E_PAYLOAD_TOO_LARGE,
                                "the request body must be at most %ld bytes", max);
        return -1;
    }
    if (failed || (cl >= 0 && total != (size_t)cl)) {
        res->close = 1;
        (void)http_res_error(res, HTTP_E_INVALID_JSON,
                                "the request body could not be read completely");
        return -1;
    }
    if (ct != NULL && !content_type_is_json(ct)) {
        (void)http_res_error(res, HTTP_E_UNSUPPORTED_MEDIA_TYPE,
                               "Content-Type must be application/json");
        return -1;
    }
    *buf = b;
    *len = total;
    return 0;
}

/* Everything up to and including the handler: each refusal, or the
 * handler, fills res. *label gets the route's pattern for the access log. */
static void dispatch(struct http_req *r, struct http_res *res, const char **label)
{
    const char *method = r->ri != NULL && r->ri->request_method ? r->ri->request_method : "";
    const char *path, *seg = NULL, *body;
    size_t plen = 0, seglen = 0, i, blen;
    const struct service_def *def = r->ctx != NULL ? r->ctx->def : NULL;
    enum http_builtin b;
    char allow[160], pmsg[96], bmsg[160];
    int param_ok = 1, nul = 0;
    const char *decode_opt;

    path = request_path(r->ri, &plen);
    if (path == NULL) {
        (void)http_res_error(res, HTTP_E_NOT_FOUND, "no such route");
        return;
    }

    b = http_builtin_of(path, plen);
    if (b != HTTP_BUILTIN_NONE) {
        *label = http_builtin_path(b);
        if (strcmp(method, "GET") != 0) {
            (void)http_res_error(res, HTTP_E_METHOD_NOT_ALLOWED, "%s only answers GET",
                                   http_builtin_path(b));
            return;
        }
        http_builtin_serve(r, b, res);
        return;
    }

    for (i = 0; def != NULL && i < def->nroutes; i++) {
        const struct http_route *rt = &def->routes[i];
        if (strcmp(rt->method, method) == 0 && path_match(rt->path, path, plen, &seg, &seglen)) {
            r->route = rt;
            break;
        }
    }
    if (r->route == NULL) {
        if (allowed_methods(r->ctx, path, plen, allow, sizeof allow) == 0)
            (void)http_res_error(res, HTTP_E_NOT_FOUND, "no such route");
        else
            (void)http_res_error(res, HTTP_E_METHOD_NOT_ALLOWED, "this path only answers %s",
                                   allow);
        return;
    }
    *label = r->route->path;

    /* The parameter: decoded now (the owner check needs it), refused only
     * after 401/403/413/415, as API.md orders the checks. */
    pmsg[0] = '\0';
    if (seg != NULL) {
        decode_opt = mg_get_option(mg_get_context(r->conn), "decode_url");
        if (decode_opt == NULL || strcmp(decode_opt, "no") != 0) {
            static int warned;
            if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
                log_event(SNAP_LOG_WARN, NULL, "config",
                          "civetweb decodes URLs (decode_url=yes): %%2F in path parameters "
                          "cannot be told from '/'; start it with decode_url=no");
            if (seglen > HTTP_PARAM_MAX) {
                param_ok = 0;
            } else {
                memcpy(r->param, seg, seglen);
                r->param[seglen] = '\0';
                r->param_len = seglen;
            }
        } else {
            long n = http_percent_decode(seg, seglen, r->param, sizeof r->param);
            if (n < 0) {
                param_ok = 0;
                r->param[0] = '\0';
                if (!percent_well_formed(seg, seglen))
                    (void)snprintf(pmsg, sizeof pmsg,
                                   "path parameter is not valid percent-encoding");
            } else {
                r->param_len = (size_t)n;
            }
        }
        if (!param_ok && pmsg[0] == '\0')
            (void)snprintf(pmsg, sizeof pmsg, "path parameter must be at most %d bytes",
                           HTTP_PARAM_MAX);
    }

    if (check_auth(r, res, param_ok) != 0) return;

    body = NULL;
    blen = 0;
    if ((r->route->flags & HTTP_BODY_JSON) != 0 && read_body(r, res, &body, &blen) != 0) return;

    if (!param_ok) {
        (void)http_res_error(res, HTTP_E_INVALID_FIELD, "%s", pmsg);
        return;
    }

    if ((r->route->flags & HTTP_BODY_JSON) != 0) {
        r->body = json_strict_parse(body, blen, &nul, bmsg, sizeof bmsg);
        if (r->body == NULL) {
            (void)http_res_error(res, nul ? HTTP_E_INVALID_FIELD : HTTP_E_INVALID_JSON, "%s", bmsg);
            return;
        }
    }

    r->route->handler(r, res);
}

int http_dispatch(struct mg_connection *conn, void *cbdata)
{
    struct http_req req;
    struct http_res res;
    const struct snap_worker *worker;
    const char *label = "other";
    int64_t t0 = clock_mono_ns(), dt;
    size_t index;
    double secs;

    memset(&req, 0, sizeof req);
    memset(&res, 0, sizeof res);
    /* Everything this request waits for must be done before HAProxy's
     * `timeout server` gives up on it (deadline.h). */
    deadline_set(deadline_now() + SNAP_DEADLINE_MS);
    req.conn = conn;
    req.ri = mg_get_request_info(conn);
    req.ctx = cbdata;
    worker = mg_get_thread_pointer(conn);
    req.hot = worker != NULL ? worker->hot : NULL;
    request_id_init(&req);

    if (req.ctx == NULL || req.ri == NULL) {
        log_event(SNAP_LOG_ERROR, req.request_id, "dispatch", "bug: no service context");
        (void)http_res_error(&res, HTTP_E_INTERNAL, "internal error");
    } else {
        dispatch(&req, &res, &label);
    }
    render_answer(&req, &res, label);

    dt = clock_mono_ns() - t0;
    secs = dt > 0 ? (double)dt / 1e9 : 0.0;
    index = req.ctx != NULL && req.ctx->def != NULL ? req.ctx->def->nroutes : 0;
    if (req.route != NULL && req.ctx != NULL && req.ctx->def != NULL)
        index = (size_t)(req.route - req.ctx->def->routes);
    if (req.ctx != NULL) metrics_observe(req.ctx->metrics, index, req.status, secs);
    /* Probes hit the built-ins every few seconds: their lines are debug. */
    if (req.route != NULL || strcmp(label, "other") == 0 || req.status >= 400 ||
        log_enabled(SNAP_LOG_DEBUG))
        log_request(req.ri && req.ri->request_method ? req.ri->request_method : "", label,
                    req.status, secs * 1000.0, req.request_id);
    cJSON_Delete(req.body);
    req.body = NULL;
    deadline_set(0);
    return req.status > 0 ? req.status : 500;
}

/* ---- civetweb's own errors -------------------------------------------------- */

/* civetweb's own errors (malformed request line, headers too large, ...)
 * happen before any route: same JSON body, a fresh request id, and the
 * connection is closed since its state is unknown. */
int http_civetweb_error(struct mg_connection *conn, int status, const char *errmsg)
{
    struct http_req req;
    struct http_res res;
    enum http_error e = status >= 500 ? HTTP_E_INTERNAL : HTTP_E_INVALID_JSON;
    int i;

    for (i = 0; i < HTTP_E__COUNT; i++)
        if (error_status[i] == status && i != HTTP_E_METHOD_NOT_ALLOWED) {
            e = (enum http_error)i;
            break;
        }
    memset(&req, 0, sizeof req);
    req.conn = conn;
    req.ri = mg_get_request_info(conn);
    request_id_init(&req);
    log_event(SNAP_LOG_WARN, req.request_id, "bad_request", "civetweb %d: %s", status,
              errmsg != NULL ? errmsg : "");
    memset(&res, 0, sizeof res);
    res.close = 1;
    (void)http_res_error(&res, e, "the request could not be processed as HTTP (%d)", status);
    render_answer(&req, &res, "other");
    return 0;
}

/* ---- the client's address (login throttle, hardening) -------------------- */

void http_client_addr(const struct http_req *r, char out[HTTP_CLIENT_ADDR_MAX + 1])
{
    const char *h = r->conn != NULL ? mg_get_header(r->conn, "X-Client-Addr") : NULL;
    size_t n = h != NULL ? strlen(h) : 0;
    int ok = n > 0 && n <= HTTP_CLIENT_ADDR_MAX;

    for (size_t i = 0; ok && i < n; i++)
        ok = strchr("0123456789abcdefABCDEF.:", h[i]) != NULL;
    (void)snprintf(out, HTTP_CLIENT_ADDR_MAX + 1, "%s",
                   ok ? h : (r->ri != NULL ? r->ri->remote_addr : ""));
    if (out[0] == '\0') (void)snprintf(out, HTTP_CLIENT_ADDR_MAX + 1, "unknown");
}
