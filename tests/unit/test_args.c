/* Args: building, reading, encoding and decoding, and hostile input. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <msgpack.h>

#include "harness.h"
#include "mbx/mbx.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static int values_equal(const mbx_args *x, const mbx_args *y, int type,
                        size_t i, const char *key);

/* True when x and y hold the same values in the same order (doubles are
 * compared bit for bit, so NaN equals itself). Uses the public API only. */
static int
args_equal(const mbx_args *x, const mbx_args *y)
{
    if (mbx_args_len(x) != mbx_args_len(y) ||
        mbx_args_kw_len(x) != mbx_args_kw_len(y))
        return 0;
    for (size_t i = 0; i < mbx_args_len(x); i++) {
        int t = mbx_args_type(x, i);
        if (t != mbx_args_type(y, i) || !values_equal(x, y, t, i, NULL))
            return 0;
    }
    for (size_t i = 0; i < mbx_args_kw_len(x); i++) {
        const char *kx, *ky;
        if (mbx_args_kw_key(x, i, &kx) || mbx_args_kw_key(y, i, &ky) ||
            strcmp(kx, ky) != 0)
            return 0;
        int t = mbx_args_kw_type(x, kx);
        if (t != mbx_args_kw_type(y, kx) || !values_equal(x, y, t, 0, kx))
            return 0;
    }
    return 1;
}

/* Compares one positional (key NULL) or keyword value of type t. */
static int
values_equal(const mbx_args *x, const mbx_args *y, int type, size_t i,
             const char *key)
{
    int bx = 0, by = 0;
    int64_t ix = 0, iy = 0;
    double dx = 0, dy = 0;
    const char *sx = NULL, *sy = NULL;
    const void *px = NULL, *py = NULL;
    const mbx_args *ax = NULL, *ay = NULL;
    size_t nx = 0, ny = 0;
    int rx, ry;
    switch (type) {
    case MBX_T_NIL:
        return 1;
    case MBX_T_BOOL:
        rx = key ? mbx_args_kw_bool(x, key, &bx) : mbx_args_get_bool(x, i, &bx);
        ry = key ? mbx_args_kw_bool(y, key, &by) : mbx_args_get_bool(y, i, &by);
        return !rx && !ry && bx == by;
    case MBX_T_INT:
        rx = key ? mbx_args_kw_int(x, key, &ix) : mbx_args_get_int(x, i, &ix);
        ry = key ? mbx_args_kw_int(y, key, &iy) : mbx_args_get_int(y, i, &iy);
        return !rx && !ry && ix == iy;
    case MBX_T_DOUBLE:
        rx = key ? mbx_args_kw_double(x, key, &dx)
                 : mbx_args_get_double(x, i, &dx);
        ry = key ? mbx_args_kw_double(y, key, &dy)
                 : mbx_args_get_double(y, i, &dy);
        return !rx && !ry && memcmp(&dx, &dy, sizeof dx) == 0;
    case MBX_T_STR:
        rx = key ? mbx_args_kw_str(x, key, &sx, &nx)
                 : mbx_args_get_str(x, i, &sx, &nx);
        ry = key ? mbx_args_kw_str(y, key, &sy, &ny)
                 : mbx_args_get_str(y, i, &sy, &ny);
        return !rx && !ry && nx == ny && memcmp(sx, sy, nx) == 0 &&
               sx[nx] == '\0' && sy[ny] == '\0';
    case MBX_T_BYTES:
        rx = key ? mbx_args_kw_bytes(x, key, &px, &nx)
                 : mbx_args_get_bytes(x, i, &px, &nx);
        ry = key ? mbx_args_kw_bytes(y, key, &py, &ny)
                 : mbx_args_get_bytes(y, i, &py, &ny);
        return !rx && !ry && nx == ny && memcmp(px, py, nx) == 0;
    case MBX_T_ARRAY:
        rx = key ? mbx_args_kw_array(x, key, &ax)
                 : mbx_args_get_array(x, i, &ax);
        ry = key ? mbx_args_kw_array(y, key, &ay)
                 : mbx_args_get_array(y, i, &ay);
        return !rx && !ry && args_equal(ax, ay);
    case MBX_T_MAP:
        rx = key ? mbx_args_kw_map(x, key, &ax) : mbx_args_get_map(x, i, &ax);
        ry = key ? mbx_args_kw_map(y, key, &ay) : mbx_args_get_map(y, i, &ay);
        return !rx && !ry && args_equal(ax, ay);
    default:
        return 0;
    }
}

/* Encodes a, decodes the result, checks both are equal and that encoding
 * the copy gives the same bytes. Returns the copy. */
static mbx_args *
round_trip(const mbx_args *a)
{
    void *buf = NULL, *buf2 = NULL;
    size_t len = 0, len2 = 0;
    mbx_args *b = NULL;
    REQUIRE_EQ(mbx_args_encode(a, &buf, &len), 0);
    REQUIRE_EQ(mbx_args_decode(&b, buf, len), 0);
    REQUIRE(b != NULL);
    CHECK(args_equal(a, b));
    REQUIRE_EQ(mbx_args_encode(b, &buf2, &len2), 0);
    CHECK_EQ(len2, len);
    CHECK(len2 == len && memcmp(buf, buf2, len) == 0);
    free(buf);
    free(buf2);
    return b;
}

