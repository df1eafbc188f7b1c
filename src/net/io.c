/*
 * The network I/O thread: one per process, started on first use. It owns
 * the sockets, takes the messages callers queued, packs them into as few
 * datagrams as they fit in (coalescing a burst, never waiting for one),
 * fragments what does not fit in one, seals datagrams when there is a key,
 * and hands batches to the kernel with sendmmsg. It reads datagrams in
 * batches with recvmmsg and passes them to receive.c.
 *
 * Callers push onto a lock-free stack and write to an eventfd only when
 * the thread is parked in poll, so a burst of sends costs no system call
 * per message on the caller's side.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>

#include "core/fork.h"
#include "core/pool.h"
#include "net/net.h"
#include "net/wire.h"
#include "platform/platform.h"

/* Datagrams per sendmmsg / recvmmsg. */
#define BATCH 32

/* Bytes of queued messages beyond which senders wait (or fail). */
#define QUEUE_BYTES_MAX (16u << 20)

/* Socket buffers asked for: room for bursts. */
#define SOCKET_BUFFER (8 << 20)

/* A message sent this long after the same thread's previous one is a
 * lone message: the caller may send it itself. */
#define LONE_GAP_NS 20000

/* How long to wait for the kernel's send buffer before dropping. */
#define SEND_RETRY_MS 1000

struct outmsg {
    struct outmsg *next;
    size_t len;
    uint8_t cls; /* pool size class */
    uint8_t env[];
};

struct mbx__net_counters mbx__net_count;

static bool try_send_direct(const struct outmsg *m);
static void pack(const struct outmsg *m);
static void finish_datagram(void);

static struct {
    pthread_mutex_t lock;   /* start and stop */
    pthread_mutex_t work;   /* held by the thread while it works */
    _Atomic bool running;   /* the thread runs */
    bool want_receive;      /* names are registered: read the group */
    _Atomic bool receiving; /* the receiving socket is open */
    pthread_t thread;
    int send_fd, recv_fd, wake_fd;
    const struct mbx__net_config *c;
    uint64_t sender;
    uint64_t seq;    /* last datagram sequence number */
    uint32_t msg_id; /* last message id */
    unsigned fork_gen;

    _Atomic(struct outmsg *) top; /* the send stack */
    _Atomic uint64_t queued_bytes;
    _Atomic uint32_t parked; /* the thread waits in poll */
    _Atomic bool stopping;
    _Atomic uint32_t space_seq; /* futex: room appeared in the queue */
    _Atomic uint32_t space_waiters;
    _Atomic uint64_t enqueued;    /* messages queued, ever */
    _Atomic uint64_t handled;     /* ... taken and sent or dropped */
    _Atomic uint32_t handled_seq; /* futex: handled moved */
    _Atomic uint32_t flush_waiters;

    /* The thread's buffers. */
    uint8_t *out; /* BATCH datagrams of datagram_size + tag */
    size_t out_stride;
    struct mmsghdr out_msgs[BATCH];
    struct iovec out_iov[BATCH];
    uint32_t out_ends[BATCH]; /* messages whose last frame is in each */
    unsigned out_count;       /* datagrams built in the batch */
    size_t cur_len;           /* bytes in the datagram being built */
    uint16_t cur_frames;
    uint8_t *in; /* BATCH receive buffers of 64 KiB */
    struct mmsghdr in_msgs[BATCH];
    struct iovec in_iov[BATCH];
    /* Per datagram, the kernel's count of datagrams it dropped on this
     * socket (SO_RXQ_OVFL). */
    struct {
        _Alignas(size_t) char buf[CMSG_SPACE(sizeof(uint32_t))];
    } in_ctl[BATCH];
    uint32_t overflows_seen;
    bool send_on_lo; /* the sending socket fell back to the loopback */
} io = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_MUTEX_INITIALIZER,
    .send_fd = -1,
    .recv_fd = -1,
    .wake_fd = -1,
};

#define IN_SIZE 65536

