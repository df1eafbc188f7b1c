/*
 * mbx listen: read a host mailslot and print one line per message.
 *
 * The reader waits in poll() on the slot's fd and on a self-pipe that the
 * SIGINT/SIGTERM/SIGHUP handler writes to, so a signal ends the wait at once
 * and the slot is closed (releasing the name) on the normal path.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static int run_listen(int argc, char **argv);

const struct cli_cmd cli_listen = {
    .name = "listen",
    .summary = "read a host mailslot and print its messages",
    .usage =
        "usage: mbx listen NAME [--count N] [--timeout MS] [--echo]\n"
        "                  [--mode 0600|0660] [--ring-size BYTES]\n"
        "\n"
        "Reads the host mailslot NAME (also written //./NAME or\n"
        "\\\\.\\mailslot\\NAME) and prints one line per message: local\n"
        "time, kind, sender and body. An empty kind or a missing sender\n"
        "prints as '-'; a body that is not plain text prints as hex:...\n"
        "SIGINT or SIGTERM stops listening, releases the name and exits\n"
        "with status 0.\n"
        "\n"
        "  -n, --count N       exit after N messages\n"
        "  -t, --timeout MS    fail (status 1) when no message comes within\n"
        "                      MS ms of the previous one, or of the start\n"
        "  -e, --echo          answer each call with its own body\n"
        "                      (kind \"reply\")\n"
        "      --mode MODE     permissions: 0600 (default) or 0660\n"
        "      --ring-size N   ring bytes (default 1M; suffixes K, M, G)\n"
        "  -h, --help          print this help and exit\n",
    .run = run_listen,
};

enum { OPT_MODE = 256, OPT_RING_SIZE };

/* What the command line asked for. */
struct listen_opts {
    const char *name;
    long count;   /* 0 = no limit */
    long timeout; /* milliseconds; -1 = none */
    int echo;
    mbx_slot_opts slot;
};

/* Set by the signal handler, which also writes a byte to stop_pipe[1]. */
static volatile sig_atomic_t stop_requested;
static int stop_pipe[2] = {-1, -1};

static void
on_stop_signal(int sig)
{
    int saved = errno;
    ssize_t n;

    (void)sig;
    stop_requested = 1;
    /* Wakes poll(). When the pipe is full it already holds a wake-up. */
    n = write(stop_pipe[1], "", 1);
    (void)n;
    errno = saved;
}

/* Makes SIGINT, SIGTERM and SIGHUP request a clean stop. The handlers are
 * installed even when the shell started us with SIGINT ignored (as it does
 * for background jobs): a signal sent on purpose should stop the listener.
 * Returns 0 or -errno. */
static int
catch_stop_signals(void)
{
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;

    if (pipe(stop_pipe) != 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        if (fcntl(stop_pipe[i], F_SETFL, O_NONBLOCK) != 0 ||
            fcntl(stop_pipe[i], F_SETFD, FD_CLOEXEC) != 0)
            return -errno;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &sa, NULL) != 0)
            return -errno;
    }
    return 0;
}

static void
close_stop_pipe(void)
{
    for (int i = 0; i < 2; i++) {
        if (stop_pipe[i] >= 0)
            close(stop_pipe[i]);
        stop_pipe[i] = -1;
    }
}

/* Milliseconds on the monotonic clock. */
static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Answers a call with a copy of its body. A failure (the caller gave up) is
 * reported but does not stop the listener. */
static void
echo_reply(mbx_msg *req)
{
    size_t len;
    const void *body = mbx_msg_body(req, &len);
    mbx_msg *reply = mbx_msg_new("reply", body, len);
    int rc = reply == NULL ? MBX_ENOMEM : mbx_reply(req, &reply);

    if (rc < 0)
        cli_error(&cli_listen, "reply", rc);
    mbx_msg_free(reply);
}

/* Prints one message as "TIME KIND SENDER[ BODY]". Returns 0, or CLI_FAIL
 * when stdout cannot be written. */
static int
print_message(const mbx_msg *m)
{
    char when[CLI_TIME_LEN];
    size_t len;
    const void *body = mbx_msg_body(m, &len);

    printf("%s ", cli_time_now(when));
    cli_print_field(stdout, mbx_msg_kind(m));
    putchar(' ');
    cli_print_field(stdout, mbx_msg_from(m));
    if (len > 0) {
        putchar(' ');
        cli_print_body(stdout, body, len);
    }
    putchar('\n');
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(&cli_listen, "stdout: %s", strerror(errno));
    return 0;
}

/* Waits until the slot's fd or the stop pipe is readable, at most
 * timeout_ms (-1: no limit). Returns 1 when something may be ready (also
 * after a signal), 0 on timeout, or -1 after reporting an error. */
static int
wait_ready(int slot_fd, long long timeout_ms)
{
    struct pollfd fds[2] = {
        {.fd = slot_fd, .events = POLLIN},
        {.fd = stop_pipe[0], .events = POLLIN},
    };
    int n = poll(fds, 2, timeout_ms > 1000000 ? 1000000 : (int)timeout_ms);

    if (n < 0 && errno != EINTR) {
        cli_fail(&cli_listen, "poll: %s", strerror(errno));
        return -1;
    }
    return n != 0;
}

