/* redis_conn.c: the Redis connection under every hot_* call (private header
 * redis_conn.h; the handle of snap/hot_store.h) — one blocking hiredis
 * connection per handle, opened lazily, dropped after any I/O or protocol
 * failure and reopened on the next call, so a Redis restart or a Sentinel
 * failover costs at most a few failed calls, never a restart of the service.
 *
 * Configuration it reads (struct snap_config; parsed by redis_url.c):
 *   redis_url        redis://[[user]:password@]host[:port][/db]
 *                    user and password may be %XX-encoded; port defaults to
 *                    6379, db to 0. AUTH and SELECT are sent on every connect.
 *   redis_sentinels  "" (off) or "host:port,host:port,...;mastername"
 *                    ([v6addr]:port is accepted; port defaults to 26379).
 *                    Each connect asks the sentinels in turn for the master
 *                    of mastername, connects to it, and checks with ROLE that
 *                    it really is a master. Password and db still come from
 *                    redis_url, whose host:port is then unused.
 *   redis_sentinel_password  "" or the password of the sentinels themselves
 *                    (their requirepass), sent as AUTH before each query.
 *
 * Bounds: connect 500 ms, each command 1500 ms, Sentinel queries 200/300 ms
 * within a 600 ms budget. An error reply (LOADING, READONLY, OOM, ...) is
 * SNAP_EUNAVAIL like a dead socket; READONLY also drops the connection, as
 * it means we are talking to a demoted primary. A call that fails because a
 * reused connection turned out closed (EOF or reset: Redis restarted or
 * killed us) is sent once more on a fresh connection; a timeout is not.
 * (Had Redis run it before closing, the resend costs an unused id for INCR
 * and the other writes are idempotent. What must not run twice (a login
 * failure count, WAIT) is never resent: before it goes out on a connection
 * that has been idle, a poll(2) checks that the server has not closed it
 * meanwhile, and a new one is opened if so.)
 *
 * The process must ignore SIGPIPE (civetweb's mg_start does): hiredis writes
 * with write(2), and a write to a socket Redis closed would raise it.
 *
 * Not here: the settings' grammar (redis_url.c), what the keys hold
 * (hot_ids.c, hot_inbox.c, session_store.c, login_throttle.c), durability
 * (cold_store.c), HTTP. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include "redis_conn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "snap/clock.h"
#include "snap/fmt.h"

/* ------------------------------------------------------------ limits -- */

#define HOT_CONNECT_MS          500
#define HOT_COMMAND_MS          1500
#define HOT_SENTINEL_CONNECT_MS 200
#define HOT_SENTINEL_COMMAND_MS 300
#define HOT_SENTINEL_BUDGET_MS  600

/* ------------------------------------------------------------ handle -- */

/* The process's hook for a lost connection (hot_on_connection_lost). */
static void (*lost_hook)(int64_t since_ms, void *arg);
static void *lost_hook_arg;

void hot_on_connection_lost(void (*fn)(int64_t since_ms, void *arg), void *arg)
{
    lost_hook = fn;
    lost_hook_arg = arg;
}

void redis_cmd_add(struct redis_cmd *c, const char *s, size_t len)
{
    /* Every command below has a fixed shape of at most REDIS_ARGS_MAX. */
    assert(c->argc < REDIS_ARGS_MAX);
    c->argv[c->argc] = s;
    c->len[c->argc] = len;
    c->argc++;
}

