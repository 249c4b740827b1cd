/* fmt.c: the appends of fmt.h. Each one either fits whole or marks the
 * buffer full; nothing here allocates. */
#include "snap/fmt.h"

#include <string.h>
#include <time.h>

size_t fmt_u64(char out[FMT_I64_MAX], uint64_t v)
{
    char tmp[FMT_I64_MAX];
    size_t n = 0;

    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    return n;
}

size_t fmt_i64(char out[FMT_I64_MAX], int64_t v)
{
    if (v >= 0) return fmt_u64(out, (uint64_t)v);
    char mag[FMT_I64_MAX];
    /* -(v + 1) + 1 has no overflow, INT64_MIN included: at most 19 digits. */
    size_t n = fmt_u64(mag, (uint64_t)(-(v + 1)) + 1);

    out[0] = '-';
    memcpy(out + 1, mag, n);
    return 1 + n;
}

void fmt_mem(struct fmt_buf *b, const void *s, size_t len)
{
    if (b->full || len == 0) return; /* s may be NULL then */
    if (len > b->cap - b->len) {
        b->full = true;
        return;
    }
    memcpy(b->p + b->len, s, len);
    b->len += len;
}

void fmt_str(struct fmt_buf *b, const char *s)
{
    fmt_mem(b, s, strlen(s));
}

void fmt_char(struct fmt_buf *b, char c)
{
    fmt_mem(b, &c, 1);
}

void fmt_dec(struct fmt_buf *b, int64_t v)
{
    char d[FMT_I64_MAX];

    fmt_mem(b, d, fmt_i64(d, v));
}

void fmt_fixed(struct fmt_buf *b, int64_t v, int places)
{
    char d[FMT_I64_MAX];
    uint64_t u, scale = 1;
    size_t n;

    if (v < 0) {
        fmt_char(b, '-');
        u = (uint64_t)(-(v + 1)) + 1;
    } else {
        u = (uint64_t)v;
    }
    for (int i = 0; i < places; i++) scale *= 10;
    fmt_mem(b, d, fmt_u64(d, u / scale));
    if (places <= 0) return;
    fmt_char(b, '.');
    n = fmt_u64(d, u % scale);
    for (size_t i = n; i < (size_t)places; i++) fmt_char(b, '0');
    fmt_mem(b, d, n);
}

void fmt_2d(struct fmt_buf *b, int v)
{
    char d[2] = {(char)('0' + (v / 10) % 10), (char)('0' + v % 10)};

    fmt_mem(b, d, 2);
}

void fmt_hms(struct fmt_buf *b, const struct tm *tm)
{
    fmt_2d(b, tm->tm_hour);
    fmt_char(b, ':');
    fmt_2d(b, tm->tm_min);
    fmt_char(b, ':');
    fmt_2d(b, tm->tm_sec);
}

bool fmt_cstr(struct fmt_buf *b)
{
    if (b->cap == 0) return false;
    if (b->len >= b->cap) {
        b->len = b->cap - 1;
        b->full = true;
    }
    b->p[b->len] = '\0';
    return !b->full;
}
