/* pages: the face of snaptext for people — the web client, the API
 * reference and the OpenAPI document, all static files (pages.h). Its
 * surface is the route table below; it opens neither Redis nor the cold
 * store, so it keeps serving while they are down (the client then shows
 * the API's 503 as a sentence). */
#include "pages.h"

#define GET_AND_HEAD(path, fn) \
    {"GET", path, fn, HTTP_AUTH_NONE, 0}, {"HEAD", path, fn, HTTP_AUTH_NONE, 0}

static const struct http_route routes[] = {
    GET_AND_HEAD("/", pages_root),
    GET_AND_HEAD("/app", pages_root),
    GET_AND_HEAD("/app/", pages_app),
    GET_AND_HEAD("/app/{}", pages_app),
    GET_AND_HEAD("/docs", pages_docs),
    GET_AND_HEAD("/docs/{}", pages_docs),
    GET_AND_HEAD("/openapi.json", pages_openapi),
};

static const struct service_def pages = {
    .name = "pages",
    .default_port = 8084,
    .flags = SERVICE_NO_STORES,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .start = pages_start,
    .stop = pages_stop,
};

int main(void)
{
    return service_run(&pages);
}
