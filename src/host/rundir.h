/*
 * The runtime directory, where host mailslots live: one ring file per name
 * ("<encoded name>.ring") and, once a reader waits through poll, its
 * doorbell FIFO ("<encoded name>.bell").
 *
 * Location: $MBX_RUNTIME_DIR if set (trusted as given), else
 * $XDG_RUNTIME_DIR/mbx, else /tmp/mbx-UID. The last two are created with
 * mode 0700 and must be directories owned by this user that no one else
 * may write, or they are refused (someone could have planted them).
 */
#ifndef MBX_HOST_RUNDIR_H
#define MBX_HOST_RUNDIR_H

#include <stddef.h>

/* Room for an encoded file name with its suffix and NUL. */
#define MBX__FILE_NAME_MAX 256

/* Opens the runtime directory, creating it if needed. Returns a
 * close-on-exec directory fd, MBX_EPERM if it is not safe to use, or a
 * negative errno. */
int mbx__rundir_open(void);

/* Makes the runtime directory searchable by its group (for mode 0660
 * mailslots). Returns 0 or a negative errno. */
int mbx__rundir_share_with_group(int dirfd);

/* Writes the file name of mailslot `name` with `suffix` (".ring", ".bell")
 * into out (MBX__FILE_NAME_MAX bytes). Bytes outside [A-Za-z0-9_.-] (and a
 * leading '.') are written %XX, so '/' becomes %2F; a name whose encoding
 * would be too long becomes '#' and a 128-bit hash of it (the ring header
 * holds the real name, which is checked on open). */
void mbx__rundir_file_name(const char *name, const char *suffix, char *out);

#endif
