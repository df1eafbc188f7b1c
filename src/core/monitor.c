/* Monitors: DOWN messages for watchers, and call-guards for callers. */
#include "core/monitor.h"

#include <stdlib.h>

void
mbx__monitor_link_pinned(struct mbx__box *b, mbx_id target,
                         struct mbx__monitor *e)
{
    e->target = target;
    mbx__lock_take(&b->lock);
    e->prev = NULL;
    e->next = b->monitors;
    if (e->next)
        e->next->prev = e;
    b->monitors = e;
    e->linked = 1;
    mbx__lock_drop(&b->lock);
}

int
mbx__monitor_link(mbx_id target, struct mbx__monitor *e)
{
    struct mbx__box *b;
    /* Pinned, the target cannot reach mbx__monitors_fire before e is
     * linked, so e is always fired or unlinked, never forgotten. */
    int rc = mbx__box_acquire(target, &b);
    if (rc < 0)
        return rc;
    mbx__monitor_link_pinned(b, target, e);
    mbx__box_release(b);
    return 0;
}

/* Removes e from the list. Slot lock held. */
static void
list_remove(struct mbx__box *b, struct mbx__monitor *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        b->monitors = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->linked = 0;
}

void
mbx__monitor_unlink(struct mbx__monitor *e)
{
    /* The slot's memory outlives its mailbox, so its lock is safe to take
     * even if the target was destroyed and the slot reused meanwhile. */
    struct mbx__box *b = mbx__box_slot(e->target);
    mbx__lock_take(&b->lock);
    if (e->linked)
        list_remove(b, e);
    mbx__lock_drop(&b->lock);
}

void
mbx__monitors_fire(struct mbx__box *b, mbx_id id)
{
    mbx__lock_take(&b->lock);
    struct mbx__monitor *e;
    while ((e = b->monitors)) {
        list_remove(b, e);
        /* Notices are sent under the lock: a call-guard on the caller's
         * stack must not be read after its caller could have returned. */
        mbx_msg *m = e->corr ? mbx__msg_notice("", MBX__CALL_ENDED, e->corr, id)
                             : mbx__msg_notice("DOWN", MBX__PLAIN, 0, id);
        mbx__send_notice(e->watcher, m);
        if (e->on_heap)
            free(e);
    }
    mbx__lock_drop(&b->lock);
}

int
mbx_monitor(mbx_id watcher, mbx_id target)
{
    struct mbx__box *w;
    int rc = mbx__box_acquire(watcher, &w);
    if (rc < 0)
        return rc;
    mbx__box_release(w);
    struct mbx__monitor *e = calloc(1, sizeof *e);
    if (!e)
        return MBX_ENOMEM;
    e->watcher = watcher;
    e->on_heap = 1;
    if (mbx__monitor_link(target, e) < 0) {
        /* Already dead: the watcher learns it at once. */
        free(e);
        mbx_msg *m = mbx__msg_notice("DOWN", MBX__PLAIN, 0, target);
        if (!m)
            return MBX_ENOMEM;
        mbx__send_notice(watcher, m);
    }
    return 0;
}

int
mbx_demonitor(mbx_id watcher, mbx_id target)
{
    struct mbx__box *b = mbx__box_slot(target);
    if (!b)
        return MBX_ENOENT;
    struct mbx__monitor *found = NULL;
    mbx__lock_take(&b->lock);
    for (struct mbx__monitor *e = b->monitors; e; e = e->next) {
        if (e->on_heap && e->target == target && e->watcher == watcher) {
            list_remove(b, e);
            found = e;
            break;
        }
    }
    mbx__lock_drop(&b->lock);
    free(found);
    return found ? 0 : MBX_ENOENT;
}
