/* handlers.c: the four routes of the users service.
 *
 * Users live in the cold store (password as a yescrypt hash only); sessions
 * live in Redis under the SHA-256 of their token, with SNAPTEXT_SESSION_TTL,
 * so every instance of every service sees a logout at once. A login costs
 * one password check whether or not the user exists.
 *
 * Failed logins are counted in Redis per account and per client address
 * (SNAPTEXT_LOGIN_MAX_FAILS / _ADDR in SNAPTEXT_LOGIN_WINDOW); past either
 * limit a login is answered 429 before any hash is computed, whatever the
 * password. The client address is the X-Client-Addr header, which HAProxy
 * sets from the connection's source and overwrites on every request (only
 * HAProxy reaches the services); without it, the peer address. */
#include <stdio.h>
#include <string.h>

#include "snap/auth.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/login_throttle.h"
#include "snap/session_store.h"
#include "snap/log.h"
#include "snap/validate.h"
#include "users.h"

/* Username and password of a register/login body; 0, or -1 with the 400 in res. */
static int read_credentials(const struct http_req *r, struct http_res *res, char *username,
                            const char **password, size_t min_password)
{
    char msg[200];
    size_t len;
    if (field_username(r->body, "username", username, msg, sizeof msg) != 0 ||
        field_string(r->body, "password", min_password, SNAP_PASSWORD_MAX, password, &len, msg,
                     sizeof msg) != 0) {
        http_res_error(res, HTTP_E_INVALID_FIELD, "%s", msg);
        return -1;
    }
    return 0;
}

/* A new session for username; fills token and expires_ms, or -1 with the
 * failure (503 when Redis is down) in res. */
static int open_session(const struct http_req *r, struct http_res *res, const char *username,
                        const char *role, char token[AUTH_TOKEN_LEN + 1], int64_t *expires_ms)
{
    char hash[AUTH_HASH_HEX_LEN + 1];
    struct snap_err err;
    if (auth_token_new(token, hash) != SNAP_OK) {
        http_res_error(res, HTTP_E_INTERNAL, "could not make a token; try again");
        return -1;
    }
    if (hot_session_put(r->hot, hash, username, role, r->ctx->cfg.session_ttl, &err) != SNAP_OK) {
        http_res_store_error(res, "redis", "opening the session", &err);
        return -1;
    }
    *expires_ms = clock_now_ms() + (int64_t)r->ctx->cfg.session_ttl * 1000;
    return 0;
}

void users_register(const struct http_req *r, struct http_res *res)
{
    struct cold_user u;
    memset(&u, 0, sizeof u);
    const char *password;
    if (read_credentials(r, res, u.username, &password, SNAP_PASSWORD_MIN) != 0) return;
    struct snap_err err;
    if (auth_password_hash(password, u.password_hash, &err) != SNAP_OK) {
        if (err.code == SNAP_EUNAVAIL)
            http_res_error(res, HTTP_E_UNAVAILABLE,
                             "too many passwords are being hashed right now; retry in a moment");
        else
            http_res_store_error(res, "cold", "hashing the password", &err);
        return;
    }
    strcpy(u.role, AUTH_ROLE_USER);
    u.created_ms = clock_now_ms();
    int rc = cold_user_put(r->ctx->cold, &u, &err);
    if (rc == SNAP_ECONFLICT) {
        http_res_error(res, HTTP_E_CONFLICT, "username \"%s\" is already registered; pick another",
                         u.username);
        return;
    }
    if (rc != SNAP_OK) {
        http_res_store_error(res, "cold", "registering the user", &err);
        return;
    }
    char token[AUTH_TOKEN_LEN + 1];
    int64_t expires_ms;
    if (open_session(r, res, u.username, u.role, token, &expires_ms) != 0) return;
    cJSON *o = cJSON_CreateObject();
    http_res_json(res, 201, o,
                  o && cJSON_AddStringToObject(o, "username", u.username) &&
                      cJSON_AddStringToObject(o, "token", token));
    explicit_bzero(token, sizeof token);
}

/* 0 when username may try a password from addr now; otherwise -1 with the
 * 429 (or a 503 when Redis cannot say) in res. */
