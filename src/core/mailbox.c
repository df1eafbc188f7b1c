/* Mailboxes: the slot table, the lock-free queues, waiting and waking. */
#include "core/fork.h"
#include "core/mailbox.h"

#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/feed.h"
#include "core/monitor.h"
#include "core/registry.h"

/* The table grows by chunks of 4096 slots (1 MiB) and never shrinks, so a
 * slot's address is stable for the life of the process. */
#define CHUNK_BITS 12
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define MAX_CHUNKS 16384 /* 64 Mi mailboxes */

/* Receivers spin at most this long before parking (about the cost of one
 * futex wake-up on the other core), and at least this long once they have
 * learned that spinning does not pay. */
#define SPIN_MAX_NS 20000
#define SPIN_MIN_NS 500
#define SPIN_YIELD_AFTER_NS 300 /* then yield now and then while spinning */
#define SPIN_MISSES_TO_SHRINK 4 /* misses in a row before spinning less */

/* A sender that finds more than DEEP_QUEUE messages waiting in an unbounded
 * mailbox yields its CPU once every YIELD_EVERY sends (see give_way). */
#define DEEP_QUEUE 4096
#define YIELD_EVERY 64

/* Messages a receiver moves from a feed into the inboxes at a time: enough
 * to pay for the look, few enough to leave the rest in the feed, whose
 * bound then holds its producers back. */
#define FEED_BATCH 64

/* A receiver spinning for a feed first pauses FEED_FIRST_POLL times without
 * looking at it, then looks once every FEED_POLL_EVERY pauses (see
 * spin_for_arrival). */
#define FEED_FIRST_POLL 48
#define FEED_POLL_EVERY 4

/* A receiver parked on a feed's word looks again this often even when not
 * woken (see park). */
#define FEED_RECHECK_NS 250000000

