/* test_hot_store.c: the hot store (redis_conn.c, hot_ids.c, hot_inbox.c, session_store.c,
 * login_throttle.c) against a real redis-server started by
 * tests/harness/with_redis.py (SNAPTEXT_REDIS_URL, SNAP_REDIS_PORT).
 * Covers the id counter, the inbox index (put, peek and drop: binary text,
 * order, bounded peeks, expiry, key TTL, odd usernames, the batch calls with
 * inbox sizes), the epoch, sessions, URL parsing, unreachable and stuck
 * servers, reconnecting after the server drops us (and the lost-connection
 * hook), and error replies (WRONGTYPE, READONLY, NOAUTH). Exactly-once is
 * not Redis's job any more: the cold-store contract suite checks the claim. A second, raw hiredis connection inspects and pokes the server.
 * Sentinel needs several servers: `--sentinel-probe` only serves
 * tests/redis/sentinel_check.py, which sets that topology up. */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "snap/clock.h"
#include "snap/config.h"
#include "snap/err.h"
#include "snap/hot_ids.h"
#include "snap/hot_inbox.h"
#include "snap/hot_store.h"
#include "snap/login_throttle.h"
#include "snap/session_store.h"
#include "testing.h"

static struct snap_config g_cfg; /* zeroed; redis_url from the environment */
static int g_port;

/* ------------------------------------------------------------ helpers -- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static int64_t elapsed_ms(int64_t start_ns)
{
    return (clock_mono_ns() - start_ns) / 1000000;
}

static void cfg_with_url(struct snap_config *cfg, const char *url)
{
    memset(cfg, 0, sizeof *cfg);
    (void)snprintf(cfg->redis_url, sizeof cfg->redis_url, "%s", url);
}

static struct hot_store *open_hot(const struct snap_config *cfg)
{
    struct snap_err err;
    struct hot_store *h = hot_new(cfg, &err);

    if (h == NULL)
        fprintf(stderr, "  hot_new(%s): %s\n", cfg->redis_url, err.msg);
    return h;
}

static redisContext *raw_open(void)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", g_port, tv);

    if (c == NULL || c->err) {
        fprintf(stderr, "  raw connect: %s\n", c ? c->errstr : "out of memory");
        redisFree(c);
        return NULL;
    }
    (void)redisSetTimeout(c, tv);
    return c;
}

/* Runs one command given as NULL-terminated C-string arguments. */
static redisReply *raw_cmd(redisContext *c, ...)
{
    const char *argv[16];
    size_t len[16];
    int argc = 0;
    va_list ap;
    const char *s;

    va_start(ap, c);
    while ((s = va_arg(ap, const char *)) != NULL && argc < 16) {
        argv[argc] = s;
        len[argc] = strlen(s);
        argc++;
    }
    va_end(ap);
    return redisCommandArgv(c, argc, argv, len);
}

static long long raw_int(redisContext *c, const char *cmd, const char *key)
{
    redisReply *r = raw_cmd(c, cmd, key, (const char *)NULL);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;

    freeReplyObject(r);
    return v;
}

/* A loopback port with nothing listening: bound, never listened on, so
 * nobody else can take it while fd stays open. */
static int closed_port(int *fd)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof a;

    *fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (*fd < 0 || bind(*fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(*fd, (struct sockaddr *)&a, &alen) != 0)
        return -1;
    return ntohs(a.sin_port);
}

/* Reads and empties user's inbox index as a read does once it settled
 * everything: peek at all of it, then drop what it saw. */
static int test_take(struct hot_store *h, const char *user, int64_t now_ms,
                     struct hot_msg_list *out, size_t *n_expired, struct snap_err *err)
{
    struct hot_peek pk;
    size_t limit = 100000;
    int rc = hot_inbox_peek_many(h, &user, &limit, 1, now_ms, &pk, err);

    *out = (struct hot_msg_list){NULL, 0};
    if (n_expired != NULL) *n_expired = 0;
    if (rc != SNAP_OK) return rc;
    int64_t *ids = calloc(pk.msgs.len + pk.n_dead + 1, sizeof *ids);
    size_t n = 0;
    for (size_t i = 0; i < pk.msgs.len; i++) ids[n++] = pk.msgs.items[i].id;
    for (size_t i = 0; i < pk.n_dead; i++) ids[n++] = pk.dead[i];
    struct hot_drop d = {user, ids, n};
    rc = hot_inbox_drop_many(h, &d, 1, err);
    free(ids);
    *out = pk.msgs;
    pk.msgs = (struct hot_msg_list){NULL, 0};
    if (n_expired != NULL) *n_expired = pk.n_dead;
    hot_peek_free(&pk);
    return rc;
}

/* ------------------------------------------------------------ tests -- */

static void test_free_null(void)
{
    struct hot_msg_list empty = {NULL, 0};

    hot_free(NULL);
    hot_msg_list_free(NULL);
    hot_msg_list_free(&empty);
    CHECK(empty.items == NULL && empty.len == 0);
}

