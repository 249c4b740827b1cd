/* err.h: the status codes every shared/ function returns, and the error
 * record that carries a human-readable reason back to the caller.
 *
 * Convention: 0 (SNAP_OK) is success, a negative SNAP_E* is a failure, and
 * the function fills the caller-owned struct snap_err with the reason. The
 * reason is for logs: it may hold driver text, so it never reaches a client.
 * Not here: the HTTP error codes of API.md (http.h). */
#ifndef SNAP_ERR_H
#define SNAP_ERR_H

#include <stddef.h>

enum snap_status {
    SNAP_OK = 0,
    SNAP_ERR = -1,        /* unexpected failure (bug, out of memory)        */
    SNAP_ENOTFOUND = -2,  /* the thing asked for does not exist             */
    SNAP_EUNAVAIL = -3,   /* a server (Redis, cold store) cannot be reached */
    SNAP_ECONFLICT = -4,  /* unique key already taken                       */
    SNAP_EINVAL = -5,     /* the caller passed something invalid            */
    SNAP_EUNAUTH = -6,    /* credentials or token not accepted              */
    SNAP_EEXIST = -7,     /* a second unique key (an Idempotency-Key) taken */
    SNAP_EFULL = -8,      /* a bound was reached (a full inbox)             */
    SNAP_ETIMEOUT = -9,   /* the request's deadline passed first            */
    SNAP_EGONE = -10      /* the client went away while the request waited  */
};

struct snap_err {
    int code;       /* one of enum snap_status */
    char msg[160];  /* reason for the log, always NUL-terminated */
};

/* Fills err (if not NULL) with code and a printf-style reason, truncated
 * safely. Returns code, so a failure path can be one line:
 *     return snap_err_set(err, SNAP_EUNAVAIL, "redis: %s", c->errstr); */
int snap_err_set(struct snap_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets err to SNAP_OK with an empty message. NULL is fine. */
void snap_err_clear(struct snap_err *err);

/* Name of a status ("not_found", "unavailable", ...), for logs. */
const char *snap_status_name(int code);

#endif
