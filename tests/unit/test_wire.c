/* The network wire format: datagram headers, frames and envelopes encode
 * and decode as docs/protocol.md says, malformed input is MBX_EBADMSG, and
 * no decoder reads past the bytes it is given. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "harness.h"
#include "mbx/mbx.h"
#include "net/wire.h"

/* ------------------------------------------------------------------------ */
/* Building bytes by hand                                                   */
/* ------------------------------------------------------------------------ */

/* Bytes written field by field, independently of the encoders, so that the
 * tests can also write what the encoders refuse to. */
struct bytes {
    uint8_t b[8192];
    size_t n;
};

static void
add_u8(struct bytes *o, unsigned v)
{
    REQUIRE(o->n + 1 <= sizeof o->b);
    o->b[o->n++] = (uint8_t)v;
}

static void
add_be(struct bytes *o, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--)
        add_u8(o, (unsigned)(v >> (8 * i)) & 0xff);
}

static void
add_mem(struct bytes *o, const void *p, size_t n)
{
    REQUIRE(o->n + n <= sizeof o->b);
    if (n > 0)
        memcpy(o->b + o->n, p, n);
    o->n += n;
}

/* A string after its length of `width` bytes (1 or 2). */
static void
add_str(struct bytes *o, int width, const void *s, size_t n)
{
    add_be(o, n, width);
    add_mem(o, s, n);
}

/* An envelope written from the layout in docs/protocol.md, whatever its
 * values (lengths are truncated to their field's width). */
static void
add_env(struct bytes *o, const struct mbx__wire_env *e)
{
    add_u8(o, e->flags);
    add_str(o, 1, e->domain, e->domain_len & 0xff);
    add_str(o, 1, e->target, e->target_len & 0xff);
    add_str(o, 1, e->host, e->host_len & 0xff);
    add_str(o, 1, e->name, e->name_len & 0xff);
    add_str(o, 1, e->kind, e->kind_len & 0xff);
    add_str(o, 2, e->from, e->from_len & 0xffff);
    add_be(o, e->corr, 8);
    add_mem(o, e->body, e->body_len);
}

/* A datagram header written field by field. */
static void
add_header(struct bytes *o, const char magic[2], unsigned version,
           unsigned flags, uint64_t sender, uint64_t seq, unsigned frames,
           unsigned reserved)
{
    add_u8(o, (unsigned char)magic[0]);
    add_u8(o, (unsigned char)magic[1]);
    add_u8(o, version);
    add_u8(o, flags);
    add_be(o, sender, 8);
    add_be(o, seq, 8);
    add_be(o, frames, 2);
    add_be(o, reserved, 2);
}

/* A frame header written field by field. */
static void
add_frame_header(struct bytes *o, uint32_t msg_id, uint32_t msg_len,
                 uint32_t offset, unsigned index, unsigned count,
                 unsigned chunk_len, unsigned reserved)
{
    add_be(o, msg_id, 4);
    add_be(o, msg_len, 4);
    add_be(o, offset, 4);
    add_be(o, index, 2);
    add_be(o, count, 2);
    add_be(o, chunk_len, 2);
    add_be(o, reserved, 2);
}

/* A frame header, then chunk_len bytes of `fill`. */
static void
add_frame(struct bytes *o, uint32_t msg_id, uint32_t msg_len, uint32_t offset,
          unsigned index, unsigned count, unsigned chunk_len, unsigned reserved,
          int fill)
{
    add_frame_header(o, msg_id, msg_len, offset, index, count, chunk_len,
                     reserved);
    for (unsigned i = 0; i < chunk_len; i++)
        add_u8(o, (unsigned)fill);
}

/* ------------------------------------------------------------------------ */
/* Envelopes to play with                                                   */
/* ------------------------------------------------------------------------ */

/* A plain message to "//STAR/LOGGER" from host "alpha" in domain "mbx". */
static struct mbx__wire_env
sample_env(void)
{
    struct mbx__wire_env e;
    memset(&e, 0, sizeof e);
    e.domain = "mbx";
    e.domain_len = 3;
    e.target = "*";
    e.target_len = 1;
    e.host = "alpha";
    e.host_len = 5;
    e.name = "LOGGER";
    e.name_len = 6;
    e.kind = "INFO";
    e.kind_len = 4;
    e.body = (const uint8_t *)"hello";
    e.body_len = 5;
    return e;
}

/* A call with every string at its longest, the largest from, a body. */
static char long_a[256], long_from[MBX__ENV_FROM_MAX + 1];

static struct mbx__wire_env
longest_env(void)
{
    memset(long_a, 'a', 255);
    /* A 255-byte name of components: "aaa/aaa/.../a". */
    static char name[256];
    memset(name, 'n', 255);
    for (size_t i = 3; i < 254; i += 4)
        name[i] = '/';
    memset(long_from, 'f', MBX__ENV_FROM_MAX);
    memcpy(long_from, "//alpha/.reply/", 15);
    struct mbx__wire_env e = sample_env();
    e.flags = MBX__ENV_CALL | MBX__ENV_URGENT;
    e.domain = e.target = e.host = e.kind = long_a;
    e.domain_len = e.target_len = e.host_len = e.kind_len = 255;
    e.name = name;
    e.name_len = 255;
    e.from = long_from;
    e.from_len = MBX__ENV_FROM_MAX;
    e.corr = UINT64_MAX;
    return e;
}

