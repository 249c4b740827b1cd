/* test_validate.c: the field rules of API.md (validate.h) on every example
 * the contract gives: usernames with each kind of whitespace and control
 * character, wrong JSON types, the timeout forms, and message ids. */
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "snap/validate.h"
#include "testing.h"

static int uname(const char *s)
{
    return username_valid(s, strlen(s));
}

static void test_utf8_valid(void)
{
    CHECK(utf8_valid("", 0));
    CHECK(utf8_valid("plain ascii", 11));
    CHECK(utf8_valid("j\xC3\xBCrgen", 7));
    CHECK(utf8_valid("\xF0\x9F\x98\x80", 4));      /* U+1F600 */
    CHECK(utf8_valid("\xF4\x8F\xBF\xBF", 4));      /* U+10FFFF */
    CHECK(utf8_valid("a\0b", 3));                  /* NUL is valid UTF-8 */
    CHECK(!utf8_valid("\xC0\xAF", 2));             /* overlong '/' */
    CHECK(!utf8_valid("\xE0\x80\xAF", 3));         /* overlong, 3 bytes */
    CHECK(!utf8_valid("\xF0\x80\x80\xAF", 4));     /* overlong, 4 bytes */
    CHECK(!utf8_valid("\xED\xA0\x80", 3));         /* U+D800 */
    CHECK(!utf8_valid("\xED\xBF\xBF", 3));         /* U+DFFF */
    CHECK(!utf8_valid("\xF4\x90\x80\x80", 4));     /* above U+10FFFF */
    CHECK(!utf8_valid("\xF5\x80\x80\x80", 4));
    CHECK(!utf8_valid("\x80", 1));                 /* stray continuation */
    CHECK(!utf8_valid("\xC3", 1));                 /* truncated */
    CHECK(!utf8_valid("\xE2\x82", 2));
    CHECK(!utf8_valid("\xC3\x28", 2));             /* bad continuation */
    CHECK(!utf8_valid("\xFF", 1));
    CHECK(!utf8_valid("ok\xFE", 3));
}

static void test_username_examples(void)
{
    char max[65], over[66];

    CHECK(uname("alice"));
    CHECK(uname("j\xC3\xBCrgen"));
    CHECK(uname("\xF0\x9F\x98\x80"));
    CHECK(uname("a.b-c_d@e+f"));
    CHECK(!uname(""));
    CHECK(!username_valid(NULL, 0));

    memset(max, 'a', 64);
    max[64] = '\0';
    memset(over, 'a', 65);
    over[65] = '\0';
    CHECK(username_valid(max, 64));
    CHECK(!username_valid(over, 65));
    /* 64 bytes of two-byte characters is fine, 66 is not */
    {
        char two[67];
        size_t i;
        for (i = 0; i < 66; i += 2) {
            two[i] = '\xC3';
            two[i + 1] = '\xBC';
        }
        two[66] = '\0';
        CHECK(username_valid(two, 64));
        CHECK(!username_valid(two, 66));
    }
}

static void test_username_whitespace_controls(void)
{
    /* ASCII whitespace and controls */
    CHECK(!uname("a b"));
    CHECK(!uname("a\tb"));
    CHECK(!uname("a\nb"));
    CHECK(!uname("a\rb"));
    CHECK(!uname("a\vb"));
    CHECK(!uname("a\fb"));
    CHECK(!uname(" alice"));
    CHECK(!uname("alice "));
    CHECK(!uname("a\x01"));
    CHECK(!uname("a\x1f"));
    CHECK(!uname("a\x7f"));            /* DEL */
    CHECK(!username_valid("a\0b", 3)); /* NUL inside */
    /* C1, including U+0085 NEL */
    CHECK(!uname("a\xC2\x80"));
    CHECK(!uname("a\xC2\x85"));
    CHECK(!uname("a\xC2\x9F"));
    CHECK(uname("a\xC2\xA1"));         /* U+00A1 is fine */
    /* Unicode White_Space */
    CHECK(!uname("a\xC2\xA0" "b"));    /* U+00A0 */
    CHECK(!uname("a\xE1\x9A\x80" "b")); /* U+1680 */
    CHECK(!uname("a\xE2\x80\x80" "b")); /* U+2000 */
    CHECK(!uname("a\xE2\x80\x85" "b")); /* U+2005 */
    CHECK(!uname("a\xE2\x80\x8A" "b")); /* U+200A */
    CHECK(uname("a\xE2\x80\x8B" "b"));  /* U+200B is not White_Space */
    CHECK(!uname("a\xE2\x80\xA8" "b")); /* U+2028 */
    CHECK(!uname("a\xE2\x80\xA9" "b")); /* U+2029 */
    CHECK(!uname("a\xE2\x80\xAF" "b")); /* U+202F */
    CHECK(!uname("a\xE2\x81\x9F" "b")); /* U+205F */
    CHECK(!uname("a\xE3\x80\x80" "b")); /* U+3000 */
    /* '/' and bad UTF-8 */
    CHECK(!uname("a/b"));
    CHECK(!uname("/"));
    CHECK(!uname("a\xC0\xAF" "b"));    /* overlong '/' */
    CHECK(!uname("\xFF"));
    CHECK(!uname("\xED\xA0\x80"));     /* surrogate */
}

