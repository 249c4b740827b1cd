/* test_http_parse.c: the parts that need no server: body parsing
 * (json_strict.h: UTF-8, surrogates, objects only, trailing data, duplicate
 * keys, \u0000, strict numbers), percent-decoding, and the error table. */
#include <string.h>

#include <cjson/cJSON.h>

#include "snap/http.h"
#include "snap/json_strict.h"
#include "testing.h"

/* Parses s; returns 0 for an object, 1 for invalid_json, 2 for a NUL field.
 * msg receives the reason. */
static int parse_kind(const char *s, size_t len, char *msg, size_t msglen)
{
    int nul = -1;
    cJSON *j = json_strict_parse(s, len, &nul, msg, msglen);
    if (j != NULL) {
        CHECK(cJSON_IsObject(j));
        CHECK_EQ_INT(nul, 0);
        cJSON_Delete(j);
        return 0;
    }
    CHECK(msg[0] != '\0');
    return nul ? 2 : 1;
}

static int kind(const char *s)
{
    char msg[160];
    return parse_kind(s, strlen(s), msg, sizeof msg);
}

/* Checks that s is refused as kind k (see parse_kind) with exactly the
 * reason want. A macro, so a failure names the line of the case. */
#define CHECK_REFUSED(s, k, want)                                                                  \
    do {                                                                                           \
        const char *s_ = (s);                                                                      \
        char msg_[160];                                                                            \
        CHECK_EQ_INT(parse_kind(s_, strlen(s_), msg_, sizeof msg_), (k));                          \
        CHECK_EQ_STR(msg_, (want));                                                                \
    } while (0)

static void test_valid_bodies(void)
{
    char msg[160];
    int nul = -1;
    cJSON *j;

    CHECK_EQ_INT(kind("{}"), 0);
    CHECK_EQ_INT(kind("  {\"a\":1}  \r\n\t"), 0);
    CHECK_EQ_INT(kind("{\"username\":\"alice\",\"text\":\"hi\",\"timeout\":60}"), 0);
    CHECK_EQ_INT(kind("{\"n\":[-0,0.5,1e3,1E+3,-1.25e-2,123456789]}"), 0);
    CHECK_EQ_INT(kind("{\"nested\":{\"a\":{\"a\":1}},\"a\":2}"), 0); /* nested dups ok */
    CHECK_EQ_INT(kind("{\"t\":true,\"f\":false,\"z\":null}"), 0);
    CHECK_EQ_INT(kind("{\"s\":\"quote \\\" backslash \\\\ slash \\/ \\b\\f\\n\\r\\t\"}"), 0);

    /* emoji, raw and escaped, come out as the same UTF-8 */
    {
        const char *s = "{\"a\":\"\xF0\x9F\x98\x80\",\"b\":\"\\ud83d\\ude00\"}";
        j = json_strict_parse(s, strlen(s), &nul, msg, sizeof msg);
    }
    CHECK(j != NULL);
    if (j != NULL) {
        CHECK_EQ_STR(cJSON_GetObjectItem(j, "a")->valuestring, "\xF0\x9F\x98\x80");
        CHECK_EQ_STR(cJSON_GetObjectItem(j, "b")->valuestring, "\xF0\x9F\x98\x80");
        cJSON_Delete(j);
    }

    /* only len bytes are read: no NUL terminator needed */
    {
        const char buf[] = {'{', '"', 'a', '"', ':', '1', '}', 'X', 'X'};
        nul = -1;
        j = json_strict_parse(buf, 7, &nul, msg, sizeof msg);
        CHECK(j != NULL);
        CHECK_EQ_INT(nul, 0);
        cJSON_Delete(j);
    }
}

static void test_invalid_utf8(void)
{
    char msg[160];

    CHECK_REFUSED("{\"a\":\"\xFF\"}", 1, "body is not valid UTF-8");
    CHECK_REFUSED("{\"a\":\"\xC0\xAF\"}", 1, "body is not valid UTF-8");
    CHECK_REFUSED("{\"a\":\"\xED\xA0\x80\"}", 1, "body is not valid UTF-8"); /* CESU */
    CHECK_EQ_INT(parse_kind("{\"a\":\"\xC3\"}", 9, msg, sizeof msg), 1);
}

