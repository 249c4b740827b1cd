/* cold_store.c: the front of the cold store. It picks a driver by the
 * scheme of the store URL, runs open + ensure_schema as one step, checks
 * every argument once, and forwards each call to the driver's table of
 * function pointers (struct cold_ops).
 * The drivers may therefore assume: non-NULL pointers, ids > 0, usernames,
 * roles, tokens and idem keys that are NUL-terminated within their limits
 * (non-empty where required), texts that are non-NULL and NUL-free, n > 0
 * for the calls that take lists, and outputs already zeroed. A driver
 * that fails may leave an output half-filled, as long as any heap memory it
 * allocated is reachable from it: the front releases and zeroes a failed
 * output (cold_msg_cleanup, cold_msg_list_free), so every caller gets an
 * empty one. Encoding rules of a driver's own (BSON wants UTF-8) stay in
 * that driver.
 * Not here: any SQL or BSON (cold_sqlite.c, cold_mongo.c). */
#include "snap/cold_store.h"

#include <stdlib.h>
#include <string.h>

struct cold_store {
    const struct cold_ops *ops; /* static driver table, never freed          */
    void *state;                /* owned: released by ops->close()           */
};

/* Every driver this build knows, tried in order by URL prefix. */
static const struct cold_ops *const drivers[] = {
    &cold_sqlite_ops,
    &cold_mongo_ops,
};
#define NDRIVERS (sizeof drivers / sizeof drivers[0])

/* ---- argument checks ------------------------------------------------------ */

/* 1 when s is a non-empty string that ends within cap bytes (cap counts the
 * NUL, as for the char arrays of cold_store.h). */
static int str_ok(const char *s, size_t cap)
{
    return s != NULL && s[0] != '\0' && strnlen(s, cap) < cap;
}

/* The scheme part of url ("postgres" of "postgres://u:p@h"), copied into
 * out for an error message. Only the letters before ':' are kept, so a
 * password in the rest of the URL never reaches the log. */
static void url_scheme(const char *url, char *out, size_t outlen)
{
    size_t i = 0;

    if (url != NULL) {
        for (; i + 1 < outlen && url[i] != '\0' && url[i] != ':'; i++) {
            char c = url[i];
            int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
            if (!plain) break;
            out[i] = c;
        }
        /* Not a scheme at all (no ':' right after the letters, or too long). */
        if (url[i] != ':') i = 0;
    }
    out[i] = '\0';
}

static int unknown_scheme(const char *url, struct snap_err *err)
{
    char scheme[24], accepted[96];
    size_t used = 0;

    url_scheme(url, scheme, sizeof scheme);
    accepted[0] = '\0';
    for (size_t i = 0; i < NDRIVERS; i++) {
        size_t len = strlen(drivers[i]->scheme);
        const char *sep = i == 0 ? "" : ", ";
        if (used + strlen(sep) + len + 1 > sizeof accepted) break;
        memcpy(accepted + used, sep, strlen(sep));
        used += strlen(sep);
        memcpy(accepted + used, drivers[i]->scheme, len + 1);
        used += len;
    }
    if (scheme[0] == '\0')
        return snap_err_set(err, SNAP_EINVAL, "cold store url has no scheme; accepted schemes: %s",
                            accepted);
    return snap_err_set(err, SNAP_EINVAL,
                        "cold store scheme \"%s\" is not supported; accepted schemes: %s", scheme,
                        accepted);
}

/* SNAP_OK when url names a driver of this build and something after its
 * scheme; config.c checks SNAPTEXT_STORE with this. */
int cold_url_check(const char *url, struct snap_err *err)
{
    for (size_t i = 0; url != NULL && i < NDRIVERS; i++) {
        size_t len = strlen(drivers[i]->scheme);
        if (strncmp(url, drivers[i]->scheme, len) == 0)
            return url[len] != '\0' ? SNAP_OK
                                    : snap_err_set(err, SNAP_EINVAL, "cold store url is only %s",
                                                   drivers[i]->scheme);
    }
    return unknown_scheme(url, err);
}

