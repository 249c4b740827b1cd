/* http.c: the one civetweb request handler every service installs, and the
 * replies.
 *
 * http_dispatch() takes a request through API.md's checks in their order:
 * built-in routes (/healthz, /readyz, /metrics), then 404 (no route has this
 * path), 405 with Allow, 401, 403, 413, 415 and 400, and only then calls the
 * route's handler. It owns everything in struct http_req, makes sure exactly
 * one reply goes out, counts the request in the metrics and writes the
 * access log line. Request bodies are read into one buffer per worker
 * thread of SNAPTEXT_MAX_BODY_BYTES + 1 bytes; a declared length above the
 * limit is refused before anything is read.
 * Paths are matched on the raw request target, so civetweb must run with
 * decode_url=no: then "/chats/a%2Fb" reaches "/chats/{}" with the parameter
 * "a/b". With decoding left on, the dispatcher still works but cannot see
 * %2F (it says so once in the log).
 * Not here: what a route does (services/<name>/handlers.c), starting the
 * server (service.c). */
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
#include "snap/cold_store.h"
#include "snap/deadline.h"
#include "snap/err.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/percent.h"
#include "snap/service.h"
#include "snap/validate.h"

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

static int hex_value(char c)
{
    return percent_hex_value(c);
}

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
        if (len - i < 3 || hex_value(s[i + 1]) < 0 || hex_value(s[i + 2]) < 0) return 0;
        i += 2;
    }
    return 1;
}

/* ---- body parsing -------------------------------------------------------- */

static int hex4(const char *s, size_t avail, unsigned *out)
{
    unsigned v = 0;
    size_t k;
    if (avail < 4) return -1;
    for (k = 0; k < 4; k++) {
        int h = hex_value(s[k]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Length of the JSON number at s (RFC 8259 grammar), 0 when it is not one.
 * cJSON alone would take "01", "1." and "-.5". */
static size_t json_number_len(const char *s, size_t len)
{
    size_t i = 0;

    if (i < len && s[i] == '-') i++;
    if (i >= len) return 0;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        return 0;
    }
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == start) return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t start;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == start) return 0;
    }
    if (i < len && (s[i] == '.' || s[i] == '-' || s[i] == '+' || s[i] == 'e' || s[i] == 'E' ||
                    (s[i] >= '0' && s[i] <= '9')))
        return 0; /* "01", "1.2.3", "1e5e" */
    return i;
}

/* Deepest nesting of arrays/objects accepted. cJSON recurses once per
 * level, and civetweb's worker threads have small stacks (~100 KiB): about
 * 900 levels (a 1.8 KB body) overflowed one. No API body needs more than 1. */
#define JSON_DEPTH_MAX 32

/* Finds what cJSON lets through but JSON forbids, or what it must not be
 * given: control characters (outside JSON whitespace, or raw inside a
 * string), escapes of lone surrogates, malformed numbers, nesting deeper
 * than JSON_DEPTH_MAX. Sets *nul for a \u0000 escape and notes where the
 * first one is in *where: the top-level key it belongs to (raw bytes of
 * the body, escapes not decoded) and whether it is inside that key itself.
 * Anything else that is malformed is left to cJSON. Returns 0 or -1 with
 * msg set. */
struct nul_where {
    const char *key; /* NULL: not under a top-level key */
    size_t key_len;
    int in_key;
};

