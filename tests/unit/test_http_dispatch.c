/* test_http_dispatch.c: http_dispatch() behind a real civetweb on
 * 127.0.0.1:0 with a fake route table, spoken to over raw sockets. No Redis
 * and no cold store: the routes here need no token (or are refused before
 * one would be looked up), so the check order of API.md, the replies, the
 * request id, body limits, keep-alive and the bug guards can all be seen.
 * The services' own behaviour is tested end to end in tests/api/. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <civetweb.h>
#include <cjson/cJSON.h>

#include "snap/http.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/service.h"
#include "testing.h"

/* ---- the fake service ---------------------------------------------------- */

static void h_echo(const struct http_req *r, struct http_res *res)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "route", r->route->path);
    cJSON_AddNumberToObject(o, "param_len", (double)r->param_len);
    cJSON_AddStringToObject(o, "param", r->param);
    cJSON_AddNumberToObject(o, "who_valid", r->who.valid);
    if (r->body != NULL)
        cJSON_AddItemToObject(o, "body", cJSON_Duplicate(r->body, 1));
    (void)http_res_header(res, "Location: /x/1\r\n");
    (void)http_res_json(res, 200, o, 1);
}

static void h_created(const struct http_req *r, struct http_res *res)
{
    cJSON *o = cJSON_CreateObject();
    (void)r;
    cJSON_AddNumberToObject(o, "id", 7);
    (void)http_res_header(res, "Location: /chat/7"); /* no CRLF: added */
    (void)http_res_json(res, 201, o, 1);
}

static void h_nothing(const struct http_req *r, struct http_res *res)
{
    (void)r; /* forgets to answer: the dispatcher answers 500 */
    (void)res;
}

static void h_twice(const struct http_req *r, struct http_res *res)
{
    (void)r;
    (void)http_res_raw(res, 204, "application/json", "", 0);
    CHECK_EQ_INT(http_res_error(res, HTTP_E_CONFLICT, "second"), -1);
}

static void h_unavailable(const struct http_req *r, struct http_res *res)
{
    (void)r;
    (void)http_res_error(res, HTTP_E_UNAVAILABLE, "store is down");
}

static const struct http_route routes[] = {
    {"POST", "/chat", h_created, HTTP_AUTH_SENDER, HTTP_BODY_JSON},
    {"GET", "/chats/{}", h_echo, HTTP_AUTH_OWNER, 0},
    {"GET", "/chat/{}", h_echo, HTTP_AUTH_ADMIN, 0},
    {"POST", "/echo", h_echo, HTTP_AUTH_NONE, HTTP_BODY_JSON},
    {"GET", "/echo", h_echo, HTTP_AUTH_NONE, 0},
    {"DELETE", "/sessions/current", h_twice, HTTP_AUTH_NONE, 0},
    {"GET", "/users/me", h_echo, HTTP_AUTH_USER, 0},
    {"GET", "/nothing", h_nothing, HTTP_AUTH_NONE, 0},
    {"GET", "/down", h_unavailable, HTTP_AUTH_NONE, 0},
};
static const char *const route_names[] = {"POST /chat",   "GET /chats/{}", "GET /chat/{}",
                                          "POST /echo",   "GET /echo",     "DELETE /sessions",
                                          "GET /users/me", "GET /nothing", "GET /down"};
#define NROUTES (sizeof routes / sizeof routes[0])

static const struct service_def def = {"test", 0, routes, NROUTES, NULL, NULL, 0};

/* ---- a tiny HTTP client -------------------------------------------------- */

struct resp {
    int status;
    char head[4096];
    char body[70000];
    size_t body_len;
    int closed; /* server closed after the reply */
};

static int port;
static int want_close_check; /* roundtrip() also waits to see a close */

static int connect_server(void)
{
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Value of header name in r->head ("" when absent). */
static const char *header(const struct resp *r, const char *name, char *out, size_t outlen)
{
    const char *p = r->head;
    size_t n = strlen(name);
    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *e;
            while (*v == ' ')
                v++;
            e = strstr(v, "\r\n");
            if (e != NULL && (size_t)(e - v) < outlen) {
                memcpy(out, v, (size_t)(e - v));
                out[e - v] = '\0';
            }
            return out;
        }
    }
    return out;
}

