/*
 * mbx keygen: write a new shared key for sealed network mailslots.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static int run_keygen(int argc, char **argv);

const struct cli_cmd cli_keygen = {
    .name = "keygen",
    .summary = "write a new key for sealed network mailslots",
    .usage =
        "usage: mbx keygen FILE\n"
        "\n"
        "Writes a new random key to FILE, created with mode 0600; an\n"
        "existing FILE is left alone (status 1). Every process that reads\n"
        "or sends with this key (--key FILE, or MBX_KEY_FILE=FILE) seals\n"
        "its network messages and drops those not sealed with it. Copy the\n"
        "file to the other hosts over a secure channel and keep it mode\n"
        "0600: a key that others can read is refused.\n"
        "\n"
        "  -h, --help   print this help and exit\n",
    .run = run_keygen,
};

/* Checks the command line: one FILE, no options but --help. Returns 0,
 * CLI_USAGE (reported), or -1 after --help. */
static int
parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h')
            return -1;
        return cli_bad_option(&cli_keygen, c, argv);
    }
    if (optind != argc - 1)
        return cli_usage_error(&cli_keygen, optind == argc
                                                ? "FILE is missing"
                                                : "too many arguments");
    if (argv[optind][0] == '\0')
        return cli_usage_error(&cli_keygen, "FILE is empty");
    return 0;
}

static int
run_keygen(int argc, char **argv)
{
    int rc = parse_args(argc, argv);

    if (rc != 0)
        return rc < 0 ? cli_help(&cli_keygen) : rc;
    rc = mbx_net_keygen(argv[optind]);
    if (rc == 0)
        return CLI_OK;
    /* A file error reads best in the system's words ("File exists"); the
     * library's codes equal -errno where one fits. */
    if (rc > -4000)
        return cli_fail(&cli_keygen, "%s: %s (%s)", argv[optind], strerror(-rc),
                        mbx_strerror_name(rc));
    return cli_error(&cli_keygen, argv[optind], rc);
}
