/* redis_url.c: the grammar of the Redis settings, SNAPTEXT_REDIS_URL
 * (redis://[[user]:password@]host[:port][/db], user and password
 * %XX-encoded) and SNAPTEXT_REDIS_SENTINELS ("host[:port],...;mastername",
 * [v6addr]:port accepted), read into a handle by hot_new() and checked by
 * config.c at start with the same parsers (redis_url_check,
 * redis_sentinels_check), so a setting is refused in one place and for
 * one reason.
 * Not here: connecting with those settings (redis_conn.c). */
#include "redis_conn.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "snap/percent.h"

#define HOT_DEFAULT_PORT          6379
#define HOT_DEFAULT_SENTINEL_PORT 26379

/* %XX-decodes s[0..len) into out (cap bytes, NUL-terminated); a decoded
 * NUL is refused, since AUTH arguments are compared as strings. */
static bool pct_decode(const char *s, size_t len, char *out, size_t cap, size_t *out_len)
{
    long n = percent_decode(s, len, out, cap, 0);

    if (n < 0) return false;
    *out_len = (size_t)n;
    return true;
}

bool redis_parse_port(const char *s, size_t len, int *port)
{
    int64_t v;

    if (len == 0 || len > 5 || s[0] == '-' || !redis_parse_i64(s, len, &v) || v < 1 || v > 65535)
        return false;
    *port = (int)v;
    return true;
}

/* "host", "host:port", "[v6]" or "[v6]:port" from s[0..len). */
static bool parse_hostport(const char *s, size_t len, int default_port, struct redis_endpoint *ep,
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
    if (port_s != NULL && !redis_parse_port(port_s, port_len, &ep->port)) {
        *why = "port must be a number between 1 and 65535";
        return false;
    }
    return true;
}

int redis_parse_url(struct hot_store *h, const char *url, struct snap_err *err)
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

        if (slash[1] == '-' || !redis_parse_i64(slash + 1, (size_t)(end - slash - 1), &db) ||
            db > 1000000)
            return snap_err_set(err, SNAP_EINVAL,
                                "redis url: database must be a number (redis://host:port/0)");
        h->db = (int)db;
    }
    return SNAP_OK;
}

int redis_parse_sentinels(struct hot_store *h, const char *spec, struct snap_err *err)
{
    const char *semi = strrchr(spec, ';');
    const char *p = spec, *name;
    size_t name_len;

    if (semi == NULL)
        return snap_err_set(err, SNAP_EINVAL,
                            "redis sentinels must be \"host[:port][,host[:port]...];mastername\"");
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

        if (h->n_sentinels == REDIS_SENTINELS_MAX)
            return snap_err_set(err, SNAP_EINVAL, "redis sentinels: more than %d given",
                                REDIS_SENTINELS_MAX);
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

/* The one grammar of SNAPTEXT_REDIS_URL and SNAPTEXT_REDIS_SENTINELS, for
 * config.c: the parsers hot_new() uses, run on a scratch handle. */
int redis_url_check(const char *url, struct snap_err *err)
{
    struct hot_store scratch;
    int rc;

    memset(&scratch, 0, sizeof scratch);
    rc = redis_parse_url(&scratch, url, err);
    explicit_bzero(&scratch, sizeof scratch); /* it held the password */
    return rc;
}

int redis_sentinels_check(const char *spec, struct snap_err *err)
{
    struct hot_store scratch;

    memset(&scratch, 0, sizeof scratch);
    return spec[0] == '\0' ? SNAP_OK : redis_parse_sentinels(&scratch, spec, err);
}
