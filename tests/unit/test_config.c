/* test_config.c: config_load_from() with a fake environment: every default,
 * every bad value giving one line that names the variable, and the rules
 * of the admin pair. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/config.h"
#include "testing.h"

/* A fake environment: NULL-terminated name/value pairs. */
struct fake_env {
    const char *const *pairs;
};

static const char *fake_get(const char *name, void *arg)
{
    const struct fake_env *env = arg;
    size_t i;
    for (i = 0; env->pairs[i] != NULL; i += 2)
        if (strcmp(env->pairs[i], name) == 0)
            return env->pairs[i + 1];
    return NULL;
}

static int load(const char *const *pairs, struct snap_config *cfg, char *msg, size_t msglen)
{
    struct fake_env env = {pairs};
    return config_load_from(cfg, 8081, fake_get, &env, msg, msglen);
}

/* Loads with one variable set; returns the result, msg holds the line. */
static int load_one(const char *name, const char *value, struct snap_config *cfg, char *msg,
                    size_t msglen)
{
    const char *pairs[] = {name, value, NULL};
    return load(pairs, cfg, msg, msglen);
}

static void test_defaults(void)
{
    static const char *const none[] = {NULL};
    struct snap_config cfg;
    char msg[256] = "";

    CHECK_EQ_INT(load(none, &cfg, msg, sizeof msg), 0);
    CHECK_EQ_STR(msg, "");
    CHECK_EQ_STR(cfg.redis_url, "redis://127.0.0.1:6379/0");
    CHECK_EQ_STR(cfg.redis_sentinels, "");
    CHECK_EQ_STR(cfg.store_url, "sqlite://snaptext.db");
    CHECK_EQ_STR(cfg.listen_host, "0.0.0.0");
    CHECK_EQ_INT(cfg.listen_port, 8081);
    CHECK_EQ_INT(cfg.auth, SNAP_AUTH_REQUIRED);
    CHECK_EQ_INT(cfg.threads, 128);
    CHECK_EQ_INT(cfg.max_body_bytes, 65536);
    CHECK_EQ_INT(cfg.max_text_bytes, 4096);
    CHECK_EQ_INT(cfg.max_timeout, 2592000);
    CHECK_EQ_INT(cfg.session_ttl, 2592000);
    CHECK_EQ_STR(cfg.admin_username, "");
    CHECK_EQ_STR(cfg.admin_password, "");
    CHECK_EQ_INT(cfg.log_level, SNAP_LOG_INFO);
}

static void test_good_values(void)
{
    static const char *const env[] = {
        "SNAPTEXT_REDIS_URL", "redis://redis:6380/2",
        "SNAPTEXT_REDIS_SENTINELS", "s1:26379,s2.local:26379;mymaster",
        "SNAPTEXT_STORE", "mongodb://mongo:27017/snaptext?w=majority",
        "SNAPTEXT_LISTEN", "127.0.0.1:0",
        "SNAPTEXT_AUTH", "open",
        "SNAPTEXT_THREADS", "256",
        "SNAPTEXT_MAX_BODY_BYTES", "1024",
        "SNAPTEXT_MAX_TEXT_BYTES", "1048576",
        "SNAPTEXT_MAX_TIMEOUT", "315360000",
        "SNAPTEXT_SESSION_TTL", "60",
        "SNAPTEXT_ADMIN_USERNAME", "root",
        "SNAPTEXT_ADMIN_PASSWORD", "correct horse",
        "SNAPTEXT_LOG_LEVEL", "debug",
        NULL};
    struct snap_config cfg;
    char msg[256] = "";

    CHECK_EQ_INT(load(env, &cfg, msg, sizeof msg), 0);
    CHECK_EQ_STR(msg, "");
    CHECK_EQ_STR(cfg.redis_url, "redis://redis:6380/2");
    CHECK_EQ_STR(cfg.redis_sentinels, "s1:26379,s2.local:26379;mymaster");
    CHECK_EQ_STR(cfg.store_url, "mongodb://mongo:27017/snaptext?w=majority");
    CHECK_EQ_STR(cfg.listen_host, "127.0.0.1");
    CHECK_EQ_INT(cfg.listen_port, 0);
    CHECK_EQ_INT(cfg.auth, SNAP_AUTH_OPEN);
    CHECK_EQ_INT(cfg.threads, 256);
    CHECK_EQ_INT(cfg.max_body_bytes, 1024);
    CHECK_EQ_INT(cfg.max_text_bytes, 1048576);
    CHECK_EQ_INT(cfg.max_timeout, 315360000);
    CHECK_EQ_INT(cfg.session_ttl, 60);
    CHECK_EQ_STR(cfg.admin_username, "root");
    CHECK_EQ_STR(cfg.admin_password, "correct horse");
    CHECK_EQ_INT(cfg.log_level, SNAP_LOG_DEBUG);
}

