/* redis_conn.h: PRIVATE to shared/src — the Redis connection layer under
 * the hot_*.c data files (hot_ids.c, hot_inbox.c, session_store.c,
 * login_throttle.c). It owns struct hot_store: the parsed settings, one
 * hiredis connection opened lazily and dropped after a failure, the round
 * trips with their resend rules, the reply checks and the command builders.
 * Services never include this file; they use snap/hot_store.h and the
 * header of the data they need. */
#ifndef SNAP_REDIS_CONN_H
#define SNAP_REDIS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snap/err.h"
#include "snap/hot_store.h"

struct redisContext; /* hiredis; only redis_conn.c and hot_inbox.c's waits look inside */
struct redisReply;

#define REDIS_OBUF_KEEP       (256 * 1024) /* encode buffer kept between calls */
#define REDIS_HOST_MAX        256 /* bytes, NUL included */
#define REDIS_CRED_MAX        256 /* user / password after %XX decoding */
#define REDIS_SENTINELS_MAX   16
#define REDIS_MASTER_NAME_MAX 128
#define REDIS_ARGS_MAX        8 /* most arguments of one command built here */

/* The prefix of every per-user key: "snap:{" <user> "}..." (a hash tag). */
#define REDIS_KEY_USER_OPEN "snap:{"
/* The id counter: hot_ids.c counts, hot_inbox.c reserves blocks with its puts. */
#define REDIS_KEY_NEXT_ID "snap:next_id"

struct redis_endpoint {
    char host[REDIS_HOST_MAX];
    int port;
};

struct hot_store {
    struct redisContext *c; /* NULL while disconnected */
    bool fresh;             /* c has not yet completed a call */

    struct redis_endpoint direct; /* from redis_url */
    int db;
    char user[REDIS_CRED_MAX];
    size_t user_len; /* 0: AUTH <password> (no ACL user) */
    char pass[REDIS_CRED_MAX];
    size_t pass_len; /* 0 and no user: no AUTH at all */

    struct redis_endpoint sentinels[REDIS_SENTINELS_MAX];
    size_t n_sentinels;   /* 0: Sentinel off */
    size_t sentinel_next; /* the one that answered last, asked first */
    char master_name[REDIS_MASTER_NAME_MAX];
    char sentinel_pass[REDIS_CRED_MAX];
    size_t sentinel_pass_len; /* 0: sentinels are asked without AUTH */

    char floor_sha[41]; /* hot_ids.c: SHA1 of its script once loaded, "" before */
    int64_t last_ok_ms; /* wall clock of the last completed round trip; 0: none yet */

    char *obuf; /* the pipeline being sent, in RESP (redis_conn.c, encode) */
    size_t obuf_len, obuf_cap;
};

/* ---- settings ------------------------------------------------------------ */

/* Checks SNAPTEXT_REDIS_URL (redis://[[user]:password@]host[:port][/db])
 * and SNAPTEXT_REDIS_SENTINELS ("" or host[:port][,host[:port]...];master,
 * host may be [v6addr], port defaults to 26379) with the parsers hot_new()
 * uses: SNAP_EINVAL with the reason in err. config.c's rows call these. */
int redis_url_check(const char *url, struct snap_err *err);
int redis_sentinels_check(const char *spec, struct snap_err *err);

/* The same parsers, into h (redis_url.c; hot_new() runs them): the url's
 * endpoint, db and credentials, and the sentinels with their master name. */
int redis_parse_url(struct hot_store *h, const char *url, struct snap_err *err);
int redis_parse_sentinels(struct hot_store *h, const char *spec, struct snap_err *err);
/* A TCP port, 1..65535, in decimal (also what a sentinel names). */
bool redis_parse_port(const char *s, size_t len, int *port);

/* ---- commands ------------------------------------------------------------ */

/* One command of a pipeline: argv with explicit lengths (binary-safe). The
 * strings are borrowed and must outlive the round trip. */
