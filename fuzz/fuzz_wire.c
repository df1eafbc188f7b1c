/*
 * libFuzzer target: the network wire decoders (src/net/wire.h) on
 * arbitrary datagrams.
 *
 * The input is read as a datagram: its header, then its frames one after
 * the other until the end or the first that does not decode, and the
 * chunk of each whole message (fragment count 1) as an envelope. The whole
 * input is also read as an envelope. A decoder must fail cleanly
 * (MBX_EBADMSG, position unchanged) or give values that keep the promises
 * of wire.h and that encode back to the very same bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbx/mbx.h"
#include "net/wire.h"

/* Stops the run with the failed condition named; libFuzzer saves the
 * input. */
#define ASSERT(x)                                                              \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);            \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* True when s[0..n) lies within data[0..len) and holds no NUL. */
static int
inside(const void *s, size_t n, const uint8_t *data, size_t len)
{
    const uint8_t *p = s;
    if (n == 0)
        return 1;
    return p >= data && p + n <= data + len && !memchr(p, '\0', n);
}

/* Checks a decoded envelope against wire.h and encodes it back. */
static void
check_env(const uint8_t *data, size_t len, const struct mbx__wire_env *e)
{
    ASSERT((e->flags & ~MBX__ENV_FLAGS) == 0);
    ASSERT(e->domain_len >= 1 && e->domain_len <= 255);
    ASSERT(e->target_len >= 1 && e->target_len <= 255);
    ASSERT(e->host_len >= 1 && e->host_len <= 255);
    ASSERT(e->name_len >= 1 && e->name_len <= 255);
    ASSERT(e->kind_len <= 255 && e->from_len <= MBX__ENV_FROM_MAX);
    ASSERT((e->from == NULL) == (e->from_len == 0));
    ASSERT(!memchr(e->domain, '/', e->domain_len));
    ASSERT(!memchr(e->target, '/', e->target_len));
    ASSERT(!memchr(e->host, '/', e->host_len));
    ASSERT(e->name[0] != '/' && e->name[e->name_len - 1] != '/');
    ASSERT(inside(e->domain, e->domain_len, data, len) &&
           inside(e->target, e->target_len, data, len) &&
           inside(e->host, e->host_len, data, len) &&
           inside(e->name, e->name_len, data, len) &&
           inside(e->kind, e->kind_len, data, len) &&
           inside(e->from, e->from_len, data, len));
    ASSERT(e->body + e->body_len == data + len);
    unsigned kinds =
        e->flags & (MBX__ENV_CALL | MBX__ENV_REPLY | MBX__ENV_CALL_ENDED);
    ASSERT((kinds & (kinds - 1)) == 0 && (kinds == 0 || e->corr != 0));
    ASSERT(kinds != MBX__ENV_CALL || e->from_len > 0);
    /* What decodes encodes to the same bytes. */
    ASSERT(mbx__wire_env_size(e) == len);
    uint8_t *out = malloc(len);
    ASSERT(out != NULL);
    ASSERT(mbx__wire_put_env(out, e) == (int)len);
    ASSERT(memcmp(out, data, len) == 0);
    free(out);
}

/* Decodes data[0..len) as an envelope and checks what it gives. */
static void
try_env(const uint8_t *data, size_t len)
{
    struct mbx__wire_env e;
    int rc = mbx__wire_get_env(data, len, &e);
    if (rc == 0)
        check_env(data, len, &e);
    else
        ASSERT(rc == MBX_EBADMSG);
}

/* Checks a decoded frame, read at `start` of area[0..len), and encodes it
 * back. */
static void
check_frame(const uint8_t *area, size_t len, size_t start, size_t end,
            const struct mbx__wire_frame *f)
{
    ASSERT(f->count >= 1 && f->index < f->count);
    ASSERT(f->msg_len >= 1 && f->chunk_len >= 1);
    ASSERT((uint64_t)f->offset + f->chunk_len <= f->msg_len);
    ASSERT(f->count != 1 || (f->offset == 0 && f->chunk_len == f->msg_len));
    ASSERT(end == start + MBX__WIRE_FRAME + f->chunk_len && end <= len);
    ASSERT(f->chunk == area + start + MBX__WIRE_FRAME);
    uint8_t out[MBX__WIRE_FRAME + 65535];
    ASSERT(mbx__wire_put_frame(out, f) == end - start);
    ASSERT(memcmp(out, area + start, end - start) == 0);
}

/* Walks the frames of a datagram's frames area. */
static void
walk_frames(const uint8_t *area, size_t len)
{
    size_t pos = 0;
    while (pos < len) {
        struct mbx__wire_frame f;
        size_t start = pos;
        int rc = mbx__wire_get_frame(area, len, &pos, &f);
        if (rc != 0) {
            ASSERT(rc == MBX_EBADMSG && pos == start);
            return;
        }
        check_frame(area, len, start, pos, &f);
        if (f.count == 1)
            try_env(f.chunk, f.chunk_len);
    }
    ASSERT(pos == len);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mbx__wire_dgram h;
    int rc = mbx__wire_get_header(data, size, &h);
    if (rc == 0) {
        ASSERT(size >= MBX__WIRE_HEADER && h.frames >= 1);
        ASSERT((h.flags & ~MBX__WIRE_SEALED) == 0);
        uint8_t out[MBX__WIRE_HEADER];
        mbx__wire_put_header(out, &h);
        ASSERT(memcmp(out, data, MBX__WIRE_HEADER) == 0);
        walk_frames(data + MBX__WIRE_HEADER, size - MBX__WIRE_HEADER);
    } else {
        ASSERT(rc == MBX_EBADMSG);
    }
    try_env(data, size);
    return 0;
}
