/*
 * Mailboxes: the slot table behind mbx_id and the queue inside each slot.
 *
 * A mailbox lives in a slot of a table that only grows, so a slot's memory
 * is never freed and an id can always be checked against the slot's
 * generation: live generations are odd, and destroy makes it even. Every
 * operation on a mailbox first "acquires" the slot (a user count on the
 * side of the caller: producer or consumer) and then checks the generation;
 * destroy waits for the user count to drain before freeing what the slot
 * holds, so no operation ever touches a recycled mailbox.
 *
 * The queue: producers push each message onto a lock-free stack (urgent or
 * normal) with one compare-and-swap. The receiver takes a whole stack with
 * one atomic exchange, reverses it and appends it to a private FIFO, so it
 * pays one atomic operation per batch, not per message. The private FIFOs
 * also hold what selective receive passes over, in order. Receivers
 * serialise on a small consumer lock, spin briefly while the queue is
 * empty, then park on a futex; producers make a system call only when a
 * receiver is parked.
 */
#ifndef MBX_CORE_MAILBOX_H
#define MBX_CORE_MAILBOX_H

#include <stdbool.h>

#include "core/msg.h"
#include "platform/lock.h"

struct mbx__feed;    /* feed.h */
struct mbx__name;    /* registry.c */
struct mbx__monitor; /* monitor.c */

/* A FIFO of messages owned by the consumer side. */
struct mbx__fifo {
    struct mbx__node *head, *tail;
};

/* One slot of the table: 256 bytes, four cache lines laid out by who
 * writes them, so that in the hot path each line moves between cores only
 * when a message does. */
struct mbx__box {
    /* Line 1: producers' counters, written on every send, read by the
     * consumer only for statistics and the capacity; and the monitors,
     * which callers link and unlink around every call. */
    _Alignas(64) _Atomic uint64_t enq; /* messages accepted */
    _Atomic uint64_t enq_bytes;        /* body bytes accepted */
    _Atomic uint64_t full;             /* sends refused: full */
    _Atomic uint64_t dropped;          /* discarded without delivery */
    _Atomic uint64_t room_limit;       /* bounded: enq may grow up to this */
    _Atomic uint32_t prod_users;       /* producers inside the slot */
    mbx__lock lock;                    /* guards monitors */
    struct mbx__name *names;           /* guarded by the registry lock */
    struct mbx__monitor *monitors;     /* who watches; guarded by lock */

    /* Line 2: written by the consumer on every receive. */
    _Alignas(64) struct mbx__fifo uinbox; /* urgent messages taken over */
    struct mbx__fifo inbox;               /* normal messages taken over */
    _Atomic uint64_t deq;                 /* messages delivered */
    _Atomic uint64_t deq_bytes;           /* body bytes delivered */
    mbx__lock cons_lock;                  /* receivers; destroy's drain */
    _Atomic uint32_t spin_ns;             /* adaptive spin budget */
    _Atomic uint32_t spin_misses;         /* spins in a row that failed */

    /* Line 3: read by producers on every send, written rarely. */
    _Alignas(64) _Atomic uint32_t gen; /* odd: live; even: dead */
    uint32_t when_full;                /* enum mbx_when_full */
    _Atomic uint64_t capacity;         /* 0: unbounded (relaxed loads) */
    _Atomic uint32_t seq;              /* futex: a message arrived */
    _Atomic uint32_t waiters;          /* receivers parked on seq */
    _Atomic uint32_t sel_waiters;      /* ... of which selective */
    _Atomic uint32_t space_seq;        /* futex: room appeared */
    _Atomic uint32_t space_waiters;    /* senders parked on space_seq */
    _Atomic uint32_t drain_seq;        /* futex: a user left */
    _Atomic int fd;                    /* eventfd, or -1 */
    _Atomic uint32_t fd_signalled;     /* eventfd made readable */
    _Atomic uint32_t is_task;          /* created by mbx_spawn */
    _Atomic int poll_fd;               /* epoll set given by mbx_fd, or -1 */
    _Atomic(struct mbx__feed *) feed;  /* outside source (host ring), or NULL */

    /* Line 4: the hand-over point: the stacks producers push onto, which
     * is what an idle receiver spins on. Nothing else written often may
     * live here: every write would pull the line from the spinner. */
    _Alignas(64) _Atomic(struct mbx__node *) top; /* normal stack */
    _Atomic(struct mbx__node *) utop;             /* urgent stack */
    _Atomic uint32_t inbox_gen;     /* bumped when a batch enters the inboxes */
    _Atomic uint64_t awaiting_corr; /* a caller waits for this reply */
};

_Static_assert(sizeof(struct mbx__box) == 256, "a mailbox slot is 256 bytes");

/* Checks `id` and pins its slot against destruction, as senders do.
 * Returns 0 and the slot, or MBX_ENOENT (and pins nothing). Pair with
 * mbx__box_release. Receivers do not pin: they hold the consumer lock,
 * which destroy takes before it frees what the slot holds. */
int mbx__box_acquire(mbx_id id, struct mbx__box **out);

/* Unpins a slot pinned by mbx__box_acquire. */
void mbx__box_release(struct mbx__box *b);

/* True while the mailbox `id` of this (pinned) slot has not been destroyed. */
bool mbx__box_live(const struct mbx__box *b, mbx_id id);

/* The slot of an id whether or not it is live, or NULL if the index was
 * never allocated. Only for fields that outlive a mailbox (the lock). */
struct mbx__box *mbx__box_slot(mbx_id id);

/* 1 if `id` was a valid mailbox id at some time (live or since destroyed),
 * 0 if it never was. */
int mbx__id_existed(mbx_id id);

/* Queues m on a pinned slot. `bypass` ignores the capacity (library
 * notices). Returns 0 (message taken) or an mbx_send error. */
int mbx__box_push(struct mbx__box *b, mbx_id id, mbx_msg *m, int64_t deadline,
                  bool bypass);

/* True if the mailbox is bounded (has a capacity). */
bool mbx__box_bounded(const struct mbx__box *b);

/* Queues n normal (not urgent) messages of `bytes` body bytes in all on a
 * pinned, unbounded slot at once: a chain linked through link.next from
 * the newest to the oldest (whose link is overwritten), as a stack holds
 * them. One atomic update of each counter and one compare-and-swap for
 * the whole chain. */
void mbx__box_push_chain(struct mbx__box *b, mbx_msg *newest, mbx_msg *oldest,
                         uint64_t n, uint64_t bytes);

/* Sends a library notice to `to`, ignoring the capacity; frees it if the
 * mailbox is gone. */
void mbx__send_notice(mbx_id to, mbx_msg *m);

/* Takes the next message from the mailbox `id` in slot b as mbx_recv does
 * (b from mbx__box_slot; no pin needed). */
int mbx__box_pop(struct mbx__box *b, mbx_id id, const char *kind, mbx_msg **out,
                 int64_t deadline);

/* Attaches a feed to a pinned, live mailbox. Returns 0, or MBX_ENOTSUP if
 * it already had one (a mailbox takes one feed in its life), or an error
 * from adding the feed's bell to the mailbox's poll set. On success the
 * mailbox owns the feed and closes it when destroyed. */
int mbx__box_attach_feed(struct mbx__box *b, struct mbx__feed *f);

/* Appends a message taken from the feed to the inboxes (urgent or normal)
 * and counts it as sent. For feeds' pump; consumer lock held. */
void mbx__box_inbox_append(struct mbx__box *b, mbx_msg *m);

#endif
