/*
 * epoll_loop: a mailbox inside an epoll event loop.
 *
 * mbx_fd() gives a file descriptor that is readable while the mailbox holds
 * messages. An event loop waits on it next to its other sources (here a
 * timerfd standing for "other work"), and when it is readable, receives with
 * timeout 0 until MBX_EAGAIN. The fd is level-triggered: as long as one
 * message is left, it stays readable, so the loop cannot miss one.
 *
 * A producer task sends N numbered messages and then "done"; the loop checks
 * that they arrive complete and in order, and prints a summary.
 *
 * Build on its own:
 *   cc -std=c11 epoll_loop.c $(pkg-config --cflags --libs mbx) -pthread
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <mbx/mbx.h>

#define N_MESSAGES 20000 /* numbered messages the producer sends */
#define BATCH 2000       /* the producer pauses after each batch */
#define TICK_MS 1        /* the timer's period */
#define MIN_TICKS 3      /* the loop runs until it has seen this many */
#define PATIENCE_MS 5000 /* longest wait before the example gives up */

/* Tags for epoll_event.data, to tell the sources apart. */
enum { SOURCE_MAILBOX = 1, SOURCE_TIMER = 2 };

/* What the loop has seen so far. */
struct loop {
    mbx_id box;
    uint64_t received; /* numbered messages received */
    uint64_t sum;      /* sum of their numbers */
    uint64_t ticks;    /* timer expirations */
    int done;          /* the producer's "done" arrived */
};

/* Ends the program on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "epoll_loop: %s: %s (%s)\n", what, mbx_strerror_name(rc),
            mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

static void
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
}

/* Ends the program on a failed system call. */
static void
fail_errno(const char *what)
{
    fprintf(stderr, "epoll_loop: %s: %s\n", what, strerror(errno));
    exit(EXIT_FAILURE);
}

static void
send_number(mbx_id to, const char *kind, uint64_t n)
{
    mbx_msg *m = mbx_msg_new(kind, &n, sizeof n);
    if (!m)
        fail("mbx_msg_new", MBX_ENOMEM);
    check(mbx_send(to, &m, PATIENCE_MS), "mbx_send");
}

/* The producer task: `arg` points to the loop's mailbox id. */
static void
producer(mbx_id self, void *arg)
{
    mbx_id to = *(const mbx_id *)arg;
    const struct timespec pause = {0, 2 * 1000 * 1000};
    (void)self;
    for (uint64_t i = 0; i < N_MESSAGES; i++) {
        send_number(to, "work", i);
        if ((i + 1) % BATCH == 0)
            nanosleep(&pause, NULL); /* let the timer have its turns */
    }
    send_number(to, "done", N_MESSAGES);
}

/* 1 if fd is readable right now, else 0. */
static int
readable(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n = poll(&p, 1, 0);
    if (n < 0)
        fail_errno("poll");
    return n > 0 && (p.revents & POLLIN);
}

/* Shows the level-triggered contract on two queued messages. */
static void
show_level_triggered(mbx_id box, int fd)
{
    mbx_msg *m;
    send_number(box, "hello", 1);
    send_number(box, "hello", 2);
    printf("2 messages pending: fd %s\n", readable(fd) ? "readable" : "idle");
    check(mbx_recv(box, &m, 0), "mbx_recv");
    mbx_msg_free(m);
    printf("1 message pending:  fd %s\n", readable(fd) ? "readable" : "idle");
    check(mbx_recv(box, &m, 0), "mbx_recv");
    mbx_msg_free(m);
    if (mbx_recv(box, &m, 0) != MBX_EAGAIN)
        fail("mbx_recv on an empty mailbox", MBX_EINVAL);
    printf("0 messages pending: fd %s\n", readable(fd) ? "readable" : "idle");
}

/* Handles one message from the producer. */
static void
handle(struct loop *lp, const mbx_msg *m)
{
    uint64_t n;
    size_t len;
    const void *body = mbx_msg_body(m, &len);
    if (len != sizeof n)
        fail("unexpected body size", MBX_EBADMSG);
    memcpy(&n, body, sizeof n);
    if (strcmp(mbx_msg_kind(m), "done") == 0) {
        lp->done = 1;
        return;
    }
    if (n != lp->received)
        fail("message out of order", MBX_EBADMSG);
    lp->received++;
    lp->sum += n;
}

/* The mailbox is readable: take everything that is there, without blocking,
 * until MBX_EAGAIN says it is empty. */
static void
drain_mailbox(struct loop *lp)
{
    for (;;) {
        mbx_msg *m;
        int rc = mbx_recv(lp->box, &m, 0);
        if (rc == MBX_EAGAIN)
            return;
        check(rc, "mbx_recv");
        handle(lp, m);
        mbx_msg_free(m);
    }
}

/* The "other work": count the timer's expirations. */
static void
on_timer(struct loop *lp, int tfd)
{
    uint64_t expirations;
    if (read(tfd, &expirations, sizeof expirations) < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        fail_errno("read timerfd");
    }
    lp->ticks += expirations;
}

static int
make_timer(void)
{
    struct itimerspec every = {
        .it_interval = {0, TICK_MS * 1000 * 1000},
        .it_value = {0, TICK_MS * 1000 * 1000},
    };
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0)
        fail_errno("timerfd_create");
    if (timerfd_settime(tfd, 0, &every, NULL) < 0)
        fail_errno("timerfd_settime");
    return tfd;
}

static void
watch(int ep, int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        fail_errno("epoll_ctl");
}

/* Runs until the producer is done and the timer has ticked a few times. */
static void
run_loop(struct loop *lp, int ep, int tfd)
{
    while (!lp->done || lp->ticks < MIN_TICKS) {
        struct epoll_event events[4];
        int n = epoll_wait(ep, events, 4, PATIENCE_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail_errno("epoll_wait");
        if (n == 0)
            fail("epoll_wait", MBX_ETIMEDOUT);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == SOURCE_MAILBOX)
                drain_mailbox(lp);
            else
                on_timer(lp, tfd);
        }
    }
}

int
main(void)
{
    struct loop lp = {0};
    mbx_id task;
    mbx_stats st;

    check(mbx_create(&lp.box, NULL), "mbx_create");
    /* The fd belongs to the mailbox: never read or close it yourself. */
    int fd = mbx_fd(lp.box);
    check(fd, "mbx_fd");
    show_level_triggered(lp.box, fd);

    int tfd = make_timer();
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        fail_errno("epoll_create1");
    watch(ep, fd, SOURCE_MAILBOX); /* level-triggered: no EPOLLET */
    watch(ep, tfd, SOURCE_TIMER);

    check(mbx_spawn(&task, producer, &lp.box), "mbx_spawn");
    run_loop(&lp, ep, tfd);
    check(mbx_join(task, PATIENCE_MS), "mbx_join");

    printf("received %" PRIu64 " of %d messages, in order\n", lp.received,
           N_MESSAGES);
    printf("sum of their numbers: %" PRIu64 "\n", lp.sum);
    printf("timer ticked meanwhile: %s\n",
           lp.ticks >= MIN_TICKS ? "yes" : "no");
    check(mbx_stat(lp.box, &st), "mbx_stat");
    printf("mailbox stats: sent %" PRIu64 ", received %" PRIu64
           ", queued %" PRIu64 "\n",
           st.sent, st.received, st.queued);

    /* Stop watching the fd before the mailbox (and so the fd) goes away. */
    if (epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) < 0)
        fail_errno("epoll_ctl");
    close(ep);
    close(tfd);
    check(mbx_destroy(lp.box), "mbx_destroy");
    return EXIT_SUCCESS;
}
