/* test_fmt.c: fmt.h's appends: decimals at the int64 limits, fixed-point
 * decimals, and a buffer that stops whole once an append does not fit. */
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "snap/fmt.h"
#include "testing.h"

static const char *dec(int64_t v, char out[FMT_I64_MAX + 1])
{
    size_t n = fmt_i64(out, v);
    out[n] = '\0';
    return out;
}

static void test_decimals(void)
{
    char d[FMT_I64_MAX + 1];

    CHECK_EQ_STR(dec(0, d), "0");
    CHECK_EQ_STR(dec(7, d), "7");
    CHECK_EQ_STR(dec(-42, d), "-42");
    CHECK_EQ_STR(dec(INT64_MAX, d), "9223372036854775807");
    CHECK_EQ_STR(dec(INT64_MIN, d), "-9223372036854775808");
    CHECK_EQ_INT(fmt_u64(d, UINT64_MAX), 20);
}

static void test_fixed_and_two_digits(void)
{
    char out[64];
    struct fmt_buf b = fmt_buf_on(out, sizeof out);

    fmt_fixed(&b, 12345, 3);
    fmt_char(&b, ' ');
    fmt_fixed(&b, 5, 3);
    fmt_char(&b, ' ');
    fmt_fixed(&b, -1500, 3);
    fmt_char(&b, ' ');
    fmt_fixed(&b, 9, 0);
    fmt_char(&b, ' ');
    fmt_2d(&b, 7);
    fmt_2d(&b, 59);
    fmt_char(&b, ' ');
    fmt_hms(&b, &(struct tm){.tm_hour = 9, .tm_min = 5, .tm_sec = 0});
    CHECK(fmt_cstr(&b));
    CHECK_EQ_STR(out, "12.345 0.005 -1.500 9 0759 09:05:00");
}

static void test_full_buffer_stops_whole(void)
{
    char out[8];
    struct fmt_buf b = fmt_buf_on(out, sizeof out);

    fmt_str(&b, "abcd");
    fmt_mem(&b, NULL, 0); /* nothing, from nowhere: fine */
    fmt_str(&b, "efghij"); /* does not fit: nothing of it is written */
    fmt_str(&b, "x");      /* nor anything after */
    CHECK(b.full);
    CHECK_EQ_INT(b.len, 4);
    CHECK(!fmt_cstr(&b));
    CHECK_EQ_STR(out, "abcd");

    b = fmt_buf_on(out, sizeof out);
    fmt_str(&b, "12345678"); /* exactly full: no room left for a NUL */
    CHECK(!b.full);
    CHECK(!fmt_cstr(&b)); /* the last byte gives way to the NUL */
    CHECK_EQ_STR(out, "1234567");
}

int main(void)
{
    RUN(test_decimals);
    RUN(test_fixed_and_two_digits);
    RUN(test_full_buffer_stops_whole);
    return TEST_SUMMARY();
}
