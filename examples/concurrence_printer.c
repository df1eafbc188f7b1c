/*
 * concurrence_printer: the printer tasklet of Concurrence, written with mbx.
 *
 * A task (a thread with its own mailbox) receives messages in a loop and
 * acts on their kind:
 *
 *   MSG_GREETING(name, excitement=N)  prints "Hello, <name>" and N '!'
 *   MSG_FAREWELL(name, excitement=N)  prints "Goodbye, <name>" and N '!'
 *   MSG_SUM(a, b, ...)                a call: replies with the sum
 *   MSG_STOP()                        ends the loop, and so the task
 *
 * The arguments travel as mbx_args (positional and keyword values encoded as
 * MessagePack). The main thread sends greetings without waiting (Concurrence's
 * MSG.send), calls MSG_SUM and waits for the reply (MSG.call), then stops the
 * printer, sees it go DOWN through a monitor, and joins it.
 *
 * Build on its own:
 *   cc -std=c11 concurrence_printer.c $(pkg-config --cflags --libs mbx)
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbx/mbx.h>

/* Message kinds: Concurrence declares one Message class per kind. */
#define MSG_GREETING "MSG_GREETING"
#define MSG_FAREWELL "MSG_FAREWELL"
#define MSG_SUM "MSG_SUM"
#define MSG_STOP "MSG_STOP"

/* How long any step may wait before the example gives up (milliseconds). */
#define PATIENCE_MS 5000

/* What the printer's handler returns to end its receive loop. Any non-zero
 * value would do; errors are negative, so a positive one is unmistakable. */
#define PRINTER_STOP 1

/* Ends the program on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "concurrence_printer: %s: %s (%s)\n", what,
            mbx_strerror_name(rc), mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

static void
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
}

/* ---- the printer task --------------------------------------------------- */

/* MSG_GREETING and MSG_FAREWELL: one positional name, one keyword int. */
static int
print_words(const mbx_msg *m, const char *words)
{
    mbx_args *a;
    const char *name;
    int64_t excitement = 0;
    int rc = mbx_msg_args(m, &a);
    if (rc < 0)
        return rc;
    rc = mbx_args_get_str(a, 0, &name, NULL);
    if (rc == 0)
        rc = mbx_args_kw_int(a, "excitement", &excitement);
    if (rc == 0) {
        printf("printer: %s, %s", words, name);
        for (int64_t i = 0; i < excitement; i++)
            putchar('!');
        putchar('\n');
    }
    mbx_args_free(a);
    return rc;
}

/* MSG_SUM: adds the positional ints and answers the caller. */
static int
reply_sum(mbx_msg *req)
{
    mbx_args *a, *result;
    int64_t sum = 0, v;
    int rc = mbx_msg_args(req, &a);
    if (rc < 0)
        return rc;
    for (size_t i = 0; rc == 0 && i < mbx_args_len(a); i++) {
        rc = mbx_args_get_int(a, i, &v); /* MBX_ETYPE if not an int */
        if (rc == 0)
            sum += v;
    }
    mbx_args_free(a);
    if (rc < 0)
        return rc;

    /* The reply is an ordinary message; its args hold the sum. */
    if (!(result = mbx_args_new()))
        return MBX_ENOMEM;
    rc = mbx_args_add_int(result, sum);
    mbx_msg *reply = rc == 0 ? mbx_msg_new_args(MSG_SUM, result) : NULL;
    mbx_args_free(result);
    if (rc < 0)
        return rc;
    if (!reply)
        return MBX_ENOMEM;
    /* mbx_reply takes the reply on success; the request stays ours (the
     * receive loop frees it when we return). */
    rc = mbx_reply(req, &reply);
    mbx_msg_free(reply);
    return rc;
}

/* Called by mbx_receive_loop for every message, in arrival order. */
static int
printer_handle(mbx_id self, mbx_msg **m, void *ctx)
{
    const char *kind = mbx_msg_kind(*m);
    (void)self;
    (void)ctx;
    if (strcmp(kind, MSG_GREETING) == 0)
        return print_words(*m, "Hello");
    if (strcmp(kind, MSG_FAREWELL) == 0)
        return print_words(*m, "Goodbye");
    if (strcmp(kind, MSG_SUM) == 0 && mbx_msg_is_call(*m))
        return reply_sum(*m);
    if (strcmp(kind, MSG_STOP) == 0) {
        printf("printer: stopping\n");
        return PRINTER_STOP;
    }
    /* Like Concurrence, ignore kinds we do not know. Freeing an unknown
     * call request (the loop does it) makes its caller return at once. */
    return 0;
}