static void test_bad_url(void)
{
    static const char *const bad[] = {
        "", "http://127.0.0.1:6379", "redis://", "redis://:6379", "redis://h:0",
        "redis://h:65536", "redis://h:abc", "redis://h/abc", "redis://h/-1",
        "redis://h:6379/0?x=1", "redis://onlypass@h", "redis://user:@h", "redis://:%zz@h",
        "redis://:%00@h", "redis://[::1", "redis://[::1]x", "redis://ho st:1", "rediss://h",
    };
    static const char *const good[] = {
        "redis://127.0.0.1", "redis://:secret@localhost:6380/2", "redis://alice:p%40ss@h:1/15",
        "redis://[::1]:6379/0", "REDIS://h/", "redis://:p@ss@h:7",
    };
    static const char *const bad_sentinels[] = {
        "127.0.0.1:26379", "127.0.0.1:26379;", ";mymaster", "h:0;m", "h:1,,h:2;m", "h:1;my master",
    };
    struct snap_config cfg;
    struct snap_err err;
    struct hot_store *h;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg_with_url(&cfg, bad[i]);
        err.code = 0;
        err.msg[0] = '\0';
        h = hot_new(&cfg, &err);
        if (h != NULL)
            fprintf(stderr, "  accepted bad url %s\n", bad[i]);
        CHECK(h == NULL);
        CHECK_EQ_INT(err.code, SNAP_EINVAL);
        CHECK(err.msg[0] != '\0');
        hot_free(h);
    }
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cfg_with_url(&cfg, good[i]);
        h = hot_new(&cfg, &err);
        if (h == NULL)
            fprintf(stderr, "  refused good url %s: %s\n", good[i], err.msg);
        CHECK(h != NULL);
        hot_free(h);
    }
    for (size_t i = 0; i < sizeof bad_sentinels / sizeof bad_sentinels[0]; i++) {
        cfg_with_url(&cfg, "redis://127.0.0.1");
        (void)snprintf(cfg.redis_sentinels, sizeof cfg.redis_sentinels, "%s", bad_sentinels[i]);
        h = hot_new(&cfg, &err);
        if (h != NULL)
            fprintf(stderr, "  accepted bad sentinels %s\n", bad_sentinels[i]);
        CHECK(h == NULL);
        hot_free(h);
    }
    cfg_with_url(&cfg, "redis://:pw@127.0.0.1/1");
    (void)snprintf(cfg.redis_sentinels, sizeof cfg.redis_sentinels, "%s",
                   "127.0.0.1:26379,[::1]:26380,sentinel-3;mymaster");
    h = hot_new(&cfg, &err);
    CHECK(h != NULL);
    hot_free(h);
}

static void test_ids_increase(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    struct snap_err err;
    int64_t prev = 0, id = 0;

    CHECK(h != NULL);
    if (h == NULL)
        return;
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_OK);
    for (int i = 0; i < 200; i++) {
        CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
        CHECK(id > prev);
        prev = id;
    }
    hot_free(h);
}

static void test_id_floor(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct snap_err err;
    int64_t a = 0, id = 0;
    redisReply *r;

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL)
        goto done;
    CHECK_EQ_INT(hot_next_id(h, &a, &err), SNAP_OK);
    CHECK_EQ_INT(hot_id_floor(h, a + 1000, &err), SNAP_OK); /* raises */
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, a + 1001);
    CHECK_EQ_INT(hot_id_floor(h, 5, &err), SNAP_OK); /* never lowers */
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, a + 1002);
    CHECK_EQ_INT(hot_id_floor(h, a + 1002, &err), SNAP_OK); /* equal: unchanged */
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, a + 1003);
    CHECK_EQ_INT(hot_id_floor(h, 0, &err), SNAP_OK);
    CHECK_EQ_INT(hot_id_floor(h, -1, &err), SNAP_EINVAL);

    /* Above 2^53 a double cannot tell these apart; the script must. */
    CHECK_EQ_INT(hot_id_floor(h, INT64_C(9007199254740993), &err), SNAP_OK);
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, INT64_C(9007199254740994));
    CHECK_EQ_INT(hot_id_floor(h, INT64_C(9007199254740992), &err), SNAP_OK);
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, INT64_C(9007199254740995));

    /* The script cache is emptied (as by a restart): NOSCRIPT, then EVAL. */
    r = raw_cmd(raw, "SCRIPT", "FLUSH", (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    CHECK_EQ_INT(hot_id_floor(h, INT64_C(9007199254741100), &err), SNAP_OK);
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, INT64_C(9007199254741101));
    CHECK_EQ_INT(hot_id_floor(h, INT64_C(9007199254741200), &err), SNAP_OK); /* EVALSHA again */
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    CHECK_EQ_INT(id, INT64_C(9007199254741201));
done:
    hot_free(h);
    redisFree(raw);
}

