/*
 * Fan-in: 4 and 8 producer threads -> 1 consumer thread, on a machine with
 * fewer cores than threads (oversubscribed).
 *
 * mbx: every producer mbx_send's new 64-byte messages to one unbounded
 * mailbox. Peer: one ZeroMQ inproc PULL socket, and one PUSH socket per
 * producer connected to it.
 *
 * Each producer numbers its messages; the consumer checks that each
 * producer's numbers arrive once and in order and counts them all, so the
 * figure counts only delivered messages. The rate is messages / (time the
 * consumer took the last end marker - start), backlog included.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <zmq.h>

#include "common.h"

#define MAX_PRODUCERS 8
#define SEQ_BITS 48 /* a message's number is (producer << 48) | n */

enum impl { MBX, ZMQ, IMPLS };

struct trial;

struct producer {
    struct trial *t;
    unsigned index;
    void *push; /* ZeroMQ */
    uint64_t sent;
};

struct trial {
    enum impl impl;
    unsigned producers;
    mbx_id box;
    void *pull; /* ZeroMQ */
    pthread_barrier_t go;
    int64_t trial_ns, end;
    atomic_uint running;
    uint64_t received, backlog;
    struct producer p[MAX_PRODUCERS];
};

static void
mbx_produce(struct producer *p, int64_t start)
{
    struct trial *t = p->t;
    uint64_t tag = (uint64_t)p->index << SEQ_BITS, n = 0;
    for (;; n++) {
        if ((n & 255) == 0 && bench_now_ns() - start >= t->trial_ns)
            break;
        mbx_msg *m = bench_msg(tag | n);
        bench_send(t->box, &m);
    }
    p->sent = n;
    mbx_stats st;
    if (atomic_fetch_sub(&t->running, 1) == 1 && mbx_stat(t->box, &st) == 0)
        t->backlog = st.queued;
    mbx_msg *end = bench_msg(BENCH_END);
    bench_send(t->box, &end);
}

static void
zmq_produce(struct producer *p, int64_t start)
{
    struct trial *t = p->t;
    unsigned char buf[BENCH_MSG_SIZE];
    uint64_t tag = (uint64_t)p->index << SEQ_BITS, n = 0;
    for (;; n++) {
        if ((n & 255) == 0 && bench_now_ns() - start >= t->trial_ns)
            break;
        bench_fill(buf, tag | n);
        bench_check_zmq(zmq_send(p->push, buf, sizeof buf, 0), "zmq_send");
    }
    p->sent = n;
    bench_fill(buf, BENCH_END);
    bench_check_zmq(zmq_send(p->push, buf, sizeof buf, 0), "zmq_send");
}

static void *
producer(void *arg)
{
    struct producer *p = arg;
    pthread_barrier_wait(&p->t->go);
    int64_t start = bench_now_ns();
    if (p->t->impl == MBX)
        mbx_produce(p, start);
    else
        zmq_produce(p, start);
    return NULL;
}

static uint64_t
receive_one(struct trial *t)
{
    if (t->impl == ZMQ) {
        unsigned char buf[BENCH_MSG_SIZE];
        bench_check_zmq(zmq_recv(t->pull, buf, sizeof buf, 0), "zmq_recv");
        return bench_seq_of(buf);
    }
    return bench_recv_seq(t->box);
}

static void *
consumer(void *arg)
{
    struct trial *t = arg;
    uint64_t next[MAX_PRODUCERS] = {0}, total = 0;
    unsigned ends = 0;
    pthread_barrier_wait(&t->go);
    while (ends < t->producers) {
        uint64_t seq = receive_one(t);
        if (seq == BENCH_END) {
            ends++;
            continue;
        }
        uint64_t who = seq >> SEQ_BITS, n = seq & ((1ull << SEQ_BITS) - 1);
        if (who >= t->producers || n != next[who])
            bench_fail_count("message number", next[who % MAX_PRODUCERS], n);
        next[who]++;
        total++;
    }
    t->end = bench_now_ns();
    t->received = total;
    return NULL;
}