/* ---- open / close --------------------------------------------------------- */

int cold_open(const char *url, struct cold_store **out, struct snap_err *err)
{
    const struct cold_ops *ops = NULL;
    struct cold_store *cs;
    int rc;

    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_open: out is NULL");
    *out = NULL;
    if (url == NULL || url[0] == '\0')
        return snap_err_set(err, SNAP_EINVAL, "cold store url is empty");
    for (size_t i = 0; i < NDRIVERS; i++) {
        if (strncmp(url, drivers[i]->scheme, strlen(drivers[i]->scheme)) == 0) {
            ops = drivers[i];
            break;
        }
    }
    if (ops == NULL) return unknown_scheme(url, err);

    cs = calloc(1, sizeof *cs);
    if (cs == NULL) return snap_err_set(err, SNAP_ERR, "cold store: out of memory");
    cs->ops = ops;
    snap_err_clear(err);
    /* A driver's open leaves the state NULL on failure, or something its
     * close accepts, so the cleanup below is the same in every case. */
    rc = ops->open(url, &cs->state, err);
    if (rc == SNAP_OK) rc = ops->ensure_schema(cs->state, err);
    if (rc != SNAP_OK) {
        cold_close(cs); /* the one cleanup path, also for a half-open driver */
        if (rc > 0)     /* a driver bug; keep the "negative means failure" rule */
            rc = snap_err_set(err, SNAP_ERR, "%s driver returned %d", ops->name, rc);
        return rc;
    }
    *out = cs;
    return SNAP_OK;
}

void cold_close(struct cold_store *cs)
{
    if (cs == NULL) return;
    cs->ops->close(cs->state); /* drivers accept NULL state */
    free(cs);
}

const char *cold_driver_name(const struct cold_store *cs)
{
    return cs != NULL ? cs->ops->name : "none";
}

/* ---- forwarding ------------------------------------------------------------ */

/* Every forwarding function starts with this: a NULL store is a caller bug. */
#define CHECK_STORE(cs, err, fn)                                                                   \
    do {                                                                                           \
        if ((cs) == NULL) return snap_err_set((err), SNAP_EINVAL, "%s: store is NULL", (fn));      \
        snap_err_clear(err);                                                                       \
    } while (0)

int cold_ping(struct cold_store *cs, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_ping");
    return cs->ops->ping(cs->state, err);
}

/* The checks every message passes before any driver sees it; fn names the
 * caller in the error. */
static int msg_check(const struct cold_msg *m, const char *fn, struct snap_err *err)
{
    if (m == NULL) return snap_err_set(err, SNAP_EINVAL, "%s: message is NULL", fn);
    if (m->id <= 0)
        return snap_err_set(err, SNAP_EINVAL, "%s: id %lld is not positive", fn,
                            (long long)m->id);
    if (!str_ok(m->username, sizeof m->username))
        return snap_err_set(err, SNAP_EINVAL, "%s: username is empty or too long", fn);
    if (m->has_from && !str_ok(m->from, sizeof m->from))
        return snap_err_set(err, SNAP_EINVAL, "%s: from is empty or too long", fn);
    if (m->text == NULL) return snap_err_set(err, SNAP_EINVAL, "%s: text is NULL", fn);
    if (memchr(m->text, '\0', m->text_len) != NULL)
        return snap_err_set(err, SNAP_EINVAL, "%s: text holds a NUL byte", fn);
    if (strnlen(m->idem, sizeof m->idem) >= sizeof m->idem)
        return snap_err_set(err, SNAP_EINVAL, "%s: idem is not terminated", fn);
    return SNAP_OK;
}

int cold_msg_put(struct cold_store *cs, const struct cold_msg *m, struct snap_err *err)
{
    int rc1;
    return cold_msg_put_many(cs, m, 1, &rc1, err);
}