static cJSON *parse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    CHECK(j != NULL);
    return j;
}

static void test_field_username(void)
{
    char out[65], msg[200];
    cJSON *j;

    j = parse("{\"username\":\"alice\"}");
    CHECK_EQ_INT(field_username(j, "username", out, msg, sizeof msg), 0);
    CHECK_EQ_STR(out, "alice");
    cJSON_Delete(j);

    j = parse("{}");
    CHECK_EQ_INT(field_username(j, "username", out, msg, sizeof msg), -1);
    CHECK_EQ_STR(msg, "username is required");
    cJSON_Delete(j);

    {
        static const char *const bad[] = {
            "{\"username\":{\"$gt\":\"\"}}", "{\"username\":[\"alice\"]}",
            "{\"username\":42}",             "{\"username\":true}",
            "{\"username\":null}",           "{\"username\":\"\"}",
            "{\"username\":\"a b\"}",        "{\"username\":\"a/b\"}",
            "{\"username\":\"a\\u00a0b\"}",  "{\"username\":\"a\\u3000b\"}",
            "{\"username\":\"a\\u0085b\"}",  "{\"username\":\"a\\tb\"}",
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            j = parse(bad[i]);
            msg[0] = '\0';
            CHECK_EQ_INT(field_username(j, "username", out, msg, sizeof msg), -1);
            CHECK_EQ_STR(msg, "username must be a string of 1 to 64 bytes without whitespace, "
                              "control characters or '/'");
            cJSON_Delete(j);
        }
    }

    /* the field name is the one asked for */
    j = parse("{\"to\":1}");
    CHECK_EQ_INT(field_username(j, "to", out, msg, sizeof msg), -1);
    CHECK(strncmp(msg, "to must be", 10) == 0);
    cJSON_Delete(j);
}

static void test_field_string(void)
{
    const char *s = NULL;
    size_t len = 0;
    char msg[200];
    cJSON *j;

    j = parse("{\"text\":\"This is a message \\ud83d\\ude00 <script>\"}");
    CHECK_EQ_INT(field_string(j, "text", 1, 4096, &s, &len, msg, sizeof msg), 0);
    CHECK_EQ_STR(s, "This is a message \xF0\x9F\x98\x80 <script>");
    CHECK_EQ_INT(len, strlen(s));
    cJSON_Delete(j);

    j = parse("{}");
    CHECK_EQ_INT(field_string(j, "text", 1, 4096, &s, &len, msg, sizeof msg), -1);
    CHECK_EQ_STR(msg, "text is required");
    cJSON_Delete(j);

    {
        static const char *const bad[] = {"{\"text\":\"\"}", "{\"text\":5}",
                                          "{\"text\":{\"$ne\":1}}", "{\"text\":[]}",
                                          "{\"text\":null}", "{\"text\":false}",
                                          "{\"text\":\"12345\"}"};
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            j = parse(bad[i]);
            CHECK_EQ_INT(field_string(j, "text", 1, 4, &s, &len, msg, sizeof msg), -1);
            CHECK_EQ_STR(msg, "text must be a string of 1 to 4 bytes");
            cJSON_Delete(j);
        }
    }

    j = parse("{\"text\":\"1234\"}");
    CHECK_EQ_INT(field_string(j, "text", 1, 4, &s, &len, msg, sizeof msg), 0);
    CHECK_EQ_INT(len, 4);
    cJSON_Delete(j);

    j = parse("{\"password\":\"short\"}");
    CHECK_EQ_INT(field_string(j, "password", 8, 1024, &s, &len, msg, sizeof msg), -1);
    CHECK_EQ_STR(msg, "password must be a string of 8 to 1024 bytes");
    cJSON_Delete(j);
}

static int timeout_of(const char *json, long *out, char *msg, size_t msglen)
{
    cJSON *j = cJSON_Parse(json);
    int rc;
    CHECK(j != NULL);
    rc = field_timeout(j, "timeout", 60, 2592000, out, msg, msglen);
    cJSON_Delete(j);
    return rc;
}

