/* admin.c: the first admin. When SNAPTEXT_ADMIN_USERNAME/PASSWORD are set,
 * the user is created at start if absent (with that password) and its role
 * is forced to admin if present (its password is then left as it is). */
#include <string.h>

#include "snap/auth.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/log.h"
#include "users.h"

int users_admin_bootstrap(struct snap_ctx *ctx, struct snap_err *err)
{
    const struct snap_config *cfg = &ctx->cfg;
    if (!cfg->admin_username[0]) return SNAP_OK;
    struct cold_user u;
    int rc = cold_user_get(ctx->cold, cfg->admin_username, &u, err);
    if (rc == SNAP_ENOTFOUND) {
        memset(&u, 0, sizeof u);
        strcpy(u.username, cfg->admin_username);
        strcpy(u.role, AUTH_ROLE_ADMIN);
        u.created_ms = clock_now_ms();
        if (auth_password_hash(cfg->admin_password, u.password_hash, err) != SNAP_OK)
            return SNAP_ERR;
        rc = cold_user_put(ctx->cold, &u, err);
        if (rc == SNAP_OK) {
            log_event(SNAP_LOG_INFO, NULL, "admin", "admin user created");
            return SNAP_OK;
        }
        if (rc != SNAP_ECONFLICT) return rc; /* another instance may have won: fall through */
    } else if (rc != SNAP_OK) {
        return rc;
    } else if (strcmp(u.role, AUTH_ROLE_ADMIN) == 0) {
        return SNAP_OK;
    }
    rc = cold_user_set_role(ctx->cold, cfg->admin_username, AUTH_ROLE_ADMIN, err);
    if (rc == SNAP_OK)
        log_event(SNAP_LOG_INFO, NULL, "admin", "existing user given the admin role");
    return rc;
}
