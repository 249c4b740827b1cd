/* login_throttle.h: the failed-login counters of the users service, kept
 * in Redis (hardening, issue 12). What counts as a failure and when a
 * login is refused is users' handlers.c; this is only the counting.
 * Not here: the handle (snap/hot_store.h). */
#ifndef SNAP_LOGIN_THROTTLE_H
#define SNAP_LOGIN_THROTTLE_H

#include <stddef.h>
#include <stdint.h>
#include "snap/err.h"

struct hot_store; /* snap/hot_store.h */

/* Failed logins are counted per account and per client address, each in a
 * fixed window that starts with the first failure:
 *   snap:{<user>}:login_fails         STRING  counter, TTL = rest of window
 *   snap:login_fails_addr:<address>   STRING  counter, TTL = rest of window
 * Counters are not WAITed for behind Sentinel: a failover that loses a few
 * counts only gives a guesser a few more tries. */
struct hot_login_fails {
    long user_fails;      /* failures of the account in its window */
    int64_t user_left_ms; /* time left of that window (0: none open) */
    long addr_fails;      /* failures from the address in its window */
    int64_t addr_left_ms;
};

/* Reads both counters (one round trip). addr is 1..64 bytes. */
int hot_login_fails_get(struct hot_store *h, const char *user, const char *addr,
                        struct hot_login_fails *out, struct snap_err *err);
/* Counts one failure against both, opening a window_s window where none is
 * open (one round trip). */
int hot_login_fail_add(struct hot_store *h, const char *user, const char *addr, long window_s,
                       struct snap_err *err);
/* Forgets the account's failures (after a successful login). */
int hot_login_fails_clear(struct hot_store *h, const char *user, struct snap_err *err);

#endif
