/*
 * call/reply round trip between two threads.
 *
 * mbx: the caller makes a new 64-byte request and mbx_call's the callee's
 * mailbox; the callee mbx_recv's it, mbx_reply's with a new 64-byte reply
 * and frees the request; the caller frees the reply. Peer: a ZeroMQ inproc
 * REQ/REP socket pair with 64-byte buffers.
 *
 * The figure is the trial's elapsed time / calls, median over rounds.
 */
#include <stdio.h>
#include <zmq.h>

#include "common.h"

enum impl { MBX, ZMQ, IMPLS };

struct trial {
    enum impl impl;
    mbx_id callee;
    void *req, *rep; /* ZeroMQ sockets */
    pthread_barrier_t go;
    int64_t trial_ns;
    uint64_t calls;
    double elapsed_ns;
};

static uint64_t
mbx_calls(struct trial *t, int64_t start)
{
    uint64_t n = 0;
    for (;; n++) {
        if ((n & 63) == 0 && bench_now_ns() - start >= t->trial_ns)
            break;
        mbx_msg *req = bench_msg(n), *reply;
        int rc = mbx_call(t->callee, &req, &reply, -1);
        if (rc < 0)
            bench_fail_mbx("mbx_call", rc);
        uint64_t seq = bench_seq_of(mbx_msg_body(reply, NULL));
        if (seq != n)
            bench_fail_count("reply number", n, seq);
        mbx_msg_free(reply);
    }
    /* A plain message (not a call) tells the callee to stop. */
    mbx_msg *end = bench_msg(BENCH_END);
    bench_send(t->callee, &end);
    return n;
}

static void *
caller(void *arg)
{
    struct trial *t = arg;
    bench_pin(0);
    pthread_barrier_wait(&t->go);
    int64_t start = bench_now_ns();
    t->calls =
        t->impl == MBX
            ? mbx_calls(t, start)
            : bench_zmq_round_trips(t->req, start, t->trial_ns, "reply number");
    t->elapsed_ns = (double)(bench_now_ns() - start);
    return NULL;
}

static void
mbx_serve(struct trial *t)
{
    for (;;) {
        mbx_msg *req = bench_recv(t->callee);
        if (!mbx_msg_is_call(req)) {
            mbx_msg_free(req);
            return;
        }
        mbx_msg *reply = bench_msg(bench_seq_of(mbx_msg_body(req, NULL)));
        int rc = mbx_reply(req, &reply);
        if (rc < 0)
            bench_fail_mbx("mbx_reply", rc);
        mbx_msg_free(req);
    }
}

static void
zmq_serve(struct trial *t)
{
    unsigned char buf[BENCH_MSG_SIZE];
    for (;;) {
        bench_check_zmq(zmq_recv(t->rep, buf, sizeof buf, 0), "zmq_recv");
        if (bench_seq_of(buf) == BENCH_END)
            return;
        bench_check_zmq(zmq_send(t->rep, buf, sizeof buf, 0), "zmq_send");
    }
}

static void *
callee(void *arg)
{
    struct trial *t = arg;
    bench_pin(1);
    pthread_barrier_wait(&t->go);
    if (t->impl == MBX)
        mbx_serve(t);
    else
        zmq_serve(t);
    return NULL;
}

/* Runs one trial and returns the round-trip time in ns. */
static double
run_trial(enum impl impl)
{
    struct trial t = {.impl = impl, .trial_ns = bench_trial_ns()};
    if (impl == MBX) {
        int rc = mbx_create(&t.callee, NULL);
        if (rc < 0)
            bench_fail_mbx("mbx_create", rc);
    } else {
        bench_zmq_link(ZMQ_REP, &t.rep, ZMQ_REQ, &t.req);
    }
    pthread_barrier_init(&t.go, NULL, 2);
    pthread_t p, q;
    bench_thread_start(&q, callee, &t);
    bench_thread_start(&p, caller, &t);
    bench_thread_join(p);
    bench_thread_join(q);
    pthread_barrier_destroy(&t.go);
    if (impl == MBX) {
        mbx_destroy(t.callee);
    } else {
        bench_zmq_close(t.req);
        bench_zmq_close(t.rep);
    }
    return t.elapsed_ns / (double)t.calls;
}

int
main(void)
{
    int rounds = bench_rounds();
    double rtt[IMPLS][BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32];

    bench_heading("call/reply round trip (mbx_call + mbx_reply; zmq REQ/REP)");
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            rtt[i][r] = run_trial(i);
        }
        bench_round(r + 1, bench_fmt_ns(a, rtt[MBX][r]),
                    bench_fmt_ns(b, rtt[ZMQ][r]));
    }
    bench_load_report();
    double m = bench_median(rtt[MBX], rounds);
    double z = bench_median(rtt[ZMQ], rounds);
    bench_summary("call/reply round trip", bench_fmt_ns(a, m),
                  bench_fmt_ns(b, z), bench_fmt_factor(c, z / m), "<= 1 us",
                  m <= 1000 ? BENCH_MET_YES : BENCH_MET_NO);
    return 0;
}
