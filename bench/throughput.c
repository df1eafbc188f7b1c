/*
 * 1 -> 1 throughput of 64-byte messages from a producer thread to a
 * consumer thread, and the CPU time spent per message.
 *
 * mbx: mbx_msg_new + mbx_send / mbx_recv + mbx_msg_free, on an unbounded
 * mailbox (the default) and on one bounded to 1000 messages that blocks when
 * full (as ZeroMQ's default high-water mark does). Peer: a ZeroMQ inproc
 * PAIR socket pair, zmq_send / zmq_recv of 64-byte buffers.
 *
 * The producer sends numbered messages for one trial length, then an end
 * marker; the consumer checks that every number arrives once and in order.
 * The rate is messages / (time the consumer took the end marker - time the
 * producer started), so a backlog left in the queue is paid for.
 */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common.h"

enum impl { RUN_MBX, RUN_MBX_BOUNDED, RUN_ZMQ, IMPLS };

static const char *const impl_names[IMPLS] = {"mbx", "mbx bounded 1000",
                                              "zmq PAIR"};

struct trial {
    enum impl impl;
    mbx_id box;
    void *tx, *rx; /* ZeroMQ sockets */
    pthread_barrier_t go;
    int64_t start, end, trial_ns;
    uint64_t sent, received, backlog;
};

static void
mbx_produce(struct trial *t)
{
    uint64_t seq = 0;
    for (;; seq++) {
        if ((seq & 255) == 0 && bench_now_ns() - t->start >= t->trial_ns)
            break;
        mbx_msg *m = bench_msg(seq);
        bench_send(t->box, &m);
    }
    mbx_stats st;
    if (mbx_stat(t->box, &st) == 0)
        t->backlog = st.queued;
    t->sent = seq;
    mbx_msg *end = bench_msg(BENCH_END);
    bench_send(t->box, &end);
}

static void
zmq_produce(struct trial *t)
{
    unsigned char buf[BENCH_MSG_SIZE];
    uint64_t seq = 0;
    for (;; seq++) {
        if ((seq & 255) == 0 && bench_now_ns() - t->start >= t->trial_ns)
            break;
        bench_fill(buf, seq);
        bench_check_zmq(zmq_send(t->tx, buf, sizeof buf, 0), "zmq_send");
    }
    t->sent = seq;
    bench_fill(buf, BENCH_END);
    bench_check_zmq(zmq_send(t->tx, buf, sizeof buf, 0), "zmq_send");
}

static void *
producer(void *arg)
{
    struct trial *t = arg;
    bench_pin(0);
    pthread_barrier_wait(&t->go);
    t->start = bench_now_ns();
    if (t->impl == RUN_ZMQ)
        zmq_produce(t);
    else
        mbx_produce(t);
    return NULL;
}

/* Receives one message and returns its sequence number. */
static uint64_t
receive_one(struct trial *t)
{
    if (t->impl == RUN_ZMQ) {
        unsigned char buf[BENCH_MSG_SIZE];
        int n = zmq_recv(t->rx, buf, sizeof buf, 0);
        bench_check_zmq(n, "zmq_recv");
        if (n != BENCH_MSG_SIZE)
            bench_fail_count("zmq message size", BENCH_MSG_SIZE, (uint64_t)n);
        return bench_seq_of(buf);
    }
    return bench_recv_seq(t->box);
}

static void *
consumer(void *arg)
{
    struct trial *t = arg;
    bench_pin(1);
    pthread_barrier_wait(&t->go);
    uint64_t expected = 0;
    for (;;) {
        uint64_t seq = receive_one(t);
        if (seq == BENCH_END)
            break;
        if (seq != expected)
            bench_fail_count("message number", expected, seq);
        expected++;
    }
    t->end = bench_now_ns();
    t->received = expected;
    return NULL;
}

