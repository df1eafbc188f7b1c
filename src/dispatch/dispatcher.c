/*
 * The dispatcher: mpdispatcher's sender/receiver pair in C. Events are
 * records of the host ring (src/host/ring.c) in anonymous shared memory (a
 * memfd) made before fork, so both processes map it: the event's name is
 * the record's kind, its args the body (MessagePack, as mbx_args_encode
 * writes them), and a close is a record with the CLOSE flag.
 *
 * Who is alive is told by file locks on the memfd, which the kernel drops
 * when the last fd of an open file description closes, however the
 * process ends:
 *
 *   byte RECEIVER_HOLD    read-locked by every process holding the receiver
 *   bytes 1 + lane        a sender process's lane (the ring's writers' lock)
 *   bytes RLANE_BASE + l  a receiver process's lane (the receivers' lock)
 *
 * The sender's hold is the write end of a pipe instead: the read end
 * reports end-of-file once every process holding the sender is gone, which
 * an event loop watching the receiver's fd hears. Both holds are shared by
 * every process that inherited them; after a fork, a process drops its copy
 * of one end's hold when it starts using the other end only (handling
 * without having fired lets go of the sender). Lanes are per process: a
 * forked child takes its own.
 *
 * A close is not a record (it must work when the ring is full): it is a
 * position in the shared header. Receivers handle every event before it,
 * then the first to reach it consumes the close, and from then on every
 * receiver, in any process, gets MBX_ECLOSED.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/args.h"
#include "core/fork.h"
#include "host/lane.h"
#include "host/ring.h"
#include "platform/platform.h"

#define DISPATCH_MAGIC 0x6863746170736964ull /* "dispatch" */
#define DISPATCH_VERSION 1u
#define DISPATCH_HDR_SIZE 4096 /* before the ring's own header */

#define RECEIVER_HOLD 1100
#define RLANES 256
#define RLANE_BASE 2048

/* A receiver waiting for events looks at the senders' liveness this often. */
#define LIVENESS_CHECK_NS 100000000

/* How long a receiver spins for an event before it parks, and how many
 * pauses pass before its first look (see spin_for_event). */
#define SPIN_NS 20000
#define SPIN_FIRST_LOOK 48

/* The dispatcher's own shared header, before the ring. */
struct dispatch_hdr {
    uint64_t magic;
    uint32_t version;
    _Atomic uint32_t forked;   /* the dispatcher crossed a fork or an exec */
    _Atomic uint32_t closed;   /* the close was consumed */
    _Atomic uint64_t close_at; /* 1 + ring position of the close, 0: none */
    _Alignas(64) _Atomic uint64_t rlock; /* receivers' lock (lane tokens) */
    _Atomic uint64_t broken_rlocks;
    _Alignas(64) _Atomic uint32_t rlane_nonce[RLANES];
};

_Static_assert(sizeof(struct dispatch_hdr) <= DISPATCH_HDR_SIZE,
               "the dispatcher's header fits its page");

/* A lane of this process: its own open of the memfd, holding one byte. */
struct lane {
    int fd;
    uint32_t index;
    uint64_t token;
};

/* A handler to call: what handlers_of copies out of the list. */
struct handler_ref {
    mbx_handler fn;
    void *ctx;
};

struct handler {
    struct handler *next;
    mbx_handler fn;
    void *ctx;
    char event[]; /* NUL-terminated */
};

struct mbx_sender {
    struct mbx_dispatcher *d;
    pthread_mutex_t lock; /* lane and hold set-up */
    struct lane lane;
    _Atomic bool closed; /* this process closed the sender */
};

struct mbx_receiver {
    struct mbx_dispatcher *d;
    pthread_mutex_t lock; /* handlers, lane, statistics */
    struct lane lane;
    struct handler *handlers;
    _Atomic bool close_seen; /* the close record was consumed here */
    _Atomic bool fd_given;   /* mbx_receiver_fd was called here */
    _Atomic uint64_t handled, ignored, dropped; /* mbx_receiver_stat */
};

struct mbx_dispatcher {
    int data_fd;               /* the memfd, mapped */
    int event_fd;              /* readable while events wait (the doorbell) */
    int hold_fd[2];            /* the sender's and receiver's holds, or -1 */
    int senders_gone_fd;       /* the pipe's read end: hangs up when no
                                * process holds the sender any more */
    int poll_fd;               /* receiver fd: eventfd + senders_gone_fd */
    bool used[2];              /* this process fired / handled */
    _Atomic bool settled[2];   /* use_end has nothing left to do */
    pthread_mutex_t ends_lock; /* holds and used */
    void *map;
    size_t map_size;
    struct dispatch_hdr *hdr;
    struct mbx__ring ring;
    struct mbx_sender sender;
    struct mbx_receiver receiver;
};

enum { SENDER = 0, RECEIVER = 1 };

/* ---- locks and lanes ------------------------------------------------------
 */

