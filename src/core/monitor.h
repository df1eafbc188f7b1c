/* Monitors: who is told when a mailbox is destroyed. */
#ifndef MBX_CORE_MONITOR_H
#define MBX_CORE_MONITOR_H

#include "core/mailbox.h"

/* One watcher of one mailbox, linked in the target slot's list under the
 * slot's lock. User monitors live on the heap; the monitor that guards a
 * call lives on the caller's stack for the duration of the call. */
struct mbx__monitor {
    struct mbx__monitor *next, *prev;
    mbx_id target;
    mbx_id watcher;
    uint64_t corr; /* 0: a user monitor ("DOWN"); else the guarded call */
    int on_heap;
    int linked; /* guarded by the target slot's lock */
};

/* Links e into the monitors of `target`. Returns 0, or MBX_ENOENT if the
 * target is already dead (e is then not linked). */
int mbx__monitor_link(mbx_id target, struct mbx__monitor *e);

/* The same for a target slot b that the caller has already pinned with
 * mbx__box_acquire (so it cannot be destroyed before e is linked). */
void mbx__monitor_link_pinned(struct mbx__box *b, mbx_id target,
                              struct mbx__monitor *e);

/* Unlinks e if it is still linked (destroy may have fired it already). */
void mbx__monitor_unlink(struct mbx__monitor *e);

/* Tells every watcher that the mailbox `id` in slot b is gone, and empties
 * the list. Called by destroy once no operation is inside the slot. */
void mbx__monitors_fire(struct mbx__box *b, mbx_id id);

#endif
