/*
 * The dispatcher (mpdispatcher in C) across real processes:
 *
 *   mp_*                 mpdispatcher's tests/test_basic.py, translated: a
 *                        receiver in a child process (handle_next with a
 *                        timeout, on a closed sender, in the parent;
 *                        handle_until_closed, also closed by the receiver
 *                        itself; handle_until_blocking; an epoll loop; a
 *                        handling thread beside an "event loop")
 *   handler_*, ...       handlers in connection order, disconnect, a
 *                        handler's non-zero value, ignored events, handlers
 *                        that fire; timeouts and NULL arguments; streams
 *                        in both directions
 *   exec_*, import_*     fork+exec of the dispatch_peer helper with an
 *                        exported handle, firing and receiving; bad handles
 *   args_*, firef_*      args of every type between processes; formats;
 *                        args larger than half the ring
 *   fan_in_*             4 sender processes x 1,000,000 events into one
 *                        receiver: nothing lost, duplicated or reordered
 *   senders_*, ...       senders SIGKILLed at random instants, exiting or
 *                        freeing without closing: the receiver drains and
 *                        gets MBX_ECLOSED, never hangs; a sender facing a
 *                        full ring and no receiver
 *   forked_*, parked_*,  ends inherited over fork but never used, export and
 *   fire_after_*, ...    a consumed close hold nothing: blocked senders and
 *                        receivers get MBX_ECLOSED; a non-blocking handle
 *                        never loses a dying sender's last event
 *   competing_*, close_* receiver processes / threads sharing one
 *                        dispatcher: each event handled exactly once, also
 *                        when one is SIGKILLed; one close ends every thread
 *   bad_*, malformed_*,  bad names and formats (nothing sent), malformed and
 *   random_garbage_*     random records written straight into the ring
 *   fd_*                 mbx_receiver_fd is level-triggered
 *
 * Other processes are forked children (or the exec'd helper) that report
 * through their exit status, pipes or a shared mapping; nothing waits by
 * sleeping (await_parked watches the ring's count of parked receivers).
 * Each child has an alarm and dies with the test process, and waits for
 * children are bounded, so a hang shows up as a failure naming the test.
 * Random choices come from a PRNG seeded by MBX_TEST_SEED (printed; fixed
 * by default). MBX_SOAK=N makes the kill tests run N rounds (raise
 * MBX_TEST_TIMEOUT to match). Sanitizer builds run smaller counts;
 * MBX_TEST_SCALE shrinks them further. The fork+exec tests find the helper
 * through $MBX_DISPATCH_PEER, MBX_DISPATCH_PEER_PATH (set by the build) or
 * beside this program.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dispatch_args.h"
#include "harness.h"
#include "mbx/mbx.h"

/* The ring's layout, to write malformed records into it. */
#include "host/ring.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define DT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define DT_SANITIZED 1
#endif
#endif
#ifndef DT_SANITIZED
#define DT_SANITIZED 0
#endif

/* A child still running after this many seconds ends itself. */
#define CHILD_ALARM_S 60
/* A child that should end must have ended within this. */
#define WAIT_MS 30000
/* A handle call waiting for an event that was fired gets it within this. */
#define HANDLE_MS 10000
/* MBX_ECLOSED must come this soon after the last sender went away (the
 * receiver looks at the senders' liveness every 100 ms). */
#define CLOSED_BOUND_MS 3000
/* Where the ring starts in the dispatcher's memfd. */
#define RING_OFFSET 4096

/* wait_child's result for a child killed by a signal, and for one that
 * did not end in time (it is then killed). */
#define KILLED_BY(sig) (1000 + (sig))
#define TIMED_OUT (-2)

/* ---- sizes, randomness -------------------------------------------------- */

/* A loop count: `plain` normally, `sanitized` under ASan or TSan, both
 * divided by MBX_TEST_SCALE. */
static long
sized(long plain, long sanitized)
{
    return th_scaled(DT_SANITIZED ? sanitized : plain);
}

/* Rounds of a kill test: MBX_SOAK if set, else sized() but at least
 * `least`. */
static long
rounds_of(long plain, long sanitized, long least)
{
    const char *soak = getenv("MBX_SOAK");
    if (soak && atol(soak) > 0)
        return atol(soak);
    long n = sized(plain, sanitized);
    return n < least ? least : n;
}

static uint64_t
mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct rng {
    uint64_t s;
};

static struct rng
rng_seeded(const char *test)
{
    const char *env = getenv("MBX_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x6d62782d64697370ull;
    printf("  %s: MBX_TEST_SEED=%#llx\n", test, (unsigned long long)seed);
    uint64_t h = seed;
    for (const char *p = test; *p; p++)
        h = mix(h ^ (unsigned char)*p);
    return (struct rng){h};
}

/* A number in [0, n). */
static uint64_t
rng_below(struct rng *r, uint64_t n)
{
    r->s = mix(r->s);
    return n ? r->s % n : 0;
}

/* Spins on the monotonic clock: a random instant, not a synchronisation. */
static void
spin_ns(int64_t ns)
{
    int64_t until = th_now_ns() + ns;
    while (th_now_ns() < until)
        ;
}

/* ---- processes, pipes, shared memory ------------------------------------ */

/* Forks; the child dies with the test process and ends itself after
 * CHILD_ALARM_S (the alarm survives an exec). */
static pid_t
fork_child(void)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        alarm(CHILD_ALARM_S);
    }
    return pid;
}

/* Ends a child that passed its checks. */
static _Noreturn void
child_done(void)
{
    fflush(NULL);
    _exit(0);
}

/* Waits until the child has ended, at most timeout_ms. */
static void
await_exit(pid_t pid, int timeout_ms)
{
#ifdef SYS_pidfd_open
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return; /* an old kernel: waitpid and the child's alarm bound it */
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int64_t until = th_now_ms() + timeout_ms;
    int rc;
    do {
        int64_t left = until - th_now_ms();
        rc = poll(&p, 1, left > 0 ? (int)left : 0);
    } while (rc < 0 && errno == EINTR);
    close(pfd);
    if (rc == 0)
        kill(pid, SIGKILL);
#else
    (void)pid;
    (void)timeout_ms;
#endif
}

/* Waits for a child: its exit status, KILLED_BY(signal), or TIMED_OUT when
 * it did not end within timeout_ms (it is killed). */
static int
wait_child(pid_t pid, int timeout_ms)
{
    int64_t start = th_now_ms();
    await_exit(pid, timeout_ms);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL &&
        th_now_ms() - start >= timeout_ms)
        return TIMED_OUT;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? KILLED_BY(WTERMSIG(st)) : -1;
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
chan_put(struct chan *c, char b)
{
    ssize_t w;
    while ((w = write(c->wr, &b, 1)) < 0 && errno == EINTR)
        ;
    return w == 1 ? 0 : -1;
}

/* Reads one byte, waiting at most timeout_ms. Returns it, or -1 on timeout
 * or end of file. */
static int
chan_get(struct chan *c, int timeout_ms)
{
    struct pollfd pf = {.fd = c->rd, .events = POLLIN};
    int rc;
    while ((rc = poll(&pf, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    if (rc <= 0)
        return -1;
    unsigned char b;
    ssize_t r;
    while ((r = read(c->rd, &b, 1)) < 0 && errno == EINTR)
        ;
    return r == 1 ? b : -1;
}

/* Zeroed memory shared with the children forked after this call. */
static void *
shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    return p;
}

/* True when fd is readable within timeout_ms. */
static bool
readable(int fd, int timeout_ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&pf, 1, timeout_ms)) < 0 && errno == EINTR)
        ;
    return rc == 1 && (pf.revents & POLLIN);
}

/* ---- dispatchers and handlers ------------------------------------------- */

static mbx_dispatcher *
new_dispatcher(size_t ring_size)
{
    mbx_dispatcher_opts o = {.ring_size = ring_size};
    mbx_dispatcher *d = NULL;
    REQUIRE_EQ(mbx_dispatcher_new(&d, &o), 0);
    REQUIRE(d != NULL);
    REQUIRE(mbx_dispatcher_sender(d) != NULL);
    REQUIRE(mbx_dispatcher_receiver(d) != NULL);
    return d;
}

static int
fire_int(mbx_sender *s, const char *event, int64_t v)
{
    return mbx_firef(s, event, "i", v);
}

static mbx_receiver_stats
stats_of(mbx_receiver *r)
{
    mbx_receiver_stats st;
    memset(&st, 0xff, sizeof st);
    mbx_receiver_stat(r, &st);
    return st;
}

/* The ints of events in the order handled (mpdispatcher's `l`). */
#define REC_MAX 256

struct rec {
    int64_t v[REC_MAX];
    int n;
};

/* A handler appending its event's first positional int (INT64_MIN when
 * there is none) to the struct rec in ctx. */
static int
on_int(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct rec *r = ctx;
    int64_t v;
    if (mbx_args_get_int(a, 0, &v) != 0)
        v = INT64_MIN;
    if (r->n < REC_MAX)
        r->v[r->n++] = v;
    return 0;
}

static bool
rec_is(const struct rec *r, const int64_t *want, int n)
{
    if (r->n != n)
        return false;
    for (int i = 0; i < n; i++)
        if (r->v[i] != want[i])
            return false;
    return true;
}

#define REC_IS(r, ...)                                                         \
    rec_is(r, (const int64_t[]){__VA_ARGS__},                                  \
           (int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))

/* Per-sender order checking of events carrying ("s<id>", seq). */
#define MAX_SENDERS 8

struct order {
    int64_t next[MAX_SENDERS]; /* the next sequence number expected */
    long total;
    long errors;
    char first_error[128];
};

static void
order_error(struct order *o, const char *what, long id, int64_t seq)
{
    if (o->errors++ == 0)
        snprintf(o->first_error, sizeof o->first_error,
                 "%s: sender %ld seq %" PRId64 " (expected %" PRId64 ")", what,
                 id, seq,
                 id >= 0 && id < MAX_SENDERS ? o->next[id] : (int64_t)-1);
}

static int
on_ordered(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct order *o = ctx;
    const char *who;
    size_t len;
    int64_t seq;
    o->total++;
    if (mbx_args_len(a) != 2 || mbx_args_get_str(a, 0, &who, &len) != 0 ||
        len < 2 || who[0] != 's' || mbx_args_get_int(a, 1, &seq) != 0) {
        order_error(o, "bad args", -1, -1);
        return 0;
    }
    long id = strtol(who + 1, NULL, 10);
    if (id < 0 || id >= MAX_SENDERS)
        order_error(o, "bad sender", id, seq);
    else if (seq != o->next[id])
        order_error(o, seq < o->next[id] ? "duplicate or reordered" : "gap", id,
                    seq);
    if (id >= 0 && id < MAX_SENDERS)
        o->next[id] = seq + 1;
    return 0;
}

/* Fires ("s<id>", seq) for seq in [0, count). Returns 0 or an error. */
static int
fire_ordered(mbx_sender *s, int id, long count)
{
    char who[16];
    snprintf(who, sizeof who, "s%d", id);
    for (long seq = 0; seq < count; seq++) {
        int rc = mbx_firef(s, "ev", "si", who, (int64_t)seq);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* The dispatcher's ring, mapped once more through /proc/self/fd of the
 * data fd that an exported handle names: to write records that no sender
 * would write. */
struct raw_ring {
    void *map;
    size_t size;
    struct mbx__ring_hdr *h;
    unsigned char *data;
    uint64_t mask;
};

static void
raw_map(struct raw_ring *w, mbx_dispatcher *d)
{
    char handle[MBX_DISPATCHER_HANDLE_LEN], path[64];
    int data_fd;
    REQUIRE_EQ(mbx_dispatcher_export(d, handle), 0);
    REQUIRE_EQ(sscanf(handle, "mbxd:%d,", &data_fd), 1);
    snprintf(path, sizeof path, "/proc/self/fd/%d", data_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    off_t size = lseek(fd, 0, SEEK_END);
    REQUIRE(size > RING_OFFSET + MBX__RING_HDR_SIZE);
    w->map =
        mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    REQUIRE(w->map != MAP_FAILED);
    w->size = (size_t)size;
    w->h = (struct mbx__ring_hdr *)((char *)w->map + RING_OFFSET);
    REQUIRE(w->h->magic == MBX__RING_MAGIC);
    REQUIRE_EQ(w->h->hdr_size, MBX__RING_HDR_SIZE);
    w->data = (unsigned char *)w->h + MBX__RING_HDR_SIZE;
    w->mask = w->h->data_size - 1;
}

/* Waits until `n` threads of receivers are parked waiting for events (the
 * ring's count of them), at most timeout_ms. Returns true if they are. */
static bool
await_parked(struct raw_ring *w, uint32_t n, int timeout_ms)
{
    int64_t until = th_now_ms() + timeout_ms;
    while (atomic_load(&w->h->rd_waiters) < n)
        if (sched_yield(), th_now_ms() > until)
            return false;
    return true;
}

/* ---- 1: mpdispatcher's tests/test_basic.py ------------------------------ */

TEST(mp_handle_next_in_child_proc_with_timeout)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct rec l = {0};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
        CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), 0);
        CREQUIRE(REC_IS(&l, 54));
        child_done();
    }
    CHECK_EQ(fire_int(mbx_dispatcher_sender(d), "cb", 54), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

TEST(mp_handle_next_on_closed)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct rec l = {0};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
        CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), 0);
        CREQUIRE(REC_IS(&l, 54));
        /* The call that consumes the close returns 0, the next ones say
         * closed, whatever they are. */
        CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), 0);
        CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
        CREQUIRE_EQ(mbx_handle_next(r, 0), MBX_ECLOSED);
        CREQUIRE_EQ(mbx_handle_until_closed(r), MBX_ECLOSED);
        CREQUIRE_EQ(mbx_handle_until_blocking(r), MBX_ECLOSED);
        CREQUIRE_EQ(mbx_receiver_fd(r), MBX_ECLOSED);
        CREQUIRE(REC_IS(&l, 54));
        child_done();
    }
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    /* This process closed the sender: later fires and closes say so. */
    CHECK_EQ(mbx_sender_close(s), MBX_ECLOSED);
    CHECK_EQ(fire_int(s, "cb", 55), MBX_ECLOSED);
    CHECK_EQ(mbx_fire(s, "cb", NULL), MBX_ECLOSED);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

