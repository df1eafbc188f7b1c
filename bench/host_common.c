/* Helpers of the host-scope benchmarks (see host_common.h). */
#include "host_common.h"

#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

static char runtime_dir[64] = "/tmp/mbx-bench-XXXXXX";
static char ipc_dir[64] = "/tmp/mbx-bench-ipc-XXXXXX";
static pid_t owner_pid;

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void
remove_dirs(void)
{
    /* Children leave through exit() too when they fail: only the process
     * that made the directories removes them. */
    if (getpid() != owner_pid)
        return;
    nftw(runtime_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    nftw(ipc_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
host_bench_init(void)
{
    if (!mkdtemp(runtime_dir) || !mkdtemp(ipc_dir)) {
        fprintf(stderr, "bench: mkdtemp: %s\n", strerror(errno));
        exit(2);
    }
    owner_pid = getpid();
    atexit(remove_dirs);
    if (setenv("MBX_RUNTIME_DIR", runtime_dir, 1) != 0) {
        fprintf(stderr, "bench: setenv: %s\n", strerror(errno));
        exit(2);
    }
}

const char *
host_ipc_dir(void)
{
    return ipc_dir;
}

pid_t
host_fork(void (*fn)(void *), void *arg, const int *close_fds, int n)
{
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "bench: fork: %s\n", strerror(errno));
        exit(2);
    }
    if (pid > 0)
        return pid;
    for (int i = 0; i < n; i++)
        if (close_fds[i] >= 0)
            close(close_fds[i]);
    alarm(HOST_CHILD_LIMIT_S);
    fn(arg);
    _exit(0);
}

static int64_t
rusage_ns(const struct rusage *ru)
{
    return ((int64_t)ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1000;
}

static void
describe_failure(const char *what, int status)
{
    if (WIFEXITED(status))
        fprintf(stderr, "bench: %s exited with status %d\n", what,
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "bench: %s did not finish within %d s (hung): killed\n",
                what, HOST_CHILD_LIMIT_S);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "bench: %s killed by signal %d (%s)\n", what,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
}

void
host_wait_pair(pid_t a, const char *a_what, pid_t b, const char *b_what,
               int64_t *cpu_ns)
{
    for (int left = 2; left > 0; left--) {
        int status;
        struct rusage ru;
        pid_t pid;
        do
            pid = wait4(-1, &status, 0, &ru);
        while (pid < 0 && errno == EINTR);
        if (pid < 0) {
            fprintf(stderr, "bench: wait4: %s\n", strerror(errno));
            exit(2);
        }
        if (pid != a && pid != b)
            continue; /* not one of ours; cannot happen */
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            describe_failure(pid == a ? a_what : b_what, status);
            pid_t other = pid == a ? b : a;
            if (left == 2) {
                kill(other, SIGKILL);
                waitpid(other, NULL, 0);
            }
            exit(2);
        }
        if (cpu_ns)
            *cpu_ns += rusage_ns(&ru);
        if (pid == a)
            a = -2;
        else
            b = -2;
    }
}

void
host_pipe(int fds[2])
{
    if (pipe(fds) != 0) {
        fprintf(stderr, "bench: pipe: %s\n", strerror(errno));
        exit(2);
    }
}

void
host_write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len > 0) {
        ssize_t n = write(fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "bench: write: %s\n", strerror(errno));
            exit(2);
        }
        c += n;
        len -= (size_t)n;
    }
}

int
host_read_all(int fd, void *p, size_t len, const char *what)
{
    char *c = p;
    while (len > 0) {
        ssize_t n = read(fd, c, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "bench: reading %s: %s\n", what,
                    n == 0 ? "the process ended without reporting"
                           : strerror(errno));
            return -1;
        }
        c += n;
        len -= (size_t)n;
    }
    return 0;
}

void *
host_zmq_socket(int type)
{
    void *s = zmq_socket(bench_zmq_ctx(), type);
    if (!s)
        bench_check_zmq(-1, "zmq_socket");
    int linger = 5000;
    bench_check_zmq(zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger),
                    "zmq_setsockopt(ZMQ_LINGER)");
    return s;
}

void
host_zmq_finish(void *sock)
{
    zmq_close(sock);
    zmq_ctx_term(bench_zmq_ctx());
}

void
host_send_to_waiting(const char *address, mbx_msg **m)
{
    int64_t deadline =
        bench_now_ns() + (int64_t)HOST_CHILD_LIMIT_S * 1000000000;
    for (;;) {
        int rc = mbx_send_to(address, m, -1);
        if (rc == 0)
            return;
        if (rc != MBX_ENOENT || bench_now_ns() > deadline)
            bench_fail_mbx("mbx_send_to", rc);
        bench_sleep_ns(100000);
    }
}
