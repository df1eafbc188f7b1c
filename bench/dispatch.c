/*
 * Events per second through the dispatcher across fork: one event with two
 * positional args, a string and an int (its sequence number), from a
 * parent process to its forked child.
 *
 * mbx: the sending process makes a dispatcher (default 1 MiB ring), forks
 * the receiving process and fires; the child connects a handler and runs
 * mbx_handle_until_closed. Two ways to fire: "mbx fire" builds the args
 * (mbx_args_new, mbx_args_add_str, mbx_args_add_int) and calls mbx_fire;
 * "mbx firef" calls mbx_firef(s, EVENT, "si", ...). The sender ends with
 * mbx_sender_close. Peer: ZeroMQ PUSH -> PULL over ipc:// in a temporary
 * directory, default high-water marks, carrying the same MessagePack bytes:
 * per event the sender builds the same args and encodes them with
 * mbx_args_encode, and the receiver decodes them with mbx_args_decode and
 * checks them as the mbx handler does; an empty message is the end. So both
 * sides of both implementations build, encode, decode and check the same
 * args per event.
 *
 * Every trial fires the same number of events, MBX_BENCH_DISPATCH_EVENTS
 * (default 1000000), numbered from 0. The coordinating process never calls
 * mbx or ZeroMQ: for every trial it forks a fresh sending process, which
 * forks its receiving child (see host_common.h; a failing receiver takes its
 * parent down with it, and a receiver whose parent dies is killed). The
 * receiver checks every event (name, argument count and types, the string,
 * and that the numbers arrive once and in order) and reports its count,
 * which must equal what was fired. The clock starts when the sender, after a
 * handshake event has been handled by the receiver, begins to fire, and
 * stops when the receiver has taken the close (the end); both read
 * CLOCK_MONOTONIC. The ZeroMQ sender closes its socket only once the
 * receiver has reported (closing earlier can lose the last messages). The CPU
 * figure is both processes' user + system time per event (set-up included).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include "host_common.h"

/* The event, its string argument, and the number the handshake carries. */
#define EVENT "on_new_user"
#define HELLO_EVENT "hello"
#define ARG_STR "bob@example.org"
#define HELLO_SEQ (-1)

enum impl { RUN_FIRE, RUN_FIREF, RUN_ZMQ, IMPLS };

static const char *const impl_names[IMPLS] = {"mbx fire", "mbx firef",
                                              "zmq ipc PUSH/PULL"};

struct trial {
    enum impl impl;
    uint64_t count;
    char endpoint[128]; /* ZeroMQ */
    int ready[2];       /* pipe: the receiver handled the handshake */
    int recv_result[2]; /* pipe: the receiver reports to the sender */
    int result[2];      /* pipe: the sender reports to the coordinator */
};

struct recv_result {
    uint64_t received;
    int64_t end_ns;
};

struct result {
    uint64_t sent;
    int64_t start_ns;
    struct recv_result r;
};

static uint64_t
event_count(void)
{
    const char *s = getenv("MBX_BENCH_DISPATCH_EVENTS");
    if (!s || !*s)
        return 1000000;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < 1000 || v > 1000000000ull) {
        fprintf(stderr, "MBX_BENCH_DISPATCH_EVENTS must be an integer in "
                        "[1000, 1000000000]\n");
        exit(2);
    }
    return v;
}

/* ---- the args ------------------------------------------------------------
 */

/* New args (ARG_STR, seq), as mbx_firef(..., "si", ARG_STR, seq) builds. */
static mbx_args *
make_args(int64_t seq)
{
    mbx_args *a = mbx_args_new();
    if (!a)
        bench_fail_mbx("mbx_args_new", MBX_ENOMEM);
    int rc = mbx_args_add_str(a, ARG_STR);
    if (rc == 0)
        rc = mbx_args_add_int(a, seq);
    if (rc < 0)
        bench_fail_mbx("mbx_args_add", rc);
    return a;
}

