/*
 * 1 -> 1 throughput of 64-byte messages from one process to another.
 *
 * mbx: the consumer owns a mailbox registered under a host name
 * ("//./tp-N", default 1 MiB ring) and receives with mbx_recv +
 * mbx_msg_free. The producer writes either with mbx_msg_new + mbx_send_to
 * ("mbx send_to") or with mbx_slot_put of the raw 64 bytes ("mbx
 * slot_put"). Peer: ZeroMQ PUSH -> PULL over ipc:// in a temporary
 * directory, default high-water marks, zmq_send / zmq_recv of 64-byte
 * buffers.
 *
 * Every trial sends the same number of messages, MBX_BENCH_HOST_MSGS
 * (default 2000000), numbered from 0, then an end marker, from a fresh
 * producer process to a fresh consumer process (see host_common.h). The
 * consumer checks that each number arrives once and in order and reports
 * its count, which must equal what was sent. The clock starts when the
 * producer, after a handshake message has reached the consumer, begins to
 * send, and stops when the consumer takes the end marker; both read
 * CLOCK_MONOTONIC, which is the same clock in both processes. The CPU
 * figure is both processes' user + system time per message (set-up
 * included).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "host_common.h"

enum impl { RUN_SEND_TO, RUN_SLOT_PUT, RUN_ZMQ, IMPLS };

static const char *const impl_names[IMPLS] = {"mbx send_to", "mbx slot_put",
                                              "zmq ipc PUSH/PULL"};

struct trial {
    enum impl impl;
    uint64_t count;
    char address[64];   /* mbx: the consumer's host address */
    char endpoint[128]; /* ZeroMQ */
    int ready[2];       /* pipe: the consumer got the handshake (and, for
                         * ZeroMQ, the end) */
    int prod_result[2]; /* pipe: the producer reports */
    int cons_result[2]; /* pipe: the consumer reports */
};

struct prod_result {
    uint64_t sent;
    int64_t start_ns;
};

struct cons_result {
    uint64_t received;
    int64_t end_ns;
};

static uint64_t
host_count(void)
{
    const char *s = getenv("MBX_BENCH_HOST_MSGS");
    if (!s || !*s)
        return 2000000;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < 1000 || v > 1000000000ull) {
        fprintf(stderr, "MBX_BENCH_HOST_MSGS must be an integer in [1000, "
                        "1000000000]\n");
        exit(2);
    }
    return v;
}

/* ---- producer -------------------------------------------------------------
 */

static void
wait_ready(struct trial *t)
{
    char c;
    if (host_read_all(t->ready[0], &c, 1, "the consumer's handshake") < 0)
        exit(2);
}

static void
send_to_or_fail(const char *address, mbx_msg **m)
{
    int rc = mbx_send_to(address, m, -1);
    if (rc < 0)
        bench_fail_mbx("mbx_send_to", rc);
}

static struct prod_result
produce_send_to(struct trial *t)
{
    mbx_msg *hello = bench_msg(HOST_HELLO);
    host_send_to_waiting(t->address, &hello);
    wait_ready(t);
    struct prod_result r = {t->count, bench_now_ns()};
    for (uint64_t seq = 0; seq < t->count; seq++) {
        mbx_msg *m = bench_msg(seq);
        send_to_or_fail(t->address, &m);
    }
    mbx_msg *end = bench_msg(BENCH_END);
    send_to_or_fail(t->address, &end);
    return r;
}

static void
slot_put_or_fail(mbx_slot *s, const unsigned char *buf)
{
    int rc = mbx_slot_put(s, buf, BENCH_MSG_SIZE);
    if (rc < 0)
        bench_fail_mbx("mbx_slot_put", rc);
}

static struct prod_result
produce_slot_put(struct trial *t)
{
    mbx_slot *s;
    int rc = mbx_slot_open(&s, t->address, NULL);
    if (rc < 0)
        bench_fail_mbx("mbx_slot_open", rc);
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, HOST_HELLO);
    /* The consumer may not hold its name yet. */
    int64_t deadline =
        bench_now_ns() + (int64_t)HOST_CHILD_LIMIT_S * 1000000000;
    while ((rc = mbx_slot_put(s, buf, sizeof buf)) == MBX_ENOENT &&
           bench_now_ns() < deadline)
        bench_sleep_ns(100000);
    if (rc < 0)
        bench_fail_mbx("mbx_slot_put (handshake)", rc);
    wait_ready(t);
    struct prod_result r = {t->count, bench_now_ns()};
    for (uint64_t seq = 0; seq < t->count; seq++) {
        bench_fill(buf, seq);
        slot_put_or_fail(s, buf);
    }
    bench_fill(buf, BENCH_END);
    slot_put_or_fail(s, buf);
    mbx_slot_close(s);
    return r;
}

