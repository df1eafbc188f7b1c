/*
 * dispatch_libevent: mpdispatcher's "listening process with its own event
 * loop", with libevent.
 *
 * mpdispatcher's last case is a listening process that must run another
 * framework's blocking event loop, as a GUI process does. It suggests a
 * helper thread that waits for events and has their handlers run back in
 * the loop's thread (Glib's idle_add, Trio's "guest mode"), and leaves the
 * example as a TODO.
 *
 * With mbx no helper thread is needed: the receiver gives a file
 * descriptor, mbx_receiver_fd, readable while events wait
 * (level-triggered), and the loop watches it like any other source. Here
 * the child's loop is libevent's: an event made with event_new on that fd
 * (EV_READ | EV_PERSIST) handles every waiting event with
 * mbx_handle_until_blocking, which never blocks, so the handlers run in
 * the loop's own thread between its other callbacks. A persistent timer
 * event stands for the loop's own work, a task that computes one square
 * per tick (0, 1, 4). The parent fires three on_value events (43, 54, 87)
 * and closes the sender; each event is deleted when its part is done, and
 * the loop returns when none is left.
 *
 * How the events and the ticks interleave changes from run to run, so the
 * child collects both sequences and prints them at the end; the parent
 * prints after the child has exited. So the output is always the same.
 *
 * Build on its own:
 *   cc -std=c11 dispatch_libevent.c $(pkg-config --cflags --libs mbx libevent)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <mbx/mbx.h>

#define N_SQUARES 3      /* the task's ticks, one square each */
#define TICK_MS 10       /* the timer's period */
#define PATIENCE_MS 5000 /* longest run before the example gives up */

/* What the parent fires, one on_value event each. */
static const int64_t values[] = {43, 54, 87};
#define N_VALUES (sizeof values / sizeof values[0])

/* The child's loop and what it has seen so far; the callbacks get it as
 * their argument. */
struct listener {
    mbx_receiver *r;
    struct event *readable;     /* the receiver's fd */
    struct event *tick;         /* the task */
    struct event *watchdog;     /* gives up if the run takes far too long */
    int64_t events[N_VALUES];   /* values handled, in order */
    size_t n_events;            /* entries of events[] */
    int64_t squares[N_SQUARES]; /* the task's results */
    size_t n_squares;           /* entries of squares[] */
    int closed;                 /* the parent's close was consumed */
};

/* Who is talking, for error messages. */
static const char *role = "dispatch_libevent";

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

/* Ends the process on a failed libevent call (they return -1 or NULL and
 * say no more). */
static void
fail_event(const char *what)
{
    fprintf(stderr, "%s: %s failed\n", role, what);
    exit(EXIT_FAILURE);
}

static void
check_event(int rc, const char *what)
{
    if (rc < 0)
        fail_event(what);
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

/* Once both parts are done, the watchdog goes too; the loop then returns,
 * having no event left. */
static void
maybe_finish(struct listener *lp)
{
    if (lp->closed && lp->n_squares == N_SQUARES)
        check_event(event_del(lp->watchdog), "event_del");
}

/* The fd is readable: handle every waiting event, without blocking. */
static void
on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct listener *lp = arg;
    (void)fd;
    (void)what;
    int rc = mbx_handle_until_blocking(lp->r);
    /* Before the close is consumed, MBX_ECLOSED means that the parent
     * went away without closing. */
    check(rc, "mbx_handle_until_blocking");
    /* Once the close is consumed the receiver is done: stop watching its
     * fd, which may stay readable. */
    rc = mbx_receiver_fd(lp->r);
    if (rc == MBX_ECLOSED) {
        check_event(event_del(lp->readable), "event_del");
        lp->closed = 1;
        maybe_finish(lp);
        return;
    }
    check(rc, "mbx_receiver_fd");
}

/* The loop's own work: one square per tick, then the timer stops. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct listener *lp = arg;
    (void)fd;
    (void)what;
    int64_t i = (int64_t)lp->n_squares;
    lp->squares[lp->n_squares++] = i * i;
    if (lp->n_squares == N_SQUARES) {
        check_event(event_del(lp->tick), "event_del");
        maybe_finish(lp);
    }
}

static void
on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
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

/* Makes the three events on `base` and adds them. */
static void
add_events(struct listener *lp, struct event_base *base, int fd)
{
    const struct timeval every = {0, TICK_MS * 1000};
    const struct timeval patience = {PATIENCE_MS / 1000,
                                     PATIENCE_MS % 1000 * 1000};

    /* EV_PERSIST: the event stays added after each callback. The fd is
     * level-triggered, as libevent watches it without EV_ET. */
    lp->readable = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, lp);
    /* A timer event has no fd; EV_PERSIST makes it periodic. */
    lp->tick = event_new(base, -1, EV_PERSIST, on_tick, lp);
    lp->watchdog = event_new(base, -1, 0, on_watchdog, lp);
    if (!lp->readable || !lp->tick || !lp->watchdog)
        fail_event("event_new");
    check_event(event_add(lp->readable, NULL), "event_add");
    check_event(event_add(lp->tick, &every), "event_add");
    check_event(event_add(lp->watchdog, &patience), "event_add");
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
    int fd = mbx_receiver_fd(lp.r);
    check(fd, "mbx_receiver_fd");
    /* The base is made in the child, after the fork, so it needs no
     * event_reinit. */
    struct event_base *base = event_base_new();
    if (!base)
        fail_event("event_base_new");
    add_events(&lp, base, fd);

    /* Events fired earlier would wait in the ring all the same; the parent
     * waits for this byte only so that its events come while the loop
     * runs, which is the case this example shows. */
    if (write(ready, "R", 1) != 1)
        fail_errno("write");
    close(ready);
    /* Returns 1 when no event is left (how this loop ends), -1 on error. */
    check_event(event_base_dispatch(base), "event_base_dispatch");
    if (!lp.closed || lp.n_squares != N_SQUARES)
        fail("event_base_dispatch returned early", MBX_EINVAL);

    print_list("events handled:", lp.events, lp.n_events);
    print_list("task computed: ", lp.squares, lp.n_squares);
    /* Free the events (the fd's before the dispatcher closes the fd), then
     * the base. */
    event_free(lp.readable);
    event_free(lp.tick);
    event_free(lp.watchdog);
    event_base_free(base);
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
    printf("main: a dispatcher, then fork: the child runs a libevent loop, "
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
