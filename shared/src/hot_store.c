/* hot_store.c: the Redis driver behind hot_store.h — one blocking hiredis
 * connection per handle, opened lazily, dropped after any I/O or protocol
 * failure and reopened on the next call, so a Redis restart or a Sentinel
 * failover costs at most a few failed calls, never a restart of the service.
 *
 * Configuration it reads (struct snap_config):
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
 * or a duplicate retry entry for RPUSH; the other writes are idempotent.
 * The inbox take is the exception and is never resent: a take that ran but
 * lost its reply must fail, not come back as an empty inbox. Instead, before
 * a take goes out on a connection that has been idle, a poll(2) checks that
 * the server has not closed it meanwhile, and a new one is opened if so.)
 *
 * The process must ignore SIGPIPE (civetweb's mg_start does): hiredis writes
 * with write(2), and a write to a socket Redis closed would raise it.
 *
 * Not here: durability (cold_store.c), token hashing (auth.c), HTTP. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include "snap/hot_store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "snap/clock.h"
#include "snap/percent.h"

/* ------------------------------------------------------------ limits -- */

#define HOT_CONNECT_MS          500
#define HOT_COMMAND_MS          1500
#define HOT_SENTINEL_CONNECT_MS 200
#define HOT_SENTINEL_COMMAND_MS 300
#define HOT_SENTINEL_BUDGET_MS  600

#define HOT_DEFAULT_PORT          6379
#define HOT_DEFAULT_SENTINEL_PORT 26379
#define HOT_HOST_MAX              256 /* bytes, NUL included */
#define HOT_CRED_MAX              256 /* user / password after %XX decoding */
#define HOT_SENTINELS_MAX         16
#define HOT_MASTER_NAME_MAX       128
#define HOT_TOKEN_HASH_MAX        128
#define HOT_ROLE_MAX              16 /* hot_session_get: role buffer holds 16 bytes */
/* A message text far above any SNAPTEXT_MAX_TEXT_BYTES, well under Redis's
 * 512 MB bulk limit: anything larger is a caller bug, not a message. */
#define HOT_TEXT_MAX ((size_t)64 * 1024 * 1024)
#define HOT_ARGS_MAX 8
#define HOT_SCORE_MAX ((int64_t)1 << 53) /* ids a sorted-set score holds exactly */
#define HOT_PEEK_MAX  100000             /* most candidates one peek returns */

static const char KEY_NEXT_ID[] = "snap:next_id";
static const char KEY_EPOCH[] = "snap:epoch";
static const char KEY_SESSION_PREFIX[] = "snap:session:";
static const char KEY_INBOX_PREFIX[] = "snap:{";
static const char KEY_INBOX_SUFFIX[] = "}:msgs";
static const char KEY_WAKE_SUFFIX[] = "}:wake";

/* Raises KEYS[1] to ARGV[1] when it is lower (or unset); never lowers it.
 * Compares as decimal strings, digit by digit: Lua numbers are doubles and
 * would round ids above 2^53, and string `<` would depend on the locale.
 * ARGV[1] is a canonical non-negative decimal (written by hot_id_floor). */
static const char FLOOR_LUA[] = "local function lower(a, b)\n"
                                "  if string.sub(a, 1, 1) == '-' then return true end\n"
                                "  if #a ~= #b then return #a < #b end\n"
                                "  for i = 1, #a do\n"
                                "    local x, y = string.byte(a, i), string.byte(b, i)\n"
                                "    if x ~= y then return x < y end\n"
                                "  end\n"
                                "  return false\n"
                                "end\n"
                                "local cur = redis.call('GET', KEYS[1])\n"
                                "if cur and not lower(cur, ARGV[1]) then return 0 end\n"
                                "redis.call('SET', KEYS[1], ARGV[1])\n"
                                "return 1\n";

/* ------------------------------------------------------------ handle -- */

struct hot_endpoint {
    char host[HOT_HOST_MAX];
    int port;
};

struct hot_store {
    redisContext *c; /* NULL while disconnected */
    bool fresh;      /* c has not yet completed a call */

    struct hot_endpoint direct; /* from redis_url */
    int db;
    char user[HOT_CRED_MAX];
    size_t user_len; /* 0: AUTH <password> (no ACL user) */
    char pass[HOT_CRED_MAX];
    size_t pass_len; /* 0 and no user: no AUTH at all */

    struct hot_endpoint sentinels[HOT_SENTINELS_MAX];
    size_t n_sentinels;   /* 0: Sentinel off */
    size_t sentinel_next; /* the one that answered last, asked first */
    char master_name[HOT_MASTER_NAME_MAX];
    char sentinel_pass[HOT_CRED_MAX];
    size_t sentinel_pass_len; /* 0: sentinels are asked without AUTH */

    char floor_sha[41]; /* SHA1 of FLOOR_LUA once loaded, "" before */
    int64_t last_ok_ms; /* wall clock of the last completed round trip; 0: none yet */
};

/* The process's hook for a lost connection (hot_on_connection_lost). */
static void (*lost_hook)(int64_t since_ms, void *arg);
static void *lost_hook_arg;

void hot_on_connection_lost(void (*fn)(int64_t since_ms, void *arg), void *arg)
{
    lost_hook = fn;
    lost_hook_arg = arg;
}

/* One command of a pipeline: argv with explicit lengths (binary-safe). */
struct hot_cmd {
    int argc;
    const char *argv[HOT_ARGS_MAX];
    size_t len[HOT_ARGS_MAX];
};

static void cmd_add(struct hot_cmd *c, const char *s, size_t len)
{
    /* Every command below has a fixed shape of at most HOT_ARGS_MAX. */
    assert(c->argc < HOT_ARGS_MAX);
    c->argv[c->argc] = s;
    c->len[c->argc] = len;
    c->argc++;
}

