/*
 * libuv_loop: a mailbox inside a libuv event loop.
 *
 * The same program as epoll_loop.c, written for libuv: a uv_poll_t watches
 * the mailbox's fd (mbx_fd) and a uv_timer_t stands for the loop's other
 * work. When the fd is readable, the callback receives with timeout 0 until
 * MBX_EAGAIN; the fd is level-triggered, so nothing is left behind.
 *
 * A producer task sends N numbered messages and then "done"; the loop checks
 * that they arrive complete and in order, and prints a summary.
 *
 * Build on its own:
 *   cc -std=c11 libuv_loop.c $(pkg-config --cflags --libs mbx libuv)
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbx/mbx.h>
#include <uv.h>

#define N_MESSAGES 20000 /* numbered messages the producer sends */
#define BATCH 2000       /* the producer pauses after each batch */
#define TICK_MS 1        /* the timer's period */
#define MIN_TICKS 3      /* the loop runs until it has seen this many */
#define PATIENCE_MS 5000 /* longest wait before the example gives up */

/* Everything the callbacks share; reached through handle->data. */
struct app {
    mbx_id box;
    uv_poll_t poll;      /* the mailbox's fd */
    uv_timer_t tick;     /* the other work */
    uv_timer_t watchdog; /* gives up if the run takes far too long */
    uint64_t received;   /* numbered messages received */
    uint64_t sum;        /* sum of their numbers */
    uint64_t ticks;      /* timer callbacks */
    int done;            /* the producer's "done" arrived */
};

/* Ends the program on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "libuv_loop: %s: %s (%s)\n", what, mbx_strerror_name(rc),
            mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

static void
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
}

/* Ends the program on a libuv error (libuv also returns -errno codes). */
static void
check_uv(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "libuv_loop: %s: %s\n", what, uv_strerror(rc));
        exit(EXIT_FAILURE);
    }
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

/* Stops every watcher once the work is over; uv_run then returns. */
static void
maybe_finish(struct app *app)
{
    if (!app->done || app->ticks < MIN_TICKS)
        return;
    check_uv(uv_poll_stop(&app->poll), "uv_poll_stop");
    check_uv(uv_timer_stop(&app->tick), "uv_timer_stop");
    check_uv(uv_timer_stop(&app->watchdog), "uv_timer_stop");
}

/* Handles one message from the producer. */
static void
handle(struct app *app, const mbx_msg *m)
{
    uint64_t n;
    size_t len;
    const void *body = mbx_msg_body(m, &len);
    if (len != sizeof n)
        fail("unexpected body size", MBX_EBADMSG);
    memcpy(&n, body, sizeof n);
    if (strcmp(mbx_msg_kind(m), "done") == 0) {
        app->done = 1;
        return;
    }
    if (n != app->received)
        fail("message out of order", MBX_EBADMSG);
    app->received++;
    app->sum += n;
}

/* The mailbox's fd is readable: receive without blocking until MBX_EAGAIN. */
static void
on_readable(uv_poll_t *h, int status, int events)
{
    struct app *app = h->data;
    (void)events;
    check_uv(status, "uv_poll");
    for (;;) {
        mbx_msg *m;
        int rc = mbx_recv(app->box, &m, 0);
        if (rc == MBX_EAGAIN)
            break;
        check(rc, "mbx_recv");
        handle(app, m);
        mbx_msg_free(m);
    }
    maybe_finish(app);
}

static void
on_tick(uv_timer_t *t)
{
    struct app *app = t->data;
    app->ticks++;
    maybe_finish(app);
}

static void
on_watchdog(uv_timer_t *t)
{
    (void)t;
    fail("the loop", MBX_ETIMEDOUT);
}

int
main(void)
{
    static struct app app;
    uv_loop_t loop;
    mbx_id task;
    mbx_stats st;

    check(mbx_create(&app.box, NULL), "mbx_create");
    /* The fd belongs to the mailbox: never read or close it yourself. */
    int fd = mbx_fd(app.box);
    check(fd, "mbx_fd");

    check_uv(uv_loop_init(&loop), "uv_loop_init");
    check_uv(uv_poll_init(&loop, &app.poll, fd), "uv_poll_init");
    check_uv(uv_timer_init(&loop, &app.tick), "uv_timer_init");
    check_uv(uv_timer_init(&loop, &app.watchdog), "uv_timer_init");
    app.poll.data = app.tick.data = app.watchdog.data = &app;
    check_uv(uv_poll_start(&app.poll, UV_READABLE, on_readable),
             "uv_poll_start");
    check_uv(uv_timer_start(&app.tick, on_tick, TICK_MS, TICK_MS),
             "uv_timer_start");
    check_uv(uv_timer_start(&app.watchdog, on_watchdog, PATIENCE_MS, 0),
             "uv_timer_start");

    check(mbx_spawn(&task, producer, &app.box), "mbx_spawn");
    check_uv(uv_run(&loop, UV_RUN_DEFAULT), "uv_run");
    check(mbx_join(task, PATIENCE_MS), "mbx_join");

    printf("received %" PRIu64 " of %d messages, in order\n", app.received,
           N_MESSAGES);
    printf("sum of their numbers: %" PRIu64 "\n", app.sum);
    printf("timer ticked meanwhile: %s\n",
           app.ticks >= MIN_TICKS ? "yes" : "no");
    check(mbx_stat(app.box, &st), "mbx_stat");
    printf("mailbox stats: sent %" PRIu64 ", received %" PRIu64
           ", queued %" PRIu64 "\n",
           st.sent, st.received, st.queued);

    /* Close the handles (the poll handle before the mailbox closes its fd),
     * let libuv finish closing them, then free the loop. */
    uv_close((uv_handle_t *)&app.poll, NULL);
    uv_close((uv_handle_t *)&app.tick, NULL);
    uv_close((uv_handle_t *)&app.watchdog, NULL);
    check_uv(uv_run(&loop, UV_RUN_DEFAULT), "uv_run");
    check_uv(uv_loop_close(&loop), "uv_loop_close");
    check(mbx_destroy(app.box), "mbx_destroy");
    return EXIT_SUCCESS;
}
