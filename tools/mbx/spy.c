/*
 * mbx spy: watch every network message this host's socket receives, as
 * lcm-spy does, and show a table of the live names: how many messages,
 * how fast, how big, and from which hosts.
 *
 * The library hands the spy mailbox a summary of each message (kind
 * "mbx.spy", args name/target/domain/host/kind/size); the table is kept
 * here and printed every interval, in place on a terminal.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

static int run_spy(int argc, char **argv);

const struct cli_cmd cli_spy = {
    .name = "spy",
    .summary = "watch the network messages and show a table of names",
    .usage =
        "usage: mbx spy [--interval MS] [--once SECONDS] [--key FILE]\n"
        "               [--domain D] [--iface IF] [--group G] [--port P]\n"
        "\n"
        "Watches every network message this host receives, whatever its\n"
        "name, host or domain, and shows a table of the names seen, one row\n"
        "per ADDRESS (//HOST/NAME as sent) and DOMAIN: the KIND of the last\n"
        "message, the COUNT of messages, their RATE (messages per second\n"
        "over the last interval), their AVG size in bytes, and the HOSTS\n"
        "they came from (the first three, then +N). Above the table, two\n"
        "lines give the time, the number of names, this process's network\n"
        "counters, and how many messages the spy missed by falling behind.\n"
        "\n"
        "On a terminal the table is redrawn in place every interval;\n"
        "otherwise each table follows the previous one after a blank line.\n"
        "With a key, only messages sealed with it are seen (others count as\n"
        "unauthenticated); without one, only plain messages. SIGINT or\n"
        "SIGTERM prints the table once more and exits with status 0.\n"
        "\n"
        "  -i, --interval MS   refresh every MS ms (default 1000)\n"
        "      --once SECONDS  watch for SECONDS (decimals allowed), print\n"
        "                      the table once and exit\n" CLI_NET_USAGE "\n"
        "  -h, --help          print this help and exit\n",
    .run = run_spy,
};

enum { OPT_ONCE = 256 };

/* How many source hosts a row names before "+N". */
#define HOSTS_SHOWN 3

/* Summaries the spy mailbox holds before it drops (and counts) the next
 * ones, so that a spy that cannot keep up does not grow without bound. */
#define SPY_BACKLOG (1u << 16)

/* Summaries counted between two looks at the clock. */
#define DRAIN_BATCH 4096

/* One row: messages to one address in one domain. */
struct row {
    char *target, *name, *domain; /* as first seen */
    char *kind;                   /* of the last message */
    uint64_t count, bytes;
    uint64_t count_before; /* count at the previous refresh */
    char **hosts;          /* distinct source hosts, first seen first */
    size_t nhosts, hosts_cap;
};

struct table {
    struct row *v;
    size_t n, cap;
    mbx_id box; /* the spy mailbox */
};

/* What the command line asked for. */
struct spy_opts {
    long interval;  /* ms */
    long long once; /* ms to watch before the only table; 0: no limit */
    struct cli_net net;
};

/* ---- the table ----------------------------------------------------------- */

/* The row of (target, name, domain); host and domain names compare
 * case-insensitively, names exactly. NULL when there is none. */
static struct row *
row_find(struct table *t, const char *target, const char *name,
         const char *domain)
{
    for (size_t i = 0; i < t->n; i++) {
        struct row *r = &t->v[i];
        if (strcmp(r->name, name) == 0 && strcasecmp(r->target, target) == 0 &&
            strcasecmp(r->domain, domain) == 0)
            return r;
    }
    return NULL;
}

/* A new, empty row. NULL when out of memory. */
static struct row *
row_add(struct table *t, const char *target, const char *name,
        const char *domain)
{
    struct row *r;

    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        struct row *v = realloc(t->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    r = &t->v[t->n];
    memset(r, 0, sizeof *r);
    r->target = strdup(target);
    r->name = strdup(name);
    r->domain = strdup(domain);
    if (r->target == NULL || r->name == NULL || r->domain == NULL) {
        free(r->target);
        free(r->name);
        free(r->domain);
        return NULL;
    }
    t->n++;
    return r;
}

/* Adds host to the row's hosts unless it is there. Returns 0 or
 * MBX_ENOMEM. */
static int
row_add_host(struct row *r, const char *host)
{
    for (size_t i = 0; i < r->nhosts; i++) {
        if (strcasecmp(r->hosts[i], host) == 0)
            return 0;
    }
    if (r->nhosts == r->hosts_cap) {
        size_t cap = r->hosts_cap ? 2 * r->hosts_cap : 4;
        char **v = realloc(r->hosts, cap * sizeof *v);
        if (v == NULL)
            return MBX_ENOMEM;
        r->hosts = v;
        r->hosts_cap = cap;
    }
    r->hosts[r->nhosts] = strdup(host);
    if (r->hosts[r->nhosts] == NULL)
        return MBX_ENOMEM;
    r->nhosts++;
    return 0;
}

static void
table_free(struct table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct row *r = &t->v[i];
        for (size_t j = 0; j < r->nhosts; j++)
            free(r->hosts[j]);
        free(r->hosts);
        free(r->target);
        free(r->name);
        free(r->domain);
        free(r->kind);
    }
    free(t->v);
}