static void cmd_adds(struct hot_cmd *c, const char *s)
{
    cmd_add(c, s, strlen(s));
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
static void drop(struct hot_store *h)
{
    if (h->c != NULL) {
        redisFree(h->c);
        h->c = NULL;
        if (lost_hook != NULL && h->last_ok_ms > 0) lost_hook(h->last_ok_ms, lost_hook_arg);
    }
    h->fresh = false;
}

/* ------------------------------------------------------------ numbers -- */

/* Strict decimal: optional '-', 1..19 digits, no spaces, no overflow. */
static bool parse_i64(const char *s, size_t len, int64_t *out)
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
static size_t fmt_i64(char buf[24], int64_t v)
{
    int n = snprintf(buf, 24, "%" PRId64, v);

    return n < 0 || n >= 24 ? 0 : (size_t)n; /* cannot happen for an int64 */
}

/* ------------------------------------------------------------ parsing -- */

/* %XX-decodes s[0..len) into out (cap bytes, NUL-terminated); a decoded
 * NUL is refused, since AUTH arguments are compared as strings. */
static bool pct_decode(const char *s, size_t len, char *out, size_t cap, size_t *out_len)
{
    long n = percent_decode(s, len, out, cap, 0);

    if (n < 0) return false;
    *out_len = (size_t)n;
    return true;
}

static bool parse_port(const char *s, size_t len, int *port)
{
    int64_t v;

    if (len == 0 || len > 5 || s[0] == '-' || !parse_i64(s, len, &v) || v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* "host", "host:port", "[v6]" or "[v6]:port" from s[0..len). */
static bool parse_hostport(const char *s, size_t len, int default_port, struct hot_endpoint *ep,
                           const char **why)
{
    const char *host = s, *port_s = NULL;
    size_t host_len, port_len = 0;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);

        if (close == NULL) {
            *why = "unclosed '[' in host";
            return false;
        }
        host = s + 1;
        host_len = (size_t)(close - host);
        if (close + 1 < s + len) {
            if (close[1] != ':') {
                *why = "junk after ']' in host";
                return false;
            }
            port_s = close + 2;
            port_len = (size_t)(s + len - port_s);
        }
    } else {
        const char *colon = memchr(s, ':', len);

        host_len = colon ? (size_t)(colon - s) : len;
        if (colon != NULL) {
            port_s = colon + 1;
            port_len = (size_t)(s + len - port_s);
        }
    }
    if (host_len == 0) {
        *why = "empty host";
        return false;
    }
    if (host_len >= sizeof ep->host) {
        *why = "host too long";
        return false;
    }
    for (size_t i = 0; i < host_len; i++) {
        unsigned char ch = (unsigned char)host[i];

        if (ch <= ' ' || ch == 0x7f || ch == '/' || ch == '@' || ch == '?' || ch == '#' ||
            (ch == ':' && s[0] != '[')) {
            *why = "bad character in host";
            return false;
        }
    }
    memcpy(ep->host, host, host_len);
    ep->host[host_len] = '\0';
    ep->port = default_port;
    if (port_s != NULL && !parse_port(port_s, port_len, &ep->port)) {
        *why = "port must be a number between 1 and 65535";
        return false;
    }
    return true;
}

static int parse_url(struct hot_store *h, const char *url, struct snap_err *err)
{
    static const char scheme[] = "redis://";
    const char *p, *end, *at, *slash;
    const char *why = NULL;

    if (strncasecmp(url, scheme, sizeof scheme - 1) != 0)
        return snap_err_set(err, SNAP_EINVAL,
                            "redis url must start with redis:// (rediss:// and unix sockets "
                            "are not supported)");
    p = url + sizeof scheme - 1;
    end = p + strlen(p);

    /* userinfo ends at the last '@' (a password may hold a raw '@'). */
    at = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@') at = q;
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));

        if (colon == NULL)
            return snap_err_set(err, SNAP_EINVAL,
                                "redis url: write credentials as redis://[user]:password@host");
        if (!pct_decode(p, (size_t)(colon - p), h->user, sizeof h->user, &h->user_len) ||
            !pct_decode(colon + 1, (size_t)(at - colon - 1), h->pass, sizeof h->pass, &h->pass_len))
            return snap_err_set(err, SNAP_EINVAL,
                                "redis url: user or password too long or badly %%-encoded");
        if (h->user_len > 0 && h->pass_len == 0)
            return snap_err_set(err, SNAP_EINVAL, "redis url: user given without a password");
        p = at + 1;
    }

    slash = memchr(p, '/', (size_t)(end - p));
    if (!parse_hostport(p, (size_t)((slash ? slash : end) - p), HOT_DEFAULT_PORT, &h->direct, &why))
        return snap_err_set(err, SNAP_EINVAL, "redis url: %s", why);

    h->db = 0;
    if (slash != NULL && slash + 1 < end) {
        int64_t db;

        if (slash[1] == '-' || !parse_i64(slash + 1, (size_t)(end - slash - 1), &db) ||
            db > 1000000)
            return snap_err_set(err, SNAP_EINVAL,
                                "redis url: database must be a number (redis://host:port/0)");
        h->db = (int)db;
    }
    return SNAP_OK;
}

