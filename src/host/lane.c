/* Lanes: liveness through open-file-description locks. */
#include "host/lane.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "host/ring.h"

int
mbx__lock_byte(int fd, off_t byte, short type)
{
    struct flock fl = {
        .l_type = type, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

bool
mbx__byte_held_elsewhere(int fd, off_t byte)
{
    struct flock fl = {
        .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1};
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return true;
    return fl.l_type != F_UNLCK;
}

int
mbx__lane_take(int fd, off_t base, uint32_t count, _Atomic uint32_t *nonces,
               uint32_t *lane, uint64_t *token)
{
    /* Start where this pid points, so processes rarely try the same. */
    uint32_t start = (uint32_t)getpid() % count;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t l = (start + i) % count;
        int rc = mbx__lock_byte(fd, base + l, F_WRLCK);
        if (rc == -EAGAIN || rc == -EACCES)
            continue;
        if (rc < 0)
            return rc;
        uint32_t nonce = atomic_load(&nonces[l]) + 1;
        if (nonce == 0)
            nonce = 1;
        atomic_store(&nonces[l], nonce);
        *lane = l;
        *token = mbx__ring_token(l, nonce);
        return 0;
    }
    return MBX_EAGAIN;
}

bool
mbx__lane_holder_dead(int probe_fd, uint64_t token, uint64_t own, off_t base,
                      uint32_t count, _Atomic uint32_t *nonces)
{
    uint32_t lane = (uint32_t)token, nonce = (uint32_t)(token >> 32);
    if (token == own)
        return false; /* another thread of this process */
    if (lane >= count || atomic_load(&nonces[lane]) != nonce)
        return true; /* not a token of a current holder */
    return !mbx__byte_held_elsewhere(probe_fd, base + lane);
}
