/* test_http_res.c: handlers' answers without a server. The http_res
 * setters (ownership, exactly one answer, the out-of-memory and store-error
 * answers), then a few real handlers of the services run on a fake
 * http_req up to the point where they would need a store: their refusals
 * are plain data. tests/CMakeLists.txt links the handler files in. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "snap/http.h"
#include "snap/log.h"
#include "testing.h"

#include "../services/fetch/fetch.h"
#include "../services/pages/pages.h"
#include "../services/users/users.h"

static void test_json_owns_body(void)
{
    struct http_res res;
    cJSON *o = cJSON_CreateObject();

    memset(&res, 0, sizeof res);
    CHECK_EQ_INT(http_res_json(&res, 201, o, o && cJSON_AddStringToObject(o, "a", "b")), 0);
    CHECK_EQ_INT(res.kind, HTTP_RES_JSON);
    CHECK_EQ_INT(res.status, 201);
    CHECK(res.json == o);
    /* a second answer is dropped (and its body freed), the first stays */
    CHECK_EQ_INT(http_res_json(&res, 200, cJSON_CreateObject(), 1), -1);
    CHECK_EQ_INT(http_res_error(&res, HTTP_E_CONFLICT, "second"), -1);
    CHECK_EQ_INT(res.dropped, 409);
    CHECK_EQ_INT(res.status, 201);
    http_res_cleanup(&res);
    CHECK(res.json == NULL);
    http_res_cleanup(NULL);
}

static void test_out_of_memory(void)
{
    struct http_res res;

    memset(&res, 0, sizeof res);
    CHECK_EQ_INT(http_res_json(&res, 200, NULL, 1), 0);
    CHECK_EQ_INT(res.kind, HTTP_RES_ERROR);
    CHECK_EQ_INT(res.status, 500);
    CHECK_EQ_INT(res.error, HTTP_E_INTERNAL);
    CHECK_EQ_STR(res.message, "out of memory");

    memset(&res, 0, sizeof res);
    CHECK_EQ_INT(http_res_json(&res, 200, cJSON_CreateObject(), 0), 0); /* deleted: ASan */
    CHECK_EQ_STR(res.message, "out of memory");
    http_res_cleanup(&res);
}

static void test_store_errors(void)
{
    struct http_res res;
    struct snap_err err;

    memset(&res, 0, sizeof res);
    (void)snap_err_set(&err, SNAP_EUNAVAIL, "connection refused");
    CHECK_EQ_INT(http_res_store_error(&res, "redis", "opening the session", &err), 0);
    CHECK_EQ_INT(res.status, 503);
    CHECK_EQ_STR(res.message, "storage is unavailable while opening the session; retry in a moment");
    CHECK_EQ_STR(res.store, "redis");
    CHECK_EQ_STR(res.cause.msg, "connection refused"); /* for the log, not the client */

    memset(&res, 0, sizeof res);
    (void)snap_err_set(&err, SNAP_ERR, "disk I/O error");
    CHECK_EQ_INT(http_res_store_error(&res, "cold", "registering the user", &err), 0);
    CHECK_EQ_INT(res.status, 500);
    CHECK_EQ_STR(res.message, "internal error while registering the user");
    CHECK(strstr(res.message, "disk") == NULL);
}

static void test_raw_and_headers(void)
{
    struct http_res res;
    char *buf = malloc(5), big[HTTP_RES_HEADERS_MAX];

    memset(&res, 0, sizeof res);
    CHECK(buf != NULL);
    if (buf == NULL) return;
    memcpy(buf, "hello", 5);
    CHECK_EQ_INT(http_res_header(&res, "Location: /chat/%d\r\n", 7), 0);
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ_INT(http_res_header(&res, "X: %s\r\n", big), -1);
    CHECK_EQ_STR(res.headers, "Location: /chat/7\r\n"); /* unchanged by the refusal */
    CHECK_EQ_INT(http_res_raw_take(&res, 200, "text/plain", buf, 5), 0);
    CHECK_EQ_INT(res.raw_len, 5);
    CHECK_EQ_INT(http_res_raw_take(&res, 200, "text/plain", malloc(3), 3), -1); /* freed */
    http_res_cleanup(&res); /* frees buf: ASan */
}

/* ---- the services' handlers on a fake request ----------------------------- */

static void fake_req(struct http_req *r, const char *param, cJSON *body)
{
    memset(r, 0, sizeof *r);
    (void)snprintf(r->request_id, sizeof r->request_id, "test");
    (void)snprintf(r->param, sizeof r->param, "%s", param);
    r->param_len = strlen(r->param);
    r->body = body;
}

static void test_handlers_refuse(void)
{
    struct http_req r;
    struct http_res res;
    cJSON *body = cJSON_Parse("{\"username\":\"bob\"}");

    fake_req(&r, "", body);
    memset(&res, 0, sizeof res);
    users_register(&r, &res);
    CHECK_EQ_INT(res.kind, HTTP_RES_ERROR);
    CHECK_EQ_INT(res.error, HTTP_E_INVALID_FIELD);
    CHECK(strstr(res.message, "password") != NULL);
    http_res_cleanup(&res);
    cJSON_Delete(body);

    fake_req(&r, "12a", NULL);
    memset(&res, 0, sizeof res);
    fetch_chat_lookup(&r, &res);
    CHECK_EQ_INT(res.status, 400);
    CHECK_EQ_STR(res.message, "id must be a positive 64-bit integer (decimal digits only)");

    fake_req(&r, "0", NULL);
    memset(&res, 0, sizeof res);
    fetch_chat_status(&r, &res);
    CHECK_EQ_INT(res.error, HTTP_E_INVALID_FIELD);

    fake_req(&r, "", NULL);
    memset(&res, 0, sizeof res);
    pages_root(&r, &res);
    CHECK_EQ_INT(res.kind, HTTP_RES_RAW);
    CHECK_EQ_INT(res.status, 302);
    CHECK_EQ_STR(res.headers, "Location: /app/\r\nCache-Control: no-cache\r\n");
    CHECK_EQ_INT(res.raw_len, 10);
}

int main(void)
{
    log_init("test", SNAP_LOG_ERROR);
    RUN(test_json_owns_body);
    RUN(test_out_of_memory);
    RUN(test_store_errors);
    RUN(test_raw_and_headers);
    RUN(test_handlers_refuse);
    return TEST_SUMMARY();
}
