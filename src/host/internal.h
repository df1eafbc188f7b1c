/*
 * What the files of the host layer share among themselves: feed.c (the
 * reader's ring as a mailbox feed), send.c (writers and their cache) and
 * call.c (call/reply between processes).
 */
#ifndef MBX_HOST_INTERNAL_H
#define MBX_HOST_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/address.h"
#include "host/ring.h"

struct mbx__box;

/* feed.c ------------------------------------------------------------------ */

/* Parses a host name in either form ("//./x", "\\.\mailslot\x") into *a.
 * Returns 0, or MBX_EINVAL for anything else. */
int mbx__host_name_of(const char *text, struct mbx__address *a);

/* True when this process reads at least one ring. */
bool mbx__host_reads_any(void);

/* The header of the ring that feeds the mailbox b (which has one). */
struct mbx__ring_hdr *mbx__host_feed_hdr(struct mbx__box *b);

/* Fork handlers for the list of feeds: in the child, the parent's rings
 * are taken off the child's mailboxes. */
void mbx__feeds_lock_all(void);
void mbx__feeds_unlock_all(int in_child);

/* send.c ------------------------------------------------------------------ */

/* The record of message m, with reply address `from` (may be NULL). */
struct mbx__rec_view mbx__host_view_of(const mbx_msg *m, const char *from);

/* Writes a record to the reader of `name` through the connection cache,
 * reconnecting once if the reader changed. `awaiting` non-zero: refuse
 * (MBX_ENOENT) unless that ring waits for that call. Returns as
 * mbx__writer_put. */
int mbx__host_put(const char *name, const struct mbx__rec_view *v,
                  int64_t deadline, uint64_t awaiting);

/* The id of the mailbox of this process that reads `name`, if any. */
bool mbx__host_read_here(const char *name, mbx_id *id);

/* True while a live reader holds `name` (asks the kernel now). */
bool mbx__host_reader_alive(const char *name);

#endif