/* A MessagePack buffer to write test inputs with msgpack-c's packer. */
struct mp {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void
mp_init(struct mp *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void
mp_str(struct mp *m, const char *s)
{
    msgpack_pack_str_with_body(&m->pk, s, strlen(s));
}

/* Decodes what m holds, frees m, and returns the decoder's result. A
 * failed decode must leave *out as it was. */
static int
mp_decode(struct mp *m)
{
    mbx_args *sentinel = (mbx_args *)&sentinel;
    mbx_args *a = sentinel;
    int rc = mbx_args_decode(&a, m->sb.data, m->sb.size);
    if (rc != 0)
        CHECK(a == sentinel);
    else
        mbx_args_free(a);
    msgpack_sbuffer_destroy(&m->sb);
    return rc;
}

/* Decodes explicit bytes; returns the result. */
static int
decode_bytes(const void *p, size_t len)
{
    mbx_args *a = NULL;
    int rc = mbx_args_decode(&a, p, len);
    mbx_args_free(a);
    return rc;
}

static const char nul_str[] = {'a', '\0', 'b', '\0', 'c'};
static const unsigned char raw[] = {0x00, 0xff, 0xc1, 0x00, 0x80};

/* Integers of every MessagePack width and sign, and their edges. */
static const int64_t ints[] = {0,         1,         -1,        127,
                               128,       -32,       -33,       255,
                               256,       65535,     65536,     -32768,
                               -32769,    INT32_MAX, INT32_MIN, UINT32_MAX,
                               INT64_MAX, INT64_MIN, 1LL << 40, -(1LL << 40)};
#define N_INTS (sizeof ints / sizeof ints[0])

/* Doubles, signed zero, subnormal, NaN and infinities. */
static const double dbls[] = {0.0,    -0.0, 1.5,      -2.25e300,
                              5e-324, NAN,  INFINITY, -INFINITY};
#define N_DBLS (sizeof dbls / sizeof dbls[0])

/* Index of the first string after nil, two bools, ints and doubles. */
#define FIRST_STR (3 + N_INTS + N_DBLS)

/* Fills a with one positional value of every type and width. */
static void
add_every_type(mbx_args *a)
{
    REQUIRE_EQ(mbx_args_add_nil(a), 0);
    REQUIRE_EQ(mbx_args_add_bool(a, 1), 0);
    REQUIRE_EQ(mbx_args_add_bool(a, 0), 0);
    for (size_t i = 0; i < N_INTS; i++)
        REQUIRE_EQ(mbx_args_add_int(a, ints[i]), 0);
    for (size_t i = 0; i < N_DBLS; i++)
        REQUIRE_EQ(mbx_args_add_double(a, dbls[i]), 0);
    REQUIRE_EQ(mbx_args_add_str(a, "hello"), 0);
    REQUIRE_EQ(mbx_args_add_str(a, ""), 0);
    REQUIRE_EQ(mbx_args_add_strn(a, nul_str, sizeof nul_str), 0);
    REQUIRE_EQ(mbx_args_add_bytes(a, raw, sizeof raw), 0);
    REQUIRE_EQ(mbx_args_add_bytes(a, NULL, 0), 0);
}

/* Checks the values add_every_type wrote, in a or in a decoded copy. */
static void
check_every_type(const mbx_args *a)
{
    int b;
    int64_t v;
    double d;
    const char *s;
    const void *p;
    size_t n;
    REQUIRE_EQ(mbx_args_len(a), FIRST_STR + 5);
    CHECK_EQ(mbx_args_type(a, 0), MBX_T_NIL);
    CHECK(mbx_args_get_bool(a, 1, &b) == 0 && b == 1);
    CHECK(mbx_args_get_bool(a, 2, &b) == 0 && b == 0);
    for (size_t i = 0; i < N_INTS; i++) {
        CHECK_EQ(mbx_args_type(a, 3 + i), MBX_T_INT);
        CHECK(mbx_args_get_int(a, 3 + i, &v) == 0 && v == ints[i]);
    }
    for (size_t i = 0; i < N_DBLS; i++) {
        CHECK_EQ(mbx_args_type(a, 3 + N_INTS + i), MBX_T_DOUBLE);
        CHECK(mbx_args_get_double(a, 3 + N_INTS + i, &d) == 0 &&
              memcmp(&d, &dbls[i], sizeof d) == 0);
    }
    CHECK(mbx_args_get_str(a, FIRST_STR, &s, &n) == 0 && n == 5 &&
          strcmp(s, "hello") == 0);
    CHECK(mbx_args_get_str(a, FIRST_STR + 1, &s, &n) == 0 && n == 0 &&
          s[0] == '\0');
    CHECK(mbx_args_get_str(a, FIRST_STR + 2, &s, NULL) == 0);
    CHECK(mbx_args_get_str(a, FIRST_STR + 2, &s, &n) == 0 &&
          n == sizeof nul_str && memcmp(s, nul_str, n) == 0 && s[n] == '\0');
    CHECK_EQ(mbx_args_type(a, FIRST_STR + 2), MBX_T_STR);
    CHECK(mbx_args_get_bytes(a, FIRST_STR + 3, &p, &n) == 0 &&
          n == sizeof raw && memcmp(p, raw, n) == 0);
    CHECK(mbx_args_get_bytes(a, FIRST_STR + 4, &p, &n) == 0 && n == 0 &&
          p != NULL);
    CHECK_EQ(mbx_args_type(a, FIRST_STR + 4), MBX_T_BYTES);
}

/* Fills a with one keyword value of every type. */
static void
set_every_type(mbx_args *a)
{
    REQUIRE_EQ(mbx_args_set_nil(a, "nil"), 0);
    REQUIRE_EQ(mbx_args_set_bool(a, "yes", 7), 0);
    REQUIRE_EQ(mbx_args_set_bool(a, "no", 0), 0);
    REQUIRE_EQ(mbx_args_set_int(a, "min", INT64_MIN), 0);
    REQUIRE_EQ(mbx_args_set_int(a, "max", INT64_MAX), 0);
    REQUIRE_EQ(mbx_args_set_double(a, "nan", NAN), 0);
    REQUIRE_EQ(mbx_args_set_double(a, "inf", -INFINITY), 0);
    REQUIRE_EQ(mbx_args_set_str(a, "s", "text"), 0);
    REQUIRE_EQ(mbx_args_set_str(a, "empty", ""), 0);
    REQUIRE_EQ(mbx_args_set_bytes(a, "b", raw, sizeof raw), 0);
    REQUIRE_EQ(mbx_args_set_bytes(a, "nob", NULL, 0), 0);
}

static const char *const every_key[] = {
    "nil", "yes", "no", "min", "max", "nan", "inf", "s", "empty", "b", "nob"};
#define N_KEYS (sizeof every_key / sizeof every_key[0])

/* Checks the values set_every_type wrote, and their order. */
static void
check_every_keyword(const mbx_args *a)
{
    int b;
    int64_t v;
    double d;
    const char *s;
    const void *p;
    size_t n;
    REQUIRE_EQ(mbx_args_kw_len(a), N_KEYS);
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *k = NULL;
        CHECK(mbx_args_kw_key(a, i, &k) == 0 && strcmp(k, every_key[i]) == 0);
    }
    CHECK_EQ(mbx_args_kw_type(a, "nil"), MBX_T_NIL);
    CHECK(mbx_args_kw_bool(a, "yes", &b) == 0 && b == 1);
    CHECK(mbx_args_kw_bool(a, "no", &b) == 0 && b == 0);
    CHECK(mbx_args_kw_int(a, "min", &v) == 0 && v == INT64_MIN);
    CHECK(mbx_args_kw_int(a, "max", &v) == 0 && v == INT64_MAX);
    CHECK(mbx_args_kw_double(a, "nan", &d) == 0 && isnan(d));
    CHECK(mbx_args_kw_double(a, "inf", &d) == 0 && isinf(d) && d < 0);
    CHECK(mbx_args_kw_str(a, "s", &s, &n) == 0 && n == 4 &&
          strcmp(s, "text") == 0);
    CHECK(mbx_args_kw_str(a, "empty", &s, &n) == 0 && n == 0 && *s == '\0');
    CHECK(mbx_args_kw_bytes(a, "b", &p, &n) == 0 && n == sizeof raw &&
          memcmp(p, raw, n) == 0);
    CHECK(mbx_args_kw_bytes(a, "nob", &p, &n) == 0 && n == 0);
    CHECK_EQ(mbx_args_kw_type(a, "b"), MBX_T_BYTES);
    CHECK_EQ(mbx_args_kw_type(a, "s"), MBX_T_STR);
}

/* A chain of `levels` nested arrays (or maps under key "k"), innermost
 * holding the int 7. Returns args whose depth is `levels`. */
static mbx_args *
nested(int levels, int maps)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a && mbx_args_add_int(a, 7) == 0);
    if (maps) {
        mbx_args_free(a);
        a = mbx_args_new();
        REQUIRE(a && mbx_args_set_int(a, "k", 7) == 0);
    }
    for (int i = 0; i < levels; i++) {
        mbx_args *outer = mbx_args_new();
        REQUIRE(outer != NULL);
        int rc = maps ? mbx_args_set_map(outer, "k", &a)
                      : mbx_args_add_array(outer, &a);
        REQUIRE_EQ(rc, 0);
        REQUIRE(a == NULL);
        a = outer;
    }
    return a;
}

