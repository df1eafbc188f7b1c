/*
 * Network mailslots between hosts: three network namespaces ("alpha",
 * "beta", "gamma", 10.77.0.1-3) joined by a bridge in a fourth, made by
 * each test and deleted after it (net_util.h). Every host runs reader and
 * sender processes that enter their namespace right after fork, before
 * any network call, and configure their host name and domain.
 *
 *   lan_broadcast_*      "//STAR/NAME" reaches every reader on every host,
 *                        the sender's own host too (multicast loop)
 *   lan_two_readers_*    two reader processes on one host both get all
 *   lan_target_host      "//beta/NAME" reaches beta only; the others count
 *                        not_for_us
 *   lan_target_domain    "//red/NAME" reaches the readers of domain red
 *                        only; "//STAR/NAME" stays in the sender's domain
 *   lan_no_listener      sending to a name nobody reads succeeds
 *   lan_call_reply       mbx_call_to "//beta/NAME"; mbx_reply; origins
 *   lan_ipv6_multicast   group ff02::77:88 on the veth interfaces
 *   lan_ipv4_broadcast   the subnet's broadcast address 10.77.0.255
 *
 * Data messages carry (sender tag, sequence, sender host) so each reader
 * checks that none was lost, duplicated, reordered or corrupted and that
 * mbx_msg_origin names the sending host. A sender ends with an "END"
 * message after its data; a reader stops after the ENDs it expects, or
 * after 5 s without a message (which shows as lost messages). Readers tell
 * the test they are ready (registered, so joined to the group) through a
 * pipe before any sender starts; results come back through pipes.
 *
 * The test needs root: without network namespaces it says why and fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "harness.h"
#include "mbx/mbx.h"
#include "net_util.h"

/* Data messages per sender. */
#define N_DATA (NT_SANITIZED ? 300 : 1000)

#define TAGS_MAX 4
#define SEQ_MAX 2000

static const char *const host_name[NT_LAN_HOSTS] = {"alpha", "beta", "gamma"};

enum { ALPHA, BETA, GAMMA };

/* This test's LAN (made by nt_lan_guard) and how its hosts configure. */
static struct nt_lan lan;

struct net_conf {
    char group[64];
    int port;
    const char *iface; /* NULL: the kernel's choice (the multicast route) */
};

static struct net_conf
conf_multicast(void)
{
    struct net_conf nc = {0};
    struct nt_group g;
    nt_group_make(&g, (long)getpid(), 0);
    strcpy(nc.group, g.group);
    nc.port = g.port;
    return nc;
}

/* In a child: enters the host's namespace and configures the layer. */
static void
child_configure(const struct net_conf *nc, int host, const char *domain)
{
    nt_lan_enter(&lan, host);
    mbx_net_opts o = {.host = host_name[host],
                      .domain = domain,
                      .group = nc->group,
                      .port = nc->port,
                      .iface = nc->iface};
    CREQUIRE_EQ(mbx_net_configure(&o), 0);
}

/* The body of a data message. */
struct data {
    uint32_t tag, seq;
    char host[16];
};

/* ---- readers ------------------------------------------------------------- */

struct reader_spec {
    int host;
    const char *domain;
    const char *reg;      /* the address registered */
    int expect[TAGS_MAX]; /* data messages from each sender tag */
    int ends;             /* END messages that end the reading */
    long not_for_us;      /* the counter's final value; -1: not checked */
};

struct reader_report {
    int got[TAGS_MAX]; /* distinct data messages */
    int dup, reordered, corrupt, bad_origin, other, ends;
    int64_t ms;
    mbx_net_stats st;
};

struct reader {
    struct reader_spec spec;
    pid_t pid;
    struct nt_chan ready, report;
    struct reader_report rep;
};

/* Checks one data message against what was seen of its sender. */
static void
reader_take(struct reader_report *rep, const mbx_msg *m,
            uint8_t (*seen)[SEQ_MAX], int64_t *top)
{
    size_t len;
    const struct data *d = mbx_msg_body(m, &len);
    if (len != sizeof *d || d->tag >= TAGS_MAX || d->seq >= SEQ_MAX) {
        rep->corrupt++;
        return;
    }
    const char *origin = mbx_msg_origin(m);
    if (!origin || strncmp(origin, d->host, sizeof d->host) != 0)
        rep->bad_origin++;
    if (seen[d->tag][d->seq]) {
        rep->dup++;
        return;
    }
    seen[d->tag][d->seq] = 1;
    rep->got[d->tag]++;
    if ((int64_t)d->seq < top[d->tag])
        rep->reordered++;
    else
        top[d->tag] = d->seq;
}

