/* The platform layer on Linux: futexes, the monotonic clock, eventfds. */
#include "platform/platform.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "mbx/mbx.h"

int64_t
mbx__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
mbx__coarse_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t
mbx__deadline(int timeout_ms)
{
    if (timeout_ms < 0)
        return MBX__NEVER;
    if (timeout_ms == 0)
        return 0;
    return mbx__now_ns() + (int64_t)timeout_ms * 1000000;
}

/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline, so
 * spurious wake-ups never stretch the total wait. `private_flag` is
 * FUTEX_PRIVATE_FLAG for a word seen by one process only, else 0. */
static int
futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns,
           int private_flag)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != MBX__NEVER) {
        if (mbx__now_ns() >= deadline_ns)
            return MBX_ETIMEDOUT;
        ts.tv_sec = deadline_ns / 1000000000;
        ts.tv_nsec = deadline_ns % 1000000000;
        tsp = &ts;
    }
    long rc =
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET | private_flag,
                expected, tsp, NULL, FUTEX_BITSET_MATCH_ANY);
    if (rc < 0 && errno == ETIMEDOUT)
        return MBX_ETIMEDOUT;
    return 0;
}

int
mbx__futex_wait(_Atomic uint32_t *word, uint32_t expected, int64_t deadline_ns)
{
    return futex_wait(word, expected, deadline_ns, FUTEX_PRIVATE_FLAG);
}

int
mbx__futex_wait_shared(_Atomic uint32_t *word, uint32_t expected,
                       int64_t deadline_ns)
{
    return futex_wait(word, expected, deadline_ns, 0);
}

void
mbx__futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n,
            NULL, NULL, 0);
}

void
mbx__futex_wake_shared(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

int
mbx__cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        return n > 0 ? n : 1;
    }
    return mbx__cpu_count_online();
}

int
mbx__cpu_count_online(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int
mbx__eventfd_open(void)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    /* Out of memory or out of file descriptors: either way, no resource. */
    return fd < 0 ? MBX_ENOMEM : fd;
}

void
mbx__eventfd_signal(int fd)
{
    uint64_t one = 1;
    while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

void
mbx__eventfd_drain(int fd)
{
    uint64_t n;
    while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
        ;
}

int
mbx__poll_set_open(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? MBX_ENOMEM : fd;
}

int
mbx__poll_set_add(int set, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(set, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

void
mbx__fd_close(int fd)
{
    if (fd >= 0)
        close(fd);
}
