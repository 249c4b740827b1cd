/* config.c: the SNAPTEXT_* settings, read once at start into a struct
 * snap_config.
 *
 * One table holds every variable: its name, its default, its parser, its
 * bounds and where the result goes. config_load_from() walks the table, so
 * adding a setting is adding a row. A bad value stops the load with one line
 * "SNAPTEXT_X=<value>: must be ..." that names the variable, shows the value
 * (escaped, capped, and never for the admin password) and what is accepted.
 * A setting another module owns is checked by that module's own parser
 * (the Redis ones by redis_conn.c, the store URL by cold_store.c), so each
 * has one grammar; their reason then stands for the "must be ...".
 * Nothing is ever truncated silently: a value that does not fit is an error.
 * Not here: acting on the settings (service.c and the modules that use them). */
#include "snap/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/cold_store.h"
#include "snap/validate.h"

#include "redis_conn.h" /* redis_url_check, redis_sentinels_check */

/* Longest part of a bad value echoed in a message, in input bytes. */
#define CFG_ECHO_MAX 60

struct cfg_row;
typedef int (*cfg_parse_fn)(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                            int default_port, char *why, size_t whylen);

struct cfg_row {
    const char *name;
    const char *dflt; /* used when the variable is unset; NULL: parser decides */
    cfg_parse_fn parse;
    long min, max;       /* integers: bounds; strings: unused            */
    size_t offset, size; /* destination field in struct snap_config      */
    int secret;          /* never echo the value                          */
};

#define CFG_FIELD(f) offsetof(struct snap_config, f), sizeof(((struct snap_config *)0)->f)

/* ---- parsers: each returns 0, or -1 with "must be ..." in why ------------- */

/* Strict decimal integer: optional '-', digits only, whole string used. */
static int parse_long_strict(const char *s, long *out)
{
    char *end = NULL;
    long v;

    if (*s == '\0' || (*s != '-' && (*s < '0' || *s > '9'))) return -1;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0') return -1;
    *out = v;
    return 0;
}

static int why_range(char *why, size_t whylen, const struct cfg_row *row)
{
    (void)snprintf(why, whylen, "must be an integer between %ld and %ld", row->min, row->max);
    return -1;
}

static int parse_long(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                      int default_port, char *why, size_t whylen)
{
    long v;
    (void)default_port;
    if (parse_long_strict(value, &v) != 0 || v < row->min || v > row->max)
        return why_range(why, whylen, row);
    memcpy((char *)cfg + row->offset, &v, sizeof v);
    return 0;
}

static int parse_int(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                     int default_port, char *why, size_t whylen)
{
    long v;
    int iv;
    (void)default_port;
    if (parse_long_strict(value, &v) != 0 || v < row->min || v > row->max)
        return why_range(why, whylen, row);
    iv = (int)v;
    memcpy((char *)cfg + row->offset, &iv, sizeof iv);
    return 0;
}

/* Copies value (len bytes) into row's string field, or says it is too long:
 * a setting is never cut silently. */
static int store_string(const struct cfg_row *row, const char *value, size_t len,
                        struct snap_config *cfg, char *why, size_t whylen)
{
    if (len >= row->size) {
        (void)snprintf(why, whylen, "must be at most %zu bytes long", row->size - 1);
        return -1;
    }
    memcpy((char *)cfg + row->offset, value, len + 1);
    return 0;
}

/* A setting whose grammar belongs to another module: stored, then checked
 * by that module's own parser (the one that later uses it); its reason is
 * the message. "" is left to the check, like any other value. */
static int store_checked(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                         int (*check)(const char *value, struct snap_err *err), char *why,
                         size_t whylen)
{
    struct snap_err err;

    if (store_string(row, value, strlen(value), cfg, why, whylen) != 0) return -1;
    snap_err_clear(&err);
    if (check(value, &err) == 0) return 0;
    (void)snprintf(why, whylen, "%s", err.msg);
    return -1;
}

/* SNAPTEXT_REDIS_URL: redis_conn.c's grammar. */
static int parse_redis_url(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                           int default_port, char *why, size_t whylen)
{
    (void)default_port;
    return store_checked(row, value, cfg, redis_url_check, why, whylen);
}