static void test_roundtrip_binary(void)
{
    static const char *const user = "alice";
    char big[4096];
    const char *texts[4] = {"hello world", "\"quoted\" 'single' \\back\\ {\"json\": [1]}",
                            "snap \xF0\x9F\x98\x80 caf\xC3\xA9 <script>alert(1)</script>", big};
    size_t lens[4];
    const int64_t ids[4] = {30, 10, 20, 40}; /* put out of order */
    int64_t now = clock_now_ms();
    struct hot_store *h = open_hot(&g_cfg);
    struct hot_msg_list out = {NULL, 0};
    struct snap_err err;
    size_t expired = 99;

    CHECK(h != NULL);
    if (h == NULL)
        return;
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)(i % 256); /* every byte value, NUL included */
    for (int i = 0; i < 4; i++)
        lens[i] = i == 3 ? sizeof big : strlen(texts[i]);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(hot_inbox_put(h, user, ids[i], now + 60000, texts[i], lens[i], &err), SNAP_OK);
    CHECK_EQ_INT(hot_inbox_put(h, user, 50, now + 60000, "", 0, &err), SNAP_OK);

    CHECK_EQ_INT(test_take(h, user, clock_now_ms(), &out, &expired, &err), SNAP_OK);
    CHECK_EQ_INT(out.len, 5);
    CHECK_EQ_INT(expired, 0);
    if (out.len == 5) {
        /* ids 10, 20, 30, 40, 50 = texts[1], [2], [0], [3], "" */
        const int order[4] = {1, 2, 0, 3};

        for (int i = 0; i < 4; i++) {
            CHECK_EQ_INT(out.items[i].id, (i + 1) * 10);
            CHECK_EQ_INT(out.items[i].text_len, lens[order[i]]);
            CHECK(memcmp(out.items[i].text, texts[order[i]], lens[order[i]]) == 0);
            CHECK_EQ_INT(out.items[i].text[out.items[i].text_len], '\0');
            CHECK_EQ_INT(out.items[i].expires_ms, now + 60000);
        }
        CHECK_EQ_INT(out.items[4].id, 50);
        CHECK_EQ_INT(out.items[4].text_len, 0);
        CHECK_EQ_STR(out.items[4].text, "");
    }
    hot_msg_list_free(&out);
    CHECK(out.items == NULL && out.len == 0);

    /* Read-once: the inbox is gone. */
    CHECK_EQ_INT(test_take(h, user, clock_now_ms(), &out, &expired, &err), SNAP_OK);
    CHECK_EQ_INT(out.len, 0);
    CHECK(out.items == NULL);
    hot_msg_list_free(&out);
    CHECK_EQ_INT(test_take(h, user, clock_now_ms(), &out, NULL, &err), SNAP_OK);
    CHECK_EQ_INT(out.len, 0);
    hot_msg_list_free(&out);
    hot_free(h);
}

/* The batch calls the ingest and fetch batchers use: hot copies, an id
 * reservation and inbox sizes in one round trip, each put with its own
 * outcome; peeks at several inboxes in one round trip, bounded, removing
 * nothing; drops of exactly the ids given. */
