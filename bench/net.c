/*
 * Network mailslots between two processes of this host, side by side with
 * LCM's UDP multicast transport (udpm): the delivered rate and the loss of
 * 64-byte messages sent as fast as the publisher can, and the one-way
 * latency of a ping-pong.
 *
 * Both go through UDP multicast and the kernel's loopback delivery. mbx:
 * every process calls mbx_net_configure with iface "lo", a group of its own
 * (NET_GROUP) and a port per trial, so the library joins the group and
 * sends on the loopback interface. LCM: lcm_create("udpm://LCM_GROUP:PORT?
 * ttl=0"). LCM 1.3 has no interface option: it joins and sends on the
 * interface of the kernel's route to the group (on the development machine
 * eth0, through the default route) with multicast loop on, and ttl 0 keeps
 * every datagram on this host: the kernel hands it straight back to the
 * local members. Nothing of the host's network configuration is changed; on
 * a host with no route to the group at all, LCM cannot send (see
 * docs/performance.md).
 *
 * Rate and loss. Each trial forks a fresh subscriber and a fresh publisher
 * (see host_common.h). The subscriber reads the network mailslot
 * "//STAR/BENCH" (STAR = "*"; mbx: a mailbox registered under that name,
 * mbx_recv) or the channel "BENCH" (LCM: lcm_subscribe and
 * lcm_handle_timeout). The publisher sends HELLO until the subscriber says,
 * through a pipe, that one arrived; then MBX_BENCH_NET_MSGS (default
 * 1000000) numbered 64-byte messages as fast as it can (mbx: mbx_send_to
 * with timeout -1, so the queue to the I/O thread pushes back when full;
 * LCM: lcm_publish, one datagram per message), waits until they are handed
 * to the kernel (mbx_net_flush; an lcm_publish returns after its sendmsg)
 * and sends END a few times, then says so through a pipe. The subscriber
 * counts each number once (a duplicate fails the benchmark) until END, or
 * until nothing came for QUIET_MS after the publisher was done (the END
 * copies were lost). Delivered rate = received / (last arrival - first
 * arrival); loss = 1 - received / sent. MBX_BENCH_NET_RATE (messages per
 * second) paces the publishers instead: the messages of each millisecond leave
 * together, and the publisher sleeps until the next millisecond.
 *
 * mbx runs twice: "mbx" with the defaults of the loopback interface (up to
 * 16 KiB per datagram, as its 64 KiB MTU allows), and "mbx 1452 B" with
 * datagram_size 1452, the default on an Ethernet LAN. LCM runs twice too:
 * "lcm" as its users get it (the URL above, the kernel's default receive
 * buffer, LCM's default queue of 30 messages per subscription, beyond which
 * it drops), and "lcm tuned" with recv_buf_size=8388608 in the URL (the
 * kernel caps it at net.core.rmem_max) and an unbounded subscription queue,
 * as mbx's mailbox is. mbx asks for 8 MiB socket buffers itself. Each round
 * line also shows the publisher's own rate, both processes' CPU time per
 * received message, mbx's messages per datagram and the messages its
 * sending side dropped (mbx_net_stats.send_dropped), and the datagrams the
 * kernel dropped for a full receive buffer during the trial (from
 * /proc/net/snmp: the whole host's).
 *
 * Latency. A fresh ponger reads "//STAR/PING" (channel "PING") and sends
 * every message back to "//STAR/PONG" ("PONG"), which a fresh pinger reads.
 * After a handshake and WARMUP round trips, the pinger times
 * MBX_BENCH_NET_ROUND_TRIPS (default 20000) round trips one by one; one-way
 * latency = round trip / 2, and the trial reports its median and 99th
 * percentile. A round trip whose message is lost (no echo within
 * LOST_MS) is counted and skipped.
 *
 * Each figure is the median over the rounds, the implementations
 * interleaved in every round, alternating which goes first.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lcm/lcm.h>

#include "host_common.h"

#define NET_GROUP "239.255.77.90" /* mbx's group in this benchmark */
#define NET_DOMAIN "bench"        /* mbx's domain in this benchmark */
#define LCM_GROUP "239.255.76.67" /* LCM's default group */
#define PORT_BASE 17700           /* trial n uses PORT_BASE + n % PORTS */
#define PORTS 100
#define LCM_TUNED_RCVBUF 8388608 /* bytes asked for by "lcm tuned" */

