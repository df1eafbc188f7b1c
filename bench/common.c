/* Shared helpers for the benchmarks (see common.h). */
#include "common.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

static int
env_int(const char *name, int fallback, int lo, int hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "%s must be an integer in [%d, %d]\n", name, lo, hi);
        exit(2);
    }
    return (int)v;
}

int
bench_rounds(void)
{
    return env_int("MBX_BENCH_ROUNDS", 5, 1, BENCH_MAX_ROUNDS);
}

int64_t
bench_trial_ns(void)
{
    return (int64_t)env_int("MBX_BENCH_TRIAL_MS", 300, 10, 60000) * 1000000;
}

static int64_t
clock_ns(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
bench_now_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

int64_t
bench_thread_cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

int64_t
bench_process_cpu_ns(void)
{
    return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

void
bench_sleep_ns(int64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000), (long)(ns % 1000000000)};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

void
bench_pin(int cpu)
{
    if (env_int("MBX_BENCH_PIN", 0, 0, 1) == 0)
        return;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % (n > 0 ? (int)n : 1), &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Busy and steal time of the whole machine so far, in clock ticks. */
static void
machine_ticks(double *busy, double *steal)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    *busy = *steal = 0;
    if (!f)
        return;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
               &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
        /* user nice system idle iowait irq softirq steal */
        *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]);
        *steal = (double)v[7];
    }
    fclose(f);
}

static double load_busy0, load_steal0;
static int64_t load_wall0, load_cpu0;

/* CPU time of this process and of its children that have been waited for
 * (the host benchmarks measure in child processes). */
static int64_t
own_cpu_ns(void)
{
    struct rusage ru;
    int64_t ns = bench_process_cpu_ns();
    if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
        ns += ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000 +
              ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000;
    return ns;
}

void
bench_load_start(void)
{
    machine_ticks(&load_busy0, &load_steal0);
    load_wall0 = bench_now_ns();
    load_cpu0 = own_cpu_ns();
}

void
bench_load_report(void)
{
    double busy, steal, hz = (double)sysconf(_SC_CLK_TCK);
    machine_ticks(&busy, &steal);
    double wall = (double)(bench_now_ns() - load_wall0) / 1e9;
    double ours = (double)(own_cpu_ns() - load_cpu0) / 1e9;
    if (wall <= 0 || hz <= 0)
        return;
    double others = ((busy - load_busy0) / hz - ours) / wall;
    printf("  (meanwhile: this benchmark used %.2f CPUs, other processes "
           "%.2f, steal %.2f)\n",
           ours / wall, others > 0 ? others : 0,
           (steal - load_steal0) / hz / wall);
    fflush(stdout);
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double
bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void
bench_fail_mbx(const char *what, int rc)
{
    fprintf(stderr, "bench: %s: %s (%s)\n", what, mbx_strerror(rc),
            mbx_strerror_name(rc));
    exit(2);
}

void
bench_check_zmq(int rc, const char *what)
{
    if (rc >= 0)
        return;
    fprintf(stderr, "bench: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(2);
}

void
bench_fail_count(const char *what, uint64_t expected, uint64_t got)
{
    fprintf(stderr, "bench: %s: expected %llu, got %llu\n", what,
            (unsigned long long)expected, (unsigned long long)got);
    exit(2);
}

void
bench_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);
    if (rc != 0) {
        fprintf(stderr, "bench: pthread_create: %s\n", strerror(rc));
        exit(2);
    }
}

void
bench_thread_join(pthread_t t)
{
    pthread_join(t, NULL);
}

/* ---- ZeroMQ ------------------------------------------------------------- */

static void *zmq_ctx;
static pthread_once_t zmq_ctx_once = PTHREAD_ONCE_INIT;

static void
zmq_ctx_make(void)
{
    zmq_ctx = zmq_ctx_new();
    if (!zmq_ctx)
        bench_check_zmq(-1, "zmq_ctx_new");
}

void *
bench_zmq_ctx(void)
{
    pthread_once(&zmq_ctx_once, zmq_ctx_make);
    return zmq_ctx;
}

static void *
zmq_socket_new(int type)
{
    void *s = zmq_socket(bench_zmq_ctx(), type);
    if (!s)
        bench_check_zmq(-1, "zmq_socket");
    int zero = 0;
    bench_check_zmq(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero),
                    "zmq_setsockopt(ZMQ_LINGER)");
    return s;
}

void
bench_zmq_link(int bound_type, void **bound, int connected_type,
               void **connected)
{
    static atomic_uint next_endpoint;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://bench-%u",
             atomic_fetch_add(&next_endpoint, 1));
    *bound = zmq_socket_new(bound_type);
    bench_check_zmq(zmq_bind(*bound, ep), "zmq_bind");
    *connected = zmq_socket_new(connected_type);
    bench_check_zmq(zmq_connect(*connected, ep), "zmq_connect");
}