static void test_batches(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct snap_err err;
    int64_t now = clock_now_ms(), before = 0, first = -1, after = 0, counts[3] = {0, 0, 0};
    int rcs[3] = {-1, -1, -1};
    struct hot_peek outs[3];
    const char *users[3] = {"batch-a", "batch-b", "batch-a"};
    const char *count_users[3] = {"batch-a", "batch-none", "batch-bad"};
    size_t limits[3] = {10, 10, 1};

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL) {
        hot_free(h);
        redisFree(raw);
        return;
    }
    freeReplyObject(raw_cmd(raw, "SET", "snap:{batch-bad}:msgs", "not a set", (const char *)NULL));
    struct hot_put puts[3] = {{"batch-a", 101, now + 60000, "one", 3},
                              {"batch-bad", 102, now + 60000, "lost", 4},
                              {"batch-a", 103, now + 60000, "three", 5}};

    CHECK_EQ_INT(hot_next_id(h, &before, &err), SNAP_OK);
    /* The inbox that is not a sorted set fails alone (WRONGTYPE in its EXEC). */
    CHECK_EQ_INT(hot_inbox_put_many(h, puts, 3, rcs, 5, &first, count_users, 3, counts, &err),
                 SNAP_EUNAVAIL);
    CHECK_EQ_INT(rcs[0], SNAP_OK);
    CHECK_EQ_INT(rcs[1], SNAP_EUNAVAIL);
    CHECK_EQ_INT(rcs[2], SNAP_OK);
    CHECK_EQ_INT(first, before + 1); /* the reservation went through anyway */
    CHECK_EQ_INT(counts[0], 2);      /* after the puts of the same round trip */
    CHECK_EQ_INT(counts[1], 0);
    CHECK_EQ_INT(counts[2], -1);     /* unknown */
    CHECK_EQ_INT(hot_next_id(h, &after, &err), SNAP_OK);
    CHECK_EQ_INT(after, before + 6); /* ids first .. first + 4 were taken */
    CHECK_EQ_INT(hot_inbox_put_many(h, &puts[0], 0, rcs, 0, NULL, NULL, 0, NULL, &err),
                 SNAP_EINVAL);
    /* Putting the same message again changes nothing. */
    CHECK_EQ_INT(hot_inbox_put(h, "batch-a", 101, now + 60000, "one", 3, &err), SNAP_OK);
    CHECK_EQ_INT(raw_int(raw, "ZCARD", "snap:{batch-a}:msgs"), 2);

    CHECK_EQ_INT(hot_inbox_put(h, "batch-b", 201, now + 60000, "bee", 3, &err), SNAP_OK);
    CHECK_EQ_INT(hot_inbox_peek_many(h, users, limits, 3, clock_now_ms(), outs, &err), SNAP_OK);
    CHECK_EQ_INT(outs[0].rc, SNAP_OK);
    CHECK_EQ_INT(outs[0].msgs.len, 2);
    CHECK_EQ_INT(outs[0].total, 2);
    if (outs[0].msgs.len == 2) {
        CHECK_EQ_INT(outs[0].msgs.items[0].id, 101);
        CHECK_EQ_STR(outs[0].msgs.items[0].text, "one");
        CHECK_EQ_INT(outs[0].msgs.items[1].id, 103);
        CHECK_EQ_STR(outs[0].msgs.items[1].text, "three");
    }
    CHECK_EQ_INT(outs[1].rc, SNAP_OK);
    CHECK_EQ_INT(outs[1].msgs.len, 1);
    /* The same inbox twice sees the same candidates (a peek removes
     * nothing), here bounded to the oldest one. */
    CHECK_EQ_INT(outs[2].rc, SNAP_OK);
    CHECK_EQ_INT(outs[2].msgs.len, 1);
    CHECK_EQ_INT(outs[2].total, 2);
    if (outs[2].msgs.len == 1) CHECK_EQ_INT(outs[2].msgs.items[0].id, 101);
    for (int i = 0; i < 3; i++) hot_peek_free(&outs[i]);

    /* Drops remove exactly the ids given. */
    int64_t gone[2] = {101, 999};
    struct hot_drop d[2] = {{"batch-a", gone, 2}, {"batch-b", NULL, 0}};
    CHECK_EQ_INT(hot_inbox_drop_many(h, d, 2, &err), SNAP_OK);
    CHECK_EQ_INT(raw_int(raw, "ZCARD", "snap:{batch-a}:msgs"), 1);
    CHECK_EQ_INT(raw_int(raw, "ZCARD", "snap:{batch-b}:msgs"), 1);
    CHECK_EQ_INT(hot_inbox_drop_many(h, d, 2, &err), SNAP_OK); /* idempotent */

    freeReplyObject(raw_cmd(raw, "DEL", "snap:{batch-a}:msgs", "snap:{batch-b}:msgs",
                            "snap:{batch-bad}:msgs", (const char *)NULL));
    redisFree(raw);
    hot_free(h);
}

