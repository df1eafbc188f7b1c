/*
 * Lanes: who is alive, told by file locks. A process that writes to (or,
 * for the dispatcher, reads from) a shared file takes one byte of a range
 * of it, a *lane*, with an open-file-description lock, and writes a fresh
 * nonce for that lane into shared memory. The kernel drops the lock when
 * the last fd of that open file description closes, however the process
 * ended, so "is the holder of lane L with nonce N alive?" needs no pid (pids
 * are reused) and no heartbeat. A lane and its nonce make a lock token
 * (mbx__ring_token) for the shared locks of ring.h.
 */
#ifndef MBX_HOST_LANE_H
#define MBX_HOST_LANE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Takes (F_WRLCK, F_RDLCK) or drops (F_UNLCK) the lock on one byte without
 * waiting. Returns 0 or -errno (-EAGAIN: someone else holds it). */
int mbx__lock_byte(int fd, off_t byte, short type);

/* True when an open file description other than fd's holds a lock on the
 * byte, or when that cannot be told (never declare a live peer dead). */
bool mbx__byte_held_elsewhere(int fd, off_t byte);

/* Takes a free lane among bytes [base, base + count) through fd (an open
 * file description of this process's own) and bumps its nonce in
 * nonces[lane]. Returns 0 with the lane and its token, MBX_EAGAIN when
 * every lane is taken, or -errno. */
int mbx__lane_take(int fd, off_t base, uint32_t count, _Atomic uint32_t *nonces,
                   uint32_t *lane, uint64_t *token);

/* True when the holder of `token` among lanes [base, base + count) is gone:
 * its lane has a new nonce, or nobody holds the lane (asked through
 * probe_fd). `own` is the caller's token: another thread of this process is
 * alive. */
bool mbx__lane_holder_dead(int probe_fd, uint64_t token, uint64_t own,
                           off_t base, uint32_t count,
                           _Atomic uint32_t *nonces);

#endif
