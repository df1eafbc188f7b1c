/*
 * mbx listen: read a host or network mailslot and print one line per
 * message, as text or JSON.
 *
 * The reader waits in poll() on the slot's fd and on the stop pipe that
 * the SIGINT/SIGTERM/SIGHUP handler writes to (cli.h), so a signal ends the
 * wait at once and the slot is closed (releasing the name) on the normal
 * path.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run_listen(int argc, char **argv);

const struct cli_cmd cli_listen = {
    .name = "listen",
    .summary = "read a host or network mailslot and print its messages",
    .usage =
        "usage: mbx listen NAME [--count N] [--timeout MS] [--echo] [--json]\n"
        "                  [--mode 0600|0660] [--ring-size BYTES]\n"
        "       mbx listen //HOST/NAME [--count N] [--timeout MS] [--echo]\n"
        "                  [--json] [--key FILE] [--domain D] [--iface IF]\n"
        "                  [--group G] [--port P]\n"
        "\n"
        "Reads the host mailslot NAME (also written //./NAME or\n"
        "\\\\.\\mailslot\\NAME) and prints one line per message: local\n"
        "time, kind, sender and body. An empty kind or a missing sender\n"
        "prints as '-'; a body that is not plain text prints as hex:...\n"
        "\n"
        "A network name, //*/NAME or //HOST/NAME (also written\n"
        "\\\\*\\mailslot\\NAME), reads what any process on the network\n"
        "sends to NAME in this process's domain (*) or in the domain\n"
        "HOST. Its lines have one more field after the time: the host the\n"
        "message came from. Once the name is registered, a line 'mbx\n"
        "listen: listening on ...' goes to stderr, after a notice that the\n"
        "traffic is plain when no key is used.\n"
        "\n"
        "SIGINT or SIGTERM stops listening, releases the name and exits\n"
        "with status 0.\n"
        "\n"
        "  -n, --count N       exit after N messages\n"
        "  -t, --timeout MS    fail (status 1) when no message comes within\n"
        "                      MS ms of the previous one, or of the start\n"
        "  -e, --echo          answer each call with its own body\n"
        "                      (kind \"reply\")\n"
        "  -j, --json          one JSON object per message: time, host,\n"
        "                      name, kind, from, size, body (and hex when\n"
        "                      the body is not UTF-8)\n"
        "host mailslots:\n"
        "      --mode MODE     permissions: 0600 (default) or 0660\n"
        "      --ring-size N   ring bytes (default 1M; suffixes K, M, G)\n"
        "network mailslots:\n" CLI_NET_USAGE "\n"
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
    int json;
    mbx_slot_opts slot;
    const char *host_option; /* the first host-only option given, or NULL */
    struct cli_net net;
};

/* What the listener prints besides each message. */
struct listener {
    const struct listen_opts *o;
    const char *address; /* the name as listened on: "//./x", "//STAR/x" */
    int net;             /* a network name: print the origin host */
};

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

/* Prints one message as "TIME [HOST ]KIND SENDER[ BODY]". */
static void
print_text(const struct listener *l, const mbx_msg *m)
{
    char when[CLI_TIME_LEN];
    size_t len;
    const void *body = mbx_msg_body(m, &len);

    printf("%s ", cli_time_now(when));
    if (l->net) {
        cli_print_field(stdout, mbx_msg_origin(m));
        putchar(' ');
    }
    cli_print_field(stdout, mbx_msg_kind(m));
    putchar(' ');
    cli_print_field(stdout, mbx_msg_from(m));
    if (len > 0) {
        putchar(' ');
        cli_print_body(stdout, body, len);
    }
    putchar('\n');
}

/* Prints one message as a JSON object on one line. */
static void
print_json(const struct listener *l, const mbx_msg *m)
{
    char when[CLI_TIME_LEN];
    size_t len;
    const unsigned char *body = mbx_msg_body(m, &len);

    printf("{\"time\":\"%s\",\"host\":", cli_time_now(when));
    cli_print_json_field(stdout, mbx_msg_origin(m));
    fputs(",\"name\":", stdout);
    cli_print_json_field(stdout, l->address);
    fputs(",\"kind\":", stdout);
    cli_print_json_field(stdout, mbx_msg_kind(m));
    fputs(",\"from\":", stdout);
    cli_print_json_field(stdout, mbx_msg_from(m));
    printf(",\"size\":%zu,\"body\":", len);
    if (cli_print_json_body(stdout, body, len)) {
        /* The body is not UTF-8: give its bytes exactly as well. */
        fputs(",\"hex\":\"", stdout);
        for (size_t i = 0; i < len; i++)
            printf("%02x", body[i]);
        putchar('"');
    }
    fputs("}\n", stdout);
}

/* Prints one message and flushes it. Returns 0, or CLI_FAIL when stdout
 * cannot be written. */
static int
print_message(const struct listener *l, const mbx_msg *m)
{
    if (l->o->json)
        print_json(l, m);
    else
        print_text(l, m);
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
        {.fd = cli_stop_fd(), .events = POLLIN},
    };
    int n = poll(fds, 2, timeout_ms > 1000000 ? 1000000 : (int)timeout_ms);

    if (n < 0 && errno != EINTR) {
        cli_fail(&cli_listen, "poll: %s", strerror(errno));
        return -1;
    }
    return n != 0;
}