/* The epoch is set once (NX) and read back; gone means Redis lost it. */
static void test_epoch(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct snap_err err;
    char e[64];

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL) {
        hot_free(h);
        redisFree(raw);
        return;
    }
    freeReplyObject(raw_cmd(raw, "DEL", "snap:epoch", (const char *)NULL));
    CHECK_EQ_INT(hot_epoch_get(h, e, sizeof e, &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(hot_epoch_set(h, "first", &err), SNAP_OK);
    CHECK_EQ_INT(hot_epoch_set(h, "second", &err), SNAP_OK); /* NX: the first one stays */
    CHECK_EQ_INT(hot_epoch_get(h, e, sizeof e, &err), SNAP_OK);
    CHECK_EQ_STR(e, "first");
    freeReplyObject(raw_cmd(raw, "DEL", "snap:epoch", (const char *)NULL));
    redisFree(raw);
    hot_free(h);
}

static void test_expired_dropped(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct hot_msg_list out = {NULL, 0};
    struct snap_err err;
    int64_t now = clock_now_ms();
    size_t expired = 0;
    redisReply *r;

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL)
        goto done;
    /* Already expired when put (the inbox lives on for the other one). */
    CHECK_EQ_INT(hot_inbox_put(h, "bob", 1, now + 60000, "fresh", 5, &err), SNAP_OK);
    CHECK_EQ_INT(hot_inbox_put(h, "bob", 2, now - 1000, "stale", 5, &err), SNAP_OK);
    CHECK_EQ_INT(test_take(h, "bob", clock_now_ms(), &out, &expired, &err), SNAP_OK);
    CHECK_EQ_INT(out.len, 1);
    CHECK_EQ_INT(expired, 1);
    if (out.len == 1)
        CHECK_EQ_INT(out.items[0].id, 1);
    hot_msg_list_free(&out);

    /* Expired by the reader's clock, although Redis still holds them;
     * expires_ms == now_ms counts as expired. */
    now = clock_now_ms();
    CHECK_EQ_INT(hot_inbox_put(h, "bob", 3, now + 5000, "a", 1, &err), SNAP_OK);
    CHECK_EQ_INT(hot_inbox_put(h, "bob", 4, now + 10000, "b", 1, &err), SNAP_OK);
    CHECK_EQ_INT(hot_inbox_put(h, "bob", 5, now + 30000, "c", 1, &err), SNAP_OK);
    CHECK_EQ_INT(test_take(h, "bob", now + 10000, &out, &expired, &err), SNAP_OK);
    CHECK_EQ_INT(out.len, 1);
    CHECK_EQ_INT(expired, 2);
    if (out.len == 1)
        CHECK_EQ_INT(out.items[0].id, 5);
    hot_msg_list_free(&out);

    /* Malformed values (should never exist) are skipped, not crashed on. */
    r = raw_cmd(raw, "ZADD", "snap:{bob}:msgs", "7", "no-space-here", "8", "123 1 bad id", "9",
                "12x text", "10", "10 99999999999999 fine", (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 4);
    freeReplyObject(r);
    CHECK_EQ_INT(test_take(h, "bob", clock_now_ms(), &out, &expired, &err), SNAP_OK);
    CHECK_EQ_INT(out.len, 1);
    CHECK_EQ_INT(expired, 3);
    if (out.len == 1) {
        CHECK_EQ_INT(out.items[0].id, 10);
        CHECK_EQ_STR(out.items[0].text, "fine");
    }
    hot_msg_list_free(&out);
done:
    hot_free(h);
    redisFree(raw);
}

static void test_inbox_ttl(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct snap_err err;
    int64_t now = clock_now_ms();
    long long pttl;

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL)
        goto done;
    CHECK_EQ_INT(hot_inbox_put(h, "carol", 1, now + 10000, "x", 1, &err), SNAP_OK);
    pttl = raw_int(raw, "PTTL", "snap:{carol}:msgs");
    CHECK(pttl > 8000 && pttl <= 10000);
    CHECK_EQ_INT(hot_inbox_put(h, "carol", 2, now + 60000, "x", 1, &err), SNAP_OK);
    pttl = raw_int(raw, "PTTL", "snap:{carol}:msgs");
    CHECK(pttl > 58000 && pttl <= 60000);
    /* An earlier expiry never shortens the inbox's life. */
    CHECK_EQ_INT(hot_inbox_put(h, "carol", 3, now + 30000, "x", 1, &err), SNAP_OK);
    CHECK_EQ_INT(hot_inbox_put(h, "carol", 4, now - 5000, "x", 1, &err), SNAP_OK);
    pttl = raw_int(raw, "PTTL", "snap:{carol}:msgs");
    CHECK(pttl > 58000 && pttl <= 60000);
    CHECK_EQ_INT(raw_int(raw, "ZCARD", "snap:{carol}:msgs"), 4);
    /* A later one extends it to exactly that expiry. */
    CHECK_EQ_INT(hot_inbox_put(h, "carol", 5, now + 3600000, "x", 1, &err), SNAP_OK);
    pttl = raw_int(raw, "PTTL", "snap:{carol}:msgs");
    CHECK(pttl > 3598000 && pttl <= 3600000);
    CHECK_EQ_INT(raw_int(raw, "DEL", "snap:{carol}:msgs"), 1);
done:
    hot_free(h);
    redisFree(raw);
}