/* True when a string field of two envelopes holds the same bytes. */
static int
same_str(const void *a, size_t an, const void *b, size_t bn)
{
    return an == bn && (an == 0 || memcmp(a, b, an) == 0);
}

static int
env_equal(const struct mbx__wire_env *a, const struct mbx__wire_env *b)
{
    return a->flags == b->flags && a->corr == b->corr &&
           same_str(a->domain, a->domain_len, b->domain, b->domain_len) &&
           same_str(a->target, a->target_len, b->target, b->target_len) &&
           same_str(a->host, a->host_len, b->host, b->host_len) &&
           same_str(a->name, a->name_len, b->name, b->name_len) &&
           same_str(a->kind, a->kind_len, b->kind, b->kind_len) &&
           same_str(a->from, a->from_len, b->from, b->from_len) &&
           same_str(a->body, a->body_len, b->body, b->body_len);
}

/* Encodes e with the encoder, checks it against the bytes written by
 * hand, decodes it back and checks every field. */
static void
check_env_round_trip(const struct mbx__wire_env *e)
{
    size_t size = mbx__wire_env_size(e);
    uint8_t *buf = malloc(size);
    REQUIRE(buf != NULL);
    REQUIRE_EQ(mbx__wire_put_env(buf, e), (long long)size);
    struct bytes *hand = malloc(sizeof *hand);
    REQUIRE(hand != NULL);
    hand->n = 0;
    if (size <= sizeof hand->b) {
        add_env(hand, e);
        CHECK(hand->n == size && memcmp(hand->b, buf, size) == 0);
    }
    struct mbx__wire_env d;
    REQUIRE_EQ(mbx__wire_get_env(buf, size, &d), 0);
    CHECK(env_equal(e, &d));
    CHECK((d.from == NULL) == (d.from_len == 0));
    /* The strings point into the encoded bytes. */
    CHECK(d.domain > (const char *)buf && d.body + d.body_len == buf + size);
    free(hand);
    free(buf);
}

/* Decoding these bytes fails with MBX_EBADMSG and leaves *out alone. */
static int
env_rejected(const uint8_t *data, size_t len)
{
    struct mbx__wire_env d;
    memset(&d, 0x5a, sizeof d);
    int rc = mbx__wire_get_env(data, len, &d);
    const uint8_t *raw = (const uint8_t *)&d;
    for (size_t i = 0; i < sizeof d; i++)
        if (raw[i] != 0x5a)
            return 0;
    return rc == MBX_EBADMSG;
}

/* Envelope e, written by hand, is refused by the decoder, and the encoder
 * refuses it too without writing anything. */
static void
check_env_bad(const struct mbx__wire_env *e, int line)
{
    struct bytes o = {.n = 0};
    add_env(&o, e);
    int decoded = env_rejected(o.b, o.n);
    uint8_t out[4096];
    memset(out, 0xee, sizeof out);
    int rc = MBX_EINVAL;
    if (mbx__wire_env_size(e) <= sizeof out)
        rc = mbx__wire_put_env(out, e);
    int untouched = out[0] == 0xee && out[sizeof out - 1] == 0xee;
    if (!decoded || rc != MBX_EINVAL || !untouched) {
        fprintf(stderr, "  bad envelope of line %d: decode %s, encode %d\n",
                line, decoded ? "refused" : "ACCEPTED", rc);
        CHECK(decoded && rc == MBX_EINVAL && untouched);
    }
}

#define ENV_BAD(e) check_env_bad(&(e), __LINE__)

/* ------------------------------------------------------------------------ */
/* Big-endian integers                                                      */
/* ------------------------------------------------------------------------ */

TEST(integers_are_big_endian)
{
    uint8_t b[8];
    mbx__wire_put_u16(b, 0x0102);
    CHECK(b[0] == 1 && b[1] == 2);
    CHECK_EQ(mbx__wire_get_u16(b), 0x0102);
    mbx__wire_put_u32(b, 0x01020304u);
    CHECK(b[0] == 1 && b[1] == 2 && b[2] == 3 && b[3] == 4);
    CHECK_EQ(mbx__wire_get_u32(b), 0x01020304u);
    mbx__wire_put_u64(b, 0x0102030405060708ull);
    for (int i = 0; i < 8; i++)
        CHECK_EQ(b[i], i + 1);
    CHECK(mbx__wire_get_u64(b) == 0x0102030405060708ull);
    mbx__wire_put_u64(b, UINT64_MAX);
    CHECK(mbx__wire_get_u64(b) == UINT64_MAX);
    CHECK_EQ(mbx__wire_get_u32(b), 0xffffffffu);
    CHECK_EQ(mbx__wire_get_u16(b), 0xffff);
}

/* ------------------------------------------------------------------------ */
/* Datagram header                                                          */
/* ------------------------------------------------------------------------ */

