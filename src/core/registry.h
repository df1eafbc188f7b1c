/* The name registry: process-wide names for mailboxes. */
#ifndef MBX_CORE_REGISTRY_H
#define MBX_CORE_REGISTRY_H

#include "core/mailbox.h"

/* Adds `key` for the pinned mailbox b (id), unchecked: the host layer
 * files its names as "//./NAME". Returns 0, MBX_EEXIST or MBX_ENOMEM. */
int mbx__registry_insert(struct mbx__box *b, mbx_id id, const char *key);

/* Looks `key` up as it is spelled. Returns 0 and *out, or MBX_ENOENT. */
int mbx__registry_lookup(const char *key, mbx_id *out);

/* Removes `key` and stores in *was (if not NULL) the id it named. Returns
 * 0 or MBX_ENOENT. Nothing else happens to the mailbox. */
int mbx__registry_remove(const char *key, mbx_id *was);

/* Removes every name of a mailbox being destroyed (no user is left). */
void mbx__registry_forget(struct mbx__box *b);

/* Removes every name whose key `match` accepts (a fork child dropping the
 * network names it inherited). */
void mbx__registry_remove_matching(bool (*match)(const char *key));

#endif