static void test_odd_usernames(void)
{
    static const char *const users[] = {
        "a{b}c", "{", "}", "{}", "a}b", "a", "x y", "j\xC3\xBCrgen", "\xE5\x90\x8D\xE5\x89\x8D",
        "emoji\xF0\x9F\x98\x80", "tab\tname", "%41", "snap:{a}:msgs", "*", "a\r\nPING",
        "0123456789012345678901234567890123456789012345678901234567890123", /* 64 bytes */
    };
    const size_t n = sizeof users / sizeof users[0];
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct hot_msg_list out = {NULL, 0};
    struct snap_err err;
    int64_t now = clock_now_ms();
    char long_name[SNAP_USERNAME_MAX + 2];

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL)
        goto done;
    for (size_t i = 0; i < n; i++)
        CHECK_EQ_INT(hot_inbox_put(h, users[i], (int64_t)i + 1, now + 60000, users[i],
                                   strlen(users[i]), &err),
                     SNAP_OK);
    CHECK_EQ_INT(raw_int(raw, "EXISTS", "snap:{x y}:msgs"), 1);
    CHECK_EQ_INT(raw_int(raw, "EXISTS", "snap:{a\r\nPING}:msgs"), 1);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(test_take(h, users[i], clock_now_ms(), &out, NULL, &err), SNAP_OK);
        CHECK_EQ_INT(out.len, 1);
        if (out.len == 1) {
            CHECK_EQ_INT(out.items[0].id, (int64_t)i + 1);
            CHECK_EQ_STR(out.items[0].text, users[i]);
        }
        hot_msg_list_free(&out);
    }
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    CHECK_EQ_INT(hot_inbox_put(h, long_name, 1, now + 60000, "x", 1, &err), SNAP_EINVAL);
    CHECK_EQ_INT(hot_inbox_put(h, "", 1, now + 60000, "x", 1, &err), SNAP_EINVAL);
    CHECK_EQ_INT(hot_inbox_put(h, NULL, 1, now + 60000, "x", 1, &err), SNAP_EINVAL);
    CHECK_EQ_INT(hot_inbox_put(h, "ok", 0, now + 60000, "x", 1, &err), SNAP_EINVAL);
    CHECK_EQ_INT(test_take(h, long_name, now, &out, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(out.len, 0);
done:
    hot_free(h);
    redisFree(raw);
}

/* ---------------------------------------------------------- sessions -- */

static void test_sessions(void)
{
    static const char *const hash =
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    char user[SNAP_USERNAME_MAX + 1], role[16];
    struct snap_err err;
    long long ttl;
    redisReply *r;

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL)
        goto done;
    CHECK_EQ_INT(hot_session_put(h, hash, "alice", "user", 100, &err), SNAP_OK);
    CHECK_EQ_INT(hot_session_get(h, hash, user, role, &err), SNAP_OK);
    CHECK_EQ_STR(user, "alice");
    CHECK_EQ_STR(role, "user");
    ttl = raw_int(raw, "TTL",
                  "snap:session:"
                  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    CHECK(ttl > 95 && ttl <= 100);
    CHECK_EQ_INT(hot_session_del(h, hash, &err), SNAP_OK);
    CHECK_EQ_INT(hot_session_get(h, hash, user, role, &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(hot_session_del(h, hash, &err), SNAP_OK); /* deleting twice is fine */
    CHECK_EQ_INT(hot_session_get(h, "unknown", user, role, &err), SNAP_ENOTFOUND);

    /* Role and username are split at the first space only. */
    CHECK_EQ_INT(hot_session_put(h, "h2", "j\xC3\xBCrgen the 2nd", "admin", 10, &err), SNAP_OK);
    CHECK_EQ_INT(hot_session_get(h, "h2", user, role, &err), SNAP_OK);
    CHECK_EQ_STR(user, "j\xC3\xBCrgen the 2nd");
    CHECK_EQ_STR(role, "admin");

    CHECK_EQ_INT(hot_session_put(h, "h3", "alice", "bad role", 10, &err), SNAP_EINVAL);
    CHECK_EQ_INT(hot_session_put(h, "h3", "alice", "", 10, &err), SNAP_EINVAL);
    CHECK_EQ_INT(hot_session_put(h, "h3", "alice", "user", 0, &err), SNAP_EINVAL);
    CHECK_EQ_INT(hot_session_put(h, "", "alice", "user", 10, &err), SNAP_EINVAL);

    /* A value that is not "<role> <username>" is refused, not guessed. */
    r = raw_cmd(raw, "SET", "snap:session:bad", "nospace", (const char *)NULL);
    freeReplyObject(r);
    CHECK_EQ_INT(hot_session_get(h, "bad", user, role, &err), SNAP_ENOTFOUND);

    /* Expiry is Redis's. */
    CHECK_EQ_INT(hot_session_put(h, "h4", "dave", "user", 1, &err), SNAP_OK);
    CHECK_EQ_INT(hot_session_get(h, "h4", user, role, &err), SNAP_OK);
    sleep_ms(1200);
    CHECK_EQ_INT(hot_session_get(h, "h4", user, role, &err), SNAP_ENOTFOUND);
done:
    hot_free(h);
    redisFree(raw);
}

/* ----------------------------------------------------- failure modes -- */

static void test_unreachable(void)
{
    struct snap_config cfg;
    struct snap_err err;
    struct hot_store *h;
    int64_t t0, id;
    int fd = -1, port = closed_port(&fd);
    char url[64];

    CHECK(port > 0);
    (void)snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    cfg_with_url(&cfg, url);
    h = open_hot(&cfg); /* lazy: no connection attempt yet */
    CHECK(h != NULL);
    t0 = clock_mono_ns();
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_EUNAVAIL);
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_EUNAVAIL);
    CHECK(elapsed_ms(t0) < 2500);
    hot_free(h);

    /* Stuck: the kernel completes the handshake (listen backlog) but
     * nobody ever answers. The command timeout must end the wait. */
    CHECK_EQ_INT(listen(fd, 8), 0);
    h = open_hot(&cfg);
    CHECK(h != NULL);
    t0 = clock_mono_ns();
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_EUNAVAIL);
    fprintf(stderr, "  stuck server: %s after %" PRId64 " ms\n", err.msg, elapsed_ms(t0));
    CHECK(elapsed_ms(t0) < 2500);
    hot_free(h);
    close(fd);
}