uint64_t
mbx__net_sender_id(void)
{
    return io.sender;
}

/* ---- sockets ---------------------------------------------------------------
 */

/* Asks for big socket buffers: beyond the system's limit when allowed. */
static void
size_buffers(int fd, int opt, int force_opt)
{
    int v = SOCKET_BUFFER;
    if (setsockopt(fd, SOL_SOCKET, force_opt, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, opt, &v, sizeof v);
}

/* The sending socket: unbound, with the group's hops, loop and
 * interface. */
static int
open_send_socket(const struct mbx__net_config *c)
{
    int fd = socket(c->family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, ttl = c->ttl, rc = 0;
    size_buffers(fd, SO_SNDBUF, SO_SNDBUFFORCE);
    /* Datagrams never exceed the interface's MTU: with DF set, the kernel
     * skips the shared IP id counter (a hot spot per datagram). */
    int pmtu = c->family == AF_INET ? IP_PMTUDISC_PROBE : IPV6_PMTUDISC_PROBE;
    if (c->family == AF_INET)
        setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
    else
        setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &pmtu, sizeof pmtu);
    if (c->broadcast) {
        rc = setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
        if (rc == 0 && c->ifindex) {
            char name[IF_NAMESIZE];
            if (if_indextoname(c->ifindex, name))
                rc = setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name,
                                (socklen_t)strlen(name));
        }
    } else if (c->family == AF_INET) {
        rc = setsockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
        if (rc == 0)
            rc =
                setsockopt(fd, IPPROTO_IP, IP_MULTICAST_LOOP, &one, sizeof one);
        if (rc == 0 && c->ifindex) {
            struct ip_mreqn m = {.imr_ifindex = (int)c->ifindex};
            rc = setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m);
        }
    } else {
        rc =
            setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &ttl, sizeof ttl);
        if (rc == 0)
            rc = setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &one,
                            sizeof one);
        if (rc == 0 && c->ifindex) {
            unsigned idx = c->ifindex;
            rc = setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &idx,
                            sizeof idx);
        }
    }
    if (rc < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* Joins the group on the configured interface, or the kernel's choice;
 * when the kernel has no route for the group, on the loopback interface
 * (and then sends there too). */
static int
join_group(int fd, const struct mbx__net_config *c, int send_fd)
{
    if (c->family == AF_INET) {
        const struct sockaddr_in *g = (const struct sockaddr_in *)&c->group;
        struct ip_mreqn m = {.imr_multiaddr = g->sin_addr,
                             .imr_ifindex = (int)c->ifindex};
        if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) == 0)
            return 0;
        if (errno != ENODEV || c->ifindex)
            return -errno;
        m.imr_ifindex = (int)if_nametoindex("lo");
        if (setsockopt(fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) < 0)
            return -errno;
        struct ip_mreqn out = {.imr_ifindex = m.imr_ifindex};
        setsockopt(send_fd, IPPROTO_IP, IP_MULTICAST_IF, &out, sizeof out);
        return 0;
    }
    const struct sockaddr_in6 *g = (const struct sockaddr_in6 *)&c->group;
    struct ipv6_mreq m = {.ipv6mr_multiaddr = g->sin6_addr,
                          .ipv6mr_interface = c->ifindex};
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) < 0)
        return -errno;
    return 0;
}

/* The receiving socket: bound to the group's port (shared with the other
 * readers of this host), joined to the group, reading only the group. */
