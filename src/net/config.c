/*
 * The network layer's configuration: options given to mbx_net_configure,
 * else the environment, else the defaults; resolved once and fixed when the
 * layer starts. Also the shared key: its file format and mbx_net_keygen.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/address.h"
#include "net/net.h"

#define DATAGRAM_DEFAULT 1452
#define DATAGRAM_MIN 512
#define DATAGRAM_LARGE 16384 /* the most the default takes from a big MTU */
#define REASSEMBLY_MS_DEFAULT 1000
#define REASSEMBLY_BYTES_DEFAULT (4u << 20)

static pthread_mutex_t config_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mbx__net_config config;
static bool resolved;       /* config holds a valid configuration */
static _Atomic bool frozen; /* the layer started: config is final */

void
mbx__net_lower(char *out, const char *s, size_t len)
{
    /* ASCII only, whatever the locale: every host must agree. */
    for (size_t i = 0; i < len; i++)
        out[i] = s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
    out[len] = '\0';
}

/* The longest host name: its reply addresses ("//HOST/.reply/" and two
 * 16-digit ids) must fit in an address. */
#define HOST_MAX (MBX_NAME_MAX - 43)

/* A host or domain name as addresses write them (at most max bytes), and
 * not one of the scopes "." and "*". */
static bool
valid_label(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n <= max && strcmp(s, ".") != 0 && strcmp(s, "*") != 0 &&
           mbx__address_valid_host(s, n);
}

/* The option if set, else the environment variable if set and non-empty,
 * else NULL. */
static const char *
pick(const char *opt, const char *env)
{
    if (opt)
        return opt;
    const char *v = getenv(env);
    return v && *v ? v : NULL;
}

/* Whether a is an IPv4 broadcast address: the limited one, the loopback
 * network's, or the broadcast address (all host bits set) of the subnet of
 * one of this host's addresses. (A unicast address would reach one reader
 * only.) */
static bool
is_broadcast_address(struct in_addr a)
{
    uint32_t h = ntohl(a.s_addr);
    if (h == INADDR_BROADCAST || h == 0x7fffffffu)
        return true;
    struct ifaddrs *list, *i;
    bool found = false;
    if (getifaddrs(&list) < 0)
        return false;
    for (i = list; i && !found; i = i->ifa_next) {
        if (i->ifa_addr && i->ifa_netmask &&
            i->ifa_addr->sa_family == AF_INET) {
            uint32_t addr = ntohl(
                ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr);
            uint32_t mask = ntohl(
                ((const struct sockaddr_in *)i->ifa_netmask)->sin_addr.s_addr);
            found = mask != 0xffffffffu && (addr | ~mask) == h;
        }
    }
    freeifaddrs(list);
    return found;
}

/* Whether the interface carries multicast (IFF_MULTICAST). */
static bool
interface_multicasts(unsigned ifindex)
{
    char name[IF_NAMESIZE];
    struct ifreq req = {0};
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    bool yes = false;
    if (fd >= 0 && if_indextoname(ifindex, name)) {
        snprintf(req.ifr_name, sizeof req.ifr_name, "%s", name);
        yes = ioctl(fd, SIOCGIFFLAGS, &req) == 0 &&
              (req.ifr_flags & IFF_MULTICAST);
    }
    if (fd >= 0)
        close(fd);
    return yes;
}