#define QUIET_MS 300        /* silence: is the publisher done? */
#define START_MS 10000      /* longest wait for the first message */
#define HELLO_EVERY_MS 1    /* handshake: a HELLO this often until answered */
#define END_COPIES 3        /* END is sent this many times: it may be lost */
#define WARMUP 1000         /* untimed round trips */
#define LOST_MS 200         /* a round trip with no echo by then is lost */
#define HANDLE_WAIT_MS 1000 /* one wait of a ponger for the next ping */

enum impl { MBX, MBX_LAN, LCM, LCM_TUNED, IMPLS };

static const char *const impl_names[IMPLS] = {"mbx", "mbx 1452 B", "lcm",
                                              "lcm tuned"};

/* The latency benchmark runs mbx and LCM as users get them: the variants
 * differ in how bursts are packed and buffered. */
static const enum impl latency_impls[] = {MBX, LCM};
#define LATENCY_IMPLS 2

/* Whether an implementation is mbx. */
static int
is_mbx(enum impl i)
{
    return i == MBX || i == MBX_LAN;
}

/* ---- settings ----------------------------------------------------------- */

static uint64_t
env_u64(const char *name, uint64_t fallback, uint64_t lo, uint64_t hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return fallback;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end || v < lo || v > hi) {
        fprintf(stderr, "%s must be an integer in [%llu, %llu]\n", name,
                (unsigned long long)lo, (unsigned long long)hi);
        exit(2);
    }
    return v;
}

static uint64_t
message_count(void)
{
    return env_u64("MBX_BENCH_NET_MSGS", 1000000, 1000, 100000000);
}

static uint64_t
paced_rate(void)
{
    return env_u64("MBX_BENCH_NET_RATE", 0, 0, 100000000);
}

static uint64_t
round_trip_count(void)
{
    return env_u64("MBX_BENCH_NET_ROUND_TRIPS", 20000, 100, 10000000);
}

/* ---- a link: one process's end, over mbx or LCM -------------------------- */

/* A name: LCM's channel and mbx's network address of the same name. */
struct name {
    const char *channel, *address;
};

static const struct name BENCH = {"BENCH", "//*/BENCH"};
static const struct name PING = {"PING", "//*/PING"};
static const struct name PONG = {"PONG", "//*/PONG"};

/* What a benchmark process uses to send to names and to read one name. */
struct link {
    enum impl impl;
    mbx_id box; /* mbx: the mailbox reading the name, 0 if none */
    lcm_t *lcm; /* LCM */
    int have;   /* LCM: the handler put a message in got */
    unsigned char got[BENCH_MSG_SIZE];
};

static void
on_lcm_message(const lcm_recv_buf_t *rbuf, const char *channel, void *ctx)
{
    struct link *l = ctx;
    (void)channel;
    if (rbuf->data_size != BENCH_MSG_SIZE)
        bench_fail_count("LCM message size", BENCH_MSG_SIZE, rbuf->data_size);
    memcpy(l->got, rbuf->data, BENCH_MSG_SIZE);
    l->have = 1;
}

static void
mbx_link_open(struct link *l, int port, const struct name *reads)
{
    /* On "lo" the library packs up to 16 KiB per datagram (its MTU is
     * 64 KiB); "mbx 1452 B" packs as on an Ethernet LAN. */
    mbx_net_opts o = {.domain = NET_DOMAIN,
                      .group = NET_GROUP,
                      .port = port,
                      .iface = "lo",
                      .datagram_size = l->impl == MBX_LAN ? 1452 : 0};
    int rc = mbx_net_configure(&o);
    if (rc < 0)
        bench_fail_mbx("mbx_net_configure", rc);
    if (!reads)
        return;
    if ((rc = mbx_create(&l->box, NULL)) < 0)
        bench_fail_mbx("mbx_create", rc);
    if ((rc = mbx_register(l->box, reads->address)) < 0)
        bench_fail_mbx("mbx_register (network name)", rc);
}

