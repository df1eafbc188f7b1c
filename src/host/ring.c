/* The host ring: records in shared memory, the writers' lock, waking. */
#include "host/ring.h"

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "core/msg.h"
#include "platform/platform.h"

/* A writer finding the lock taken asks whether its holder died only after
 * this long: the question costs a system call, and a live holder keeps the
 * lock for well under a microsecond unless it was preempted. */
#define HOLDER_CHECK_NS 1000000
/* A writer waiting for room looks at the reader's liveness this often. */
#define ROOM_CHECK_NS 10000000

static inline uint64_t
align8(uint64_t n)
{
    return (n + 7) & ~(uint64_t)7;
}

uint64_t
mbx__ring_record_size(size_t kind_len, size_t from_len, size_t body_len)
{
    return align8(sizeof(struct mbx__rec) + (uint64_t)kind_len + from_len +
                  body_len);
}

static uint64_t
data_size_of(const struct mbx__ring *r)
{
    return r->mask + 1;
}

void
mbx__ring_init(struct mbx__ring *r, void *base, uint64_t data_size,
               const char *name, int pid, unsigned mode, uint32_t max_body)
{
    struct mbx__ring_hdr *h = base;
    h->magic = MBX__RING_MAGIC;
    h->version = MBX__RING_VERSION;
    h->hdr_size = MBX__RING_HDR_SIZE;
    h->data_size = data_size;
    h->max_record = data_size / 2;
    h->pid = pid;
    h->mode = mode;
    h->max_body = max_body;
    snprintf(h->name, sizeof h->name, "%s", name);
    r->hdr = h;
    r->data = (unsigned char *)base + MBX__RING_HDR_SIZE;
    r->mask = data_size - 1;
    r->rhead = r->rtail = r->peeked_to = r->consumed = 0;
}

int
mbx__ring_attach(struct mbx__ring *r, void *base, size_t map_size)
{
    struct mbx__ring_hdr *h = base;
    if (map_size < MBX__RING_HDR_SIZE || h->magic != MBX__RING_MAGIC ||
        h->version != MBX__RING_VERSION || h->hdr_size != MBX__RING_HDR_SIZE)
        return MBX_EBADMSG;
    uint64_t size = h->data_size;
    if (size < MBX_RING_MIN || size > MBX_RING_MAX || (size & (size - 1)) ||
        map_size != MBX__RING_HDR_SIZE + size || h->max_record != size / 2)
        return MBX_EBADMSG;
    r->hdr = h;
    r->data = (unsigned char *)base + MBX__RING_HDR_SIZE;
    r->mask = size - 1;
    r->rhead = r->rtail = r->peeked_to = atomic_load(&h->head);
    r->consumed = 0;
    return 0;
}

uint64_t
mbx__ring_token(uint32_t lane, uint32_t nonce)
{
    return (uint64_t)nonce << 32 | lane;
}

/* ---- writers ------------------------------------------------------------ */

void
mbx__ring_lock(_Atomic uint64_t *word, uint64_t token,
               mbx__holder_dead_fn holder_dead, void *ctx,
               _Atomic uint64_t *broken)
{
    uint64_t seen_holder = 0;
    int64_t seen_since = 0;
    for (unsigned i = 0;; i++) {
        uint64_t cur = 0;
        if (atomic_compare_exchange_weak(word, &cur, token))
            return;
        if (i < 64 || cur == 0) {
            mbx__cpu_relax();
            continue;
        }
        sched_yield();
        int64_t now = mbx__now_ns();
        if (cur != seen_holder) {
            seen_holder = cur;
            seen_since = now;
        } else if (now - seen_since > HOLDER_CHECK_NS) {
            if (holder_dead(ctx, cur) &&
                atomic_compare_exchange_strong(word, &cur, 0))
                atomic_fetch_add(broken, 1);
            seen_since = now;
        }
    }
}

void
mbx__ring_unlock(_Atomic uint64_t *word)
{
    atomic_store_explicit(word, 0, memory_order_release);
}

