/*
 * The reader's side of the host scope: its ring attached to its mailbox as
 * a feed (src/core/feed.h), so that mbx_recv takes messages from other
 * processes like any other; registering host names; what becomes of the
 * rings at fork and at exit.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/feed.h"
#include "core/mailbox.h"
#include "core/registry.h"
#include "host/endpoint.h"
#include "host/host.h"
#include "host/internal.h"

/* ---- the reader's ring as a feed ----------------------------------------- */

struct ring_feed {
    struct mbx__feed feed;
    struct mbx__reader *rd;
    struct mbx__box *box;          /* the mailbox it feeds */
    struct ring_feed *next, *prev; /* in feeds_open */
};

/* Every feed attached to a mailbox. Only destroy frees one; this list keeps
 * them reachable for leak checkers when a process exits with mailboxes
 * alive (the mailbox table lives in mmap'd memory they do not scan). */
static struct ring_feed *feeds_open;
static pthread_mutex_t feeds_lock = PTHREAD_MUTEX_INITIALIZER;

static void
feeds_link(struct ring_feed *f)
{
    pthread_mutex_lock(&feeds_lock);
    f->prev = NULL;
    f->next = feeds_open;
    if (feeds_open)
        feeds_open->prev = f;
    feeds_open = f;
    pthread_mutex_unlock(&feeds_lock);
}

/* At exit, mailboxes still alive (the main thread's reply mailbox, which no
 * thread-exit destructor reaches, or any the program did not destroy) let
 * their names go, so the runtime directory keeps only live readers. */
__attribute__((destructor)) static void
release_names_at_exit(void)
{
    pthread_mutex_lock(&feeds_lock);
    for (struct ring_feed *f = feeds_open; f; f = f->next)
        mbx__reader_release_name(f->rd);
    pthread_mutex_unlock(&feeds_lock);
}

static void
feeds_unlink(struct ring_feed *f)
{
    pthread_mutex_lock(&feeds_lock);
    if (f->prev)
        f->prev->next = f->next;
    else
        feeds_open = f->next;
    if (f->next)
        f->next->prev = f->prev;
    pthread_mutex_unlock(&feeds_lock);
}

/* Rings this process reads (attached to a mailbox). */
static _Atomic unsigned rings_read;

bool
mbx__host_reads_any(void)
{
    return atomic_load_explicit(&rings_read, memory_order_relaxed) != 0;
}

static struct mbx__reader *
reader_of(struct mbx__feed *f)
{
    return ((struct ring_feed *)f)->rd;
}

static bool
feed_pending(struct mbx__feed *f)
{
    struct mbx__reader *rd = reader_of(f);
    return !rd->disowned && mbx__ring_pending(&rd->ring);
}

static bool
feed_urgent_pending(struct mbx__feed *f)
{
    struct mbx__reader *rd = reader_of(f);
    /* An urgent record at or after the reader's position. */
    uint64_t at = atomic_load(&rd->ring.hdr->urgent_at);
    return !rd->disowned && at && at - 1 >= rd->ring.rhead;
}

/* A message for a record, or NULL if out of memory. A record whose kind or
 * address holds a NUL byte, a call without a reply address or correlation,
 * or a body over the reader's cap is not one a writer of this library
 * makes: *bad is set and it is dropped. */
static mbx_msg *
message_of(const struct mbx__rec_view *v, uint32_t max_body, bool *bad)
{
    char kind[MBX_KIND_MAX + 1];
    *bad = memchr(v->kind, 0, v->kind_len) || memchr(v->from, 0, v->from_len) ||
           (v->role == MBX__CALL && (v->from_len == 0 || v->corr == 0)) ||
           (v->flags & ~MBX_MSG_URGENT) || (max_body && v->body_len > max_body);
    if (*bad)
        return NULL;
    memcpy(kind, v->kind, v->kind_len);
    kind[v->kind_len] = '\0';
    mbx_msg *m = mbx__msg_alloc(kind, v->body_len);
    if (!m)
        return NULL;
    if (v->body_len)
        memcpy(m->body, v->body, v->body_len);
    if (v->from_len && !(m->from = strndup(v->from, v->from_len))) {
        mbx_msg_free(m);
        return NULL;
    }
    m->flags = v->flags;
    m->role = (uint16_t)v->role;
    m->corr = v->corr;
    return m;
}

static size_t
feed_pump(struct mbx__feed *f, struct mbx__box *b, size_t max)
{
    struct mbx__reader *rd = reader_of(f);
    struct mbx__rec_view v;
    size_t n = 0;
    if (rd->disowned)
        return 0;
    mbx__ring_refresh(&rd->ring);
    while (n < max && mbx__ring_peek(&rd->ring, &v)) {
        bool bad;
        mbx_msg *m = message_of(&v, rd->max_body, &bad);
        if (!m && !bad)
            break; /* out of memory: leave it in the ring for later */
        mbx__ring_consume(&rd->ring);
        if (bad) {
            atomic_fetch_add(&rd->ring.hdr->dropped, 1);
            continue;
        }
        mbx__box_inbox_append(b, m);
        n++;
    }
    /* Room goes back to writers once per batch. */
    mbx__ring_commit(&rd->ring);
    return n;
}

