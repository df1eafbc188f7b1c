/*
 * dispatch_peer: a separate program that uses a dispatcher made by the
 * test process, so tests can check fork+exec (a fresh process image that
 * shares nothing with the test but the fds named by the handle).
 *
 *   dispatch_peer HANDLE fire COUNT          fire COUNT "seq" events, one
 *                                            "typed" event, then close
 *   dispatch_peer HANDLE fire-noclose COUNT  the same without the close
 *   dispatch_peer HANDLE recv COUNT          handle until closed, expecting
 *                                            COUNT "seq" events in order and
 *                                            one "typed" event
 *
 * HANDLE comes from mbx_dispatcher_export. A "seq" event carries the
 * positional args ("peer", i) for i = 0 .. COUNT-1; a "typed" event carries
 * the args of dispatch_args.h. Exit status: 0 when all went as expected,
 * 2 bad arguments, 3 the import failed, 4 a fire or the close failed,
 * 5 wrong "seq" events, 6 wrong "typed" args, 7 handle_until_closed did
 * not return 0.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_args.h"
#include "mbx/mbx.h"

struct seen {
    long count;    /* "seq" events */
    long bad;      /* "seq" events out of order or with wrong args */
    long typed;    /* "typed" events */
    int typed_bad; /* da_check's result for the first bad one */
};

static int
usage(void)
{
    fprintf(stderr, "usage: dispatch_peer HANDLE fire|fire-noclose|recv "
                    "COUNT\n");
    return 2;
}

static int
on_seq(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct seen *s = ctx;
    const char *who;
    size_t len;
    int64_t i;
    if (mbx_args_len(a) != 2 || mbx_args_get_str(a, 0, &who, &len) != 0 ||
        strcmp(who, "parent") != 0 || mbx_args_get_int(a, 1, &i) != 0 ||
        i != s->count)
        s->bad++;
    s->count++;
    return 0;
}

static int
on_typed(const char *event, const mbx_args *a, void *ctx)
{
    (void)event;
    struct seen *s = ctx;
    int rc = da_check(a);
    if (rc != 0 && s->typed_bad == 0)
        s->typed_bad = rc;
    s->typed++;
    return 0;
}

static int
fire(mbx_dispatcher *d, long count, int close)
{
    mbx_sender *s = mbx_dispatcher_sender(d);
    for (long i = 0; i < count; i++) {
        int rc = mbx_firef(s, "seq", "si", "peer", (int64_t)i);
        if (rc != 0) {
            fprintf(stderr, "dispatch_peer: fire %ld: %s\n", i,
                    mbx_strerror_name(rc));
            return 4;
        }
    }
    mbx_args *a = da_build();
    int rc = a ? mbx_fire(s, "typed", a) : MBX_ENOMEM;
    mbx_args_free(a);
    if (rc == 0 && close)
        rc = mbx_sender_close(s);
    if (rc != 0) {
        fprintf(stderr, "dispatch_peer: typed/close: %s\n",
                mbx_strerror_name(rc));
        return 4;
    }
    return 0;
}

static int
receive(mbx_dispatcher *d, long count)
{
    mbx_receiver *r = mbx_dispatcher_receiver(d);
    struct seen s = {0};
    if (mbx_connect(r, "seq", on_seq, &s) != 0 ||
        mbx_connect(r, "typed", on_typed, &s) != 0)
        return 3;
    int rc = mbx_handle_until_closed(r);
    if (rc != 0) {
        fprintf(stderr, "dispatch_peer: handle_until_closed: %s\n",
                mbx_strerror_name(rc));
        return 7;
    }
    if (s.count != count || s.bad) {
        fprintf(stderr, "dispatch_peer: %ld seq events (%ld bad), want %ld\n",
                s.count, s.bad, count);
        return 5;
    }
    if (s.typed != 1 || s.typed_bad) {
        fprintf(stderr,
                "dispatch_peer: %ld typed events, first mismatch at "
                "dispatch_args.h:%d\n",
                s.typed, s.typed_bad);
        return 6;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc != 4)
        return usage();
    char *end;
    long count = strtol(argv[3], &end, 10);
    if (*end || count < 0)
        return usage();
    mbx_dispatcher *d;
    int rc = mbx_dispatcher_import(&d, argv[1]);
    if (rc != 0) {
        fprintf(stderr, "dispatch_peer: import %s: %s\n", argv[1],
                mbx_strerror_name(rc));
        return 3;
    }
    if (strcmp(argv[2], "fire") == 0)
        rc = fire(d, count, 1);
    else if (strcmp(argv[2], "fire-noclose") == 0)
        rc = fire(d, count, 0);
    else if (strcmp(argv[2], "recv") == 0)
        rc = receive(d, count);
    else
        rc = usage();
    mbx_dispatcher_free(d);
    return rc;
}