static _Noreturn void
reader_main(struct reader *r, const struct net_conf *nc)
{
    const struct reader_spec *s = &r->spec;
    child_configure(nc, s->host, s->domain);
    mbx_id box;
    CREQUIRE_EQ(mbx_create(&box, NULL), 0);
    CREQUIRE_EQ(mbx_register(box, s->reg), 0);
    nt_tell(&r->ready, 'r');

    uint8_t(*seen)[SEQ_MAX] = calloc(TAGS_MAX, sizeof *seen);
    CREQUIRE(seen != NULL);
    int64_t top[TAGS_MAX] = {-1, -1, -1, -1};
    struct reader_report rep = {0};
    int64_t start = th_now_ms();
    while (rep.ends < s->ends) {
        mbx_msg *m = NULL;
        if (mbx_recv(box, &m, 5000) != 0)
            break; /* silence: what is missing shows in the counts */
        if (strcmp(mbx_msg_kind(m), "D") == 0)
            reader_take(&rep, m, seen, top);
        else if (strcmp(mbx_msg_kind(m), "END") == 0)
            rep.ends++;
        else
            rep.other++;
        mbx_msg_free(m);
    }
    rep.ms = th_now_ms() - start;
    /* Messages for others were counted before the ENDs that followed
     * them on the same path; the wait only covers other paths. */
    if (s->not_for_us >= 0)
        NT_STAT_REACH(not_for_us, (uint64_t)s->not_for_us, 3000, &rep.st);
    mbx_net_stat(&rep.st);
    nt_put(&r->report, &rep, sizeof rep);
    free(seen);
    mbx_net_stop(1000);
    nt_child_done();
}

/* Starts a reader and waits until it has registered its name. */
static void
reader_start(struct reader *r, const struct net_conf *nc)
{
    nt_chan_open(&r->ready);
    nt_chan_open(&r->report);
    r->pid = nt_fork();
    if (r->pid == 0)
        reader_main(r, nc);
    REQUIRE_EQ(nt_hear(&r->ready, 10000), 'r');
}

/* Collects a reader's report and checks it against its spec. */
static void
reader_finish(struct reader *r)
{
    const struct reader_spec *s = &r->spec;
    struct reader_report *rep = &r->rep;
    int ok = nt_get(&r->report, rep, sizeof *rep, 60000) == 0;
    CHECK(ok);
    CHECK_EQ(nt_wait(r->pid, 10000), 0);
    nt_chan_close(&r->ready);
    nt_chan_close(&r->report);
    if (!ok)
        return;
    int bad =
        rep->dup || rep->reordered || rep->corrupt || rep->bad_origin ||
        rep->other || rep->ends != s->ends ||
        (s->not_for_us >= 0 && rep->st.not_for_us != (uint64_t)s->not_for_us);
    for (int t = 0; t < TAGS_MAX; t++)
        bad |= rep->got[t] != s->expect[t];
    fprintf(stderr,
            "  reader on %s (%s, %s): got %d/%d %d/%d %d/%d, dup %d, "
            "reordered %d, corrupt %d, bad origin %d, other %d, ends %d/%d, "
            "%lld ms\n",
            host_name[s->host], s->domain, s->reg, rep->got[0], s->expect[0],
            rep->got[1], s->expect[1], rep->got[2], s->expect[2], rep->dup,
            rep->reordered, rep->corrupt, rep->bad_origin, rep->other,
            rep->ends, s->ends, (long long)rep->ms);
    if (bad)
        nt_stat_print("its counters", &rep->st);
    for (int t = 0; t < TAGS_MAX; t++)
        CHECK_EQ(rep->got[t], s->expect[t]);
    CHECK_EQ(rep->dup, 0);
    CHECK_EQ(rep->reordered, 0);
    CHECK_EQ(rep->corrupt, 0);
    CHECK_EQ(rep->bad_origin, 0);
    CHECK_EQ(rep->other, 0);
    CHECK_EQ(rep->ends, s->ends);
    CHECK_EQ(rep->st.malformed, 0);
    CHECK_EQ(rep->st.dropped_full, 0);
    if (s->not_for_us >= 0)
        CHECK_EQ(rep->st.not_for_us, s->not_for_us);
}

