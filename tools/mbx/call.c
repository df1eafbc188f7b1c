/*
 * mbx call: send a call request and print the reply's body.
 */
#include <getopt.h>
#include <stdlib.h>

#include "cli.h"

static int run_call(int argc, char **argv);

const struct cli_cmd cli_call = {
    .name = "call",
    .summary = "send a call and print the reply",
    .usage =
        "usage: mbx call NAME [--kind K] [--timeout MS] TEXT...\n"
        "       mbx call //HOST/NAME [--kind K] [--timeout MS] [--key FILE]\n"
        "                [--domain D] [--iface IF] [--group G] [--port P]\n"
        "                TEXT...\n"
        "\n"
        "Sends the TEXT words joined by spaces as a call to NAME (as in\n"
        "'mbx send') and prints the body of the reply, as text or hex:...\n"
        "as 'mbx listen' prints bodies. A call to a network name goes to\n"
        "every reader of it; the first reply wins.\n"
        "\n"
        "  -k, --kind K        the kind of the request (default: empty)\n"
        "  -t, --timeout MS    wait at most MS ms for the reply\n"
        "                      (default 5000; -1 waits forever)\n"
        "network names:\n" CLI_NET_USAGE "\n"
        "  -h, --help          print this help and exit\n",
    .run = run_call,
};

/* What the command line asked for. */
struct call_opts {
    const char *kind;
    long timeout;
    struct cli_net net;
};

/* Fills *o from the command line. Returns 0, CLI_USAGE (reported), or -1
 * after --help. */
static int
parse_args(int argc, char **argv, struct call_opts *o)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'},
        CLI_NET_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_cmd *cmd = &cli_call;
    int c, rc = 0;

    while (rc == 0 &&
           (c = getopt_long(argc, argv, ":k:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            o->kind = optarg;
            rc = cli_check_kind(cmd, optarg);
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
    if (rc == 0 && argc - optind < 2)
        rc = cli_usage_error(cmd, optind == argc ? "NAME is missing"
                                                 : "TEXT is missing");
    if (rc == 0 && o->net.first != NULL && !cli_is_network(argv[optind]))
        rc = cli_usage_error(cmd,
                             "%s applies to network names (//*/NAME, "
                             "//HOST/NAME), not to %s",
                             o->net.first, argv[optind]);
    return rc;
}

/* Makes the call and prints the reply. Returns the exit status. */
static int
call(const char *address, const char *kind, const char *text, size_t len,
     long timeout)
{
    mbx_msg *req = mbx_msg_new(kind, text, len);
    mbx_msg *reply = NULL;
    int rc = req == NULL ? MBX_ENOMEM
                         : mbx_call_to(address, &req, &reply, (int)timeout);

    mbx_msg_free(req);
    if (rc < 0)
        return cli_error(&cli_call, address, rc);
    const void *body = mbx_msg_body(reply, &len);
    cli_print_body(stdout, body, len);
    putchar('\n');
    mbx_msg_free(reply);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(&cli_call, "stdout: write error");
    return CLI_OK;
}

static int
run_call(int argc, char **argv)
{
    struct call_opts o = {.kind = "", .timeout = 5000};
    char *address, *text;
    size_t len;
    int rc;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_call) : rc;
    if (cli_is_network(argv[optind]) &&
        cli_net_configure(&cli_call, &o.net) != 0)
        return CLI_FAIL;
    address = cli_address(argv[optind]);
    text = cli_join(argv + optind + 1, argc - optind - 1, &len);
    if (address == NULL || text == NULL)
        rc = cli_error(&cli_call, argv[optind], MBX_ENOMEM);
    else
        rc = call(address, o.kind, text, len, o.timeout);
    free(address);
    free(text);
    return rc;
}