static void test_lone_surrogates(void)
{
    CHECK_EQ_INT(kind("{\"a\":\"\\ud800\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\udc00\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\ud800\\u0041\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\ud800\\ud800\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\uDBFF\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"x\\ud800\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\ud800x\"}"), 1);
    CHECK_EQ_INT(kind("{\"\\ud800\":1}"), 1); /* in a key */
    CHECK_EQ_INT(kind("{\"a\":[\"\\udfff\"]}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\\\ud800\"}"), 0); /* an escaped backslash, not an escape */
    CHECK_EQ_INT(kind("{\"a\":\"\\uDBFF\\uDFFF\"}"), 0); /* U+10FFFF */
    {
        char msg[160];
        const char *s = "{\"a\":\"\\ud800\"}";
        CHECK_EQ_INT(parse_kind(s, strlen(s), msg, sizeof msg), 1);
        CHECK(strstr(msg, "surrogate") != NULL);
    }
}

static void test_not_objects(void)
{
    char msg[160];
    static const char *const others[] = {"[]", "[{}]", "\"x\"", "1", "true", "null"};
    size_t i;

    for (i = 0; i < sizeof others / sizeof others[0]; i++) {
        CHECK_EQ_INT(parse_kind(others[i], strlen(others[i]), msg, sizeof msg), 1);
        CHECK_EQ_STR(msg, "body must be a JSON object");
    }
    CHECK_EQ_INT(parse_kind("", 0, msg, sizeof msg), 1);
    CHECK(strstr(msg, "empty") != NULL);
    CHECK_EQ_INT(kind("   "), 1);
}

static void test_malformed(void)
{
    char msg[160];

    CHECK_EQ_INT(kind("{"), 1);
    CHECK_EQ_INT(kind("{\"a\":}"), 1);
    CHECK_EQ_INT(kind("{\"a\":1,}"), 1);
    CHECK_EQ_INT(kind("{'a':1}"), 1);
    CHECK_EQ_INT(kind("{a:1}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"unterminated}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\x\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"\\u12\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":NaN}"), 1);
    CHECK_EQ_INT(kind("{\"a\":Infinity}"), 1);
    /* numbers cJSON alone would take */
    CHECK_EQ_INT(kind("{\"a\":01}"), 1);
    CHECK_EQ_INT(kind("{\"a\":1.}"), 1);
    CHECK_EQ_INT(kind("{\"a\":-.5}"), 1);
    CHECK_EQ_INT(kind("{\"a\":+1}"), 1);
    CHECK_EQ_INT(kind("{\"a\":1e}"), 1);
    CHECK_EQ_INT(kind("{\"a\":0x10}"), 1);
    CHECK_EQ_INT(kind("{\"a\":1.2.3}"), 1);
    CHECK_EQ_INT(kind("{\"a\":-}"), 1);
    /* control characters cJSON alone would take */
    CHECK_EQ_INT(kind("{\"a\":\"raw\ttab\"}"), 1);
    CHECK_EQ_INT(kind("{\"a\":\"raw\nnewline\"}"), 1);
    CHECK_EQ_INT(kind("{\x0b\"a\":1}"), 1);
    CHECK_EQ_INT(parse_kind("{\"a\":\"x\0y\"}", 11, msg, sizeof msg), 1); /* raw NUL */
    CHECK_EQ_INT(parse_kind("{\"a\":1}\0", 8, msg, sizeof msg), 1);
}

static void test_trailing(void)
{
    char msg[160];
    const char *s;

    s = "{} x";
    CHECK_EQ_INT(parse_kind(s, strlen(s), msg, sizeof msg), 1);
    CHECK(strstr(msg, "after the JSON value") != NULL);
    CHECK_EQ_INT(kind("{}{}"), 1);
    CHECK_EQ_INT(kind("{\"a\":1}]"), 1);
    CHECK_EQ_INT(kind("{} \n "), 0);
}

