/*
 * dispatch_epoll: mpdispatcher's "listening process with concurrency",
 * with an epoll loop.
 *
 * In mpdispatcher a listening process that has asynchronous work of its
 * own runs the receiver as one more coroutine next to that work:
 *
 *   async def asyncio_main(receiver):
 *       await asyncio.wait([some_async_task(),
 *                           receiver.coro_handle_until_closed()])
 *
 * In C the receiver gives a file descriptor, mbx_receiver_fd, readable
 * while events wait (level-triggered), so any event loop can watch it next
 * to its other sources. Here the child runs an epoll loop over that fd and
 * a timerfd. The timer drives the "other work", a task that computes one
 * square per tick (0, 1, 4); when the fd is readable, the loop handles
 * every waiting event with mbx_handle_until_blocking, which never blocks.
 * The parent fires three on_value events (43, 54, 87) and closes the
 * sender; the loop ends once it has consumed the close and the task is
 * done.
 *
 * How the events and the ticks interleave changes from run to run, so the
 * child collects both sequences and prints them at the end; the parent
 * prints after the child has exited. So the output is always the same.
 *
 * Build on its own:
 *   cc -std=c11 dispatch_epoll.c $(pkg-config --cflags --libs mbx)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <mbx/mbx.h>

#define N_SQUARES 3      /* the task's ticks, one square each */
#define TICK_MS 10       /* the timer's period */
#define PATIENCE_MS 5000 /* longest wait before the example gives up */

/* What the parent fires, one on_value event each. */
static const int64_t values[] = {43, 54, 87};
#define N_VALUES (sizeof values / sizeof values[0])

/* Tags for epoll_event.data, to tell the sources apart. */
enum { SOURCE_DISPATCHER = 1, SOURCE_TIMER = 2 };

/* The child's loop and what it has seen so far. */
struct listener {
    mbx_receiver *r;
    int ep;                     /* the epoll instance */
    int fd;                     /* the receiver's fd (the dispatcher's) */
    int tfd;                    /* the task's timerfd */
    int64_t events[N_VALUES];   /* values handled, in order */
    size_t n_events;            /* entries of events[] */
    int64_t squares[N_SQUARES]; /* the task's results */
    size_t n_squares;           /* entries of squares[] */
    int closed;                 /* the parent's close was consumed */
};

/* Who is talking, for error messages. */
static const char *role = "dispatch_epoll";

/* Ends the process on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", role, what, mbx_strerror_name(rc),
            mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

static void
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
}

/* Ends the process on a failed system call. */
static void
fail_errno(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", role, what, strerror(errno));
    exit(EXIT_FAILURE);
}

/* ---- the listener (child) ----------------------------------------------- */

/* on_value(value): records the value. A negative return stops the
 * handling, and mbx_handle_until_blocking returns it. */
static int
on_value(const char *event, const mbx_args *args, void *ctx)
{
    struct listener *lp = ctx;
    int64_t v;
    (void)event;
    int rc = mbx_args_get_int(args, 0, &v);
    if (rc < 0)
        return rc;
    if (lp->n_events == N_VALUES)
        return MBX_EBADMSG; /* more events than the parent fires */
    lp->events[lp->n_events++] = v;
    return 0;
}

static void
watch(int ep, int fd, uint32_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = tag};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        fail_errno("epoll_ctl");
}

static void
unwatch(int ep, int fd)
{
    if (epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL) < 0)
        fail_errno("epoll_ctl");
}

/* The fd is readable: handle every waiting event, without blocking. */
static void
on_dispatcher(struct listener *lp)
{
    int rc = mbx_handle_until_blocking(lp->r);
    /* Before the close is consumed, MBX_ECLOSED means that the parent
     * went away without closing. */
    check(rc, "mbx_handle_until_blocking");
    /* Once the close is consumed the receiver is done: stop watching its
     * fd, which may stay readable. */
    rc = mbx_receiver_fd(lp->r);
    if (rc == MBX_ECLOSED) {
        unwatch(lp->ep, lp->fd);
        lp->closed = 1;
        return;
    }
    check(rc, "mbx_receiver_fd");
}