TEST(mp_handle_next_in_parent_proc_with_timeout)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct rec l = {0};
    REQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "cb", 54), 0);
        child_done();
    }
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    CHECK(REC_IS(&l, 54));
    /* The child held the only sender: once it is gone, closed. */
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
    CHECK(th_now_ms() - t0 < CLOSED_BOUND_MS);
    mbx_dispatcher_free(d);
}

TEST(mp_handle_until_closed_in_child_proc)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct rec l = {0};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        CREQUIRE(REC_IS(&l, 43, 54, 87));
        mbx_receiver_stats st = stats_of(r);
        CREQUIRE_EQ(st.handled, 3);
        CREQUIRE_EQ(st.ignored, 1);
        CREQUIRE_EQ(st.dropped, 0);
        child_done();
    }
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 43), 0);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(fire_int(s, "nobody_listens", 1), 0);
    CHECK_EQ(fire_int(s, "cb", 87), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* mpdispatcher's receive_events_until_87: the receiver closes itself. */
struct until_87 {
    struct rec l;
    mbx_receiver *r;
    int close_rc;
};

static int
on_until_87(const char *event, const mbx_args *a, void *ctx)
{
    struct until_87 *u = ctx;
    on_int(event, a, &u->l);
    if (u->l.n > 0 && u->l.v[u->l.n - 1] == 87)
        u->close_rc = mbx_receiver_close(u->r);
    return 0;
}

TEST(mp_handle_until_closed_in_child_proc_closing_itself)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct until_87 u = {.r = r, .close_rc = 1};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_until_87, &u), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        CREQUIRE_EQ(u.close_rc, 0);
        CREQUIRE(REC_IS(&u.l, 43, 54, 87));
        CREQUIRE_EQ(mbx_handle_next(r, 0), MBX_ECLOSED);
        child_done();
    }
    /* The sender never closes, and lives until the child is done. */
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 43), 0);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(fire_int(s, "cb", 87), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* Python sleeps so that 43, 54 and 87 are there before the child's
 * handle_until_blocking and 100 comes after; here pipes say when. */
TEST(mp_handle_until_blocking)
{
    mbx_dispatcher *d = new_dispatcher(0);
    struct chan go, done;
    chan_open(&go);
    chan_open(&done);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct rec l = {0};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
        CREQUIRE_EQ(chan_get(&go, HANDLE_MS), 'g');
        CREQUIRE_EQ(mbx_handle_until_blocking(r), 3);
        CREQUIRE(REC_IS(&l, 43, 54, 87));
        CREQUIRE_EQ(mbx_handle_next(r, 0), MBX_EAGAIN);
        CREQUIRE_EQ(chan_put(&done, 'd'), 0);
        /* 100 and the close came after that call. */
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        CREQUIRE(REC_IS(&l, 43, 54, 87, 100));
        child_done();
    }
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 43), 0);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(fire_int(s, "cb", 87), 0);
    CHECK_EQ(chan_put(&go, 'g'), 0);
    CHECK_EQ(chan_get(&done, WAIT_MS), 'd');
    CHECK_EQ(fire_int(s, "cb", 100), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    chan_close(&go);
    chan_close(&done);
    mbx_dispatcher_free(d);
}

/* The receiver side of mpdispatcher's coro_handle_until_closed test, with
 * epoll as the event loop: the dispatcher's fd beside a timerfd task that
 * appends i * i for 3 ticks. Ends once the close was handled and the task
 * is done; a loop that sees nothing for HANDLE_MS fails. Runs in a child;
 * `ready`, if not NULL, is told once the fd is in the loop. */
static _Noreturn void
event_loop_child(mbx_dispatcher *d, struct chan *ready)
{
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct rec l = {0}, l2 = {0};
    CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    int rfd = mbx_receiver_fd(r);
    CREQUIRE(rfd >= 0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    CREQUIRE(tfd >= 0 && ep >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = rfd};
    CREQUIRE_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, rfd, &ev), 0);
    ev.data.fd = tfd;
    CREQUIRE_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev), 0);
    if (ready)
        CREQUIRE_EQ(chan_put(ready, 'r'), 0);
    /* The task: append, then "sleep" a few ms, three times. */
    struct itimerspec tick = {.it_value = {.tv_nsec = 5000000}};
    int i = 0;
    l2.v[l2.n++] = (int64_t)i * i;
    CREQUIRE_EQ(timerfd_settime(tfd, 0, &tick, NULL), 0);
    bool closed = false, task_done = false;
    while (!closed || !task_done) {
        struct epoll_event got[2];
        int n = epoll_wait(ep, got, 2, HANDLE_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0)
            fprintf(stderr,
                    "  child: nothing for %d ms: closed %d, task done %d, "
                    "%d events handled\n",
                    HANDLE_MS, closed, task_done, l.n);
        CREQUIRE(n > 0);
        for (int k = 0; k < n; k++) {
            if (got[k].data.fd == tfd) {
                uint64_t expirations;
                CREQUIRE(read(tfd, &expirations, sizeof expirations) == 8);
                if (++i < 3) {
                    l2.v[l2.n++] = (int64_t)i * i;
                    CREQUIRE_EQ(timerfd_settime(tfd, 0, &tick, NULL), 0);
                } else {
                    task_done = true;
                }
            } else if (!closed) {
                int rc = mbx_handle_until_blocking(r);
                CREQUIRE(rc >= 0);
                /* Once the close was handled the fd says closed. */
                closed = mbx_receiver_fd(r) == MBX_ECLOSED;
                if (closed)
                    CREQUIRE_EQ(epoll_ctl(ep, EPOLL_CTL_DEL, rfd, NULL), 0);
            }
        }
    }
    CREQUIRE(REC_IS(&l, 43, 54, 87));
    CREQUIRE(REC_IS(&l2, 0, 1, 4));
    child_done();
}

/* As the Python test: the parent fires and closes at once, without
 * waiting for the child to be ready. */
TEST(mp_event_loop_in_child_proc)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0)
        event_loop_child(d, NULL);
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 43), 0);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(fire_int(s, "cb", 87), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* The same with the fd in the child's loop before anything is fired. */
TEST(mp_event_loop_in_child_proc_ready_first)
{
    mbx_dispatcher *d = new_dispatcher(0);
    struct chan ready;
    chan_open(&ready);
    pid_t pid = fork_child();
    if (pid == 0)
        event_loop_child(d, &ready);
    CHECK_EQ(chan_get(&ready, WAIT_MS), 'r');
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 43), 0);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(fire_int(s, "cb", 87), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    chan_close(&ready);
    mbx_dispatcher_free(d);
}

/* mpdispatcher's threaded_handle_until_closed test: a thread handles until
 * closed while the main thread (the "event loop") waits for "stop_coro",
 * then does its own work. */
struct threaded {
    mbx_receiver *r;
    pthread_mutex_t lock;
    struct rec l;
    int stop_fd; /* an eventfd: "stop_coro" was handled */
    int rc;
};

static int
on_threaded_cb(const char *event, const mbx_args *a, void *ctx)
{
    struct threaded *t = ctx;
    pthread_mutex_lock(&t->lock);
    on_int(event, a, &t->l);
    pthread_mutex_unlock(&t->lock);
    return 0;
}

static int
on_stop_coro(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    (void)a;
    struct threaded *t = ctx;
    uint64_t one = 1;
    return write(t->stop_fd, &one, sizeof one) == 8 ? 0 : -1;
}

static void *
handle_until_closed_thread(void *arg)
{
    struct threaded *t = arg;
    t->rc = mbx_handle_until_closed(t->r);
    return NULL;
}

TEST(mp_threaded_handle_until_closed_in_child_proc)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        struct threaded t = {.r = mbx_dispatcher_receiver(d), .rc = 1};
        pthread_mutex_init(&t.lock, NULL);
        t.stop_fd = eventfd(0, EFD_CLOEXEC);
        CREQUIRE(t.stop_fd >= 0);
        CREQUIRE_EQ(mbx_connect(t.r, "cb", on_threaded_cb, &t), 0);
        CREQUIRE_EQ(mbx_connect(t.r, "stop_coro", on_stop_coro, &t), 0);
        pthread_t th;
        CREQUIRE_EQ(pthread_create(&th, NULL, handle_until_closed_thread, &t),
                    0);
        CREQUIRE(readable(t.stop_fd, HANDLE_MS));
        struct rec l2 = {0};
        for (int i = 0; i < 3; i++)
            l2.v[l2.n++] = (int64_t)i * i;
        CREQUIRE_EQ(pthread_join(th, NULL), 0);
        CREQUIRE_EQ(t.rc, 0);
        CREQUIRE(REC_IS(&t.l, 43, 54, 87));
        CREQUIRE(REC_IS(&l2, 0, 1, 4));
        child_done();
    }
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "cb", 43), 0);
    CHECK_EQ(fire_int(s, "cb", 54), 0);
    CHECK_EQ(fire_int(s, "cb", 87), 0);
    CHECK_EQ(mbx_fire(s, "stop_coro", NULL), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* ---- 2: handlers and directions ----------------------------------------- */

/* Handlers that append a letter to a shared log and return `ret`. */
struct letters {
    char s[64];
    int n;
};

struct tag {
    struct letters *log;
    char c;
    int ret;
};

static int
on_tag(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    (void)a;
    struct tag *t = ctx;
    if (t->log->n < (int)sizeof t->log->s - 1)
        t->log->s[t->log->n++] = t->c;
    return t->ret;
}

/* Appends 'K'; the first time, connects `add` and disconnects `drop` on
 * "e" (both take effect from the next event). */
struct rewire {
    struct tag self;
    mbx_receiver *r;
    struct tag *add, *drop;
    bool done;
    int connect_rc, disconnect_rc;
};

static int
on_rewire(const char *event, const mbx_args *a, void *ctx)
{
    struct rewire *w = ctx;
    on_tag(event, a, &w->self);
    if (!w->done) {
        w->done = true;
        w->connect_rc = mbx_connect(w->r, "e", on_tag, w->add);
        w->disconnect_rc = mbx_disconnect(w->r, "e", on_tag, w->drop);
    }
    return 0;
}

/* Handles one event and returns the letters it logged (cleared after). */
static int
handle_logged(mbx_receiver *r, struct letters *log, char *out)
{
    log->n = 0;
    int rc = mbx_handle_next(r, HANDLE_MS);
    log->s[log->n] = '\0';
    strcpy(out, log->s);
    return rc;
}

static void
check_connect_arguments(mbx_receiver *r, struct tag *t)
{
    char name[MBX_KIND_MAX + 2];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0'; /* 256 bytes */
    CHECK_EQ(mbx_connect(r, name, on_tag, t), MBX_EINVAL);
    CHECK_EQ(mbx_connect(r, "", on_tag, t), MBX_EINVAL);
    CHECK_EQ(mbx_connect(r, NULL, on_tag, t), MBX_EINVAL);
    CHECK_EQ(mbx_connect(r, "e", NULL, t), MBX_EINVAL);
    CHECK_EQ(mbx_connect(NULL, "e", on_tag, t), MBX_EINVAL);
    name[MBX_KIND_MAX] = '\0'; /* 255 bytes: fine */
    CHECK_EQ(mbx_connect(r, name, on_tag, t), 0);
    CHECK_EQ(mbx_disconnect(r, name, on_tag, t), 0);
    CHECK_EQ(mbx_disconnect(r, name, on_tag, t), MBX_ENOENT);
}

TEST(handlers_order_disconnect_stop)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_sender *s = mbx_dispatcher_sender(d);
        for (int i = 0; i < 6; i++)
            CREQUIRE_EQ(mbx_fire(s, "e", NULL), 0);
        CREQUIRE_EQ(mbx_fire(s, "nobody", NULL), 0);
        CREQUIRE_EQ(mbx_sender_close(s), 0);
        child_done();
    }
    struct letters log = {0};
    struct tag A = {&log, 'A', 0}, B = {&log, 'B', 0}, X = {&log, 'X', 0};
    struct tag S = {&log, 'S', 7}, D = {&log, 'D', 0}, N = {&log, 'N', -1234};
    struct rewire K = {{&log, 'K', 0}, r, &D, &B, false, 1, 1};
    char got[64];
    check_connect_arguments(r, &A);
    CHECK_EQ(mbx_connect(r, "e", on_tag, &A), 0);
    CHECK_EQ(mbx_connect(r, "e", on_tag, &B), 0);
    CHECK_EQ(mbx_connect(r, "e", on_tag, &A), 0); /* the same pair again */
    CHECK_EQ(mbx_connect(r, "other", on_tag, &X), 0);
    CHECK_EQ(handle_logged(r, &log, got), 0);
    CHECK(strcmp(got, "ABA") == 0);
    /* Disconnect removes the first connection of the pair. */
    CHECK_EQ(mbx_disconnect(r, "e", on_tag, &A), 0);
    CHECK_EQ(handle_logged(r, &log, got), 0);
    CHECK(strcmp(got, "BA") == 0);
    CHECK_EQ(mbx_disconnect(r, "e", on_tag, &A), 0);
    CHECK_EQ(mbx_disconnect(r, "e", on_tag, &A), MBX_ENOENT);
    CHECK_EQ(mbx_disconnect(r, "e", on_tag, &X), MBX_ENOENT);
    CHECK_EQ(mbx_disconnect(r, "other", on_tag, &B), MBX_ENOENT);
    /* A non-zero value stops the remaining handlers and is returned. */
    CHECK_EQ(mbx_connect(r, "e", on_tag, &S), 0);
    CHECK_EQ(mbx_connect(r, "e", on_tag, &A), 0);
    CHECK_EQ(handle_logged(r, &log, got), 7);
    CHECK(strcmp(got, "BS") == 0);
    /* Connecting and disconnecting in a handler: from the next event. */
    CHECK_EQ(mbx_disconnect(r, "e", on_tag, &S), 0);
    CHECK_EQ(mbx_disconnect(r, "e", on_tag, &B), 0);
    CHECK_EQ(mbx_connect(r, "e", on_rewire, &K), 0);
    CHECK_EQ(mbx_connect(r, "e", on_tag, &B), 0);
    CHECK_EQ(handle_logged(r, &log, got), 0);
    CHECK(strcmp(got, "AKB") == 0);
    CHECK_EQ(K.connect_rc, 0);
    CHECK_EQ(K.disconnect_rc, 0);
    CHECK_EQ(handle_logged(r, &log, got), 0);
    CHECK(strcmp(got, "AKD") == 0);
    /* Negative values come back as they are too. */
    CHECK_EQ(mbx_connect(r, "e", on_tag, &N), 0);
    CHECK_EQ(handle_logged(r, &log, got), -1234);
    CHECK(strcmp(got, "AKDN") == 0);
    /* No handler: ignored and counted. */
    CHECK_EQ(handle_logged(r, &log, got), 0);
    CHECK(strcmp(got, "") == 0);
    mbx_receiver_stats st = stats_of(r);
    CHECK_EQ(st.handled, 6);
    CHECK_EQ(st.ignored, 1);
    CHECK_EQ(st.dropped, 0);
    CHECK_EQ(handle_logged(r, &log, got), 0); /* the close */
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* A handler's non-zero value ends each of the three handling calls. */
TEST(handler_value_ends_every_loop)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_sender *s = mbx_dispatcher_sender(d);
        for (int i = 0; i < 3; i++)
            CREQUIRE_EQ(fire_int(s, "stop", i), 0);
        CREQUIRE_EQ(mbx_sender_close(s), 0);
        child_done();
    }
    CHECK_EQ(wait_child(pid, WAIT_MS), 0); /* everything is in the ring */
    struct letters log = {0};
    struct tag S = {&log, 'S', 5};
    struct rec l = {0};
    CHECK_EQ(mbx_connect(r, "stop", on_int, &l), 0);
    CHECK_EQ(mbx_connect(r, "stop", on_tag, &S), 0);
    CHECK_EQ(mbx_handle_until_blocking(r), 5);
    CHECK_EQ(mbx_handle_until_closed(r), 5);
    CHECK_EQ(mbx_handle_next(r, 0), 5);
    CHECK(REC_IS(&l, 0, 1, 2));
    CHECK_EQ(mbx_handle_until_closed(r), 0); /* the close */
    CHECK_EQ(mbx_handle_next(r, 0), MBX_ECLOSED);
    mbx_dispatcher_free(d);
}

