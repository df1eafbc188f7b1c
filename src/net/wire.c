/* The network wire format: pure encoding and decoding of datagram headers,
 * frames and envelopes (docs/protocol.md). No I/O, no allocation; a decoder
 * never reads past the length it is given. */
#include "net/wire.h"

#include <limits.h>
#include <string.h>

#include "mbx/mbx.h"

/* The flags of which an envelope carries at most one. */
#define ENV_KINDS (MBX__ENV_CALL | MBX__ENV_REPLY | MBX__ENV_CALL_ENDED)

/* Longest domain, target, host, name and kind. */
#define STR_MAX 255

void
mbx__wire_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void
mbx__wire_put_u32(uint8_t *p, uint32_t v)
{
    mbx__wire_put_u16(p, (uint16_t)(v >> 16));
    mbx__wire_put_u16(p + 2, (uint16_t)v);
}

void
mbx__wire_put_u64(uint8_t *p, uint64_t v)
{
    mbx__wire_put_u32(p, (uint32_t)(v >> 32));
    mbx__wire_put_u32(p + 4, (uint32_t)v);
}

uint16_t
mbx__wire_get_u16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

uint32_t
mbx__wire_get_u32(const uint8_t *p)
{
    return (uint32_t)mbx__wire_get_u16(p) << 16 | mbx__wire_get_u16(p + 2);
}

uint64_t
mbx__wire_get_u64(const uint8_t *p)
{
    return (uint64_t)mbx__wire_get_u32(p) << 32 | mbx__wire_get_u32(p + 4);
}

/* ------------------------------------------------------------------------ */
/* Datagram header                                                          */
/* ------------------------------------------------------------------------ */

void
mbx__wire_put_header(uint8_t *out, const struct mbx__wire_dgram *h)
{
    out[offsetof(struct mbx__wire_header, magic)] = MBX__WIRE_MAGIC0;
    out[offsetof(struct mbx__wire_header, magic) + 1] = MBX__WIRE_MAGIC1;
    out[offsetof(struct mbx__wire_header, version)] = MBX__WIRE_VERSION;
    out[offsetof(struct mbx__wire_header, flags)] = h->flags;
    mbx__wire_put_u64(out + offsetof(struct mbx__wire_header, sender),
                      h->sender);
    mbx__wire_put_u64(out + offsetof(struct mbx__wire_header, seq), h->seq);
    mbx__wire_put_u16(out + offsetof(struct mbx__wire_header, frames),
                      h->frames);
    mbx__wire_put_u16(out + offsetof(struct mbx__wire_header, reserved), 0);
}

