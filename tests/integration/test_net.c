/*
 * Network mailslots on one host, over the loopback interface:
 *
 *   net_configure_*      option checks, the environment, a fork child of a
 *                        process that configured but never started
 *   net_register_*       one registration of a network name per process,
 *                        unregister, destroy ends it; both address forms
 *   net_message_size_*   MBX_EMSGSIZE and nothing sent; a reader's
 *                        message_size bounds what it accepts
 *   net_slot_*           mbx_slot_* on a network name, iterated until a
 *                        sentinel
 *   net_fields_*         kind, empty bodies, urgency, reply address and
 *                        mbx_msg_origin cross processes
 *   net_full_*           a full bounded mailbox: dropped and counted, the
 *                        I/O thread goes on
 *   net_logger_*         the log handler: kinds, level filter, no newline
 *   net_spy_*            summaries of every message read
 *   net_ipv4_broadcast_* plain broadcast (127.255.255.255 on lo)
 *   net_stop_*           mbx_net_stop; the next send starts the layer again
 *   net_relay_*          a lossy, duplicating, reordering relay between two
 *                        groups: whole-or-nothing reassembly, its timeouts
 *                        and memory bound, the replay window
 *   net_key_*, net_sealed_*  the shared key: key files, forged, replayed,
 *                        truncated, wrong-key and plain datagrams
 *   net_throughput_*     4 sender processes x 20,000 messages to one
 *                        reader: none lost, duplicated or reordered; and x
 *                        200,000 at full speed: whatever the reader's socket
 *                        cannot hold is lost in order and counted
 *
 * Isolation: each test process uses its own multicast group and port
 * (nt_group_make) on the loopback interface, so tests may run in parallel
 * and nothing leaves the machine. Every process configures the layer
 * before its first network use; children are forked before the test's
 * process starts its I/O thread (see test_net_fork for the other case).
 * Nothing waits by sleeping: processes wait on pipes and messages, and
 * counters are polled against a deadline. To know that everything sent
 * before has been handled, a process sends itself a "fence" message after
 * its counters show the datagrams read: once the fence arrives, everything
 * read before it has been delivered or counted (the count of deliveries
 * may trail the mailbox by the fence itself: it is polled too). Random
 * choices (the relay, forged bytes) come from MBX_TEST_SEED, printed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "mbx/mbx.h"
#include "net/wire.h"
#include "net_util.h"

/* The test's group and port (variant 0), made at the start of each test. */
static struct nt_group grp;

/* The domain every process of these tests uses unless a test says. */
#define DOMAIN "mbxtest"

/* Starts a test: a clean environment and the test's own group. */
static void
begin(void)
{
    nt_clean_env();
    nt_group_make(&grp, (long)getpid(), 0);
}

/* Ends a test that started the layer: it drains and stops in time (and
 * the process then ends with no thread of ours running). */
static void
finish(void)
{
    CHECK_EQ(mbx_net_stop(5000), 0);
}

/* Options for the test's group on lo, as host `host`. */
static mbx_net_opts
lo_opts(const char *host)
{
    mbx_net_opts o = nt_opts_lo(&grp);
    o.host = host;
    o.domain = DOMAIN;
    return o;
}

/* ---- messages ------------------------------------------------------------ */

static mbx_msg *
text(const char *kind, const char *s)
{
    return mbx_msg_new(kind, s, strlen(s));
}

static int
body_eq(const mbx_msg *m, const void *p, size_t n)
{
    size_t len;
    const void *b = mbx_msg_body(m, &len);
    return len == n && (n == 0 || memcmp(b, p, n) == 0);
}

static int
body_is(const mbx_msg *m, const char *s)
{
    return body_eq(m, s, strlen(s));
}

/* Sends a text message to an address; the message is freed whatever
 * happens. Returns the send's result. */
static int
send_text(const char *addr, const char *kind, const char *s)
{
    mbx_msg *m = text(kind, s);
    if (!m)
        return MBX_ENOMEM;
    int rc = mbx_send_to(addr, &m, -1);
    mbx_msg_free(m);
    return rc;
}

/* Receives one message whose kind and body must be as given; frees it.
 * Returns 1 when it came and matched. */
static int
expect_text(mbx_id box, const char *kind, const char *s, int timeout_ms)
{
    mbx_msg *m = NULL;
    int rc = mbx_recv(box, &m, timeout_ms);
    if (rc != 0) {
        fprintf(stderr, "  waiting for %s \"%s\": %s\n", kind, s,
                mbx_strerror_name(rc));
        return 0;
    }
    int ok = strcmp(mbx_msg_kind(m), kind) == 0 && body_is(m, s);
    if (!ok) {
        size_t len;
        const char *b = mbx_msg_body(m, &len);
        fprintf(stderr, "  wanted %s \"%s\", got %s \"%.*s\"\n", kind, s,
                mbx_msg_kind(m), (int)(len < 60 ? len : 60), b ? b : "");
    }
    mbx_msg_free(m);
    return ok;
}

/* Sends a fence to `addr` (a name this process reads into box) and takes
 * every message from box up to it: those before it go to out[0..max) (the
 * rest are freed and counted in the result too). Returns the number of
 * messages before the fence, or -1 when the fence did not come in 5 s. */
static int
drain_to_fence(mbx_id box, const char *addr, mbx_msg **out, int max)
{
    static int fences;
    char id[32];
    snprintf(id, sizeof id, "fence-%d", ++fences);
    if (send_text(addr, "FENCE", id) != 0)
        return -1;
    int n = 0;
    for (;;) {
        mbx_msg *m = NULL;
        if (mbx_recv(box, &m, 5000) != 0)
            return -1;
        if (strcmp(mbx_msg_kind(m), "FENCE") == 0 && body_is(m, id)) {
            mbx_msg_free(m);
            return n;
        }
        if (n < max)
            out[n] = m;
        else
            mbx_msg_free(m);
        n++;
    }
}

/* Frees what drain_to_fence kept: the first n messages, at most max. */
static void
free_all(mbx_msg **m, int n, int max)
{
    for (int i = 0; i < n && i < max; i++)
        mbx_msg_free(m[i]);
}

/* Fills a body with bytes that depend on `seed` and the position, so a
 * byte from another message or place shows. */
static void
pattern_fill(uint8_t *p, size_t len, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 12345u;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)(x >> 24);
    }
}

static int
pattern_ok(const uint8_t *p, size_t len, uint32_t seed)
{
    uint8_t *want = malloc(len ? len : 1);
    if (!want)
        return 0;
    pattern_fill(want, len, seed);
    int ok = memcmp(p, want, len) == 0;
    free(want);
    return ok;
}

/* ---- raw UDP, for the relay and for forging ------------------------------ */

/* A socket reading the datagrams sent to group:port on lo, as a reader of
 * the layer would (bound to the group, joined on lo). */
static int
udp_listen(const char *group, int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int one = 1, zero = 0, big = 16 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    REQUIRE_EQ(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one), 0);
    setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    REQUIRE_EQ(inet_pton(AF_INET, group, &a.sin_addr), 1);
    REQUIRE_EQ(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    struct ip_mreqn m = {.imr_multiaddr = a.sin_addr,
                         .imr_ifindex = (int)if_nametoindex("lo")};
    REQUIRE_EQ(setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m), 0);
    return fd;
}

/* A socket sending to multicast groups on lo. */
static int
udp_sender(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    int big = 16 << 20;
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    struct ip_mreqn m = {.imr_ifindex = (int)if_nametoindex("lo")};
    REQUIRE_EQ(setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m), 0);
    return fd;
}

/* Sends one datagram to group:port. Returns 0 or -1. */
static int
udp_send(int fd, const char *group, int port, const void *p, size_t n)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, group, &a.sin_addr);
    ssize_t w;
    while ((w = sendto(fd, p, n, 0, (struct sockaddr *)&a, sizeof a)) < 0 &&
           errno == EINTR)
        ;
    return w == (ssize_t)n ? 0 : -1;
}

/* Reads one datagram, waiting at most timeout_ms. Returns its length, or
 * -1. */
static ssize_t
udp_recv(int fd, void *buf, size_t size, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return recv(fd, buf, size, MSG_DONTWAIT);
}

/* A small PRNG (splitmix64) for the relay and the forger. */
static uint64_t
rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t
test_seed(void)
{
    const char *s = getenv("MBX_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0) : 20240611;
    fprintf(stderr, "  seed %llu (MBX_TEST_SEED)\n", (unsigned long long)seed);
    return seed;
}

/* ---- configuration ------------------------------------------------------- */

/* A child configured by the environment alone (as an exec'd program
 * would be): it sends "env-hello" to "//STAR/envtest". */
static _Noreturn void
env_child_main(struct nt_chan *go)
{
    CREQUIRE_EQ(nt_hear(go, 30000), 'g');
    char port[16];
    snprintf(port, sizeof port, "%d", grp.port);
    setenv("MBX_GROUP", grp.group, 1);
    setenv("MBX_PORT", port, 1);
    setenv("MBX_IFACE", "lo", 1);
    setenv("MBX_HOSTNAME", "envhost", 1);
    setenv("MBX_DOMAIN", DOMAIN, 1);
    const char *host = NULL, *domain = NULL;
    CREQUIRE_EQ(mbx_net_identity(&host, &domain), 0);
    CREQUIRE(strcmp(host, "envhost") == 0);
    CREQUIRE(strcmp(domain, DOMAIN) == 0);
    CREQUIRE_EQ(send_text("//*/envtest", "E", "env-hello"), 0);
    CREQUIRE_EQ(mbx_net_stop(5000), 0);
    nt_child_done();
}

/* Bad option values are MBX_EINVAL and change nothing; before the layer
 * starts, the options may be set again (the last call wins), and a child
 * forked then may set its own; the environment configures a process that
 * gives no options; stop and flush before any start do nothing. */
TEST(net_configure_rules)
{
    begin();
    struct nt_chan go;
    nt_chan_open(&go);
    pid_t env_child = nt_fork();
    if (env_child == 0)
        env_child_main(&go);

    CHECK_EQ(mbx_net_flush(0), 0);
    CHECK_EQ(mbx_net_stop(0), 0);
    CHECK_EQ(mbx_net_stat(NULL), MBX_EINVAL);

    char long_name[300];
    memset(long_name, 'h', 256);
    long_name[256] = '\0';
    static const struct {
        const char *what;
        mbx_net_opts o;
    } bad[] = {
        {"group not an address", {.group = "not-an-address"}},
        {"IPv6 unicast group", {.group = "2001:db8::1"}},
        {"port 70000", {.port = 70000}},
        {"port -1", {.port = -1}},
        {"unknown interface", {.iface = "mbx-nosuch0"}},
        {"datagram_size 100", {.datagram_size = 100}},
        {"datagram_size 70000", {.datagram_size = 70000}},
        {"message_size > max", {.message_size = MBX_NET_MESSAGE_MAX + 1}},
        {"ttl 256", {.ttl = 256}},
        {"reassembly_ms -1", {.reassembly_ms = -1}},
        {"host with '/'", {.host = "a/b"}},
        {"host \"*\"", {.host = "*"}},
        {"domain \".\"", {.domain = "."}},
        {"domain with '\\'", {.domain = "x\\y"}},
        {"empty host", {.host = ""}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mbx_net_opts o = bad[i].o;
        if (!o.group)
            o.group = grp.group;
        int rc = mbx_net_configure(&o);
        if (rc != MBX_EINVAL)
            fprintf(stderr, "  %s: %s\n", bad[i].what, mbx_strerror_name(rc));
        CHECK_EQ(rc, MBX_EINVAL);
    }
    mbx_net_opts lng = lo_opts(long_name);
    CHECK_EQ(mbx_net_configure(&lng), MBX_EINVAL);

    /* Good options, then others: the last call before the start wins. */
    mbx_net_opts first = lo_opts("first");
    REQUIRE_EQ(mbx_net_configure(&first), 0);
    mbx_net_opts o = lo_opts("cfghost");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    const char *host = NULL, *domain = NULL;
    REQUIRE_EQ(mbx_net_identity(&host, &domain), 0);
    CHECK(strcmp(host, "cfghost") == 0);
    CHECK(strcmp(domain, DOMAIN) == 0);

    /* A child of a process that configured but never started the layer
     * configures freshly. */
    pid_t fresh = nt_fork();
    if (fresh == 0) {
        mbx_net_opts other = lo_opts("freshchild");
        other.port = grp.port + 1;
        CREQUIRE_EQ(mbx_net_configure(&other), 0);
        CREQUIRE_EQ(mbx_net_identity(&host, NULL), 0);
        CREQUIRE(strcmp(host, "freshchild") == 0);
        nt_child_done();
    }
    CHECK_EQ(nt_wait(fresh, 10000), 0);

    /* Started: the options are fixed. */
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/envtest"), 0);
    CHECK_EQ(mbx_net_configure(&first), MBX_EEXIST);
    REQUIRE_EQ(mbx_net_identity(&host, NULL), 0);
    CHECK(strcmp(host, "cfghost") == 0);

    /* The child configured by the environment reaches us. */
    nt_tell(&go, 'g');
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 5000), 0);
    if (m) {
        CHECK(body_is(m, "env-hello"));
        CHECK(mbx_msg_origin(m) && strcmp(mbx_msg_origin(m), "envhost") == 0);
        mbx_msg_free(m);
    }
    CHECK_EQ(nt_wait(env_child, 10000), 0);
    nt_chan_close(&go);
    mbx_destroy(box);
    finish();
}

