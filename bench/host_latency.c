/*
 * Ping-pong between two processes: one-way latency = round trip / 2.
 *
 * mbx: each process owns a mailbox registered under a host name
 * ("//./lat-ping-N", "//./lat-pong-N") and receives with mbx_recv; the
 * pinger sends a new 64-byte message with mbx_send_to to the ponger's name,
 * the ponger sends the received message back the same way. Peers: a
 * blocking AF_UNIX SOCK_DGRAM socketpair (send / recv of 64 bytes), and a
 * ZeroMQ PAIR socket pair over ipc:// in a temporary directory.
 *
 * Each trial forks a fresh pinger and ponger (see host_common.h). After a
 * handshake and a short untimed warm-up, the pinger runs round trips for
 * one trial length, checking each echoed number; the figure is the trial's
 * elapsed time / (2 * round trips), and the median over rounds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zmq.h>

#include "host_common.h"

/* Untimed round trips after the handshake. */
#define WARMUP 1000

enum impl { MBX, UNIX_DGRAM, ZMQ, IMPLS };

static const char *const impl_names[IMPLS] = {"mbx", "unix dgram",
                                              "zmq ipc PAIR"};

struct trial {
    enum impl impl;
    int64_t trial_ns;
    char ping[64], pong[64]; /* mbx: host addresses */
    char endpoint[128];      /* ZeroMQ */
    int sock[2];             /* Unix: [0] the pinger's, [1] the ponger's */
    int result[2];           /* pipe: the pinger reports */
};

struct result {
    uint64_t round_trips;
    int64_t elapsed_ns;
};

/* ---- mbx ---------------------------------------------------------------- */

static mbx_id
mbx_host_box(const char *address)
{
    mbx_id self;
    int rc = mbx_create(&self, NULL);
    if (rc < 0)
        bench_fail_mbx("mbx_create", rc);
    rc = mbx_register(self, address);
    if (rc < 0)
        bench_fail_mbx("mbx_register (host name)", rc);
    return self;
}

static void
mbx_send_to_or_fail(const char *address, mbx_msg **m)
{
    int rc = mbx_send_to(address, m, -1);
    if (rc < 0)
        bench_fail_mbx("mbx_send_to", rc);
}

/* One round trip of message number n; checks the echo. */
static void
mbx_round_trip(struct trial *t, mbx_id self, uint64_t n)
{
    mbx_msg *m = bench_msg(n);
    mbx_send_to_or_fail(t->pong, &m);
    m = bench_recv(self);
    size_t len;
    uint64_t seq = bench_seq_of(mbx_msg_body(m, &len));
    if (len != BENCH_MSG_SIZE)
        bench_fail_count("pong size", BENCH_MSG_SIZE, len);
    if (seq != n)
        bench_fail_count("pong number", n, seq);
    mbx_msg_free(m);
}

static struct result
mbx_pinger(struct trial *t)
{
    mbx_id self = mbx_host_box(t->ping);
    /* The ponger may not hold its name yet. */
    mbx_msg *hello = bench_msg(HOST_HELLO);
    host_send_to_waiting(t->pong, &hello);
    uint64_t echo = bench_recv_seq(self);
    if (echo != HOST_HELLO)
        bench_fail_count("hello echo", HOST_HELLO, echo);
    for (uint64_t i = 0; i < WARMUP; i++)
        mbx_round_trip(t, self, i);

    struct result r = {0};
    int64_t start = bench_now_ns();
    for (uint64_t n = 0;; n++) {
        if ((n & 63) == 0 && bench_now_ns() - start >= t->trial_ns) {
            r.round_trips = n;
            break;
        }
        mbx_round_trip(t, self, n);
    }
    r.elapsed_ns = bench_now_ns() - start;
    mbx_msg *end = bench_msg(BENCH_END);
    mbx_send_to_or_fail(t->pong, &end);
    mbx_destroy(self);
    return r;
}

