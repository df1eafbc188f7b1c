/* Host mailslots: the semantics of the host scope across processes. Names in
 * every spelling, one reader per name (and take-over from a dead one), no
 * reader, roles of a slot handle, sizes, the Queue-like slot interface,
 * message fields, urgency, the ring as a bound, call/reply between
 * processes, mbx_fd, mixing in-process and cross-process senders, listings
 * and file modes, and malformed records written straight into a ring.
 *
 * Every test uses its own runtime directory (mkdtemp + MBX_RUNTIME_DIR) and
 * its own names. Other processes are forked children that report through
 * their exit status; they synchronise with the test through pipes, waitpid
 * and the library's own blocking calls. Each child has an alarm, so a child
 * that hangs ends and shows up as a failed exit status. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/msg.h"
#include "harness.h"
#include "host/host.h"
#include "host/ring.h"
#include "mbx/mbx.h"

/* A child that is still running after this many seconds ends itself. */
#define CHILD_ALARM_S 60

/* The exit status wait_child reports for a child killed by a signal. */
#define KILLED_BY(sig) (1000 + (sig))

/* Room for "//./" + name + NUL. */
#define ADDR_MAX (4 + MBX_NAME_MAX + 1)

/* ---- the private runtime directory -------------------------------------- */

static char rundir[128];

/* Creates this test's runtime directory and points the library at it. */
static void
private_rundir(void)
{
    snprintf(rundir, sizeof rundir, "/tmp/mbx-test-host-XXXXXX");
    REQUIRE(mkdtemp(rundir) != NULL);
    REQUIRE_EQ(setenv("MBX_RUNTIME_DIR", rundir, 1), 0);
}

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)flag;
    (void)f;
    remove(path);
    return 0;
}

