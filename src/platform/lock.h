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

/*
 * A reader-writer lock on one futex word, for the name registry: lookups
 * share it, changes take it alone. Unlike glibc's rwlock, a child after
 * fork may simply reset it (a plain atomic store) when the parent's fork
 * handler held it. Writers may starve under a stream of readers; changes to
 * the registry are rare. State: count of readers, or MBX__RW_WRITER, plus
 * MBX__RW_WAITERS when someone sleeps.
 */
#define MBX__RW_WRITER 0x80000000u
#define MBX__RW_WAITERS 0x40000000u

typedef struct mbx__rwlock {
    _Atomic uint32_t state;
} mbx__rwlock;

/* Sleeps until the state moves from `seen`, after marking sleepers. */
static inline void
mbx__rw_sleep(mbx__rwlock *l, uint32_t seen)
{
    if (!(seen & MBX__RW_WAITERS) &&
        !atomic_compare_exchange_strong(&l->state, &seen,
                                        seen | MBX__RW_WAITERS))
        return; /* it moved: look again */
    mbx__futex_wait(&l->state, seen | MBX__RW_WAITERS, MBX__NEVER);
}

static inline void
mbx__rw_read_take(mbx__rwlock *l)
{
    for (;;) {
        uint32_t s = atomic_load(&l->state);
        if (!(s & MBX__RW_WRITER)) {
            if (atomic_compare_exchange_weak(&l->state, &s, s + 1))
                return;
            continue;
        }
        mbx__rw_sleep(l, s);
    }
}

static inline void
mbx__rw_read_drop(mbx__rwlock *l)
{
    uint32_t s = atomic_fetch_sub(&l->state, 1) - 1;
    /* The last reader out wakes the sleepers (writers) if there are any;
     * if the state moved meanwhile, whoever moved it wakes them later. */
    if (s == MBX__RW_WAITERS &&
        atomic_compare_exchange_strong(&l->state, &s, 0))
        mbx__futex_wake(&l->state, INT32_MAX);
}

static inline void
mbx__rw_write_take(mbx__rwlock *l)
{
    for (;;) {
        uint32_t s = atomic_load(&l->state);
        if ((s & ~MBX__RW_WAITERS) == 0) {
            if (atomic_compare_exchange_weak(&l->state, &s, s | MBX__RW_WRITER))
                return;
            continue;
        }
        mbx__rw_sleep(l, s);
    }
}

static inline void
mbx__rw_write_drop(mbx__rwlock *l)
{
    if (atomic_exchange(&l->state, 0) & MBX__RW_WAITERS)
        mbx__futex_wake(&l->state, INT32_MAX);
}

/* In a child after fork, where the forking thread held it. */
static inline void
mbx__rw_reset(mbx__rwlock *l)
{
    atomic_store(&l->state, 0);
}

#endif
