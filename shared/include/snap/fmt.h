/* fmt.h: a bounded byte buffer that hot paths append to without printf.
 *
 * The request log line, the reply head and the Redis command encoding are
 * built once per request; snprintf's format parsing was a tenth of a
 * request's instructions in the services (docs/PERFORMANCE.md, profile).
 * A struct fmt_buf appends literals, strings and decimals into memory the
 * caller owns; once an append does not fit, the buffer is marked full and
 * every later append is a no-op, so a caller checks once, at the end.
 * Not here: JSON escaping (log.c), allocation (callers size their room). */
#ifndef SNAP_FMT_H
#define SNAP_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FMT_I64_MAX 21 /* "-9223372036854775808" and its NUL */

struct fmt_buf {
    char *p;     /* the caller's memory */
    size_t cap;  /* its size */
    size_t len;  /* bytes written */
    bool full;   /* an append did not fit: the contents are cut */
};

static inline struct fmt_buf fmt_buf_on(char *p, size_t cap)
{
    return (struct fmt_buf){.p = p, .cap = cap, .len = 0, .full = false};
}

/* Writes v in decimal into out (no NUL) and returns the length (1..20). */
size_t fmt_i64(char out[FMT_I64_MAX], int64_t v);
size_t fmt_u64(char out[FMT_I64_MAX], uint64_t v);

void fmt_mem(struct fmt_buf *b, const void *s, size_t len);
void fmt_str(struct fmt_buf *b, const char *s); /* NUL-terminated, NUL not copied */
void fmt_char(struct fmt_buf *b, char c);
void fmt_dec(struct fmt_buf *b, int64_t v);
/* v / 10^places with that many decimals: fmt_fixed(b, 12345, 3) is "12.345". */
void fmt_fixed(struct fmt_buf *b, int64_t v, int places);
/* Two digits, zero-padded: 0..99. */
void fmt_2d(struct fmt_buf *b, int v);

struct tm;
/* "HH:MM:SS" of tm (the time of day of an HTTP Date or a log timestamp). */
void fmt_hms(struct fmt_buf *b, const struct tm *tm);

/* NUL-terminates within cap (cutting the last byte when full): for callers
 * that need a C string. Returns false when the contents were cut. */
bool fmt_cstr(struct fmt_buf *b);

#endif