/* A new open file description of the memfd. */
static int
reopen(struct mbx_dispatcher *d)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", d->data_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* Takes a lane among `count` bytes from `base` for this process, through
 * an open file description of its own. Lanes belong to a process: a child
 * after fork takes its own (see mbx__dispatch_unlock_all). */
static int
take_lane(struct mbx_dispatcher *d, struct lane *l, off_t base, uint32_t count,
          _Atomic uint32_t *nonces)
{
    if (l->fd >= 0)
        return 0;
    l->fd = reopen(d);
    if (l->fd < 0)
        return l->fd;
    int rc = mbx__lane_take(l->fd, base, count, nonces, &l->index, &l->token);
    if (rc < 0) {
        close(l->fd);
        l->fd = -1;
    }
    return rc;
}

static bool
writer_dead(void *ctx, uint64_t token)
{
    struct mbx_dispatcher *d = ctx;
    return mbx__lane_holder_dead(d->data_fd, token, d->sender.lane.token, 1,
                                 MBX__RING_LANES, d->ring.hdr->lane_nonce);
}

static bool
receiver_dead(void *ctx, uint64_t token)
{
    struct mbx_dispatcher *d = ctx;
    return mbx__lane_holder_dead(d->data_fd, token, d->receiver.lane.token,
                                 RLANE_BASE, RLANES, d->hdr->rlane_nonce);
}

/* True while some process holds end `which` (asks the kernel). */
static bool
end_held(struct mbx_dispatcher *d, int which)
{
    if (which == SENDER) {
        struct pollfd p = {.fd = d->senders_gone_fd, .events = POLLIN};
        return poll(&p, 1, 0) <= 0 || !(p.revents & (POLLHUP | POLLERR));
    }
    /* Before the dispatcher crossed a fork or exec, this process is the
     * receiver, whether or not it received yet. */
    if (!atomic_load(&d->hdr->forked))
        return true;
    return mbx__byte_held_elsewhere(d->data_fd, RECEIVER_HOLD);
}

/* Takes this process's hold on end `which` (again). */
static int
hold(struct mbx_dispatcher *d, int which)
{
    if (d->hold_fd[which] >= 0)
        return 0;
    if (which == SENDER) {
        /* A new write end of the senders' pipe, through its read end. */
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", d->senders_gone_fd);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        d->hold_fd[SENDER] = fd;
        return 0;
    }
    int fd = reopen(d);
    if (fd < 0)
        return fd;
    int rc = mbx__lock_byte(fd, RECEIVER_HOLD, F_RDLCK);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    d->hold_fd[which] = fd;
    return 0;
}

/* This process uses end `which`: it holds it, and, once the dispatcher was
 * shared by fork or exec, lets go of the other one unless it used that too.
 * (Before that, one process is both ends: letting go would make it look
 * gone to itself.) */
static int
use_end(struct mbx_dispatcher *d, int which)
{
    if (atomic_load_explicit(&d->settled[which], memory_order_acquire))
        return 0;
    pthread_mutex_lock(&d->ends_lock);
    int rc = 0;
    if (!d->used[which]) {
        rc = hold(d, which);
        if (rc == 0)
            d->used[which] = true;
    }
    /* Decided for good once shared: before, every use looks again. */
    bool forked = atomic_load(&d->hdr->forked);
    if (rc == 0 && forked && !d->used[!which] && d->hold_fd[!which] >= 0) {
        close(d->hold_fd[!which]);
        d->hold_fd[!which] = -1;
    }
    if (rc == 0 && forked)
        atomic_store_explicit(&d->settled[which], true, memory_order_release);
    pthread_mutex_unlock(&d->ends_lock);
    return rc;
}

/* ---- creating and sharing ---------------------------------------------------
 */

/* Every dispatcher of this process, so that a fork child can mark them as
 * shared between processes. */
static pthread_mutex_t all_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mbx_dispatcher **all;
static size_t all_count, all_cap;

static int
remember(struct mbx_dispatcher *d)
{
    pthread_mutex_lock(&all_lock);
    int rc = 0;
    if (all_count == all_cap) {
        size_t cap = all_cap ? all_cap * 2 : 8;
        struct mbx_dispatcher **n = realloc(all, cap * sizeof *n);
        if (n) {
            all = n;
            all_cap = cap;
        } else {
            rc = MBX_ENOMEM;
        }
    }
    if (rc == 0)
        all[all_count++] = d;
    pthread_mutex_unlock(&all_lock);
    return rc;
}

static void
forget(struct mbx_dispatcher *d)
{
    pthread_mutex_lock(&all_lock);
    for (size_t i = 0; i < all_count; i++) {
        if (all[i] == d) {
            all[i] = all[--all_count];
            break;
        }
    }
    pthread_mutex_unlock(&all_lock);
}

void
mbx__dispatch_lock_all(void)
{
    pthread_mutex_lock(&all_lock);
    for (size_t i = 0; i < all_count; i++) {
        struct mbx_dispatcher *d = all[i];
        /* No thread may hold these across the fork (the child would find
         * them locked for good). */
        pthread_mutex_lock(&d->ends_lock);
        pthread_mutex_lock(&d->sender.lock);
        pthread_mutex_lock(&d->receiver.lock);
        /* Marked before the fork, in the parent: from now on a process
         * that uses one end only lets go of the other. */
        atomic_store(&d->hdr->forked, 1);
    }
}

