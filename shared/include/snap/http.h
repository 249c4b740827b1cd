/* http.h: the HTTP side every service shares — a route table, one
 * dispatcher that applies API.md's checks in its order, and the answer a
 * handler returns (struct http_res).
 *
 * A service declares its routes once ({method, path, handler, auth, flags});
 * http_dispatch() then answers, in this order, 404 (no route has this
 * path) -> 405 with Allow -> 401 -> 403 -> 413 -> 415 -> 400 (body not a
 * JSON object), and only then calls the handler. So a handler only
 * validates its fields and calls the stores. The dispatcher also sets the
 * request id, counts the request in the metrics and writes the access log.
 * /healthz, /readyz and /metrics are served by the dispatcher itself
 * (http_builtin.c); bodies are parsed by json_strict.h.
 * Not here: what a route does (services/<name>/handlers.c). */
#ifndef SNAP_HTTP_H
#define SNAP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "snap/auth.h"
#include "snap/err.h"

struct mg_connection;
struct mg_request_info;
struct snap_ctx;
struct hot_store;

/* The error table of API.md: enum name, status, code string. */
#define HTTP_ERRORS(X)                                              \
    X(HTTP_E_INVALID_JSON, 400, "invalid_json")                     \
    X(HTTP_E_INVALID_FIELD, 400, "invalid_field")                   \
    X(HTTP_E_UNAUTHORIZED, 401, "unauthorized")                     \
    X(HTTP_E_FORBIDDEN, 403, "forbidden")                           \
    X(HTTP_E_NOT_FOUND, 404, "not_found")                           \
    X(HTTP_E_METHOD_NOT_ALLOWED, 405, "method_not_allowed")         \
    X(HTTP_E_CONFLICT, 409, "conflict")                             \
    X(HTTP_E_PAYLOAD_TOO_LARGE, 413, "payload_too_large")           \
    X(HTTP_E_UNSUPPORTED_MEDIA_TYPE, 415, "unsupported_media_type") \
    X(HTTP_E_RATE_LIMITED, 429, "rate_limited")                     \
    X(HTTP_E_INBOX_FULL, 429, "inbox_full")                         \
    X(HTTP_E_INTERNAL, 500, "internal")                             \
    X(HTTP_E_UNAVAILABLE, 503, "unavailable")

#define HTTP_ERROR_ENUM(name, status, code) name,
enum http_error { HTTP_ERRORS(HTTP_ERROR_ENUM) HTTP_E__COUNT };
#undef HTTP_ERROR_ENUM

/* Who may call a route. The dispatcher enforces it before the handler. */
enum http_auth {
    HTTP_AUTH_NONE,    /* no token needed or looked at                       */
    HTTP_AUTH_SENDER,  /* required mode: any valid token; open mode: optional,
                          but a token that is sent must be valid             */
    HTTP_AUTH_USER,    /* any valid token, in every mode                     */
    HTTP_AUTH_OWNER,   /* required mode: token's user == path parameter (403
                          otherwise, admins included); open mode: none       */
    HTTP_AUTH_ADMIN    /* admin role, in every mode (401 / 403)              */
};

#define HTTP_BODY_JSON 0x1u /* read the body (413/415) and parse it (400) */

struct http_req;
struct http_res;
/* A handler reads req and fills res with one of the http_res_* setters
 * below; the dispatcher renders res after it returns. */
typedef void (*http_handler_fn)(const struct http_req *req, struct http_res *res);

/* A path is literal ("/chat") or has one parameter segment ("/chats/{}",
 * "/chat/{}/status"): a non-empty segment without '/', percent-decoded into
 * req->param (so "/chats/a%2Fb" gives param "a/b" for the handler to refuse). */
struct http_route {
    const char *method;     /* "GET", "POST", "DELETE" */
    const char *path;
    http_handler_fn handler;
    enum http_auth auth;
    unsigned flags;         /* HTTP_BODY_JSON */
};