/* Checks received args: exactly (ARG_STR, expected). */
static void
check_args(const mbx_args *a, int64_t expected)
{
    const char *s;
    size_t len;
    int64_t seq;
    if (mbx_args_len(a) != 2 || mbx_args_kw_len(a) != 0)
        bench_fail_count("argument count", 2, mbx_args_len(a));
    int rc = mbx_args_get_str(a, 0, &s, &len);
    if (rc < 0)
        bench_fail_mbx("mbx_args_get_str", rc);
    if (len != sizeof ARG_STR - 1 || memcmp(s, ARG_STR, len) != 0) {
        fprintf(stderr, "bench: event string: expected \"%s\", got \"%.*s\"\n",
                ARG_STR, (int)len, s);
        exit(2);
    }
    if ((rc = mbx_args_get_int(a, 1, &seq)) < 0)
        bench_fail_mbx("mbx_args_get_int", rc);
    if (seq != expected)
        bench_fail_count("event number", (uint64_t)expected, (uint64_t)seq);
}

/* ---- the receiver (the forked child) --------------------------------------
 */

/* The receiver failed (it leaves through exit(), never _exit): its parent,
 * which may be blocked sending, goes too, so that the trial fails now. */
static pid_t sender_pid;

static void
kill_sender(void)
{
    if (sender_pid > 1 && getppid() == sender_pid)
        kill(sender_pid, SIGKILL);
}

static void
signal_ready(struct trial *t)
{
    host_write_all(t->ready[1], "r", 1);
}

struct handler_ctx {
    int64_t expected;
    bool hello;
};

static int
on_hello(const char *event, const mbx_args *args, void *ctx)
{
    (void)event;
    check_args(args, HELLO_SEQ);
    ((struct handler_ctx *)ctx)->hello = true;
    return 0;
}

static int
on_event(const char *event, const mbx_args *args, void *ctx)
{
    struct handler_ctx *c = ctx;
    if (strcmp(event, EVENT) != 0) {
        fprintf(stderr, "bench: event name: expected %s, got %s\n", EVENT,
                event);
        exit(2);
    }
    check_args(args, c->expected);
    c->expected++;
    return 0;
}

/* Reports to the sender: the end came at end_ns, after `received`
 * events. */
static void
report(struct trial *t, uint64_t received, int64_t end_ns)
{
    struct recv_result r = {received, end_ns};
    host_write_all(t->recv_result[1], &r, sizeof r);
}

static void
receive_mbx(struct trial *t, mbx_dispatcher *d)
{
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct handler_ctx c = {0};
    int rc = mbx_connect(r, HELLO_EVENT, on_hello, &c);
    if (rc == 0)
        rc = mbx_connect(r, EVENT, on_event, &c);
    if (rc < 0)
        bench_fail_mbx("mbx_connect", rc);
    if ((rc = mbx_handle_next(r, -1)) < 0)
        bench_fail_mbx("mbx_handle_next (handshake)", rc);
    if (!c.hello) {
        fprintf(stderr, "bench: the first event was not the handshake\n");
        exit(2);
    }
    signal_ready(t);
    if ((rc = mbx_handle_until_closed(r)) != 0)
        bench_fail_mbx("mbx_handle_until_closed", rc);
    int64_t end = bench_now_ns();
    mbx_receiver_stats st;
    if ((rc = mbx_receiver_stat(r, &st)) < 0)
        bench_fail_mbx("mbx_receiver_stat", rc);
    if (st.handled != (uint64_t)c.expected + 1 || st.ignored || st.dropped) {
        fprintf(stderr,
                "bench: receiver counters: handled %llu (expected %llu), "
                "ignored %llu, dropped %llu\n",
                (unsigned long long)st.handled,
                (unsigned long long)c.expected + 1,
                (unsigned long long)st.ignored, (unsigned long long)st.dropped);
        exit(2);
    }
    report(t, (uint64_t)c.expected, end);
}