/* The header says a group that is neither multicast nor broadcast is
 * MBX_EINVAL. 127.0.0.1 is neither (lo's broadcast address is
 * 127.255.255.255): datagrams sent to it reach one socket of the port,
 * not every reader. */
TEST(net_configure_rejects_unicast_group)
{
    begin();
    mbx_net_opts o = lo_opts("uni");
    o.group = "127.0.0.1";
    CHECK_EQ(mbx_net_configure(&o), MBX_EINVAL);
}

/* ---- names --------------------------------------------------------------- */

/* One registration of a network name per process: a second one (any
 * mailbox, either spelling, or "//THISHOST/X", which means this
 * process's domain) is MBX_EEXIST; unregistering frees it; destroying the
 * mailbox ends the registration, after which messages for the name are
 * counted as not for us. */
TEST(net_register_once_unregister_destroy)
{
    begin();
    mbx_net_opts o = lo_opts("reghost");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id a, b, id;
    REQUIRE_EQ(mbx_create(&a, NULL), 0);
    REQUIRE_EQ(mbx_create(&b, NULL), 0);
    REQUIRE_EQ(mbx_register(a, "//*/X"), 0);
    CHECK_EQ(mbx_register(a, "//*/X"), MBX_EEXIST);
    CHECK_EQ(mbx_register(b, "//*/X"), MBX_EEXIST);
    CHECK_EQ(mbx_register(b, "\\\\*\\mailslot\\X"), MBX_EEXIST);
    CHECK_EQ(mbx_register(b, "//reghost/X"), MBX_EEXIST);
    CHECK_EQ(mbx_register(b, "//" DOMAIN "/X"), MBX_EEXIST);
    CHECK_EQ(mbx_register(b, "//*/.reply/x"), MBX_EINVAL);
    /* Names are case-sensitive: "x" is another name. */
    CHECK_EQ(mbx_register(b, "//*/x"), 0);
    CHECK_EQ(mbx_unregister("//*/x"), 0);

    CHECK_EQ(mbx_whereis("//*/X", &id), 0);
    CHECK_EQ(id, a);
    CHECK_EQ(mbx_unregister("//*/X"), 0);
    CHECK_EQ(mbx_unregister("//*/X"), MBX_ENOENT);
    CHECK_EQ(mbx_whereis("//*/X", &id), MBX_ENOENT);
    REQUIRE_EQ(mbx_register(b, "//*/X"), 0);

    /* b reads X now, through the network (the multicast loop). */
    REQUIRE_EQ(send_text("//*/X", "K", "to-b"), 0);
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_recv(b, &m, 5000), 0);
    CHECK(body_is(m, "to-b"));
    CHECK(mbx_msg_origin(m) && strcmp(mbx_msg_origin(m), "reghost") == 0);
    mbx_msg_free(m);
    CHECK_EQ(mbx_recv(a, &m, 0), MBX_EAGAIN);

    /* Destroying b ends its registration. */
    mbx_net_stats st;
    /* The I/O thread counts a delivery after the mailbox took it. */
    CHECK(NT_STAT_REACH(delivered, 1, 5000, &st));
    uint64_t nfu = st.not_for_us, delivered = st.delivered;
    REQUIRE_EQ(mbx_destroy(b), 0);
    CHECK_EQ(mbx_whereis("//*/X", &id), MBX_ENOENT);
    REQUIRE_EQ(send_text("//*/X", "K", "to-nobody"), 0);
    CHECK(NT_STAT_REACH(not_for_us, nfu + 1, 5000, &st));
    CHECK_EQ(st.not_for_us, nfu + 1);
    CHECK_EQ(st.delivered, delivered);
    CHECK_EQ(st.dropped_full, 0);
    /* ... and the name is free again. */
    CHECK_EQ(mbx_register(a, "//*/X"), 0);
    mbx_destroy(a);
    finish();
}

/* "\\STAR\mailslot\NAME" is "//STAR/NAME" ("mailslot" in any case,
 * pseudo-directories with either separator), and "//DOMAIN/NAME" with
 * this process's domain reaches the same reader. */
TEST(net_register_backslash_form_equals_slash)
{
    begin();
    mbx_net_opts o = lo_opts("bshost");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id a, c, id;
    REQUIRE_EQ(mbx_create(&a, NULL), 0);
    REQUIRE_EQ(mbx_create(&c, NULL), 0);
    REQUIRE_EQ(mbx_register(a, "\\\\*\\mailslot\\app\\log"), 0);
    REQUIRE_EQ(mbx_register(c, "//*/Y"), 0);
    CHECK_EQ(mbx_whereis("//*/app/log", &id), 0);
    CHECK_EQ(id, a);
    CHECK_EQ(mbx_whereis("\\\\*\\MailSlot\\Y", &id), 0);
    CHECK_EQ(id, c);

    REQUIRE_EQ(send_text("//*/app/log", "K", "slash-to-backslash"), 0);
    REQUIRE_EQ(send_text("\\\\*\\MAILSLOT\\Y", "K", "backslash-to-slash"), 0);
    REQUIRE_EQ(send_text("\\\\" DOMAIN "\\mailslot\\Y", "K", "domain"), 0);
    REQUIRE_EQ(send_text("//BSHOST/app/log", "K", "host"), 0);
    CHECK(expect_text(a, "K", "slash-to-backslash", 5000));
    CHECK(expect_text(a, "K", "host", 5000));
    CHECK(expect_text(c, "K", "backslash-to-slash", 5000));
    CHECK(expect_text(c, "K", "domain", 5000));
    CHECK_EQ(mbx_unregister("//*/app/log"), 0);
    CHECK_EQ(mbx_unregister("\\\\*\\mailslot\\Y"), 0);
    mbx_destroy(a);
    mbx_destroy(c);
    finish();
}

/* ---- sizes --------------------------------------------------------------- */

/* A body larger than message_size is MBX_EMSGSIZE for every way of
 * sending, the caller keeps the message and nothing is sent; a body of
 * exactly message_size (fragmented) arrives whole. */
TEST(net_message_size_limit)
{
    begin();
    mbx_net_opts o = lo_opts("sizehost");
    o.message_size = 40000;
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/big"), 0);
    mbx_net_stats s0, s1;
    REQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&s0);

    uint8_t *body = malloc(40001);
    REQUIRE(body != NULL);
    pattern_fill(body, 40001, 7);
    mbx_msg *m = mbx_msg_new("BIG", body, 40001), *reply = NULL;
    REQUIRE(m != NULL);
    CHECK_EQ(mbx_send_to("//*/big", &m, 1000), MBX_EMSGSIZE);
    CHECK(m != NULL);
    CHECK_EQ(mbx_call_to("//*/big", &m, &reply, 1000), MBX_EMSGSIZE);
    CHECK(m != NULL);
    CHECK(reply == NULL);
    mbx_msg_free(m);
    mbx_slot *w;
    REQUIRE_EQ(mbx_slot_open(&w, "//*/big", NULL), 0);
    CHECK_EQ(mbx_slot_put(w, body, 40001), MBX_EMSGSIZE);
    mbx_slot_close(w);
    REQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&s1);
    CHECK_EQ(s1.sent, s0.sent);
    CHECK_EQ(s1.sent_datagrams, s0.sent_datagrams);
    CHECK_EQ(s1.send_dropped, s0.send_dropped);

    m = mbx_msg_new("BIG", body, 40000);
    REQUIRE_EQ(mbx_send_to("//*/big", &m, 1000), 0);
    mbx_msg *got[4];
    int n = drain_to_fence(box, "//*/big", got, 4);
    CHECK_EQ(n, 1);
    if (n == 1) {
        CHECK(strcmp(mbx_msg_kind(got[0]), "BIG") == 0);
        CHECK(body_eq(got[0], body, 40000));
    }
    free_all(got, n, 4);
    free(body);
    mbx_destroy(box);
    finish();
}

/* A sender (default message_size) sends bodies of 1000, 1200, 3000 and
 * 5000 bytes to a reader whose message_size is 1000: "largest body sent
 * or accepted", so only the first is delivered and the other three are
 * counted in dropped_size. */
