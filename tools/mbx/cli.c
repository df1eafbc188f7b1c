/* Helpers shared by the subcommands of the mbx tool: see cli.h. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <net/if.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int
cli_error(const struct cli_cmd *cmd, const char *what, int err)
{
    fprintf(stderr, "mbx %s: %s: %s (%s)\n", cmd->name, what, mbx_strerror(err),
            mbx_strerror_name(err));
    return CLI_FAIL;
}

int
cli_fail(const struct cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "mbx %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return CLI_FAIL;
}

int
cli_usage_error(const struct cli_cmd *cmd, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "mbx %s: ", cmd->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(cmd->usage, stderr);
    return CLI_USAGE;
}

int
cli_help(const struct cli_cmd *cmd)
{
    fputs(cmd->usage, stdout);
    return fflush(stdout) == 0 ? CLI_OK : CLI_FAIL;
}

int
cli_bad_option(const struct cli_cmd *cmd, int c, char **argv)
{
    /* After a missing argument, or an unknown long option, the option is
     * the last element getopt_long consumed; an unknown short option may
     * sit inside a group ("-xu"), so name the letter itself. */
    if (c == ':')
        return cli_usage_error(cmd, "option %s needs an argument",
                               argv[optind - 1]);
    if (optopt != 0)
        return cli_usage_error(cmd, "unknown option -%c", optopt);
    return cli_usage_error(cmd, "unknown option %s", argv[optind - 1]);
}

int
cli_parse_int(const struct cli_cmd *cmd, const char *option, const char *text,
              long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < min || v > max)
        return cli_usage_error(cmd, "%s: '%s' is not a number in [%ld, %ld]",
                               option, text, min, max);
    *out = v;
    return 0;
}

int
cli_check_kind(const struct cli_cmd *cmd, const char *kind)
{
    if (strlen(kind) > MBX_KIND_MAX)
        return cli_usage_error(cmd, "--kind: longer than %d bytes",
                               MBX_KIND_MAX);
    return 0;
}

char *
cli_address(const char *name)
{
    const char *prefix = "//./";
    size_t len = strlen(name);
    char *s;

    if (strncmp(name, "//", 2) == 0 || strncmp(name, "\\\\", 2) == 0)
        prefix = "";
    s = malloc(strlen(prefix) + len + 1);
    if (s == NULL)
        return NULL;
    strcpy(s, prefix);
    memcpy(s + strlen(prefix), name, len + 1);
    return s;
}

char *
cli_join(char *const *words, int count, size_t *len)
{
    size_t total = 0;
    char *s, *p;

    for (int i = 0; i < count; i++)
        total += strlen(words[i]) + 1;
    s = malloc(total + 1);
    if (s == NULL)
        return NULL;
    p = s;
    for (int i = 0; i < count; i++) {
        size_t n = strlen(words[i]);
        if (i > 0)
            *p++ = ' ';
        memcpy(p, words[i], n);
        p += n;
    }
    *p = '\0';
    *len = (size_t)(p - s);
    return s;
}

/* Decodes the UTF-8 sequence at s (n > 0 bytes available): returns its
 * length and stores the code point in *cp, or returns 0 when it is not
 * well-formed (a stray or missing continuation byte, an overlong form, a
 * surrogate, or past U+10FFFF). */
static size_t
utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    unsigned c = p[0];
    size_t len;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    /* Stray continuation bytes, and lead bytes that can only start
     * overlong forms or code points past U+10FFFF. */
    if (c < 0xc2 || c > 0xf4)
        return 0;
    len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n < len)
        return 0;
    *cp = c & (0xffu >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        *cp = *cp << 6 | (p[i] & 0x3fu);
    }
    if (*cp < least[len] || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return 0;
    return len;
}

size_t
cli_text_char(const void *s, size_t n)
{
    uint32_t cp;
    size_t len = utf8_decode(s, n, &cp);

    if (len == 0)
        return 0;
    /* Tab, printable ASCII, and characters past the C1 controls. */
    if (cp == '\t' || (cp >= 0x20 && cp < 0x7f) || cp >= 0xa0)
        return len;
    return 0;
}

int
cli_is_text(const void *body, size_t len)
{
    const unsigned char *p = body;

    if (len >= 4 && memcmp(p, "hex:", 4) == 0)
        return 0;
    while (len > 0) {
        size_t n = cli_text_char(p, len);
        if (n == 0)
            return 0;
        p += n;
        len -= n;
    }
    return 1;
}

