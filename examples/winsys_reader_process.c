/*
 * winsys_reader_process: winsys's "a reader process iterating a slot while
 * another process writes" recipe, written with mbx.
 *
 * In winsys one process iterates over a mailslot until a sentinel,
 *
 *   for message in ipc.mailslot("cookbook"):
 *       if message == "STOP": break
 *       print(message)
 *
 * while another process opens the same name and puts messages into it.
 * Here the program forks: the child is the reader, the parent the writer.
 * The child takes the name with a first get_nowait() and only then tells
 * the parent, through a pipe, that it is ready, so the parent never writes
 * to a name nobody reads (no sleeps, no retries). The parent writes a few
 * lines of text, then a burst of numbered messages into the reader's small
 * ring (the writer waits for room whenever the reader falls behind), then
 * "STOP". Messages from one writer arrive in the order it wrote them: the
 * reader checks the numbers. Once the reader has exited, the name is free
 * again.
 *
 * Only the reader prints while the two processes run, and each process
 * prints only after the step the other waits on, so the output is always
 * the same.
 *
 * Build on its own:
 *   cc -std=c11 winsys_reader_process.c $(pkg-config --cflags --libs mbx)
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mbx/mbx.h>

#define SLOT "\\\\.\\mailslot\\cookbook\\lines"
#define N_NUMBERED 10000 /* numbered messages after the lines */
#define PATIENCE_MS 5000 /* longest wait before the example gives up */

/* The lines of text the writer sends first. */
static const char *const lines[] = {
    "The quick brown fox",
    "jumps over",
    "the lazy dog.",
};
#define N_LINES (sizeof lines / sizeof lines[0])

/* Who is talking, for error messages. */
static const char *role = "winsys_reader_process";

/* Ends the process on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "%s: %s: %s (%s)\n", role, what, mbx_strerror_name(rc),
            mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

/* Ends the process on a failed system call. */
static void
fail_errno(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", role, what, strerror(errno));
    exit(EXIT_FAILURE);
}

static void
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
}

/* ---- the reader (child) ------------------------------------------------- */

/* Reads "#N": returns N, or -1 for a body that is not a numbered message. */
static long
number_of(const char *body, size_t len)
{
    char buf[24];
    char *end;

    if (len < 2 || len >= sizeof buf || body[0] != '#')
        return -1;
    memcpy(buf, body + 1, len - 1);
    buf[len - 1] = '\0';
    long n = strtol(buf, &end, 10);
    return *end == '\0' ? n : -1;
}

/* Iterates over the slot until "STOP": prints the lines, checks that the
 * numbered messages come complete and in order. */
static void
read_until_stop(mbx_slot *s)
{
    long next_number = 0;
    mbx_msg *m = NULL;
    int rc;

    while ((rc = mbx_slot_next(s, &m, "STOP", 4, PATIENCE_MS)) > 0) {
        size_t len;
        const char *body = mbx_msg_body(m, &len);
        long n = number_of(body, len);
        if (n < 0) {
            printf("reader: \"%.*s\"\n", (int)len, body ? body : "");
        } else if (n != next_number++) {
            fprintf(stderr, "%s: got #%ld, expected #%ld\n", role, n,
                    next_number - 1);
            exit(EXIT_FAILURE);
        }
        mbx_msg_free(m);
    }
    check(rc, "mbx_slot_next");
    if (next_number != N_NUMBERED)
        fail("numbered messages are missing", MBX_EBADMSG);
    printf("reader: #0 to #%d arrived, in order\n", N_NUMBERED - 1);
    printf("reader: \"STOP\", closing the slot\n");
}

/* The child: takes the name, says so on `ready`, reads until "STOP". */
static int
reader(int ready)
{
    /* The smallest ring (4 KiB) so that the burst fills it. */
    mbx_slot_opts o = {.ring_size = MBX_RING_MIN};
    mbx_slot *s;
    mbx_msg *m = NULL;

    role = "reader";
    check(mbx_slot_open(&s, SLOT, &o), "mbx_slot_open");
    /* The first get makes this handle the reader and takes the name
     * (MBX_EEXIST if another process reads it). Nothing can be there yet. */
    int rc = mbx_slot_get_nowait(s, &m);
    if (rc != MBX_EAGAIN)
        fail("taking the name", rc < 0 ? rc : MBX_EINVAL);
    printf("reader: took the name, ready\n");
    /* The parent prints only after this byte: flush first. */
    fflush(stdout);
    if (write(ready, "R", 1) != 1)
        fail_errno("write");
    close(ready);

    read_until_stop(s);
    mbx_slot_close(s);
    return EXIT_SUCCESS;
}

/* ---- the writer (parent) ------------------------------------------------ */

/* Waits for the child's byte. EOF means it failed before taking the name. */
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
        fprintf(stderr, "%s: the reader ended before taking the name\n", role);
        exit(EXIT_FAILURE);
    }
    close(ready);
}

/* The parent: writes the lines, the burst and "STOP". */
static void
write_all(void)
{
    /* A put into a full ring waits for the reader, at most PATIENCE_MS. */
    mbx_slot_opts o = {.timeout_ms = PATIENCE_MS};
    mbx_slot *s;
    char body[24];

    check(mbx_slot_open(&s, SLOT, &o), "mbx_slot_open");
    printf("writer: %zu lines, #0 to #%d, then \"STOP\"\n", N_LINES,
           N_NUMBERED - 1);
    /* The reader prints as it reads: our line must be out first. */
    fflush(stdout);
    for (size_t i = 0; i < N_LINES; i++)
        check(mbx_slot_put(s, lines[i], strlen(lines[i])), "put line");
    for (int i = 0; i < N_NUMBERED; i++) {
        int len = snprintf(body, sizeof body, "#%d", i);
        check(mbx_slot_put(s, body, (size_t)len), "put #N");
    }
    check(mbx_slot_put(s, "STOP", 4), "put STOP");

    /* Wait for the reader to finish before looking again. */
    int status;
    if (wait(&status) < 0)
        fail_errno("wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: the reader failed (status %#x)\n", role,
                (unsigned)status);
        exit(EXIT_FAILURE);
    }
    printf("writer: the reader exited with status 0\n");

    /* The reader closed the slot: nobody reads the name any more. */
    int rc = mbx_slot_put(s, "anyone?", 7);
    if (rc != MBX_ENOENT)
        fail("put after the reader left", rc < 0 ? rc : MBX_EINVAL);
    printf("writer: put after the reader left -> %s\n", mbx_strerror_name(rc));
    mbx_slot_close(s);
}

int
main(void)
{
    int ready[2];

    printf("main: %s, a reader child and a writer parent\n", SLOT);
    /* Whatever is buffered now would be printed twice after fork. */
    fflush(stdout);
    if (pipe(ready) != 0)
        fail_errno("pipe");
    pid_t pid = fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid == 0) {
        close(ready[0]);
        return reader(ready[1]);
    }
    role = "writer";
    close(ready[1]);
    wait_ready(ready[0]);
    write_all();
    return EXIT_SUCCESS;
}
