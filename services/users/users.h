/* users.h: the handlers and start hook of the users service. Each handler
 * fills res with its answer (http.h). */
#ifndef USERS_H
#define USERS_H

#include "snap/service.h"

/* POST /users */
void users_register(const struct http_req *r, struct http_res *res);
/* POST /sessions */
void users_login(const struct http_req *r, struct http_res *res);
/* DELETE /sessions/current */
void users_logout(const struct http_req *r, struct http_res *res);
/* GET /users/me */
void users_me(const struct http_req *r, struct http_res *res);

/* Start hook: creates SNAPTEXT_ADMIN_USERNAME if absent; refuses to start
 * when that name is an ordinary account or an admin with another password
 * (admin.c). */
int users_admin_bootstrap(struct snap_ctx *ctx, struct snap_err *err);

#endif