/* Packs `levels` nested one-element arrays around nil. */
static void
pack_nested_arrays(msgpack_packer *pk, int levels)
{
    for (int i = 0; i < levels; i++)
        msgpack_pack_array(pk, 1);
    msgpack_pack_nil(pk);
}

/* ------------------------------------------------------------------------ */
/* Building and reading                                                     */
/* ------------------------------------------------------------------------ */

TEST(empty_args_encode_as_empty_array_and_map)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    CHECK_EQ(mbx_args_len(a), 0);
    CHECK_EQ(mbx_args_kw_len(a), 0);
    void *buf;
    size_t len;
    REQUIRE_EQ(mbx_args_encode(a, &buf, &len), 0);
    const unsigned char want[] = {0x92, 0x90, 0x80};
    CHECK(len == sizeof want && memcmp(buf, want, len) == 0);
    mbx_args *b = NULL;
    REQUIRE_EQ(mbx_args_decode(&b, buf, len), 0);
    CHECK_EQ(mbx_args_len(b), 0);
    CHECK_EQ(mbx_args_kw_len(b), 0);
    free(buf);
    mbx_args_free(b);
    mbx_args_free(a);
    mbx_args_free(NULL);
    CHECK_EQ(mbx_args_len(NULL), 0);
    CHECK_EQ(mbx_args_kw_len(NULL), 0);
}