static int json_scan(const char *s, size_t len, int *nul, struct nul_where *where, char *msg,
                     size_t msglen)
{
    size_t i = 0;
    int in_string = 0, depth = 0;
    /* Top-level key tracking: the next string at depth 1 is a key right
     * after '{' or ','; key_start/key_len hold the last key seen. */
    int expect_key = 0, string_is_key = 0;
    size_t key_start = 0, key_len = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (in_string) {
            if (c == '"') {
                in_string = 0;
                if (string_is_key) key_len = i - key_start;
                i++;
            } else if (c < 0x20) {
                (void)snprintf(msg, msglen,
                               "body is not valid JSON: control character in a string at "
                               "byte %zu (escape it)",
                               i);
                return -1;
            } else if (c == '\\' && i + 1 < len && s[i + 1] == 'u') {
                unsigned v, lo;
                if (hex4(s + i + 2, len - i - 2, &v) != 0) return 0; /* cJSON refuses it */
                if (v == 0 && !*nul) {
                    *nul = 1;
                    if (key_start > 0) { /* under a top-level key (or in one) */
                        where->key = s + key_start;
                        where->key_len = string_is_key ? i - key_start : key_len;
                        where->in_key = string_is_key;
                    }
                }
                if (v >= 0xDC00 && v <= 0xDFFF) goto lone;
                if (v >= 0xD800 && v <= 0xDBFF) {
                    if (len - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                        hex4(s + i + 8, len - i - 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        goto lone;
                    i += 12;
                } else {
                    i += 6;
                }
            } else if (c == '\\') {
                i += 2;
            } else {
                i++;
            }
            continue;
        }
        if (c == '"') {
            in_string = 1;
            string_is_key = depth == 1 && expect_key;
            if (string_is_key) {
                key_start = i + 1;
                key_len = 0;
                expect_key = 0;
            }
            i++;
        } else if (c == ',' && depth == 1) {
            expect_key = 1;
            i++;
        } else if (c == '[' || c == '{') {
            if (depth == 0 && c == '{') expect_key = 1;
            if (++depth > JSON_DEPTH_MAX) {
                (void)snprintf(msg, msglen, "body is nested too deeply (more than %d levels)",
                               JSON_DEPTH_MAX);
                return -1;
            }
            i++;
        } else if (c == ']' || c == '}') {
            depth--;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t n = json_number_len(s + i, len - i);
            if (n == 0) {
                (void)snprintf(msg, msglen, "body is not valid JSON: bad number at byte %zu", i);
                return -1;
            }
            i += n;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            (void)snprintf(msg, msglen, "body is not valid JSON: control character at byte %zu", i);
            return -1;
        } else {
            i++;
        }
    }
    return 0;
lone:
    (void)snprintf(msg, msglen, "body is not valid JSON: unpaired surrogate escape at byte %zu", i);
    return -1;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes into msg `duplicate key "<key>"` if obj has one at its top level.
 * Sorting keeps this O(n log n) however many keys a body has. */
static int find_duplicate_key(const cJSON *obj, char *msg, size_t msglen)
{
    const cJSON *it;
    const char **keys;
    size_t n = 0, i;
    int rc = 0;

    for (it = obj->child; it != NULL; it = it->next) n++;
    if (n < 2) return 0;
    keys = malloc(n * sizeof *keys);
    if (keys == NULL) {
        (void)snprintf(msg, msglen, "body is too large to check");
        return -1;
    }
    i = 0;
    for (it = obj->child; it != NULL; it = it->next) keys[i++] = it->string ? it->string : "";
    qsort(keys, n, sizeof *keys, key_cmp);
    for (i = 1; i < n; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            size_t kl = strlen(keys[i]), cut = kl > 40 ? 40 : kl;
            while (cut > 0 && cut < kl && ((unsigned char)keys[i][cut] & 0xC0) == 0x80)
                cut--; /* end on a UTF-8 character boundary */
            (void)snprintf(msg, msglen, "duplicate key \"%.*s%s\"", (int)cut, keys[i],
                           cut < kl ? "..." : "");
            rc = -1;
            break;
        }
    }
    free(keys);
    return rc;
}

/* The invalid_field message for a \u0000: it names the field (API.md), at
 * most 40 bytes of it, cut on a UTF-8 boundary. */
static void nul_message(const struct nul_where *w, char *msg, size_t msglen)
{
    size_t cut = w->key_len > 40 ? 40 : w->key_len;
    while (w->key != NULL && cut > 0 && cut < w->key_len &&
           ((unsigned char)w->key[cut] & 0xC0) == 0x80)
        cut--;
    if (w->key == NULL)
        (void)snprintf(msg, msglen, "strings must not contain \\u0000");
    else if (!w->in_key && w->key_len == 0)
        (void)snprintf(msg, msglen, "the field \"\" must not contain \\u0000");
    else if (w->in_key)
        (void)snprintf(msg, msglen, "field names must not contain \\u0000 (the field \"%.*s%s\")",
                       (int)cut, w->key, cut < w->key_len ? "..." : "");
    else
        (void)snprintf(msg, msglen, "%.*s%s must not contain \\u0000", (int)cut, w->key,
                       cut < w->key_len ? "..." : "");
}

cJSON *http_parse_body(const char *buf, size_t len, int *nul_field, char *msg, size_t msglen)
{
    const char *end = NULL;
    cJSON *root;
    size_t pos;
    int nul = 0;
    struct nul_where where = {NULL, 0, 0};

    *nul_field = 0;
    if (msg != NULL && msglen > 0) msg[0] = '\0';
    if (len == 0) {
        (void)snprintf(msg, msglen, "body is empty: send a JSON object");
        return NULL;
    }
    if (!utf8_valid(buf, len)) {
        (void)snprintf(msg, msglen, "body is not valid UTF-8");
        return NULL;
    }
    if (json_scan(buf, len, &nul, &where, msg, msglen) != 0) return NULL;
    root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root == NULL) {
        pos = end != NULL && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        (void)snprintf(msg, msglen, "body is not well-formed JSON (error at byte %zu)", pos);
        return NULL;
    }
    pos = end != NULL && end >= buf && end <= buf + len ? (size_t)(end - buf) : len;
    while (pos < len &&
           (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\n' || buf[pos] == '\r'))
        pos++;
    if (pos != len) {
        (void)snprintf(msg, msglen, "body has data after the JSON value (at byte %zu)", pos);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        (void)snprintf(msg, msglen, "body must be a JSON object");
        goto fail;
    }
    if (nul) { /* before duplicates: keys cut at a NUL could look equal */
        *nul_field = 1;
        nul_message(&where, msg, msglen);
        goto fail;
    }
    if (find_duplicate_key(root, msg, msglen) != 0) goto fail;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
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
    const char *opt = mg_get_option(mg_get_context(r->conn), "enable_keep_alive");
    const char *conn_hdr = mg_get_header(r->conn, "Connection");
    const char *ver = r->ri != NULL ? r->ri->http_version : NULL;

    if (opt == NULL || strcasecmp(opt, "yes") != 0) return 0;
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

/* Sends the whole reply (status line, headers, body) in one mg_write, so
 * a small reply is one TCP segment whatever the Nagle settings. */
static int send_reply(struct http_req *r, int status, const char *content_type, const char *body,
                      size_t len, const char *headers, int force_close)
{
    char head[768], date[64];
    const char *reason, *conn_line = "", *cache;
    size_t hlen, xlen = headers ? strlen(headers) : 0, total;
    int n, no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int is_head = r->ri != NULL && r->ri->request_method != NULL &&
                  strcmp(r->ri->request_method, "HEAD") == 0;
    int xcrlf = xlen >= 2 && headers[xlen - 2] == '\r' && headers[xlen - 1] == '\n';
    time_t now = time(NULL);
    struct tm tm;
    char *out;
    int rc = 0;

    if (r->status != 0) {
        log_event(SNAP_LOG_ERROR, r->request_id, "double_reply",
                  "bug: a second reply (%d) after %d was dropped", status, r->status);
        return -1;
    }

    if (gmtime_r(&now, &tm) == NULL ||
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm) == 0)
        date[0] = '\0';
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
    if (no_body) {
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n"
                     "X-Request-Id: %s\r\n%s%s",
                     status, reason ? reason : "", date, content_type, r->request_id, cache,
                     conn_line);
        len = 0;
    } else {
        n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "X-Request-Id: %s\r\n%s%s",
                     status, reason ? reason : "", date, content_type, len, r->request_id, cache,
                     conn_line);
    }
    if (n < 0 || (size_t)n >= sizeof head) {
        log_event(SNAP_LOG_ERROR, r->request_id, "reply", "bug: response head too long");
        return -1;
    }
    hlen = (size_t)n;
    if (is_head) len = 0; /* HEAD: the same head, no body */
    if (xlen > 65536 || len > SIZE_MAX - hlen - xlen - 4) {
        log_event(SNAP_LOG_ERROR, r->request_id, "reply", "bug: response too large");
        return -1;
    }
    total = hlen + xlen + (xlen > 0 && !xcrlf ? 2 : 0) + 2 + len;
    r->status = status; /* from here on this request has its reply */
    out = malloc(total);
    if (out != NULL) {
        size_t o = hlen;
        memcpy(out, head, hlen);
        if (xlen > 0) {
            memcpy(out + o, headers, xlen);
            o += xlen;
            if (!xcrlf) {
                memcpy(out + o, "\r\n", 2);
                o += 2;
            }
        }
        memcpy(out + o, "\r\n", 2);
        o += 2;
        if (len > 0) memcpy(out + o, body, len);
        if (mg_write(r->conn, out, total) != (int)total) rc = -1;
        free(out);
    } else { /* out of memory: the same bytes, in pieces */
        if (mg_write(r->conn, head, hlen) != (int)hlen ||
            (xlen > 0 && mg_write(r->conn, headers, xlen) != (int)xlen) ||
            (xlen > 0 && !xcrlf && mg_write(r->conn, "\r\n", 2) != 2) ||
            mg_write(r->conn, "\r\n", 2) != 2 ||
            (len > 0 && mg_write(r->conn, body, len) != (int)len))
            rc = -1;
    }
    if (rc != 0)
        log_event(SNAP_LOG_DEBUG, r->request_id, "reply", "client went away during the reply");
    return rc;
}