static void
lcm_link_open(struct link *l, int port, const struct name *reads)
{
    char url[128];
    if (l->impl == LCM_TUNED)
        snprintf(url, sizeof url, "udpm://%s:%d?ttl=0&recv_buf_size=%d",
                 LCM_GROUP, port, LCM_TUNED_RCVBUF);
    else
        snprintf(url, sizeof url, "udpm://%s:%d?ttl=0", LCM_GROUP, port);
    if (!(l->lcm = lcm_create(url))) {
        fprintf(stderr, "bench: lcm_create(\"%s\") failed\n", url);
        exit(2);
    }
    if (!reads)
        return;
    lcm_subscription_t *sub =
        lcm_subscribe(l->lcm, reads->channel, on_lcm_message, l);
    if (!sub) {
        fprintf(stderr, "bench: lcm_subscribe(\"%s\") failed\n",
                reads->channel);
        exit(2);
    }
    if (l->impl == LCM_TUNED)
        lcm_subscription_set_queue_capacity(sub, 0);
}

/* Opens this process's end, reading the name `reads` unless it is NULL.
 * On return the process is a member of the group. */
static void
link_open(struct link *l, enum impl impl, int port, const struct name *reads)
{
    *l = (struct link){.impl = impl};
    if (is_mbx(impl))
        mbx_link_open(l, port, reads);
    else
        lcm_link_open(l, port, reads);
}

/* Sends the 64 bytes of buf to every reader of `to`. */
static void
link_send(struct link *l, const struct name *to, const unsigned char *buf)
{
    if (!is_mbx(l->impl)) {
        if (lcm_publish(l->lcm, to->channel, buf, BENCH_MSG_SIZE) != 0) {
            fprintf(stderr, "bench: lcm_publish: %s\n", strerror(errno));
            exit(2);
        }
        return;
    }
    mbx_msg *m = mbx_msg_new(NULL, buf, BENCH_MSG_SIZE);
    if (!m)
        bench_fail_mbx("mbx_msg_new", MBX_ENOMEM);
    int rc = mbx_send_to(to->address, &m, -1);
    if (rc < 0)
        bench_fail_mbx("mbx_send_to", rc);
}

/* Waits until what was sent has been handed to the kernel. */
static void
link_flush(struct link *l)
{
    if (!is_mbx(l->impl))
        return; /* lcm_publish returns after its sendmsg */
    int rc = mbx_net_flush(START_MS);
    if (rc < 0)
        bench_fail_mbx("mbx_net_flush", rc);
}

/* Receives the next message into buf, waiting up to timeout_ms. Returns 1,
 * or 0 when nothing came in time. */
static int
link_recv(struct link *l, unsigned char *buf, int timeout_ms)
{
    if (is_mbx(l->impl)) {
        mbx_msg *m;
        int rc = mbx_recv(l->box, &m, timeout_ms);
        if (rc == MBX_ETIMEDOUT || rc == MBX_EAGAIN)
            return 0;
        if (rc < 0)
            bench_fail_mbx("mbx_recv", rc);
        size_t len;
        const void *body = mbx_msg_body(m, &len);
        if (len != BENCH_MSG_SIZE)
            bench_fail_count("message size", BENCH_MSG_SIZE, len);
        memcpy(buf, body, BENCH_MSG_SIZE);
        mbx_msg_free(m);
        return 1;
    }
    l->have = 0;
    int rc = lcm_handle_timeout(l->lcm, timeout_ms);
    if (rc < 0) {
        fprintf(stderr, "bench: lcm_handle_timeout failed\n");
        exit(2);
    }
    if (rc > 0 && l->have)
        memcpy(buf, l->got, BENCH_MSG_SIZE);
    return rc > 0 && l->have;
}