struct redis_cmd {
    int argc;
    const char *argv[REDIS_ARGS_MAX];
    size_t len[REDIS_ARGS_MAX];
};

void redis_cmd_add(struct redis_cmd *c, const char *s, size_t len);
void redis_cmd_adds(struct redis_cmd *c, const char *s); /* s NUL-terminated */

/* Strict decimal: optional '-', 1..19 digits, no spaces, no overflow. */
bool redis_parse_i64(const char *s, size_t len, int64_t *out);
/* Writes v in decimal into buf (24 bytes is always enough); returns length. */
size_t redis_fmt_i64(char buf[24], int64_t v);

/* Writes prefix, part (1..max bytes) and suffix into key, NUL-terminated,
 * and its length into *key_len; key must hold strlen(prefix) + max +
 * strlen(suffix) + 1 bytes. what names the part in the error. */
int redis_make_key(const char *prefix, const char *part, size_t max, const char *suffix,
                   const char *what, char *key, size_t *key_len, struct snap_err *err);

/* ---- round trips --------------------------------------------------------- */

/* Clears err; SNAP_EINVAL for a NULL handle. Every hot_* call starts here. */
int redis_check_handle(const struct hot_store *h, struct snap_err *err);

/* Sends cmds[0..n) in one write and reads their n replies into r[].
 * Returns SNAP_OK with every r[i] set (error replies included: see
 * redis_reply_ok), or a failure with every r[i] NULL and the connection
 * dropped. The caller frees each r[i] (freeReplyObject / redis_free_replies).
 * When may_resend, a call that failed because a reused connection turned
 * out closed by the server is sent once more on a new one; when not, an
 * idle connection is checked with poll(2) before anything is sent. */
int redis_roundtrip_ex(struct hot_store *h, struct redis_cmd *cmds, size_t n, struct redisReply **r,
                       bool may_resend, struct snap_err *err);
/* redis_roundtrip_ex() with the one resend: for commands harmless twice. */
int redis_roundtrip(struct hot_store *h, struct redis_cmd *cmds, size_t n, struct redisReply **r,
                    struct snap_err *err);

/* One command, one reply; an error reply becomes SNAP_EUNAVAIL (*out NULL). */
int redis_command(struct hot_store *h, struct redis_cmd *cmd, struct redisReply **out,
                  struct snap_err *err);

/* redis_command() accepting a reply of type type only (REDIS_REPLY_STATUS,
 * REDIS_REPLY_INTEGER, ...), freed before it returns: the caller owns
 * nothing afterwards. Any other type is redis_unexpected(). */
int redis_command_expect(struct hot_store *h, struct redis_cmd *cmd, int type,
                         struct snap_err *err);

/* SNAP_OK unless r is an error reply (READONLY also drops the connection). */
int redis_reply_ok(struct hot_store *h, const struct redisReply *r, const char *what,
                   struct snap_err *err);
/* A reply of a shape the command never produces: drops the connection and
 * returns SNAP_EUNAVAIL. */
int redis_unexpected(struct hot_store *h, const char *what, struct snap_err *err);
/* Checks a MULTI ... EXEC pipeline of n replies. */
int redis_transaction_ok(struct hot_store *h, struct redisReply **r, size_t n, const char *what,
                         struct snap_err *err);
void redis_free_replies(struct redisReply **r, size_t n); /* NULL entries are fine */

/* Closes the connection after a failure and tells the lost-connection hook
 * (hot_on_connection_lost). redis_close() is the clean close: no hook. */
void redis_drop(struct hot_store *h);
void redis_close(struct hot_store *h);

/* Behind Sentinel: waits until a replica has this connection's writes, or
 * runs undo (when given) and fails. Without Sentinel: SNAP_OK at once. */
int redis_wait_replicated(struct hot_store *h, struct redis_cmd *undo, const char *what,
                          struct snap_err *err);

#endif