TEST(net_message_size_bounds_what_a_reader_accepts)
{
    begin();
    struct nt_chan ready, done;
    nt_chan_open(&ready);
    nt_chan_open(&done);
    static const size_t sizes[] = {1000, 1200, 3000, 5000};
    pid_t child = nt_fork();
    if (child == 0) {
        mbx_net_opts o = lo_opts("bigsender");
        CREQUIRE_EQ(mbx_net_configure(&o), 0);
        CREQUIRE_EQ(nt_hear(&ready, 10000), 'r');
        uint8_t body[5000];
        for (size_t i = 0; i < 4; i++) {
            pattern_fill(body, sizes[i], (uint32_t)i);
            mbx_msg *m = mbx_msg_new("S", body, sizes[i]);
            CREQUIRE_EQ(mbx_send_to("//*/bounded", &m, -1), 0);
        }
        CREQUIRE_EQ(mbx_net_flush(5000), 0);
        mbx_net_stats st;
        mbx_net_stat(&st);
        nt_put(&done, &st.sent_datagrams, sizeof st.sent_datagrams);
        mbx_net_stop(1000);
        nt_child_done();
    }
    mbx_net_opts o = lo_opts("smallreader");
    o.message_size = 1000;
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/bounded"), 0);
    nt_tell(&ready, 'r');
    uint64_t datagrams = 0;
    REQUIRE_EQ(nt_get(&done, &datagrams, sizeof datagrams, 10000), 0);
    mbx_net_stats st;
    CHECK(NT_STAT_REACH(recv_datagrams, datagrams, 5000, &st));
    mbx_msg *got[8];
    int n = drain_to_fence(box, "//*/bounded", got, 8);
    mbx_net_stat(&st);
    for (int i = 0; i < n && i < 8; i++) {
        size_t len;
        mbx_msg_body(got[i], &len);
        fprintf(stderr, "  delivered a body of %zu bytes\n", len);
    }
    CHECK_EQ(n, 1);
    if (n >= 1) {
        size_t len;
        const uint8_t *b = mbx_msg_body(got[0], &len);
        CHECK(len == 1000 && pattern_ok(b, len, 0));
    }
    free_all(got, n, 8);
    CHECK_EQ(st.dropped_size, 3);
    CHECK_EQ(nt_wait(child, 10000), 0);
    nt_chan_close(&ready);
    nt_chan_close(&done);
    mbx_destroy(box);
    finish();
}

/* ---- slots --------------------------------------------------------------- */

/* winsys's iterable mailslot over the network: a writer process puts 100
 * messages and the sentinel "STOP" with mbx_slot_put on "//STAR/slotx";
 * the reader (opened as "\\STAR\mailslot\slotx") loops with mbx_slot_next
 * until the sentinel. Roles: a reader cannot put, a writer cannot get. */
TEST(net_slot_iterable_until_sentinel)
{
    begin();
    const int count = 100;
    struct nt_chan go;
    nt_chan_open(&go);
    pid_t child = nt_fork();
    if (child == 0) {
        mbx_net_opts o = lo_opts("slotwriter");
        CREQUIRE_EQ(mbx_net_configure(&o), 0);
        CREQUIRE_EQ(nt_hear(&go, 10000), 'g');
        mbx_slot *w;
        CREQUIRE_EQ(mbx_slot_open(&w, "//*/slotx", NULL), 0);
        for (int i = 0; i < count; i++) {
            char b[16];
            snprintf(b, sizeof b, "m-%d", i);
            CREQUIRE_EQ(mbx_slot_put(w, b, strlen(b)), 0);
        }
        CREQUIRE_EQ(mbx_slot_put(w, "STOP", 4), 0);
        CREQUIRE_EQ(mbx_slot_qsize(w), 0);
        mbx_msg *m = NULL;
        CREQUIRE_EQ(mbx_slot_get(w, &m, 0), MBX_EPERM);
        CREQUIRE_EQ(mbx_net_flush(5000), 0);
        mbx_slot_close(w);
        mbx_net_stop(1000);
        nt_child_done();
    }
    mbx_net_opts o = lo_opts("slotreader");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_slot *r;
    mbx_slot_opts so = {.timeout_ms = 5000};
    REQUIRE_EQ(mbx_slot_open(&r, "\\\\*\\mailslot\\slotx", &so), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_slot_mailbox(r, &box), 0); /* the reader: registered */
    CHECK_EQ(mbx_slot_put(r, "x", 1), MBX_EPERM);
    CHECK_EQ(mbx_slot_empty(r), 1);
    nt_tell(&go, 'g');

    int i = 0, rc;
    mbx_msg *m = NULL;
    while ((rc = mbx_slot_next(r, &m, "STOP", 4, -1)) > 0) {
        char want[16];
        snprintf(want, sizeof want, "m-%d", i);
        CHECK(body_is(m, want));
        CHECK(strcmp(mbx_msg_kind(m), "") == 0);
        CHECK(mbx_msg_origin(m) &&
              strcmp(mbx_msg_origin(m), "slotwriter") == 0);
        mbx_msg_free(m);
        i++;
    }
    CHECK_EQ(rc, 0);
    CHECK(m == NULL);
    CHECK_EQ(i, count);
    CHECK_EQ(mbx_slot_qsize(r), 0);
    CHECK_EQ(mbx_slot_empty(r), 1);
    CHECK_EQ(nt_wait(child, 10000), 0);

    /* A writer handle's own message_size. */
    mbx_slot *w;
    mbx_slot_opts small = {.message_size = 10};
    REQUIRE_EQ(mbx_slot_open(&w, "//*/slotx", &small), 0);
    CHECK_EQ(mbx_slot_put(w, "0123456789A", 11), MBX_EMSGSIZE);
    CHECK_EQ(mbx_slot_put(w, "0123456789", 10), 0);
    CHECK_EQ(mbx_slot_get(r, &m, 5000), 0);
    if (m)
        CHECK(body_is(m, "0123456789"));
    mbx_msg_free(m);
    mbx_slot_close(w);

    /* Closing the reader releases the name. */
    mbx_id id;
    CHECK_EQ(mbx_whereis("//*/slotx", &id), 0);
    mbx_slot_close(r);
    CHECK_EQ(mbx_whereis("//*/slotx", &id), MBX_ENOENT);
    nt_chan_close(&go);
    finish();
}

/* ---- what crosses -------------------------------------------------------- */

/* From another process: an empty kind with an empty body, a kind of 255
 * bytes, a reply address, three plain messages and then an urgent one.
 * The reader waits until all seven are queued: the urgent one comes first
 * and carries MBX_MSG_URGENT; the others keep their order; every message
 * names the sending host. A message sent inside the process has no
 * origin. */
TEST(net_fields_kind_body_urgent_from_origin)
{
    begin();
    char kind255[MBX_KIND_MAX + 1];
    memset(kind255, 'k', MBX_KIND_MAX);
    kind255[MBX_KIND_MAX] = '\0';
    struct nt_chan go;
    nt_chan_open(&go);
    pid_t child = nt_fork();
    if (child == 0) {
        mbx_net_opts o = lo_opts("far-host");
        CREQUIRE_EQ(mbx_net_configure(&o), 0);
        CREQUIRE_EQ(nt_hear(&go, 10000), 'g');
        mbx_msg *m = mbx_msg_new(NULL, NULL, 0);
        CREQUIRE_EQ(mbx_send_to("//*/fields", &m, -1), 0);
        m = mbx_msg_new(kind255, "1", 1);
        CREQUIRE(m != NULL);
        CREQUIRE_EQ(mbx_send_to("//*/fields", &m, -1), 0);
        m = text("F", "with-from");
        CREQUIRE_EQ(mbx_msg_set_from(m, "//*/reply-here"), 0);
        CREQUIRE_EQ(mbx_send_to("//*/fields", &m, -1), 0);
        for (int i = 0; i < 3; i++) {
            char b[8];
            snprintf(b, sizeof b, "n%d", i);
            CREQUIRE_EQ(send_text("//*/fields", "N", b), 0);
        }
        m = text("U", "u");
        CREQUIRE_EQ(mbx_msg_set_flags(m, MBX_MSG_URGENT), 0);
        CREQUIRE_EQ(mbx_send_to("//*/fields", &m, -1), 0);
        CREQUIRE_EQ(mbx_net_stop(5000), 0);
        nt_child_done();
    }
    mbx_net_opts o = lo_opts("near-host");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/fields"), 0);
    nt_tell(&go, 'g');
    /* Wait until all seven are queued, so urgency has something to pass. */
    int64_t until = th_now_ms() + 5000;
    mbx_stats ms;
    while (mbx_stat(box, &ms) == 0 && ms.queued < 7 && th_now_ms() < until)
        nt_pause_ms(1);
    CHECK_EQ(ms.queued, 7);
    CHECK_EQ(nt_wait(child, 10000), 0);

    static const struct {
        const char *kind, *body;
        unsigned flags;
    } want[] = {
        {"U", "u", MBX_MSG_URGENT},
        {"", "", 0},
        {NULL, "1", 0},
        {"F", "with-from", 0},
        {"N", "n0", 0},
        {"N", "n1", 0},
        {"N", "n2", 0},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        mbx_msg *m = NULL;
        if (mbx_recv(box, &m, 0) != 0) {
            CHECK(!"message missing");
            break;
        }
        const char *kind = want[i].kind ? want[i].kind : kind255;
        CHECK(strcmp(mbx_msg_kind(m), kind) == 0);
        CHECK(body_is(m, want[i].body));
        CHECK_EQ(mbx_msg_flags(m), want[i].flags);
        CHECK(mbx_msg_origin(m) && strcmp(mbx_msg_origin(m), "far-host") == 0);
        CHECK_EQ(mbx_msg_is_call(m), 0);
        if (want[i].body[0] == '\0') {
            size_t len = 1;
            CHECK(mbx_msg_body(m, &len) == NULL);
            CHECK_EQ(len, 0);
        }
        if (strcmp(kind, "F") == 0)
            CHECK(mbx_msg_from(m) &&
                  strcmp(mbx_msg_from(m), "//*/reply-here") == 0);
        else
            CHECK(mbx_msg_from(m) == NULL);
        mbx_msg_free(m);
    }

    /* Sent inside the process: no origin. */
    mbx_msg *m = text("L", "local");
    REQUIRE_EQ(mbx_send(box, &m, 0), 0);
    REQUIRE_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(mbx_msg_origin(m) == NULL);
    mbx_msg_free(m);
    nt_chan_close(&go);
    mbx_destroy(box);
    finish();
}

/* A reader's bounded mailbox that is full: what does not fit is dropped
 * and counted in dropped_full (the I/O thread never waits for room), other
 * readers of the process still get everything, and once there is room
 * again delivery resumes. */