/* A summary's string keyword, or "" when missing. */
static const char *
summary_str(const mbx_args *a, const char *key)
{
    const char *s = NULL;

    return mbx_args_kw_str(a, key, &s, NULL) == 0 ? s : "";
}

/* Counts one summary of the spy. Returns 0, or MBX_ENOMEM. A summary that
 * does not decode is ignored. */
static int
table_count(struct table *t, const mbx_msg *m)
{
    mbx_args *a = NULL;
    int64_t size = 0;
    struct row *r;
    char *kind;
    int rc = 0;

    if (strcmp(mbx_msg_kind(m), "mbx.spy") != 0 || mbx_msg_args(m, &a) < 0)
        return 0;
    const char *target = summary_str(a, "target");
    const char *name = summary_str(a, "name");
    const char *domain = summary_str(a, "domain");
    mbx_args_kw_int(a, "size", &size);
    r = row_find(t, target, name, domain);
    if (r == NULL)
        r = row_add(t, target, name, domain);
    kind = strdup(summary_str(a, "kind"));
    if (r == NULL || kind == NULL) {
        free(kind);
        rc = MBX_ENOMEM;
    } else {
        free(r->kind);
        r->kind = kind;
        r->count++;
        r->bytes += size > 0 ? (uint64_t)size : 0;
        rc = row_add_host(r, summary_str(a, "host"));
    }
    mbx_args_free(a);
    return rc;
}

/* ---- printing ------------------------------------------------------------ */

/* The cells of one row as printed, each malloc'd. */
enum { C_ADDRESS, C_DOMAIN, C_KIND, C_HOSTS, C_COUNT };
struct cells {
    char *c[C_COUNT];
};

/* "//TARGET/NAME" as cli_print_field shows it. */
static char *
address_cell(const struct row *r)
{
    size_t n = strlen(r->target) + strlen(r->name) + 4;
    char *raw = malloc(n), *s;

    if (raw == NULL)
        return NULL;
    snprintf(raw, n, "//%s/%s", r->target, r->name);
    s = cli_field_string(raw);
    free(raw);
    return s;
}

/* The first hosts joined by commas, then ",+N" for the others. */
static char *
hosts_cell(const struct row *r)
{
    char *s = NULL;
    size_t len;
    FILE *f = open_memstream(&s, &len);

    if (f == NULL)
        return NULL;
    for (size_t i = 0; i < r->nhosts && i < HOSTS_SHOWN; i++) {
        if (i > 0)
            fputc(',', f);
        cli_print_field(f, r->hosts[i]);
    }
    if (r->nhosts == 0)
        fputc('-', f);
    if (r->nhosts > HOSTS_SHOWN)
        fprintf(f, ",+%zu", r->nhosts - HOSTS_SHOWN);
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Fills the cells of row r. Returns 0 or MBX_ENOMEM. */
static int
cells_of(const struct row *r, struct cells *out)
{
    out->c[C_ADDRESS] = address_cell(r);
    out->c[C_DOMAIN] = cli_field_string(r->domain);
    out->c[C_KIND] = cli_field_string(r->kind);
    out->c[C_HOSTS] = hosts_cell(r);
    for (int i = 0; i < C_COUNT; i++) {
        if (out->c[i] == NULL)
            return MBX_ENOMEM;
    }
    return 0;
}

static void
cells_free(struct cells *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++) {
        for (int j = 0; j < C_COUNT; j++)
            free(c[i].c[j]);
    }
    free(c);
}

/* Prints s left-aligned in a column of `width` characters, then a space. */
static void
print_cell(const char *s, int width)
{
    printf("%s%*s ", s, width - cli_columns(s), "");
}