/* Removes the runtime directory and everything in it. */
static void
remove_rundir(void)
{
    nftw(rundir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The path of the ring file of a simple name. */
static void
ring_path(char *path, size_t size, const char *name)
{
    snprintf(path, size, "%s/%s.ring", rundir, name);
}

/* ---- processes and pipes ------------------------------------------------ */

/* Forks; the child gets an alarm so it can never outlive the test. */
static pid_t
fork_child(void)
{
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0)
        alarm(CHILD_ALARM_S);
    return pid;
}

/* Waits for a child: its exit status, or KILLED_BY(signal). */
static int
wait_child(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? KILLED_BY(WTERMSIG(st)) : -1;
}

/* Blocks until killed (or the child's alarm ends it). */
static _Noreturn void
wait_to_be_killed(void)
{
    for (;;)
        pause();
}

/* One-way pipe between processes. */
struct chan {
    int rd, wr;
};

static void
chan_open(struct chan *c)
{
    int fds[2];
    REQUIRE_EQ(pipe(fds), 0);
    c->rd = fds[0];
    c->wr = fds[1];
}

static void
chan_close(struct chan *c)
{
    close(c->rd);
    close(c->wr);
}

static int
put_bytes(struct chan *c, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(c->wr, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads n bytes, waiting at most timeout_ms for each chunk. Returns 0, or
 * -1 on timeout or end of file. */
static int
get_bytes(struct chan *c, void *p, size_t n, int timeout_ms)
{
    char *b = p;
    while (n) {
        struct pollfd pf = {.fd = c->rd, .events = POLLIN};
        int rc = poll(&pf, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t r = read(c->rd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

static void
tell(struct chan *c, char ch)
{
    put_bytes(c, &ch, 1);
}

/* The next byte from the pipe, or -1 after timeout_ms without one. */
static int
hear(struct chan *c, int timeout_ms)
{
    unsigned char ch;
    return get_bytes(c, &ch, 1, timeout_ms) == 0 ? ch : -1;
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

static int
kind_is(const mbx_msg *m, const char *k)
{
    return strcmp(mbx_msg_kind(m), k) == 0;
}

/* Sends a text message; the message is freed whatever happens. */
static int
send_text(const char *addr, const char *kind, const char *s, int timeout_ms)
{
    mbx_msg *m = text(kind, s);
    if (!m)
        return MBX_ENOMEM;
    int rc = mbx_send_to(addr, &m, timeout_ms);
    mbx_msg_free(m);
    return rc;
}

/* Receives one message and checks its kind and body; frees it. Returns the
 * receive's result. */
static int
recv_text(mbx_id box, const char *kind, const char *s, int timeout_ms)
{
    mbx_msg *m = NULL;
    int rc = mbx_recv(box, &m, timeout_ms);
    if (rc == 0) {
        CHECK(kind_is(m, kind));
        CHECK(body_is(m, s));
        if (!kind_is(m, kind) || !body_is(m, s)) {
            size_t len;
            const char *b = mbx_msg_body(m, &len);
            fprintf(stderr, "  got kind \"%s\", body \"%.*s\"\n",
                    mbx_msg_kind(m), (int)(len < 40 ? len : 40), b ? b : "");
        }
        mbx_msg_free(m);
    }
    return rc;
}

/* Waits on an empty private mailbox: a real timeout, not a sleep. Used
 * only where time itself is what is tested, or between bounded retries. */
static void
pause_ms(int ms)
{
    mbx_id tmp;
    mbx_msg *none = NULL;
    if (mbx_create(&tmp, NULL) != 0)
        return;
    mbx_recv(tmp, &none, ms);
    mbx_msg_free(none);
    mbx_destroy(tmp);
}

/* A mailbox of this process registered as the host mailslot `name`, with
 * a ring of ring_size bytes (0: the default). */
static mbx_id
host_reader(const char *name, size_t ring_size)
{
    mbx_id box;
    char addr[ADDR_MAX];
    snprintf(addr, sizeof addr, "//./%s", name);
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    mbx_host_opts o = {.ring_size = ring_size};
    REQUIRE_EQ(mbx_register_host(box, addr, &o), 0);
    return box;
}

/* ---- mbx_slot_list ------------------------------------------------------- */

struct found {
    const char *name;
    int count;
    mbx_slot_info info;
};

static int
find_cb(const mbx_slot_info *info, void *ctx)
{
    struct found *f = ctx;
    if (strcmp(info->name, f->name) == 0) {
        f->count++;
        f->info = *info;
        f->info.name = NULL; /* valid during the call only */
    }
    return 0;
}

/* How many live mailslots of that name are listed (0 or 1); *out gets the
 * last one's description. */
static int
list_find(const char *name, mbx_slot_info *out)
{
    struct found f = {.name = name};
    int rc = mbx_slot_list(find_cb, &f);
    CHECK_EQ(rc, 0);
    if (out)
        *out = f.info;
    return f.count;
}

/* ---- a sender process driven by a pipe ---------------------------------- */

/* A child that, per command byte, sends message number k (counting from
 * 0): 'm' with mbx_send_to (kind "GOOD", body "good-k", reply address
 * "//./t-sender"), 'p' with a slot handle (kind "", body "good-k"); it
 * acknowledges each with 'a' once the send returned 0. 'q' ends it. */
static _Noreturn void
sender_main(const char *name, struct chan *cmd, struct chan *ack)
{
    char addr[ADDR_MAX];
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_slot *s = NULL;
    CREQUIRE_EQ(mbx_slot_open(&s, name, NULL), 0);
    for (int k = 0;; k++) {
        int c = hear(cmd, 30000);
        if (c == 'q')
            _exit(0);
        CREQUIRE(c == 'm' || c == 'p');
        char body[32];
        snprintf(body, sizeof body, "good-%d", k);
        if (c == 'm') {
            mbx_msg *m = text("GOOD", body);
            CREQUIRE_EQ(mbx_msg_set_from(m, "//./t-sender"), 0);
            CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        } else {
            CREQUIRE_EQ(mbx_slot_put(s, body, strlen(body)), 0);
        }
        tell(ack, 'a');
    }
}

struct sender {
    pid_t pid;
    struct chan cmd, ack;
    int sent; /* messages sent so far: the next one is good-<sent> */
};

static void
sender_start(struct sender *s, const char *name)
{
    chan_open(&s->cmd);
    chan_open(&s->ack);
    s->sent = 0;
    s->pid = fork_child();
    if (s->pid == 0)
        sender_main(name, &s->cmd, &s->ack);
}

/* Has the sender send one message ('m' or 'p') and waits until it did. */
static void
sender_send(struct sender *s, char how)
{
    tell(&s->cmd, how);
    REQUIRE_EQ(hear(&s->ack, 10000), 'a');
    s->sent++;
}

static void
sender_stop(struct sender *s)
{
    tell(&s->cmd, 'q');
    CHECK_EQ(wait_child(s->pid), 0);
    chan_close(&s->cmd);
    chan_close(&s->ack);
}

/* Checks that m is the sender's message number k, sent with 'm', intact. */
static int
is_good(const mbx_msg *m, int k)
{
    char body[32];
    snprintf(body, sizeof body, "good-%d", k);
    const char *from = mbx_msg_from(m);
    return kind_is(m, "GOOD") && body_is(m, body) && from &&
           strcmp(from, "//./t-sender") == 0 && mbx_msg_flags(m) == 0 &&
           !mbx_msg_is_call(m);
}

/* ==== addresses ============================================================
 */

TEST(host_every_spelling_reaches_one_mailslot)
{
    private_rundir();
    char name[64], addr[ADDR_MAX], a[ADDR_MAX];
    th_unique(name, sizeof name, "spell");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    /* Prefixes of the name: "//./", "\\.\mailslot\" in several cases. */
    static const char *const forms[] = {
        "//./",
        "\\\\.\\mailslot\\",
        "\\\\.\\MailSlot\\",
        "\\\\.\\MAILSLOT\\",
    };
    /* In this process, every spelling names the same mailbox. */
    for (int i = 0; i < 4; i++) {
        snprintf(a, sizeof a, "%s%s", forms[i], name);
        mbx_id got = 0;
        CHECK_EQ(mbx_whereis(a, &got), 0);
        CHECK_EQ(got, box);
    }
    pid_t pid = fork_child();
    if (pid == 0) {
        char body[8];
        for (int i = 0; i < 4; i++) {
            snprintf(a, sizeof a, "%s%s", forms[i], name);
            snprintf(body, sizeof body, "m%d", i);
            CREQUIRE_EQ(send_text(a, "S", body, 5000), 0);
        }
        /* A slot handle: a bare name, and a backslash form. */
        mbx_slot *s;
        CREQUIRE_EQ(mbx_slot_open(&s, name, NULL), 0);
        CREQUIRE_EQ(mbx_slot_put(s, "bare", 4), 0);
        mbx_slot_close(s);
        snprintf(a, sizeof a, "\\\\.\\mAiLsLoT\\%s", name);
        CREQUIRE_EQ(mbx_slot_open(&s, a, NULL), 0);
        CREQUIRE_EQ(mbx_slot_put(s, "mixed", 5), 0);
        mbx_slot_close(s);
        _exit(0);
    }
    char body[8];
    for (int i = 0; i < 4; i++) {
        snprintf(body, sizeof body, "m%d", i);
        CHECK_EQ(recv_text(box, "S", body, 10000), 0);
    }
    CHECK_EQ(recv_text(box, "", "bare", 10000), 0);
    CHECK_EQ(recv_text(box, "", "mixed", 10000), 0);
    CHECK_EQ(wait_child(pid), 0);

    /* A second reader under another spelling is the same name. */
    mbx_id other;
    REQUIRE_EQ(mbx_create(&other, NULL), 0);
    snprintf(a, sizeof a, "\\\\.\\Mailslot\\%s", name);
    CHECK_EQ(mbx_register(other, a), MBX_EEXIST);
    mbx_slot *s;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&s, name, NULL), 0);
    CHECK_EQ(mbx_slot_get_nowait(s, &m), MBX_EEXIST);
    mbx_slot_close(s);
    mbx_destroy(other);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_pseudo_directories)
{
    private_rundir();
    char name[64], a[ADDR_MAX];
    th_unique(name, sizeof name, "app/log");
    /* Reader "//./t<pid>-app/log". */
    snprintf(a, sizeof a, "//./%s", name);
    mbx_slot *r;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, a, NULL), 0);
    REQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    pid_t pid = fork_child();
    if (pid == 0) {
        char bs[ADDR_MAX], other[ADDR_MAX];
        /* "\\.\mailslot\t<pid>-app\log" */
        snprintf(bs, sizeof bs, "\\\\.\\mailslot\\%s", name);
        char *slash = strrchr(bs, '/');
        CREQUIRE(slash != NULL);
        *slash = '\\';
        mbx_slot *w;
        CREQUIRE_EQ(mbx_slot_open(&w, bs, NULL), 0);
        CREQUIRE_EQ(mbx_slot_put(w, "backslashes", 11), 0);
        mbx_slot_close(w);
        CREQUIRE_EQ(send_text(bs, "", "send_to backslashes", 5000), 0);
        CREQUIRE_EQ(send_text(a, "", "send_to slashes", 5000), 0);
        /* The directory and a sibling are other names. */
        snprintf(other, sizeof other, "%.*s", (int)(strrchr(a, '/') - a), a);
        CREQUIRE_EQ(send_text(other, "", "x", 0), MBX_ENOENT);
        snprintf(other, sizeof other, "%.*s/other", (int)(strrchr(a, '/') - a),
                 a);
        CREQUIRE_EQ(send_text(other, "", "x", 0), MBX_ENOENT);
        _exit(0);
    }
    const char *want[] = {"backslashes", "send_to backslashes",
                          "send_to slashes"};
    for (int i = 0; i < 3; i++) {
        m = NULL;
        CHECK_EQ(mbx_slot_get(r, &m, 10000), 0);
        CHECK(m && body_is(m, want[i]));
        mbx_msg_free(m);
    }
    CHECK_EQ(wait_child(pid), 0);
    mbx_slot_info info;
    CHECK_EQ(list_find(name, &info), 1);
    CHECK_EQ(info.pid, getpid());

    /* Empty, "." and ".." components are not names. */
    static const char *const bad[] = {
        "//./app//log",
        "//./app/../log",
        "//./app/./log",
        "//./",
        "//./app/",
        "\\\\.\\mailslot\\app\\\\log",
        "\\\\.\\notaslot\\log",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mbx_slot *s = NULL;
        CHECK_EQ(mbx_slot_open(&s, bad[i], NULL), MBX_EINVAL);
    }
    mbx_slot_close(r);
    CHECK_EQ(list_find(name, NULL), 0);
    remove_rundir();
}

TEST(host_other_schemes_are_not_supported)
{
    /* Network names are the network layer's (tests/integration/test_net.c);
     * "scheme://" addresses belong to later transports. */
    private_rundir();
    static const char *const later[] = {"nats://host/x", "mqtt://a/b/c"};
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    for (size_t i = 0; i < sizeof later / sizeof *later; i++) {
        mbx_slot *s = NULL;
        CHECK_EQ(mbx_slot_open(&s, later[i], NULL), MBX_EINVAL);
        CHECK(s == NULL);
        mbx_msg *m = text("", "x");
        CHECK_EQ(mbx_send_to(later[i], &m, 0), MBX_ENOTSUP);
        CHECK(m != NULL); /* still ours */
        mbx_msg_free(m);
        CHECK_EQ(mbx_register(box, later[i]), MBX_ENOTSUP);
    }
    mbx_slot_close(NULL); /* harmless */
    mbx_destroy(box);
    remove_rundir();
}

/* ==== one reader per name =================================================
 */

TEST(host_second_reader_in_this_process)
{
    private_rundir();
    char name[64], addr[ADDR_MAX], bs[ADDR_MAX], name2[64], addr2[ADDR_MAX];
    th_unique(name, sizeof name, "one");
    th_unique(name2, sizeof name2, "two");
    snprintf(addr, sizeof addr, "//./%s", name);
    snprintf(bs, sizeof bs, "\\\\.\\mailslot\\%s", name);
    snprintf(addr2, sizeof addr2, "//./%s", name2);
    mbx_id a = host_reader(name, 0), b, c;
    REQUIRE_EQ(mbx_create(&b, NULL), 0);
    CHECK_EQ(mbx_register(b, addr), MBX_EEXIST);
    CHECK_EQ(mbx_register_host(b, bs, NULL), MBX_EEXIST);
    mbx_slot *s;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&s, name, NULL), 0);
    CHECK_EQ(mbx_slot_get_nowait(s, &m), MBX_EEXIST);
    CHECK_EQ(mbx_slot_fd(s), MBX_EEXIST);
    mbx_id got = 0;
    CHECK_EQ(mbx_whereis(addr, &got), 0);
    CHECK_EQ(got, a);
    /* The refused mailbox is unchanged: it may still take another host
     * name. The first may not: one host name per mailbox. */
    CHECK_EQ(mbx_register(b, addr2), 0);
    char addr3[ADDR_MAX];
    snprintf(addr3, sizeof addr3, "//./%s-3", name);
    CHECK_EQ(mbx_register(a, addr3), MBX_ENOTSUP);
    /* Once the reader is gone, the name is free again, in this process
     * too, and the slot handle that was refused may now read it. */
    CHECK_EQ(mbx_destroy(a), 0);
    CHECK_EQ(mbx_slot_get_nowait(s, &m), MBX_EAGAIN);
    REQUIRE_EQ(mbx_create(&c, NULL), 0);
    CHECK_EQ(mbx_register(c, addr), MBX_EEXIST);
    mbx_slot_close(s);
    CHECK_EQ(mbx_register(c, addr), 0);
    mbx_destroy(b);
    mbx_destroy(c);
    remove_rundir();
}

/* DESIGN section 4: "register a name that is taken (even by the same
 * mailbox) -> MBX_EEXIST". */
TEST(host_same_mailbox_registering_its_name_again_is_eexist)
{
    private_rundir();
    char name[64], addr[ADDR_MAX], bs[ADDR_MAX];
    th_unique(name, sizeof name, "again");
    snprintf(addr, sizeof addr, "//./%s", name);
    snprintf(bs, sizeof bs, "\\\\.\\mailslot\\%s", name);
    mbx_id a = host_reader(name, 0);
    CHECK_EQ(mbx_register(a, addr), MBX_EEXIST);
    CHECK_EQ(mbx_register_host(a, bs, NULL), MBX_EEXIST);
    mbx_destroy(a);
    remove_rundir();
}

TEST(host_second_reader_in_another_process)
{
    private_rundir();
    char name[64], addr[ADDR_MAX], bs[ADDR_MAX];
    th_unique(name, sizeof name, "owner");
    snprintf(addr, sizeof addr, "//./%s", name);
    snprintf(bs, sizeof bs, "\\\\.\\mailslot\\%s", name);

    /* This process reads; a child tries. */
    mbx_id box = host_reader(name, 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id b;
        mbx_msg *m = NULL;
        mbx_slot *s;
        CREQUIRE_EQ(mbx_create(&b, NULL), 0);
        CREQUIRE_EQ(mbx_register(b, addr), MBX_EEXIST);
        CREQUIRE_EQ(mbx_register_host(b, bs, NULL), MBX_EEXIST);
        CREQUIRE_EQ(mbx_slot_open(&s, name, NULL), 0);
        CREQUIRE_EQ(mbx_slot_get_nowait(s, &m), MBX_EEXIST);
        /* The child did not steal the name: the parent still gets this. */
        CREQUIRE_EQ(send_text(addr, "", "from-child", 5000), 0);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    CHECK_EQ(recv_text(box, "", "from-child", 5000), 0);
    mbx_destroy(box);

    /* A child reads; this process tries. */
    struct chan up, down;
    chan_open(&up);
    chan_open(&down);
    pid = fork_child();
    if (pid == 0) {
        mbx_id b;
        CREQUIRE_EQ(mbx_create(&b, NULL), 0);
        CREQUIRE_EQ(mbx_register(b, bs), 0);
        tell(&up, 'r');
        CREQUIRE_EQ(hear(&down, 30000), 'q');
        _exit(0); /* dies holding the name, without closing */
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_id b;
    mbx_slot *s;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_create(&b, NULL), 0);
    CHECK_EQ(mbx_register(b, addr), MBX_EEXIST);
    REQUIRE_EQ(mbx_slot_open(&s, bs, NULL), 0);
    CHECK_EQ(mbx_slot_get_nowait(s, &m), MBX_EEXIST);
    tell(&down, 'q');
    CHECK_EQ(wait_child(pid), 0);
    /* The child exited: its name is free. */
    CHECK_EQ(mbx_register(b, addr), 0);
    CHECK_EQ(mbx_slot_get_nowait(s, &m), MBX_EEXIST);
    mbx_slot_close(s);
    mbx_destroy(b);
    chan_close(&up);
    chan_close(&down);
    remove_rundir();
}

TEST(host_takeover_after_reader_killed)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "takeover");
    snprintf(addr, sizeof addr, "//./%s", name);
    struct chan up;
    chan_open(&up);

    /* Reader A, in a child. */
    pid_t a = fork_child();
    if (a == 0) {
        mbx_id box;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register(box, addr), 0);
        tell(&up, 'r');
        wait_to_be_killed();
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    /* This process writes to A's ring: through mbx_send_to (its cached
     * connection) and through a slot handle. */
    CHECK_EQ(send_text(addr, "", "to-a", 1000), 0);
    mbx_slot *w;
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    CHECK_EQ(mbx_slot_put(w, "to-a-slot", 9), 0);
    mbx_id mine;
    REQUIRE_EQ(mbx_create(&mine, NULL), 0);
    CHECK_EQ(mbx_register(mine, addr), MBX_EEXIST);
    kill(a, SIGKILL);
    CHECK_EQ(wait_child(a), KILLED_BY(SIGKILL));
    CHECK_EQ(list_find(name, NULL), 0);

    /* Reader B takes the name over with a slot handle, with an empty ring
     * (A's unread messages died with A). */
    pid_t b = fork_child();
    if (b == 0) {
        mbx_slot *r;
        mbx_msg *m = NULL;
        CREQUIRE_EQ(mbx_slot_open(&r, addr, NULL), 0);
        CREQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
        tell(&up, 'r');
        CREQUIRE_EQ(mbx_slot_get(r, &m, 10000), 0);
        CREQUIRE(body_is(m, "to-b"));
        mbx_msg_free(m);
        CREQUIRE_EQ(mbx_slot_get(r, &m, 10000), 0);
        CREQUIRE(body_is(m, "to-b-slot"));
        mbx_msg_free(m);
        CREQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
        tell(&up, 'd');
        wait_to_be_killed();
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_slot_info info;
    CHECK_EQ(list_find(name, &info), 1);
    CHECK_EQ(info.pid, b);
    /* The writers of A's ring find it dead and reconnect to B's. */
    CHECK_EQ(send_text(addr, "", "to-b", 1000), 0);
    CHECK_EQ(mbx_slot_put(w, "to-b-slot", 9), 0);
    CHECK_EQ(hear(&up, 10000), 'd');
    kill(b, SIGKILL);
    CHECK_EQ(wait_child(b), KILLED_BY(SIGKILL));

    /* mbx_register takes over a killed reader's name as well. */
    CHECK_EQ(mbx_register(mine, addr), 0);
    CHECK_EQ(list_find(name, &info), 1);
    CHECK_EQ(info.pid, getpid());
    CHECK_EQ(mbx_slot_put(w, "to-me", 5), 0);
    CHECK_EQ(recv_text(mine, "", "to-me", 5000), 0);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(mine, &m, 0), MBX_EAGAIN);
    mbx_slot_close(w);
    mbx_destroy(mine);
    chan_close(&up);
    remove_rundir();
}

/* ==== no reader ============================================================
 */

/* Checks that nothing reaches `name` (no reader), by every way of writing. */
static void
check_no_reader(const char *name)
{
    char addr[ADDR_MAX], bs[ADDR_MAX];
    snprintf(addr, sizeof addr, "//./%s", name);
    snprintf(bs, sizeof bs, "\\\\.\\mailslot\\%s", name);
    int64_t start = th_now_ms();
    mbx_msg *m = text("K", "x");
    CHECK_EQ(mbx_send_to(addr, &m, 0), MBX_ENOENT);
    CHECK(m != NULL); /* the caller keeps it */
    CHECK_EQ(mbx_send_to(bs, &m, 2000), MBX_ENOENT);
    CHECK(m != NULL);
    mbx_msg *reply = NULL;
    CHECK_EQ(mbx_call_to(addr, &m, &reply, 2000), MBX_ENOENT);
    CHECK(m != NULL);
    CHECK(reply == NULL);
    mbx_msg_free(m);
    mbx_slot *s;
    REQUIRE_EQ(mbx_slot_open(&s, name, NULL), 0);
    CHECK_EQ(mbx_slot_qsize(s), MBX_ENOENT);
    CHECK_EQ(mbx_slot_empty(s), MBX_ENOENT);
    CHECK_EQ(mbx_slot_full(s), MBX_ENOENT);
    CHECK_EQ(mbx_slot_put(s, "x", 1), MBX_ENOENT);
    mbx_slot_close(s);
    /* None of this waited for the timeouts. */
    CHECK(th_now_ms() - start < 1500);
}

TEST(host_send_to_a_name_without_reader)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "nobody");
    snprintf(addr, sizeof addr, "//./%s", name);

    /* Never registered. */
    check_no_reader(name);

    /* A reader in another process that closed (destroyed its mailbox) while
     * this process was connected to its ring. */
    struct chan up, down;
    chan_open(&up);
    chan_open(&down);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id box;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register(box, addr), 0);
        tell(&up, 'r');
        CREQUIRE_EQ(hear(&down, 30000), 'c');
        CREQUIRE_EQ(recv_text(box, "", "before", 5000), 0);
        CREQUIRE_EQ(mbx_destroy(box), 0);
        tell(&up, 'd');
        CREQUIRE_EQ(hear(&down, 30000), 'q');
        _exit(0);
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_slot *w;
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    CHECK_EQ(send_text(addr, "", "before", 1000), 0);
    CHECK_EQ(mbx_slot_qsize(w), 1);
    tell(&down, 'c');
    REQUIRE_EQ(hear(&up, 10000), 'd');
    /* Closing is noticed at once: no liveness interval. */
    CHECK_EQ(send_text(addr, "", "after", 1000), MBX_ENOENT);
    CHECK_EQ(mbx_slot_put(w, "after", 5), MBX_ENOENT);
    check_no_reader(name);
    CHECK_EQ(list_find(name, NULL), 0);
    tell(&down, 'q');
    CHECK_EQ(wait_child(pid), 0);
    mbx_slot_close(w);

    /* A reader in this process that closed, and one that unregistered. */
    mbx_id box = host_reader(name, 0);
    CHECK_EQ(mbx_destroy(box), 0);
    check_no_reader(name);
    box = host_reader(name, 0);
    CHECK_EQ(mbx_unregister(addr), 0);
    check_no_reader(name);
    CHECK_EQ(mbx_unregister(addr), MBX_ENOENT);
    mbx_destroy(box);
    chan_close(&up);
    chan_close(&down);
    remove_rundir();
}