int
mbx__wire_get_header(const uint8_t *data, size_t len,
                     struct mbx__wire_dgram *out)
{
    if (len < MBX__WIRE_HEADER)
        return MBX_EBADMSG;
    const struct mbx__wire_header *w = (const void *)data;
    if (w->magic[0] != MBX__WIRE_MAGIC0 || w->magic[1] != MBX__WIRE_MAGIC1 ||
        w->version != MBX__WIRE_VERSION)
        return MBX_EBADMSG;
    if ((w->flags & ~MBX__WIRE_SEALED) != 0 ||
        mbx__wire_get_u16(w->reserved) != 0)
        return MBX_EBADMSG;
    uint16_t frames = mbx__wire_get_u16(w->frames);
    if (frames == 0)
        return MBX_EBADMSG;
    out->flags = w->flags;
    out->sender = mbx__wire_get_u64(w->sender);
    out->seq = mbx__wire_get_u64(w->seq);
    out->frames = frames;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                   */
/* ------------------------------------------------------------------------ */

size_t
mbx__wire_put_frame(uint8_t *out, const struct mbx__wire_frame *f)
{
    struct mbx__wire_frame_header *w = (void *)out;
    mbx__wire_put_u32(w->msg_id, f->msg_id);
    mbx__wire_put_u32(w->msg_len, f->msg_len);
    mbx__wire_put_u32(w->offset, f->offset);
    mbx__wire_put_u16(w->index, f->index);
    mbx__wire_put_u16(w->count, f->count);
    mbx__wire_put_u16(w->chunk_len, f->chunk_len);
    mbx__wire_put_u16(w->reserved, 0);
    if (f->chunk_len > 0)
        memcpy(out + MBX__WIRE_FRAME, f->chunk, f->chunk_len);
    return MBX__WIRE_FRAME + (size_t)f->chunk_len;
}

/* True when the decoded frame f is consistent: a fragment of a message
 * that lies within the message, and a lone fragment that is all of it. */
static int
frame_valid(const struct mbx__wire_frame *f)
{
    if (f->count == 0 || f->index >= f->count || f->chunk_len == 0 ||
        f->msg_len == 0)
        return 0;
    /* In 64 bits, so that a huge offset cannot wrap around. */
    if ((uint64_t)f->offset + f->chunk_len > f->msg_len)
        return 0;
    if (f->count == 1 && (f->offset != 0 || f->chunk_len != f->msg_len))
        return 0;
    return 1;
}

int
mbx__wire_get_frame(const uint8_t *data, size_t len, size_t *pos,
                    struct mbx__wire_frame *out)
{
    size_t at = *pos;
    if (at > len || len - at < MBX__WIRE_FRAME)
        return MBX_EBADMSG;
    const struct mbx__wire_frame_header *w = (const void *)(data + at);
    struct mbx__wire_frame f;
    f.msg_id = mbx__wire_get_u32(w->msg_id);
    f.msg_len = mbx__wire_get_u32(w->msg_len);
    f.offset = mbx__wire_get_u32(w->offset);
    f.index = mbx__wire_get_u16(w->index);
    f.count = mbx__wire_get_u16(w->count);
    f.chunk_len = mbx__wire_get_u16(w->chunk_len);
    f.chunk = data + at + MBX__WIRE_FRAME;
    if (mbx__wire_get_u16(w->reserved) != 0 || !frame_valid(&f) ||
        len - at - MBX__WIRE_FRAME < f.chunk_len)
        return MBX_EBADMSG;
    *out = f;
    *pos = at + MBX__WIRE_FRAME + f.chunk_len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Envelopes                                                                */
/* ------------------------------------------------------------------------ */

/* A domain, target or host name: 1..255 bytes, no NUL, no '/'. */
static int
valid_label(const char *s, size_t n)
{
    if (n == 0 || n > STR_MAX)
        return 0;
    return !memchr(s, '\0', n) && !memchr(s, '/', n);
}

/* A mailslot name: 1..255 bytes, no NUL, '/'-separated components of
 * which none is empty (so no leading, trailing or doubled '/'). */
static int
valid_name(const char *s, size_t n)
{
    if (n == 0 || n > STR_MAX || memchr(s, '\0', n))
        return 0;
    if (s[0] == '/' || s[n - 1] == '/')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (s[i] == '/' && s[i - 1] == '/')
            return 0;
    return 1;
}

/* A kind or reply address: up to max bytes, no NUL. */
static int
valid_text(const char *s, size_t n, size_t max)
{
    return n <= max && (n == 0 || !memchr(s, '\0', n));
}

/* The flags of e against its correlation and reply address: only known
 * bits, at most one of call/reply/call-ended, and a nonzero corr for each
 * of them; a call also needs somewhere to send the reply. */
static int
valid_flags(const struct mbx__wire_env *e)
{
    unsigned kinds = e->flags & ENV_KINDS;
    if ((e->flags & ~MBX__ENV_FLAGS) != 0 || (kinds & (kinds - 1)) != 0)
        return 0;
    if (kinds != 0 && e->corr == 0)
        return 0;
    return !(kinds == MBX__ENV_CALL && e->from_len == 0);
}

/* Everything a receiver checks in an envelope, besides the framing. */
static int
valid_env(const struct mbx__wire_env *e)
{
    return valid_label(e->domain, e->domain_len) &&
           valid_label(e->target, e->target_len) &&
           valid_label(e->host, e->host_len) &&
           valid_name(e->name, e->name_len) &&
           valid_text(e->kind, e->kind_len, STR_MAX) &&
           valid_text(e->from, e->from_len, MBX__ENV_FROM_MAX) &&
           valid_flags(e);
}

size_t
mbx__wire_env_size(const struct mbx__wire_env *e)
{
    /* Saturates rather than wraps, so an absurd length cannot look small;
     * each string length is checked against its range before encoding. */
    size_t n = MBX__ENV_FIXED;
    const size_t parts[] = {e->domain_len, e->target_len, e->host_len,
                            e->name_len,   e->kind_len,   e->from_len,
                            e->body_len};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i] > SIZE_MAX - n)
            return SIZE_MAX;
        n += parts[i];
    }
    return n;
}