/* This process's network counters (mbx only; zero for LCM). */
static mbx_net_stats
link_stats(const struct link *l)
{
    mbx_net_stats s = {0};
    if (is_mbx(l->impl))
        mbx_net_stat(&s);
    return s;
}

static void
link_close(struct link *l)
{
    if (!is_mbx(l->impl)) {
        lcm_destroy(l->lcm);
        return;
    }
    if (l->box)
        mbx_destroy(l->box);
    mbx_net_stop(START_MS);
}

/* ---- rate and loss ------------------------------------------------------ */

struct rate_trial {
    enum impl impl;
    int port;
    uint64_t count;
    uint64_t pace;     /* messages per second; 0: full speed */
    int ready[2];      /* pipe: the subscriber got a HELLO */
    int done[2];       /* pipe: the publisher has sent everything */
    int pub_result[2]; /* pipe: the publisher reports */
    int sub_result[2]; /* pipe: the subscriber reports */
};

struct pub_result {
    uint64_t sent, datagrams, send_dropped;
    int64_t start_ns, end_ns;
};

struct sub_result {
    uint64_t received, datagrams;
    int64_t first_ns, last_ns;
};

/* Whether fd became readable within timeout_ms. */
static int
readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    return n > 0;
}

/* Sends HELLO until the subscriber says one arrived. */
static void
publish_hello(struct rate_trial *t, struct link *l)
{
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, HOST_HELLO);
    int64_t give_up = bench_now_ns() + (int64_t)START_MS * 1000000;
    do {
        if (bench_now_ns() > give_up)
            bench_fail_count("handshakes answered", 1, 0);
        link_send(l, &BENCH, buf);
        link_flush(l);
    } while (!readable(t->ready[0], HELLO_EVERY_MS));
    char c;
    if (host_read_all(t->ready[0], &c, 1, "the subscriber's handshake") < 0)
        exit(2);
}

/* With a pace, sleeps until message `seq` is due. The messages of each
 * millisecond leave together, and the publisher sleeps in between rather
 * than spin: on 2 CPUs a spinning publisher would take the CPU its peer
 * needs. */
static void
pace(uint64_t rate, int64_t start, uint64_t seq)
{
    uint64_t burst = rate / 1000 ? rate / 1000 : 1;
    if (!rate || seq % burst != 0)
        return;
    int64_t due = start + (int64_t)((double)seq * 1e9 / (double)rate);
    int64_t now = bench_now_ns();
    if (due > now)
        bench_sleep_ns(due - now);
}

static void
publisher(void *arg)
{
    struct rate_trial *t = arg;
    struct link l;
    unsigned char buf[BENCH_MSG_SIZE];
    bench_pin(0);
    link_open(&l, t->impl, t->port, NULL);
    publish_hello(t, &l);
    struct pub_result r = {.sent = t->count, .start_ns = bench_now_ns()};
    for (uint64_t seq = 0; seq < t->count; seq++) {
        pace(t->pace, r.start_ns, seq);
        bench_fill(buf, seq);
        link_send(&l, &BENCH, buf);
    }
    link_flush(&l);
    r.end_ns = bench_now_ns();
    bench_fill(buf, BENCH_END);
    for (int i = 0; i < END_COPIES; i++)
        link_send(&l, &BENCH, buf);
    link_flush(&l);
    host_write_all(t->done[1], "d", 1);
    mbx_net_stats st = link_stats(&l);
    r.datagrams = st.sent_datagrams;
    r.send_dropped = st.send_dropped;
    link_close(&l);
    host_write_all(t->pub_result[1], &r, sizeof r);
}

/* Counts message `seq` once; a second copy fails the benchmark. */
static void
count_once(uint8_t *seen, uint64_t seq, uint64_t count, struct sub_result *r)
{
    if (seq >= count) {
        fprintf(stderr, "bench: message number %llu of %llu sent\n",
                (unsigned long long)seq, (unsigned long long)count);
        exit(2);
    }
    uint8_t bit = (uint8_t)(1u << (seq % 8));
    if (seen[seq / 8] & bit) {
        fprintf(stderr, "bench: message %llu arrived twice\n",
                (unsigned long long)seq);
        exit(2);
    }
    seen[seq / 8] |= bit;
    int64_t now = bench_now_ns();
    if (r->received++ == 0)
        r->first_ns = now;
    r->last_ns = now;
}