TEST(host_send_to_a_killed_reader)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "killed");
    snprintf(addr, sizeof addr, "//./%s", name);
    struct chan up;
    chan_open(&up);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id box;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register(box, addr), 0);
        tell(&up, 'r');
        wait_to_be_killed();
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_slot *w;
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    CHECK_EQ(send_text(addr, "", "alive", 1000), 0);
    CHECK_EQ(mbx_slot_put(w, "alive", 5), 0);
    kill(pid, SIGKILL);
    CHECK_EQ(wait_child(pid), KILLED_BY(SIGKILL));

    /* A connected writer may trust the reader for the library's liveness
     * interval (50 ms): retry with short waits until it notices. */
    int64_t start = th_now_ms();
    int rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) {
        rc = send_text(addr, "", "late", 0);
        if (rc == 0)
            pause_ms(10);
    }
    CHECK_EQ(rc, MBX_ENOENT);
    CHECK(th_now_ms() - start < 2000);
    mbx_msg *m = text("", "again");
    CHECK_EQ(mbx_send_to(addr, &m, 1000), MBX_ENOENT);
    CHECK(m != NULL);
    mbx_msg_free(m);
    rc = 0;
    for (int i = 0; i < 300 && rc == 0; i++) {
        rc = mbx_slot_put(w, "late", 4);
        if (rc == 0)
            pause_ms(10);
    }
    CHECK_EQ(rc, MBX_ENOENT);
    CHECK_EQ(mbx_slot_put(w, "late", 4), MBX_ENOENT);
    mbx_slot_close(w);

    /* A process that was never connected is told at once. */
    pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(send_text(addr, "", "fresh", 1000), MBX_ENOENT);
        mbx_msg *req = text("", "call"), *reply = NULL;
        CREQUIRE_EQ(mbx_call_to(addr, &req, &reply, 1000), MBX_ENOENT);
        CREQUIRE(req != NULL);
        mbx_msg_free(req);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    check_no_reader(name);
    CHECK_EQ(list_find(name, NULL), 0);
    chan_close(&up);
    remove_rundir();
}

TEST(host_blocked_sender_sees_reader_die)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "diesfull");
    snprintf(addr, sizeof addr, "//./%s", name);
    struct chan up;
    chan_open(&up);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id box;
        mbx_host_opts o = {.ring_size = MBX_RING_MIN};
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register_host(box, addr, &o), 0);
        tell(&up, 'r');
        wait_to_be_killed(); /* never reads */
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    char body[200];
    memset(body, 'x', sizeof body);
    int n = 0, rc;
    for (;;) {
        mbx_msg *m = mbx_msg_new("", body, sizeof body);
        rc = mbx_send_to(addr, &m, 0);
        mbx_msg_free(m);
        if (rc != 0)
            break;
        n++;
    }
    CHECK_EQ(rc, MBX_EAGAIN);
    CHECK(n > 0);
    /* Now a writer blocks in a send (in another child: this process's
     * connection is not shared), and the reader is killed while it waits:
     * the send must end with MBX_ENOENT well before its timeout. */
    struct chan up2;
    chan_open(&up2);
    pid_t writer = fork_child();
    if (writer == 0) {
        tell(&up2, 'w');
        mbx_msg *m = mbx_msg_new("", body, sizeof body);
        int64_t t0 = th_now_ms();
        int r = mbx_send_to(addr, &m, 20000);
        mbx_msg_free(m);
        CREQUIRE_EQ(r, MBX_ENOENT);
        CREQUIRE(th_now_ms() - t0 < 10000);
        _exit(0);
    }
    REQUIRE_EQ(hear(&up2, 10000), 'w');
    /* Wait until the writer is parked for room in the ring. */
    char path[PATH_MAX];
    ring_path(path, sizeof path, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct mbx__ring_hdr *h =
        mmap(NULL, MBX__RING_HDR_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    REQUIRE(h != MAP_FAILED);
    int parked = 0;
    for (int i = 0; i < 5000 && !parked; i++) {
        parked = atomic_load(&h->space_waiters) > 0;
        if (!parked)
            pause_ms(1);
    }
    CHECK(parked);
    munmap(h, MBX__RING_HDR_SIZE);
    int64_t t0 = th_now_ms();
    kill(pid, SIGKILL);
    CHECK_EQ(wait_child(pid), KILLED_BY(SIGKILL));
    CHECK_EQ(wait_child(writer), 0);
    CHECK(th_now_ms() - t0 < 5000);
    chan_close(&up);
    chan_close(&up2);
    remove_rundir();
}

/* ==== the slot handle =====================================================
 */

TEST(host_slot_role_is_fixed_by_first_use)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "roles");
    mbx_slot *r, *w, *f;
    mbx_msg *m = NULL;
    mbx_id id;
    REQUIRE_EQ(mbx_slot_open(&r, name, NULL), 0);
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    REQUIRE_EQ(mbx_slot_open(&f, name, NULL), 0);
    /* r reads first: writing is refused. */
    CHECK_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    CHECK_EQ(mbx_slot_put(r, "x", 1), MBX_EPERM);
    /* w writes first: every reading use is refused. */
    CHECK_EQ(mbx_slot_put(w, "hello", 5), 0);
    CHECK_EQ(mbx_slot_get(w, &m, 0), MBX_EPERM);
    CHECK_EQ(mbx_slot_get(w, &m, 100), MBX_EPERM);
    CHECK_EQ(mbx_slot_get_nowait(w, &m), MBX_EPERM);
    CHECK_EQ(mbx_slot_next(w, &m, "STOP", 4, 0), MBX_EPERM);
    CHECK_EQ(mbx_slot_fd(w), MBX_EPERM);
    CHECK_EQ(mbx_slot_mailbox(w, &id), MBX_EPERM);
    CHECK(m == NULL);
    /* Writers may still ask how full the ring is. */
    CHECK_EQ(mbx_slot_qsize(w), 1);
    /* A handle made a reader by mbx_slot_fd or mbx_slot_mailbox does not
     * write either. */
    CHECK_EQ(mbx_slot_get(r, &m, 1000), 0);
    CHECK(m && body_is(m, "hello"));
    mbx_msg_free(m);
    mbx_slot_close(r);
    CHECK(mbx_slot_fd(f) >= 0);
    CHECK_EQ(mbx_slot_put(f, "x", 1), MBX_EPERM);
    CHECK_EQ(mbx_slot_mailbox(f, &id), 0);
    mbx_slot_close(f);
    /* A writer whose reader changed is still a writer. */
    REQUIRE_EQ(mbx_slot_open(&f, name, NULL), 0);
    CHECK_EQ(mbx_slot_mailbox(f, &id), 0);
    CHECK_EQ(mbx_slot_put(w, "again", 5), 0);
    m = NULL;
    CHECK_EQ(mbx_slot_get(f, &m, 1000), 0);
    CHECK(m && body_is(m, "again"));
    mbx_msg_free(m);
    CHECK_EQ(mbx_slot_get(w, &m, 0), MBX_EPERM);
    mbx_slot_close(w);
    mbx_slot_close(f);
    mbx_slot_close(NULL);
    remove_rundir();
}

TEST(host_slot_message_size)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "msgsize");
    mbx_slot_opts o = {.message_size = 16};
    mbx_slot *r, *w;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, name, &o), 0);
    REQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    pid_t pid = fork_child();
    if (pid == 0) {
        char big[17];
        memset(big, 'b', sizeof big);
        CREQUIRE_EQ(mbx_slot_open(&w, name, &o), 0);
        CREQUIRE_EQ(mbx_slot_put(w, big, 17), MBX_EMSGSIZE);
        CREQUIRE_EQ(mbx_slot_qsize(w), 0); /* nothing sent */
        CREQUIRE_EQ(mbx_slot_put(w, big, 16), 0);
        CREQUIRE_EQ(mbx_slot_put(w, NULL, 0), 0);
        CREQUIRE_EQ(mbx_slot_put(w, NULL, 1), MBX_EINVAL);
        mbx_slot_close(w);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    CHECK_EQ(mbx_slot_qsize(r), 2);
    char want[16];
    memset(want, 'b', sizeof want);
    CHECK_EQ(mbx_slot_get_nowait(r, &m), 0);
    CHECK(m && body_eq(m, want, 16));
    mbx_msg_free(m);
    m = NULL;
    CHECK_EQ(mbx_slot_get_nowait(r, &m), 0);
    CHECK(m && body_eq(m, NULL, 0));
    mbx_msg_free(m);
    m = NULL;
    CHECK_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    CHECK(m == NULL);
    mbx_slot_close(r);
    remove_rundir();
}

