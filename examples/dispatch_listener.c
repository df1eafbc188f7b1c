/*
 * dispatch_listener: mpdispatcher's "pure listening process", written with
 * mbx.
 *
 * In mpdispatcher a process that does nothing but listen connects its
 * handlers and blocks in handle_until_closed, while another process fires
 * events and finally closes the sender:
 *
 *   def proc_target(receiver):
 *       receiver.connect("on_new_user", handle_new_user)
 *       receiver.connect("on_delete_user", handle_delete_user)
 *       receiver.handle_until_closed()
 *
 *   disp = MpDispatcher()
 *   mp.Process(target=proc_target, args=[disp.receiver]).start()
 *   disp.sender.fire("on_new_user", "Jerry")
 *   disp.sender.close()
 *
 * Here the program creates the dispatcher and forks. The child is the
 * listener: it connects its handlers and runs mbx_handle_until_closed. The
 * parent fires a few events with mbx_firef, with positional and keyword
 * args, one of them an event that nobody handles, and closes the sender.
 *
 * The parent may fire before the child has connected anything: events wait
 * in the dispatcher's ring until a receiver handles them, so no handshake
 * is needed. The child must connect its handlers before it handles,
 * though, since an event without handlers is ignored (and counted).
 *
 * Only the child prints while both processes run; the parent prints after
 * the child has exited. So the output is always the same.
 *
 * Build on its own:
 *   cc -std=c11 dispatch_listener.c $(pkg-config --cflags --libs mbx)
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

/* Who is talking, for error messages. */
static const char *role = "dispatch_listener";

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

/* What the listener's handlers share, through their ctx. */
struct users {
    int64_t count; /* users created and not deleted */
};

/* A string argument given either positionally at index i or by keyword,
 * as a Python function's parameter may be. Returns 0 or the getter's
 * error (MBX_ENOENT when it is given neither way). */
static int
str_arg(const mbx_args *args, size_t i, const char *key, const char **out)
{
    if (i < mbx_args_len(args))
        return mbx_args_get_str(args, i, out, NULL);
    return mbx_args_kw_str(args, key, out, NULL);
}

/* on_new_user(name, age=None): greets the user. A negative return stops
 * the handling, and mbx_handle_until_closed returns it. */
static int
greet(const char *event, const mbx_args *args, void *ctx)
{
    const char *name;
    int64_t age;
    (void)event;
    (void)ctx;
    int rc = str_arg(args, 0, "name", &name);
    if (rc < 0)
        return rc;
    rc = mbx_args_kw_int(args, "age", &age);
    if (rc == MBX_ENOENT) {
        printf("listener: Hello %s (age not given).\n", name);
        return 0;
    }
    if (rc < 0)
        return rc;
    printf("listener: Hello %s (age %" PRId64 ").\n", name, age);
    return 0;
}

/* A second handler of on_new_user: it runs after greet, since handlers
 * of one event run in the order they were connected. */
static int
count_new_user(const char *event, const mbx_args *args, void *ctx)
{
    struct users *users = ctx;
    (void)event;
    (void)args;
    users->count++;
    printf("listener: %" PRId64 " user(s) now.\n", users->count);
    return 0;
}

/* on_delete_user(name). */
static int
say_goodbye(const char *event, const mbx_args *args, void *ctx)
{
    struct users *users = ctx;
    const char *name;
    (void)event;
    int rc = str_arg(args, 0, "name", &name);
    if (rc < 0)
        return rc;
    users->count--;
    printf("listener: Goodbye %s, %" PRId64 " user(s) left.\n", name,
           users->count);
    return 0;
}

/* The child: connects the handlers, then handles events until the close. */
static int
listen_until_closed(mbx_dispatcher *d)
{
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct users users = {0};
    mbx_receiver_stats st;

    role = "listener";
    check(mbx_connect(r, "on_new_user", greet, NULL), "mbx_connect");
    check(mbx_connect(r, "on_new_user", count_new_user, &users), "mbx_connect");
    check(mbx_connect(r, "on_delete_user", say_goodbye, &users), "mbx_connect");
    /* Returns 0 once the parent's close is consumed, after every event
     * fired before it; MBX_ECLOSED if the parent died without closing. */
    check(mbx_handle_until_closed(r), "mbx_handle_until_closed");

    check(mbx_receiver_stat(r, &st), "mbx_receiver_stat");
    printf("listener: closed; %" PRIu64 " event(s) handled, %" PRIu64
           " without a handler\n",
           st.handled, st.ignored);
    mbx_dispatcher_free(d);
    return EXIT_SUCCESS;
}

/* ---- the firing process (parent) ---------------------------------------- */

/* Fires the events and closes the sender; nothing here waits for the
 * listener, which handles them whenever it gets to them. */
static void
fire_all(mbx_dispatcher *d)
{
    mbx_sender *s = mbx_dispatcher_sender(d);

    /* fire("on_new_user", "Jerry", age=34): "s" is one positional string,
     * and after '|' each keyword value follows its key. */
    check(mbx_firef(s, "on_new_user", "s|i", "Jerry", "age", (int64_t)34),
          "mbx_firef");
    /* fire("on_new_user", name="Elaine"): keyword arguments only. */
    check(mbx_firef(s, "on_new_user", "|s", "name", "Elaine"), "mbx_firef");
    /* Nobody connected on_login: the listener counts it and goes on. */
    check(mbx_firef(s, "on_login", "s", "Kramer"), "mbx_firef");
    check(mbx_firef(s, "on_delete_user", "s", "Newman"), "mbx_firef");
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

    /* Made before fork, so that both processes hold both ends. */
    check(mbx_dispatcher_new(&d, NULL), "mbx_dispatcher_new");
    printf("main: a dispatcher, then fork: the child listens, "
           "the parent fires\n");
    /* Whatever is buffered now would be printed twice after fork. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid == 0)
        return listen_until_closed(d);

    role = "parent";
    fire_all(d);
    wait_listener(pid);
    printf("parent: fired 4 events and closed; the listener exited with "
           "status 0\n");
    mbx_dispatcher_free(d);
    return EXIT_SUCCESS;
}
