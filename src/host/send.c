/*
 * The writers' side of the host scope: sending to a host mailslot by name,
 * through a per-process cache of connections to readers' rings (each
 * thread keeps the one it used last).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fork.h"
#include "core/mailbox.h"
#include "core/registry.h"
#include "host/endpoint.h"
#include "host/host.h"
#include "host/internal.h"

void
mbx__host_key(const char *name, char *key)
{
    snprintf(key, MBX__HOST_ADDRESS_MAX, "//./%s", name);
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
    mbx__feeds_lock_all();
    pthread_mutex_lock(&cache_lock);
    mbx__endpoints_lock_all();
}

void
mbx__host_unlock_all(int in_child)
{
    /* First the endpoints: in the child, their fds close (and readers
     * are disowned) before anything else frees them. */
    mbx__endpoints_unlock_all(in_child);
    mbx__feeds_unlock_all(in_child);
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

struct mbx__rec_view
mbx__host_view_of(const mbx_msg *m, const char *from)
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
int
mbx__host_put(const char *name, const struct mbx__rec_view *v, int64_t deadline,
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
bool
mbx__host_read_here(const char *name, mbx_id *id)
{
    if (!mbx__host_reads_any())
        return false;
    char key[MBX__HOST_ADDRESS_MAX];
    mbx__host_key(name, key);
    return mbx__registry_lookup(key, id) == 0;
}

int
mbx__host_send(const char *name, mbx_msg **m, int timeout_ms)
{
    mbx_id id;
    if (mbx__host_read_here(name, &id))
        return mbx_send(id, m, timeout_ms);
    struct mbx__rec_view v = mbx__host_view_of(*m, (*m)->from);
    int rc = mbx__host_put(name, &v, mbx__deadline(timeout_ms), 0);
    if (rc == 0) {
        mbx_msg_free(*m);
        *m = NULL;
    }
    return rc;
}

bool
mbx__host_reader_alive(const char *name)
{
    struct cached_writer *c;
    if (writer_get(name, &c) < 0)
        return false;
    bool alive = mbx__writer_reader_alive(c->w, true);
    writer_put_back(c, !alive);
    return alive;
}
