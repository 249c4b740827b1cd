/* admin.c: the first admin, from SNAPTEXT_ADMIN_USERNAME/PASSWORD, checked
 * at every start. The rule:
 *   - no account of that name: it is created with that password, role admin;
 *   - an admin account of that name: its password must be the configured
 *     one, otherwise the service stops (a changed SNAPTEXT_ADMIN_PASSWORD is
 *     never silently ignored, and never silently applied either);
 *   - an ordinary account of that name: the service stops; it is never
 *     promoted (whoever registered the name would become admin).
 * Each refusal is one line naming the variable and what to do. (A name
 * without a password never gets here: config.c refuses it.) */
#include <string.h>

#include "snap/auth.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/log.h"
#include "users.h"

/* The existing account u must be the configured admin. */
static int check_existing(const struct snap_config *cfg, const struct cold_user *u,
                          struct snap_err *err)
{
    if (strcmp(u->role, AUTH_ROLE_ADMIN) != 0)
        return snap_err_set(err, SNAP_EINVAL,
                            "SNAPTEXT_ADMIN_USERNAME=%s is an ordinary account already registered "
                            "by someone; it is not made admin. Pick another admin name",
                            cfg->admin_username);
    int ok = auth_password_verify(cfg->admin_password, u->password_hash);
    if (ok < 0) return snap_err_set(err, SNAP_ERR, "could not check the admin password");
    if (!ok)
        return snap_err_set(err, SNAP_EINVAL,
                            "SNAPTEXT_ADMIN_PASSWORD is not the password of the existing admin "
                            "account %s; set it to that account's password",
                            cfg->admin_username);
    return SNAP_OK;
}

int users_admin_bootstrap(struct snap_ctx *ctx, struct snap_err *err)
{
    const struct snap_config *cfg = &ctx->cfg;
    if (!cfg->admin_username[0]) return SNAP_OK;
    struct cold_user u;
    int rc = cold_user_get(ctx->cold, cfg->admin_username, &u, err);
    if (rc == SNAP_OK) return check_existing(cfg, &u, err);
    if (rc != SNAP_ENOTFOUND) return rc;
    memset(&u, 0, sizeof u);
    strcpy(u.username, cfg->admin_username);
    strcpy(u.role, AUTH_ROLE_ADMIN);
    u.created_ms = clock_now_ms();
    if (auth_password_hash(cfg->admin_password, u.password_hash, err) != SNAP_OK) return SNAP_ERR;
    rc = cold_user_put(ctx->cold, &u, err);
    if (rc == SNAP_OK) {
        log_event(SNAP_LOG_INFO, NULL, "admin", "admin user %s created", cfg->admin_username);
        return SNAP_OK;
    }
    if (rc != SNAP_ECONFLICT) return rc;
    /* Another instance (or a registration) won the name meanwhile. */
    rc = cold_user_get(ctx->cold, cfg->admin_username, &u, err);
    return rc == SNAP_OK ? check_existing(cfg, &u, err) : rc;
}
