/* fuzz_path.c: libFuzzer target for a path parameter, handled the way the
 * dispatcher and fetch handle /chats/{username} and /chat/{id}:
 * http_percent_decode() into a buffer of HTTP_PARAM_MAX + 1 bytes, then
 * username_valid() on the decoded bytes, and id_parse() on the raw and on
 * the decoded bytes. utf8_valid() is checked on the raw bytes as well.
 *
 * Each result is compared with the references of fuzz_oracle.h; a small
 * output buffer (sized from the input) exercises the overflow refusal.
 * Buffers are heap-allocated at their exact size so ASan sees one byte too
 * many. Not here: request bodies (fuzz_body.c). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snap/http.h"
#include "snap/validate.h"

#include "fuzz_oracle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* http_percent_decode into a dstlen-byte buffer, checked against ref. */
static void decode_and_check(const uint8_t *data, size_t size, size_t dstlen,
                             const unsigned char *ref, long ref_len)
{
    char *dst = malloc(dstlen);
    long n;
    int64_t id = 0, ref_id = 0;
    int rc, ref_rc;

    if (dst == NULL)
        abort();
    n = http_percent_decode((const char *)data, size, dst, dstlen);
    if (ref_len < 0 || (size_t)ref_len >= dstlen) {
        FUZZ_REQUIRE(n == -1, "http_percent_decode accepted a bad escape or an overflow");
        free(dst);
        return;
    }
    FUZZ_REQUIRE(n == ref_len, "http_percent_decode length differs from RFC 3986");
    FUZZ_REQUIRE(memcmp(dst, ref, (size_t)n) == 0, "http_percent_decode bytes differ");
    FUZZ_REQUIRE(dst[n] == '\0', "http_percent_decode did not terminate");

    FUZZ_REQUIRE(username_valid(dst, (size_t)n) ==
                     ref_username_valid((const unsigned char *)dst, (size_t)n),
                 "username_valid disagrees with the username rule");
    rc = id_parse(dst, (size_t)n, &id);
    ref_rc = ref_id_parse((const unsigned char *)dst, (size_t)n, &ref_id);
    FUZZ_REQUIRE(rc == ref_rc, "id_parse (decoded) disagrees with the id rule");
    if (rc == 0)
        FUZZ_REQUIRE(id == ref_id, "id_parse (decoded) value differs");
    free(dst);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *ref = malloc(size + 1);
    long ref_len;
    int64_t id = 0, ref_id = 0;
    int rc, ref_rc;

    if (ref == NULL)
        abort();
    ref_len = ref_percent_decode(data, size, ref);

    /* As the dispatcher calls it. */
    decode_and_check(data, size, HTTP_PARAM_MAX + 1, ref, ref_len);
    /* A small buffer: 1..32 bytes, from the input. */
    decode_and_check(data, size, 1 + (size > 0 ? data[size - 1] % 32 : 0), ref, ref_len);

    /* The raw bytes, as when civetweb already decoded the path. */
    FUZZ_REQUIRE(utf8_valid((const char *)data, size) == ref_utf8_valid(data, size),
                 "utf8_valid disagrees with Unicode Table 3-7");
    FUZZ_REQUIRE(username_valid((const char *)data, size) == ref_username_valid(data, size),
                 "username_valid (raw) disagrees with the username rule");
    rc = id_parse((const char *)data, size, &id);
    ref_rc = ref_id_parse(data, size, &ref_id);
    FUZZ_REQUIRE(rc == ref_rc, "id_parse (raw) disagrees with the id rule");
    if (rc == 0)
        FUZZ_REQUIRE(id == ref_id && id >= 1, "id_parse (raw) value differs");

    free(ref);
    return 0;
}
