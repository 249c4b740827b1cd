/* pages.h: the pages service — the web client (/app/), the API reference
 * (/docs) and the OpenAPI document (/openapi.json), served as static files
 * from SNAPTEXT_PAGES_ROOT. It opens no store.
 * site.c loads the folder into memory at start; handlers.c answers from
 * that copy only, so no request path ever reaches the file system. */
#ifndef PAGES_H
#define PAGES_H

#include <stddef.h>
#include "snap/service.h"

#define PAGES_FILE_MAX (8u << 20)   /* largest file served (the renderer's bundle ~1.5 MB) */
#define PAGES_TOTAL_MAX (32u << 20) /* all files together                               */
#define PAGES_FILES_MAX 64

/* One file of the site, by its URL path ("/app/index.html"). */
struct pages_file {
    char url[128];
    const char *content_type;
    const char *headers;   /* Cache-Control, and for pages their CSP    */
    char etag[24];         /* "\"<16 hex digits>\"", a hash of the bytes */
    char *body;
    size_t len;
};

struct pages_site {
    struct pages_file files[PAGES_FILES_MAX];
    size_t nfiles;
};

/* Reads the files under root (app/, docs/ and the files at its top, one
 * level deep; hidden files are skipped) into site, which the caller
 * provides. Fails when root cannot be read, a file is too large, or
 * app/index.html, docs/index.html or openapi.json is missing. Release
 * with pages_site_cleanup (also after a failure). */
int pages_site_init(struct pages_site *site, const char *root, struct snap_err *err);
void pages_site_cleanup(struct pages_site *site);

/* The file at url, or NULL. */
const struct pages_file *pages_site_find(const struct pages_site *site, const char *url);

int pages_start(struct snap_ctx *ctx, struct snap_err *err); /* loads the site */
void pages_stop(struct snap_ctx *ctx);

/* GET / -> 302 /app/ */
void pages_root(const struct http_req *r, struct http_res *res);
/* GET /app/, /app/{file} */
void pages_app(const struct http_req *r, struct http_res *res);
/* GET /docs, /docs/{file} */
void pages_docs(const struct http_req *r, struct http_res *res);
/* GET /openapi.json */
void pages_openapi(const struct http_req *r, struct http_res *res);

#endif