/* Timeouts consume nothing; NULL handles are refused. */
TEST(timeouts_and_null_arguments)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct chan cmd;
    chan_open(&cmd);
    pid_t pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(chan_get(&cmd, WAIT_MS), 'f');
        CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "cb", 5), 0);
        CREQUIRE_EQ(chan_get(&cmd, WAIT_MS), 'q');
        child_done();
    }
    struct rec l = {0};
    CHECK_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    CHECK_EQ(mbx_handle_next(r, 0), MBX_EAGAIN);
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_handle_next(r, 50), MBX_ETIMEDOUT);
    int64_t took = th_now_ms() - t0;
    CHECK(took >= 49 && took < HANDLE_MS);
    CHECK_EQ(mbx_handle_until_blocking(r), 0);
    CHECK_EQ(chan_put(&cmd, 'f'), 0);
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), 0);
    CHECK(REC_IS(&l, 5));
    CHECK_EQ(mbx_handle_next(r, 20), MBX_ETIMEDOUT);
    CHECK_EQ(chan_put(&cmd, 'q'), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
    /* NULL everywhere. */
    mbx_receiver_stats st;
    CHECK(mbx_dispatcher_sender(NULL) == NULL);
    CHECK(mbx_dispatcher_receiver(NULL) == NULL);
    CHECK_EQ(mbx_handle_next(NULL, 0), MBX_EINVAL);
    CHECK_EQ(mbx_handle_until_blocking(NULL), MBX_EINVAL);
    CHECK_EQ(mbx_handle_until_closed(NULL), MBX_EINVAL);
    CHECK_EQ(mbx_receiver_fd(NULL), MBX_EINVAL);
    CHECK_EQ(mbx_receiver_close(NULL), MBX_EINVAL);
    CHECK_EQ(mbx_sender_close(NULL), MBX_EINVAL);
    CHECK_EQ(mbx_receiver_stat(NULL, &st), MBX_EINVAL);
    CHECK_EQ(mbx_receiver_stat(r, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_disconnect(NULL, "cb", on_int, &l), MBX_EINVAL);
    CHECK_EQ(mbx_disconnect(r, NULL, on_int, &l), MBX_EINVAL);
    CHECK_EQ(mbx_disconnect(r, "cb", NULL, &l), MBX_EINVAL);
    chan_close(&cmd);
    mbx_dispatcher_free(d);
}

/* A handler fires on its own dispatcher: the receiving process becomes a
 * sender too, and its events are handled after those already queued. */
struct refire {
    mbx_sender *s;
    struct rec l;
    int fire_rc;
};

static int
on_refire(const char *event, const mbx_args *a, void *ctx)
{
    struct refire *f = ctx;
    on_int(event, a, &f->l);
    if (strcmp(event, "a") == 0) {
        int64_t v = f->l.v[f->l.n - 1];
        int rc = fire_int(f->s, "b", v + 100);
        if (rc != 0)
            f->fire_rc = rc;
    }
    return 0;
}

TEST(handler_fires_on_own_dispatcher)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    pid_t pid = fork_child();
    if (pid == 0) {
        for (int i = 1; i <= 3; i++)
            CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "a", i), 0);
        child_done(); /* exits without closing */
    }
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    struct refire f = {.s = mbx_dispatcher_sender(d)};
    CHECK_EQ(mbx_connect(r, "a", on_refire, &f), 0);
    CHECK_EQ(mbx_connect(r, "b", on_refire, &f), 0);
    /* "And whatever else is there": the events fired by the handlers. */
    CHECK_EQ(mbx_handle_until_blocking(r), 6);
    CHECK_EQ(f.fire_rc, 0);
    CHECK(REC_IS(&f.l, 1, 2, 3, 101, 102, 103));
    /* This process fired, so it holds a sender: not closed. */
    CHECK_EQ(mbx_handle_next(r, 0), MBX_EAGAIN);
    CHECK_EQ(mbx_receiver_close(r), 0);
    CHECK_EQ(mbx_handle_next(r, 0), 0);
    CHECK_EQ(mbx_handle_next(r, 0), MBX_ECLOSED);
    mbx_dispatcher_free(d);
}

/* Parent -> child "ping" on one dispatcher, child -> parent "pong" on
 * another, fired by the child's handler. */
struct ponger {
    mbx_sender *back;
    int64_t next;
    int errors;
};

static int
on_ping(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct ponger *p = ctx;
    int64_t v;
    if (mbx_args_get_int(a, 0, &v) != 0 || v != p->next++)
        p->errors++;
    return fire_int(p->back, "pong", v);
}

