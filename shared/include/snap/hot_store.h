/* hot_store.h: the handle on Redis that every hot_* call takes — made,
 * pinged and freed here; the data lives in one header per concept:
 *   snap/hot_ids.h         message ids (hot_ids.c)
 *   snap/hot_inbox.h       the inbox index, waiting for it, its epoch (hot_inbox.c)
 *   snap/session_store.h   bearer-token sessions (session_store.c)
 *   snap/login_throttle.h  failed-login counters (login_throttle.c)
 * The connection itself (settings, connect, Sentinel, resends) is private:
 * shared/src/redis_conn.c.
 *
 * Redis does not decide delivery: the cold store does (cold_msg_claim).
 * The inbox here is an index of candidates, which may miss entries (a lost
 * write, an empty restart) or hold stale ones (a resurrected entry, an
 * already-read message): the claim refuses what is not deliverable, and
 * the repair (ingest's repair.c) puts back what is missing.
 *
 * Key layout (every key of one user carries the username as a hash tag, so
 * the same commands work on Redis Cluster; see docs/REDIS.md):
 *   snap:next_id                      STRING  INCR counter of message ids
 *   snap:{<user>}:msgs                ZSET    score id, member
 *                                             "<id> <expires_ms> <text>";
 *                                             key TTL = latest expiry in it
 *   snap:{<user>}:wake                PUBSUB  a put says "this inbox got one"
 *   snap:epoch                        STRING  random; gone = Redis lost its data
 *   snap:session:<sha256 hex>         STRING  "<role> <username>", TTL = session
 *   snap:{<user>}:login_fails         STRING  counter, TTL = rest of window
 *   snap:login_fails_addr:<address>   STRING  counter, TTL = rest of window
 *
 * Threading: a struct hot_store wraps one hiredis connection and is NOT
 * thread-safe: each worker thread owns one. It connects lazily; after any
 * I/O error the connection is dropped and the next call reconnects, so the
 * services ride out a Redis restart without being restarted themselves.
 * Every call is bounded by a short connect/command timeout (SNAP_EUNAVAIL).
 * Behind Sentinel (cfg->redis_sentinels), session writes also wait until a
 * replica has them, so a failover cannot take back a login or a logout.
 * Not here: durability (cold_store.h), token hashing (auth.h). */
#ifndef SNAP_HOT_STORE_H
#define SNAP_HOT_STORE_H

#include <stdint.h>
#include "snap/config.h"
#include "snap/err.h"

struct hot_store;

/* Makes an unconnected handle for cfg->redis_url (or the Sentinel master
 * named in cfg->redis_sentinels). Returns NULL on a malformed URL, with the
 * reason in err. The caller owns it: release with hot_free(). cfg must
 * outlive the handle. */
struct hot_store *hot_new(const struct snap_config *cfg, struct snap_err *err);
void hot_free(struct hot_store *h); /* NULL is fine */

/* 0 when Redis answers PING now. */
int hot_ping(struct hot_store *h, struct snap_err *err);

/* Registers fn (once, before any thread uses a handle): called, on the
 * thread that saw it, whenever a handle drops a connection after a failure,
 * with the wall-clock time of that handle's last completed round trip.
 * Whatever it wrote after that may be lost, and its next connection may
 * reach another server (a failover). fn must not block. */
void hot_on_connection_lost(void (*fn)(int64_t since_ms, void *arg), void *arg);

#endif
