/* hot_ids.c: message ids from the Redis counter snap:next_id (snap/hot_ids.h):
 * one INCR, and the floor script that raises the counter above ids the
 * cold store already holds (after Redis lost it). Blocks of ids for the
 * send pipeline are reserved with its puts (hot_inbox.c, INCRBY).
 * Not here: the connection (redis_conn.c). */
#include "snap/hot_ids.h"

#include <inttypes.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

/* Raises KEYS[1] to ARGV[1] when it is lower (or unset); never lowers it.
 * Compares as decimal strings, digit by digit: Lua numbers are doubles and
 * would round ids above 2^53, and string `<` would depend on the locale.
 * ARGV[1] is a canonical non-negative decimal (written by hot_id_floor). */
static const char FLOOR_LUA[] = "local function lower(a, b)\n"
                                "  if string.sub(a, 1, 1) == '-' then return true end\n"
                                "  if #a ~= #b then return #a < #b end\n"
                                "  for i = 1, #a do\n"
                                "    local x, y = string.byte(a, i), string.byte(b, i)\n"
                                "    if x ~= y then return x < y end\n"
                                "  end\n"
                                "  return false\n"
                                "end\n"
                                "local cur = redis.call('GET', KEYS[1])\n"
                                "if cur and not lower(cur, ARGV[1]) then return 0 end\n"
                                "redis.call('SET', KEYS[1], ARGV[1])\n"
                                "return 1\n";

int hot_next_id(struct hot_store *h, int64_t *id, struct snap_err *err)
{
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (id == NULL) return snap_err_set(err, SNAP_EINVAL, "hot_next_id: no output");
    redis_cmd_adds(&cmd, "INCR");
    redis_cmd_add(&cmd, REDIS_KEY_NEXT_ID, sizeof REDIS_KEY_NEXT_ID - 1);
    rc = redis_command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = redis_unexpected(h, "INCR", err);
    else
        *id = (int64_t)r->integer;
    freeReplyObject(r);
    return rc;
}

/* Loads FLOOR_LUA once per handle and remembers its SHA1. */
static int floor_script_load(struct hot_store *h, struct snap_err *err)
{
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    int rc;

    redis_cmd_adds(&cmd, "SCRIPT");
    redis_cmd_adds(&cmd, "LOAD");
    redis_cmd_add(&cmd, FLOOR_LUA, sizeof FLOOR_LUA - 1);
    rc = redis_command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STRING || r->len != sizeof h->floor_sha - 1) {
        rc = redis_unexpected(h, "SCRIPT LOAD", err);
    } else {
        memcpy(h->floor_sha, r->str, r->len);
        h->floor_sha[r->len] = '\0';
    }
    freeReplyObject(r);
    return rc;
}

int hot_id_floor(struct hot_store *h, int64_t floor, struct snap_err *err)
{
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    char num[24];
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (floor < 0)
        return snap_err_set(err, SNAP_EINVAL, "hot_id_floor: negative floor %" PRId64, floor);
    if (floor == 0) return SNAP_OK; /* an unset counter already counts as 0 */
    if (h->floor_sha[0] == '\0') {
        rc = floor_script_load(h, err);
        if (rc != SNAP_OK) return rc;
    }
    redis_cmd_adds(&cmd, "EVALSHA");
    redis_cmd_add(&cmd, h->floor_sha, sizeof h->floor_sha - 1);
    redis_cmd_adds(&cmd, "1");
    redis_cmd_add(&cmd, REDIS_KEY_NEXT_ID, sizeof REDIS_KEY_NEXT_ID - 1);
    redis_cmd_add(&cmd, num, redis_fmt_i64(num, floor));
    rc = redis_roundtrip(h, &cmd, 1, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* Redis restarted or failed over since we loaded it: EVAL sends the
         * body and caches it again under the same SHA1. */
        freeReplyObject(r);
        r = NULL;
        cmd.argv[0] = "EVAL";
        cmd.len[0] = 4;
        cmd.argv[1] = FLOOR_LUA;
        cmd.len[1] = sizeof FLOOR_LUA - 1;
        rc = redis_roundtrip(h, &cmd, 1, &r, err);
        if (rc != SNAP_OK) return rc;
    }
    rc = redis_reply_ok(h, r, "id floor script", err);
    if (rc == SNAP_OK && r->type != REDIS_REPLY_INTEGER)
        rc = redis_unexpected(h, "id floor script", err);
    freeReplyObject(r);
    return rc;
}
