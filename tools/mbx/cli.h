/*
 * What the subcommands of the mbx tool share: exit statuses, error and usage
 * reporting, option parsing helpers, and the printing of message bodies.
 * Internal to the tool; every function may be called from the main thread
 * only (the tool has no other threads of its own).
 */
#ifndef MBX_TOOL_CLI_H
#define MBX_TOOL_CLI_H

#include <stddef.h>
#include <stdio.h>

#include <mbx/mbx.h>

/* Exit statuses of every subcommand. */
#define CLI_OK 0    /* success */
#define CLI_FAIL 1  /* runtime failure: no such mailslot, timeout, ... */
#define CLI_USAGE 2 /* bad command line */

/* One subcommand: its name, the line `mbx --help` shows for it, its full
 * help text (printed by `mbx CMD --help`) and its entry point, which gets
 * the arguments after "mbx" (argv[0] is the subcommand's name) and returns
 * an exit status. */
struct cli_cmd {
    const char *name;
    const char *summary;
    const char *usage;
    int (*run)(int argc, char **argv);
};

/* The subcommands, one per file. */
extern const struct cli_cmd cli_listen;
extern const struct cli_cmd cli_send;
extern const struct cli_cmd cli_ls;
extern const struct cli_cmd cli_call;

/* Prints "mbx CMD: WHAT: <mbx_strerror(err)> (<mbx_strerror_name(err)>)" on
 * stderr. Returns CLI_FAIL, so a caller can `return cli_error(...)`. */
int cli_error(const struct cli_cmd *cmd, const char *what, int err);

/* Prints "mbx CMD: " and the formatted message on stderr, then a newline.
 * Returns CLI_FAIL. */
int cli_fail(const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints "mbx CMD: " and the formatted message, then the command's usage,
 * on stderr. Returns CLI_USAGE. */
int cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prints the command's usage on stdout (for --help). Returns CLI_OK, or
 * CLI_FAIL when stdout cannot be written. */
int cli_help(const struct cli_cmd *cmd);

/* Reports what getopt_long returned for a bad option: `c` is '?' (unknown
 * option) or ':' (missing argument), with optopt and optind as getopt_long
 * left them. The option string must start with ':'. Returns CLI_USAGE. */
int cli_bad_option(const struct cli_cmd *cmd, int c, char **argv);

/* Parses a whole decimal integer within [min, max] into *out. Returns 0, or
 * CLI_USAGE after printing "mbx CMD: OPTION: ..." and the usage. */
int cli_parse_int(const struct cli_cmd *cmd, const char *option,
                  const char *text, long min, long max, long *out);

/* Checks a --kind value. Returns 0 or CLI_USAGE (reported as above). */
int cli_check_kind(const struct cli_cmd *cmd, const char *kind);

/* The address to send to for a mailslot NAME as typed: NAME itself when it
 * starts with "//" or "\\", else "//./NAME". Returns a malloc'd string, or
 * NULL when out of memory. */
char *cli_address(const char *name);

/* The words joined by single spaces, as a malloc'd NUL-terminated string
 * whose length is stored in *len. Returns NULL when out of memory. */
char *cli_join(char *const *words, int count, size_t *len);

/* The length of the character at s (n > 0 bytes available) when it is a
 * tab, printable ASCII, or a well-formed UTF-8 sequence (no overlong form,
 * no surrogate, at most U+10FFFF) of a character past the C1 controls;
 * else 0. */
size_t cli_text_char(const void *s, size_t n);

/* 1 when the body is printed as text: valid UTF-8 without control
 * characters other than tab, and not starting with "hex:" (so that prefix
 * always means hex). Else 0. */
int cli_is_text(const void *body, size_t len);

/* Prints a body as text, or as "hex:" and two lowercase digits per byte
 * when cli_is_text says no. Prints no newline. */
void cli_print_body(FILE *out, const void *body, size_t len);

/* Prints a short field (a kind or an address) so that it stays one word on
 * one line: "-" when NULL or empty; spaces, tabs and bytes that are not
 * part of printable UTF-8 (see cli_text_char) as \xHH. */
void cli_print_field(FILE *out, const char *field);

/* Writes the current local time as ISO-8601 with milliseconds and the UTC
 * offset ("2024-11-22T15:43:01.123+01:00") into buf, which holds at least
 * CLI_TIME_LEN bytes. Returns buf. */
#define CLI_TIME_LEN 64
char *cli_time_now(char *buf);

#endif /* MBX_TOOL_CLI_H */
