/* percent.c: %XX decoding, shared by HTTP paths (http.c) and Redis URL
 * credentials (redis_conn.c) so both read an escape the same way.
 * Not here: what each caller does with a decoded '/' or NUL. */
#include "snap/percent.h"

int percent_hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

long percent_decode(const char *src, size_t len, char *dst, size_t dstlen, int allow_nul)
{
    size_t i = 0, o = 0;

    if (dst == NULL || dstlen == 0) return -1;
    while (i < len) {
        char c = src[i];
        if (c == '%') {
            int hi, lo;
            if (len - i < 3) return -1;
            hi = percent_hex_value(src[i + 1]);
            lo = percent_hex_value(src[i + 2]);
            if (hi < 0 || lo < 0 || (!allow_nul && hi == 0 && lo == 0)) return -1;
            c = (char)(hi * 16 + lo);
            i += 3;
        } else {
            i++;
        }
        if (o + 1 >= dstlen) return -1; /* no room for this byte and the NUL */
        dst[o++] = c;
    }
    dst[o] = '\0';
    return (long)o;
}
