/*
 * The platform layer: the few operating-system calls the rest of mbx uses.
 * These are the functions a port must implement; nothing outside
 * src/platform/ calls the OS for futexes, clocks, eventfds or CPU hints.
 */
#ifndef MBX_PLATFORM_H
#define MBX_PLATFORM_H

#include <stdatomic.h>
#include <stdint.h>

/* A monotonic deadline in nanoseconds; MBX__NEVER means no deadline. */
#define MBX__NEVER INT64_MAX

/* Nanoseconds on the monotonic clock. */
int64_t mbx__now_ns(void);

/* The monotonic clock at the kernel's tick resolution (a few ms): cheaper
 * to read, for checks that only need to happen "every so often". */
int64_t mbx__coarse_now_ns(void);

/* The deadline for timeout_ms from now: MBX__NEVER for a negative timeout,
 * 0 (already passed: "do not block") for a zero timeout. */
int64_t mbx__deadline(int timeout_ms);

/* Sleeps while *word == expected, until woken, the deadline passes or a
 * signal arrives. Returns 0 when woken or the value differed (callers always
 * re-check their condition), or MBX_ETIMEDOUT once the deadline has passed.
 * The word may be shared between threads of one process only. */
int mbx__futex_wait(_Atomic uint32_t *word, uint32_t expected,
                    int64_t deadline_ns);

/* Wakes up to n threads sleeping on word (n = INT32_MAX wakes all). */
void mbx__futex_wake(_Atomic uint32_t *word, int n);

/* As mbx__futex_wait and mbx__futex_wake, for a word in memory shared
 * between processes (a MAP_SHARED mapping). */
int mbx__futex_wait_shared(_Atomic uint32_t *word, uint32_t expected,
                           int64_t deadline_ns);
void mbx__futex_wake_shared(_Atomic uint32_t *word, int n);

/* A hint to the CPU inside a spin loop. */
static inline void
mbx__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Number of CPUs this process may run on (at least 1). */
int mbx__cpu_count(void);

/* Number of CPUs online on the machine (at least 1): what other processes
 * may run on, whatever this one is pinned to. */
int mbx__cpu_count_online(void);

/* A non-blocking, close-on-exec eventfd. Returns the fd, or MBX_ENOMEM when
 * the kernel has no memory or the process no file descriptor left. */
int mbx__eventfd_open(void);

/* Makes the eventfd readable. */
void mbx__eventfd_signal(int fd);

/* Consumes the eventfd's count, making it unreadable. */
void mbx__eventfd_drain(int fd);

/* A new, close-on-exec, level-triggered poll set (epoll): itself pollable,
 * readable while one of its members is. Returns the fd or MBX_ENOMEM. */
int mbx__poll_set_open(void);

/* Adds fd to the poll set for readability. Returns 0 or a negative errno. */
int mbx__poll_set_add(int set, int fd);

/* Closes an fd, ignoring EINTR. */
void mbx__fd_close(int fd);

#endif