TEST(ping_pong_both_directions)
{
    long n = sized(5000, 1000);
    mbx_dispatcher *down = new_dispatcher(0), *up = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        struct ponger p = {.back = mbx_dispatcher_sender(up)};
        mbx_receiver *r = mbx_dispatcher_receiver(down);
        CREQUIRE_EQ(mbx_connect(r, "ping", on_ping, &p), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        CREQUIRE_EQ(p.errors, 0);
        CREQUIRE_EQ(p.next, n);
        CREQUIRE_EQ(mbx_sender_close(p.back), 0);
        child_done();
    }
    mbx_sender *s = mbx_dispatcher_sender(down);
    mbx_receiver *r = mbx_dispatcher_receiver(up);
    struct rec l = {0};
    CHECK_EQ(mbx_connect(r, "pong", on_int, &l), 0);
    long bad = 0;
    for (long i = 0; i < n && bad == 0; i++) {
        l.n = 0;
        if (fire_int(s, "ping", i) != 0 || mbx_handle_next(r, HANDLE_MS) != 0 ||
            l.n != 1 || l.v[0] != i)
            bad = i + 1;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(mbx_handle_until_closed(r), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(down);
    mbx_dispatcher_free(up);
}

/* A stream each way: order kept, nothing lost. */
TEST(stream_child_to_parent_and_back)
{
    long n = sized(100000, 20000);
    mbx_dispatcher *up = new_dispatcher(64 << 10);
    mbx_dispatcher *down = new_dispatcher(64 << 10);
    pid_t pid = fork_child();
    if (pid == 0) {
        struct order o = {0};
        mbx_receiver *r = mbx_dispatcher_receiver(down);
        CREQUIRE_EQ(mbx_connect(r, "ev", on_ordered, &o), 0);
        CREQUIRE_EQ(fire_ordered(mbx_dispatcher_sender(up), 1, n), 0);
        CREQUIRE_EQ(mbx_sender_close(mbx_dispatcher_sender(up)), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        if (o.errors)
            fprintf(stderr, "  child: %s\n", o.first_error);
        CREQUIRE_EQ(o.errors, 0);
        CREQUIRE_EQ(o.total, n);
        CREQUIRE_EQ(o.next[2], n);
        child_done();
    }
    struct order o = {0};
    mbx_receiver *r = mbx_dispatcher_receiver(up);
    CHECK_EQ(mbx_connect(r, "ev", on_ordered, &o), 0);
    /* One way, then the other: both rings are small, and a process blocked
     * on a full ring does not handle. */
    CHECK_EQ(mbx_handle_until_closed(r), 0);
    CHECK_EQ(fire_ordered(mbx_dispatcher_sender(down), 2, n), 0);
    CHECK_EQ(mbx_sender_close(mbx_dispatcher_sender(down)), 0);
    if (o.errors)
        fprintf(stderr, "  %s\n", o.first_error);
    CHECK_EQ(o.errors, 0);
    CHECK_EQ(o.total, n);
    CHECK_EQ(o.next[1], n);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(up);
    mbx_dispatcher_free(down);
}

/* ---- 3: fork+exec -------------------------------------------------------- */

/* The helper program's path: $MBX_DISPATCH_PEER, else the build's
 * MBX_DISPATCH_PEER_PATH, else dispatch_peer beside this test program. */
static void
peer_program(char *path, size_t size)
{
#ifdef MBX_DISPATCH_PEER_PATH
    th_helper_program(path, size, "MBX_DISPATCH_PEER", MBX_DISPATCH_PEER_PATH,
                      "dispatch_peer");
#else
    th_helper_program(path, size, "MBX_DISPATCH_PEER", NULL, "dispatch_peer");
#endif
}

/* Exports d and starts the helper with its handle, by fork+exec. */
static pid_t
exec_peer(mbx_dispatcher *d, const char *mode, long count)
{
    char program[PATH_MAX], handle[MBX_DISPATCHER_HANDLE_LEN], counts[32];
    peer_program(program, sizeof program);
    REQUIRE_EQ(mbx_dispatcher_export(d, handle), 0);
    REQUIRE(strncmp(handle, "mbxd:", 5) == 0);
    REQUIRE(strlen(handle) < MBX_DISPATCHER_HANDLE_LEN);
    snprintf(counts, sizeof counts, "%ld", count);
    pid_t pid = fork_child();
    if (pid == 0) {
        char *argv[] = {(char *)"dispatch_peer", handle, (char *)mode, counts,
                        NULL};
        execv(program, argv);
        fprintf(stderr, "  exec %s: %s\n", program, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* What the helper's events look like on this side. */
struct from_peer {
    long seq, bad_seq, typed;
    int typed_bad; /* da_check's line for the first bad one */
};

static int
on_peer_seq(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct from_peer *p = ctx;
    const char *who;
    size_t len;
    int64_t i;
    if (mbx_args_len(a) != 2 || mbx_args_get_str(a, 0, &who, &len) != 0 ||
        strcmp(who, "peer") != 0 || mbx_args_get_int(a, 1, &i) != 0 ||
        i != p->seq)
        p->bad_seq++;
    p->seq++;
    return 0;
}

static int
on_peer_typed(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct from_peer *p = ctx;
    int rc = da_check(a);
    if (rc != 0 && p->typed_bad == 0)
        p->typed_bad = rc;
    p->typed++;
    return 0;
}

/* The helper fires `count` events and one typed event, closing or not;
 * this process handles them until closed, expecting `want`. */
static void
peer_fires(const char *mode, long count, int want)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct from_peer p = {0};
    REQUIRE_EQ(mbx_connect(r, "seq", on_peer_seq, &p), 0);
    REQUIRE_EQ(mbx_connect(r, "typed", on_peer_typed, &p), 0);
    pid_t pid = exec_peer(d, mode, count);
    CHECK_EQ(mbx_handle_until_closed(r), want);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    CHECK_EQ(p.seq, count);
    CHECK_EQ(p.bad_seq, 0);
    CHECK_EQ(p.typed, 1);
    CHECK_EQ(p.typed_bad, 0); /* a line of dispatch_args.h */
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
    mbx_dispatcher_free(d);
}

TEST(exec_peer_fires)
{
    peer_fires("fire", sized(20000, 5000), 0);
}

TEST(exec_peer_fires_and_exits_without_close)
{
    peer_fires("fire-noclose", sized(20000, 5000), MBX_ECLOSED);
}

TEST(exec_peer_receives)
{
    long count = sized(20000, 5000);
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_sender *s = mbx_dispatcher_sender(d);
    pid_t pid = exec_peer(d, "recv", count);
    long bad = 0;
    for (long i = 0; i < count; i++)
        bad += mbx_firef(s, "seq", "si", "parent", (int64_t)i) != 0;
    CHECK_EQ(bad, 0);
    mbx_args *a = da_build();
    REQUIRE(a != NULL);
    CHECK_EQ(mbx_fire(s, "typed", a), 0);
    mbx_args_free(a);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

TEST(import_rejects_bad_handles)
{
    mbx_dispatcher *d = NULL;
    static const char *const malformed[] = {"",
                                            "mbxd:",
                                            "mbxd:1,2,3,4",
                                            "mbxd:1,2,3,4,5x",
                                            "mbx:1,2,3,4,5",
                                            "mbxd:a,b,c,d,e",
                                            "1,2,3,4,5",
                                            "mbxd:1;2;3;4;5"};
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++)
        CHECK_EQ(mbx_dispatcher_import(&d, malformed[i]), MBX_EINVAL);
    CHECK_EQ(mbx_dispatcher_import(&d, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_dispatcher_import(NULL, "mbxd:3,4,5,6,7"), MBX_EINVAL);
    CHECK_EQ(mbx_dispatcher_import(&d, "mbxd:-1,-1,-1,-1,-1"), MBX_EBADMSG);
    /* Fds that are not open. */
    CHECK_EQ(mbx_dispatcher_import(&d, "mbxd:1000,1001,1002,1003,1004"),
             MBX_EBADMSG);
    /* An ordinary memfd, too small and then large enough but not a
     * dispatcher's. */
    int sizes[] = {100, 1 << 20};
    for (int k = 0; k < 2; k++) {
        int fds[5];
        fds[0] = memfd_create("not-a-dispatcher", MFD_CLOEXEC);
        REQUIRE(fds[0] >= 0);
        REQUIRE_EQ(ftruncate(fds[0], sizes[k]), 0);
        for (int i = 1; i < 5; i++)
            REQUIRE((fds[i] = dup(fds[0])) >= 0);
        char handle[64];
        snprintf(handle, sizeof handle, "mbxd:%d,%d,%d,%d,%d", fds[0], fds[1],
                 fds[2], fds[3], fds[4]);
        CHECK_EQ(mbx_dispatcher_import(&d, handle), MBX_EBADMSG);
        for (int i = 0; i < 5; i++)
            close(fds[i]);
    }
    CHECK(d == NULL);
    CHECK_EQ(mbx_dispatcher_export(NULL, (char[MBX_DISPATCHER_HANDLE_LEN]){0}),
             MBX_EINVAL);
    mbx_dispatcher *real = new_dispatcher(0);
    CHECK_EQ(mbx_dispatcher_export(real, NULL), MBX_EINVAL);
    mbx_dispatcher_free(real);
    mbx_dispatcher_free(NULL);
}

/* A handle whose fds are not a dispatcher's (a stale handle, fds reused
 * for other files) is refused without touching those fds: they are still
 * the caller's, open and with their flags. */
TEST(import_failure_leaves_fds_alone)
{
    int fds[5], p[2];
    fds[0] = memfd_create("not-a-dispatcher", 0);
    REQUIRE(fds[0] >= 0);
    REQUIRE_EQ(ftruncate(fds[0], 1 << 20), 0);
    REQUIRE_EQ(pipe(p), 0);
    fds[1] = p[0];
    fds[2] = p[1];
    fds[3] = dup(fds[0]);
    fds[4] = dup(fds[0]);
    REQUIRE(fds[3] >= 0 && fds[4] >= 0);
    char handle[64];
    snprintf(handle, sizeof handle, "mbxd:%d,%d,%d,%d,%d", fds[0], fds[1],
             fds[2], fds[3], fds[4]);
    mbx_dispatcher *d = NULL;
    CHECK_EQ(mbx_dispatcher_import(&d, handle), MBX_EBADMSG);
    int open_after = 0, cloexec_after = 0;
    for (int i = 0; i < 5; i++) {
        int flags = fcntl(fds[i], F_GETFD);
        open_after += flags >= 0;
        cloexec_after += flags >= 0 && (flags & FD_CLOEXEC);
    }
    CHECK_EQ(open_after, 5);
    CHECK_EQ(cloexec_after, 0);
    /* The pipe still works. */
    CHECK(write(p[1], "x", 1) == 1);
    for (int i = 0; i < 5; i++)
        close(fds[i]);
}

/* ---- 4: args between processes ------------------------------------------ */

/* Checks "typed" events with da_check: count and first failing line. */
struct typed_seen {
    int count;
    int bad_line;
};

static int
on_typed(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct typed_seen *t = ctx;
    int rc = da_check(a);
    if (rc != 0 && t->bad_line == 0)
        t->bad_line = rc;
    t->count++;
    return 0;
}

TEST(args_roundtrip_both_directions)
{
    mbx_dispatcher *down = new_dispatcher(0), *up = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(down);
        struct typed_seen t = {0};
        CREQUIRE_EQ(mbx_connect(r, "typed", on_typed, &t), 0);
        CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), 0);
        if (t.bad_line)
            fprintf(stderr, "  child: mismatch at dispatch_args.h:%d\n",
                    t.bad_line);
        CREQUIRE_EQ(t.count, 1);
        CREQUIRE_EQ(t.bad_line, 0);
        /* Back the other way. */
        mbx_args *a = da_build();
        CREQUIRE(a != NULL);
        CREQUIRE_EQ(mbx_fire(mbx_dispatcher_sender(up), "typed", a), 0);
        mbx_args_free(a);
        CREQUIRE_EQ(mbx_sender_close(mbx_dispatcher_sender(up)), 0);
        child_done();
    }
    mbx_args *a = da_build();
    REQUIRE(a != NULL);
    REQUIRE_EQ(da_check(a), 0); /* the builder and checker agree */
    CHECK_EQ(mbx_fire(mbx_dispatcher_sender(down), "typed", a), 0);
    mbx_args_free(a);
    struct typed_seen t = {0};
    mbx_receiver *r = mbx_dispatcher_receiver(up);
    CHECK_EQ(mbx_connect(r, "typed", on_typed, &t), 0);
    CHECK_EQ(mbx_handle_until_closed(r), 0);
    CHECK_EQ(t.count, 1);
    CHECK_EQ(t.bad_line, 0); /* a line of dispatch_args.h */
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(down);
    mbx_dispatcher_free(up);
}

static const char firef_bytes[] = {'a', '\0', 'b', '\0'};

/* Checks the args of mbx_firef(s, "all", "nbidsy|nbidsy", ...) below.
 * Returns 0 or the failing line. */
static int
check_firef_all(const mbx_args *a)
{
    int b;
    double d;
    const void *p;
    size_t len;
    DA_EXPECT(mbx_args_len(a) == 6 && mbx_args_kw_len(a) == 6);
    DA_EXPECT(mbx_args_type(a, 0) == MBX_T_NIL);
    DA_EXPECT(mbx_args_get_bool(a, 1, &b) == 0 && b == 1);
    DA_EXPECT(da_is_int(a, 2, INT64_MIN));
    DA_EXPECT(mbx_args_get_double(a, 3, &d) == 0 && d == -2.5);
    DA_EXPECT(da_is_str(a, 4, da_utf8, strlen(da_utf8)));
    DA_EXPECT(mbx_args_get_bytes(a, 5, &p, &len) == 0 &&
              len == sizeof firef_bytes && memcmp(p, firef_bytes, len) == 0);
    const char *key;
    DA_EXPECT(mbx_args_kw_key(a, 0, &key) == 0 && strcmp(key, "kn") == 0);
    DA_EXPECT(mbx_args_kw_key(a, 5, &key) == 0 && strcmp(key, "ky") == 0);
    DA_EXPECT(mbx_args_kw_type(a, "kn") == MBX_T_NIL);
    DA_EXPECT(mbx_args_kw_bool(a, "kb", &b) == 0 && b == 0);
    DA_EXPECT(da_kw_is_int(a, "ki", INT64_MAX));
    DA_EXPECT(mbx_args_kw_double(a, "kd", &d) == 0 && d == 1e-300);
    DA_EXPECT(da_kw_is_str(a, "ks", ""));
    DA_EXPECT(mbx_args_kw_bytes(a, "ky", &p, &len) == 0 && len == 0);
    return 0;
}

/* Checks each event by name; counts them. */
struct formats_seen {
    int all, empty, only_kw, bad_line;
};

static int
on_format(const char *event, const mbx_args *a, void *ctx)
{
    struct formats_seen *f = ctx;
    int rc = 0;
    int64_t v;
    if (!a) {
        rc = __LINE__;
    } else if (strcmp(event, "all") == 0) {
        f->all++;
        rc = check_firef_all(a);
    } else if (strcmp(event, "empty") == 0) {
        f->empty++;
        if (mbx_args_len(a) != 0 || mbx_args_kw_len(a) != 0)
            rc = __LINE__;
    } else if (strcmp(event, "only_kw") == 0) {
        f->only_kw++;
        if (mbx_args_len(a) != 0 || mbx_args_kw_len(a) != 1 ||
            mbx_args_kw_int(a, "k", &v) != 0 || v != -1)
            rc = __LINE__;
    }
    if (rc != 0 && f->bad_line == 0)
        f->bad_line = rc;
    return 0;
}

TEST(firef_formats_roundtrip)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct formats_seen f = {0};
        CREQUIRE_EQ(mbx_connect(r, "all", on_format, &f), 0);
        CREQUIRE_EQ(mbx_connect(r, "empty", on_format, &f), 0);
        CREQUIRE_EQ(mbx_connect(r, "only_kw", on_format, &f), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        if (f.bad_line)
            fprintf(stderr, "  child: mismatch at line %d\n", f.bad_line);
        CREQUIRE_EQ(f.bad_line, 0);
        CREQUIRE_EQ(f.all, 1);
        CREQUIRE_EQ(f.empty, 4);
        CREQUIRE_EQ(f.only_kw, 1);
        child_done();
    }
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(mbx_firef(s, "all", "nbidsy|nbidsy", 1, (int64_t)INT64_MIN, -2.5,
                       da_utf8, (const void *)firef_bytes, sizeof firef_bytes,
                       "kn", "kb", 0, "ki", (int64_t)INT64_MAX, "kd", 1e-300,
                       "ks", "", "ky", (const void *)"", (size_t)0),
             0);
    /* Empty args: no format, an empty one, only a bar, and none at all. */
    CHECK_EQ(mbx_firef(s, "empty", ""), 0);
    CHECK_EQ(mbx_firef(s, "empty", "|"), 0);
    CHECK_EQ(mbx_fire(s, "empty", NULL), 0);
    mbx_args *none = mbx_args_new();
    REQUIRE(none != NULL);
    CHECK_EQ(mbx_fire(s, "empty", none), 0);
    mbx_args_free(none);
    CHECK_EQ(mbx_firef(s, "only_kw", "|i", "k", (int64_t)-1), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* Args larger than half the ring: MBX_EMSGSIZE and nothing sent. */
TEST(args_larger_than_half_the_ring)
{
    mbx_dispatcher *d = new_dispatcher(MBX_RING_MIN);
    mbx_sender *s = mbx_dispatcher_sender(d);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    static char big[MBX_RING_MIN];
    memset(big, 'x', sizeof big);
    CHECK_EQ(mbx_firef(s, "big", "y", (const void *)big,
                       (size_t)MBX_RING_MIN / 2 + 1),
             MBX_EMSGSIZE);
    CHECK_EQ(mbx_firef(s, "big", "y", (const void *)big, sizeof big),
             MBX_EMSGSIZE);
    CHECK_EQ(mbx_firef(s, "big", "y", (const void *)big,
                       (size_t)MBX_RING_MIN / 2 - 100),
             0);
    struct rec l = {0};
    CHECK_EQ(mbx_connect(r, "big", on_int, &l), 0);
    CHECK_EQ(mbx_handle_next(r, 0), 0);
    CHECK_EQ(l.n, 1);
    CHECK_EQ(mbx_handle_next(r, 0), MBX_EAGAIN);
    /* Options: past the largest ring, and the default. */
    mbx_dispatcher *x = NULL;
    mbx_dispatcher_opts o = {.ring_size = (size_t)MBX_RING_MAX + 1};
    CHECK_EQ(mbx_dispatcher_new(&x, &o), MBX_EINVAL);
    CHECK(x == NULL);
    CHECK_EQ(mbx_dispatcher_new(NULL, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_dispatcher_new(&x, NULL), 0);
    mbx_dispatcher_free(x);
    mbx_dispatcher_free(d);
}

/* ---- 5: fan-in ------------------------------------------------------------
 */

/* Forks `n` senders of `per` ordered events each; waits for them; closes
 * the sender if they all succeeded. Runs in a child (the manager), so that
 * the receiver is free to handle. Exits 0, or 1 if a sender failed. */
static _Noreturn void
manage_senders(mbx_dispatcher *d, int n, long per)
{
    pid_t pid[MAX_SENDERS];
    for (int i = 0; i < n; i++) {
        pid[i] = fork();
        CREQUIRE(pid[i] >= 0);
        if (pid[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int rc = fire_ordered(mbx_dispatcher_sender(d), i, per);
            if (rc != 0)
                fprintf(stderr, "  sender %d: %s\n", i, mbx_strerror_name(rc));
            _exit(rc == 0 ? 0 : 1);
        }
    }
    int failed = 0;
    for (int i = 0; i < n; i++)
        failed += wait_child(pid[i], WAIT_MS * 4) != 0;
    CREQUIRE_EQ(failed, 0);
    CREQUIRE_EQ(mbx_sender_close(mbx_dispatcher_sender(d)), 0);
    child_done();
}

static void
fan_in(int senders, long per, size_t ring_size)
{
    mbx_dispatcher *d = new_dispatcher(ring_size);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct order o = {0};
    REQUIRE_EQ(mbx_connect(r, "ev", on_ordered, &o), 0);
    int64_t t0 = th_now_ms();
    pid_t manager = fork_child();
    if (manager == 0) {
        alarm(CHILD_ALARM_S * 4);
        manage_senders(d, senders, per);
    }
    CHECK_EQ(mbx_handle_until_closed(r), 0);
    int64_t took = th_now_ms() - t0;
    CHECK_EQ(wait_child(manager, WAIT_MS), 0);
    if (o.errors)
        fprintf(stderr, "  %ld order errors, first: %s\n", o.errors,
                o.first_error);
    CHECK_EQ(o.errors, 0);
    CHECK_EQ(o.total, senders * per);
    for (int i = 0; i < senders; i++)
        CHECK_EQ(o.next[i], per);
    mbx_receiver_stats st = stats_of(r);
    CHECK_EQ(st.handled, senders * per);
    CHECK_EQ(st.ignored, 0);
    CHECK_EQ(st.dropped, 0);
    printf("  %d x %ld events in %lld ms (%.2f M/s)\n", senders, per,
           (long long)took,
           took ? (double)senders * (double)per / (double)took / 1000.0 : 0.0);
    mbx_dispatcher_free(d);
}

TEST(fan_in_4_senders_1m_each)
{
    fan_in(4, sized(1000000, 250000), 0);
}

TEST(fan_in_4_senders_small_ring)
{
    fan_in(4, sized(100000, 20000), MBX_RING_MIN);
}

/* ---- 6: senders that die or leave without closing ----------------------- */

#define KILL_SENDERS 3

struct kill_shared {
    _Atomic long fired[KILL_SENDERS]; /* fires that returned 0 */
};

/* Fires ordered events until killed; publishes how many fires returned. */
static _Noreturn void
fire_until_killed(mbx_sender *s, int id, _Atomic long *fired)
{
    char who[16];
    snprintf(who, sizeof who, "s%d", id);
    for (long seq = 0;; seq++) {
        int rc = mbx_firef(s, "ev", "si", who, (int64_t)seq);
        if (rc != 0) {
            fprintf(stderr, "  sender %d: %s\n", id, mbx_strerror_name(rc));
            _exit(3);
        }
        atomic_store(fired, seq + 1);
    }
}

/* Kills each pid after its delay (ns), in order. */
static _Noreturn void
killer(const pid_t *pid, const int64_t *delay, int n)
{
    for (int i = 0; i < n; i++) {
        spin_ns(delay[i]);
        kill(pid[i], SIGKILL);
    }
    child_done();
}

/* One round: n senders fire until a killer process kills them at random
 * instants; the receiver handles meanwhile (or, when `drain_after`, only
 * once they are dead) and must end with MBX_ECLOSED having handled every
 * event whose fire returned, and at most one more per sender. Returns
 * false after a failure. */
static bool
kill_round(struct rng *g, struct kill_shared *sh, long round)
{
    static const size_t rings[] = {MBX_RING_MIN, 64 << 10, 0};
    int n = 1 + (int)rng_below(g, KILL_SENDERS);
    bool drain_after = rng_below(g, 3) == 0;
    mbx_dispatcher *d = new_dispatcher(rings[rng_below(g, 3)]);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct order o = {0};
    REQUIRE_EQ(mbx_connect(r, "ev", on_ordered, &o), 0);
    pid_t pid[KILL_SENDERS];
    int64_t delay[KILL_SENDERS];
    for (int i = 0; i < n; i++) {
        atomic_store(&sh->fired[i], 0);
        delay[i] = (int64_t)rng_below(g, 3000000);
        pid[i] = fork_child();
        if (pid[i] == 0)
            fire_until_killed(mbx_dispatcher_sender(d), i, &sh->fired[i]);
    }
    pid_t k = fork_child();
    if (k == 0)
        killer(pid, delay, n);
    if (drain_after)
        CHECK_EQ(wait_child(k, WAIT_MS), 0);
    int64_t t0 = th_now_ms();
    int rc = mbx_handle_until_closed(r);
    int64_t took = th_now_ms() - t0;
    CHECK_EQ(rc, MBX_ECLOSED);
    CHECK_EQ(mbx_handle_next(r, 0), MBX_ECLOSED);
    if (round % 8 == 0)
        CHECK_EQ(mbx_handle_next(r, 100), MBX_ECLOSED);
    if (!drain_after)
        CHECK_EQ(wait_child(k, WAIT_MS), 0);
    bool ok = rc == MBX_ECLOSED && o.errors == 0;
    for (int i = 0; i < n; i++) {
        int st = wait_child(pid[i], WAIT_MS);
        long fired = atomic_load(&sh->fired[i]);
        /* The fire in progress when it died may have been published. */
        if (st != KILLED_BY(SIGKILL) || o.next[i] < fired ||
            o.next[i] > fired + 1) {
            fprintf(stderr,
                    "  round %ld sender %d: status %d, fired %ld, handled "
                    "%" PRId64 "\n",
                    round, i, st, fired, o.next[i]);
            ok = false;
        }
    }
    if (o.errors)
        fprintf(stderr, "  round %ld: %s\n", round, o.first_error);
    /* The kills come within 9 ms of the start: the rest is noticing. */
    if (took > CLOSED_BOUND_MS + 2000) {
        fprintf(stderr, "  round %ld: handle_until_closed took %lld ms\n",
                round, (long long)took);
        ok = false;
    }
    mbx_dispatcher_free(d);
    return ok;
}

TEST(senders_killed_at_random_instants)
{
    struct rng g = rng_seeded("senders_killed_at_random_instants");
    struct kill_shared *sh = shared_alloc(sizeof *sh);
    long rounds = rounds_of(60, 50, 50);
    int64_t t0 = th_now_ms();
    long failed = 0;
    for (long i = 0; i < rounds && failed < 3; i++)
        failed += !kill_round(&g, sh, i);
    CHECK_EQ(failed, 0);
    printf("  %ld rounds in %lld ms\n", rounds, (long long)(th_now_ms() - t0));
    munmap(sh, sizeof *sh);
}

/* A sender that has fired waits to be killed; the receiver's
 * handle_next(-1) then says closed, soon. */
TEST(handle_next_forever_sees_sender_killed)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct rec l = {0};
    REQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    pid_t pid = fork_child();
    if (pid == 0) {
        CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "cb", 1), 0);
        for (;;)
            pause();
    }
    CHECK_EQ(mbx_handle_next(r, -1), 0);
    CHECK(REC_IS(&l, 1));
    kill(pid, SIGKILL);
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_handle_next(r, -1), MBX_ECLOSED);
    CHECK(th_now_ms() - t0 < CLOSED_BOUND_MS);
    CHECK_EQ(wait_child(pid, WAIT_MS), KILLED_BY(SIGKILL));
    mbx_dispatcher_free(d);
}

/* Every process holding the sender fires and exits normally, without
 * closing: the receiver handles everything, then MBX_ECLOSED. */
TEST(senders_exit_without_close)
{
    long per = sized(10000, 2000);
    mbx_dispatcher *d = new_dispatcher(64 << 10);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct order o = {0};
    REQUIRE_EQ(mbx_connect(r, "ev", on_ordered, &o), 0);
    pid_t pid[3];
    for (int i = 0; i < 3; i++) {
        pid[i] = fork_child();
        if (pid[i] == 0) {
            CREQUIRE_EQ(fire_ordered(mbx_dispatcher_sender(d), i, per), 0);
            fflush(NULL);
            exit(0); /* normally: atexit handlers, no close, no free */
        }
    }
    CHECK_EQ(mbx_handle_until_closed(r), MBX_ECLOSED);
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
    CHECK_EQ(mbx_handle_until_blocking(r), MBX_ECLOSED);
    CHECK_EQ(o.errors, 0);
    CHECK_EQ(o.total, 3 * per);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(o.next[i], per);
        CHECK_EQ(wait_child(pid[i], WAIT_MS), 0);
    }
    mbx_dispatcher_free(d);
}

/* The senders free their dispatcher without closing and stay alive: they
 * count as gone. */
TEST(senders_free_without_close)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct order o = {0};
    REQUIRE_EQ(mbx_connect(r, "ev", on_ordered, &o), 0);
    struct chan release;
    chan_open(&release);
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork_child();
        if (pid[i] == 0) {
            CREQUIRE_EQ(fire_ordered(mbx_dispatcher_sender(d), i, 100), 0);
            mbx_dispatcher_free(d);
            CREQUIRE_EQ(chan_get(&release, WAIT_MS), 'x');
            child_done();
        }
    }
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_handle_until_closed(r), MBX_ECLOSED);
    CHECK(th_now_ms() - t0 < HANDLE_MS);
    CHECK_EQ(o.errors, 0);
    CHECK_EQ(o.total, 200);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(chan_put(&release, 'x'), 0);
    for (int i = 0; i < 2; i++)
        CHECK_EQ(wait_child(pid[i], WAIT_MS), 0);
    chan_close(&release);
    mbx_dispatcher_free(d);
}