/* After a fork, in one process: the rule of use_end applied now, for what
 * was used before (a thread may be waiting in it already). In the child,
 * nothing was used yet: its first use decides. ends_lock held. */
static void
settle_after_fork(struct mbx_dispatcher *d, int in_child)
{
    if (in_child) {
        d->used[SENDER] = d->used[RECEIVER] = false;
        atomic_store(&d->settled[SENDER], false);
        atomic_store(&d->settled[RECEIVER], false);
        return;
    }
    for (int which = SENDER; which <= RECEIVER; which++) {
        if (d->used[which] && !d->used[!which] && d->hold_fd[!which] >= 0) {
            close(d->hold_fd[!which]);
            d->hold_fd[!which] = -1;
        }
        if (d->used[which])
            atomic_store(&d->settled[which], true);
    }
}

/* Closes a lane inherited from the parent: the lane stays the parent's
 * (its lock is held while any copy of the fd is open, so a parent killed
 * holding the ring's lock could not be told from a live one if the child
 * kept it). The child takes its own lane on first use. */
static void
drop_inherited_lane(struct lane *l)
{
    mbx__fd_close(l->fd);
    l->fd = -1;
}

void
mbx__dispatch_unlock_all(int in_child)
{
    for (size_t i = 0; i < all_count; i++) {
        struct mbx_dispatcher *d = all[i];
        if (in_child) {
            drop_inherited_lane(&d->sender.lane);
            drop_inherited_lane(&d->receiver.lane);
            /* An epoll set is shared, not copied, by fork: make our own. */
            mbx__fd_close(d->poll_fd);
            d->poll_fd = -1;
        }
        settle_after_fork(d, in_child);
        pthread_mutex_unlock(&d->receiver.lock);
        pthread_mutex_unlock(&d->sender.lock);
        pthread_mutex_unlock(&d->ends_lock);
    }
    pthread_mutex_unlock(&all_lock);
}

static void
init_ends(struct mbx_dispatcher *d)
{
    d->hold_fd[SENDER] = d->hold_fd[RECEIVER] = -1;
    d->senders_gone_fd = d->poll_fd = d->data_fd = d->event_fd = -1;
    d->sender = (struct mbx_sender){.d = d, .lane = {.fd = -1}};
    d->receiver = (struct mbx_receiver){.d = d, .lane = {.fd = -1}};
    pthread_mutex_init(&d->sender.lock, NULL);
    pthread_mutex_init(&d->receiver.lock, NULL);
    pthread_mutex_init(&d->ends_lock, NULL);
}

/* Maps the memfd and checks it. */
static int
map_dispatcher(struct mbx_dispatcher *d, size_t size)
{
    d->map_size = size;
    d->map =
        mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, d->data_fd, 0);
    if (d->map == MAP_FAILED) {
        d->map = NULL;
        return MBX_ENOMEM;
    }
    d->hdr = d->map;
    return 0;
}

