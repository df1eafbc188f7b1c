/* Messages: the internal layout of mbx_msg shared by the core modules. */
#ifndef MBX_CORE_MSG_H
#define MBX_CORE_MSG_H

#include <stdatomic.h>

#include "mbx/mbx.h"

/* A link in an intrusive queue; the first member of every queued object. */
struct mbx__node {
    _Atomic(struct mbx__node *) next;
};

/* What a message is to the call/reply machinery. */
enum mbx__role {
    MBX__PLAIN = 0,  /* an ordinary message */
    MBX__CALL,       /* a call request still waiting for its reply */
    MBX__ANSWERED,   /* a call request that was replied to (or abandoned) */
    MBX__REPLY,      /* a reply, matched to its call by corr */
    MBX__CALL_ENDED, /* notice: the callee is gone or dropped the request */
};

struct mbx_msg {
    struct mbx__node link; /* queue link; must stay first */
    const char *kind;      /* never NULL: inline storage or "" */
    void *body;
    size_t len;
    void (*free_body)(void *); /* NULL: body needs no freeing */
    char *from;                /* malloc'd reply address, or NULL */
    const char *origin;        /* network: the sender's host name, stored
                                * in the same allocation; else NULL */
    uint64_t corr;             /* call correlation; 0 when not a call */
    mbx_id reply_to;           /* the caller's reply mailbox for calls */
    unsigned flags;            /* MBX_MSG_* */
    uint16_t role;             /* enum mbx__role */
    uint8_t pool;              /* the pool size class of this allocation */
};

/* Casts between a queue node and its message. */
static inline mbx_msg *
mbx__msg_of(struct mbx__node *n)
{
    return (mbx_msg *)n;
}

/* New message with room for `len` body bytes inside the same allocation,
 * not yet filled in. Returns NULL when out of memory or kind is too long. */
mbx_msg *mbx__msg_alloc(const char *kind, size_t len);

/* A notice message (kind "DOWN" for monitors; empty for call endings) sent by
 * the library itself. Returns NULL when out of memory. */
mbx_msg *mbx__msg_notice(const char *kind, unsigned role, uint64_t corr,
                         mbx_id about);

#endif