/* The only receiver process is gone: a sender blocked on a full ring gets
 * MBX_ECLOSED instead of waiting forever. */
TEST(sender_into_full_ring_without_receivers)
{
    mbx_dispatcher *d = new_dispatcher(MBX_RING_MIN);
    mbx_sender *s = mbx_dispatcher_sender(d);
    pid_t pid = fork_child();
    if (pid == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct rec l = {0};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
        CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), 0);
        CREQUIRE(REC_IS(&l, 0));
        child_done();
    }
    CHECK_EQ(fire_int(s, "cb", 0), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    int64_t t0 = th_now_ms();
    int rc = 0;
    long fired = 0;
    while (rc == 0 && fired < 100000 && th_now_ms() - t0 < HANDLE_MS) {
        rc = fire_int(s, "cb", ++fired);
    }
    CHECK_EQ(rc, MBX_ECLOSED);
    CHECK(fired < MBX_RING_MIN / 8); /* no more than the ring holds */
    mbx_dispatcher_free(d);
}

/* True when a record of `size` bytes would not fit in the ring now. */
static bool
ring_full_for(struct raw_ring *w, uint64_t size)
{
    uint64_t tail = atomic_load(&w->h->tail);
    uint64_t used = tail - atomic_load(&w->h->head);
    uint64_t to_end = w->mask + 1 - (tail & w->mask);
    return used + (size > to_end ? to_end : 0) + size > w->mask + 1;
}

/* A slow handler: by the time it calls mbx_receiver_close, a busy sender
 * has filled the ring again. */
struct slow_closer {
    struct raw_ring *w;
    mbx_receiver *r;
    int calls;
    int close_rc;
};

static int
on_slow_close(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    (void)a;
    struct slow_closer *c = ctx;
    if (c->calls++ > 0)
        return 0;
    int64_t until = th_now_ms() + HANDLE_MS;
    while (!ring_full_for(c->w, sizeof(struct mbx__rec)) && th_now_ms() < until)
        sched_yield();
    CREQUIRE(ring_full_for(c->w, sizeof(struct mbx__rec)));
    c->close_rc = mbx_receiver_close(c->r);
    return 0;
}

/* mbx_receiver_close from a handler (as the header allows), while the ring
 * is full and this process is the only receiver: it must not wait forever
 * for room that only its own caller could make. */
TEST(receiver_close_from_handler_with_full_ring)
{
    mbx_dispatcher *d = new_dispatcher(MBX_RING_MIN);
    struct raw_ring w;
    raw_map(&w, d);
    pid_t sender = fork_child();
    if (sender == 0) {
        mbx_sender *s = mbx_dispatcher_sender(d);
        int rc = 0;
        for (int64_t i = 0; rc == 0; i++)
            rc = fire_int(s, "cb", i);
        _exit(rc == MBX_ECLOSED ? 0 : 3); /* the receiver is gone */
    }
    pid_t receiver = fork_child();
    if (receiver == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct slow_closer c = {&w, r, 0, 1};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_slow_close, &c), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        CREQUIRE_EQ(c.close_rc, 0);
        CREQUIRE(c.calls > 1);
        child_done();
    }
    mbx_dispatcher_free(d); /* only the children hold the ends */
    int st = wait_child(receiver, 5000);
    if (st == TIMED_OUT)
        fprintf(stderr, "  the receiver hung in mbx_receiver_close\n");
    CHECK_EQ(st, 0);
    /* A sender facing a full ring and no receiver gives up. */
    CHECK_EQ(wait_child(sender, WAIT_MS), 0);
    munmap(w.map, w.size);
}

/* ---- 6b: who holds an end after fork, export and close ------------------ */

/* Forks a child that outlives its parent (no PR_SET_PDEATHSIG), for a
 * parent that must exit first; the child ends itself after CHILD_ALARM_S. */
static pid_t
fork_orphan(void)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0)
        alarm(CHILD_ALARM_S);
    return pid;
}

/* Waits for the orphan's one-byte verdict; kills it if none comes. */
static int
orphan_verdict(struct chan *c, const pid_t *orphan)
{
    int got = chan_get(c, WAIT_MS);
    if (got < 0 && *orphan > 0) {
        fprintf(stderr, "  the orphan %ld gave no verdict (hung?)\n",
                (long)*orphan);
        kill(*orphan, SIGKILL);
    }
    return got;
}

/* Fires ints into a ring until fire fails; returns its error (0 when it
 * never failed within `limit` events) and the count in *fired. */
static int
fire_until_error(mbx_sender *s, long limit, long *fired)
{
    int rc = 0;
    long n = 0;
    while (n < limit && (rc = fire_int(s, "cb", n)) == 0)
        n++;
    *fired = n;
    return rc;
}

/* A process fires once, forks a receiver that never fires, and exits
 * without closing or freeing: the child must not keep the sender it
 * inherited but never used, so it handles the event, then MBX_ECLOSED. */
TEST(forked_receiver_sees_firing_parent_exit)
{
    struct chan res;
    chan_open(&res);
    pid_t *orphan = shared_alloc(sizeof *orphan);
    pid_t parent = fork_child();
    if (parent == 0) {
        close(res.rd);
        mbx_dispatcher *d = NULL;
        CREQUIRE_EQ(mbx_dispatcher_new(&d, NULL), 0);
        CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "cb", 7), 0);
        pid_t rx = fork_orphan();
        CREQUIRE(rx >= 0);
        if (rx == 0) {
            mbx_receiver *r = mbx_dispatcher_receiver(d);
            struct rec l = {0};
            CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
            int rc = mbx_handle_until_closed(r);
            if (rc != MBX_ECLOSED || !REC_IS(&l, 7))
                fprintf(stderr, "  receiver: rc %d, %d handled\n", rc, l.n);
            chan_put(&res, rc == MBX_ECLOSED && REC_IS(&l, 7) ? 'y' : 'n');
            _exit(0);
        }
        *orphan = rx;
        _exit(0); /* "crashes": no close, no free */
    }
    close(res.wr);
    CHECK_EQ(wait_child(parent, WAIT_MS), 0);
    CHECK_EQ(orphan_verdict(&res, orphan), 'y');
    close(res.rd);
    munmap(orphan, sizeof *orphan);
}

/* The only receiver process (it handled before the fork) exits while its
 * forked child, which only fires, is blocked on the full ring: the child
 * must not keep the receiver it inherited but never used, so its fire
 * gives MBX_ECLOSED. */
TEST(forked_sender_sees_receiving_parent_exit)
{
    struct chan res;
    chan_open(&res);
    pid_t *orphan = shared_alloc(sizeof *orphan);
    pid_t parent = fork_child();
    if (parent == 0) {
        close(res.rd);
        mbx_dispatcher *d = new_dispatcher(MBX_RING_MIN);
        struct raw_ring w;
        raw_map(&w, d);
        /* Handles (nothing there; MBX_ECLOSED as no process fired yet
         * and this one let go of the sender): the receiver is used. */
        int first = mbx_handle_next(mbx_dispatcher_receiver(d), 0);
        CREQUIRE(first == MBX_EAGAIN || first == MBX_ECLOSED);
        pid_t tx = fork_orphan();
        CREQUIRE(tx >= 0);
        if (tx == 0) {
            long fired;
            int rc = fire_until_error(mbx_dispatcher_sender(d), 100000, &fired);
            if (rc != MBX_ECLOSED)
                fprintf(stderr, "  sender: rc %d after %ld\n", rc, fired);
            chan_put(&res,
                     rc == MBX_ECLOSED && fired < MBX_RING_MIN / 8 ? 'y' : 'n');
            _exit(0);
        }
        *orphan = tx;
        /* Exit once the ring is full: the sender then waits for room. */
        int64_t until = th_now_ms() + HANDLE_MS;
        while (!ring_full_for(&w, 64) && th_now_ms() < until)
            sched_yield();
        CREQUIRE(ring_full_for(&w, 64));
        _exit(0); /* no close, no free */
    }
    close(res.wr);
    CHECK_EQ(wait_child(parent, WAIT_MS), 0);
    CHECK_EQ(orphan_verdict(&res, orphan), 'y');
    close(res.rd);
    munmap(orphan, sizeof *orphan);
}

