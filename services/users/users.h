/* users.h: the handlers and start hook of the users service. */
#ifndef USERS_H
#define USERS_H

#include "snap/service.h"

void users_register(struct http_req *r); /* POST /users            */
void users_login(struct http_req *r);    /* POST /sessions         */
void users_logout(struct http_req *r);   /* DELETE /sessions/current */
void users_me(struct http_req *r);       /* GET /users/me          */

/* Start hook: creates SNAPTEXT_ADMIN_USERNAME if absent; refuses to start
 * when that name is an ordinary account or an admin with another password
 * (admin.c). */
int users_admin_bootstrap(struct snap_ctx *ctx, struct snap_err *err);

#endif
