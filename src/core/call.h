/* Call/reply: synchronous requests over mailboxes. */
#ifndef MBX_CORE_CALL_H
#define MBX_CORE_CALL_H

#include "core/msg.h"

/* Tells the caller of an unanswered request that no reply will come (the
 * request is being freed). Marks the request answered. */
void mbx__call_abandon(mbx_msg *req);

struct mbx__box;

/* The calling thread's reply mailbox, created on first use (and afresh in
 * a child after fork). Returns 0 and its id, or an error of mbx_create. */
int mbx__call_reply_box(mbx_id *out);

/* A new correlation number for a call of this thread. */
uint64_t mbx__call_next_corr(void);

/* Waits on the reply mailbox (rb, rid) for the reply to `corr` until the
 * deadline, discarding leftovers of earlier calls. Returns 0 and *reply;
 * MBX_ETIMEDOUT; MBX_ECLOSED (the call ended unanswered). */
int mbx__call_await(struct mbx__box *rb, mbx_id rid, uint64_t corr,
                    mbx_msg **reply, int64_t deadline);

#endif
