/*
 * winsys_net_logger: winsys's "writing to a network logger" recipe, written
 * with mbx.
 *
 * In winsys a program adds a logging handler that writes each record to
 * the mailslot LOGGER of every machine in the domain, \\*\mailslot\LOGGER,
 * whether or not a listener runs there; a listener, on whichever machine,
 * reads the mailslot and prints the records as they come:
 *
 *   logger.addHandler(MailslotHandler("logger"))
 *   logger.warning("disk %s at %d%%", "/var", 91)
 *
 * Here mbx_logger is the handler and a mailbox registered under the network
 * name "//STAR/LOGGER" (STAR = "*"; also written \\*\mailslot\LOGGER) is
 * the listener; `mbx listen //STAR/LOGGER` is the same listener from the
 * shell. Each line travels as one message whose kind is its level and
 * whose body is the text, and the listener learns which host sent it
 * (mbx_msg_origin).
 *
 * The program forks: the child listens, the parent logs. The child
 * registers the name and only then tells the parent, through a pipe, that
 * it is ready, so that no line is sent before anyone listens (no sleeps,
 * no retries). The parent logs a few lines at different levels, one of
 * them below the logger's level (not sent), and ends with "shutting down",
 * after which the listener stops. Once the listener has exited, a last
 * line goes nowhere: logging to a network name never fails for lack of
 * listeners.
 *
 * To keep the traffic on this host and away from other programs, both
 * processes use the loopback interface, a port of their own (NET_PORT) and
 * a domain of this run's own, and a fixed host name keeps the output the
 * same on every machine. To log across hosts, drop the options (the
 * defaults: the kernel's interface, port 7788, domain "mbx", the system's
 * host name) and run the listener, or `mbx listen //STAR/LOGGER`, on
 * another machine of the LAN; nothing else changes.
 *
 * Only the listener prints while both processes run; the parent prints
 * after the listener has exited. So the output is always the same.
 *
 * Build on its own:
 *   cc -std=c11 winsys_net_logger.c $(pkg-config --cflags --libs mbx)
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

#define LOGGER "//*/LOGGER"       /* every listener of LOGGER in the domain */
#define NET_PORT 17811            /* this example's UDP port */
#define HOST "app-host"           /* this example's host name on the network */
#define LAST_LINE "shutting down" /* the listener stops after this line */
#define PATIENCE_MS 5000          /* longest wait before the example gives up */

/* Who is talking, for error messages. */
static const char *role = "winsys_net_logger";

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

/* Prints one log line; returns 1 when it is the last one. */
static int
print_line(const mbx_msg *m)
{
    size_t len;
    const char *text = mbx_msg_body(m, &len);
    const char *host = mbx_msg_origin(m);

    printf("listener: %s %s: %.*s\n", host ? host : "-", mbx_msg_kind(m),
           (int)len, text ? text : "");
    return len == strlen(LAST_LINE) && memcmp(text, LAST_LINE, len) == 0;
}

/* The child: reads the logger's lines until the last one. */
static int
listen_for_lines(int ready)
{
    mbx_id box;
    mbx_msg *m;
    int last = 0;

    role = "listener";
    check(mbx_create(&box, NULL), "mbx_create");
    /* From here on, lines sent to LOGGER by any process reach this
     * mailbox, whichever host it runs on. */
    check(mbx_register(box, LOGGER), "mbx_register");
    printf("listener: reading %s\n", LOGGER);
    /* The parent logs only after this byte: flush first. */
    fflush(stdout);
    if (write(ready, "R", 1) != 1)
        fail_errno("write");
    close(ready);

    while (!last) {
        check(mbx_recv(box, &m, PATIENCE_MS), "mbx_recv");
        last = print_line(m);
        mbx_msg_free(m);
    }
    printf("listener: \"%s\" read, stopping\n", LAST_LINE);
    mbx_destroy(box);
    return EXIT_SUCCESS;
}

/* ---- the logging program (parent) --------------------------------------- */

/* Waits for the child's byte. EOF means it failed before listening. */
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
        fprintf(stderr, "%s: the listener ended before listening\n", role);
        exit(EXIT_FAILURE);
    }
    close(ready);
}

/* Logs the program's lines; DEBUG is below the logger's level. */
static void
log_lines(mbx_logger *log)
{
    check(mbx_log(log, MBX_LOG_INFO, "starting up, version %d.%d", 1, 4),
          "mbx_log");
    check(mbx_log(log, MBX_LOG_DEBUG, "cache warmed in %d ms", 12), "mbx_log");
    check(mbx_log(log, MBX_LOG_WARNING, "disk %s at %d%%", "/var", 91),
          "mbx_log");
    check(mbx_log(log, MBX_LOG_ERROR, "cannot reach %s, retrying",
                  "db.example.org"),
          "mbx_log");
    check(mbx_log(log, MBX_LOG_INFO, LAST_LINE), "mbx_log");
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

/* The parent: logs while the child listens, then once more after it left. */
static void
log_all(pid_t listener, int ready)
{
    mbx_logger *log;

    role = "logger";
    wait_ready(ready);
    check(mbx_logger_open(&log, LOGGER, MBX_LOG_INFO), "mbx_logger_open");
    log_lines(log);
    wait_listener(listener);
    printf("logger: 5 lines logged, 4 at INFO or above sent; the listener "
           "exited with status 0\n");

    /* Nobody listens now: the line is sent all the same, and lost. */
    int rc = mbx_log(log, MBX_LOG_INFO, "is anyone there?");
    printf("logger: a line with no listener -> %d (%s)\n", rc,
           rc == 0 ? "sent, best effort" : mbx_strerror_name(rc));
    printf("logger: %llu line(s) dropped for lack of room\n",
           (unsigned long long)mbx_logger_dropped(log));
    mbx_logger_close(log);
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
    mbx_net_opts o = {
        .iface = "lo", .port = NET_PORT, .host = HOST, .domain = domain};
    int ready[2];

    check(mbx_net_configure(&o), "mbx_net_configure");
    printf("main: a listener child and a logging parent, on %s\n", LOGGER);
    /* Whatever is buffered now would be printed twice after fork. */
    fflush(stdout);
    if (pipe(ready) != 0)
        fail_errno("pipe");
    pid_t pid = fork();
    if (pid < 0)
        fail_errno("fork");
    if (pid == 0) {
        close(ready[0]);
        return listen_for_lines(ready[1]);
    }
    close(ready[1]);
    log_all(pid, ready[0]);
    return EXIT_SUCCESS;
}