int
mbx_dispatcher_new(mbx_dispatcher **out, const mbx_dispatcher_opts *opts)
{
    mbx_dispatcher_opts o = opts ? *opts : (mbx_dispatcher_opts){0};
    uint64_t want = o.ring_size ? o.ring_size : MBX_RING_DEFAULT, size;
    if (!out || want > MBX_RING_MAX)
        return MBX_EINVAL;
    for (size = MBX_RING_MIN; size < want; size <<= 1)
        ;
    mbx__fork_safety();
    mbx_dispatcher *d = calloc(1, sizeof *d);
    if (!d)
        return MBX_ENOMEM;
    init_ends(d);
    int rc = 0;
    d->data_fd = memfd_create("mbx-dispatcher", MFD_CLOEXEC);
    if (d->data_fd < 0)
        rc = -errno;
    size_t total = DISPATCH_HDR_SIZE + MBX__RING_HDR_SIZE + size;
    if (rc == 0 && ftruncate(d->data_fd, (off_t)total) < 0)
        rc = -errno;
    if (rc == 0)
        rc = map_dispatcher(d, total);
    if (rc == 0 && (d->event_fd = mbx__eventfd_open()) < 0)
        rc = d->event_fd;
    if (rc == 0) {
        d->hdr->magic = DISPATCH_MAGIC;
        d->hdr->version = DISPATCH_VERSION;
        mbx__ring_init(&d->ring, (char *)d->map + DISPATCH_HDR_SIZE, size, "",
                       (int)getpid(), 0600, 0);
        atomic_store(&d->ring.hdr->state, MBX__RING_LIVE);
        /* The creator holds both ends until it uses only one. */
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
            rc = -errno;
        } else {
            d->senders_gone_fd = p[0];
            d->hold_fd[SENDER] = p[1];
            rc = hold(d, RECEIVER);
        }
    }
    if (rc == 0)
        rc = remember(d);
    if (rc < 0) {
        mbx_dispatcher_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

mbx_sender *
mbx_dispatcher_sender(mbx_dispatcher *d)
{
    return d ? &d->sender : NULL;
}

mbx_receiver *
mbx_dispatcher_receiver(mbx_dispatcher *d)
{
    return d ? &d->receiver : NULL;
}

/* Clears close-on-exec on fd. */
static int
keep_across_exec(int fd)
{
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

int
mbx_dispatcher_export(mbx_dispatcher *d, char *buf)
{
    if (!d || !buf)
        return MBX_EINVAL;
    /* The new program holds what this process holds, as a fork child
     * does, until it uses one end. */
    pthread_mutex_lock(&d->ends_lock);
    int fds[] = {d->data_fd, d->event_fd, d->senders_gone_fd,
                 d->hold_fd[SENDER], d->hold_fd[RECEIVER]};
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++)
        rc = fds[i] < 0 ? 0 : keep_across_exec(fds[i]);
    if (rc == 0)
        atomic_store(&d->hdr->forked, 1);
    pthread_mutex_unlock(&d->ends_lock);
    if (rc < 0)
        return rc;
    snprintf(buf, MBX_DISPATCHER_HANDLE_LEN, "mbxd:%d,%d,%d,%d,%d", fds[0],
             fds[1], fds[2], fds[3], fds[4]);
    return 0;
}

/* Checks that the memfd `fd` is a dispatcher and maps it into d. Leaves
 * the fd alone on failure. */
static int
map_imported(struct mbx_dispatcher *d, int fd)
{
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= DISPATCH_HDR_SIZE)
        return MBX_EBADMSG;
    d->data_fd = fd;
    int rc = map_dispatcher(d, (size_t)size);
    d->data_fd = -1;
    if (rc == 0 && (d->hdr->magic != DISPATCH_MAGIC ||
                    d->hdr->version != DISPATCH_VERSION))
        rc = MBX_EBADMSG;
    if (rc == 0)
        rc = mbx__ring_attach(&d->ring, (char *)d->map + DISPATCH_HDR_SIZE,
                              (size_t)size - DISPATCH_HDR_SIZE);
    if (rc < 0 && d->map) {
        munmap(d->map, d->map_size);
        d->map = NULL;
    }
    return rc;
}

int
mbx_dispatcher_import(mbx_dispatcher **out, const char *handle)
{
    int fds[5];
    char tail;
    if (!out || !handle ||
        sscanf(handle, "mbxd:%d,%d,%d,%d,%d%c", &fds[0], &fds[1], &fds[2],
               &fds[3], &fds[4], &tail) != 5)
        return MBX_EINVAL;
    /* The holds may be -1 (the exporter had let go of that end). */
    for (int i = 0; i < 5; i++)
        if ((fds[i] < 0 && i < 3) ||
            (fds[i] >= 0 && fcntl(fds[i], F_GETFD) < 0))
            return MBX_EBADMSG;
    mbx__fork_safety();
    mbx_dispatcher *d = calloc(1, sizeof *d);
    if (!d)
        return MBX_ENOMEM;
    init_ends(d);
    int rc = map_imported(d, fds[0]);
    if (rc == 0)
        rc = remember(d);
    if (rc < 0) {
        /* The fds stay the caller's, as they were. */
        if (d->map)
            munmap(d->map, d->map_size);
        free(d);
        return rc;
    }
    d->data_fd = fds[0];
    d->event_fd = fds[1];
    d->senders_gone_fd = fds[2];
    d->hold_fd[SENDER] = fds[3];
    d->hold_fd[RECEIVER] = fds[4];
    for (int i = 0; i < 5; i++)
        if (fds[i] >= 0)
            fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    *out = d;
    return 0;
}

void
mbx_dispatcher_free(mbx_dispatcher *d)
{
    if (!d)
        return;
    forget(d);
    struct handler *h = d->receiver.handlers, *next;
    for (; h; h = next) {
        next = h->next;
        free(h);
    }
    if (d->map)
        munmap(d->map, d->map_size);
    mbx__fd_close(d->data_fd);
    mbx__fd_close(d->event_fd);
    mbx__fd_close(d->hold_fd[SENDER]);
    mbx__fd_close(d->hold_fd[RECEIVER]);
    mbx__fd_close(d->senders_gone_fd);
    mbx__fd_close(d->poll_fd);
    mbx__fd_close(d->sender.lane.fd);
    mbx__fd_close(d->receiver.lane.fd);
    pthread_mutex_destroy(&d->sender.lock);
    pthread_mutex_destroy(&d->receiver.lock);
    pthread_mutex_destroy(&d->ends_lock);
    free(d);
}

/* ---- firing
 * ------------------------------------------------------------------ */

static bool
receivers_alive(void *ctx)
{
    struct mbx_dispatcher *d = ctx;
    /* After the close nobody reads any more. */
    return end_held(d, RECEIVER) && !atomic_load(&d->hdr->closed);
}

/* Makes the receiver fd readable if a receiver armed it (once per
 * arming; see mbx__ring_armed). */