static int parse_sentinels(struct hot_store *h, const char *spec, struct snap_err *err)
{
    const char *semi = strrchr(spec, ';');
    const char *p = spec, *name;
    size_t name_len;

    if (semi == NULL)
        return snap_err_set(err, SNAP_EINVAL,
                            "redis sentinels must be \"host:port,host:port;mastername\"");
    name = semi + 1;
    name_len = strlen(name);
    if (name_len == 0 || name_len >= sizeof h->master_name)
        return snap_err_set(err, SNAP_EINVAL, "redis sentinels: master name missing or too long");
    for (size_t i = 0; i < name_len; i++)
        if ((unsigned char)name[i] <= ' ' || name[i] == 0x7f)
            return snap_err_set(err, SNAP_EINVAL, "redis sentinels: bad master name");
    memcpy(h->master_name, name, name_len + 1);

    while (p < semi) {
        const char *comma = memchr(p, ',', (size_t)(semi - p));
        const char *item_end = comma ? comma : semi;
        const char *why = NULL;

        if (h->n_sentinels == HOT_SENTINELS_MAX)
            return snap_err_set(err, SNAP_EINVAL, "redis sentinels: more than %d given",
                                HOT_SENTINELS_MAX);
        if (!parse_hostport(p, (size_t)(item_end - p), HOT_DEFAULT_SENTINEL_PORT,
                            &h->sentinels[h->n_sentinels], &why))
            return snap_err_set(err, SNAP_EINVAL, "redis sentinels: %s", why);
        h->n_sentinels++;
        p = comma ? comma + 1 : semi;
    }
    if (h->n_sentinels == 0)
        return snap_err_set(err, SNAP_EINVAL, "redis sentinels: no sentinel address given");
    return SNAP_OK;
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
    if (parse_url(h, cfg->redis_url, err) != SNAP_OK ||
        (cfg->redis_sentinels[0] != '\0' &&
         parse_sentinels(h, cfg->redis_sentinels, err) != SNAP_OK)) {
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
    if (h->c != NULL) redisFree(h->c); /* a clean close: no hook */
    /* The password lived here: do not leave it in freed memory. */
    explicit_bzero(h, sizeof *h);
    free(h);
}

/* ------------------------------------------------------------ connect -- */

/* Connects with bounded connect and command times and TCP keepalive.
 * On success *out is a context the caller frees with redisFree. */
static int open_tcp(const struct hot_endpoint *ep, int connect_ms, int command_ms,
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
static int sentinel_lookup(struct hot_store *h, struct hot_endpoint *master, struct snap_err *err)
{
    int64_t start = clock_mono_ns();
    struct snap_err last;

    (void)snap_err_set(&last, SNAP_EUNAVAIL, "no sentinel asked");
    for (size_t i = 0; i < h->n_sentinels; i++) {
        size_t idx = (h->sentinel_next + i) % h->n_sentinels;
        const struct hot_endpoint *s = &h->sentinels[idx];
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
                   parse_port(r->element[1]->str, r->element[1]->len, &master->port)) {
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
static int handshake(struct hot_store *h, redisContext *c, const struct hot_endpoint *ep,
                     struct snap_err *err)
{
    struct hot_cmd cmds[3];
    size_t n = 0, got = 0;
    char db[24];
    redisReply *r[3] = {NULL, NULL, NULL};
    int rc = SNAP_OK;

    memset(cmds, 0, sizeof cmds);
    if (h->pass_len > 0) {
        cmd_adds(&cmds[n], "AUTH");
        if (h->user_len > 0) cmd_add(&cmds[n], h->user, h->user_len);
        cmd_add(&cmds[n], h->pass, h->pass_len);
        n++;
    }
    if (h->db != 0) {
        cmd_adds(&cmds[n], "SELECT");
        cmd_add(&cmds[n], db, fmt_i64(db, h->db));
        n++;
    }
    if (h->n_sentinels > 0) cmd_adds(&cmds[n++], "ROLE");
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
    struct hot_endpoint master = {{0}, 0};
    const struct hot_endpoint *ep = &h->direct;
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

/* Sends n commands in one write and reads their n replies into r[].
 * Returns SNAP_OK with every r[i] set (error replies included: see
 * reply_ok), or a failure with every r[i] NULL and the connection dropped.
 * The caller frees each r[i] with freeReplyObject. */
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

static int roundtrip_ex(struct hot_store *h, struct hot_cmd *cmds, size_t n, redisReply **r,
                        bool may_resend, struct snap_err *err)
{
    /* What may not be resent must not meet a connection that is already
     * dead: check first, at the cost of one poll(2), and reconnect. */
    if (!may_resend && h->c != NULL && !h->fresh && gone_while_idle(h->c)) drop(h);
    for (int attempt = 0; attempt < (may_resend ? 2 : 1); attempt++) {
        bool reused;
        size_t got = 0;
        int saved_errno = 0;
        int rc = ensure_connected(h, err);

        if (rc != SNAP_OK) return rc;
        reused = !h->fresh;
        for (size_t i = 0; i < n; i++) {
            if (redisAppendCommandArgv(h->c, cmds[i].argc, cmds[i].argv, cmds[i].len) != REDIS_OK) {
                /* Only fails on out of memory; the buffer is now unusable. */
                (void)snap_err_set(err, SNAP_ERR, "redis: %s", h->c->errstr);
                drop(h);
                return SNAP_ERR;
            }
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
            drop(h);
            return SNAP_EUNAVAIL;
        }
        drop(h); /* stale connection: once more on a new one */
    }
    return SNAP_EUNAVAIL;
}

/* roundtrip_ex() with the one resend on a stale connection: for commands
 * that are harmless to run twice. */
static int roundtrip(struct hot_store *h, struct hot_cmd *cmds, size_t n, redisReply **r,
                     struct snap_err *err)
{
    return roundtrip_ex(h, cmds, n, r, true, err);
}

/* SNAP_OK unless r is an error reply. READONLY means the server was
 * demoted to a replica: drop the connection so the next call finds the
 * new master. */
static int reply_ok(struct hot_store *h, const redisReply *r, const char *what,
                    struct snap_err *err)
{
    if (r->type != REDIS_REPLY_ERROR) return SNAP_OK;
    if (strncmp(r->str, "READONLY", 8) == 0) drop(h);
    return snap_err_set(err, SNAP_EUNAVAIL, "redis %s: %.100s", what, r->str);
}

/* A reply of a shape the command never produces (something that is not
 * quite Redis answers, or the stream lost sync): a protocol error, so the
 * connection is dropped and the call is unavailable. */
static int unexpected(struct hot_store *h, const char *what, struct snap_err *err)
{
    drop(h);
    return snap_err_set(err, SNAP_EUNAVAIL, "redis %s: unexpected reply type", what);
}

/* One command, one reply; error replies become SNAP_EUNAVAIL. */
static int command(struct hot_store *h, struct hot_cmd *cmd, redisReply **out, struct snap_err *err)
{
    int rc = roundtrip(h, cmd, 1, out, err);

    if (rc != SNAP_OK) return rc;
    rc = reply_ok(h, *out, cmd->argv[0], err);
    if (rc != SNAP_OK) {
        freeReplyObject(*out);
        *out = NULL;
    }
    return rc;
}

/* Checks a MULTI ... EXEC pipeline of n commands: +OK, n-2 +QUEUED, then
 * an EXEC array of n-2 replies, none an error. */
static int transaction_ok(struct hot_store *h, redisReply **r, size_t n, const char *what,
                          struct snap_err *err)
{
    const redisReply *exec = r[n - 1];
    int rc;

    for (size_t i = 0; i < n; i++) {
        rc = reply_ok(h, r[i], what, err);
        if (rc != SNAP_OK) return rc;
    }
    if (exec->type != REDIS_REPLY_ARRAY || exec->elements != n - 2) return unexpected(h, what, err);
    for (size_t i = 0; i < exec->elements; i++) {
        rc = reply_ok(h, exec->element[i], what, err);
        if (rc != SNAP_OK) return rc;
    }
    return SNAP_OK;
}

static void free_replies(redisReply **r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i] != NULL) freeReplyObject(r[i]);
}

/* ------------------------------------------------------------ API -- */

static int check_handle(const struct hot_store *h, struct snap_err *err)
{
    snap_err_clear(err);
    return h == NULL ? snap_err_set(err, SNAP_EINVAL, "hot_store: no handle") : SNAP_OK;
}

int hot_ping(struct hot_store *h, struct snap_err *err)
{
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    cmd_adds(&cmd, "PING");
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STATUS || strcmp(r->str, "PONG") != 0)
        rc = unexpected(h, "PING", err);
    freeReplyObject(r);
    return rc;
}

int hot_next_id(struct hot_store *h, int64_t *id, struct snap_err *err)
{
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (id == NULL) return snap_err_set(err, SNAP_EINVAL, "hot_next_id: no output");
    cmd_adds(&cmd, "INCR");
    cmd_add(&cmd, KEY_NEXT_ID, sizeof KEY_NEXT_ID - 1);
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_INTEGER)
        rc = unexpected(h, "INCR", err);
    else
        *id = (int64_t)r->integer;
    freeReplyObject(r);
    return rc;
}

/* Loads FLOOR_LUA once per handle and remembers its SHA1. */
static int floor_script_load(struct hot_store *h, struct snap_err *err)
{
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc;

    cmd_adds(&cmd, "SCRIPT");
    cmd_adds(&cmd, "LOAD");
    cmd_add(&cmd, FLOOR_LUA, sizeof FLOOR_LUA - 1);
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STRING || r->len != sizeof h->floor_sha - 1) {
        rc = unexpected(h, "SCRIPT LOAD", err);
    } else {
        memcpy(h->floor_sha, r->str, r->len);
        h->floor_sha[r->len] = '\0';
    }
    freeReplyObject(r);
    return rc;
}

int hot_id_floor(struct hot_store *h, int64_t floor, struct snap_err *err)
{
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    char num[24];
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (floor < 0)
        return snap_err_set(err, SNAP_EINVAL, "hot_id_floor: negative floor %" PRId64, floor);
    if (floor == 0) return SNAP_OK; /* an unset counter already counts as 0 */
    if (h->floor_sha[0] == '\0') {
        rc = floor_script_load(h, err);
        if (rc != SNAP_OK) return rc;
    }
    cmd_adds(&cmd, "EVALSHA");
    cmd_add(&cmd, h->floor_sha, sizeof h->floor_sha - 1);
    cmd_adds(&cmd, "1");
    cmd_add(&cmd, KEY_NEXT_ID, sizeof KEY_NEXT_ID - 1);
    cmd_add(&cmd, num, fmt_i64(num, floor));
    rc = roundtrip(h, &cmd, 1, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* Redis restarted or failed over since we loaded it: EVAL sends the
         * body and caches it again under the same SHA1. */
        freeReplyObject(r);
        r = NULL;
        cmd.argv[0] = "EVAL";
        cmd.len[0] = 4;
        cmd.argv[1] = FLOOR_LUA;
        cmd.len[1] = sizeof FLOOR_LUA - 1;
        rc = roundtrip(h, &cmd, 1, &r, err);
        if (rc != SNAP_OK) return rc;
    }
    rc = reply_ok(h, r, "id floor script", err);
    if (rc == SNAP_OK && r->type != REDIS_REPLY_INTEGER) rc = unexpected(h, "id floor script", err);
    freeReplyObject(r);
    return rc;
}