static int
open_recv_socket(const struct mbx__net_config *c, int send_fd)
{
    int fd = socket(c->family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    int one = 1, zero = 0, rc;
    size_buffers(fd, SO_RCVBUF, SO_RCVBUFFORCE);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    struct sockaddr_storage bind_to = c->group;
    if (c->family == AF_INET) {
        struct sockaddr_in *b = (struct sockaddr_in *)&bind_to;
        /* Bound to the group, the socket reads only the group's
         * datagrams; a broadcast reader binds to any address. */
        if (c->broadcast)
            b->sin_addr.s_addr = htonl(INADDR_ANY);
        else
            setsockopt(fd, IPPROTO_IP, IP_MULTICAST_ALL, &zero, sizeof zero);
    } else {
        struct sockaddr_in6 *b = (struct sockaddr_in6 *)&bind_to;
        b->sin6_scope_id = c->ifindex;
        setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, &zero, sizeof zero);
    }
    rc = bind(fd, (struct sockaddr *)&bind_to, c->group_len);
    if (rc == 0 && !c->broadcast)
        rc = join_group(fd, c, send_fd);
    else if (rc < 0)
        rc = -errno;
    if (rc == 0 && c->broadcast && c->ifindex) {
        char name[IF_NAMESIZE];
        if (if_indextoname(c->ifindex, name) &&
            setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name,
                       (socklen_t)strlen(name)) < 0)
            rc = -errno;
    }
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- the send queue --------------------------------------------------------
 */

/* Whether a message of len bytes may join the queue (one always may when
 * the queue is empty, however large). */
static bool
queue_has_room(size_t len)
{
    uint64_t queued = atomic_load(&io.queued_bytes);
    return queued == 0 || queued + len <= QUEUE_BYTES_MAX;
}

int
mbx__net_enqueue(size_t len, int (*fill)(uint8_t *buf, void *ctx), void *ctx,
                 int64_t deadline)
{
    int rc = mbx__net_start(false);
    if (rc < 0)
        return rc;
    while (!queue_has_room(len)) {
        if (deadline == 0)
            return MBX_EAGAIN;
        uint32_t seen = atomic_load(&io.space_seq);
        atomic_fetch_add(&io.space_waiters, 1);
        int w = queue_has_room(len)
                    ? 0
                    : mbx__futex_wait(&io.space_seq, seen, deadline);
        atomic_fetch_sub(&io.space_waiters, 1);
        if (w == MBX_ETIMEDOUT && !queue_has_room(len))
            return MBX_ETIMEDOUT;
    }
    uint8_t cls;
    struct outmsg *m = mbx__pool_get(sizeof *m + len, &cls);
    if (!m)
        return MBX_ENOMEM;
    m->len = len;
    m->cls = cls;
    if ((rc = fill(m->env, ctx)) < 0) {
        mbx__pool_put(m, cls);
        return rc;
    }
    if (try_send_direct(m)) {
        mbx__pool_put(m, cls);
        return 0;
    }
    atomic_fetch_add(&io.queued_bytes, len);
    atomic_fetch_add(&io.enqueued, 1);
    struct outmsg *top = atomic_load(&io.top);
    do
        m->next = top;
    while (!atomic_compare_exchange_weak(&io.top, &top, m));
    /* Only the sender that finds the thread parked wakes it: the others
     * of a burst see the flag cleared and make no system call. */
    if (atomic_load(&io.parked) && atomic_exchange(&io.parked, 0)) {
        uint64_t one = 1;
        ssize_t n = write(io.wake_fd, &one, sizeof one);
        (void)n; /* a full eventfd is already readable */
    }
    return 0;
}

/* The send path without the I/O thread: when the queue is empty and the
 * thread sleeps, the caller sends its message itself (one datagram, one
 * system call), as waking the thread would cost more than the send. It
 * holds the work lock meanwhile, as the thread does. Never waits: returns
 * false when the message must be queued instead (the thread busy, a
 * message to fragment, the kernel's buffer full, an error to handle). */