/* ---- senders ------------------------------------------------------------- */

struct sender_spec {
    int host;
    const char *domain;
    int tag, count;
    const char *to[2];     /* data goes to to[0], or alternately to[0] and
                            * to[1] (two spellings of one address) */
    const char *end_to[2]; /* where the END messages go; NULL: unused */
};

struct sender {
    struct sender_spec spec;
    pid_t pid;
    struct nt_chan report;
    mbx_net_stats st;
};

static _Noreturn void
sender_main(struct sender *s, const struct net_conf *nc)
{
    const struct sender_spec *p = &s->spec;
    child_configure(nc, p->host, p->domain);
    struct data d = {.tag = (uint32_t)p->tag};
    snprintf(d.host, sizeof d.host, "%s", host_name[p->host]);
    for (int i = 0; i < p->count; i++) {
        d.seq = (uint32_t)i;
        const char *to = p->to[1] && (i & 1) ? p->to[1] : p->to[0];
        mbx_msg *m = mbx_msg_new("D", &d, sizeof d);
        CREQUIRE(m != NULL);
        CREQUIRE_EQ(mbx_send_to(to, &m, -1), 0);
        CREQUIRE(m == NULL);
    }
    for (int i = 0; i < 2 && p->end_to[i]; i++) {
        mbx_msg *m = mbx_msg_new("END", &d.tag, sizeof d.tag);
        CREQUIRE_EQ(mbx_send_to(p->end_to[i], &m, -1), 0);
    }
    CREQUIRE_EQ(mbx_net_flush(10000), 0);
    mbx_net_stats st;
    mbx_net_stat(&st);
    nt_put(&s->report, &st, sizeof st);
    mbx_net_stop(1000);
    nt_child_done();
}

static void
sender_start(struct sender *s, const struct net_conf *nc)
{
    nt_chan_open(&s->report);
    s->pid = nt_fork();
    if (s->pid == 0)
        sender_main(s, nc);
}

/* Collects a sender's counters: everything sent, nothing dropped. */
static void
sender_finish(struct sender *s)
{
    int ok = nt_get(&s->report, &s->st, sizeof s->st, 60000) == 0;
    CHECK(ok);
    CHECK_EQ(nt_wait(s->pid, 10000), 0);
    nt_chan_close(&s->report);
    if (!ok)
        return;
    int ends = (s->spec.end_to[0] != NULL) + (s->spec.end_to[1] != NULL);
    CHECK_EQ(s->st.sent, s->spec.count + ends);
    CHECK_EQ(s->st.send_dropped, 0);
}

/* Runs readers, then senders, then checks everything. */
static void
run_lan(const struct net_conf *nc, struct reader *r, int nr, struct sender *s,
        int ns)
{
    int64_t start = th_now_ms();
    for (int i = 0; i < nr; i++)
        reader_start(&r[i], nc);
    for (int i = 0; i < ns; i++)
        sender_start(&s[i], nc);
    for (int i = 0; i < ns; i++)
        sender_finish(&s[i]);
    for (int i = 0; i < nr; i++)
        reader_finish(&r[i]);
    fprintf(stderr, "  %d readers, %d senders: %lld ms\n", nr, ns,
            (long long)(th_now_ms() - start));
}

/* ---- the tests ----------------------------------------------------------- */

/* Every host reads "bcast" and sends N messages to "//STAR/bcast": each
 * reader gets all 3 x N, its own host's by the multicast loop. */
TEST(lan_broadcast_reaches_every_reader)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    struct reader r[3];
    struct sender s[3];
    for (int h = 0; h < 3; h++) {
        r[h] = (struct reader){.spec = {.host = h,
                                        .domain = "lan",
                                        .reg = "//*/bcast",
                                        .expect = {N_DATA, N_DATA, N_DATA},
                                        .ends = 3,
                                        .not_for_us = 0}};
        s[h] = (struct sender){.spec = {.host = h,
                                        .domain = "lan",
                                        .tag = h,
                                        .count = N_DATA,
                                        .to = {"//*/bcast"},
                                        .end_to = {"//*/bcast"}}};
    }
    run_lan(&nc, r, 3, s, 3);
}

