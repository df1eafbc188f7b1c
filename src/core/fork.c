/* Fork safety: the library's process-wide locks are held across fork. */
#include "core/fork.h"

#include <pthread.h>

/* Locks are taken in one fixed order. No path of the library holds one of
 * them while taking another, so any order is deadlock-free; fixing one
 * keeps it that way if that changes. */
unsigned mbx__fork_generation;

static void
before_fork(void)
{
    mbx__net_lock_all();
    mbx__dispatch_lock_all();
    mbx__host_lock_all();
    mbx__tasks_lock_all();
    mbx__registry_lock_all();
    mbx__table_lock_all();
    mbx__pool_lock_all();
}

static void
after_fork(int in_child)
{
    mbx__pool_unlock_all(in_child);
    mbx__table_unlock_all(in_child);
    mbx__registry_unlock_all(in_child);
    mbx__tasks_unlock_all(in_child);
    if (in_child)
        mbx__fork_generation++;
    mbx__host_unlock_all(in_child);
    mbx__dispatch_unlock_all(in_child);
    mbx__net_unlock_all(in_child);
}

static void
after_fork_parent(void)
{
    after_fork(0);
}

static void
after_fork_child(void)
{
    after_fork(1);
}

static void
register_fork_handlers(void)
{
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
}

void
mbx__fork_safety(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_fork_handlers);
}