void redis_cmd_adds(struct redis_cmd *c, const char *s)
{
    redis_cmd_add(c, s, strlen(s));
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* Closes the connection after a failure. Whatever this handle wrote since
 * its last completed round trip may or may not have reached Redis (and a
 * new connection may reach another server): the hook hears of it. */
void redis_drop(struct hot_store *h)
{
    if (h->c != NULL) {
        redisFree(h->c);
        h->c = NULL;
        if (lost_hook != NULL && h->last_ok_ms > 0) lost_hook(h->last_ok_ms, lost_hook_arg);
    }
    h->fresh = false;
}

void redis_close(struct hot_store *h)
{
    if (h->c != NULL) redisFree(h->c); /* a clean close: not a lost connection */
    h->c = NULL;
    h->fresh = false;
}

/* ------------------------------------------------------------ numbers -- */

/* Strict decimal: optional '-', 1..19 digits, no spaces, no overflow. */
bool redis_parse_i64(const char *s, size_t len, int64_t *out)
{
    bool neg = false;
    uint64_t v = 0;
    size_t i = 0;

    if (len > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len) return false;
    for (; i < len; i++) {
        unsigned d;

        if (s[i] < '0' || s[i] > '9') return false;
        d = (unsigned)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return false;
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return false;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
    }
    return true;
}

/* Writes v in decimal into buf (24 bytes is always enough); returns length. */
size_t redis_fmt_i64(char buf[24], int64_t v)
{
    return fmt_i64(buf, v);
}

struct hot_store *hot_new(const struct snap_config *cfg, struct snap_err *err)
{
    struct hot_store *h;

    snap_err_clear(err);
    if (cfg == NULL) {
        (void)snap_err_set(err, SNAP_EINVAL, "hot_new: no config");
        return NULL;
    }
    h = calloc(1, sizeof *h);
    if (h == NULL) {
        (void)snap_err_set(err, SNAP_ERR, "hot_new: out of memory");
        return NULL;
    }
    if (memchr(cfg->redis_url, '\0', sizeof cfg->redis_url) == NULL ||
        memchr(cfg->redis_sentinels, '\0', sizeof cfg->redis_sentinels) == NULL ||
        memchr(cfg->redis_sentinel_password, '\0', sizeof cfg->redis_sentinel_password) == NULL) {
        (void)snap_err_set(err, SNAP_EINVAL, "hot_new: redis settings not NUL-terminated");
        hot_free(h);
        return NULL;
    }
    if (redis_parse_url(h, cfg->redis_url, err) != SNAP_OK ||
        (cfg->redis_sentinels[0] != '\0' &&
         redis_parse_sentinels(h, cfg->redis_sentinels, err) != SNAP_OK)) {
        hot_free(h);
        return NULL;
    }
    h->sentinel_pass_len = strlen(cfg->redis_sentinel_password);
    if (h->sentinel_pass_len >= sizeof h->sentinel_pass) {
        (void)snap_err_set(err, SNAP_EINVAL, "redis sentinel password too long");
        hot_free(h);
        return NULL;
    }
    memcpy(h->sentinel_pass, cfg->redis_sentinel_password, h->sentinel_pass_len + 1);
    return h;
}

void hot_free(struct hot_store *h)
{
    if (h == NULL) return;
    redis_close(h); /* a clean close: no hook */
    if (h->obuf != NULL) explicit_bzero(h->obuf, h->obuf_cap); /* session tokens passed here */
    free(h->obuf);
    /* The password lived here: do not leave it in freed memory. */
    explicit_bzero(h, sizeof *h);
    free(h);
}

/* ------------------------------------------------------------ connect -- */

/* Connects with bounded connect and command times and TCP keepalive.
 * On success *out is a context the caller frees with redisFree. */
static int open_tcp(const struct redis_endpoint *ep, int connect_ms, int command_ms,
                    redisContext **out, struct snap_err *err)
{
    redisContext *c = redisConnectWithTimeout(ep->host, ep->port, ms_tv(connect_ms));

    *out = NULL;
    if (c == NULL)
        return snap_err_set(err, SNAP_ERR, "redis %.64s:%d: out of memory", ep->host, ep->port);
    if (c->err == 0 && redisSetTimeout(c, ms_tv(command_ms)) == REDIS_OK)
        (void)redisEnableKeepAlive(c); /* sets c->err on failure, checked below */
    if (c->err != 0) {
        int rc =
            snap_err_set(err, SNAP_EUNAVAIL, "redis %.64s:%d: %s", ep->host, ep->port, c->errstr);

        redisFree(c);
        return rc;
    }
    *out = c;
    return SNAP_OK;
}

/* AUTH on a sentinel connection when a sentinel password is set: NULL when
 * none is set or the connection failed (c->err then says why), else the reply. */
static redisReply *sentinel_auth(const struct hot_store *h, redisContext *c)
{
    const char *argv[2] = {"AUTH", h->sentinel_pass};
    size_t len[2] = {4, h->sentinel_pass_len};

    if (h->sentinel_pass_len == 0) return NULL;
    return redisCommandArgv(c, 2, argv, len);
}

/* Asks the sentinels, starting with the one that answered last, for the
 * master's address. */
static int sentinel_lookup(struct hot_store *h, struct redis_endpoint *master, struct snap_err *err)
{
    int64_t start = clock_mono_ns();
    struct snap_err last;

    (void)snap_err_set(&last, SNAP_EUNAVAIL, "no sentinel asked");
    for (size_t i = 0; i < h->n_sentinels; i++) {
        size_t idx = (h->sentinel_next + i) % h->n_sentinels;
        const struct redis_endpoint *s = &h->sentinels[idx];
        const char *argv[3] = {"SENTINEL", "get-master-addr-by-name", h->master_name};
        size_t len[3] = {8, 23, strlen(h->master_name)};
        redisContext *c;
        redisReply *r;

        if (i > 0 && clock_mono_ns() - start > (int64_t)HOT_SENTINEL_BUDGET_MS * 1000000) break;
        if (open_tcp(s, HOT_SENTINEL_CONNECT_MS, HOT_SENTINEL_COMMAND_MS, &c, &last) != SNAP_OK)
            continue;
        r = sentinel_auth(h, c);
        if (r == NULL || r->type != REDIS_REPLY_ERROR) {
            freeReplyObject(r);
            r = redisCommandArgv(c, 3, argv, len);
        }
        if (r == NULL) {
            (void)snap_err_set(&last, SNAP_EUNAVAIL, "sentinel %.64s:%d: %s", s->host, s->port,
                               c->errstr);
        } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                   r->element[0]->type == REDIS_REPLY_STRING &&
                   r->element[1]->type == REDIS_REPLY_STRING && r->element[0]->len > 0 &&
                   r->element[0]->len < sizeof master->host &&
                   memchr(r->element[0]->str, '\0', r->element[0]->len) == NULL &&
                   redis_parse_port(r->element[1]->str, r->element[1]->len, &master->port)) {
            memcpy(master->host, r->element[0]->str, r->element[0]->len);
            master->host[r->element[0]->len] = '\0';
            h->sentinel_next = idx;
            freeReplyObject(r);
            redisFree(c);
            return SNAP_OK;
        } else if (r->type == REDIS_REPLY_NIL) {
            (void)snap_err_set(&last, SNAP_EUNAVAIL, "sentinel %.64s:%d knows no master %.64s",
                               s->host, s->port, h->master_name);
        } else if (r->type == REDIS_REPLY_ERROR) {
            (void)snap_err_set(&last, SNAP_EUNAVAIL, "sentinel %.64s:%d: %.80s", s->host, s->port,
                               r->str);
        } else {
            (void)snap_err_set(&last, SNAP_EUNAVAIL, "sentinel %.64s:%d: unexpected reply", s->host,
                               s->port);
        }
        freeReplyObject(r);
        redisFree(c);
    }
    return snap_err_set(err, SNAP_EUNAVAIL, "redis sentinels: %s", last.msg);
}