TEST(net_full_mailbox_drops_and_counts)
{
    begin();
    mbx_net_opts o = lo_opts("fullhost");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id full, free_box;
    mbx_opts bounded = {.capacity = 4, .when_full = MBX_FULL_BLOCK};
    REQUIRE_EQ(mbx_create(&full, &bounded), 0);
    REQUIRE_EQ(mbx_create(&free_box, NULL), 0);
    REQUIRE_EQ(mbx_register(full, "//*/full"), 0);
    REQUIRE_EQ(mbx_register(free_box, "//*/free"), 0);
    mbx_net_stats s0, s1;
    mbx_net_stat(&s0);
    for (int i = 0; i < 20; i++) {
        char b[16];
        snprintf(b, sizeof b, "f-%d", i);
        REQUIRE_EQ(send_text("//*/full", "F", b), 0);
    }
    for (int i = 0; i < 20; i++) {
        char b[16];
        snprintf(b, sizeof b, "g-%d", i);
        REQUIRE_EQ(send_text("//*/free", "G", b), 0);
    }
    mbx_msg *got[32];
    int n = drain_to_fence(free_box, "//*/free", got, 32);
    CHECK_EQ(n, 20);
    for (int i = 0; i < n && i < 20; i++) {
        char b[16];
        snprintf(b, sizeof b, "g-%d", i);
        CHECK(body_is(got[i], b));
    }
    free_all(got, n, 32);
    /* The I/O thread counts a delivery after the mailbox took it. */
    NT_STAT_REACH(delivered, s0.delivered + 4 + 20 + 1, 5000, &s1);
    CHECK_EQ(s1.dropped_full - s0.dropped_full, 16);
    CHECK_EQ(s1.delivered - s0.delivered, 4 + 20 + 1);
    for (int i = 0; i < 4; i++) {
        char b[16];
        snprintf(b, sizeof b, "f-%d", i);
        CHECK(expect_text(full, "F", b, 0));
    }
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(full, &m, 0), MBX_EAGAIN);
    REQUIRE_EQ(send_text("//*/full", "F", "f-late"), 0);
    CHECK(expect_text(full, "F", "f-late", 5000));
    mbx_destroy(full);
    mbx_destroy(free_box);
    finish();
}

/* ---- the logger ---------------------------------------------------------- */

/* mbx_logger on "//STAR/LOGGER": each line is a message whose kind is its
 * level's name and whose body is the text without trailing newline; lines
 * below the logger's level are not sent. */
TEST(net_logger_lines)
{
    begin();
    mbx_net_opts o = lo_opts("loghost");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/LOGGER"), 0);
    mbx_logger *lg = NULL, *bad = NULL, *errors = NULL;
    CHECK_EQ(mbx_logger_open(&bad, "//*/LOGGER", -1), MBX_EINVAL);
    CHECK_EQ(mbx_logger_open(&bad, "", MBX_LOG_INFO), MBX_EINVAL);
    REQUIRE_EQ(mbx_logger_open(&lg, "//*/LOGGER", MBX_LOG_INFO), 0);
    REQUIRE_EQ(
        mbx_logger_open(&errors, "\\\\*\\mailslot\\LOGGER", MBX_LOG_ERROR), 0);
    char longline[3001];
    memset(longline, 'L', 3000);
    longline[3000] = '\0';
    mbx_net_stats s0, s1;
    REQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&s0);
    CHECK_EQ(mbx_log(lg, MBX_LOG_DEBUG, "hidden %d", 1), 0);
    CHECK_EQ(mbx_log(lg, MBX_LOG_INFO, "hello %d\n", 42), 0);
    CHECK_EQ(mbx_log(lg, MBX_LOG_WARNING, "careful\r\n"), 0);
    CHECK_EQ(mbx_log(lg, MBX_LOG_ERROR, "broken %s", "pipe"), 0);
    CHECK_EQ(mbx_log(lg, MBX_LOG_CRITICAL, "%s\n", longline), 0);
    CHECK_EQ(mbx_log(lg, 25, "between levels"), 0);
    CHECK_EQ(mbx_log(errors, MBX_LOG_WARNING, "not an error"), 0);
    CHECK_EQ(mbx_log(errors, MBX_LOG_ERROR, "an error"), 0);
    REQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&s1);
    CHECK_EQ(s1.sent - s0.sent, 6);

    static const char *const kinds[] = {"INFO",     "WARNING", "ERROR",
                                        "CRITICAL", "LEVEL",   "ERROR"};
    const char *bodies[] = {"hello 42", "careful",        "broken pipe",
                            longline,   "between levels", "an error"};
    mbx_msg *got[8];
    int n = drain_to_fence(box, "//*/LOGGER", got, 8);
    CHECK_EQ(n, 6);
    for (int i = 0; i < n && i < 6; i++) {
        CHECK(strcmp(mbx_msg_kind(got[i]), kinds[i]) == 0);
        CHECK(body_is(got[i], bodies[i]));
        CHECK(mbx_msg_origin(got[i]) &&
              strcmp(mbx_msg_origin(got[i]), "loghost") == 0);
    }
    free_all(got, n, 8);
    CHECK_EQ(mbx_logger_dropped(lg), 0);
    CHECK_EQ(mbx_logger_dropped(errors), 0);
    CHECK(strcmp(mbx_log_level_name(MBX_LOG_INFO), "INFO") == 0);
    CHECK(strcmp(mbx_log_level_name(31), "LEVEL") == 0);
    mbx_logger_close(lg);
    mbx_logger_close(errors);
    mbx_destroy(box);
    finish();
}

/* ---- the spy ------------------------------------------------------------- */

/* Checks one spy summary. Returns 1 when it matches. */
static int
spy_is(const mbx_msg *m, const char *name, const char *target, const char *host,
       const char *kind, int64_t size)
{
    mbx_args *a = NULL;
    if (strcmp(mbx_msg_kind(m), "mbx.spy") != 0 || mbx_msg_args(m, &a) != 0)
        return 0;
    const char *keys[] = {"name", "target", "domain", "host", "kind"};
    const char *vals[] = {name, target, DOMAIN, host, kind};
    int ok = 1;
    for (int i = 0; i < 5; i++) {
        const char *s = NULL;
        size_t len;
        if (mbx_args_kw_str(a, keys[i], &s, &len) != 0 ||
            len != strlen(vals[i]) || memcmp(s, vals[i], len) != 0) {
            fprintf(stderr, "  spy: %s is \"%s\", not \"%s\"\n", keys[i],
                    s ? s : "(none)", vals[i]);
            ok = 0;
        }
    }
    int64_t got = -1;
    if (mbx_args_kw_int(a, "size", &got) != 0 || got != size) {
        fprintf(stderr, "  spy: size %lld, not %lld\n", (long long)got,
                (long long)size);
        ok = 0;
    }
    mbx_args_free(a);
    return ok;
}

/* The spy gets a summary of every network message the process reads,
 * whatever its name or target: kind "mbx.spy", args name, target, domain,
 * host, kind and size. One spy per process; id 0 stops it. */
TEST(net_spy_summaries)
{
    begin();
    mbx_net_opts o = lo_opts("spyhost");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id spy, other, reader;
    REQUIRE_EQ(mbx_create(&spy, NULL), 0);
    REQUIRE_EQ(mbx_create(&other, NULL), 0);
    REQUIRE_EQ(mbx_create(&reader, NULL), 0);
    REQUIRE_EQ(mbx_net_spy(spy), 0);
    CHECK_EQ(mbx_net_spy(other), MBX_EEXIST);
    REQUIRE_EQ(mbx_register(reader, "//*/seen"), 0);

    mbx_msg *m = mbx_msg_new("K1", "12345", 5);
    REQUIRE_EQ(mbx_send_to("//*/nobody", &m, -1), 0);
    m = mbx_msg_new("K2", NULL, 0);
    REQUIRE_EQ(mbx_send_to("//otherhost/seen", &m, -1), 0);
    m = mbx_msg_new("K3", "abc", 3);
    REQUIRE_EQ(mbx_send_to("//*/app/seen", &m, -1), 0);
    m = mbx_msg_new("K4", "xy", 2);
    REQUIRE_EQ(mbx_send_to("//*/seen", &m, -1), 0);
    mbx_msg *got[4];
    int n = drain_to_fence(reader, "//*/seen", got, 4);
    CHECK_EQ(n, 1); /* K4 only */
    free_all(got, n, 4);

    struct {
        const char *name, *target, *kind;
        int64_t size;
    } want[] = {{"nobody", "*", "K1", 5},
                {"seen", "otherhost", "K2", 0},
                {"app/seen", "*", "K3", 3},
                {"seen", "*", "K4", 2},
                {"seen", "*", "FENCE", 7}};
    for (int i = 0; i < 5; i++) {
        mbx_msg *s = NULL;
        if (mbx_recv(spy, &s, 5000) != 0) {
            CHECK(!"spy summary missing");
            break;
        }
        CHECK(spy_is(s, want[i].name, want[i].target, "spyhost", want[i].kind,
                     want[i].size));
        mbx_msg_free(s);
    }
    CHECK_EQ(mbx_recv(spy, &m, 0), MBX_EAGAIN);

    /* Stopped: no more summaries; another mailbox may spy then. */
    CHECK_EQ(mbx_net_spy(0), 0);
    REQUIRE_EQ(send_text("//*/nobody", "K5", "x"), 0);
    n = drain_to_fence(reader, "//*/seen", got, 4);
    CHECK_EQ(n, 0);
    CHECK_EQ(mbx_recv(spy, &m, 0), MBX_EAGAIN);
    CHECK_EQ(mbx_net_spy(other), 0);
    CHECK_EQ(mbx_net_spy(0), 0);
    mbx_destroy(spy);
    mbx_destroy(other);
    mbx_destroy(reader);
    finish();
}

/* ---- transports and the layer's life ------------------------------------- */

/* A reader process that reads `count` messages "b-0".. in order from
 * `name` and reports how many came in order and its counters. */
struct seq_report {
    int in_order;
    mbx_net_stats st;
};

static _Noreturn void
seq_reader_main(const mbx_net_opts *o, const char *name, int count,
                struct nt_chan *ready, struct nt_chan *report)
{
    CREQUIRE_EQ(mbx_net_configure(o), 0);
    mbx_id box;
    CREQUIRE_EQ(mbx_create(&box, NULL), 0);
    CREQUIRE_EQ(mbx_register(box, name), 0);
    nt_tell(ready, 'r');
    struct seq_report rep = {0};
    for (int i = 0; i < count; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        if (!expect_text(box, "B", b, 5000))
            break;
        rep.in_order++;
    }
    mbx_net_stat(&rep.st);
    nt_put(report, &rep, sizeof rep);
    mbx_net_stop(1000);
    nt_child_done();
}

/* Plain IPv4 broadcast: group 127.255.255.255 on lo. Another process and
 * this one both read every message. */
TEST(net_ipv4_broadcast_on_lo)
{
    begin();
    const int count = 200;
    mbx_net_opts o = lo_opts("bchost");
    o.group = "127.255.255.255";
    struct nt_chan ready, report;
    nt_chan_open(&ready);
    nt_chan_open(&report);
    pid_t child = nt_fork();
    if (child == 0) {
        mbx_net_opts co = o;
        co.host = "bcchild";
        seq_reader_main(&co, "//*/bcast", count, &ready, &report);
    }
    REQUIRE_EQ(nt_hear(&ready, 10000), 'r');
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/bcast"), 0);
    for (int i = 0; i < count; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        REQUIRE_EQ(send_text("//*/bcast", "B", b), 0);
    }
    int in_order = 0;
    for (int i = 0; i < count; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        if (!expect_text(box, "B", b, 5000))
            break;
        in_order++;
    }
    CHECK_EQ(in_order, count);
    struct seq_report rep;
    REQUIRE_EQ(nt_get(&report, &rep, sizeof rep, 20000), 0);
    CHECK_EQ(rep.in_order, count);
    CHECK_EQ(rep.st.malformed + rep.st.replayed, 0);
    CHECK_EQ(nt_wait(child, 10000), 0);
    nt_chan_close(&ready);
    nt_chan_close(&report);
    mbx_destroy(box);
    finish();
}

