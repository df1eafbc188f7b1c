/*
 * The host ring: one reader's queue of variable-size records in a shared
 * mapping, written by any number of processes. Pure memory operations: no
 * files and no system calls except futex wake-ups (endpoint.c maps the
 * memory and answers "is this writer or reader still alive").
 *
 * Layout: a header of MBX__RING_HDR_SIZE bytes, then `data_size` bytes (a
 * power of two) of records. Positions are 64-bit byte counts that only
 * grow; a record starts at position p, offset p & (data_size - 1), is
 * 8-aligned and never wraps: a writer that would cross the end first writes
 * a PAD record to the end.
 *
 * Writers serialise on a lock word in the mapping and publish a record with
 * one store of `tail`; a writer killed before that store leaves nothing
 * visible, so at most its own message is lost. A lock held by a dead
 * writer is broken by the next writer: the lock names the holder's lane, a
 * byte the holder keeps locked in the ring file while it lives, and that
 * lane's nonce (see endpoint.c). The reader alone moves `head`.
 *
 * Waking: a reader about to park counts itself in `rd_waiters` and sleeps
 * on the futex `rd_seq`; a writer that sees a waiter after publishing bumps
 * `rd_seq` and wakes it. A reader waiting through poll instead sets
 * `rd_armed`, and the writer that clears it rings the doorbell (endpoint.c).
 * A writer waiting for room counts itself in `space_waiters` and sleeps on
 * `space_seq`.
 */
#ifndef MBX_HOST_RING_H
#define MBX_HOST_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mbx/mbx.h"

#define MBX__RING_MAGIC 0x676e69722d78626dull /* "mbx-ring" */
#define MBX__RING_VERSION 1u
#define MBX__RING_LANES 1024u   /* writer processes at once per ring */
#define MBX__RING_HDR_SIZE 8192 /* two pages; records start page-aligned */

/* Ring states (hdr.state). */
enum mbx__ring_state {
    MBX__RING_LIVE = 1,   /* the reader reads */
    MBX__RING_CLOSED = 2, /* the reader let the name go */
    MBX__RING_DEAD = 3,   /* a new reader took the name of a dead one */
};

/* The shared header. Every field is fixed-size; lines are laid out by who
 * writes them. */
struct mbx__ring_hdr {
    /* Written once by the reader before the ring is published. */
    uint64_t magic;         /* MBX__RING_MAGIC */
    uint32_t version;       /* MBX__RING_VERSION */
    uint32_t hdr_size;      /* MBX__RING_HDR_SIZE */
    uint64_t data_size;     /* bytes of records, a power of two */
    uint64_t max_record;    /* largest record a writer may write */
    int32_t pid;            /* the reader's process */
    uint32_t mode;          /* file permissions */
    _Atomic uint32_t state; /* enum mbx__ring_state */
    uint32_t max_body;      /* largest body writers may send; 0 = no cap */
    _Atomic uint64_t awaiting_corr; /* reply rings: the call waited for */

    /* Writers only: the lock and what it guards. With one busy writer
     * this line never leaves its core. */
    _Alignas(64) _Atomic uint64_t wlock; /* 0, or holder lane | nonce << 32 */
    _Atomic uint64_t head_seen;          /* head as writers last read it */
    _Atomic uint64_t puts;               /* records published */
    _Atomic uint64_t full;               /* puts refused or timed out: full */
    _Atomic uint64_t broken_locks;       /* locks taken from dead writers */

    /* The hand-over point: written by writers per record, read by the
     * reader once per batch. */
    _Alignas(64) _Atomic uint64_t tail; /* position after the last record */

    /* The reader's progress: written once per batch, read by writers only
     * when the ring looks full to them. */
    _Alignas(64) _Atomic uint64_t head; /* position of the next record */
    _Atomic uint64_t gets;              /* records consumed */
    _Atomic uint64_t dropped;           /* malformed records skipped */

    /* Where the last urgent record is: written only for urgent records,
     * read by the reader on every take. */
    _Alignas(64) _Atomic uint64_t urgent_at; /* 1 + its position; 0: none */

