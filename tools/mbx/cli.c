/* Helpers shared by the subcommands of the mbx tool: see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

size_t
cli_text_char(const void *s, size_t n)
{
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    const unsigned char *p = s;
    unsigned c = p[0];
    size_t len;
    uint32_t cp;

    if (c == '\t' || (c >= 0x20 && c < 0x7f))
        return 1;
    /* Controls, DEL, stray continuation bytes, and lead bytes that can
     * only start overlong forms or code points past U+10FFFF. */
    if (c < 0xc2 || c > 0xf4)
        return 0;
    len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
    if (n < len)
        return 0;
    cp = c & (0xffu >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3fu);
    }
    if (cp < least[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return cp < 0xa0 ? 0 : len;
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