static void test_field_timeout(void)
{
    static const char expected[] =
        "timeout must be an integer number of seconds between 1 and 2592000";
    long v = 0;
    char msg[200];

    {
        /* absent and null take the default, 60 */
        static const struct {
            const char *json;
            long want;
        } good[] = {
            {"{\"timeout\":60}", 60},           {"{\"timeout\":60.0}", 60},
            {"{\"timeout\":6e1}", 60},          {"{}", 60},
            {"{\"timeout\":null}", 60},         {"{\"timeout\":1}", 1},
            {"{\"timeout\":2592000}", 2592000},
        };
        size_t i;
        for (i = 0; i < sizeof good / sizeof good[0]; i++) {
            v = 0;
            CHECK_EQ_INT(timeout_of(good[i].json, &v, msg, sizeof msg), 0);
            CHECK_EQ_INT(v, good[i].want);
        }
    }

    {
        static const char *const bad[] = {
            "{\"timeout\":60.5}",  "{\"timeout\":\"60\"}", "{\"timeout\":true}",
            "{\"timeout\":false}", "{\"timeout\":0}",      "{\"timeout\":-5}",
            "{\"timeout\":2592001}", "{\"timeout\":1e300}", "{\"timeout\":-1e300}",
            "{\"timeout\":1e400}", "{\"timeout\":0.5}",    "{\"timeout\":[60]}",
            "{\"timeout\":{\"$gt\":0}}", "{\"timeout\":-0.0}",
        };
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            msg[0] = '\0';
            v = -7;
            CHECK_EQ_INT(timeout_of(bad[i], &v, msg, sizeof msg), -1);
            CHECK_EQ_STR(msg, expected);
            CHECK_EQ_INT(v, -7); /* untouched on failure */
        }
    }

    /* NaN and infinities built by hand (JSON cannot spell them) */
    {
        cJSON *j = cJSON_CreateObject();
        cJSON *n = cJSON_AddNumberToObject(j, "timeout", 0);
        double zero = 0.0;
        CHECK(n != NULL);
        cJSON_SetNumberValue(n, zero / zero);
        CHECK_EQ_INT(field_timeout(j, "timeout", 60, 2592000, &v, msg, sizeof msg), -1);
        cJSON_SetNumberValue(n, 1.0 / zero);
        CHECK_EQ_INT(field_timeout(j, "timeout", 60, 2592000, &v, msg, sizeof msg), -1);
        cJSON_Delete(j);
    }
}

static int id_of(const char *s, int64_t *out)
{
    return id_parse(s, strlen(s), out);
}

static void test_id_parse(void)
{
    int64_t v = 0;

    CHECK_EQ_INT(id_of("12345", &v), 0);
    CHECK_EQ_INT(v, 12345);
    CHECK_EQ_INT(id_of("1", &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(id_of("9223372036854775807", &v), 0);
    CHECK(v == INT64_MAX);
    CHECK_EQ_INT(id_of("007", &v), 0); /* leading zeros are accepted */
    CHECK_EQ_INT(v, 7);

    v = 99;
    CHECK_EQ_INT(id_of("abc", &v), -1);
    CHECK_EQ_INT(id_of("0", &v), -1);
    CHECK_EQ_INT(id_of("000", &v), -1);
    CHECK_EQ_INT(id_of("-1", &v), -1);
    CHECK_EQ_INT(id_of("+5", &v), -1);
    CHECK_EQ_INT(id_of("1e3", &v), -1);
    CHECK_EQ_INT(id_of("1.0", &v), -1);
    CHECK_EQ_INT(id_of(" 1", &v), -1);
    CHECK_EQ_INT(id_of("1 ", &v), -1);
    CHECK_EQ_INT(id_of("0x10", &v), -1);
    CHECK_EQ_INT(id_of("", &v), -1);
    CHECK_EQ_INT(id_of("1000000000000000000000000000000", &v), -1); /* 10^30 */
    CHECK_EQ_INT(id_of("9223372036854775808", &v), -1);
    CHECK_EQ_INT(id_of("18446744073709551617", &v), -1);
    CHECK_EQ_INT(id_parse("12\0" "3", 4, &v), -1);
    CHECK_EQ_INT(v, 99); /* untouched on failure */
    /* only len bytes count */
    CHECK_EQ_INT(id_parse("123abc", 3, &v), 0);
    CHECK_EQ_INT(v, 123);
}

int main(void)
{
    RUN(test_utf8_valid);
    RUN(test_username_examples);
    RUN(test_username_whitespace_controls);
    RUN(test_field_username);
    RUN(test_field_string);
    RUN(test_field_timeout);
    RUN(test_id_parse);
    return TEST_SUMMARY();
}
