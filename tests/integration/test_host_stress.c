/*
 * Host mailslots under stress, across real processes:
 *
 *   fan_in_*                   4 writer processes (forked, or fork+exec of
 *                              the host_writer helper) into one reader, with
 *                              a large ring and with a small one
 *   writers_killed             writers SIGKILLed at random instants
 *   lock_holder_killed         a writer dies holding the writers' lock
 *   writer_killed_before_wake  a writer dies between publishing and waking
 *   readers_killed             readers SIGKILLed at random instants, also
 *                              while the writer waits for room; new readers
 *                              take the name over
 *   takeover_race              processes race for a dead reader's name
 *   other_user                 file modes keep user nobody out (needs root)
 *
 * Every message is a 64-byte stamp (host_stamp.h): writer, round, sequence
 * number and a checksum. The reader keeps a next-expected counter per
 * writer and fails on any torn or foreign message, gap, duplicate or
 * reordering, and checks the totals at the end.
 *
 * Each test uses its own runtime directory (MBX_RUNTIME_DIR) and names.
 * Random choices come from a PRNG seeded by MBX_TEST_SEED (printed; fixed
 * by default). MBX_SOAK=N makes writers_killed and readers_killed run N
 * rounds (raise MBX_TEST_TIMEOUT to match). Sanitizer builds run smaller
 * counts; MBX_TEST_SCALE shrinks them further. The fork+exec test finds
 * the helper through $MBX_HOST_WRITER, MBX_HOST_WRITER_PATH (set by the
 * build) or beside this program.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "host_stamp.h"
#include "mbx/mbx.h"

/* Internal headers: to hold the writers' lock on purpose, to count broken
 * locks and to find a ring's file. */
#include "core/msg.h"
#include "host/endpoint.h"
#include "host/host.h"
#include "host/rundir.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define HS_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define HS_SANITIZED 1
#endif
#endif
#ifndef HS_SANITIZED
#define HS_SANITIZED 0
#endif

/* A receive that waits longer than this means a wedged mailslot. */
#define RECV_TIMEOUT_MS 20000
/* The "long" timeout of a writer whose reader gets killed. */
#define SEND_TIMEOUT_MS 20000
/* A writer must notice its reader's death well within this. */
#define ENOENT_BOUND_MS 2000
/* A writers_killed round must end within this. */
#define ROUND_BOUND_MS 10000

#define MAX_WRITERS 8

/* ---- sizes, rounds, randomness --------------------------------------- */

/* A loop count: `plain` normally, `sanitized` under ASan or TSan, both
 * divided by MBX_TEST_SCALE. */
static long
sized(long plain, long sanitized)
{
    return th_scaled(HS_SANITIZED ? sanitized : plain);
}

/* Rounds of a kill test: MBX_SOAK if set, else sized() but at least 50. */
static long
rounds_of(long plain, long sanitized)
{
    const char *soak = getenv("MBX_SOAK");
    if (soak && atol(soak) > 0)
        return atol(soak);
    long n = sized(plain, sanitized);
    return n < 50 ? 50 : n;
}

struct rng {
    uint64_t s;
};

static struct rng
rng_seeded(const char *test)
{
    const char *env = getenv("MBX_TEST_SEED");
    uint64_t seed = env ? strtoull(env, NULL, 0) : 0x6d62782d686f7374ull;
    printf("  %s: MBX_TEST_SEED=%#llx\n", test, (unsigned long long)seed);
    return (struct rng){hs_mix(seed ^ hs_sum(test, strlen(test)))};
}

/* A number in [0, n). */
static uint64_t
rng_below(struct rng *r, uint64_t n)
{
    r->s = hs_mix(r->s);
    return n ? r->s % n : 0;
}

/* ---- runtime directory, processes, shared memory ---------------------- */

static char rundir[64];

/* Makes a fresh runtime directory and points MBX_RUNTIME_DIR at it. */
static void
private_rundir(void)
{
    snprintf(rundir, sizeof rundir, "/tmp/mbx-hs-XXXXXX");
    REQUIRE(mkdtemp(rundir) != NULL);
    REQUIRE_EQ(setenv("MBX_RUNTIME_DIR", rundir, 1), 0);
}

/* Removes the runtime directory and what dead readers left in it. */
static void
remove_rundir(void)
{
    DIR *d = opendir(rundir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
    CHECK_EQ(rmdir(rundir), 0);
}

/* fork() for helpers: the child dies with the test process, so a failed
 * test leaves no writer blocked forever behind. */
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
    }
    return pid;
}

/* Waits for a child and returns its wait status. */
static int
reap(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return status;
}

