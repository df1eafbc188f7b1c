/*
 * Routing: from an address to the layer that delivers it. In-process names
 * and id addresses are delivered here, host mailslots by the host layer,
 * network names by the network layer; other schemes are not supported.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/address.h"
#include "core/mailbox.h"
#include "host/host.h"
#include "net/net.h"

/* The address each thread parsed last, and what it parsed to: parsing is
 * pure, and a stream of sends usually goes to one address. */
static _Thread_local char last_text[MBX_NAME_MAX + 1];
static _Thread_local struct mbx__address last_parsed;

/* Parses an address (or recalls the thread's last parse of it). */
static int
parse(const char *address, struct mbx__address *a)
{
    if (address && last_text[0] && strcmp(address, last_text) == 0) {
        *a = last_parsed;
        return 0;
    }
    int rc = mbx__address_parse(address, a);
    if (rc == 0 && strlen(address) <= MBX_NAME_MAX) {
        strcpy(last_text, address);
        last_parsed = *a;
    }
    return rc;
}

/* Parses an address and, for this process's scopes, resolves it to a
 * mailbox id. Returns 0, or an error; a->scope says which layer. */
static int
resolve(const char *address, struct mbx__address *a, mbx_id *out)
{
    int rc = parse(address, a);
    if (rc < 0)
        return rc;
    switch (a->scope) {
    case MBX__SCOPE_LOCAL:
        return mbx_whereis(a->name, out);
    case MBX__SCOPE_ID:
        *out = a->id;
        return 0;
    case MBX__SCOPE_HOST:
    case MBX__SCOPE_NET:
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
    struct mbx__address a;
    mbx_id id;
    int rc = resolve(address, &a, &id);
    if (rc < 0)
        return rc;
    if (a.scope == MBX__SCOPE_HOST)
        return mbx__host_send(a.name, m, timeout_ms);
    if (a.scope == MBX__SCOPE_NET)
        return mbx__net_send(&a, m, timeout_ms);
    return mbx_send(id, m, timeout_ms);
}

int
mbx_call_to(const char *address, mbx_msg **req, mbx_msg **reply, int timeout_ms)
{
    if (!req || !*req || !reply || (*req)->role == MBX__CALL)
        return MBX_EINVAL;
    struct mbx__address a;
    mbx_id id;
    int rc = resolve(address, &a, &id);
    if (rc < 0)
        return rc;
    if (a.scope == MBX__SCOPE_HOST)
        return mbx__host_call(a.name, req, reply, timeout_ms);
    if (a.scope == MBX__SCOPE_NET)
        return mbx__net_call(&a, req, reply, timeout_ms);
    return mbx_call(id, req, reply, timeout_ms);
}

char *
mbx_id_format(mbx_id id, char *buf)
{
    snprintf(buf, MBX_ID_ADDRESS_LEN, "@%016" PRIx64, id);
    return buf;
}
