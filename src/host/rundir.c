/* The runtime directory: where it is, its safety, file names in it. */
#include "host/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mbx/mbx.h"

/* Creates `path` (mode 0700) if missing and opens it, checking that it is
 * ours and closed to others unless `trusted`. */
static int
open_dir(const char *path, int trusted)
{
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return errno == EACCES ? MBX_EPERM : -errno;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errno == EACCES ? MBX_EPERM : -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    if (!trusted && (st.st_uid != geteuid() || (st.st_mode & 0022))) {
        close(fd);
        return MBX_EPERM;
    }
    return fd;
}

int
mbx__rundir_open(void)
{
    const char *env = getenv("MBX_RUNTIME_DIR");
    if (env && *env)
        return open_dir(env, 1);
    char path[PATH_MAX];
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    int n = xdg && *xdg ? snprintf(path, sizeof path, "%s/mbx", xdg)
                        : snprintf(path, sizeof path, "/tmp/mbx-%u",
                                   (unsigned)geteuid());
    if (n < 0 || (size_t)n >= sizeof path)
        return MBX_EINVAL;
    return open_dir(path, 0);
}

int
mbx__rundir_share_with_group(int dirfd)
{
    struct stat st;
    if (fstat(dirfd, &st) < 0)
        return -errno;
    if ((st.st_mode & 0010) || st.st_uid != geteuid())
        return 0; /* already searchable, or not ours to change */
    return fchmod(dirfd, (st.st_mode & 07777) | 0010) < 0 ? -errno : 0;
}

static uint64_t
fnv1a(const char *s, uint64_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static int
plain_byte(unsigned char c, int first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '_' || c == '-')
        return 1;
    return c == '.' && !first;
}

void
mbx__rundir_file_name(const char *name, const char *suffix, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t room = MBX__FILE_NAME_MAX - strlen(suffix) - 1, n = 0;
    /* File names are limited to 255 bytes; keep well inside. */
    if (room > 200)
        room = 200;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (n + 3 > room) {
            snprintf(out, MBX__FILE_NAME_MAX, "#%016llx%016llx%s",
                     (unsigned long long)fnv1a(name, 14695981039346656037ull),
                     (unsigned long long)fnv1a(name, 0x6d62782d6e616d65ull),
                     suffix);
            return;
        }
        if (plain_byte(*p, p == (const unsigned char *)name)) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    snprintf(out + n, MBX__FILE_NAME_MAX - n, "%s", suffix);
}
