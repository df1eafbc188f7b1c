/*
 * Call and reply between processes. A call to another process carries the
 * address of the calling thread's reply mailbox, which gets a host name of
 * its own on the thread's first such call ("//./.reply/PID.ID"). The reply
 * ring's header records which call is awaited, so a late reply is refused
 * as it is in-process.
 */
#include <stdio.h>
#include <unistd.h>

#include "core/call.h"
#include "core/mailbox.h"
#include "host/host.h"
#include "host/internal.h"

/* While waiting for a reply from another process, look this often whether
 * the callee is still there. */
#define CALLEE_CHECK_MS 50

/* Reply rings are small: one reply at a time is awaited. */
#define REPLY_RING_SIZE (64u << 10)

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
    return mbx__host_feed_hdr(rb);
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
        if (!mbx__host_reader_alive(name))
            return MBX_ECLOSED;
    }
}

int
mbx__host_call(const char *name, mbx_msg **req, mbx_msg **reply, int timeout_ms)
{
    mbx_id id, rid;
    if (mbx__host_read_here(name, &id))
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
    struct mbx__rec_view v = mbx__host_view_of(m, reply_name);
    v.role = MBX__CALL;
    v.corr = corr;
    atomic_store(&reply_ring(rb)->awaiting_corr, corr);
    rc = mbx__host_put(name, &v, deadline, 0);
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
    if (!from || mbx__host_name_of(from, &a) < 0)
        return MBX_ENOENT;
    struct mbx__rec_view v = mbx__host_view_of(m, NULL);
    v.corr = corr;
    int rc = mbx__host_put(a.name, &v, 0, corr);
    if (rc == MBX_EMSGSIZE)
        return rc;
    if (rc < 0)
        return MBX_ENOENT;
    mbx_msg_free(m);
    return 0;
}