/* Receives and prints messages until a stop signal, the count, the
 * timeout or an error. Returns the exit status. */
static int
listen_loop(const struct listener *l, mbx_slot *slot, int fd)
{
    const struct listen_opts *o = l->o;
    const char *what = l->address;
    long long deadline = o->timeout >= 0 ? cli_now_ms() + o->timeout : -1;
    long seen = 0;

    while (!cli_stop_requested()) {
        mbx_msg *m = NULL;
        int rc = mbx_slot_get_nowait(slot, &m);

        if (rc == 0) {
            rc = print_message(l, m);
            if (rc == 0 && o->echo && mbx_msg_is_call(m))
                echo_reply(m);
            mbx_msg_free(m);
            if (rc != 0 || (o->count > 0 && ++seen == o->count))
                return rc;
            if (deadline >= 0)
                deadline = cli_now_ms() + o->timeout;
            continue;
        }
        if (rc != MBX_EAGAIN)
            return cli_error(&cli_listen, what, rc);
        long long left = deadline >= 0 ? deadline - cli_now_ms() : -1;
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
        {"json", no_argument, NULL, 'j'},
        {"mode", required_argument, NULL, OPT_MODE},
        {"ring-size", required_argument, NULL, OPT_RING_SIZE},
        CLI_NET_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_cmd *cmd = &cli_listen;
    int c, rc = 0;

    while (rc == 0 &&
           (c = getopt_long(argc, argv, ":n:t:ejh", longopts, NULL)) != -1) {
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
        case 'j':
            o->json = 1;
            break;
        case OPT_MODE:
            o->host_option = o->host_option ? o->host_option : "--mode";
            rc = parse_mode(optarg, &o->slot.mode);
            break;
        case OPT_RING_SIZE:
            o->host_option = o->host_option ? o->host_option : "--ring-size";
            rc = parse_ring_size(optarg, &o->slot.ring_size);
            break;
        case 'h':
            return -1;
        default:
            if (!cli_net_is_option(c))
                return cli_bad_option(cmd, c, argv);
            rc = cli_net_option(cmd, c, optarg, &o->net);
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

/* Checks that the options fit the kind of name. Returns 0 or CLI_USAGE
 * (reported). */
static int
check_scope(const struct listen_opts *o, int net)
{
    if (net && o->host_option != NULL)
        return cli_usage_error(&cli_listen,
                               "%s applies to host mailslots, not to the "
                               "network name %s",
                               o->host_option, o->name);
    if (!net && o->net.first != NULL)
        return cli_usage_error(&cli_listen,
                               "%s applies to network names (//*/NAME, "
                               "//HOST/NAME), not to %s",
                               o->net.first, o->name);
    return 0;
}

/* Prepares the network layer, before the name is registered. Returns 0 or
 * CLI_FAIL (reported). */
static int
net_prepare(const struct listen_opts *o)
{
    int rc = cli_net_configure(&cli_listen, &o->net);

    if (rc == 0)
        cli_net_plain_notice(&cli_listen, &o->net);
    return rc;
}

/* Says on stderr that a network name is registered: from now on, what is
 * sent to it arrives. */
static void
net_ready(const struct listener *l)
{
    const char *host = NULL, *domain = NULL;

    mbx_net_identity(&host, &domain);
    fprintf(stderr, "mbx listen: listening on %s (host %s, domain %s%s)\n",
            l->address, host ? host : "-", domain ? domain : "-",
            cli_net_keyed(&l->o->net) ? ", sealed" : "");
}

static int
run_listen(int argc, char **argv)
{
    struct listen_opts o = {.timeout = -1};
    struct listener l = {.o = &o};
    mbx_slot *slot = NULL;
    char *what = NULL;
    int rc, fd;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_listen) : rc;
    l.net = cli_is_network(o.name);
    rc = check_scope(&o, l.net);
    if (rc != 0)
        return rc;
    what = cli_address(o.name);
    if (what == NULL)
        return cli_error(&cli_listen, o.name, MBX_ENOMEM);
    l.address = what;
    rc = cli_catch_stop_signals();
    if (rc < 0) {
        rc = cli_fail(&cli_listen, "signals: %s", strerror(-rc));
        goto out;
    }
    if (l.net && (rc = net_prepare(&o)) != 0)
        goto out;
    /* The first use of the slot's fd makes us the reader and takes the
     * name (for a host name, MBX_EEXIST when another live process reads
     * it). */
    rc = mbx_slot_open(&slot, o.name, &o.slot);
    fd = rc < 0 ? rc : mbx_slot_fd(slot);
    if (fd < 0) {
        rc = cli_error(&cli_listen, what, fd);
        goto out;
    }
    if (l.net)
        net_ready(&l);
    rc = listen_loop(&l, slot, fd);
out:
    mbx_slot_close(slot);
    /* Replies of --echo still queued for the network leave now. */
    if (l.net)
        mbx_net_flush(1000);
    cli_close_stop_pipe();
    free(what);
    return rc;
}