TEST(header_round_trips_and_matches_the_layout)
{
    static const struct mbx__wire_dgram cases[] = {
        {0, 1, 1, 1},
        {MBX__WIRE_SEALED, 0x0123456789abcdefull, 0xfedcba9876543210ull, 7},
        {0, UINT64_MAX, UINT64_MAX, 0xffff},
        {MBX__WIRE_SEALED, 0, 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct mbx__wire_dgram *h = &cases[i];
        uint8_t buf[MBX__WIRE_HEADER + 1];
        buf[MBX__WIRE_HEADER] = 0xee;
        mbx__wire_put_header(buf, h);
        CHECK_EQ(buf[MBX__WIRE_HEADER], 0xee);
        struct bytes o = {.n = 0};
        add_header(&o, "MB", 1, h->flags, h->sender, h->seq, h->frames, 0);
        CHECK(o.n == MBX__WIRE_HEADER &&
              memcmp(o.b, buf, MBX__WIRE_HEADER) == 0);
        struct mbx__wire_dgram d;
        REQUIRE_EQ(mbx__wire_get_header(buf, MBX__WIRE_HEADER, &d), 0);
        CHECK(d.flags == h->flags && d.sender == h->sender && d.seq == h->seq &&
              d.frames == h->frames);
        /* Frames may follow: a longer datagram decodes the same. */
        REQUIRE_EQ(mbx__wire_get_header(buf, sizeof buf, &d), 0);
        CHECK(d.sender == h->sender && d.seq == h->seq);
    }
}

/* The header in o is rejected. */
static int
header_rejected(const struct bytes *o)
{
    struct mbx__wire_dgram d = {0x5a, 5, 5, 5};
    int rc = mbx__wire_get_header(o->b, o->n, &d);
    return rc == MBX_EBADMSG && d.flags == 0x5a && d.sender == 5 &&
           d.seq == 5 && d.frames == 5;
}

TEST(malformed_headers_are_ebadmsg)
{
    struct bytes o = {.n = 0};
    add_header(&o, "MB", 1, 0, 9, 9, 1, 0);
    /* Every short length, down to none. */
    for (size_t n = 0; n < MBX__WIRE_HEADER; n++) {
        struct bytes p = o;
        p.n = n;
        CHECK(header_rejected(&p));
    }
    struct bytes p = {.n = 0};
    add_header(&p, "mb", 1, 0, 9, 9, 1, 0);
    CHECK(header_rejected(&p));
    p.n = 0;
    add_header(&p, "MC", 1, 0, 9, 9, 1, 0);
    CHECK(header_rejected(&p));
    p.n = 0;
    add_header(&p, "AB", 1, 0, 9, 9, 1, 0);
    CHECK(header_rejected(&p));
    static const unsigned versions[] = {0, 2, 0x81, 0xff};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        p.n = 0;
        add_header(&p, "MB", versions[i], 0, 9, 9, 1, 0);
        CHECK(header_rejected(&p));
    }
    /* Every unknown flag bit, alone and with SEALED. */
    for (unsigned bit = 0x02; bit <= 0x80; bit <<= 1) {
        p.n = 0;
        add_header(&p, "MB", 1, bit, 9, 9, 1, 0);
        CHECK(header_rejected(&p));
        p.n = 0;
        add_header(&p, "MB", 1, bit | MBX__WIRE_SEALED, 9, 9, 1, 0);
        CHECK(header_rejected(&p));
    }
    static const unsigned reserved[] = {1, 0x100, 0x8000, 0xffff};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        p.n = 0;
        add_header(&p, "MB", 1, 0, 9, 9, 1, reserved[i]);
        CHECK(header_rejected(&p));
    }
    p.n = 0;
    add_header(&p, "MB", 1, 0, 9, 9, 0, 0);
    CHECK(header_rejected(&p));
    p.n = 0;
    add_header(&p, "MB", 1, MBX__WIRE_SEALED, 9, 9, 0, 0);
    CHECK(header_rejected(&p));
    /* And the good one is accepted, so the above failed for their fault. */
    struct mbx__wire_dgram d;
    CHECK_EQ(mbx__wire_get_header(o.b, o.n, &d), 0);
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                   */
/* ------------------------------------------------------------------------ */

/* Encodes f after `at` bytes of buf, decodes it back and compares. */
static void
check_frame_round_trip(const struct mbx__wire_frame *f)
{
    size_t cap = 3 + MBX__WIRE_FRAME + (size_t)f->chunk_len + 1;
    uint8_t *buf = malloc(cap);
    REQUIRE(buf != NULL);
    memset(buf, 0xee, cap);
    size_t n = mbx__wire_put_frame(buf + 3, f);
    REQUIRE_EQ(n, MBX__WIRE_FRAME + (size_t)f->chunk_len);
    CHECK_EQ(buf[cap - 1], 0xee);
    struct bytes *hand = malloc(sizeof *hand);
    REQUIRE(hand != NULL);
    hand->n = 0;
    if (n <= sizeof hand->b) {
        add_frame_header(hand, f->msg_id, f->msg_len, f->offset, f->index,
                         f->count, f->chunk_len, 0);
        add_mem(hand, f->chunk, f->chunk_len);
        CHECK(hand->n == n && memcmp(hand->b, buf + 3, n) == 0);
    }
    size_t pos = 3;
    struct mbx__wire_frame d;
    REQUIRE_EQ(mbx__wire_get_frame(buf, 3 + n, &pos, &d), 0);
    CHECK_EQ(pos, 3 + n);
    CHECK(d.msg_id == f->msg_id && d.msg_len == f->msg_len &&
          d.offset == f->offset && d.index == f->index && d.count == f->count &&
          d.chunk_len == f->chunk_len);
    CHECK(d.chunk == buf + 3 + MBX__WIRE_FRAME);
    CHECK(memcmp(d.chunk, f->chunk, f->chunk_len) == 0);
    free(hand);
    free(buf);
}

