/*
 * What a parked receiver costs, and how fast it wakes.
 *
 * 1. CPU of a parked receiver: a thread blocks in mbx_recv (timeout -1) for
 *    one second before a message arrives; its own CPU clock
 *    (CLOCK_THREAD_CPUTIME_ID) is read before and after the call. The peer
 *    is a thread blocked in zmq_recv on an inproc PAIR socket over the same
 *    second (both wait at the same time).
 * 2. Wake-up of a parked receiver: the sender stamps a message with the
 *    monotonic clock and sends it to a receiver that has been idle for 2 ms
 *    (long past any spinning); the receiver subtracts the stamp. Samples
 *    alternate between mbx and ZeroMQ.
 */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common.h"

#define PARK_NS 1000000000LL /* one second */
#define PARK_ROUNDS 3
#define WAKE_SAMPLES 101
#define WAKE_GAP_NS 2000000LL

enum impl { MBX, ZMQ, IMPLS };

struct receiver {
    enum impl impl;
    mbx_id box;
    void *rx, *tx; /* ZeroMQ: the receiver's and the sender's sockets */
    int samples;   /* messages to receive */
    double cpu_ns[WAKE_SAMPLES], wake_ns[WAKE_SAMPLES];
};

/* Receives one message; returns the monotonic stamp it carries. */
static uint64_t
receive_stamp(struct receiver *r)
{
    if (r->impl == ZMQ) {
        unsigned char buf[BENCH_MSG_SIZE];
        bench_check_zmq(zmq_recv(r->rx, buf, sizeof buf, 0), "zmq_recv");
        return bench_seq_of(buf);
    }
    return bench_recv_seq(r->box);
}

static void *
receiver_main(void *arg)
{
    struct receiver *r = arg;
    for (int i = 0; i < r->samples; i++) {
        int64_t cpu0 = bench_thread_cpu_ns();
        uint64_t stamp = receive_stamp(r);
        int64_t now = bench_now_ns();
        r->cpu_ns[i] = (double)(bench_thread_cpu_ns() - cpu0);
        r->wake_ns[i] = (double)now - (double)stamp;
    }
    return NULL;
}

static void
send_stamp(struct receiver *r)
{
    uint64_t stamp = (uint64_t)bench_now_ns();
    if (r->impl == ZMQ) {
        unsigned char buf[BENCH_MSG_SIZE];
        bench_fill(buf, stamp);
        bench_check_zmq(zmq_send(r->tx, buf, sizeof buf, 0), "zmq_send");
        return;
    }
    mbx_msg *m = bench_msg(stamp);
    bench_send(r->box, &m);
}

/* Starts both receivers and sends each `samples` stamped messages: after
 * `gap_ns` to one, after `second_ns` more to the other (which one goes
 * first alternates). Joins them. */
static void
run(struct receiver *r, int samples, int64_t gap_ns, int64_t second_ns)
{
    pthread_t t[IMPLS];
    for (int i = 0; i < IMPLS; i++) {
        r[i].impl = (enum impl)i;
        r[i].samples = samples;
        bench_thread_start(&t[i], receiver_main, &r[i]);
    }
    for (int s = 0; s < samples; s++) {
        bench_sleep_ns(gap_ns);
        send_stamp(&r[s % 2 ? ZMQ : MBX]);
        bench_sleep_ns(second_ns);
        send_stamp(&r[s % 2 ? MBX : ZMQ]);
    }
    for (int i = 0; i < IMPLS; i++)
        bench_thread_join(t[i]);
}

int
main(void)
{
    static struct receiver r[IMPLS];
    char a[32], b[32], c[32];
    int rc = mbx_create(&r[MBX].box, NULL);
    if (rc < 0)
        bench_fail_mbx("mbx_create", rc);
    bench_zmq_link(ZMQ_PAIR, &r[ZMQ].rx, ZMQ_PAIR, &r[ZMQ].tx);

    bench_heading("CPU used by a receiver parked for 1 s");
    bench_load_start();
    run(r, PARK_ROUNDS, PARK_NS, PARK_NS / 100);
    for (int i = 0; i < PARK_ROUNDS; i++)
        bench_round(i + 1, bench_fmt_ns(a, r[MBX].cpu_ns[i]),
                    bench_fmt_ns(b, r[ZMQ].cpu_ns[i]));
    bench_load_report();
    double m = bench_median(r[MBX].cpu_ns, PARK_ROUNDS);
    double z = bench_median(r[ZMQ].cpu_ns, PARK_ROUNDS);
    /* CPU per second parked: ~0 means under 0.1% of one core. */
    snprintf(a, sizeof a, "%.1f us/s", m / 1e3);
    snprintf(b, sizeof b, "%.1f us/s", z / 1e3);
    bench_summary("parked receiver CPU", a, b,
                  bench_fmt_factor(c, z / (m > 1 ? m : 1)), "~0 (< 1 ms/s)",
                  m < 1e6 ? BENCH_MET_YES : BENCH_MET_NO);

    bench_heading("wake-up of a receiver parked for 2 ms (median)");
    bench_load_start();
    run(r, WAKE_SAMPLES, WAKE_GAP_NS, WAKE_GAP_NS);
    bench_load_report();
    m = bench_median(r[MBX].wake_ns, WAKE_SAMPLES);
    z = bench_median(r[ZMQ].wake_ns, WAKE_SAMPLES);
    bench_summary("wake a parked receiver", bench_fmt_ns(a, m),
                  bench_fmt_ns(b, z), bench_fmt_factor(c, z / m), "(info)",
                  BENCH_MET_NA);

    mbx_destroy(r[MBX].box);
    bench_zmq_close(r[ZMQ].rx);
    bench_zmq_close(r[ZMQ].tx);
    return 0;
}