static void test_reconnect_after_kill(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct hot_msg_list out = {NULL, 0};
    struct snap_err err;
    int64_t id;
    int rc;
    redisReply *r;

    CHECK(h != NULL && raw != NULL);
    if (h == NULL || raw == NULL)
        goto done;
    for (int round = 0; round < 3; round++) {
        CHECK_EQ_INT(hot_ping(h, &err), SNAP_OK);
        r = raw_cmd(raw, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes", (const char *)NULL);
        CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer >= 1);
        freeReplyObject(r);
        /* The next call may fail or succeed; the one after must succeed. A
         * take is never resent, so it must notice the dead connection before
         * sending (it would otherwise answer 503 to a reader after every
         * Redis restart or failover): it succeeds at once, with the message. */
        switch (round) {
        case 0: rc = hot_next_id(h, &id, &err); break;
        case 1: rc = hot_inbox_put(h, "erin", 1, clock_now_ms() + 60000, "x", 1, &err); break;
        default:
            sleep_ms(20); /* let the server's close reach our socket */
            rc = test_take(h, "erin", clock_now_ms(), &out, NULL, &err);
            CHECK_EQ_INT(rc, SNAP_OK);
            CHECK_EQ_INT(out.len, 1);
            break;
        }
        fprintf(stderr, "  round %d, first call after CLIENT KILL: %s %s\n", round,
                snap_status_name(rc), rc ? err.msg : "");
        CHECK(rc == SNAP_OK || rc == SNAP_EUNAVAIL);
        hot_msg_list_free(&out);
        CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
    }
done:
    hot_free(h);
    redisFree(raw);
}

