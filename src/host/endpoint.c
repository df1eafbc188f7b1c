/* Endpoints of a host mailslot: ring files, name take-over, lanes and
 * liveness. */
#include "host/endpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/lane.h"
#include "platform/platform.h"

/* How long a writer trusts the reader to be alive without asking again. */
#define ALIVE_CHECK_NS 50000000

/* ---- the process's endpoints -------------------------------------------- */

static pthread_mutex_t endpoints_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mbx__reader *readers;
static struct mbx__writer *writers;

/* Links or unlinks a reader or writer (both start with next and prev). */
#define LIST_LINK(head, e)                                                     \
    do {                                                                       \
        pthread_mutex_lock(&endpoints_lock);                                   \
        (e)->prev = NULL;                                                      \
        (e)->next = (head);                                                    \
        if (head)                                                              \
            (head)->prev = (e);                                                \
        (head) = (e);                                                          \
        pthread_mutex_unlock(&endpoints_lock);                                 \
    } while (0)
#define LIST_UNLINK(head, e)                                                   \
    do {                                                                       \
        pthread_mutex_lock(&endpoints_lock);                                   \
        if ((e)->prev)                                                         \
            (e)->prev->next = (e)->next;                                       \
        else                                                                   \
            (head) = (e)->next;                                                \
        if ((e)->next)                                                         \
            (e)->next->prev = (e)->prev;                                       \
        pthread_mutex_unlock(&endpoints_lock);                                 \
    } while (0)

void
mbx__endpoints_lock_all(void)
{
    pthread_mutex_lock(&endpoints_lock);
}

void
mbx__endpoints_unlock_all(int in_child)
{
    if (in_child) {
        /* The mappings did not come along (MADV_DONTFORK): forget them,
         * so that nothing unmaps what may be mapped there later. */
        for (struct mbx__reader *rd = readers; rd; rd = rd->next) {
            mbx__reader_disown(rd);
            rd->map = NULL;
        }
        for (struct mbx__writer *w = writers; w; w = w->next) {
            mbx__fd_close(w->fd);
            mbx__fd_close(atomic_exchange(&w->bell_fd, -1));
            w->fd = -1;
            w->map = NULL;
        }
    }
    pthread_mutex_unlock(&endpoints_lock);
}

/* ---- mapping ----------------------------------------------------------------
 */

/* Maps `size` bytes of a ring file, shared. Children after fork do not get
 * the mapping: it holds a reference on the open file, which would keep the
 * file locks (a reader's name, a writer's lane) held for as long as the
 * child lives, even once its copy of the fd is closed. Returns the address
 * or NULL. */
static void *
map_shared(int fd, size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return NULL;
    if (madvise(p, size, MADV_DONTFORK) < 0) {
        munmap(p, size);
        return NULL;
    }
    return p;
}

/* Maps an open ring file and checks it. Returns 0 or a negative error. */
static int
map_ring(int fd, struct mbx__ring *r, void **map, size_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode) || st.st_size < MBX__RING_HDR_SIZE ||
        (uint64_t)st.st_size > MBX__RING_HDR_SIZE + (uint64_t)MBX_RING_MAX)
        return MBX_EBADMSG;
    void *p = map_shared(fd, (size_t)st.st_size);
    if (!p)
        return MBX_ENOMEM;
    int rc = mbx__ring_attach(r, p, (size_t)st.st_size);
    if (rc < 0) {
        munmap(p, (size_t)st.st_size);
        return rc;
    }
    *map = p;
    *size = (size_t)st.st_size;
    return 0;
}

/* ---- the reader -------------------------------------------------------------
 */

/* The ring size for the options: a power of two within bounds. */
static int
ring_size_of(const mbx_host_opts *o, uint64_t *out)
{
    uint64_t want = o->ring_size ? o->ring_size : MBX_RING_DEFAULT;
    if (want > MBX_RING_MAX)
        return MBX_EINVAL;
    uint64_t n = MBX_RING_MIN;
    while (n < want)
        n <<= 1;
    *out = n;
    return 0;
}

/* Builds a fresh, locked, live ring in a new temporary file `tmp`. */
static int
create_ring(struct mbx__reader *rd, int dirfd, const char *tmp, uint64_t size,
            const mbx_host_opts *o)
{
    unsigned mode = o->mode ? o->mode : 0600;
    rd->fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (rd->fd < 0)
        return -errno;
    rd->map_size = MBX__RING_HDR_SIZE + size;
    /* The umask may have narrowed the mode; the option decides. */
    if (fchmod(rd->fd, mode) < 0 || ftruncate(rd->fd, (off_t)rd->map_size) < 0)
        return -errno;
    if (!(rd->map = map_shared(rd->fd, rd->map_size)))
        return MBX_ENOMEM;
    rd->mode = mode;
    rd->max_body = o->message_size > UINT32_MAX ? 0 : (uint32_t)o->message_size;
    mbx__ring_init(&rd->ring, rd->map, size, rd->name, (int)getpid(), mode,
                   o->message_size > UINT32_MAX ? 0
                                                : (uint32_t)o->message_size);
    atomic_store(&rd->ring.hdr->state, MBX__RING_LIVE);
    struct stat st;
    if (fstat(rd->fd, &st) < 0)
        return -errno;
    rd->dev = st.st_dev;
    rd->ino = st.st_ino;
    return mbx__lock_byte(rd->fd, 0, F_WRLCK);
}

