/*
 * The host scope: a reader's ring attached to its mailbox as a feed, the
 * process's cache of writer connections, and call/reply between processes.
 *
 * A call to another process carries the address of the calling thread's
 * reply mailbox, which gets a host name of its own on the thread's first
 * such call ("//./.reply/PID.ID"). The reply ring's header records which
 * call is awaited, so a late reply is refused as it is in-process.
 */
#include "host/host.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/address.h"
#include "core/call.h"
#include "core/feed.h"
#include "core/fork.h"
#include "core/mailbox.h"
#include "core/registry.h"
#include "host/endpoint.h"

/* While waiting for a reply from another process, look this often whether
 * the callee is still there. */
#define CALLEE_CHECK_MS 50

/* Reply rings are small: one reply at a time is awaited. */
#define REPLY_RING_SIZE (64u << 10)

void
mbx__host_key(const char *name, char *key)
{
    snprintf(key, MBX__HOST_ADDRESS_MAX, "//./%s", name);
}

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

/* Parses a host name in either form into its bare name. */
static int
host_name_of(const char *text, struct mbx__address *a)
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
    int rc = host_name_of(name, &a);
    if (rc < 0)
        return rc;
    struct mbx__box *b;
    if ((rc = mbx__box_acquire(id, &b)) < 0)
        return rc;
    rc = attach_ring(b, id, a.name, opts);
    mbx__box_release(b);
    return rc;
}

/* ---- the writer cache -----------------------------------------------------
 */