TEST(frames_round_trip)
{
    static uint8_t chunk[65535];
    for (size_t i = 0; i < sizeof chunk; i++)
        chunk[i] = (uint8_t)(i * 7 + 1);
    struct mbx__wire_frame cases[] = {
        /* Whole messages: one fragment, the smallest and the largest. */
        {1, 1, 0, 0, 1, 1, chunk},
        {2, 65535, 0, 0, 1, 65535, chunk},
        {UINT32_MAX, 300, 0, 0, 1, 300, chunk},
        /* Fragments: first, middle, last; a huge message's last chunk. */
        {3, 3000, 0, 0, 3, 1000, chunk},
        {3, 3000, 1000, 1, 3, 1000, chunk},
        {3, 3000, 2000, 2, 3, 1000, chunk},
        {4, UINT32_MAX, UINT32_MAX - 1, 0xfffe, 0xffff, 1, chunk},
        {5, 10, 9, 1, 2, 1, chunk},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_frame_round_trip(&cases[i]);
}

TEST(frames_follow_each_other_in_a_datagram)
{
    static const char env[] = "0123456789abcdefghij";
    uint8_t buf[256];
    size_t n = 0;
    struct mbx__wire_frame f[3] = {
        {7, 20, 0, 0, 1, 20, (const uint8_t *)env},
        {8, 20, 0, 0, 2, 12, (const uint8_t *)env},
        {8, 20, 12, 1, 2, 8, (const uint8_t *)env + 12},
    };
    for (int i = 0; i < 3; i++)
        n += mbx__wire_put_frame(buf + n, &f[i]);
    CHECK_EQ(n, 3 * MBX__WIRE_FRAME + 40);
    size_t pos = 0;
    char joined[20];
    for (int i = 0; i < 3; i++) {
        struct mbx__wire_frame d;
        REQUIRE_EQ(mbx__wire_get_frame(buf, n, &pos, &d), 0);
        CHECK_EQ(d.msg_id, f[i].msg_id);
        if (i > 0)
            memcpy(joined + d.offset, d.chunk, d.chunk_len);
    }
    CHECK_EQ(pos, n);
    CHECK(memcmp(joined, env, 20) == 0);
    /* At the end there is no frame, and *pos stays. */
    struct mbx__wire_frame d;
    CHECK_EQ(mbx__wire_get_frame(buf, n, &pos, &d), MBX_EBADMSG);
    CHECK_EQ(pos, n);
    /* A position past the length is refused, even where bytes beyond the
     * length would make a frame. */
    size_t second = MBX__WIRE_FRAME + 20;
    for (size_t len = 0; len < second; len++) {
        pos = second;
        CHECK_EQ(mbx__wire_get_frame(buf, len, &pos, &d), MBX_EBADMSG);
        CHECK_EQ(pos, second);
    }
}

/* The frame in o, read at `pos`, is rejected and neither *pos nor the
 * output changes. */
static int
frame_rejected_at(const struct bytes *o, size_t at)
{
    struct mbx__wire_frame d;
    memset(&d, 0x5a, sizeof d);
    size_t pos = at;
    int rc = mbx__wire_get_frame(o->b, o->n, &pos, &d);
    const uint8_t *raw = (const uint8_t *)&d;
    for (size_t i = 0; i < sizeof d; i++)
        if (raw[i] != 0x5a)
            return 0;
    return rc == MBX_EBADMSG && pos == at;
}

static int
frame_rejected(const struct bytes *o)
{
    return frame_rejected_at(o, 0);
}

TEST(malformed_frames_are_ebadmsg)
{
    struct bytes o = {.n = 0};
    /* Truncated header: every length shorter than a frame header. */
    add_frame(&o, 1, 4, 0, 0, 1, 4, 0, 'x');
    for (size_t n = 0; n < MBX__WIRE_FRAME; n++) {
        struct bytes p = o;
        p.n = n;
        CHECK(frame_rejected(&p));
    }
    /* Chunk past the end: each missing byte count. */
    for (size_t cut = 1; cut <= 4; cut++) {
        struct bytes p = o;
        p.n = o.n - cut;
        CHECK(frame_rejected(&p));
    }
    /* Read after another frame, the same is true. */
    struct bytes two = {.n = 0};
    add_frame(&two, 1, 1, 0, 0, 1, 1, 0, 'a');
    add_frame(&two, 2, 5, 0, 0, 1, 5, 0, 'b');
    two.n -= 1;
    CHECK(frame_rejected_at(&two, MBX__WIRE_FRAME + 1));
#define FRAME_BAD(...)                                                         \
    do {                                                                       \
        struct bytes p_ = {.n = 0};                                            \
        add_frame(&p_, __VA_ARGS__);                                           \
        if (!frame_rejected(&p_)) {                                            \
            fprintf(stderr, "  accepted: add_frame(%s)\n", #__VA_ARGS__);      \
            CHECK(!"malformed frame rejected");                                \
        }                                                                      \
    } while (0)
    /* msg_id, msg_len, offset, index, count, chunk_len, reserved, fill */
    FRAME_BAD(1, 4, 0, 0, 0, 4, 0, 'x');          /* count 0 */
    FRAME_BAD(1, 8, 0, 2, 2, 4, 0, 'x');          /* index == count */
    FRAME_BAD(1, 8, 0, 0xffff, 2, 4, 0, 'x');     /* index > count */
    FRAME_BAD(1, 4, 0, 0, 1, 0, 0, 'x');          /* chunk 0 */
    FRAME_BAD(1, 8, 4, 1, 2, 0, 0, 'x');          /* chunk 0, fragment */
    FRAME_BAD(1, 0, 0, 0, 1, 0, 0, 'x');          /* msg_len 0, chunk 0 */
    FRAME_BAD(1, 0, 0, 0, 2, 4, 0, 'x');          /* msg_len 0 */
    FRAME_BAD(1, 8, 5, 1, 2, 4, 0, 'x');          /* offset + chunk > len */
    FRAME_BAD(1, 8, 0, 0, 2, 9, 0, 'x');          /* chunk > len */
    FRAME_BAD(1, 8, UINT32_MAX, 1, 2, 4, 0, 'x'); /* offset wraps */
    FRAME_BAD(1, UINT32_MAX, UINT32_MAX, 1, 2, 1, 0, 'x'); /* ends past */
    FRAME_BAD(1, 8, 4, 0, 1, 4, 0, 'x');      /* count 1, offset 4 */
    FRAME_BAD(1, 8, 0, 0, 1, 4, 0, 'x');      /* count 1, part */
    FRAME_BAD(1, 4, 0, 0, 1, 4, 1, 'x');      /* reserved 1 */
    FRAME_BAD(1, 4, 0, 0, 1, 4, 0x8000, 'x'); /* reserved high */
#undef FRAME_BAD
    /* The same frames with the fault removed are accepted. */
    struct bytes good = {.n = 0};
    add_frame(&good, 1, 8, 4, 1, 2, 4, 0, 'x');
    size_t pos = 0;
    struct mbx__wire_frame d;
    CHECK_EQ(mbx__wire_get_frame(good.b, good.n, &pos, &d), 0);
}

/* ------------------------------------------------------------------------ */
/* Envelopes                                                                */
/* ------------------------------------------------------------------------ */

TEST(envelopes_round_trip_at_their_boundaries)
{
    struct mbx__wire_env e = sample_env();
    check_env_round_trip(&e);
    CHECK_EQ(mbx__wire_env_size(&e), MBX__ENV_FIXED + 3 + 1 + 5 + 6 + 4 + 5);
    /* Kinds of 0, 1 and 255 bytes. */
    static const size_t kinds[] = {0, 1, 255};
    memset(long_a, 'k', 255);
    for (size_t i = 0; i < 3; i++) {
        e = sample_env();
        e.kind = kinds[i] ? long_a : NULL;
        e.kind_len = kinds[i];
        check_env_round_trip(&e);
    }
    /* One-byte strings, empty body. */
    e = sample_env();
    e.domain = e.target = e.host = e.name = "x";
    e.domain_len = e.target_len = e.host_len = e.name_len = 1;
    e.body = NULL;
    e.body_len = 0;
    check_env_round_trip(&e);
    /* Every string at its longest, a 1024-byte reply address, a call. */
    e = longest_env();
    check_env_round_trip(&e);
    CHECK_EQ(mbx__wire_env_size(&e),
             MBX__ENV_FIXED + 5 * 255 + MBX__ENV_FROM_MAX + 5);
}

TEST(large_bodies_round_trip)
{
    static const size_t sizes[] = {1, 65535, 65536, 1u << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint8_t *body = malloc(sizes[i]);
        REQUIRE(body != NULL);
        for (size_t j = 0; j < sizes[i]; j++)
            body[j] = (uint8_t)(j ^ (j >> 8));
        struct mbx__wire_env e = sample_env();
        e.body = body;
        e.body_len = sizes[i];
        check_env_round_trip(&e);
        free(body);
    }
}

TEST(envelope_flags_round_trip)
{
    struct mbx__wire_env e = sample_env();
    e.flags = MBX__ENV_URGENT;
    check_env_round_trip(&e);
    e.corr = 77;
    e.from = "//alpha/.reply/0123456789abcdef/00000000000000aa";
    e.from_len = strlen(e.from);
    e.flags = MBX__ENV_CALL;
    check_env_round_trip(&e);
    e.flags = MBX__ENV_CALL | MBX__ENV_URGENT;
    check_env_round_trip(&e);
    /* Replies need no reply address, but may carry one. */
    e.flags = MBX__ENV_REPLY;
    check_env_round_trip(&e);
    e.from = NULL;
    e.from_len = 0;
    e.flags = MBX__ENV_REPLY | MBX__ENV_URGENT;
    check_env_round_trip(&e);
    e.flags = MBX__ENV_CALL_ENDED;
    check_env_round_trip(&e);
    /* A plain message may carry a reply address and a correlation. */
    e.flags = 0;
    e.from = "//beta/x";
    e.from_len = 8;
    check_env_round_trip(&e);
}

TEST(envelope_lengths_running_past_the_end_are_ebadmsg)
{
    struct mbx__wire_env e = sample_env();
    e.from = "//alpha/r";
    e.from_len = 9;
    struct bytes o = {.n = 0};
    add_env(&o, &e);
    /* The offset just past each length field and its string. */
    size_t ends[6], at = 1;
    const size_t lens[6] = {3, 1, 5, 6, 4, 9};
    for (int i = 0; i < 6; i++) {
        at += (i == 5 ? 2 : 1) + lens[i];
        ends[i] = at;
    }
    for (int i = 0; i < 6; i++) {
        /* Cut inside the string: its length runs past the end. */
        CHECK(env_rejected(o.b, ends[i] - 1));
        /* Cut inside or right after the length field. */
        size_t field = ends[i] - lens[i] - (i == 5 ? 2 : 1);
        CHECK(env_rejected(o.b, field));
        CHECK(env_rejected(o.b, field + 1));
        /* A length larger than everything that follows. */
        struct bytes p = o;
        p.b[field] = 0xff;
        if (i == 5)
            p.b[field + 1] = 0xff;
        CHECK(env_rejected(p.b, p.n));
    }
    /* The correlation cut short. */
    for (size_t n = ends[5]; n < ends[5] + 8; n++)
        CHECK(env_rejected(o.b, n));
    /* Nothing at all. */
    CHECK(env_rejected(o.b, 0));
    struct mbx__wire_env d;
    CHECK_EQ(mbx__wire_get_env(o.b, ends[5] + 8, &d), 0);
    CHECK_EQ(d.body_len, 0);
    CHECK_EQ(mbx__wire_get_env(o.b, o.n, &d), 0);
}

TEST(bad_envelope_strings_are_ebadmsg)
{
    struct mbx__wire_env good = sample_env(), e;
    /* Empty domain, target, host, name. */
    e = good, e.domain_len = 0, ENV_BAD(e);
    e = good, e.target_len = 0, ENV_BAD(e);
    e = good, e.host_len = 0, ENV_BAD(e);
    e = good, e.name_len = 0, ENV_BAD(e);
    /* '/' in domain, target, host, at either end or inside. */
    static const char *const slashed[] = {"/", "a/b", "/ab", "ab/", "//"};
    for (size_t i = 0; i < 5; i++) {
        size_t n = strlen(slashed[i]);
        e = good, e.domain = slashed[i], e.domain_len = n, ENV_BAD(e);
        e = good, e.target = slashed[i], e.target_len = n, ENV_BAD(e);
        e = good, e.host = slashed[i], e.host_len = n, ENV_BAD(e);
    }
    /* NUL in every string, at the start, inside and at the end. */
    static const char *const nuls[] = {"\0ab", "a\0b", "ab\0"};
    for (size_t i = 0; i < 3; i++) {
        e = good, e.domain = nuls[i], e.domain_len = 3, ENV_BAD(e);
        e = good, e.target = nuls[i], e.target_len = 3, ENV_BAD(e);
        e = good, e.host = nuls[i], e.host_len = 3, ENV_BAD(e);
        e = good, e.name = nuls[i], e.name_len = 3, ENV_BAD(e);
        e = good, e.kind = nuls[i], e.kind_len = 3, ENV_BAD(e);
        e = good, e.from = nuls[i], e.from_len = 3, ENV_BAD(e);
    }
    e = good, e.kind = "", e.kind_len = 1, ENV_BAD(e);
    /* Names: empty components anywhere. */
    static const char *const names[] = {"/",    "//",   "/a",   "a/",
                                        "a//b", "/a/b", "a/b/", "a/b//c"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        e = good, e.name = names[i], e.name_len = strlen(names[i]);
        ENV_BAD(e);
    }
    /* And the names that are fine. */
    static const char *const fine[] = {"a", "a/b", "app/log/x", ".reply/1/2"};
    for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
        e = good, e.name = fine[i], e.name_len = strlen(fine[i]);
        check_env_round_trip(&e);
    }
    /* A reply address longer than MBX__ENV_FROM_MAX. */
    static char from[MBX__ENV_FROM_MAX + 2];
    memset(from, 'f', sizeof from);
    e = good, e.from = from, e.from_len = MBX__ENV_FROM_MAX + 1, ENV_BAD(e);
    e = good, e.from = from, e.from_len = MBX__ENV_FROM_MAX + 2, ENV_BAD(e);
    e.flags = MBX__ENV_CALL, e.corr = 1, ENV_BAD(e);
}

TEST(bad_envelope_flags_are_ebadmsg)
{
    struct mbx__wire_env good = sample_env(), e;
    good.from = "//alpha/.reply/1/2";
    good.from_len = strlen(good.from);
    good.corr = 5;
    /* Unknown bits, alone and beside known ones. */
    for (unsigned bit = 0x10; bit <= 0x80; bit <<= 1) {
        e = good, e.flags = (uint8_t)bit, ENV_BAD(e);
        e = good, e.flags = (uint8_t)(bit | MBX__ENV_URGENT), ENV_BAD(e);
    }
    e = good, e.flags = 0xff, ENV_BAD(e);
    /* Two or three of CALL, REPLY, CALL_ENDED. */
    static const unsigned two[] = {
        MBX__ENV_CALL | MBX__ENV_REPLY,
        MBX__ENV_CALL | MBX__ENV_CALL_ENDED,
        MBX__ENV_REPLY | MBX__ENV_CALL_ENDED,
        MBX__ENV_CALL | MBX__ENV_REPLY | MBX__ENV_CALL_ENDED,
        MBX__ENV_CALL | MBX__ENV_REPLY | MBX__ENV_URGENT,
    };
    for (size_t i = 0; i < sizeof two / sizeof two[0]; i++) {
        e = good, e.flags = (uint8_t)two[i], ENV_BAD(e);
    }
    /* Correlation 0 with each of them. */
    e = good, e.flags = MBX__ENV_REPLY, e.corr = 0, ENV_BAD(e);
    e = good, e.flags = MBX__ENV_CALL_ENDED, e.corr = 0, ENV_BAD(e);
    e = good, e.flags = MBX__ENV_CALL, e.corr = 0, ENV_BAD(e);
    e = good, e.flags = MBX__ENV_CALL | MBX__ENV_URGENT, e.corr = 0;
    ENV_BAD(e);
    /* A call without a reply address. */
    e = good, e.flags = MBX__ENV_CALL, e.from = NULL, e.from_len = 0;
    ENV_BAD(e);
    /* Each of them is fine with what it needs. */
    static const unsigned ok[] = {0, MBX__ENV_URGENT, MBX__ENV_CALL,
                                  MBX__ENV_REPLY, MBX__ENV_CALL_ENDED};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        e = good, e.flags = (uint8_t)ok[i];
        check_env_round_trip(&e);
    }
}

