/* ingest: the service that accepts snaps (POST /chat).
 * Its whole surface is the route table below; the handler is in handlers.c,
 * the thread that stores sends in batches in pipeline.c, everything else
 * (config, stores, HTTP, stop) in shared/ (service.h). */
#include "ingest.h"

static const struct http_route routes[] = {
    {"POST", "/chat", ingest_chat_send, HTTP_AUTH_SENDER, HTTP_BODY_JSON},
};

static const struct service_def ingest = {
    .name = "ingest",
    .default_port = 8082,
    .routes = routes,
    .nroutes = sizeof routes / sizeof routes[0],
    .start = pipeline_start,
    .stop = pipeline_stop,
};

int main(void)
{
    return service_run(&ingest);
}