/* Two reader processes of one name on beta both receive every message of
 * senders on alpha and gamma. */
TEST(lan_two_readers_on_one_host)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    struct reader r[2];
    for (int i = 0; i < 2; i++)
        r[i] = (struct reader){.spec = {.host = BETA,
                                        .domain = "lan",
                                        .reg = "\\\\*\\mailslot\\two",
                                        .expect = {N_DATA, N_DATA},
                                        .ends = 2,
                                        .not_for_us = 0}};
    struct sender s[2] = {
        {.spec = {.host = ALPHA,
                  .domain = "lan",
                  .tag = 0,
                  .count = N_DATA,
                  .to = {"//*/two"},
                  .end_to = {"//*/two"}}},
        {.spec = {.host = GAMMA,
                  .domain = "lan",
                  .tag = 1,
                  .count = N_DATA,
                  .to = {"//*/two"},
                  .end_to = {"//*/two"}}},
    };
    run_lan(&nc, r, 2, s, 2);
}

/* "//beta/NAME" (also spelled "//BETA/NAME") reaches the reader on beta
 * only; the readers on alpha (the sender's own host) and gamma receive
 * every message and count it as not for them. */
TEST(lan_target_host)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    struct reader r[3];
    for (int h = 0; h < 3; h++)
        r[h] = (struct reader){.spec = {.host = h,
                                        .domain = "lan",
                                        .reg = "//*/tgt",
                                        .expect = {h == BETA ? N_DATA : 0},
                                        .ends = 1,
                                        .not_for_us = h == BETA ? 0 : N_DATA}};
    struct sender s = {.spec = {.host = ALPHA,
                                .domain = "lan",
                                .tag = 0,
                                .count = N_DATA,
                                .to = {"//beta/tgt", "//BETA/tgt"},
                                .end_to = {"//*/tgt"}}};
    run_lan(&nc, r, 3, &s, 1);
}

/* alpha and beta are in domain red, gamma in blue. A sender on gamma
 * sends N messages to "//red/dom" (and "//RED/dom"): the red readers get
 * them, gamma's blue reader does not, and a reader on gamma that
 * registered "//red/dom" (a reader in domain red) does. Another sender on
 * gamma sends M to "//STAR/dom": only gamma's blue reader gets those. Each
 * sender ends with END to "//red/dom" and "//blue/dom". */
TEST(lan_target_domain)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    const int n = N_DATA, m = N_DATA / 2;
    struct reader r[4] = {
        {.spec = {.host = ALPHA,
                  .domain = "red",
                  .reg = "//*/dom",
                  .expect = {n, 0},
                  .ends = 2,
                  .not_for_us = m + 2}},
        {.spec = {.host = BETA,
                  .domain = "red",
                  .reg = "//*/dom",
                  .expect = {n, 0},
                  .ends = 2,
                  .not_for_us = m + 2}},
        {.spec = {.host = GAMMA,
                  .domain = "blue",
                  .reg = "//*/dom",
                  .expect = {0, m},
                  .ends = 2,
                  .not_for_us = n + 2}},
        {.spec = {.host = GAMMA,
                  .domain = "blue",
                  .reg = "//red/dom",
                  .expect = {n, 0},
                  .ends = 2,
                  .not_for_us = m + 2}},
    };
    struct sender s[2] = {
        {.spec = {.host = GAMMA,
                  .domain = "blue",
                  .tag = 0,
                  .count = n,
                  .to = {"//red/dom", "//RED/dom"},
                  .end_to = {"//red/dom", "//blue/dom"}}},
        {.spec = {.host = GAMMA,
                  .domain = "blue",
                  .tag = 1,
                  .count = m,
                  .to = {"//*/dom"},
                  .end_to = {"//red/dom", "//blue/dom"}}},
    };
    run_lan(&nc, r, 4, s, 2);
}

/* Sends to a name nobody reads, anywhere and on one host, succeed; the
 * readers of another name count them as not for them. */