int http_reply_raw(struct http_req *r, int status, const char *content_type, const char *body,
                   size_t len, const char *headers)
{
    return send_reply(r, status, content_type, body, len, headers, status == 413);
}

int http_reply_json(struct http_req *r, int status, const cJSON *body, const char *headers)
{
    char *text;
    int rc;

    if (body == NULL)
        return send_reply(r, status, "application/json", "", 0, headers, status == 413);
    text = cJSON_PrintUnformatted((cJSON *)body); /* cJSON's API is not const-clean */
    if (text == NULL) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        log_event(SNAP_LOG_ERROR, r->request_id, "reply", "out of memory encoding a reply");
        return send_reply(r, 500, "application/json", oom, sizeof oom - 1, NULL, 0);
    }
    rc = send_reply(r, status, "application/json", text, strlen(text), headers, status == 413);
    cJSON_free(text);
    return rc;
}

/* ---- routing ------------------------------------------------------------- */

enum builtin { BUILTIN_NONE, BUILTIN_HEALTHZ, BUILTIN_READYZ, BUILTIN_METRICS };

static const char *const builtin_paths[] = {NULL, "/healthz", "/readyz", "/metrics"};

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

static enum builtin builtin_of(const char *path, size_t len)
{
    int b;
    for (b = BUILTIN_HEALTHZ; b <= BUILTIN_METRICS; b++)
        if (strlen(builtin_paths[b]) == len && memcmp(path, builtin_paths[b], len) == 0)
            return (enum builtin)b;
    return BUILTIN_NONE;
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
    if (builtin_of(path, len) != BUILTIN_NONE) {
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

static int reply_error_v(struct http_req *r, enum http_error e, int force_close, const char *fmt,
                         va_list ap) __attribute__((format(printf, 4, 0)));

static int reply_error_v(struct http_req *r, enum http_error e, int force_close, const char *fmt,
                         va_list ap)
{
    char message[512], headers[256], allow[160];
    size_t plen = 0;
    const char *path;
    cJSON *obj;
    char *text;
    int status, rc, n = 0;

    if ((int)e < 0 || e >= HTTP_E__COUNT) e = HTTP_E_INTERNAL;
    status = error_status[e];
    (void)vsnprintf(message, sizeof message, fmt, ap); /* a cut sentence is still fine */

    headers[0] = '\0';
    if (status == 503 || status == 429)
        n = snprintf(headers, sizeof headers, "Retry-After: %ld\r\n",
                     r->retry_after_s > 0 ? r->retry_after_s : 1);
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
        cJSON_AddStringToObject(obj, "message", message) == NULL ||
        (text = cJSON_PrintUnformatted(obj)) == NULL) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        cJSON_Delete(obj);
        return send_reply(r, 500, "application/json", oom, sizeof oom - 1, NULL, 0);
    }
    cJSON_Delete(obj);
    rc = send_reply(r, status, "application/json", text, strlen(text), headers,
                    force_close || status == 413);
    cJSON_free(text);
    return rc;
}

