/* json_strict.c: the strict reading of a request body. cJSON alone takes
 * more than RFC 8259 allows (lone surrogate escapes, "01", raw control
 * characters) and recurses without a bound; json_scan() refuses those
 * before cJSON sees the bytes, and json_strict_parse() then insists on one
 * object without duplicate keys or \u0000 in its strings.
 * Tested without a server in tests/unit/test_http_parse.c and fuzzed by
 * tests/fuzz/fuzz_body.c.
 * Not here: reading the body off the connection (http.c), field rules
 * (validate.c). */
#include "snap/json_strict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snap/percent.h"
#include "snap/validate.h"

/* The four hex digits of a \uXXXX escape at s (avail bytes left). */
static int hex4(const char *s, size_t avail, unsigned *out)
{
    unsigned v = 0;
    size_t k;
    if (avail < 4) return -1;
    for (k = 0; k < 4; k++) {
        int h = percent_hex_value(s[k]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* Length of the JSON number at s (RFC 8259 grammar), 0 when it is not one.
 * cJSON alone would take "01", "1." and "-.5". */
static size_t json_number_len(const char *s, size_t len)
{
    size_t i = 0;

    if (i < len && s[i] == '-') i++;
    if (i >= len) return 0;
    if (s[i] == '0') {
        i++;
    } else if (s[i] >= '1' && s[i] <= '9') {
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
    } else {
        return 0;
    }
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == start) return 0;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        size_t start;
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9') i++;
        if (i == start) return 0;
    }
    if (i < len && (s[i] == '.' || s[i] == '-' || s[i] == '+' || s[i] == 'e' || s[i] == 'E' ||
                    (s[i] >= '0' && s[i] <= '9')))
        return 0; /* "01", "1.2.3", "1e5e" */
    return i;
}

/* Deepest nesting of arrays/objects accepted. cJSON recurses once per
 * level, and civetweb's worker threads have small stacks (~100 KiB): about
 * 900 levels (a 1.8 KB body) overflowed one. No API body needs more than 1. */
#define JSON_DEPTH_MAX 32

/* Finds what cJSON lets through but JSON forbids, or what it must not be
 * given: control characters (outside JSON whitespace, or raw inside a
 * string), escapes of lone surrogates, malformed numbers, nesting deeper
 * than JSON_DEPTH_MAX. Sets *nul for a \u0000 escape and notes where the
 * first one is in *where: the top-level key it belongs to (raw bytes of
 * the body, escapes not decoded) and whether it is inside that key itself.
 * Anything else that is malformed is left to cJSON. Returns 0 or -1 with
 * msg set. */
struct nul_where {
    const char *key; /* NULL: not under a top-level key */
    size_t key_len;
    int in_key;
};

static int json_scan(const char *s, size_t len, int *nul, struct nul_where *where, char *msg,
                     size_t msglen)
{
    size_t i = 0;
    int in_string = 0, depth = 0;
    /* Top-level key tracking: the next string at depth 1 is a key right
     * after '{' or ','; key_start/key_len hold the last key seen. */
    int expect_key = 0, string_is_key = 0;
    size_t key_start = 0, key_len = 0;

    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (in_string) {
            if (c == '"') {
                in_string = 0;
                if (string_is_key) key_len = i - key_start;
                i++;
            } else if (c < 0x20) {
                (void)snprintf(msg, msglen,
                               "body is not valid JSON: control character in a string at "
                               "byte %zu (escape it)",
                               i);
                return -1;
            } else if (c == '\\' && i + 1 < len && s[i + 1] == 'u') {
                unsigned v, lo;
                if (hex4(s + i + 2, len - i - 2, &v) != 0) return 0; /* cJSON refuses it */
                if (v == 0 && !*nul) {
                    *nul = 1;
                    if (key_start > 0) { /* under a top-level key (or in one) */
                        where->key = s + key_start;
                        where->key_len = string_is_key ? i - key_start : key_len;
                        where->in_key = string_is_key;
                    }
                }
                if (v >= 0xDC00 && v <= 0xDFFF) goto lone;
                if (v >= 0xD800 && v <= 0xDBFF) {
                    if (len - i < 12 || s[i + 6] != '\\' || s[i + 7] != 'u' ||
                        hex4(s + i + 8, len - i - 8, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF)
                        goto lone;
                    i += 12;
                } else {
                    i += 6;
                }
            } else if (c == '\\') {
                i += 2;
            } else {
                i++;
            }
            continue;
        }
        if (c == '"') {
            in_string = 1;
            string_is_key = depth == 1 && expect_key;
            if (string_is_key) {
                key_start = i + 1;
                key_len = 0;
                expect_key = 0;
            }
            i++;
        } else if (c == ',' && depth == 1) {
            expect_key = 1;
            i++;
        } else if (c == '[' || c == '{') {
            if (depth == 0 && c == '{') expect_key = 1;
            if (++depth > JSON_DEPTH_MAX) {
                (void)snprintf(msg, msglen, "body is nested too deeply (more than %d levels)",
                               JSON_DEPTH_MAX);
                return -1;
            }
            i++;
        } else if (c == ']' || c == '}') {
            depth--;
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t n = json_number_len(s + i, len - i);
            if (n == 0) {
                (void)snprintf(msg, msglen, "body is not valid JSON: bad number at byte %zu", i);
                return -1;
            }
            i += n;
        } else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
            (void)snprintf(msg, msglen, "body is not valid JSON: control character at byte %zu", i);
            return -1;
        } else {
            i++;
        }
    }
    return 0;
lone:
    (void)snprintf(msg, msglen, "body is not valid JSON: unpaired surrogate escape at byte %zu", i);
    return -1;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Writes into msg `duplicate key "<key>"` if obj has one at its top level.
 * Sorting keeps this O(n log n) however many keys a body has. */
static int find_duplicate_key(const cJSON *obj, char *msg, size_t msglen)
{
    const cJSON *it;
    const char **keys;
    size_t n = 0, i;
    int rc = 0;

    for (it = obj->child; it != NULL; it = it->next) n++;
    if (n < 2) return 0;
    keys = malloc(n * sizeof *keys);
    if (keys == NULL) {
        (void)snprintf(msg, msglen, "body is too large to check");
        return -1;
    }
    i = 0;
    for (it = obj->child; it != NULL; it = it->next) keys[i++] = it->string ? it->string : "";
    qsort(keys, n, sizeof *keys, key_cmp);
    for (i = 1; i < n; i++) {
        if (strcmp(keys[i - 1], keys[i]) == 0) {
            size_t kl = strlen(keys[i]), cut = kl > 40 ? 40 : kl;
            while (cut > 0 && cut < kl && ((unsigned char)keys[i][cut] & 0xC0) == 0x80)
                cut--; /* end on a UTF-8 character boundary */
            (void)snprintf(msg, msglen, "duplicate key \"%.*s%s\"", (int)cut, keys[i],
                           cut < kl ? "..." : "");
            rc = -1;
            break;
        }
    }
    free(keys);
    return rc;
}

/* The invalid_field message for a \u0000: it names the field (API.md), at
 * most 40 bytes of it, cut on a UTF-8 boundary. */
static void nul_message(const struct nul_where *w, char *msg, size_t msglen)
{
    size_t cut = w->key_len > 40 ? 40 : w->key_len;
    while (w->key != NULL && cut > 0 && cut < w->key_len &&
           ((unsigned char)w->key[cut] & 0xC0) == 0x80)
        cut--;
    if (w->key == NULL)
        (void)snprintf(msg, msglen, "strings must not contain \\u0000");
    else if (!w->in_key && w->key_len == 0)
        (void)snprintf(msg, msglen, "the field \"\" must not contain \\u0000");
    else if (w->in_key)
        (void)snprintf(msg, msglen, "field names must not contain \\u0000 (the field \"%.*s%s\")",
                       (int)cut, w->key, cut < w->key_len ? "..." : "");
    else
        (void)snprintf(msg, msglen, "%.*s%s must not contain \\u0000", (int)cut, w->key,
                       cut < w->key_len ? "..." : "");
}

cJSON *json_strict_parse(const char *buf, size_t len, int *nul_field, char *msg, size_t msglen)
{
    const char *end = NULL;
    cJSON *root;
    size_t pos;
    int nul = 0;
    struct nul_where where = {NULL, 0, 0};

    *nul_field = 0;
    if (msg != NULL && msglen > 0) msg[0] = '\0';
    if (len == 0) {
        (void)snprintf(msg, msglen, "body is empty: send a JSON object");
        return NULL;
    }
    if (!utf8_valid(buf, len)) {
        (void)snprintf(msg, msglen, "body is not valid UTF-8");
        return NULL;
    }
    if (json_scan(buf, len, &nul, &where, msg, msglen) != 0) return NULL;
    root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (root == NULL) {
        pos = end != NULL && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0;
        (void)snprintf(msg, msglen, "body is not well-formed JSON (error at byte %zu)", pos);
        return NULL;
    }
    pos = end != NULL && end >= buf && end <= buf + len ? (size_t)(end - buf) : len;
    while (pos < len &&
           (buf[pos] == ' ' || buf[pos] == '\t' || buf[pos] == '\n' || buf[pos] == '\r'))
        pos++;
    if (pos != len) {
        (void)snprintf(msg, msglen, "body has data after the JSON value (at byte %zu)", pos);
        goto fail;
    }
    if (!cJSON_IsObject(root)) {
        (void)snprintf(msg, msglen, "body must be a JSON object");
        goto fail;
    }
    if (nul) { /* before duplicates: keys cut at a NUL could look equal */
        *nul_field = 1;
        nul_message(&where, msg, msglen);
        goto fail;
    }
    if (find_duplicate_key(root, msg, msglen) != 0) goto fail;
    return root;
fail:
    cJSON_Delete(root);
    return NULL;
}
