/* Helpers shared by the network tests: see net_util.h. */
#include "net_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

/* ---- the environment ----------------------------------------------------- */

void
nt_clean_env(void)
{
    static const char *vars[] = {"MBX_DOMAIN", "MBX_HOSTNAME", "MBX_GROUP",
                                 "MBX_PORT",   "MBX_IFACE",    "MBX_KEY_FILE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

int
nt_time_limit_s(void)
{
    const char *s = getenv("MBX_TEST_TIMEOUT");
    int t = s ? atoi(s) : 120;
    return t > 0 ? t : 120;
}

/* ---- child processes and pipes ------------------------------------------- */

pid_t
nt_fork(void)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        alarm((unsigned)nt_time_limit_s());
    }
    return pid;
}

/* Waits until the child has ended, at most timeout_ms; kills it after. */
static void
await_exit(pid_t pid, int timeout_ms)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return; /* an old kernel: waitpid and the child's alarm bound it */
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int64_t until = th_now_ms() + timeout_ms;
    int rc;
    do {
        int64_t left = until - th_now_ms();
        rc = poll(&p, 1, left > 0 ? (int)left : 0);
    } while (rc < 0 && errno == EINTR);
    close(pfd);
    if (rc == 0)
        kill(pid, SIGKILL);
}

int
nt_wait(pid_t pid, int timeout_ms)
{
    int64_t start = th_now_ms();
    if (timeout_ms >= 0)
        await_exit(pid, timeout_ms);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (timeout_ms >= 0 && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL &&
        th_now_ms() - start >= timeout_ms)
        return NT_TIMED_OUT;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return WIFSIGNALED(st) ? NT_KILLED_BY(WTERMSIG(st)) : -1;
}

void
nt_child_done(void)
{
    fflush(NULL);
    _exit(0);
}

void
nt_chan_open(struct nt_chan *c)
{
    int fds[2];
    REQUIRE_EQ(pipe(fds), 0);
    c->rd = fds[0];
    c->wr = fds[1];
}

void
nt_chan_close(struct nt_chan *c)
{
    close(c->rd);
    close(c->wr);
}