/* Writes prefix, part (1..max bytes) and suffix into key, NUL-terminated,
 * and its length into *key_len; key must hold strlen(prefix) + max +
 * strlen(suffix) + 1 bytes. what names the part in the error. */
static int make_key(const char *prefix, const char *part, size_t max, const char *suffix,
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

/* key = "snap:{" user "}:inbox"; key holds HOT_INBOX_KEY_MAX bytes. */
#define HOT_INBOX_KEY_MAX                                                                          \
    (sizeof KEY_INBOX_PREFIX - 1 + SNAP_USERNAME_MAX + sizeof KEY_INBOX_SUFFIX)

static int inbox_key(const char *user, char *key, size_t *key_len, struct snap_err *err)
{
    return make_key(KEY_INBOX_PREFIX, user, SNAP_USERNAME_MAX, KEY_INBOX_SUFFIX, "inbox: username",
                    key, key_len, err);
}

/* The pub/sub channel "snap:{" user "}:wake": a message there says "this
 * inbox just got an entry". Holds HOT_INBOX_KEY_MAX bytes. */
static int wake_channel(const char *user, char *chan, size_t *chan_len, struct snap_err *err)
{
    return make_key(KEY_INBOX_PREFIX, user, SNAP_USERNAME_MAX, KEY_WAKE_SUFFIX, "wake: username",
                    chan, chan_len, err);
}

#define HOT_PUT_CMDS 6 /* MULTI ZADD PEXPIREAT PEXPIREAT EXEC PUBLISH */

/* Behind Sentinel, a failover promotes a replica, and Redis replicates
 * asynchronously: a write acknowledged before it reached a replica would
 * vanish with the old primary (a login, a logout). So in Sentinel mode
 * every session write waits (WAIT) until at least one replica has it.
 * Inbox entries do not: the hot index may lose them, and the repair
 * (hot_on_connection_lost) puts them back from the cold store. If none confirms in time, undo (when given) takes
 * the write back out — replicated like any write — and the call fails, so
 * the client gets a 503 and nothing it was not told about survives. */
#define HOT_WAIT_REPLICAS_MS "500"

static int wait_replicated(struct hot_store *h, struct hot_cmd *undo, const char *what,
                           struct snap_err *err)
{
    struct hot_cmd cmd;
    redisReply *r = NULL;
    int rc;

    if (h->n_sentinels == 0) return SNAP_OK;
    memset(&cmd, 0, sizeof cmd);
    cmd_adds(&cmd, "WAIT");
    cmd_adds(&cmd, "1");
    cmd_adds(&cmd, HOT_WAIT_REPLICAS_MS);
    /* Never resent: WAIT counts replicas that have this connection's own
     * writes, so on a fresh connection it would vouch for nothing. */
    rc = roundtrip_ex(h, &cmd, 1, &r, false, err);
    if (rc != SNAP_OK) return rc;
    int acked = r->type == REDIS_REPLY_INTEGER && r->integer >= 1;
    freeReplyObject(r);
    if (acked) return SNAP_OK;
    r = NULL;
    if (undo != NULL && roundtrip(h, undo, 1, &r, NULL) == SNAP_OK) freeReplyObject(r);
    return snap_err_set(err, SNAP_EUNAVAIL,
                        "%s: no replica confirmed it within " HOT_WAIT_REPLICAS_MS " ms%s", what,
                        undo != NULL ? " (taken back)" : "");
}

/* The five commands that put p into its inbox, built in c[0..5) over the
 * buffers of b (which must outlive the round trip; b->member is heap
 * memory the caller frees).
 *
 * One MULTI ... EXEC, applied atomically. The inbox is a sorted set scored
 * by id (oldest first, bounded reads take a prefix) whose members are
 * "<id> <expires_ms> <text>": the id keeps members unique, so putting the
 * same message again (a repair) changes nothing. NX gives a new inbox its
 * first TTL; GT then only ever moves an existing TTL later, so the key
 * lives exactly until its last message expires. MULTI rather than a
 * script: plain commands need no script cache to (re)load after a restart
 * or a failover, and read as themselves in MONITOR and SLOWLOG. Every
 * command names the one hash-tagged key, so it also holds on Cluster. A
 * message already expired when put into a new inbox makes PEXPIREAT delete
 * the key at once: nothing deliverable is lost. Scores are doubles, exact
 * for ids below 2^53. */
struct put_bufs {
    char key[HOT_INBOX_KEY_MAX], chan[HOT_INBOX_KEY_MAX], score[24], exp[24];
    size_t key_len, chan_len, score_len, exp_len;
    char *member;
    size_t member_len;
};

/* "<id> <expires_ms> <text>" into *out (heap, the caller's). */
static int member_build(int64_t id, int64_t expires_ms, const char *text, size_t text_len,
                        char **out, size_t *out_len, struct snap_err *err)
{
    char a[24], b[24];
    size_t al = fmt_i64(a, id), bl = fmt_i64(b, expires_ms), len = al + 1 + bl + 1 + text_len;
    char *m = malloc(len);

    *out = NULL;
    if (m == NULL) return snap_err_set(err, SNAP_ERR, "inbox: out of memory (%zu bytes)", len);
    memcpy(m, a, al);
    m[al] = ' ';
    memcpy(m + al + 1, b, bl);
    m[al + 1 + bl] = ' ';
    if (text_len > 0) memcpy(m + al + 2 + bl, text, text_len);
    *out = m;
    *out_len = len;
    return SNAP_OK;
}

static int put_build(const struct hot_put *p, struct put_bufs *b, struct hot_cmd c[HOT_PUT_CMDS],
                     struct snap_err *err)
{
    int rc = inbox_key(p->user, b->key, &b->key_len, err);

    if (rc == SNAP_OK) rc = wake_channel(p->user, b->chan, &b->chan_len, err);
    b->member = NULL;
    if (rc != SNAP_OK) return rc;
    if (p->id <= 0 || p->id > HOT_SCORE_MAX || p->expires_ms <= 0)
        return snap_err_set(err, SNAP_EINVAL, "inbox put: id and expiry must be positive");
    if ((p->text == NULL && p->text_len > 0) || p->text_len > HOT_TEXT_MAX)
        return snap_err_set(err, SNAP_EINVAL, "inbox put: bad text (%zu bytes)", p->text_len);
    b->score_len = fmt_i64(b->score, p->id);
    b->exp_len = fmt_i64(b->exp, p->expires_ms);
    rc = member_build(p->id, p->expires_ms, p->text, p->text_len, &b->member, &b->member_len, err);
    if (rc != SNAP_OK) return rc;

    memset(c, 0, HOT_PUT_CMDS * sizeof *c);
    cmd_adds(&c[0], "MULTI");
    cmd_adds(&c[1], "ZADD");
    cmd_add(&c[1], b->key, b->key_len);
    cmd_add(&c[1], b->score, b->score_len);
    cmd_add(&c[1], b->member, b->member_len);
    for (int i = 2; i <= 3; i++) {
        cmd_adds(&c[i], "PEXPIREAT");
        cmd_add(&c[i], b->key, b->key_len);
        cmd_add(&c[i], b->exp, b->exp_len);
        cmd_adds(&c[i], i == 2 ? "NX" : "GT");
    }
    cmd_adds(&c[4], "EXEC");
    /* Then wake whoever waits for this inbox (hot_wait_*): after the EXEC,
     * so a woken reader finds the entry. */
    cmd_adds(&c[5], "PUBLISH");
    cmd_add(&c[5], b->chan, b->chan_len);
    cmd_adds(&c[5], "");
    return SNAP_OK;
}

int hot_inbox_put_many(struct hot_store *h, const struct hot_put *puts, size_t n, int *rcs,
                       size_t reserve, int64_t *first_id, const char *const *count_users,
                       size_t ncount, int64_t *counts, struct snap_err *err)
{
    struct put_bufs *b = NULL;
    char(*ckeys)[HOT_INBOX_KEY_MAX] = NULL;
    struct hot_cmd *cmds = NULL;
    redisReply **r = NULL;
    size_t ncmds = HOT_PUT_CMDS * n + (reserve > 0) + ncount, i, at;
    char count[24];
    int rc = check_handle(h, err), first_fail = SNAP_OK;

    if (rc != SNAP_OK) return rc;
    if ((n > 0 && (puts == NULL || rcs == NULL)) || (reserve > 0 && first_id == NULL) ||
        (ncount > 0 && (count_users == NULL || counts == NULL)) || reserve > (size_t)INT64_MAX ||
        ncmds == 0)
        return snap_err_set(err, SNAP_EINVAL, "inbox put: nothing to do or no output");
    if (first_id != NULL) *first_id = 0;
    for (i = 0; i < ncount; i++) counts[i] = -1;
    b = calloc(n ? n : 1, sizeof *b);
    ckeys = calloc(ncount ? ncount : 1, sizeof *ckeys);
    cmds = calloc(ncmds, sizeof *cmds);
    r = calloc(ncmds, sizeof *r);
    if (b == NULL || ckeys == NULL || cmds == NULL || r == NULL) {
        rc = snap_err_set(err, SNAP_ERR, "inbox put: out of memory for %zu puts", n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        rc = put_build(&puts[i], &b[i], &cmds[HOT_PUT_CMDS * i], err);
        if (rc != SNAP_OK) goto out; /* a caller bug: nothing is sent */
    }
    at = HOT_PUT_CMDS * n;
    if (reserve > 0) {
        cmd_adds(&cmds[at], "INCRBY");
        cmd_add(&cmds[at], KEY_NEXT_ID, sizeof KEY_NEXT_ID - 1);
        cmd_add(&cmds[at], count, fmt_i64(count, (int64_t)reserve));
        at++;
    }
    for (i = 0; i < ncount; i++, at++) {
        size_t key_len;
        rc = inbox_key(count_users[i], ckeys[i], &key_len, err);
        if (rc != SNAP_OK) goto out;
        cmd_adds(&cmds[at], "ZCARD");
        cmd_add(&cmds[at], ckeys[i], key_len);
    }
    /* Resent on a stale connection like any idempotent write: a put is a
     * ZADD of the same member, and an INCRBY that ran twice only skips ids. */
    rc = roundtrip(h, cmds, ncmds, r, err);
    if (rc != SNAP_OK) {
        for (i = 0; i < n; i++) rcs[i] = rc;
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct snap_err one;
        rcs[i] = transaction_ok(h, &r[HOT_PUT_CMDS * i], 5, "inbox put", &one);
        if (rcs[i] != SNAP_OK && first_fail == SNAP_OK) {
            first_fail = rcs[i];
            *err = one;
        }
    }
    at = HOT_PUT_CMDS * n;
    if (reserve > 0) {
        const redisReply *ir = r[at++];
        struct snap_err one;
        int irc = reply_ok(h, ir, "INCRBY", &one);
        if (irc == SNAP_OK && (ir->type != REDIS_REPLY_INTEGER || ir->integer < (long long)reserve))
            irc = unexpected(h, "INCRBY", &one);
        if (irc == SNAP_OK)
            *first_id = (int64_t)ir->integer - (int64_t)reserve + 1;
        else if (first_fail == SNAP_OK) {
            first_fail = irc;
            *err = one;
        }
    }
    for (i = 0; i < ncount; i++, at++)
        if (r[at]->type == REDIS_REPLY_INTEGER) counts[i] = (int64_t)r[at]->integer;
    rc = first_fail;
out:
    if (r != NULL) free_replies(r, ncmds);
    for (i = 0; b != NULL && i < n; i++) free(b[i].member);
    free(b);
    free(ckeys);
    free(cmds);
    free(r);
    return rc;
}

int hot_inbox_put(struct hot_store *h, const char *user, int64_t id, int64_t expires_ms,
                  const char *text, size_t text_len, struct snap_err *err)
{
    struct hot_put p = {user, id, expires_ms, text, text_len};
    int rc1;

    return hot_inbox_put_many(h, &p, 1, &rc1, 0, NULL, NULL, 0, NULL, err);
}

/* Appends id to p's dead list. */
static int dead_add(struct hot_peek *p, size_t cap, int64_t id)
{
    if (p->n_dead < cap) p->dead[p->n_dead++] = id;
    return SNAP_OK;
}

/* Turns ZRANGE ... WITHSCORES' flat [member, score, ...] into p: the
 * members that expire after now_ms become candidates (in id order, as
 * Redis returns them); expired or malformed ones go to p->dead by their
 * score, so the caller can drop them. */
static int collect(const redisReply *all, int64_t now_ms, struct hot_peek *p, struct snap_err *err)
{
    size_t pairs = all->elements / 2;

    if (pairs == 0) return SNAP_OK;
    p->msgs.items = calloc(pairs, sizeof *p->msgs.items);
    p->dead = calloc(pairs, sizeof *p->dead);
    if (p->msgs.items == NULL || p->dead == NULL)
        return snap_err_set(err, SNAP_ERR, "inbox peek: out of memory (%zu messages)", pairs);
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *v = all->element[2 * i], *sc = all->element[2 * i + 1];
        struct hot_msg *m = &p->msgs.items[p->msgs.len];
        const char *sp1, *sp2;
        int64_t score_id = 0;
        size_t text_len;

        if (sc->type != REDIS_REPLY_STRING || !parse_i64(sc->str, sc->len, &score_id) ||
            score_id <= 0)
            continue; /* not ours at all (a score with a fraction): left alone */
        if (v->type != REDIS_REPLY_STRING || (sp1 = memchr(v->str, ' ', v->len)) == NULL ||
            !parse_i64(v->str, (size_t)(sp1 - v->str), &m->id) || m->id != score_id ||
            (sp2 = memchr(sp1 + 1, ' ', v->len - (size_t)(sp1 + 1 - v->str))) == NULL ||
            !parse_i64(sp1 + 1, (size_t)(sp2 - sp1 - 1), &m->expires_ms) ||
            m->expires_ms <= now_ms) {
            (void)dead_add(p, pairs, score_id);
            continue;
        }
        text_len = v->len - (size_t)(sp2 + 1 - v->str);
        m->text = malloc(text_len + 1);
        if (m->text == NULL)
            return snap_err_set(err, SNAP_ERR, "inbox peek: out of memory (%zu bytes)",
                                text_len + 1);
        memcpy(m->text, sp2 + 1, text_len);
        m->text[text_len] = '\0';
        m->text_len = text_len;
        p->msgs.len++;
    }
    return SNAP_OK;
}

int hot_inbox_peek_many(struct hot_store *h, const char *const *users, const size_t *limits,
                        size_t n, int64_t now_ms, struct hot_peek *outs, struct snap_err *err)
{
    char(*keys)[HOT_INBOX_KEY_MAX] = NULL;
    char(*stops)[24] = NULL;
    struct hot_cmd *cmds = NULL;
    redisReply **r = NULL;
    size_t i;
    int rc = check_handle(h, err), first_fail = SNAP_OK;

    for (i = 0; outs != NULL && i < n; i++) outs[i] = (struct hot_peek){.rc = SNAP_ERR};
    if (rc != SNAP_OK) return rc;
    if (n == 0) return SNAP_OK;
    if (users == NULL || limits == NULL || outs == NULL)
        return snap_err_set(err, SNAP_EINVAL, "inbox peek: no users, limits or output");
    keys = calloc(n, sizeof *keys);
    stops = calloc(n, sizeof *stops);
    cmds = calloc(2 * n, sizeof *cmds);
    r = calloc(2 * n, sizeof *r);
    if (keys == NULL || stops == NULL || cmds == NULL || r == NULL) {
        rc = snap_err_set(err, SNAP_ERR, "inbox peek: out of memory for %zu inboxes", n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        size_t key_len;
        struct hot_cmd *c = &cmds[2 * i];

        rc = inbox_key(users[i], keys[i], &key_len, err);
        if (rc == SNAP_OK && (limits[i] == 0 || limits[i] > HOT_PEEK_MAX))
            rc = snap_err_set(err, SNAP_EINVAL, "inbox peek: limit %zu out of range", limits[i]);
        if (rc != SNAP_OK) goto out; /* a caller bug: nothing is sent */
        cmd_adds(&c[0], "ZRANGE");
        cmd_add(&c[0], keys[i], key_len);
        cmd_adds(&c[0], "0");
        cmd_add(&c[0], stops[i], fmt_i64(stops[i], (int64_t)limits[i] - 1));
        cmd_adds(&c[0], "WITHSCORES");
        cmd_adds(&c[1], "ZCARD");
        cmd_add(&c[1], keys[i], key_len);
    }
    /* Reads only: safe to resend on a stale connection. */
    rc = roundtrip(h, cmds, 2 * n, r, err);
    if (rc != SNAP_OK) {
        for (i = 0; i < n; i++) outs[i].rc = rc;
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct hot_peek *p = &outs[i];
        struct snap_err one;
        const redisReply *all = r[2 * i], *card = r[2 * i + 1];

        p->rc = reply_ok(h, all, "inbox peek", &one);
        if (p->rc == SNAP_OK) p->rc = reply_ok(h, card, "inbox peek", &one);
        if (p->rc == SNAP_OK && (all->type != REDIS_REPLY_ARRAY || all->elements % 2 != 0 ||
                                 card->type != REDIS_REPLY_INTEGER))
            p->rc = unexpected(h, "inbox peek", &one);
        if (p->rc == SNAP_OK) {
            p->total = (int64_t)card->integer;
            p->rc = collect(all, now_ms, p, &one);
        }
        if (p->rc != SNAP_OK) {
            hot_peek_free(p);
            p->rc = p->rc == SNAP_OK ? SNAP_ERR : p->rc;
            if (first_fail == SNAP_OK) {
                first_fail = p->rc;
                *err = one;
            }
        }
    }
    rc = first_fail;
out:
    if (r != NULL) free_replies(r, 2 * n);
    free(keys);
    free(stops);
    free(cmds);
    free(r);
    return rc;
}

void hot_peek_free(struct hot_peek *p)
{
    if (p == NULL) return;
    hot_msg_list_free(&p->msgs);
    free(p->dead);
    p->dead = NULL;
    p->n_dead = 0;
}

int hot_inbox_drop_many(struct hot_store *h, const struct hot_drop *drops, size_t n,
                        struct snap_err *err)
{
    char(*keys)[HOT_INBOX_KEY_MAX] = NULL;
    char(*nums)[24] = NULL;
    struct hot_cmd *cmds = NULL;
    redisReply **r = NULL;
    size_t total = 0, i, j, k = 0;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (n > 0 && drops == NULL) return snap_err_set(err, SNAP_EINVAL, "inbox drop: no drops");
    for (i = 0; i < n; i++) {
        if (drops[i].n > 0 && drops[i].ids == NULL)
            return snap_err_set(err, SNAP_EINVAL, "inbox drop: no ids");
        total += drops[i].n;
    }
    if (total == 0) return SNAP_OK;
    keys = calloc(n, sizeof *keys);
    nums = calloc(total, sizeof *nums);
    cmds = calloc(total, sizeof *cmds);
    r = calloc(total, sizeof *r);
    if (keys == NULL || nums == NULL || cmds == NULL || r == NULL) {
        rc = snap_err_set(err, SNAP_ERR, "inbox drop: out of memory for %zu ids", total);
        goto out;
    }
    /* By score, one command per id: exactly the entries given, whatever
     * their member holds, and nothing put meanwhile with another id. */
    for (i = 0; i < n; i++) {
        size_t key_len;
        rc = inbox_key(drops[i].user, keys[i], &key_len, err);
        if (rc != SNAP_OK) goto out;
        for (j = 0; j < drops[i].n; j++, k++) {
            size_t len = fmt_i64(nums[k], drops[i].ids[j]);
            cmd_adds(&cmds[k], "ZREMRANGEBYSCORE");
            cmd_add(&cmds[k], keys[i], key_len);
            cmd_add(&cmds[k], nums[k], len);
            cmd_add(&cmds[k], nums[k], len);
        }
    }
    rc = roundtrip(h, cmds, total, r, err); /* idempotent */
    for (k = 0; rc == SNAP_OK && k < total; k++) rc = reply_ok(h, r[k], "inbox drop", err);
out:
    if (r != NULL) free_replies(r, total);
    free(keys);
    free(nums);
    free(cmds);
    free(r);
    return rc;
}

void hot_msg_list_free(struct hot_msg_list *l)
{
    if (l == NULL) return;
    for (size_t i = 0; i < l->len; i++) free(l->items[i].text);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

/* Waiting for an inbox (a read with ?wait=S): the handle's connection is
 * given over to pub/sub on the inbox's wake channel for the wait and closed
 * at its end (hot_wait_end), so no subscription outlives it; the next call
 * on the handle connects afresh. Ingest publishes on the channel after each
 * hot put (put_build). */
int hot_wait_begin(struct hot_store *h, const char *user, struct snap_err *err)
{
    char chan[HOT_INBOX_KEY_MAX];
    size_t chan_len;
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc == SNAP_OK) rc = wake_channel(user, chan, &chan_len, err);
    if (rc != SNAP_OK) return rc;
    cmd_adds(&cmd, "SUBSCRIBE");
    cmd_add(&cmd, chan, chan_len);
    rc = roundtrip(h, &cmd, 1, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_ARRAY) rc = unexpected(h, "SUBSCRIBE", err);
    freeReplyObject(r);
    return rc;
}

int hot_wait_for(struct hot_store *h, int timeout_ms, int client_fd, struct snap_err *err)
{
    int64_t until = clock_mono_ns() / 1000000 + timeout_ms;

    if (h == NULL || h->c == NULL) return snap_err_set(err, SNAP_EINVAL, "wait: not subscribed");
    for (;;) {
        void *reply = NULL;
        int64_t left = until - clock_mono_ns() / 1000000;
        struct pollfd p[2] = {{.fd = h->c->fd, .events = POLLIN},
                              {.fd = client_fd, .events = POLLRDHUP}};

        if (redisGetReplyFromReader(h->c, &reply) != REDIS_OK)
            return snap_err_set(err, SNAP_EUNAVAIL, "wait: %s", h->c->errstr);
        if (reply != NULL) { /* a message on the channel: something arrived */
            freeReplyObject(reply);
            return SNAP_OK;
        }
        if (left <= 0) return SNAP_ENOTFOUND;
        int n = poll(p, client_fd >= 0 ? 2 : 1, (int)left);
        if (n < 0 && errno != EINTR) return snap_err_set(err, SNAP_EUNAVAIL, "wait: poll failed");
        if (n <= 0) continue;
        if (client_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            return snap_err_set(err, SNAP_EGONE, "wait: the client went away");
        if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))
            return snap_err_set(err, SNAP_EUNAVAIL, "wait: redis closed the connection");
        if ((p[0].revents & POLLIN) && redisBufferRead(h->c) != REDIS_OK)
            return snap_err_set(err, SNAP_EUNAVAIL, "wait: %s", h->c->errstr);
    }
}

void hot_wait_end(struct hot_store *h)
{
    if (h == NULL || h->c == NULL) return;
    redisFree(h->c); /* a clean close: not a lost connection */
    h->c = NULL;
    h->fresh = false;
}

/* The epoch: a random value Redis holds as long as it holds its data. A
 * Redis that comes back without it (restarted empty, a new machine) has
 * lost the hot index, and the repair rebuilds all of it. */
int hot_epoch_get(struct hot_store *h, char *out, size_t cap, struct snap_err *err)
{
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (out == NULL || cap == 0) return snap_err_set(err, SNAP_EINVAL, "epoch: no output");
    out[0] = '\0';
    cmd_adds(&cmd, "GET");
    cmd_add(&cmd, KEY_EPOCH, sizeof KEY_EPOCH - 1);
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = snap_err_set(err, SNAP_ENOTFOUND, "epoch: not set");
    else if (r->type != REDIS_REPLY_STRING || r->len >= cap)
        rc = unexpected(h, "GET epoch", err);
    else {
        memcpy(out, r->str, r->len);
        out[r->len] = '\0';
    }
    freeReplyObject(r);
    return rc;
}

int hot_epoch_set(struct hot_store *h, const char *value, struct snap_err *err)
{
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (value == NULL || value[0] == '\0') return snap_err_set(err, SNAP_EINVAL, "epoch: empty");
    cmd_adds(&cmd, "SET");
    cmd_add(&cmd, KEY_EPOCH, sizeof KEY_EPOCH - 1);
    cmd_adds(&cmd, value);
    cmd_adds(&cmd, "NX"); /* the first process to set it wins; the others adopt it */
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_NIL)
        rc = unexpected(h, "SET epoch", err);
    freeReplyObject(r);
    return rc;
}

