/*
 * Memory of idle mailboxes, and the cost of creating and destroying them.
 *
 * mbx: the resident set size (from /proc/self/statm) before and after
 * creating 1M mailboxes in a fresh process gives the bytes per idle
 * mailbox; the same run times the creates and the destroys, then a loop of
 * create + destroy on one slot. Peer: ZeroMQ inproc PAIR sockets, the
 * nearest thing ZeroMQ has to a mailbox: 1000 of them, and zmq_socket +
 * zmq_close in a loop.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zmq.h>

#include "common.h"

#define MBX_COUNT 1000000
#define MBX_CHURN 1000000
#define ZMQ_COUNT 1000
#define ZMQ_CHURN 5000

static double
rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2) {
        fprintf(stderr, "bench: cannot read /proc/self/statm\n");
        exit(2);
    }
    fclose(f);
    return (double)resident * (double)sysconf(_SC_PAGESIZE);
}

struct figures {
    double per_box, total, create_ns, destroy_ns, churn_ns;
};

static void
measure_mbx(struct figures *f)
{
    mbx_id *ids = malloc(MBX_COUNT * sizeof *ids);
    if (!ids)
        bench_fail_mbx("malloc", MBX_ENOMEM);
    for (size_t i = 0; i < MBX_COUNT; i++)
        ids[i] = 0; /* touch the array before the baseline */
    double rss0 = rss_bytes();
    int64_t t0 = bench_now_ns();
    for (size_t i = 0; i < MBX_COUNT; i++) {
        int rc = mbx_create(&ids[i], NULL);
        if (rc < 0)
            bench_fail_mbx("mbx_create", rc);
    }
    int64_t t1 = bench_now_ns();
    f->total = rss_bytes() - rss0;
    f->per_box = f->total / MBX_COUNT;
    for (size_t i = 0; i < MBX_COUNT; i++) {
        int rc = mbx_destroy(ids[i]);
        if (rc < 0)
            bench_fail_mbx("mbx_destroy", rc);
    }
    int64_t t2 = bench_now_ns();
    f->create_ns = (double)(t1 - t0) / MBX_COUNT;
    f->destroy_ns = (double)(t2 - t1) / MBX_COUNT;
    for (size_t i = 0; i < MBX_CHURN; i++) {
        int rc = mbx_create(&ids[0], NULL);
        if (rc == 0)
            rc = mbx_destroy(ids[0]);
        if (rc < 0)
            bench_fail_mbx("mbx_create/mbx_destroy", rc);
    }
    f->churn_ns = (double)(bench_now_ns() - t2) / MBX_CHURN;
    free(ids);
}

static void
measure_zmq(struct figures *f)
{
    static void *socks[ZMQ_COUNT];
    void *ctx = zmq_ctx_new();
    if (!ctx)
        bench_check_zmq(-1, "zmq_ctx_new");
    /* zmq_close hands the socket to a reaper thread, so closed sockets
     * may still count against the limit for a while. */
    bench_check_zmq(zmq_ctx_set(ctx, ZMQ_MAX_SOCKETS, 4 * ZMQ_CHURN),
                    "zmq_ctx_set(ZMQ_MAX_SOCKETS)");
    /* One socket first, so the context's own threads are not counted. */
    void *first = zmq_socket(ctx, ZMQ_PAIR);
    if (!first)
        bench_check_zmq(-1, "zmq_socket");
    zmq_close(first);
    double rss0 = rss_bytes();
    int64_t t0 = bench_now_ns();
    for (int i = 0; i < ZMQ_COUNT; i++)
        if (!(socks[i] = zmq_socket(ctx, ZMQ_PAIR)))
            bench_check_zmq(-1, "zmq_socket");
    int64_t t1 = bench_now_ns();
    f->total = rss_bytes() - rss0;
    f->per_box = f->total / ZMQ_COUNT;
    for (int i = 0; i < ZMQ_COUNT; i++)
        zmq_close(socks[i]);
    int64_t t2 = bench_now_ns();
    f->create_ns = (double)(t1 - t0) / ZMQ_COUNT;
    f->destroy_ns = (double)(t2 - t1) / ZMQ_COUNT;
    for (int i = 0; i < ZMQ_CHURN; i++) {
        void *s = zmq_socket(ctx, ZMQ_PAIR);
        if (!s)
            bench_check_zmq(-1, "zmq_socket");
        zmq_close(s);
    }
    f->churn_ns = (double)(bench_now_ns() - t2) / ZMQ_CHURN;
    zmq_ctx_term(ctx);
}

int
main(void)
{
    struct figures m, z;
    char a[32], b[32], c[32];

    bench_heading("idle mailboxes: memory, create and destroy");
    measure_mbx(&m);
    measure_zmq(&z);
    printf("  mbx: %d mailboxes: RSS +%s (%.1f B each); create %s, destroy "
           "%s each\n",
           MBX_COUNT, bench_fmt_bytes(a, m.total), m.per_box,
           bench_fmt_ns(b, m.create_ns), bench_fmt_ns(c, m.destroy_ns));
    printf("  zmq: %d PAIR sockets: RSS +%s (%.0f B each); create %s, close "
           "%s each\n",
           ZMQ_COUNT, bench_fmt_bytes(a, z.total), z.per_box,
           bench_fmt_ns(b, z.create_ns), bench_fmt_ns(c, z.destroy_ns));
    bench_summary("memory per idle mailbox", bench_fmt_bytes(a, m.per_box),
                  bench_fmt_bytes(b, z.per_box),
                  bench_fmt_factor(c, z.per_box / m.per_box), "<= 256 B",
                  m.per_box <= 256 ? BENCH_MET_YES : BENCH_MET_NO);
    bench_summary("1M idle mailboxes, total", bench_fmt_bytes(a, m.total), "-",
                  "-", "(info)", BENCH_MET_NA);
    bench_summary("create 1M, per mailbox", bench_fmt_ns(a, m.create_ns),
                  bench_fmt_ns(b, z.create_ns),
                  bench_fmt_factor(c, z.create_ns / m.create_ns), "(info)",
                  BENCH_MET_NA);
    bench_summary("create + destroy", bench_fmt_ns(a, m.churn_ns),
                  bench_fmt_ns(b, z.churn_ns),
                  bench_fmt_factor(c, z.churn_ns / m.churn_ns), "(info)",
                  BENCH_MET_NA);
    return 0;
}