struct parked_rx {
    mbx_receiver *r;
    struct chan done;
    _Atomic int rc;
};

static void *
parked_rx_main(void *arg)
{
    struct parked_rx *p = arg;
    atomic_store(&p->rc, mbx_handle_until_closed(p->r));
    chan_put(&p->done, 'x');
    return NULL;
}

/* A thread already waiting in mbx_handle_until_closed when the process
 * forks a sender child that dies without firing: MBX_ECLOSED, soon. */
TEST(parked_receiver_sees_forked_sender_die)
{
    mbx_dispatcher *d = new_dispatcher(0);
    struct raw_ring w;
    raw_map(&w, d);
    struct parked_rx p = {.r = mbx_dispatcher_receiver(d), .rc = 1};
    chan_open(&p.done);
    pthread_t t;
    REQUIRE_EQ(pthread_create(&t, NULL, parked_rx_main, &p), 0);
    REQUIRE(await_parked(&w, 1, HANDLE_MS));
    pid_t pid = fork_child();
    if (pid == 0)
        child_done(); /* the sender dies without firing */
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    int64_t t0 = th_now_ms();
    REQUIRE_EQ(chan_get(&p.done, WAIT_MS), 'x'); /* else the thread hangs */
    CHECK(th_now_ms() - t0 < CLOSED_BOUND_MS);
    pthread_join(t, NULL);
    CHECK_EQ(atomic_load(&p.rc), MBX_ECLOSED);
    chan_close(&p.done);
    munmap(w.map, w.size);
    mbx_dispatcher_free(d);
}

struct first_closer {
    mbx_receiver *r;
    int calls;
};

static int
on_first_close(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    (void)a;
    struct first_closer *c = ctx;
    if (c->calls++ == 0)
        CREQUIRE_EQ(mbx_receiver_close(c->r), 0);
    return 0;
}

/* The receiver closed from a handler and consumed the close, and lives on
 * without handling: a sender firing after that gets MBX_ECLOSED, also
 * when the ring is full, instead of waiting for room. */
TEST(fire_after_consumed_close_into_full_ring)
{
    mbx_dispatcher *d = new_dispatcher(MBX_RING_MIN);
    struct chan closed, release, go;
    chan_open(&closed);
    chan_open(&release);
    chan_open(&go);
    pid_t rx = fork_child();
    if (rx == 0) {
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct first_closer c = {r, 0};
        CREQUIRE_EQ(mbx_connect(r, "cb", on_first_close, &c), 0);
        CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
        CREQUIRE_EQ(chan_put(&closed, 'c'), 0);
        /* busy with other work: alive, not handling */
        CREQUIRE_EQ(chan_get(&release, WAIT_MS), 'x');
        child_done();
    }
    pid_t tx = fork_child();
    if (tx == 0) {
        mbx_sender *s = mbx_dispatcher_sender(d);
        CREQUIRE_EQ(fire_int(s, "cb", 0), 0);
        CREQUIRE_EQ(chan_get(&go, WAIT_MS), 'g'); /* the close is consumed */
        long fired;
        int rc = fire_until_error(s, 100000, &fired);
        CREQUIRE_EQ(rc, MBX_ECLOSED);
        CREQUIRE(fired < MBX_RING_MIN / 8); /* no more than the ring holds */
        child_done();
    }
    CHECK_EQ(chan_get(&closed, WAIT_MS), 'c');
    CHECK_EQ(chan_put(&go, 'g'), 0);
    int st = wait_child(tx, WAIT_MS);
    if (st == TIMED_OUT)
        fprintf(stderr, "  the sender waited for room after the close\n");
    CHECK_EQ(st, 0);
    CHECK_EQ(chan_put(&release, 'x'), 0);
    CHECK_EQ(wait_child(rx, WAIT_MS), 0);
    chan_close(&closed);
    chan_close(&release);
    chan_close(&go);
    mbx_dispatcher_free(d);
}

/* A sender fires once and frees its dispatcher: handling without waiting
 * must not say MBX_ECLOSED while that last event is still in the ring. */
TEST(nonblocking_handle_keeps_dying_senders_last_event)
{
    long trials = sized(500, 100), lost = 0, stuck = 0;
    int64_t t0 = th_now_ms();
    for (long t = 0; t < trials && lost + stuck < 3; t++) {
        mbx_dispatcher *d = new_dispatcher(0);
        mbx_receiver *r = mbx_dispatcher_receiver(d);
        struct rec l = {0};
        REQUIRE_EQ(mbx_connect(r, "e", on_int, &l), 0);
        pid_t pid = fork_child();
        if (pid == 0) {
            CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "e", t), 0);
            mbx_dispatcher_free(d); /* lets go of the sender */
            child_done();
        }
        int64_t until = th_now_ms() + HANDLE_MS;
        int rc;
        while (((rc = mbx_handle_until_blocking(r)) >= 0 || rc == MBX_EAGAIN) &&
               th_now_ms() < until)
            ;
        if (rc != MBX_ECLOSED) {
            stuck++;
            fprintf(stderr, "  trial %ld: rc %d, no MBX_ECLOSED\n", t, rc);
        } else if (!REC_IS(&l, t)) {
            lost++;
            fprintf(stderr, "  trial %ld: MBX_ECLOSED with %d handled\n", t,
                    l.n);
        }
        CHECK_EQ(wait_child(pid, WAIT_MS), 0);
        mbx_dispatcher_free(d);
    }
    CHECK_EQ(lost, 0);
    CHECK_EQ(stuck, 0);
    printf("  %ld trials in %lld ms\n", trials, (long long)(th_now_ms() - t0));
}

/* A sender-only process exports its dispatcher for a program (here a
 * forked child that imports the handle, as the exec'd program would),
 * which handles one event and dies: export took no hold of the receiver,
 * so firing into the full ring gives MBX_ECLOSED. */
TEST(exporting_sender_sees_imported_receiver_die)
{
    pid_t wrapper = fork_child();
    if (wrapper == 0) {
        mbx_dispatcher *d = new_dispatcher(MBX_RING_MIN);
        pid_t once = fork_child(); /* shared once; that child is gone */
        if (once == 0)
            child_done();
        CREQUIRE_EQ(wait_child(once, WAIT_MS), 0);
        mbx_sender *s = mbx_dispatcher_sender(d);
        CREQUIRE_EQ(fire_int(s, "cb", 0), 0); /* this process: sender only */
        char handle[MBX_DISPATCHER_HANDLE_LEN];
        CREQUIRE_EQ(mbx_dispatcher_export(d, handle), 0);
        pid_t rx = fork_child();
        if (rx == 0) {
            mbx_dispatcher *p = NULL;
            CREQUIRE_EQ(mbx_dispatcher_import(&p, handle), 0);
            mbx_receiver *r = mbx_dispatcher_receiver(p);
            struct rec l = {0};
            CREQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
            CREQUIRE_EQ(mbx_handle_next(r, HANDLE_MS), 0);
            CREQUIRE(REC_IS(&l, 0));
            _exit(0); /* dies: no close, no free */
        }
        CREQUIRE_EQ(wait_child(rx, WAIT_MS), 0);
        long fired;
        int rc = fire_until_error(s, 100000, &fired);
        CREQUIRE_EQ(rc, MBX_ECLOSED);
        CREQUIRE(fired < MBX_RING_MIN / 8);
        child_done();
    }
    int st = wait_child(wrapper, WAIT_MS);
    if (st == TIMED_OUT)
        fprintf(stderr, "  the exporting sender waited on the full ring\n");
    CHECK_EQ(st, 0);
}

/* ---- 7: competing receivers --------------------------------------------- */

#define MAX_RECEIVERS 4

/* What competing receivers report through a shared mapping. */
struct compete {
    long n; /* events fired: seq 0 .. n-1 */
    _Atomic long count[MAX_RECEIVERS];
    _Atomic long order_errors;
    _Atomic long total; /* events handled overall */
    int all_fd;         /* >= 0: written to once all n were handled */
    _Atomic int rc[MAX_RECEIVERS];
    _Atomic unsigned char seen[]; /* per seq: times handled */
};

struct competitor {
    struct compete *c;
    int id;
    int64_t last;
    mbx_receiver *r;
};

static int
on_compete(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct competitor *me = ctx;
    int64_t seq;
    if (mbx_args_get_int(a, 0, &seq) != 0 || seq < 0 || seq >= me->c->n) {
        atomic_fetch_add(&me->c->order_errors, 1);
        return 0;
    }
    /* One sender: each receiver sees its share in firing order. */
    if (seq <= me->last)
        atomic_fetch_add(&me->c->order_errors, 1);
    me->last = seq;
    atomic_fetch_add(&me->c->seen[seq], 1);
    atomic_fetch_add(&me->c->count[me->id], 1);
    if (atomic_fetch_add(&me->c->total, 1) + 1 == me->c->n &&
        me->c->all_fd >= 0 && write(me->c->all_fd, "a", 1) != 1)
        abort();
    return 0;
}

static struct compete *
compete_alloc(long n)
{
    struct compete *c = shared_alloc(sizeof *c + (size_t)n);
    c->n = n;
    c->all_fd = -1;
    for (int i = 0; i < MAX_RECEIVERS; i++)
        atomic_store(&c->rc[i], 1);
    return c;
}

/* Checks that every event was handled exactly once overall. */
static void
check_exactly_once(struct compete *c, int receivers)
{
    long once = 0, never = 0, more = 0, total = 0;
    for (long i = 0; i < c->n; i++) {
        unsigned v = atomic_load(&c->seen[i]);
        once += v == 1;
        never += v == 0;
        more += v > 1;
    }
    for (int i = 0; i < receivers; i++) {
        total += atomic_load(&c->count[i]);
        printf("  receiver %d handled %ld\n", i, atomic_load(&c->count[i]));
    }
    CHECK_EQ(never, 0);
    CHECK_EQ(more, 0);
    CHECK_EQ(once, c->n);
    CHECK_EQ(total, c->n);
    CHECK_EQ(atomic_load(&c->order_errors), 0);
}

/* Exactly one receiver process consumed the close (0); the others saw
 * the sender go (MBX_ECLOSED). Threads of one process share its receiver:
 * one consumed the close, the others saw it consumed (0 after an event of
 * their own, or MBX_ECLOSED). */
static void
check_one_close(struct compete *c, int receivers, bool threads)
{
    int zero = 0, closed = 0;
    for (int i = 0; i < receivers; i++) {
        int rc = atomic_load(&c->rc[i]);
        zero += rc == 0;
        closed += rc == MBX_ECLOSED;
    }
    if (threads) {
        CHECK(zero >= 1);
        CHECK_EQ(zero + closed, receivers);
    } else {
        CHECK_EQ(zero, 1);
        CHECK_EQ(closed, receivers - 1);
    }
}

TEST(competing_receiver_processes)
{
    enum { K = 3 };
    long n = sized(200000, 20000);
    struct compete *c = compete_alloc(n);
    mbx_dispatcher *d = new_dispatcher(64 << 10);
    struct chan ready;
    chan_open(&ready);
    pid_t pid[K];
    for (int i = 0; i < K; i++) {
        pid[i] = fork_child();
        if (pid[i] == 0) {
            struct competitor me = {c, i, -1, mbx_dispatcher_receiver(d)};
            CREQUIRE_EQ(mbx_connect(me.r, "ev", on_compete, &me), 0);
            /* Let go of the inherited sender before the sender finishes. */
            CREQUIRE_EQ(mbx_handle_next(me.r, 0), MBX_EAGAIN);
            CREQUIRE_EQ(chan_put(&ready, 'r'), 0);
            atomic_store(&c->rc[i], mbx_handle_until_closed(me.r));
            child_done();
        }
    }
    for (int i = 0; i < K; i++)
        CHECK_EQ(chan_get(&ready, WAIT_MS), 'r');
    mbx_sender *s = mbx_dispatcher_sender(d);
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += fire_int(s, "ev", i) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    /* The close goes to one receiver; the others see the sender gone. */
    mbx_dispatcher_free(d);
    for (int i = 0; i < K; i++)
        CHECK_EQ(wait_child(pid[i], WAIT_MS), 0);
    check_exactly_once(c, K);
    check_one_close(c, K, false);
    chan_close(&ready);
    munmap(c, sizeof *c + (size_t)n);
}

/* The competitor of the calling thread, for the one handler that threads
 * sharing a receiver have. */
static _Thread_local struct competitor *this_competitor;

static int
on_compete_thread(const char *event, const mbx_args *a, void *ctx)
{
    (void)ctx;
    return on_compete(event, a, this_competitor);
}

struct compete_thread_arg {
    struct competitor me;
    int done_fd; /* an eventfd, written once the thread returned */
};

static void *
compete_thread(void *arg)
{
    struct compete_thread_arg *t = arg;
    this_competitor = &t->me;
    atomic_store(&t->me.c->rc[t->me.id], mbx_handle_until_closed(t->me.r));
    uint64_t one = 1;
    if (write(t->done_fd, &one, sizeof one) != 8)
        abort();
    return NULL;
}

/* A receiver process whose two threads handle until closed. With
 * `bound_ms` > 0, once one thread has returned the other must return
 * within bound_ms too, else the child exits with 7. */
static _Noreturn void
threaded_receiver(mbx_dispatcher *d, struct compete *c, struct chan *ready,
                  int bound_ms)
{
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    int done = eventfd(0, EFD_CLOEXEC);
    CREQUIRE(done >= 0);
    struct compete_thread_arg t[2] = {{{c, 0, -1, r}, done},
                                      {{c, 1, -1, r}, done}};
    CREQUIRE_EQ(mbx_connect(r, "ev", on_compete_thread, NULL), 0);
    /* Let go of the inherited sender before the sender finishes. */
    CREQUIRE_EQ(mbx_handle_next(r, 0), MBX_EAGAIN);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        CREQUIRE_EQ(pthread_create(&th[i], NULL, compete_thread, &t[i]), 0);
    CREQUIRE_EQ(chan_put(ready, 'r'), 0);
    if (bound_ms > 0) {
        CREQUIRE(readable(done, WAIT_MS));
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += bound_ms / 1000;
        int stuck = -1;
        for (int i = 0; i < 2; i++)
            if (pthread_timedjoin_np(th[i], NULL, &until) != 0)
                stuck = i;
        if (stuck >= 0) {
            fprintf(stderr,
                    "  child: a handling thread still waits %d ms after "
                    "the other one returned %d (the close was consumed)\n",
                    bound_ms, atomic_load(&c->rc[!stuck]));
            fflush(stderr);
            _exit(7);
        }
    } else {
        for (int i = 0; i < 2; i++)
            CREQUIRE_EQ(pthread_join(th[i], NULL), 0);
    }
    child_done();
}

