/*
 * The host scope as the core sees it: delivering to a host mailslot by
 * name, calls and replies that cross processes. (Registering a host name
 * is the public mbx_register_host.)
 */
#ifndef MBX_HOST_HOST_H
#define MBX_HOST_HOST_H

#include <stdint.h>

#include "mbx/mbx.h"

/* Room for a host address: "//./" + name + NUL. */
#define MBX__HOST_ADDRESS_MAX (4 + MBX_NAME_MAX + 1)

/* Sends *m to the host mailslot `name` (without "//./"): straight to the
 * mailbox when this process reads the name, else through its ring. As
 * mbx_send_to. */
int mbx__host_send(const char *name, mbx_msg **m, int timeout_ms);

/* Calls the host mailslot `name`, as mbx_call_to. */
int mbx__host_call(const char *name, mbx_msg **req, mbx_msg **reply,
                   int timeout_ms);

/* Delivers m (a reply or a call-ended notice, its role set) to the caller
 * of a request that came from another process, whose reply address is
 * `from`. Returns 0 (m taken) or MBX_ENOENT (the caller no longer waits
 * for `corr`, or is gone; m still the caller's). Never blocks. */
int mbx__host_reply(const char *from, uint64_t corr, mbx_msg *m);

struct mbx__ring;

/* The ring read by the mailbox `id` of this process. Returns 0 and *out
 * (valid while the mailbox lives), MBX_ENOENT (dead id) or MBX_EINVAL (it
 * reads no ring). */
int mbx__host_reader_ring(mbx_id id, const struct mbx__ring **out);

/* Writes the registry key of host name `name`: "//./name". */
void mbx__host_key(const char *name, char *key);

#endif