    /* Writers waiting for room: written only when one parks. */
    _Alignas(64) _Atomic uint32_t space_seq; /* futex: room appeared */
    _Atomic uint32_t space_waiters;          /* writers parked on space_seq */

    /* The reader's waiting state: written only when it parks or arms. */
    _Alignas(64) _Atomic uint32_t rd_seq; /* futex: a record arrived */
    _Atomic uint32_t rd_waiters;          /* reader threads parked */
    _Atomic uint32_t rd_armed; /* odd: wants the doorbell rung; bumped by
                                * each arming */

    /* The name (NUL-terminated, without "//./"), for checks and listings. */
    _Alignas(64) char name[MBX_NAME_MAX + 1];

    /* Per writer lane: the nonce of its current holder. */
    _Alignas(64) _Atomic uint32_t lane_nonce[MBX__RING_LANES];
};

_Static_assert(sizeof(struct mbx__ring_hdr) <= MBX__RING_HDR_SIZE,
               "the ring header fits its two pages");
_Static_assert(offsetof(struct mbx__ring_hdr, wlock) == 64 &&
                   offsetof(struct mbx__ring_hdr, tail) == 128 &&
                   offsetof(struct mbx__ring_hdr, head) == 192,
               "writers' line, tail and head each have a cache line");

/* Record types. */
enum mbx__rec_type {
    MBX__REC_MSG = 1, /* a message */
    MBX__REC_PAD = 2, /* filler to the end of the data area */
};

/* A record header; kind, reply address and body follow, unpadded, and the
 * record is padded to a multiple of 8. */
struct mbx__rec {
    uint32_t size;     /* whole record, header and padding included */
    uint16_t type;     /* enum mbx__rec_type */
    uint8_t role;      /* enum mbx__role of the message */
    uint8_t flags;     /* MBX_MSG_* */
    uint64_t corr;     /* call correlation, 0 if none */
    uint32_t body_len; /* bytes of body */
    uint8_t kind_len;  /* bytes of kind (at most MBX_KIND_MAX) */
    uint8_t from_len;  /* bytes of the reply address (at most MBX_NAME_MAX) */
    uint16_t pad;      /* zero */
};

_Static_assert(sizeof(struct mbx__rec) == 24, "a record header is 24 bytes");
_Static_assert(MBX_KIND_MAX <= UINT8_MAX && MBX_NAME_MAX <= UINT8_MAX,
               "kind and address lengths fit one byte");

/* A mapped ring. */
struct mbx__ring {
    struct mbx__ring_hdr *hdr;
    unsigned char *data;
    uint64_t mask; /* data_size - 1 */
    /* The reader's private view: it publishes head and gets once per
     * batch (mbx__ring_commit), not per record. */
    uint64_t rhead;     /* next record to read */
    uint64_t rtail;     /* tail as last read */
    uint64_t peeked_to; /* rhead after the record last peeked */
    uint64_t consumed;  /* records consumed since the last commit */
};

/* What a record carries, as the writer gives it and the reader finds it.
 * For the reader, the pointers point into the ring and stay valid until
 * mbx__ring_consume. */
struct mbx__rec_view {
    unsigned role, flags;
    uint64_t corr;
    const char *kind;
    size_t kind_len;
    const char *from;
    size_t from_len;
    const void *body;
    size_t body_len;
};

/* Bytes a record of the given lengths takes, header and padding included. */
uint64_t mbx__ring_record_size(size_t kind_len, size_t from_len,
                               size_t body_len);

/* Fills a fresh header and binds *r to the mapping `base` of
 * MBX__RING_HDR_SIZE + data_size bytes. The state is left 0 (not live). */
void mbx__ring_init(struct mbx__ring *r, void *base, uint64_t data_size,
                    const char *name, int pid, unsigned mode,
                    uint32_t max_body);

/* Binds *r to a mapping of `map_size` bytes made by another process, after
 * checking its header. Returns 0 or MBX_EBADMSG (not a ring of this
 * version, or a size that does not match). */
int mbx__ring_attach(struct mbx__ring *r, void *base, size_t map_size);