/* Sorts rows by address, then domain. */
static int
by_address(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = strcasecmp(x->target, y->target);

    if (c == 0)
        c = strcmp(x->name, y->name);
    return c != 0 ? c : strcasecmp(x->domain, y->domain);
}

/* The two lines above the table: the time and the number of names; the
 * network counters and the summaries the spy missed because it fell
 * behind. */
static void
print_status(const struct table *t)
{
    char when[CLI_TIME_LEN];
    mbx_net_stats st = {0};
    mbx_stats box = {0};

    mbx_net_stat(&st);
    mbx_stat(t->box, &box);
    printf("%s  %zu name%s\n", cli_time_now(when), t->n, t->n == 1 ? "" : "s");
    printf("received %" PRIu64 "  unauthenticated %" PRIu64
           "  malformed %" PRIu64 "  replayed %" PRIu64 "  missed %" PRIu64
           "\n",
           st.received, st.unauthenticated, st.malformed, st.replayed,
           box.dropped);
}

/* Prints the rows with cells c: RATE over `seconds`. */
static void
print_rows(const struct table *t, const struct cells *c, double seconds)
{
    int w[C_COUNT] = {7, 6, 4, 5};
    static const char *const head[C_COUNT] = {"ADDRESS", "DOMAIN", "KIND",
                                              "HOSTS"};

    for (size_t i = 0; i < t->n; i++) {
        for (int j = 0; j < C_HOSTS; j++) {
            int n = cli_columns(c[i].c[j]);
            w[j] = n > w[j] ? n : w[j];
        }
    }
    for (int j = 0; j < C_HOSTS; j++)
        print_cell(head[j], w[j]);
    printf("%8s %8s %8s %s\n", "COUNT", "RATE", "AVG", head[C_HOSTS]);
    for (size_t i = 0; i < t->n; i++) {
        const struct row *r = &t->v[i];
        double rate = seconds > 0 ? (r->count - r->count_before) / seconds : 0;
        for (int j = 0; j < C_HOSTS; j++)
            print_cell(c[i].c[j], w[j]);
        printf("%8" PRIu64 " %8.1f %8" PRIu64 " %s\n", r->count, rate,
               (r->bytes + r->count / 2) / r->count, c[i].c[C_HOSTS]);
    }
}

/* Prints the status line and the table, sorted, with RATE over the
 * `seconds` since the previous table; then starts a new interval.
 * Returns 0, or CLI_FAIL (reported). */
static int
print_table(struct table *t, double seconds, int tty, int again)
{
    struct cells *c = calloc(t->n + 1, sizeof *c);
    int rc = c == NULL ? MBX_ENOMEM : 0;

    if (t->n > 1)
        qsort(t->v, t->n, sizeof *t->v, by_address);
    for (size_t i = 0; i < t->n && rc == 0; i++)
        rc = cells_of(&t->v[i], &c[i]);
    if (rc == 0) {
        if (tty)
            fputs("\033[H\033[2J", stdout);
        else if (again)
            putchar('\n');
        print_status(t);
        print_rows(t, c, seconds);
        for (size_t i = 0; i < t->n; i++)
            t->v[i].count_before = t->v[i].count;
    }
    cells_free(c, t->n);
    if (rc < 0)
        return cli_error(&cli_spy, "table", rc);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_fail(&cli_spy, "stdout: %s", strerror(errno));
    return 0;
}

/* ---- watching ------------------------------------------------------------ */

/* Counts the summaries waiting in the spy mailbox, at most DRAIN_BATCH so
 * that a flood does not hold the tables back. Returns 0 or CLI_FAIL
 * (reported). */
static int
drain(struct table *t)
{
    mbx_msg *m;
    int rc = 0;

    for (int i = 0; i < DRAIN_BATCH && (rc = mbx_recv(t->box, &m, 0)) == 0;
         i++) {
        rc = table_count(t, m);
        mbx_msg_free(m);
        if (rc < 0)
            return cli_error(&cli_spy, "table", rc);
    }
    return rc == 0 || rc == MBX_EAGAIN ? 0
                                       : cli_error(&cli_spy, "spy mailbox", rc);
}

/* Waits until summaries arrive, a signal comes, or `until` (monotonic
 * ms). Returns 0, or CLI_FAIL (reported). */
static int
wait_until(int fd, long long until)
{
    long long left = until - cli_now_ms();
    struct pollfd fds[2] = {
        {.fd = fd, .events = POLLIN},
        {.fd = cli_stop_fd(), .events = POLLIN},
    };

    if (left <= 0)
        return 0;
    if (poll(fds, 2, left > 1000000 ? 1000000 : (int)left) < 0 &&
        errno != EINTR)
        return cli_fail(&cli_spy, "poll: %s", strerror(errno));
    return 0;
}

