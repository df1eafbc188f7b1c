/*
 * Stamped 64-byte message bodies for the host mailslot stress tests, shared
 * by tests/integration/test_host_stress.c and the fork+exec helper
 * tests/support/host_writer.c.
 *
 * A stamp names its writer, the round it belongs to and its sequence
 * number; the rest of the body is filler computed from those three, and the
 * last 8 bytes are a checksum of the first 56. A reader can so tell a torn,
 * stale or foreign message from an intact one, and find gaps, duplicates
 * and reordering per writer.
 */
#ifndef MBX_TEST_HOST_STAMP_H
#define MBX_TEST_HOST_STAMP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "mbx/mbx.h"

#define HS_FINAL 0x1u /* the writer's last message */

struct hs_stamp {
    uint32_t writer;
    uint32_t flags; /* HS_* */
    uint64_t seq;
    uint64_t round;
    unsigned char fill[32];
    uint64_t sum; /* hs_sum of the 56 bytes before it */
};

_Static_assert(sizeof(struct hs_stamp) == 64, "a stamp is 64 bytes");

static inline uint64_t
hs_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* FNV-1a over n bytes. */
static inline uint64_t
hs_sum(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static inline void
hs_fill(unsigned char fill[32], uint32_t writer, uint64_t seq, uint64_t round)
{
    uint64_t x = hs_mix((uint64_t)writer << 40 ^ round << 20 ^ seq);
    for (int i = 0; i < 4; i++) {
        x = hs_mix(x);
        memcpy(fill + 8 * i, &x, 8);
    }
}

static inline void
hs_stamp_make(struct hs_stamp *s, uint32_t writer, uint64_t seq, uint64_t round,
              uint32_t flags)
{
    memset(s, 0, sizeof *s);
    s->writer = writer;
    s->flags = flags;
    s->seq = seq;
    s->round = round;
    hs_fill(s->fill, writer, seq, round);
    s->sum = hs_sum(s, offsetof(struct hs_stamp, sum));
}

/* True when body holds an intact stamp (copied into *out). */
static inline bool
hs_stamp_read(const void *body, size_t len, struct hs_stamp *out)
{
    unsigned char fill[32];
    if (!body || len != sizeof *out)
        return false;
    memcpy(out, body, sizeof *out);
    if (out->sum != hs_sum(out, offsetof(struct hs_stamp, sum)))
        return false;
    hs_fill(fill, out->writer, out->seq, out->round);
    return memcmp(fill, out->fill, sizeof fill) == 0 &&
           (out->flags & ~HS_FINAL) == 0;
}

/* Writes `count` stamps (seq 0 .. count-1, the last one HS_FINAL) of
 * `writer` in `round` to the host mailslot `address` ("//./NAME"): with
 * mbx_send_to(.., -1) or, when use_put, with mbx_slot_put on a handle
 * whose puts wait forever. A negative count writes until the process is
 * killed. After each accepted message *done (if not NULL) holds the number
 * accepted so far. Returns 0 or the first error (reported on stderr). */
static inline int
hs_write_stamps(const char *address, uint32_t writer, long count,
                uint64_t round, bool use_put, _Atomic long *done)
{
    mbx_slot *slot = NULL;
    int rc = use_put ? mbx_slot_open(&slot, address, NULL) : 0;
    for (long i = 0; rc == 0 && (count < 0 || i < count); i++) {
        struct hs_stamp s;
        hs_stamp_make(&s, writer, (uint64_t)i, round,
                      i == count - 1 ? HS_FINAL : 0);
        if (use_put) {
            rc = mbx_slot_put(slot, &s, sizeof s);
        } else {
            mbx_msg *m = mbx_msg_new("", &s, sizeof s);
            rc = m ? mbx_send_to(address, &m, -1) : MBX_ENOMEM;
            mbx_msg_free(m); /* NULL when sent */
        }
        if (rc == 0 && done)
            atomic_store(done, i + 1);
        if (rc < 0)
            fprintf(stderr, "writer %u: %s of message %ld to %s: %s\n",
                    (unsigned)writer, use_put ? "mbx_slot_put" : "mbx_send_to",
                    i, address, mbx_strerror_name(rc));
    }
    mbx_slot_close(slot);
    return rc;
}

#endif