/* mbx_net_stop drains and stops; names stay registered, the options stay
 * fixed, and the next send starts the layer again, receiving included. A
 * reader in another process sees one unbroken stream: the sender kept its
 * id and sequence, so nothing is taken as a replay. */
TEST(net_stop_then_send_restarts)
{
    begin();
    const int half = 10;
    mbx_net_opts o = lo_opts("stophost");
    struct nt_chan ready, report;
    nt_chan_open(&ready);
    nt_chan_open(&report);
    pid_t child = nt_fork();
    if (child == 0) {
        mbx_net_opts co = o;
        co.host = "stopchild";
        seq_reader_main(&co, "//*/sr", 2 * half, &ready, &report);
    }
    REQUIRE_EQ(nt_hear(&ready, 10000), 'r');
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box, id;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/sr"), 0);
    for (int i = 0; i < half; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        REQUIRE_EQ(send_text("//*/sr", "B", b), 0);
    }
    for (int i = 0; i < half; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        CHECK(expect_text(box, "B", b, 5000));
    }
    CHECK_EQ(mbx_net_stop(5000), 0);
    CHECK_EQ(mbx_net_stop(5000), 0); /* stopped already: nothing to do */
    CHECK_EQ(mbx_net_configure(&o), MBX_EEXIST);
    CHECK_EQ(mbx_whereis("//*/sr", &id), 0);
    CHECK_EQ(id, box);
    for (int i = half; i < 2 * half; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        REQUIRE_EQ(send_text("//*/sr", "B", b), 0);
    }
    for (int i = half; i < 2 * half; i++) {
        char b[16];
        snprintf(b, sizeof b, "b-%d", i);
        CHECK(expect_text(box, "B", b, 5000));
    }
    struct seq_report rep;
    REQUIRE_EQ(nt_get(&report, &rep, sizeof rep, 20000), 0);
    CHECK_EQ(rep.in_order, 2 * half);
    CHECK_EQ(rep.st.replayed, 0);
    CHECK_EQ(nt_wait(child, 10000), 0);
    nt_chan_close(&ready);
    nt_chan_close(&report);
    mbx_destroy(box);
    finish();
}

/* ---- a lossy relay ------------------------------------------------------- */

/* The relay reads the datagrams a sender sends to group A and sends them
 * on to group B, where the test's process reads. In RANDOM mode each
 * datagram is dropped (10%), sent twice (10%) or sent once, and 10% of
 * those sent are held back and sent after the next one (a swap). In
 * CUT_LAST mode it drops exactly the datagrams that carry the last
 * fragment of a fragmented message. It parses the frames (plain
 * datagrams) to know, per message, which fragments went on. */

#define RELAY_MSG_IDS 4096
#define RELAY_FRAMES_MAX 1024

enum { RELAY_RANDOM, RELAY_CUT_LAST };

struct relay_report {
    uint64_t in, forwarded, dropped, duplicated, held, bad;
    uint64_t single_fwd;     /* one-frame messages that went on */
    uint64_t multi_complete; /* fragmented: every fragment went on */
    uint64_t multi_partial;  /* ... some, not all */
    uint64_t multi_none;     /* ... none */
};

struct relay {
    int in_fd, out_fd, mode;
    const struct nt_group *to;
    uint64_t rng;
    uint8_t buf[65536], held[65536];
    size_t held_len;
    int held_copies;
    struct {
        uint16_t count;
        uint64_t fwd; /* a bit per fragment that went on */
    } msg[RELAY_MSG_IDS];
    struct relay_report rep;
};

static void
relay_send(struct relay *r, const uint8_t *d, size_t len, int copies)
{
    for (int i = 0; i < copies; i++) {
        CREQUIRE_EQ(udp_send(r->out_fd, r->to->group, r->to->port, d, len), 0);
        r->rep.forwarded++;
    }
}

/* Handles one datagram read from group A. */
static void
relay_one(struct relay *r, const uint8_t *d, size_t len)
{
    r->rep.in++;
    struct mbx__wire_dgram h;
    if (mbx__wire_get_header(d, len, &h) < 0 || (h.flags & MBX__WIRE_SEALED)) {
        r->rep.bad++;
        return;
    }
    static uint32_t ids[RELAY_FRAMES_MAX];
    static uint16_t idx[RELAY_FRAMES_MAX];
    const uint8_t *frames = d + MBX__WIRE_HEADER;
    size_t pos = 0, area = len - MBX__WIRE_HEADER;
    int has_last = 0;
    for (unsigned i = 0; i < h.frames; i++) {
        struct mbx__wire_frame f;
        if (i >= RELAY_FRAMES_MAX ||
            mbx__wire_get_frame(frames, area, &pos, &f) < 0 ||
            f.msg_id >= RELAY_MSG_IDS || f.count > 64) {
            r->rep.bad++;
            return;
        }
        ids[i] = f.msg_id;
        idx[i] = f.index;
        r->msg[f.msg_id].count = f.count;
        has_last |= f.count > 1 && f.index == f.count - 1;
    }
    int copies = 1;
    if (r->mode == RELAY_CUT_LAST) {
        copies = has_last ? 0 : 1;
    } else {
        uint64_t x = rnd(&r->rng) % 100;
        copies = x < 10 ? 0 : x < 20 ? 2 : 1;
    }
    if (copies == 0) {
        r->rep.dropped++;
        return;
    }
    r->rep.duplicated += copies == 2;
    for (unsigned i = 0; i < h.frames; i++)
        r->msg[ids[i]].fwd |= 1ull << idx[i];
    if (r->mode == RELAY_RANDOM && !r->held_len && rnd(&r->rng) % 100 < 10) {
        memcpy(r->held, d, len);
        r->held_len = len;
        r->held_copies = copies;
        r->rep.held++;
        return;
    }
    relay_send(r, d, len, copies);
    if (r->held_len) {
        relay_send(r, r->held, r->held_len, r->held_copies);
        r->held_len = 0;
    }
}

/* Counts, per message, whether its fragments went on. */
static void
relay_tally(struct relay *r)
{
    for (int id = 0; id < RELAY_MSG_IDS; id++) {
        unsigned count = r->msg[id].count;
        if (!count)
            continue;
        uint64_t all = count == 64 ? ~0ull : (1ull << count) - 1;
        uint64_t fwd = r->msg[id].fwd;
        if (count == 1)
            r->rep.single_fwd += fwd != 0;
        else if (fwd == all)
            r->rep.multi_complete++;
        else if (fwd)
            r->rep.multi_partial++;
        else
            r->rep.multi_none++;
    }
}

/* The relay process. Commands on ctl: 'w' + uint64 n: answer 'k' on ack
 * once n datagrams were read; 'c' / 'm': CUT_LAST / RANDOM mode; 'f': send
 * what is held, report and end. */
static _Noreturn void
relay_main(const struct nt_group *from, const struct nt_group *to,
           uint64_t seed, struct nt_chan *ctl, struct nt_chan *ack)
{
    struct relay *r = calloc(1, sizeof *r);
    CREQUIRE(r != NULL);
    r->in_fd = udp_listen(from->group, from->port);
    r->out_fd = udp_sender();
    r->to = to;
    r->rng = seed;
    r->mode = RELAY_RANDOM;
    nt_tell(ack, 'r');
    uint64_t target = 0;
    int waiting = 0;
    for (;;) {
        struct pollfd p[2] = {{.fd = r->in_fd, .events = POLLIN},
                              {.fd = ctl->rd, .events = POLLIN}};
        CREQUIRE(poll(p, 2, 30000) > 0);
        ssize_t n;
        while ((n = recv(r->in_fd, r->buf, sizeof r->buf, MSG_DONTWAIT)) > 0)
            relay_one(r, r->buf, (size_t)n);
        if (p[1].revents) {
            char op;
            CREQUIRE_EQ(nt_get(ctl, &op, 1, 1000), 0);
            if (op == 'w') {
                CREQUIRE_EQ(nt_get(ctl, &target, sizeof target, 1000), 0);
                waiting = 1;
            } else if (op == 'c' || op == 'm') {
                r->mode = op == 'c' ? RELAY_CUT_LAST : RELAY_RANDOM;
            } else {
                CREQUIRE(op == 'f');
                if (r->held_len)
                    relay_send(r, r->held, r->held_len, r->held_copies);
                relay_tally(r);
                nt_put(ack, &r->rep, sizeof r->rep);
                nt_child_done();
            }
        }
        if (waiting && r->rep.in >= target) {
            nt_tell(ack, 'k');
            waiting = 0;
        }
    }
}

/* Message `seq` of the relay test: its length (large ones 20..60 KiB, or
 * `fixed` bytes), then its bytes: seq and length, then a pattern of seq. */
static size_t
relay_len(uint32_t seq, size_t fixed)
{
    uint64_t s = seq;
    uint64_t h = rnd(&s);
    if (fixed)
        return fixed;
    return seq % 3 == 0 ? 20480 + h % 40960 : 8 + h % 300;
}

static void
relay_fill(uint8_t *p, size_t len, uint32_t seq)
{
    uint32_t l = (uint32_t)len;
    memcpy(p, &seq, 4);
    memcpy(p + 4, &l, 4);
    pattern_fill(p + 8, len - 8, seq);
}

/* Checks a delivered body; returns its seq, or -1 if it is not whole and
 * right. */
static long
relay_check(const uint8_t *p, size_t len)
{
    uint32_t seq, l;
    if (len < 8)
        return -1;
    memcpy(&seq, p, 4);
    memcpy(&l, p + 4, 4);
    if (l != len || !pattern_ok(p + 8, len - 8, seq))
        return -1;
    return seq;
}

struct relay_cmd {
    char op; /* 's': send, 'q': quit */
    int count;
    size_t fixed;
};

/* The sender: on 's' sends `count` more messages to "//STAR/relay" on group
 * A and answers with its datagrams sent so far. */
static _Noreturn void
relay_sender_main(const struct nt_group *a, struct nt_chan *cmd,
                  struct nt_chan *rep)
{
    mbx_net_opts o = nt_opts_lo(a);
    o.host = "relaysrc";
    o.domain = DOMAIN;
    o.datagram_size = 8192; /* 20..60 KiB: 3 to 8 fragments */
    CREQUIRE_EQ(mbx_net_configure(&o), 0);
    uint8_t *body = malloc(65536);
    CREQUIRE(body != NULL);
    uint32_t seq = 0;
    for (;;) {
        struct relay_cmd c;
        CREQUIRE_EQ(nt_get(cmd, &c, sizeof c, 60000), 0);
        if (c.op == 'q')
            break;
        for (int i = 0; i < c.count; i++, seq++) {
            size_t len = relay_len(seq, c.fixed);
            relay_fill(body, len, seq);
            mbx_msg *m = mbx_msg_new("R", body, len);
            CREQUIRE_EQ(mbx_send_to("//*/relay", &m, -1), 0);
        }
        CREQUIRE_EQ(mbx_net_flush(10000), 0);
        mbx_net_stats st;
        mbx_net_stat(&st);
        CREQUIRE_EQ(st.send_dropped, 0);
        nt_put(rep, &st.sent_datagrams, sizeof st.sent_datagrams);
    }
    free(body);
    mbx_net_stop(1000);
    nt_child_done();
}