/* AUTH, SELECT and (behind Sentinel) ROLE, pipelined in one round trip. */
static int handshake(struct hot_store *h, redisContext *c, const struct redis_endpoint *ep,
                     struct snap_err *err)
{
    struct redis_cmd cmds[3];
    size_t n = 0, got = 0;
    char db[24];
    redisReply *r[3] = {NULL, NULL, NULL};
    int rc = SNAP_OK;

    memset(cmds, 0, sizeof cmds);
    if (h->pass_len > 0) {
        redis_cmd_adds(&cmds[n], "AUTH");
        if (h->user_len > 0) redis_cmd_add(&cmds[n], h->user, h->user_len);
        redis_cmd_add(&cmds[n], h->pass, h->pass_len);
        n++;
    }
    if (h->db != 0) {
        redis_cmd_adds(&cmds[n], "SELECT");
        redis_cmd_add(&cmds[n], db, redis_fmt_i64(db, h->db));
        n++;
    }
    if (h->n_sentinels > 0) redis_cmd_adds(&cmds[n++], "ROLE");
    if (n == 0) return SNAP_OK;

    for (size_t i = 0; i < n; i++)
        if (redisAppendCommandArgv(c, cmds[i].argc, cmds[i].argv, cmds[i].len) != REDIS_OK)
            return snap_err_set(err, SNAP_EUNAVAIL, "redis %.64s:%d: %s", ep->host, ep->port,
                                c->errstr);
    for (got = 0; got < n; got++) {
        void *reply = NULL;

        if (redisGetReply(c, &reply) != REDIS_OK) {
            rc = snap_err_set(err, SNAP_EUNAVAIL, "redis %.64s:%d: %s", ep->host, ep->port,
                              c->errstr);
            break;
        }
        r[got] = reply;
    }
    for (size_t i = 0; i < got && rc == SNAP_OK; i++) {
        const char *what = cmds[i].argv[0];

        if (r[i]->type == REDIS_REPLY_ERROR) {
            rc = snap_err_set(err, SNAP_EUNAVAIL, "redis %.64s:%d: %s: %.80s", ep->host, ep->port,
                              what, r[i]->str);
        } else if (strcmp(what, "ROLE") == 0 &&
                   !(r[i]->type == REDIS_REPLY_ARRAY && r[i]->elements > 0 &&
                     r[i]->element[0]->type == REDIS_REPLY_STRING &&
                     strcmp(r[i]->element[0]->str, "master") == 0)) {
            rc = snap_err_set(err, SNAP_EUNAVAIL,
                              "redis %.64s:%d: not a master yet (Sentinel failover in progress?)",
                              ep->host, ep->port);
        }
    }
    for (size_t i = 0; i < got; i++) freeReplyObject(r[i]);
    return rc;
}