TEST(absurd_lengths_are_einval_when_encoding)
{
    struct mbx__wire_env e = sample_env();
    uint8_t out[64];
    memset(out, 0xee, sizeof out);
    e.domain_len = 256;
    CHECK_EQ(mbx__wire_put_env(out, &e), MBX_EINVAL);
    e = sample_env(), e.kind_len = 256;
    CHECK_EQ(mbx__wire_put_env(out, &e), MBX_EINVAL);
    e = sample_env(), e.name_len = 1000;
    CHECK_EQ(mbx__wire_put_env(out, &e), MBX_EINVAL);
    /* A body too large for the int result, or to size at all. */
    e = sample_env(), e.body_len = (size_t)INT32_MAX;
    CHECK_EQ(mbx__wire_put_env(out, &e), MBX_EINVAL);
    e = sample_env(), e.body_len = SIZE_MAX - 3;
    CHECK(mbx__wire_env_size(&e) == SIZE_MAX);
    CHECK_EQ(mbx__wire_put_env(out, &e), MBX_EINVAL);
    for (size_t i = 0; i < sizeof out; i++)
        CHECK_EQ(out[i], 0xee);
}

/* Checks every prefix of the envelope in buf[0..len), whose body starts at
 * body_at: shorter than that it is rejected; from there on it decodes as
 * the whole one with a shorter body. */
