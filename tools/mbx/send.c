/*
 * mbx send: send one message made of the command line's words, or one
 * message per line of standard input, to a host or network mailslot.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int run_send(int argc, char **argv);

const struct cli_cmd cli_send = {
    .name = "send",
    .summary = "send a message, or one per line of standard input",
    .usage =
        "usage: mbx send NAME [--kind K] [--urgent] [--from ADDRESS]\n"
        "                [--timeout MS] [TEXT...]\n"
        "       mbx send //HOST/NAME [--kind K] [--urgent] [--from ADDRESS]\n"
        "                [--timeout MS] [--key FILE] [--domain D] [--iface "
        "IF]\n"
        "                [--group G] [--port P] [TEXT...]\n"
        "\n"
        "Sends one message whose body is the TEXT words joined by spaces or,\n"
        "without TEXT, one message per line of standard input (without the\n"
        "newline). NAME is a host mailslot: NAME means //./NAME; //./NAME,\n"
        "\\\\.\\mailslot\\NAME and other addresses are used as given.\n"
        "\n"
        "A network name, //*/NAME (every reader of NAME in this process's\n"
        "domain) or //HOST/NAME (on host or in domain HOST), also written\n"
        "\\\\*\\mailslot\\NAME, sends to every reader on the network, best\n"
        "effort: it succeeds whether anyone listens or not. Log lines for a\n"
        "logger such as //*/LOGGER have their level as kind: --kind WARNING.\n"
        "\n"
        "  -k, --kind K        the kind of the messages (default: empty)\n"
        "  -u, --urgent        deliver ahead of the messages already queued\n"
        "  -f, --from ADDRESS  the reply address the reader sees as sender\n"
        "  -t, --timeout MS    wait at most MS ms for room in a full ring or\n"
        "                      network queue, and for the network to take\n"
        "                      the messages (at least 1 s) before exiting\n"
        "                      (default 5000; -1 waits forever)\n"
        "network names:\n" CLI_NET_USAGE "\n"
        "  -h, --help          print this help and exit\n",
    .run = run_send,
};

/* What the command line asked for. */
struct send_opts {
    const char *kind;
    const char *from; /* NULL: no reply address */
    int urgent;
    long timeout;
    char *address; /* malloc'd */
    struct cli_net net;
};

/* Sends one message. Returns 0 or CLI_FAIL (reported). */
static int
send_one(const struct send_opts *o, const void *body, size_t len)
{
    mbx_msg *m = mbx_msg_new(o->kind, body, len);
    int rc = m == NULL ? MBX_ENOMEM : 0;

    if (rc == 0 && o->urgent)
        rc = mbx_msg_set_flags(m, MBX_MSG_URGENT);
    if (rc == 0 && o->from != NULL)
        rc = mbx_msg_set_from(m, o->from);
    if (rc == 0)
        rc = mbx_send_to(o->address, &m, (int)o->timeout);
    mbx_msg_free(m);
    return rc < 0 ? cli_error(&cli_send, o->address, rc) : 0;
}

/* Sends each line of stdin as one message, stopping at the first failure.
 * A last line without a newline is sent too. */
static int
send_lines(const struct send_opts *o)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;

    while (rc == 0 && (n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n')
            n--;
        rc = send_one(o, line, (size_t)n);
    }
    if (rc == 0 && ferror(stdin))
        rc = cli_fail(&cli_send, "stdin: read error");
    free(line);
    return rc;
}

/* Fills *o from the command line; the TEXT words start at *first. Returns
 * 0, CLI_USAGE (reported), or -1 after --help. */
static int
parse_args(int argc, char **argv, struct send_opts *o, int *first)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},
        {"urgent", no_argument, NULL, 'u'},
        {"from", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        CLI_NET_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_cmd *cmd = &cli_send;
    int c, rc = 0;

    while (rc == 0 &&
           (c = getopt_long(argc, argv, ":k:uf:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->kind = optarg;
            rc = cli_check_kind(cmd, optarg);
            break;
        case 'u':
            o->urgent = 1;
            break;
        case 'f':
            o->from = optarg;
            if (optarg[0] == '\0' || strlen(optarg) > MBX_NAME_MAX)
                rc = cli_usage_error(cmd, "--from: empty or over %d bytes",
                                     MBX_NAME_MAX);
            break;
        case 't':
            rc = cli_parse_int(cmd, "--timeout", optarg, -1, 1L << 30,
                               &o->timeout);
            break;
        case 'h':
            return -1;
        default:
            if (!cli_net_is_option(c))
                return cli_bad_option(cmd, c, argv);
            rc = cli_net_option(cmd, c, optarg, &o->net);
        }
    }
    if (rc == 0 && optind == argc)
        rc = cli_usage_error(cmd, "NAME is missing");
    *first = optind + 1;
    return rc;
}

/* Waits until the network layer has handed every message to the kernel.
 * Returns 0, or CLI_FAIL (reported) when some could not be sent. */
static int
net_finish(const struct send_opts *o)
{
    mbx_net_stats st;
    long ms = o->timeout < 0 ? -1 : o->timeout < 1000 ? 1000 : o->timeout;
    int rc = mbx_net_flush((int)ms);

    if (rc < 0)
        return cli_error(&cli_send, o->address, rc);
    if (mbx_net_stat(&st) == 0 && st.send_dropped > 0)
        return cli_fail(&cli_send, "%s: %" PRIu64 " message%s not sent",
                        o->address, st.send_dropped,
                        st.send_dropped == 1 ? "" : "s");
    return 0;
}

/* Sends the TEXT words as one message, or the lines of stdin. */
static int
send_all(const struct send_opts *o, char **words, int count)
{
    size_t len;
    char *text;
    int rc;

    if (count == 0)
        return send_lines(o);
    text = cli_join(words, count, &len);
    rc = text == NULL ? cli_error(&cli_send, o->address, MBX_ENOMEM)
                      : send_one(o, text, len);
    free(text);
    return rc;
}

static int
run_send(int argc, char **argv)
{
    struct send_opts o = {.kind = "", .timeout = 5000};
    int first = 0, net, rc;

    rc = parse_args(argc, argv, &o, &first);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_send) : rc;
    net = cli_is_network(argv[first - 1]);
    if (!net && o.net.first != NULL)
        return cli_usage_error(&cli_send,
                               "%s applies to network names (//*/NAME, "
                               "//HOST/NAME), not to %s",
                               o.net.first, argv[first - 1]);
    if (net && cli_net_configure(&cli_send, &o.net) != 0)
        return CLI_FAIL;
    o.address = cli_address(argv[first - 1]);
    if (o.address == NULL)
        return cli_error(&cli_send, argv[first - 1], MBX_ENOMEM);
    rc = send_all(&o, argv + first, argc - first);
    /* Network sends only queue the message: see it leave before exiting,
     * also after a failure, for the messages sent before it. */
    if (net) {
        int flushed = net_finish(&o);
        rc = rc != 0 ? rc : flushed;
    }
    free(o.address);
    return rc;
}