/* Copies a record to offset `off`. Writers' lock held. */
static void
write_record(struct mbx__ring *r, uint64_t off, uint64_t size,
             const struct mbx__rec_view *v)
{
    struct mbx__rec rec = {
        .size = (uint32_t)size,
        .type = MBX__REC_MSG,
        .role = (uint8_t)v->role,
        .flags = (uint8_t)v->flags,
        .corr = v->corr,
        .body_len = (uint32_t)v->body_len,
        .kind_len = (uint8_t)v->kind_len,
        .from_len = (uint8_t)v->from_len,
    };
    unsigned char *p = r->data + off;
    memcpy(p, &rec, sizeof rec);
    p += sizeof rec;
    memcpy(p, v->kind, v->kind_len);
    p += v->kind_len;
    if (v->from_len)
        memcpy(p, v->from, v->from_len);
    p += v->from_len;
    if (v->body_len)
        memcpy(p, v->body, v->body_len);
}

/* Writes the record if it fits now. Returns true when published. Writers'
 * lock held. */
static bool
try_append(struct mbx__ring *r, uint64_t size, const struct mbx__rec_view *v)
{
    struct mbx__ring_hdr *h = r->hdr;
    /* Records start 8-aligned; a tail that is not (a misbehaving writer
     * stored it) is rounded up, as the reader rounds its head. */
    uint64_t tail =
        align8(atomic_load_explicit(&h->tail, memory_order_relaxed));
    uint64_t off = tail & r->mask;
    uint64_t to_end = data_size_of(r) - off;
    uint64_t pad = size > to_end ? to_end : 0;
    /* The reader's head only moves forward: a stale view of it can only
     * understate the room, so it is read again only when it seems short. */
    uint64_t head = atomic_load_explicit(&h->head_seen, memory_order_relaxed);
    if (tail - head + pad + size > data_size_of(r)) {
        head = atomic_load_explicit(&h->head, memory_order_acquire);
        atomic_store_explicit(&h->head_seen, head, memory_order_relaxed);
        if (tail - head + pad + size > data_size_of(r))
            return false;
    }
    if (pad) {
        struct mbx__rec filler = {.size = (uint32_t)pad, .type = MBX__REC_PAD};
        memcpy(r->data + off, &filler, 8); /* size and type are enough */
        off = 0;
    }
    write_record(r, off, size, v);
    /* Marked before the record is published: a reader that sees the mark
     * looks for the record ahead of those before it. */
    if (v->flags & MBX_MSG_URGENT)
        atomic_store(&h->urgent_at, tail + pad + 1);
    atomic_store_explicit(
        &h->puts, atomic_load_explicit(&h->puts, memory_order_relaxed) + 1,
        memory_order_relaxed);
    /* Publishing: sequentially consistent, so that the reader's waiter
     * count read after it cannot miss a reader that parked before. */
    atomic_store(&h->tail, tail + pad + size);
    return true;
}

/* Waits until room may have appeared, the deadline passes or a check
 * interval ends. Returns 0 or MBX_ETIMEDOUT. */
static int
await_room(struct mbx__ring *r, uint64_t size, int64_t deadline)
{
    struct mbx__ring_hdr *h = r->hdr;
    int64_t until = mbx__now_ns() + ROOM_CHECK_NS;
    if (deadline < until)
        until = deadline;
    uint32_t s = atomic_load(&h->space_seq);
    atomic_fetch_add(&h->space_waiters, 1);
    int rc = 0;
    if (mbx__ring_full_for(r, size))
        rc = mbx__futex_wait_shared(&h->space_seq, s, until);
    atomic_fetch_sub(&h->space_waiters, 1);
    if (rc == MBX_ETIMEDOUT && until < deadline)
        rc = 0;
    return rc;
}