/* Marks the ring in an old file DEAD, so writers still attached to it
 * reconnect, and wakes those waiting in it. */
static void
bury_old_ring(int fd)
{
    struct mbx__ring r;
    void *map = NULL;
    size_t size = 0;
    if (map_ring(fd, &r, &map, &size) < 0)
        return; /* not a ring: nobody can be attached to it */
    atomic_store(&r.hdr->state, MBX__RING_DEAD);
    mbx__ring_wake_writers(&r);
    munmap(map, size);
}

/* Puts the ring file `tmp` in place under rd->file, taking over from a
 * dead reader if there was one. Returns 0, MBX_EEXIST, or an error. */
static int
take_name(struct mbx__reader *rd, int dirfd, const char *tmp)
{
    for (;;) {
        int old = openat(dirfd, rd->file, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        if (old < 0 && errno == ENOENT) {
            /* Nobody: link ours in, unless someone was quicker. */
            if (linkat(dirfd, tmp, dirfd, rd->file, 0) == 0) {
                unlinkat(dirfd, tmp, 0);
                return 0;
            }
            if (errno != EEXIST)
                return -errno;
            continue;
        }
        if (old < 0)
            return errno == EACCES || errno == ELOOP ? MBX_EPERM : -errno;
        int rc = mbx__lock_byte(old, 0, F_WRLCK);
        if (rc < 0) {
            close(old);
            return rc == -EAGAIN || rc == -EACCES ? MBX_EEXIST : rc;
        }
        /* We hold the old file's lock: it is still at the name (nobody can
         * replace it without that lock) unless it was replaced before we
         * locked it. Then look again. */
        struct stat a, b;
        if (fstat(old, &a) == 0 &&
            fstatat(dirfd, rd->file, &b, AT_SYMLINK_NOFOLLOW) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            bury_old_ring(old);
            rc = renameat(dirfd, tmp, dirfd, rd->file) < 0 ? -errno : 0;
            close(old);
            return rc;
        }
        close(old);
    }
}

int
mbx__reader_open(struct mbx__reader **out, const char *name,
                 const mbx_host_opts *opts)
{
    mbx_host_opts o = opts ? *opts : (mbx_host_opts){0};
    unsigned mode = o.mode ? o.mode : 0600;
    uint64_t size;
    if ((mode != 0600 && mode != 0660) || ring_size_of(&o, &size) < 0)
        return MBX_EINVAL;
    /* A process may read or write rings without ever creating a mailbox:
     * the fork handlers must be in place before the first mapping. */
    mbx__fork_safety();
    struct mbx__reader *rd = calloc(1, sizeof *rd);
    if (!rd)
        return MBX_ENOMEM;
    rd->fd = rd->bell_fd = -1;
    LIST_LINK(readers, rd); /* a fork from here on closes the child's fds */
    snprintf(rd->name, sizeof rd->name, "%s", name);
    mbx__rundir_file_name(name, ".ring", rd->file);
    /* The temporary name must not collide with one a killed process left
     * behind (pids are reused, in containers from 1): add time bits. */
    static _Atomic unsigned counter;
    char tmp[64];
    snprintf(tmp, sizeof tmp, ".new-%d-%u-%llx", (int)getpid(),
             atomic_fetch_add(&counter, 1), (unsigned long long)mbx__now_ns());
    int rc = 0, dirfd = mbx__rundir_open();
    if (dirfd < 0)
        rc = dirfd;
    if (rc == 0 && mode == 0660)
        rc = mbx__rundir_share_with_group(dirfd);
    if (rc == 0 && (rc = create_ring(rd, dirfd, tmp, size, &o)) < 0 &&
        rd->fd >= 0)
        unlinkat(dirfd, tmp, 0); /* ours: made before it failed */
    if (rc == 0 && (rc = take_name(rd, dirfd, tmp)) < 0)
        unlinkat(dirfd, tmp, 0);
    mbx__fd_close(dirfd);
    if (rc < 0) {
        LIST_UNLINK(readers, rd);
        if (rd->map)
            munmap(rd->map, rd->map_size);
        mbx__fd_close(rd->fd);
        free(rd);
        /* EACCES: a directory or file of someone else's. */
        return rc == -EACCES ? MBX_EPERM : rc;
    }
    *out = rd;
    return 0;
}

/* Removes `file` from the runtime directory if it is still ours. */
static void
unlink_if_ours(int dirfd, const char *file, dev_t dev, ino_t ino)
{
    struct stat st;
    if (fstatat(dirfd, file, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        st.st_dev == dev && st.st_ino == ino)
        unlinkat(dirfd, file, 0);
}

void
mbx__reader_release_name(struct mbx__reader *rd)
{
    /* Unregister and destroy may both get here: the first one does it. */
    if (rd->disowned || atomic_exchange(&rd->released, true))
        return;
    atomic_store(&rd->ring.hdr->state, MBX__RING_CLOSED);
    mbx__ring_wake_writers(&rd->ring);
    int dirfd = mbx__rundir_open();
    if (dirfd >= 0) {
        /* The doorbell first, while we still hold the name: once the ring
         * file is gone, a new reader may take the name and its doorbell.
         * It goes whether it is ours or one a dead reader left. */
        char bell[MBX__FILE_NAME_MAX];
        mbx__rundir_file_name(rd->name, ".bell", bell);
        unlinkat(dirfd, bell, 0);
        /* We still hold the lock, so the file at the name is ours unless
         * the directory itself was changed under us. */
        unlink_if_ours(dirfd, rd->file, rd->dev, rd->ino);
        close(dirfd);
    }
}

void
mbx__reader_close(struct mbx__reader *rd)
{
    if (!rd)
        return;
    LIST_UNLINK(readers, rd);
    mbx__reader_release_name(rd);
    if (rd->map)
        munmap(rd->map, rd->map_size);
    mbx__fd_close(rd->fd);
    mbx__fd_close(rd->bell_fd);
    free(rd);
}

void
mbx__reader_disown(struct mbx__reader *rd)
{
    rd->disowned = true;
    mbx__fd_close(rd->fd);
    mbx__fd_close(rd->bell_fd);
    rd->fd = rd->bell_fd = -1;
}

int
mbx__reader_bell(struct mbx__reader *rd)
{
    if (rd->bell_fd >= 0)
        return rd->bell_fd;
    if (rd->disowned)
        return MBX_EPERM;
    char bell[MBX__FILE_NAME_MAX];
    mbx__rundir_file_name(rd->name, ".bell", bell);
    int dirfd = mbx__rundir_open();
    if (dirfd < 0)
        return dirfd;
    /* A doorbell left by a dead reader is reused: stray bytes in it only
     * cost one spurious look. */
    int rc = 0;
    if (mkfifoat(dirfd, bell, rd->mode) < 0 && errno != EEXIST)
        rc = -errno;
    int fd =
        rc ? -1
           : openat(dirfd, bell, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    if (!rc && fd < 0)
        rc = -errno;
    struct stat st;
    if (!rc && (fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode))) {
        close(fd);
        rc = MBX_EPERM;
    }
    /* As for the ring, the option decides the mode, not the umask. */
    if (!rc && st.st_uid == geteuid())
        fchmod(fd, rd->mode);
    close(dirfd);
    if (rc < 0)
        return rc;
    rd->bell_fd = fd;
    return fd;
}

void
mbx__reader_bell_drain(struct mbx__reader *rd)
{
    char buf[64];
    if (rd->bell_fd < 0)
        return;
    while (read(rd->bell_fd, buf, sizeof buf) == (ssize_t)sizeof buf)
        ;
}

/* ---- writers
 * ------------------------------------------------------------------ */

/* Takes a free writer lane of the ring. */
static int
take_lane(struct mbx__writer *w)
{
    return mbx__lane_take(w->fd, 1, MBX__RING_LANES, w->ring.hdr->lane_nonce,
                          &w->lane, &w->token);
}

int
mbx__writer_open(struct mbx__writer **out, const char *name)
{
    mbx__fork_safety(); /* as in mbx__reader_open */
    struct mbx__writer *w = calloc(1, sizeof *w);
    if (!w)
        return MBX_ENOMEM;
    w->fd = -1;
    LIST_LINK(writers, w); /* from here on, close with mbx__writer_close */
    atomic_init(&w->bell_fd, -1);
    w->fork_gen = mbx__fork_generation;
    mbx__rundir_file_name(name, ".ring", w->file);
    int rc = 0, dirfd = mbx__rundir_open();
    if (dirfd < 0) {
        free(w);
        return dirfd == MBX_EPERM ? MBX_EPERM : MBX_ENOENT;
    }
    w->fd = openat(dirfd, w->file, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    close(dirfd);
    if (w->fd < 0)
        rc = errno == EACCES || errno == ELOOP ? MBX_EPERM : MBX_ENOENT;
    if (rc == 0 && map_ring(w->fd, &w->ring, &w->map, &w->map_size) < 0)
        rc = MBX_ENOENT; /* half-built or not a ring: nobody to write to */
    if (rc == 0 && (strncmp(w->ring.hdr->name, name, MBX_NAME_MAX + 1) != 0 ||
                    !mbx__writer_reader_alive(w, true)))
        rc = MBX_ENOENT;
    if (rc == 0)
        rc = take_lane(w);
    if (rc < 0) {
        mbx__writer_close(w);
        return rc;
    }
    *out = w;
    return 0;
}

void
mbx__writer_close(struct mbx__writer *w)
{
    if (!w)
        return;
    LIST_UNLINK(writers, w);
    if (w->map)
        munmap(w->map, w->map_size);
    mbx__fd_close(w->fd);
    mbx__fd_close(atomic_load(&w->bell_fd));
    free(w);
}

bool
mbx__writer_reader_alive(struct mbx__writer *w, bool now_please)
{
    if (atomic_load(&w->ring.hdr->state) != MBX__RING_LIVE)
        return false;
    int64_t now = mbx__coarse_now_ns();
    if (!now_please &&
        now - atomic_load_explicit(&w->checked, memory_order_relaxed) <
            ALIVE_CHECK_NS)
        return true;
    if (!mbx__byte_held_elsewhere(w->fd, 0))
        return false;
    atomic_store_explicit(&w->checked, now, memory_order_relaxed);
    return true;
}

/* mbx__holder_dead_fn: a lock holder is gone when its lane has a new
 * nonce or nobody holds the lane any more. */
static bool
holder_dead(void *ctx, uint64_t token)
{
    struct mbx__writer *w = ctx;
    return mbx__lane_holder_dead(w->fd, token, w->token, 1, MBX__RING_LANES,
                                 w->ring.hdr->lane_nonce);
}

static bool
reader_alive_now(void *ctx)
{
    return mbx__writer_reader_alive(ctx, true);
}

static bool ring_bell(struct mbx__writer *w);

/* Rings the doorbell if the reader waits in poll, and clears that arming
 * afterwards (see mbx__ring_armed). */
static void
ring_bell_if_armed(struct mbx__writer *w)
{
    uint32_t arming = mbx__ring_armed(&w->ring);
    /* Left armed when the bell could not be rung: the next writer tries. */
    if (arming && ring_bell(w))
        mbx__ring_disarm(&w->ring, arming);
}

/* Before a writer waits for room: the reader may be asleep beside a full
 * ring if the writer that filled it died before waking it. */
static void
nudge_reader(void *ctx)
{
    struct mbx__writer *w = ctx;
    mbx__ring_wake_reader(&w->ring);
    ring_bell_if_armed(w);
}

static const struct mbx__ring_writer_ops writer_ops = {
    .holder_dead = holder_dead,
    .reader_alive = reader_alive_now,
    .nudge_reader = nudge_reader,
};

/* Opens the write end of the reader's doorbell, once per connection.
 * Returns the fd or -1. */
static int
bell_of(struct mbx__writer *w)
{
    int fd = atomic_load(&w->bell_fd);
    if (fd >= 0)
        return fd;
    char bell[MBX__FILE_NAME_MAX];
    size_t n = strlen(w->file) - strlen(".ring");
    snprintf(bell, sizeof bell, "%.*s.bell", (int)n, w->file);
    int dirfd = mbx__rundir_open();
    if (dirfd < 0)
        return -1;
    /* ENXIO (nobody has it open for reading) leaves nobody to wake. */
    fd = openat(dirfd, bell, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
    close(dirfd);
    int none = -1;
    if (fd >= 0 && !atomic_compare_exchange_strong(&w->bell_fd, &none, fd)) {
        close(fd); /* another thread was first */
        fd = none;
    }
    return fd;
}

/* Rings the reader's doorbell: it waits in poll for the next record.
 * Returns false when it could not. */
static bool
ring_bell(struct mbx__writer *w)
{
    int fd = bell_of(w);
    if (fd < 0)
        return false;
    ssize_t n;
    do
        n = write(fd, "", 1);
    while (n < 0 && errno == EINTR);
    /* A full pipe is readable already: as good as rung. */
    return n == 1 || errno == EAGAIN;
}

int
mbx__writer_put(struct mbx__writer *w, const struct mbx__rec_view *v,
                int64_t deadline)
{
    if (!mbx__writer_reader_alive(w, false))
        return MBX_ENOENT;
    int rc = mbx__ring_put(&w->ring, w->token, v, deadline, &writer_ops, w);
    if (rc == 0)
        ring_bell_if_armed(w);
    return rc;
}