/* Reads one response from fd (HEAD: no body). Returns 0 or -1. */
static int read_resp(int fd, struct resp *r, int is_head)
{
    char buf[80000], cl[32];
    size_t have = 0, hlen, want;
    char *end;
    ssize_t n;

    memset(r, 0, sizeof *r);
    for (;;) {
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end != NULL)
            break;
        n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    hlen = (size_t)(end - buf) + 4;
    if (hlen >= sizeof r->head)
        return -1;
    memcpy(r->head, buf, hlen);
    r->head[hlen] = '\0';
    r->status = atoi(buf + 9);
    header(r, "Content-Length", cl, sizeof cl);
    want = is_head || cl[0] == '\0' ? 0 : (size_t)atol(cl);
    if (want >= sizeof r->body)
        return -1;
    while (have - hlen < want) {
        n = recv(fd, buf + have, sizeof buf - 1 - have, 0);
        if (n <= 0)
            return -1;
        have += (size_t)n;
    }
    memcpy(r->body, buf + hlen, want);
    r->body[want] = '\0';
    r->body_len = want;
    return 0;
}

/* One request on a fresh connection. */
static int roundtrip(const char *req, size_t len, struct resp *r)
{
    int fd = connect_server(), rc;
    char one;
    if (fd < 0)
        return -1;
    rc = send_all(fd, req, len) == 0 ? read_resp(fd, r, strncmp(req, "HEAD", 4) == 0) : -1;
    if (rc == 0 && want_close_check) {
        struct timeval tv = {0, 300000};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        r->closed = recv(fd, &one, 1, 0) == 0;
    }
    close(fd);
    return rc;
}

static int rt(const char *req, struct resp *r)
{
    return roundtrip(req, strlen(req), r);
}

/* error code of a JSON error body */
static int error_is(const struct resp *r, const char *code)
{
    cJSON *j = cJSON_Parse(r->body);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    const cJSON *m = cJSON_GetObjectItem(j, "message");
    int ok = cJSON_IsString(e) && strcmp(e->valuestring, code) == 0 && cJSON_IsString(m) &&
             m->valuestring[0] != '\0' && cJSON_GetArraySize(j) == 2;
    if (!ok)
        fprintf(stderr, "  body was: %s\n", r->body);
    cJSON_Delete(j);
    return ok;
}

static struct resp R; /* big: keep it off the stack */

/* Sends req on a new connection into R and checks the reply's status. A
 * macro, so a failure names the line of the request. */
#define CHECK_STATUS(req, want)                                                                    \
    do {                                                                                           \
        CHECK_EQ_INT(rt((req), &R), 0);                                                            \
        CHECK_EQ_INT(R.status, (want));                                                            \
    } while (0)

/* ---- tests --------------------------------------------------------------- */