/* SNAPTEXT_REDIS_SENTINELS: "" (off) or redis_conn.c's grammar. */
static int parse_sentinels(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                           int default_port, char *why, size_t whylen)
{
    (void)default_port;
    return store_checked(row, value, cfg, redis_sentinels_check, why, whylen);
}

/* SNAPTEXT_STORE: a URL of a cold store driver (cold_store.c knows which). */
static int parse_store(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                       int default_port, char *why, size_t whylen)
{
    (void)default_port;
    return store_checked(row, value, cfg, cold_url_check, why, whylen);
}

static int host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* SNAPTEXT_LISTEN: "[host:]port", host a name, an IPv4 address or a
 * bracketed IPv6 address ("[::1]:8080"); port 0..65535 (0 = any free port). */
static int parse_listen(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                        int default_port, char *why, size_t whylen)
{
    const char *port_s = value, *colon;
    char host[sizeof cfg->listen_host];
    size_t hl = 0, i;
    long port;

    (void)row;
    if (value == NULL) { /* unset: every address, the service's own port */
        (void)snprintf(cfg->listen_host, sizeof cfg->listen_host, "0.0.0.0");
        cfg->listen_port = default_port;
        return 0;
    }
    colon = strrchr(value, ':');
    if (colon != NULL) {
        hl = (size_t)(colon - value);
        port_s = colon + 1;
    }
    if (hl >= sizeof host) {
        (void)snprintf(why, whylen, "must be [host:]port with a host of at most %zu bytes",
                       sizeof host - 1);
        return -1;
    }
    memcpy(host, value, hl);
    host[hl] = '\0';
    if (colon != NULL) {
        int ok = hl > 0;
        if (ok && host[0] == '[') { /* IPv6 literal */
            ok = hl > 2 && host[hl - 1] == ']';
            for (i = 1; ok && i + 1 < hl; i++)
                ok = (host[i] >= '0' && host[i] <= '9') || (host[i] >= 'a' && host[i] <= 'f') ||
                     (host[i] >= 'A' && host[i] <= 'F') || host[i] == ':' || host[i] == '.';
        } else {
            for (i = 0; ok && i < hl; i++) ok = host_char(host[i]);
        }
        if (!ok) {
            (void)snprintf(why, whylen, "must be [host:]port (port 0 to 65535)");
            return -1;
        }
    }
    if (*port_s == '-' || parse_long_strict(port_s, &port) != 0 || port < 0 || port > 65535) {
        (void)snprintf(why, whylen, "must be [host:]port (port 0 to 65535)");
        return -1;
    }
    (void)snprintf(cfg->listen_host, sizeof cfg->listen_host, "%s", hl ? host : "0.0.0.0");
    cfg->listen_port = (int)port;
    return 0;
}

static int parse_auth(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                      int default_port, char *why, size_t whylen)
{
    (void)row;
    (void)default_port;
    if (strcmp(value, "required") == 0)
        cfg->auth = SNAP_AUTH_REQUIRED;
    else if (strcmp(value, "open") == 0)
        cfg->auth = SNAP_AUTH_OPEN;
    else {
        (void)snprintf(why, whylen, "must be required or open");
        return -1;
    }
    return 0;
}

static int parse_log_level(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                           int default_port, char *why, size_t whylen)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const enum snap_log_level levels[] = {SNAP_LOG_DEBUG, SNAP_LOG_INFO, SNAP_LOG_WARN,
                                                 SNAP_LOG_ERROR};
    size_t i;
    (void)row;
    (void)default_port;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(value, names[i]) == 0) {
            cfg->log_level = levels[i];
            return 0;
        }
    }
    (void)snprintf(why, whylen, "must be debug, info, warn or error");
    return -1;
}

/* SNAPTEXT_ADMIN_USERNAME: "" (no admin) or a valid username. */
static int parse_admin_user(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                            int default_port, char *why, size_t whylen)
{
    size_t len = strlen(value);
    (void)row;
    (void)default_port;
    if (len > 0 && !username_valid(value, len)) {
        (void)snprintf(why, whylen,
                       "must be empty or a username of 1 to %d bytes without whitespace, "
                       "control characters or '/'",
                       SNAP_USERNAME_MAX);
        return -1;
    }
    memcpy(cfg->admin_username, value, len + 1);
    return 0;
}