#define HTTP_PARAM_MAX 1024        /* longest decoded path parameter kept   */
#define HTTP_REQUEST_ID_MAX 64     /* a client's X-Request-Id is kept if it
                                      is 1..64 printable ASCII bytes, else a
                                      UUID is generated                      */

/* One request, on the handler's stack frame of the dispatcher. Everything
 * in it is owned by the dispatcher and valid only during the handler call. */
struct http_req {
    struct mg_connection *conn;
    const struct mg_request_info *ri;
    const struct http_route *route;     /* NULL for built-in routes          */
    struct snap_ctx *ctx;               /* process-wide state (service.h)   */
    struct hot_store *hot;              /* this worker thread's Redis handle */
    char request_id[HTTP_REQUEST_ID_MAX + 1];
    char param[HTTP_PARAM_MAX + 1];     /* decoded path parameter            */
    size_t param_len;                   /* bytes in param (may hold NUL)     */
    cJSON *body;                        /* parsed JSON object (HTTP_BODY_JSON) */
    struct auth_identity who;           /* who.valid == 0: no token given    */
    int status;                         /* status sent, 0 before a reply     */
};

/* ---- what a handler answers ---------------------------------------------
 * A handler does not write to the connection: it fills the struct http_res
 * it is given (zeroed, on the dispatcher's stack), and the dispatcher
 * renders it in one place (http.c): Content-Type, Content-Length,
 * X-Request-Id, Cache-Control, Retry-After / Allow / WWW-Authenticate of
 * errors, the out-of-memory answer, the store-error log line and metric.
 * Exactly one setter takes effect: a second one is dropped (and logged as a
 * bug when rendered); a handler that sets none gets 500. Setters need no
 * server, so a handler can be run in a unit test on a fake http_req.
 * Ownership: res owns its JSON body (and a taken raw buffer) from the
 * setter on; the dispatcher frees it with http_res_cleanup(). */
enum http_res_kind {
    HTTP_RES_NONE,  /* nothing set yet                                     */
    HTTP_RES_JSON,  /* status + json                                       */
    HTTP_RES_RAW,   /* status + raw[0..raw_len) of content_type            */
    HTTP_RES_ERROR  /* {"error": code of error, "message": message}        */
};

#define HTTP_RES_HEADERS_MAX 1024 /* extra header lines of one answer       */
#define HTTP_RES_MESSAGE_MAX 512  /* an error's message (longer is cut)     */

struct http_res {
    enum http_res_kind kind;
    int status;                  /* of JSON and RAW; an ERROR's is its table's */
    cJSON *json;                 /* JSON: owned                               */
    const char *content_type;    /* RAW: a static string                      */
    const char *raw;             /* RAW: borrowed (static, or lives as long as
                                    the service), or points into raw_owned   */
    size_t raw_len;
    char *raw_owned;             /* RAW: owned, released with free()          */
    char headers[HTTP_RES_HEADERS_MAX]; /* "Name: value\r\n" lines (JSON, RAW) */
    size_t headers_len;
    enum http_error error;       /* ERROR                                     */
    char message[HTTP_RES_MESSAGE_MAX];
    long retry_after_s;          /* Retry-After of a 429/503; 0 = 1 s         */
    int close;                   /* close the connection after the answer     */
    char store[16];              /* a store error: "redis" | "cold" | ..., for
                                    the log line and the metric ("" : none)  */
    char what[96];               /* ... what was being done                   */
    struct snap_err cause;       /* ... and the driver's text (log only)      */
    int dropped;                 /* status of a second answer (a bug)         */
};

/* Answers status with body as JSON; res owns body from here on. complete:
 * 0 when building body failed part-way (cJSON returned NULL somewhere):
 * body is deleted and the answer is 500 internal "out of memory"; the same
 * when body is NULL. So a handler builds its object in one expression and
 * never writes the out-of-memory branch itself. Returns 0, or -1 (and
 * deletes body) when res was already set. */