static struct prod_result
produce_zmq(struct trial *t)
{
    void *s = host_zmq_socket(ZMQ_PUSH);
    bench_check_zmq(zmq_connect(s, t->endpoint), "zmq_connect");
    unsigned char buf[BENCH_MSG_SIZE];
    /* PUSH waits for a connected peer before the first send goes. */
    bench_fill(buf, HOST_HELLO);
    bench_check_zmq(zmq_send(s, buf, sizeof buf, 0), "zmq_send");
    wait_ready(t);
    struct prod_result r = {t->count, bench_now_ns()};
    for (uint64_t seq = 0; seq < t->count; seq++) {
        bench_fill(buf, seq);
        bench_check_zmq(zmq_send(s, buf, sizeof buf, 0), "zmq_send");
    }
    bench_fill(buf, BENCH_END);
    bench_check_zmq(zmq_send(s, buf, sizeof buf, 0), "zmq_send");
    /* libzmq 4.3 may drop the last messages of an ipc socket closed right
     * after sending them, whatever the linger: keep it open until the
     * consumer has the end. */
    wait_ready(t);
    host_zmq_finish(s);
    return r;
}

static void
producer(void *arg)
{
    struct trial *t = arg;
    bench_pin(0);
    struct prod_result r = t->impl == RUN_SEND_TO    ? produce_send_to(t)
                           : t->impl == RUN_SLOT_PUT ? produce_slot_put(t)
                                                     : produce_zmq(t);
    host_write_all(t->prod_result[1], &r, sizeof r);
}

/* ---- consumer -------------------------------------------------------------
 */

/* Checks a received body: its size and its number, which must be the
 * expected one (or the end marker); returns the number. */
static uint64_t
check_body(const void *body, size_t len, uint64_t expected)
{
    if (len != BENCH_MSG_SIZE)
        bench_fail_count("message size", BENCH_MSG_SIZE, len);
    uint64_t seq = bench_seq_of(body);
    if (seq != expected && seq != BENCH_END)
        bench_fail_count("message number", expected, seq);
    return seq;
}

static void
signal_ready(struct trial *t, uint64_t seq)
{
    if (seq != HOST_HELLO)
        bench_fail_count("handshake number", HOST_HELLO, seq);
    host_write_all(t->ready[1], "r", 1);
}

static struct cons_result
consume_mbx(struct trial *t)
{
    mbx_id self;
    int rc = mbx_create(&self, NULL);
    if (rc < 0)
        bench_fail_mbx("mbx_create", rc);
    rc = mbx_register(self, t->address);
    if (rc < 0)
        bench_fail_mbx("mbx_register (host name)", rc);
    signal_ready(t, bench_recv_seq(self));
    uint64_t expected = 0;
    for (;;) {
        mbx_msg *m = bench_recv(self);
        size_t len;
        const void *body = mbx_msg_body(m, &len);
        uint64_t seq = check_body(body, len, expected);
        mbx_msg_free(m);
        if (seq == BENCH_END)
            break;
        expected++;
    }
    struct cons_result r = {expected, bench_now_ns()};
    mbx_destroy(self);
    return r;
}

static struct cons_result
consume_zmq(struct trial *t)
{
    void *s = host_zmq_socket(ZMQ_PULL);
    bench_check_zmq(zmq_bind(s, t->endpoint), "zmq_bind");
    unsigned char buf[BENCH_MSG_SIZE];
    int n = zmq_recv(s, buf, sizeof buf, 0);
    bench_check_zmq(n, "zmq_recv");
    signal_ready(t, bench_seq_of(buf));
    uint64_t expected = 0;
    for (;;) {
        n = zmq_recv(s, buf, sizeof buf, 0);
        bench_check_zmq(n, "zmq_recv");
        if (check_body(buf, (size_t)n, expected) == BENCH_END)
            break;
        expected++;
    }
    struct cons_result r = {expected, bench_now_ns()};
    host_write_all(t->ready[1], "e", 1); /* the producer may close now */
    host_zmq_finish(s);
    return r;
}

