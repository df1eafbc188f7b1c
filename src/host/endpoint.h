/*
 * Endpoints of a host mailslot: the reader that owns a ring file, and the
 * writers that map it. Names and liveness live in file locks, which the
 * kernel releases when a process dies however it dies:
 *
 *   byte 0 of the ring file     locked by the reader while it lives
 *   byte 1 + lane               locked by the writer process using that lane
 *
 * Locks are open-file-description locks (F_OFD_SETLK): they conflict even
 * between two opens in one process, and are released when the last fd of
 * the description closes. A reader takes over the name of a dead one by
 * building a fresh ring in a temporary file and renaming it over the old
 * one while holding the old one's lock; writers still attached to the old
 * ring find it marked DEAD and reconnect.
 */
#ifndef MBX_HOST_ENDPOINT_H
#define MBX_HOST_ENDPOINT_H

#include <stdbool.h>
#include <sys/types.h>

#include "core/fork.h"
#include "host/rundir.h"
#include "host/ring.h"

/* The reader's side of a ring. */
struct mbx__reader {
    struct mbx__reader *next, *prev; /* every reader of the process */
    struct mbx__ring ring;
    void *map;
    size_t map_size;
    int fd;      /* the ring file; holds the reader's lock */
    int bell_fd; /* the doorbell FIFO, opened read-write; -1 until asked */
    dev_t dev;   /* identity of the ring file, to unlink only our own */
    ino_t ino;
    bool disowned;         /* a copy inherited across fork: not ours to read */
    _Atomic bool released; /* the name was let go (or never held) */
    unsigned mode;         /* file permissions, our own copy */
    uint32_t max_body;     /* the body cap, our own copy (0: none) */
    char name[MBX_NAME_MAX + 1];
    char file[MBX__FILE_NAME_MAX];
};

/* Creates the ring of `name` (without "//./") and takes the name. Returns
 * 0 and *out; MBX_EEXIST (a live reader has it); MBX_EPERM (the runtime
 * directory or an existing file is not ours); MBX_EINVAL (bad options);
 * MBX_ENOMEM or a negative errno. */
int mbx__reader_open(struct mbx__reader **out, const char *name,
                     const mbx_host_opts *opts);

/* Lets the name go: marks the ring CLOSED (writers then get MBX_ENOENT) and
 * removes its files. The ring stays mapped and readable. */
void mbx__reader_release_name(struct mbx__reader *rd);

/* Releases the name if still held, unmaps and frees. */
void mbx__reader_close(struct mbx__reader *rd);

/* In a child after fork: closes the inherited fds without touching the
 * files or the ring, and stops reading (the parent still reads). */
void mbx__reader_disown(struct mbx__reader *rd);

/* The doorbell's read end, created on first call; readable after a writer
 * found the ring armed. Returns the fd or a negative error. */
int mbx__reader_bell(struct mbx__reader *rd);

/* Empties the doorbell. */
void mbx__reader_bell_drain(struct mbx__reader *rd);

/* A writer's connection to a ring. The threads of a process may share
 * one (host.c's cache does). */
struct mbx__writer {
    struct mbx__writer *next, *prev; /* every writer of the process */
    struct mbx__ring ring;
    void *map;
    size_t map_size;
    int fd;                  /* the ring file; holds our lane's lock */
    _Atomic int bell_fd;     /* the doorbell's write end, -1 until needed */
    uint32_t lane;           /* our lane, and the nonce we wrote into it */
    uint64_t token;          /* our writers'-lock token */
    _Atomic int64_t checked; /* when the reader was last found alive */
    unsigned fork_gen;       /* mbx__fork_generation when opened */
    char file[MBX__FILE_NAME_MAX];
};

/* Connects to the reader of `name`. Returns 0 and *out; MBX_ENOENT (no
 * reader, or a dead one); MBX_EPERM (not allowed to open the ring);
 * MBX_EAGAIN (every lane taken); MBX_ENOMEM or a negative errno. */
int mbx__writer_open(struct mbx__writer **out, const char *name);

/* Disconnects and frees. Accepts NULL. */
void mbx__writer_close(struct mbx__writer *w);

/* True while the ring is live and, at most a few milliseconds ago (or now
 * when `now_please`), its reader was alive. */
bool mbx__writer_reader_alive(struct mbx__writer *w, bool now_please);

/* Writes one record, waiting for room up to deadline. Returns as
 * mbx__ring_put; MBX_ENOENT also when the ring is no longer live. */
int mbx__writer_put(struct mbx__writer *w, const struct mbx__rec_view *v,
                    int64_t deadline);

/* Fork: every reader and writer holds file locks through its fds, and the
 * kernel keeps a lock while any copy of the fd is open. So around fork the
 * list of endpoints is locked, and in the child each inherited endpoint's
 * fds are closed (the parent's locks stay the parent's); a child's reader
 * is disowned, a child's writer reconnects on its next use. */
void mbx__endpoints_lock_all(void);
void mbx__endpoints_unlock_all(int in_child);

#endif
