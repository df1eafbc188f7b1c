/*
 * Fork safety. A fork copies only the forking thread; a lock that another
 * thread held at that instant would stay locked in the child forever. So
 * around every fork the library takes its process-wide locks (the slot
 * table, the registry, the task table, the pool's depots) and releases them
 * on both sides. Per-mailbox locks are not covered: in the child, use
 * mailboxes it creates, or ones only the forking thread was using.
 *
 * Each module that owns a process-wide lock provides a function to take it
 * and one to release it after the fork, on both sides. The child's only
 * thread is the copy of the one that took the locks, so it may unlock the
 * mutexes; the registry's lock is our own futex rwlock, which the child
 * resets (glibc's rwlock would treat an unlock in the child, whose thread
 * id changed, as a reader's). fork.c calls them in one fixed order.
 */
#ifndef MBX_CORE_FORK_H
#define MBX_CORE_FORK_H

/* Installs the fork handlers, once per process. Called by mbx_create, which
 * every use of the in-process layer reaches before it could hold one of the
 * locks, and by the host layer before it maps a ring (a constructor would
 * not do: the linker drops an object file from a static library when
 * nothing refers to it). */
void mbx__fork_safety(void);

void mbx__table_lock_all(void); /* mailbox.c */
void mbx__table_unlock_all(int in_child);
void mbx__registry_lock_all(void); /* registry.c */
void mbx__registry_unlock_all(int in_child);
void mbx__tasks_lock_all(void); /* task.c */
void mbx__tasks_unlock_all(int in_child);
void mbx__pool_lock_all(void); /* pool.c */
void mbx__pool_unlock_all(int in_child);
void mbx__host_lock_all(void); /* host/send.c: feeds, writers, endpoints */
void mbx__host_unlock_all(int in_child);
void mbx__dispatch_lock_all(void); /* dispatch/dispatcher.c */
void mbx__dispatch_unlock_all(int in_child);
void mbx__net_lock_all(void); /* net/io.c: the I/O thread's state */
void mbx__net_unlock_all(int in_child);

/* Bumped in every child after fork: state stamped with another value was
 * inherited from the parent. */
extern unsigned mbx__fork_generation;

#endif