static bool
try_send_direct(const struct outmsg *m)
{
    /* A message close behind the previous one this thread found the I/O
     * thread parked for is part of a burst: queued, so that the burst
     * shares datagrams. */
    static _Thread_local int64_t last_send;
    if (atomic_load(&io.top) || !atomic_load(&io.parked))
        return false; /* the thread is busy or has work: it takes this too */
    int64_t now = mbx__now_ns(), gap = now - last_send;
    last_send = now;
    if (gap < LONE_GAP_NS || pthread_mutex_trylock(&io.work) != 0)
        return false;
    bool sent = false;
    size_t cap = io.c->datagram_size - (io.c->has_key ? MBX__WIRE_TAG : 0) -
                 MBX__WIRE_HEADER - MBX__WIRE_FRAME;
    /* running is checked under the lock: mbx_net_stop takes it before
     * freeing the buffers and closing the socket. */
    if (atomic_load(&io.running) && !atomic_load(&io.top) && m->len <= cap) {
        io.out_count = 0;
        io.out_ends[0] = 0;
        pack(m);
        finish_datagram();
        io.out_count = 0;
        if (sendmsg(io.send_fd, &io.out_msgs[0].msg_hdr, MSG_DONTWAIT) >= 0) {
            atomic_fetch_add(&mbx__net_count.sent, 1);
            atomic_fetch_add(&mbx__net_count.sent_datagrams, 1);
            sent = true;
        }
    }
    pthread_mutex_unlock(&io.work);
    return sent;
}