/* Has the sender send `count` messages, then waits until the relay has
 * read every datagram the sender sent so far (so no socket overflows). */
static void
relay_round(struct nt_chan *scmd, struct nt_chan *srep, struct nt_chan *rctl,
            struct nt_chan *rack, int count, size_t fixed)
{
    struct relay_cmd c = {.op = 's', .count = count, .fixed = fixed};
    REQUIRE_EQ(nt_put(scmd, &c, sizeof c), 0);
    uint64_t sent = 0;
    REQUIRE_EQ(nt_get(srep, &sent, sizeof sent, 30000), 0);
    char op = 'w';
    REQUIRE_EQ(nt_put(rctl, &op, 1), 0);
    REQUIRE_EQ(nt_put(rctl, &sent, sizeof sent), 0);
    REQUIRE_EQ(nt_hear(rack, 30000), 'k');
}

/* Through the relay, the reader must deliver every message whole and
 * byte-correct or not at all, and never twice: one-frame messages that
 * went on all arrive; a fragmented message arrives iff all its fragments
 * went on (unless evicted for memory); one missing a fragment is counted
 * as a reassembly timeout or eviction; each duplicate datagram is counted
 * as replayed; memory held for partial messages stays within
 * reassembly_bytes. A second phase cuts the last fragment of eight 60 KiB
 * messages, more than the 256 KiB bound holds: some are evicted, the
 * last ones time out (the counter is polled until it moves). */
TEST(net_relay_loss_duplication_reordering)
{
    begin();
    const int rounds = NT_SANITIZED ? 5 : 10, per_round = 30, cut = 8;
    const size_t bound = 256 << 10;
    const int reassembly_ms = 200;
    struct nt_group a, b;
    nt_group_make(&a, (long)getpid(), 1);
    nt_group_make(&b, (long)getpid(), 2);
    uint64_t seed = test_seed();
    struct nt_chan rctl, rack, scmd, srep;
    nt_chan_open(&rctl);
    nt_chan_open(&rack);
    nt_chan_open(&scmd);
    nt_chan_open(&srep);
    pid_t relay = nt_fork();
    if (relay == 0)
        relay_main(&a, &b, seed, &rctl, &rack);
    REQUIRE_EQ(nt_hear(&rack, 10000), 'r');
    pid_t sender = nt_fork();
    if (sender == 0)
        relay_sender_main(&a, &scmd, &srep);

    mbx_net_opts o = nt_opts_lo(&b);
    o.host = "relaydst";
    o.domain = DOMAIN;
    o.reassembly_ms = reassembly_ms;
    o.reassembly_bytes = bound;
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/relay"), 0);

    int64_t start = th_now_ms();
    for (int i = 0; i < rounds; i++)
        relay_round(&scmd, &srep, &rctl, &rack, per_round, 0);
    REQUIRE_EQ(nt_put(&rctl, "c", 1), 0);
    relay_round(&scmd, &srep, &rctl, &rack, cut, 61440);
    REQUIRE_EQ(nt_put(&rctl, "f", 1), 0);
    struct relay_report rr;
    REQUIRE_EQ(nt_get(&rack, &rr, sizeof rr, 30000), 0);
    struct relay_cmd quit = {.op = 'q'};
    nt_put(&scmd, &quit, sizeof quit);
    CHECK_EQ(nt_wait(relay, 10000), 0);
    CHECK_EQ(nt_wait(sender, 10000), 0);
    fprintf(stderr,
            "  relay: %llu in, %llu out, %llu dropped, %llu doubled, %llu "
            "held back; messages: %llu one-frame, %llu fragmented whole, "
            "%llu partial, %llu lost\n",
            (unsigned long long)rr.in, (unsigned long long)rr.forwarded,
            (unsigned long long)rr.dropped, (unsigned long long)rr.duplicated,
            (unsigned long long)rr.held, (unsigned long long)rr.single_fwd,
            (unsigned long long)rr.multi_complete,
            (unsigned long long)rr.multi_partial,
            (unsigned long long)rr.multi_none);
    CHECK_EQ(rr.bad, 0);

    /* Everything the relay sent was read; then the fence shows it all
     * handled, and the partial messages left expire. */
    mbx_net_stats st;
    CHECK(NT_STAT_REACH(recv_datagrams, rr.forwarded, 10000, &st));
    enum { MAX_GOT = 512 };
    static mbx_msg *got[MAX_GOT];
    int n = drain_to_fence(box, "//*/relay", got, MAX_GOT);
    REQUIRE(n >= 0 && n <= MAX_GOT);
    CHECK(NT_STAT_FALL(reassembly_bytes, 0, reassembly_ms + 5000, &st));
    int64_t took = th_now_ms() - start;
    nt_stat_print("reader", &st);
    /* The partial messages expired: none of them may show up now. */
    int late = 0;
    for (mbx_msg *m = NULL; mbx_recv(box, &m, 0) == 0; mbx_msg_free(m)) {
        size_t len;
        const uint8_t *p = mbx_msg_body(m, &len);
        fprintf(stderr,
                "  delivered after its fragments expired: %zu bytes, "
                "%s\n",
                len, relay_check(p, len) < 0 ? "broken" : "whole");
        late++;
    }
    CHECK_EQ(late, 0);

    static uint8_t seen[RELAY_MSG_IDS];
    int small = 0, large = 0, broken = 0, dup = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const uint8_t *p = mbx_msg_body(got[i], &len);
        long seq = relay_check(p, len);
        if (seq < 0 || seq >= RELAY_MSG_IDS) {
            broken++;
            continue;
        }
        if (seen[seq]++) {
            dup++;
            continue;
        }
        if (len > 1400)
            large++;
        else
            small++;
    }
    free_all(got, n, MAX_GOT);
    fprintf(stderr,
            "  delivered %d one-frame and %d fragmented messages in %lld ms\n",
            small, large, (long long)took);
    CHECK_EQ(broken, 0);
    CHECK_EQ(dup, 0);
    CHECK_EQ(st.recv_datagrams, rr.forwarded + st.sent_datagrams);
    CHECK_EQ(st.replayed, rr.duplicated);
    CHECK_EQ(st.malformed, 0);
    CHECK_EQ(st.unauthenticated, 0);
    CHECK_EQ(st.dropped_full + st.dropped_size, 0);
    /* The I/O thread counts a delivery after the mailbox took it. */
    NT_STAT_REACH(delivered, (uint64_t)n + 1, 5000, &st);
    CHECK_EQ(st.delivered, (uint64_t)n + 1);
    CHECK_EQ(small, rr.single_fwd);
    CHECK(large <= (int)rr.multi_complete);
    CHECK(large + st.reassembly_evicted >= rr.multi_complete);
    CHECK(st.reassembly_timeouts + st.reassembly_evicted >= rr.multi_partial);
    CHECK(st.reassembly_evicted >= 1);
    CHECK(st.reassembly_timeouts >= 1);
    CHECK(st.reassembly_peak > 0);
    CHECK(st.reassembly_peak <= bound);
    CHECK_EQ(st.reassembly_bytes, 0);
    nt_chan_close(&rctl);
    nt_chan_close(&rack);
    nt_chan_close(&scmd);
    nt_chan_close(&srep);
    mbx_destroy(box);
    finish();
}

/* ---- the shared key ------------------------------------------------------ */

/* A private directory for key files; removed by keydir_remove. */
static char keydir[64];

static void
keydir_make(void)
{
    snprintf(keydir, sizeof keydir, "/tmp/mbx-test-net-XXXXXX");
    REQUIRE(mkdtemp(keydir) != NULL);
}

static void
keypath(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", keydir, name);
}

/* Writes `text` to a new file of mode `mode` (exactly, whatever the
 * umask). */
static void
write_file(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    size_t n = strlen(text);
    REQUIRE_EQ(write(fd, text, n), (ssize_t)n);
    close(fd);
    REQUIRE_EQ(chmod(path, mode), 0);
}

static void
keydir_remove(void)
{
    static const char *const names[] = {"k",   "k2",    "k644", "k640",
                                        "bad", "short", "long", "dir"};
    char p[128];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        keypath(p, sizeof p, names[i]);
        if (unlink(p) < 0)
            rmdir(p);
    }
    rmdir(keydir);
}

/* mbx_net_keygen writes 64 hex digits and a newline with mode 0600 and
 * refuses an existing file; mbx_net_configure refuses a key file others
 * can read (MBX_EPERM) and a malformed or missing one (MBX_EINVAL), and
 * the first network call reports a bad MBX_KEY_FILE the same way. */
TEST(net_key_file_rules)
{
    begin();
    keydir_make();
    char k[128], k644[128], k640[128], badk[128], shortk[128], longk[128],
        dir[128], missing[128];
    keypath(k, sizeof k, "k");
    keypath(k644, sizeof k644, "k644");
    keypath(k640, sizeof k640, "k640");
    keypath(badk, sizeof badk, "bad");
    keypath(shortk, sizeof shortk, "short");
    keypath(longk, sizeof longk, "long");
    keypath(dir, sizeof dir, "dir");
    keypath(missing, sizeof missing, "missing");

    mode_t old = umask(0);
    int rc = mbx_net_keygen(k);
    umask(old);
    REQUIRE_EQ(rc, 0);
    struct stat sb;
    REQUIRE_EQ(stat(k, &sb), 0);
    CHECK_EQ(sb.st_mode & 0777, 0600);
    CHECK_EQ(sb.st_size, 65);
    char text[80] = {0}, again[80] = {0};
    int fd = open(k, O_RDONLY);
    REQUIRE(fd >= 0);
    CHECK_EQ(read(fd, text, sizeof text), 65);
    close(fd);
    for (int i = 0; i < 64; i++)
        CHECK(strchr("0123456789abcdefABCDEF", text[i]) != NULL);
    CHECK_EQ(text[64], '\n');
    CHECK_EQ(mbx_net_keygen(k), MBX_EEXIST);
    fd = open(k, O_RDONLY);
    CHECK_EQ(read(fd, again, sizeof again), 65);
    close(fd);
    CHECK(memcmp(text, again, 65) == 0);
    CHECK_EQ(mbx_net_keygen(""), MBX_EINVAL);
    CHECK_EQ(mbx_net_keygen(NULL), MBX_EINVAL);

    write_file(k644, text, 0644);
    write_file(k640, text, 0640);
    write_file(badk,
               "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
               "ef\n",
               0600);
    write_file(shortk, "0123456789abcdef0123456789abcdef\n", 0600);
    write_file(longk,
               "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
               "ef0\n",
               0600);
    REQUIRE_EQ(mkdir(dir, 0700), 0);

    /* The environment, read by the first network call of a process given
     * no key option. */
    pid_t child = nt_fork();
    if (child == 0) {
        setenv("MBX_KEY_FILE", k644, 1);
        char port[16];
        snprintf(port, sizeof port, "%d", grp.port);
        setenv("MBX_GROUP", grp.group, 1);
        setenv("MBX_PORT", port, 1);
        setenv("MBX_IFACE", "lo", 1);
        mbx_id box;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register(box, "//*/keyed"), MBX_EPERM);
        setenv("MBX_KEY_FILE", badk, 1);
        CREQUIRE_EQ(mbx_register(box, "//*/keyed"), MBX_EINVAL);
        setenv("MBX_KEY_FILE", k, 1);
        CREQUIRE_EQ(mbx_register(box, "//*/keyed"), 0);
        mbx_net_stop(1000);
        nt_child_done();
    }
    CHECK_EQ(nt_wait(child, 10000), 0);

    static const struct {
        const char *name;
        int rc;
    } cases[] = {{"k644", MBX_EPERM},    {"k640", MBX_EPERM},
                 {"bad", MBX_EINVAL},    {"short", MBX_EINVAL},
                 {"long", MBX_EINVAL},   {"dir", MBX_EINVAL},
                 {"missing", MBX_EINVAL}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char p[128];
        keypath(p, sizeof p, cases[i].name);
        mbx_net_opts o = lo_opts("keyhost");
        o.key_file = p;
        rc = mbx_net_configure(&o);
        if (rc != cases[i].rc)
            fprintf(stderr, "  key file %s: %s\n", cases[i].name,
                    mbx_strerror_name(rc));
        CHECK_EQ(rc, cases[i].rc);
    }
    mbx_net_opts o = lo_opts("keyhost");
    o.key_file = k;
    CHECK_EQ(mbx_net_configure(&o), 0);
    keydir_remove();
}

