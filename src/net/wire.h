/*
 * The network wire format (docs/protocol.md): pure encoding and decoding,
 * no I/O, no allocation, no clocks. Every multi-byte integer is big-endian.
 *
 * A datagram is a header, then either plain frames or (flag SEALED) the
 * frames encrypted and followed by a 16-byte tag:
 *
 *   datagram header (24 bytes)
 *     magic "MB" | version 1 | flags | sender id (8) | sequence (8) |
 *     frame count (2) | reserved 0 (2)
 *   frame (20-byte header, then the chunk)
 *     message id (4) | message length (4) | offset (4) | fragment index (2) |
 *     fragment count (2) | chunk length (2) | reserved 0 (2) | chunk bytes
 *
 * A message travels as one frame (fragment count 1) or as several
 * fragments, each in its own frame, possibly in different datagrams.
 * Reassembled, a message is an envelope:
 *
 *   flags (1) | domain length (1), domain | target length (1), target |
 *   host length (1), host | name length (1), name | kind length (1), kind |
 *   reply address length (2), reply address | correlation (8) | body
 */
#ifndef MBX_NET_WIRE_H
#define MBX_NET_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define MBX__WIRE_MAGIC0 'M'
#define MBX__WIRE_MAGIC1 'B'
#define MBX__WIRE_VERSION 1

/* Datagram flags. */
#define MBX__WIRE_SEALED 0x01u /* frames encrypted, tag at the end */

/* Envelope flags. */
#define MBX__ENV_URGENT 0x01u     /* MBX_MSG_URGENT */
#define MBX__ENV_CALL 0x02u       /* a call: the receiver owes a reply */
#define MBX__ENV_REPLY 0x04u      /* the reply to call `corr` */
#define MBX__ENV_CALL_ENDED 0x08u /* call `corr` ended without a reply */
#define MBX__ENV_FLAGS 0x0fu      /* every defined flag */

/* Sizes. */
#define MBX__WIRE_HEADER 24          /* datagram header */
#define MBX__WIRE_FRAME 20           /* frame header */
#define MBX__WIRE_TAG 16             /* AEAD tag of a sealed datagram */
#define MBX__WIRE_DATAGRAM_MAX 65507 /* largest UDP payload over IPv4 */
#define MBX__ENV_FIXED 16      /* envelope bytes besides the strings, body */
#define MBX__ENV_FROM_MAX 1024 /* longest reply address accepted */

/* The layout of the datagram header, as bytes (for offsets and sizes). */
struct mbx__wire_header {
    uint8_t magic[2];
    uint8_t version;
    uint8_t flags;
    uint8_t sender[8];
    uint8_t seq[8];
    uint8_t frames[2];
    uint8_t reserved[2];
};
_Static_assert(sizeof(struct mbx__wire_header) == MBX__WIRE_HEADER,
               "datagram header is 24 bytes");

/* The layout of a frame header, as bytes. */
struct mbx__wire_frame_header {
    uint8_t msg_id[4];
    uint8_t msg_len[4];
    uint8_t offset[4];
    uint8_t index[2];
    uint8_t count[2];
    uint8_t chunk_len[2];
    uint8_t reserved[2];
};
_Static_assert(sizeof(struct mbx__wire_frame_header) == MBX__WIRE_FRAME,
               "frame header is 20 bytes");

/* A decoded datagram header. */
struct mbx__wire_dgram {
    uint8_t flags;
    uint64_t sender; /* random per process (and per fork child) */
    uint64_t seq;    /* per sender, from 1, one per datagram */
    uint16_t frames; /* frames in the datagram, >= 1 */
};

/* A decoded frame; chunk points into the datagram. */
struct mbx__wire_frame {
    uint32_t msg_id;  /* per sender */
    uint32_t msg_len; /* whole envelope, in bytes, >= 1 */
    uint32_t offset;  /* of this chunk in the envelope */
    uint16_t index;   /* fragment index, < count */
    uint16_t count;   /* fragments of the message, >= 1 */
    uint16_t chunk_len;
    const uint8_t *chunk;
};