static void
check_env_prefixes(const uint8_t *full, size_t len, size_t body_at,
                   const uint8_t *(*place)(const uint8_t *, size_t))
{
    struct mbx__wire_env whole;
    REQUIRE_EQ(mbx__wire_get_env(full, len, &whole), 0);
    for (size_t n = 0; n <= len; n++) {
        const uint8_t *at = place(full, n);
        struct mbx__wire_env d;
        int rc = mbx__wire_get_env(at, n, &d);
        if (n < body_at) {
            CHECK_EQ(rc, MBX_EBADMSG);
            continue;
        }
        REQUIRE_EQ(rc, 0);
        struct mbx__wire_env want = whole;
        want.body_len = n - body_at;
        CHECK(env_equal(&d, &want));
        CHECK(d.body == at + body_at);
    }
}

/* The bytes as they are. */
static const uint8_t *
in_place(const uint8_t *p, size_t n)
{
    (void)n;
    return p;
}

TEST(every_prefix_of_an_envelope_is_rejected_or_consistent)
{
    struct mbx__wire_env e = longest_env();
    size_t len = mbx__wire_env_size(&e);
    uint8_t *buf = malloc(len);
    REQUIRE(buf != NULL);
    REQUIRE_EQ(mbx__wire_put_env(buf, &e), (long long)len);
    check_env_prefixes(buf, len, len - e.body_len, in_place);
    free(buf);
    e = sample_env();
    uint8_t small[64];
    len = mbx__wire_env_size(&e);
    REQUIRE_EQ(mbx__wire_put_env(small, &e), (long long)len);
    check_env_prefixes(small, len, len - 5, in_place);
}