void
cli_print_body(FILE *out, const void *body, size_t len)
{
    const unsigned char *p = body;

    if (cli_is_text(body, len)) {
        fwrite(body, 1, len, out);
        return;
    }
    fputs("hex:", out);
    for (size_t i = 0; i < len; i++)
        fprintf(out, "%02x", p[i]);
}

void
cli_print_field(FILE *out, const char *field)
{
    size_t len = field == NULL ? 0 : strlen(field);

    if (len == 0) {
        fputc('-', out);
        return;
    }
    while (len > 0) {
        size_t n = cli_text_char(field, len);
        if (n == 0 || *field == ' ' || *field == '\t') {
            fprintf(out, "\\x%02x", (unsigned char)*field);
            n = 1;
        } else {
            fwrite(field, 1, n, out);
        }
        field += n;
        len -= n;
    }
}

char *
cli_time_now(char *buf)
{
    struct timespec ts;
    struct tm tm;
    char date[24], zone[8];

    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    /* ISO-8601 writes the offset as +hh:mm; strftime gives +hhmm. */
    if (strftime(zone, sizeof zone, "%z", &tm) == 5)
        snprintf(buf, CLI_TIME_LEN, "%s.%03ld%.3s:%s", date,
                 ts.tv_nsec / 1000000, zone, zone + 3);
    else
        snprintf(buf, CLI_TIME_LEN, "%s.%03ld", date, ts.tv_nsec / 1000000);
    return buf;
}

long long
cli_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Prints code point cp, whose UTF-8 form is p[0..len), inside a JSON
 * string. */
static void
print_json_char(FILE *out, const unsigned char *p, size_t len, uint32_t cp)
{
    static const char named[] = "\b\f\n\r\t";
    static const char *const names[] = {"\\b", "\\f", "\\n", "\\r", "\\t"};
    const char *k = cp != 0 && cp < 0x20 ? strchr(named, (int)cp) : NULL;

    if (cp == '"' || cp == '\\')
        fprintf(out, "\\%c", (int)cp);
    else if (k != NULL)
        fputs(names[k - named], out);
    else if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0x2028 ||
             cp == 0x2029)
        fprintf(out, "\\u%04x", (unsigned)cp);
    else
        fwrite(p, 1, len, out);
}

int
cli_print_json_body(FILE *out, const void *body, size_t len)
{
    const unsigned char *p = body;
    int lossy = 0;

    fputc('"', out);
    while (len > 0) {
        uint32_t cp;
        size_t n = utf8_decode(p, len, &cp);
        if (n == 0) {
            fputs("\\ufffd", out);
            lossy = 1;
            n = 1;
        } else {
            print_json_char(out, p, n, cp);
        }
        p += n;
        len -= n;
    }
    fputc('"', out);
    return lossy;
}

void
cli_print_json_field(FILE *out, const char *field)
{
    if (field == NULL)
        fputs("null", out);
    else
        cli_print_json_body(out, field, strlen(field));
}

