/*
 * Shared helpers for the benchmarks: clocks, medians, threads, ZeroMQ set-up
 * and the output format.
 *
 * Every benchmark measures mbx and its peer in the same process, in rounds
 * that alternate which one goes first, and reports the median of the
 * rounds. Each executable prints its own detailed table; the lines given to
 * bench_summary are also appended to the file named by $MBX_BENCH_SUMMARY,
 * from which bench/run prints one table for the whole suite.
 *
 * Tuning from the environment: MBX_BENCH_ROUNDS (default 5, at most
 * BENCH_MAX_ROUNDS), MBX_BENCH_TRIAL_MS (length of one timed trial, default
 * 300) and MBX_BENCH_PIN (1: pin the threads of two-thread benchmarks to
 * CPUs 0 and 1).
 */
#ifndef MBX_BENCH_COMMON_H
#define MBX_BENCH_COMMON_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <mbx/mbx.h>

/* Most rounds a benchmark keeps figures for. */
#define BENCH_MAX_ROUNDS 15

/* The body size used by every message benchmark. */
#define BENCH_MSG_SIZE 64

/* A sequence number that no producer ever sends: it marks the end. */
#define BENCH_END UINT64_MAX

/* The number of rounds to run. */
int bench_rounds(void);

/* The length of one timed trial, in nanoseconds. */
int64_t bench_trial_ns(void);

/* The monotonic clock, the calling thread's CPU clock and the process's CPU
 * clock, in nanoseconds. */
int64_t bench_now_ns(void);
int64_t bench_thread_cpu_ns(void);
int64_t bench_process_cpu_ns(void);

/* With MBX_BENCH_PIN=1 in the environment, pins the calling thread to CPU
 * `cpu` modulo the CPU count (the two threads of a pair go to CPUs 0 and 1);
 * otherwise does nothing and the scheduler places threads. */
void bench_pin(int cpu);

/* Machine load seen from /proc/stat: call bench_load_start before a
 * benchmark and bench_load_report after it, which prints how many CPUs
 * other processes kept busy meanwhile (and the steal time, in a VM). On a
 * shared machine this says whether a figure was taken in quiet or not. */
void bench_load_start(void);
void bench_load_report(void);

/* Sleeps for `ns` nanoseconds. */
void bench_sleep_ns(int64_t ns);

/* The median of n values (n >= 1). Reorders v. */
double bench_median(double *v, int n);

/* Prints "what: message" for an MBX_E* code and exits with status 2. */
void bench_fail_mbx(const char *what, int rc);

/* Exits with status 2 after a failed ZeroMQ call (rc < 0), naming it. */
void bench_check_zmq(int rc, const char *what);

/* Exits with status 2 when a benchmark found a wrong count or order. */
void bench_fail_count(const char *what, uint64_t expected, uint64_t got);

/* Starts a thread running fn(arg); exits on failure. */
void bench_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

/* Joins a thread started by bench_thread_start. */
void bench_thread_join(pthread_t t);

/* The process-wide ZeroMQ context, created on first use. */
void *bench_zmq_ctx(void);

/* Creates two connected inproc ZeroMQ sockets of the given types on a fresh
 * endpoint: *bound binds, *connected connects. Linger is 0 on both. The
 * sockets may be handed to other threads before first use. */
void bench_zmq_link(int bound_type, void **bound, int connected_type,
                    void **connected);

/* Closes a socket made by bench_zmq_link. */
void bench_zmq_close(void *sock);

/* A new 64-byte mbx message whose body starts with `seq`; exits when out of
 * memory. */
mbx_msg *bench_msg(uint64_t seq);

/* The sequence number at the start of a 64-byte body. */
uint64_t bench_seq_of(const void *body);

/* Writes `seq` at the start of a 64-byte buffer whose rest is filler. */
void bench_fill(unsigned char *buf, uint64_t seq);

/* mbx_send with no timeout; exits with status 2 on any error. */
void bench_send(mbx_id to, mbx_msg **m);

/* mbx_recv with no timeout; exits with status 2 on any error. */
mbx_msg *bench_recv(mbx_id self);

/* Receives one message made by bench_msg, frees it, returns its number. */
uint64_t bench_recv_seq(mbx_id self);

/* ZeroMQ round trips on a REQ or PAIR socket whose peer echoes each 64-byte
 * message: numbered sends and receives from `start` until trial_ns have
 * passed, each echo checked (a wrong number exits, naming `what`); then an
 * end marker. Returns the number of round trips. */
uint64_t bench_zmq_round_trips(void *sock, int64_t start, int64_t trial_ns,
                               const char *what);

/* Formatting into buf (at least 32 bytes): a rate ("12.3 M/s"), a
 * duration ("182 ns", "21.4 us", "1.25 ms"), a byte count ("256 B",
 * "244 MiB") and a factor ("3.21x"). Each returns buf. */
char *bench_fmt_rate(char *buf, double per_s);
char *bench_fmt_ns(char *buf, double ns);
char *bench_fmt_bytes(char *buf, double bytes);
char *bench_fmt_factor(char *buf, double x);

/* Prints a section heading. */
void bench_heading(const char *title);

/* Prints one round of a rate or duration benchmark: round number, mbx and
 * peer values already formatted. */
void bench_round(int round, const char *mbx, const char *peer);

/* Whether a figure meets its target, for the summary's last column. */
enum bench_met { BENCH_MET_NA = -1, BENCH_MET_NO = 0, BENCH_MET_YES = 1 };

/* Prints a result line and appends it to $MBX_BENCH_SUMMARY if set. `ratio`
 * is how many times better mbx is than the peer ("-" if there is no peer);
 * `target` states the goal in words. */
void bench_summary(const char *name, const char *mbx, const char *peer,
                   const char *ratio, const char *target, enum bench_met met);

#endif
