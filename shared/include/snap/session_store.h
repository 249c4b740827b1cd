/* session_store.h: bearer-token sessions in Redis, keyed by the SHA-256
 * hex of the token (never the token itself). Behind Sentinel, writes wait
 * for a replica so a failover cannot undo a login or a logout.
 * Not here: hashing and checking tokens (auth.h), the handle (hot_store.h). */
#ifndef SNAP_SESSION_STORE_H
#define SNAP_SESSION_STORE_H

#include <stddef.h>
#include <stdint.h>
#include "snap/err.h"
#include "snap/config.h"

struct hot_store; /* snap/hot_store.h */

int hot_session_put(struct hot_store *h, const char *token_hash, const char *username,
                    const char *role, long ttl_s, struct snap_err *err);
/* SNAP_ENOTFOUND for an unknown, revoked or expired token. username holds
 * SNAP_USERNAME_MAX+1 bytes, role 16. */
int hot_session_get(struct hot_store *h, const char *token_hash, char *username,
                    char *role, struct snap_err *err);
int hot_session_del(struct hot_store *h, const char *token_hash, struct snap_err *err);

#endif
