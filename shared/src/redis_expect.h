/* redis_expect.h: PRIVATE to shared/src — one Redis command whose reply
 * matters only by its type (a SET that answers +OK, a DEL that answers a
 * count), for the hot_*.c data files that would otherwise each check and
 * free such a reply themselves. Built on redis_conn.h; services never
 * include it.
 * Not here: replies whose value the caller reads (use redis_command). */
#ifndef SNAP_REDIS_EXPECT_H
#define SNAP_REDIS_EXPECT_H

#include "redis_conn.h"

/* Runs cmd with redis_command() and accepts a reply of type type only
 * (REDIS_REPLY_STATUS, REDIS_REPLY_INTEGER, ...): any other type is
 * redis_unexpected(), named by cmd's verb. The reply is freed here, so
 * the caller owns nothing afterwards. */
int redis_command_expect(struct hot_store *h, struct redis_cmd *cmd, int type,
                         struct snap_err *err);

#endif
