/* session_store.c: bearer-token sessions in Redis (snap/session_store.h):
 * snap:session:<token hash> holds "<role> <username>" with the session's
 * TTL. Behind Sentinel, a put or a delete waits for a replica (a put that
 * none confirms is taken back), so a failover cannot undo a login or logout.
 * Not here: tokens and their hashing (auth.c), the connection (redis_conn.c). */
#include "snap/session_store.h"

#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

#define HOT_TOKEN_HASH_MAX 128
#define HOT_ROLE_MAX       16 /* hot_session_get: role buffer holds 16 bytes */

static const char KEY_SESSION_PREFIX[] = "snap:session:";

/* key = "snap:session:" hash; key holds HOT_SESSION_KEY_MAX bytes. */
#define HOT_SESSION_KEY_MAX (sizeof KEY_SESSION_PREFIX + HOT_TOKEN_HASH_MAX)

/* Where every session call starts: checks the handle (clearing err), then
 * writes the key of token_hash into key. */
static int session_key(const struct hot_store *h, const char *token_hash, char *key,
                       size_t *key_len, struct snap_err *err)
{
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    return redis_make_key(KEY_SESSION_PREFIX, token_hash, HOT_TOKEN_HASH_MAX, "",
                          "session: token hash", key, key_len, err);
}

int hot_session_put(struct hot_store *h, const char *token_hash, const char *username,
                    const char *role, long ttl_s, struct snap_err *err)
{
    char key[HOT_SESSION_KEY_MAX], value[HOT_ROLE_MAX + 1 + SNAP_USERNAME_MAX], ttl[24];
    size_t key_len, ulen, rlen;
    struct redis_cmd cmd = {0};
    int rc = session_key(h, token_hash, key, &key_len, err);

    if (rc != SNAP_OK) return rc;
    if (username == NULL || role == NULL)
        return snap_err_set(err, SNAP_EINVAL, "session put: no username or role");
    ulen = strlen(username);
    rlen = strlen(role);
    if (ulen == 0 || ulen > SNAP_USERNAME_MAX)
        return snap_err_set(err, SNAP_EINVAL, "session put: username must be 1 to %d bytes",
                            SNAP_USERNAME_MAX);
    if (rlen == 0 || rlen >= HOT_ROLE_MAX || memchr(role, ' ', rlen) != NULL)
        return snap_err_set(err, SNAP_EINVAL, "session put: bad role");
    if (ttl_s <= 0) return snap_err_set(err, SNAP_EINVAL, "session put: ttl must be positive");

    memcpy(value, role, rlen);
    value[rlen] = ' ';
    memcpy(value + rlen + 1, username, ulen);
    redis_cmd_adds(&cmd, "SET");
    redis_cmd_add(&cmd, key, key_len);
    redis_cmd_add(&cmd, value, rlen + 1 + ulen);
    redis_cmd_adds(&cmd, "EX");
    redis_cmd_add(&cmd, ttl, redis_fmt_i64(ttl, (int64_t)ttl_s));
    rc = redis_command_expect(h, &cmd, REDIS_REPLY_STATUS, err);
    if (rc == SNAP_OK) {
        struct redis_cmd undo = {0};
        redis_cmd_adds(&undo, "DEL");
        redis_cmd_add(&undo, key, key_len);
        rc = redis_wait_replicated(h, &undo, "session put", err);
    }
    return rc;
}

int hot_session_get(struct hot_store *h, const char *token_hash, char *username, char *role,
                    struct snap_err *err)
{
    char key[HOT_SESSION_KEY_MAX];
    size_t key_len, rlen, ulen;
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    const char *space;
    int rc = session_key(h, token_hash, key, &key_len, err);

    if (rc != SNAP_OK) return rc;
    if (username == NULL || role == NULL)
        return snap_err_set(err, SNAP_EINVAL, "session get: no output buffers");
    redis_cmd_adds(&cmd, "GET");
    redis_cmd_add(&cmd, key, key_len);
    rc = redis_command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = snap_err_set(err, SNAP_ENOTFOUND, "session: unknown or expired token");
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = redis_unexpected(h, "GET", err);
    } else if ((space = memchr(r->str, ' ', r->len)) == NULL ||
               (rlen = (size_t)(space - r->str)) == 0 || rlen >= HOT_ROLE_MAX ||
               (ulen = r->len - rlen - 1) == 0 || ulen > SNAP_USERNAME_MAX ||
               memchr(r->str, '\0', r->len) != NULL) {
        /* Refuse rather than guess who this token belongs to. */
        rc = snap_err_set(err, SNAP_ENOTFOUND, "session: malformed session value ignored");
    } else {
        memcpy(role, r->str, rlen);
        role[rlen] = '\0';
        memcpy(username, space + 1, ulen);
        username[ulen] = '\0';
    }
    freeReplyObject(r);
    return rc;
}

int hot_session_del(struct hot_store *h, const char *token_hash, struct snap_err *err)
{
    char key[HOT_SESSION_KEY_MAX];
    size_t key_len;
    struct redis_cmd cmd = {0};
    int rc = session_key(h, token_hash, key, &key_len, err);

    if (rc != SNAP_OK) return rc;
    redis_cmd_adds(&cmd, "DEL");
    redis_cmd_add(&cmd, key, key_len);
    rc = redis_command_expect(h, &cmd, REDIS_REPLY_INTEGER, err);
    if (rc == SNAP_OK) rc = redis_wait_replicated(h, NULL, "session delete", err);
    return rc;
}