int
mbx__ring_put(struct mbx__ring *r, uint64_t token,
              const struct mbx__rec_view *v, int64_t deadline,
              const struct mbx__ring_writer_ops *ops, void *ctx)
{
    struct mbx__ring_hdr *h = r->hdr;
    uint64_t size =
        mbx__ring_record_size(v->kind_len, v->from_len, v->body_len);
    if (size > h->max_record || v->body_len > UINT32_MAX ||
        (h->max_body && v->body_len > h->max_body))
        return MBX_EMSGSIZE;
    for (;;) {
        mbx__ring_lock(&h->wlock, token, ops->holder_dead, ctx,
                       &h->broken_locks);
        bool done = try_append(r, size, v);
        mbx__ring_unlock(&h->wlock);
        if (done) {
            mbx__ring_wake_reader(r);
            return 0;
        }
        if (deadline == 0) {
            atomic_fetch_add(&h->full, 1);
            return MBX_EAGAIN;
        }
        if (!ops->reader_alive(ctx))
            return MBX_ENOENT;
        /* A writer killed between publishing and waking the reader would
         * leave the reader asleep beside a full ring: wake it ourselves. */
        ops->nudge_reader(ctx);
        if (await_room(r, size, deadline) == MBX_ETIMEDOUT) {
            atomic_fetch_add(&h->full, 1);
            return MBX_ETIMEDOUT;
        }
    }
}

void
mbx__ring_arm(struct mbx__ring *r)
{
    /* Even to odd, or odd to the next odd: a new value per arming, so a
     * writer that rang an earlier one cannot clear this one. */
    uint32_t a = atomic_load(&r->hdr->rd_armed);
    atomic_store(&r->hdr->rd_armed, (a | 1) + 2);
}

uint32_t
mbx__ring_armed(const struct mbx__ring *r)
{
    uint32_t a = atomic_load(&r->hdr->rd_armed);
    return (a & 1) ? a : 0;
}

void
mbx__ring_disarm(struct mbx__ring *r, uint32_t arming)
{
    atomic_compare_exchange_strong(&r->hdr->rd_armed, &arming, arming + 1);
}

void
mbx__ring_wake_reader(struct mbx__ring *r)
{
    struct mbx__ring_hdr *h = r->hdr;
    if (atomic_load(&h->rd_waiters)) {
        atomic_fetch_add(&h->rd_seq, 1);
        mbx__futex_wake_shared(&h->rd_seq, INT_MAX);
    }
}

/* ---- the reader -----------------------------------------------------------
 */

/* Gives up on everything written so far: a record the reader cannot make
 * sense of leaves no way to find the next one. */
static void
drop_malformed(struct mbx__ring *r, uint64_t tail)
{
    struct mbx__ring_hdr *h = r->hdr;
    atomic_fetch_add(&h->dropped, 1);
    r->rhead = r->rtail = tail;
    atomic_store(&h->gets, atomic_load(&h->puts));
    r->consumed = 0;
    atomic_store(&h->head, tail);
    mbx__ring_wake_writers(r);
}

/* Checks a message record's header against its size. */
static bool
record_ok(const struct mbx__rec *rec)
{
    /* kind_len and from_len are bytes: within their limits by type. */
    if (rec->type != MBX__REC_MSG || rec->size < sizeof *rec ||
        rec->role > MBX__CALL_ENDED)
        return false;
    return mbx__ring_record_size(rec->kind_len, rec->from_len, rec->body_len) ==
           rec->size;
}