/* ------------------------------------------------------------------------ */
/* Decoding never reads past the end                                        */
/* ------------------------------------------------------------------------ */

/* A buffer whose end touches an unreadable page. */
static struct {
    uint8_t *map;
    size_t size; /* readable bytes, a whole number of pages */
} guard;

static void
guard_open(size_t need)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    guard.size = (need + page - 1) / page * page;
    guard.map = mmap(NULL, guard.size + page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(guard.map != MAP_FAILED);
    REQUIRE_EQ(mprotect(guard.map + guard.size, page, PROT_NONE), 0);
    /* The page really is unreadable: the kernel refuses to read it. */
    int fds[2];
    REQUIRE_EQ(pipe(fds), 0);
    errno = 0;
    CHECK(write(fds[1], guard.map + guard.size, 1) == -1 && errno == EFAULT);
    close(fds[0]);
    close(fds[1]);
}

/* Copies the first n bytes of p so that they end right at the unreadable
 * page. */
static const uint8_t *
guard_put(const uint8_t *p, size_t n)
{
    if (n > guard.size)
        th_abort_test();
    uint8_t *at = guard.map + guard.size - n;
    if (n > 0)
        memcpy(at, p, n);
    return at;
}

/* A datagram of three frames: a whole envelope, then both fragments of
 * another. Sets the frame boundaries (offsets in the datagram) in ends. */