static void
subscriber(void *arg)
{
    struct rate_trial *t = arg;
    struct link l;
    unsigned char buf[BENCH_MSG_SIZE];
    struct sub_result r = {0};
    uint8_t *seen = calloc(t->count / 8 + 1, 1);
    if (!seen)
        bench_fail_mbx("calloc", MBX_ENOMEM);
    bench_pin(1);
    link_open(&l, t->impl, t->port, &BENCH);
    if (!link_recv(&l, buf, START_MS) || bench_seq_of(buf) != HOST_HELLO)
        bench_fail_count("handshakes received", 1, 0);
    host_write_all(t->ready[1], "r", 1);
    for (int quiet = 0; quiet * QUIET_MS < START_MS;) {
        /* Silence ends the trial once the publisher is done (its END
         * copies were lost); before, the publisher is only slow. */
        if (!link_recv(&l, buf, QUIET_MS)) {
            if (readable(t->done[0], 0))
                break;
            quiet++;
            continue;
        }
        quiet = 0;
        uint64_t seq = bench_seq_of(buf);
        if (seq == BENCH_END)
            break;
        if (seq != HOST_HELLO) /* late copies of the handshake */
            count_once(seen, seq, t->count, &r);
    }
    r.datagrams = link_stats(&l).recv_datagrams;
    link_close(&l);
    free(seen);
    host_write_all(t->sub_result[1], &r, sizeof r);
}

/* The kernel's count of UDP datagrams dropped for a full receive buffer,
 * on the whole host (other programs' drops count too). */
static uint64_t
kernel_rcvbuf_errors(void)
{
    char line[512];
    unsigned long long v[5] = {0};
    int udp_lines = 0;
    FILE *f = fopen("/proc/net/snmp", "r");
    if (!f)
        return 0;
    /* "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors ...",
     * then the values on the next line that starts with "Udp:". */
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "Udp: ", 5) == 0 && ++udp_lines == 2) {
            sscanf(line, "Udp: %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                   &v[3], &v[4]);
            break;
        }
    fclose(f);
    return v[4];
}

struct rate_figures {
    double rate;           /* delivered messages per second */
    double sent_rate;      /* messages per second the publisher sent */
    double loss;           /* fraction of the sent messages not received */
    double cpu;            /* both processes' CPU ns per received message */
    double per_dgram;      /* messages per datagram sent (mbx) */
    uint64_t send_dropped; /* messages the publisher's layer dropped (mbx) */
    uint64_t kernel_drops;
};

/* Reads both results of a finished trial. */
static void
read_rate_results(struct rate_trial *t, struct pub_result *pr,
                  struct sub_result *sr)
{
    if (host_read_all(t->pub_result[0], pr, sizeof *pr,
                      "the publisher's result") < 0 ||
        host_read_all(t->sub_result[0], sr, sizeof *sr,
                      "the subscriber's result") < 0)
        exit(2);
    close(t->pub_result[0]);
    close(t->sub_result[0]);
}

