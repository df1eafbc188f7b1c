/*
 * mbx send: send one message made of the command line's words, or one
 * message per line of standard input.
 */
#include <getopt.h>
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
        "\n"
        "Sends one message whose body is the TEXT words joined by spaces or,\n"
        "without TEXT, one message per line of standard input (without the\n"
        "newline). NAME is a host mailslot: NAME means //./NAME; //./NAME,\n"
        "\\\\.\\mailslot\\NAME and other addresses are used as given.\n"
        "\n"
        "  -k, --kind K         the kind of the messages (default: empty)\n"
        "  -u, --urgent         deliver ahead of the messages already queued\n"
        "  -f, --from ADDRESS   the reply address the reader sees as sender\n"
        "  -t, --timeout MS     wait at most MS ms for room in a full ring\n"
        "                       (default 5000; -1 waits forever)\n"
        "  -h, --help           print this help and exit\n",
    .run = run_send,
};

/* What the command line asked for. */
struct send_opts {
    const char *kind;
    const char *from; /* NULL: no reply address */
    int urgent;
    long timeout;
    char *address; /* malloc'd */
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
            return cli_bad_option(cmd, c, argv);
        }
    }
    if (rc == 0 && optind == argc)
        rc = cli_usage_error(cmd, "NAME is missing");
    *first = optind + 1;
    return rc;
}

static int
run_send(int argc, char **argv)
{
    struct send_opts o = {.kind = "", .timeout = 5000};
    int first = 0, rc;

    rc = parse_args(argc, argv, &o, &first);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_send) : rc;
    o.address = cli_address(argv[first - 1]);
    if (o.address == NULL)
        return cli_error(&cli_send, argv[first - 1], MBX_ENOMEM);
    if (first == argc) {
        rc = send_lines(&o);
    } else {
        size_t len;
        char *text = cli_join(argv + first, argc - first, &len);
        rc = text == NULL ? cli_error(&cli_send, o.address, MBX_ENOMEM)
                          : send_one(&o, text, len);
        free(text);
    }
    free(o.address);
    return rc;
}