static void
ring_doorbell(struct mbx_dispatcher *d)
{
    uint32_t arming = mbx__ring_armed(&d->ring);
    if (arming) {
        mbx__eventfd_signal(d->event_fd);
        mbx__ring_disarm(&d->ring, arming);
    }
}

/* Before a sender waits for room: wake the receivers (and their doorbell),
 * in case the sender that filled the ring died before waking them. */
static void
nudge_receivers(void *ctx)
{
    struct mbx_dispatcher *d = ctx;
    mbx__ring_wake_reader(&d->ring);
    ring_doorbell(d);
}

static const struct mbx__ring_writer_ops sender_ops = {
    .holder_dead = writer_dead,
    .reader_alive = receivers_alive,
    .nudge_reader = nudge_receivers,
};

/* The dispatcher whose handler this thread is running, if any. */
static _Thread_local struct mbx_dispatcher *handling;

/* Writes one event record from this process. */
static int
put_record(struct mbx_dispatcher *d, const struct mbx__rec_view *v)
{
    struct mbx_sender *s = &d->sender;
    pthread_mutex_lock(&s->lock);
    int rc =
        take_lane(d, &s->lane, 1, MBX__RING_LANES, d->ring.hdr->lane_nonce);
    uint64_t token = s->lane.token;
    pthread_mutex_unlock(&s->lock);
    if (rc < 0)
        return rc;
    /* A handler firing into its own dispatcher's full ring would wait for
     * room that only its own receiver, busy in it, can make. */
    int64_t deadline = handling == d ? 0 : MBX__NEVER;
    rc = mbx__ring_put(&d->ring, token, v, deadline, &sender_ops, d);
    if (rc == MBX_ENOENT)
        return MBX_ECLOSED; /* every receiver is gone */
    if (rc == 0)
        ring_doorbell(d); /* the put woke parked receivers already */
    return rc;
}

int
mbx_fire(mbx_sender *s, const char *event, const mbx_args *args)
{
    if (!s || !event || !*event || strlen(event) > MBX_KIND_MAX)
        return MBX_EINVAL;
    struct mbx_dispatcher *d = s->d;
    /* Closed by this process, or the close was consumed: nobody would
     * handle it. */
    if (atomic_load(&s->closed) || atomic_load(&d->hdr->closed))
        return MBX_ECLOSED;
    /* Encoded into the thread's reused buffer: the ring takes a copy. */
    const void *body = NULL;
    size_t len = 0;
    int rc = args ? mbx__args_encode_reused(args, &body, &len) : 0;
    if (rc < 0)
        return rc;
    rc = use_end(d, SENDER);
    if (rc == 0) {
        struct mbx__rec_view v = {.role = 0,
                                  .kind = event,
                                  .kind_len = strlen(event),
                                  .body = body,
                                  .body_len = len};
        rc = put_record(d, &v);
    }
    return rc;
}

/* Adds one value of format character c to a (keyword `key`, or positional
 * when key is NULL). */
static int
add_formatted(mbx_args *a, const char *key, char c, va_list *ap)
{
    switch (c) {
    case 'n':
        return key ? mbx_args_set_nil(a, key) : mbx_args_add_nil(a);
    case 'b': {
        int v = va_arg(*ap, int);
        return key ? mbx_args_set_bool(a, key, v) : mbx_args_add_bool(a, v);
    }
    case 'i': {
        int64_t v = va_arg(*ap, int64_t);
        return key ? mbx_args_set_int(a, key, v) : mbx_args_add_int(a, v);
    }
    case 'd': {
        double v = va_arg(*ap, double);
        return key ? mbx_args_set_double(a, key, v) : mbx_args_add_double(a, v);
    }
    case 's': {
        const char *v = va_arg(*ap, const char *);
        return key ? mbx_args_set_str(a, key, v) : mbx_args_add_str(a, v);
    }
    case 'y': {
        const void *v = va_arg(*ap, const void *);
        size_t n = va_arg(*ap, size_t);
        return key ? mbx_args_set_bytes(a, key, v, n)
                   : mbx_args_add_bytes(a, v, n);
    }
    default:
        return MBX_EINVAL;
    }
}

int
mbx_firef(mbx_sender *s, const char *event, const char *fmt, ...)
{
    if (!fmt)
        return MBX_EINVAL;
    mbx_args *a = mbx_args_new();
    if (!a)
        return MBX_ENOMEM;
    va_list ap;
    va_start(ap, fmt);
    int rc = 0;
    bool keywords = false;
    for (const char *p = fmt; *p && rc == 0; p++) {
        if (*p == '|' && !keywords) {
            keywords = true;
            continue;
        }
        const char *key = keywords ? va_arg(ap, const char *) : NULL;
        if (keywords && !key)
            rc = MBX_EINVAL;
        else
            rc = add_formatted(a, key, *p, &ap);
    }
    va_end(ap);
    if (rc == 0)
        rc = mbx_fire(s, event, a);
    mbx_args_free(a);
    return rc;
}