/* Takes the whole stack, oldest first. */
static struct outmsg *
take_queue(void)
{
    struct outmsg *m = atomic_exchange(&io.top, NULL), *fifo = NULL;
    while (m) {
        struct outmsg *next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    return fifo;
}

/* Counts n messages as handled and lets flushers and blocked senders
 * look again. */
static void
mark_handled(uint64_t n, uint64_t bytes)
{
    if (!n)
        return;
    atomic_fetch_sub(&io.queued_bytes, bytes);
    atomic_fetch_add(&io.handled, n);
    atomic_fetch_add(&io.handled_seq, 1);
    if (atomic_load(&io.flush_waiters))
        mbx__futex_wake(&io.handled_seq, INT32_MAX);
    atomic_fetch_add(&io.space_seq, 1);
    if (atomic_load(&io.space_waiters))
        mbx__futex_wake(&io.space_seq, INT32_MAX);
}

/* ---- packing and sending ---------------------------------------------------
 */

static uint8_t *
out_buf(unsigned i)
{
    return io.out + (size_t)i * io.out_stride;
}

/* The kernel has no route for the group (a host without a default route)
 * and no interface was configured: send on the loopback interface, as the
 * receiving side joins there in that case, so this host's readers are
 * reached. Returns true when that was newly arranged. */
static bool
use_loopback_for_sending(void)
{
    const struct mbx__net_config *c = io.c;
    if (io.send_on_lo || c->ifindex || c->broadcast || c->family != AF_INET)
        return false;
    io.send_on_lo = true;
    struct ip_mreqn m = {.imr_ifindex = (int)if_nametoindex("lo")};
    return setsockopt(io.send_fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) ==
           0;
}

/* Hands the batch of built datagrams to the kernel. */
static void
send_batch(void)
{
    unsigned done = 0;
    int64_t give_up = 0;
    while (done < io.out_count) {
        int n =
            sendmmsg(io.send_fd, io.out_msgs + done, io.out_count - done, 0);
        if (n > 0) {
            for (int i = 0; i < n; i++)
                atomic_fetch_add(&mbx__net_count.sent, io.out_ends[done + i]);
            atomic_fetch_add(&mbx__net_count.sent_datagrams, (uint64_t)n);
            done += (unsigned)n;
            give_up = 0;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == ENOBUFS) {
            /* The kernel's buffer is full: wait for it a while. */
            if (!give_up)
                give_up = mbx__deadline(SEND_RETRY_MS);
            if (mbx__now_ns() < give_up && !atomic_load(&io.stopping)) {
                struct pollfd p = {.fd = io.send_fd, .events = POLLOUT};
                if (poll(&p, 1, 1) >= 0)
                    continue;
            }
        }
        if (errno == ENETUNREACH && use_loopback_for_sending())
            continue;
        /* This datagram cannot be sent: drop it, go on with the rest. */
        atomic_fetch_add(&mbx__net_count.send_dropped, io.out_ends[done]);
        done++;
        give_up = 0;
    }
    io.out_count = 0;
}

/* Closes the datagram being built (header, seal) and adds it to the
 * batch, sending the batch when full. */
static void
finish_datagram(void)
{
    if (!io.cur_frames)
        return;
    const struct mbx__net_config *c = io.c;
    uint8_t *d = out_buf(io.out_count);
    struct mbx__wire_dgram h = {.flags = c->has_key ? MBX__WIRE_SEALED : 0,
                                .sender = io.sender,
                                .seq = ++io.seq,
                                .frames = io.cur_frames};
    mbx__wire_put_header(d, &h);
    size_t len = io.cur_len;
    if (c->has_key)
        len = mbx__net_seal(c->key, d, len);
    io.out_iov[io.out_count].iov_len = len;
    io.out_count++;
    io.cur_len = 0;
    io.cur_frames = 0;
    if (io.out_count == BATCH)
        send_batch();
    io.out_ends[io.out_count] = 0;
}

/* Appends a frame to the datagram being built, starting a new one when it
 * does not fit. */
static void
add_frame(const struct mbx__wire_frame *f, bool last_of_message)
{
    size_t cap = io.c->datagram_size - (io.c->has_key ? MBX__WIRE_TAG : 0);
    if (io.cur_frames && (io.cur_len + MBX__WIRE_FRAME + f->chunk_len > cap ||
                          io.cur_frames == UINT16_MAX))
        finish_datagram();
    if (!io.cur_frames)
        io.cur_len = MBX__WIRE_HEADER;
    io.cur_len += mbx__wire_put_frame(out_buf(io.out_count) + io.cur_len, f);
    io.cur_frames++;
    if (last_of_message)
        io.out_ends[io.out_count]++;
}

/* Packs one message: one frame when it fits in a datagram, else fragments
 * of equal size (the last one shorter). */
static void
pack(const struct outmsg *m)
{
    size_t cap = io.c->datagram_size - (io.c->has_key ? MBX__WIRE_TAG : 0) -
                 MBX__WIRE_HEADER - MBX__WIRE_FRAME;
    struct mbx__wire_frame f = {.msg_id = ++io.msg_id,
                                .msg_len = (uint32_t)m->len};
    if (m->len <= cap) {
        f.count = 1;
        f.chunk_len = (uint16_t)m->len;
        f.chunk = m->env;
        add_frame(&f, true);
        return;
    }
    size_t count = (m->len + cap - 1) / cap;
    f.count = (uint16_t)count;
    for (size_t i = 0; i < count; i++) {
        size_t off = i * cap, n = m->len - off < cap ? m->len - off : cap;
        f.index = (uint16_t)i;
        f.offset = (uint32_t)off;
        f.chunk_len = (uint16_t)n;
        f.chunk = m->env + off;
        add_frame(&f, i + 1 == count);
    }
}

/* Sends everything queued. Returns the number of messages taken. */
static uint64_t
drain_queue(void)
{
    struct outmsg *m = take_queue();
    uint64_t n = 0, bytes = 0;
    if (!m)
        return 0;
    io.out_ends[io.out_count] = 0;
    while (m) {
        struct outmsg *next = m->next;
        pack(m);
        n++;
        bytes += m->len;
        mbx__pool_put(m, m->cls);
        m = next;
    }
    finish_datagram();
    if (io.out_count)
        send_batch();
    mark_handled(n, bytes);
    return n;
}

/* Drops everything queued (the layer stops or the process forked). */
static void
drop_queue(void)
{
    struct outmsg *m = take_queue();
    uint64_t n = 0, bytes = 0;
    while (m) {
        struct outmsg *next = m->next;
        n++;
        bytes += m->len;
        mbx__pool_put(m, m->cls);
        m = next;
    }
    atomic_fetch_add(&mbx__net_count.send_dropped, n);
    mark_handled(n, bytes);
}

/* ---- receiving -------------------------------------------------------------
 */

/* Reads what the socket has, a batch at a time. Returns the number of
 * datagrams read. */
static unsigned
receive_some(void)
{
    if (io.recv_fd < 0)
        return 0;
    for (unsigned i = 0; i < BATCH; i++)
        io.in_msgs[i].msg_hdr.msg_controllen = sizeof io.in_ctl[i];
    int n = recvmmsg(io.recv_fd, io.in_msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0)
        return 0;
    struct msghdr *last = &io.in_msgs[n - 1].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(last); c; c = CMSG_NXTHDR(last, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t total;
            memcpy(&total, CMSG_DATA(c), sizeof total);
            atomic_fetch_add(&mbx__net_count.socket_overflows,
                             (uint32_t)(total - io.overflows_seen));
            io.overflows_seen = total;
        }
    }
    int64_t now = mbx__coarse_now_ns();
    for (int i = 0; i < n; i++) {
        if (io.in_msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
            atomic_fetch_add(&mbx__net_count.recv_datagrams, 1);
            atomic_fetch_add(&mbx__net_count.malformed, 1);
        } else {
            mbx__net_receive(io.in + (size_t)i * IN_SIZE, io.in_msgs[i].msg_len,
                             now);
        }
        io.in_msgs[i].msg_hdr.msg_flags = 0;
        io.in_msgs[i].msg_len = 0;
    }
    mbx__net_deliver_done();
    return (unsigned)n;
}