/* Receives one ZeroMQ message into buf; returns its length (whole). */
static size_t
zmq_recv_checked(void *s, void *buf, size_t cap)
{
    int n = zmq_recv(s, buf, cap, 0);
    bench_check_zmq(n, "zmq_recv");
    if ((size_t)n > cap)
        bench_fail_count("message size (at most)", cap, (uint64_t)n);
    return (size_t)n;
}

/* Decodes and checks one event's MessagePack bytes, as the dispatcher and
 * the mbx handler do. */
static void
decode_check(const void *buf, size_t len, int64_t expected)
{
    mbx_args *a;
    int rc = mbx_args_decode(&a, buf, len);
    if (rc < 0)
        bench_fail_mbx("mbx_args_decode", rc);
    check_args(a, expected);
    mbx_args_free(a);
}

static void
receive_zmq(struct trial *t)
{
    void *s = host_zmq_socket(ZMQ_PULL);
    bench_check_zmq(zmq_bind(s, t->endpoint), "zmq_bind");
    unsigned char buf[256];
    decode_check(buf, zmq_recv_checked(s, buf, sizeof buf), HELLO_SEQ);
    signal_ready(t);
    int64_t expected = 0;
    for (;;) {
        size_t n = zmq_recv_checked(s, buf, sizeof buf);
        if (n == 0)
            break; /* the end */
        decode_check(buf, n, expected);
        expected++;
    }
    /* Reported before closing: the sender keeps its socket open until
     * then (see send_zmq). */
    report(t, (uint64_t)expected, bench_now_ns());
    host_zmq_finish(s);
}

struct receiver_arg {
    struct trial *t;
    mbx_dispatcher *d;
    pid_t parent;
};