TEST(host_message_larger_than_half_the_ring)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "half");
    snprintf(addr, sizeof addr, "//./%s", name);
    /* MBX_RING_MIN: a record (24-byte header, kind, address, body, padded
     * to 8) may take 2048 bytes. */
    mbx_id box = host_reader(name, MBX_RING_MIN);
    static char body[4096];
    memset(body, 'z', sizeof body);
    pid_t pid = fork_child();
    if (pid == 0) {
        struct {
            const char *kind, *from;
            size_t fits;
        } cases[] = {
            {"", NULL, 2024},
            {"K", NULL, 2023},
            {"", "//./x", 2019},
        };
        for (int i = 0; i < 3; i++) {
            mbx_msg *m = mbx_msg_new(cases[i].kind, body, cases[i].fits + 1);
            CREQUIRE_EQ(mbx_msg_set_from(m, cases[i].from), 0);
            CREQUIRE_EQ(mbx_send_to(addr, &m, 10000), MBX_EMSGSIZE);
            CREQUIRE(m != NULL);
            mbx_msg_free(m);
            m = mbx_msg_new(cases[i].kind, body, cases[i].fits);
            CREQUIRE_EQ(mbx_msg_set_from(m, cases[i].from), 0);
            CREQUIRE_EQ(mbx_send_to(addr, &m, 10000), 0);
            CREQUIRE(m == NULL);
        }
        mbx_slot *w;
        CREQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
        CREQUIRE_EQ(mbx_slot_put(w, body, 2025), MBX_EMSGSIZE);
        CREQUIRE_EQ(mbx_slot_put(w, body, 2024), 0);
        mbx_slot_close(w);
        mbx_msg *req = mbx_msg_new("", body, 3000), *reply = NULL;
        CREQUIRE_EQ(mbx_call_to(addr, &req, &reply, 10000), MBX_EMSGSIZE);
        CREQUIRE(req != NULL && reply == NULL);
        mbx_msg_free(req);
        _exit(0);
    }
    size_t want[] = {2024, 2023, 2019, 2024};
    const char *kinds[] = {"", "K", "", ""};
    for (int i = 0; i < 4; i++) {
        mbx_msg *m = NULL;
        CHECK_EQ(mbx_recv(box, &m, 10000), 0);
        if (!m)
            continue;
        CHECK(kind_is(m, kinds[i]));
        CHECK(body_eq(m, body, want[i]));
        mbx_msg_free(m);
    }
    CHECK_EQ(wait_child(pid), 0);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_slot_get_on_empty_and_timeouts)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "empty");
    mbx_slot_opts o = {.timeout_ms = 100};
    mbx_slot *r;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, name, &o), 0);
    CHECK_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    CHECK_EQ(mbx_slot_get(r, &m, 0), MBX_EAGAIN);
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_slot_get(r, &m, 50), MBX_ETIMEDOUT);
    int64_t took = th_now_ms() - t0;
    CHECK(took >= 45);
    CHECK(took < 5000);
    /* -1: the slot's own timeout. */
    t0 = th_now_ms();
    CHECK_EQ(mbx_slot_get(r, &m, -1), MBX_ETIMEDOUT);
    took = th_now_ms() - t0;
    CHECK(took >= 95);
    CHECK(took < 5000);
    CHECK_EQ(mbx_slot_next(r, &m, "STOP", 4, -1), MBX_ETIMEDOUT);
    CHECK_EQ(mbx_slot_get(r, &m, -3), MBX_EINVAL);
    CHECK(m == NULL);

    /* MBX_SLOT_FOREVER waits past the slot's timeout: a child puts after
     * 400 ms. */
    struct chan down;
    chan_open(&down);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_slot *w;
        CREQUIRE_EQ(hear(&down, 30000), 'g');
        pause_ms(400);
        CREQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
        CREQUIRE_EQ(mbx_slot_put(w, "late", 4), 0);
        mbx_slot_close(w);
        _exit(0);
    }
    tell(&down, 'g');
    t0 = th_now_ms();
    CHECK_EQ(mbx_slot_get(r, &m, MBX_SLOT_FOREVER), 0);
    took = th_now_ms() - t0;
    CHECK(m && body_is(m, "late"));
    CHECK(took >= 300);
    mbx_msg_free(m);
    CHECK_EQ(wait_child(pid), 0);
    mbx_slot_close(r);
    chan_close(&down);
    remove_rundir();
}

TEST(host_slot_qsize_empty_full)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "full");
    /* 100-byte bodies make 128-byte records: 32 fill the smallest ring
     * exactly. */
    enum { BODY = 100, RECORD = 128 };
    mbx_slot_opts ro = {.ring_size = MBX_RING_MIN};
    mbx_slot *r, *w2;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, name, &ro), 0);
    REQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    CHECK_EQ(mbx_slot_qsize(r), 0);
    CHECK_EQ(mbx_slot_empty(r), 1);
    CHECK_EQ(mbx_slot_full(r), 0);
    struct chan up;
    chan_open(&up);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_slot_opts wo = {.message_size = BODY, .timeout_ms = 50};
        mbx_slot *w;
        char body[BODY];
        CREQUIRE_EQ(mbx_slot_open(&w, name, &wo), 0);
        CREQUIRE_EQ(mbx_slot_full(w), 0);
        int n = 0, rc;
        for (;;) {
            memset(body, 'a' + n % 26, sizeof body);
            if ((rc = mbx_slot_put(w, body, sizeof body)) != 0)
                break;
            n++;
            CREQUIRE(n <= 64);
        }
        CREQUIRE_EQ(rc, MBX_ETIMEDOUT);
        CREQUIRE_EQ(mbx_slot_full(w), 1);
        CREQUIRE_EQ(mbx_slot_qsize(w), n);
        CREQUIRE_EQ(mbx_slot_empty(w), 0);
        put_bytes(&up, &n, sizeof n);
        mbx_slot_close(w);
        _exit(0);
    }
    int n = -1;
    CHECK_EQ(get_bytes(&up, &n, sizeof n, 10000), 0);
    CHECK_EQ(wait_child(pid), 0);
    CHECK_EQ(n, MBX_RING_MIN / RECORD);
    CHECK_EQ(mbx_slot_full(r), 1);
    CHECK_EQ(mbx_slot_qsize(r), n);
    CHECK_EQ(mbx_slot_empty(r), 0);
    mbx_slot_opts wo = {.message_size = BODY};
    REQUIRE_EQ(mbx_slot_open(&w2, name, &wo), 0);
    CHECK_EQ(mbx_slot_full(w2), 1);
    CHECK_EQ(mbx_slot_qsize(w2), n);
    CHECK_EQ(mbx_slot_empty(w2), 0);
    /* The reader counts what it took out of the ring and still holds. */
    char body[BODY];
    memset(body, 'a', sizeof body);
    CHECK_EQ(mbx_slot_get_nowait(r, &m), 0);
    CHECK(m && body_eq(m, body, sizeof body));
    mbx_msg_free(m);
    CHECK_EQ(mbx_slot_qsize(r), n - 1);
    for (int i = 1; i < n; i++) {
        m = NULL;
        CHECK_EQ(mbx_slot_get_nowait(r, &m), 0);
        memset(body, 'a' + i % 26, sizeof body);
        CHECK(m && body_eq(m, body, sizeof body));
        mbx_msg_free(m);
    }
    CHECK_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    CHECK_EQ(mbx_slot_qsize(r), 0);
    CHECK_EQ(mbx_slot_empty(r), 1);
    CHECK_EQ(mbx_slot_full(r), 0);
    CHECK_EQ(mbx_slot_full(w2), 0);
    CHECK_EQ(mbx_slot_empty(w2), 1);
    mbx_slot_close(w2);
    mbx_slot_close(r);
    chan_close(&up);
    remove_rundir();
}

TEST(host_slot_next_until_stop)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "next");
    mbx_slot *r, *w;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, name, NULL), 0);
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    REQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    /* winsys's cookbook: put, then read it back, one at a time. */
    static const char *const words[] = {"one", "two", "three", "STOPPED",
                                        "STO"};
    for (int i = 0; i < 5; i++) {
        CHECK_EQ(mbx_slot_put(w, words[i], strlen(words[i])), 0);
        m = NULL;
        CHECK_EQ(mbx_slot_next(r, &m, "STOP", 4, 1000), 1);
        CHECK(m && body_is(m, words[i]));
        mbx_msg_free(m);
    }
    CHECK_EQ(mbx_slot_put(w, "STOP", 4), 0);
    m = (mbx_msg *)1;
    CHECK_EQ(mbx_slot_next(r, &m, "STOP", 4, 1000), 0);
    CHECK(m == NULL);
    CHECK_EQ(mbx_slot_next(r, &m, "STOP", 4, 0), MBX_EAGAIN);
    /* Without a sentinel, "STOP" is a message like any other; an empty
     * sentinel matches an empty body. */
    CHECK_EQ(mbx_slot_put(w, "STOP", 4), 0);
    CHECK_EQ(mbx_slot_next(r, &m, NULL, 0, 1000), 1);
    CHECK(m && body_is(m, "STOP"));
    mbx_msg_free(m);
    CHECK_EQ(mbx_slot_put(w, "", 0), 0);
    CHECK_EQ(mbx_slot_next(r, &m, "", 0, 1000), 0);
    CHECK(m == NULL);

    /* From another process: every message until "STOP", which ends the
     * loop; what follows it stays queued. */
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_slot *cw;
        char body[16];
        CREQUIRE_EQ(mbx_slot_open(&cw, name, NULL), 0);
        for (int i = 0; i < 5; i++) {
            snprintf(body, sizeof body, "line %d", i);
            CREQUIRE_EQ(mbx_slot_put(cw, body, strlen(body)), 0);
        }
        CREQUIRE_EQ(mbx_slot_put(cw, "STOP", 4), 0);
        CREQUIRE_EQ(mbx_slot_put(cw, "after", 5), 0);
        mbx_slot_close(cw);
        _exit(0);
    }
    int count = 0, rc;
    char body[16];
    while ((rc = mbx_slot_next(r, &m, "STOP", 4, 10000)) > 0) {
        snprintf(body, sizeof body, "line %d", count);
        CHECK(body_is(m, body));
        mbx_msg_free(m);
        count++;
    }
    CHECK_EQ(rc, 0);
    CHECK_EQ(count, 5);
    CHECK_EQ(wait_child(pid), 0);
    CHECK_EQ(mbx_slot_get(r, &m, 1000), 0);
    CHECK(m && body_is(m, "after"));
    mbx_msg_free(m);
    mbx_slot_close(w);
    mbx_slot_close(r);
    mbx_slot_close(NULL);
    remove_rundir();
}

TEST(host_slot_writer_reconnects_after_fork)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "forkw");
    mbx_slot *r, *w;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, name, NULL), 0);
    REQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    CHECK_EQ(mbx_slot_put(w, "parent-1", 8), 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        /* The inherited writer, and the inherited reader, which is the
         * parent's: the child must not read from it. */
        CREQUIRE_EQ(mbx_slot_put(w, "child", 5), 0);
        mbx_msg *cm = NULL;
        int rc = mbx_slot_get_nowait(r, &cm);
        CREQUIRE(rc != 0);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    CHECK_EQ(mbx_slot_put(w, "parent-2", 8), 0);
    const char *want[] = {"parent-1", "child", "parent-2"};
    for (int i = 0; i < 3; i++) {
        m = NULL;
        CHECK_EQ(mbx_slot_get(r, &m, 5000), 0);
        CHECK(m && body_is(m, want[i]));
        mbx_msg_free(m);
    }
    mbx_slot_close(w);
    mbx_slot_close(r);
    remove_rundir();
}

/* ==== messages =============================================================
 */

TEST(host_message_fields_cross_processes)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "fields");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    unsigned char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (unsigned char)i;
    char longkind[MBX_KIND_MAX + 1];
    memset(longkind, 'k', MBX_KIND_MAX);
    longkind[MBX_KIND_MAX] = '\0';
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_msg *m = text("MSG_GREETING", "hello");
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        m = mbx_msg_new("", NULL, 0);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        m = mbx_msg_new("BIN", bin, sizeof bin);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        m = mbx_msg_new(longkind, "\0\0\0", 3);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        m = text("FROM", "f");
        CREQUIRE_EQ(mbx_msg_set_from(m, "//./t-back/reply"), 0);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        m = mbx_msg_new(NULL, "local-from", 10);
        CREQUIRE_EQ(mbx_msg_set_from(m, "worker"), 0);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        unsigned char *big = malloc(10000);
        CREQUIRE(big != NULL);
        for (int i = 0; i < 10000; i++)
            big[i] = (unsigned char)(i * 7);
        m = mbx_msg_wrap("WRAP", big, 10000, free);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "MSG_GREETING") && body_is(m, "hello"));
    CHECK(mbx_msg_from(m) == NULL);
    CHECK_EQ(mbx_msg_flags(m), 0);
    CHECK_EQ(mbx_msg_is_call(m), 0);
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "") && body_eq(m, NULL, 0));
    CHECK(mbx_msg_from(m) == NULL);
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "BIN") && body_eq(m, bin, sizeof bin));
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, longkind) && body_eq(m, "\0\0\0", 3));
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "FROM") && body_is(m, "f"));
    CHECK(mbx_msg_from(m) && strcmp(mbx_msg_from(m), "//./t-back/reply") == 0);
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "") && body_is(m, "local-from"));
    CHECK(mbx_msg_from(m) && strcmp(mbx_msg_from(m), "worker") == 0);
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "WRAP"));
    size_t len;
    const unsigned char *b = mbx_msg_body(m, &len);
    CHECK_EQ(len, 10000);
    int bad = 0;
    for (size_t i = 0; i < len && i < 10000; i++)
        bad += b[i] != (unsigned char)(i * 7);
    CHECK_EQ(bad, 0);
    mbx_msg_free(m);
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    mbx_destroy(box);
    remove_rundir();
}

/* A child sends `normal` normal messages and then one urgent message to
 * addr, and exits: once waited for, all are queued. */