TEST(every_type_round_trips_positionally)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    add_every_type(a);
    check_every_type(a);
    mbx_args *b = round_trip(a);
    check_every_type(b);
    CHECK_EQ(mbx_args_kw_len(b), 0);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(every_type_round_trips_as_keyword)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    set_every_type(a);
    check_every_keyword(a);
    mbx_args *b = round_trip(a);
    check_every_keyword(b);
    CHECK_EQ(mbx_args_len(b), 0);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(positional_and_keyword_together)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    add_every_type(a);
    set_every_type(a);
    mbx_args *b = round_trip(a);
    check_every_type(b);
    check_every_keyword(b);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(nested_arrays_and_maps_round_trip)
{
    /* [1, [2, [3, {"k": [4, {"deep": "x"}]}]]], m={"a": {"b": [true]}} */
    mbx_args *inner = mbx_args_new(), *deep = mbx_args_new();
    REQUIRE(inner && deep);
    REQUIRE_EQ(mbx_args_set_str(deep, "deep", "x"), 0);
    REQUIRE_EQ(mbx_args_add_int(inner, 4), 0);
    REQUIRE_EQ(mbx_args_add_map(inner, &deep), 0);
    mbx_args *m3 = mbx_args_new(), *l3 = mbx_args_new();
    REQUIRE(m3 && l3);
    REQUIRE_EQ(mbx_args_set_array(m3, "k", &inner), 0);
    REQUIRE_EQ(mbx_args_add_int(l3, 3), 0);
    REQUIRE_EQ(mbx_args_add_map(l3, &m3), 0);
    mbx_args *l2 = mbx_args_new(), *a = mbx_args_new();
    REQUIRE(l2 && a);
    REQUIRE_EQ(mbx_args_add_int(l2, 2), 0);
    REQUIRE_EQ(mbx_args_add_array(l2, &l3), 0);
    REQUIRE_EQ(mbx_args_add_int(a, 1), 0);
    REQUIRE_EQ(mbx_args_add_array(a, &l2), 0);
    mbx_args *mb = mbx_args_new(), *ma = mbx_args_new();
    REQUIRE(mb && ma);
    REQUIRE_EQ(mbx_args_add_bool(mb, 1), 0);
    REQUIRE_EQ(mbx_args_set_array(ma, "b", &mb), 0);
    REQUIRE_EQ(mbx_args_set_map(a, "m", &ma), 0);
    CHECK(!inner && !deep && !m3 && !l3 && !l2 && !mb && !ma);

    mbx_args *b = round_trip(a);
    const mbx_args *v1, *v2, *v3, *v4, *v5;
    const char *s;
    int64_t i;
    int t;
    REQUIRE_EQ(mbx_args_get_array(b, 1, &v1), 0);
    CHECK(mbx_args_get_int(v1, 0, &i) == 0 && i == 2);
    REQUIRE_EQ(mbx_args_get_array(v1, 1, &v2), 0);
    REQUIRE_EQ(mbx_args_get_map(v2, 1, &v3), 0);
    CHECK_EQ(mbx_args_len(v3), 0);
    REQUIRE_EQ(mbx_args_kw_array(v3, "k", &v4), 0);
    REQUIRE_EQ(mbx_args_get_map(v4, 1, &v5), 0);
    CHECK(mbx_args_kw_str(v5, "deep", &s, NULL) == 0 && strcmp(s, "x") == 0);
    REQUIRE_EQ(mbx_args_kw_map(b, "m", &v1), 0);
    REQUIRE_EQ(mbx_args_kw_array(v1, "b", &v2), 0);
    CHECK(mbx_args_get_bool(v2, 0, &t) == 0 && t == 1);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(nesting_is_limited_to_64_levels)
{
    for (int maps = 0; maps <= 1; maps++) {
        /* 63 levels below, plus the one we add: 64 in all. */
        mbx_args *sub = nested(63, maps);
        mbx_args *a = mbx_args_new();
        REQUIRE(a != NULL);
        REQUIRE_EQ(maps ? mbx_args_set_map(a, "k", &sub)
                        : mbx_args_add_array(a, &sub),
                   0);
        mbx_args *b = round_trip(a);
        mbx_args_free(b);
        /* a is 64 deep: it cannot become anyone's nested value. */
        mbx_args *outer = mbx_args_new();
        REQUIRE(outer != NULL);
        mbx_args *keep = a;
        CHECK_EQ(maps ? mbx_args_add_map(outer, &a)
                      : mbx_args_add_array(outer, &a),
                 MBX_EINVAL);
        CHECK(a == keep);
        CHECK_EQ(mbx_args_len(outer) + mbx_args_kw_len(outer), 0);
        mbx_args_free(outer);
        mbx_args_free(a);
    }
}

TEST(replacing_a_deep_value_frees_its_depth)
{
    mbx_args *a = mbx_args_new(), *outer = mbx_args_new();
    REQUIRE(a && outer);
    mbx_args *sub = nested(63, 1);
    REQUIRE_EQ(mbx_args_set_map(a, "x", &sub), 0);
    CHECK_EQ(mbx_args_add_map(outer, &a), MBX_EINVAL);
    REQUIRE_EQ(mbx_args_set_int(a, "x", 1), 0);
    CHECK_EQ(mbx_args_add_map(outer, &a), 0);
    CHECK(a == NULL);
    mbx_args_free(outer);
}

TEST(decoding_65_levels_is_rejected_and_64_accepted)
{
    struct mp m;
    /* [ [ 64 nested arrays ], {} ] */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    pack_nested_arrays(&m.pk, 64);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), 0);
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    pack_nested_arrays(&m.pk, 65);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    /* The same under a keyword, and an empty array at level 65. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "k");
    pack_nested_arrays(&m.pk, 65);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    for (int i = 0; i < 64; i++)
        msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    /* Far deeper than any stack the decoder keeps. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    pack_nested_arrays(&m.pk, 10000);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
}

TEST(set_replaces_and_keeps_the_key_in_place)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    REQUIRE_EQ(mbx_args_set_int(a, "a", 1), 0);
    REQUIRE_EQ(mbx_args_set_int(a, "b", 2), 0);
    REQUIRE_EQ(mbx_args_set_int(a, "c", 3), 0);
    REQUIRE_EQ(mbx_args_set_str(a, "b", "two"), 0);
    mbx_args *sub = mbx_args_new();
    REQUIRE(sub && mbx_args_add_int(sub, 9) == 0);
    REQUIRE_EQ(mbx_args_set_array(a, "a", &sub), 0);
    REQUIRE_EQ(mbx_args_set_nil(a, "a"), 0);
    CHECK_EQ(mbx_args_kw_len(a), 3);
    const char *k, *s;
    CHECK(mbx_args_kw_key(a, 0, &k) == 0 && strcmp(k, "a") == 0);
    CHECK(mbx_args_kw_key(a, 1, &k) == 0 && strcmp(k, "b") == 0);
    CHECK(mbx_args_kw_key(a, 2, &k) == 0 && strcmp(k, "c") == 0);
    CHECK_EQ(mbx_args_kw_type(a, "a"), MBX_T_NIL);
    CHECK(mbx_args_kw_str(a, "b", &s, NULL) == 0 && strcmp(s, "two") == 0);
    mbx_args *b = round_trip(a);
    CHECK(mbx_args_kw_key(b, 1, &k) == 0 && strcmp(k, "b") == 0);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(many_keywords_keep_order_and_lookup)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    char key[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "key%d", i);
        REQUIRE_EQ(mbx_args_set_int(a, key, i), 0);
    }
    for (int i = 0; i < 1000; i += 7) {
        snprintf(key, sizeof key, "key%d", i);
        REQUIRE_EQ(mbx_args_set_int(a, key, -i), 0);
    }
    REQUIRE_EQ(mbx_args_kw_len(a), 1000);
    mbx_args *b = round_trip(a);
    for (int i = 0; i < 1000; i++) {
        const char *k;
        int64_t v;
        snprintf(key, sizeof key, "key%d", i);
        CHECK(mbx_args_kw_key(b, (size_t)i, &k) == 0 && strcmp(k, key) == 0);
        CHECK(mbx_args_kw_int(b, key, &v) == 0 && v == (i % 7 ? i : -i));
    }
    CHECK_EQ(mbx_args_kw_type(b, "key1000"), MBX_ENOENT);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(large_args_with_10000_values)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    char s[32];
    for (int i = 0; i < 10000; i++) {
        if (i % 2)
            REQUIRE_EQ(mbx_args_add_int(a, (int64_t)i * 1000003), 0);
        else {
            snprintf(s, sizeof s, "value %d", i);
            REQUIRE_EQ(mbx_args_add_str(a, s), 0);
        }
        snprintf(s, sizeof s, "k%d", i);
        REQUIRE_EQ(mbx_args_set_double(a, s, i / 3.0), 0);
    }
    mbx_args *b = round_trip(a);
    REQUIRE_EQ(mbx_args_len(b), 10000);
    REQUIRE_EQ(mbx_args_kw_len(b), 10000);
    int64_t v;
    double d;
    const char *str;
    CHECK(mbx_args_get_int(b, 9999, &v) == 0 && v == 9999LL * 1000003);
    CHECK(mbx_args_get_str(b, 9998, &str, NULL) == 0 &&
          strcmp(str, "value 9998") == 0);
    CHECK(mbx_args_kw_double(b, "k5000", &d) == 0 && d == 5000 / 3.0);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(decoded_args_can_be_extended)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a && mbx_args_add_int(a, 1) == 0 &&
            mbx_args_set_int(a, "x", 2) == 0);
    mbx_args *b = round_trip(a);
    REQUIRE_EQ(mbx_args_add_str(b, "more"), 0);
    REQUIRE_EQ(mbx_args_set_int(b, "x", 3), 0);
    REQUIRE_EQ(mbx_args_set_int(b, "y", 4), 0);
    mbx_args *c = round_trip(b);
    int64_t v;
    CHECK_EQ(mbx_args_len(c), 2);
    CHECK(mbx_args_kw_int(c, "x", &v) == 0 && v == 3);
    CHECK(mbx_args_kw_int(c, "y", &v) == 0 && v == 4);
    mbx_args_free(c);
    mbx_args_free(b);
    mbx_args_free(a);
}

TEST(type_mismatch_is_etype)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    REQUIRE_EQ(mbx_args_add_str(a, "s"), 0);
    REQUIRE_EQ(mbx_args_add_int(a, 1), 0);
    REQUIRE_EQ(mbx_args_add_nil(a), 0);
    REQUIRE_EQ(mbx_args_set_bytes(a, "b", "x", 1), 0);
    REQUIRE_EQ(mbx_args_set_double(a, "d", 1.0), 0);
    int b;
    int64_t i;
    double d;
    const char *s;
    const void *p;
    const mbx_args *sub;
    CHECK_EQ(mbx_args_get_bool(a, 0, &b), MBX_ETYPE);
    CHECK_EQ(mbx_args_get_int(a, 0, &i), MBX_ETYPE);
    CHECK_EQ(mbx_args_get_double(a, 1, &d), MBX_ETYPE);
    CHECK_EQ(mbx_args_get_str(a, 1, &s, NULL), MBX_ETYPE);
    CHECK_EQ(mbx_args_get_bytes(a, 0, &p, NULL), MBX_ETYPE);
    CHECK_EQ(mbx_args_get_array(a, 2, &sub), MBX_ETYPE);
    CHECK_EQ(mbx_args_get_map(a, 2, &sub), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_bool(a, "d", &b), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_int(a, "d", &i), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_double(a, "b", &d), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_str(a, "b", &s, NULL), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_bytes(a, "d", &p, NULL), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_array(a, "d", &sub), MBX_ETYPE);
    CHECK_EQ(mbx_args_kw_map(a, "b", &sub), MBX_ETYPE);
    /* An int is not a double, nor the reverse (get_double on the int at 1
     * above): no silent conversion, by keyword either. */
    REQUIRE_EQ(mbx_args_set_int(a, "n", 2), 0);
    CHECK_EQ(mbx_args_kw_double(a, "n", &d), MBX_ETYPE);
    mbx_args_free(a);
}