/* Watches until a signal, or the end of --once, printing a table at
 * every interval (--once: at the end only). Returns the exit status. */
static int
spy_loop(const struct spy_opts *o, mbx_id box, int fd)
{
    struct table t = {NULL, 0, 0, box};
    int tty = isatty(STDOUT_FILENO), tables = 0, rc = 0;
    long long start = cli_now_ms(), last = start;
    long long next = start + (o->once > 0 ? o->once : o->interval);

    while (rc == 0) {
        rc = drain(&t);
        long long now = cli_now_ms();
        int stop = cli_stop_requested();
        if (rc != 0 || (now < next && !stop)) {
            if (rc == 0)
                rc = wait_until(fd, next);
            continue;
        }
        rc = print_table(&t, (now - last) / 1000.0, tty, tables++ > 0);
        if (stop || o->once > 0)
            break;
        last = now;
        next += o->interval;
        if (next <= now) /* we fell behind: skip the missed tables */
            next = now + o->interval;
    }
    table_free(&t);
    return rc;
}

/* ---- the command --------------------------------------------------------- */

/* Parses --once: seconds, decimals allowed, above 0 and at most a day. */
static int
parse_seconds(const char *text, long long *ms)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(v > 0) || v > 86400)
        return cli_usage_error(&cli_spy,
                               "--once: '%s' is not a number of seconds in "
                               "(0, 86400]",
                               text);
    *ms = (long long)(v * 1000 + 0.5);
    if (*ms == 0)
        *ms = 1;
    return 0;
}

/* Fills *o from the command line. Returns 0, CLI_USAGE (reported), or -1
 * after --help. */
static int
parse_args(int argc, char **argv, struct spy_opts *o)
{
    static const struct option longopts[] = {
        {"interval", required_argument, NULL, 'i'},
        {"once", required_argument, NULL, OPT_ONCE},
        CLI_NET_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const struct cli_cmd *cmd = &cli_spy;
    int c, rc = 0;

    while (rc == 0 &&
           (c = getopt_long(argc, argv, ":i:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'i':
            rc = cli_parse_int(cmd, "--interval", optarg, 50, 3600000,
                               &o->interval);
            break;
        case OPT_ONCE:
            rc = parse_seconds(optarg, &o->once);
            break;
        case 'h':
            return -1;
        default:
            if (!cli_net_is_option(c))
                return cli_bad_option(cmd, c, argv);
            rc = cli_net_option(cmd, c, optarg, &o->net);
        }
    }
    if (rc == 0 && optind != argc)
        rc = cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return rc;
}

/* Makes mailbox *box the process's spy, after configuring the network.
 * Returns 0 and the mailbox's fd in *fd, or CLI_FAIL (reported). */
static int
start_spying(const struct spy_opts *o, mbx_id *box, int *fd)
{
    const char *host = NULL, *domain = NULL;
    int rc = cli_net_configure(&cli_spy, &o->net);

    if (rc != 0)
        return rc;
    cli_net_plain_notice(&cli_spy, &o->net);
    rc = mbx_create(
        box, &(mbx_opts){.capacity = SPY_BACKLOG, .when_full = MBX_FULL_DROP});
    if (rc < 0)
        return cli_error(&cli_spy, "mailbox", rc);
    rc = mbx_net_spy(*box);
    *fd = rc < 0 ? rc : mbx_fd(*box);
    if (*fd < 0)
        return cli_error(&cli_spy, "network", *fd);
    mbx_net_identity(&host, &domain);
    fprintf(stderr, "mbx spy: spying (host %s, domain %s%s)\n",
            host ? host : "-", domain ? domain : "-",
            cli_net_keyed(&o->net) ? ", sealed" : "");
    return 0;
}

static int
run_spy(int argc, char **argv)
{
    struct spy_opts o = {.interval = 1000};
    mbx_id box = 0;
    int fd = -1, rc;

    rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? cli_help(&cli_spy) : rc;
    rc = cli_catch_stop_signals();
    if (rc < 0)
        rc = cli_fail(&cli_spy, "signals: %s", strerror(-rc));
    else
        rc = start_spying(&o, &box, &fd);
    if (rc == 0)
        rc = spy_loop(&o, box, fd);
    if (box != 0) {
        mbx_net_spy(0);
        mbx_destroy(box);
    }
    cli_close_stop_pipe();
    return rc;
}