/* SNAPTEXT_ADMIN_PASSWORD: "" or 8..1024 bytes of UTF-8 (it has to be
 * sendable in a JSON login body). */
static int parse_admin_password(const struct cfg_row *row, const char *value,
                                struct snap_config *cfg, int default_port, char *why, size_t whylen)
{
    size_t len = strlen(value);
    (void)row;
    (void)default_port;
    if (len > 0 &&
        (len < SNAP_PASSWORD_MIN || len > SNAP_PASSWORD_MAX || !utf8_valid(value, len))) {
        (void)snprintf(why, whylen, "must be empty or %d to %d bytes of UTF-8", SNAP_PASSWORD_MIN,
                       SNAP_PASSWORD_MAX);
        return -1;
    }
    memcpy(cfg->admin_password, value, len + 1);
    return 0;
}

/* SNAPTEXT_PAGES_ROOT: a folder path, not empty. */
static int parse_path(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                      int default_port, char *why, size_t whylen)
{
    size_t len = strlen(value);
    (void)default_port;
    if (len == 0) {
        (void)snprintf(why, whylen, "must be the path of a folder");
        return -1;
    }
    return store_string(row, value, len, cfg, why, whylen);
}

/* SNAPTEXT_REDIS_SENTINEL_PASSWORD: any string ("" = the sentinels need none). */
static int parse_secret(const struct cfg_row *row, const char *value, struct snap_config *cfg,
                        int default_port, char *why, size_t whylen)
{
    (void)default_port;
    return store_string(row, value, strlen(value), cfg, why, whylen);
}

/* ---- the table ----------------------------------------------------------- */

static const struct cfg_row cfg_rows[] = {
    {"SNAPTEXT_REDIS_URL", "redis://127.0.0.1:6379/0", parse_redis_url, 0, 0,
     CFG_FIELD(redis_url), 0},
    {"SNAPTEXT_REDIS_SENTINELS", "", parse_sentinels, 0, 0, CFG_FIELD(redis_sentinels), 0},
    {"SNAPTEXT_REDIS_SENTINEL_PASSWORD", "", parse_secret, 0, 0,
     CFG_FIELD(redis_sentinel_password), 1},
    {"SNAPTEXT_STORE", "sqlite://snaptext.db", parse_store, 0, 0, CFG_FIELD(store_url), 0},
    {"SNAPTEXT_LISTEN", NULL, parse_listen, 0, 65535, CFG_FIELD(listen_port), 0},
    {"SNAPTEXT_AUTH", "required", parse_auth, 0, 0, CFG_FIELD(auth), 0},
    {"SNAPTEXT_THREADS", "128", parse_int, 1, 4096, CFG_FIELD(threads), 0},
    {"SNAPTEXT_MAX_BODY_BYTES", "65536", parse_long, 1024, 16777216, CFG_FIELD(max_body_bytes), 0},
    {"SNAPTEXT_MAX_TEXT_BYTES", "4096", parse_long, 1, 1048576, CFG_FIELD(max_text_bytes), 0},
    {"SNAPTEXT_MAX_TIMEOUT", "2592000", parse_long, 1, 315360000, CFG_FIELD(max_timeout), 0},
    {"SNAPTEXT_SESSION_TTL", "2592000", parse_long, 60, 315360000, CFG_FIELD(session_ttl), 0},
    {"SNAPTEXT_READ_MAX", "1000", parse_long, 1, 100000, CFG_FIELD(read_max), 0},
    {"SNAPTEXT_MAX_INBOX", "10000", parse_long, 1, 10000000, CFG_FIELD(max_inbox), 0},
    {"SNAPTEXT_MAX_WAITERS", "8", parse_long, 0, 100000, CFG_FIELD(max_waiters), 0},
    {"SNAPTEXT_DRAIN_MS", "1500", parse_long, 0, 60000, CFG_FIELD(drain_ms), 0},
    {"SNAPTEXT_LOGIN_MAX_FAILS", "10", parse_long, 1, 1000000, CFG_FIELD(login_max_fails), 0},
    {"SNAPTEXT_LOGIN_MAX_FAILS_ADDR", "50", parse_long, 1, 1000000,
     CFG_FIELD(login_max_fails_addr), 0},
    {"SNAPTEXT_LOGIN_WINDOW", "300", parse_long, 1, 86400, CFG_FIELD(login_window), 0},
    {"SNAPTEXT_HASH_QUEUE", "8", parse_long, 0, 1024, CFG_FIELD(hash_queue), 0},
    {"SNAPTEXT_ADMIN_USERNAME", "", parse_admin_user, 0, 0, CFG_FIELD(admin_username), 0},
    {"SNAPTEXT_ADMIN_PASSWORD", "", parse_admin_password, 0, 0, CFG_FIELD(admin_password), 1},
    {"SNAPTEXT_LOG_LEVEL", "info", parse_log_level, 0, 0, CFG_FIELD(log_level), 0},
    {"SNAPTEXT_PAGES_ROOT", "site", parse_path, 0, 0, CFG_FIELD(pages_root), 0},
};