/* The sentinel list has redis_url.c's grammar (the one hot_new uses): a
 * port may be left out (26379) and a host may be a bracketed IPv6 address. */
static void test_sentinel_forms(void)
{
    static const char *const good[] = {"s1;m", "[::1]:26379,s2;mymaster", "[fe80::1];m", ""};
    struct snap_config cfg;
    char msg[256];
    size_t i;

    for (i = 0; i < sizeof good / sizeof good[0]; i++) {
        msg[0] = '\0';
        CHECK_EQ_INT(load_one("SNAPTEXT_REDIS_SENTINELS", good[i], &cfg, msg, sizeof msg), 0);
        CHECK_EQ_STR(msg, "");
        CHECK_EQ_STR(cfg.redis_sentinels, good[i]);
    }
}

static void test_listen_forms(void)
{
    struct snap_config cfg;
    char msg[256];

    CHECK_EQ_INT(load_one("SNAPTEXT_LISTEN", "9000", &cfg, msg, sizeof msg), 0);
    CHECK_EQ_STR(cfg.listen_host, "0.0.0.0");
    CHECK_EQ_INT(cfg.listen_port, 9000);
    CHECK_EQ_INT(load_one("SNAPTEXT_LISTEN", "0", &cfg, msg, sizeof msg), 0);
    CHECK_EQ_INT(cfg.listen_port, 0);
    CHECK_EQ_INT(load_one("SNAPTEXT_LISTEN", "65535", &cfg, msg, sizeof msg), 0);
    CHECK_EQ_INT(load_one("SNAPTEXT_LISTEN", "localhost:80", &cfg, msg, sizeof msg), 0);
    CHECK_EQ_STR(cfg.listen_host, "localhost");
    CHECK_EQ_INT(cfg.listen_port, 80);
    CHECK_EQ_INT(load_one("SNAPTEXT_LISTEN", "[::1]:8080", &cfg, msg, sizeof msg), 0);
    CHECK_EQ_STR(cfg.listen_host, "[::1]");
    CHECK_EQ_INT(cfg.listen_port, 8080);

    {
        static const char *const bad[] = {"", "65536", "-1", "+80", "80x", "host:", ":80",
                                          "a b:80", "::1:80", "[::1]", "[zz]:80", " 80",
                                          "host:99999"};
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char expect[128];
            msg[0] = '\0';
            CHECK_EQ_INT(load_one("SNAPTEXT_LISTEN", bad[i], &cfg, msg, sizeof msg), -1);
            (void)snprintf(expect, sizeof expect,
                           "SNAPTEXT_LISTEN=%s: must be [host:]port (port 0 to 65535)", bad[i]);
            CHECK_EQ_STR(msg, expect);
        }
    }
}

struct bad_case {
    const char *name, *value, *expect;
};

