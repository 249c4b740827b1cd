/* handlers.c: the routes of the pages service. Each maps its path to one
 * file of the in-memory site (site.c) and sends it with its ETag; a
 * matching If-None-Match gets 304. Names are looked up, never opened, so
 * "/app/..%2Fx" is simply not found.
 * Not here: loading the files (site.c), the route table (main.c). */
#include "pages.h"

#include <civetweb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/log.h"

int pages_start(struct snap_ctx *ctx, struct snap_err *err)
{
    struct pages_site *site = calloc(1, sizeof *site);

    if (site == NULL) return snap_err_set(err, SNAP_ERR, "out of memory for the site");
    if (pages_site_init(site, ctx->cfg.pages_root, err) != SNAP_OK) {
        pages_site_cleanup(site);
        free(site);
        return SNAP_ERR;
    }
    log_event(SNAP_LOG_INFO, NULL, "start", "serving %zu files from %s", site->nfiles,
              ctx->cfg.pages_root);
    ctx->data = site;
    return SNAP_OK;
}

void pages_stop(struct snap_ctx *ctx)
{
    pages_site_cleanup(ctx->data);
    free(ctx->data);
    ctx->data = NULL;
}

/* 1 when the client's If-None-Match names etag (or is "*"). */
static int not_modified(const struct http_req *r, const char *etag)
{
    const char *inm = mg_get_header(r->conn, "If-None-Match");
    return inm != NULL && (strstr(inm, etag) != NULL || strcmp(inm, "*") == 0);
}

static void send_file(const struct http_req *r, struct http_res *res, const char *url)
{
    const struct pages_file *f = pages_site_find(r->ctx->data, url);

    if (f == NULL) {
        (void)http_res_error(res, HTTP_E_NOT_FOUND, "no such page; the web client is at /app/");
        return;
    }
    if (http_res_header(res, "%sETag: %s\r\n", f->headers, f->etag) != 0) {
        (void)http_res_error(res, HTTP_E_INTERNAL, "internal error");
        return;
    }
    if (not_modified(r, f->etag))
        (void)http_res_raw(res, 304, f->content_type, "", 0);
    else
        (void)http_res_raw(res, 200, f->content_type, f->body, f->len); /* the site outlives it */
}

/* /<folder>/<param>, or /<folder>/index.html without a parameter. */
static void send_in(const struct http_req *r, struct http_res *res, const char *folder)
{
    char url[128];
    int n;

    if (r->param_len == 0) {
        n = snprintf(url, sizeof url, "/%s/index.html", folder);
    } else {
        if (strlen(r->param) != r->param_len || strchr(r->param, '/') != NULL) {
            (void)http_res_error(res, HTTP_E_NOT_FOUND, "no such page; the web client is at /app/");
            return;
        }
        n = snprintf(url, sizeof url, "/%s/%s", folder, r->param);
    }
    if (n < 0 || (size_t)n >= sizeof url) {
        (void)http_res_error(res, HTTP_E_NOT_FOUND, "no such page; the web client is at /app/");
        return;
    }
    send_file(r, res, url);
}

void pages_root(const struct http_req *r, struct http_res *res)
{
    (void)r;
    (void)http_res_header(res, "Location: /app/\r\nCache-Control: no-cache\r\n");
    (void)http_res_raw(res, 302, "text/plain; charset=utf-8", "see /app/\n", 10);
}

void pages_app(const struct http_req *r, struct http_res *res)
{
    send_in(r, res, "app");
}

void pages_docs(const struct http_req *r, struct http_res *res)
{
    send_in(r, res, "docs");
}

void pages_openapi(const struct http_req *r, struct http_res *res)
{
    send_file(r, res, "/openapi.json");
}
