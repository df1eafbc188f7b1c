/*
 * What the subcommands of the mbx tool share: exit statuses, error and usage
 * reporting, option parsing helpers, the printing of message bodies (text
 * and JSON), the clean stop on a signal, and the network options.
 * Internal to the tool; every function may be called from the main thread
 * only (the tool has no threads of its own; the library's network I/O
 * thread blocks every signal, so signals reach the main thread).
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
extern const struct cli_cmd cli_spy;
extern const struct cli_cmd cli_keygen;

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

/* Prints a body as a JSON string: valid UTF-8 as it is, except that '"',
 * '\\', the C0 and C1 control characters, DEL, U+2028 and U+2029 are
 * escaped (\n, \t, ... or \uXXXX); each byte that is not part of a
 * well-formed UTF-8 sequence becomes \ufffd. Returns 1 when such a byte was
 * replaced (the string lost information), else 0. */
int cli_print_json_body(FILE *out, const void *body, size_t len);

/* Prints a NUL-terminated field as cli_print_json_body does, or null when
 * field is NULL. */
void cli_print_json_field(FILE *out, const char *field);

/* A field as cli_print_field prints it, in a malloc'd string (NULL: out of
 * memory). */
char *cli_field_string(const char *field);

/* The characters of a UTF-8 string: its bytes that do not continue a
 * sequence (a terminal column each, which is near enough for a table). */
int cli_columns(const char *s);

/* Writes the current local time as ISO-8601 with milliseconds and the UTC
 * offset ("2024-11-22T15:43:01.123+01:00") into buf, which holds at least
 * CLI_TIME_LEN bytes. Returns buf. */
#define CLI_TIME_LEN 64
char *cli_time_now(char *buf);

/* Milliseconds on the monotonic clock. */
long long cli_now_ms(void);

/* ---- stopping on a signal ------------------------------------------------ */

/* Makes SIGINT, SIGTERM and SIGHUP request a clean stop: they set a flag
 * and make cli_stop_fd() readable, so a poll() on it ends at once. The
 * handlers are installed even when the shell started us with SIGINT
 * ignored (as it does for background jobs). Returns 0 or -errno. */
int cli_catch_stop_signals(void);

/* 1 once a stop signal came, else 0. */
int cli_stop_requested(void);

/* The read end of the stop pipe, for poll(). */
int cli_stop_fd(void);

/* Closes the stop pipe (the handlers stay, and only set the flag). */
void cli_close_stop_pipe(void);

/* ---- network options ----------------------------------------------------- */

/* The getopt_long values of the network options, shared by the commands
 * that use the network (listen, send, call, spy). */
enum {
    CLI_OPT_KEY = 0x200,
    CLI_OPT_DOMAIN,
    CLI_OPT_IFACE,
    CLI_OPT_GROUP,
    CLI_OPT_PORT,
};

/* Their entries for a struct option array. */
#define CLI_NET_LONGOPTS                                                       \
    {"key", required_argument, NULL, CLI_OPT_KEY},                             \
        {"domain", required_argument, NULL, CLI_OPT_DOMAIN},                   \
        {"iface", required_argument, NULL, CLI_OPT_IFACE},                     \
        {"group", required_argument, NULL, CLI_OPT_GROUP},                     \
    {                                                                          \
        "port", required_argument, NULL, CLI_OPT_PORT                          \
    }

/* Their lines in a usage text. */
#define CLI_NET_USAGE                                                          \
    "      --key FILE      shared key written by 'mbx keygen'\n"               \
    "                      (default $MBX_KEY_FILE; none: plain traffic)\n"     \
    "      --domain D      this process's domain ($MBX_DOMAIN, mbx)\n"         \
    "      --iface IF      network interface ($MBX_IFACE; lo: this host)\n"    \
    "      --group G       multicast group or broadcast address\n"             \
    "                      ($MBX_GROUP, 239.255.77.88)\n"                      \
    "      --port P        UDP port ($MBX_PORT, 7788)\n"

/* The network options given on the command line. */
struct cli_net {
    mbx_net_opts opts; /* domain, iface, group, port, key_file */
    const char *first; /* the first network option given, or NULL */
};

/* 1 when c is one of the CLI_OPT_* network options, else 0. */
int cli_net_is_option(int c);

/* Stores the network option c with argument arg in *net. Returns 0, or
 * CLI_USAGE (reported). */
int cli_net_option(const struct cli_cmd *cmd, int c, const char *arg,
                   struct cli_net *net);

/* 1 when address names a network mailslot ("//HOST/NAME" or
 * "\\HOST\mailslot\NAME" with HOST other than "."), else 0. */
int cli_is_network(const char *address);

/* Passes the options to mbx_net_configure, which also reads the MBX_*
 * environment variables. Returns 0, or CLI_FAIL after saying which setting
 * is wrong. */
int cli_net_configure(const struct cli_cmd *cmd, const struct cli_net *net);

/* 1 when a key is used (--key or $MBX_KEY_FILE), else 0. */
int cli_net_keyed(const struct cli_net *net);

/* Says once on stderr, unless a key is used, that the network traffic is
 * plain: neither authenticated nor encrypted. */
void cli_net_plain_notice(const struct cli_cmd *cmd, const struct cli_net *net);

#endif /* MBX_TOOL_CLI_H */
