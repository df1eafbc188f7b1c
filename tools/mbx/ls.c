/*
 * mbx ls: list the live host mailslots of the runtime directory, as a
 * table sorted by name or as one JSON object per line.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int run_ls(int argc, char **argv);

const struct cli_cmd cli_ls = {
    .name = "ls",
    .summary = "list the live host mailslots",
    .usage = "usage: mbx ls [--all] [--json]\n"
             "\n"
             "Lists the host mailslots whose reader is alive, sorted by name:\n"
             "NAME, reader PID, messages QUEUED, BYTES in use, RING size and\n"
             "MODE (octal permissions). Names starting with '.' (such as the\n"
             "reply mailslots of callers, .reply/...) are left out.\n"
             "\n"
             "  -a, --all    list the names starting with '.' too\n"
             "  -j, --json   one JSON object per line instead of a table\n"
             "  -h, --help   print this help and exit\n",
    .run = run_ls,
};

/* One mailslot, copied out of the mbx_slot_list callback. */
struct row {
    char *name;
    mbx_slot_info info; /* info.name points to name */
};

struct rows {
    struct row *v;
    size_t n, cap;
    int all; /* keep the names that start with '.' */
};

/* mbx_slot_list callback: appends a copy of the info (unless the name is
 * hidden). Returns 0, or MBX_ENOMEM, which stops the listing. */
static int
collect(const mbx_slot_info *info, void *ctx)
{
    struct rows *rows = ctx;
    struct row *r;

    if (info->name[0] == '.' && !rows->all)
        return 0;
    if (rows->n == rows->cap) {
        size_t cap = rows->cap ? 2 * rows->cap : 16;
        struct row *v = realloc(rows->v, cap * sizeof *v);
        if (v == NULL)
            return MBX_ENOMEM;
        rows->v = v;
        rows->cap = cap;
    }
    r = &rows->v[rows->n];
    r->name = strdup(info->name);
    if (r->name == NULL)
        return MBX_ENOMEM;
    r->info = *info;
    r->info.name = r->name;
    rows->n++;
    return 0;
}

static int
by_name(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->name, ((const struct row *)b)->name);
}

static void
print_rows(const struct rows *rows, char **shown, int width)
{
    printf("%-*s %8s %8s %10s %10s %s\n", width, "NAME", "PID", "QUEUED",
           "BYTES", "RING", "MODE");
    for (size_t i = 0; i < rows->n; i++) {
        const mbx_slot_info *in = &rows->v[i].info;
        /* Pad by characters: printf's %-*s would count bytes. */
        printf("%s%*s", shown[i], width - cli_columns(shown[i]), "");
        printf(" %8ld %8" PRIu64 " %10" PRIu64 " %10" PRIu64 " %04o\n", in->pid,
               in->queued, in->queued_bytes, in->ring_size, in->mode);
    }
}

/* Prints the table: a header, then one row per mailslot, the NAME column
 * as wide as the longest name. Returns 0 or MBX_ENOMEM. */
static int
print_table(const struct rows *rows)
{
    char **shown = calloc(rows->n + 1, sizeof *shown);
    int width = 4, rc = 0;

    if (shown == NULL)
        return MBX_ENOMEM;
    for (size_t i = 0; i < rows->n && rc == 0; i++) {
        shown[i] = cli_field_string(rows->v[i].name);
        if (shown[i] == NULL)
            rc = MBX_ENOMEM;
        else if (cli_columns(shown[i]) > width)
            width = cli_columns(shown[i]);
    }
    if (rc == 0)
        print_rows(rows, shown, width);
    for (size_t i = 0; i < rows->n; i++)
        free(shown[i]);
    free(shown);
    return rc;
}

/* Prints s as a JSON string. Bytes that are not part of printable UTF-8
 * are written as \u00XX. */
static void
print_json_string(const char *s)
{
    size_t len = strlen(s);

    putchar('"');
    while (len > 0) {
        size_t n = cli_text_char(s, len);
        if (n == 0 || *s == '"' || *s == '\\' || *s == '\t') {
            printf("\\u%04x", (unsigned char)*s);
            n = 1;
        } else {
            fwrite(s, 1, n, stdout);
        }
        s += n;
        len -= n;
    }
    putchar('"');
}

static void
print_json(const struct rows *rows)
{
    for (size_t i = 0; i < rows->n; i++) {
        const mbx_slot_info *in = &rows->v[i].info;
        fputs("{\"name\":", stdout);
        print_json_string(in->name);
        printf(",\"pid\":%ld,\"queued\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"ring\":%" PRIu64 ",\"mode\":\"%04o\",\"dropped\":%" PRIu64
               "}\n",
               in->pid, in->queued, in->queued_bytes, in->ring_size, in->mode,
               in->dropped);
    }
}

/* The runtime directory as mbx.h documents it, for error messages. */
static const char *
runtime_dir(char *buf, size_t size)
{
    const char *env = getenv("MBX_RUNTIME_DIR");

    if (env != NULL && env[0] != '\0')
        return env;
    env = getenv("XDG_RUNTIME_DIR");
    if (env != NULL && env[0] != '\0')
        snprintf(buf, size, "%s/mbx", env);
    else
        snprintf(buf, size, "/tmp/mbx-%lu", (unsigned long)getuid());
    return buf;
}

/* Parses the options into *all and *json. Returns 0, CLI_USAGE
 * (reported), or -1 after --help. */
static int
parse_args(int argc, char **argv, int *all, int *json)
{
    static const struct option longopts[] = {
        {"all", no_argument, NULL, 'a'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;

    while ((c = getopt_long(argc, argv, ":ajh", longopts, NULL)) != -1) {
        if (c == 'h')
            return -1;
        if (c == 'a')
            *all = 1;
        else if (c == 'j')
            *json = 1;
        else
            return cli_bad_option(&cli_ls, c, argv);
    }
    if (optind != argc)
        return cli_usage_error(&cli_ls, "unexpected argument '%s'",
                               argv[optind]);
    return 0;
}

static int
run_ls(int argc, char **argv)
{
    struct rows rows = {NULL, 0, 0, 0};
    char dir[4096];
    int json = 0, rc;

    rc = parse_args(argc, argv, &rows.all, &json);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_ls) : rc;
    rc = mbx_slot_list(collect, &rows);
    if (rc == 0) {
        if (rows.n > 1) /* qsort's base must not be NULL, even for 0 */
            qsort(rows.v, rows.n, sizeof *rows.v, by_name);
        if (json)
            print_json(&rows);
        else
            rc = print_table(&rows);
    }
    for (size_t i = 0; i < rows.n; i++)
        free(rows.v[i].name);
    free(rows.v);
    if (rc < 0)
        return cli_error(&cli_ls, runtime_dir(dir, sizeof dir), rc);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(&cli_ls, "stdout: write error");
    return CLI_OK;
}
