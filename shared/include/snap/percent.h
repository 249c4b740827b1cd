/* percent.h: %XX decoding (RFC 3986), the one implementation behind the
 * path segments of http.c and the credentials of a redis:// URL.
 * Not here: encoding, '+' as space (neither is used). */
#ifndef SNAP_PERCENT_H
#define SNAP_PERCENT_H

#include <stddef.h>

/* 0..15 for a hex digit (either case), -1 for anything else. */
int percent_hex_value(char c);

/* Decodes src[0..len) into dst (dstlen bytes, NUL-terminated) and returns
 * the decoded length, or -1 on a malformed escape, on a decoded NUL when
 * allow_nul is 0, or when the result and its NUL do not fit. */
long percent_decode(const char *src, size_t len, char *dst, size_t dstlen, int allow_nul);

#endif
