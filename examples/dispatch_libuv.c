/*
 * dispatch_libuv: mpdispatcher's "listening process with concurrency",
 * with a libuv loop.
 *
 * In mpdispatcher a listening process that has asynchronous work of its
 * own runs the receiver as one more coroutine next to that work:
 *
 *   async def asyncio_main(receiver):
 *       await asyncio.wait([some_async_task(),
 *                           receiver.coro_handle_until_closed()])
 *
 * The same program as dispatch_epoll.c, written for libuv: in the child, a
 * uv_poll_t watches the receiver's fd (mbx_receiver_fd, readable while
 * events wait) and a uv_timer_t drives the "other work", a task that
 * computes one square per tick (0, 1, 4). When the fd is readable, the
 * poll callback handles every waiting event with
 * mbx_handle_until_blocking, which never blocks. The parent fires three
 * on_value events (43, 54, 87) and closes the sender; each watcher stops
 * when its part is done, and uv_run returns when none is left.
 *
 * How the events and the ticks interleave changes from run to run, so the
 * child collects both sequences and prints them at the end; the parent
 * prints after the child has exited. So the output is always the same.
 *
 * Build on its own:
 *   cc -std=c11 dispatch_libuv.c $(pkg-config --cflags --libs mbx libuv)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mbx/mbx.h>
#include <uv.h>

#define N_SQUARES 3      /* the task's ticks, one square each */
#define TICK_MS 10       /* the timer's period */
#define PATIENCE_MS 5000 /* longest run before the example gives up */

/* What the parent fires, one on_value event each. */
static const int64_t values[] = {43, 54, 87};
#define N_VALUES (sizeof values / sizeof values[0])

/* The child's loop and what it has seen so far; the callbacks reach it
 * through handle->data. */
struct listener {
    mbx_receiver *r;
    uv_poll_t poll;             /* the receiver's fd */
    uv_timer_t tick;            /* the task */
    uv_timer_t watchdog;        /* gives up if the run takes far too long */
    int64_t events[N_VALUES];   /* values handled, in order */
    size_t n_events;            /* entries of events[] */
    int64_t squares[N_SQUARES]; /* the task's results */
    size_t n_squares;           /* entries of squares[] */
    int closed;                 /* the parent's close was consumed */
};

/* Who is talking, for error messages. */
static const char *role = "dispatch_libuv";

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

/* Ends the process on a libuv error (libuv also returns -errno codes). */
static void
check_uv(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "%s: %s: %s\n", role, what, uv_strerror(rc));
        exit(EXIT_FAILURE);
    }
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

/* Once both parts are done, the watchdog goes too; uv_run then returns,
 * having no active handle left. */
static void
maybe_finish(struct listener *lp)
{
    if (lp->closed && lp->n_squares == N_SQUARES)
        check_uv(uv_timer_stop(&lp->watchdog), "uv_timer_stop");
}

/* The fd is readable: handle every waiting event, without blocking. */
static void
on_readable(uv_poll_t *h, int status, int events)
{
    struct listener *lp = h->data;
    (void)events;
    check_uv(status, "uv_poll");
    int rc = mbx_handle_until_blocking(lp->r);
    /* Before the close is consumed, MBX_ECLOSED means that the parent
     * went away without closing. */
    check(rc, "mbx_handle_until_blocking");
    /* Once the close is consumed the receiver is done: stop watching its
     * fd, which may stay readable. */
    rc = mbx_receiver_fd(lp->r);
    if (rc == MBX_ECLOSED) {
        check_uv(uv_poll_stop(&lp->poll), "uv_poll_stop");
        lp->closed = 1;
        maybe_finish(lp);
        return;
    }
    check(rc, "mbx_receiver_fd");
}

/* The other work: one square per tick, then the timer stops. */
static void
on_tick(uv_timer_t *t)
{
    struct listener *lp = t->data;
    int64_t i = (int64_t)lp->n_squares;
    lp->squares[lp->n_squares++] = i * i;
    if (lp->n_squares == N_SQUARES) {
        check_uv(uv_timer_stop(&lp->tick), "uv_timer_stop");
        maybe_finish(lp);
    }
}

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    fail("the loop", MBX_ETIMEDOUT);
}

static void
print_list(const char *what, const int64_t *v, size_t n)
{
    printf("listener: %s [", what);
    for (size_t i = 0; i < n; i++)
        printf("%s%" PRId64, i ? ", " : "", v[i]);
    printf("]\n");
}

/* Starts the three watchers on `loop`. */
static void
start_watchers(struct listener *lp, uv_loop_t *loop, int fd)
{
    check_uv(uv_poll_init(loop, &lp->poll, fd), "uv_poll_init");
    check_uv(uv_timer_init(loop, &lp->tick), "uv_timer_init");
    check_uv(uv_timer_init(loop, &lp->watchdog), "uv_timer_init");
    lp->poll.data = lp->tick.data = lp->watchdog.data = lp;
    check_uv(uv_poll_start(&lp->poll, UV_READABLE, on_readable),
             "uv_poll_start");
    check_uv(uv_timer_start(&lp->tick, on_tick, TICK_MS, TICK_MS),
             "uv_timer_start");
    check_uv(uv_timer_start(&lp->watchdog, on_watchdog, PATIENCE_MS, 0),
             "uv_timer_start");
}

/* The child: connects the handler, sets up the loop, tells the parent on
 * `ready`, and runs the loop. */
static int
listen_in_loop(mbx_dispatcher *d, int ready)
{
    static struct listener lp;
    uv_loop_t loop;

    role = "listener";
    lp.r = mbx_dispatcher_receiver(d);
    /* Handlers first: an event handled without one is ignored. */
    check(mbx_connect(lp.r, "on_value", on_value, &lp), "mbx_connect");
    /* The fd belongs to the dispatcher: never read or close it yourself. */
    int fd = mbx_receiver_fd(lp.r);
    check(fd, "mbx_receiver_fd");
    /* The loop is made in the child, after the fork, so it needs no
     * uv_loop_fork. */
    check_uv(uv_loop_init(&loop), "uv_loop_init");
    start_watchers(&lp, &loop, fd);

    /* Events fired earlier would wait in the ring all the same; the parent
     * waits for this byte only so that its events come while the loop
     * runs, which is the case this example shows. */
    if (write(ready, "R", 1) != 1)
        fail_errno("write");
    close(ready);
    check_uv(uv_run(&loop, UV_RUN_DEFAULT), "uv_run");
    if (!lp.closed || lp.n_squares != N_SQUARES)
        fail("uv_run returned early", MBX_EINVAL);

    print_list("events handled:", lp.events, lp.n_events);
    print_list("task computed: ", lp.squares, lp.n_squares);
    /* Close the handles (the poll handle before the dispatcher closes its
     * fd), let libuv finish closing them, then free the loop. */
    uv_close((uv_handle_t *)&lp.poll, NULL);
    uv_close((uv_handle_t *)&lp.tick, NULL);
    uv_close((uv_handle_t *)&lp.watchdog, NULL);
    check_uv(uv_run(&loop, UV_RUN_DEFAULT), "uv_run");
    check_uv(uv_loop_close(&loop), "uv_loop_close");
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
    printf("main: a dispatcher, then fork: the child runs a libuv loop, "
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