static bool
exited_ok(int status)
{
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool
was_killed(int status)
{
    return status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

static void
print_status(const char *who, int status)
{
    if (status == -1)
        fprintf(stderr, "  %s: not reaped\n", who);
    else if (WIFEXITED(status))
        fprintf(stderr, "  %s: exit status %d\n", who, WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        fprintf(stderr, "  %s: killed by signal %d\n", who, WTERMSIG(status));
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

/* Spins on the monotonic clock: a random instant, not a synchronisation. */
static void
spin_ns(int64_t ns)
{
    int64_t until = th_now_ns() + ns;
    while (th_now_ns() < until)
        ;
}

/* Reads exactly n bytes; false on EOF or error. */
static bool
read_all(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        p += r;
        n -= (size_t)r;
    }
    return true;
}

static void
write_byte(int fd, char c)
{
    while (write(fd, &c, 1) < 0 && errno == EINTR)
        ;
}

/* ---- writers ------------------------------------------------------------ */

/* Forks a writer of `count` stamps (negative: until killed). */
static pid_t
fork_writer(const char *address, uint32_t id, long count, uint64_t round,
            bool use_put, _Atomic long *done)
{
    pid_t pid = fork_child();
    if (pid == 0) {
        int rc = hs_write_stamps(address, id, count, round, use_put, done);
        _exit(rc == 0 ? 0 : 1);
    }
    return pid;
}

/* The helper program's path: $MBX_HOST_WRITER, else the build's
 * MBX_HOST_WRITER_PATH, else host_writer beside this test program. */
static void
writer_program(char *path, size_t size)
{
#ifdef MBX_HOST_WRITER_PATH
    th_helper_program(path, size, "MBX_HOST_WRITER", MBX_HOST_WRITER_PATH,
                      "host_writer");
#else
    th_helper_program(path, size, "MBX_HOST_WRITER", NULL, "host_writer");
#endif
}

/* Starts the helper program as writer `id` of `count` stamps to `name`,
 * by fork+exec; MBX_RUNTIME_DIR reaches it through the environment. */
static pid_t
exec_writer(const char *program, const char *name, uint32_t id, long count,
            bool use_put)
{
    char ids[16], counts[32];
    snprintf(ids, sizeof ids, "%u", (unsigned)id);
    snprintf(counts, sizeof counts, "%ld", count);
    char *argv[] = {(char *)"host_writer",
                    (char *)name,
                    ids,
                    counts,
                    (char *)(use_put ? "put" : "send"),
                    NULL};
    pid_t pid = fork_child();
    if (pid == 0) {
        execv(program, argv);
        fprintf(stderr, "exec %s: %s\n", program, strerror(errno));
        _exit(127);
    }
    return pid;
}

/* ---- the reader's checks ------------------------------------------------ */

/* Per-writer order and integrity of stamped messages of one round. */
struct seqcheck {
    int writers;
    uint64_t round;
    uint64_t next[MAX_WRITERS]; /* next expected seq */
    bool final[MAX_WRITERS];    /* HS_FINAL seen */
    long corrupt;               /* torn body, wrong length or kind */
    long foreign;               /* another round or an unknown writer */
    long gaps;                  /* a seq skipped: lost or reordered */
    long backwards;             /* a seq seen again: duplicated or reordered */
    long after_final;           /* a message after the writer's last one */
    long total;
};

static void
seq_init(struct seqcheck *c, int writers, uint64_t round)
{
    memset(c, 0, sizeof *c);
    c->writers = writers;
    c->round = round;
}

static long
seq_errors(const struct seqcheck *c)
{
    return c->corrupt + c->foreign + c->gaps + c->backwards + c->after_final;
}

/* Shows the first few problems only: a broken run may have millions. */
static void
seq_complain(struct seqcheck *c, const char *what, const struct hs_stamp *s)
{
    if (seq_errors(c) > 5)
        return;
    if (s)
        fprintf(stderr,
                "  round %llu: %s: writer %u seq %llu round %llu (expected "
                "seq %llu)\n",
                (unsigned long long)c->round, what, (unsigned)s->writer,
                (unsigned long long)s->seq, (unsigned long long)s->round,
                s->writer < (uint32_t)c->writers
                    ? (unsigned long long)c->next[s->writer]
                    : 0ull);
    else
        fprintf(stderr, "  round %llu: %s message after %ld good ones\n",
                (unsigned long long)c->round, what, c->total);
}

/* Checks one message. Returns its writer, or -1 if it is not an intact
 * stamp of this round; *out receives the stamp. */
static int
seq_take(struct seqcheck *c, const mbx_msg *m, struct hs_stamp *out)
{
    size_t len;
    const void *body = mbx_msg_body(m, &len);
    struct hs_stamp s;
    if (!hs_stamp_read(body, len, &s) || mbx_msg_kind(m)[0] != '\0') {
        seq_complain(c, "corrupt", NULL);
        c->corrupt++;
        return -1;
    }
    if (s.round != c->round || s.writer >= (uint32_t)c->writers) {
        seq_complain(c, "foreign", &s);
        c->foreign++;
        return -1;
    }
    uint32_t w = s.writer;
    if (c->final[w]) {
        seq_complain(c, "after the final message", &s);
        c->after_final++;
    }
    if (s.seq > c->next[w]) {
        seq_complain(c, "gap (lost or reordered)", &s);
        c->gaps++;
    } else if (s.seq < c->next[w]) {
        seq_complain(c, "duplicate or reordered", &s);
        c->backwards++;
    }
    if (s.seq >= c->next[w])
        c->next[w] = s.seq + 1;
    if (s.flags & HS_FINAL)
        c->final[w] = true;
    c->total++;
    if (out)
        *out = s;
    return (int)w;
}

static void
seq_print_progress(const struct seqcheck *c)
{
    for (int w = 0; w < c->writers; w++)
        fprintf(stderr, "  writer %d: next seq %llu%s\n", w,
                (unsigned long long)c->next[w], c->final[w] ? ", final" : "");
}

/* CHECKs that no message was bad. */
static void
seq_check_clean(const struct seqcheck *c)
{
    CHECK_EQ(c->corrupt, 0);
    CHECK_EQ(c->foreign, 0);
    CHECK_EQ(c->gaps, 0);
    CHECK_EQ(c->backwards, 0);
    CHECK_EQ(c->after_final, 0);
}

/* The number of writers' locks broken in the ring that `rd` reads. */
static uint64_t
broken_locks(mbx_slot *rd)
{
    mbx_id id;
    const struct mbx__ring *r;
    if (mbx_slot_mailbox(rd, &id) < 0 || mbx__host_reader_ring(id, &r) < 0)
        return UINT64_MAX;
    return atomic_load(&r->hdr->broken_locks);
}

/* Opens the reader of `address` and registers it. */
static mbx_slot *
open_reader(const char *address, size_t ring_size, unsigned mode)
{
    mbx_slot *rd = NULL;
    mbx_slot_opts o = {.ring_size = ring_size, .mode = mode};
    REQUIRE_EQ(mbx_slot_open(&rd, address, &o), 0);
    mbx_id id;
    REQUIRE_EQ(mbx_slot_mailbox(rd, &id), 0);
    return rd;
}

/* What mbx_slot_list says about one name. */
struct listed {
    const char *name;
    int count;    /* entries with that name */
    long pid;     /* the reader's process */
    long dropped; /* malformed records its reader dropped */
};

static int
listed_fn(const mbx_slot_info *info, void *ctx)
{
    struct listed *l = ctx;
    if (strcmp(info->name, l->name) == 0) {
        l->count++;
        l->pid = info->pid;
        l->dropped = (long)info->dropped;
    }
    return 0;
}

/* Looks `name` (without "//./") up with mbx_slot_list. */
static struct listed
list_name(const char *name)
{
    struct listed l = {.name = name};
    CHECK_EQ(mbx_slot_list(listed_fn, &l), 0);
    return l;
}

/* ---- 1, 2: fan-in from forked and exec'd writers ------------------------ */

/* `writers` processes write `per_writer` stamps each to one reader; even
 * writers use mbx_send_to, odd ones mbx_slot_put. */
static void
fan_in(const char *base, int writers, long per_writer, size_t ring_size,
       bool exec)
{
    private_rundir();
    char program[PATH_MAX];
    if (exec)
        writer_program(program, sizeof program);
    char name[64], address[80];
    th_unique(name, sizeof name, base);
    snprintf(address, sizeof address, "//./%s", name);
    mbx_slot *rd = open_reader(address, ring_size, 0);

    int64_t t0 = th_now_ns();
    pid_t pid[MAX_WRITERS];
    for (int i = 0; i < writers; i++)
        pid[i] =
            exec
                ? exec_writer(program, name, (uint32_t)i, per_writer, i % 2)
                : fork_writer(address, (uint32_t)i, per_writer, 0, i % 2, NULL);
    struct seqcheck c;
    seq_init(&c, writers, 0);
    long total = writers * per_writer;
    for (long i = 0; i < total; i++) {
        mbx_msg *m = NULL;
        int rc = mbx_slot_get(rd, &m, RECV_TIMEOUT_MS);
        if (rc != 0) {
            fprintf(stderr, "  after %ld of %ld messages: %s\n", i, total,
                    mbx_strerror_name(rc));
            seq_print_progress(&c);
        }
        REQUIRE_EQ(rc, 0);
        seq_take(&c, m, NULL);
        mbx_msg_free(m);
    }
    double secs = (double)(th_now_ns() - t0) / 1e9;
    for (int i = 0; i < writers; i++) {
        int st = reap(pid[i]);
        if (!exited_ok(st))
            print_status("writer", st);
        CHECK(exited_ok(st));
    }
    mbx_msg *extra = NULL;
    CHECK_EQ(mbx_slot_get_nowait(rd, &extra), MBX_EAGAIN);
    mbx_msg_free(extra);
    seq_check_clean(&c);
    for (int i = 0; i < writers; i++) {
        CHECK_EQ(c.next[i], per_writer);
        CHECK(c.final[i]);
    }
    CHECK_EQ(c.total, total);
    printf("  %s: %d writers x %ld, ring %zu KiB: %.2f s, %.2f M msg/s\n", base,
           writers, per_writer,
           (ring_size ? ring_size : MBX_RING_DEFAULT) >> 10, secs,
           (double)total / secs / 1e6);
    mbx_slot_close(rd);
    remove_rundir();
}

TEST(fan_in_fork)
{
    fan_in("fanin-fork", 4, sized(1000000, 250000), 0, false);
}

TEST(fan_in_fork_small_ring)
{
    /* 64 KiB holds ~740 records: writers keep blocking and waking. */
    fan_in("fanin-small", 4, sized(1000000, 250000), 64 << 10, false);
}

TEST(fan_in_exec)
{
    fan_in("fanin-exec", 4, sized(1000000, 250000), 64 << 10, true);
}

/* ---- 3: writers killed at random instants ------------------------------- */

struct wk_shared {
    _Atomic long done[MAX_WRITERS]; /* messages each writer got accepted */
};

struct wk_stats {
    int64_t worst_ns;
    long by_count, by_clock;
    long victim_msgs, victim_unacked;
};

/* One round: 2 or 3 writers into `rd`; one of them, writing without end,
 * is killed at a random instant; the others write `n` each. */
static void
wk_round(mbx_slot *rd, const char *address, uint64_t round, long n,
         struct rng *r, struct wk_shared *sh, struct wk_stats *st)
{
    int nw = 2 + (int)rng_below(r, 2), victim = (int)rng_below(r, nw);
    bool by_count = rng_below(r, 2);
    long kill_at = (long)rng_below(r, (uint64_t)n);
    int64_t kill_after = (int64_t)rng_below(r, 3000000);
    for (int i = 0; i < nw; i++)
        atomic_store(&sh->done[i], 0);
    int64_t t0 = th_now_ns();
    pid_t pid[MAX_WRITERS];
    for (int i = 0; i < nw; i++)
        pid[i] = fork_writer(address, (uint32_t)i, i == victim ? -1 : n, round,
                             rng_below(r, 2), &sh->done[i]);

    /* Receive until the victim is killed and every survivor's last
     * message is in. */
    struct seqcheck c;
    seq_init(&c, nw, round);
    int finals = 0;
    bool killed = false;
    for (long seen = 0; !killed || finals < nw - 1;) {
        mbx_msg *m = NULL;
        int rc = mbx_slot_get(rd, &m, RECV_TIMEOUT_MS);
        if (rc != 0) {
            fprintf(stderr, "  round %llu: %s (victim %d %s)\n",
                    (unsigned long long)round, mbx_strerror_name(rc), victim,
                    killed ? "killed" : "alive");
            seq_print_progress(&c);
        }
        REQUIRE_EQ(rc, 0);
        struct hs_stamp s;
        int w = seq_take(&c, m, &s);
        mbx_msg_free(m);
        seen++;
        if (w >= 0 && w != victim && (s.flags & HS_FINAL))
            finals++;
        if (!killed &&
            (by_count ? seen >= kill_at : th_now_ns() - t0 >= kill_after)) {
            REQUIRE_EQ(kill(pid[victim], SIGKILL), 0);
            killed = true;
        }
    }
    for (int i = 0; i < nw; i++) {
        int status = reap(pid[i]);
        bool ok = i == victim ? was_killed(status) : exited_ok(status);
        if (!ok)
            print_status(i == victim ? "victim" : "survivor", status);
        CHECK(ok);
    }
    /* What the victim published before dying may sit behind the
     * survivors' last messages: all of it is in the ring now. */
    mbx_msg *m;
    while (mbx_slot_get_nowait(rd, &m) == 0) {
        seq_take(&c, m, NULL);
        mbx_msg_free(m);
    }
    seq_check_clean(&c);
    if (seq_errors(&c))
        th_abort_test();
    for (int i = 0; i < nw; i++)
        if (i != victim)
            CHECK_EQ(c.next[i], n);
    /* Every message whose send returned is delivered; at most the one
     * the victim was writing when it died is lost. */
    long got = (long)c.next[victim], done = atomic_load(&sh->done[victim]);
    if (got < done || got > done + 1)
        fprintf(stderr, "  round %llu: victim delivered %ld, accepted %ld\n",
                (unsigned long long)round, got, done);
    CHECK(got >= done && got <= done + 1);
    int64_t took = th_now_ns() - t0;
    st->worst_ns = took > st->worst_ns ? took : st->worst_ns;
    st->by_count += by_count;
    st->by_clock += !by_count;
    st->victim_msgs += got;
    st->victim_unacked += got == done + 1;
}

TEST(writers_killed)
{
    private_rundir();
    struct rng r = rng_seeded("writers_killed");
    long rounds = rounds_of(1000, 300), n = sized(2000, 1000);
    /* Two readers for the whole test, so a lock left by a dead writer in
     * one round must be broken in a later one: a tiny ring where writers
     * mostly wait for room, and a large one where they mostly run. */
    char small_name[64], big_name[64], small[80], big[80];
    th_unique(small_name, sizeof small_name, "wk-small");
    th_unique(big_name, sizeof big_name, "wk-big");
    snprintf(small, sizeof small, "//./%s", small_name);
    snprintf(big, sizeof big, "//./%s", big_name);
    mbx_slot *rd_small = open_reader(small, MBX_RING_MIN, 0);
    mbx_slot *rd_big = open_reader(big, MBX_RING_DEFAULT, 0);
    struct wk_shared *sh = shared_alloc(sizeof *sh);
    struct wk_stats st = {0};
    int64_t t0 = th_now_ns();
    for (long i = 0; i < rounds; i++) {
        bool use_small = i % 2;
        wk_round(use_small ? rd_small : rd_big, use_small ? small : big,
                 (uint64_t)i, n, &r, sh, &st);
    }
    CHECK(st.worst_ns < (int64_t)ROUND_BOUND_MS * 1000000);
    /* A writer killed mid-record leaves nothing a reader must drop. */
    struct listed ls = list_name(small_name), lb = list_name(big_name);
    CHECK_EQ(ls.count, 1);
    CHECK_EQ(lb.count, 1);
    CHECK_EQ(ls.dropped, 0);
    CHECK_EQ(lb.dropped, 0);
    printf("  writers_killed: %ld rounds (%ld by message count, %ld by "
           "clock) in %.2f s, worst round %.1f ms; victims delivered %ld "
           "messages (%ld times one whose send never returned); writers' "
           "locks broken: %llu "
           "(small ring) + %llu (large ring)\n",
           rounds, st.by_count, st.by_clock, (double)(th_now_ns() - t0) / 1e9,
           (double)st.worst_ns / 1e6, st.victim_msgs, st.victim_unacked,
           (unsigned long long)broken_locks(rd_small),
           (unsigned long long)broken_locks(rd_big));
    mbx_slot_close(rd_small);
    mbx_slot_close(rd_big);
    munmap(sh, sizeof *sh);
    remove_rundir();
}

/* A writer that dies holding the writers' lock (taken here by hand, so it
 * happens every time) must not wedge the others; while it lives, its lock
 * must stand. */
TEST(lock_holder_killed)
{
    private_rundir();
    char name[64], address[80];
    th_unique(name, sizeof name, "holder");
    snprintf(address, sizeof address, "//./%s", name);
    mbx_slot *rd = open_reader(address, 64 << 10, 0);
    int held[2];
    REQUIRE_EQ(pipe(held), 0);
    pid_t holder = fork_child();
    if (holder == 0) {
        struct mbx__writer *w;
        if (mbx__writer_open(&w, name) < 0)
            _exit(1);
        uint64_t free_word = 0;
        if (!atomic_compare_exchange_strong(&w->ring.hdr->wlock, &free_word,
                                            w->token))
            _exit(2);
        write_byte(held[1], 'h');
        for (;;)
            pause();
    }
    close(held[1]);
    char c;
    REQUIRE(read_all(held[0], &c, 1));
    close(held[0]);
    pid_t writer = fork_writer(address, 0, 1, 0, false, NULL);

    /* Nothing passes a live holder (a negative check over a window). */
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_slot_get(rd, &m, 100), MBX_ETIMEDOUT);
    CHECK_EQ(broken_locks(rd), 0);

    REQUIRE_EQ(kill(holder, SIGKILL), 0);
    CHECK(was_killed(reap(holder)));
    int64_t t0 = th_now_ns();
    int rc = mbx_slot_get(rd, &m, RECV_TIMEOUT_MS);
    int64_t took_ms = (th_now_ns() - t0) / 1000000;
    REQUIRE_EQ(rc, 0);
    struct seqcheck sc;
    seq_init(&sc, 1, 0);
    seq_take(&sc, m, NULL);
    mbx_msg_free(m);
    seq_check_clean(&sc);
    CHECK_EQ(sc.next[0], 1);
    CHECK(took_ms < ENOENT_BOUND_MS);
    CHECK(exited_ok(reap(writer)));
    CHECK_EQ(broken_locks(rd), 1);
    printf("  lock_holder_killed: the waiting writer got through %lld ms "
           "after the holder died\n",
           (long long)took_ms);
    mbx_slot_close(rd);
    remove_rundir();
}

/* The state letter of a process in /proc ('S': asleep), or '?'. */
static char
proc_state(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p[2] : '?';
}

/* A writer killed after publishing its record but before waking the
 * parked reader must not strand the message: the reader gets it without
 * another writer coming by. The instant is emulated: the writer hides the
 * reader's waiter count from its own put (so the put publishes without
 * waking), restores it and dies. */
TEST(writer_killed_before_wake)
{
    private_rundir();
    char name[64], address[80];
    th_unique(name, sizeof name, "nowake");
    snprintf(address, sizeof address, "//./%s", name);
    mbx_slot *rd = open_reader(address, 64 << 10, 0);
    pid_t reader = getpid();
    pid_t writer = fork_child();
    if (writer == 0) {
        struct mbx__writer *w;
        if (mbx__writer_open(&w, name) < 0)
            _exit(1);
        struct mbx__ring_hdr *h = w->ring.hdr;
        /* Wait until the reader sleeps in the kernel. */
        int64_t until = th_now_ns() + (int64_t)RECV_TIMEOUT_MS * 1000000;
        while (!atomic_load(&h->rd_waiters) || proc_state(reader) != 'S')
            if (th_now_ns() > until)
                _exit(2);
            else
                sched_yield();
        struct hs_stamp s;
        hs_stamp_make(&s, 0, 0, 0, HS_FINAL);
        struct mbx__rec_view v = {
            .role = MBX__PLAIN, .kind = "", .body = &s, .body_len = sizeof s};
        uint32_t waiters = atomic_exchange(&h->rd_waiters, 0);
        int rc = mbx__writer_put(w, &v, 0);
        atomic_fetch_add(&h->rd_waiters, waiters);
        if (rc < 0)
            _exit(3);
        raise(SIGKILL);
    }
    int64_t t0 = th_now_ns();
    mbx_msg *m = NULL;
    int rc = mbx_slot_get(rd, &m, 5000);
    int64_t took_ms = (th_now_ns() - t0) / 1000000;
    int status = reap(writer);
    if (!was_killed(status))
        print_status("writer", status);
    CHECK(was_killed(status));
    if (rc != 0) {
        fprintf(stderr,
                "  the reader slept through a published message: %s after "
                "%lld ms\n",
                mbx_strerror_name(rc), (long long)took_ms);
        /* It was in the ring all along. */
        CHECK_EQ(mbx_slot_get_nowait(rd, &m), 0);
    }
    CHECK_EQ(rc, 0);
    CHECK(took_ms < 1000);
    struct seqcheck c;
    seq_init(&c, 1, 0);
    if (m)
        seq_take(&c, m, NULL);
    mbx_msg_free(m);
    seq_check_clean(&c);
    CHECK_EQ(c.next[0], 1);
    mbx_slot_close(rd);
    remove_rundir();
}

/* ---- 4: readers killed at random instants ------------------------------- */

enum rk_mode {
    RK_READING,  /* killed after a random spin while it reads */
    RK_COUNT,    /* killed once it has read a random number of messages */
    RK_FULL,     /* stops reading; killed while the ring is full and the
                  * writer blocked */
    RK_STARTING, /* killed at a random instant from its start, maybe while
                  * it takes the name over */
    RK_MODES,
    RK_FINAL = RK_MODES, /* reads `stop_after` messages, then exits 0 */
};

/* What went wrong in a reader, if anything. */
enum rk_error {
    RK_OK,
    RK_ERR_REGISTER,
    RK_ERR_RECV,
    RK_ERR_CORRUPT,
    RK_ERR_ORDER,
    RK_ERR_NEVER_FULL,
};

struct rk_shared {
    _Atomic long received; /* messages the current reader checked */
    _Atomic int error;     /* enum rk_error */
    _Atomic long err_a, err_b;
};

struct rk_pipes {
    int ready[2]; /* reader -> test: registered */
    int full[2];  /* reader -> killer: the ring is full */
    int stamp[2]; /* killer -> test: when it killed */
};

static _Noreturn void
rk_fail(struct rk_shared *sh, enum rk_error e, long a, long b)
{
    atomic_store(&sh->err_a, a);
    atomic_store(&sh->err_b, b);
    atomic_store(&sh->error, e);
    _exit(3);
}

/* The reader process: takes the name over, then checks that messages of
 * its round arrive from seq 0 without gap or repeat. */
static _Noreturn void
rk_reader(const char *address, uint64_t round, int mode, long stop_after,
          size_t ring, const struct rk_pipes *p, struct rk_shared *sh)
{
    close(p->ready[0]);
    close(p->full[0]);
    mbx_slot *s;
    mbx_slot_opts o = {.ring_size = ring,
                       .message_size = sizeof(struct hs_stamp)};
    mbx_id id;
    int rc = mbx_slot_open(&s, address, &o);
    if (rc == 0)
        rc = mbx_slot_mailbox(s, &id);
    if (rc < 0)
        rk_fail(sh, RK_ERR_REGISTER, rc, 0);
    write_byte(p->ready[1], 'r');
    for (long seq = 0;; seq++) {
        if (seq == stop_after && mode == RK_FINAL)
            _exit(0);
        if (seq == stop_after && mode == RK_FULL) {
            /* Let the writer fill the ring and block, then wait for the
             * killer. */
            int64_t until = th_now_ns() + (int64_t)RECV_TIMEOUT_MS * 1000000;
            while ((rc = mbx_slot_full(s)) != 1)
                if (rc < 0 || th_now_ns() > until)
                    rk_fail(sh, RK_ERR_NEVER_FULL, rc, 0);
                else
                    sched_yield();
            write_byte(p->full[1], 'f');
            for (;;)
                pause();
        }
        mbx_msg *m;
        if ((rc = mbx_slot_get(s, &m, RECV_TIMEOUT_MS)) < 0)
            rk_fail(sh, RK_ERR_RECV, rc, seq);
        size_t len;
        const void *body = mbx_msg_body(m, &len);
        struct hs_stamp st;
        if (!hs_stamp_read(body, len, &st) || st.writer != 0)
            rk_fail(sh, RK_ERR_CORRUPT, seq, 0);
        if (st.round != round || st.seq != (uint64_t)seq)
            rk_fail(sh, RK_ERR_ORDER, (long)st.seq, seq);
        mbx_msg_free(m);
        atomic_store(&sh->received, seq + 1);
    }
}

/* The killer process: waits for its moment, kills the reader and tells
 * the test when. */
static _Noreturn void
rk_killer(pid_t reader, int mode, int64_t delay_ns, long at_count,
          const struct rk_pipes *p, struct rk_shared *sh)
{
    close(p->stamp[0]);
    char c;
    if (mode == RK_FULL)
        read_all(p->full[0], &c, 1); /* EOF if the reader failed */
    if (mode == RK_COUNT) {
        int64_t until = th_now_ns() + (int64_t)RECV_TIMEOUT_MS * 1000000;
        while (atomic_load(&sh->received) < at_count &&
               !atomic_load(&sh->error) && th_now_ns() < until)
            sched_yield();
    } else {
        spin_ns(delay_ns);
    }
    int64_t when = th_now_ns();
    kill(reader, SIGKILL);
    if (write(p->stamp[1], &when, sizeof when) != (ssize_t)sizeof when)
        _exit(1);
    _exit(0);
}

static void
rk_explain(const struct rk_shared *sh)
{
    static const char *const what[] = {"none",    "register",
                                       "receive", "corrupt message",
                                       "order",   "never full"};
    int e = atomic_load(&sh->error);
    fprintf(stderr, "  reader error: %s (%ld, %ld)\n",
            e >= 0 && e <= RK_ERR_NEVER_FULL ? what[e] : "?",
            atomic_load(&sh->err_a), atomic_load(&sh->err_b));
}

/* Sends stamp `seq` of `round`, by mbx_send_to or the writer handle. */
static int
rk_send(const char *address, mbx_slot *w, uint64_t round, long seq)
{
    struct hs_stamp s;
    hs_stamp_make(&s, 0, (uint64_t)seq, round, 0);
    if (w)
        return mbx_slot_put(w, &s, sizeof s);
    mbx_msg *m = mbx_msg_new("", &s, sizeof s);
    int rc = m ? mbx_send_to(address, &m, SEND_TIMEOUT_MS) : MBX_ENOMEM;
    mbx_msg_free(m);
    return rc;
}

struct rk_stats {
    int64_t worst_ns, total_ns;
    long enoent_rounds, modes[RK_MODES], sent;
};

/* One round: a new reader takes the name over, the test writes to it
 * until it is killed, and must then get MBX_ENOENT quickly. */
static void
rk_round(const char *address, mbx_slot *w, uint64_t round, struct rng *r,
         struct rk_shared *sh, struct rk_stats *st)
{
    static const size_t rings[] = {MBX_RING_MIN, 64 << 10, MBX_RING_DEFAULT};
    int mode = (int)rng_below(r, RK_MODES);
    size_t ring = rings[rng_below(r, 3)];
    long stop_after = 1 + (long)rng_below(r, 2000);
    int64_t delay =
        (int64_t)rng_below(r, mode == RK_STARTING ? 1000000 : 3000000);
    atomic_store(&sh->received, 0);
    atomic_store(&sh->error, RK_OK);
    struct rk_pipes p;
    REQUIRE_EQ(pipe(p.ready), 0);
    REQUIRE_EQ(pipe(p.full), 0);
    REQUIRE_EQ(pipe(p.stamp), 0);

    pid_t reader = fork_child();
    if (reader == 0)
        rk_reader(address, round, mode, stop_after, ring, &p, sh);
    close(p.ready[1]);
    close(p.full[1]);
    char c;
    if (mode != RK_STARTING && !read_all(p.ready[0], &c, 1)) {
        print_status("reader", reap(reader));
        rk_explain(sh);
        REQUIRE(!"the reader registered");
    }
    pid_t killer = fork_child();
    if (killer == 0)
        rk_killer(reader, mode, delay, stop_after, &p, sh);
    close(p.full[0]);
    close(p.stamp[1]);

    long sent = 0;
    int rc = 0;
    if (mode != RK_STARTING)
        while ((rc = rk_send(address, w, round, sent)) == 0)
            sent++;
    int64_t failed_at = th_now_ns(), killed_at = 0;
    REQUIRE(read_all(p.stamp[0], &killed_at, sizeof killed_at));
    int status = reap(reader);
    if (mode == RK_STARTING) {
        /* Registered or not, the reader is gone. */
        rc = rk_send(address, w, round, 0);
        failed_at = killed_at;
    }
    if (rc != MBX_ENOENT || !was_killed(status)) {
        fprintf(stderr, "  round %llu, mode %d, ring %zu: send %s after %ld\n",
                (unsigned long long)round, mode, ring, mbx_strerror_name(rc),
                sent);
        print_status("reader", status);
        rk_explain(sh);
    }
    CHECK_EQ(rc, MBX_ENOENT);
    CHECK(was_killed(status));
    CHECK(exited_ok(reap(killer)));
    /* The writer gave up after the reader died, and soon after. */
    CHECK(killed_at <= failed_at);
    int64_t lag = failed_at - killed_at;
    CHECK(lag < (int64_t)ENOENT_BOUND_MS * 1000000);
    long received = atomic_load(&sh->received);
    CHECK(received <= sent);
    /* A dead reader's name is not listed. */
    CHECK_EQ(list_name(address + 4).count, 0);
    if (mode == RK_FULL)
        CHECK_EQ(received, stop_after);
    close(p.ready[0]);
    close(p.stamp[0]);
    if (mode != RK_STARTING) {
        st->worst_ns = lag > st->worst_ns ? lag : st->worst_ns;
        st->total_ns += lag;
        st->enoent_rounds++;
    }
    st->modes[mode]++;
    st->sent += sent;
}

TEST(readers_killed)
{
    private_rundir();
    struct rng r = rng_seeded("readers_killed");
    long rounds = rounds_of(500, 200);
    char name[64], address[80];
    th_unique(name, sizeof name, "rk");
    snprintf(address, sizeof address, "//./%s", name);
    struct rk_shared *sh = shared_alloc(sizeof *sh);
    /* Half the rounds write through one long-lived handle, which must
     * reconnect to each new reader by itself. */
    mbx_slot *w;
    mbx_slot_opts wo = {.timeout_ms = SEND_TIMEOUT_MS};
    REQUIRE_EQ(mbx_slot_open(&w, address, &wo), 0);
    struct rk_stats st = {0};
    int64_t t0 = th_now_ns();
    for (long i = 0; i < rounds; i++)
        rk_round(address, rng_below(&r, 2) ? w : NULL, (uint64_t)i, &r, sh,
                 &st);

    /* A last reader takes the name over and gets every message. */
    long n = sized(20000, 5000);
    struct rk_pipes p;
    REQUIRE_EQ(pipe(p.ready), 0);
    REQUIRE_EQ(pipe(p.full), 0);
    atomic_store(&sh->received, 0);
    atomic_store(&sh->error, RK_OK);
    pid_t reader = fork_child();
    if (reader == 0)
        rk_reader(address, (uint64_t)rounds, RK_FINAL, n, 64 << 10, &p, sh);
    close(p.ready[1]);
    close(p.full[1]);
    char c;
    REQUIRE(read_all(p.ready[0], &c, 1));
    struct listed l = list_name(name);
    CHECK_EQ(l.count, 1);
    CHECK_EQ(l.pid, reader);
    for (long i = 0; i < n; i++) {
        int rc = rk_send(address, i % 2 ? w : NULL, (uint64_t)rounds, i);
        if (rc != 0)
            fprintf(stderr, "  final reader: send %ld: %s\n", i,
                    mbx_strerror_name(rc));
        REQUIRE_EQ(rc, 0);
    }
    int status = reap(reader);
    if (!exited_ok(status)) {
        print_status("final reader", status);
        rk_explain(sh);
    }
    CHECK(exited_ok(status));
    CHECK_EQ(atomic_load(&sh->received), n);
    close(p.ready[0]);
    close(p.full[0]);

    printf("  readers_killed: %ld rounds (reading %ld, count %ld, full %ld, "
           "starting %ld) in %.2f s, %ld messages; MBX_ENOENT %.1f ms after "
           "the kill on average, %.1f ms at worst\n",
           rounds, st.modes[RK_READING], st.modes[RK_COUNT], st.modes[RK_FULL],
           st.modes[RK_STARTING], (double)(th_now_ns() - t0) / 1e9, st.sent,
           st.enoent_rounds
               ? (double)st.total_ns / (double)st.enoent_rounds / 1e6
               : 0.0,
           (double)st.worst_ns / 1e6);
    mbx_slot_close(w);
    munmap(sh, sizeof *sh);
    remove_rundir();
}

/* Candidates racing to take over a dead reader's name. */
struct race_shared {
    _Atomic long received; /* by the winner, in order */
    _Atomic int error;     /* the winner's failure, if any */
};

struct race_pipes {
    int go[2];    /* test -> candidates: start (EOF) */
    int tried[2]; /* candidates -> test: 'w' won, 'r' refused, 'f' failed */
    int done[2];  /* test -> winner: exit (EOF) */
};

/* A candidate: waits for the start, tries to become the reader and says
 * how it went. The winner reads `n` messages of `round` in order, then
 * holds the name until the test lets it go, and exits without releasing
 * it: the next round races for a dead reader's name. */
static _Noreturn void
race_candidate(const char *address, uint64_t round, long n,
               const struct race_pipes *p, struct race_shared *sh)
{
    close(p->go[1]);
    close(p->tried[0]);
    close(p->done[1]);
    char c;
    read_all(p->go[0], &c, 1);
    mbx_slot *s;
    mbx_id id;
    int rc = mbx_slot_open(&s, address, NULL);
    if (rc == 0)
        rc = mbx_slot_mailbox(s, &id);
    write_byte(p->tried[1], rc == 0 ? 'w' : rc == MBX_EEXIST ? 'r' : 'f');
    if (rc < 0)
        _exit(rc == MBX_EEXIST ? 0 : 4);
    for (long i = 0; i < n; i++) {
        mbx_msg *m;
        if ((rc = mbx_slot_get(s, &m, RECV_TIMEOUT_MS)) < 0) {
            atomic_store(&sh->error, rc);
            _exit(5);
        }
        size_t len;
        const void *body = mbx_msg_body(m, &len);
        struct hs_stamp st;
        if (!hs_stamp_read(body, len, &st) || st.round != round ||
            st.seq != (uint64_t)i) {
            atomic_store(&sh->error, 1);
            _exit(6);
        }
        mbx_msg_free(m);
        atomic_store(&sh->received, i + 1);
    }
    read_all(p->done[0], &c, 1);
    _exit(0);
}

/* Three processes race for a name (fresh in round 0, a dead reader's
 * later): exactly one wins, the others get MBX_EEXIST, and a writer
 * delivers to the winner. */
TEST(takeover_race)
{
    private_rundir();
    char name[64], address[80];
    th_unique(name, sizeof name, "race");
    snprintf(address, sizeof address, "//./%s", name);
    struct race_shared *sh = shared_alloc(sizeof *sh);
    long rounds = sized(1000, 300), n = 100;
    enum { CANDIDATES = 3 };
    for (long round = 0; round < rounds; round++) {
        atomic_store(&sh->received, 0);
        atomic_store(&sh->error, 0);
        struct race_pipes p;
        REQUIRE_EQ(pipe(p.go), 0);
        REQUIRE_EQ(pipe(p.tried), 0);
        REQUIRE_EQ(pipe(p.done), 0);
        pid_t pid[CANDIDATES];
        for (int k = 0; k < CANDIDATES; k++) {
            pid[k] = fork_child();
            if (pid[k] == 0)
                race_candidate(address, (uint64_t)round, n, &p, sh);
        }
        close(p.go[0]);
        close(p.tried[1]);
        close(p.done[0]);
        close(p.go[1]); /* go */
        int won = 0, refused = 0, failed = 0;
        for (int k = 0; k < CANDIDATES; k++) {
            char c = 'f';
            read_all(p.tried[0], &c, 1);
            won += c == 'w';
            refused += c == 'r';
            failed += c == 'f';
        }
        close(p.tried[0]);
        if (won != 1 || refused != CANDIDATES - 1)
            fprintf(stderr, "  round %ld: %d won, %d refused, %d failed\n",
                    round, won, refused, failed);
        REQUIRE_EQ(won, 1);
        REQUIRE_EQ(refused, CANDIDATES - 1);
        for (long i = 0; i < n; i++) {
            struct hs_stamp st;
            hs_stamp_make(&st, 0, (uint64_t)i, (uint64_t)round, 0);
            mbx_msg *m = mbx_msg_new("", &st, sizeof st);
            int rc = mbx_send_to(address, &m, SEND_TIMEOUT_MS);
            mbx_msg_free(m);
            if (rc != 0)
                fprintf(stderr, "  round %ld: send %ld: %s\n", round, i,
                        mbx_strerror_name(rc));
            REQUIRE_EQ(rc, 0);
        }
        close(p.done[1]); /* the winner may go once it has read all */
        for (int k = 0; k < CANDIDATES; k++) {
            int status = reap(pid[k]);
            if (!exited_ok(status)) {
                print_status("candidate", status);
                fprintf(stderr, "  winner's error: %d\n",
                        atomic_load(&sh->error));
            }
            CHECK(exited_ok(status));
        }
        CHECK_EQ(atomic_load(&sh->received), n);
    }
    munmap(sh, sizeof *sh);
    remove_rundir();
}

/* ---- 5: another user ------------------------------------------------------
 */

/* What a process of another user could do to the slots. */
struct ou_result {
    int ready;           /* the child got as far as its checks */
    int send_private;    /* mbx_send_to the 0600 slot */
    int put_private;     /* mbx_slot_put to it */
    int get_private;     /* mbx_slot_get on its name */
    int qsize_private;   /* mbx_slot_qsize on it */
    int open_private[3]; /* errno of open(2) O_RDONLY, O_WRONLY, O_RDWR */
    int list_rc;
    int list_private, list_group; /* times mbx_slot_list showed each */
    int send_group;               /* mbx_send_to the 0660 slot */
    int put_group;                /* mbx_slot_put to it */
};

struct ou_names {
    const char *private_name, *group_name;
    char private_address[80], group_address[80];
    char private_file[PATH_MAX], group_file[PATH_MAX];
};

static int
ou_list_fn(const mbx_slot_info *info, void *ctx)
{
    void **a = ctx;
    const struct ou_names *nm = a[0];
    struct ou_result *res = a[1];
    res->list_private += strcmp(info->name, nm->private_name) == 0;
    res->list_group += strcmp(info->name, nm->group_name) == 0;
    return 0;
}

/* Sends one stamp of writer 7 to `address`. */
static int
ou_send(const char *address, uint64_t seq)
{
    struct hs_stamp s;
    hs_stamp_make(&s, 7, seq, 0, 0);
    mbx_msg *m = mbx_msg_new("", &s, sizeof s);
    int rc = mbx_send_to(address, &m, 1000);
    mbx_msg_free(m);
    return rc;
}

static int
ou_put(const char *address, uint64_t seq)
{
    mbx_slot *s;
    mbx_slot_opts o = {.timeout_ms = 1000};
    int rc = mbx_slot_open(&s, address, &o);
    if (rc < 0)
        return rc;
    struct hs_stamp st;
    hs_stamp_make(&st, 7, seq, 0, 0);
    rc = mbx_slot_put(s, &st, sizeof st);
    mbx_slot_close(s);
    return rc;
}

/* In a child: becomes uid:gid with no supplementary groups, tries
 * everything and writes what happened into *res. */
static void
ou_child(uid_t uid, gid_t gid, const struct ou_names *nm, struct ou_result *res)
{
    if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0 ||
        geteuid() != uid || getegid() != gid)
        _exit(1);
    res->ready = 1;
    res->send_private = ou_send(nm->private_address, 0);
    res->put_private = ou_put(nm->private_address, 1);
    mbx_slot *s;
    res->get_private = mbx_slot_open(&s, nm->private_address, NULL);
    if (res->get_private == 0) {
        mbx_msg *m = NULL;
        res->get_private = mbx_slot_get(s, &m, 0);
        mbx_msg_free(m);
        mbx_slot_close(s);
    }
    res->qsize_private = mbx_slot_open(&s, nm->private_address, NULL);
    if (res->qsize_private == 0) {
        res->qsize_private = mbx_slot_qsize(s);
        mbx_slot_close(s);
    }
    static const int flags[3] = {O_RDONLY, O_WRONLY, O_RDWR};
    for (int i = 0; i < 3; i++) {
        int fd = open(nm->private_file, flags[i] | O_CLOEXEC);
        res->open_private[i] = fd < 0 ? errno : 0;
        if (fd >= 0)
            close(fd);
    }
    void *ctx[2] = {(void *)nm, res};
    res->list_rc = mbx_slot_list(ou_list_fn, ctx);
    res->send_group = ou_send(nm->group_address, 0);
    res->put_group = ou_put(nm->group_address, 1);
    _exit(0);
}

/* The ring file of host name `name`, in the runtime directory. */
static void
ring_file(const char *name, char *out, size_t size)
{
    char file[MBX__FILE_NAME_MAX];
    mbx__rundir_file_name(name, ".ring", file);
    snprintf(out, size, "%s/%s", rundir, file);
}

/* Runs ou_child as uid:gid and returns its results. */
static struct ou_result
ou_run(uid_t uid, gid_t gid, const struct ou_names *nm)
{
    struct ou_result *res = shared_alloc(sizeof *res);
    pid_t pid = fork_child();
    if (pid == 0)
        ou_child(uid, gid, nm, res);
    int status = reap(pid);
    if (!exited_ok(status))
        print_status("child of another user", status);
    CHECK(exited_ok(status));
    CHECK(res->ready);
    struct ou_result copy = *res;
    munmap(res, sizeof *res);
    return copy;
}

/* Receives what is waiting in `rd` without blocking, checking each one. */
static long
ou_drain(mbx_slot *rd, struct seqcheck *c)
{
    long n = 0;
    mbx_msg *m;
    while (mbx_slot_get_nowait(rd, &m) == 0) {
        seq_take(c, m, NULL);
        mbx_msg_free(m);
        n++;
    }
    return n;
}

TEST(other_user)
{
    if (geteuid() != 0) {
        fprintf(stderr, "  other_user needs root (to run a child as user "
                        "nobody); CI runs it as root. Run this test as "
                        "root.\n");
        REQUIRE(!"other_user runs as root");
    }
    private_rundir();
    /* Searchable by everyone: only the ring's own mode keeps others out. */
    REQUIRE_EQ(chmod(rundir, 0755), 0);
    char private_name[64], group_name[64];
    struct ou_names nm = {.private_name = private_name,
                          .group_name = group_name};
    th_unique(private_name, sizeof private_name, "ou-private");
    th_unique(group_name, sizeof group_name, "ou-group");
    snprintf(nm.private_address, sizeof nm.private_address, "//./%s",
             private_name);
    snprintf(nm.group_address, sizeof nm.group_address, "//./%s", group_name);
    mbx_slot *rd_private = open_reader(nm.private_address, 64 << 10, 0);
    mbx_slot *rd_group = open_reader(nm.group_address, 64 << 10, 0660);
    ring_file(private_name, nm.private_file, sizeof nm.private_file);
    ring_file(group_name, nm.group_file, sizeof nm.group_file);
    struct stat ps, gs, ds;
    REQUIRE_EQ(stat(nm.private_file, &ps), 0);
    REQUIRE_EQ(stat(nm.group_file, &gs), 0);
    CHECK_EQ(ps.st_mode & 07777, 0600);
    CHECK_EQ(gs.st_mode & 07777, 0660);
    const uid_t nobody = 65534;
    const gid_t nogroup = 65534;
    REQUIRE(gs.st_gid != nogroup);

    /* nobody:nogroup can do nothing with either slot. */
    struct ou_result out = ou_run(nobody, nogroup, &nm);
    CHECK_EQ(out.send_private, MBX_EPERM);
    CHECK_EQ(out.put_private, MBX_EPERM);
    /* Reading the name must fail outright, never "become the reader"
     * (0 or MBX_EAGAIN): nobody cannot even make a ring in the directory. */
    CHECK_EQ(out.get_private, MBX_EPERM);
    CHECK_EQ(out.qsize_private, MBX_EPERM);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(out.open_private[i], EACCES);
    CHECK_EQ(out.list_rc, 0);
    CHECK_EQ(out.list_private, 0); /* cannot read it: not listed */
    CHECK_EQ(out.list_group, 0);
    CHECK_EQ(out.send_group, MBX_EPERM);
    CHECK_EQ(out.put_group, MBX_EPERM);

    /* nobody in the group ring's group writes to it, and still not to the
     * private one. */
    struct ou_result in = ou_run(nobody, gs.st_gid, &nm);
    CHECK_EQ(in.send_private, MBX_EPERM);
    CHECK_EQ(in.put_private, MBX_EPERM);
    CHECK_EQ(in.get_private, MBX_EPERM);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(in.open_private[i], EACCES);
    CHECK_EQ(in.list_rc, 0);
    CHECK_EQ(in.list_private, 0);
    CHECK_EQ(in.list_group, 1);
    CHECK_EQ(in.send_group, 0);
    CHECK_EQ(in.put_group, 0);

    /* Nothing reached the private slot; both messages reached the group
     * slot, intact and in order. */
    struct seqcheck pc, gc;
    seq_init(&pc, 8, 0);
    seq_init(&gc, 8, 0);
    CHECK_EQ(ou_drain(rd_private, &pc), 0);
    CHECK_EQ(mbx_slot_qsize(rd_private), 0);
    CHECK_EQ(ou_drain(rd_group, &gc), 2);
    seq_check_clean(&gc);
    CHECK_EQ(gc.next[7], 2);

    /* The owner lists both; nobody left a file behind; the directory
     * kept its mode. */
    struct ou_result mine = {0};
    void *ctx[2] = {&nm, &mine};
    CHECK_EQ(mbx_slot_list(ou_list_fn, ctx), 0);
    CHECK_EQ(mine.list_private, 1);
    CHECK_EQ(mine.list_group, 1);
    DIR *d = opendir(rundir);
    REQUIRE(d != NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat fs;
        if (fstatat(dirfd(d), e->d_name, &fs, AT_SYMLINK_NOFOLLOW) == 0 &&
            fs.st_uid == nobody) {
            fprintf(stderr, "  left by nobody: %s\n", e->d_name);
            CHECK(fs.st_uid != nobody);
        }
    }
    closedir(d);
    REQUIRE_EQ(stat(rundir, &ds), 0);
    CHECK_EQ(ds.st_mode & 07777, 0755);
    mbx_slot_close(rd_private);
    mbx_slot_close(rd_group);
    remove_rundir();
}