/* One connection per name, shared by the process's threads. */
struct cached_writer {
    struct cached_writer *next;
    struct mbx__writer *w;
    unsigned users;     /* threads using w now; guarded by cache_lock */
    _Atomic bool stale; /* the reader is gone: close when the last user
                         * leaves; set under cache_lock */
    char name[];
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached_writer *cache;

/* Finds or opens the connection to `name` and counts us in. */
static int
writer_get(const char *name, struct cached_writer **out)
{
    pthread_mutex_lock(&cache_lock);
    struct cached_writer *c = cache;
    while (c && (c->stale || strcmp(c->name, name) != 0))
        c = c->next;
    if (c) {
        c->users++;
        pthread_mutex_unlock(&cache_lock);
        *out = c;
        return 0;
    }
    pthread_mutex_unlock(&cache_lock);
    /* Open outside the lock: it touches the file system. */
    size_t len = strlen(name);
    c = calloc(1, sizeof *c + len + 1);
    if (!c)
        return MBX_ENOMEM;
    memcpy(c->name, name, len + 1);
    int rc = mbx__writer_open(&c->w, name);
    if (rc < 0) {
        free(c);
        return rc;
    }
    c->users = 1;
    pthread_mutex_lock(&cache_lock);
    c->next = cache;
    cache = c;
    pthread_mutex_unlock(&cache_lock);
    *out = c;
    return 0;
}

/* Counts us out; `gone` marks the connection stale (its reader left). */
static void
writer_put_back(struct cached_writer *c, bool gone)
{
    pthread_mutex_lock(&cache_lock);
    if (gone)
        c->stale = true;
    bool last = --c->users == 0 && c->stale;
    if (last) {
        struct cached_writer **p = &cache;
        while (*p != c)
            p = &(*p)->next;
        *p = c->next;
    }
    pthread_mutex_unlock(&cache_lock);
    if (last) {
        mbx__writer_close(c->w);
        free(c);
    }
}

void
mbx__host_lock_all(void)
{
    pthread_mutex_lock(&feeds_lock);
    pthread_mutex_lock(&cache_lock);
    mbx__endpoints_lock_all();
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
mbx__host_unlock_all(int in_child)
{
    /* First the endpoints: in the child, their fds close (and readers
     * are disowned) before anything else frees them. */
    mbx__endpoints_unlock_all(in_child);
    if (in_child)
        detach_inherited_feeds();
    pthread_mutex_unlock(&feeds_lock);
    if (!in_child) {
        pthread_mutex_unlock(&cache_lock);
        return;
    }
    /* The connections are the parent's (its lanes, its locks): drop our
     * copies without touching what they share. */
    struct cached_writer *c = cache, *next;
    for (; c; c = next) {
        next = c->next;
        mbx__writer_close(c->w);
        free(c);
    }
    cache = NULL;
    pthread_mutex_unlock(&cache_lock);
}

/* The record of a message. */
static struct mbx__rec_view
view_of(const mbx_msg *m, const char *from)
{
    return (struct mbx__rec_view){
        .role = m->role,
        .flags = m->flags,
        .corr = m->corr,
        .kind = m->kind,
        .kind_len = strlen(m->kind),
        .from = from,
        .from_len = from ? strlen(from) : 0,
        .body = m->body,
        .body_len = m->len,
    };
}

/* Each thread keeps the connection it used last, counted in, so that a
 * stream of sends to one name takes no lock. A key's destructor counts the
 * thread out when it exits. */
static _Thread_local struct cached_writer *last_used;
static _Thread_local unsigned last_used_fork_gen;
static pthread_key_t last_used_key;
static pthread_once_t last_used_once = PTHREAD_ONCE_INIT;

static void
last_used_drop(void *p)
{
    if (last_used_fork_gen == mbx__fork_generation)
        writer_put_back(p, false);
    last_used = NULL;
}

static void
last_used_key_make(void)
{
    pthread_key_create(&last_used_key, last_used_drop);
}

/* Makes c the thread's kept connection (NULL: none). */
static void
keep_last_used(struct cached_writer *c)
{
    pthread_once(&last_used_once, last_used_key_make);
    last_used = c;
    last_used_fork_gen = mbx__fork_generation;
    pthread_setspecific(last_used_key, c);
}

/* As writer_get, through the thread's last connection when it fits. */
static int
writer_get_fast(const char *name, struct cached_writer **out)
{
    struct cached_writer *c = last_used;
    if (c && last_used_fork_gen == mbx__fork_generation &&
        !atomic_load_explicit(&c->stale, memory_order_relaxed) &&
        strcmp(c->name, name) == 0) {
        *out = c;
        return 0;
    }
    /* In a child after fork, the parent's connection is not ours to put
     * back: forget it. */
    if (c && last_used_fork_gen == mbx__fork_generation)
        writer_put_back(c, false);
    keep_last_used(NULL);
    int rc = writer_get(name, &c);
    if (rc < 0)
        return rc;
    /* One count for the thread's keeping, one for this use. */
    pthread_mutex_lock(&cache_lock);
    c->users++;
    pthread_mutex_unlock(&cache_lock);
    keep_last_used(c);
    *out = c;
    return 0;
}

/* Ends a use begun by writer_get_fast. */
static void
writer_done(struct cached_writer *c, bool gone)
{
    if (!gone && c == last_used)
        return; /* the thread's count keeps it */
    if (gone && c == last_used) {
        keep_last_used(NULL);
        writer_put_back(c, false); /* the thread's count */
    }
    writer_put_back(c, gone);
}

/* Writes a record to the reader of `name`, reconnecting once if the cached
 * connection's reader has gone (a new one may have the name now).
 * `awaiting`: when non-zero, refuse (MBX_ENOENT) unless the ring waits for
 * that call. */
static int
put_to(const char *name, const struct mbx__rec_view *v, int64_t deadline,
       uint64_t awaiting)
{
    for (int attempt = 0;; attempt++) {
        struct cached_writer *c;
        int rc = writer_get_fast(name, &c);
        if (rc < 0)
            return rc;
        if (awaiting && atomic_load(&c->w->ring.hdr->awaiting_corr) != awaiting)
            rc = MBX_ENOENT;
        else
            rc = mbx__writer_put(c->w, v, deadline);
        bool gone = rc == MBX_ENOENT && !mbx__writer_reader_alive(c->w, true);
        writer_done(c, gone);
        if (!gone || attempt == 1)
            return rc;
    }
}

/* The id of the mailbox of this process that reads `name`, if any. Most
 * processes that write read nothing: they skip the look-up. */
static bool
read_here(const char *name, mbx_id *id)
{
    if (!atomic_load_explicit(&rings_read, memory_order_relaxed))
        return false;
    char key[MBX__HOST_ADDRESS_MAX];
    mbx__host_key(name, key);
    return mbx__registry_lookup(key, id) == 0;
}

int
mbx__host_send(const char *name, mbx_msg **m, int timeout_ms)
{
    mbx_id id;
    if (read_here(name, &id))
        return mbx_send(id, m, timeout_ms);
    struct mbx__rec_view v = view_of(*m, (*m)->from);
    int rc = put_to(name, &v, mbx__deadline(timeout_ms), 0);
    if (rc == 0) {
        mbx_msg_free(*m);
        *m = NULL;
    }
    return rc;
}

/* ---- call and reply between processes -------------------------------------
 */

static _Thread_local char reply_name[MBX__HOST_ADDRESS_MAX];
static _Thread_local mbx_id reply_named_box;

/* Gives the calling thread's reply mailbox a host name, once. */
static int
reply_address(mbx_id rid, struct mbx__box **rb)
{
    *rb = mbx__box_slot(rid);
    if (reply_named_box == rid)
        return 0;
    char name[MBX_NAME_MAX + 1];
    snprintf(name, sizeof name, ".reply/%d.%016llx", (int)getpid(),
             (unsigned long long)rid);
    char key[MBX__HOST_ADDRESS_MAX];
    mbx__host_key(name, key);
    mbx_host_opts o = {.ring_size = REPLY_RING_SIZE};
    int rc = mbx_register_host(rid, key, &o);
    if (rc < 0)
        return rc;
    snprintf(reply_name, sizeof reply_name, "%s", key);
    reply_named_box = rid;
    return 0;
}

/* The reply ring's header, where the awaited call is recorded. */
static struct mbx__ring_hdr *
reply_ring(struct mbx__box *rb)
{
    return ((struct ring_feed *)atomic_load(&rb->feed))->rd->ring.hdr;
}

/* Waits for the reply to `corr`, looking every CALLEE_CHECK_MS whether the
 * callee (the reader of `name`) still lives. */
static int
await_remote_reply(struct mbx__box *rb, mbx_id rid, const char *name,
                   uint64_t corr, mbx_msg **reply, int64_t deadline)
{
    for (;;) {
        int64_t slice = mbx__deadline(CALLEE_CHECK_MS);
        int rc = mbx__call_await(rb, rid, corr, reply,
                                 slice < deadline ? slice : deadline);
        if (rc != MBX_ETIMEDOUT || mbx__now_ns() >= deadline)
            return rc;
        struct cached_writer *c;
        if (writer_get(name, &c) < 0)
            return MBX_ECLOSED;
        bool alive = mbx__writer_reader_alive(c->w, true);
        writer_put_back(c, !alive);
        if (!alive)
            return MBX_ECLOSED;
    }
}

int
mbx__host_call(const char *name, mbx_msg **req, mbx_msg **reply, int timeout_ms)
{
    mbx_id id, rid;
    if (read_here(name, &id))
        return mbx_call(id, req, reply, timeout_ms);
    struct mbx__box *rb = NULL;
    int rc = mbx__call_reply_box(&rid);
    if (rc == 0)
        rc = reply_address(rid, &rb);
    if (rc < 0)
        return rc;
    int64_t deadline = mbx__deadline(timeout_ms);
    uint64_t corr = mbx__call_next_corr();
    mbx_msg *m = *req;
    struct mbx__rec_view v = view_of(m, reply_name);
    v.role = MBX__CALL;
    v.corr = corr;
    atomic_store(&reply_ring(rb)->awaiting_corr, corr);
    rc = put_to(name, &v, deadline, 0);
    if (rc == 0) {
        mbx_msg_free(m);
        *req = NULL;
        rc = await_remote_reply(rb, rid, name, corr, reply, deadline);
    }
    atomic_store(&reply_ring(rb)->awaiting_corr, 0);
    return rc;
}

int
mbx__host_reply(const char *from, uint64_t corr, mbx_msg *m)
{
    struct mbx__address a;
    if (!from || host_name_of(from, &a) < 0)
        return MBX_ENOENT;
    struct mbx__rec_view v = view_of(m, NULL);
    v.corr = corr;
    int rc = put_to(a.name, &v, 0, corr);
    if (rc == MBX_EMSGSIZE)
        return rc;
    if (rc < 0)
        return MBX_ENOENT;
    mbx_msg_free(m);
    return 0;
}