TEST(lan_no_listener)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    struct reader r[2];
    for (int i = 0; i < 2; i++)
        r[i] = (struct reader){.spec = {.host = i == 0 ? BETA : GAMMA,
                                        .domain = "lan",
                                        .reg = "//*/somebody",
                                        .ends = 1,
                                        .not_for_us = 100}};
    struct sender s = {.spec = {.host = ALPHA,
                                .domain = "lan",
                                .tag = 0,
                                .count = 100,
                                .to = {"//*/nobody", "//gamma/nobody"},
                                .end_to = {"//*/somebody"}}};
    run_lan(&nc, r, 2, &s, 1);
}

/* ---- call and reply ------------------------------------------------------ */

struct server_report {
    int calls, bad;
    mbx_net_stats st;
};

/* On beta: answers each call with "re:" + its body until "END"; checks
 * that each request is a call whose origin is alpha. */
static _Noreturn void
server_main(const struct net_conf *nc, struct nt_chan *ready,
            struct nt_chan *report)
{
    child_configure(nc, BETA, "lan");
    mbx_id box;
    CREQUIRE_EQ(mbx_create(&box, NULL), 0);
    CREQUIRE_EQ(mbx_register(box, "//*/svc"), 0);
    nt_tell(ready, 'r');
    struct server_report rep = {0};
    for (;;) {
        mbx_msg *m = NULL;
        if (mbx_recv(box, &m, 10000) != 0)
            break;
        if (strcmp(mbx_msg_kind(m), "END") == 0) {
            mbx_msg_free(m);
            break;
        }
        size_t len;
        const char *body = mbx_msg_body(m, &len);
        const char *origin = mbx_msg_origin(m);
        if (!mbx_msg_is_call(m) || strcmp(mbx_msg_kind(m), "Q") != 0 ||
            !origin || strcmp(origin, "alpha") != 0 || len > 60) {
            rep.bad++;
            mbx_msg_free(m);
            continue;
        }
        char text[64];
        int n = snprintf(text, sizeof text, "re:%.*s", (int)len, body);
        mbx_msg *reply = mbx_msg_new("R", text, (size_t)n);
        if (mbx_reply(m, &reply) == 0)
            rep.calls++;
        else
            rep.bad++;
        mbx_msg_free(reply);
        mbx_msg_free(m);
    }
    CREQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&rep.st);
    nt_put(report, &rep, sizeof rep);
    mbx_net_stop(1000);
    nt_child_done();
}

struct caller_report {
    int ok, bad, no_reader;
    mbx_net_stats st;
};

/* On alpha: `calls` calls to "//beta/svc", each checked; one call to a
 * name nobody reads, which times out; then END. */
static _Noreturn void
caller_main(const struct net_conf *nc, int calls, struct nt_chan *report)
{
    child_configure(nc, ALPHA, "lan");
    struct caller_report rep = {0};
    for (int i = 0; i < calls; i++) {
        char q[32], want[40];
        snprintf(q, sizeof q, "q-%d", i);
        snprintf(want, sizeof want, "re:q-%d", i);
        mbx_msg *req = mbx_msg_new("Q", q, strlen(q)), *reply = NULL;
        int rc = mbx_call_to("//beta/svc", &req, &reply, 5000);
        size_t len = 0;
        const char *body = reply ? mbx_msg_body(reply, &len) : NULL;
        const char *origin = reply ? mbx_msg_origin(reply) : NULL;
        if (rc == 0 && req == NULL && strcmp(mbx_msg_kind(reply), "R") == 0 &&
            len == strlen(want) && memcmp(body, want, len) == 0 && origin &&
            strcmp(origin, "beta") == 0)
            rep.ok++;
        else {
            fprintf(stderr, "  call %d: rc %d (%s)\n", i, rc,
                    mbx_strerror_name(rc));
            rep.bad++;
        }
        mbx_msg_free(req);
        mbx_msg_free(reply);
    }
    mbx_msg *req = mbx_msg_new("Q", "x", 1), *reply = NULL;
    if (mbx_call_to("//gamma/nobody", &req, &reply, 300) == MBX_ETIMEDOUT &&
        req == NULL && reply == NULL)
        rep.no_reader = 1;
    mbx_msg_free(req);
    mbx_msg *end = mbx_msg_new("END", NULL, 0);
    CREQUIRE_EQ(mbx_send_to("//*/svc", &end, -1), 0);
    CREQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&rep.st);
    nt_put(report, &rep, sizeof rep);
    mbx_net_stop(1000);
    nt_child_done();
}