/* Receives and prints messages until a stop signal, the count, the
 * timeout or an error. `what` names the slot in messages. Returns the exit
 * status. */
static int
listen_loop(const struct listen_opts *o, mbx_slot *slot, int fd,
            const char *what)
{
    long long deadline = o->timeout >= 0 ? now_ms() + o->timeout : -1;
    long seen = 0;

    while (!stop_requested) {
        mbx_msg *m = NULL;
        int rc = mbx_slot_get_nowait(slot, &m);

        if (rc == 0) {
            rc = print_message(m);
            if (rc == 0 && o->echo && mbx_msg_is_call(m))
                echo_reply(m);
            mbx_msg_free(m);
            if (rc != 0 || (o->count > 0 && ++seen == o->count))
                return rc;
            if (deadline >= 0)
                deadline = now_ms() + o->timeout;
            continue;
        }
        if (rc != MBX_EAGAIN)
            return cli_error(&cli_listen, what, rc);
        long long left = deadline >= 0 ? deadline - now_ms() : -1;
        if (deadline >= 0 && left <= 0) {
            fprintf(stderr, "mbx listen: %s: no message within %ld ms (%s)\n",
                    what, o->timeout, mbx_strerror_name(MBX_ETIMEDOUT));
            return CLI_FAIL;
        }
        rc = wait_ready(fd, left);
        if (rc < 0)
            return CLI_FAIL;
    }
    return CLI_OK;
}

/* Parses a size: decimal digits with an optional K, M or G (powers of
 * 1024). Returns 0, or CLI_USAGE (reported). */
static int
parse_ring_size(const char *text, size_t *out)
{
    char *end;
    unsigned long long v;
    size_t shift = 0;

    if (!isdigit((unsigned char)text[0]))
        goto bad;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (end != text && end[0] != '\0' && end[1] == '\0') {
        const char *units = "KkMmGg";
        const char *u = strchr(units, end[0]);
        shift = u == NULL ? 64 : 10 * (size_t)(1 + (u - units) / 2);
        end++;
    }
    if (*end != '\0' || errno == ERANGE || shift >= 64 ||
        v > (MBX_RING_MAX >> shift) || (v << shift) < MBX_RING_MIN)
        goto bad;
    *out = (size_t)(v << shift);
    return 0;
bad:
    return cli_usage_error(&cli_listen,
                           "--ring-size: '%s' is not a size in [%u, %u] "
                           "(suffixes K, M, G)",
                           text, MBX_RING_MIN, MBX_RING_MAX);
}

/* Parses --mode: the octal permissions the library accepts. */
static int
parse_mode(const char *text, unsigned *out)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(text, &end, 8);
    if (end == text || *end != '\0' || errno != 0 || (v != 0600 && v != 0660))
        return cli_usage_error(&cli_listen, "--mode: '%s' is not 0600 or 0660",
                               text);
    *out = (unsigned)v;
    return 0;
}

/* Fills *o from the command line. Returns 0, CLI_USAGE (reported), or -1
 * after printing the help (exit 0). */
static int
parse_args(int argc, char **argv, struct listen_opts *o)
{
    static const struct option longopts[] = {
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"echo", no_argument, NULL, 'e'},
        {"mode", required_argument, NULL, OPT_MODE},
        {"ring-size", required_argument, NULL, OPT_RING_SIZE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_cmd *cmd = &cli_listen;
    int c, rc = 0;

    while (rc == 0 &&
           (c = getopt_long(argc, argv, ":n:t:eh", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            rc = cli_parse_int(cmd, "--count", optarg, 1, LONG_MAX, &o->count);
            break;
        case 't':
            rc = cli_parse_int(cmd, "--timeout", optarg, -1, 1L << 30,
                               &o->timeout);
            break;
        case 'e':
            o->echo = 1;
            break;
        case OPT_MODE:
            rc = parse_mode(optarg, &o->slot.mode);
            break;
        case OPT_RING_SIZE:
            rc = parse_ring_size(optarg, &o->slot.ring_size);
            break;
        case 'h':
            return -1;
        default:
            return cli_bad_option(cmd, c, argv);
        }
    }
    if (rc != 0)
        return rc;
    if (optind != argc - 1)
        return cli_usage_error(cmd, optind == argc ? "NAME is missing"
                                                   : "too many arguments");
    o->name = argv[optind];
    return 0;
}

static int
run_listen(int argc, char **argv)
{
    struct listen_opts o = {.timeout = -1};
    mbx_slot *slot = NULL;
    char *what;
    int rc, fd;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_listen) : rc;
    what = cli_address(o.name);
    if (what == NULL)
        return cli_error(&cli_listen, o.name, MBX_ENOMEM);
    rc = catch_stop_signals();
    if (rc < 0) {
        rc = cli_fail(&cli_listen, "signals: %s", strerror(-rc));
        goto out;
    }
    /* The first use of the slot's fd makes us the reader and takes the
     * name (MBX_EEXIST when another live process reads it). */
    rc = mbx_slot_open(&slot, o.name, &o.slot);
    fd = rc < 0 ? rc : mbx_slot_fd(slot);
    if (fd < 0)
        rc = cli_error(&cli_listen, what, fd);
    else
        rc = listen_loop(&o, slot, fd, what);
out:
    mbx_slot_close(slot);
    close_stop_pipe();
    free(what);
    return rc;
}