static _Atomic(struct mbx__box *) chunks[MAX_CHUNKS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t slots_used;  /* slots ever handed out; table_lock */
static uint32_t *free_slots; /* indices of recycled slots; table_lock */
static uint32_t free_count, free_cap;
static _Atomic uint32_t slots_published; /* readable without the lock */

/* ---- the slot table ---------------------------------------------------- */

static inline uint32_t
id_index(mbx_id id)
{
    return (uint32_t)id;
}

static inline uint32_t
id_gen(mbx_id id)
{
    return (uint32_t)(id >> 32);
}

/* The slot at an index handed out by slot_take. */
static struct mbx__box *
slot_at(uint32_t idx)
{
    return &atomic_load_explicit(&chunks[idx >> CHUNK_BITS],
                                 memory_order_acquire)[idx & (CHUNK_SLOTS - 1)];
}

struct mbx__box *
mbx__box_slot(mbx_id id)
{
    uint32_t idx = id_index(id);
    if (idx >= atomic_load_explicit(&slots_published, memory_order_acquire))
        return NULL;
    struct mbx__box *chunk =
        atomic_load_explicit(&chunks[idx >> CHUNK_BITS], memory_order_acquire);
    return chunk ? &chunk[idx & (CHUNK_SLOTS - 1)] : NULL;
}

int
mbx__id_existed(mbx_id id)
{
    struct mbx__box *b = mbx__box_slot(id);
    uint32_t g = id_gen(id);
    return b && (g & 1) && g <= atomic_load(&b->gen);
}

/* Hands out a free slot index, growing the table when needed. Returns 0 or
 * MBX_ENOMEM. */
static int
slot_take(uint32_t *out)
{
    int rc = 0;
    pthread_mutex_lock(&table_lock);
    if (free_count) {
        *out = free_slots[--free_count];
    } else if (slots_used == MAX_CHUNKS * CHUNK_SLOTS) {
        rc = MBX_ENOMEM;
    } else {
        uint32_t idx = slots_used;
        if (!atomic_load(&chunks[idx >> CHUNK_BITS])) {
            /* Fresh anonymous pages: zeroed, page-aligned, and only the
             * pages of slots actually used ever become resident. */
            size_t size = CHUNK_SLOTS * sizeof(struct mbx__box);
            struct mbx__box *c = mmap(NULL, size, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (c == MAP_FAILED) {
                rc = MBX_ENOMEM;
                goto out;
            }
            atomic_store_explicit(&chunks[idx >> CHUNK_BITS], c,
                                  memory_order_release);
        }
        slots_used++;
        atomic_store_explicit(&slots_published, slots_used,
                              memory_order_release);
        *out = idx;
    }
out:
    pthread_mutex_unlock(&table_lock);
    return rc;
}

/* Returns a slot to the free list (or keeps it out for good once its
 * generation has wrapped, so old ids can never match again). */
static void
slot_give_back(uint32_t idx, uint32_t gen)
{
    if (gen == 0)
        return;
    pthread_mutex_lock(&table_lock);
    if (free_count == free_cap) {
        uint32_t cap = free_cap ? free_cap * 2 : 1024;
        uint32_t *n = realloc(free_slots, cap * sizeof *n);
        if (!n) {
            /* Leaking one slot is better than failing a destroy. */
            pthread_mutex_unlock(&table_lock);
            return;
        }
        free_slots = n;
        free_cap = cap;
    }
    free_slots[free_count++] = idx;
    pthread_mutex_unlock(&table_lock);
}

int
mbx__box_acquire(mbx_id id, struct mbx__box **out)
{
    uint32_t gen = id_gen(id);
    struct mbx__box *b = (gen & 1) ? mbx__box_slot(id) : NULL;
    if (!b)
        return MBX_ENOENT;
    /* Count ourselves in before checking the generation: destroy changes
     * the generation before it waits for the count to reach zero, so
     * either we see the new generation or destroy sees us. */
    atomic_fetch_add(&b->prod_users, 1);
    if (atomic_load(&b->gen) != gen) {
        mbx__box_release(b);
        return MBX_ENOENT;
    }
    *out = b;
    return 0;
}

void
mbx__box_release(struct mbx__box *b)
{
    atomic_fetch_sub(&b->prod_users, 1);
    if (!(atomic_load(&b->gen) & 1)) {
        /* A destroy may be waiting for us to leave. */
        atomic_fetch_add(&b->drain_seq, 1);
        mbx__futex_wake(&b->drain_seq, INT_MAX);
    }
}

bool
mbx__box_live(const struct mbx__box *b, mbx_id id)
{
    return atomic_load(&b->gen) == id_gen(id);
}

/* ---- the intrusive queues ---------------------------------------------- */

/* Pushes a node onto a lock-free stack. The compare-and-swap publishes the
 * node fully linked, so a receiver never sees half a push. */
static void
stack_push(_Atomic(struct mbx__node *) *top, struct mbx__node *n)
{
    struct mbx__node *old = atomic_load_explicit(top, memory_order_relaxed);
    do {
        atomic_store_explicit(&n->next, old, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak(top, &old, n));
}

/* Appends a list taken off a stack (newest first) to f in push order.
 * Consumer lock held. */
static void
fifo_append_reversed(struct mbx__fifo *f, struct mbx__node *n)
{
    struct mbx__node *first = NULL, *last = n;
    /* The stack is newest first: reverse it. */
    while (n) {
        struct mbx__node *next =
            atomic_load_explicit(&n->next, memory_order_relaxed);
        atomic_store_explicit(&n->next, first, memory_order_relaxed);
        first = n;
        n = next;
    }
    if (f->tail)
        atomic_store_explicit(&f->tail->next, first, memory_order_relaxed);
    else
        f->head = first;
    f->tail = last;
}

/* Unlinks and returns the first message of `kind` (any kind if NULL). */
static mbx_msg *
fifo_take(struct mbx__fifo *f, const char *kind)
{
    struct mbx__node *prev = NULL;
    for (struct mbx__node *n = f->head; n;
         prev = n, n = atomic_load_explicit(&n->next, memory_order_relaxed)) {
        if (kind && strcmp(mbx__msg_of(n)->kind, kind) != 0)
            continue;
        struct mbx__node *next =
            atomic_load_explicit(&n->next, memory_order_relaxed);
        if (prev)
            atomic_store_explicit(&prev->next, next, memory_order_relaxed);
        else
            f->head = next;
        if (f->tail == n)
            f->tail = prev;
        return mbx__msg_of(n);
    }
    return NULL;
}

/* ---- producer side ------------------------------------------------------ */

/* The capacity (0: unbounded). An atomic field, because a receiver reads it
 * without a pin, possibly as the slot is being reused. */
static inline uint64_t
capacity_of(struct mbx__box *b)
{
    return atomic_load_explicit(&b->capacity, memory_order_relaxed);
}

/* Wakes a parked receiver, if there is one. The caller has the slot pinned
 * or holds the consumer lock, so an attached feed is alive. */
static void
wake_parked(struct mbx__box *b)
{
    if (atomic_load(&b->waiters)) {
        struct mbx__feed *f = atomic_load(&b->feed);
        if (f) {
            /* Receivers of a mailbox with a feed park on the feed's word. */
            f->ops->wake(f);
            return;
        }
        atomic_fetch_add(&b->seq, 1);
        /* A parked selective receiver may not want this message, so when
         * there is one, every receiver gets a look. */
        mbx__futex_wake(&b->seq, atomic_load(&b->sel_waiters) ? INT_MAX : 1);
    }
}

/* Wakes a parked receiver and readies the eventfd, if there are any. */
static void
wake_receivers(struct mbx__box *b)
{
    wake_parked(b);
    int fd = atomic_load(&b->fd);
    if (fd >= 0 && !atomic_load(&b->fd_signalled) &&
        !atomic_exchange(&b->fd_signalled, 1))
        mbx__eventfd_signal(fd);
}

/* Outcome of reserve_room besides 0 and errors: the message was dropped. */
#define DROPPED 1

static bool
has_room(struct mbx__box *b)
{
    return atomic_load(&b->enq) - atomic_load(&b->deq) < capacity_of(b);
}

/* Refreshes the senders' view of how far `enq` may grow from the
 * receiver's delivery count. The view only ever lags (deliveries only add
 * room), so a stale one costs a refresh, never an overfull mailbox.
 * Returns the new limit. */
static uint64_t
refresh_room_limit(struct mbx__box *b)
{
    uint64_t limit = atomic_load(&b->deq) + capacity_of(b);
    atomic_store_explicit(&b->room_limit, limit, memory_order_relaxed);
    return limit;
}

/* Reserves one place in a bounded mailbox, applying its full policy. The
 * common case touches only the senders' own cache line. */
static int
reserve_room(struct mbx__box *b, mbx_id id, int64_t deadline)
{
    for (;;) {
        uint64_t e = atomic_load(&b->enq);
        uint64_t limit =
            atomic_load_explicit(&b->room_limit, memory_order_relaxed);
        if (e >= limit)
            limit = refresh_room_limit(b);
        if (e < limit) {
            if (atomic_compare_exchange_weak(&b->enq, &e, e + 1))
                return 0;
            continue;
        }
        if (b->when_full == MBX_FULL_DROP) {
            atomic_fetch_add_explicit(&b->dropped, 1, memory_order_relaxed);
            return DROPPED;
        }
        if (b->when_full == MBX_FULL_FAIL || deadline == 0) {
            atomic_fetch_add_explicit(&b->full, 1, memory_order_relaxed);
            return MBX_EAGAIN;
        }
        uint32_t s = atomic_load(&b->space_seq);
        atomic_fetch_add(&b->space_waiters, 1);
        int rc = 0;
        if (!has_room(b) && mbx__box_live(b, id))
            rc = mbx__futex_wait(&b->space_seq, s, deadline);
        atomic_fetch_sub(&b->space_waiters, 1);
        if (!mbx__box_live(b, id))
            return MBX_ECLOSED;
        if (rc == MBX_ETIMEDOUT) {
            atomic_fetch_add_explicit(&b->full, 1, memory_order_relaxed);
            return MBX_ETIMEDOUT;
        }
    }
}

/* Fairness for unbounded mailboxes: when senders outnumber the CPUs, a
 * receiver that falls behind would otherwise get ever less CPU time while
 * its queue grows. A sender that sees a deep queue gives up its time slice
 * now and then; it never blocks and never fails. The queue depth is read
 * only every YIELD_EVERY sends, to keep the receiver's line out of the
 * sender's way. */
static void
give_way(struct mbx__box *b)
{
    static
        __attribute__((tls_model("initial-exec"))) _Thread_local uint32_t sends;
    if ((++sends % YIELD_EVERY) != 0)
        return;
    uint64_t queued = atomic_load_explicit(&b->enq, memory_order_relaxed) -
                      atomic_load_explicit(&b->deq, memory_order_relaxed);
    if (queued > DEEP_QUEUE)
        sched_yield();
}

bool
mbx__box_bounded(const struct mbx__box *b)
{
    return capacity_of((struct mbx__box *)b) != 0;
}

void
mbx__box_push_chain(struct mbx__box *b, mbx_msg *newest, mbx_msg *oldest,
                    uint64_t n, uint64_t bytes)
{
    atomic_fetch_add(&b->enq, n);
    atomic_fetch_add_explicit(&b->enq_bytes, bytes, memory_order_relaxed);
    struct mbx__node *old = atomic_load_explicit(&b->top, memory_order_relaxed);
    do {
        atomic_store_explicit(&oldest->link.next, old, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak(&b->top, &old, &newest->link));
    wake_receivers(b);
}

int
mbx__box_push(struct mbx__box *b, mbx_id id, mbx_msg *m, int64_t deadline,
              bool bypass)
{
    if (capacity_of(b) && !bypass) {
        int rc = reserve_room(b, id, deadline);
        if (rc == DROPPED) {
            mbx_msg_free(m);
            return 0;
        }
        if (rc < 0)
            return rc;
    } else {
        atomic_fetch_add(&b->enq, 1);
    }
    atomic_fetch_add_explicit(&b->enq_bytes, m->len, memory_order_relaxed);
    stack_push((m->flags & MBX_MSG_URGENT) ? &b->utop : &b->top, &m->link);
    wake_receivers(b);
    if (!capacity_of(b))
        give_way(b);
    return 0;
}

int
mbx_send(mbx_id to, mbx_msg **m, int timeout_ms)
{
    if (!m || !*m)
        return MBX_EINVAL;
    struct mbx__box *b;
    int rc = mbx__box_acquire(to, &b);
    if (rc < 0)
        return rc;
    rc = mbx__box_push(b, to, *m, mbx__deadline(timeout_ms), false);
    mbx__box_release(b);
    if (rc == 0)
        *m = NULL;
    return rc;
}

void
mbx__send_notice(mbx_id to, mbx_msg *m)
{
    struct mbx__box *b;
    if (!m)
        return;
    if (mbx__box_acquire(to, &b) < 0) {
        mbx_msg_free(m);
        return;
    }
    mbx__box_push(b, to, m, 0, true);
    mbx__box_release(b);
}

/* ---- consumer side ------------------------------------------------------ */

/* Records that messages entered the inboxes. Other receivers waiting for
 * something new watch this as well as the stacks: a message moved into the
 * inboxes by one receiver and left there is still new to them. Consumer
 * lock held. */
static void
note_batch(struct mbx__box *b)
{
    atomic_store(&b->inbox_gen,
                 atomic_load_explicit(&b->inbox_gen, memory_order_relaxed) + 1);
}

/* Moves a whole stack into the inbox f. inbox_gen is bumped *before* the
 * stack is emptied: a receiver about to park that still finds the stack
 * empty after that must also find the bump, or it could sleep beside the
 * messages moved here and left by a selective receive. Consumer lock
 * held. */
static bool
take_over(struct mbx__box *b, struct mbx__fifo *f,
          _Atomic(struct mbx__node *) *top)
{
    if (!atomic_load_explicit(top, memory_order_relaxed))
        return false;
    note_batch(b);
    struct mbx__node *n = atomic_exchange(top, NULL);
    if (!n)
        return false; /* another receiver was first */
    fifo_append_reversed(f, n);
    return true;
}

void
mbx__box_inbox_append(struct mbx__box *b, mbx_msg *m)
{
    struct mbx__fifo *f = (m->flags & MBX_MSG_URGENT) ? &b->uinbox : &b->inbox;
    atomic_store_explicit(&m->link.next, NULL, memory_order_relaxed);
    if (f->tail)
        atomic_store_explicit(&f->tail->next, &m->link, memory_order_relaxed);
    else
        f->head = &m->link;
    f->tail = &m->link;
    atomic_fetch_add_explicit(&b->enq, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&b->enq_bytes, m->len, memory_order_relaxed);
}

/* Moves up to `max` messages from the feed f into the inboxes. As in
 * take_over, inbox_gen is bumped before the feed is emptied. Returns
 * whether any came. Consumer lock held. */
static bool
pump_feed(struct mbx__box *b, struct mbx__feed *f, size_t max)
{
    if (!f || !f->ops->pending(f))
        return false;
    note_batch(b);
    return f->ops->pump(f, b, max) > 0;
}

/* The first message of `kind` (any if NULL) in the inboxes, urgent first. */
static mbx_msg *
inbox_take(struct mbx__box *b, const char *kind)
{
    mbx_msg *m = fifo_take(&b->uinbox, kind);
    return m ? m : fifo_take(&b->inbox, kind);
}

/* Takes the next message in delivery order (urgent ones first, each kind
 * in send order), or the first of `kind` in that order; the messages it
 * passes over stay in the inboxes, in order. Consumer lock held. */
static mbx_msg *
take(struct mbx__box *b, const char *kind)
{
    struct mbx__feed *f = atomic_load(&b->feed);
    mbx_msg *m;
    if ((m = fifo_take(&b->uinbox, kind)))
        return m;
    if (take_over(b, &b->uinbox, &b->utop) && (m = fifo_take(&b->uinbox, kind)))
        return m;
    /* An urgent message from another process goes ahead of everything
     * queued too: bring the feed's whole backlog in to reach it. */
    if (f && f->ops->urgent_pending(f) && pump_feed(b, f, SIZE_MAX) &&
        (m = fifo_take(&b->uinbox, kind)))
        return m;
    if ((m = fifo_take(&b->inbox, kind)))
        return m;
    /* Refill from the stack and the feed together, so that neither kind
     * of sender starves the other. */
    bool got = take_over(b, &b->inbox, &b->top);
    got |= pump_feed(b, f, FEED_BATCH);
    if (got && (m = inbox_take(b, kind)))
        return m;
    /* A selective receive goes on through the feed until it finds one. */
    while (pump_feed(b, f, FEED_BATCH))
        if ((m = inbox_take(b, kind)))
            return m;
    return NULL;
}

/* True when neither stack holds a message. A producer's compare-and-swap
 * of a stack's top is the moment its message counts as queued. */
static bool
stacks_empty(struct mbx__box *b)
{
    return !atomic_load(&b->top) && !atomic_load(&b->utop);
}

/* True when the feed f (NULL: none) may hold messages. The caller keeps f
 * alive (consumer lock or pin). */
static bool
feed_pending(struct mbx__feed *f)
{
    return f && f->ops->pending(f);
}

/* True when no message is pending at all. Consumer lock held. */
static bool
nothing_pending(struct mbx__box *b)
{
    return stacks_empty(b) && !b->uinbox.head && !b->inbox.head &&
           !feed_pending(atomic_load(&b->feed));
}

/* Keeps the eventfd level-triggered: unreadable once nothing is pending,
 * re-armed if a message slipped in meanwhile. The eventfd is emptied before
 * the flag is cleared: a producer that sees the flag clear signals after
 * the drain, so its signal is never swallowed. Consumer lock held. */
static void
settle_fd(struct mbx__box *b)
{
    int fd = atomic_load(&b->fd);
    if (fd < 0 || !nothing_pending(b))
        return;
    mbx__eventfd_drain(fd);
    atomic_store(&b->fd_signalled, 0);
    /* The feed's producers ring its bell only when armed, which must
     * happen before the last look as well. */
    struct mbx__feed *f = atomic_load(&b->feed);
    if (f)
        f->ops->arm(f);
    if (!nothing_pending(b) && !atomic_exchange(&b->fd_signalled, 1))
        mbx__eventfd_signal(fd);
}

/* Wakes the senders waiting for room in a bounded mailbox. */
static void
wake_senders(struct mbx__box *b)
{
    atomic_fetch_add(&b->space_seq, 1);
    mbx__futex_wake(&b->space_seq, INT_MAX);
}

/* Counts a delivered message. In a bounded mailbox, senders waiting for
 * room are woken once a quarter of it is free, not for every message: a
 * wake-up costs more than a message. (A receiver about to park wakes them
 * whatever the room, so nobody waits on a receiver that waits too.) */
static void
account_delivery(struct mbx__box *b, const mbx_msg *m)
{
    uint64_t deq = atomic_load_explicit(&b->deq, memory_order_relaxed) + 1;
    uint64_t bytes = atomic_load_explicit(&b->deq_bytes, memory_order_relaxed);
    atomic_store_explicit(&b->deq_bytes, bytes + m->len, memory_order_release);
    if (!capacity_of(b)) {
        atomic_store_explicit(&b->deq, deq, memory_order_release);
        return;
    }
    /* Senders decide on `deq` and then park: they need the full barrier. */
    atomic_store(&b->deq, deq);
    if (!atomic_load(&b->space_waiters))
        return;
    uint64_t room = capacity_of(b) - (atomic_load(&b->enq) - deq);
    if (room >= capacity_of(b) / 4 || room >= 1024)
        wake_senders(b);
}

/* True when a message was pushed, or moved into the inboxes, since the
 * receiver last looked (when inbox_gen was `seen`), or the feed f (kept
 * alive by the caller; NULL: none) holds some. */
static bool
something_new(struct mbx__box *b, struct mbx__feed *f, uint32_t seen)
{
    return !stacks_empty(b) || atomic_load(&b->inbox_gen) != seen ||
           feed_pending(f);
}

/* Spins until a message may have arrived, the mailbox dies or the spin
 * budget runs out; returns true in the first two cases. After the first
 * few hundred nanoseconds it yields the CPU every few rounds, so a sender
 * sharing this CPU gets to run. The budget resets to the maximum whenever
 * spinning pays, and halves only after several misses in a row, so a
 * steady exchange keeps spinning while an idle mailbox soon stops. */
static bool
spin_for_arrival(struct mbx__box *b, mbx_id id, struct mbx__feed *f,
                 uint32_t seen)
{
    uint32_t budget = atomic_load_explicit(&b->spin_ns, memory_order_relaxed);
    if (!budget)
        return false;
    int64_t start = mbx__now_ns(), spun = 0;
    for (unsigned i = 1;; i++) {
        /* A feed's producer in another process writes the line we look at
         * on every message. A receiver that has just caught up and looks
         * again at once pulls that line away from the producer for each
         * message, which slows the producer more than anything: so it
         * lets a few hundred nanoseconds pass first (a reply cannot come
         * back sooner than that anyway), and then looks often. */
        struct mbx__feed *poll_f =
            i >= FEED_FIRST_POLL && i % FEED_POLL_EVERY == 0 ? f : NULL;
        if (something_new(b, poll_f, seen) ||
            (i % 16 == 0 && !mbx__box_live(b, id))) {
            atomic_store_explicit(&b->spin_ns, SPIN_MAX_NS,
                                  memory_order_relaxed);
            atomic_store_explicit(&b->spin_misses, 0, memory_order_relaxed);
            return true;
        }
        if (i % 16 != 0) {
            mbx__cpu_relax();
            continue;
        }
        spun = mbx__now_ns() - start;
        if (spun > budget)
            break;
        if (spun > SPIN_YIELD_AFTER_NS)
            sched_yield();
    }
    uint32_t misses =
        atomic_load_explicit(&b->spin_misses, memory_order_relaxed) + 1;
    atomic_store_explicit(&b->spin_misses, misses, memory_order_relaxed);
    if (misses >= SPIN_MISSES_TO_SHRINK && budget / 2 >= SPIN_MIN_NS)
        atomic_store_explicit(&b->spin_ns, budget / 2, memory_order_relaxed);
    return false;
}

/* Parks until a message may have arrived since the stacks were found
 * empty, the feed changed or the mailbox is destroyed. With a feed f,
 * receivers sleep on its word (which its producers in other processes can
 * wake) and count themselves in its waiters too. */
static int
park(struct mbx__box *b, mbx_id id, struct mbx__feed *f, bool selective,
     uint32_t seen, int64_t deadline)
{
    _Atomic uint32_t *word = f ? f->seq : &b->seq;
    uint32_t s = atomic_load(word);
    if (selective)
        atomic_fetch_add(&b->sel_waiters, 1);
    atomic_fetch_add(&b->waiters, 1);
    if (f)
        atomic_fetch_add(f->waiters, 1);
    /* A producer pushes (and a receiver leaving messages in the inboxes
     * bumps inbox_gen, and a feed's producer publishes) before it reads the
     * waiter count, and we count ourselves in before looking, so either it
     * sees us parked and wakes us, or we see its message here. A feed
     * attached meanwhile wakes those parked on the old word. */
    int rc = 0;
    if (!something_new(b, f, seen) && atomic_load(&b->feed) == f &&
        mbx__box_live(b, id)) {
        if (!f) {
            rc = mbx__futex_wait(word, s, deadline);
        } else {
            /* A feed's producer killed between publishing and waking us
             * would leave its message unseen: look again now and then. */
            int64_t until = mbx__now_ns() + FEED_RECHECK_NS;
            rc = mbx__futex_wait_shared(word, s,
                                        deadline < until ? deadline : until);
            if (rc == MBX_ETIMEDOUT && until < deadline)
                rc = 0;
        }
    }
    if (f)
        atomic_fetch_sub(f->waiters, 1);
    atomic_fetch_sub(&b->waiters, 1);
    if (selective)
        atomic_fetch_sub(&b->sel_waiters, 1);
    return rc;
}

/* Spins a while, then parks, until a message may have arrived. Returns 0
 * (look again) or MBX_ETIMEDOUT. */
static int
await_arrival(struct mbx__box *b, mbx_id id, bool selective, uint32_t seen,
              int64_t deadline)
{
    /* A feed is freed by destroy once no pin is left: pin while using it. */
    struct mbx__box *pinned = NULL;
    struct mbx__feed *f = NULL;
    if (atomic_load(&b->feed)) {
        if (mbx__box_acquire(id, &pinned) < 0)
            return 0; /* destroyed: the caller finds out */
        f = atomic_load(&b->feed);
    }
    int rc = 0;
    if (!spin_for_arrival(b, id, f, seen)) {
        /* Senders held back for room must not wait on a receiver that
         * waits. */
        if (capacity_of(b) && atomic_load(&b->space_waiters))
            wake_senders(b);
        rc = park(b, id, f, selective, seen, deadline);
    }
    if (pinned)
        mbx__box_release(pinned);
    return rc;
}

int
mbx__box_pop(struct mbx__box *b, mbx_id id, const char *kind, mbx_msg **out,
             int64_t deadline)
{
    for (bool first = true, last_look = false;; first = false) {
        /* Holding the consumer lock with the generation checked is what
         * keeps destroy from freeing the queue under us. */
        mbx__lock_take(&b->cons_lock);
        if (!mbx__box_live(b, id)) {
            mbx__lock_drop(&b->cons_lock);
            return first ? MBX_ENOENT : MBX_ECLOSED;
        }
        mbx_msg *m = take(b, kind);
        if (m)
            account_delivery(b, m);
        settle_fd(b);
        /* Wakes are made under the lock, which keeps a feed alive (a pin
         * would do too): destroy may free it as soon as we let go. */
        if (m && (b->uinbox.head || b->inbox.head)) {
            /* Pass the baton: what this receiver took over and left behind
             * may be all another, parked receiver is waiting for. */
            wake_parked(b);
        } else if (!m && last_look) {
            /* The wake that ended our wait may have been meant for a
             * message of another kind; we leave without it, so pass it
             * on. */
            wake_parked(b);
        }
        uint32_t seen = atomic_load(&b->inbox_gen);
        mbx__lock_drop(&b->cons_lock);
        if (m) {
            *out = m;
            return 0;
        }
        if (last_look)
            return MBX_ETIMEDOUT;
        if (deadline == 0)
            return MBX_EAGAIN;
        int rc = await_arrival(b, id, kind != NULL, seen, deadline);
        if (!mbx__box_live(b, id))
            return MBX_ECLOSED;
        /* At the deadline (messages of other kinds may keep waking a
         * selective receiver: the deadline holds all the same), one last
         * look: a message may have come just as time ran out. */
        if (rc == MBX_ETIMEDOUT ||
            (deadline != MBX__NEVER && mbx__now_ns() >= deadline))
            last_look = true;
    }
}

static int
recv_common(mbx_id self, const char *kind, mbx_msg **out, int timeout_ms)
{
    if (!out)
        return MBX_EINVAL;
    struct mbx__box *b = (id_gen(self) & 1) ? mbx__box_slot(self) : NULL;
    if (!b)
        return MBX_ENOENT;
    return mbx__box_pop(b, self, kind, out, mbx__deadline(timeout_ms));
}

int
mbx_recv(mbx_id self, mbx_msg **out, int timeout_ms)
{
    return recv_common(self, NULL, out, timeout_ms);
}

int
mbx_recv_kind(mbx_id self, const char *kind, mbx_msg **out, int timeout_ms)
{
    if (!kind)
        return MBX_EINVAL;
    return recv_common(self, kind, out, timeout_ms);
}

/* ---- life cycle ---------------------------------------------------------- */

/* The spin budget a new mailbox starts with: none on a single CPU, where
 * spinning would only keep the sender from running. */
static uint32_t
initial_spin_ns(void)
{
    static _Atomic int cpus; /* 0 until first asked */
    int n = atomic_load_explicit(&cpus, memory_order_relaxed);
    if (!n) {
        n = mbx__cpu_count();
        atomic_store_explicit(&cpus, n, memory_order_relaxed);
    }
    return n > 1 ? SPIN_MAX_NS : 0;
}

int
mbx_create(mbx_id *out, const mbx_opts *opts)
{
    if (!out)
        return MBX_EINVAL;
    mbx_opts o = opts ? *opts : (mbx_opts){0};
    if (o.when_full < MBX_FULL_BLOCK || o.when_full > MBX_FULL_DROP)
        return MBX_EINVAL;
    mbx__fork_safety();
    uint32_t idx;
    int rc = slot_take(&idx);
    if (rc < 0)
        return rc;
    struct mbx__box *b = slot_at(idx);
    atomic_store(&b->top, NULL);
    atomic_store(&b->utop, NULL);
    b->uinbox = b->inbox = (struct mbx__fifo){NULL, NULL};
    atomic_store(&b->enq, 0);
    atomic_store(&b->enq_bytes, 0);
    atomic_store(&b->deq, 0);
    atomic_store(&b->deq_bytes, 0);
    atomic_store(&b->dropped, 0);
    atomic_store(&b->full, 0);
    atomic_store(&b->spin_ns, initial_spin_ns());
    atomic_store(&b->spin_misses, 0);
    atomic_store_explicit(&b->capacity, o.capacity, memory_order_relaxed);
    atomic_store_explicit(&b->room_limit, o.capacity, memory_order_relaxed);
    b->when_full = (uint32_t)o.when_full;
    atomic_store(&b->fd, -1);
    atomic_store(&b->poll_fd, -1);
    atomic_store(&b->fd_signalled, 0);
    atomic_store(&b->is_task, 0);
    atomic_store(&b->feed, NULL);
    atomic_store(&b->awaiting_corr, 0);
    /* monitors and names are empty: destroy emptied them (or the memory is
     * fresh); they are not written here, as a stale demonitor may read the
     * list under the slot lock at this very moment. */
    /* Publishing the odd generation makes the mailbox live. */
    uint32_t gen = atomic_load(&b->gen) + 1;
    atomic_store(&b->gen, gen);
    *out = ((mbx_id)gen << 32) | idx;
    return 0;
}

/* Waits until no sender is inside the slot any more. */
static void
wait_for_senders(struct mbx__box *b)
{
    for (;;) {
        uint32_t s = atomic_load(&b->drain_seq);
        if (!atomic_load(&b->prod_users))
            return;
        mbx__futex_wait(&b->drain_seq, s, MBX__NEVER);
    }
}

/* Frees every message still queued. No sender is left and the consumer
 * lock is held. */
static void
discard_queued(struct mbx__box *b)
{
    mbx_msg *m;
    while ((m = take(b, NULL)))
        mbx_msg_free(m);
}

int
mbx_destroy(mbx_id id)
{
    uint32_t gen = id_gen(id);
    struct mbx__box *b = (gen & 1) ? mbx__box_slot(id) : NULL;
    if (!b || !atomic_compare_exchange_strong(&b->gen, &gen, gen + 1))
        return MBX_ENOENT;
    /* Writers in other processes (or this one, once the registry forgets
     * the name) must find the host name gone before the feed is freed. */
    struct mbx__feed *f = atomic_load(&b->feed);
    if (f)
        f->ops->release(f);
    /* From here every new operation fails. Whoever is parked counted
     * itself in before checking the generation, so reading the counts
     * after changing it finds every thread that needs waking. */
    if (atomic_load(&b->waiters)) {
        /* Parked on the feed's word or, if they looked before it came, on
         * the mailbox's own: wake both. The feed is alive: we free it. */
        if (f)
            f->ops->wake(f);
        atomic_fetch_add(&b->seq, 1);
        mbx__futex_wake(&b->seq, INT_MAX);
    }
    if (atomic_load(&b->space_waiters))
        wake_senders(b);
    wait_for_senders(b);
    mbx__registry_forget(b);

    /* Receivers check the generation under the consumer lock: once we hold
     * it, none is inside the queue. */
    mbx__lock_take(&b->cons_lock);
    f = atomic_exchange(&b->feed, NULL);
    discard_queued(b);
    mbx__fd_close(atomic_exchange(&b->poll_fd, -1));
    mbx__fd_close(atomic_exchange(&b->fd, -1));
    mbx__lock_drop(&b->cons_lock);
    if (f)
        f->ops->close(f);
    mbx__monitors_fire(b, id);
    slot_give_back(id_index(id), gen + 1);
    return 0;
}

/* ---- fd and stats -------------------------------------------------------- */

/* Makes the mailbox's eventfd and the poll set handed out by mbx_fd, with
 * the feed's bell in it if there is a feed. Consumer lock held. Returns the
 * poll set's fd or an error. */
static int
make_poll_set(struct mbx__box *b)
{
    int efd = mbx__eventfd_open();
    if (efd < 0)
        return efd;
    int pfd = mbx__poll_set_open();
    int rc = pfd < 0 ? pfd : mbx__poll_set_add(pfd, efd);
    struct mbx__feed *f = atomic_load(&b->feed);
    int bell = rc < 0 || !f ? 0 : f->ops->bell(f);
    if (rc == 0 && bell > 0)
        rc = mbx__poll_set_add(pfd, bell);
    if (rc < 0 || bell < 0) {
        mbx__fd_close(pfd);
        mbx__fd_close(efd);
        return rc < 0 ? rc : bell;
    }
    if (f)
        f->ops->arm(f);
    atomic_store(&b->fd, efd);
    atomic_store(&b->poll_fd, pfd);
    /* Producers that pushed before they could see the fd did not signal
     * it: do it for them. */
    if (!nothing_pending(b) && !atomic_exchange(&b->fd_signalled, 1))
        mbx__eventfd_signal(efd);
    return pfd;
}

int
mbx_fd(mbx_id id)
{
    struct mbx__box *b = (id_gen(id) & 1) ? mbx__box_slot(id) : NULL;
    if (!b)
        return MBX_ENOENT;
    mbx__lock_take(&b->cons_lock);
    int fd = MBX_ENOENT;
    if (mbx__box_live(b, id)) {
        fd = atomic_load(&b->poll_fd);
        if (fd < 0)
            fd = make_poll_set(b);
    }
    mbx__lock_drop(&b->cons_lock);
    return fd;
}

int
mbx__box_attach_feed(struct mbx__box *b, struct mbx__feed *f)
{
    mbx__lock_take(&b->cons_lock);
    int rc = 0, pfd = atomic_load(&b->poll_fd);
    if (atomic_load(&b->feed)) {
        rc = MBX_ENOTSUP;
    } else if (pfd >= 0) {
        /* Someone already polls: add the bell to the set they hold. */
        int bell = f->ops->bell(f);
        rc = bell < 0 ? bell : mbx__poll_set_add(pfd, bell);
        if (rc == 0)
            f->ops->arm(f);
    }
    if (rc == 0) {
        /* The feed's producers are other processes, which may run on other
         * CPUs even when this one is pinned to a single CPU: spinning pays
         * off whenever the machine has more than one. */
        if (mbx__cpu_count_online() > 1)
            atomic_store_explicit(&b->spin_ns, SPIN_MAX_NS,
                                  memory_order_relaxed);
        atomic_store(&b->feed, f);
        /* Receivers parked on the mailbox's own word before the feed came
         * would not hear the feed's producers: send them round again. */
        if (atomic_load(&b->waiters)) {
            atomic_fetch_add(&b->seq, 1);
            mbx__futex_wake(&b->seq, INT_MAX);
        }
        /* Messages already in the feed make the fd readable now. */
        int efd = atomic_load(&b->fd);
        if (efd >= 0 && f->ops->pending(f) &&
            !atomic_exchange(&b->fd_signalled, 1))
            mbx__eventfd_signal(efd);
    }
    mbx__lock_drop(&b->cons_lock);
    return rc;
}

int
mbx_stat(mbx_id id, mbx_stats *out)
{
    if (!out)
        return MBX_EINVAL;
    struct mbx__box *b;
    int rc = mbx__box_acquire(id, &b);
    if (rc < 0)
        return rc;
    memset(out, 0, sizeof *out);
    uint64_t deq = atomic_load(&b->deq);
    uint64_t deq_bytes = atomic_load(&b->deq_bytes);
    out->sent = atomic_load(&b->enq);
    out->received = deq;
    out->queued = out->sent - deq;
    out->queued_bytes = atomic_load(&b->enq_bytes) - deq_bytes;
    out->dropped = atomic_load(&b->dropped);
    out->full = atomic_load(&b->full);
    out->capacity = capacity_of(b);
    mbx__box_release(b);
    return 0;
}

void
mbx__table_lock_all(void)
{
    pthread_mutex_lock(&table_lock);
}

/* In a child after fork: an eventfd made by mbx_fd is shared with the
 * parent, and a receive here would drain the parent's readiness. Close the
 * child's copies; mbx_fd makes a fresh one on demand. (Feeds, the parent's
 * host mailslots, are taken off the child's mailboxes by the host layer's
 * own fork handler.) */
static void
forget_inherited_fds(void)
{
    for (uint32_t i = 0; i < slots_used; i++) {
        struct mbx__box *b = slot_at(i);
        mbx__fd_close(atomic_exchange(&b->poll_fd, -1));
        mbx__fd_close(atomic_exchange(&b->fd, -1));
        atomic_store(&b->fd_signalled, 0);
    }
}

void
mbx__table_unlock_all(int in_child)
{
    if (in_child)
        forget_inherited_fds();
    pthread_mutex_unlock(&table_lock);
}