/* A process that sends on command: 's' + count: `count` messages of kind
 * `kind` ("KIND-i", numbered on), then answers with its datagrams sent so
 * far; 'q' ends it. */
struct cmd_sender {
    pid_t pid;
    struct nt_chan cmd, rep;
};

static _Noreturn void
cmd_sender_main(struct cmd_sender *s, const char *host, const char *key_file,
                const char *kind)
{
    mbx_net_opts o = lo_opts(host);
    o.key_file = key_file;
    CREQUIRE_EQ(mbx_net_configure(&o), 0);
    int next = 0;
    for (;;) {
        struct {
            char op;
            int count;
        } c;
        CREQUIRE_EQ(nt_get(&s->cmd, &c, sizeof c, 60000), 0);
        if (c.op == 'q')
            break;
        for (int i = 0; i < c.count; i++, next++) {
            char b[32];
            snprintf(b, sizeof b, "%s-%d", kind, next);
            CREQUIRE_EQ(send_text("//*/sec", kind, b), 0);
        }
        CREQUIRE_EQ(mbx_net_flush(10000), 0);
        mbx_net_stats st;
        mbx_net_stat(&st);
        nt_put(&s->rep, &st.sent_datagrams, sizeof st.sent_datagrams);
    }
    mbx_net_stop(1000);
    nt_child_done();
}

static void
cmd_sender_start(struct cmd_sender *s, const char *host, const char *key_file,
                 const char *kind)
{
    nt_chan_open(&s->cmd);
    nt_chan_open(&s->rep);
    s->pid = nt_fork();
    if (s->pid == 0)
        cmd_sender_main(s, host, key_file, kind);
}

/* Has the sender send `count` messages; returns its datagrams so far. */
static uint64_t
cmd_send(struct cmd_sender *s, int count)
{
    struct {
        char op;
        int count;
    } c = {'s', count};
    REQUIRE_EQ(nt_put(&s->cmd, &c, sizeof c), 0);
    uint64_t d = 0;
    REQUIRE_EQ(nt_get(&s->rep, &d, sizeof d, 30000), 0);
    return d;
}

static void
cmd_sender_stop(struct cmd_sender *s)
{
    struct {
        char op;
        int count;
    } c = {'q', 0};
    nt_put(&s->cmd, &c, sizeof c);
    CHECK_EQ(nt_wait(s->pid, 10000), 0);
    nt_chan_close(&s->cmd);
    nt_chan_close(&s->rep);
}

/* An unkeyed reader of "//STAR/sec": on 'c' + uint64 n it waits until it
 * has read n datagrams, drains to a fence and reports. */
struct plain_report {
    int plain, other;
    mbx_net_stats st;
};

static _Noreturn void
plain_reader_main(struct nt_chan *cmd, struct nt_chan *rep)
{
    mbx_net_opts o = lo_opts("plainreader");
    CREQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    CREQUIRE_EQ(mbx_create(&box, NULL), 0);
    CREQUIRE_EQ(mbx_register(box, "//*/sec"), 0);
    nt_tell(rep, 'r');
    char op;
    uint64_t want;
    CREQUIRE_EQ(nt_get(cmd, &op, 1, 60000), 0);
    CREQUIRE_EQ(nt_get(cmd, &want, sizeof want, 1000), 0);
    struct plain_report r = {0};
    NT_STAT_REACH(recv_datagrams, want, 10000, &r.st);
    mbx_msg *got[64];
    int n = drain_to_fence(box, "//*/sec", got, 64);
    CREQUIRE(n >= 0 && n <= 64);
    for (int i = 0; i < n; i++) {
        if (strcmp(mbx_msg_kind(got[i]), "P") == 0)
            r.plain++;
        else
            r.other++;
    }
    free_all(got, n, 64);
    mbx_net_stat(&r.st);
    nt_put(rep, &r, sizeof r);
    mbx_net_stop(1000);
    nt_child_done();
}

/* A forged datagram: a header that decodes (SEALED, a sender id, a
 * sequence number, frames) and random bytes after it. */
static size_t
forge(uint8_t *out, uint64_t *rng, uint64_t sender, uint64_t seq)
{
    struct mbx__wire_dgram h = {.flags = MBX__WIRE_SEALED,
                                .sender = sender,
                                .seq = seq,
                                .frames = (uint16_t)(1 + rnd(rng) % 3)};
    mbx__wire_put_header(out, &h);
    size_t len = MBX__WIRE_HEADER + 16 + rnd(rng) % 1200;
    for (size_t i = MBX__WIRE_HEADER; i < len; i++)
        out[i] = (uint8_t)rnd(rng);
    return len;
}

/* The keyed reader (this process) gets good traffic from a sender with
 * the same key; then forged datagrams (random ones, and ones under the
 * good sender's id with sequence numbers it has not used yet), replays of
 * captured datagrams, truncated and altered copies, a sender with another
 * key and a plain sender: none is delivered and each is counted as
 * unauthenticated, replayed or malformed; afterwards the good sender's
 * messages are delivered again (forgeries did not move its replay
 * window). An unkeyed reader counts every sealed datagram as
 * unauthenticated and delivers the plain ones. */
TEST(net_sealed_rejects_forged_replayed_truncated_wrong_key_plain)
{
    begin();
    keydir_make();
    char k[128], k2[128];
    keypath(k, sizeof k, "k");
    keypath(k2, sizeof k2, "k2");
    REQUIRE_EQ(mbx_net_keygen(k), 0);
    REQUIRE_EQ(mbx_net_keygen(k2), 0);
    uint64_t rng = test_seed();

    struct cmd_sender good, wrong, plain;
    cmd_sender_start(&good, "good", k, "G");
    cmd_sender_start(&wrong, "wrong", k2, "W");
    cmd_sender_start(&plain, "plain", NULL, "P");
    struct nt_chan ucmd, urep;
    nt_chan_open(&ucmd);
    nt_chan_open(&urep);
    pid_t unkeyed = nt_fork();
    if (unkeyed == 0)
        plain_reader_main(&ucmd, &urep);
    REQUIRE_EQ(nt_hear(&urep, 10000), 'r');

    mbx_net_opts o = lo_opts("keyed");
    o.key_file = k;
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/sec"), 0);
    int cap = udp_listen(grp.group, grp.port), out = udp_sender();

    /* Good traffic, captured on the way. */
    const int first = 20;
    uint64_t g1 = cmd_send(&good, first);
    for (int i = 0; i < first; i++) {
        char b[16];
        snprintf(b, sizeof b, "G-%d", i);
        CHECK(expect_text(box, "G", b, 5000));
    }
    enum { CAPTURED_MAX = 64 };
    static uint8_t captured[CAPTURED_MAX][65536];
    static size_t caplen[CAPTURED_MAX];
    int ncap = 0;
    for (uint64_t i = 0; i < g1 && ncap < CAPTURED_MAX; i++) {
        ssize_t n = udp_recv(cap, captured[ncap], sizeof captured[0], 5000);
        REQUIRE(n > 0);
        caplen[ncap++] = (size_t)n;
    }
    close(cap);
    REQUIRE(ncap >= 1);
    struct mbx__wire_dgram h0;
    REQUIRE_EQ(mbx__wire_get_header(captured[0], caplen[0], &h0), 0);
    CHECK(h0.flags & MBX__WIRE_SEALED);
    uint64_t good_top = 0;
    for (int i = 0; i < ncap; i++) {
        struct mbx__wire_dgram h;
        REQUIRE_EQ(mbx__wire_get_header(captured[i], caplen[i], &h), 0);
        CHECK_EQ(h.sender, h0.sender);
        good_top = h.seq > good_top ? h.seq : good_top;
    }

    mbx_net_stats s0, s1;
    mbx_net_stat(&s0);
    uint64_t injected = 0, unauth = 0, malformed = 0;
    static uint8_t d[65536];
    /* Forged: random senders, then the good sender's next numbers. */
    for (int i = 0; i < 30; i++, injected++, unauth++) {
        size_t n = forge(d, &rng, rnd(&rng) | 1, 1 + rnd(&rng) % 1000000);
        REQUIRE_EQ(udp_send(out, grp.group, grp.port, d, n), 0);
    }
    for (int i = 1; i <= 10; i++, injected++, unauth++) {
        size_t n = forge(d, &rng, h0.sender, good_top + (uint64_t)i);
        REQUIRE_EQ(udp_send(out, grp.group, grp.port, d, n), 0);
    }
    /* Replayed: every captured datagram again. */
    for (int i = 0; i < ncap; i++, injected++)
        REQUIRE_EQ(udp_send(out, grp.group, grp.port, captured[i], caplen[i]),
                   0);
    /* Truncated and altered copies of a real one. */
    size_t l0 = caplen[0];
    REQUIRE_EQ(udp_send(out, grp.group, grp.port, captured[0], 10), 0);
    injected++, malformed++;
    size_t cuts[] = {MBX__WIRE_HEADER, MBX__WIRE_HEADER + 15, l0 - 16, l0 - 1};
    for (size_t i = 0; i < 4; i++, injected++, unauth++)
        REQUIRE_EQ(udp_send(out, grp.group, grp.port, captured[0], cuts[i]), 0);
    memcpy(d, captured[0], l0);
    d[l0 - 20] ^= 0x40; /* a bit of the sealed frames */
    REQUIRE_EQ(udp_send(out, grp.group, grp.port, d, l0), 0);
    injected++, unauth++;
    memcpy(d, captured[0], l0);
    d[5] ^= 0x01; /* the sender id, part of the nonce and the header */
    REQUIRE_EQ(udp_send(out, grp.group, grp.port, d, l0), 0);
    injected++, unauth++;
    /* Another key, and no key. */
    uint64_t w = cmd_send(&wrong, 10), p = cmd_send(&plain, 10);
    unauth += w + p;

    mbx_net_stats st;
    CHECK(NT_STAT_REACH(recv_datagrams, s0.recv_datagrams + injected + w + p,
                        10000, &st));
    mbx_msg *got[16];
    int n = drain_to_fence(box, "//*/sec", got, 16);
    CHECK_EQ(n, 0); /* nothing but the fence */
    free_all(got, n, 16);
    /* The I/O thread counts a delivery after the mailbox took it. */
    NT_STAT_REACH(delivered, s0.delivered + 1, 5000, &s1);
    nt_stat_print("keyed reader", &s1);
    CHECK_EQ(s1.unauthenticated - s0.unauthenticated, unauth);
    CHECK_EQ(s1.replayed - s0.replayed, (uint64_t)ncap);
    CHECK_EQ(s1.malformed - s0.malformed, malformed);
    CHECK_EQ(s1.delivered - s0.delivered, 1); /* the fence */

    /* The good sender is heard again, also with the sequence numbers the
     * forger used. */
    uint64_t g2 = cmd_send(&good, 20);
    for (int i = first; i < first + 20; i++) {
        char b[16];
        snprintf(b, sizeof b, "G-%d", i);
        CHECK(expect_text(box, "G", b, 5000));
    }
    mbx_net_stat(&st);
    CHECK_EQ(st.replayed, s1.replayed);
    CHECK_EQ(st.unauthenticated, s1.unauthenticated);

    /* The unkeyed reader: everything sealed is unauthenticated to it, the
     * plain messages are delivered. */
    REQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&st);
    uint64_t all = g2 + w + p + injected + st.sent_datagrams;
    REQUIRE_EQ(nt_put(&ucmd, "c", 1), 0);
    REQUIRE_EQ(nt_put(&ucmd, &all, sizeof all), 0);
    struct plain_report ur;
    REQUIRE_EQ(nt_get(&urep, &ur, sizeof ur, 30000), 0);
    nt_stat_print("unkeyed reader", &ur.st);
    CHECK_EQ(ur.plain, 10);
    CHECK_EQ(ur.other, 0);
    /* Its own fence came after `all`. */
    CHECK_EQ(ur.st.recv_datagrams, all + ur.st.sent_datagrams);
    CHECK_EQ(ur.st.unauthenticated, all - p - malformed);
    CHECK_EQ(ur.st.malformed, malformed);
    CHECK_EQ(ur.st.replayed, 0);
    CHECK_EQ(nt_wait(unkeyed, 10000), 0);

    cmd_sender_stop(&good);
    cmd_sender_stop(&wrong);
    cmd_sender_stop(&plain);
    close(out);
    nt_chan_close(&ucmd);
    nt_chan_close(&urep);
    mbx_destroy(box);
    keydir_remove();
    finish();
}