static void test_builtins(void)
{
    char v[256];

    CHECK_STATUS("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    CHECK_EQ_STR(R.body, "{\"status\":\"ok\"}");
    CHECK_EQ_STR(header(&R, "Content-Type", v, sizeof v), "application/json");
    CHECK_EQ_STR(header(&R, "Content-Length", v, sizeof v), "15");

    CHECK_STATUS("GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n", 503);
    CHECK_EQ_STR(R.body, "{\"status\":\"unavailable\",\"redis\":\"down\",\"store\":\"down\"}");
    CHECK_EQ_STR(header(&R, "Retry-After", v, sizeof v), "1");

    /* A request is counted just after its reply went out, possibly on
     * another worker: poll until both requests above show up. */
    for (int i = 0; i < 100; i++) {
        CHECK_EQ_INT(rt("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &R), 0);
        if (strstr(R.body, "route=\"other\",status=\"503\"") != NULL &&
            strstr(R.body, "route=\"other\",status=\"200\"") != NULL)
            break;
        usleep(10000);
    }
    CHECK_EQ_INT(R.status, 200);
    CHECK_EQ_STR(header(&R, "Content-Type", v, sizeof v),
                 "text/plain; version=0.0.4; charset=utf-8");
    CHECK(strstr(R.body, "snaptext_http_requests_total{service=\"test\",route=\"other\","
                         "status=\"200\"}") != NULL);
    CHECK(strstr(R.body, "route=\"other\",status=\"503\"") != NULL);

    CHECK_STATUS("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405);
    CHECK_EQ_STR(header(&R, "Allow", v, sizeof v), "GET");
    CHECK(error_is(&R, "method_not_allowed"));
}

static void test_404_405(void)
{
    char v[256];

    CHECK_STATUS("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404);
    CHECK(error_is(&R, "not_found"));
    CHECK_EQ_STR(header(&R, "Content-Type", v, sizeof v), "application/json");

    CHECK_STATUS("GET /chats/ HTTP/1.1\r\nHost: x\r\n\r\n", 404);    /* empty segment */
    CHECK_STATUS("GET /chats/a/b HTTP/1.1\r\nHost: x\r\n\r\n", 404); /* two segments */
    CHECK_STATUS("GET /chat HTTP/1.1\r\nHost: x\r\n\r\n", 405);
    CHECK_EQ_STR(header(&R, "Allow", v, sizeof v), "POST");

    CHECK_STATUS("PUT /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405);
    CHECK_EQ_STR(header(&R, "Allow", v, sizeof v), "POST, GET");
    CHECK(error_is(&R, "method_not_allowed"));

    /* 405 comes before 401: no token, wrong method */
    CHECK_STATUS("DELETE /users/me HTTP/1.1\r\nHost: x\r\n\r\n", 405);
    CHECK_EQ_STR(header(&R, "Allow", v, sizeof v), "GET");

    /* HEAD is not in the table: 405, and no body on the wire */
    want_close_check = 1;
    CHECK_EQ_INT(rt("HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n", &R), 0);
    want_close_check = 0;
    CHECK_EQ_INT(R.status, 405);
    CHECK_EQ_INT(R.body_len, 0);
    CHECK(!R.closed); /* nothing stray after the head */
}

static void test_auth_without_redis(void)
{
    char v[256];

    /* required mode: no token -> 401 without asking Redis */
    CHECK_STATUS("GET /users/me HTTP/1.1\r\nHost: x\r\n\r\n", 401);
    CHECK(error_is(&R, "unauthorized"));
    CHECK_EQ_STR(header(&R, "WWW-Authenticate", v, sizeof v), "Bearer");
    CHECK_STATUS("GET /users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n",
                 401);
    CHECK_STATUS("GET /chat/5 HTTP/1.1\r\nHost: x\r\n\r\n", 401);
    CHECK_STATUS("GET /chats/alice HTTP/1.1\r\nHost: x\r\n\r\n", 401);
    /* a token that would need Redis, with no Redis handle: 503 */
    CHECK_STATUS("GET /users/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\n\r\n", 503);
    CHECK(error_is(&R, "unavailable"));
    CHECK_EQ_STR(header(&R, "Retry-After", v, sizeof v), "1");
    /* 401 comes before 413 and 415 */
    CHECK_STATUS("POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                 "Content-Length: 999999\r\n\r\n",
                 401);
}

static void test_params(void)
{
    CHECK_STATUS("GET /echo?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", 200);

    /* /chats/{} is OWNER: open in the second server only (below) */
    CHECK_STATUS("GET /chat/abc HTTP/1.1\r\nHost: x\r\n\r\n", 401); /* auth before the parameter */
}

static void test_bodies(void)
{
    char v[256], req[1024];
    static char big[70000];
    int n;

    /* valid body reaches the handler */
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: Application/JSON; "
                 "charset=utf-8\r\nContent-Length: 12\r\n\r\n{\"a\":\"\xF0\x9F\x98\x80\"}",
                 200);
    CHECK(strstr(R.body, "\"body\":{\"a\":\"\xF0\x9F\x98\x80\"}") != NULL);
    CHECK_EQ_STR(header(&R, "Location", v, sizeof v), "/x/1");

    /* no Content-Type: read as JSON */
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 200);

    /* 415 */
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                 "Content-Length: 2\r\n\r\n{}",
                 415);
    CHECK(error_is(&R, "unsupported_media_type"));
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/jsonx\r\n"
                 "Content-Length: 2\r\n\r\n{}",
                 415);

    /* 413 on the declared length, before reading; the connection closes */
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                 "Content-Length: 4097\r\n\r\n",
                 413); /* 413 before 415 */
    CHECK(error_is(&R, "payload_too_large"));
    CHECK_EQ_STR(header(&R, "Connection", v, sizeof v), "close");

    /* exactly the limit is fine (4096 bytes here) */
    memset(big, ' ', 4096);
    big[0] = '{';
    big[4095] = '}';
    n = snprintf(req, sizeof req, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n");
    {
        static char full[8000];
        memcpy(full, req, (size_t)n);
        memcpy(full + n, big, 4096);
        CHECK_EQ_INT(roundtrip(full, (size_t)n + 4096, &R), 0);
        CHECK_EQ_INT(R.status, 200);
    }

    /* chunked, over the limit -> 413 */
    {
        static char chunked[12000];
        size_t o = 0;
        int k;
        o += (size_t)snprintf(chunked, sizeof chunked,
                              "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        for (k = 0; k < 5; k++) {
            o += (size_t)snprintf(chunked + o, sizeof chunked - o, "400\r\n");
            memset(chunked + o, ' ', 1024);
            o += 1024;
            o += (size_t)snprintf(chunked + o, sizeof chunked - o, "\r\n");
        }
        o += (size_t)snprintf(chunked + o, sizeof chunked - o, "0\r\n\r\n");
        CHECK_EQ_INT(roundtrip(chunked, o, &R), 0);
        CHECK_EQ_INT(R.status, 413);
    }
    /* chunked, small -> fine */
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
                 200);
    CHECK(strstr(R.body, "\"body\":{\"a\":1}") != NULL);

    /* 400s */
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]", 400);
    CHECK(error_is(&R, "invalid_json"));
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400);
    CHECK(error_is(&R, "invalid_json"));
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{\"a\":\"\\ud800\"}",
                 400);
    CHECK(error_is(&R, "invalid_json"));
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 14\r\n\r\n{\"a\":\"\\u0000\"}",
                 400);
    CHECK(error_is(&R, "invalid_field"));
    CHECK_STATUS("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{\"a\":1,\"a\":2}",
                 400);
    CHECK(strstr(R.body, "duplicate key \\\"a\\\"") != NULL);
}