static void
send_normals_then_urgent(const char *addr, int normal)
{
    pid_t pid = fork_child();
    if (pid == 0) {
        char body[16];
        for (int i = 0; i < normal; i++) {
            snprintf(body, sizeof body, "n%d", i);
            CREQUIRE_EQ(send_text(addr, "N", body, 5000), 0);
        }
        mbx_msg *m = text("U", "urgent");
        CREQUIRE_EQ(mbx_msg_set_flags(m, MBX_MSG_URGENT), 0);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 5000), 0);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
}

/* Receives the urgent message first, then the normal ones in order. */
static void
check_urgent_first(mbx_id box, int normal)
{
    int next = 0, urgent_at = -1, urgent = 0, bad = 0;
    char body[16];
    for (int i = 0; i <= normal; i++) {
        mbx_msg *m = NULL;
        REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
        if (kind_is(m, "U")) {
            urgent++;
            urgent_at = i;
            bad += !body_is(m, "urgent") || mbx_msg_flags(m) != MBX_MSG_URGENT;
        } else {
            snprintf(body, sizeof body, "n%d", next++);
            bad += !kind_is(m, "N") || !body_is(m, body) || mbx_msg_flags(m);
        }
        mbx_msg_free(m);
    }
    CHECK_EQ(urgent, 1);
    CHECK_EQ(urgent_at, 0);
    CHECK_EQ(bad, 0);
    CHECK_EQ(next, normal);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
}

TEST(host_urgent_from_another_process_goes_first)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "urgent");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    send_normals_then_urgent(addr, 3);
    check_urgent_first(box, 3);
    mbx_destroy(box);
    remove_rundir();
}

/* "urgent send: goes ahead of the queued messages", however many are queued
 * in the ring. */
TEST(host_urgent_goes_ahead_of_a_long_ring_backlog)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "urgent-long");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    send_normals_then_urgent(addr, 100);
    check_urgent_first(box, 100);
    mbx_destroy(box);
    remove_rundir();
}

/* An urgent message from another process also goes ahead of messages this
 * process queued before it. */
TEST(host_urgent_goes_ahead_of_in_process_messages)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "urgent-mixed");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    mbx_msg *m = text("L", "local");
    REQUIRE_EQ(mbx_send(box, &m, 0), 0);
    send_normals_then_urgent(addr, 0);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "U"));
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(kind_is(m, "L"));
    mbx_msg_free(m);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_unregister_keeps_queued_messages)
{
    private_rundir();
    char name[64], addr[ADDR_MAX], other[ADDR_MAX];
    th_unique(name, sizeof name, "unreg");
    snprintf(addr, sizeof addr, "//./%s", name);
    snprintf(other, sizeof other, "//./%s-other", name);
    mbx_id box = host_reader(name, 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        for (int i = 0; i < 3; i++)
            CREQUIRE_EQ(send_text(addr, "Q",
                                  i == 0   ? "q0"
                                  : i == 1 ? "q1"
                                           : "q2",
                                  5000),
                        0);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    CHECK_EQ(mbx_unregister(addr), 0);
    CHECK_EQ(recv_text(box, "Q", "q0", 1000), 0);
    CHECK_EQ(recv_text(box, "Q", "q1", 1000), 0);
    CHECK_EQ(recv_text(box, "Q", "q2", 1000), 0);
    check_no_reader(name);
    /* The name is free for another mailbox; this one had its host name. */
    CHECK_EQ(mbx_register(box, other), MBX_ENOTSUP);
    mbx_id b2 = host_reader(name, 0);
    mbx_destroy(b2);
    mbx_destroy(box);
    remove_rundir();
}

/* ==== the ring as a bound ==================================================
 */

TEST(host_full_ring_bounds_senders)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "bounded");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, MBX_RING_MIN);
    struct chan up;
    chan_open(&up);
    enum { BODY = 200 };
    pid_t pid = fork_child();
    if (pid == 0) {
        char body[BODY];
        int n = 0, rc;
        for (;;) {
            memset(body, 0, sizeof body);
            memcpy(body, &n, sizeof n);
            mbx_msg *m = mbx_msg_new("B", body, sizeof body);
            rc = mbx_send_to(addr, &m, 0);
            if (rc != 0) {
                CREQUIRE(m != NULL);
                mbx_msg_free(m);
                break;
            }
            n++;
            CREQUIRE(n < 64);
        }
        CREQUIRE_EQ(rc, MBX_EAGAIN);
        memcpy(body, &n, sizeof n);
        mbx_msg *m = mbx_msg_new("B", body, sizeof body);
        int64_t t0 = th_now_ms();
        CREQUIRE_EQ(mbx_send_to(addr, &m, 50), MBX_ETIMEDOUT);
        CREQUIRE(th_now_ms() - t0 >= 45);
        CREQUIRE(m != NULL);
        put_bytes(&up, &n, sizeof n);
        /* Blocks until the reader makes room. */
        CREQUIRE_EQ(mbx_send_to(addr, &m, 20000), 0);
        CREQUIRE(m == NULL);
        _exit(0);
    }
    int n = -1;
    REQUIRE_EQ(get_bytes(&up, &n, sizeof n, 10000), 0);
    /* 232-byte records (24 + kind 1 + body 200, padded): 17 fit. */
    CHECK_EQ(n, MBX_RING_MIN / mbx__ring_record_size(1, 0, BODY));
    /* Wait until the sender is parked for room, then drain. */
    const struct mbx__ring *ring;
    REQUIRE_EQ(mbx__host_reader_ring(box, &ring), 0);
    int parked = 0;
    for (int i = 0; i < 5000 && !parked; i++) {
        parked = atomic_load(&ring->hdr->space_waiters) > 0;
        if (!parked)
            pause_ms(1);
    }
    CHECK(parked);
    for (int i = 0; i <= n; i++) {
        mbx_msg *m = NULL;
        REQUIRE_EQ(mbx_recv(box, &m, 10000), 0);
        size_t len;
        const int *seq = mbx_msg_body(m, &len);
        CHECK_EQ(len, BODY);
        CHECK_EQ(*seq, i);
        mbx_msg_free(m);
    }
    CHECK_EQ(wait_child(pid), 0);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    mbx_destroy(box);
    chan_close(&up);
    remove_rundir();
}

/* ==== call and reply between processes ====================================
 */

TEST(host_call_from_child_to_parent)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "callee");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        char body[16];
        for (int i = 0; i < 3; i++) {
            snprintf(body, sizeof body, "ping-%d", i);
            mbx_msg *req = text("PING", body), *reply = NULL;
            CREQUIRE_EQ(mbx_call_to(addr, &req, &reply, 10000), 0);
            CREQUIRE(req == NULL && reply != NULL);
            snprintf(body, sizeof body, "pong-%d", i);
            CREQUIRE(kind_is(reply, "PONG") && body_is(reply, body));
            CREQUIRE_EQ(mbx_msg_is_call(reply), 0);
            mbx_msg_free(reply);
        }
        _exit(0);
    }
    char body[16];
    for (int i = 0; i < 3; i++) {
        mbx_msg *req = NULL;
        REQUIRE_EQ(mbx_recv(box, &req, 10000), 0);
        snprintf(body, sizeof body, "ping-%d", i);
        CHECK(kind_is(req, "PING") && body_is(req, body));
        CHECK_EQ(mbx_msg_is_call(req), 1);
        /* The request carries the caller's reply address. */
        const char *from = mbx_msg_from(req);
        CHECK(from && strncmp(from, "//./", 4) == 0);
        snprintf(body, sizeof body, "pong-%d", i);
        mbx_msg *r = text("PONG", body);
        CHECK_EQ(mbx_reply(req, &r), 0);
        CHECK(r == NULL);
        /* A second reply is refused and stays ours. */
        mbx_msg *r2 = text("PONG", "twice");
        CHECK_EQ(mbx_reply(req, &r2), MBX_EINVAL);
        CHECK(r2 != NULL);
        mbx_msg_free(r2);
        CHECK_EQ(mbx_msg_is_call(req), 0);
        mbx_msg_free(req);
    }
    CHECK_EQ(wait_child(pid), 0);
    /* A reply to a message that was not a call. */
    pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(send_text(addr, "PLAIN", "x", 5000), 0);
        _exit(0);
    }
    CHECK_EQ(wait_child(pid), 0);
    mbx_msg *plain = NULL, *r = text("", "no");
    REQUIRE_EQ(mbx_recv(box, &plain, 5000), 0);
    CHECK_EQ(mbx_msg_is_call(plain), 0);
    CHECK_EQ(mbx_reply(plain, &r), MBX_EINVAL);
    CHECK(r != NULL);
    mbx_msg_free(r);
    mbx_msg_free(plain);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_call_from_parent_to_child)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "childsrv");
    snprintf(addr, sizeof addr, "//./%s", name);
    struct chan up, down;
    chan_open(&up);
    chan_open(&down);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id box;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register(box, addr), 0);
        tell(&up, 'r');
        for (int i = 0; i < 3; i++) {
            mbx_msg *req = NULL;
            CREQUIRE_EQ(mbx_recv(box, &req, 10000), 0);
            CREQUIRE_EQ(mbx_msg_is_call(req), 1);
            size_t len;
            const char *b = mbx_msg_body(req, &len);
            mbx_msg *r = mbx_msg_new("ECHO", b, len);
            CREQUIRE_EQ(mbx_reply(req, &r), 0);
            mbx_msg_free(req);
        }
        /* The fourth call's caller stopped waiting (timeout 0). */
        CREQUIRE_EQ(hear(&down, 30000), 'g');
        mbx_msg *req = NULL;
        CREQUIRE_EQ(mbx_recv(box, &req, 10000), 0);
        CREQUIRE_EQ(mbx_msg_is_call(req), 1);
        mbx_msg *r = text("ECHO", "too late");
        CREQUIRE_EQ(mbx_reply(req, &r), MBX_ENOENT);
        CREQUIRE(r != NULL);
        mbx_msg_free(r);
        mbx_msg_free(req);
        tell(&up, 'd');
        CREQUIRE_EQ(hear(&down, 30000), 'q');
        _exit(0);
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    char body[16];
    for (int i = 0; i < 3; i++) {
        snprintf(body, sizeof body, "echo-%d", i);
        mbx_msg *req = text("REQ", body), *reply = NULL;
        CHECK_EQ(mbx_call_to(addr, &req, &reply, 10000), 0);
        CHECK(req == NULL);
        CHECK(reply && kind_is(reply, "ECHO") && body_is(reply, body));
        mbx_msg_free(reply);
        mbx_msg_free(req);
    }
    mbx_msg *req = text("REQ", "zero"), *reply = NULL;
    CHECK_EQ(mbx_call_to(addr, &req, &reply, 0), MBX_ETIMEDOUT);
    CHECK(req == NULL); /* sent all the same */
    CHECK(reply == NULL);
    tell(&down, 'g');
    CHECK_EQ(hear(&up, 10000), 'd');
    tell(&down, 'q');
    CHECK_EQ(wait_child(pid), 0);
    chan_close(&up);
    chan_close(&down);
    remove_rundir();
}

TEST(host_reply_after_the_caller_timed_out)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "late");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    struct chan up;
    chan_open(&up);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_msg *req = text("REQ", "first"), *reply = NULL;
        CREQUIRE_EQ(mbx_call_to(addr, &req, &reply, 100), MBX_ETIMEDOUT);
        CREQUIRE(req == NULL && reply == NULL);
        tell(&up, 't');
        /* Now wait for the reply to a second call: the late reply to the
         * first must be refused, not taken for this one. */
        req = text("REQ", "second");
        CREQUIRE_EQ(mbx_call_to(addr, &req, &reply, 20000), 0);
        CREQUIRE(reply && body_is(reply, "second reply"));
        mbx_msg_free(reply);
        _exit(0);
    }
    REQUIRE_EQ(hear(&up, 10000), 't');
    mbx_msg *first = NULL, *second = NULL;
    REQUIRE_EQ(mbx_recv(box, &first, 5000), 0);
    CHECK(body_is(first, "first"));
    /* The second request is queued once the child waits for its reply. */
    REQUIRE_EQ(mbx_recv(box, &second, 10000), 0);
    CHECK(body_is(second, "second"));
    mbx_msg *r = text("REP", "first reply");
    CHECK_EQ(mbx_reply(first, &r), MBX_ENOENT);
    CHECK(r != NULL);
    mbx_msg_free(r);
    mbx_msg_free(first);
    r = text("REP", "second reply");
    CHECK_EQ(mbx_reply(second, &r), 0);
    mbx_msg_free(second);
    CHECK_EQ(wait_child(pid), 0);
    mbx_destroy(box);
    chan_close(&up);
    remove_rundir();
}

