/* fetch: the service that delivers snaps (GET /chats/{username}, read-once)
 * and the admin lookup (GET /chat/{id}). Its surface is the route table
 * below; handlers are in handlers.c, the retry of cold-store expiry updates
 * in expire_retry.c, everything else in shared/ (service.h). */
#include "fetch.h"

static const struct http_route routes[] = {
    {"GET", "/chats/{}", fetch_chats_read, HTTP_AUTH_OWNER, 0},
    {"GET", "/chat/{}", fetch_chat_lookup, HTTP_AUTH_ADMIN, 0},
};

static const struct service_def fetch = {
    .name = "fetch",
    .default_port = 8083,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .start = expire_retry_start,
    .stop = expire_retry_stop,
};

int main(void)
{
    return service_run(&fetch);
}