/* Runs one rate trial in two new processes. */
static struct rate_figures
run_rate_trial(enum impl impl, int number, uint64_t count)
{
    struct rate_trial t = {.impl = impl,
                           .port = PORT_BASE + number % PORTS,
                           .count = count,
                           .pace = paced_rate()};
    host_pipe(t.ready);
    host_pipe(t.done);
    host_pipe(t.pub_result);
    host_pipe(t.sub_result);
    uint64_t drops0 = kernel_rcvbuf_errors();

    int sub_close[] = {t.ready[0], t.done[1], t.pub_result[0], t.pub_result[1],
                       t.sub_result[0]};
    pid_t s = host_fork(subscriber, &t, sub_close, 5);
    int pub_close[] = {t.ready[1], t.done[0], t.pub_result[0], t.sub_result[0],
                       t.sub_result[1]};
    pid_t p = host_fork(publisher, &t, pub_close, 5);
    close(t.ready[0]);
    close(t.ready[1]);
    /* done[0] stays open here until the trial ends: the subscriber may be
     * gone when the publisher says it is done. */
    close(t.done[1]);
    close(t.pub_result[1]);
    close(t.sub_result[1]);

    int64_t cpu = 0;
    struct pub_result pr;
    struct sub_result sr;
    host_wait_pair(p, "publisher", s, "subscriber", &cpu);
    close(t.done[0]);
    read_rate_results(&t, &pr, &sr);
    struct rate_figures f = {0};
    if (sr.received > 1)
        f.rate = (double)sr.received * 1e9 / (double)(sr.last_ns - sr.first_ns);
    f.loss = 1.0 - (double)sr.received / (double)pr.sent;
    f.sent_rate = (double)pr.sent * 1e9 / (double)(pr.end_ns - pr.start_ns);
    f.cpu = sr.received ? (double)cpu / (double)sr.received : 0;
    f.per_dgram = pr.datagrams ? (double)pr.sent / (double)pr.datagrams : 1;
    f.send_dropped = pr.send_dropped;
    f.kernel_drops = kernel_rcvbuf_errors() - drops0;
    return f;
}

/* ---- latency ------------------------------------------------------------- */

struct lat_trial {
    enum impl impl;
    int port;
    uint64_t round_trips;
    int result[2]; /* pipe: the pinger reports */
};

struct lat_result {
    double median_ns, p99_ns;
    uint64_t lost;
};

static void
ponger(void *arg)
{
    struct lat_trial *t = arg;
    struct link l;
    unsigned char buf[BENCH_MSG_SIZE];
    bench_pin(1);
    link_open(&l, t->impl, t->port, &PING);
    for (;;) {
        if (!link_recv(&l, buf, HANDLE_WAIT_MS))
            continue; /* the pinger's hang alarm ends a stuck trial */
        if (bench_seq_of(buf) == BENCH_END)
            break;
        link_send(&l, &PONG, buf);
    }
    link_close(&l);
}

/* One round trip of number n: its duration in ns, or -1 when lost. Echoes
 * of earlier round trips that were given up arrive late and are skipped. */