static void
feed_wake(struct mbx__feed *f)
{
    mbx__ring_wake_reader(&reader_of(f)->ring);
}

static int
feed_bell(struct mbx__feed *f)
{
    return mbx__reader_bell(reader_of(f));
}

static void
feed_arm(struct mbx__feed *f)
{
    struct mbx__reader *rd = reader_of(f);
    mbx__reader_bell_drain(rd);
    mbx__ring_arm(&rd->ring);
}

static void
feed_release(struct mbx__feed *f)
{
    mbx__reader_release_name(reader_of(f));
}

static void
feed_close(struct mbx__feed *f)
{
    mbx__reader_close(reader_of(f));
    free(f);
}

/* Closes an attached feed: the mailbox is being destroyed. */
static void
feed_close_attached(struct mbx__feed *f)
{
    atomic_fetch_sub(&rings_read, 1);
    feeds_unlink((struct ring_feed *)f);
    feed_close(f);
}

static const struct mbx__feed_ops ring_feed_ops = {
    .pending = feed_pending,
    .urgent_pending = feed_urgent_pending,
    .pump = feed_pump,
    .wake = feed_wake,
    .bell = feed_bell,
    .arm = feed_arm,
    .release = feed_release,
    .close = feed_close_attached,
};

int
mbx__host_reader_ring(mbx_id id, const struct mbx__ring **out)
{
    struct mbx__box *b;
    int rc = mbx__box_acquire(id, &b);
    if (rc < 0)
        return rc;
    struct mbx__feed *f = atomic_load(&b->feed);
    if (f && f->ops == &ring_feed_ops)
        *out = &reader_of(f)->ring;
    else
        rc = MBX_EINVAL;
    mbx__box_release(b);
    return rc;
}

/* ---- registering ------------------------------------------------------------
 */

int
mbx__host_name_of(const char *text, struct mbx__address *a)
{
    int rc = mbx__address_parse(text, a);
    if (rc < 0)
        return rc;
    return a->scope == MBX__SCOPE_HOST ? 0 : MBX_EINVAL;
}

/* Opens the ring and attaches it to the pinned mailbox. */
static int
attach_ring(struct mbx__box *b, mbx_id id, const char *name,
            const mbx_host_opts *opts)
{
    struct mbx__feed *had = atomic_load(&b->feed);
    if (had) {
        /* Taken, even by this mailbox: as for any name. Another host name
         * would need a second feed. */
        struct mbx__reader *rd = reader_of(had);
        return !atomic_load(&rd->released) && strcmp(rd->name, name) == 0
                   ? MBX_EEXIST
                   : MBX_ENOTSUP;
    }
    struct ring_feed *f = calloc(1, sizeof *f);
    if (!f)
        return MBX_ENOMEM;
    int rc = mbx__reader_open(&f->rd, name, opts);
    if (rc < 0) {
        free(f);
        return rc;
    }
    f->feed.ops = &ring_feed_ops;
    f->feed.seq = &f->rd->ring.hdr->rd_seq;
    f->feed.waiters = &f->rd->ring.hdr->rd_waiters;
    char key[MBX__HOST_ADDRESS_MAX];
    mbx__host_key(name, key);
    /* The registry entry lets this process send to the name directly. */
    rc = mbx__registry_insert(b, id, key);
    if (rc == 0) {
        atomic_fetch_add(&rings_read, 1);
        f->box = b;
        feeds_link(f);
    }
    if (rc == 0 && (rc = mbx__box_attach_feed(b, &f->feed)) < 0) {
        mbx__registry_remove(key, NULL);
        feeds_unlink(f);
        atomic_fetch_sub(&rings_read, 1);
    }
    if (rc < 0)
        feed_close(&f->feed);
    return rc;
}

int
mbx_register_host(mbx_id id, const char *name, const mbx_host_opts *opts)
{
    struct mbx__address a;
    int rc = mbx__host_name_of(name, &a);
    if (rc < 0)
        return rc;
    struct mbx__box *b;
    if ((rc = mbx__box_acquire(id, &b)) < 0)
        return rc;
    rc = attach_ring(b, id, a.name, opts);
    mbx__box_release(b);
    return rc;
}

/* In a child after fork: the rings the parent reads are not the child's.
 * Each is taken off its mailbox (which stays, as a plain mailbox) and its
 * copy closed: the child must not park on the parent's futex words or
 * count itself among the parent's waiters. feeds_lock held. */
static void
detach_inherited_feeds(void)
{
    struct ring_feed *f = feeds_open, *next;
    for (; f; f = next) {
        next = f->next;
        atomic_store(&f->box->feed, NULL);
        atomic_fetch_sub(&rings_read, 1);
        feed_close(&f->feed); /* disowned: nothing shared is touched */
    }
    feeds_open = NULL;
}

void
mbx__feeds_lock_all(void)
{
    pthread_mutex_lock(&feeds_lock);
}

void
mbx__feeds_unlock_all(int in_child)
{
    if (in_child)
        detach_inherited_feeds();
    pthread_mutex_unlock(&feeds_lock);
}

struct mbx__ring_hdr *
mbx__host_feed_hdr(struct mbx__box *b)
{
    return ((struct ring_feed *)atomic_load(&b->feed))->rd->ring.hdr;
}
