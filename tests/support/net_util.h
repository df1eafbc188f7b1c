/*
 * Helpers shared by the network tests (test_net, test_net_fork,
 * test_net_hosts):
 *
 *  - child processes that die with the test and end themselves after the
 *    test's time limit, bounded waits for them, and pipes to drive them;
 *  - a multicast group and port of this test process's own, so that tests
 *    running in parallel on one machine never hear each other;
 *  - polling this process's network counters until one reaches a value,
 *    with a deadline;
 *  - a small LAN of network namespaces made for one test: three "hosts"
 *    joined by a bridge that lives in a fourth namespace, so nothing
 *    touches the machine's own network, and that is deleted after the
 *    test whatever happened in it.
 */
#ifndef MBX_TEST_NET_UTIL_H
#define MBX_TEST_NET_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mbx/mbx.h"

/* Sanitizer builds run smaller counts. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define NT_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define NT_SANITIZED 1
#endif
#endif
#ifndef NT_SANITIZED
#define NT_SANITIZED 0
#endif

/* The exit status nt_wait reports for a child killed by a signal, and for
 * one that did not end in time (it is then killed). */
#define NT_KILLED_BY(sig) (1000 + (sig))
#define NT_TIMED_OUT 2000

/* ---- the environment ----------------------------------------------------- */

/* Removes the MBX_* network variables from the environment, so that only
 * the options a test gives count. */
void nt_clean_env(void);

/* The test's time limit in seconds (MBX_TEST_TIMEOUT, default 120), as the
 * harness reads it. */
int nt_time_limit_s(void);

/* ---- child processes and pipes ------------------------------------------- */

/* Forks. The child is killed when the forking process dies and ends itself
 * (SIGALRM) after the test's time limit. */
pid_t nt_fork(void);

/* Waits at most timeout_ms for a child to end (it is killed after that).
 * Returns its exit status, NT_KILLED_BY(signal) or NT_TIMED_OUT. */
int nt_wait(pid_t pid, int timeout_ms);

/* Ends a child: flushes stdio and exits with status 0 without running
 * atexit handlers (the child stopped the network layer itself if it used
 * it). */
_Noreturn void nt_child_done(void);

/* A one-way pipe between processes. */
struct nt_chan {
    int rd, wr;
};

void nt_chan_open(struct nt_chan *c);
void nt_chan_close(struct nt_chan *c);

/* Writes n bytes. Returns 0 or -1. */
int nt_put(struct nt_chan *c, const void *p, size_t n);

/* Reads n bytes, waiting at most timeout_ms for each part. Returns 0, or -1
 * on timeout or end of file. */
int nt_get(struct nt_chan *c, void *p, size_t n, int timeout_ms);

/* One byte each way: nt_hear returns the byte or -1 after timeout_ms. */
void nt_tell(struct nt_chan *c, char ch);
int nt_hear(struct nt_chan *c, int timeout_ms);

/* ---- a group and port of the test's own ---------------------------------- */

struct nt_group {
    char group[64];
    int port;
};

/* An IPv4 multicast group (239.255.x.y) and a port (20000..31999) made
 * from this process's id and `variant` (0..3), so that parallel tests and
 * the variants of one test never share one. Children forked by the test
 * get the same values from the test's pid, which the test passes down. */
void nt_group_make(struct nt_group *g, long test_pid, int variant);

/* Network options for group g on the loopback interface. */
mbx_net_opts nt_opts_lo(const struct nt_group *g);

/* ---- network counters ---------------------------------------------------- */

/* Polls this process's network counters (every millisecond) until the
 * counter at byte offset `field` of mbx_net_stats is >= value (up != 0) or
 * <= value (up == 0), or timeout_ms passed. *st holds the last reading.
 * Returns true when the counter got there. */
bool nt_stat_wait(size_t field, uint64_t value, int up, int timeout_ms,
                  mbx_net_stats *st);

#define NT_STAT_REACH(field, value, timeout_ms, st)                            \
    nt_stat_wait(offsetof(mbx_net_stats, field), (value), 1, (timeout_ms), (st))
#define NT_STAT_FALL(field, value, timeout_ms, st)                             \
    nt_stat_wait(offsetof(mbx_net_stats, field), (value), 0, (timeout_ms), (st))

/* Prints the counters that are not zero, one line, after `label`. */
void nt_stat_print(const char *label, const mbx_net_stats *st);

/* Waits on an empty private mailbox for ms milliseconds: a poll interval
 * between two readings, never a stand-in for synchronisation. */
void nt_pause_ms(int ms);

/* ---- a LAN of network namespaces ----------------------------------------- */

#define NT_LAN_HOSTS 3

/* Host i lives in namespace ns[i]; its interface is "veth0" with address
 * 10.77.0.(i+1)/24, a multicast route (224.0.0.0/4) through it, IPv6
 * duplicate address detection off (so its link-local address is usable at
 * once) and lo up. The bridge "br0" (multicast snooping off: a plain
 * flooding switch) lives in namespace bridge. */
struct nt_lan {
    char ns[NT_LAN_HOSTS][48];
    char bridge[48];
    char addr[NT_LAN_HOSTS][16];
    bool made[NT_LAN_HOSTS + 1];
};

/* Makes the LAN, then forks: returns 1 in the child, which runs the test's
 * body (its checks count as the test's; it ends by returning from the test
 * function), and 0 in the parent after that child ended and the LAN was
 * deleted (whatever the child did; its exit status is checked). When the
 * namespaces cannot be made, prints why and fails the test. */
int nt_lan_guard(struct nt_lan *lan);

/* In a child: moves this process into host i's namespace. Call before any
 * network use of the library. */
void nt_lan_enter(const struct nt_lan *lan, int host);

#endif
