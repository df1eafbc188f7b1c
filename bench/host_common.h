/*
 * Helpers of the host-scope benchmarks (host_latency, host_throughput),
 * which measure between two processes.
 *
 * The benchmark's own process only coordinates: it never calls mbx or
 * ZeroMQ, and for every trial forks two fresh children, one per side, which
 * set up their ends, measure, report their figures through a pipe and exit.
 * So no trial inherits another's state, and mbx and its peers start from
 * the same point.
 *
 * host_bench_init makes a private runtime directory (MBX_RUNTIME_DIR) and a
 * directory for ZeroMQ ipc endpoints, both removed at exit. A child that
 * does not finish within HOST_CHILD_LIMIT_S seconds is killed by SIGALRM and
 * the benchmark fails, naming it, instead of hanging.
 */
#ifndef MBX_BENCH_HOST_COMMON_H
#define MBX_BENCH_HOST_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common.h"

/* The most seconds a child may run before it counts as hung. */
#define HOST_CHILD_LIMIT_S 60

/* A sequence number no producer sends as data: a connection handshake. */
#define HOST_HELLO (UINT64_MAX - 1)

/* Creates the private runtime and ipc directories, sets MBX_RUNTIME_DIR
 * and arranges their removal at exit. Call first, before any fork. */
void host_bench_init(void);

/* The directory for ZeroMQ ipc endpoints. */
const char *host_ipc_dir(void);

/* A child process: forks; the child closes the fds in close_fds (n of them,
 * -1 entries skipped), arms the hang alarm, runs fn(arg) and _exits with
 * status 0. Returns the child's pid; exits on failure. */
pid_t host_fork(void (*fn)(void *), void *arg, const int *close_fds, int n);

/* Waits for both children of a trial; their CPU time (user + system) is
 * added to *cpu_ns when cpu_ns is not NULL. If either fails (non-zero
 * status or a signal), kills the other, says which failed and why, and
 * exits with status 2. */
void host_wait_pair(pid_t a, const char *a_what, pid_t b, const char *b_what,
                    int64_t *cpu_ns);

/* Makes a pipe; exits on failure. */
void host_pipe(int fds[2]);

/* Writes exactly len bytes; exits with status 2 on failure. */
void host_write_all(int fd, const void *p, size_t len);

/* Reads exactly len bytes. Returns 0, or -1 after saying why when the pipe
 * failed or ended early (the writing process died before writing). A
 * trial's results are read after host_wait_pair: they fit in the pipe. */
int host_read_all(int fd, void *p, size_t len, const char *what);

/* A new ZeroMQ socket of `type` in this process's context, with a linger
 * long enough for the end marker to leave before the socket closes. */
void *host_zmq_socket(int type);

/* Closes a socket made by host_zmq_socket and ends the context, flushing
 * what is still queued. */
void host_zmq_finish(void *sock);

/* mbx_send_to a host address, retrying while no reader holds the name yet
 * (MBX_ENOENT) for up to HOST_CHILD_LIMIT_S; exits on any other error. */
void host_send_to_waiting(const char *address, mbx_msg **m);

#endif