static void
setup(struct trial *t)
{
    if (t->impl == MBX) {
        int rc = mbx_create(&t->box, NULL);
        if (rc < 0)
            bench_fail_mbx("mbx_create", rc);
        return;
    }
    /* The first link makes the endpoint; the other producers connect to
     * it too. */
    bench_zmq_link(ZMQ_PULL, &t->pull, ZMQ_PUSH, &t->p[0].push);
    char ep[256];
    size_t len = sizeof ep;
    bench_check_zmq(zmq_getsockopt(t->pull, ZMQ_LAST_ENDPOINT, ep, &len),
                    "zmq_getsockopt(ZMQ_LAST_ENDPOINT)");
    for (unsigned i = 1; i < t->producers; i++) {
        t->p[i].push = zmq_socket(bench_zmq_ctx(), ZMQ_PUSH);
        if (!t->p[i].push)
            bench_check_zmq(-1, "zmq_socket");
        int zero = 0;
        zmq_setsockopt(t->p[i].push, ZMQ_LINGER, &zero, sizeof zero);
        bench_check_zmq(zmq_connect(t->p[i].push, ep), "zmq_connect");
    }
}

static void
teardown(struct trial *t)
{
    if (t->impl == MBX) {
        mbx_destroy(t->box);
        return;
    }
    for (unsigned i = 0; i < t->producers; i++)
        bench_zmq_close(t->p[i].push);
    bench_zmq_close(t->pull);
}

/* Runs one trial; returns delivered messages per second. */
static double
run_trial(enum impl impl, unsigned producers, uint64_t *backlog)
{
    static struct trial t;
    t = (struct trial){.impl = impl, .producers = producers};
    t.trial_ns = bench_trial_ns();
    atomic_init(&t.running, producers);
    setup(&t);
    pthread_barrier_init(&t.go, NULL, producers + 2);
    pthread_t c, p[MAX_PRODUCERS];
    bench_thread_start(&c, consumer, &t);
    for (unsigned i = 0; i < producers; i++) {
        t.p[i].t = &t;
        t.p[i].index = i;
        bench_thread_start(&p[i], producer, &t.p[i]);
    }
    int64_t start = bench_now_ns();
    pthread_barrier_wait(&t.go);
    for (unsigned i = 0; i < producers; i++)
        bench_thread_join(p[i]);
    bench_thread_join(c);
    pthread_barrier_destroy(&t.go);
    uint64_t sent = 0;
    for (unsigned i = 0; i < producers; i++)
        sent += t.p[i].sent;
    if (t.received != sent)
        bench_fail_count("messages received", sent, t.received);
    teardown(&t);
    *backlog = t.backlog;
    return (double)sent * 1e9 / (double)(t.end - start);
}

static void
bench_fanin(unsigned producers, int rounds)
{
    double rate[IMPLS][BENCH_MAX_ROUNDS], backlog[BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32], name[64];

    snprintf(name, sizeof name, "%u producers -> 1 consumer, 64-byte messages",
             producers);
    bench_heading(name);
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            uint64_t bl = 0;
            rate[i][r] = run_trial(i, producers, &bl);
            if (i == MBX)
                backlog[r] = (double)bl;
        }
        bench_round(r + 1, bench_fmt_rate(a, rate[MBX][r]),
                    bench_fmt_rate(b, rate[ZMQ][r]));
    }
    printf("  median mbx backlog when the producers stopped: %.0f\n",
           bench_median(backlog, rounds));
    bench_load_report();
    double m = bench_median(rate[MBX], rounds);
    double z = bench_median(rate[ZMQ], rounds);
    snprintf(name, sizeof name, "%u->1 fan-in throughput", producers);
    bench_summary(name, bench_fmt_rate(a, m), bench_fmt_rate(b, z),
                  bench_fmt_factor(c, m / z), ">= 15 M/s",
                  m >= 15e6 ? BENCH_MET_YES : BENCH_MET_NO);
}

int
main(void)
{
    int rounds = bench_rounds();
    bench_fanin(4, rounds);
    bench_fanin(8, rounds);
    return 0;
}