/* Fires 0 .. c->n-1 and closes; then lets go of the sender (free), or
 * keeps it until the receiver process ended and closes only once every
 * event was handled and both threads are parked waiting for the next. */
static void
fire_to_threads(struct compete *c, bool free_after_close)
{
    mbx_dispatcher *d = new_dispatcher(64 << 10);
    struct chan ready, all;
    chan_open(&ready);
    chan_open(&all);
    struct raw_ring w = {0};
    if (!free_after_close) {
        c->all_fd = all.wr;
        raw_map(&w, d);
    }
    pid_t pid = fork_child();
    if (pid == 0)
        threaded_receiver(d, c, &ready, free_after_close ? 0 : 5000);
    CHECK_EQ(chan_get(&ready, WAIT_MS), 'r');
    mbx_sender *s = mbx_dispatcher_sender(d);
    long bad = 0;
    for (long i = 0; i < c->n; i++)
        bad += fire_int(s, "ev", i) != 0;
    CHECK_EQ(bad, 0);
    if (!free_after_close) {
        /* Both threads are in their handling call, waiting. */
        CHECK_EQ(chan_get(&all, WAIT_MS), 'a');
        CHECK(await_parked(&w, 2, WAIT_MS));
    }
    CHECK_EQ(mbx_sender_close(s), 0);
    if (free_after_close)
        mbx_dispatcher_free(d);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    if (!free_after_close) {
        munmap(w.map, w.size);
        mbx_dispatcher_free(d);
    }
    chan_close(&ready);
    chan_close(&all);
}

TEST(competing_receiver_threads)
{
    long n = sized(200000, 20000);
    struct compete *c = compete_alloc(n);
    fire_to_threads(c, true);
    check_exactly_once(c, 2);
    check_one_close(c, 2, true);
    munmap(c, sizeof *c + (size_t)n);
}

/* One close ends the receiver of this process, in every thread handling
 * it: the thread that did not consume it returns too, though the sender
 * is still alive. */
TEST(close_ends_every_handling_thread)
{
    long n = 1000;
    struct compete *c = compete_alloc(n);
    fire_to_threads(c, false);
    check_exactly_once(c, 2);
    /* The close came when both threads were waiting: one consumed it. */
    int zero = 0, closed = 0;
    for (int i = 0; i < 2; i++) {
        int rc = atomic_load(&c->rc[i]);
        zero += rc == 0;
        closed += rc == MBX_ECLOSED;
    }
    CHECK_EQ(zero, 1);
    CHECK_EQ(closed, 1);
    munmap(c, sizeof *c + (size_t)n);
}

/* Two receiver processes compete; one of them is SIGKILLed at a random
 * instant (also while it holds the receivers' lock, which the other then
 * breaks). The survivor handles the rest: no event twice, at most the one
 * the victim had taken lost, and the survivor ends (0 if it consumed the
 * close, MBX_ECLOSED once the sender let go). */
static bool
receiver_kill_round(struct rng *g, long round, long n)
{
    struct compete *c = compete_alloc(n);
    mbx_dispatcher *d = new_dispatcher(rng_below(g, 2) ? MBX_RING_MIN : 0);
    struct chan ready;
    chan_open(&ready);
    pid_t pid[2];
    for (int i = 0; i < 2; i++) {
        pid[i] = fork_child();
        if (pid[i] == 0) {
            struct competitor me = {c, i, -1, mbx_dispatcher_receiver(d)};
            CREQUIRE_EQ(mbx_connect(me.r, "ev", on_compete, &me), 0);
            CREQUIRE_EQ(mbx_handle_next(me.r, 0), MBX_EAGAIN);
            CREQUIRE_EQ(chan_put(&ready, 'r'), 0);
            atomic_store(&c->rc[i], mbx_handle_until_closed(me.r));
            child_done();
        }
    }
    for (int i = 0; i < 2; i++)
        CHECK_EQ(chan_get(&ready, WAIT_MS), 'r');
    int64_t delay = (int64_t)rng_below(g, 2000000);
    pid_t k = fork_child();
    if (k == 0)
        killer(&pid[0], &delay, 1);
    mbx_sender *s = mbx_dispatcher_sender(d);
    long bad = 0;
    for (long i = 0; i < n; i++)
        bad += fire_int(s, "ev", i) != 0;
    CHECK_EQ(bad, 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    mbx_dispatcher_free(d);
    int victim = wait_child(pid[0], WAIT_MS);
    int survivor = wait_child(pid[1], WAIT_MS);
    CHECK_EQ(wait_child(k, WAIT_MS), 0);
    long never = 0, more = 0;
    for (long i = 0; i < n; i++) {
        never += atomic_load(&c->seen[i]) == 0;
        more += atomic_load(&c->seen[i]) > 1;
    }
    int rc = atomic_load(&c->rc[1]);
    bool ok = survivor == 0 && (rc == 0 || rc == MBX_ECLOSED) &&
              (victim == KILLED_BY(SIGKILL) || victim == 0) && never <= 1 &&
              more == 0 && atomic_load(&c->order_errors) == 0;
    if (!ok)
        fprintf(stderr,
                "  round %ld: victim %d, survivor %d (rc %d), %ld never "
                "handled, %ld twice, %ld order errors\n",
                round, victim, survivor, rc, never, more,
                atomic_load(&c->order_errors));
    chan_close(&ready);
    munmap(c, sizeof *c + (size_t)n);
    return ok;
}

TEST(competing_receiver_killed)
{
    struct rng g = rng_seeded("competing_receiver_killed");
    long rounds = rounds_of(40, 20, 10), n = sized(20000, 5000), failed = 0;
    for (long i = 0; i < rounds && failed < 3; i++)
        failed += !receiver_kill_round(&g, i, n);
    CHECK_EQ(failed, 0);
}

/* ---- 8: bad input ----------------------------------------------------------
 */

/* A receiver child that handles until closed and requires exactly the
 * events "ok" (with ints 0 .. ok-1) and, unless long_name is NULL, one
 * event named `long_name` with 255: nothing else reached the ring. */
static _Noreturn void
strict_receiver(mbx_dispatcher *d, int ok, const char *long_name)
{
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct rec l = {0}, l2 = {0};
    CREQUIRE_EQ(mbx_connect(r, "ok", on_int, &l), 0);
    if (long_name)
        CREQUIRE_EQ(mbx_connect(r, long_name, on_int, &l2), 0);
    CREQUIRE_EQ(mbx_handle_until_closed(r), 0);
    mbx_receiver_stats st = stats_of(r);
    CREQUIRE_EQ(st.handled, ok + (long_name != NULL));
    CREQUIRE_EQ(st.ignored, 0);
    CREQUIRE_EQ(st.dropped, 0);
    CREQUIRE_EQ(l.n, ok);
    for (int i = 0; i < ok; i++)
        CREQUIRE_EQ(l.v[i], i);
    if (long_name)
        CREQUIRE(REC_IS(&l2, 255));
    child_done();
}

TEST(bad_event_names)
{
    char long_name[MBX_KIND_MAX + 2], too_long[300];
    memset(long_name, 'n', sizeof long_name);
    long_name[MBX_KIND_MAX] = '\0'; /* 255 bytes: the longest */
    memset(too_long, 't', sizeof too_long);
    too_long[MBX_KIND_MAX + 1] = '\0'; /* 256 bytes */
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0)
        strict_receiver(d, 2, long_name);
    mbx_sender *s = mbx_dispatcher_sender(d);
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    REQUIRE_EQ(mbx_args_add_int(a, 99), 0);
    const char *bad[] = {NULL, "", too_long};
    CHECK_EQ(fire_int(s, "ok", 0), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ(mbx_fire(s, bad[i], a), MBX_EINVAL);
        CHECK_EQ(mbx_fire(s, bad[i], NULL), MBX_EINVAL);
        CHECK_EQ(mbx_firef(s, bad[i], "i", (int64_t)99), MBX_EINVAL);
        CHECK_EQ(mbx_firef(s, bad[i], ""), MBX_EINVAL);
    }
    too_long[MBX_KIND_MAX + 1] = 't';
    too_long[sizeof too_long - 1] = '\0'; /* 299 bytes */
    CHECK_EQ(mbx_fire(s, too_long, a), MBX_EINVAL);
    CHECK_EQ(mbx_fire(NULL, "ok", a), MBX_EINVAL);
    CHECK_EQ(mbx_firef(NULL, "ok", "i", (int64_t)99), MBX_EINVAL);
    CHECK_EQ(fire_int(s, long_name, 255), 0);
    CHECK_EQ(fire_int(s, "ok", 1), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_args_free(a);
    mbx_dispatcher_free(d);
}

TEST(bad_firef_formats)
{
    mbx_dispatcher *d = new_dispatcher(0);
    pid_t pid = fork_child();
    if (pid == 0)
        strict_receiver(d, 2, NULL);
    mbx_sender *s = mbx_dispatcher_sender(d);
    CHECK_EQ(fire_int(s, "ok", 0), 0);
    CHECK_EQ(mbx_firef(s, "ok", NULL), MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "x"), MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "I"), MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "i x", (int64_t)1), MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "ix", (int64_t)1), MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "i|x", (int64_t)1, "k"), MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "i||", (int64_t)1, "k"), MBX_EINVAL);
    /* A keyword value needs its key. */
    CHECK_EQ(mbx_firef(s, "ok", "|i", (const char *)NULL, (int64_t)1),
             MBX_EINVAL);
    CHECK_EQ(mbx_firef(s, "ok", "i|s", (int64_t)1, (const char *)NULL, "v"),
             MBX_EINVAL);
    /* A NULL string is not a value. */
    CHECK_EQ(mbx_firef(s, "ok", "s", (const char *)NULL), MBX_EINVAL);
    CHECK_EQ(fire_int(s, "ok", 1), 0);
    CHECK_EQ(mbx_sender_close(s), 0);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    mbx_dispatcher_free(d);
}

/* Writes `len` bytes at the tail and publishes `publish` bytes (8-aligned),
 * padding to the end of the ring first when they would not fit. The
 * caller is the only writer. */
static void
raw_put(struct raw_ring *w, const void *rec, size_t len, uint64_t publish)
{
    uint64_t tail = atomic_load(&w->h->tail);
    uint64_t off = tail & w->mask, to_end = w->mask + 1 - off;
    if (to_end < publish || to_end < len) {
        struct mbx__rec pad = {.size = (uint32_t)to_end, .type = MBX__REC_PAD};
        memcpy(w->data + off, &pad, sizeof pad);
        tail += to_end;
        off = 0;
    }
    memcpy(w->data + off, rec, len);
    atomic_store(&w->h->tail, tail + publish);
}

static size_t
align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* A well-formed event record (as mbx_fire writes it) in buf. Returns its
 * size. */
static size_t
rec_build(unsigned char *buf, const char *kind, size_t kind_len,
          const void *body, size_t body_len)
{
    size_t size = align8(sizeof(struct mbx__rec) + kind_len + body_len);
    struct mbx__rec h = {.size = (uint32_t)size,
                         .type = MBX__REC_MSG,
                         .body_len = (uint32_t)body_len,
                         .kind_len = (uint8_t)kind_len};
    memset(buf, 0, size);
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, kind, kind_len);
    memcpy(buf + sizeof h + kind_len, body, body_len);
    return size;
}

/* Bodies: good args ([[7], {}]) and MessagePack that is not args. */
static const unsigned char good_body[] = {0x92, 0x91, 0x07, 0x80};

struct bad_body {
    unsigned char b[80];
    size_t len;
};

static const struct bad_body bad_bodies[] = {
    {{0xc1}, 1},                                         /* never used */
    {{0x92, 0x91}, 2},                                   /* truncated */
    {{0x05}, 1},                                         /* not [array, map] */
    {{0x93, 0x90, 0x80, 0xc0}, 4},                       /* three elements */
    {{0x92, 0x80, 0x80}, 3},                             /* positional map */
    {{0x92, 0x91, 0x07, 0x80, 0x00}, 5},                 /* trailing byte */
    {{0x92, 0x90, 0x82, 0xa1, 'a', 1, 0xa1, 'a', 2}, 9}, /* duplicate key */
    {{0x92, 0x90, 0x81, 0x01, 0x01}, 5},                 /* int key */
    {{0x92, 0x90, 0x81, 0xa0, 0x01}, 5},                 /* empty key */
    {{0x92, 0x90, 0x81, 0xa2, 'a', 0, 0x01}, 7},         /* key with NUL */
    {{0x92, 0x91, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x80},
     12},                                                  /* above INT64_MAX */
    {{0x92, 0x91, 0xd4, 0x01, 0x00, 0x80}, 6},             /* ext */
    {{0x92, 0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x80}, 8}, /* huge count */
    {{0}, 0}, /* nested 70 deep: filled in by deep_body */
};

#define NBAD_BODIES (sizeof bad_bodies / sizeof bad_bodies[0])

/* [[[[...70 levels...]]], {}] */
static size_t
deep_body(unsigned char *b)
{
    size_t n = 0;
    b[n++] = 0x92;
    for (int i = 0; i < 70; i++)
        b[n++] = 0x91;
    b[n - 1] = 0x90;
    b[n++] = 0x80;
    return n;
}

/* The malformed records: mutations of a good "cb" record. Those the ring
 * drops first, then those only the dispatcher can tell (args that do not
 * decode), then bad names. */
enum {
    BAD_TYPE,
    BAD_BODY_LEN,
    BAD_SIZE_ODD,
    BAD_SIZE_PAST_TAIL,
    BAD_SIZE_ZERO,
    BAD_ROLE,
    BAD_SHORT_PAD,
    BAD_HUGE_BODY_LEN,
    BAD_KIND_LEN,
    RING_LEVEL_END,
    BAD_ARGS = RING_LEVEL_END, /* + index into bad_bodies */
    BAD_NAME_NUL = BAD_ARGS + (int)NBAD_BODIES,
    BAD_NAME_EMPTY,
    BAD_END,
};