TEST(host_call_request_freed_unanswered)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "dropper");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_msg *req = text("REQ", "drop me"), *reply = NULL;
        int64_t t0 = th_now_ms();
        CREQUIRE_EQ(mbx_call_to(addr, &req, &reply, 20000), MBX_ECLOSED);
        CREQUIRE(th_now_ms() - t0 < 5000);
        CREQUIRE(req == NULL && reply == NULL);
        _exit(0);
    }
    mbx_msg *req = NULL;
    REQUIRE_EQ(mbx_recv(box, &req, 10000), 0);
    CHECK_EQ(mbx_msg_is_call(req), 1);
    mbx_msg_free(req);
    CHECK_EQ(wait_child(pid), 0);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_call_callee_killed_while_caller_waits)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "victim");
    snprintf(addr, sizeof addr, "//./%s", name);
    struct chan up;
    chan_open(&up);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id box;
        mbx_msg *req = NULL;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        CREQUIRE_EQ(mbx_register(box, addr), 0);
        tell(&up, 'r');
        CREQUIRE_EQ(mbx_recv(box, &req, 10000), 0);
        CREQUIRE_EQ(mbx_msg_is_call(req), 1);
        raise(SIGKILL); /* dies holding the request */
        _exit(2);
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_msg *req = text("REQ", "x"), *reply = NULL;
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_call_to(addr, &req, &reply, 20000), MBX_ECLOSED);
    int64_t took = th_now_ms() - t0;
    CHECK(took < 5000);
    CHECK(req == NULL && reply == NULL);
    CHECK_EQ(wait_child(pid), KILLED_BY(SIGKILL));
    chan_close(&up);
    remove_rundir();
}

TEST(host_call_callee_destroys_its_mailbox)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "closer");
    snprintf(addr, sizeof addr, "//./%s", name);
    struct chan up, down;
    chan_open(&up);
    chan_open(&down);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_id box;
        CREQUIRE_EQ(mbx_create(&box, NULL), 0);
        int fd = mbx_fd(box);
        CREQUIRE(fd >= 0);
        CREQUIRE_EQ(mbx_register(box, addr), 0);
        tell(&up, 'r');
        /* The request is queued: destroy without receiving it. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CREQUIRE_EQ(poll(&p, 1, 10000), 1);
        CREQUIRE_EQ(mbx_destroy(box), 0);
        CREQUIRE_EQ(hear(&down, 30000), 'q');
        _exit(0);
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_msg *req = text("REQ", "x"), *reply = NULL;
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_call_to(addr, &req, &reply, 20000), MBX_ECLOSED);
    CHECK(th_now_ms() - t0 < 5000);
    tell(&down, 'q');
    CHECK_EQ(wait_child(pid), 0);
    chan_close(&up);
    chan_close(&down);
    remove_rundir();
}

/* A reply larger than the transport takes (half of the caller's 64 KiB
 * reply ring) is MBX_EMSGSIZE with nothing sent, and the caller is not left
 * waiting for its whole timeout: either the callee can still answer with a
 * smaller reply, or freeing the request ends the call with MBX_ECLOSED. */
TEST(host_reply_too_large_for_the_reply_ring)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "bigreply");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_msg *req = text("REQ", "big please"), *reply = NULL;
        int64_t t0 = th_now_ms();
        int rc = mbx_call_to(addr, &req, &reply, 4000);
        int64_t took = th_now_ms() - t0;
        if (rc == 0 && reply && body_is(reply, "small"))
            _exit(0);
        if (rc == MBX_ECLOSED && took < 2000)
            _exit(1);
        fprintf(stderr, "  child: call gave %s after %lld ms\n",
                mbx_strerror_name(rc), (long long)took);
        _exit(2);
    }
    mbx_msg *req = NULL;
    REQUIRE_EQ(mbx_recv(box, &req, 10000), 0);
    static char big[40000];
    mbx_msg *r = mbx_msg_new("REP", big, sizeof big);
    CHECK_EQ(mbx_reply(req, &r), MBX_EMSGSIZE);
    CHECK(r != NULL);
    mbx_msg_free(r);
    r = text("REP", "small");
    int rc = mbx_reply(req, &r);
    mbx_msg_free(r);
    mbx_msg_free(req);
    if (rc == 0) {
        CHECK_EQ(wait_child(pid), 0);
    } else {
        CHECK_EQ(rc, MBX_EINVAL);
        CHECK_EQ(wait_child(pid), 1);
    }
    mbx_destroy(box);
    remove_rundir();
}

/* ==== mbx_fd ===============================================================
 */

/* Drives a sender and checks that fd is readable exactly while messages
 * from it (or from this process) wait in box. */
static void
check_fd_follows_messages(mbx_id box, int fd, struct sender *snd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    mbx_msg *m = NULL;
    CHECK_EQ(poll(&p, 1, 0), 0);
    for (int i = 0; i < 3; i++) {
        int k = snd->sent;
        sender_send(snd, 'm');
        CHECK_EQ(poll(&p, 1, 1000), 1);
        CHECK(p.revents & POLLIN);
        CHECK_EQ(poll(&p, 1, 0), 1); /* level-triggered */
        m = NULL;
        CHECK_EQ(mbx_recv(box, &m, 0), 0);
        CHECK(m && is_good(m, k));
        mbx_msg_free(m);
        CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
        CHECK_EQ(poll(&p, 1, 0), 0);
    }
    /* Two waiting: readable until both are received. */
    int k = snd->sent;
    sender_send(snd, 'm');
    sender_send(snd, 'm');
    CHECK_EQ(poll(&p, 1, 1000), 1);
    m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && is_good(m, k));
    mbx_msg_free(m);
    CHECK_EQ(poll(&p, 1, 0), 1);
    m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && is_good(m, k + 1));
    mbx_msg_free(m);
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    CHECK_EQ(poll(&p, 1, 0), 0);
    /* A message from this process counts the same. */
    m = text("LOCAL", "l");
    CHECK_EQ(mbx_send(box, &m, 0), 0);
    CHECK_EQ(poll(&p, 1, 0), 1);
    CHECK_EQ(recv_text(box, "LOCAL", "l", 0), 0);
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    CHECK_EQ(poll(&p, 1, 0), 0);
    /* And once more from the other process. */
    k = snd->sent;
    sender_send(snd, 'm');
    CHECK_EQ(poll(&p, 1, 1000), 1);
    m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && is_good(m, k));
    mbx_msg_free(m);
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    CHECK_EQ(poll(&p, 1, 0), 0);
}

TEST(host_fd_readable_while_messages_wait)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "pollme");
    mbx_id box = host_reader(name, 0);
    int fd = mbx_fd(box);
    REQUIRE(fd >= 0);
    CHECK_EQ(mbx_fd(box), fd);
    struct sender snd;
    sender_start(&snd, name);
    check_fd_follows_messages(box, fd, &snd);
    sender_stop(&snd);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_fd_made_before_the_host_name)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "pollfirst");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    int fd = mbx_fd(box);
    REQUIRE(fd >= 0);
    REQUIRE_EQ(mbx_register(box, addr), 0);
    CHECK_EQ(mbx_fd(box), fd);
    struct sender snd;
    sender_start(&snd, name);
    check_fd_follows_messages(box, fd, &snd);
    sender_stop(&snd);
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_slot_fd_readable_while_messages_wait)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "slotfd");
    mbx_slot *r;
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_slot_open(&r, name, NULL), 0);
    int fd = mbx_slot_fd(r);
    REQUIRE(fd >= 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 0), 0);
    struct sender snd;
    sender_start(&snd, name);
    for (int i = 0; i < 3; i++) {
        char body[32];
        snprintf(body, sizeof body, "good-%d", snd.sent);
        sender_send(&snd, 'p');
        CHECK_EQ(poll(&p, 1, 1000), 1);
        m = NULL;
        CHECK_EQ(mbx_slot_get_nowait(r, &m), 0);
        CHECK(m && body_is(m, body));
        mbx_msg_free(m);
        CHECK_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
        CHECK_EQ(poll(&p, 1, 0), 0);
    }
    sender_stop(&snd);
    mbx_slot_close(r);
    remove_rundir();
}

/* ==== in-process and cross-process senders together ========================
 */

struct stamp {
    uint32_t seq;
    uint32_t check;
};

struct local_sender {
    mbx_id box;
    const char *addr;
    long n;
    _Atomic int failures;
};

/* Sends n stamped messages of kind "L", alternately by id and by the host
 * address (which this process reads, so it goes straight to the mailbox). */
static void *
local_sender_main(void *p)
{
    struct local_sender *ls = p;
    for (long i = 0; i < ls->n; i++) {
        struct stamp s = {(uint32_t)i, (uint32_t)i * 2654435761u};
        mbx_msg *m = mbx_msg_new("L", &s, sizeof s);
        int rc =
            (i & 1) ? mbx_send_to(ls->addr, &m, -1) : mbx_send(ls->box, &m, -1);
        if (rc != 0) {
            atomic_fetch_add(&ls->failures, 1);
            mbx_msg_free(m);
        }
    }
    return NULL;
}

TEST(host_in_process_and_cross_process_senders_interleave)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "mixed");
    snprintf(addr, sizeof addr, "//./%s", name);
    long n = th_scaled(20000);
    mbx_id box = host_reader(name, 64 << 10);
    struct chan down;
    chan_open(&down);
    /* Fork before any thread starts. */
    pid_t pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(hear(&down, 30000), 'g');
        for (long i = 0; i < n; i++) {
            struct stamp s = {(uint32_t)i, (uint32_t)i * 2654435761u};
            mbx_msg *m = mbx_msg_new("R", &s, sizeof s);
            CREQUIRE_EQ(mbx_send_to(addr, &m, 30000), 0);
        }
        _exit(0);
    }
    struct local_sender ls = {.box = box, .addr = addr, .n = n};
    pthread_t th;
    REQUIRE_EQ(pthread_create(&th, NULL, local_sender_main, &ls), 0);
    tell(&down, 'g');
    long next_l = 0, next_r = 0, bad = 0;
    for (long i = 0; i < 2 * n; i++) {
        mbx_msg *m = NULL;
        int rc = mbx_recv(box, &m, 30000);
        if (rc != 0) {
            CHECK_EQ(rc, 0);
            break;
        }
        size_t len;
        const struct stamp *s = mbx_msg_body(m, &len);
        long *next = kind_is(m, "L") ? &next_l : &next_r;
        if (len != sizeof *s || s->seq != (uint32_t)*next ||
            s->check != s->seq * 2654435761u)
            bad++;
        else
            (*next)++;
        mbx_msg_free(m);
    }
    pthread_join(th, NULL);
    CHECK_EQ(atomic_load(&ls.failures), 0);
    CHECK_EQ(bad, 0);
    CHECK_EQ(next_l, n);
    CHECK_EQ(next_r, n);
    CHECK_EQ(wait_child(pid), 0);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    mbx_destroy(box);
    chan_close(&down);
    remove_rundir();
}

/* ==== several writer processes, and writers that die ======================
 */

/* A stamped body: writer, sequence number, and a filler derived from both,
 * so a torn or mixed-up record shows. */
enum { STAMPED_LEN = 64 };

static void
stamped_fill(unsigned char *b, uint32_t writer, uint32_t seq)
{
    memcpy(b, &writer, 4);
    memcpy(b + 4, &seq, 4);
    for (int i = 8; i < STAMPED_LEN; i++)
        b[i] = (unsigned char)(writer * 131 + seq * 31 + (uint32_t)i);
}

/* Returns 1 if m is an intact stamped message; stores writer and seq. */
static int
stamped_check(const mbx_msg *m, uint32_t *writer, uint32_t *seq)
{
    size_t len;
    const unsigned char *b = mbx_msg_body(m, &len);
    if (len != STAMPED_LEN || !kind_is(m, "W"))
        return 0;
    unsigned char want[STAMPED_LEN];
    memcpy(writer, b, 4);
    memcpy(seq, b + 4, 4);
    stamped_fill(want, *writer, *seq);
    return memcmp(b, want, STAMPED_LEN) == 0;
}

/* Sends count stamped messages as `writer` (count < 0: until killed). */
static _Noreturn void
stamped_writer(const char *addr, uint32_t writer, long count)
{
    unsigned char b[STAMPED_LEN];
    for (long i = 0; count < 0 || i < count; i++) {
        stamped_fill(b, writer, (uint32_t)i);
        mbx_msg *m = mbx_msg_new("W", b, sizeof b);
        CREQUIRE_EQ(mbx_send_to(addr, &m, 30000), 0);
    }
    _exit(0);
}