/* ---- throughput ---------------------------------------------------------- */

#define TP_SENDERS 4

struct tp_body {
    uint32_t sender, seq;
};

/* A sender of the throughput tests: on 'g', `count` messages (sender,
 * seq) to "//STAR/tp", waiting for the kernel to take what it queued every
 * `pace` messages (0: never); then reports its counters. */
static _Noreturn void
tp_sender_main(int who, int count, int pace, struct nt_chan *go,
               struct nt_chan *rep)
{
    char host[16];
    snprintf(host, sizeof host, "tp%d", who);
    mbx_net_opts o = lo_opts(host);
    CREQUIRE_EQ(mbx_net_configure(&o), 0);
    CREQUIRE_EQ(nt_hear(go, 30000), 'g');
    struct tp_body b = {.sender = (uint32_t)who};
    for (int i = 0; i < count; i++) {
        b.seq = (uint32_t)i;
        mbx_msg *m = mbx_msg_new("T", &b, sizeof b);
        CREQUIRE(m != NULL);
        CREQUIRE_EQ(mbx_send_to("//*/tp", &m, -1), 0);
        if (pace && (i + 1) % pace == 0)
            CREQUIRE_EQ(mbx_net_flush(10000), 0);
    }
    CREQUIRE_EQ(mbx_net_flush(10000), 0);
    mbx_net_stats st;
    mbx_net_stat(&st);
    nt_put(rep, &st, sizeof st);
    mbx_net_stop(1000);
    nt_child_done();
}

struct tp_result {
    long total, got, lost, backwards, bad;
    int64_t ms;
    mbx_net_stats sent; /* the senders' counters, summed */
    mbx_net_stats st;   /* the reader's, after the fence */
};

/* Takes one message of the throughput test: per sender, sequence numbers
 * must rise; a jump counts what it skipped as lost. */
static void
tp_take(struct tp_result *r, long *next, int count, const mbx_msg *m)
{
    size_t len;
    const struct tp_body *b = mbx_msg_body(m, &len);
    if (len != sizeof *b || b->sender >= TP_SENDERS ||
        b->seq >= (uint32_t)count) {
        r->bad++;
        return;
    }
    long seq = (long)b->seq;
    if (seq < next[b->sender]) {
        r->backwards++; /* a duplicate, or one that came late */
        return;
    }
    r->lost += seq - next[b->sender];
    next[b->sender] = seq + 1;
    r->got++;
}

/* Runs 4 senders of `count` messages to this process and receives while
 * they send. Once every sender has reported (all its datagrams are with
 * the kernel), a fence shows the end: every datagram sent before it is
 * then read or counted as a socket overflow (the kernel reports drops
 * with the next datagram read, here the fence). */
static void
tp_run(int count, int pace, struct tp_result *r)
{
    memset(r, 0, sizeof *r);
    r->total = (long)TP_SENDERS * count;
    struct nt_chan go, rep;
    nt_chan_open(&go);
    nt_chan_open(&rep);
    pid_t pid[TP_SENDERS];
    for (int i = 0; i < TP_SENDERS; i++) {
        pid[i] = nt_fork();
        if (pid[i] == 0)
            tp_sender_main(i, count, pace, &go, &rep);
    }
    mbx_net_opts o = lo_opts("tpreader");
    REQUIRE_EQ(mbx_net_configure(&o), 0);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, "//*/tp"), 0);

    long next[TP_SENDERS] = {0};
    int reports = 0, fenced = 0;
    int64_t start = th_now_ms(), give_up = start + 60000, last = start;
    for (int i = 0; i < TP_SENDERS; i++)
        nt_tell(&go, 'g');
    while (th_now_ms() < give_up) {
        mbx_msg *m = NULL;
        int rc = mbx_recv(box, &m, 20);
        if (rc == 0 && strcmp(mbx_msg_kind(m), "FENCE") == 0) {
            mbx_msg_free(m);
            break;
        }
        if (rc == 0) {
            last = th_now_ms();
            tp_take(r, next, count, m);
            mbx_msg_free(m);
            if (r->got % 1024)
                continue;
        }
        /* A fence that met a full socket buffer is lost like any other
         * datagram: after 200 ms without a message, send another. */
        if (fenced && th_now_ms() - last >= 200) {
            REQUIRE_EQ(send_text("//*/tp", "FENCE", "end"), 0);
            last = th_now_ms();
        }
        /* Now and then, and whenever the mailbox is empty: reports. */
        struct pollfd p = {.fd = rep.rd, .events = POLLIN};
        while (reports < TP_SENDERS && poll(&p, 1, 0) == 1) {
            mbx_net_stats st;
            REQUIRE_EQ(nt_get(&rep, &st, sizeof st, 1000), 0);
            r->sent.sent += st.sent;
            r->sent.sent_datagrams += st.sent_datagrams;
            r->sent.send_dropped += st.send_dropped;
            reports++;
        }
        if (reports == TP_SENDERS && !fenced) {
            REQUIRE_EQ(send_text("//*/tp", "FENCE", "end"), 0);
            fenced = 1;
            last = th_now_ms();
        }
    }
    r->ms = th_now_ms() - start;
    CHECK(fenced);
    CHECK(th_now_ms() < give_up);
    for (int i = 0; i < TP_SENDERS; i++) {
        r->lost += count - next[i];
        CHECK_EQ(nt_wait(pid[i], 10000), 0);
    }
    REQUIRE_EQ(mbx_net_flush(5000), 0);
    mbx_net_stat(&r->st);
    fprintf(stderr,
            "  %ld of %ld messages in %lld ms (%.0f/s); lost %ld, "
            "backwards %ld, bad %ld; datagrams: %llu sent, %llu read, %llu "
            "socket overflows\n",
            r->got, r->total, (long long)r->ms,
            r->ms > 0 ? (double)r->got * 1000.0 / (double)r->ms : 0.0, r->lost,
            r->backwards, r->bad, (unsigned long long)r->sent.sent_datagrams,
            (unsigned long long)(r->st.recv_datagrams - r->st.sent_datagrams),
            (unsigned long long)r->st.socket_overflows);
    CHECK_EQ(r->sent.sent, r->total);
    CHECK_EQ(r->sent.send_dropped, 0);
    CHECK_EQ(r->backwards, 0);
    CHECK_EQ(r->bad, 0);
    CHECK_EQ(r->st.dropped_full + r->st.malformed + r->st.replayed, 0);
    nt_chan_close(&go);
    nt_chan_close(&rep);
    mbx_destroy(box);
}

/* 4 sender processes x 20,000 small messages to one reader, each sender
 * waiting for the kernel to take its messages every 1,000: per sender,
 * every message arrives, once and in order. */
TEST(net_throughput_four_senders)
{
    begin();
    struct tp_result r;
    tp_run(NT_SANITIZED ? 5000 : 20000, 1000, &r);
    CHECK_EQ(r.got, r.total);
    CHECK_EQ(r.lost, 0);
    CHECK_EQ(r.st.socket_overflows, 0);
    CHECK_EQ(r.st.recv_datagrams, r.sent.sent_datagrams + r.st.sent_datagrams);
    finish();
}

/* Best effort under overload: 4 senders x 200,000 messages at full speed
 * (more than a reader's socket buffer holds when the reader falls
 * behind). Messages may be lost, but never duplicated or reordered, and
 * every datagram sent is either read or counted as a socket overflow. */
TEST(net_throughput_overload_is_counted)
{
    begin();
    struct tp_result r;
    tp_run(NT_SANITIZED ? 50000 : 200000, 0, &r);
    CHECK_EQ(r.got + r.lost, r.total);
    /* Every datagram, the senders' and the fences, was read or counted;
     * one fence was read. */
    CHECK_EQ(r.st.recv_datagrams + r.st.socket_overflows,
             r.sent.sent_datagrams + r.st.sent_datagrams);
    if (r.lost)
        CHECK(r.st.socket_overflows > 0);
    finish();
}