static int ensure_connected(struct hot_store *h, struct snap_err *err)
{
    struct redis_endpoint master = {{0}, 0};
    const struct redis_endpoint *ep = &h->direct;
    redisContext *c;
    int rc;

    if (h->c != NULL) return SNAP_OK;
    if (h->n_sentinels > 0) {
        rc = sentinel_lookup(h, &master, err);
        if (rc != SNAP_OK) return rc;
        ep = &master;
    }
    rc = open_tcp(ep, HOT_CONNECT_MS, HOT_COMMAND_MS, &c, err);
    if (rc != SNAP_OK) return rc;
    rc = handshake(h, c, ep, err);
    if (rc != SNAP_OK) {
        redisFree(c);
        return rc;
    }
    h->c = c;
    h->fresh = true;
    return SNAP_OK;
}

/* ------------------------------------------------------------ commands -- */

/* Did the last failure on c look like "the server had already closed this
 * connection" (restart, CLIENT KILL, idle timeout)? Only then is a resend on
 * a new connection safe and worth it; a timeout is not resent (it would
 * double the wait, and the command may be running). */
static bool closed_by_peer(const redisContext *c, int saved_errno)
{
    return c->err == REDIS_ERR_EOF ||
           (c->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE));
}

/* Bytes of cmds[0..n) in RESP: "*argc" then "$len" and the bytes of each
 * argument, every part ended by CRLF. */
