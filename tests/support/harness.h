/*
 * The mbx test harness: each TEST runs in a forked child, so a crash, an
 * abort or a hang names the test that did it, and the runner ends with one
 * "N passed, N failed" line.
 *
 *   TEST(name) { CHECK(x == 1); REQUIRE(p != NULL); CHECK_EQ(a, b); }
 *
 * CHECK records a failure and goes on; REQUIRE records it and ends the test.
 * A test that runs longer than its time limit (MBX_TEST_TIMEOUT seconds,
 * default 120) is killed and counted as failed. Run one test by giving its
 * name as the first argument.
 */
#ifndef MBX_TEST_HARNESS_H
#define MBX_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

typedef void (*th_test_fn)(void);

/* Adds a test to the run list; called by TEST before main. */
void th_register(const char *name, th_test_fn fn);

/* Records a failed check at file:line with the expression's text. */
void th_fail(const char *file, int line, const char *expr);

/* Records a failed equality with both values shown. */
void th_fail_eq(const char *file, int line, const char *a_expr,
                const char *b_expr, long long a, long long b);

/* Ends the current test now (after a failed REQUIRE). */
_Noreturn void th_abort_test(void);

/* Milliseconds on the monotonic clock. */
int64_t th_now_ms(void);

/* Nanoseconds on the monotonic clock. */
int64_t th_now_ns(void);

/* A scale for loop counts: 1 normally, smaller under sanitizers
 * (MBX_TEST_SCALE divides; e.g. MBX_TEST_SCALE=10 runs a tenth). */
long th_scaled(long n);

/* A unique name prefix for this test process: "t<pid>-" so parallel test
 * runs never share names. Writes into buf and returns it. */
char *th_unique(char *buf, size_t size, const char *base);

/* The path of a helper program a test starts by fork+exec, into path (size
 * bytes): $env if set, else `built` (the path the build passed, or NULL),
 * else `name` beside this test program. Fails the test, saying which
 * target to build, when that is not an executable. */
void th_helper_program(char *path, size_t size, const char *env,
                       const char *built, const char *name);

#define TEST(name)                                                             \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void th_reg_##name(void)               \
    {                                                                          \
        th_register(#name, test_##name);                                       \
    }                                                                          \
    static void test_##name(void)

#define CHECK(expr)                                                            \
    do {                                                                       \
        if (!(expr))                                                           \
            th_fail(__FILE__, __LINE__, #expr);                                \
    } while (0)

#define REQUIRE(expr)                                                          \
    do {                                                                       \
        if (!(expr)) {                                                         \
            th_fail(__FILE__, __LINE__, #expr);                                \
            th_abort_test();                                                   \
        }                                                                      \
    } while (0)

#define CHECK_EQ(a, b)                                                         \
    do {                                                                       \
        long long th_a_ = (long long)(a), th_b_ = (long long)(b);              \
        if (th_a_ != th_b_)                                                    \
            th_fail_eq(__FILE__, __LINE__, #a, #b, th_a_, th_b_);              \
    } while (0)

#define REQUIRE_EQ(a, b)                                                       \
    do {                                                                       \
        long long th_a_ = (long long)(a), th_b_ = (long long)(b);              \
        if (th_a_ != th_b_) {                                                  \
            th_fail_eq(__FILE__, __LINE__, #a, #b, th_a_, th_b_);              \
            th_abort_test();                                                   \
        }                                                                      \
    } while (0)

/* Checks in a child: print where, then exit with status 1. */
#define CREQUIRE(expr)                                                         \
    do {                                                                       \
        if (!(expr)) {                                                         \
            fprintf(stderr, "  child %ld: %s:%d: failed: %s\n",                \
                    (long)getpid(), __FILE__, __LINE__, #expr);                \
            fflush(stderr);                                                    \
            _exit(1);                                                          \
        }                                                                      \
    } while (0)

#define CREQUIRE_EQ(a, b)                                                      \
    do {                                                                       \
        long long c_a_ = (long long)(a), c_b_ = (long long)(b);                \
        if (c_a_ != c_b_) {                                                    \
            fprintf(stderr,                                                    \
                    "  child %ld: %s:%d: %s == %s failed: %lld != %lld\n",     \
                    (long)getpid(), __FILE__, __LINE__, #a, #b, c_a_, c_b_);   \
            fflush(stderr);                                                    \
            _exit(1);                                                          \
        }                                                                      \
    } while (0)

#endif
