/*
 * The mbx command-line tool: `mbx COMMAND ...` runs one subcommand, each in
 * its own file (listen.c, send.c, ls.c, call.c, spy.c, keygen.c). See
 * docs/man/mbx.1.
 */
#include <string.h>

#include "cli.h"

static const struct cli_cmd *const commands[] = {
    &cli_listen, &cli_send, &cli_ls, &cli_call, &cli_spy, &cli_keygen,
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

/* The tool's own usage: how to call it and the list of subcommands. */
static void
usage(FILE *out)
{
    fputs(
        "usage: mbx COMMAND [OPTION...] [ARG...]\n"
        "       mbx --help | --version\n"
        "\n"
        "Message passing with mailboxes: host and network mailslots from the\n"
        "shell.\n"
        "\n"
        "Commands:\n",
        out);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-8s %s\n", commands[i]->name, commands[i]->summary);
    fputs("\n"
          "Run 'mbx COMMAND --help' for the options of a command, and see\n"
          "mbx(1). Exit status: 0 success, 1 failure, 2 usage error.\n",
          out);
}

/* Prints the versions of the tool and, when it differs, of the library it
 * runs with. */
static int
version(void)
{
    const char *lib = mbx_version();

    if (strcmp(lib, MBX_VERSION_STRING) == 0)
        printf("mbx %s\n", lib);
    else
        printf("mbx %s (library %s)\n", MBX_VERSION_STRING, lib);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

int
main(int argc, char **argv)
{
    const char *arg = argc > 1 ? argv[1] : NULL;

    if (arg == NULL) {
        fputs("mbx: no command given\n", stderr);
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
        usage(stdout);
        return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
    }
    if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0)
        return version();
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(arg, commands[i]->name) == 0)
            return commands[i]->run(argc - 1, argv + 1);
    }
    fprintf(stderr, "mbx: unknown %s '%s'\n",
            arg[0] == '-' ? "option" : "command", arg);
    usage(stderr);
    return CLI_USAGE;
}