static void test_request_id(void)
{
    char v[256];

    CHECK_EQ_INT(rt("GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n", &R), 0);
    CHECK_EQ_STR(header(&R, "X-Request-Id", v, sizeof v), "abc-123");
    CHECK_EQ_INT(rt("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", &R), 0);
    header(&R, "X-Request-Id", v, sizeof v);
    CHECK_EQ_INT(strlen(v), 36); /* a UUID */
    CHECK(v[8] == '-' && v[13] == '-' && v[14] == '4');
    CHECK_EQ_INT(rt("GET /echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: has space\r\n\r\n", &R), 0);
    CHECK_EQ_INT(strlen(header(&R, "X-Request-Id", v, sizeof v)), 36);
    CHECK_EQ_INT(rt("GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: "
                    "0123456789012345678901234567890123456789012345678901234567890123\r\n\r\n",
                    &R),
                 0);
    CHECK_EQ_INT(strlen(header(&R, "X-Request-Id", v, sizeof v)), 64);
    CHECK_EQ_INT(rt("GET /nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: "
                    "01234567890123456789012345678901234567890123456789012345678901234\r\n\r\n",
                    &R),
                 0);
    CHECK_EQ_INT(strlen(header(&R, "X-Request-Id", v, sizeof v)), 36);
}

static void test_handler_bugs(void)
{
    char v[256];

    CHECK_STATUS("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", 500);
    CHECK(error_is(&R, "internal"));

    CHECK_STATUS("DELETE /sessions/current HTTP/1.1\r\nHost: x\r\n\r\n", 204);
    CHECK_EQ_STR(header(&R, "Content-Length", v, sizeof v), "");
    CHECK_EQ_STR(header(&R, "Content-Type", v, sizeof v), "application/json");

    CHECK_STATUS("GET /down HTTP/1.1\r\nHost: x\r\n\r\n", 503);
    CHECK_EQ_STR(header(&R, "Retry-After", v, sizeof v), "1");
}