/* ---- the thread ------------------------------------------------------------
 */

static void *
io_main(void *arg)
{
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    int64_t next_expiry = -1;
    /* Asked to stop (or pause), the thread leaves at the top of its loop,
     * however busy: what is still queued stays for mbx_net_stop to count
     * as dropped, or for the restarted thread. */
    while (!atomic_load(&io.stopping)) {
        pthread_mutex_lock(&io.work);
        uint64_t sent = drain_queue();
        unsigned got = receive_some();
        int64_t now = mbx__coarse_now_ns();
        if (got || (next_expiry >= 0 && now >= next_expiry)) {
            int64_t wait = mbx__net_receive_expire(now);
            next_expiry = wait < 0 ? -1 : now + wait;
        }
        pthread_mutex_unlock(&io.work);
        /* A full batch means more may be waiting; a short one emptied the
         * socket, and poll tells when the next datagram comes. */
        if (sent || got == BATCH)
            continue;
        atomic_store(&io.parked, 1);
        struct pollfd p[2] = {{.fd = io.wake_fd, .events = POLLIN},
                              {.fd = io.recv_fd, .events = POLLIN}};
        if (!atomic_load(&io.top) && !atomic_load(&io.stopping)) {
            int timeout = -1;
            if (next_expiry >= 0) {
                int64_t ms = (next_expiry - now) / 1000000 + 1;
                timeout = ms > 1000 ? 1000 : (int)ms;
            }
            poll(p, io.recv_fd >= 0 ? 2 : 1, timeout);
        }
        atomic_store(&io.parked, 0);
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t n = read(io.wake_fd, &v, sizeof v);
            (void)n;
        }
    }
    return NULL;
}

/* Allocates the thread's buffers for the configuration. */
static int
alloc_buffers(const struct mbx__net_config *c)
{
    if (io.out)
        return 0;
    io.out_stride = c->datagram_size + MBX__WIRE_TAG;
    io.out = malloc(BATCH * io.out_stride);
    io.in = malloc((size_t)BATCH * IN_SIZE);
    if (!io.out || !io.in) {
        free(io.out);
        free(io.in);
        io.out = io.in = NULL;
        return MBX_ENOMEM;
    }
    for (unsigned i = 0; i < BATCH; i++) {
        io.out_iov[i].iov_base = out_buf(i);
        io.out_msgs[i].msg_hdr = (struct msghdr){
            .msg_name = (void *)&c->group,
            .msg_namelen = c->group_len,
            .msg_iov = &io.out_iov[i],
            .msg_iovlen = 1,
        };
        io.in_iov[i].iov_base = io.in + (size_t)i * IN_SIZE;
        io.in_iov[i].iov_len = IN_SIZE;
        io.in_msgs[i].msg_hdr =
            (struct msghdr){.msg_iov = &io.in_iov[i],
                            .msg_iovlen = 1,
                            .msg_control = io.in_ctl[i].buf,
                            .msg_controllen = sizeof io.in_ctl[i]};
    }
    return 0;
}