/* key = "snap:session:" hash; key holds HOT_SESSION_KEY_MAX bytes. */
#define HOT_SESSION_KEY_MAX (sizeof KEY_SESSION_PREFIX + HOT_TOKEN_HASH_MAX)

static int session_key(const char *token_hash, char *key, size_t *key_len, struct snap_err *err)
{
    return make_key(KEY_SESSION_PREFIX, token_hash, HOT_TOKEN_HASH_MAX, "", "session: token hash",
                    key, key_len, err);
}

int hot_session_put(struct hot_store *h, const char *token_hash, const char *username,
                    const char *role, long ttl_s, struct snap_err *err)
{
    char key[HOT_SESSION_KEY_MAX], value[HOT_ROLE_MAX + 1 + SNAP_USERNAME_MAX], ttl[24];
    size_t key_len, ulen, rlen;
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    rc = session_key(token_hash, key, &key_len, err);
    if (rc != SNAP_OK) return rc;
    if (username == NULL || role == NULL)
        return snap_err_set(err, SNAP_EINVAL, "session put: no username or role");
    ulen = strlen(username);
    rlen = strlen(role);
    if (ulen == 0 || ulen > SNAP_USERNAME_MAX)
        return snap_err_set(err, SNAP_EINVAL, "session put: username must be 1 to %d bytes",
                            SNAP_USERNAME_MAX);
    if (rlen == 0 || rlen >= HOT_ROLE_MAX || memchr(role, ' ', rlen) != NULL)
        return snap_err_set(err, SNAP_EINVAL, "session put: bad role");
    if (ttl_s <= 0) return snap_err_set(err, SNAP_EINVAL, "session put: ttl must be positive");

    memcpy(value, role, rlen);
    value[rlen] = ' ';
    memcpy(value + rlen + 1, username, ulen);
    cmd_adds(&cmd, "SET");
    cmd_add(&cmd, key, key_len);
    cmd_add(&cmd, value, rlen + 1 + ulen);
    cmd_adds(&cmd, "EX");
    cmd_add(&cmd, ttl, fmt_i64(ttl, (int64_t)ttl_s));
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STATUS) rc = unexpected(h, "SET", err);
    freeReplyObject(r);
    if (rc == SNAP_OK) {
        struct hot_cmd undo = {0};
        cmd_adds(&undo, "DEL");
        cmd_add(&undo, key, key_len);
        rc = wait_replicated(h, &undo, "session put", err);
    }
    return rc;
}