int cold_msg_put_many(struct cold_store *cs, const struct cold_msg *msgs, size_t n, int *rcs,
                      struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_put_many");
    if (n == 0) return SNAP_OK;
    if (msgs == NULL || rcs == NULL)
        return snap_err_set(err, SNAP_EINVAL, "cold_msg_put_many: no messages or no results");
    for (size_t i = 0; i < n; i++) {
        int rc = msg_check(&msgs[i], "cold_msg_put_many", err);
        if (rc != SNAP_OK) return rc;
    }
    return cs->ops->msg_put_many(cs->state, msgs, n, rcs, err);
}

int cold_msg_get(struct cold_store *cs, int64_t id, struct cold_msg *out, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_get");
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_msg_get: out is NULL");
    /* Zeroed first, so out is safe for cold_msg_cleanup() whatever happens. */
    memset(out, 0, sizeof *out);
    if (id <= 0)
        return snap_err_set(err, SNAP_EINVAL, "cold_msg_get: id %lld is not positive",
                            (long long)id);
    int rc = cs->ops->msg_get(cs->state, id, out, err);
    if (rc != SNAP_OK) cold_msg_cleanup(out);
    return rc;
}

/* ids[0..n) are all positive; fn names the caller. */
static int ids_check(const int64_t *ids, size_t n, const char *fn, struct snap_err *err)
{
    if (ids == NULL) return snap_err_set(err, SNAP_EINVAL, "%s: ids is NULL", fn);
    for (size_t i = 0; i < n; i++)
        if (ids[i] <= 0)
            return snap_err_set(err, SNAP_EINVAL, "%s: id %lld is not positive", fn,
                                (long long)ids[i]);
    return SNAP_OK;
}