static void
receiver(void *arg)
{
    struct receiver_arg *a = arg;
    prctl(PR_SET_NAME, "dispatch-recv"); /* for profilers */
    /* Die with the sender; go with it if this process fails. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != a->parent)
        exit(2);
    sender_pid = a->parent;
    atexit(kill_sender);
    bench_pin(1);
    if (a->t->impl == RUN_ZMQ)
        receive_zmq(a->t);
    else
        receive_mbx(a->t, a->d);
}

/* ---- the sender (the parent) ----------------------------------------------
 */

static void
wait_ready(struct trial *t)
{
    char c;
    if (host_read_all(t->ready[0], &c, 1, "the receiver's handshake") < 0)
        exit(2);
}

static void
fire_or_fail(int rc, const char *what)
{
    if (rc < 0)
        bench_fail_mbx(what, rc);
}

/* Reads the receiver's report into *r; exits if it never came. */
static void
read_report(struct trial *t, struct recv_result *r)
{
    if (host_read_all(t->recv_result[0], r, sizeof *r,
                      "the receiver's result") < 0)
        exit(2);
}

static int64_t
send_mbx(struct trial *t, mbx_dispatcher *d, struct recv_result *r)
{
    mbx_sender *s = mbx_dispatcher_sender(d);
    fire_or_fail(mbx_firef(s, HELLO_EVENT, "si", ARG_STR, (int64_t)HELLO_SEQ),
                 "mbx_firef (handshake)");
    wait_ready(t);
    int64_t start = bench_now_ns();
    int64_t count = (int64_t)t->count;
    if (t->impl == RUN_FIRE) {
        for (int64_t seq = 0; seq < count; seq++) {
            mbx_args *a = make_args(seq);
            fire_or_fail(mbx_fire(s, EVENT, a), "mbx_fire");
            mbx_args_free(a);
        }
    } else {
        for (int64_t seq = 0; seq < count; seq++)
            fire_or_fail(mbx_firef(s, EVENT, "si", ARG_STR, seq), "mbx_firef");
    }
    fire_or_fail(mbx_sender_close(s), "mbx_sender_close");
    read_report(t, r);
    return start;
}

/* Builds and encodes the args of event `seq` and sends their bytes. */
static void
zmq_send_event(void *s, int64_t seq)
{
    mbx_args *a = make_args(seq);
    void *body;
    size_t len;
    int rc = mbx_args_encode(a, &body, &len);
    if (rc < 0)
        bench_fail_mbx("mbx_args_encode", rc);
    bench_check_zmq(zmq_send(s, body, len, 0), "zmq_send");
    free(body);
    mbx_args_free(a);
}

static int64_t
send_zmq(struct trial *t, struct recv_result *r)
{
    void *s = host_zmq_socket(ZMQ_PUSH);
    bench_check_zmq(zmq_connect(s, t->endpoint), "zmq_connect");
    /* PUSH waits for a connected peer before the first send goes. */
    zmq_send_event(s, HELLO_SEQ);
    wait_ready(t);
    int64_t start = bench_now_ns();
    for (int64_t seq = 0; seq < (int64_t)t->count; seq++)
        zmq_send_event(s, seq);
    bench_check_zmq(zmq_send(s, "", 0, 0), "zmq_send (end)");
    /* Closing with messages still queued may lose the last ones even with a
     * linger (libzmq 4.3 over ipc: the receiver then waits for ever), so
     * the socket stays open until the receiver says it got the end. */
    read_report(t, r);
    host_zmq_finish(s);
    return start;
}

/* Waits for the receiving child; exits with status 2, saying why, if it
 * failed. */
static void
wait_child(pid_t pid, const char *what)
{
    int status;
    pid_t got;
    do
        got = waitpid(pid, &status, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        fprintf(stderr, "bench: waitpid: %s\n", strerror(errno));
        exit(2);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    if (WIFEXITED(status))
        fprintf(stderr, "bench: %s exited with status %d\n", what,
                WEXITSTATUS(status));
    else if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        fprintf(stderr, "bench: %s did not finish within %d s (hung): killed\n",
                what, HOST_CHILD_LIMIT_S);
    else if (WIFSIGNALED(status))
        fprintf(stderr, "bench: %s killed by signal %d (%s)\n", what,
                WTERMSIG(status), strsignal(WTERMSIG(status)));
    exit(2);
}

static void
sender(void *arg)
{
    struct trial *t = arg;
    prctl(PR_SET_NAME, "dispatch-send"); /* for profilers */
    host_pipe(t->ready);
    host_pipe(t->recv_result);
    /* mbx: the dispatcher is made before fork, so both processes hold it.
     * ZeroMQ: the context is made after fork, in each process. */
    mbx_dispatcher *d = NULL;
    if (t->impl != RUN_ZMQ) {
        int rc = mbx_dispatcher_new(&d, NULL);
        if (rc < 0)
            bench_fail_mbx("mbx_dispatcher_new", rc);
    }
    struct receiver_arg ra = {t, d, getpid()};
    int recv_close[] = {t->ready[0], t->recv_result[0], t->result[1]};
    pid_t child = host_fork(receiver, &ra, recv_close, 3);
    close(t->ready[1]);
    close(t->recv_result[1]);
    bench_pin(0);

    struct result res = {.sent = t->count};
    res.start_ns =
        t->impl == RUN_ZMQ ? send_zmq(t, &res.r) : send_mbx(t, d, &res.r);
    /* Waited for, the child's CPU time counts in this process's. */
    wait_child(child, "receiver");
    mbx_dispatcher_free(d);
    host_write_all(t->result[1], &res, sizeof res);
}

/* ---- the trial ----------------------------------------------------------- */

static int64_t
rusage_ns(const struct rusage *ru)
{
    return ((int64_t)ru->ru_utime.tv_sec + ru->ru_stime.tv_sec) * 1000000000 +
           ((int64_t)ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) * 1000;
}

/* Runs one trial in a new sender process and its receiving child; returns
 * events per second and CPU ns per event. */
static void
run_trial(enum impl impl, int number, uint64_t count, double *rate,
          double *cpu_per_event)
{
    struct trial t = {.impl = impl, .count = count};
    snprintf(t.endpoint, sizeof t.endpoint, "ipc://%s/dispatch-%d",
             host_ipc_dir(), number);
    host_pipe(t.result);
    int sender_close[] = {t.result[0]};
    pid_t pid = host_fork(sender, &t, sender_close, 1);
    close(t.result[1]);

    int status;
    struct rusage ru;
    pid_t got;
    do
        got = wait4(pid, &status, 0, &ru);
    while (got < 0 && errno == EINTR);
    if (got < 0) {
        fprintf(stderr, "bench: wait4: %s\n", strerror(errno));
        exit(2);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        if (WIFEXITED(status))
            fprintf(stderr, "bench: sender (%s) exited with status %d\n",
                    impl_names[impl], WEXITSTATUS(status));
        else
            fprintf(stderr, "bench: sender (%s) killed by signal %d (%s)\n",
                    impl_names[impl], WTERMSIG(status),
                    strsignal(WTERMSIG(status)));
        exit(2);
    }
    struct result res;
    if (host_read_all(t.result[0], &res, sizeof res, "the sender's result") < 0)
        exit(2);
    close(t.result[0]);
    if (res.r.received != res.sent)
        bench_fail_count("events received", res.sent, res.r.received);
    *rate = (double)res.sent * 1e9 / (double)(res.r.end_ns - res.start_ns);
    /* wait4 reports the sender's time and its waited-for child's. */
    *cpu_per_event = (double)rusage_ns(&ru) / (double)res.sent;
}

int
main(void)
{
    host_bench_init();
    int rounds = bench_rounds(), number = 0;
    uint64_t count = event_count();
    double rate[IMPLS][BENCH_MAX_ROUNDS], cpu[IMPLS][BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32];

    bench_heading("dispatcher events across fork, args (string, int) "
                  "(rate; CPU per event)");
    printf("  %llu events per trial, args (\"%s\", seq) = MessagePack both "
           "ways\n",
           (unsigned long long)count, ARG_STR);
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        /* Alternate the order so no implementation always runs first. */
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            run_trial(i, number++, count, &rate[i][r], &cpu[i][r]);
        }
        for (int i = 0; i < IMPLS; i++)
            printf("  round %-3d %-18s %-12s %s/event\n", r + 1, impl_names[i],
                   bench_fmt_rate(a, rate[i][r]), bench_fmt_ns(b, cpu[i][r]));
        fflush(stdout);
    }
    bench_load_report();
    double fr = bench_median(rate[RUN_FIRE], rounds);
    double ffr = bench_median(rate[RUN_FIREF], rounds);
    double zr = bench_median(rate[RUN_ZMQ], rounds);
    printf("  median CPU per event: mbx fire %s, mbx firef %s, zmq %s\n",
           bench_fmt_ns(a, bench_median(cpu[RUN_FIRE], rounds)),
           bench_fmt_ns(b, bench_median(cpu[RUN_FIREF], rounds)),
           bench_fmt_ns(c, bench_median(cpu[RUN_ZMQ], rounds)));
    bench_summary("dispatcher events (str, int) across fork, mbx_fire "
                  "(peer: zmq ipc)",
                  bench_fmt_rate(a, fr), bench_fmt_rate(b, zr),
                  bench_fmt_factor(c, fr / zr), ">= 2x zmq",
                  fr / zr >= 2 ? BENCH_MET_YES : BENCH_MET_NO);
    bench_summary("dispatcher events (str, int) across fork, mbx_firef "
                  "(peer: zmq ipc)",
                  bench_fmt_rate(a, ffr), bench_fmt_rate(b, zr),
                  bench_fmt_factor(c, ffr / zr), ">= 2x zmq",
                  ffr / zr >= 2 ? BENCH_MET_YES : BENCH_MET_NO);
    return 0;
}