static void test_keep_alive(void)
{
    int fd = connect_server(), i;
    const char *reqs[] = {
        "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]",
        /* body of a route that does not read it is skipped by civetweb */
        "GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    static const int want[] = {200, 200, 404, 400, 200, 200};

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    for (i = 0; i < 6; i++) {
        char v[64];
        CHECK_EQ_INT(send_all(fd, reqs[i], strlen(reqs[i])), 0);
        CHECK_EQ_INT(read_resp(fd, &R, 0), 0);
        CHECK_EQ_INT(R.status, want[i]);
        CHECK_EQ_STR(header(&R, "Connection", v, sizeof v), "");
    }
    close(fd);

    /* HTTP/1.0 closes unless asked */
    want_close_check = 1;
    CHECK_EQ_INT(rt("GET /echo HTTP/1.0\r\n\r\n", &R), 0);
    want_close_check = 0;
    CHECK_EQ_INT(R.status, 200);
    CHECK(R.closed);
}

/* ---- open mode, on a second server --------------------------------------- */

static void test_open_mode(void)
{
    cJSON *j;

    CHECK_STATUS("GET /chats/j%C3%BCrgen HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    j = cJSON_Parse(R.body);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "param")), "j\xC3\xBCrgen");
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "route")), "/chats/{}");
    cJSON_Delete(j);

    CHECK_STATUS("GET /chats/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    j = cJSON_Parse(R.body);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "param")), "a/b");
    cJSON_Delete(j);

    CHECK_STATUS("GET /chats/a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 200);
    j = cJSON_Parse(R.body);
    CHECK_EQ_INT(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "param_len")), 3);
    cJSON_Delete(j);

    CHECK_STATUS("GET /chats/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400);
    CHECK(error_is(&R, "invalid_field"));
    CHECK(strstr(R.body, "percent-encoding") != NULL);
    CHECK_STATUS("GET /chats/abc%4 HTTP/1.1\r\nHost: x\r\n\r\n", 400);

    /* open mode: SENDER without a token is fine, with a bad one is not */
    CHECK_STATUS("POST /chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 201);
    {
        char v[64];
        CHECK_EQ_STR(header(&R, "Location", v, sizeof v), "/chat/7");
    }
    CHECK_STATUS("POST /chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\n"
                 "Content-Length: 2\r\n\r\n{}",
                 401);
    /* ADMIN needs a token in every mode */
    CHECK_STATUS("GET /chat/5 HTTP/1.1\r\nHost: x\r\n\r\n", 401);
}

static void test_long_param(void)
{
    static char req[6000];
    size_t o;
    o = (size_t)snprintf(req, sizeof req, "GET /chats/");
    memset(req + o, 'a', 1025);
    o += 1025;
    o += (size_t)snprintf(req + o, sizeof req - o, " HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(roundtrip(req, o, &R), 0);
    CHECK_EQ_INT(R.status, 400);
    CHECK(strstr(R.body, "at most 1024 bytes") != NULL);
    o = (size_t)snprintf(req, sizeof req, "GET /chats/");
    memset(req + o, 'a', 1024);
    o += 1024;
    o += (size_t)snprintf(req + o, sizeof req - o, " HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK_EQ_INT(roundtrip(req, o, &R), 0);
    CHECK_EQ_INT(R.status, 200);
}

/* ---- main ---------------------------------------------------------------- */

static struct mg_context *start(struct snap_ctx *ctx)
{
    const char *options[] = {"listening_ports", "127.0.0.1:0", "num_threads", "2",
                             "enable_keep_alive", "yes", "decode_url", "no", NULL};
    struct mg_callbacks cb;
    struct mg_context *mg;
    struct mg_server_port sp[2];

    memset(&cb, 0, sizeof cb);
    mg = mg_start(&cb, ctx, options);
    if (mg == NULL)
        return NULL;
    mg_set_request_handler(mg, "/", http_dispatch, ctx);
    if (mg_get_server_ports(mg, 2, sp) < 1) {
        mg_stop(mg);
        return NULL;
    }
    port = sp[0].port;
    return mg;
}

int main(void)
{
    static struct snap_ctx ctx;
    struct mg_context *mg;

    log_init("test", SNAP_LOG_ERROR);
    mg_init_library(0);
    memset(&ctx, 0, sizeof ctx);
    ctx.def = &def;
    ctx.cfg.auth = SNAP_AUTH_REQUIRED;
    ctx.cfg.max_body_bytes = 4096;
    ctx.metrics = metrics_new("test", route_names, NROUTES);

    mg = start(&ctx);
    CHECK(mg != NULL);
    if (mg != NULL) {
        RUN(test_builtins);
        RUN(test_404_405);
        RUN(test_auth_without_redis);
        RUN(test_params);
        RUN(test_bodies);
        RUN(test_request_id);
        RUN(test_handler_bugs);
        RUN(test_keep_alive);
        mg_stop(mg);
    }

    ctx.cfg.auth = SNAP_AUTH_OPEN;
    mg = start(&ctx);
    CHECK(mg != NULL);
    if (mg != NULL) {
        RUN(test_open_mode);
        RUN(test_long_param);
        mg_stop(mg);
    }
    metrics_free(ctx.metrics);
    mg_exit_library();
    return TEST_SUMMARY();
}
