/*
 * Call/reply. Each calling thread owns a private reply mailbox, created on
 * its first call and destroyed when the thread exits. A request carries the
 * reply mailbox's id and a correlation number; the reply mailbox records
 * which correlation it is waiting for, so a late or second reply is refused
 * (MBX_ENOENT) instead of piling up. While it waits, the caller monitors the
 * callee, so the callee's destruction ends the call at once.
 */
#include <string.h>

#include "core/call.h"

#include <pthread.h>

#include "core/fork.h"
#include "core/mailbox.h"
#include "core/monitor.h"
#include "host/host.h"
#include "net/net.h"

static pthread_key_t reply_key;
static pthread_once_t reply_key_once = PTHREAD_ONCE_INIT;
static _Thread_local mbx_id reply_box;
static _Thread_local unsigned reply_box_fork_gen;
static _Thread_local uint64_t last_corr;

static void
reply_box_destroy(void *p)
{
    mbx_destroy((mbx_id)(uintptr_t)p);
}

static void
reply_key_make(void)
{
    pthread_key_create(&reply_key, reply_box_destroy);
}

int
mbx__call_reply_box(mbx_id *out)
{
    /* After fork the child's copy of the reply mailbox may carry the
     * parent's host name (which the child cannot read): start afresh. */
    if (reply_box && reply_box_fork_gen != mbx__fork_generation)
        reply_box = 0;
    if (!reply_box) {
        mbx_id id;
        int rc = mbx_create(&id, NULL);
        if (rc < 0)
            return rc;
        pthread_once(&reply_key_once, reply_key_make);
        if (pthread_setspecific(reply_key, (void *)(uintptr_t)id) != 0) {
            mbx_destroy(id);
            return MBX_ENOMEM;
        }
        reply_box = id;
        reply_box_fork_gen = mbx__fork_generation;
    }
    *out = reply_box;
    return 0;
}

/* Queues m for the caller of req if it still waits for req's reply.
 * Returns 0 (m taken) or MBX_ENOENT (m still the caller's). */
static int
deliver_to_caller(const mbx_msg *req, mbx_msg *m)
{
    /* A request from another process names its reply mailbox by address:
     * "//./.reply/..." on this host, "//HOST/.reply/..." on another. */
    if (!req->reply_to) {
        if (req->origin || (req->from && strncmp(req->from, "//./", 4) != 0))
            return mbx__net_reply(req->from, req->corr, m);
        return mbx__host_reply(req->from, req->corr, m);
    }
    struct mbx__box *b;
    int rc = mbx__box_acquire(req->reply_to, &b);
    if (rc < 0)
        return rc;
    rc = MBX_ENOENT;
    if (atomic_load(&b->awaiting_corr) == req->corr) {
        m->corr = req->corr;
        rc = mbx__box_push(b, req->reply_to, m, 0, true);
    }
    mbx__box_release(b);
    return rc;
}

void
mbx__call_abandon(mbx_msg *req)
{
    req->role = MBX__ANSWERED;
    mbx_msg *n = mbx__msg_notice("", MBX__CALL_ENDED, req->corr, 0);
    if (n && deliver_to_caller(req, n) < 0)
        mbx_msg_free(n);
}

int
mbx_reply(mbx_msg *req, mbx_msg **reply)
{
    if (!req || !reply || !*reply || (*reply)->role == MBX__CALL)
        return MBX_EINVAL;
    if (req->role != MBX__CALL)
        return MBX_EINVAL;
    req->role = MBX__ANSWERED;
    mbx_msg *r = *reply;
    r->role = MBX__REPLY;
    int rc = deliver_to_caller(req, r);
    if (rc < 0) {
        r->role = MBX__PLAIN;
        r->corr = 0;
        /* Too large for the caller's reply ring: still unanswered, so a
         * smaller reply may follow, or freeing it ends the call. */
        if (rc == MBX_EMSGSIZE)
            req->role = MBX__CALL;
        return rc;
    }
    *reply = NULL;
    return 0;
}

uint64_t
mbx__call_next_corr(void)
{
    return ++last_corr;
}

int
mbx__call_await(struct mbx__box *rb, mbx_id rid, uint64_t corr, mbx_msg **reply,
                int64_t deadline)
{
    for (;;) {
        mbx_msg *m;
        int rc = mbx__box_pop(rb, rid, NULL, &m, deadline);
        if (rc < 0)
            return rc == MBX_EAGAIN ? MBX_ETIMEDOUT : rc;
        if (m->corr == corr && m->role == MBX__REPLY) {
            m->role = MBX__PLAIN;
            m->corr = 0;
            *reply = m;
            return 0;
        }
        int ended = m->corr == corr && m->role == MBX__CALL_ENDED;
        mbx_msg_free(m);
        if (ended)
            return MBX_ECLOSED;
    }
}

int
mbx_call(mbx_id to, mbx_msg **req, mbx_msg **reply, int timeout_ms)
{
    if (!req || !*req || !reply || (*req)->role == MBX__CALL)
        return MBX_EINVAL;
    mbx_id rid;
    struct mbx__box *rb, *tb;
    int rc = mbx__call_reply_box(&rid);
    if (rc < 0)
        return rc;
    /* The reply mailbox belongs to this thread and lives until it exits. */
    rb = mbx__box_slot(rid);
    int64_t deadline = mbx__deadline(timeout_ms);
    uint64_t corr = mbx__call_next_corr();
    /* One pin on the callee covers linking the guard and the send. */
    if ((rc = mbx__box_acquire(to, &tb)) < 0)
        return rc;
    struct mbx__monitor guard = {.watcher = rid, .corr = corr};
    mbx__monitor_link_pinned(tb, to, &guard);
    mbx_msg *m = *req;
    m->role = MBX__CALL;
    m->corr = corr;
    m->reply_to = rid;
    atomic_store(&rb->awaiting_corr, corr);
    rc = mbx__box_push(tb, to, m, deadline, false);
    mbx__box_release(tb);
    if (rc < 0) {
        m->role = MBX__PLAIN;
        m->corr = 0;
        m->reply_to = 0;
    } else {
        *req = NULL;
        rc = mbx__call_await(rb, rid, corr, reply, deadline);
    }
    atomic_store(&rb->awaiting_corr, 0);
    mbx__monitor_unlink(&guard);
    return rc;
}