int hot_session_get(struct hot_store *h, const char *token_hash, char *username, char *role,
                    struct snap_err *err)
{
    char key[HOT_SESSION_KEY_MAX];
    size_t key_len, rlen, ulen;
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    const char *space;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    rc = session_key(token_hash, key, &key_len, err);
    if (rc != SNAP_OK) return rc;
    if (username == NULL || role == NULL)
        return snap_err_set(err, SNAP_EINVAL, "session get: no output buffers");
    cmd_adds(&cmd, "GET");
    cmd_add(&cmd, key, key_len);
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type == REDIS_REPLY_NIL) {
        rc = snap_err_set(err, SNAP_ENOTFOUND, "session: unknown or expired token");
    } else if (r->type != REDIS_REPLY_STRING) {
        rc = unexpected(h, "GET", err);
    } else if ((space = memchr(r->str, ' ', r->len)) == NULL ||
               (rlen = (size_t)(space - r->str)) == 0 || rlen >= HOT_ROLE_MAX ||
               (ulen = r->len - rlen - 1) == 0 || ulen > SNAP_USERNAME_MAX ||
               memchr(r->str, '\0', r->len) != NULL) {
        /* Refuse rather than guess who this token belongs to. */
        rc = snap_err_set(err, SNAP_ENOTFOUND, "session: malformed session value ignored");
    } else {
        memcpy(role, r->str, rlen);
        role[rlen] = '\0';
        memcpy(username, space + 1, ulen);
        username[ulen] = '\0';
    }
    freeReplyObject(r);
    return rc;
}