static size_t encoded_size(const struct redis_cmd *cmds, size_t n)
{
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        total += 1 + FMT_I64_MAX + 2;
        for (int a = 0; a < cmds[i].argc; a++) total += 1 + FMT_I64_MAX + 2 + cmds[i].len[a] + 2;
    }
    return total;
}

/* Writes cmds[0..n) in RESP into h->obuf (grown as needed; a buffer grown
 * past REDIS_OBUF_KEEP by one large call is given back after it), so the
 * whole pipeline goes to hiredis as one formatted block: hiredis's own
 * argv formatting cost more than the rest of a send's Redis work. */
static int encode(struct hot_store *h, const struct redis_cmd *cmds, size_t n)
{
    size_t need = encoded_size(cmds, n);
    struct fmt_buf b;

    if (need > h->obuf_cap || (h->obuf_cap > REDIS_OBUF_KEEP && need <= REDIS_OBUF_KEEP)) {
        size_t cap = need > h->obuf_cap && need < 2 * h->obuf_cap ? 2 * h->obuf_cap : need;
        char *p;

        if (cap < 4096) cap = 4096;
        p = realloc(h->obuf, cap);
        if (p == NULL) return -1;
        h->obuf = p;
        h->obuf_cap = cap;
    }
    b = fmt_buf_on(h->obuf, h->obuf_cap);
    for (size_t i = 0; i < n; i++) {
        fmt_char(&b, '*');
        fmt_dec(&b, cmds[i].argc);
        fmt_mem(&b, "\r\n", 2);
        for (int a = 0; a < cmds[i].argc; a++) {
            fmt_char(&b, '$');
            fmt_dec(&b, (int64_t)cmds[i].len[a]);
            fmt_mem(&b, "\r\n", 2);
            fmt_mem(&b, cmds[i].argv[a], cmds[i].len[a]);
            fmt_mem(&b, "\r\n", 2);
        }
    }
    assert(!b.full); /* encoded_size() is an upper bound */
    h->obuf_len = b.len;
    return 0;
}

/* Has the server already closed idle connection c (restart, failover,
 * CLIENT KILL)? Looked at without sending anything: readable with nothing
 * to read, or hung up. A RESP2 server never speaks unasked, so readable
 * with data is left for the round trip to sort out. */
