/* hot_ids.h: message ids, from the Redis counter snap:next_id (see
 * snap/hot_store.h for the handle). The send pipeline reserves blocks of
 * them with its puts (hot_inbox_put_many); a restart that lost the counter
 * is raised back above the cold store's ids (hot_id_floor).
 * Not here: the ids' meaning in the cold store (cold_store.h). */
#ifndef SNAP_HOT_IDS_H
#define SNAP_HOT_IDS_H

#include <stddef.h>
#include <stdint.h>
#include "snap/err.h"

struct hot_store; /* snap/hot_store.h */

/* INCR snap:next_id into *id. */
int hot_next_id(struct hot_store *h, int64_t *id, struct snap_err *err);

/* Raises snap:next_id to at least floor (never lowers it): used when the
 * cold store already holds ids that a lost Redis write handed out. */
int hot_id_floor(struct hot_store *h, int64_t floor, struct snap_err *err);

#endif