/* A decoded envelope; the strings point into the encoded bytes and are NOT
 * NUL-terminated (use the lengths). */
struct mbx__wire_env {
    uint8_t flags; /* MBX__ENV_* */
    const char *domain;
    size_t domain_len;  /* 1..255 */
    const char *target; /* "*" or a host or domain name */
    size_t target_len;  /* 1..255 */
    const char *host;   /* the sender's host name */
    size_t host_len;    /* 1..255 */
    const char *name;
    size_t name_len; /* 1..255 */
    const char *kind;
    size_t kind_len;  /* 0..255 */
    const char *from; /* reply address, or NULL when from_len is 0 */
    size_t from_len;  /* 0..MBX__ENV_FROM_MAX */
    uint64_t corr;
    const uint8_t *body;
    size_t body_len;
};

/* Writes the datagram header for `h` into out[0..MBX__WIRE_HEADER). */
void mbx__wire_put_header(uint8_t *out, const struct mbx__wire_dgram *h);

/* Reads a datagram header. Returns 0, or MBX_EBADMSG when len is shorter
 * than a header, the magic or version differ, unknown flags or reserved
 * bits are set, or frames is 0. Never reads past data[len). */
int mbx__wire_get_header(const uint8_t *data, size_t len,
                         struct mbx__wire_dgram *out);

/* Writes a frame header and copies f->chunk (f->chunk_len bytes) after it,
 * into out, which has room for MBX__WIRE_FRAME + f->chunk_len bytes.
 * Returns the bytes written. */
size_t mbx__wire_put_frame(uint8_t *out, const struct mbx__wire_frame *f);

/* Reads the frame at *pos of the frames area data[0..len), checks it and
 * advances *pos past it. Checks: the header and chunk fit in len; count
 * >= 1, index < count; chunk_len >= 1; msg_len >= 1; offset + chunk_len
 * <= msg_len; count 1 means offset 0 and chunk_len == msg_len; reserved 0.
 * Returns 0, or MBX_EBADMSG (then *pos is unchanged). */
int mbx__wire_get_frame(const uint8_t *data, size_t len, size_t *pos,
                        struct mbx__wire_frame *out);

/* The encoded size of an envelope for `e` (strings, from and body by
 * their lengths). */
size_t mbx__wire_env_size(const struct mbx__wire_env *e);

/* Encodes envelope e into out, which has room for mbx__wire_env_size(e)
 * bytes. Returns the size, or MBX_EINVAL (nothing written) when the
 * envelope would not pass mbx__wire_get_env: a length out of its range, a
 * bad string or bad flags (the caller checks names beforehand; this is the
 * last guard), or a size above INT_MAX. */
int mbx__wire_put_env(uint8_t *out, const struct mbx__wire_env *e);

/* Decodes an envelope from data[0..len). Checks every length against
 * its range and against len, that flags has no unknown bits, that
 * at most one of CALL, REPLY and CALL_ENDED is set, that each of them
 * carries a nonzero corr and CALL a reply address (from_len > 0), that
 * no string holds a NUL, and that domain, target, host and name hold no
 * '/' except name (which may hold '/' between non-empty components, as an
 * address's name). Returns 0, or MBX_EBADMSG (then *out is unchanged).
 * Never reads past data[len). */
int mbx__wire_get_env(const uint8_t *data, size_t len,
                      struct mbx__wire_env *out);

/* Big-endian helpers shared by the transport. */
void mbx__wire_put_u16(uint8_t *p, uint16_t v);
void mbx__wire_put_u32(uint8_t *p, uint32_t v);
void mbx__wire_put_u64(uint8_t *p, uint64_t v);
uint16_t mbx__wire_get_u16(const uint8_t *p);
uint32_t mbx__wire_get_u32(const uint8_t *p);
uint64_t mbx__wire_get_u64(const uint8_t *p);

#endif
