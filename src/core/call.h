/* Call/reply: synchronous requests over mailboxes. */
#ifndef MBX_CORE_CALL_H
#define MBX_CORE_CALL_H

#include "core/msg.h"

/* Tells the caller of an unanswered request that no reply will come (the
 * request is being freed). Marks the request answered. */
void mbx__call_abandon(mbx_msg *req);

#endif
