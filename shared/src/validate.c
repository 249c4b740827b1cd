/* validate.c: the field rules of API.md on raw bytes (UTF-8, usernames,
 * message ids) and on the fields of an already parsed JSON body.
 *
 * Every check works on explicit lengths, never on a NUL that a client could
 * have smuggled in. The field_* helpers refuse wrong JSON types themselves,
 * so an object such as {"$gt": ""} never gets past them to a store.
 * Not here: reading or parsing the body (http.c), the limits themselves
 * (config.c reads them, the handlers pass them in). */
#include "snap/validate.h"

#include <stdio.h>
#include <string.h>

#include "snap/config.h"

/* ---- UTF-8 --------------------------------------------------------------- */

/* Decodes the code point starting at s[*i] (n bytes in s) and advances *i.
 * Returns 0, or -1 for an ill-formed sequence (overlong, surrogate, above
 * U+10FFFF, truncated, stray continuation byte). */
static int utf8_next(const unsigned char *s, size_t n, size_t *i, unsigned long *cp)
{
    unsigned char b = s[*i];
    size_t need, k;
    unsigned long v, lo;

    if (b < 0x80) {
        *cp = b;
        *i += 1;
        return 0;
    }
    if (b >= 0xC2 && b <= 0xDF) {
        need = 1;
        v = b & 0x1Fu;
        lo = 0x80;
    } else if (b >= 0xE0 && b <= 0xEF) {
        need = 2;
        v = b & 0x0Fu;
        lo = 0x800;
    } else if (b >= 0xF0 && b <= 0xF4) {
        need = 3;
        v = b & 0x07u;
        lo = 0x10000;
    } else {
        return -1; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (n - *i - 1 < need) return -1;
    for (k = 1; k <= need; k++) {
        unsigned char c = s[*i + k];
        if ((c & 0xC0u) != 0x80u) return -1;
        v = (v << 6) | (c & 0x3Fu);
    }
    if (v < lo || v > 0x10FFFFul || (v >= 0xD800ul && v <= 0xDFFFul)) return -1;
    *cp = v;
    *i += need + 1;
    return 0;
}

int utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    unsigned long cp;

    if (len > 0 && s == NULL) return 0;
    while (i < len) {
        if (u[i] < 0x80) { /* fast path for ASCII */
            i++;
            continue;
        }
        if (utf8_next(u, len, &i, &cp) != 0) return 0;
    }
    return 1;
}

/* ---- usernames ----------------------------------------------------------- */

/* Unicode White_Space above ASCII (U+0085 is also caught as C1). */
static int is_unicode_space(unsigned long cp)
{
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

int username_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    unsigned long cp;

    if (s == NULL || len == 0 || len > SNAP_USERNAME_MAX) return 0;
    while (i < len) {
        if (utf8_next(u, len, &i, &cp) != 0) return 0;
        if (cp <= 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) /* C0, space, DEL, C1 */
            return 0;
        if (cp == '/' || is_unicode_space(cp)) return 0;
    }
    return 1;
}

/* ---- JSON fields --------------------------------------------------------- */

/* Writes a field message; a truncated message is still a valid sentence
 * start and always NUL-terminated, which is all a 400 reply needs. */
#define FIELD_MSG(msg, msglen, ...)                                                                \
    do {                                                                                           \
        if ((msg) != NULL && (msglen) > 0) (void)snprintf((msg), (msglen), __VA_ARGS__);           \
    } while (0)

static const char USERNAME_RULE[] =
    "must be a string of 1 to 64 bytes without whitespace, control characters or '/'";

int field_username(const cJSON *obj, const char *name, char *out, char *msg, size_t msglen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    size_t len;

    if (it == NULL) {
        FIELD_MSG(msg, msglen, "%s is required", name);
        return -1;
    }
    if (!cJSON_IsString(it) || it->valuestring == NULL) {
        FIELD_MSG(msg, msglen, "%s %s", name, USERNAME_RULE);
        return -1;
    }
    len = strlen(it->valuestring);
    if (!username_valid(it->valuestring, len)) {
        FIELD_MSG(msg, msglen, "%s %s", name, USERNAME_RULE);
        return -1;
    }
    memcpy(out, it->valuestring, len + 1); /* len <= SNAP_USERNAME_MAX */
    return 0;
}

int field_string(const cJSON *obj, const char *name, size_t min, size_t max, const char **out,
                 size_t *len, char *msg, size_t msglen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    size_t n;

    if (it == NULL) {
        FIELD_MSG(msg, msglen, "%s is required", name);
        return -1;
    }
    if (cJSON_IsString(it) && it->valuestring != NULL) {
        n = strlen(it->valuestring);
        if (n >= min && n <= max && utf8_valid(it->valuestring, n)) {
            *out = it->valuestring;
            *len = n;
            return 0;
        }
    }
    FIELD_MSG(msg, msglen, "%s must be a string of %zu to %zu bytes", name, min, max);
    return -1;
}

int field_timeout(const cJSON *obj, const char *name, long dflt, long max, long *out, char *msg,
                  size_t msglen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    double v;
    long l;

    if (it == NULL || cJSON_IsNull(it)) {
        *out = dflt;
        return 0;
    }
    if (cJSON_IsNumber(it)) {
        v = it->valuedouble;
        /* NaN fails both comparisons; +-inf and 1e300 fail the range. */
        if (v >= 1.0 && v <= (double)max) {
            l = (long)v;
            if ((double)l == v && l >= 1 && l <= max) {
                *out = l;
                return 0;
            }
        }
    }
    FIELD_MSG(msg, msglen, "%s must be an integer number of seconds between 1 and %ld", name, max);
    return -1;
}

/* Leading zeros are accepted ("007" is 7): the value is what counts. */
int id_parse(const char *s, size_t len, int64_t *out)
{
    int64_t v = 0;
    size_t i;

    if (s == NULL || len == 0) return -1;
    for (i = 0; i < len; i++) {
        int d;
        if (s[i] < '0' || s[i] > '9') return -1;
        d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10) return -1; /* would overflow */
        v = v * 10 + d;
    }
    if (v < 1) return -1;
    *out = v;
    return 0;
}

int idem_key_valid(const char *s)
{
    size_t i;

    if (s == NULL) return 0;
    for (i = 0; s[i] != '\0'; i++) {
        char c = s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '-';
        if (!ok || i >= SNAP_IDEM_KEY_MAX) return 0;
    }
    return i > 0;
}

/* The query is "a=1&b=2" (no '?'). Only plain digits are numbers here:
 * "limit=+5", "limit=5.0", "limit=" and a repeated name are refused. */
int query_long(const char *query, const char *name, long min, long max, long *out)
{
    size_t nlen = strlen(name);
    const char *p = query;
    int found = 0;
    long v = 0;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nlen && strncmp(p, name, nlen) == 0 && p[nlen] == '=') {
            const char *d = p + nlen + 1;
            size_t dl = len - nlen - 1, i;
            if (found++ || dl == 0 || dl > 9) return -1;
            for (v = 0, i = 0; i < dl; i++) {
                if (d[i] < '0' || d[i] > '9') return -1;
                v = v * 10 + (d[i] - '0');
            }
        } else if (len == nlen && strncmp(p, name, nlen) == 0) {
            return -1; /* "limit" without a value */
        }
        p = end ? end + 1 : NULL;
    }
    if (!found) return 1;
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}