static void
mbx_ponger(struct trial *t)
{
    mbx_id self = mbx_host_box(t->pong);
    for (;;) {
        mbx_msg *m = bench_recv(self);
        if (bench_seq_of(mbx_msg_body(m, NULL)) == BENCH_END) {
            mbx_msg_free(m);
            break;
        }
        mbx_send_to_or_fail(t->ping, &m);
    }
    mbx_destroy(self);
}

/* ---- Unix datagram sockets ---------------------------------------------- */

static void
unix_send(int fd, const unsigned char *buf)
{
    ssize_t n = send(fd, buf, BENCH_MSG_SIZE, 0);
    if (n != BENCH_MSG_SIZE) {
        perror("bench: send");
        _exit(2);
    }
}

static void
unix_recv(int fd, unsigned char *buf)
{
    ssize_t n = recv(fd, buf, BENCH_MSG_SIZE, 0);
    if (n != BENCH_MSG_SIZE) {
        if (n < 0)
            perror("bench: recv");
        else
            bench_fail_count("datagram size", BENCH_MSG_SIZE, (uint64_t)n);
        _exit(2);
    }
}

static void
unix_round_trip(int fd, uint64_t n)
{
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, n);
    unix_send(fd, buf);
    unix_recv(fd, buf);
    if (bench_seq_of(buf) != n)
        bench_fail_count("pong number", n, bench_seq_of(buf));
}

static struct result
unix_pinger(struct trial *t)
{
    int fd = t->sock[0];
    for (uint64_t i = 0; i < WARMUP; i++)
        unix_round_trip(fd, i);
    struct result r = {0};
    int64_t start = bench_now_ns();
    for (uint64_t n = 0;; n++) {
        if ((n & 63) == 0 && bench_now_ns() - start >= t->trial_ns) {
            r.round_trips = n;
            break;
        }
        unix_round_trip(fd, n);
    }
    r.elapsed_ns = bench_now_ns() - start;
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, BENCH_END);
    unix_send(fd, buf);
    return r;
}

static void
unix_ponger(struct trial *t)
{
    int fd = t->sock[1];
    unsigned char buf[BENCH_MSG_SIZE];
    for (;;) {
        unix_recv(fd, buf);
        if (bench_seq_of(buf) == BENCH_END)
            return;
        unix_send(fd, buf);
    }
}

/* ---- ZeroMQ ipc -----------------------------------------------------------
 */

static void
zmq_round_trip(void *s, uint64_t n)
{
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, n);
    bench_check_zmq(zmq_send(s, buf, sizeof buf, 0), "zmq_send");
    int len = zmq_recv(s, buf, sizeof buf, 0);
    bench_check_zmq(len, "zmq_recv");
    if (len != BENCH_MSG_SIZE)
        bench_fail_count("zmq message size", BENCH_MSG_SIZE, (uint64_t)len);
    if (bench_seq_of(buf) != n)
        bench_fail_count("pong number", n, bench_seq_of(buf));
}

static struct result
zmq_pinger(struct trial *t)
{
    void *s = host_zmq_socket(ZMQ_PAIR);
    bench_check_zmq(zmq_connect(s, t->endpoint), "zmq_connect");
    /* The first send waits until the ponger has bound and accepted. */
    zmq_round_trip(s, HOST_HELLO);
    for (uint64_t i = 0; i < WARMUP; i++)
        zmq_round_trip(s, i);
    struct result r = {0};
    int64_t start = bench_now_ns();
    r.round_trips = bench_zmq_round_trips(s, start, t->trial_ns, "pong number");
    r.elapsed_ns = bench_now_ns() - start;
    host_zmq_finish(s);
    return r;
}