static int64_t
round_trip(struct link *l, uint64_t n, int wait_ms)
{
    unsigned char buf[BENCH_MSG_SIZE];
    int64_t start = bench_now_ns();
    bench_fill(buf, n);
    link_send(l, &PING, buf);
    do {
        if (!link_recv(l, buf, wait_ms))
            return -1;
    } while (bench_seq_of(buf) != n);
    return bench_now_ns() - start;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-quantile (0..1) of n values; sorts v. */
static double
quantile(double *v, size_t n, double p)
{
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

/* Times the round trips after the handshake and the warm-up. */
static struct lat_result
time_round_trips(struct lat_trial *t, struct link *l)
{
    struct lat_result r = {0};
    double *one_way = malloc(t->round_trips * sizeof *one_way);
    size_t n = 0;
    if (!one_way)
        bench_fail_mbx("malloc", MBX_ENOMEM);
    for (uint64_t i = 0; i < WARMUP; i++)
        round_trip(l, i, LOST_MS);
    for (uint64_t i = 0; i < t->round_trips; i++) {
        int64_t ns = round_trip(l, WARMUP + i, LOST_MS);
        if (ns < 0)
            r.lost++;
        else
            one_way[n++] = (double)ns / 2;
    }
    if (n == 0)
        bench_fail_count("round trips answered", t->round_trips, 0);
    r.median_ns = quantile(one_way, n, 0.5);
    r.p99_ns = quantile(one_way, n, 0.99);
    free(one_way);
    return r;
}

static void
pinger(void *arg)
{
    struct lat_trial *t = arg;
    struct link l;
    bench_pin(0);
    link_open(&l, t->impl, t->port, &PONG);
    /* The ponger may not be a member of the group yet. */
    int64_t give_up = bench_now_ns() + (int64_t)START_MS * 1000000;
    while (round_trip(&l, HOST_HELLO, HELLO_EVERY_MS * 10) < 0)
        if (bench_now_ns() > give_up)
            bench_fail_count("handshakes answered", 1, 0);
    struct lat_result r = time_round_trips(t, &l);
    unsigned char buf[BENCH_MSG_SIZE];
    bench_fill(buf, BENCH_END);
    for (int i = 0; i < END_COPIES; i++)
        link_send(&l, &PING, buf);
    link_flush(&l);
    link_close(&l);
    host_write_all(t->result[1], &r, sizeof r);
}

/* Runs one latency trial in two new processes. */
static struct lat_result
run_lat_trial(enum impl impl, int number)
{
    struct lat_trial t = {.impl = impl,
                          .port = PORT_BASE + number % PORTS,
                          .round_trips = round_trip_count()};
    host_pipe(t.result);
    int pong_close[] = {t.result[0], t.result[1]};
    pid_t q = host_fork(ponger, &t, pong_close, 2);
    int ping_close[] = {t.result[0]};
    pid_t p = host_fork(pinger, &t, ping_close, 1);
    close(t.result[1]);
    struct lat_result r;
    host_wait_pair(p, "pinger", q, "ponger", NULL);
    if (host_read_all(t.result[0], &r, sizeof r, "the pinger's result") < 0)
        exit(2);
    close(t.result[0]);
    return r;
}

/* ---- main ---------------------------------------------------------------- */

/* Formats a fraction as a percentage into buf (32 bytes). */
static char *
fmt_loss(char *buf, double loss)
{
    snprintf(buf, 32, loss >= 0.1 ? "%.1f %%" : "%.3f %%", loss * 100);
    return buf;
}

static void
print_rate_round(int round, enum impl i, const struct rate_figures *f)
{
    char a[32], b[32], c[32], d[32];
    printf("  round %-3d %-11s %-11s loss %-9s (sent %s, CPU %s/msg", round,
           impl_names[i], bench_fmt_rate(a, f->rate), fmt_loss(b, f->loss),
           bench_fmt_rate(c, f->sent_rate), bench_fmt_ns(d, f->cpu));
    if (is_mbx(i))
        printf(", %.1f msgs/datagram, send drops %llu", f->per_dgram,
               (unsigned long long)f->send_dropped);
    printf(", kernel drops %llu)\n", (unsigned long long)f->kernel_drops);
}

/* Prints the summary lines of mbx variant `m` against peer `p`: its rate
 * and its loss; with `target`, against the goal of the issue. */
static void
summarize_pair(double rate[IMPLS][BENCH_MAX_ROUNDS],
               double loss[IMPLS][BENCH_MAX_ROUNDS], int rounds, enum impl m,
               enum impl p, int target)
{
    char a[32], b[32], c[32], name[128];
    double mr = bench_median(rate[m], rounds),
           ml = bench_median(loss[m], rounds);
    double pr = bench_median(rate[p], rounds),
           pl = bench_median(loss[p], rounds);
    const char *how = paced_rate() ? "paced" : "full speed";
    snprintf(name, sizeof name, "net rate 64 B, %s, %s (peer: %s)",
             impl_names[m], how, impl_names[p]);
    bench_summary(name, bench_fmt_rate(a, mr), bench_fmt_rate(b, pr),
                  bench_fmt_factor(c, mr / pr),
                  target ? ">= 6x, loss <= 0.1%" : "(info)",
                  !target                       ? BENCH_MET_NA
                  : mr / pr >= 6 && ml <= 0.001 ? BENCH_MET_YES
                                                : BENCH_MET_NO);
    snprintf(name, sizeof name, "net loss, %s, %s (peer: %s)", impl_names[m],
             how, impl_names[p]);
    bench_summary(name, fmt_loss(a, ml), fmt_loss(b, pl), "-",
                  target ? "<= 0.1%" : "(info)",
                  !target       ? BENCH_MET_NA
                  : ml <= 0.001 ? BENCH_MET_YES
                                : BENCH_MET_NO);
}

static void
summarize_rates(double rate[IMPLS][BENCH_MAX_ROUNDS],
                double loss[IMPLS][BENCH_MAX_ROUNDS], int rounds)
{
    summarize_pair(rate, loss, rounds, MBX, LCM, !paced_rate());
    summarize_pair(rate, loss, rounds, MBX, LCM_TUNED, 0);
    summarize_pair(rate, loss, rounds, MBX_LAN, LCM, 0);
}

static void
bench_rates(int rounds, int *number)
{
    uint64_t count = message_count();
    double rate[IMPLS][BENCH_MAX_ROUNDS], loss[IMPLS][BENCH_MAX_ROUNDS];

    bench_heading("network mailslot -> subscriber process over loopback "
                  "multicast, 64-byte messages (delivered rate; loss)");
    printf("  %llu messages per trial, %s\n", (unsigned long long)count,
           paced_rate() ? "paced" : "publishers at full speed");
    if (paced_rate())
        printf("  paced at %llu messages/s\n",
               (unsigned long long)paced_rate());
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        struct rate_figures f[IMPLS];
        /* Alternate the order so no implementation always runs first. */
        for (int k = 0; k < IMPLS; k++) {
            enum impl i = (enum impl)((r % 2) ? IMPLS - 1 - k : k);
            f[i] = run_rate_trial(i, (*number)++, count);
            rate[i][r] = f[i].rate;
            loss[i][r] = f[i].loss;
        }
        for (int i = 0; i < IMPLS; i++)
            print_rate_round(r + 1, (enum impl)i, &f[i]);
        fflush(stdout);
    }
    bench_load_report();
    summarize_rates(rate, loss, rounds);
}

static void
bench_latency(int rounds, int *number)
{
    double med[IMPLS][BENCH_MAX_ROUNDS], p99[IMPLS][BENCH_MAX_ROUNDS];
    char a[32], b[32], c[32];

    bench_heading("ping-pong between two processes over loopback multicast, "
                  "one-way latency (median; p99)");
    printf("  %llu round trips per trial\n",
           (unsigned long long)round_trip_count());
    bench_load_start();
    for (int r = 0; r < rounds; r++) {
        struct lat_result res[IMPLS];
        for (int k = 0; k < LATENCY_IMPLS; k++) {
            enum impl i = latency_impls[(r % 2) ? LATENCY_IMPLS - 1 - k : k];
            res[i] = run_lat_trial(i, (*number)++);
            med[i][r] = res[i].median_ns;
            p99[i][r] = res[i].p99_ns;
        }
        for (int k = 0; k < LATENCY_IMPLS; k++) {
            enum impl i = latency_impls[k];
            printf("  round %-3d %-10s median %-10s p99 %-10s lost %llu\n",
                   r + 1, impl_names[i], bench_fmt_ns(a, med[i][r]),
                   bench_fmt_ns(b, p99[i][r]), (unsigned long long)res[i].lost);
        }
        fflush(stdout);
    }
    bench_load_report();
    double mm = bench_median(med[MBX], rounds),
           lm = bench_median(med[LCM], rounds);
    double mp = bench_median(p99[MBX], rounds),
           lp = bench_median(p99[LCM], rounds);
    bench_summary("net one-way latency, median (peer: lcm)",
                  bench_fmt_ns(a, mm), bench_fmt_ns(b, lm),
                  bench_fmt_factor(c, lm / mm), "<= lcm",
                  mm <= lm ? BENCH_MET_YES : BENCH_MET_NO);
    bench_summary("net one-way latency, p99 (peer: lcm)", bench_fmt_ns(a, mp),
                  bench_fmt_ns(b, lp), bench_fmt_factor(c, lp / mp), "<= lcm",
                  mp <= lp ? BENCH_MET_YES : BENCH_MET_NO);
}

int
main(void)
{
    host_bench_init();
    int rounds = bench_rounds(), number = 0;
    bench_rates(rounds, &number);
    bench_latency(rounds, &number);
    return 0;
}
