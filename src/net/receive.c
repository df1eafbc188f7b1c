/*
 * The receiving half of the I/O thread: authenticating a datagram, the
 * replay window, and reassembling fragmented messages whole-or-nothing
 * within a memory bound (docs/protocol.md). Only the I/O thread calls
 * these, under its work lock, so the state needs no locking of its own.
 */
#include <stdlib.h>
#include <string.h>

#include "net/net.h"
#include "net/wire.h"

/* ---- replay window --------------------------------------------------------
 */

#define WINDOW_BELOW 1024 /* sequences below the highest that are tracked */
#define WINDOW_WORDS ((WINDOW_BELOW + 1 + 63) / 64)
#define WINDOW_BITS (WINDOW_WORDS * 64)
#define SENDERS_MAX 4096
#define SENDER_BUCKETS 8192

struct sender {
    uint64_t id;
    uint64_t top;                /* highest seq accepted */
    uint64_t seen[WINDOW_WORDS]; /* bit i: seq top - i was accepted */
    int64_t heard;               /* when, for forgetting the oldest */
    int next;                    /* next in bucket, or -1 */
};

static struct sender *senders; /* SENDERS_MAX entries, allocated on use */
static int *sender_bucket;     /* SENDER_BUCKETS heads, -1: empty */
static int sender_count;

static unsigned
sender_hash(uint64_t id)
{
    return (unsigned)((id * 0x9e3779b97f4a7c15ull) >> 51) % SENDER_BUCKETS;
}

static void
sender_unlink(int i)
{
    int *p = &sender_bucket[sender_hash(senders[i].id)];
    while (*p != i)
        p = &senders[*p].next;
    *p = senders[i].next;
}

/* The entry of sender `id`, made (forgetting the least recently heard
 * sender when the table is full) if new. NULL when out of memory. */
static struct sender *
sender_find(uint64_t id, int64_t now)
{
    if (!senders) {
        senders = malloc(SENDERS_MAX * sizeof *senders);
        sender_bucket = malloc(SENDER_BUCKETS * sizeof *sender_bucket);
        if (!senders || !sender_bucket) {
            free(senders);
            free(sender_bucket);
            senders = NULL;
            sender_bucket = NULL;
            return NULL;
        }
        for (int i = 0; i < SENDER_BUCKETS; i++)
            sender_bucket[i] = -1;
    }
    unsigned h = sender_hash(id);
    for (int i = sender_bucket[h]; i >= 0; i = senders[i].next)
        if (senders[i].id == id)
            return &senders[i];
    int slot;
    if (sender_count < SENDERS_MAX) {
        slot = sender_count++;
    } else {
        slot = 0;
        for (int i = 1; i < SENDERS_MAX; i++)
            if (senders[i].heard < senders[slot].heard)
                slot = i;
        sender_unlink(slot);
    }
    struct sender *s = &senders[slot];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->heard = now;
    s->next = sender_bucket[h];
    sender_bucket[h] = slot;
    return s;
}

/* Moves the window up by `by` sequence numbers. */
static void
window_shift(struct sender *s, uint64_t by)
{
    if (by >= WINDOW_BITS) {
        memset(s->seen, 0, sizeof s->seen);
        return;
    }
    unsigned words = (unsigned)(by / 64), bits = (unsigned)(by % 64);
    for (int i = WINDOW_WORDS - 1; i >= 0; i--) {
        uint64_t v = 0;
        int from = i - (int)words;
        if (from >= 0) {
            v = s->seen[from] << bits;
            if (bits && from > 0)
                v |= s->seen[from - 1] >> (64 - bits);
        }
        s->seen[i] = v;
    }
}

/* Accepts seq from sender id once: false for a datagram seen before or
 * older than the window. */
static bool
replay_accept(uint64_t id, uint64_t seq, int64_t now)
{
    struct sender *s = sender_find(id, now);
    if (!s)
        return false;
    s->heard = now;
    if (seq > s->top) {
        window_shift(s, seq - s->top);
        s->top = seq;
        s->seen[0] |= 1;
        return true;
    }
    uint64_t d = s->top - seq;
    if (d > WINDOW_BELOW)
        return false;
    uint64_t bit = 1ull << (d % 64);
    if (s->seen[d / 64] & bit)
        return false;
    s->seen[d / 64] |= bit;
    return true;
}

/* ---- reassembly ------------------------------------------------------------
 */

#define PARTIAL_BUCKETS 1024