/* ---- loading ------------------------------------------------------------- */

/* Copies up to CFG_ECHO_MAX bytes of value into out, printable ASCII as is,
 * '\\' and everything else as escapes, "..." when cut. */
static void echo_value(const char *value, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, o = 0;

    for (i = 0; i < CFG_ECHO_MAX && value[i] != '\0'; i++) {
        unsigned char c = (unsigned char)value[i];
        if (o + 5 >= outlen) break;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[o++] = (char)c;
        } else if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 0xF];
        }
    }
    if (value[i] != '\0' && o + 4 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int fail(char *msg, size_t msglen, const char *name, const char *shown, const char *why)
{
    if (msg != NULL && msglen > 0) (void)snprintf(msg, msglen, "%s=%s: %s", name, shown, why);
    return -1;
}

int config_load_from(struct snap_config *cfg, int default_port,
                     const char *(*getter)(const char *name, void *arg), void *arg, char *msg,
                     size_t msglen)
{
    size_t i;
    char why[160], shown[CFG_ECHO_MAX * 4 + 8];

    memset(cfg, 0, sizeof *cfg);
    if (msg != NULL && msglen > 0) msg[0] = '\0';
    for (i = 0; i < sizeof cfg_rows / sizeof cfg_rows[0]; i++) {
        const struct cfg_row *row = &cfg_rows[i];
        const char *value = getter(row->name, arg);
        int from_env = value != NULL;

        if (value == NULL) value = row->dflt; /* NULL only for SNAPTEXT_LISTEN */
        why[0] = '\0';
        if (row->parse(row, value, cfg, default_port, why, sizeof why) != 0) {
            if (row->secret)
                (void)snprintf(shown, sizeof shown, "<hidden>");
            else
                echo_value(value ? value : "", shown, sizeof shown);
            if (!from_env) /* a default that does not parse is our bug */
                (void)snprintf(why + strlen(why), sizeof why - strlen(why), " (default)");
            return fail(msg, msglen, row->name, shown, why);
        }
    }

    /* The admin account needs both halves or neither. */
    if (cfg->admin_username[0] != '\0' && cfg->admin_password[0] == '\0')
        return fail(msg, msglen, "SNAPTEXT_ADMIN_PASSWORD", "",
                    "must be set (8 to 1024 bytes) when SNAPTEXT_ADMIN_USERNAME is set");
    if (cfg->admin_username[0] == '\0' && cfg->admin_password[0] != '\0')
        return fail(msg, msglen, "SNAPTEXT_ADMIN_USERNAME", "",
                    "must be set when SNAPTEXT_ADMIN_PASSWORD is set");
    return 0;
}

static const char *env_getter(const char *name, void *arg)
{
    (void)arg;
    return getenv(name);
}

int config_load(struct snap_config *cfg, int default_port, char *msg, size_t msglen)
{
    return config_load_from(cfg, default_port, env_getter, NULL, msg, msglen);
}
