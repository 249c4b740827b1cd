/* site.c: the pages service's copy of its site folder, read once at start.
 * Every file gets its content type, its cache rule and an ETag (a hash of
 * its bytes) here, so a reply is a table look-up.
 * Cache rules: HTML and JSON are "no-cache" (always revalidated: a new
 * release shows at once, and an unchanged file costs a 304); CSS, JS and
 * images may be kept an hour. Pages carry the Content-Security-Policy.
 * Not here: the routes (handlers.c). */
#include "pages.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Scripts, styles, data and fonts from this origin only; no inline script,
 * no framing, nothing sent anywhere else. The docs renderer sets element
 * styles from script, which style-src 'self' allows (no style attribute
 * is parsed from markup). */
#define PAGES_CSP                                                                    \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; " \
    "img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; "       \
    "form-action 'none'; frame-ancestors 'none'\r\n"
#define PAGES_COMMON                                                                 \
    "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
#define REVALIDATE "Cache-Control: no-cache\r\n"
#define KEEP_HOUR "Cache-Control: public, max-age=3600\r\n"

struct kind {
    const char *ext;
    const char *content_type;
    const char *headers;
};

static const struct kind kinds[] = {
    {".html", "text/html; charset=utf-8", REVALIDATE PAGES_COMMON PAGES_CSP},
    {".json", "application/json", REVALIDATE PAGES_COMMON},
    {".css", "text/css; charset=utf-8", KEEP_HOUR PAGES_COMMON},
    {".js", "text/javascript; charset=utf-8", KEEP_HOUR PAGES_COMMON},
    {".mjs", "text/javascript; charset=utf-8", KEEP_HOUR PAGES_COMMON},
    {".svg", "image/svg+xml", KEEP_HOUR PAGES_COMMON},
    {".png", "image/png", KEEP_HOUR PAGES_COMMON},
    {".ico", "image/x-icon", KEEP_HOUR PAGES_COMMON},
};

static const struct kind *kind_of(const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        size_t e = strlen(kinds[i].ext);
        if (n > e && strcmp(name + n - e, kinds[i].ext) == 0) return &kinds[i];
    }
    return NULL;
}

static uint64_t fnv1a(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Reads path (a regular file of at most PAGES_FILE_MAX bytes) into a new
 * buffer that the caller owns. */
static int read_whole(const char *path, char **out, size_t *len, struct snap_err *err)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    char *buf = NULL;

    if (f == NULL) return snap_err_set(err, SNAP_ERR, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || (uint64_t)st.st_size > PAGES_FILE_MAX) {
        fclose(f);
        return snap_err_set(err, SNAP_ERR, "%s is larger than %u bytes", path, PAGES_FILE_MAX);
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(buf);
        fclose(f);
        return snap_err_set(err, SNAP_ERR, "cannot read %s", path);
    }
    fclose(f);
    *out = buf;
    *len = (size_t)st.st_size;
    return SNAP_OK;
}

/* Adds the files of root/sub (sub "" = root itself) to site. */
static int load_dir(struct pages_site *site, const char *root, const char *sub, size_t *total,
                    struct snap_err *err)
{
    char dir[1400], path[1700];
    DIR *d;
    struct dirent *de;
    int rc = SNAP_OK, n;

    n = snprintf(dir, sizeof dir, "%s%s%s", root, sub[0] ? "/" : "", sub);
    if (n < 0 || (size_t)n >= sizeof dir) return snap_err_set(err, SNAP_ERR, "path too long");
    d = opendir(dir);
    if (d == NULL)
        return snap_err_set(err, SNAP_ERR, "cannot read the folder %s: %s", dir, strerror(errno));
    while (rc == SNAP_OK && (de = readdir(d)) != NULL) {
        struct stat st;
        const struct kind *k;
        struct pages_file *f;

        if (de->d_name[0] == '.') continue;
        n = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof path || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue; /* folders: only app/ and docs/ are served */
        k = kind_of(de->d_name);
        if (k == NULL) continue;
        if (site->nfiles == PAGES_FILES_MAX) {
            rc = snap_err_set(err, SNAP_ERR, "more than %d files under %s", PAGES_FILES_MAX, root);
            break;
        }
        f = &site->files[site->nfiles];
        n = snprintf(f->url, sizeof f->url, "/%s%s%s", sub, sub[0] ? "/" : "", de->d_name);
        if (n < 0 || (size_t)n >= sizeof f->url) continue;
        rc = read_whole(path, &f->body, &f->len, err);
        if (rc != SNAP_OK) break;
        site->nfiles++;
        *total += f->len;
        if (*total > PAGES_TOTAL_MAX) {
            rc = snap_err_set(err, SNAP_ERR, "the site under %s is over %u bytes", root,
                              PAGES_TOTAL_MAX);
            break;
        }
        f->content_type = k->content_type;
        f->headers = k->headers;
        (void)snprintf(f->etag, sizeof f->etag, "\"%016llx\"",
                       (unsigned long long)fnv1a(f->body, f->len));
    }
    closedir(d);
    return rc;
}

int pages_site_init(struct pages_site *site, const char *root, struct snap_err *err)
{
    static const char *const needed[] = {"/app/index.html", "/docs/index.html", "/openapi.json"};
    size_t total = 0;
    int rc;

    memset(site, 0, sizeof *site);
    rc = load_dir(site, root, "", &total, err);
    if (rc == SNAP_OK) rc = load_dir(site, root, "app", &total, err);
    if (rc == SNAP_OK) rc = load_dir(site, root, "docs", &total, err);
    for (size_t i = 0; rc == SNAP_OK && i < sizeof needed / sizeof needed[0]; i++)
        if (pages_site_find(site, needed[i]) == NULL)
            rc = snap_err_set(err, SNAP_ERR,
                              "SNAPTEXT_PAGES_ROOT=%s has no %s (point it at the built site, "
                              "build/site)",
                              root, needed[i] + 1);
    return rc;
}

void pages_site_cleanup(struct pages_site *site)
{
    if (site == NULL) return;
    for (size_t i = 0; i < site->nfiles; i++) free(site->files[i].body);
    site->nfiles = 0;
}

const struct pages_file *pages_site_find(const struct pages_site *site, const char *url)
{
    for (size_t i = 0; i < site->nfiles; i++)
        if (strcmp(site->files[i].url, url) == 0) return &site->files[i];
    return NULL;
}
