/* The test runner behind harness.h: one forked child per test. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TH_MAX_TESTS 512
#define TH_FAIL_EXIT 99

struct th_test {
    const char *name;
    th_test_fn fn;
};

static struct th_test th_tests[TH_MAX_TESTS];
static int th_count;
static int th_failures; /* failures of the test running in this child */

void
th_register(const char *name, th_test_fn fn)
{
    if (th_count == TH_MAX_TESTS) {
        fprintf(stderr, "harness: too many tests\n");
        exit(2);
    }
    th_tests[th_count].name = name;
    th_tests[th_count].fn = fn;
    th_count++;
}

void
th_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "  %s:%d: CHECK failed: %s\n", file, line, expr);
    th_failures++;
}

void
th_fail_eq(const char *file, int line, const char *a_expr, const char *b_expr,
           long long a, long long b)
{
    fprintf(stderr, "  %s:%d: %s == %s failed: %lld != %lld\n", file, line,
            a_expr, b_expr, a, b);
    th_failures++;
}

void
th_abort_test(void)
{
    fflush(NULL);
    _exit(TH_FAIL_EXIT);
}

int64_t
th_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
th_now_ms(void)
{
    return th_now_ns() / 1000000;
}

long
th_scaled(long n)
{
    const char *s = getenv("MBX_TEST_SCALE");
    long div = s ? atol(s) : 1;
    if (div < 1)
        div = 1;
    return n / div > 0 ? n / div : 1;
}

char *
th_unique(char *buf, size_t size, const char *base)
{
    snprintf(buf, size, "t%ld-%s", (long)getpid(), base);
    return buf;
}

static int
th_timeout_s(void)
{
    const char *s = getenv("MBX_TEST_TIMEOUT");
    int t = s ? atoi(s) : 120;
    return t > 0 ? t : 120;
}

/* Runs one test in a child; returns 1 if it passed. */
static int
th_run_one(const struct th_test *t)
{
    int64_t start = th_now_ms();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        alarm((unsigned)th_timeout_s());
        th_failures = 0;
        t->fn();
        fflush(NULL);
        _exit(th_failures ? TH_FAIL_EXIT : 0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ;
    int64_t took = th_now_ms() - start;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("PASS %s (%lld ms)\n", t->name, (long long)took);
        return 1;
    }
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        printf("FAIL %s: timed out after %d s\n", t->name, th_timeout_s());
    else if (WIFSIGNALED(status))
        printf("FAIL %s: killed by signal %d (%s)\n", t->name, WTERMSIG(status),
               strsignal(WTERMSIG(status)));
    else
        printf("FAIL %s: exit status %d\n", t->name, WEXITSTATUS(status));
    return 0;
}

int
main(int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < th_count; i++) {
        if (argc > 1 && strcmp(argv[1], th_tests[i].name) != 0)
            continue;
        if (th_run_one(&th_tests[i]))
            passed++;
        else
            failed++;
    }
    if (passed + failed == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

void
th_helper_program(char *path, size_t size, const char *env, const char *built,
                  const char *name)
{
    const char *given = getenv(env);
    if (!given)
        given = built;
    if (given) {
        snprintf(path, size, "%s", given);
    } else {
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        REQUIRE(n > 0);
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        REQUIRE(slash != NULL);
        *slash = '\0';
        int k = snprintf(path, size, "%s/%s", self, name);
        REQUIRE(k > 0 && (size_t)k < size);
    }
    if (access(path, X_OK) != 0) {
        fprintf(stderr,
                "  the helper program %s is missing (%s): build the %s "
                "target or set %s\n",
                path, strerror(errno), name, env);
        REQUIRE(!"helper program found");
    }
}