static void stop_at_exit(void);

/* Makes the I/O thread leave its loop and joins it; io.lock held. What is
 * queued stays queued. */
static void
stop_thread(void)
{
    atomic_store(&io.stopping, true);
    uint64_t one = 1;
    ssize_t n = write(io.wake_fd, &one, sizeof one);
    (void)n; /* a full eventfd is already readable */
    pthread_join(io.thread, NULL);
    io.running = false;
    atomic_store(&io.stopping, false);
}

/* Opens what is missing; io.lock held. */
static int
start_locked(bool receive)
{
    const struct mbx__net_config *c;
    int rc = mbx__net_config_get(&c);
    if (rc < 0)
        return rc;
    if (receive)
        io.want_receive = true;
    if (io.running && (io.receiving || !io.want_receive))
        return 0;
    if ((rc = mbx__net_crypto_init()) < 0)
        return rc;
    mbx__fork_safety();
    mbx__net_config_freeze();
    if (!io.c)
        io.c = c; /* the same for the life of the process */
    if (!io.sender) {
        while (!io.sender)
            randombytes_buf(&io.sender, sizeof io.sender);
        static pthread_once_t at_exit = PTHREAD_ONCE_INIT;
        pthread_once(&at_exit, stop_at_exit);
    }
    if ((rc = alloc_buffers(c)) < 0)
        return rc;
    if (io.wake_fd < 0) {
        io.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (io.wake_fd < 0)
            return MBX_ENOMEM;
    }
    if (io.send_fd < 0)
        io.send_on_lo = false;
    if (io.send_fd < 0 && (io.send_fd = open_send_socket(c)) < 0) {
        rc = io.send_fd;
        io.send_fd = -1;
        return rc;
    }
    bool was_running = io.running;
    if (io.want_receive && !io.receiving) {
        if (was_running) /* the thread polls recv_fd: pause it */
            stop_thread();
        int fd = open_recv_socket(c, io.send_fd);
        if (fd < 0) {
            rc = fd;
            io.want_receive = false; /* the next registration tries again */
        } else {
            io.recv_fd = fd;
            io.overflows_seen = 0;
            io.receiving = true;
        }
    }
    if (!io.running) {
        if (pthread_create(&io.thread, NULL, io_main, NULL) != 0)
            return rc < 0 ? rc : MBX_EAGAIN;
        io.running = true;
    }
    return rc;
}

int
mbx__net_start(bool receive)
{
    if (io.running && (io.receiving || !receive) &&
        io.fork_gen == mbx__fork_generation)
        return 0;
    pthread_mutex_lock(&io.lock);
    int rc = start_locked(receive);
    pthread_mutex_unlock(&io.lock);
    return rc;
}

int
mbx_net_flush(int timeout_ms)
{
    int64_t deadline = mbx__deadline(timeout_ms);
    uint64_t target = atomic_load(&io.enqueued);
    while (atomic_load(&io.handled) < target) {
        uint32_t seen = atomic_load(&io.handled_seq);
        atomic_fetch_add(&io.flush_waiters, 1);
        int rc = 0;
        if (atomic_load(&io.handled) < target)
            rc = mbx__futex_wait(&io.handled_seq, seen, deadline);
        atomic_fetch_sub(&io.flush_waiters, 1);
        if (rc == MBX_ETIMEDOUT && atomic_load(&io.handled) < target)
            return MBX_ETIMEDOUT;
    }
    return 0;
}