/* The other work: one square per tick, then the timer stops. */
static void
on_timer(struct listener *lp)
{
    uint64_t expirations;
    if (read(lp->tfd, &expirations, sizeof expirations) < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return;
        fail_errno("read timerfd");
    }
    for (; expirations > 0 && lp->n_squares < N_SQUARES; expirations--) {
        int64_t i = (int64_t)lp->n_squares;
        lp->squares[lp->n_squares++] = i * i;
    }
    if (lp->n_squares == N_SQUARES) {
        const struct itimerspec off = {{0, 0}, {0, 0}};
        if (timerfd_settime(lp->tfd, 0, &off, NULL) < 0)
            fail_errno("timerfd_settime");
        unwatch(lp->ep, lp->tfd);
    }
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

/* Runs until the close is consumed and the task is done. */
static void
run_loop(struct listener *lp)
{
    while (!lp->closed || lp->n_squares < N_SQUARES) {
        struct epoll_event events[2];
        int n = epoll_wait(lp->ep, events, 2, PATIENCE_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fail_errno("epoll_wait");
        if (n == 0)
            fail("epoll_wait", MBX_ETIMEDOUT);
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == SOURCE_DISPATCHER)
                on_dispatcher(lp);
            else
                on_timer(lp);
        }
    }
}

static void
print_list(const char *what, const int64_t *v, size_t n)
{
    printf("listener: %s [", what);
    for (size_t i = 0; i < n; i++)
        printf("%s%" PRId64, i ? ", " : "", v[i]);
    printf("]\n");
}

/* The child: connects the handler, sets up the loop, tells the parent on
 * `ready`, and runs the loop. */
static int
listen_in_loop(mbx_dispatcher *d, int ready)
{
    static struct listener lp;

    role = "listener";
    lp.r = mbx_dispatcher_receiver(d);
    /* Handlers first: an event handled without one is ignored. */
    check(mbx_connect(lp.r, "on_value", on_value, &lp), "mbx_connect");
    /* The fd belongs to the dispatcher: never read or close it yourself. */
    lp.fd = mbx_receiver_fd(lp.r);
    check(lp.fd, "mbx_receiver_fd");
    lp.tfd = make_timer();
    lp.ep = epoll_create1(EPOLL_CLOEXEC);
    if (lp.ep < 0)
        fail_errno("epoll_create1");
    watch(lp.ep, lp.fd, SOURCE_DISPATCHER); /* level-triggered: no EPOLLET */
    watch(lp.ep, lp.tfd, SOURCE_TIMER);

    /* Events fired earlier would wait in the ring all the same; the parent
     * waits for this byte only so that its events come while the loop
     * runs, which is the case this example shows. */
    if (write(ready, "R", 1) != 1)
        fail_errno("write");
    close(ready);
    run_loop(&lp);

    print_list("events handled:", lp.events, lp.n_events);
    print_list("task computed: ", lp.squares, lp.n_squares);
    close(lp.ep);
    close(lp.tfd);
    mbx_dispatcher_free(d);
    return EXIT_SUCCESS;
}

/* ---- the firing process (parent) ---------------------------------------- */

/* Waits for the child's byte. EOF means it failed before its loop. */
static void
wait_ready(int ready)
{
    char c;
    ssize_t n;

    while ((n = read(ready, &c, 1)) < 0 && errno == EINTR)
        ;
    if (n < 0)
        fail_errno("read");
    if (n == 0) {
        fprintf(stderr, "%s: the listener ended before its loop\n", role);
        exit(EXIT_FAILURE);
    }
    close(ready);
}

/* Fires the values and closes the sender. */
static void
fire_all(mbx_dispatcher *d)
{
    mbx_sender *s = mbx_dispatcher_sender(d);
    for (size_t i = 0; i < N_VALUES; i++)
        check(mbx_firef(s, "on_value", "i", values[i]), "mbx_firef");
    check(mbx_sender_close(s), "mbx_sender_close");
}

/* Waits for the listener and checks that it succeeded. */
static void
wait_listener(pid_t pid)
{
    int status;

    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            fail_errno("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: the listener failed (status %#x)\n", role,
                (unsigned)status);
        exit(EXIT_FAILURE);
    }
}

int
main(void)
{
    mbx_dispatcher *d;
    int ready[2];

    /* Made before fork, so that both processes hold both ends. */
    check(mbx_dispatcher_new(&d, NULL), "mbx_dispatcher_new");
    printf("main: a dispatcher, then fork: the child runs an epoll loop, "
           "the parent fires\n");
    /* Whatever is buffered now would be printed twice after fork. */
    fflush(stdout);
    if (pipe(ready) != 0)
        fail_errno("pipe");
    pid_t pid = fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid == 0) {
        close(ready[0]);
        return listen_in_loop(d, ready[1]);
    }

    role = "parent";
    close(ready[1]);
    wait_ready(ready[0]);
    fire_all(d);
    wait_listener(pid);
    printf("parent: fired %zu events and closed; the listener exited with "
           "status 0\n",
           N_VALUES);
    mbx_dispatcher_free(d);
    return EXIT_SUCCESS;
}