TEST(host_several_writer_processes_into_a_small_ring)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "many");
    snprintf(addr, sizeof addr, "//./%s", name);
    enum { WRITERS = 3 };
    long n = th_scaled(5000);
    mbx_id box = host_reader(name, MBX_RING_MIN);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork_child();
        if (pids[w] == 0)
            stamped_writer(addr, (uint32_t)w, n);
    }
    long next[WRITERS] = {0}, bad = 0;
    for (long i = 0; i < WRITERS * n; i++) {
        mbx_msg *m = NULL;
        int rc = mbx_recv(box, &m, 30000);
        if (rc != 0) {
            CHECK_EQ(rc, 0);
            break;
        }
        uint32_t w, seq;
        if (!stamped_check(m, &w, &seq) || w >= WRITERS || seq != next[w])
            bad++;
        else
            next[w]++;
        mbx_msg_free(m);
    }
    CHECK_EQ(bad, 0);
    for (int w = 0; w < WRITERS; w++) {
        CHECK_EQ(next[w], n);
        CHECK_EQ(wait_child(pids[w]), 0);
    }
    mbx_destroy(box);
    remove_rundir();
}

TEST(host_writer_killed_at_any_instant_never_wedges_the_ring)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "wkill");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, MBX_RING_MIN);
    long rounds = th_scaled(12);
    long bad = 0;
    for (long round = 0; round < rounds; round++) {
        /* A writer that sends until killed, into a ring kept full. */
        pid_t a = fork_child();
        if (a == 0)
            stamped_writer(addr, 0, -1);
        uint32_t next_a = 0, w, seq;
        long take = 20 + round * 13;
        for (long i = 0; i < take; i++) {
            mbx_msg *m = NULL;
            REQUIRE_EQ(mbx_recv(box, &m, 30000), 0);
            if (!stamped_check(m, &w, &seq) || w != 0 || seq != next_a)
                bad++;
            next_a++;
            mbx_msg_free(m);
        }
        kill(a, SIGKILL);
        CHECK_EQ(wait_child(a), KILLED_BY(SIGKILL));
        /* What the dead writer published is whole and in order. */
        mbx_msg *m = NULL;
        while (mbx_recv(box, &m, 0) == 0) {
            if (!stamped_check(m, &w, &seq) || w != 0 || seq != next_a)
                bad++;
            next_a++;
            mbx_msg_free(m);
            m = NULL;
        }
        /* A new writer gets through, whatever the dead one held. */
        pid_t b = fork_child();
        if (b == 0)
            stamped_writer(addr, 1, 100);
        for (uint32_t i = 0; i < 100; i++) {
            m = NULL;
            REQUIRE_EQ(mbx_recv(box, &m, 10000), 0);
            if (!stamped_check(m, &w, &seq) || w != 1 || seq != i)
                bad++;
            mbx_msg_free(m);
        }
        CHECK_EQ(wait_child(b), 0);
    }
    CHECK_EQ(bad, 0);
    mbx_destroy(box);
    remove_rundir();
}

/* ==== listing, modes, the runtime directory ================================
 */

static mode_t
file_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return (mode_t)-1;
    return st.st_mode & 07777;
}

TEST(host_slot_list_and_file_modes)
{
    private_rundir();
    char g[64], d[64], path[PATH_MAX];
    th_unique(g, sizeof g, "group");
    th_unique(d, sizeof d, "default");
    struct chan up, down;
    chan_open(&up);
    chan_open(&down);
    pid_t pid = fork_child();
    if (pid == 0) {
        umask(077); /* the option decides, not the umask */
        mbx_slot_opts o = {.ring_size = 8192, .mode = 0660};
        mbx_slot *r;
        mbx_msg *m = NULL;
        CREQUIRE_EQ(mbx_slot_open(&r, g, &o), 0);
        CREQUIRE_EQ(mbx_slot_get_nowait(r, &m), MBX_EAGAIN);
        tell(&up, 'r');
        CREQUIRE_EQ(hear(&down, 30000), 'c');
        mbx_slot_close(r);
        tell(&up, 'd');
        CREQUIRE_EQ(hear(&down, 30000), 'q');
        _exit(0);
    }
    REQUIRE_EQ(hear(&up, 10000), 'r');
    mbx_slot_info info;
    CHECK_EQ(list_find(g, &info), 1);
    CHECK_EQ(info.pid, pid);
    CHECK_EQ(info.ring_size, 8192);
    CHECK_EQ(info.mode, 0660);
    CHECK_EQ(info.queued, 0);
    CHECK_EQ(info.dropped, 0);
    mbx_slot *w;
    REQUIRE_EQ(mbx_slot_open(&w, g, NULL), 0);
    CHECK_EQ(mbx_slot_put(w, "a", 1), 0);
    CHECK_EQ(mbx_slot_put(w, "bb", 2), 0);
    CHECK_EQ(list_find(g, &info), 1);
    CHECK_EQ(info.queued, 2);
    CHECK_EQ(info.queued_bytes, 64); /* two 32-byte records */
    ring_path(path, sizeof path, g);
    CHECK_EQ(file_mode(path), 0660);
    CHECK(file_mode(rundir) & 0010); /* group-searchable for 0660 */
    tell(&down, 'c');
    REQUIRE_EQ(hear(&up, 10000), 'd');
    CHECK_EQ(list_find(g, NULL), 0);
    struct stat st;
    CHECK(stat(path, &st) < 0 && errno == ENOENT);
    CHECK_EQ(mbx_slot_put(w, "c", 1), MBX_ENOENT);
    mbx_slot_close(w);
    tell(&down, 'q');
    CHECK_EQ(wait_child(pid), 0);

    /* A default ring in this process: 0600 whatever the umask. */
    mode_t old = umask(0);
    mbx_id box = host_reader(d, 0);
    umask(old);
    ring_path(path, sizeof path, d);
    CHECK_EQ(file_mode(path), 0600);
    CHECK_EQ(list_find(d, &info), 1);
    CHECK_EQ(info.pid, getpid());
    CHECK_EQ(info.ring_size, MBX_RING_DEFAULT);
    CHECK_EQ(info.mode, 0600);
    mbx_destroy(box);
    CHECK_EQ(list_find(d, NULL), 0);

    /* Ring sizes round up to a power of two within bounds; other modes and
     * sizes are refused. */
    char addr[ADDR_MAX];
    snprintf(addr, sizeof addr, "//./%s", d);
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    mbx_host_opts bad_mode = {.mode = 0644};
    CHECK_EQ(mbx_register_host(box, addr, &bad_mode), MBX_EINVAL);
    mbx_host_opts too_big = {.ring_size = (size_t)MBX_RING_MAX + 1};
    CHECK_EQ(mbx_register_host(box, addr, &too_big), MBX_EINVAL);
    mbx_slot_opts so = {.mode = 0666};
    CHECK_EQ(mbx_slot_open(&w, d, &so), MBX_EINVAL);
    mbx_host_opts odd = {.ring_size = 5000};
    CHECK_EQ(mbx_register_host(box, addr, &odd), 0);
    CHECK_EQ(list_find(d, &info), 1);
    CHECK_EQ(info.ring_size, 8192);
    mbx_destroy(box);
    box = host_reader(d, 1);
    CHECK_EQ(list_find(d, &info), 1);
    CHECK_EQ(info.ring_size, MBX_RING_MIN);
    mbx_destroy(box);
    chan_close(&up);
    chan_close(&down);
    remove_rundir();
}

TEST(host_runtime_directory_created_0700)
{
    private_rundir();
    char sub[PATH_MAX + 8], name[64];
    snprintf(sub, sizeof sub, "%s/run", rundir);
    th_unique(name, sizeof name, "dir");
    struct stat st;
    CHECK(stat(sub, &st) < 0 && errno == ENOENT);
    REQUIRE_EQ(setenv("MBX_RUNTIME_DIR", sub, 1), 0);
    mode_t old = umask(0);
    mbx_id box = host_reader(name, 0);
    umask(old);
    REQUIRE_EQ(stat(sub, &st), 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK_EQ(st.st_mode & 07777, 0700);
    CHECK_EQ(list_find(name, NULL), 1);
    mbx_destroy(box);
    remove_rundir();
}

/* ==== malformed records ====================================================
 */

/* Our own mapping of a reader's ring, to write records as a buggy or hostile
 * process of the same user could. */
struct forger {
    void *map;
    size_t size;
    struct mbx__ring_hdr *hdr;
    unsigned char *data;
    uint64_t mask;
};

static void
forger_open(struct forger *f, const char *name)
{
    char path[PATH_MAX];
    ring_path(path, sizeof path, name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE_EQ(fstat(fd, &st), 0);
    f->size = (size_t)st.st_size;
    f->map = mmap(NULL, f->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    REQUIRE(f->map != MAP_FAILED);
    f->hdr = f->map;
    REQUIRE(f->hdr->magic == MBX__RING_MAGIC);
    f->data = (unsigned char *)f->map + MBX__RING_HDR_SIZE;
    f->mask = f->hdr->data_size - 1;
}

static void
forger_close(struct forger *f)
{
    munmap(f->map, f->size);
}

/* Writes len bytes at the tail (after a proper PAD record to the end if
 * they would come close to it) and publishes `advance` bytes, as a writer
 * does: one store of tail. */
static void
forge(struct forger *f, const void *bytes, size_t len, uint64_t advance)
{
    uint64_t tail = atomic_load(&f->hdr->tail);
    uint64_t off = tail & f->mask, to_end = f->mask + 1 - off;
    if (to_end < len + 64) {
        struct mbx__rec pad = {.size = (uint32_t)to_end, .type = MBX__REC_PAD};
        memcpy(f->data + off, &pad, 8);
        tail += to_end;
        atomic_store(&f->hdr->tail, tail);
        off = 0;
    }
    memcpy(f->data + off, bytes, len);
    atomic_fetch_add(&f->hdr->puts, 1);
    atomic_store(&f->hdr->tail, tail + advance);
}

/* A record header followed by `extra` bytes. */
struct garbage {
    const char *what;
    struct mbx__rec rec;
    const char *extra;
    size_t extra_len;
    uint64_t advance;
    int record_only; /* dropping it keeps the records after it */
};

static uint32_t
rsize(size_t kind, size_t from, size_t body)
{
    return (uint32_t)mbx__ring_record_size(kind, from, body);
}

static void
forge_garbage(struct forger *f, const struct garbage *g)
{
    unsigned char buf[128] = {0};
    memcpy(buf, &g->rec, sizeof g->rec);
    if (g->extra_len)
        memcpy(buf + sizeof g->rec, g->extra, g->extra_len);
    forge(f, buf, sizeof buf, g->advance);
}

static uint64_t
dropped_count(const char *name)
{
    mbx_slot_info info;
    CHECK_EQ(list_find(name, &info), 1);
    return info.dropped;
}

/* Receives one message, waiting up to timeout_ms. It must be one of the
 * sender's next good messages (a good message may have been dropped with
 * garbage queued before it, but what arrives is whole and in order), or,
 * when allow_forged, a well-formed message made of what the garbage and the
 * records after it hold (never of kind "GOOD"). Returns 1 if one came. */
static int
receive_good(mbx_id box, int timeout_ms, int *next_good, int allow_forged)
{
    mbx_msg *m = NULL;
    if (mbx_recv(box, &m, timeout_ms) != 0)
        return 0;
    int ok = 0;
    for (int k = *next_good; k < *next_good + 4 && !ok; k++)
        if (is_good(m, k)) {
            ok = 1;
            *next_good = k + 1;
        }
    if (!ok && allow_forged && !kind_is(m, "GOOD"))
        ok = 1;
    CHECK(ok);
    if (!ok)
        fprintf(stderr, "  unexpected message: kind \"%s\"\n", mbx_msg_kind(m));
    mbx_msg_free(m);
    return 1;
}

TEST(host_malformed_records_are_dropped_and_counted)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "garbage");
    mbx_id box = host_reader(name, MBX_RING_MIN);
    struct forger f;
    forger_open(&f, name);
    struct sender snd;
    sender_start(&snd, name);
    const struct garbage cases[] = {
        {.what = "size not a multiple of 8",
         .rec = {.size = 13, .type = MBX__REC_MSG},
         .advance = 16},
        {.what = "size zero", .rec = {.type = MBX__REC_MSG}, .advance = 24},
        {.what = "size past the published tail",
         .rec = {.size = 64, .type = MBX__REC_MSG, .body_len = 40},
         .advance = 32},
        {.what = "huge size",
         .rec = {.size = 0xFFFFFFF8u, .type = MBX__REC_MSG},
         .advance = 32},
        {.what = "unknown type",
         .rec = {.size = 32, .type = 77},
         .advance = 32},
        {.what = "padding short of the end",
         .rec = {.size = 32, .type = MBX__REC_PAD},
         .advance = 32},
        {.what = "huge body length",
         .rec = {.size = 32, .type = MBX__REC_MSG, .body_len = 0xFFFFFFFFu},
         .advance = 32},
        {.what = "kind and address lengths past the record",
         .rec = {.size = 32,
                 .type = MBX__REC_MSG,
                 .kind_len = 255,
                 .from_len = 255},
         .advance = 32},
        {.what = "unknown role",
         .rec = {.size = 24, .type = MBX__REC_MSG, .role = 9},
         .advance = 24},
        {.what = "tail far ahead",
         .rec = {.size = 24, .type = MBX__REC_MSG},
         .advance = 1ull << 40},
        {.what = "tail behind head",
         .rec = {.size = 24, .type = MBX__REC_MSG},
         .advance = (uint64_t)-4096},
        /* Records the reader can step over: only they are dropped. */
        {.what = "NUL in the kind",
         .rec = {.size = rsize(3, 0, 2),
                 .type = MBX__REC_MSG,
                 .kind_len = 3,
                 .body_len = 2},
         .extra = "a\0bzz",
         .extra_len = 5,
         .advance = rsize(3, 0, 2),
         .record_only = 1},
        {.what = "NUL in the reply address",
         .rec = {.size = rsize(1, 3, 0),
                 .type = MBX__REC_MSG,
                 .kind_len = 1,
                 .from_len = 3},
         .extra = "kx\0y",
         .extra_len = 4,
         .advance = rsize(1, 3, 0),
         .record_only = 1},
        {.what = "unknown flag",
         .rec = {.size = 24, .type = MBX__REC_MSG, .flags = 0x80},
         .advance = 24,
         .record_only = 1},
        {.what = "call without a reply address",
         .rec =
             {.size = 24, .type = MBX__REC_MSG, .role = MBX__CALL, .corr = 5},
         .advance = 24,
         .record_only = 1},
    };
    int next_good = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const struct garbage *g = &cases[i];
        /* 1. Garbage alone: the reader drops it, delivers nothing. */
        uint64_t dropped = dropped_count(name);
        forge_garbage(&f, g);
        mbx_msg *m = NULL;
        CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
        uint64_t now = dropped_count(name);
        CHECK(now > dropped);
        if (now <= dropped)
            fprintf(stderr, "  not counted: %s\n", g->what);
        /* 2. A good message after it is delivered intact. */
        next_good = snd.sent;
        sender_send(&snd, 'm');
        m = NULL;
        CHECK_EQ(mbx_recv(box, &m, 1000), 0);
        CHECK(m && is_good(m, next_good));
        if (m && !is_good(m, next_good))
            fprintf(stderr, "  after %s: a wrong message\n", g->what);
        next_good++;
        mbx_msg_free(m);
        /* 3. Garbage with a good message sent right behind it while the
         * reader keeps receiving: the good one is kept when the garbage is
         * a record the reader can step over. (Garbage that moves the tail
         * makes the ring look full to writers until the reader looks.) */
        forge_garbage(&f, g);
        int first = snd.sent, got = 0, acked = 0;
        next_good = first;
        tell(&snd.cmd, 'm');
        for (int64_t until = th_now_ms() + 10000;
             !acked && th_now_ms() < until;) {
            got += receive_good(box, 10, &next_good, !g->record_only);
            acked = hear(&snd.ack, 0) == 'a';
        }
        REQUIRE(acked);
        snd.sent++;
        while (receive_good(box, 0, &next_good, !g->record_only))
            got++;
        if (g->record_only) {
            CHECK_EQ(got, 1);
            CHECK_EQ(next_good, first + 1);
        }
        /* 4. And later good messages are delivered intact. */
        first = snd.sent;
        sender_send(&snd, 'm');
        m = NULL;
        CHECK_EQ(mbx_recv(box, &m, 1000), 0);
        CHECK(m && is_good(m, first));
        if (m && !is_good(m, first))
            fprintf(stderr, "  after %s: later message wrong\n", g->what);
        mbx_msg_free(m);
        next_good = first + 1;
    }
    CHECK(dropped_count(name) >= 2 * (sizeof cases / sizeof *cases));
    sender_stop(&snd);
    forger_close(&f);
    mbx_destroy(box);
    remove_rundir();
}