/* The largest envelope besides its body: fixed part, four names, a kind
 * and a reply address. */
#define ENV_HEADER_MAX (MBX__ENV_FIXED + 5 * 255 + MBX__ENV_FROM_MAX)

struct partial {
    struct partial *hnext;         /* in its bucket */
    struct partial *older, *newer; /* in arrival order */
    uint64_t sender;
    uint32_t msg_id, msg_len, bytes_got;
    uint32_t frag_size; /* every fragment but the last; 0: not known yet */
    uint16_t count, got;
    int64_t first_ns; /* the first fragment's arrival */
    size_t cost;      /* bytes counted against the bound */
    uint8_t *have;    /* a bit per fragment */
    uint8_t data[];
};

static struct partial *partial_bucket[PARTIAL_BUCKETS];
static struct partial *oldest, *newest;
static size_t partial_bytes;

static unsigned
partial_hash(uint64_t sender, uint32_t msg_id)
{
    return (unsigned)(((sender ^ msg_id) * 0x9e3779b97f4a7c15ull) >> 54) %
           PARTIAL_BUCKETS;
}

static void
partial_free(struct partial *p)
{
    struct partial **b = &partial_bucket[partial_hash(p->sender, p->msg_id)];
    while (*b != p)
        b = &(*b)->hnext;
    *b = p->hnext;
    if (p->older)
        p->older->newer = p->newer;
    else
        oldest = p->newer;
    if (p->newer)
        p->newer->older = p->older;
    else
        newest = p->older;
    partial_bytes -= p->cost;
    atomic_store(&mbx__net_count.reassembly_bytes, partial_bytes);
    free(p);
}

static struct partial *
partial_find(uint64_t sender, uint32_t msg_id)
{
    struct partial *p = partial_bucket[partial_hash(sender, msg_id)];
    while (p && (p->sender != sender || p->msg_id != msg_id))
        p = p->hnext;
    return p;
}

/* A new partial message for frame f, within the memory bound; NULL when it
 * cannot have one (counted). */
static struct partial *
partial_new(const struct mbx__net_config *c, uint64_t sender,
            const struct mbx__wire_frame *f, int64_t now)
{
    if (f->msg_len > c->message_size + ENV_HEADER_MAX) {
        atomic_fetch_add(&mbx__net_count.dropped_size, f->index == 0);
        return NULL;
    }
    size_t bits = ((size_t)f->count + 7) / 8;
    size_t cost = sizeof(struct partial) + f->msg_len + bits;
    if (cost > c->reassembly_bytes) {
        atomic_fetch_add(&mbx__net_count.reassembly_evicted, 1);
        return NULL;
    }
    while (oldest && partial_bytes + cost > c->reassembly_bytes) {
        atomic_fetch_add(&mbx__net_count.reassembly_evicted, 1);
        partial_free(oldest);
    }
    struct partial *p = calloc(1, sizeof *p + f->msg_len + bits);
    if (!p)
        return NULL;
    p->sender = sender;
    p->msg_id = f->msg_id;
    p->msg_len = f->msg_len;
    p->count = f->count;
    p->first_ns = now;
    p->cost = cost;
    p->have = p->data + f->msg_len;
    unsigned h = partial_hash(sender, f->msg_id);
    p->hnext = partial_bucket[h];
    partial_bucket[h] = p;
    p->older = newest;
    if (newest)
        newest->newer = p;
    else
        oldest = p;
    newest = p;
    partial_bytes += cost;
    atomic_store(&mbx__net_count.reassembly_bytes, partial_bytes);
    if (partial_bytes > atomic_load(&mbx__net_count.reassembly_peak))
        atomic_store(&mbx__net_count.reassembly_peak, partial_bytes);
    return p;
}

/* Decodes a whole envelope and hands it on. */
static void
deliver_bytes(const uint8_t *data, size_t len)
{
    struct mbx__wire_env e;
    if (mbx__wire_get_env(data, len, &e) < 0) {
        atomic_fetch_add(&mbx__net_count.malformed, 1);
        return;
    }
    mbx__net_deliver(&e);
}

/* Whether fragment f sits where the layout puts it: every fragment but the
 * last has one size S and starts at index * S; the last starts at
 * (count - 1) * S, is at most S long and ends the message. The first
 * fragment seen fixes S. */