static void test_duplicate_keys(void)
{
    char msg[160];
    const char *s;

    CHECK_REFUSED("{\"x\":1,\"y\":2,\"x\":3}", 1, "duplicate key \"x\"");
    CHECK_REFUSED("{\"username\":\"a\",\"username\":\"b\"}", 1, "duplicate key \"username\"");
    /* an escaped spelling is the same key */
    CHECK_REFUSED("{\"a\":1,\"\\u0061\":2}", 1, "duplicate key \"a\"");
    /* keys differing only in case are different */
    CHECK_EQ_INT(kind("{\"a\":1,\"A\":2}"), 0);
    /* a long key is cut in the message */
    s = "{\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\":1,"
        "\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\":2}";
    CHECK_EQ_INT(parse_kind(s, strlen(s), msg, sizeof msg), 1);
    CHECK(strlen(msg) < 70);
    CHECK(strstr(msg, "...") != NULL);
    /* many keys: still quick, duplicate found at the end */
    {
        static char big[200000];
        size_t o = 0;
        int i, n;
        big[o++] = '{';
        for (i = 0; i < 10000; i++) {
            n = snprintf(big + o, sizeof big - o, "%s\"k%d\":%d", i ? "," : "", i, i);
            o += (size_t)n;
        }
        n = snprintf(big + o, sizeof big - o, "}");
        o += (size_t)n;
        CHECK_EQ_INT(parse_kind(big, o, msg, sizeof msg), 0);
        o -= 1;
        n = snprintf(big + o, sizeof big - o, ",\"k5\":0}");
        o += (size_t)n;
        CHECK_EQ_INT(parse_kind(big, o, msg, sizeof msg), 1);
        CHECK_EQ_STR(msg, "duplicate key \"k5\"");
    }
}

static void test_nul_escape(void)
{
    /* names the field (API.md) */
    CHECK_REFUSED("{\"text\":\"a\\u0000b\"}", 2, "text must not contain \\u0000");
    CHECK_REFUSED("{\"text\":\"ok\", \"username\":\"bob\\u0000x\"}", 2,
                  "username must not contain \\u0000");
    /* nested: the top-level field */
    CHECK_REFUSED("{\"a\":[\"x\",{\"b\":\"\\u0000\"}],\"c\":1}", 2, "a must not contain \\u0000");
    CHECK_REFUSED("{\"ab\\u0000c\":1}", 2,
                  "field names must not contain \\u0000 (the field \"ab\")");
    CHECK_REFUSED("{\"\":\"\\u0000\"}", 2, "the field \"\" must not contain \\u0000");
    CHECK_EQ_INT(kind("{\"x\":[\"\\u0000\"]}"), 2);
    CHECK_EQ_INT(kind("{\"\\u0000\":1}"), 2);
    CHECK_EQ_INT(kind("{\"a\\u0000b\":1,\"a\\u0000c\":2}"), 2); /* not a false duplicate */
    CHECK_EQ_INT(kind("{\"a\":\"\\\\u0000\"}"), 0); /* escaped backslash + "u0000" */
    CHECK_EQ_INT(kind("{\"a\":\"\\u0001\"}"), 0);
    /* malformed JSON wins over the NUL */
    CHECK_EQ_INT(kind("{\"a\":\"\\u0000\""), 1);
}

static void test_nesting(void)
{
    static char deep[4000];
    size_t i, o = 0;
    deep[o++] = '{';
    deep[o++] = '"';
    deep[o++] = 'a';
    deep[o++] = '"';
    deep[o++] = ':';
    for (i = 0; i < 1500; i++)
        deep[o++] = '[';
    for (i = 0; i < 1500; i++)
        deep[o++] = ']';
    deep[o++] = '}';
    {
        char msg[160];
        CHECK_EQ_INT(parse_kind(deep, o, msg, sizeof msg), 1); /* cJSON's depth limit */
    }
}

static long dec(const char *s, char *out, size_t outlen)
{
    return http_percent_decode(s, strlen(s), out, outlen);
}