/* Writes a length (of `width` bytes: 1 or 2) and the n bytes of s at p;
 * returns the position after them. */
static uint8_t *
put_string(uint8_t *p, size_t width, const void *s, size_t n)
{
    if (width == 1)
        *p = (uint8_t)n;
    else
        mbx__wire_put_u16(p, (uint16_t)n);
    p += width;
    if (n > 0)
        memcpy(p, s, n);
    return p + n;
}

int
mbx__wire_put_env(uint8_t *out, const struct mbx__wire_env *e)
{
    size_t size = mbx__wire_env_size(e);
    if (!valid_env(e) || size > INT_MAX)
        return MBX_EINVAL;
    uint8_t *p = out;
    *p++ = e->flags;
    p = put_string(p, 1, e->domain, e->domain_len);
    p = put_string(p, 1, e->target, e->target_len);
    p = put_string(p, 1, e->host, e->host_len);
    p = put_string(p, 1, e->name, e->name_len);
    p = put_string(p, 1, e->kind, e->kind_len);
    p = put_string(p, 2, e->from, e->from_len);
    mbx__wire_put_u64(p, e->corr);
    p += 8;
    if (e->body_len > 0)
        memcpy(p, e->body, e->body_len);
    return (int)size;
}

/* Reads a length of `width` bytes (1 or 2) at data[*pos], then that many
 * bytes, all within data[0..len): sets *s and *n, advances *pos. Returns
 * 0, or MBX_EBADMSG when either runs past len. */
static int
get_string(const uint8_t *data, size_t len, size_t *pos, size_t width,
           const char **s, size_t *n)
{
    size_t at = *pos;
    if (len - at < width)
        return MBX_EBADMSG;
    size_t count = width == 1 ? data[at] : mbx__wire_get_u16(data + at);
    at += width;
    if (len - at < count)
        return MBX_EBADMSG;
    *s = (const char *)data + at;
    *n = count;
    *pos = at + count;
    return 0;
}

/* Reads the strings of an envelope (after its flags byte) into e. */
static int
get_strings(const uint8_t *data, size_t len, size_t *pos,
            struct mbx__wire_env *e)
{
    if (get_string(data, len, pos, 1, &e->domain, &e->domain_len) ||
        get_string(data, len, pos, 1, &e->target, &e->target_len) ||
        get_string(data, len, pos, 1, &e->host, &e->host_len) ||
        get_string(data, len, pos, 1, &e->name, &e->name_len) ||
        get_string(data, len, pos, 1, &e->kind, &e->kind_len) ||
        get_string(data, len, pos, 2, &e->from, &e->from_len))
        return MBX_EBADMSG;
    return 0;
}

int
mbx__wire_get_env(const uint8_t *data, size_t len, struct mbx__wire_env *out)
{
    struct mbx__wire_env e;
    size_t pos = 1;
    if (len < 1)
        return MBX_EBADMSG;
    e.flags = data[0];
    if (get_strings(data, len, &pos, &e) || len - pos < 8)
        return MBX_EBADMSG;
    if (e.from_len == 0)
        e.from = NULL;
    e.corr = mbx__wire_get_u64(data + pos);
    pos += 8;
    e.body = data + pos;
    e.body_len = len - pos;
    if (!valid_env(&e))
        return MBX_EBADMSG;
    *out = e;
    return 0;
}