/* Marks the close behind every event published so far (no room in the ring
 * needed), unless a close was marked already, and wakes the receivers and
 * their event loops. */
static void
request_close(struct mbx_dispatcher *d)
{
    uint64_t none = 0;
    uint64_t at = atomic_load(&d->ring.hdr->tail) + 1;
    atomic_compare_exchange_strong(&d->hdr->close_at, &none, at);
    mbx__ring_wake_reader(&d->ring);
    mbx__eventfd_signal(d->event_fd);
}

int
mbx_sender_close(mbx_sender *s)
{
    if (!s)
        return MBX_EINVAL;
    if (atomic_exchange(&s->closed, true))
        return MBX_ECLOSED;
    request_close(s->d);
    return 0;
}

int
mbx_receiver_close(mbx_receiver *r)
{
    if (!r)
        return MBX_EINVAL;
    request_close(r->d);
    return 0;
}

/* ---- handlers
 * ------------------------------------------------------------------ */

int
mbx_connect(mbx_receiver *r, const char *event, mbx_handler fn, void *ctx)
{
    if (!r || !fn || !event || !*event || strlen(event) > MBX_KIND_MAX)
        return MBX_EINVAL;
    size_t len = strlen(event);
    struct handler *h = malloc(sizeof *h + len + 1);
    if (!h)
        return MBX_ENOMEM;
    h->next = NULL;
    h->fn = fn;
    h->ctx = ctx;
    memcpy(h->event, event, len + 1);
    pthread_mutex_lock(&r->lock);
    struct handler **p = &r->handlers;
    while (*p)
        p = &(*p)->next;
    *p = h; /* connection order */
    pthread_mutex_unlock(&r->lock);
    return 0;
}

int
mbx_disconnect(mbx_receiver *r, const char *event, mbx_handler fn, void *ctx)
{
    if (!r || !event || !fn)
        return MBX_EINVAL;
    struct handler *gone = NULL;
    pthread_mutex_lock(&r->lock);
    for (struct handler **p = &r->handlers; *p; p = &(*p)->next) {
        struct handler *h = *p;
        if (h->fn == fn && h->ctx == ctx && strcmp(h->event, event) == 0) {
            *p = h->next;
            gone = h;
            break;
        }
    }
    pthread_mutex_unlock(&r->lock);
    free(gone);
    return gone ? 0 : MBX_ENOENT;
}

/* The handlers of `event` as connected now, copied so that they run
 * without the lock (a handler may connect or disconnect): into `local`
 * (room for LOCAL_HANDLERS) or, when more, a new array. Returns the count
 * (*out: local or to free), or -1 when out of memory. */
#define LOCAL_HANDLERS 8
static int
handlers_of(mbx_receiver *r, const char *event, struct handler_ref *local,
            struct handler_ref **out)
{
    pthread_mutex_lock(&r->lock);
    int n = 0;
    for (struct handler *h = r->handlers; h; h = h->next)
        n += strcmp(h->event, event) == 0;
    struct handler_ref *copy =
        n <= LOCAL_HANDLERS ? local : malloc((size_t)n * sizeof *copy);
    if (!copy)
        n = -1;
    int i = 0;
    for (struct handler *h = r->handlers; h && copy; h = h->next)
        if (strcmp(h->event, event) == 0)
            copy[i++] = (struct handler_ref){.fn = h->fn, .ctx = h->ctx};
    pthread_mutex_unlock(&r->lock);
    *out = copy;
    return n;
}

/* ---- receiving
 * ------------------------------------------------------------------ */

/* An event taken off the ring. */
struct event {
    bool close;
    unsigned flags; /* none are defined: a record with some is dropped */
    size_t name_len;
    char name[MBX_KIND_MAX + 1];
    void *body;               /* small, or malloc'd */
    unsigned char small[256]; /* most events' args fit here */
    size_t len;
};

/* Takes the next event under the receivers' lock. Returns 1 (got one), 0
 * (none), or a negative error. A malformed record is dropped and counted. */