/* Runs one trial; returns messages per second and CPU ns per message. */
static void
run_trial(enum impl impl, double *rate, double *cpu_per_msg, uint64_t *backlog)
{
    struct trial t = {.impl = impl, .trial_ns = bench_trial_ns()};
    if (impl == RUN_ZMQ) {
        bench_zmq_link(ZMQ_PAIR, &t.rx, ZMQ_PAIR, &t.tx);
    } else {
        mbx_opts o = {.capacity = impl == RUN_MBX_BOUNDED ? 1000 : 0};
        int rc = mbx_create(&t.box, &o);
        if (rc < 0)
            bench_fail_mbx("mbx_create", rc);
    }
    pthread_barrier_init(&t.go, NULL, 2);
    pthread_t p, c;
    int64_t cpu0 = bench_process_cpu_ns();
    bench_thread_start(&c, consumer, &t);
    bench_thread_start(&p, producer, &t);
    bench_thread_join(p);
    bench_thread_join(c);
    int64_t cpu = bench_process_cpu_ns() - cpu0;
    pthread_barrier_destroy(&t.go);
    if (t.received != t.sent)
        bench_fail_count("messages received", t.sent, t.received);
    if (impl == RUN_ZMQ) {
        bench_zmq_close(t.tx);
        bench_zmq_close(t.rx);
    } else {
        mbx_destroy(t.box);
    }
    *rate = (double)t.sent * 1e9 / (double)(t.end - t.start);
    *cpu_per_msg = (double)cpu / (double)t.sent;
    *backlog = t.backlog;
}

int
main(void)
{
    int rounds = bench_rounds();
    double rate[IMPLS][BENCH_MAX_ROUNDS], cpu[IMPLS][BENCH_MAX_ROUNDS];
    double backlog[BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32], d[32];

    bench_heading("1->1 throughput, 64-byte messages (rate; CPU per message)");
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        /* Alternate the order so neither side always runs first. */
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            uint64_t bl;
            run_trial(i, &rate[i][r], &cpu[i][r], &bl);
            if (i == RUN_MBX)
                backlog[r] = (double)bl;
        }
        for (int i = 0; i < IMPLS; i++)
            printf("  round %-3d %-17s %-12s %s/msg\n", r + 1, impl_names[i],
                   bench_fmt_rate(a, rate[i][r]), bench_fmt_ns(b, cpu[i][r]));
        printf("  round %-3d mbx backlog when the producer stopped: %.0f\n",
               r + 1, backlog[r]);
        fflush(stdout);
    }
    double mr = bench_median(rate[RUN_MBX], rounds);
    double br = bench_median(rate[RUN_MBX_BOUNDED], rounds);
    double zr = bench_median(rate[RUN_ZMQ], rounds);
    double mc = bench_median(cpu[RUN_MBX], rounds);
    double bc = bench_median(cpu[RUN_MBX_BOUNDED], rounds);
    double zc = bench_median(cpu[RUN_ZMQ], rounds);
    printf("  median backlog: %.0f messages\n", bench_median(backlog, rounds));
    bench_load_report();

    bench_summary("1->1 throughput 64 B", bench_fmt_rate(a, mr),
                  bench_fmt_rate(b, zr), bench_fmt_factor(c, mr / zr),
                  ">= 3.5x zmq", mr / zr >= 3.5 ? BENCH_MET_YES : BENCH_MET_NO);
    bench_summary("1->1 throughput, bounded 1000", bench_fmt_rate(a, br),
                  bench_fmt_rate(b, zr), bench_fmt_factor(c, br / zr),
                  ">= 3.5x zmq", br / zr >= 3.5 ? BENCH_MET_YES : BENCH_MET_NO);
    snprintf(d, sizeof d, "%s/msg", bench_fmt_ns(a, mc));
    snprintf(a, sizeof a, "%s/msg", bench_fmt_ns(b, zc));
    bench_summary("CPU per message, 1->1", d, a, bench_fmt_factor(c, zc / mc),
                  "(info)", BENCH_MET_NA);
    printf("  CPU per message, bounded mailbox: mbx %s, zmq %s\n",
           bench_fmt_ns(a, bc), bench_fmt_ns(b, zc));
    return 0;
}