static void test_bad_values(void)
{
    static const struct bad_case cases[] = {
        {"SNAPTEXT_THREADS", "0", "SNAPTEXT_THREADS=0: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "4097", "SNAPTEXT_THREADS=4097: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "abc", "SNAPTEXT_THREADS=abc: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "", "SNAPTEXT_THREADS=: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", " 8", "SNAPTEXT_THREADS= 8: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "8 ", "SNAPTEXT_THREADS=8 : must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "+8", "SNAPTEXT_THREADS=+8: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "0x10",
         "SNAPTEXT_THREADS=0x10: must be an integer between 1 and 4096"},
        {"SNAPTEXT_THREADS", "99999999999999999999999",
         "SNAPTEXT_THREADS=99999999999999999999999: must be an integer between 1 and 4096"},
        {"SNAPTEXT_MAX_BODY_BYTES", "1023",
         "SNAPTEXT_MAX_BODY_BYTES=1023: must be an integer between 1024 and 16777216"},
        {"SNAPTEXT_MAX_BODY_BYTES", "16777217",
         "SNAPTEXT_MAX_BODY_BYTES=16777217: must be an integer between 1024 and 16777216"},
        {"SNAPTEXT_MAX_TEXT_BYTES", "0",
         "SNAPTEXT_MAX_TEXT_BYTES=0: must be an integer between 1 and 1048576"},
        {"SNAPTEXT_MAX_TIMEOUT", "abc",
         "SNAPTEXT_MAX_TIMEOUT=abc: must be an integer between 1 and 315360000"},
        {"SNAPTEXT_MAX_TIMEOUT", "1.5",
         "SNAPTEXT_MAX_TIMEOUT=1.5: must be an integer between 1 and 315360000"},
        {"SNAPTEXT_SESSION_TTL", "59",
         "SNAPTEXT_SESSION_TTL=59: must be an integer between 60 and 315360000"},
        {"SNAPTEXT_SESSION_TTL", "315360001",
         "SNAPTEXT_SESSION_TTL=315360001: must be an integer between 60 and 315360000"},
        {"SNAPTEXT_AUTH", "Required", "SNAPTEXT_AUTH=Required: must be required or open"},
        {"SNAPTEXT_AUTH", "", "SNAPTEXT_AUTH=: must be required or open"},
        {"SNAPTEXT_LOG_LEVEL", "verbose",
         "SNAPTEXT_LOG_LEVEL=verbose: must be debug, info, warn or error"},
        {"SNAPTEXT_REDIS_URL", "http://x",
         "SNAPTEXT_REDIS_URL=http://x: redis url must start with redis:// (rediss:// and unix "
         "sockets are not supported)"},
        {"SNAPTEXT_REDIS_URL", "redis://",
         "SNAPTEXT_REDIS_URL=redis://: redis url: empty host"},
        {"SNAPTEXT_STORE", "postgres://db",
         "SNAPTEXT_STORE=postgres://db: cold store scheme \"postgres\" is not supported; "
         "accepted schemes: sqlite://, mongodb://"},
        {"SNAPTEXT_STORE", "",
         "SNAPTEXT_STORE=: cold store url has no scheme; accepted schemes: sqlite://, mongodb://"},
        {"SNAPTEXT_STORE", "sqlite://", "SNAPTEXT_STORE=sqlite://: cold store url is only sqlite://"},
        {"SNAPTEXT_REDIS_SENTINELS", "s1:26379",
         "SNAPTEXT_REDIS_SENTINELS=s1:26379: redis sentinels must be "
         "\"host[:port][,host[:port]...];mastername\""},
        {"SNAPTEXT_REDIS_SENTINELS", "s1:0;m",
         "SNAPTEXT_REDIS_SENTINELS=s1:0;m: redis sentinels: port must be a number between 1 "
         "and 65535"},
        {"SNAPTEXT_REDIS_SENTINELS", "s1:1,,s2:2;m",
         "SNAPTEXT_REDIS_SENTINELS=s1:1,,s2:2;m: redis sentinels: empty host"},
        {"SNAPTEXT_ADMIN_USERNAME", "ro ot",
         "SNAPTEXT_ADMIN_USERNAME=ro ot: must be empty or a username of 1 to 64 bytes without "
         "whitespace, control characters or '/'"},
        {"SNAPTEXT_ADMIN_USERNAME", "a/b",
         "SNAPTEXT_ADMIN_USERNAME=a/b: must be empty or a username of 1 to 64 bytes without "
         "whitespace, control characters or '/'"},
        /* escaping of what is echoed */
        {"SNAPTEXT_AUTH", "a\nb\\c\x01\xC3\xBC",
         "SNAPTEXT_AUTH=a\\x0ab\\\\c\\x01\\xc3\\xbc: must be required or open"},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct snap_config cfg;
        char msg[512] = "";
        int rc = load_one(cases[i].name, cases[i].value, &cfg, msg, sizeof msg);
        CHECK_EQ_INT(rc, -1);
        CHECK_EQ_STR(msg, cases[i].expect);
        CHECK(strchr(msg, '\n') == NULL);
    }
}

static void test_long_values(void)
{
    struct snap_config cfg;
    char value[1200], msg[512];

    /* Too long for the field: an error, never a silent cut. */
    memset(value, 'x', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    memcpy(value, "redis://", 8);
    CHECK_EQ_INT(load_one("SNAPTEXT_REDIS_URL", value, &cfg, msg, sizeof msg), -1);
    CHECK(strstr(msg, "SNAPTEXT_REDIS_URL=redis://xxx") == msg);
    CHECK(strstr(msg, "...: must be at most 511 bytes long") != NULL);
    CHECK(strlen(msg) < 120); /* the echo is capped */

    memcpy(value, "sqlite://", 9);
    CHECK_EQ_INT(load_one("SNAPTEXT_STORE", value, &cfg, msg, sizeof msg), -1);
    CHECK(strstr(msg, "SNAPTEXT_STORE=sqlite://") == msg);
    CHECK(strstr(msg, "must be at most 1023 bytes long") != NULL);

    value[1023] = '\0'; /* exactly 1023 bytes fits */
    CHECK_EQ_INT(load_one("SNAPTEXT_STORE", value, &cfg, msg, sizeof msg), 0);
    CHECK_EQ_INT(strlen(cfg.store_url), 1023);

    memset(value, 'a', 65);
    value[65] = '\0';
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", value, "SNAPTEXT_ADMIN_PASSWORD",
                               "longenough", NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), -1);
        CHECK(strncmp(msg, "SNAPTEXT_ADMIN_USERNAME=aaaa", 28) == 0);
    }
    value[64] = '\0';
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", value, "SNAPTEXT_ADMIN_PASSWORD",
                               "longenough", NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), 0);
        CHECK_EQ_STR(cfg.admin_username, value);
    }

    /* a tiny msg buffer is still NUL-terminated */
    {
        char small[8];
        CHECK_EQ_INT(load_one("SNAPTEXT_AUTH", "x", &cfg, small, sizeof small), -1);
        CHECK_EQ_STR(small, "SNAPTEX");
    }
}

