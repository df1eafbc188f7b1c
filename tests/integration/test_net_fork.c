/*
 * Network mailslots across fork, in a process whose network layer (and so
 * its I/O thread) already runs:
 *
 *   net_fork_child_*   the child cannot configure anew (MBX_EEXIST) and
 *                      keeps the parent's options; its layer starts afresh
 *                      with a new sender id; it sends and receives, and its
 *                      datagrams, numbered from 1 again, are not taken as
 *                      replays of the parent's
 *
 * Forking while another thread runs is what this file tests, which the
 * sanitizer runtimes do not support (TSan refuses new threads in such a
 * child), so only the plain build runs it (tests/CMakeLists.txt). Groups,
 * ports and synchronisation as in test_net.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "mbx/mbx.h"
#include "net/net.h"
#include "net_util.h"

static int
body_is(const mbx_msg *m, const char *s)
{
    size_t len;
    const void *b = mbx_msg_body(m, &len);
    return len == strlen(s) && (len == 0 || memcmp(b, s, len) == 0);
}

/* Sends "PREFIX-i" for i in [0, count) to addr. Returns 0 or an error. */
static int
send_numbered(const char *addr, const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char b[32];
        snprintf(b, sizeof b, "%s-%d", prefix, i);
        mbx_msg *m = mbx_msg_new("F", b, strlen(b));
        int rc = m ? mbx_send_to(addr, &m, -1) : MBX_ENOMEM;
        if (rc < 0) {
            mbx_msg_free(m);
            return rc;
        }
    }
    return 0;
}

/* Receives "PREFIX-0".. in order; returns how many came so, each from
 * host `origin`. */
static int
recv_numbered(mbx_id box, const char *prefix, int count, const char *origin)
{
    for (int i = 0; i < count; i++) {
        char b[32];
        snprintf(b, sizeof b, "%s-%d", prefix, i);
        mbx_msg *m = NULL;
        if (mbx_recv(box, &m, 5000) != 0)
            return i;
        int ok = body_is(m, b) && mbx_msg_origin(m) &&
                 strcmp(mbx_msg_origin(m), origin) == 0;
        mbx_msg_free(m);
        if (!ok)
            return i;
    }
    return count;
}

struct child_report {
    uint64_t sender_id;
    int configure_rc, same_identity, got;
    mbx_net_stats st;
};

/* The parent reads "//STAR/fp" and has sent and received already, so its
 * sequence numbers are well past 1. Its child then reads "//STAR/fc",
 * gets 50 messages from the parent and sends 50 back: everything arrives
 * in order, nothing is counted as a replay on either side, and the
 * child's sender id differs from the parent's. */
TEST(net_fork_child_of_started_layer_sends_and_receives)
{
    nt_clean_env();
    struct nt_group g;
    nt_group_make(&g, (long)getpid(), 0);
    const int count = 50;
    mbx_net_opts o = nt_opts_lo(&g);
    o.host = "forkhost";
    o.domain = "forkdom";
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/fp"), 0);
    REQUIRE_EQ(send_numbered("//*/fp", "warm", 200), 0);
    CHECK_EQ(recv_numbered(box, "warm", 200, "forkhost"), 200);
    uint64_t parent_id = mbx__net_sender_id();
    CHECK(parent_id != 0);

    struct nt_chan ready, report;
    nt_chan_open(&ready);
    nt_chan_open(&report);
    pid_t child = nt_fork();
    if (child == 0) {
        struct child_report rep = {0};
        mbx_net_opts other = nt_opts_lo(&g);
        other.host = "otherhost";
        rep.configure_rc = mbx_net_configure(&other);
        const char *host = NULL, *domain = NULL;
        CREQUIRE_EQ(mbx_net_identity(&host, &domain), 0);
        rep.same_identity =
            strcmp(host, "forkhost") == 0 && strcmp(domain, "forkdom") == 0;
        mbx_id cbox;
        CREQUIRE_EQ(mbx_create(&cbox, NULL), 0);
        CREQUIRE_EQ(mbx_register(cbox, "//*/fc"), 0);
        rep.sender_id = mbx__net_sender_id();
        nt_tell(&ready, 'r');
        rep.got = recv_numbered(cbox, "p", count, "forkhost");
        CREQUIRE_EQ(send_numbered("//*/fp", "c", count), 0);
        CREQUIRE_EQ(mbx_net_flush(5000), 0);
        mbx_net_stat(&rep.st);
        nt_put(&report, &rep, sizeof rep);
        mbx_net_stop(1000);
        nt_child_done();
    }
    REQUIRE_EQ(nt_hear(&ready, 10000), 'r');
    REQUIRE_EQ(send_numbered("//*/fc", "p", count), 0);
    CHECK_EQ(recv_numbered(box, "c", count, "forkhost"), count);
    struct child_report rep;
    REQUIRE_EQ(nt_get(&report, &rep, sizeof rep, 20000), 0);
    CHECK_EQ(nt_wait(child, 10000), 0);

    CHECK_EQ(rep.configure_rc, MBX_EEXIST);
    CHECK(rep.same_identity);
    CHECK(rep.sender_id != 0);
    CHECK(rep.sender_id != parent_id);
    CHECK_EQ(rep.got, count);
    CHECK_EQ(rep.st.replayed, 0);
    CHECK_EQ(rep.st.send_dropped, 0);
    mbx_net_stats st;
    mbx_net_stat(&st);
    CHECK_EQ(st.replayed, 0);
    CHECK_EQ(st.malformed + st.unauthenticated, 0);
    CHECK_EQ(mbx__net_sender_id(), parent_id);
    nt_chan_close(&ready);
    nt_chan_close(&report);
    mbx_destroy(box);
}
