/*
 * Addresses: the one grammar for every destination (DESIGN section 2).
 *
 *   worker                      this process: a registered name
 *   @00000001000000a3           this process: a mailbox id
 *   //./worker                  this host: the mailslot "worker"
 *   \\.\mailslot\worker         the same, Windows form ("mailslot" in any case)
 *   //STAR/worker, \\STAR\mailslot\w  (STAR = "*") every mailslot "worker" in
 *                               the default domain
 *   //X/worker, \\X\mailslot\w  every mailslot "worker" on host or domain X
 *   scheme://...                a later transport (reported as such)
 *
 * Pure parsing: no allocation, no I/O, never reads past the terminating NUL.
 */
#ifndef MBX_CORE_ADDRESS_H
#define MBX_CORE_ADDRESS_H

#include "mbx/mbx.h"

enum mbx__scope {
    MBX__SCOPE_LOCAL = 1, /* a name registered in this process */
    MBX__SCOPE_ID,        /* a mailbox id in this process */
    MBX__SCOPE_HOST,      /* a mailslot on this host */
    MBX__SCOPE_NET,       /* mailslots on the network (host "*" or X) */
    MBX__SCOPE_URI,       /* another transport: scheme://... */
};

struct mbx__address {
    int scope;                   /* enum mbx__scope */
    mbx_id id;                   /* MBX__SCOPE_ID */
    char host[MBX_NAME_MAX + 1]; /* MBX__SCOPE_NET: "*" or a host/domain */
    char name[MBX_NAME_MAX + 1]; /* the name, '/'-separated, no prefix */
};

/* Whether h[0..n) may stand as the host of a scoped address: "." (this
 * host), "*" (everyone), or a host or domain name of 1..MBX_NAME_MAX
 * letters, digits, '-', '.' and '_'. Returns 1 or 0. */
int mbx__address_valid_host(const char *h, size_t n);

/* Parses `text` into *out. Returns 0, or MBX_EINVAL for a NULL, empty,
 * too long or malformed address (empty or "."/".." path components in a
 * scoped name, a bad host, a bad id). */
int mbx__address_parse(const char *text, struct mbx__address *out);

#endif