static void
consumer(void *arg)
{
    struct trial *t = arg;
    bench_pin(1);
    struct cons_result r = t->impl == RUN_ZMQ ? consume_zmq(t) : consume_mbx(t);
    host_write_all(t->cons_result[1], &r, sizeof r);
}

/* ---- the trial ----------------------------------------------------------- */

/* Runs one trial in two new processes; returns messages per second and CPU
 * ns per message. */
static void
run_trial(enum impl impl, int number, uint64_t count, double *rate,
          double *cpu_per_msg)
{
    struct trial t = {.impl = impl, .count = count};
    snprintf(t.address, sizeof t.address, "//./tp-%d", number);
    snprintf(t.endpoint, sizeof t.endpoint, "ipc://%s/tp-%d", host_ipc_dir(),
             number);
    host_pipe(t.ready);
    host_pipe(t.prod_result);
    host_pipe(t.cons_result);

    int cons_close[] = {t.ready[0], t.prod_result[0], t.prod_result[1],
                        t.cons_result[0]};
    pid_t c = host_fork(consumer, &t, cons_close, 4);
    int prod_close[] = {t.ready[1], t.prod_result[0], t.cons_result[0],
                        t.cons_result[1]};
    pid_t p = host_fork(producer, &t, prod_close, 4);
    close(t.ready[0]);
    close(t.ready[1]);
    close(t.prod_result[1]);
    close(t.cons_result[1]);

    struct prod_result pr;
    struct cons_result cr;
    int64_t cpu = 0;
    host_wait_pair(p, "producer", c, "consumer", &cpu);
    if (host_read_all(t.prod_result[0], &pr, sizeof pr,
                      "the producer's result") < 0 ||
        host_read_all(t.cons_result[0], &cr, sizeof cr,
                      "the consumer's result") < 0)
        exit(2);
    close(t.prod_result[0]);
    close(t.cons_result[0]);
    if (cr.received != pr.sent)
        bench_fail_count("messages received", pr.sent, cr.received);
    *rate = (double)pr.sent * 1e9 / (double)(cr.end_ns - pr.start_ns);
    *cpu_per_msg = (double)cpu / (double)pr.sent;
}

int
main(void)
{
    host_bench_init();
    int rounds = bench_rounds(), number = 0;
    uint64_t count = host_count();
    double rate[IMPLS][BENCH_MAX_ROUNDS], cpu[IMPLS][BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32];

    bench_heading("1->1 throughput between two processes, 64-byte messages "
                  "(rate; CPU per message)");
    printf("  %llu messages per trial\n", (unsigned long long)count);
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        /* Alternate the order so no implementation always runs first. */
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            run_trial(i, number++, count, &rate[i][r], &cpu[i][r]);
        }
        for (int i = 0; i < IMPLS; i++)
            printf("  round %-3d %-18s %-12s %s/msg\n", r + 1, impl_names[i],
                   bench_fmt_rate(a, rate[i][r]), bench_fmt_ns(b, cpu[i][r]));
        fflush(stdout);
    }
    bench_load_report();
    double sr = bench_median(rate[RUN_SEND_TO], rounds);
    double pr = bench_median(rate[RUN_SLOT_PUT], rounds);
    double zr = bench_median(rate[RUN_ZMQ], rounds);
    printf("  median CPU per message: mbx send_to %s, mbx slot_put %s, "
           "zmq %s\n",
           bench_fmt_ns(a, bench_median(cpu[RUN_SEND_TO], rounds)),
           bench_fmt_ns(b, bench_median(cpu[RUN_SLOT_PUT], rounds)),
           bench_fmt_ns(c, bench_median(cpu[RUN_ZMQ], rounds)));
    bench_summary("host 1->1 throughput 64 B, send_to (peer: zmq ipc)",
                  bench_fmt_rate(a, sr), bench_fmt_rate(b, zr),
                  bench_fmt_factor(c, sr / zr), ">= 2x zmq",
                  sr / zr >= 2 ? BENCH_MET_YES : BENCH_MET_NO);
    bench_summary("host 1->1 throughput 64 B, slot_put (peer: zmq ipc)",
                  bench_fmt_rate(a, pr), bench_fmt_rate(b, zr),
                  bench_fmt_factor(c, pr / zr), ">= 2x zmq",
                  pr / zr >= 2 ? BENCH_MET_YES : BENCH_MET_NO);
    return 0;
}