int
mbx_net_stop(int timeout_ms)
{
    pthread_mutex_lock(&io.lock);
    int rc = 0;
    if (io.running) {
        rc = mbx_net_flush(timeout_ms);
        stop_thread();
    }
    drop_queue();
    /* A caller sending directly holds the work lock: wait for it. */
    pthread_mutex_lock(&io.work);
    mbx__net_receive_reset();
    if (io.recv_fd >= 0)
        close(io.recv_fd);
    if (io.send_fd >= 0)
        close(io.send_fd);
    io.recv_fd = io.send_fd = -1;
    io.receiving = false;
    free(io.out);
    free(io.in);
    io.out = io.in = NULL;
    pthread_mutex_unlock(&io.work);
    pthread_mutex_unlock(&io.lock);
    return rc;
}

static void
stop_at_exit_run(void)
{
    if (io.fork_gen == mbx__fork_generation)
        mbx_net_stop(1000);
}

static void
stop_at_exit(void)
{
    atexit(stop_at_exit_run);
}

int
mbx_net_stat(mbx_net_stats *out)
{
    if (!out)
        return MBX_EINVAL;
    struct mbx__net_counters *k = &mbx__net_count;
    *out = (mbx_net_stats){
        .sent = atomic_load(&k->sent),
        .sent_datagrams = atomic_load(&k->sent_datagrams),
        .send_dropped = atomic_load(&k->send_dropped),
        .received = atomic_load(&k->received),
        .delivered = atomic_load(&k->delivered),
        .recv_datagrams = atomic_load(&k->recv_datagrams),
        .not_for_us = atomic_load(&k->not_for_us),
        .dropped_full = atomic_load(&k->dropped_full),
        .dropped_size = atomic_load(&k->dropped_size),
        .malformed = atomic_load(&k->malformed),
        .unauthenticated = atomic_load(&k->unauthenticated),
        .replayed = atomic_load(&k->replayed),
        .reassembly_timeouts = atomic_load(&k->reassembly_timeouts),
        .reassembly_evicted = atomic_load(&k->reassembly_evicted),
        .reassembly_bytes = atomic_load(&k->reassembly_bytes),
        .reassembly_peak = atomic_load(&k->reassembly_peak),
        .socket_overflows = atomic_load(&k->socket_overflows),
    };
    return 0;
}

/* ---- fork ------------------------------------------------------------------
 */

void
mbx__net_lock_all(void)
{
    pthread_mutex_lock(&io.lock);
    pthread_mutex_lock(&io.work);
    mbx__net_config_fork_lock();
    mbx__net_names_fork_lock();
}

void
mbx__net_unlock_all(int in_child)
{
    mbx__net_names_fork_unlock(in_child);
    mbx__net_config_fork_unlock();
    if (in_child) {
        /* The thread is not in the child: its sockets, queue and receiving
         * state are let go; the next use starts afresh with a new sender
         * id (a seq restarting under the parent's id would look like a
         * replay, and would reuse nonces). */
        mbx__net_receive_reset();
        struct outmsg *m = take_queue();
        while (m) {
            struct outmsg *next = m->next;
            mbx__pool_put(m, m->cls);
            m = next;
        }
        atomic_store(&io.queued_bytes, 0);
        atomic_store(&io.enqueued, 0);
        atomic_store(&io.handled, 0);
        atomic_store(&io.parked, 0);
        atomic_store(&io.stopping, false);
        if (io.recv_fd >= 0)
            close(io.recv_fd);
        if (io.send_fd >= 0)
            close(io.send_fd);
        if (io.wake_fd >= 0)
            close(io.wake_fd);
        io.recv_fd = io.send_fd = io.wake_fd = -1;
        atomic_store(&io.running, false);
        atomic_store(&io.receiving, false);
        io.sender = 0;
        io.seq = 0;
        io.msg_id = 0;
        io.fork_gen = mbx__fork_generation; /* bumped before this runs */
        io.want_receive = false; /* the parent's names were dropped */
    }
    pthread_mutex_unlock(&io.work);
    pthread_mutex_unlock(&io.lock);
}