static bool gone_while_idle(const redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    char byte;

    if (poll(&p, 1, 0) != 1) return false;
    if (p.revents & (POLLHUP | POLLERR)) return true;
    return (p.revents & POLLIN) && recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* Sends n commands in one write and reads their n replies into r[].
 * Returns SNAP_OK with every r[i] set (error replies included: see
 * reply_ok), or a failure with every r[i] NULL and the connection dropped.
 * The caller frees each r[i] with freeReplyObject. */
int redis_roundtrip_ex(struct hot_store *h, struct redis_cmd *cmds, size_t n, redisReply **r,
                       bool may_resend, struct snap_err *err)
{
    /* What may not be resent must not meet a connection that is already
     * dead: check first, at the cost of one poll(2), and reconnect. */
    if (!may_resend && h->c != NULL && !h->fresh && gone_while_idle(h->c)) redis_drop(h);
    if (encode(h, cmds, n) != 0)
        return snap_err_set(err, SNAP_ERR, "redis: out of memory for %zu commands", n);
    for (int attempt = 0; attempt < (may_resend ? 2 : 1); attempt++) {
        bool reused;
        size_t got = 0;
        int saved_errno = 0;
        int rc = ensure_connected(h, err);

        if (rc != SNAP_OK) return rc;
        reused = !h->fresh;
        if (redisAppendFormattedCommand(h->c, h->obuf, h->obuf_len) != REDIS_OK) {
            /* Only fails on out of memory; the context is now unusable. */
            (void)snap_err_set(err, SNAP_ERR, "redis: out of memory for %zu commands", n);
            redis_drop(h);
            return SNAP_ERR;
        }
        for (got = 0; got < n; got++) {
            void *reply = NULL;

            errno = 0;
            if (redisGetReply(h->c, &reply) != REDIS_OK) {
                saved_errno = errno;
                break;
            }
            r[got] = reply;
        }
        if (got == n) {
            h->fresh = false;
            h->last_ok_ms = clock_now_ms();
            return SNAP_OK;
        }
        for (size_t i = 0; i < got; i++) {
            freeReplyObject(r[i]);
            r[i] = NULL;
        }
        (void)snap_err_set(err, SNAP_EUNAVAIL, "redis: %s", h->c->errstr);
        if (!(reused && closed_by_peer(h->c, saved_errno))) {
            redis_drop(h);
            return SNAP_EUNAVAIL;
        }
        redis_drop(h); /* stale connection: once more on a new one */
    }
    return SNAP_EUNAVAIL;
}

/* redis_roundtrip_ex() with the one resend on a stale connection: for commands
 * that are harmless to run twice. */
int redis_roundtrip(struct hot_store *h, struct redis_cmd *cmds, size_t n, redisReply **r,
                    struct snap_err *err)
{
    return redis_roundtrip_ex(h, cmds, n, r, true, err);
}

/* SNAP_OK unless r is an error reply. READONLY means the server was
 * demoted to a replica: drop the connection so the next call finds the
 * new master. */
int redis_reply_ok(struct hot_store *h, const redisReply *r, const char *what, struct snap_err *err)
{
    if (r->type != REDIS_REPLY_ERROR) return SNAP_OK;
    if (strncmp(r->str, "READONLY", 8) == 0) redis_drop(h);
    return snap_err_set(err, SNAP_EUNAVAIL, "redis %s: %.100s", what, r->str);
}

/* A reply of a shape the command never produces (something that is not
 * quite Redis answers, or the stream lost sync): a protocol error, so the
 * connection is dropped and the call is unavailable. */
int redis_unexpected(struct hot_store *h, const char *what, struct snap_err *err)
{
    redis_drop(h);
    return snap_err_set(err, SNAP_EUNAVAIL, "redis %s: unexpected reply type", what);
}

/* One command, one reply; error replies become SNAP_EUNAVAIL. */
int redis_command(struct hot_store *h, struct redis_cmd *cmd, redisReply **out,
                  struct snap_err *err)
{
    int rc = redis_roundtrip(h, cmd, 1, out, err);

    if (rc != SNAP_OK) return rc;
    rc = redis_reply_ok(h, *out, cmd->argv[0], err);
    if (rc != SNAP_OK) {
        freeReplyObject(*out);
        *out = NULL;
    }
    return rc;
}

/* redis_command() for a reply that matters only by its type (a SET's +OK,
 * a DEL's count): any other type is redis_unexpected(), and the reply is
 * freed here. */
int redis_command_expect(struct hot_store *h, struct redis_cmd *cmd, int type, struct snap_err *err)
{
    redisReply *r = NULL;
    int rc = redis_command(h, cmd, &r, err);

    if (rc != SNAP_OK) return rc;
    if (r->type != type) rc = redis_unexpected(h, cmd->argv[0], err);
    freeReplyObject(r);
    return rc;
}

/* Checks a MULTI ... EXEC pipeline of n commands: +OK, n-2 +QUEUED, then
 * an EXEC array of n-2 replies, none an error. */
int redis_transaction_ok(struct hot_store *h, redisReply **r, size_t n, const char *what,
                         struct snap_err *err)
{
    const redisReply *exec = r[n - 1];
    int rc;

    for (size_t i = 0; i < n; i++) {
        rc = redis_reply_ok(h, r[i], what, err);
        if (rc != SNAP_OK) return rc;
    }
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != n - 2)
        return redis_unexpected(h, what, err);
    for (size_t i = 0; i < exec->elements; i++) {
        rc = redis_reply_ok(h, exec->element[i], what, err);
        if (rc != SNAP_OK) return rc;
    }
    return SNAP_OK;
}