int
nt_put(struct nt_chan *c, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(c->wr, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int
nt_get(struct nt_chan *c, void *p, size_t n, int timeout_ms)
{
    char *b = p;
    while (n) {
        struct pollfd pf = {.fd = c->rd, .events = POLLIN};
        int rc = poll(&pf, 1, timeout_ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t r = read(c->rd, b, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        b += r;
        n -= (size_t)r;
    }
    return 0;
}

void
nt_tell(struct nt_chan *c, char ch)
{
    nt_put(c, &ch, 1);
}

int
nt_hear(struct nt_chan *c, int timeout_ms)
{
    unsigned char ch;
    return nt_get(c, &ch, 1, timeout_ms) == 0 ? ch : -1;
}

/* ---- a group and port of the test's own ---------------------------------- */

void
nt_group_make(struct nt_group *g, long test_pid, int variant)
{
    long p = test_pid;
    /* Ports stay below the kernel's ephemeral range (32768..), so no
     * unrelated socket of this machine holds one by chance. */
    g->port = 20000 + (int)(p % 3000) * 4 + (variant & 3);
    snprintf(g->group, sizeof g->group, "239.255.%ld.%ld",
             ((p / 256) % 64) * 4 + (variant & 3), p % 256);
}

mbx_net_opts
nt_opts_lo(const struct nt_group *g)
{
    return (mbx_net_opts){.group = g->group, .port = g->port, .iface = "lo"};
}

/* ---- network counters ---------------------------------------------------- */

bool
nt_stat_wait(size_t field, uint64_t value, int up, int timeout_ms,
             mbx_net_stats *st)
{
    int64_t until = th_now_ms() + timeout_ms;
    for (;;) {
        mbx_net_stat(st);
        uint64_t v;
        memcpy(&v, (const char *)st + field, sizeof v);
        if (up ? v >= value : v <= value)
            return true;
        if (th_now_ms() >= until)
            return false;
        nt_pause_ms(1);
    }
}

void
nt_stat_print(const char *label, const mbx_net_stats *st)
{
    static const struct {
        const char *name;
        size_t off;
    } f[] = {
#define NT_F(x) {#x, offsetof(mbx_net_stats, x)}
        NT_F(sent),
        NT_F(sent_datagrams),
        NT_F(send_dropped),
        NT_F(received),
        NT_F(delivered),
        NT_F(recv_datagrams),
        NT_F(not_for_us),
        NT_F(dropped_full),
        NT_F(dropped_size),
        NT_F(malformed),
        NT_F(unauthenticated),
        NT_F(replayed),
        NT_F(reassembly_timeouts),
        NT_F(reassembly_evicted),
        NT_F(reassembly_bytes),
        NT_F(reassembly_peak),
        NT_F(socket_overflows),
#undef NT_F
    };
    fprintf(stderr, "  %s:", label);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        uint64_t v;
        memcpy(&v, (const char *)st + f[i].off, sizeof v);
        if (v)
            fprintf(stderr, " %s=%llu", f[i].name, (unsigned long long)v);
    }
    fprintf(stderr, "\n");
}

void
nt_pause_ms(int ms)
{
    poll(NULL, 0, ms);
}

/* ---- a LAN of network namespaces ----------------------------------------- */

#define NETNS_DIR "/var/run/netns"
#define NS_PREFIX "mbxt"

/* Runs a command given as one line of words separated by single spaces
 * (no quoting: none of ours needs it), with its output on our stderr.
 * Returns 0 when it exited with status 0, else -1 after saying which
 * command failed. */
static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
run(const char *fmt, ...)
{
    char line[512], *argv[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    char copy[sizeof line];
    strcpy(copy, line);
    int argc = 0;
    for (char *save, *w = strtok_r(copy, " ", &save); w && argc < 39;
         w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(STDERR_FILENO, STDOUT_FILENO);
        execvp(argv[0], argv);
        fprintf(stderr, "  cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    fprintf(stderr, "  command failed (status %d): %s\n",
            WIFEXITED(st) ? WEXITSTATUS(st) : -1, line);
    return -1;
}

/* Deletes namespaces left by test processes that died before they could
 * delete their own (their names hold the dead process's id). */
static void
sweep_stale(void)
{
    DIR *d = opendir(NETNS_DIR);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid;
        char rest;
        if (sscanf(e->d_name, NS_PREFIX "%ld-%c", &pid, &rest) != 2 || pid <= 0)
            continue;
        if (kill((pid_t)pid, 0) < 0 && errno == ESRCH)
            run("ip netns del %s", e->d_name);
    }
    closedir(d);
}

static void
lan_destroy(struct nt_lan *lan)
{
    for (int i = 0; i < NT_LAN_HOSTS; i++)
        if (lan->made[i])
            run("ip netns del %s", lan->ns[i]);
    if (lan->made[NT_LAN_HOSTS])
        run("ip netns del %s", lan->bridge);
    memset(lan->made, 0, sizeof lan->made);
}

/* One host: its namespace, its end of a veth pair in the bridge, address,
 * links up, multicast route. */
static int
lan_host(struct nt_lan *lan, int i)
{
    const char *ns = lan->ns[i], *br = lan->bridge;
    if (run("ip netns add %s", ns) < 0)
        return -1;
    lan->made[i] = true;
    snprintf(lan->addr[i], sizeof lan->addr[i], "10.77.0.%d", i + 1);
    if (run("ip netns exec %s sysctl -qw net.ipv6.conf.all.accept_dad=0 "
            "net.ipv6.conf.default.accept_dad=0",
            ns) < 0 ||
        run("ip -n %s link add veth0 type veth peer name p%d netns %s", ns, i,
            br) < 0 ||
        run("ip -n %s link set p%d master br0", br, i) < 0 ||
        run("ip -n %s link set p%d up", br, i) < 0 ||
        run("ip -n %s addr add %s/24 dev veth0", ns, lan->addr[i]) < 0 ||
        run("ip -n %s link set veth0 up", ns) < 0 ||
        run("ip -n %s link set lo up", ns) < 0 ||
        run("ip -n %s route add 224.0.0.0/4 dev veth0", ns) < 0)
        return -1;
    return 0;
}

static int
lan_create(struct nt_lan *lan)
{
    long pid = (long)getpid();
    memset(lan, 0, sizeof *lan);
    snprintf(lan->bridge, sizeof lan->bridge, NS_PREFIX "%ld-br", pid);
    for (int i = 0; i < NT_LAN_HOSTS; i++)
        snprintf(lan->ns[i], sizeof lan->ns[i], NS_PREFIX "%ld-h%d", pid, i);
    sweep_stale();
    if (run("ip netns add %s", lan->bridge) < 0)
        return -1;
    lan->made[NT_LAN_HOSTS] = true;
    if (run("ip -n %s link add br0 type bridge mcast_snooping 0", lan->bridge) <
            0 ||
        run("ip -n %s link set br0 up", lan->bridge) < 0)
        return -1;
    for (int i = 0; i < NT_LAN_HOSTS; i++)
        if (lan_host(lan, i) < 0)
            return -1;
    return 0;
}

/* ---- waiting for the LAN to carry multicast --------------------------------
 */

/* A new link carries nothing until the kernel has seen its carrier come up
 * (which it does asynchronously, rate-limited to about once a second):
 * until then the interface drops what is sent, the bridge does not forward
 * to the port, and IPv6 has no link-local address. So before a test runs,
 * every host sends probes to the others, over IPv4 and IPv6 multicast, until
 * each has heard every other host, and has heard from each that it has
 * heard everyone. */

#define PROBE_PORT 19999
#define PROBE_MAGIC 0x6d627870u

struct probe {
    uint32_t magic;
    uint32_t host;
    uint32_t heard; /* a bit per host heard, in this family */
};

struct prober {
    int fd[2]; /* IPv4, IPv6 */
    struct sockaddr_storage to[2];
    socklen_t to_len[2];
    uint32_t heard[2], full[2]; /* hosts heard; hosts that heard all */
};

/* The probe sockets of host `self` in its namespace: joined to the probe
 * groups on veth0, sending there, not hearing themselves. */
static int
probe_open(struct prober *p)
{
    unsigned ifx = if_nametoindex("veth0");
    int zero = 0, one = 1;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&p->to[0];
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&p->to[1];
    *a4 = (struct sockaddr_in){.sin_family = AF_INET,
                               .sin_port = htons(PROBE_PORT)};
    *a6 = (struct sockaddr_in6){.sin6_family = AF_INET6,
                                .sin6_port = htons(PROBE_PORT),
                                .sin6_scope_id = ifx};
    inet_pton(AF_INET, "239.255.0.77", &a4->sin_addr);
    inet_pton(AF_INET6, "ff02::6d:6278", &a6->sin6_addr);
    p->to_len[0] = sizeof *a4;
    p->to_len[1] = sizeof *a6;
    p->fd[0] = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    p->fd[1] = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (!ifx || p->fd[0] < 0 || p->fd[1] < 0)
        return -1;
    struct ip_mreqn m4 = {.imr_multiaddr = a4->sin_addr,
                          .imr_ifindex = (int)ifx};
    struct ipv6_mreq m6 = {.ipv6mr_multiaddr = a6->sin6_addr,
                           .ipv6mr_interface = ifx};
    setsockopt(p->fd[0], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(p->fd[1], SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(p->fd[0], (struct sockaddr *)a4, sizeof *a4) < 0 ||
        bind(p->fd[1], (struct sockaddr *)a6, sizeof *a6) < 0 ||
        setsockopt(p->fd[0], IPPROTO_IP, IP_ADD_MEMBERSHIP, &m4, sizeof m4) <
            0 ||
        setsockopt(p->fd[0], IPPROTO_IP, IP_MULTICAST_IF, &m4, sizeof m4) < 0 ||
        setsockopt(p->fd[0], IPPROTO_IP, IP_MULTICAST_LOOP, &zero,
                   sizeof zero) < 0 ||
        setsockopt(p->fd[1], IPPROTO_IPV6, IPV6_JOIN_GROUP, &m6, sizeof m6) <
            0 ||
        setsockopt(p->fd[1], IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifx,
                   sizeof ifx) < 0 ||
        setsockopt(p->fd[1], IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &zero,
                   sizeof zero) < 0)
        return -1;
    return 0;
}

static void
probe_send(struct prober *p, uint32_t self)
{
    for (int f = 0; f < 2; f++) {
        struct probe pr = {PROBE_MAGIC, self, p->heard[f]};
        /* Fails (no route, no address) until the link is up: try again. */
        sendto(p->fd[f], &pr, sizeof pr, 0, (struct sockaddr *)&p->to[f],
               p->to_len[f]);
    }
}

/* In a child in host self's namespace: probes until done (exit 0) or the
 * deadline (exit 1). */
static _Noreturn void
probe_main(const struct nt_lan *lan, uint32_t self, int timeout_ms)
{
    nt_lan_enter(lan, (int)self);
    struct prober p = {0};
    if (probe_open(&p) < 0)
        _exit(2);
    const uint32_t others = ((1u << NT_LAN_HOSTS) - 1) & ~(1u << self);
    int64_t until = th_now_ms() + timeout_ms, next = 0;
    while (p.heard[0] != others || p.full[0] != others ||
           p.heard[1] != others || p.full[1] != others) {
        int64_t now = th_now_ms();
        if (now >= until)
            _exit(1);
        if (now >= next) {
            probe_send(&p, self);
            next = now + 5;
        }
        struct pollfd pf[2] = {{.fd = p.fd[0], .events = POLLIN},
                               {.fd = p.fd[1], .events = POLLIN}};
        poll(pf, 2, 5);
        for (int f = 0; f < 2; f++) {
            struct probe pr;
            while (recv(p.fd[f], &pr, sizeof pr, 0) == (ssize_t)sizeof pr) {
                if (pr.magic != PROBE_MAGIC || pr.host >= NT_LAN_HOSTS ||
                    pr.host == self)
                    continue;
                p.heard[f] |= 1u << pr.host;
                uint32_t theirs = ((1u << NT_LAN_HOSTS) - 1) & ~(1u << pr.host);
                if (pr.heard == theirs)
                    p.full[f] |= 1u << pr.host;
            }
        }
    }
    /* The others may still wait to hear that this host heard them. */
    probe_send(&p, self);
    _exit(0);
}

/* Waits until the LAN carries multicast between every pair of hosts, both
 * ways, over IPv4 and IPv6. Returns 0 or -1 (said why). */
static int
lan_probe(const struct nt_lan *lan, int timeout_ms)
{
    pid_t pid[NT_LAN_HOSTS];
    fflush(NULL);
    for (int i = 0; i < NT_LAN_HOSTS; i++) {
        pid[i] = fork();
        if (pid[i] < 0)
            return -1;
        if (pid[i] == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            probe_main(lan, (uint32_t)i, timeout_ms);
        }
    }
    int rc = 0;
    for (int i = 0; i < NT_LAN_HOSTS; i++) {
        int st = nt_wait(pid[i], timeout_ms + 5000);
        if (st != 0) {
            fprintf(stderr,
                    "  host %d of the test's LAN did not exchange multicast "
                    "with the others within %d ms (status %d)\n",
                    i, timeout_ms, st);
            rc = -1;
        }
    }
    return rc;
}

int
nt_lan_guard(struct nt_lan *lan)
{
    nt_clean_env();
    if (lan_create(lan) < 0) {
        fprintf(stderr,
                "  cannot make the test's network namespaces (above: the "
                "command that failed). This test needs root (CAP_SYS_ADMIN "
                "and CAP_NET_ADMIN), iproute2's ip and sysctl, and a kernel "
                "with network namespaces, veth and bridge support.\n");
        lan_destroy(lan);
        REQUIRE(!"network namespaces made");
    }
    int64_t made = th_now_ms();
    int up = lan_probe(lan, 10000);
    fprintf(stderr, "  the LAN carried multicast %lld ms after it was made\n",
            (long long)(th_now_ms() - made));
    if (up < 0)
        lan_destroy(lan);
    REQUIRE(up == 0);
    pid_t guard = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        lan_destroy(lan);
    REQUIRE(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != guard)
            _exit(1);
        /* End before the harness's own limit, so the LAN is deleted. */
        int limit = nt_time_limit_s();
        alarm((unsigned)(limit > 20 ? limit - 10 : limit));
        return 1;
    }
    int st = nt_wait(pid, -1);
    lan_destroy(lan);
    if (st != 0)
        fprintf(stderr, "  the test's body ended with status %d\n", st);
    CHECK_EQ(st, 0);
    return 0;
}

void
nt_lan_enter(const struct nt_lan *lan, int host)
{
    char path[128];
    snprintf(path, sizeof path, NETNS_DIR "/%s", lan->ns[host]);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CREQUIRE(fd >= 0);
    CREQUIRE_EQ(setns(fd, CLONE_NEWNET), 0);
    close(fd);
}
