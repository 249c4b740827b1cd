/* redis_expect.c: one Redis command whose reply is checked only by its
 * type, then freed (redis_expect.h). What the command means belongs to its
 * caller (session_store.c, login_throttle.c); the round trip and the reply
 * checks to redis_conn.c.
 * Not here: commands whose reply the caller reads. */
#include "redis_expect.h"

#include <hiredis/hiredis.h>

int redis_command_expect(struct hot_store *h, struct redis_cmd *cmd, int type, struct snap_err *err)
{
    redisReply *r = NULL;
    int rc = redis_command(h, cmd, &r, err);

    if (rc != SNAP_OK) return rc;
    if (r->type != type) rc = redis_unexpected(h, cmd->argv[0], err);
    freeReplyObject(r);
    return rc;
}
