/* users: registration, login, sessions and the admin role. Its surface is
 * the route table below; handlers are in handlers.c, the admin bootstrap in
 * admin.c, everything else in shared/ (service.h). */
#include "snap/auth.h"
#include "users.h"

static const struct http_route routes[] = {
    {"POST", "/users", users_register, HTTP_AUTH_NONE, HTTP_BODY_JSON},
    {"GET", "/users/me", users_me, HTTP_AUTH_USER, 0},
    {"POST", "/sessions", users_login, HTTP_AUTH_NONE, HTTP_BODY_JSON},
    {"DELETE", "/sessions/current", users_logout, HTTP_AUTH_USER, 0},
};

/* At start: bound the line for password hashes, then the first admin. */
static int users_start(struct snap_ctx *ctx, struct snap_err *err)
{
    auth_hash_queue_limit(ctx->cfg.hash_queue);
    return users_admin_bootstrap(ctx, err);
}

static const struct service_def users = {
    .name = "users",
    .default_port = 8081,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .start = users_start,
};

int main(void)
{
    return service_run(&users);
}