/* Writes malformed record `k` into the ring. */
static void
write_bad_record(struct raw_ring *w, int k)
{
    unsigned char buf[512];
    size_t size = rec_build(buf, "cb", 2, good_body, sizeof good_body);
    struct mbx__rec *h = (struct mbx__rec *)buf;
    uint64_t publish = size;
    if (k >= BAD_ARGS && k < BAD_NAME_NUL) {
        unsigned char deep[80];
        const struct bad_body *b = &bad_bodies[k - BAD_ARGS];
        const unsigned char *body = b->b;
        size_t len = b->len;
        if (len == 0) {
            len = deep_body(deep);
            body = deep;
        }
        size = rec_build(buf, "cb", 2, body, len);
        raw_put(w, buf, size, size);
        return;
    }
    switch (k) {
    case BAD_TYPE:
        h->type = 9;
        break;
    case BAD_BODY_LEN:
        h->body_len += 8;
        break;
    case BAD_SIZE_ODD:
        h->size = (uint32_t)size + 4;
        break;
    case BAD_SIZE_PAST_TAIL:
        h->size = (uint32_t)size + 64;
        break;
    case BAD_SIZE_ZERO:
        h->size = 0;
        break;
    case BAD_ROLE:
        h->role = 200;
        break;
    case BAD_SHORT_PAD:
        h->type = MBX__REC_PAD;
        h->size = 16;
        publish = 16;
        break;
    case BAD_HUGE_BODY_LEN:
        h->body_len = UINT32_MAX;
        break;
    case BAD_KIND_LEN:
        h->kind_len = 200;
        break;
    case BAD_NAME_NUL:
        size = rec_build(buf, "cb\0zz", 5, good_body, sizeof good_body);
        publish = size;
        break;
    case BAD_NAME_EMPTY:
        size = rec_build(buf, "", 0, good_body, sizeof good_body);
        publish = size;
        break;
    }
    raw_put(w, buf, size, publish);
}

/* Child: for each k in [from, to), writes record k, waits, fires a good
 * "cb" event with 1000 + k, waits. */
static _Noreturn void
bad_record_writer(mbx_dispatcher *d, struct raw_ring *w, struct chan *to_p,
                  struct chan *to_c, int from, int to)
{
    for (int k = from; k < to; k++) {
        write_bad_record(w, k);
        CREQUIRE_EQ(chan_put(to_p, 'm'), 0);
        CREQUIRE_EQ(chan_get(to_c, WAIT_MS), 'g');
        CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "cb", 1000 + k), 0);
        CREQUIRE_EQ(chan_put(to_p, 'v'), 0);
        CREQUIRE_EQ(chan_get(to_c, WAIT_MS), 'g');
    }
    child_done();
}

/* Parent: handles record k and the good event after it. The bad one is
 * dropped and counted (by the ring, or by the dispatcher when only its
 * args or name are bad); no handler sees it; the good one is handled. */
static void
expect_dropped(mbx_receiver *r, struct raw_ring *w, struct rec *l,
               struct chan *to_p, struct chan *to_c, int k)
{
    uint64_t ring_before = atomic_load(&w->h->dropped);
    mbx_receiver_stats before = stats_of(r);
    int n = l->n;
    REQUIRE_EQ(chan_get(to_p, WAIT_MS), 'm');
    int rc = mbx_handle_next(r, 0);
    mbx_receiver_stats after = stats_of(r);
    uint64_t ring_dropped = atomic_load(&w->h->dropped) - ring_before;
    uint64_t dropped = after.dropped - before.dropped;
    if (k < RING_LEVEL_END)
        CHECK_EQ(rc, MBX_EAGAIN);
    else
        CHECK_EQ(rc, 0);
    if (ring_dropped + dropped != 1 || l->n != n ||
        after.handled != before.handled || after.ignored != before.ignored)
        fprintf(stderr,
                "  bad record %d: ring dropped %llu, dispatcher dropped "
                "%llu, handled %llu, ignored %llu, handler calls %d\n",
                k, (unsigned long long)ring_dropped,
                (unsigned long long)dropped,
                (unsigned long long)(after.handled - before.handled),
                (unsigned long long)(after.ignored - before.ignored), l->n - n);
    CHECK_EQ(ring_dropped + dropped, 1);
    CHECK_EQ(l->n, n);
    CHECK_EQ(after.handled, before.handled);
    CHECK_EQ(after.ignored, before.ignored);
    REQUIRE_EQ(chan_put(to_c, 'g'), 0);
    REQUIRE_EQ(chan_get(to_p, WAIT_MS), 'v');
    CHECK_EQ(mbx_handle_next(r, 0), 0);
    CHECK(l->n == n + 1 && l->v[n] == 1000 + k);
    REQUIRE_EQ(chan_put(to_c, 'g'), 0);
}

static void
bad_records(int from, int to)
{
    mbx_dispatcher *d = new_dispatcher(64 << 10);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct raw_ring w;
    raw_map(&w, d);
    struct rec l = {0};
    REQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    struct chan to_p, to_c;
    chan_open(&to_p);
    chan_open(&to_c);
    pid_t pid = fork_child();
    if (pid == 0)
        bad_record_writer(d, &w, &to_p, &to_c, from, to);
    for (int k = from; k < to; k++) {
        l.n = 0;
        expect_dropped(r, &w, &l, &to_p, &to_c, k);
    }
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    CHECK_EQ(mbx_handle_next(r, HANDLE_MS), MBX_ECLOSED);
    chan_close(&to_p);
    chan_close(&to_c);
    munmap(w.map, w.size);
    mbx_dispatcher_free(d);
}

TEST(malformed_records_dropped_by_the_ring)
{
    bad_records(0, RING_LEVEL_END);
}

TEST(malformed_args_dropped)
{
    bad_records(BAD_ARGS, BAD_NAME_NUL);
}

/* Names no sender can write: with a NUL byte inside ("cb\0zz" must not
 * reach the handlers of "cb"), and empty without being the close. */
TEST(malformed_event_names_dropped)
{
    bad_records(BAD_NAME_NUL, BAD_END);
}

/* Random headers and bytes (never the close flag), each followed by a good
 * event: never a crash, never a partial event, the good one handled. */
static _Noreturn void
garbage_writer(mbx_dispatcher *d, struct raw_ring *w, struct chan *to_p,
               struct chan *to_c, struct rng g, long rounds)
{
    for (long i = 0; i < rounds; i++) {
        unsigned char buf[256];
        for (size_t k = 0; k < sizeof buf; k++)
            buf[k] = (unsigned char)rng_below(&g, 256);
        struct mbx__rec *h = (struct mbx__rec *)buf;
        size_t publish = 8 * (1 + rng_below(&g, sizeof buf / 8));
        /* Half the time a plausible header: right type, size or lengths. */
        if (rng_below(&g, 2)) {
            h->type = rng_below(&g, 4) ? MBX__REC_MSG : MBX__REC_PAD;
            h->role = (uint8_t)rng_below(&g, 2);
            h->kind_len = (uint8_t)rng_below(&g, 16);
            h->body_len = (uint32_t)rng_below(&g, 64);
            h->from_len = 0;
            if (rng_below(&g, 2)) {
                publish = align8(sizeof *h + h->kind_len + h->body_len);
                h->size = (uint32_t)publish;
            }
        }
        h->flags &= (uint8_t)~0x80u; /* never a close */
        raw_put(w, buf, publish, publish);
        CREQUIRE_EQ(chan_put(to_p, 'm'), 0);
        CREQUIRE_EQ(chan_get(to_c, WAIT_MS), 'g');
        CREQUIRE_EQ(fire_int(mbx_dispatcher_sender(d), "cb", i), 0);
        CREQUIRE_EQ(chan_put(to_p, 'v'), 0);
        CREQUIRE_EQ(chan_get(to_c, WAIT_MS), 'g');
    }
    child_done();
}

TEST(random_garbage_records)
{
    struct rng g = rng_seeded("random_garbage_records");
    long rounds = sized(2000, 500);
    mbx_dispatcher *d = new_dispatcher(64 << 10);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct raw_ring w;
    raw_map(&w, d);
    struct rec l = {0};
    REQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    struct chan to_p, to_c;
    chan_open(&to_p);
    chan_open(&to_c);
    pid_t pid = fork_child();
    if (pid == 0)
        garbage_writer(d, &w, &to_p, &to_c, g, rounds);
    long lost = 0, stray = 0;
    for (long i = 0; i < rounds; i++) {
        l.n = 0;
        REQUIRE_EQ(chan_get(&to_p, WAIT_MS), 'm');
        int rc = mbx_handle_next(r, 0);
        CHECK(rc == 0 || rc == MBX_EAGAIN);
        stray += l.n; /* a random record that passed as a "cb" event */
        l.n = 0;
        REQUIRE_EQ(chan_put(&to_c, 'g'), 0);
        REQUIRE_EQ(chan_get(&to_p, WAIT_MS), 'v');
        /* A random record that passed as an event may come first. */
        while ((rc = mbx_handle_next(r, 0)) == 0 &&
               !(l.n > 0 && l.v[l.n - 1] == i))
            ;
        lost += !(l.n > 0 && l.v[l.n - 1] == i);
        REQUIRE_EQ(chan_put(&to_c, 'g'), 0);
    }
    CHECK_EQ(lost, 0);
    CHECK_EQ(stray, 0);
    mbx_receiver_stats st = stats_of(r);
    printf("  %ld records: ring dropped %llu, dispatcher dropped %llu, "
           "ignored %llu\n",
           rounds, (unsigned long long)atomic_load(&w.h->dropped),
           (unsigned long long)st.dropped, (unsigned long long)st.ignored);
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    chan_close(&to_p);
    chan_close(&to_c);
    munmap(w.map, w.size);
    mbx_dispatcher_free(d);
}

/* ---- 9: the receiver's fd ---------------------------------------------------
 */

/* A sender child driven through a pipe: 'f' N fires N events, 'c' closes,
 * 'q' quits; each command is acknowledged with 'd'. */
static _Noreturn void
driven_sender(mbx_dispatcher *d, struct chan *cmd, struct chan *ack)
{
    mbx_sender *s = mbx_dispatcher_sender(d);
    int64_t v = 0;
    for (;;) {
        int c = chan_get(cmd, WAIT_MS);
        CREQUIRE(c >= 0);
        if (c == 'q') {
            CREQUIRE_EQ(chan_put(ack, 'd'), 0);
            child_done();
        }
        if (c == 'c') {
            CREQUIRE_EQ(mbx_sender_close(s), 0);
        } else {
            for (int n = c - '0'; n > 0; n--)
                CREQUIRE_EQ(fire_int(s, "cb", v++), 0);
        }
        CREQUIRE_EQ(chan_put(ack, 'd'), 0);
    }
}

static void
drive(struct chan *cmd, struct chan *ack, char c)
{
    REQUIRE_EQ(chan_put(cmd, c), 0);
    REQUIRE_EQ(chan_get(ack, WAIT_MS), 'd');
}

TEST(fd_level_triggered)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct rec l = {0};
    REQUIRE_EQ(mbx_connect(r, "cb", on_int, &l), 0);
    struct chan cmd, ack;
    chan_open(&cmd);
    chan_open(&ack);
    pid_t pid = fork_child();
    if (pid == 0)
        driven_sender(d, &cmd, &ack);
    int fd = mbx_receiver_fd(r);
    REQUIRE(fd >= 0);
    CHECK(!readable(fd, 0));
    drive(&cmd, &ack, '3');
    CHECK(readable(fd, 0));
    CHECK(readable(fd, 0)); /* level: still */
    CHECK_EQ(mbx_handle_next(r, 0), 0);
    CHECK(readable(fd, 0)); /* two still wait */
    CHECK_EQ(mbx_handle_until_blocking(r), 2);
    CHECK(!readable(fd, 0));
    CHECK_EQ(mbx_receiver_fd(r), fd);
    CHECK(!readable(fd, 0));
    long bad = 0, fired = 3;
    for (int round = 0; round < 50; round++) {
        fired += 1 + round % 3;
        drive(&cmd, &ack, (char)('1' + round % 3));
        bad += !readable(fd, 0);
        bad += mbx_handle_until_blocking(r) != 1 + round % 3;
        bad += readable(fd, 0);
    }
    CHECK_EQ(bad, 0);
    /* The close makes it readable too; once handled, the fd is closed. */
    drive(&cmd, &ack, 'c');
    CHECK(readable(fd, 0));
    CHECK_EQ(mbx_handle_until_blocking(r), 1);
    CHECK_EQ(mbx_receiver_fd(r), MBX_ECLOSED);
    drive(&cmd, &ack, 'q');
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    CHECK_EQ(l.n, fired);
    chan_close(&cmd);
    chan_close(&ack);
    mbx_dispatcher_free(d);
}

/* Events fired before the receiver first asked for its fd: the fd is
 * readable as soon as it is handed out. */
TEST(fd_readable_for_events_fired_before)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct chan cmd, ack;
    chan_open(&cmd);
    chan_open(&ack);
    pid_t pid = fork_child();
    if (pid == 0)
        driven_sender(d, &cmd, &ack);
    drive(&cmd, &ack, '2');
    int fd = mbx_receiver_fd(r);
    REQUIRE(fd >= 0);
    CHECK(readable(fd, 0));
    CHECK(readable(fd, 1000));
    CHECK_EQ(mbx_handle_until_blocking(r), 2);
    CHECK(!readable(fd, 0));
    drive(&cmd, &ack, 'q');
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    chan_close(&cmd);
    chan_close(&ack);
    mbx_dispatcher_free(d);
}

/* Every sender process exits without closing while the receiver waits in
 * an event loop: "the receiver sees MBX_ECLOSED, it never hangs" (DESIGN,
 * section 4) needs the fd to wake the loop, as the EOF of mpdispatcher's
 * pipe wakes an asyncio loop. */
TEST(fd_wakes_the_loop_when_senders_are_gone)
{
    mbx_dispatcher *d = new_dispatcher(0);
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct chan cmd, ack;
    chan_open(&cmd);
    chan_open(&ack);
    pid_t pid = fork_child();
    if (pid == 0)
        driven_sender(d, &cmd, &ack);
    int fd = mbx_receiver_fd(r);
    REQUIRE(fd >= 0);
    drive(&cmd, &ack, '1');
    CHECK(readable(fd, 0));
    CHECK_EQ(mbx_handle_until_blocking(r), 1);
    CHECK(!readable(fd, 0));
    drive(&cmd, &ack, 'q'); /* exits without closing */
    CHECK_EQ(wait_child(pid, WAIT_MS), 0);
    CHECK(readable(fd, CLOSED_BOUND_MS));
    CHECK_EQ(mbx_handle_until_blocking(r), MBX_ECLOSED);
    chan_close(&cmd);
    chan_close(&ack);
    mbx_dispatcher_free(d);
}