static int login_allowed(const struct http_req *r, struct http_res *res, const char *username,
                         const char *addr)
{
    const struct snap_config *cfg = &r->ctx->cfg;
    struct hot_login_fails f;
    struct snap_err err;
    if (hot_login_fails_get(r->hot, username, addr, &f, &err) != SNAP_OK) {
        http_res_store_error(res, "redis", "checking failed logins", &err);
        return -1;
    }
    int by_user = f.user_fails >= cfg->login_max_fails;
    int by_addr = f.addr_fails >= cfg->login_max_fails_addr;
    if (!by_user && !by_addr) return 0;
    int64_t left_ms = 0;
    if (by_user) left_ms = f.user_left_ms;
    if (by_addr && f.addr_left_ms > left_ms) left_ms = f.addr_left_ms;
    res->retry_after_s = left_ms > 0 ? (long)((left_ms + 999) / 1000) : 1;
    log_event(SNAP_LOG_WARN, r->request_id, "login_throttled",
              "%s: %ld failed logins of the account, %ld from the address in the window",
              by_user ? "account" : "address", f.user_fails, f.addr_fails);
    http_res_error(res, HTTP_E_RATE_LIMITED,
                     "too many failed logins %s; try again in %ld seconds",
                     by_user ? "for this account" : "from this address", res->retry_after_s);
    return -1;
}

void users_login(const struct http_req *r, struct http_res *res)
{
    char username[SNAP_USERNAME_MAX + 1];
    const char *password;
    if (read_credentials(r, res, username, &password, 1) != 0) return;
    char addr[HTTP_CLIENT_ADDR_MAX + 1];
    http_client_addr(r, addr);
    if (login_allowed(r, res, username, addr) != 0) return;
    struct cold_user u;
    struct snap_err err;
    int rc = cold_user_get(r->ctx->cold, username, &u, &err);
    if (rc != SNAP_OK && rc != SNAP_ENOTFOUND) {
        http_res_store_error(res, "cold", "looking up the user", &err);
        return;
    }
    /* Unknown user: the same hash work as a wrong password, the same answer. */
    int ok = auth_password_verify(password, rc == SNAP_OK ? u.password_hash : NULL);
    if (ok < 0) {
        http_res_error(res, HTTP_E_UNAVAILABLE,
                         "too many logins are being checked right now; retry in a moment");
        return;
    }
    if (!ok) {
        if (hot_login_fail_add(r->hot, username, addr, r->ctx->cfg.login_window, &err) != SNAP_OK)
            log_event(SNAP_LOG_WARN, r->request_id, "login_throttle",
                      "failed login not counted: %s", err.msg);
        http_res_error(res, HTTP_E_UNAUTHORIZED, "wrong username or password");
        return;
    }
    if (hot_login_fails_clear(r->hot, username, &err) != SNAP_OK)
        log_event(SNAP_LOG_WARN, r->request_id, "login_throttle",
                  "failed logins of the account not cleared: %s", err.msg);
    char token[AUTH_TOKEN_LEN + 1];
    int64_t expires_ms;
    if (open_session(r, res, u.username, u.role, token, &expires_ms) != 0) return;
    char when[SNAP_TIME_STR_LEN];
    cJSON *o = cJSON_CreateObject();
    http_res_json(res, 201, o,
                  o && cJSON_AddStringToObject(o, "token", token) &&
                      cJSON_AddStringToObject(o, "expires_at", clock_format_utc(expires_ms, when)));
    explicit_bzero(token, sizeof token);
}

void users_logout(const struct http_req *r, struct http_res *res)
{
    struct snap_err err;
    if (hot_session_del(r->hot, r->who.token_hash, &err) != SNAP_OK) {
        http_res_store_error(res, "redis", "revoking the session", &err);
        return;
    }
    http_res_raw(res, 204, "application/json", "", 0);
}

void users_me(const struct http_req *r, struct http_res *res)
{
    struct cold_user u;
    struct snap_err err;
    int rc = cold_user_get(r->ctx->cold, r->who.username, &u, &err);
    if (rc == SNAP_ENOTFOUND) {
        http_res_error(res, HTTP_E_UNAUTHORIZED, "the user of this token no longer exists");
        return;
    }
    if (rc != SNAP_OK) {
        http_res_store_error(res, "cold", "looking up the user", &err);
        return;
    }
    char when[SNAP_TIME_STR_LEN];
    cJSON *o = cJSON_CreateObject();
    http_res_json(res, 200, o,
                  o && cJSON_AddStringToObject(o, "username", u.username) &&
                      cJSON_AddStringToObject(o, "role", u.role) &&
                      cJSON_AddStringToObject(o, "created_at", clock_format_utc(u.created_ms, when)));
}