static bool
fragment_fits(struct partial *p, const struct mbx__wire_frame *f)
{
    uint32_t size;
    if (f->index + 1 < f->count) {
        size = f->chunk_len;
    } else {
        if (f->offset + f->chunk_len != p->msg_len ||
            f->offset % (uint32_t)(f->count - 1) != 0)
            return false;
        size = f->offset / (uint32_t)(f->count - 1);
        if (f->chunk_len > size)
            return false;
    }
    if ((uint64_t)f->index * size != f->offset ||
        (p->frag_size && p->frag_size != size))
        return false;
    p->frag_size = size;
    return true;
}

/* Adds a fragment to its message; delivers the message once whole. */
static void
add_fragment(const struct mbx__net_config *c, uint64_t sender,
             const struct mbx__wire_frame *f, int64_t now)
{
    struct partial *p = partial_find(sender, f->msg_id);
    if (p && (p->msg_len != f->msg_len || p->count != f->count)) {
        atomic_fetch_add(&mbx__net_count.malformed, 1);
        partial_free(p);
        return;
    }
    if (!p && !(p = partial_new(c, sender, f, now)))
        return;
    if (!fragment_fits(p, f)) {
        atomic_fetch_add(&mbx__net_count.malformed, 1);
        partial_free(p);
        return;
    }
    uint8_t bit = (uint8_t)(1u << (f->index % 8));
    if (p->have[f->index / 8] & bit)
        return; /* a duplicate fragment */
    p->have[f->index / 8] |= bit;
    memcpy(p->data + f->offset, f->chunk, f->chunk_len);
    p->got++;
    p->bytes_got += f->chunk_len;
    if (p->got < p->count)
        return;
    if (p->bytes_got == p->msg_len)
        deliver_bytes(p->data, p->msg_len);
    else
        atomic_fetch_add(&mbx__net_count.malformed, 1);
    partial_free(p);
}

int64_t
mbx__net_receive_expire(int64_t now)
{
    const struct mbx__net_config *c;
    if (!oldest || mbx__net_config_get(&c) < 0)
        return -1;
    int64_t life = (int64_t)c->reassembly_ms * 1000000;
    while (oldest && oldest->first_ns + life <= now) {
        atomic_fetch_add(&mbx__net_count.reassembly_timeouts, 1);
        partial_free(oldest);
    }
    return oldest ? oldest->first_ns + life - now : -1;
}

void
mbx__net_receive_reset(void)
{
    while (oldest)
        partial_free(oldest);
    free(senders);
    free(sender_bucket);
    senders = NULL;
    sender_bucket = NULL;
    sender_count = 0;
}

/* ---- a datagram ------------------------------------------------------------
 */

void
mbx__net_receive(uint8_t *buf, size_t len, int64_t now)
{
    const struct mbx__net_config *c;
    struct mbx__wire_dgram h;
    if (mbx__net_config_get(&c) < 0)
        return;
    atomic_fetch_add(&mbx__net_count.recv_datagrams, 1);
    if (mbx__wire_get_header(buf, len, &h) < 0 || h.seq == 0) {
        atomic_fetch_add(&mbx__net_count.malformed, 1);
        return;
    }
    bool sealed = h.flags & MBX__WIRE_SEALED;
    if (sealed != c->has_key ||
        (sealed && mbx__net_open(c->key, buf, len, &len) < 0)) {
        atomic_fetch_add(&mbx__net_count.unauthenticated, 1);
        return;
    }
    /* Check every frame before taking any: a datagram is handled whole. */
    size_t pos = 0, area = len - MBX__WIRE_HEADER;
    const uint8_t *frames = buf + MBX__WIRE_HEADER;
    struct mbx__wire_frame f;
    for (unsigned i = 0; i < h.frames; i++) {
        if (mbx__wire_get_frame(frames, area, &pos, &f) < 0) {
            atomic_fetch_add(&mbx__net_count.malformed, 1);
            return;
        }
    }
    if (pos != area) {
        atomic_fetch_add(&mbx__net_count.malformed, 1);
        return;
    }
    if (!replay_accept(h.sender, h.seq, now)) {
        atomic_fetch_add(&mbx__net_count.replayed, 1);
        return;
    }
    pos = 0;
    for (unsigned i = 0; i < h.frames; i++) {
        mbx__wire_get_frame(frames, area, &pos, &f);
        if (f.count == 1)
            deliver_bytes(f.chunk, f.chunk_len);
        else
            add_fragment(c, h.sender, &f, now);
    }
}
