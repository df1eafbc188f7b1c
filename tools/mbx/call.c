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
        "\n"
        "Sends the TEXT words joined by spaces as a call to NAME (as in\n"
        "'mbx send') and prints the body of the reply, as text or hex:...\n"
        "as 'mbx listen' prints bodies.\n"
        "\n"
        "  -k, --kind K         the kind of the request (default: empty)\n"
        "  -t, --timeout MS     wait at most MS ms for the reply\n"
        "                       (default 5000; -1 waits forever)\n"
        "  -h, --help           print this help and exit\n",
    .run = run_call,
};

/* Fills *kind and *timeout from the command line. Returns 0, CLI_USAGE
 * (reported), or -1 after --help. */
static int
parse_args(int argc, char **argv, const char **kind, long *timeout)
{
    static const struct option longopts[] = {
        {"kind", required_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_cmd *cmd = &cli_call;
    int c, rc = 0;

    while (rc == 0 &&
           (c = getopt_long(argc, argv, ":k:t:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            *kind = optarg;
            rc = cli_check_kind(cmd, optarg);
            break;
        case 't':
            rc = cli_parse_int(cmd, "--timeout", optarg, -1, 1L << 30, timeout);
            break;
        case 'h':
            return -1;
        default:
            return cli_bad_option(cmd, c, argv);
        }
    }
    if (rc == 0 && argc - optind < 2)
        rc = cli_usage_error(cmd, optind == argc ? "NAME is missing"
                                                 : "TEXT is missing");
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
    const char *kind = "";
    long timeout = 5000;
    char *address, *text;
    size_t len;
    int rc;

    rc = parse_args(argc, argv, &kind, &timeout);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_call) : rc;
    address = cli_address(argv[optind]);
    text = cli_join(argv + optind + 1, argc - optind - 1, &len);
    if (address == NULL || text == NULL)
        rc = cli_error(&cli_call, argv[optind], MBX_ENOMEM);
    else
        rc = call(address, kind, text, len, timeout);
    free(address);
    free(text);
    return rc;
}
