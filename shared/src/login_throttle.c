/* login_throttle.c: the failed-login counters of the users service in
 * Redis (snap/login_throttle.h): per account and per client address, each a
 * counter whose TTL is the rest of its window. Read, counted (never resent)
 * and cleared here; users' handlers.c decides what a count means.
 * Not here: the connection (redis_conn.c). */
#include "snap/login_throttle.h"

#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"
#include "snap/config.h"

static const char KEY_LOGIN_USER_SUFFIX[] = "}:login_fails";
static const char KEY_LOGIN_ADDR_PREFIX[] = "snap:login_fails_addr:";
#define HOT_ADDR_MAX 64

#define HOT_LOGIN_USER_KEY_MAX                                                                     \
    (sizeof REDIS_KEY_USER_OPEN - 1 + SNAP_USERNAME_MAX + sizeof KEY_LOGIN_USER_SUFFIX)
#define HOT_LOGIN_ADDR_KEY_MAX (sizeof KEY_LOGIN_ADDR_PREFIX + HOT_ADDR_MAX)

static int login_keys(const char *user, const char *addr, char *ukey, size_t *ulen, char *akey,
                      size_t *alen, struct snap_err *err)
{
    int rc = redis_make_key(REDIS_KEY_USER_OPEN, user, SNAP_USERNAME_MAX, KEY_LOGIN_USER_SUFFIX,
                            "login throttle: username", ukey, ulen, err);

    if (rc != SNAP_OK || akey == NULL) return rc;
    return redis_make_key(KEY_LOGIN_ADDR_PREFIX, addr, HOT_ADDR_MAX, "", "login throttle: address",
                          akey, alen, err);
}

/* A GET reply as a count: nil is 0; anything that is not a number is 0
 * too (a counter someone overwrote must not lock an account forever). */
static long count_of(const redisReply *r)
{
    int64_t v = 0;

    if (r->type == REDIS_REPLY_STRING && redis_parse_i64(r->str, r->len, &v) && v > 0 &&
        v < 1000000000)
        return (long)v;
    return 0;
}

int hot_login_fails_get(struct hot_store *h, const char *user, const char *addr,
                        struct hot_login_fails *out, struct snap_err *err)
{
    char ukey[HOT_LOGIN_USER_KEY_MAX], akey[HOT_LOGIN_ADDR_KEY_MAX];
    size_t ulen, alen;
    struct redis_cmd cmds[4];
    redisReply *r[4] = {NULL, NULL, NULL, NULL};
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "login throttle: no output");
    memset(out, 0, sizeof *out);
    rc = login_keys(user, addr, ukey, &ulen, akey, &alen, err);
    if (rc != SNAP_OK) return rc;
    memset(cmds, 0, sizeof cmds);
    redis_cmd_adds(&cmds[0], "GET");
    redis_cmd_add(&cmds[0], ukey, ulen);
    redis_cmd_adds(&cmds[1], "PTTL");
    redis_cmd_add(&cmds[1], ukey, ulen);
    redis_cmd_adds(&cmds[2], "GET");
    redis_cmd_add(&cmds[2], akey, alen);
    redis_cmd_adds(&cmds[3], "PTTL");
    redis_cmd_add(&cmds[3], akey, alen);
    rc = redis_roundtrip(h, cmds, 4, r, err);
    if (rc != SNAP_OK) return rc;
    for (size_t i = 0; i < 4 && rc == SNAP_OK; i++)
        rc = redis_reply_ok(h, r[i], "login throttle", err);
    if (rc == SNAP_OK && (r[1]->type != REDIS_REPLY_INTEGER || r[3]->type != REDIS_REPLY_INTEGER))
        rc = redis_unexpected(h, "PTTL", err);
    if (rc == SNAP_OK) {
        out->user_fails = count_of(r[0]);
        out->user_left_ms = r[1]->integer > 0 ? r[1]->integer : 0;
        out->addr_fails = count_of(r[2]);
        out->addr_left_ms = r[3]->integer > 0 ? r[3]->integer : 0;
    }
    redis_free_replies(r, 4);
    return rc;
}

int hot_login_fail_add(struct hot_store *h, const char *user, const char *addr, long window_s,
                       struct snap_err *err)
{
    char ukey[HOT_LOGIN_USER_KEY_MAX], akey[HOT_LOGIN_ADDR_KEY_MAX], win[24];
    size_t ulen, alen, wlen;
    struct redis_cmd cmds[4];
    redisReply *r[4] = {NULL, NULL, NULL, NULL};
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (window_s <= 0) return snap_err_set(err, SNAP_EINVAL, "login throttle: window must be > 0");
    rc = login_keys(user, addr, ukey, &ulen, akey, &alen, err);
    if (rc != SNAP_OK) return rc;
    wlen = redis_fmt_i64(win, (int64_t)window_s);
    memset(cmds, 0, sizeof cmds);
    /* SET NX opens the window with its expiry; INCR keeps the TTL. */
    for (size_t k = 0; k < 2; k++) {
        const char *key = k == 0 ? ukey : akey;
        size_t klen = k == 0 ? ulen : alen;

        redis_cmd_adds(&cmds[2 * k], "SET");
        redis_cmd_add(&cmds[2 * k], key, klen);
        redis_cmd_adds(&cmds[2 * k], "0");
        redis_cmd_adds(&cmds[2 * k], "EX");
        redis_cmd_add(&cmds[2 * k], win, wlen);
        redis_cmd_adds(&cmds[2 * k], "NX");
        redis_cmd_adds(&cmds[2 * k + 1], "INCR");
        redis_cmd_add(&cmds[2 * k + 1], key, klen);
    }
    /* Not resent on a stale connection: a count must not be added twice. */
    rc = redis_roundtrip_ex(h, cmds, 4, r, false, err);
    if (rc != SNAP_OK) return rc;
    for (size_t i = 0; i < 4 && rc == SNAP_OK; i++)
        rc = redis_reply_ok(h, r[i], "login throttle", err);
    if (rc == SNAP_OK && (r[1]->type != REDIS_REPLY_INTEGER || r[3]->type != REDIS_REPLY_INTEGER))
        rc = redis_unexpected(h, "INCR", err);
    redis_free_replies(r, 4);
    return rc;
}

int hot_login_fails_clear(struct hot_store *h, const char *user, struct snap_err *err)
{
    char ukey[HOT_LOGIN_USER_KEY_MAX];
    size_t ulen;
    struct redis_cmd cmd = {0};
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    rc = login_keys(user, NULL, ukey, &ulen, NULL, NULL, err);
    if (rc != SNAP_OK) return rc;
    redis_cmd_adds(&cmd, "DEL");
    redis_cmd_add(&cmd, ukey, ulen);
    return redis_command_expect(h, &cmd, REDIS_REPLY_INTEGER, err);
}