/* Reads the group address (and port) into c. */
static int
resolve_group(struct mbx__net_config *c, const char *group, int port)
{
    memset(&c->group, 0, sizeof c->group);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&c->group;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&c->group;
    if (inet_pton(AF_INET, group, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        c->family = AF_INET;
        c->group_len = sizeof *v4;
        c->broadcast = !IN_MULTICAST(ntohl(v4->sin_addr.s_addr));
        return c->broadcast && !is_broadcast_address(v4->sin_addr) ? MBX_EINVAL
                                                                   : 0;
    }
    if (inet_pton(AF_INET6, group, &v6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_MULTICAST(&v6->sin6_addr))
            return MBX_EINVAL;
        if (c->ifindex && !interface_multicasts(c->ifindex))
            return MBX_EINVAL; /* e.g. "lo": IPv6 multicast cannot leave */
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        v6->sin6_scope_id = c->ifindex;
        c->family = AF_INET6;
        c->group_len = sizeof *v6;
        c->broadcast = false;
        return 0;
    }
    return MBX_EINVAL;
}

int
mbx__net_key_parse(const char *text, size_t len, uint8_t key[32])
{
    if (len == 65 && text[64] == '\n')
        len = 64;
    size_t got = 0;
    const char *end = NULL;
    if (len != 64 ||
        sodium_hex2bin(key, 32, text, len, NULL, &got, &end) != 0 ||
        got != 32 || end != text + len)
        return MBX_EINVAL;
    return 0;
}

/* Loads the key file: 64 hex digits and an optional newline, readable by
 * its owner only. */
static int
load_key(const char *path, uint8_t key[32])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == EACCES ? MBX_EPERM : MBX_EINVAL;
    struct stat st;
    char text[80];
    ssize_t n = -1;
    int rc = MBX_EINVAL;
    if (fstat(fd, &st) == 0) {
        if (st.st_mode & 077)
            rc = MBX_EPERM; /* a key others can read is no secret */
        else if (S_ISREG(st.st_mode) && (n = read(fd, text, sizeof text)) > 0)
            rc = mbx__net_key_parse(text, (size_t)n, key);
    }
    close(fd);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* The default datagram size: what fits the interface's MTU (up to
 * DATAGRAM_LARGE, e.g. on the loopback interface), else 1452. */
static size_t
datagram_default(const struct mbx__net_config *c, const char *iface)
{
    size_t size = DATAGRAM_DEFAULT;
    if (!iface)
        return size;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq req = {0};
    snprintf(req.ifr_name, sizeof req.ifr_name, "%s", iface);
    if (fd >= 0 && ioctl(fd, SIOCGIFMTU, &req) == 0) {
        int room = req.ifr_mtu - (c->family == AF_INET ? 28 : 48);
        if (room >= DATAGRAM_MIN)
            size = room > DATAGRAM_LARGE ? DATAGRAM_LARGE : (size_t)room;
    }
    if (fd >= 0)
        close(fd);
    return size;
}

/* Resolves options + environment into *c. */
static int
resolve(const mbx_net_opts *o, struct mbx__net_config *c)
{
    mbx_net_opts none = {0};
    if (!o)
        o = &none;
    memset(c, 0, sizeof *c);

    const char *domain = pick(o->domain, "MBX_DOMAIN");
    if (!domain)
        domain = MBX_NET_DOMAIN_DEFAULT;
    if (!valid_label(domain, 255))
        return MBX_EINVAL;
    strcpy(c->domain, domain);
    mbx__net_lower(c->domain_lc, domain, strlen(domain));

    char sys[256] = "";
    const char *host = pick(o->host, "MBX_HOSTNAME");
    if (!host) {
        if (gethostname(sys, sizeof sys - 1) < 0 || !sys[0])
            strcpy(sys, "localhost");
        host = sys;
    }
    if (!valid_label(host, HOST_MAX))
        return MBX_EINVAL;
    strcpy(c->host, host);
    mbx__net_lower(c->host_lc, host, strlen(host));

    const char *iface = pick(o->iface, "MBX_IFACE");
    if (iface) {
        c->ifindex = if_nametoindex(iface);
        if (!c->ifindex)
            return MBX_EINVAL;
        c->loopback_only = strcmp(iface, "lo") == 0;
    }

    int port = o->port;
    if (!port) {
        const char *p = getenv("MBX_PORT");
        port = MBX_NET_PORT_DEFAULT;
        if (p && *p) {
            char *end;
            long v = strtol(p, &end, 10);
            if (*end || v <= 0 || v > 65535)
                return MBX_EINVAL;
            port = (int)v;
        }
    }
    if (port <= 0 || port > 65535)
        return MBX_EINVAL;
    const char *group = pick(o->group, "MBX_GROUP");
    int rc = resolve_group(c, group ? group : MBX_NET_GROUP_DEFAULT, port);
    if (rc < 0)
        return rc;

    const char *key_file = pick(o->key_file, "MBX_KEY_FILE");
    if (key_file) {
        if ((rc = load_key(key_file, c->key)) < 0)
            return rc;
        c->has_key = true;
    }

    c->message_size =
        o->message_size ? o->message_size : MBX_NET_MESSAGE_DEFAULT;
    c->datagram_size =
        o->datagram_size ? o->datagram_size : datagram_default(c, iface);
    c->ttl = o->ttl ? o->ttl : 1;
    c->reassembly_ms =
        o->reassembly_ms ? o->reassembly_ms : REASSEMBLY_MS_DEFAULT;
    c->reassembly_bytes =
        o->reassembly_bytes ? o->reassembly_bytes : REASSEMBLY_BYTES_DEFAULT;
    if (c->message_size > MBX_NET_MESSAGE_MAX ||
        c->datagram_size < DATAGRAM_MIN || c->datagram_size > 65507 ||
        c->ttl < 0 || c->ttl > 255 || c->reassembly_ms < 0 || o->port < 0)
        return MBX_EINVAL;
    return 0;
}