/* Asks whether the writer holding a lock token is gone. */
typedef bool (*mbx__holder_dead_fn)(void *ctx, uint64_t token);

/* What a writer's side answers for mbx__ring_put: whether a lock holder
 * is gone, whether the reader still lives, and how to get the reader's
 * attention (futex and doorbell) before waiting for room. */
struct mbx__ring_writer_ops {
    mbx__holder_dead_fn holder_dead;
    bool (*reader_alive)(void *ctx);
    void (*nudge_reader)(void *ctx);
};

/* The lock token of a writer lane. */
uint64_t mbx__ring_token(uint32_t lane, uint32_t nonce);

/* A lock word shared between processes whose holders are named by lane
 * tokens (the writers' lock; the dispatcher's receivers' lock). Spins,
 * then yields; a holder that stays put for a millisecond is asked about
 * with holder_dead, and if it died its lock is broken (counted in
 * *broken). The holder must not publish anything that a break would leave
 * half done. */
void mbx__ring_lock(_Atomic uint64_t *word, uint64_t token,
                    mbx__holder_dead_fn holder_dead, void *ctx,
                    _Atomic uint64_t *broken);
void mbx__ring_unlock(_Atomic uint64_t *word);

/* Appends one record under the writers' lock (token: the caller's lane).
 * Waits for room up to `deadline` (MBX__NEVER, 0 = not at all); before
 * waiting and every few milliseconds while waiting it asks whether the
 * reader still lives and nudges it (ops). Returns 0; MBX_EMSGSIZE; MBX_EAGAIN
 * (full, deadline 0); MBX_ETIMEDOUT; MBX_ENOENT (the reader is gone). */
int mbx__ring_put(struct mbx__ring *r, uint64_t token,
                  const struct mbx__rec_view *v, int64_t deadline,
                  const struct mbx__ring_writer_ops *ops, void *ctx);

/* Reader: starts a batch: reads tail once. The records published up to
 * then are the batch; later ones wait for the next refresh, so a reader
 * that keeps pace with a writer does not pull the tail's cache line away
 * from it after every record. Returns true when the batch is not empty. */
bool mbx__ring_refresh(struct mbx__ring *r);

/* Reader: finds the next message record of the batch without consuming
 * it, skipping padding and dropping (and counting) malformed records.
 * Returns true and fills *v, or false when the batch is done. */
bool mbx__ring_peek(struct mbx__ring *r, struct mbx__rec_view *v);

/* Reader: consumes the record last returned by mbx__ring_peek. Its room
 * goes back to writers at the next mbx__ring_commit. */
void mbx__ring_consume(struct mbx__ring *r);

/* Reader: publishes what was consumed since the last commit and wakes
 * writers waiting for room. */
void mbx__ring_commit(struct mbx__ring *r);

/* True when records may be waiting (tail is past the published head). Any
 * thread. */
bool mbx__ring_pending(const struct mbx__ring *r);

/* Records waiting and bytes in use (a snapshot). */
uint64_t mbx__ring_queued(const struct mbx__ring *r);
uint64_t mbx__ring_used_bytes(const struct mbx__ring *r);

/* True when a record of `size` bytes would not fit now. */
bool mbx__ring_full_for(const struct mbx__ring *r, uint64_t size);

/* Reader: asks for the doorbell on the next record (a new arming). */
void mbx__ring_arm(struct mbx__ring *r);

/* Writer, after publishing: returns the arming (odd) if the reader asked
 * for the doorbell, else 0. The writer rings it, then calls
 * mbx__ring_disarm with that value: a writer killed in between leaves the
 * arming for the next writer, so the doorbell is rung more than once
 * rather than never. */
uint32_t mbx__ring_armed(const struct mbx__ring *r);
void mbx__ring_disarm(struct mbx__ring *r, uint32_t arming);

/* Wakes writers parked for room, if any. */
void mbx__ring_wake_writers(struct mbx__ring *r);

/* Wakes the reader's parked threads, if any (called by writers after
 * publishing, and by threads of the reader's own process that queued a
 * message for it). */
void mbx__ring_wake_reader(struct mbx__ring *r);

#endif
