/*
 * A small mutex on one futex word (4 bytes, zero-initialised = unlocked), for
 * places where pthread_mutex_t would not fit, such as the per-mailbox lock
 * that must keep an idle mailbox within 256 bytes. States: 0 unlocked,
 * 1 locked, 2 locked with (possible) sleepers.
 */
#ifndef MBX_PLATFORM_LOCK_H
#define MBX_PLATFORM_LOCK_H

#include "platform/platform.h"

typedef struct mbx__lock {
    _Atomic uint32_t state;
} mbx__lock;

/* Takes the lock, sleeping while another thread holds it. */
static inline void
mbx__lock_take(mbx__lock *l)
{
    uint32_t c = 0;
    if (atomic_compare_exchange_strong(&l->state, &c, 1))
        return;
    /* Contended: mark "sleepers" and sleep until we take it as 0 -> 2. */
    if (c != 2)
        c = atomic_exchange(&l->state, 2);
    while (c != 0) {
        mbx__futex_wait(&l->state, 2, MBX__NEVER);
        c = atomic_exchange(&l->state, 2);
    }
}

/* Releases the lock, waking one sleeper if there may be one. */
static inline void
mbx__lock_drop(mbx__lock *l)
{
    if (atomic_exchange(&l->state, 0) == 2)
        mbx__futex_wake(&l->state, 1);
}

#endif