int hot_session_del(struct hot_store *h, const char *token_hash, struct snap_err *err)
{
    char key[HOT_SESSION_KEY_MAX];
    size_t key_len;
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    rc = session_key(token_hash, key, &key_len, err);
    if (rc != SNAP_OK) return rc;
    cmd_adds(&cmd, "DEL");
    cmd_add(&cmd, key, key_len);
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_INTEGER) rc = unexpected(h, "DEL", err);
    freeReplyObject(r);
    if (rc == SNAP_OK) rc = wait_replicated(h, NULL, "session delete", err);
    return rc;
}

/* ------------------------------------------------------ login throttle -- *
 * Appended for hardening (issue 12): the failed-login counters of
 * hot_store.h. Uses only the command helpers above. */

static const char KEY_LOGIN_USER_SUFFIX[] = "}:login_fails";
static const char KEY_LOGIN_ADDR_PREFIX[] = "snap:login_fails_addr:";
#define HOT_ADDR_MAX 64

#define HOT_LOGIN_USER_KEY_MAX                                                                     \
    (sizeof KEY_INBOX_PREFIX - 1 + SNAP_USERNAME_MAX + sizeof KEY_LOGIN_USER_SUFFIX)
#define HOT_LOGIN_ADDR_KEY_MAX (sizeof KEY_LOGIN_ADDR_PREFIX + HOT_ADDR_MAX)