int http_reply_error(struct http_req *r, enum http_error e, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = reply_error_v(r, e, 0, fmt, ap);
    va_end(ap);
    return rc;
}

/* Same, closing the connection afterwards (body left unread or broken). */
static int reply_error_close(struct http_req *r, enum http_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int reply_error_close(struct http_req *r, enum http_error e, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = reply_error_v(r, e, 1, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- built-in routes ----------------------------------------------------- */

static void reply_status_object(struct http_req *r, int status, const char *state,
                                const char *redis, const char *store)
{
    cJSON *obj = cJSON_CreateObject();

    if (obj == NULL || cJSON_AddStringToObject(obj, "status", state) == NULL ||
        (redis != NULL && cJSON_AddStringToObject(obj, "redis", redis) == NULL) ||
        (store != NULL && cJSON_AddStringToObject(obj, "store", store) == NULL)) {
        cJSON_Delete(obj);
        (void)http_reply_error(r, HTTP_E_INTERNAL, "out of memory");
        return;
    }
    (void)http_reply_json(r, status, obj, status == 503 ? "Retry-After: 1\r\n" : NULL);
    cJSON_Delete(obj);
}

static void serve_builtin(struct http_req *r, enum builtin b)
{
    struct snap_err err;
    int redis_ok, store_ok;
    char *text = NULL;
    size_t len = 0;

    switch (b) {
    case BUILTIN_HEALTHZ:
        reply_status_object(r, 200, "ok", NULL, NULL);
        return;
    case BUILTIN_READYZ:
        if (r->ctx != NULL && r->ctx->draining) {
            reply_status_object(r, 503, "stopping", NULL, NULL);
            return;
        }
        if (r->ctx != NULL && r->ctx->def != NULL && (r->ctx->def->flags & SERVICE_NO_STORES)) {
            reply_status_object(r, 200, "ready", NULL, NULL);
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
            reply_status_object(r, 200, "ready", NULL, NULL);
        else
            reply_status_object(r, 503, "unavailable", redis_ok ? "ok" : "down",
                                store_ok ? "ok" : "down");
        return;
    case BUILTIN_METRICS:
        if (metrics_render(r->ctx ? r->ctx->metrics : NULL, &text, &len) != 0) {
            (void)http_reply_error(r, HTTP_E_INTERNAL, "metrics could not be rendered");
            return;
        }
        (void)http_reply_raw(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, NULL);
        free(text);
        return;
    case BUILTIN_NONE:
        break;
    }
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

/* 401/403/503 per the route's auth rule. Returns 0 to go on, -1 when a
 * reply went out. param_ok says whether req->param holds the parameter. */
static int check_auth(struct http_req *r, int param_ok)
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
        (void)http_reply_error(r, HTTP_E_UNAUTHORIZED,
                               "a valid bearer token is required: send Authorization: Bearer "
                               "<token> (POST /sessions gives one)");
        return -1;
    }
    if (rc == SNAP_EUNAVAIL) {
        log_event(SNAP_LOG_WARN, r->request_id, "auth", "%s", err.msg);
        (void)http_reply_error(r, HTTP_E_UNAVAILABLE,
                               "the session store is unavailable, try again shortly");
        return -1;
    }
    if (rc != 0) {
        log_event(SNAP_LOG_ERROR, r->request_id, "auth", "%s: %s", snap_status_name(rc), err.msg);
        (void)http_reply_error(r, HTTP_E_INTERNAL, "internal error");
        return -1;
    }

    if (rt->auth == HTTP_AUTH_OWNER) {
        size_t ul = strnlen(r->who.username, sizeof r->who.username);
        if (!r->who.valid || !param_ok || ul != r->param_len ||
            memcmp(r->who.username, r->param, ul) != 0) {
            (void)http_reply_error(r, HTTP_E_FORBIDDEN,
                                   "this token may only be used for its own user's inbox");
            return -1;
        }
    } else if (rt->auth == HTTP_AUTH_ADMIN) {
        if (!r->who.valid || strcmp(r->who.role, AUTH_ROLE_ADMIN) != 0) {
            (void)http_reply_error(r, HTTP_E_FORBIDDEN, "this route needs an admin token");
            return -1;
        }
    }
    return 0;
}

/* 413 and 415 for an HTTP_BODY_JSON route; on success buf/len hold the body
 * (in this thread's buffer). Returns 0 to go on, -1 when a reply went out. */
static int read_body(struct http_req *r, const char **buf, size_t *len)
{
    long max = r->ctx->cfg.max_body_bytes;
    long long cl = r->ri->content_length;
    const char *ct = mg_get_header(r->conn, "Content-Type");
    size_t cap, total = 0;
    char *b;
    int failed = 0;

    if (max < 0) max = 0;
    if (cl > (long long)max) {
        (void)reply_error_close(r, HTTP_E_PAYLOAD_TOO_LARGE,
                                "the request body must be at most %ld bytes", max);
        return -1;
    }
    if (cl >= 0 && ct != NULL && !content_type_is_json(ct)) {
        (void)http_reply_error(r, HTTP_E_UNSUPPORTED_MEDIA_TYPE,
                               "Content-Type must be application/json");
        return -1;
    }
    cap = (size_t)max + 1;
    b = body_buffer(cap);
    if (b == NULL) {
        log_event(SNAP_LOG_ERROR, r->request_id, "body", "out of memory for the body buffer");
        (void)reply_error_close(r, HTTP_E_INTERNAL, "internal error");
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
        (void)reply_error_close(r, HTTP_E_PAYLOAD_TOO_LARGE,
                                "the request body must be at most %ld bytes", max);
        return -1;
    }
    if (failed || (cl >= 0 && total != (size_t)cl)) {
        (void)reply_error_close(r, HTTP_E_INVALID_JSON,
                                "the request body could not be read completely");
        return -1;
    }
    if (ct != NULL && !content_type_is_json(ct)) {
        (void)http_reply_error(r, HTTP_E_UNSUPPORTED_MEDIA_TYPE,
                               "Content-Type must be application/json");
        return -1;
    }
    *buf = b;
    *len = total;
    return 0;
}

/* Everything up to and including the handler. *label gets the route's
 * pattern for the access log. */
static void dispatch(struct http_req *r, const char **label)
{
    const char *method = r->ri != NULL && r->ri->request_method ? r->ri->request_method : "";
    const char *path, *seg = NULL, *body;
    size_t plen = 0, seglen = 0, i, blen;
    const struct service_def *def = r->ctx != NULL ? r->ctx->def : NULL;
    enum builtin b;
    char allow[160], pmsg[96], bmsg[160];
    int param_ok = 1, nul = 0;
    const char *decode_opt;

    path = request_path(r->ri, &plen);
    if (path == NULL) {
        (void)http_reply_error(r, HTTP_E_NOT_FOUND, "no such route");
        return;
    }

    b = builtin_of(path, plen);
    if (b != BUILTIN_NONE) {
        *label = builtin_paths[b];
        if (strcmp(method, "GET") != 0) {
            (void)http_reply_error(r, HTTP_E_METHOD_NOT_ALLOWED, "%s only answers GET",
                                   builtin_paths[b]);
            return;
        }
        serve_builtin(r, b);
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
            (void)http_reply_error(r, HTTP_E_NOT_FOUND, "no such route");
        else
            (void)http_reply_error(r, HTTP_E_METHOD_NOT_ALLOWED, "this path only answers %s",
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

    if (check_auth(r, param_ok) != 0) return;

    body = NULL;
    blen = 0;
    if ((r->route->flags & HTTP_BODY_JSON) != 0 && read_body(r, &body, &blen) != 0) return;

    if (!param_ok) {
        (void)http_reply_error(r, HTTP_E_INVALID_FIELD, "%s", pmsg);
        return;
    }

    if ((r->route->flags & HTTP_BODY_JSON) != 0) {
        r->body = http_parse_body(body, blen, &nul, bmsg, sizeof bmsg);
        if (r->body == NULL) {
            (void)http_reply_error(r, nul ? HTTP_E_INVALID_FIELD : HTTP_E_INVALID_JSON, "%s", bmsg);
            return;
        }
    }

    r->route->handler(r);
}

int http_dispatch(struct mg_connection *conn, void *cbdata)
{
    struct http_req req;
    const struct snap_worker *worker;
    const char *label = "other";
    int64_t t0 = clock_mono_ns(), dt;
    size_t index;
    double secs;

    memset(&req, 0, sizeof req);
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
        (void)http_reply_error(&req, HTTP_E_INTERNAL, "internal error");
    } else {
        dispatch(&req, &label);
    }
    if (req.status == 0) {
        log_event(SNAP_LOG_ERROR, req.request_id, "dispatch",
                  "bug: the handler of %s returned without a reply", label);
        (void)http_reply_error(&req, HTTP_E_INTERNAL, "internal error");
    }

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

/* ---- replies for the paths outside a handler ------------------------------ */

int http_reply_store_error(struct http_req *r, const char *store, const char *what,
                           const struct snap_err *err)
{
    int unavailable = err != NULL && (err->code == SNAP_EUNAVAIL || err->code == SNAP_ETIMEOUT);

    log_event(SNAP_LOG_ERROR, r->request_id, "store_error", "%s while %s: %s (%s)", store, what,
              err != NULL ? err->msg : "no detail", snap_status_name(err ? err->code : SNAP_ERR));
    if (r->ctx != NULL)
        metrics_add(
            r->ctx->metrics,
            strcmp(store, "redis") == 0 ? METRIC_STORE_ERRORS_REDIS : METRIC_STORE_ERRORS_COLD, 1);
    if (unavailable)
        return http_reply_error(r, HTTP_E_UNAVAILABLE,
                                "storage is unavailable while %s; retry in a moment", what);
    return http_reply_error(r, HTTP_E_INTERNAL, "internal error while %s", what);
}

/* civetweb's own errors (malformed request line, headers too large, ...)
 * happen before any route: same JSON body, a fresh request id, and the
 * connection is closed since its state is unknown. */
int http_civetweb_error(struct mg_connection *conn, int status, const char *errmsg)
{
    struct http_req req;
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
    (void)reply_error_close(&req, e, "the request could not be processed as HTTP (%d)", status);
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