int
mbx_net_configure(const mbx_net_opts *opts)
{
    struct mbx__net_config c;
    if (atomic_load(&frozen))
        return MBX_EEXIST;
    pthread_mutex_lock(&config_lock);
    int rc = frozen ? MBX_EEXIST : resolve(opts, &c);
    if (rc == 0) {
        config = c;
        resolved = true;
    }
    pthread_mutex_unlock(&config_lock);
    sodium_memzero(&c, sizeof c);
    return rc;
}

int
mbx__net_config_get(const struct mbx__net_config **out)
{
    if (atomic_load_explicit(&frozen, memory_order_acquire)) {
        *out = &config; /* final: no lock needed */
        return 0;
    }
    int rc = 0;
    pthread_mutex_lock(&config_lock);
    if (!resolved && (rc = resolve(NULL, &config)) == 0)
        resolved = true;
    pthread_mutex_unlock(&config_lock);
    if (rc == 0)
        *out = &config;
    return rc;
}

void
mbx__net_config_freeze(void)
{
    if (atomic_load(&frozen))
        return;
    pthread_mutex_lock(&config_lock);
    frozen = true;
    pthread_mutex_unlock(&config_lock);
}

void
mbx__net_config_fork_lock(void)
{
    pthread_mutex_lock(&config_lock);
}

void
mbx__net_config_fork_unlock(void)
{
    pthread_mutex_unlock(&config_lock);
}

int
mbx_net_identity(const char **host, const char **domain)
{
    const struct mbx__net_config *c;
    int rc = mbx__net_config_get(&c);
    if (rc < 0)
        return rc;
    if (host)
        *host = c->host;
    if (domain)
        *domain = c->domain;
    return 0;
}

int
mbx_net_keygen(const char *path)
{
    if (!path || !*path)
        return MBX_EINVAL;
    if (sodium_init() < 0)
        return MBX_ENOMEM;
    uint8_t key[32];
    char text[65];
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(text, sizeof text, key, sizeof key);
    sodium_memzero(key, sizeof key);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        sodium_memzero(text, sizeof text);
        return errno == EEXIST   ? MBX_EEXIST
               : errno == EACCES ? MBX_EPERM
                                 : -errno;
    }
    text[64] = '\n';
    ssize_t n = write(fd, text, sizeof text);
    sodium_memzero(text, sizeof text);
    int rc = n == (ssize_t)sizeof text ? 0 : MBX_EINVAL;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0)
        unlink(path);
    return rc;
}