void redis_free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i] != NULL) freeReplyObject(r[i]);
}

/* ------------------------------------------------------------ API -- */

int redis_check_handle(const struct hot_store *h, struct snap_err *err)
{
    snap_err_clear(err);
    return h == NULL ? snap_err_set(err, SNAP_EINVAL, "hot_store: no handle") : SNAP_OK;
}

int hot_ping(struct hot_store *h, struct snap_err *err)
{
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    redis_cmd_adds(&cmd, "PING");
    rc = redis_command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "PONG") != 0)
        rc = redis_unexpected(h, "PING", err);
    freeReplyObject(r);
    return rc;
}

/* ------------------------------------------------------------ keys -- */

/* Writes prefix, part (1..max bytes) and suffix into key, NUL-terminated,
 * and its length into *key_len; key must hold strlen(prefix) + max +
 * strlen(suffix) + 1 bytes. what names the part in the error. */
int redis_make_key(const char *prefix, const char *part, size_t max, const char *suffix,
                   const char *what, char *key, size_t *key_len, struct snap_err *err)
{
    size_t plen = strlen(prefix), len, slen = strlen(suffix);

    *key_len = 0;
    if (part == NULL) return snap_err_set(err, SNAP_EINVAL, "%s: missing", what);
    len = strlen(part);
    if (len == 0 || len > max)
        return snap_err_set(err, SNAP_EINVAL, "%s must be 1 to %zu bytes", what, max);
    memcpy(key, prefix, plen);
    memcpy(key + plen, part, len);
    memcpy(key + plen + len, suffix, slen + 1);
    *key_len = plen + len + slen;
    return SNAP_OK;
}

/* Behind Sentinel, a failover promotes a replica, and Redis replicates
 * asynchronously: a write acknowledged before it reached a replica would
 * vanish with the old primary (a login, a logout). So in Sentinel mode
 * every session write waits (WAIT) until at least one replica has it.
 * Inbox entries do not: the hot index may lose them, and the repair
 * (hot_on_connection_lost) puts them back from the cold store. If none confirms in time, undo (when
 * given) takes the write back out — replicated like any write — and the call fails, so the client
 * gets a 503 and nothing it was not told about survives. */
#define HOT_WAIT_REPLICAS_MS "500"

int redis_wait_replicated(struct hot_store *h, struct redis_cmd *undo, const char *what,
                          struct snap_err *err)
{
    struct redis_cmd cmd;
    redisReply *r = NULL;
    int rc;

    if (h->n_sentinels == 0) return SNAP_OK;
    memset(&cmd, 0, sizeof cmd);
    redis_cmd_adds(&cmd, "WAIT");
    redis_cmd_adds(&cmd, "1");
    redis_cmd_adds(&cmd, HOT_WAIT_REPLICAS_MS);
    /* Never resent: WAIT counts replicas that have this connection's own
     * writes, so on a fresh connection it would vouch for nothing. */
    rc = redis_roundtrip_ex(h, &cmd, 1, &r, false, err);
    if (rc != SNAP_OK) return rc;
    int acked = r->type == REDIS_REPLY_INTEGER && r->integer >= 1;
    freeReplyObject(r);
    if (acked) return SNAP_OK;
    r = NULL;
    if (undo != NULL && redis_roundtrip(h, undo, 1, &r, NULL) == SNAP_OK) freeReplyObject(r);
    return snap_err_set(err, SNAP_EUNAVAIL,
                        "%s: no replica confirmed it within " HOT_WAIT_REPLICAS_MS " ms%s", what,
                        undo != NULL ? " (taken back)" : "");
}
