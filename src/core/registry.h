/* The name registry: process-wide names for mailboxes. */
#ifndef MBX_CORE_REGISTRY_H
#define MBX_CORE_REGISTRY_H

#include "core/mailbox.h"

/* Removes every name of a mailbox being destroyed (no user is left). */
void mbx__registry_forget(struct mbx__box *b);

#endif