static void test_error_replies(void)
{
    struct hot_store *h = open_hot(&g_cfg);
    redisContext *raw = raw_open();
    struct hot_msg_list out = {NULL, 0};
    struct snap_err err;
    int64_t id;
    int fd = -1, port = closed_port(&fd);
    char port_s[16];
    redisReply *r;

    CHECK(h != NULL && raw != NULL && port > 0);
    if (h == NULL || raw == NULL || port <= 0)
        goto done;

    /* An error inside EXEC (WRONGTYPE) fails the call, keeps the link. */
    r = raw_cmd(raw, "SET", "snap:{frank}:msgs", "not a hash", (const char *)NULL);
    freeReplyObject(r);
    CHECK_EQ_INT(hot_inbox_put(h, "frank", 1, clock_now_ms() + 1000, "x", 1, &err), SNAP_EUNAVAIL);
    CHECK(strstr(err.msg, "WRONGTYPE") != NULL);
    /* A peek fails too, and keeps the link; the key is left for the
     * operator (a read of that inbox answers 503 until it is removed). */
    CHECK_EQ_INT(test_take(h, "frank", clock_now_ms(), &out, NULL, &err), SNAP_EUNAVAIL);
    CHECK_EQ_INT(out.len, 0);
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_OK);
    CHECK_EQ_INT(raw_int(raw, "DEL", "snap:{frank}:msgs"), 1);
    CHECK_EQ_INT(hot_inbox_put(h, "frank", 1, clock_now_ms() + 1000, "x", 1, &err), SNAP_OK);
    CHECK_EQ_INT(raw_int(raw, "DEL", "snap:{frank}:msgs"), 1);

    /* Demoted to a replica: READONLY is unavailable and drops the link;
     * once it is a master again the next call reconnects and works. */
    (void)snprintf(port_s, sizeof port_s, "%d", port);
    r = raw_cmd(raw, "REPLICAOF", "127.0.0.1", port_s, (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_EUNAVAIL);
    CHECK(strstr(err.msg, "READONLY") != NULL);
    r = raw_cmd(raw, "REPLICAOF", "NO", "ONE", (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    CHECK_EQ_INT(hot_next_id(h, &id, &err), SNAP_OK);
done:
    hot_free(h);
    redisFree(raw);
    if (fd >= 0)
        close(fd);
}

static void test_auth_and_db(void)
{
    struct snap_config cfg;
    struct snap_err err;
    struct hot_store *h;
    redisContext *raw = raw_open();
    char url[160];
    redisReply *r;

    CHECK(raw != NULL);
    if (raw == NULL)
        return;

    /* db from the URL is SELECTed. */
    (void)snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", g_port);
    cfg_with_url(&cfg, url);
    h = open_hot(&cfg);
    CHECK(h != NULL);
    CHECK_EQ_INT(hot_inbox_put(h, "gina", 1, clock_now_ms() + 60000, "x", 1, &err), SNAP_OK);
    hot_free(h);
    CHECK_EQ_INT(raw_int(raw, "EXISTS", "snap:{gina}:msgs"), 0);
    r = raw_cmd(raw, "SELECT", "3", (const char *)NULL);
    freeReplyObject(r);
    CHECK_EQ_INT(raw_int(raw, "EXISTS", "snap:{gina}:msgs"), 1);
    CHECK_EQ_INT(raw_int(raw, "DEL", "snap:{gina}:msgs"), 1);
    r = raw_cmd(raw, "SELECT", "0", (const char *)NULL);
    freeReplyObject(r);

    /* A password (with a %-encoded space) and an ACL user. */
    r = raw_cmd(raw, "CONFIG", "SET", "requirepass", "s3cr3t pw", (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = raw_cmd(raw, "ACL", "SETUSER", "bob", "on", ">bob-pw", "~*", "&*", "+@all",
                (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);

    h = open_hot(&g_cfg); /* no password */
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_EUNAVAIL);
    hot_free(h);
    (void)snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d/0", g_port);
    cfg_with_url(&cfg, url);
    h = open_hot(&cfg);
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_EUNAVAIL);
    hot_free(h);
    (void)snprintf(url, sizeof url, "redis://:s3cr3t%%20pw@127.0.0.1:%d/0", g_port);
    cfg_with_url(&cfg, url);
    h = open_hot(&cfg);
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_OK);
    hot_free(h);
    (void)snprintf(url, sizeof url, "redis://bob:bob-pw@127.0.0.1:%d", g_port);
    cfg_with_url(&cfg, url);
    h = open_hot(&cfg);
    CHECK_EQ_INT(hot_ping(h, &err), SNAP_OK);
    hot_free(h);

    r = raw_cmd(raw, "CONFIG", "SET", "requirepass", "", (const char *)NULL);
    CHECK(r != NULL && r->type == REDIS_REPLY_STATUS);
    freeReplyObject(r);
    r = raw_cmd(raw, "ACL", "DELUSER", "bob", (const char *)NULL);
    freeReplyObject(r);
    redisFree(raw);
}

/* ------------------------------------------------- sentinel probe -- */

static volatile sig_atomic_t g_probe_stop;

static void probe_on_signal(int sig)
{
    (void)sig;
    g_probe_stop = 1;
}

/* `test_hot_store --sentinel-probe`: not a test by itself. Driven by
 * tests/redis/sentinel_check.py, it opens one hot_store from
 * SNAPTEXT_REDIS_URL + SNAPTEXT_REDIS_SENTINELS (+ SNAPTEXT_REDIS_SENTINEL_PASSWORD
 * when set) and calls hot_next_id every
 * 100 ms until SIGTERM (or 60 s), printing one line per call:
 *   "<ms since start> ok <id>"  or  "<ms since start> unavailable <reason>" */
static int sentinel_probe(void)
{
    struct snap_config cfg;
    struct snap_err err;
    struct sigaction sa;
    struct hot_store *h;
    const char *url = getenv("SNAPTEXT_REDIS_URL");
    const char *sentinels = getenv("SNAPTEXT_REDIS_SENTINELS");
    const char *sentinel_pw = getenv("SNAPTEXT_REDIS_SENTINEL_PASSWORD");
    int64_t t0 = clock_mono_ns();

    if (url == NULL || sentinels == NULL) {
        fprintf(stderr, "probe: set SNAPTEXT_REDIS_URL and SNAPTEXT_REDIS_SENTINELS\n");
        return 2;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = probe_on_signal;
    (void)sigaction(SIGTERM, &sa, NULL);
    (void)sigaction(SIGINT, &sa, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
    cfg_with_url(&cfg, url);
    (void)snprintf(cfg.redis_sentinels, sizeof cfg.redis_sentinels, "%s", sentinels);
    if (sentinel_pw != NULL)
        (void)snprintf(cfg.redis_sentinel_password, sizeof cfg.redis_sentinel_password, "%s",
                       sentinel_pw);
    h = hot_new(&cfg, &err);
    if (h == NULL) {
        fprintf(stderr, "probe: %s\n", err.msg);
        return 2;
    }
    while (!g_probe_stop && elapsed_ms(t0) < 60000) {
        int64_t id = 0;
        int rc = hot_next_id(h, &id, &err);

        if (rc == SNAP_OK)
            printf("%" PRId64 " ok %" PRId64 "\n", elapsed_ms(t0), id);
        else
            printf("%" PRId64 " %s %s\n", elapsed_ms(t0), snap_status_name(rc), err.msg);
        fflush(stdout);
        sleep_ms(100);
    }
    hot_free(h);
    return 0;
}

int main(int argc, char **argv)
{
    const char *url = getenv("SNAPTEXT_REDIS_URL");
    const char *port = getenv("SNAP_REDIS_PORT");

    if (argc > 1 && strcmp(argv[1], "--sentinel-probe") == 0)
        return sentinel_probe();
    if (url == NULL || port == NULL) {
        fprintf(stderr, "run me through tests/harness/with_redis.py\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    /* A write to a socket Redis closed must be an error, not a signal. */
    (void)signal(SIGPIPE, SIG_IGN);
    cfg_with_url(&g_cfg, url);
    g_port = atoi(port);

    RUN(test_free_null);
    RUN(test_bad_url);
    RUN(test_ids_increase);
    RUN(test_id_floor);
    RUN(test_roundtrip_binary);
    RUN(test_expired_dropped);
    RUN(test_inbox_ttl);
    RUN(test_odd_usernames);
    RUN(test_batches);
    RUN(test_epoch);
    RUN(test_sessions);
    RUN(test_unreachable);
    RUN(test_reconnect_after_kill);
    RUN(test_error_replies);
    RUN(test_auth_and_db);
    return TEST_SUMMARY();
}