static int login_keys(const char *user, const char *addr, char *ukey, size_t *ulen, char *akey,
                      size_t *alen, struct snap_err *err)
{
    int rc = make_key(KEY_INBOX_PREFIX, user, SNAP_USERNAME_MAX, KEY_LOGIN_USER_SUFFIX,
                      "login throttle: username", ukey, ulen, err);

    if (rc != SNAP_OK || akey == NULL) return rc;
    return make_key(KEY_LOGIN_ADDR_PREFIX, addr, HOT_ADDR_MAX, "", "login throttle: address", akey,
                    alen, err);
}

/* A GET reply as a count: nil is 0; anything that is not a number is 0
 * too (a counter someone overwrote must not lock an account forever). */
static long count_of(const redisReply *r)
{
    int64_t v = 0;

    if (r->type == REDIS_REPLY_STRING && parse_i64(r->str, r->len, &v) && v > 0 &&
        v < 1000000000)
        return (long)v;
    return 0;
}

int hot_login_fails_get(struct hot_store *h, const char *user, const char *addr,
                        struct hot_login_fails *out, struct snap_err *err)
{
    char ukey[HOT_LOGIN_USER_KEY_MAX], akey[HOT_LOGIN_ADDR_KEY_MAX];
    size_t ulen, alen;
    struct hot_cmd cmds[4];
    redisReply *r[4] = {NULL, NULL, NULL, NULL};
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "login throttle: no output");
    memset(out, 0, sizeof *out);
    rc = login_keys(user, addr, ukey, &ulen, akey, &alen, err);
    if (rc != SNAP_OK) return rc;
    memset(cmds, 0, sizeof cmds);
    cmd_adds(&cmds[0], "GET");
    cmd_add(&cmds[0], ukey, ulen);
    cmd_adds(&cmds[1], "PTTL");
    cmd_add(&cmds[1], ukey, ulen);
    cmd_adds(&cmds[2], "GET");
    cmd_add(&cmds[2], akey, alen);
    cmd_adds(&cmds[3], "PTTL");
    cmd_add(&cmds[3], akey, alen);
    rc = roundtrip(h, cmds, 4, r, err);
    if (rc != SNAP_OK) return rc;
    for (size_t i = 0; i < 4 && rc == SNAP_OK; i++) rc = reply_ok(h, r[i], "login throttle", err);
    if (rc == SNAP_OK && (r[1]->type != REDIS_REPLY_INTEGER || r[3]->type != REDIS_REPLY_INTEGER))
        rc = unexpected(h, "PTTL", err);
    if (rc == SNAP_OK) {
        out->user_fails = count_of(r[0]);
        out->user_left_ms = r[1]->integer > 0 ? r[1]->integer : 0;
        out->addr_fails = count_of(r[2]);
        out->addr_left_ms = r[3]->integer > 0 ? r[3]->integer : 0;
    }
    free_replies(r, 4);
    return rc;
}

int hot_login_fail_add(struct hot_store *h, const char *user, const char *addr, long window_s,
                       struct snap_err *err)
{
    char ukey[HOT_LOGIN_USER_KEY_MAX], akey[HOT_LOGIN_ADDR_KEY_MAX], win[24];
    size_t ulen, alen, wlen;
    struct hot_cmd cmds[4];
    redisReply *r[4] = {NULL, NULL, NULL, NULL};
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (window_s <= 0) return snap_err_set(err, SNAP_EINVAL, "login throttle: window must be > 0");
    rc = login_keys(user, addr, ukey, &ulen, akey, &alen, err);
    if (rc != SNAP_OK) return rc;
    wlen = fmt_i64(win, (int64_t)window_s);
    memset(cmds, 0, sizeof cmds);
    /* SET NX opens the window with its expiry; INCR keeps the TTL. */
    for (size_t k = 0; k < 2; k++) {
        const char *key = k == 0 ? ukey : akey;
        size_t klen = k == 0 ? ulen : alen;

        cmd_adds(&cmds[2 * k], "SET");
        cmd_add(&cmds[2 * k], key, klen);
        cmd_adds(&cmds[2 * k], "0");
        cmd_adds(&cmds[2 * k], "EX");
        cmd_add(&cmds[2 * k], win, wlen);
        cmd_adds(&cmds[2 * k], "NX");
        cmd_adds(&cmds[2 * k + 1], "INCR");
        cmd_add(&cmds[2 * k + 1], key, klen);
    }
    /* Not resent on a stale connection: a count must not be added twice. */
    rc = roundtrip_ex(h, cmds, 4, r, false, err);
    if (rc != SNAP_OK) return rc;
    for (size_t i = 0; i < 4 && rc == SNAP_OK; i++) rc = reply_ok(h, r[i], "login throttle", err);
    if (rc == SNAP_OK && (r[1]->type != REDIS_REPLY_INTEGER || r[3]->type != REDIS_REPLY_INTEGER))
        rc = unexpected(h, "INCR", err);
    free_replies(r, 4);
    return rc;
}

int hot_login_fails_clear(struct hot_store *h, const char *user, struct snap_err *err)
{
    char ukey[HOT_LOGIN_USER_KEY_MAX];
    size_t ulen;
    struct hot_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    rc = login_keys(user, NULL, ukey, &ulen, NULL, NULL, err);
    if (rc != SNAP_OK) return rc;
    cmd_adds(&cmd, "DEL");
    cmd_add(&cmd, ukey, ulen);
    rc = command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_INTEGER) rc = unexpected(h, "DEL", err);
    freeReplyObject(r);
    return rc;
}