/* alpha calls "//beta/svc" CALLS times: each reply carries the request's
 * body, comes from beta, and each request came from alpha. gamma, which
 * reads "svc" too, receives every request (for beta) and every reply (for
 * alpha) and counts each as not for it. */
TEST(lan_call_reply)
{
    if (!nt_lan_guard(&lan))
        return;
    const int calls = NT_SANITIZED ? 100 : 300;
    struct net_conf nc = conf_multicast();
    struct reader gamma = {.spec = {.host = GAMMA,
                                    .domain = "lan",
                                    .reg = "//*/svc",
                                    .ends = 1,
                                    .not_for_us = 2 * calls + 1}};
    reader_start(&gamma, &nc);
    struct nt_chan ready, srep, crep;
    nt_chan_open(&ready);
    nt_chan_open(&srep);
    nt_chan_open(&crep);
    pid_t server = nt_fork();
    if (server == 0)
        server_main(&nc, &ready, &srep);
    REQUIRE_EQ(nt_hear(&ready, 10000), 'r');
    int64_t start = th_now_ms();
    pid_t caller = nt_fork();
    if (caller == 0)
        caller_main(&nc, calls, &crep);

    struct caller_report c;
    struct server_report s;
    REQUIRE_EQ(nt_get(&crep, &c, sizeof c, 60000), 0);
    int64_t took = th_now_ms() - start;
    REQUIRE_EQ(nt_get(&srep, &s, sizeof s, 30000), 0);
    CHECK_EQ(nt_wait(caller, 10000), 0);
    CHECK_EQ(nt_wait(server, 10000), 0);
    fprintf(stderr, "  %d calls in %lld ms: %d ok, %d bad; server %d, bad %d\n",
            calls, (long long)took, c.ok, c.bad, s.calls, s.bad);
    CHECK_EQ(c.ok, calls);
    CHECK_EQ(c.bad, 0);
    CHECK_EQ(c.no_reader, 1);
    CHECK_EQ(s.calls, calls);
    CHECK_EQ(s.bad, 0);
    CHECK_EQ(c.st.replayed + c.st.malformed + c.st.dropped_full, 0);
    /* gamma: every request, every reply, and the call to "//gamma/nobody"
     * are not for its reader of "svc". */
    reader_finish(&gamma);
    nt_chan_close(&ready);
    nt_chan_close(&srep);
    nt_chan_close(&crep);
}

/* ---- other transports ---------------------------------------------------- */

/* IPv6 multicast: group ff02::77:88 on each host's veth0 (the loopback
 * interface does not carry IPv6 multicast). */
TEST(lan_ipv6_multicast)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    strcpy(nc.group, "ff02::77:88");
    nc.iface = "veth0";
    struct reader r[3];
    for (int h = 0; h < 3; h++)
        r[h] = (struct reader){.spec = {.host = h,
                                        .domain = "lan",
                                        .reg = "//*/six",
                                        .expect = {N_DATA},
                                        .ends = 1,
                                        .not_for_us = 0}};
    struct sender s = {.spec = {.host = ALPHA,
                                .domain = "lan",
                                .tag = 0,
                                .count = N_DATA,
                                .to = {"//*/six"},
                                .end_to = {"//*/six"}}};
    run_lan(&nc, r, 3, &s, 1);
}

/* Plain IPv4 broadcast to the subnet's broadcast address, the interface
 * left to the kernel's routing. */
TEST(lan_ipv4_broadcast)
{
    if (!nt_lan_guard(&lan))
        return;
    struct net_conf nc = conf_multicast();
    strcpy(nc.group, "10.77.0.255");
    struct reader r[3];
    for (int h = 0; h < 3; h++)
        r[h] = (struct reader){.spec = {.host = h,
                                        .domain = "lan",
                                        .reg = "//*/bc",
                                        .expect = {N_DATA},
                                        .ends = 1,
                                        .not_for_us = 0}};
    struct sender s = {.spec = {.host = BETA,
                                .domain = "lan",
                                .tag = 0,
                                .count = N_DATA,
                                .to = {"//*/bc"},
                                .end_to = {"//*/bc"}}};
    run_lan(&nc, r, 3, &s, 1);
}