bool
mbx__ring_peek(struct mbx__ring *r, struct mbx__rec_view *v)
{
    for (;;) {
        uint64_t head = r->rhead;
        if (head == r->rtail)
            return false; /* the batch is done: see mbx__ring_refresh */
        uint64_t tail = r->rtail;
        if (head & 7) {
            /* Only after a malformed tail: records start 8-aligned. */
            r->rhead = align8(head);
            if (r->rhead > tail) {
                drop_malformed(r, tail);
                return false;
            }
            continue;
        }
        uint64_t off = head & r->mask, to_end = data_size_of(r) - off;
        struct mbx__rec rec = {0};
        /* One copy of the header: a misbehaving writer may change the ring
         * under us, and each field must be checked where it is used. */
        memcpy(&rec, r->data + off, to_end < sizeof rec ? 8 : sizeof rec);
        if (tail - head > data_size_of(r) || (off & 7) || rec.size < 8 ||
            rec.size % 8 || rec.size > to_end || rec.size > tail - head) {
            drop_malformed(r, tail);
            return false;
        }
        if (rec.type == MBX__REC_PAD && rec.size == to_end) {
            r->rhead = head + rec.size;
            continue;
        }
        if (!record_ok(&rec)) {
            drop_malformed(r, tail);
            return false;
        }
        const char *p = (const char *)r->data + off + sizeof rec;
        *v = (struct mbx__rec_view){
            .role = rec.role,
            .flags = rec.flags,
            .corr = rec.corr,
            .kind = p,
            .kind_len = rec.kind_len,
            .from = p + rec.kind_len,
            .from_len = rec.from_len,
            .body = p + rec.kind_len + rec.from_len,
            .body_len = rec.body_len,
        };
        r->peeked_to = head + rec.size;
        return true;
    }
}

bool
mbx__ring_refresh(struct mbx__ring *r)
{
    r->rtail = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    return r->rtail != r->rhead;
}

void
mbx__ring_consume(struct mbx__ring *r)
{
    r->rhead = r->peeked_to;
    r->consumed++;
}

void
mbx__ring_commit(struct mbx__ring *r)
{
    struct mbx__ring_hdr *h = r->hdr;
    if (atomic_load_explicit(&h->head, memory_order_relaxed) == r->rhead)
        return;
    atomic_store_explicit(&h->gets,
                          atomic_load_explicit(&h->gets, memory_order_relaxed) +
                              r->consumed,
                          memory_order_relaxed);
    r->consumed = 0;
    /* Sequentially consistent: writers count themselves in as waiters
     * before they look at head, and we look at the count after this. */
    atomic_store(&h->head, r->rhead);
    if (!atomic_load(&h->space_waiters))
        return;
    uint64_t used = r->rtail - r->rhead;
    /* A wake-up costs more than a record: wake writers once a quarter of
     * the ring is free, or when it is empty. */
    if (used == 0 || data_size_of(r) - used >= data_size_of(r) / 4)
        mbx__ring_wake_writers(r);
}

void
mbx__ring_wake_writers(struct mbx__ring *r)
{
    struct mbx__ring_hdr *h = r->hdr;
    if (atomic_load(&h->space_waiters)) {
        atomic_fetch_add(&h->space_seq, 1);
        mbx__futex_wake_shared(&h->space_seq, INT_MAX);
    }
}

bool
mbx__ring_pending(const struct mbx__ring *r)
{
    /* Only shared fields: any thread of the reader's process may ask while
     * one of them reads a batch (and publishes head when done). */
    return atomic_load(&r->hdr->tail) != atomic_load(&r->hdr->head);
}

uint64_t
mbx__ring_queued(const struct mbx__ring *r)
{
    uint64_t gets = atomic_load(&r->hdr->gets);
    uint64_t puts = atomic_load(&r->hdr->puts);
    return puts > gets ? puts - gets : 0;
}

uint64_t
mbx__ring_used_bytes(const struct mbx__ring *r)
{
    uint64_t head = atomic_load(&r->hdr->head);
    uint64_t tail = atomic_load(&r->hdr->tail);
    return tail - head <= data_size_of(r) ? tail - head : data_size_of(r);
}

bool
mbx__ring_full_for(const struct mbx__ring *r, uint64_t size)
{
    uint64_t tail = atomic_load(&r->hdr->tail);
    uint64_t used = mbx__ring_used_bytes(r);
    uint64_t to_end = data_size_of(r) - (tail & r->mask);
    /* A record that does not fit before the end needs a pad up to it. */
    uint64_t pad = size > to_end ? to_end : 0;
    return used + pad + size > data_size_of(r);
}