TEST(missing_index_or_key_is_enoent)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    REQUIRE_EQ(mbx_args_add_int(a, 1), 0);
    REQUIRE_EQ(mbx_args_set_int(a, "k", 1), 0);
    int b;
    int64_t i;
    double d;
    const char *s;
    const void *p;
    const mbx_args *sub;
    CHECK_EQ(mbx_args_type(a, 1), MBX_ENOENT);
    CHECK_EQ(mbx_args_type(a, SIZE_MAX), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_type(a, "nope"), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_type(a, ""), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_key(a, 1, &s), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_bool(a, 1, &b), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_int(a, 1, &i), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_double(a, 5, &d), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_str(a, 1, &s, NULL), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_bytes(a, 1, &p, NULL), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_array(a, 1, &sub), MBX_ENOENT);
    CHECK_EQ(mbx_args_get_map(a, 1, &sub), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_bool(a, "x", &b), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_int(a, "K", &i), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_double(a, "x", &d), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_str(a, "x", &s, NULL), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_bytes(a, "x", &p, NULL), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_array(a, "x", &sub), MBX_ENOENT);
    CHECK_EQ(mbx_args_kw_map(a, "x", &sub), MBX_ENOENT);
    mbx_args_free(a);
}

TEST(bad_arguments_are_einval)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    CHECK_EQ(mbx_args_add_nil(NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_bool(NULL, 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_int(NULL, 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_double(NULL, 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_str(NULL, "x"), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_str(a, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_strn(a, NULL, 0), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_bytes(a, NULL, 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_bytes(NULL, "x", 1), MBX_EINVAL);
    /* Longer than MessagePack's 32-bit lengths: refused before reading. */
    CHECK_EQ(mbx_args_add_bytes(a, "x", (size_t)UINT32_MAX + 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_strn(a, "x", (size_t)UINT32_MAX + 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_nil(NULL, "k"), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_nil(a, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_nil(a, ""), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_bool(a, "", 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_int(a, "", 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_double(a, NULL, 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_str(a, "k", NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_str(a, "", "v"), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_bytes(a, "k", NULL, 2), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_bytes(a, "", "v", 1), MBX_EINVAL);
    CHECK_EQ(mbx_args_len(a), 0);
    CHECK_EQ(mbx_args_kw_len(a), 0);

    int64_t i;
    const char *s;
    CHECK_EQ(mbx_args_get_int(NULL, 0, &i), MBX_EINVAL);
    CHECK_EQ(mbx_args_kw_int(NULL, "k", &i), MBX_EINVAL);
    CHECK_EQ(mbx_args_kw_int(a, NULL, &i), MBX_EINVAL);
    CHECK_EQ(mbx_args_kw_key(NULL, 0, &s), MBX_EINVAL);
    REQUIRE_EQ(mbx_args_add_int(a, 1), 0);
    CHECK_EQ(mbx_args_get_int(a, 0, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_type(NULL, 0), MBX_EINVAL);
    CHECK_EQ(mbx_args_kw_type(a, NULL), MBX_EINVAL);

    void *buf;
    size_t len;
    mbx_args *out;
    CHECK_EQ(mbx_args_encode(NULL, &buf, &len), MBX_EINVAL);
    CHECK_EQ(mbx_args_encode(a, NULL, &len), MBX_EINVAL);
    CHECK_EQ(mbx_args_encode(a, &buf, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_decode(NULL, "\x92\x90\x80", 3), MBX_EINVAL);
    CHECK_EQ(mbx_args_decode(&out, NULL, 3), MBX_EINVAL);
    mbx_args_free(a);
}

TEST(bad_nested_values_are_einval_and_stay_the_callers)
{
    mbx_args *a = mbx_args_new(), *sub = mbx_args_new();
    REQUIRE(a && sub);
    mbx_args *none = NULL;
    CHECK_EQ(mbx_args_add_array(a, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_array(a, &none), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_array(NULL, &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_array(a, &a), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_map(a, "k", &a), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_array(a, "", &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_map(a, NULL, &sub), MBX_EINVAL);
    /* A mixed sub is neither an array nor a map. */
    REQUIRE_EQ(mbx_args_add_int(sub, 1), 0);
    REQUIRE_EQ(mbx_args_set_int(sub, "k", 1), 0);
    CHECK_EQ(mbx_args_add_array(a, &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_map(a, &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_array(a, "k", &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_map(a, "k", &sub), MBX_EINVAL);
    REQUIRE(sub != NULL);
    mbx_args_free(sub);
    /* Positional-only is not a map, keyword-only is not an array. */
    sub = mbx_args_new();
    REQUIRE(sub && mbx_args_add_int(sub, 1) == 0);
    CHECK_EQ(mbx_args_add_map(a, &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_add_array(a, &sub), 0);
    CHECK(sub == NULL);
    sub = mbx_args_new();
    REQUIRE(sub && mbx_args_set_int(sub, "k", 1) == 0);
    CHECK_EQ(mbx_args_set_array(a, "x", &sub), MBX_EINVAL);
    CHECK_EQ(mbx_args_set_map(a, "x", &sub), 0);
    CHECK(sub == NULL);
    /* An empty sub is both. */
    sub = mbx_args_new();
    REQUIRE(sub != NULL);
    CHECK_EQ(mbx_args_add_map(a, &sub), 0);
    sub = mbx_args_new();
    REQUIRE(sub != NULL);
    CHECK_EQ(mbx_args_add_array(a, &sub), 0);
    CHECK_EQ(mbx_args_len(a), 3);
    CHECK_EQ(mbx_args_kw_len(a), 1);
    mbx_args_free(a);
}

TEST(strings_with_nul_bytes_keep_their_length)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    const char zeros[3] = {0, 0, 0};
    REQUIRE_EQ(mbx_args_add_strn(a, zeros, 3), 0);
    REQUIRE_EQ(mbx_args_add_strn(a, "abc", 2), 0);
    mbx_args *b = round_trip(a);
    const char *s;
    size_t n;
    CHECK(mbx_args_get_str(b, 0, &s, &n) == 0 && n == 3 &&
          memcmp(s, zeros, 3) == 0 && s[3] == '\0');
    CHECK(mbx_args_get_str(b, 1, &s, &n) == 0 && n == 2 &&
          strcmp(s, "ab") == 0);
    mbx_args_free(b);
    mbx_args_free(a);
}

/* ------------------------------------------------------------------------ */
/* Decoding what other encoders write, and rejecting what is malformed      */
/* ------------------------------------------------------------------------ */

TEST(every_msgpack_width_decodes)
{
    /* [[u8 200, u16, u32, u64 INT64_MAX, i8 -100, i16, i32, i64,
     *   f32 1.5, str8 "abc", bin8 {1,2}], {}] */
    const unsigned char in[] = {
        0x92, 0x9b, 0xcc, 0xc8, 0xcd, 0x12, 0x34, 0xce, 0x12, 0x34, 0x56,
        0x78, 0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xd0,
        0x9c, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0x00, 0x00, 0x00, 0xd3, 0x80,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xca, 0x3f, 0xc0, 0x00,
        0x00, 0xd9, 0x03, 'a',  'b',  'c',  0xc4, 0x02, 0x01, 0x02, 0x80};
    mbx_args *a = NULL;
    REQUIRE_EQ(mbx_args_decode(&a, in, sizeof in), 0);
    const int64_t want[] = {200,  0x1234,    0x12345678, INT64_MAX,
                            -100, INT16_MIN, INT32_MIN,  INT64_MIN};
    int64_t v;
    for (size_t i = 0; i < 8; i++)
        CHECK(mbx_args_get_int(a, i, &v) == 0 && v == want[i]);
    double d;
    CHECK(mbx_args_get_double(a, 8, &d) == 0 && d == 1.5);
    const char *s;
    size_t n;
    CHECK(mbx_args_get_str(a, 9, &s, &n) == 0 && n == 3 &&
          strcmp(s, "abc") == 0);
    const void *p;
    CHECK(mbx_args_get_bytes(a, 10, &p, &n) == 0 && n == 2 &&
          memcmp(p, "\x01\x02", 2) == 0);
    mbx_args_free(a);
}

TEST(malformed_input_is_ebadmsg)
{
    /* Each is one class of malformed input, written out byte by byte. */
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } bad[] = {
        {"reserved byte", "\xc1", 1},
        {"reserved byte inside", "\x92\x91\xc1\x80", 4},
        {"trailing byte", "\x92\x90\x80\xc0", 4},
        {"two objects", "\x92\x90\x80\x92\x90\x80", 6},
        {"top is a map", "\x80", 1},
        {"top is nil", "\xc0", 1},
        {"top is an int", "\x01", 1},
        {"top is a string", "\xa1x", 2},
        {"top array of 1", "\x91\x90", 2},
        {"top array of 3", "\x93\x90\x80\x80", 4},
        {"top array empty", "\x90", 1},
        {"map then array", "\x92\x80\x90", 3},
        {"array and array", "\x92\x90\x90", 3},
        {"map and map", "\x92\x80\x80", 3},
        {"nil and map", "\x92\xc0\x80", 3},
        {"int key", "\x92\x90\x81\x01\xc0", 5},
        {"nil key", "\x92\x90\x81\xc0\xc0", 5},
        {"bin key", "\x92\x90\x81\xc4\x01k\xc0", 7},
        {"array key", "\x92\x90\x81\x90\xc0", 5},
        {"map key", "\x92\x90\x81\x80\xc0", 5},
        {"empty key", "\x92\x90\x81\xa0\xc0", 5},
        {"key with NUL", "\x92\x90\x81\xa2k\x00\xc0", 7},
        {"nested int key", "\x92\x91\x81\x01\xc0\x80", 6},
        {"duplicate key", "\x92\x90\x82\xa1k\x01\xa1k\x02", 9},
        {"nested duplicate", "\x92\x91\x82\xa1k\x01\xa1k\x02\x80", 10},
        {"fixext 1", "\x92\x91\xd4\x01\x00\x80", 6},
        {"fixext 16",
         "\x92\x91\xd8\x01"
         "0123456789abcdef\x80",
         21},
        {"ext 8", "\x92\x91\xc7\x01\x05x\x80", 7},
        {"timestamp 32", "\x92\x91\xd6\xff\x00\x00\x00\x01\x80", 9},
        {"ext value", "\x92\x90\x81\xa1k\xd4\x01\x00", 8},
        {"ext key", "\x92\x90\x81\xd4\x01\x00\xc0", 7},
        {"uint64 above INT64_MAX",
         "\x92\x91\xcf\x80\x00\x00\x00\x00\x00\x00\x00\x80", 12},
        {"uint64 max", "\x92\x91\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x80", 12},
        {"array32 claims 4G", "\x92\xdd\xff\xff\xff\xff", 6},
        {"map32 claims 4G", "\x92\x90\xdf\xff\xff\xff\xff", 7},
        {"str32 claims 4G", "\x92\x91\xdb\xff\xff\xff\xff", 7},
        {"bin32 claims 4G", "\x92\x91\xc6\xff\xff\xff\xff", 7},
        {"nested array32s",
         "\x92\x91\xdd\x7f\xff\xff\xff\xdd\x7f\xff\xff\xff\xdd\x7f\xff\xff"
         "\xff",
         17},
        {"truncated int", "\x92\x91\xcd\x01", 4},
        {"truncated str",
         "\x92\x91\xa5"
         "abc",
         6},
        {"truncated key", "\x92\x90\x81\xa3k", 5},
        {"missing value", "\x92\x90\x81\xa1k", 5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = decode_bytes(bad[i].bytes, bad[i].len);
        if (rc != MBX_EBADMSG)
            fprintf(stderr, "  %s: %d\n", bad[i].what, rc);
        CHECK_EQ(rc, MBX_EBADMSG);
    }
    CHECK_EQ(decode_bytes("", 0), MBX_EBADMSG);
    CHECK_EQ(decode_bytes(NULL, 0), MBX_EBADMSG);
}

TEST(malformed_input_from_msgpack_packer_is_ebadmsg)
{
    struct mp m;
    /* Duplicate keys past the size where lookups use an index. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 0);
    msgpack_pack_map(&m.pk, 40);
    char key[16];
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof key, "k%d", i == 39 ? 17 : i);
        mp_str(&m, key);
        msgpack_pack_int(&m.pk, i);
    }
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    /* A timestamp extension as a value. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    msgpack_timestamp ts = {.tv_sec = 1, .tv_nsec = 0};
    msgpack_pack_timestamp(&m.pk, &ts);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    /* A key that is a float deep in a nested map. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "a");
    msgpack_pack_map(&m.pk, 1);
    msgpack_pack_double(&m.pk, 1.0);
    msgpack_pack_nil(&m.pk);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    /* A uint64 one above INT64_MAX, and INT64_MAX itself. */
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_uint64(&m.pk, (uint64_t)INT64_MAX + 1);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), MBX_EBADMSG);
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 1);
    msgpack_pack_uint64(&m.pk, INT64_MAX);
    msgpack_pack_map(&m.pk, 0);
    CHECK_EQ(mp_decode(&m), 0);
}

/* The encoding of args holding every type, positional and keyword, and a
 * nested array and map. */
static void
every_type_encoding(void **buf, size_t *len)
{
    mbx_args *a = mbx_args_new(), *arr = mbx_args_new(), *map = mbx_args_new();
    REQUIRE(a && arr && map);
    add_every_type(a);
    set_every_type(a);
    REQUIRE_EQ(mbx_args_add_str(arr, "in"), 0);
    REQUIRE_EQ(mbx_args_set_int(map, "in", 1), 0);
    REQUIRE_EQ(mbx_args_add_array(a, &arr), 0);
    REQUIRE_EQ(mbx_args_set_map(a, "m", &map), 0);
    REQUIRE_EQ(mbx_args_encode(a, buf, len), 0);
    mbx_args_free(a);
}

TEST(every_truncation_is_ebadmsg)
{
    void *buf;
    size_t len;
    every_type_encoding(&buf, &len);
    for (size_t n = 0; n < len; n++)
        CHECK_EQ(decode_bytes(buf, n), MBX_EBADMSG);
    CHECK_EQ(decode_bytes(buf, len), 0);
    free(buf);
}

/* A buffer whose end touches an unreadable page. */
struct guarded {
    unsigned char *map;
    size_t page;
};

static void
guarded_open(struct guarded *g)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    g->map = mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE,
                  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(g->map != MAP_FAILED);
    REQUIRE_EQ(mprotect(g->map + g->page, g->page, PROT_NONE), 0);
}

/* Copies len bytes so that they end right at the unreadable page. */
static const unsigned char *
guarded_put(struct guarded *g, const void *p, size_t len)
{
    REQUIRE(len <= g->page);
    unsigned char *at = g->map + g->page - len;
    memcpy(at, p, len);
    return at;
}

TEST(decoding_never_reads_past_the_end)
{
    void *buf;
    size_t len;
    every_type_encoding(&buf, &len);
    struct guarded g;
    guarded_open(&g);
    /* The page really is unreadable: the kernel refuses to read it. */
    int fds[2];
    REQUIRE_EQ(pipe(fds), 0);
    errno = 0;
    CHECK(write(fds[1], g.map + g.page, 1) == -1 && errno == EFAULT);
    close(fds[0]);
    close(fds[1]);
    /* Every prefix, placed against the page. */
    for (size_t n = 0; n <= len; n++) {
        const unsigned char *at = guarded_put(&g, buf, n);
        CHECK_EQ(decode_bytes(at, n), n == len ? 0 : MBX_EBADMSG);
    }
    /* Every suffix and every one-byte change, against the page too. */
    unsigned char *copy = malloc(len);
    REQUIRE(copy != NULL);
    for (size_t i = 0; i < len; i++) {
        const unsigned char *at = guarded_put(&g, (char *)buf + i, len - i);
        int rc = decode_bytes(at, len - i);
        CHECK(rc == 0 || rc == MBX_EBADMSG);
        static const unsigned char flips[] = {0x00, 0xc1, 0xcf, 0xdb,
                                              0xdd, 0xdf, 0xff, 0x9f};
        for (size_t f = 0; f < sizeof flips; f++) {
            memcpy(copy, buf, len);
            copy[i] = flips[f];
            at = guarded_put(&g, copy, len);
            rc = decode_bytes(at, len);
            CHECK(rc == 0 || rc == MBX_EBADMSG);
        }
    }
    free(copy);
    munmap(g.map, 2 * g.page);
    free(buf);
}

TEST(msgpack_c_reads_the_encoding_as_array_and_map)
{
    mbx_args *a = mbx_args_new(), *sub = mbx_args_new();
    REQUIRE(a && sub);
    REQUIRE_EQ(mbx_args_add_int(a, -5), 0);
    REQUIRE_EQ(mbx_args_add_str(a, "s"), 0);
    REQUIRE_EQ(mbx_args_add_bytes(a, "b", 1), 0);
    REQUIRE_EQ(mbx_args_add_double(a, 0.5), 0);
    REQUIRE_EQ(mbx_args_add_nil(a), 0);
    REQUIRE_EQ(mbx_args_set_bool(sub, "t", 1), 0);
    REQUIRE_EQ(mbx_args_add_map(a, &sub), 0);
    REQUIRE_EQ(mbx_args_set_int(a, "n", 300), 0);
    REQUIRE_EQ(mbx_args_set_str(a, "z", "zz"), 0);
    void *buf;
    size_t len, off = 0;
    REQUIRE_EQ(mbx_args_encode(a, &buf, &len), 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    REQUIRE_EQ(msgpack_unpack_next(&u, buf, len, &off), MSGPACK_UNPACK_SUCCESS);
    CHECK_EQ(off, len);
    msgpack_object o = u.data;
    REQUIRE(o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size == 2);
    msgpack_object pos = o.via.array.ptr[0], kw = o.via.array.ptr[1];
    REQUIRE(pos.type == MSGPACK_OBJECT_ARRAY && pos.via.array.size == 6);
    REQUIRE(kw.type == MSGPACK_OBJECT_MAP && kw.via.map.size == 2);
    msgpack_object *p = pos.via.array.ptr;
    CHECK(p[0].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && p[0].via.i64 == -5);
    CHECK(p[1].type == MSGPACK_OBJECT_STR && p[1].via.str.size == 1 &&
          p[1].via.str.ptr[0] == 's');
    CHECK(p[2].type == MSGPACK_OBJECT_BIN && p[2].via.bin.size == 1);
    CHECK(p[3].type == MSGPACK_OBJECT_FLOAT64 && p[3].via.f64 == 0.5);
    CHECK(p[4].type == MSGPACK_OBJECT_NIL);
    REQUIRE(p[5].type == MSGPACK_OBJECT_MAP && p[5].via.map.size == 1);
    CHECK(p[5].via.map.ptr[0].val.type == MSGPACK_OBJECT_BOOLEAN &&
          p[5].via.map.ptr[0].val.via.boolean);
    msgpack_object_kv *kv = kw.via.map.ptr;
    CHECK(kv[0].key.type == MSGPACK_OBJECT_STR && kv[0].key.via.str.size == 1 &&
          kv[0].key.via.str.ptr[0] == 'n');
    CHECK(kv[0].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
          kv[0].val.via.u64 == 300);
    CHECK(kv[1].key.type == MSGPACK_OBJECT_STR &&
          kv[1].key.via.str.ptr[0] == 'z');
    CHECK(kv[1].val.type == MSGPACK_OBJECT_STR && kv[1].val.via.str.size == 2);
    msgpack_unpacked_destroy(&u);
    free(buf);
    mbx_args_free(a);
}

TEST(args_written_by_plain_msgpack_c_decode)
{
    struct mp m;
    mp_init(&m);
    msgpack_pack_array(&m.pk, 2);
    msgpack_pack_array(&m.pk, 3);
    msgpack_pack_uint16(&m.pk, 7);
    msgpack_pack_float(&m.pk, 2.5f);
    msgpack_pack_bin_with_body(&m.pk, "xy", 2);
    msgpack_pack_map(&m.pk, 1);
    mp_str(&m, "name");
    mp_str(&m, "mbx");
    mbx_args *a = NULL;
    REQUIRE_EQ(mbx_args_decode(&a, m.sb.data, m.sb.size), 0);
    msgpack_sbuffer_destroy(&m.sb);
    int64_t i;
    double d;
    const char *s;
    CHECK(mbx_args_get_int(a, 0, &i) == 0 && i == 7);
    CHECK(mbx_args_get_double(a, 1, &d) == 0 && d == 2.5);
    CHECK_EQ(mbx_args_type(a, 2), MBX_T_BYTES);
    CHECK(mbx_args_kw_str(a, "name", &s, NULL) == 0 && strcmp(s, "mbx") == 0);
    mbx_args_free(a);
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

TEST(message_round_trip)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a != NULL);
    add_every_type(a);
    set_every_type(a);
    mbx_msg *m = mbx_msg_new_args("MSG_EVERY", a);
    REQUIRE(m != NULL);
    CHECK(strcmp(mbx_msg_kind(m), "MSG_EVERY") == 0);
    void *buf;
    size_t len, body_len;
    REQUIRE_EQ(mbx_args_encode(a, &buf, &len), 0);
    const void *body = mbx_msg_body(m, &body_len);
    CHECK(body_len == len && memcmp(body, buf, len) == 0);
    free(buf);
    mbx_args *b = NULL;
    REQUIRE_EQ(mbx_msg_args(m, &b), 0);
    CHECK(args_equal(a, b));
    check_every_type(b);
    check_every_keyword(b);
    mbx_args_free(b);
    mbx_msg_free(m);
    mbx_args_free(a);
}

TEST(message_edge_cases)
{
    mbx_args *a = NULL;
    mbx_msg *m = mbx_msg_new("empty", NULL, 0);
    REQUIRE(m != NULL);
    REQUIRE_EQ(mbx_msg_args(m, &a), 0);
    CHECK(a != NULL && mbx_args_len(a) == 0 && mbx_args_kw_len(a) == 0);
    mbx_args_free(a);
    mbx_msg_free(m);

    m = mbx_msg_new("junk", "\x92\x90", 2);
    REQUIRE(m != NULL);
    a = NULL;
    CHECK_EQ(mbx_msg_args(m, &a), MBX_EBADMSG);
    CHECK(a == NULL);
    CHECK_EQ(mbx_msg_args(m, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_msg_args(NULL, &a), MBX_EINVAL);
    mbx_msg_free(m);

    CHECK(mbx_msg_new_args("k", NULL) == NULL);
    a = mbx_args_new();
    REQUIRE(a != NULL);
    char long_kind[MBX_KIND_MAX + 2];
    memset(long_kind, 'k', sizeof long_kind - 1);
    long_kind[sizeof long_kind - 1] = '\0';
    CHECK(mbx_msg_new_args(long_kind, a) == NULL);
    m = mbx_msg_new_args(NULL, a);
    REQUIRE(m != NULL);
    CHECK(strcmp(mbx_msg_kind(m), "") == 0);
    mbx_msg_free(m);
    mbx_args_free(a);
}

TEST(keyword_string_with_nul_bytes_round_trips)
{
    mbx_args *a = mbx_args_new();
    REQUIRE(a);
    CHECK_EQ(mbx_args_set_strn(a, "k", "a\0b", 3), 0);
    CHECK_EQ(mbx_args_set_strn(a, "k2", NULL, 0), MBX_EINVAL);
    void *buf = NULL;
    size_t len = 0;
    REQUIRE_EQ(mbx_args_encode(a, &buf, &len), 0);
    mbx_args *b = NULL;
    REQUIRE_EQ(mbx_args_decode(&b, buf, len), 0);
    const char *s = NULL;
    size_t n = 0;
    CHECK_EQ(mbx_args_kw_str(b, "k", &s, &n), 0);
    CHECK_EQ(n, 3);
    CHECK(s && memcmp(s, "a\0b", 3) == 0 && s[3] == '\0');
    free(buf);
    mbx_args_free(a);
    mbx_args_free(b);
}