static size_t
build_datagram(uint8_t *out, size_t ends[3], size_t *env_len)
{
    struct mbx__wire_dgram h = {0, 0x0123456789abcdefull, 42, 3};
    mbx__wire_put_header(out, &h);
    size_t n = MBX__WIRE_HEADER;
    static uint8_t env[4096];
    struct mbx__wire_env e = longest_env();
    int len = mbx__wire_put_env(env, &e);
    if (len <= 0)
        th_abort_test();
    *env_len = (size_t)len;
    struct mbx__wire_frame f[3] = {
        {1, (uint32_t)len, 0, 0, 1, (uint16_t)len, env},
        {2, (uint32_t)len, 0, 0, 2, 1000, env},
        {2, (uint32_t)len, 1000, 1, 2, (uint16_t)(len - 1000), env + 1000},
    };
    for (int i = 0; i < 3; i++) {
        n += mbx__wire_put_frame(out + n, &f[i]);
        ends[i] = n;
    }
    return n;
}

TEST(decoding_never_reads_past_the_end)
{
    static uint8_t dgram[8192];
    size_t ends[3], env_len;
    size_t len = build_datagram(dgram, ends, &env_len);
    guard_open(len);
    /* Every prefix of the datagram: the header, then as many frames as
     * are whole in it. */
    for (size_t n = 0; n <= len; n++) {
        const uint8_t *at = guard_put(dgram, n);
        struct mbx__wire_dgram h;
        int rc = mbx__wire_get_header(at, n, &h);
        if (n < MBX__WIRE_HEADER) {
            CHECK_EQ(rc, MBX_EBADMSG);
            continue;
        }
        REQUIRE_EQ(rc, 0);
        CHECK_EQ(h.frames, 3);
        const uint8_t *area = at + MBX__WIRE_HEADER;
        size_t area_len = n - MBX__WIRE_HEADER, pos = 0;
        int whole = 0;
        struct mbx__wire_frame f;
        while (pos < area_len &&
               mbx__wire_get_frame(area, area_len, &pos, &f) == 0) {
            REQUIRE(whole < 3);
            CHECK_EQ(MBX__WIRE_HEADER + pos, ends[whole]);
            whole++;
        }
        for (int i = 0; i < 3; i++)
            if (n >= ends[i])
                CHECK(whole > i);
        CHECK(whole == 3 || n < ends[whole]);
    }
    /* Every prefix of an envelope, and every one-byte change of it. */
    const uint8_t *env = dgram + MBX__WIRE_HEADER + MBX__WIRE_FRAME;
    check_env_prefixes(env, env_len, env_len - 5, guard_put);
    uint8_t *copy = malloc(env_len);
    REQUIRE(copy != NULL);
    static const uint8_t flips[] = {0x00, 0x01, 0x2f, 0x7f, 0x80, 0xff};
    for (size_t i = 0; i < env_len; i++) {
        for (size_t k = 0; k < sizeof flips; k++) {
            memcpy(copy, env, env_len);
            copy[i] = flips[k];
            struct mbx__wire_env d;
            int rc = mbx__wire_get_env(guard_put(copy, env_len), env_len, &d);
            CHECK(rc == 0 || rc == MBX_EBADMSG);
        }
    }
    /* Every suffix of the datagram's frames area. */
    for (size_t i = MBX__WIRE_HEADER; i <= len; i++) {
        const uint8_t *at = guard_put(dgram + i, len - i);
        size_t pos = 0;
        struct mbx__wire_frame f;
        while (mbx__wire_get_frame(at, len - i, &pos, &f) == 0)
            CHECK(pos <= len - i);
    }
    free(copy);
    munmap(guard.map, guard.size + (size_t)sysconf(_SC_PAGESIZE));
}

/* ------------------------------------------------------------------------ */
/* The example of docs/protocol.md                                          */
/* ------------------------------------------------------------------------ */

TEST(the_documented_example_datagram)
{
    static const uint8_t want[] = {
        /* header */
        0x4d, 0x42, 0x01, 0x00, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
        /* frame header */
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x01, 0x00, 0x28, 0x00, 0x00,
        /* envelope */
        0x00, 0x03, 'm', 'b', 'x', 0x01, '*', 0x05, 'a', 'l', 'p', 'h', 'a',
        0x06, 'L', 'O', 'G', 'G', 'E', 'R', 0x04, 'I', 'N', 'F', 'O', 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 'h', 'e', 'l',
        'l', 'o'};
    uint8_t env[64], dgram[128];
    struct mbx__wire_env e = sample_env();
    int env_len = mbx__wire_put_env(env, &e);
    REQUIRE_EQ(env_len, 40);
    struct mbx__wire_dgram h = {0, 0x0123456789abcdefull, 1, 1};
    mbx__wire_put_header(dgram, &h);
    struct mbx__wire_frame f = {1, 40, 0, 0, 1, 40, env};
    size_t n = MBX__WIRE_HEADER + mbx__wire_put_frame(dgram + 24, &f);
    REQUIRE_EQ(n, sizeof want);
    CHECK(memcmp(dgram, want, n) == 0);
}