static uint64_t
xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

TEST(host_random_records_never_crash_the_reader)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "fuzz");
    mbx_id box = host_reader(name, MBX_RING_MIN);
    struct forger f;
    forger_open(&f, name);
    struct sender snd;
    sender_start(&snd, name);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    long rounds = th_scaled(400), forged_delivered = 0, lost = 0;
    for (long i = 0; i < rounds; i++) {
        unsigned char buf[96];
        for (size_t j = 0; j < sizeof buf; j += 8) {
            uint64_t r = xorshift(&seed);
            memcpy(buf + j, &r, 8);
        }
        struct mbx__rec rec;
        memcpy(&rec, buf, sizeof rec);
        uint64_t r = xorshift(&seed);
        /* Mostly nearly-valid headers, sometimes plain noise. */
        if (r % 4 != 0) {
            rec.type = (r >> 8) % 3 ? MBX__REC_MSG : MBX__REC_PAD;
            rec.kind_len %= 16;
            rec.from_len %= 16;
            rec.body_len = (r >> 16) % 3 ? rec.body_len % 32 : rec.body_len;
            rec.size = (r >> 24) % 2
                           ? rsize(rec.kind_len, rec.from_len, rec.body_len)
                           : rec.size % 128;
            rec.role %= 6;
            rec.flags %= 3;
        }
        memcpy(buf, &rec, sizeof rec);
        uint64_t advance = 8 * (1 + (r >> 32) % 12);
        forge(&f, buf, sizeof buf, advance);
        /* Whatever arrives: either a well-formed forged message (never one
         * that looks like the sender's) or nothing. */
        mbx_msg *m = NULL;
        while (mbx_recv(box, &m, 0) == 0) {
            CHECK(!kind_is(m, "GOOD"));
            forged_delivered++;
            mbx_msg_free(m);
            m = NULL;
        }
        /* Then a good message gets through intact. */
        int k = snd.sent;
        sender_send(&snd, 'm');
        m = NULL;
        int rc = mbx_recv(box, &m, 1000);
        if (rc != 0 || !is_good(m, k))
            lost++;
        mbx_msg_free(m);
    }
    CHECK_EQ(lost, 0);
    CHECK(dropped_count(name) > 0);
    printf("  fuzz: %ld rounds, %ld forged messages were well-formed, "
           "%llu dropped\n",
           rounds, forged_delivered, (unsigned long long)dropped_count(name));
    sender_stop(&snd);
    forger_close(&f);
    mbx_destroy(box);
    remove_rundir();
}

/* A tail published at a position that is not a multiple of 8: the reader
 * drops what is there, and the good messages that follow must get through
 * again (not only after the writers' positions wrap around the ring). */
TEST(host_misaligned_tail_does_not_lose_later_messages)
{
    private_rundir();
    char name[64];
    th_unique(name, sizeof name, "misaligned");
    mbx_id box = host_reader(name, MBX_RING_MIN);
    struct forger f;
    forger_open(&f, name);
    struct sender snd;
    sender_start(&snd, name);
    struct mbx__rec rec = {.size = 13, .type = MBX__REC_MSG};
    forge(&f, &rec, sizeof rec, 13);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    CHECK(dropped_count(name) > 0);
    int lost = 0;
    for (int i = 0; i < 5; i++) {
        int k = snd.sent;
        sender_send(&snd, 'm');
        m = NULL;
        int rc = mbx_recv(box, &m, 500);
        if (rc != 0 || !is_good(m, k))
            lost++;
        mbx_msg_free(m);
    }
    CHECK_EQ(lost, 0);
    sender_stop(&snd);
    forger_close(&f);
    mbx_destroy(box);
    remove_rundir();
}

/* The writers' lock left held by a writer that no longer exists (a token
 * whose lane nonce is stale) is broken by the next writer. */
TEST(host_lock_of_a_dead_writer_is_broken)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "deadlock");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, 0);
    struct forger f;
    forger_open(&f, name);
    uint32_t lane = 5;
    uint32_t nonce = atomic_load(&f.hdr->lane_nonce[lane]) + 1000;
    atomic_store(&f.hdr->wlock, mbx__ring_token(lane, nonce));
    pid_t pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(send_text(addr, "", "through", 5000), 0);
        _exit(0);
    }
    CHECK_EQ(recv_text(box, "", "through", 10000), 0);
    CHECK_EQ(wait_child(pid), 0);
    CHECK(atomic_load(&f.hdr->broken_locks) >= 1);
    CHECK_EQ(atomic_load(&f.hdr->wlock), 0);
    forger_close(&f);
    mbx_destroy(box);
    remove_rundir();
}

/* A writer killed right after its store of the tail, before it woke the
 * parked reader: the record is in the ring and nobody woke the reader. The
 * next writer finds no room behind that record and waits for room. Neither
 * may wait out its timeout: "a writer killed at any instant must never
 * wedge the ring". */
TEST(host_writer_killed_before_waking_the_reader_does_not_wedge)
{
    private_rundir();
    char name[64], addr[ADDR_MAX];
    th_unique(name, sizeof name, "nowake");
    snprintf(addr, sizeof addr, "//./%s", name);
    mbx_id box = host_reader(name, MBX_RING_MIN);
    /* Move the ring's positions to 1024 bytes in: one 1024-byte record,
     * written and read. */
    static char body[MBX_RING_MIN];
    memset(body, 'a', sizeof body);
    mbx_slot *w;
    REQUIRE_EQ(mbx_slot_open(&w, name, NULL), 0);
    REQUIRE_EQ(mbx_slot_put(w, body, 1024 - 24), 0);
    mbx_slot_close(w);
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_recv(box, &m, 1000), 0);
    mbx_msg_free(m);
    pid_t pid = fork_child();
    if (pid == 0) {
        struct forger f;
        forger_open(&f, name);
        /* Wait until the reader is parked; the pause after it only makes
         * it likelier that it is asleep in the kernel, not about to be. */
        int parked = 0;
        for (int i = 0; i < 5000 && !parked; i++) {
            parked = atomic_load(&f.hdr->rd_waiters) > 0;
            if (!parked)
                pause_ms(1);
        }
        CREQUIRE(parked);
        pause_ms(20);
        /* A whole, valid 2048-byte record at 1024, published without the
         * wake-up that would have followed. */
        static unsigned char rec[2048];
        struct mbx__rec h = {
            .size = 2048, .type = MBX__REC_MSG, .body_len = 2048 - 24};
        memcpy(rec, &h, sizeof h);
        memset(rec + sizeof h, 'F', sizeof rec - sizeof h);
        forge(&f, rec, sizeof rec, sizeof rec);
        /* The next writer: 2048 bytes do not fit behind it. */
        memset(body, 'G', sizeof body);
        mbx_msg *g = mbx_msg_new("", body, 2048 - 24);
        int64_t t0 = th_now_ms();
        int rc = mbx_send_to(addr, &g, 1500);
        if (rc != 0)
            fprintf(stderr, "  child: send gave %s after %lld ms\n",
                    mbx_strerror_name(rc), (long long)(th_now_ms() - t0));
        _exit(rc == 0 ? 0 : 1);
    }
    int64_t t0 = th_now_ms();
    m = NULL;
    int rc = mbx_recv(box, &m, 2000);
    int64_t took = th_now_ms() - t0;
    CHECK_EQ(rc, 0);
    CHECK(took < 1000);
    if (rc == MBX_ETIMEDOUT) /* the record was there all along */
        rc = mbx_recv(box, &m, 0);
    memset(body, 'F', sizeof body);
    CHECK(rc == 0 && body_eq(m, body, 2048 - 24));
    mbx_msg_free(m);
    int child = wait_child(pid);
    CHECK_EQ(child, 0);
    m = NULL;
    if (child == 0) {
        CHECK_EQ(mbx_recv(box, &m, 2000), 0);
        memset(body, 'G', sizeof body);
        CHECK(m && body_eq(m, body, 2048 - 24));
        mbx_msg_free(m);
    }
    mbx_destroy(box);
    remove_rundir();
}
