/*
 * winsys_net_slot: winsys's "mailslot as an iterable" recipe over the
 * network, written with mbx.
 *
 * In winsys a reader iterates over a mailslot until a sentinel,
 *
 *   for message in ipc.mailslot("cookbook"):
 *       if message == "STOP": break
 *       print(message)
 *
 * and a writer may address the slot of every machine in the domain at
 * once, \\*\mailslot\cookbook, instead of this machine's, \\.\mailslot\...
 * mbx_slot takes the same names: here the reader opens the network slot
 * \\*\mailslot\cookbook\net (also written //STAR/cookbook/net, STAR = "*")
 * and loops with mbx_slot_next until "STOP", while a writer process puts
 * lines into it. Every process on the LAN that reads the name gets its own
 * copy of each message; a writer is never told whether anyone reads.
 *
 * The program forks: the child is the reader, the parent the writer. The
 * child takes the name with a first get_nowait() and only then tells the
 * parent, through a pipe, that it is ready, so that nothing is written
 * before anyone reads (no sleeps, no retries). The parent writes a few
 * lines, a burst of numbered messages (which share datagrams on the way),
 * then "STOP". Messages from one writer arrive in the order it wrote them
 * (the network may lose some, never reorder what it delivers from one
 * sender on this host): the reader checks the numbers. Once the reader has
 * exited, a put still succeeds: unlike a host mailslot (MBX_ENOENT), a
 * network slot never knows its readers.
 *
 * Both processes use the loopback interface, a port of this example's own
 * (NET_PORT) and a domain of this run's own, so the traffic stays on this
 * host and away from other programs. To read across hosts, drop the
 * options (the defaults: the kernel's interface, port 7788, domain "mbx")
 * and run the reader and the writer on two machines of the LAN.
 *
 * Only the reader prints while the two processes run, and each process
 * prints only after the step the other waits on, so the output is always
 * the same.
 *
 * Build on its own:
 *   cc -std=c11 winsys_net_slot.c $(pkg-config --cflags --libs mbx)
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

#define SLOT "\\\\*\\mailslot\\cookbook\\net"
#define NET_PORT 17812   /* this example's UDP port */
#define N_NUMBERED 200   /* numbered messages after the lines */
#define PATIENCE_MS 5000 /* longest wait before the example gives up */

/* The lines of text the writer sends first. */
static const char *const lines[] = {
    "The quick brown fox",
    "jumps over",
    "the lazy dog.",
};
#define N_LINES (sizeof lines / sizeof lines[0])

/* Who is talking, for error messages. */
static const char *role = "winsys_net_slot";

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
    mbx_slot *s;
    mbx_msg *m = NULL;

    role = "reader";
    check(mbx_slot_open(&s, SLOT, NULL), "mbx_slot_open");
    /* The first get makes this handle the reader and registers the name
     * on the network. Nothing can be there yet. */
    int rc = mbx_slot_get_nowait(s, &m);
    if (rc != MBX_EAGAIN)
        fail("taking the name", rc < 0 ? rc : MBX_EINVAL);
    printf("reader: reading the network slot, ready\n");
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

/* Waits for the reader to exit and checks that it succeeded. */
static void
wait_reader(void)
{
    int status;

    while (wait(&status) < 0)
        if (errno != EINTR)
            fail_errno("wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: the reader failed (status %#x)\n", role,
                (unsigned)status);
        exit(EXIT_FAILURE);
    }
}

/* The parent: writes the lines, the burst and "STOP". */
static void
write_all(void)
{
    mbx_slot *s;
    char body[24];

    check(mbx_slot_open(&s, SLOT, NULL), "mbx_slot_open");
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

    wait_reader();
    printf("writer: the reader exited with status 0\n");

    /* Nobody reads the name now: the put succeeds all the same. */
    int rc = mbx_slot_put(s, "anyone?", 7);
    printf("writer: put after the reader left -> %d (%s)\n", rc,
           rc == 0 ? "sent, best effort" : mbx_strerror_name(rc));
    mbx_slot_close(s);
    /* Sends what is still queued before the program ends. */
    check(mbx_net_flush(PATIENCE_MS), "mbx_net_flush");
}

int
main(void)
{
    /* Options of the network layer, inherited by the child: this host's
     * loopback interface, a port of this example's own, and a domain of
     * this run's own, so that two runs at once do not read each other's
     * messages. */
    char domain[32];
    snprintf(domain, sizeof domain, "example-%ld", (long)getpid());
    mbx_net_opts o = {.iface = "lo", .port = NET_PORT, .domain = domain};
    int ready[2];

    check(mbx_net_configure(&o), "mbx_net_configure");
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