static int
take_event(mbx_receiver *r, struct event *ev)
{
    struct mbx_dispatcher *d = r->d;
    pthread_mutex_lock(&r->lock);
    int rc = take_lane(d, &r->lane, RLANE_BASE, RLANES, d->hdr->rlane_nonce);
    uint64_t token = r->lane.token;
    pthread_mutex_unlock(&r->lock);
    if (rc < 0)
        return rc;
    struct mbx__ring *ring = &d->ring;
    mbx__ring_lock(&d->hdr->rlock, token, receiver_dead, d,
                   &d->hdr->broken_rlocks);
    /* Several receivers (processes or threads) share the ring: the shared
     * head, not a private one, says where the next event is. */
    uint64_t head = atomic_load(&ring->hdr->head);
    ring->consumed = 0;
    /* The tail this process read last is still good while it is ahead of
     * head (tail only grows): read it again only once caught up, so a
     * backlog costs one look at the senders' line, not one per event. */
    bool ahead = ring->rtail > head && ring->rtail - head <= ring->mask + 1;
    ring->rhead = head;
    if (!ahead)
        ring->rtail = head;
    struct mbx__rec_view v;
    int got = 0;
    bool some = ahead || mbx__ring_refresh(ring);
    /* Read after the tail: an event published after the close was marked
     * then lies at or beyond it. */
    uint64_t close_at = atomic_load(&d->hdr->close_at);
    if (close_at && head >= close_at - 1) {
        /* Every event before the close is taken: the first receiver here
         * consumes the close, the others are closed. */
        uint32_t open = 0;
        got = atomic_compare_exchange_strong(&d->hdr->closed, &open, 1)
                  ? 1
                  : MBX_ECLOSED;
        ev->close = true;
    } else if (some && mbx__ring_peek(ring, &v)) {
        got = 1;
        ev->close = false;
        ev->flags = v.flags;
        ev->len = v.body_len;
        ev->body =
            v.body_len <= sizeof ev->small ? ev->small : malloc(v.body_len);
        if (v.body_len && !ev->body) {
            got = MBX_ENOMEM; /* left in the ring */
        } else {
            memcpy(ev->name, v.kind, v.kind_len);
            ev->name[v.kind_len] = '\0';
            ev->name_len = v.kind_len;
            if (v.body_len)
                memcpy(ev->body, v.body, v.body_len);
            mbx__ring_consume(ring);
        }
    }
    mbx__ring_commit(ring);
    mbx__ring_unlock(&d->hdr->rlock);
    return got;
}

/* Runs the handlers of one event. Returns 0 or a handler's non-zero
 * value. */
static int
dispatch(mbx_receiver *r, struct event *ev)
{
    mbx_args *args = NULL;
    int rc = ev->len ? mbx_args_decode(&args, ev->body, ev->len) : 0;
    if (rc == 0 && !args && !(args = mbx_args_new()))
        rc = MBX_ENOMEM;
    /* A name with a NUL byte in it, or none, or flags, is not what
     * mbx_fire sends. */
    if (rc < 0 || ev->name_len == 0 || strlen(ev->name) != ev->name_len ||
        ev->flags) {
        atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
        mbx_args_free(args);
        return 0;
    }
    struct handler_ref local[LOCAL_HANDLERS], *hs;
    int n = handlers_of(r, ev->name, local, &hs);
    atomic_fetch_add_explicit(n == 0 ? &r->ignored : &r->handled, 1,
                              memory_order_relaxed);
    rc = n < 0 ? MBX_ENOMEM : 0;
    struct mbx_dispatcher *outer = handling;
    handling = r->d;
    for (int i = 0; i < n && rc == 0; i++)
        rc = hs[i].fn(ev->name, args, hs[i].ctx);
    handling = outer;
    if (hs != local)
        free(hs);
    mbx_args_free(args);
    return rc;
}

/* True when there may be something for a receiver to take: an event, or
 * the close. Any thread. */
static bool
something_to_take(struct mbx_dispatcher *d)
{
    return mbx__ring_pending(&d->ring) || atomic_load(&d->hdr->close_at);
}

/* Keeps the fd level-triggered: readable if events wait; if none, made
 * unreadable with the doorbell armed, then looked at again, so an event
 * that came meanwhile keeps it readable. */
static void
settle_fd(struct mbx_dispatcher *d)
{
    /* Events fired before anyone armed the doorbell rang nothing. */
    if (something_to_take(d)) {
        mbx__eventfd_signal(d->event_fd);
        return;
    }
    mbx__eventfd_drain(d->event_fd);
    mbx__ring_arm(&d->ring);
    if (something_to_take(d))
        mbx__eventfd_signal(d->event_fd);
}

/* Waits until an event may be there, every process holding the sender is
 * gone, or the deadline passes. Returns 0 (look again), MBX_ECLOSED or
 * MBX_ETIMEDOUT. */
/* Spins a little while for an event before parking: a wake-up costs the
 * sender a system call and us tens of microseconds. As for mailboxes fed
 * by a ring, the first look waits a few hundred nanoseconds, so that a
 * receiver keeping pace does not pull the ring's tail away from the sender
 * on every event. Returns true when an event may be there. */
static bool
spin_for_event(struct mbx_dispatcher *d)
{
    if (mbx__cpu_count_online() < 2)
        return false;
    int64_t start = mbx__now_ns();
    for (unsigned i = 1;; i++) {
        if (i >= SPIN_FIRST_LOOK && i % 4 == 0 && something_to_take(d))
            return true;
        mbx__cpu_relax();
        if (i % 64 != 0)
            continue;
        int64_t spun = mbx__now_ns() - start;
        if (spun > SPIN_NS)
            return false;
        if (spun > 2000)
            sched_yield();
    }
}

