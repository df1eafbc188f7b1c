/*
 * winsys_local_slot: winsys's "a local mailslot read and written" recipe,
 * written with mbx.
 *
 * winsys (Python) wraps Windows mailslots in a Queue-like object:
 *
 *   reader = ipc.mailslot("cookbook")
 *   writer = ipc.mailslot("cookbook")
 *   writer.put("Hello"); writer.put("World")
 *   reader.get()                          # "Hello"
 *   writer.put("STOP")
 *   for message in reader: ...            # until "STOP"
 *
 * mbx_slot is that object in C. One process opens the same host mailslot
 * twice: the first use of a handle fixes its role, so one handle reads and
 * the other writes. The program puts and gets in turn, shows the errors a
 * winsys user meets (an empty slot, a timeout, a handle used the wrong way,
 * a name already read, a full ring, a message too large), and ends with the
 * "for each message until STOP" loop.
 *
 * The slot lives in the runtime directory ($MBX_RUNTIME_DIR, else
 * $XDG_RUNTIME_DIR/mbx, else /tmp/mbx-UID), so another process could write
 * to it as well; winsys_reader_process shows that.
 *
 * Build on its own:
 *   cc -std=c11 winsys_local_slot.c $(pkg-config --cflags --libs mbx)
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbx/mbx.h>

/* The slot's name in the two spellings of a host mailslot. */
#define SLOT_WINDOWS "\\\\.\\mailslot\\cookbook"
#define SLOT_URI "//./cookbook"

#define MESSAGE_SIZE 1024 /* the writer's largest body */
#define SHORT_MS 50       /* a wait that is meant to expire */
#define PATIENCE_MS 5000  /* longest wait before the example gives up */
#define MAX_FILL 64       /* puts allowed to fill the ring, as a bound */

/* Ends the program on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "winsys_local_slot: %s: %s (%s)\n", what,
            mbx_strerror_name(rc), mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

/* Every mbx call that should succeed goes through check(). */
static int
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
    return rc;
}

/* The calls that should fail in a known way go through expect(), which
 * prints the line that explains them. */
static void
expect(int rc, int expected, const char *line)
{
    if (rc != expected)
        fail(line, rc);
    printf("%s -> %s\n", line, mbx_strerror_name(rc));
}

/* Writes a text message (its bytes, without the NUL). */
static void
put_text(mbx_slot *writer, const char *text)
{
    check(mbx_slot_put(writer, text, strlen(text)), "mbx_slot_put");
    printf("writer: put \"%s\"\n", text);
}

/* Prints a message's body as text and frees the message. Bodies are bytes,
 * not C strings, so the length comes from the message. */
static void
print_and_free(const char *line, mbx_msg *m)
{
    size_t len;
    const char *text = mbx_msg_body(m, &len);
    printf("%s \"%.*s\"\n", line, (int)len, text ? text : "");
    mbx_msg_free(m);
}

/* What qsize(), empty() and full() say, from one handle's side. */
static void
print_state(const char *who, mbx_slot *s)
{
    int qsize = check(mbx_slot_qsize(s), "mbx_slot_qsize");
    int empty = check(mbx_slot_empty(s), "mbx_slot_empty");
    int full = check(mbx_slot_full(s), "mbx_slot_full");
    printf("%s: qsize() = %d, empty() = %d, full() = %d\n", who, qsize, empty,
           full);
}

/* Put and get in turn, then the two ways a get finds nothing. */
static void
hello_world(mbx_slot *reader, mbx_slot *writer)
{
    mbx_msg *m = NULL;

    /* A mailslot exists while someone reads it: nobody does yet. */
    expect(mbx_slot_put(writer, "Hello", 5), MBX_ENOENT,
           "writer: put before anyone reads");

    /* The reader's first get takes the name; the slot is still empty. */
    expect(mbx_slot_get_nowait(reader, &m), MBX_EAGAIN,
           "reader: get_nowait() takes the name, nothing yet");

    put_text(writer, "Hello");
    put_text(writer, "World");
    print_state("writer", writer);

    /* get(timeout) returns as soon as a message is there. */
    check(mbx_slot_get(reader, &m, PATIENCE_MS), "mbx_slot_get");
    print_and_free("reader: get() ->", m);
    check(mbx_slot_get(reader, &m, PATIENCE_MS), "mbx_slot_get");
    print_and_free("reader: get() ->", m);
    print_state("reader", reader);

    /* Empty again: get_nowait fails at once, get(timeout) after waiting.
     * Neither consumes anything. */
    expect(mbx_slot_get_nowait(reader, &m), MBX_EAGAIN,
           "reader: get_nowait() on the empty slot");
    expect(mbx_slot_get(reader, &m, SHORT_MS), MBX_ETIMEDOUT,
           "reader: get() with a 50 ms timeout");
}

