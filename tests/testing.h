/* testing.h: the few macros our C test binaries share. A test is a
 * function; CHECK records a failure with file:line and goes on; every
 * binary ends with the line "N passed, N failed" and exits non-zero if
 * anything failed. Header-only so each test binary stays self-contained. */
#ifndef SNAP_TESTING_H
#define SNAP_TESTING_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed, t_cur_failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            t_cur_failed = 1;                                                \
        }                                                                    \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                        \
    do {                                                                          \
        long long _a = (long long)(a), _b = (long long)(b);                       \
        if (_a != _b) {                                                           \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, _a, _b);                                    \
            t_cur_failed = 1;                                                     \
        }                                                                         \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                          \
    do {                                                                            \
        const char *_a = (a), *_b = (b);                                            \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                    \
            fprintf(stderr, "  FAIL %s:%d: %s == %s (\"%s\" != \"%s\")\n", __FILE__, \
                    __LINE__, #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");      \
            t_cur_failed = 1;                                                       \
        }                                                                           \
    } while (0)

#define RUN(fn)                                              \
    do {                                                     \
        t_cur_failed = 0;                                    \
        fn();                                                \
        if (t_cur_failed) {                                  \
            t_failed++;                                      \
            fprintf(stderr, "not ok %s\n", #fn);             \
        } else {                                             \
            t_passed++;                                      \
            fprintf(stderr, "ok %s\n", #fn);                 \
        }                                                    \
    } while (0)

#define TEST_SUMMARY()                                        \
    (printf("%d passed, %d failed\n", t_passed, t_failed),    \
     fflush(stdout), t_failed == 0 && t_passed > 0 ? 0 : 1)

#endif