int http_res_json(struct http_res *res, int status, cJSON *body, int complete);

/* Answers status with len bytes of content_type (a static string). body is
 * borrowed: it must outlive the request (a literal, the pages site). An
 * empty body is "" with len 0 (204, 304). Replies carry "Cache-Control:
 * no-store" unless the extra headers set a Cache-Control line of their own
 * (static pages do). Returns 0 or -1 as above. */
int http_res_raw(struct http_res *res, int status, const char *content_type, const char *body,
                 size_t len);

/* Same, taking body (malloc'd): res frees it, also when this returns -1. */
int http_res_raw_take(struct http_res *res, int status, const char *content_type, char *body,
                      size_t len);

/* Appends a header line ("Location: /chat/7\r\n"; the CRLF of the last line
 * may be left out) to a JSON or RAW answer. Returns 0, or -1 with the
 * headers unchanged when it does not fit in HTTP_RES_HEADERS_MAX. An
 * ERROR answer ignores them: its headers are the table's. */
int http_res_header(struct http_res *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Answers {"error": code, "message": <fmt>} with the status of e. 503 and 429
 * carry Retry-After (res->retry_after_s, default 1), 405 carries Allow for
 * the requested path, 401 WWW-Authenticate. Returns 0 or -1 as above. */
int http_res_error(struct http_res *res, enum http_error e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Answers a failed store call: SNAP_EUNAVAIL (or SNAP_ETIMEOUT) becomes 503
 * unavailable with Retry-After (the client may retry), anything else 500.
 * err->msg (driver text) is copied for the log line the dispatcher writes
 * with the request id and never reaches the client; store ("redis" |
 * "cold") labels that line and counts in snaptext_store_errors_total. what
 * says what was being done, e.g. "recording the message". Returns 0 or -1. */
int http_res_store_error(struct http_res *res, const char *store, const char *what,
                         const struct snap_err *err);

/* Releases what res owns (its JSON body, a taken raw buffer); NULL is fine.
 * res keeps its kind and status. */
void http_res_cleanup(struct http_res *res);

/* Status and code string of e, e.g. 404 / "not_found". */
int http_error_status(enum http_error e);
const char *http_error_code(enum http_error e);

/* The address of the client behind HAProxy: the X-Client-Addr header,
 * which HAProxy sets from the connection's source on every request
 * (overwriting what a client sent), when it looks like an IPv4/IPv6
 * address; otherwise the peer of this connection. out gets at most
 * HTTP_CLIENT_ADDR_MAX bytes and a NUL. */
#define HTTP_CLIENT_ADDR_MAX 64
void http_client_addr(const struct http_req *r, char out[HTTP_CLIENT_ADDR_MAX + 1]);

/* Decodes %XX escapes of src[0..len) into dst (dstlen bytes, NUL added).
 * Returns the decoded length, or -1 for a malformed escape or overflow.
 * '+' is kept as is (path semantics, not form semantics). */
long http_percent_decode(const char *src, size_t len, char *dst, size_t dstlen);

/* Installed by service.c as civetweb's http_error callback: the errors
 * civetweb itself raises (malformed request line, headers too large, ...)
 * get the API's JSON error body too. Returns 0 (handled). */
int http_civetweb_error(struct mg_connection *conn, int status, const char *errmsg);

/* The socket of r's client connection (http_conn.c), for a handler that
 * waits: -1 when it cannot be found. Only ever poll(2) it. */
int http_client_fd(const struct http_req *r);

/* 1 when the client of socket fd has closed its side or the connection
 * broke; 0 while it is there (and for fd -1). Never blocks. */
int http_client_gone(int fd);

/* Installed by service.c as the civetweb request handler for "/". */
int http_dispatch(struct mg_connection *conn, void *cbdata);

#endif