static void
zmq_ponger(struct trial *t)
{
    void *s = host_zmq_socket(ZMQ_PAIR);
    bench_check_zmq(zmq_bind(s, t->endpoint), "zmq_bind");
    unsigned char buf[BENCH_MSG_SIZE];
    for (;;) {
        bench_check_zmq(zmq_recv(s, buf, sizeof buf, 0), "zmq_recv");
        if (bench_seq_of(buf) == BENCH_END)
            break;
        bench_check_zmq(zmq_send(s, buf, sizeof buf, 0), "zmq_send");
    }
    host_zmq_finish(s);
}

/* ---- the trial ----------------------------------------------------------- */

static void
pinger(void *arg)
{
    struct trial *t = arg;
    bench_pin(0);
    struct result r = t->impl == MBX          ? mbx_pinger(t)
                      : t->impl == UNIX_DGRAM ? unix_pinger(t)
                                              : zmq_pinger(t);
    host_write_all(t->result[1], &r, sizeof r);
}

static void
ponger(void *arg)
{
    struct trial *t = arg;
    bench_pin(1);
    if (t->impl == MBX)
        mbx_ponger(t);
    else if (t->impl == UNIX_DGRAM)
        unix_ponger(t);
    else
        zmq_ponger(t);
}

/* Runs one trial in two new processes; returns the one-way latency in ns. */
static double
run_trial(enum impl impl, int number)
{
    struct trial t = {
        .impl = impl, .trial_ns = bench_trial_ns(), .sock = {-1, -1}};
    snprintf(t.ping, sizeof t.ping, "//./lat-ping-%d", number);
    snprintf(t.pong, sizeof t.pong, "//./lat-pong-%d", number);
    snprintf(t.endpoint, sizeof t.endpoint, "ipc://%s/lat-%d", host_ipc_dir(),
             number);
    if (impl == UNIX_DGRAM && socketpair(AF_UNIX, SOCK_DGRAM, 0, t.sock)) {
        perror("bench: socketpair");
        exit(2);
    }
    host_pipe(t.result);

    int pong_close[] = {t.sock[0], t.result[0], t.result[1]};
    pid_t q = host_fork(ponger, &t, pong_close, 3);
    int ping_close[] = {t.sock[1], t.result[0]};
    pid_t p = host_fork(pinger, &t, ping_close, 2);
    close(t.result[1]);
    if (t.sock[0] >= 0) {
        close(t.sock[0]);
        close(t.sock[1]);
    }
    struct result r;
    host_wait_pair(p, "pinger", q, "ponger", NULL);
    if (host_read_all(t.result[0], &r, sizeof r, "the pinger's result") < 0)
        exit(2);
    close(t.result[0]);
    if (r.round_trips == 0)
        bench_fail_count("round trips", 1, 0);
    return (double)r.elapsed_ns / (2.0 * (double)r.round_trips);
}

int
main(void)
{
    host_bench_init();
    int rounds = bench_rounds(), number = 0;
    double lat[IMPLS][BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32];

    bench_heading("ping-pong between two processes, one-way latency");
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        /* Alternate the order so no implementation always runs first. */
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            lat[i][r] = run_trial(i, number++);
        }
        printf("  round %-3d", r + 1);
        for (int i = 0; i < IMPLS; i++)
            printf(" %s %-10s", impl_names[i], bench_fmt_ns(a, lat[i][r]));
        printf("\n");
        fflush(stdout);
    }
    bench_load_report();
    double m = bench_median(lat[MBX], rounds);
    double u = bench_median(lat[UNIX_DGRAM], rounds);
    double z = bench_median(lat[ZMQ], rounds);
    bench_summary("host one-way latency (peer: unix dgram)", bench_fmt_ns(a, m),
                  bench_fmt_ns(b, u), bench_fmt_factor(c, u / m),
                  "<= 1 us and >= 20x",
                  m <= 1000 && u / m >= 20 ? BENCH_MET_YES : BENCH_MET_NO);
    bench_summary("host one-way latency (peer: zmq ipc)", bench_fmt_ns(a, m),
                  bench_fmt_ns(b, z), bench_fmt_factor(c, z / m), "(info)",
                  BENCH_MET_NA);
    return 0;
}
