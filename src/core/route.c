/*
 * Routing: from an address to the layer that delivers it. In-process names
 * and id addresses are delivered here; host and network scopes belong to
 * later layers and are reported as not supported until those exist.
 */
#include <inttypes.h>
#include <stdio.h>

#include "core/address.h"
#include "core/mailbox.h"

/* Resolves an address to an in-process mailbox id. */
static int
resolve(const char *address, mbx_id *out)
{
    struct mbx__address a;
    int rc = mbx__address_parse(address, &a);
    if (rc < 0)
        return rc;
    switch (a.scope) {
    case MBX__SCOPE_LOCAL:
        return mbx_whereis(a.name, out);
    case MBX__SCOPE_ID:
        *out = a.id;
        return 0;
    default:
        return MBX_ENOTSUP;
    }
}

int
mbx_send_to(const char *address, mbx_msg **m, int timeout_ms)
{
    if (!m || !*m)
        return MBX_EINVAL;
    mbx_id id;
    int rc = resolve(address, &id);
    return rc < 0 ? rc : mbx_send(id, m, timeout_ms);
}

int
mbx_call_to(const char *address, mbx_msg **req, mbx_msg **reply, int timeout_ms)
{
    if (!req || !*req || !reply)
        return MBX_EINVAL;
    mbx_id id;
    int rc = resolve(address, &id);
    return rc < 0 ? rc : mbx_call(id, req, reply, timeout_ms);
}

char *
mbx_id_format(mbx_id id, char *buf)
{
    snprintf(buf, MBX_ID_ADDRESS_LEN, "@%016" PRIx64, id);
    return buf;
}
