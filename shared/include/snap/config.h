/* config.h: the SNAPTEXT_* environment settings of API.md, read once at
 * start into one const struct that handlers only read.
 *
 * Every setting is one row of a table in config.c (name, default, bounds).
 * A bad value makes config_load() fail with one line naming the variable,
 * the value given and what is accepted; the service prints it and exits.
 * Not here: reading the environment anywhere else (nothing else calls getenv). */
#ifndef SNAP_CONFIG_H
#define SNAP_CONFIG_H

#include <stddef.h>

#define SNAP_USERNAME_MAX 64   /* bytes of UTF-8, API.md */
#define SNAP_PASSWORD_MIN 8
#define SNAP_PASSWORD_MAX 1024

enum snap_auth_mode { SNAP_AUTH_REQUIRED = 0, SNAP_AUTH_OPEN = 1 };

enum snap_log_level {
    SNAP_LOG_DEBUG = 0,
    SNAP_LOG_INFO = 1,
    SNAP_LOG_WARN = 2,
    SNAP_LOG_ERROR = 3
};

struct snap_config {
    char redis_url[512];        /* SNAPTEXT_REDIS_URL  redis://host:port/db      */
    char redis_sentinels[512];  /* SNAPTEXT_REDIS_SENTINELS "h[:p],h[:p];master" ("" = off) */
    char redis_sentinel_password[256]; /* SNAPTEXT_REDIS_SENTINEL_PASSWORD: AUTH sent to
                                          each sentinel ("" = none)          */
    char store_url[1024];       /* SNAPTEXT_STORE sqlite:///path | mongodb://... */
    char listen_host[64];       /* SNAPTEXT_LISTEN "[host:]port"; host defaults 0.0.0.0 */
    int listen_port;            /* 0 = any free port (logged as "listening port=N") */
    enum snap_auth_mode auth;   /* SNAPTEXT_AUTH required|open                   */
    int threads;                /* SNAPTEXT_THREADS civetweb workers             */
    long max_body_bytes;        /* SNAPTEXT_MAX_BODY_BYTES   default 65536       */
    long max_text_bytes;        /* SNAPTEXT_MAX_TEXT_BYTES   default 4096        */
    long max_timeout;           /* SNAPTEXT_MAX_TIMEOUT      default 2592000 s   */
    long session_ttl;           /* SNAPTEXT_SESSION_TTL      default 2592000 s   */
    long read_max;              /* SNAPTEXT_READ_MAX  messages per read (1000)   */
    long max_inbox;             /* SNAPTEXT_MAX_INBOX unread per inbox (10000)   */
    long max_waiters;           /* SNAPTEXT_MAX_WAITERS waiting reads per instance (8) */
    long drain_ms;              /* SNAPTEXT_DRAIN_MS: after SIGTERM, report not
                                   ready this long before stopping (1500)    */
    long login_max_fails;       /* SNAPTEXT_LOGIN_MAX_FAILS: failed logins of one
                                   account per window before 429 (10)       */
    long login_max_fails_addr;  /* SNAPTEXT_LOGIN_MAX_FAILS_ADDR: the same per
                                   client address (50)                       */
    long login_window;          /* SNAPTEXT_LOGIN_WINDOW: seconds (300)      */
    long hash_queue;            /* SNAPTEXT_HASH_QUEUE: requests that may wait
                                   for a password hash slot; more get 503 (8) */
    char admin_username[SNAP_USERNAME_MAX + 1]; /* SNAPTEXT_ADMIN_USERNAME ("" = none) */
    char admin_password[SNAP_PASSWORD_MAX + 1]; /* SNAPTEXT_ADMIN_PASSWORD        */
    enum snap_log_level log_level;              /* SNAPTEXT_LOG_LEVEL debug|info|warn|error */
    char pages_root[1024];      /* SNAPTEXT_PAGES_ROOT: the folder the pages
                                   service serves (site); others ignore it   */
};

/* Fills cfg from the environment. default_port is the service's own
 * default for SNAPTEXT_LISTEN. On a bad value returns -1 and writes one
 * line (no newline) into msg, e.g.
 *   "SNAPTEXT_MAX_TIMEOUT=abc: must be an integer between 1 and 31536000"
 * Returns 0 on success. */
int config_load(struct snap_config *cfg, int default_port, char *msg, size_t msglen);

/* Same, but reads name=value pairs through getter instead of getenv
 * (for tests). getter returns NULL for an unset variable. */
int config_load_from(struct snap_config *cfg, int default_port,
                     const char *(*getter)(const char *name, void *arg), void *arg,
                     char *msg, size_t msglen);

#endif