static void test_percent_decode(void)
{
    char out[32];

    CHECK_EQ_INT(dec("alice", out, sizeof out), 5);
    CHECK_EQ_STR(out, "alice");
    CHECK_EQ_INT(dec("j%C3%BCrgen", out, sizeof out), 7);
    CHECK_EQ_STR(out, "j\xC3\xBCrgen");
    CHECK_EQ_INT(dec("j%c3%bcrgen", out, sizeof out), 7);
    CHECK_EQ_STR(out, "j\xC3\xBCrgen");
    CHECK_EQ_INT(dec("a%2Fb", out, sizeof out), 3);
    CHECK_EQ_STR(out, "a/b");
    CHECK_EQ_INT(dec("a+b", out, sizeof out), 3);
    CHECK_EQ_STR(out, "a+b");
    CHECK_EQ_INT(dec("%25", out, sizeof out), 1);
    CHECK_EQ_STR(out, "%");
    CHECK_EQ_INT(dec("%2541", out, sizeof out), 3); /* decoded once only */
    CHECK_EQ_STR(out, "%41");
    CHECK_EQ_INT(dec("", out, sizeof out), 0);
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(dec("a%00b", out, sizeof out), 3);
    CHECK(memcmp(out, "a\0b", 4) == 0);

    CHECK_EQ_INT(dec("%zz", out, sizeof out), -1);
    CHECK_EQ_INT(dec("%4", out, sizeof out), -1);
    CHECK_EQ_INT(dec("abc%", out, sizeof out), -1);
    CHECK_EQ_INT(dec("%%41", out, sizeof out), -1);
    CHECK_EQ_INT(dec("%G0", out, sizeof out), -1);

    /* overflow: 4 bytes plus NUL need 5 */
    CHECK_EQ_INT(dec("abcd", out, 5), 4);
    CHECK_EQ_INT(dec("abcde", out, 5), -1);
    CHECK_EQ_INT(dec("%41%42%43%44", out, 5), 4);
    CHECK_EQ_STR(out, "ABCD");
    CHECK_EQ_INT(dec("%41%42%43%44%45", out, 5), -1);
    CHECK_EQ_INT(dec("", out, 1), 0);
    CHECK_EQ_INT(dec("a", out, 1), -1);
    CHECK_EQ_INT(dec("a", out, 0), -1);
}

static void test_error_table(void)
{
    CHECK_EQ_INT(http_error_status(HTTP_E_INVALID_JSON), 400);
    CHECK_EQ_STR(http_error_code(HTTP_E_INVALID_JSON), "invalid_json");
    CHECK_EQ_INT(http_error_status(HTTP_E_INVALID_FIELD), 400);
    CHECK_EQ_STR(http_error_code(HTTP_E_INVALID_FIELD), "invalid_field");
    CHECK_EQ_INT(http_error_status(HTTP_E_UNAUTHORIZED), 401);
    CHECK_EQ_INT(http_error_status(HTTP_E_FORBIDDEN), 403);
    CHECK_EQ_INT(http_error_status(HTTP_E_NOT_FOUND), 404);
    CHECK_EQ_STR(http_error_code(HTTP_E_NOT_FOUND), "not_found");
    CHECK_EQ_INT(http_error_status(HTTP_E_METHOD_NOT_ALLOWED), 405);
    CHECK_EQ_STR(http_error_code(HTTP_E_METHOD_NOT_ALLOWED), "method_not_allowed");
    CHECK_EQ_INT(http_error_status(HTTP_E_CONFLICT), 409);
    CHECK_EQ_INT(http_error_status(HTTP_E_PAYLOAD_TOO_LARGE), 413);
    CHECK_EQ_STR(http_error_code(HTTP_E_PAYLOAD_TOO_LARGE), "payload_too_large");
    CHECK_EQ_INT(http_error_status(HTTP_E_UNSUPPORTED_MEDIA_TYPE), 415);
    CHECK_EQ_STR(http_error_code(HTTP_E_UNSUPPORTED_MEDIA_TYPE), "unsupported_media_type");
    CHECK_EQ_INT(http_error_status(HTTP_E_RATE_LIMITED), 429);
    CHECK_EQ_INT(http_error_status(HTTP_E_INTERNAL), 500);
    CHECK_EQ_INT(http_error_status(HTTP_E_UNAVAILABLE), 503);
    CHECK_EQ_STR(http_error_code(HTTP_E_UNAVAILABLE), "unavailable");
    CHECK_EQ_INT(http_error_status(HTTP_E__COUNT), 500);
}

int main(void)
{
    RUN(test_valid_bodies);
    RUN(test_invalid_utf8);
    RUN(test_lone_surrogates);
    RUN(test_not_objects);
    RUN(test_malformed);
    RUN(test_trailing);
    RUN(test_duplicate_keys);
    RUN(test_nul_escape);
    RUN(test_nesting);
    RUN(test_percent_decode);
    RUN(test_error_table);
    return TEST_SUMMARY();
}