/* The errors of using a handle, or a name, the wrong way. */
static void
misuse(mbx_slot *reader, mbx_slot *writer)
{
    mbx_slot *second;
    mbx_msg *m = NULL;

    /* winsys's x_mailslot_invalid_use: a handle keeps its first role. */
    expect(mbx_slot_get_nowait(writer, &m), MBX_EPERM,
           "writer: get_nowait() on the writing handle");
    expect(mbx_slot_put(reader, "oops", 4), MBX_EPERM,
           "reader: put() on the reading handle");

    /* One reader per name on a host, as with Windows mailslots. */
    check(mbx_slot_open(&second, SLOT_URI, NULL), "mbx_slot_open");
    expect(mbx_slot_get_nowait(second, &m), MBX_EEXIST,
           "second reader: get_nowait() on a name already read");
    mbx_slot_close(second);
}

/* Fills the reader's small ring until a put waits for room and times out;
 * full() then says 1. The reader drains everything. */
static void
fill_and_drain(mbx_slot *reader, mbx_slot *writer)
{
    static char block[MESSAGE_SIZE + 1];
    mbx_msg *m = NULL;
    int put = 0, got = 0, rc;

    /* The writer's timeout option bounds each put's wait for room. */
    memset(block, 'x', sizeof block);
    while ((rc = mbx_slot_put(writer, block, MESSAGE_SIZE)) == 0) {
        if (++put == MAX_FILL)
            fail("the ring never filled up", MBX_EINVAL);
    }
    expect(rc, MBX_ETIMEDOUT,
           "writer: put 1 KiB messages until one waits 50 ms for room");
    printf("writer: full() = %d\n",
           check(mbx_slot_full(writer), "mbx_slot_full"));

    /* Larger than the writer's message_size: refused, nothing sent. */
    expect(mbx_slot_put(writer, block, MESSAGE_SIZE + 1), MBX_EMSGSIZE,
           "writer: a 1025-byte put (message_size is 1024)");

    while (mbx_slot_get_nowait(reader, &m) == 0) {
        mbx_msg_free(m);
        got++;
    }
    if (got != put)
        fail("the reader did not get every message", MBX_EBADMSG);
    printf("reader: got them all back with get_nowait()\n");
    print_state("writer", writer);
}

/* The reader's loop: every message until the sentinel "STOP". */
static void
until_stop(mbx_slot *reader, mbx_slot *writer)
{
    mbx_msg *m = NULL;
    int rc;

    put_text(writer, "one");
    put_text(writer, "two");
    put_text(writer, "three");
    put_text(writer, "STOP");
    while ((rc = mbx_slot_next(reader, &m, "STOP", 4, PATIENCE_MS)) > 0)
        print_and_free("reader: next() ->", m);
    check(rc, "mbx_slot_next");
    printf("reader: next() -> 0 at \"STOP\"\n");
}

int
main(void)
{
    /* The writer's options: bodies up to 1 KiB, and a put into a full ring
     * waits at most 50 ms. The reader asks for the smallest ring (4 KiB)
     * so that a few messages fill it. */
    mbx_slot_opts wo = {.message_size = MESSAGE_SIZE, .timeout_ms = SHORT_MS};
    mbx_slot_opts ro = {.ring_size = MBX_RING_MIN};
    mbx_slot *reader, *writer;

    /* Opening touches nothing; the first use decides the role. */
    check(mbx_slot_open(&reader, SLOT_WINDOWS, &ro), "mbx_slot_open");
    check(mbx_slot_open(&writer, SLOT_URI, &wo), "mbx_slot_open");
    printf("open: %s twice (it is also %s)\n", SLOT_WINDOWS, SLOT_URI);

    hello_world(reader, writer);
    misuse(reader, writer);
    fill_and_drain(reader, writer);
    until_stop(reader, writer);

    /* Closing the reader gives the name up: writers find nobody. */
    mbx_slot_close(reader);
    expect(mbx_slot_put(writer, "anyone?", 7), MBX_ENOENT,
           "writer: put after the reader closed");
    mbx_slot_close(writer);
    return EXIT_SUCCESS;
}