void
bench_zmq_close(void *sock)
{
    zmq_close(sock);
}

/* ---- messages ----------------------------------------------------------- */

void
bench_fill(unsigned char *buf, uint64_t seq)
{
    memset(buf + sizeof seq, 0x5a, BENCH_MSG_SIZE - sizeof seq);
    memcpy(buf, &seq, sizeof seq);
}

uint64_t
bench_seq_of(const void *body)
{
    uint64_t seq;
    memcpy(&seq, body, sizeof seq);
    return seq;
}

mbx_msg *
bench_msg(uint64_t seq)
{
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, seq);
    mbx_msg *m = mbx_msg_new(NULL, buf, sizeof buf);
    if (!m)
        bench_fail_mbx("mbx_msg_new", MBX_ENOMEM);
    return m;
}

void
bench_send(mbx_id to, mbx_msg **m)
{
    int rc = mbx_send(to, m, -1);
    if (rc < 0)
        bench_fail_mbx("mbx_send", rc);
}

mbx_msg *
bench_recv(mbx_id self)
{
    mbx_msg *m;
    int rc = mbx_recv(self, &m, -1);
    if (rc < 0)
        bench_fail_mbx("mbx_recv", rc);
    return m;
}

uint64_t
bench_recv_seq(mbx_id self)
{
    mbx_msg *m = bench_recv(self);
    uint64_t seq = bench_seq_of(mbx_msg_body(m, NULL));
    mbx_msg_free(m);
    return seq;
}

uint64_t
bench_zmq_round_trips(void *sock, int64_t start, int64_t trial_ns,
                      const char *what)
{
    unsigned char buf[BENCH_MSG_SIZE];
    uint64_t n = 0;
    for (;; n++) {
        if ((n & 63) == 0 && bench_now_ns() - start >= trial_ns)
            break;
        bench_fill(buf, n);
        bench_check_zmq(zmq_send(sock, buf, sizeof buf, 0), "zmq_send");
        bench_check_zmq(zmq_recv(sock, buf, sizeof buf, 0), "zmq_recv");
        if (bench_seq_of(buf) != n)
            bench_fail_count(what, n, bench_seq_of(buf));
    }
    bench_fill(buf, BENCH_END);
    bench_check_zmq(zmq_send(sock, buf, sizeof buf, 0), "zmq_send");
    return n;
}

/* ---- output ------------------------------------------------------------- */

char *
bench_fmt_rate(char *buf, double per_s)
{
    if (per_s >= 1e6)
        snprintf(buf, 32, "%.2f M/s", per_s / 1e6);
    else if (per_s >= 1e3)
        snprintf(buf, 32, "%.1f k/s", per_s / 1e3);
    else
        snprintf(buf, 32, "%.0f /s", per_s);
    return buf;
}

char *
bench_fmt_ns(char *buf, double ns)
{
    if (ns >= 1e6)
        snprintf(buf, 32, "%.2f ms", ns / 1e6);
    else if (ns >= 1e4)
        snprintf(buf, 32, "%.1f us", ns / 1e3);
    else if (ns >= 1e3)
        snprintf(buf, 32, "%.2f us", ns / 1e3);
    else
        snprintf(buf, 32, "%.0f ns", ns);
    return buf;
}

char *
bench_fmt_bytes(char *buf, double bytes)
{
    if (bytes >= 10 * 1048576.0)
        snprintf(buf, 32, "%.0f MiB", bytes / 1048576.0);
    else if (bytes >= 10 * 1024.0)
        snprintf(buf, 32, "%.0f KiB", bytes / 1024.0);
    else
        snprintf(buf, 32, "%.0f B", bytes);
    return buf;
}

char *
bench_fmt_factor(char *buf, double x)
{
    snprintf(buf, 32, x >= 10 ? "%.0fx" : "%.2fx", x);
    return buf;
}

void
bench_heading(const char *title)
{
    printf("\n== %s ==\n", title);
    fflush(stdout);
}

void
bench_round(int round, const char *mbx, const char *peer)
{
    printf("  round %-3d mbx %-14s peer %s\n", round, mbx, peer);
    fflush(stdout);
}

void
bench_summary(const char *name, const char *mbx, const char *peer,
              const char *ratio, const char *target, enum bench_met met)
{
    const char *m = met == BENCH_MET_YES  ? "yes"
                    : met == BENCH_MET_NO ? "NO"
                                          : "-";
    printf("  => %s: mbx %s, peer %s, ratio %s (target %s: %s)\n", name, mbx,
           peer, ratio, target, m);
    fflush(stdout);
    const char *path = getenv("MBX_BENCH_SUMMARY");
    if (!path || !*path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", name, mbx, peer, ratio, target, m);
    fclose(f);
}
