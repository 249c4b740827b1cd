/* fuzz_oracle.h: slow, obviously-correct reference versions of the byte
 * rules in API.md, for the fuzz targets to compare the real code against.
 *
 * Each reference is written from the rule's text (Unicode Table 3-7 for
 * UTF-8, the White_Space property list, API.md's username and id rules),
 * not from shared/src, so a bug in validate.c or http.c is not copied here.
 * FUZZ_REQUIRE aborts with a message, which libFuzzer reports as a crash
 * and saves the input for. Header-only: each target is one binary.
 * Not here: the targets themselves (fuzz_body.c, fuzz_path.c). */
#ifndef SNAP_FUZZ_ORACLE_H
#define SNAP_FUZZ_ORACLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_REQUIRE(cond, what)                                                  \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz invariant broken at %s:%d: %s (%s)\n", __FILE__, \
                    __LINE__, (what), #cond);                                     \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* Length of the well-formed UTF-8 sequence at s[0..n), 0 if ill-formed.
 * Table 3-7 of the Unicode standard, row by row. *cp gets the code point. */
static inline size_t ref_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char b0 = s[0];
    unsigned char lo = 0x80, hi = 0xBF;
    size_t len, k;
    uint32_t v;

    if (b0 <= 0x7F) {
        *cp = b0;
        return 1;
    }
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        v = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        v = b0 & 0x0F;
        if (b0 == 0xE0)
            lo = 0xA0; /* no overlongs */
        if (b0 == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        v = b0 & 0x07;
        if (b0 == 0xF0)
            lo = 0x90; /* no overlongs */
        if (b0 == 0xF4)
            hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (k = 1; k < len; k++) {
        unsigned char b = s[k];
        unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h)
            return 0;
        v = (v << 6) | (uint32_t)(b & 0x3F);
    }
    *cp = v;
    return len;
}

static inline int ref_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k;
    uint32_t cp;

    while (i < n) {
        k = ref_utf8_seq(s + i, n - i, &cp);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* Unicode White_Space (PropList.txt), ASCII included. */
static inline int ref_is_white_space(uint32_t cp)
{
    switch (cp) {
    case 0x09: case 0x0A: case 0x0B: case 0x0C: case 0x0D: case 0x20:
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200A;
    }
}

/* API.md: 1..64 bytes of UTF-8, no whitespace, no C0/DEL/C1, no '/'. */
static inline int ref_username_valid(const unsigned char *s, size_t n)
{
    size_t i = 0, k;
    uint32_t cp;

    if (n < 1 || n > 64)
        return 0;
    while (i < n) {
        k = ref_utf8_seq(s + i, n - i, &cp);
        if (k == 0)
            return 0;
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F))
            return 0;
        if (cp == '/' || ref_is_white_space(cp))
            return 0;
        i += k;
    }
    return 1;
}

/* API.md: a message id is decimal digits only, 1..INT64_MAX. */
static inline int ref_id_parse(const unsigned char *s, size_t n, int64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (n == 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (__builtin_mul_overflow(v, 10u, &v) || __builtin_add_overflow(v, s[i] - '0', &v) ||
            v > (uint64_t)INT64_MAX)
            return -1;
    }
    if (v == 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static inline int ref_hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* RFC 3986 percent-decoding of s[0..n) into out (n bytes suffice: decoding
 * never grows). Returns the decoded length, or -1 for a '%' that is not
 * followed by two hex digits. '+' stays '+'. */
static inline long ref_percent_decode(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (n - i < 3 || ref_hex(s[i + 1]) < 0 || ref_hex(s[i + 2]) < 0)
            return -1;
        out[o++] = (unsigned char)(ref_hex(s[i + 1]) * 16 + ref_hex(s[i + 2]));
        i += 2;
    }
    return (long)o;
}

#endif