/* The task's function. When it returns, mbx destroys the task's mailbox. */
static void
printer(mbx_id self, void *arg)
{
    (void)arg;
    int rc = mbx_receive_loop(self, printer_handle, NULL);
    if (rc != PRINTER_STOP)
        fail("printer", rc);
}

/* ---- the main thread ----------------------------------------------------- */

/* Sends kind(name, excitement=n) to `to` without waiting for it to be
 * handled: Concurrence's MSG_XXX.send(task)(...). */
static void
send_words(mbx_id to, const char *kind, const char *name, int64_t n)
{
    mbx_args *a = mbx_args_new();
    if (!a)
        fail("mbx_args_new", MBX_ENOMEM);
    check(mbx_args_add_str(a, name), "mbx_args_add_str");
    check(mbx_args_set_int(a, "excitement", n), "mbx_args_set_int");
    mbx_msg *m = mbx_msg_new_args(kind, a);
    mbx_args_free(a); /* the message holds its own encoded copy */
    if (!m)
        fail("mbx_msg_new_args", MBX_ENOMEM);
    check(mbx_send(to, &m, PATIENCE_MS), "mbx_send");
}

/* Calls MSG_SUM(values...) and returns the sum: MSG_SUM.call(task)(...). */
static int64_t
call_sum(mbx_id to, const int64_t *values, size_t n)
{
    mbx_args *a = mbx_args_new();
    mbx_msg *req, *reply;
    int64_t sum;
    if (!a)
        fail("mbx_args_new", MBX_ENOMEM);
    for (size_t i = 0; i < n; i++)
        check(mbx_args_add_int(a, values[i]), "mbx_args_add_int");
    req = mbx_msg_new_args(MSG_SUM, a);
    mbx_args_free(a);
    if (!req)
        fail("mbx_msg_new_args", MBX_ENOMEM);

    /* Blocks until the printer replies (or the timeout, or the printer
     * dies: then MBX_ECLOSED at once). */
    check(mbx_call(to, &req, &reply, PATIENCE_MS), "mbx_call");
    check(mbx_msg_args(reply, &a), "mbx_msg_args");
    check(mbx_args_get_int(a, 0, &sum), "mbx_args_get_int");
    mbx_args_free(a);
    mbx_msg_free(reply);
    return sum;
}

int
main(void)
{
    static const int64_t values[] = {1, 2, 3, 4};
    mbx_id self, task, who;
    mbx_msg *m;

    /* The main thread's own mailbox, to hear from the monitor. */
    check(mbx_create(&self, NULL), "mbx_create");

    /* Start the printer and watch it: when its mailbox goes away, `self`
     * gets a "DOWN" message. */
    check(mbx_spawn(&task, printer, NULL), "mbx_spawn");
    check(mbx_monitor(self, task), "mbx_monitor");

    /* Asynchronous sends: they return as soon as the message is queued. */
    send_words(task, MSG_GREETING, "world", 1);
    send_words(task, MSG_FAREWELL, "world", 3);

    /* A synchronous call. The printer handles its mailbox in order, so both
     * lines above are printed before this reply comes back. */
    int64_t sum = call_sum(task, values, 4);
    printf("main: MSG_SUM(1, 2, 3, 4) = %" PRId64 "\n", sum);

    /* Ask the printer to stop, then wait for its DOWN message. A selective
     * receive takes the first "DOWN" and would leave any other kind queued. */
    m = mbx_msg_new(MSG_STOP, NULL, 0);
    if (!m)
        fail("mbx_msg_new", MBX_ENOMEM);
    check(mbx_send(task, &m, PATIENCE_MS), "mbx_send (stop)");
    check(mbx_recv_kind(self, "DOWN", &m, PATIENCE_MS), "mbx_recv_kind");
    check(mbx_msg_down(m, &who), "mbx_msg_down");
    mbx_msg_free(m);
    if (who != task)
        fail("DOWN from another mailbox", MBX_EINVAL);
    printf("main: printer is DOWN\n");

    /* The thread itself may still be finishing: join it. */
    check(mbx_join(task, PATIENCE_MS), "mbx_join");
    printf("main: printer joined\n");

    /* A task's mailbox dies with it: nothing is silently lost. */
    m = mbx_msg_new(MSG_GREETING, NULL, 0);
    if (!m)
        fail("mbx_msg_new", MBX_ENOMEM);
    int rc = mbx_send(task, &m, PATIENCE_MS);
    mbx_msg_free(m);
    if (rc != MBX_ENOENT)
        fail("send after the task ended", rc);
    printf("main: send to the ended printer -> MBX_ENOENT\n");

    check(mbx_destroy(self), "mbx_destroy");
    return EXIT_SUCCESS;
}
