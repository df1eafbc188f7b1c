/*
 * Feeds: a source of messages outside the mailbox's own queue, attached to
 * one mailbox. The host layer attaches its ring this way, so a host
 * mailslot is received from with the same mbx_recv as anything else.
 *
 * The core asks the feed whether messages wait, has it move them into the
 * mailbox's inboxes when the queue is empty, and parks the mailbox's
 * receivers on the feed's futex word, which the feed's producers (in other
 * processes) can wake. Every in-process producer wakes that word too.
 */
#ifndef MBX_CORE_FEED_H
#define MBX_CORE_FEED_H

#include <stdbool.h>
#include <stddef.h>

#include "platform/platform.h"

struct mbx__box;
struct mbx__feed;

struct mbx__feed_ops {
    /* True when messages may wait in the feed. Any thread, cheap. */
    bool (*pending)(struct mbx__feed *f);
    /* True when an urgent message may wait in the feed, behind others.
     * Consumer lock held. */
    bool (*urgent_pending)(struct mbx__feed *f);
    /* Moves up to `max` messages into the inboxes of b with
     * mbx__box_inbox_append. Consumer lock held. Returns how many. */
    size_t (*pump)(struct mbx__feed *f, struct mbx__box *b, size_t max);
    /* Wakes the receivers parked on the feed's word. */
    void (*wake)(struct mbx__feed *f);
    /* A pollable fd that becomes readable when the feed is armed and a
     * message arrives; made on first call. Returns the fd or an error. */
    int (*bell)(struct mbx__feed *f);
    /* Empties the bell and arms it for the next arrival. */
    void (*arm)(struct mbx__feed *f);
    /* Detaches from the mailbox's name (writers are refused from now on);
     * messages already in the feed stay receivable. */
    void (*release)(struct mbx__feed *f);
    /* Frees the feed. No thread uses it any more. */
    void (*close)(struct mbx__feed *f);
};

struct mbx__feed {
    const struct mbx__feed_ops *ops;
    _Atomic uint32_t *seq;     /* futex word receivers park on (shared) */
    _Atomic uint32_t *waiters; /* receivers parked, as the feed counts them */
};

#endif