static int
await_event(struct mbx_dispatcher *d, int64_t deadline)
{
    struct mbx__ring_hdr *h = d->ring.hdr;
    if (spin_for_event(d))
        return 0;
    int64_t until = mbx__now_ns() + LIVENESS_CHECK_NS;
    if (deadline < until)
        until = deadline;
    uint32_t s = atomic_load(&h->rd_seq);
    atomic_fetch_add(&h->rd_waiters, 1);
    int rc = 0;
    if (!something_to_take(d))
        rc = mbx__futex_wait_shared(&h->rd_seq, s, until);
    atomic_fetch_sub(&h->rd_waiters, 1);
    if (something_to_take(d))
        return 0;
    /* Senders gone and nothing left: closed, not merely quiet. */
    if (!end_held(d, SENDER))
        return something_to_take(d) ? 0 : MBX_ECLOSED;
    if (rc == MBX_ETIMEDOUT && until < deadline)
        rc = 0;
    return rc;
}

/* Takes one event, waiting up to the deadline. Returns 1, or MBX_EAGAIN,
 * MBX_ETIMEDOUT, MBX_ECLOSED or another error. */
static int
next_event(mbx_receiver *r, struct event *ev, int64_t deadline)
{
    struct mbx_dispatcher *d = r->d;
    int rc = use_end(d, RECEIVER);
    for (; rc == 0;) {
        /* Closed here, or consumed by another receiver (thread or
         * process) while we waited. */
        if (atomic_load(&r->close_seen) || atomic_load(&d->hdr->closed))
            return MBX_ECLOSED;
        int got = take_event(r, ev);
        if (got != 0)
            return got;
        /* The fd is kept only for those who asked for it. */
        if (atomic_load_explicit(&r->fd_given, memory_order_relaxed))
            settle_fd(d);
        if (deadline == 0) {
            if (end_held(d, SENDER))
                return MBX_EAGAIN;
            /* The last sender may have published just before it went. */
            if (something_to_take(d))
                continue;
            return MBX_ECLOSED;
        }
        rc = await_event(d, deadline);
    }
    return rc;
}

/* Handles one event taken by next_event. */
static int
handle(mbx_receiver *r, struct event *ev)
{
    if (ev->close) {
        atomic_store(&r->close_seen, true);
        /* The other receivers, parked or polling, end too. */
        mbx__ring_wake_reader(&r->d->ring);
        mbx__eventfd_signal(r->d->event_fd);
        return 0;
    }
    int rc = dispatch(r, ev);
    if (ev->body != ev->small)
        free(ev->body);
    return rc;
}

int
mbx_handle_next(mbx_receiver *r, int timeout_ms)
{
    if (!r)
        return MBX_EINVAL;
    struct event ev;
    int rc = next_event(r, &ev, mbx__deadline(timeout_ms));
    return rc < 0 ? rc : handle(r, &ev);
}

int
mbx_handle_until_blocking(mbx_receiver *r)
{
    if (!r)
        return MBX_EINVAL;
    /* Everything published before this moment is in the ring already:
     * fired events never wait in a thread of ours on their way. */
    int n = 0;
    for (;;) {
        struct event ev;
        int rc = next_event(r, &ev, 0);
        if (rc == MBX_EAGAIN)
            return n;
        if (rc < 0)
            return n && rc == MBX_ECLOSED ? n : rc;
        n++;
        if ((rc = handle(r, &ev)) != 0)
            return rc;
        if (atomic_load(&r->close_seen))
            return n;
    }
}

int
mbx_handle_until_closed(mbx_receiver *r)
{
    if (!r)
        return MBX_EINVAL;
    for (;;) {
        struct event ev;
        int rc = next_event(r, &ev, MBX__NEVER);
        if (rc < 0)
            return rc;
        if ((rc = handle(r, &ev)) != 0)
            return rc;
        if (atomic_load(&r->close_seen))
            return 0;
    }
}

int
mbx_receiver_fd(mbx_receiver *r)
{
    if (!r)
        return MBX_EINVAL;
    if (atomic_load(&r->close_seen) || atomic_load(&r->d->hdr->closed))
        return MBX_ECLOSED;
    int rc = use_end(r->d, RECEIVER);
    if (rc < 0)
        return rc;
    /* One fd for both: events (the eventfd) and the senders' pipe, which
     * hangs up once every process holding the sender is gone. */
    struct mbx_dispatcher *d = r->d;
    pthread_mutex_lock(&r->lock);
    if (d->poll_fd < 0) {
        int set = mbx__poll_set_open();
        rc = set < 0 ? set : mbx__poll_set_add(set, d->event_fd);
        if (rc == 0)
            rc = mbx__poll_set_add(set, d->senders_gone_fd);
        if (rc == 0)
            d->poll_fd = set;
        else
            mbx__fd_close(set);
    }
    pthread_mutex_unlock(&r->lock);
    if (rc < 0)
        return rc;
    atomic_store(&r->fd_given, true);
    settle_fd(d);
    return d->poll_fd;
}

int
mbx_receiver_stat(const mbx_receiver *r, mbx_receiver_stats *out)
{
    if (!r || !out)
        return MBX_EINVAL;
    *out = (mbx_receiver_stats){
        .handled = atomic_load(&r->handled),
        .ignored = atomic_load(&r->ignored),
        .dropped = atomic_load(&r->dropped),
    };
    return 0;
}