char *
cli_field_string(const char *field)
{
    char *s = NULL;
    size_t len;
    FILE *f = open_memstream(&s, &len);

    if (f == NULL)
        return NULL;
    cli_print_field(f, field);
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

int
cli_columns(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

/* ---- stopping on a signal ------------------------------------------------ */

/* Set by the signal handler, which also writes a byte to stop_pipe[1]. */
static volatile sig_atomic_t stop_requested;
static int stop_pipe[2] = {-1, -1};

static void
on_stop_signal(int sig)
{
    int saved = errno;

    (void)sig;
    stop_requested = 1;
    /* Wakes poll(). When the pipe is full it already holds a wake-up. */
    if (stop_pipe[1] >= 0) {
        ssize_t n = write(stop_pipe[1], "", 1);
        (void)n;
    }
    errno = saved;
}

int
cli_catch_stop_signals(void)
{
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction sa;

    if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return -errno;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        if (sigaction(signals[i], &sa, NULL) != 0)
            return -errno;
    }
    return 0;
}

int
cli_stop_requested(void)
{
    return stop_requested != 0;
}

int
cli_stop_fd(void)
{
    return stop_pipe[0];
}

void
cli_close_stop_pipe(void)
{
    int fd[2] = {stop_pipe[0], stop_pipe[1]};

    stop_pipe[0] = stop_pipe[1] = -1;
    for (int i = 0; i < 2; i++) {
        if (fd[i] >= 0)
            close(fd[i]);
    }
}

/* ---- network options ----------------------------------------------------- */

int
cli_net_is_option(int c)
{
    return c >= CLI_OPT_KEY && c <= CLI_OPT_PORT;
}

int
cli_net_option(const struct cli_cmd *cmd, int c, const char *arg,
               struct cli_net *net)
{
    static const char *const names[] = {"--key", "--domain", "--iface",
                                        "--group", "--port"};
    const char *name = names[c - CLI_OPT_KEY];
    long port = 0;
    int rc;

    if (net->first == NULL)
        net->first = name;
    if (c == CLI_OPT_PORT) {
        rc = cli_parse_int(cmd, name, arg, 1, 65535, &port);
        if (rc == 0)
            net->opts.port = (int)port;
        return rc;
    }
    if (arg[0] == '\0' || strlen(arg) > MBX_NAME_MAX)
        return cli_usage_error(cmd, "%s: empty or over %d bytes", name,
                               MBX_NAME_MAX);
    if (c == CLI_OPT_KEY)
        net->opts.key_file = arg;
    else if (c == CLI_OPT_DOMAIN)
        net->opts.domain = arg;
    else if (c == CLI_OPT_IFACE)
        net->opts.iface = arg;
    else
        net->opts.group = arg;
    return 0;
}

int
cli_is_network(const char *address)
{
    char sep = address[0];

    if ((sep != '/' && sep != '\\') || address[1] != sep)
        return 0;
    return !(address[2] == '.' && address[3] == sep);
}

/* The option if given, else the environment variable if set and not
 * empty, else NULL: what the library uses. */
static const char *
setting(const char *opt, const char *env)
{
    const char *v = opt != NULL ? opt : getenv(env);

    return v != NULL && v[0] != '\0' ? v : NULL;
}

/* The key file in use, or NULL. */
static const char *
key_file(const struct cli_net *net)
{
    return setting(net->opts.key_file, "MBX_KEY_FILE");
}

/* Prints the settings the library resolves, on stderr, to explain a
 * configuration it refused. */
static void
print_settings(const struct cli_net *net)
{
    char port[16] = "";

    if (net->opts.port > 0)
        snprintf(port, sizeof port, "%d", net->opts.port);
    struct {
        const char *what, *value;
    } s[] = {
        {"domain", setting(net->opts.domain, "MBX_DOMAIN")},
        {"host", setting(NULL, "MBX_HOSTNAME")},
        {"iface", setting(net->opts.iface, "MBX_IFACE")},
        {"group", setting(net->opts.group, "MBX_GROUP")},
        {"port", setting(port[0] ? port : NULL, "MBX_PORT")},
        {"key", key_file(net)},
    };
    fputs("  settings from the options, else MBX_* (-: default):", stderr);
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        fprintf(stderr, " %s=", s[i].what);
        cli_print_field(stderr, s[i].value);
    }
    fputc('\n', stderr);
}

int
cli_net_configure(const struct cli_cmd *cmd, const struct cli_net *net)
{
    const char *iface = setting(net->opts.iface, "MBX_IFACE");
    const char *key = key_file(net);
    struct stat st;
    int rc;

    /* The library says only "invalid": name the two usual culprits. */
    if (iface != NULL && if_nametoindex(iface) == 0)
        return cli_fail(cmd,
                        "interface '%s' (--iface or MBX_IFACE): no such "
                        "network interface",
                        iface);
    if (key != NULL && stat(key, &st) != 0)
        return cli_fail(cmd, "key file %s: %s (--key or MBX_KEY_FILE)", key,
                        strerror(errno));
    rc = mbx_net_configure(&net->opts);
    if (rc == 0)
        return 0;
    if (rc == MBX_EPERM && key != NULL)
        return cli_fail(cmd,
                        "key file %s: unreadable, or readable by others "
                        "(it must have mode 0600) (%s)",
                        key, mbx_strerror_name(rc));
    cli_error(cmd, "network settings", rc);
    print_settings(net);
    return CLI_FAIL;
}

int
cli_net_keyed(const struct cli_net *net)
{
    return key_file(net) != NULL;
}

void
cli_net_plain_notice(const struct cli_cmd *cmd, const struct cli_net *net)
{
    if (!cli_net_keyed(net))
        fprintf(stderr,
                "mbx %s: no key (--key or MBX_KEY_FILE): network traffic is "
                "plain, neither authenticated nor encrypted\n",
                cmd->name);
}