int cold_msg_claim(struct cold_store *cs, struct cold_claim *claims, size_t n, int64_t now_ms,
                   struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_claim");
    if (n == 0) return SNAP_OK;
    if (claims == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_msg_claim: claims is NULL");
    for (size_t i = 0; i < n; i++) {
        struct cold_claim *c = &claims[i];
        c->n_claimed = 0;
        c->rc = SNAP_EINVAL;
        if (!str_ok(c->username, SNAP_USERNAME_MAX + 1) ||
            (c->token != NULL && !str_ok(c->token, COLD_TOKEN_MAX + 1)) ||
            (c->n > 0 && c->claimed == NULL))
            return snap_err_set(err, SNAP_EINVAL,
                                "cold_msg_claim: claim %zu has no username or output, or a "
                                "token that is empty or too long", i);
        int rc = ids_check(c->ids, c->n, "cold_msg_claim", err);
        if (rc != SNAP_OK) return rc;
    }
    for (size_t i = 0; i < n; i++) claims[i].rc = SNAP_OK;
    return cs->ops->msg_claim(cs->state, claims, n, now_ms, err);
}

int cold_msg_claimed(struct cold_store *cs, const char *username, const char *token,
                     int64_t since_ms, struct cold_msg_list *out, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_claimed");
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_msg_claimed: out is NULL");
    *out = (struct cold_msg_list){0};
    if (!str_ok(username, SNAP_USERNAME_MAX + 1) || !str_ok(token, COLD_TOKEN_MAX + 1))
        return snap_err_set(err, SNAP_EINVAL, "cold_msg_claimed: no username or token");
    int rc = cs->ops->msg_claimed(cs->state, username, token, since_ms, out, err);
    if (rc != SNAP_OK) cold_msg_list_free(out);
    return rc;
}

int cold_msg_close(struct cold_store *cs, const int64_t *ids, size_t n, int to_state,
                   int64_t at_ms, size_t *n_closed, struct snap_err *err)
{
    size_t ignored;

    CHECK_STORE(cs, err, "cold_msg_close");
    if (n_closed == NULL) n_closed = &ignored;
    *n_closed = 0;
    if (to_state != COLD_UNSENT && to_state != COLD_REFUSED)
        return snap_err_set(err, SNAP_EINVAL, "cold_msg_close: state %d is not unsent or refused",
                            to_state);
    if (n == 0) return SNAP_OK;
    int rc = ids_check(ids, n, "cold_msg_close", err);
    return rc != SNAP_OK ? rc : cs->ops->msg_close(cs->state, ids, n, to_state, at_ms, n_closed, err);
}

int cold_msg_find_idem(struct cold_store *cs, const char *idem, struct cold_msg *out,
                       struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_find_idem");
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_msg_find_idem: out is NULL");
    memset(out, 0, sizeof *out);
    if (!str_ok(idem, COLD_IDEM_MAX + 1))
        return snap_err_set(err, SNAP_EINVAL, "cold_msg_find_idem: key is empty or too long");
    int rc = cs->ops->msg_find_idem(cs->state, idem, out, err);
    if (rc != SNAP_OK) cold_msg_cleanup(out);
    return rc;
}

int cold_msg_release_idem(struct cold_store *cs, int64_t id, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_release_idem");
    if (id <= 0) return snap_err_set(err, SNAP_EINVAL, "cold_msg_release_idem: bad id");
    return cs->ops->msg_release_idem(cs->state, id, err);
}

int cold_msg_scan_open(struct cold_store *cs, int64_t since_ms, int64_t now_ms,
                       int64_t after_exp, int64_t after_id, size_t max,
                       struct cold_msg_list *out, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_scan_open");
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_msg_scan_open: out is NULL");
    *out = (struct cold_msg_list){0};
    if (max == 0 || max > 100000)
        return snap_err_set(err, SNAP_EINVAL, "cold_msg_scan_open: page size %zu out of range",
                            max);
    int rc =
        cs->ops->msg_scan_open(cs->state, since_ms, now_ms, after_exp, after_id, max, out, err);
    if (rc != SNAP_OK) cold_msg_list_free(out);
    return rc;
}

int cold_msg_max_id(struct cold_store *cs, int64_t *out, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_msg_max_id");
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_msg_max_id: out is NULL");
    *out = 0;
    return cs->ops->msg_max_id(cs->state, out, err);
}

void cold_msg_cleanup(struct cold_msg *m)
{
    if (m == NULL) return;
    free(m->text);
    memset(m, 0, sizeof *m);
}

void cold_msg_list_free(struct cold_msg_list *l)
{
    if (l == NULL) return;
    for (size_t i = 0; i < l->len; i++) free(l->items[i].text);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

int cold_user_put(struct cold_store *cs, const struct cold_user *u, struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_user_put");
    if (u == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_user_put: user is NULL");
    if (!str_ok(u->username, sizeof u->username))
        return snap_err_set(err, SNAP_EINVAL, "cold_user_put: username is empty or too long");
    if (!str_ok(u->password_hash, sizeof u->password_hash))
        return snap_err_set(err, SNAP_EINVAL, "cold_user_put: password hash is empty or too long");
    if (!str_ok(u->role, sizeof u->role))
        return snap_err_set(err, SNAP_EINVAL, "cold_user_put: role is empty or too long");
    return cs->ops->user_put(cs->state, u, err);
}

int cold_user_get(struct cold_store *cs, const char *username, struct cold_user *out,
                  struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_user_get");
    if (out == NULL) return snap_err_set(err, SNAP_EINVAL, "cold_user_get: out is NULL");
    memset(out, 0, sizeof *out);
    if (!str_ok(username, SNAP_USERNAME_MAX + 1))
        return snap_err_set(err, SNAP_EINVAL, "cold_user_get: username is empty or too long");
    int rc = cs->ops->user_get(cs->state, username, out, err);
    if (rc != SNAP_OK) memset(out, 0, sizeof *out);
    return rc;
}

int cold_user_set_role(struct cold_store *cs, const char *username, const char *role,
                       struct snap_err *err)
{
    CHECK_STORE(cs, err, "cold_user_set_role");
    if (!str_ok(username, SNAP_USERNAME_MAX + 1))
        return snap_err_set(err, SNAP_EINVAL, "cold_user_set_role: username is empty or too long");
    if (!str_ok(role, COLD_ROLE_MAX + 1))
        return snap_err_set(err, SNAP_EINVAL, "cold_user_set_role: role is empty or too long");
    return cs->ops->user_set_role(cs->state, username, role, err);
}
