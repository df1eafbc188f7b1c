/* mbx_slot_list: the live host mailslots of the runtime directory. */
#include <dirent.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "host/endpoint.h"

/* Fills *info from the ring file `file` if its reader is alive. Returns
 * true when it is. `name` receives the name (info->name points to it). */
static bool
describe(int dirfd, const char *file, mbx_slot_info *info, char *name)
{
    int fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    struct mbx__ring_hdr h; /* a snapshot of the header */
    bool ok = pread(fd, &h, sizeof h, 0) == (ssize_t)sizeof h &&
              h.magic == MBX__RING_MAGIC && h.version == MBX__RING_VERSION &&
              atomic_load(&h.state) == MBX__RING_LIVE;
    if (ok) {
        /* The reader holds byte 0 while it lives. */
        struct flock fl = {
            .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
        ok = fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
    }
    close(fd);
    if (!ok)
        return false;
    memcpy(name, h.name, MBX_NAME_MAX);
    name[MBX_NAME_MAX] = '\0';
    uint64_t puts = atomic_load(&h.puts), gets = atomic_load(&h.gets);
    uint64_t head = atomic_load(&h.head), tail = atomic_load(&h.tail);
    *info = (mbx_slot_info){
        .name = name,
        .pid = h.pid,
        .queued = puts > gets ? puts - gets : 0,
        .queued_bytes = tail - head <= h.data_size ? tail - head : h.data_size,
        .ring_size = h.data_size,
        .dropped = atomic_load(&h.dropped),
        .mode = h.mode,
    };
    return true;
}

/* True for a file name ending in ".ring". */
static bool
is_ring_file(const char *file)
{
    size_t n = strlen(file);
    return n > 5 && strcmp(file + n - 5, ".ring") == 0;
}

int
mbx_slot_list(int (*fn)(const mbx_slot_info *info, void *ctx), void *ctx)
{
    if (!fn)
        return MBX_EINVAL;
    int dirfd = mbx__rundir_open();
    if (dirfd < 0)
        return dirfd;
    DIR *d = fdopendir(dirfd);
    if (!d) {
        close(dirfd);
        return MBX_ENOMEM;
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        mbx_slot_info info;
        char name[MBX_NAME_MAX + 1];
        if (is_ring_file(e->d_name) && describe(dirfd, e->d_name, &info, name))
            rc = fn(&info, ctx);
    }
    closedir(d);
    return rc;
}