static void test_admin_pair(void)
{
    struct snap_config cfg;
    char msg[512], pw[1100];

    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", "root", NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), -1);
        CHECK_EQ_STR(msg, "SNAPTEXT_ADMIN_PASSWORD=: must be set (8 to 1024 bytes) when "
                          "SNAPTEXT_ADMIN_USERNAME is set");
    }
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_PASSWORD", "s3cret-pass", NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), -1);
        CHECK_EQ_STR(msg, "SNAPTEXT_ADMIN_USERNAME=: must be set when SNAPTEXT_ADMIN_PASSWORD "
                          "is set");
        CHECK(strstr(msg, "s3cret") == NULL);
    }
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", "root", "SNAPTEXT_ADMIN_PASSWORD",
                               "short77", NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), -1);
        CHECK_EQ_STR(msg, "SNAPTEXT_ADMIN_PASSWORD=<hidden>: must be empty or 8 to 1024 bytes "
                          "of UTF-8");
        CHECK(strstr(msg, "short77") == NULL);
    }
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", "root", "SNAPTEXT_ADMIN_PASSWORD",
                               "bad\xFFutf8-password", NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), -1);
        CHECK(strstr(msg, "SNAPTEXT_ADMIN_PASSWORD=<hidden>:") == msg);
    }
    memset(pw, 'p', sizeof pw - 1);
    pw[1024] = '\0';
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", "root", "SNAPTEXT_ADMIN_PASSWORD", pw,
                               NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), 0);
        CHECK_EQ_INT(strlen(cfg.admin_password), 1024);
        pw[1024] = 'p';
        pw[1025] = '\0';
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), -1);
        CHECK(strstr(msg, "SNAPTEXT_ADMIN_PASSWORD=<hidden>:") == msg);
        CHECK(strstr(msg, "pppp") == NULL);
    }
    {
        const char *pairs[] = {"SNAPTEXT_ADMIN_USERNAME", "", "SNAPTEXT_ADMIN_PASSWORD", "",
                               NULL};
        CHECK_EQ_INT(load(pairs, &cfg, msg, sizeof msg), 0);
    }
}

static const char *null_get(const char *name, void *arg)
{
    (void)name;
    (void)arg;
    return NULL;
}

static void test_config_load_env(void)
{
    struct snap_config cfg;
    char msg[256];
    /* config_load reads the real environment; with nothing of ours set it
     * gives the same result as an empty fake one. */
    struct snap_config ref;
    CHECK_EQ_INT(config_load_from(&ref, 7000, null_get, NULL, msg, sizeof msg), 0);
    if (getenv("SNAPTEXT_LISTEN") == NULL && getenv("SNAPTEXT_THREADS") == NULL) {
        CHECK_EQ_INT(setenv("SNAPTEXT_THREADS", "3", 1), 0);
        CHECK_EQ_INT(config_load(&cfg, 7000, msg, sizeof msg), 0);
        CHECK_EQ_INT(cfg.threads, 3);
        CHECK_EQ_INT(cfg.listen_port, 7000);
        CHECK_EQ_INT(setenv("SNAPTEXT_THREADS", "x", 1), 0);
        CHECK_EQ_INT(config_load(&cfg, 7000, msg, sizeof msg), -1);
        CHECK_EQ_STR(msg, "SNAPTEXT_THREADS=x: must be an integer between 1 and 4096");
        CHECK_EQ_INT(unsetenv("SNAPTEXT_THREADS"), 0);
    }
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_good_values);
    RUN(test_listen_forms);
    RUN(test_sentinel_forms);
    RUN(test_bad_values);
    RUN(test_long_values);
    RUN(test_admin_pair);
    RUN(test_config_load_env);
    return TEST_SUMMARY();
}
