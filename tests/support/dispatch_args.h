/*
 * Args of every supported type for the dispatcher tests, shared by
 * tests/integration/test_dispatch.c and the fork+exec helper
 * tests/support/dispatch_peer.c: one side builds them with da_build and
 * fires them, the other checks what its handler got with da_check.
 *
 * Positional: nil, both bools, integers at every MessagePack width
 * boundary (INT64_MIN and INT64_MAX included), doubles (signed zero,
 * extremes, infinities, NaN), strings of NUL-free UTF-8 at the str8/str16
 * boundaries, bytes holding NUL bytes (up to bin32), a nested array, a
 * nested map and arrays nested DA_DEEP levels deep. Keywords: one of each
 * type, under ASCII and UTF-8 keys.
 */
#ifndef MBX_TEST_DISPATCH_ARGS_H
#define MBX_TEST_DISPATCH_ARGS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mbx/mbx.h"

/* Levels of nesting of the deep positional value (the limit is 64). */
#define DA_DEEP 60
/* Length of the large bytes value: past bin16, so it is sent as bin32. */
#define DA_BIG 70000

static const int64_t da_ints[] = {
    0,          1,
    -1,         31,
    -32,        -33,
    127,        128,
    255,        256,
    -128,       -129,
    32767,      32768,
    -32768,     -32769,
    65535,      65536,
    INT32_MAX,  INT32_MIN,
    UINT32_MAX, -2147483649LL,
    INT64_MAX,  INT64_MIN,
};

#define DA_NINTS (sizeof da_ints / sizeof da_ints[0])

static const char da_utf8[] = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x80\x94 "
                              "\xe2\x9c\x93 \xe6\x97\xa5\xe6\x9c\xac "
                              "\xf0\x9f\x8e\x89";

/* A keyword key in UTF-8 (u, n, i and c, o with diaereses). */
#define DA_UTF8_KEY                                                            \
    "\xc3\xbcn\xc3\xaf"                                                        \
    "c\xc3\xb6"

static const char da_nul_bytes[] = {'\0', 'a', '\0', 'b', '\xff', '\0'};

/* Lengths of the ASCII strings: around fixstr, str8 and str16 limits. */
static const size_t da_str_lens[] = {0, 31, 32, 255, 256, 65535, 65536};

#define DA_NSTRS (sizeof da_str_lens / sizeof da_str_lens[0])

/* Byte i of a pattern string of length n: printable, never NUL. */
static inline char
da_str_byte(size_t n, size_t i)
{
    return (char)('a' + (i * 7 + n) % 26);
}

/* Byte i of the large bytes value: NUL every fourth byte. */
static inline unsigned char
da_big_byte(size_t i)
{
    return i % 4 == 0 ? 0 : (unsigned char)(i * 31 + 7);
}

/* Adds the pattern string of length n to a (keyword key, or positional). */
static inline int
da_add_pattern(mbx_args *a, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        return MBX_ENOMEM;
    for (size_t i = 0; i < n; i++)
        s[i] = da_str_byte(n, i);
    s[n] = '\0';
    int rc = mbx_args_add_str(a, s);
    free(s);
    return rc;
}

/* In the builders: one step at a time, in order, until one fails. */
#define DA_DO(x)                                                               \
    do {                                                                       \
        if (rc == 0)                                                           \
            rc = (x);                                                          \
    } while (0)

/* [1, "two", [3.5, nil, [true]], {"k": "v", "n": {"deep": -7}}] */
static inline mbx_args *
da_nested_array(void)
{
    mbx_args *arr = mbx_args_new(), *in = mbx_args_new();
    mbx_args *in2 = mbx_args_new(), *m = mbx_args_new();
    mbx_args *mm = mbx_args_new();
    int rc = arr && in && in2 && m && mm ? 0 : MBX_ENOMEM;
    DA_DO(mbx_args_add_int(arr, 1));
    DA_DO(mbx_args_add_str(arr, "two"));
    DA_DO(mbx_args_add_double(in, 3.5));
    DA_DO(mbx_args_add_nil(in));
    DA_DO(mbx_args_add_bool(in2, 1));
    DA_DO(mbx_args_add_array(in, &in2));
    DA_DO(mbx_args_add_array(arr, &in));
    DA_DO(mbx_args_set_str(m, "k", "v"));
    DA_DO(mbx_args_set_int(mm, "deep", -7));
    DA_DO(mbx_args_set_map(m, "n", &mm));
    DA_DO(mbx_args_add_map(arr, &m));
    mbx_args_free(in);
    mbx_args_free(in2);
    mbx_args_free(m);
    mbx_args_free(mm);
    if (rc != 0) {
        mbx_args_free(arr);
        return NULL;
    }
    return arr;
}

/* {"a": 1, "b": [false, "x"], "c": {"d": {"e": "f"}}} */
static inline mbx_args *
da_nested_map(void)
{
    mbx_args *m = mbx_args_new(), *b = mbx_args_new();
    mbx_args *c = mbx_args_new(), *d = mbx_args_new();
    int rc = m && b && c && d ? 0 : MBX_ENOMEM;
    DA_DO(mbx_args_set_int(m, "a", 1));
    DA_DO(mbx_args_add_bool(b, 0));
    DA_DO(mbx_args_add_str(b, "x"));
    DA_DO(mbx_args_set_array(m, "b", &b));
    DA_DO(mbx_args_set_str(d, "e", "f"));
    DA_DO(mbx_args_set_map(c, "d", &d));
    DA_DO(mbx_args_set_map(m, "c", &c));
    mbx_args_free(b);
    mbx_args_free(c);
    mbx_args_free(d);
    if (rc != 0) {
        mbx_args_free(m);
        return NULL;
    }
    return m;
}

/* Arrays nested `levels` deep, the innermost holding the int `levels`. */
static inline mbx_args *
da_deep(int levels)
{
    mbx_args *inner = mbx_args_new();
    if (!inner || mbx_args_add_int(inner, levels) != 0) {
        mbx_args_free(inner);
        return NULL;
    }
    for (int i = 1; i < levels; i++) {
        mbx_args *outer = mbx_args_new();
        if (!outer || mbx_args_add_array(outer, &inner) != 0) {
            mbx_args_free(outer);
            mbx_args_free(inner);
            return NULL;
        }
        inner = outer;
    }
    return inner;
}

/* Builds the positional values. Returns 0 or an error. */
static inline int
da_build_positional(mbx_args *a)
{
    static const double doubles[] = {0.0,      -0.0,     3.25,     1e308,
                                     4.9e-324, INFINITY, -INFINITY};
    int rc = 0;
    DA_DO(mbx_args_add_nil(a));
    DA_DO(mbx_args_add_bool(a, 1));
    DA_DO(mbx_args_add_bool(a, 0));
    for (size_t i = 0; i < DA_NINTS; i++)
        DA_DO(mbx_args_add_int(a, da_ints[i]));
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++)
        DA_DO(mbx_args_add_double(a, doubles[i]));
    DA_DO(mbx_args_add_double(a, NAN));
    DA_DO(mbx_args_add_str(a, da_utf8));
    for (size_t i = 0; i < DA_NSTRS; i++)
        DA_DO(da_add_pattern(a, da_str_lens[i]));
    DA_DO(mbx_args_add_bytes(a, NULL, 0));
    DA_DO(mbx_args_add_bytes(a, da_nul_bytes, sizeof da_nul_bytes));
    unsigned char *big = malloc(DA_BIG);
    if (!big)
        return MBX_ENOMEM;
    for (size_t i = 0; i < DA_BIG; i++)
        big[i] = da_big_byte(i);
    DA_DO(mbx_args_add_bytes(a, big, DA_BIG));
    free(big);
    mbx_args *arr = da_nested_array(), *map = da_nested_map();
    mbx_args *deep = da_deep(DA_DEEP);
    if (!arr || !map || !deep)
        rc = MBX_ENOMEM;
    DA_DO(mbx_args_add_array(a, &arr));
    DA_DO(mbx_args_add_map(a, &map));
    DA_DO(mbx_args_add_array(a, &deep));
    mbx_args_free(arr);
    mbx_args_free(map);
    mbx_args_free(deep);
    return rc;
}

/* Builds the keyword values. Returns 0 or an error. */
static inline int
da_build_keywords(mbx_args *a)
{
    int rc = 0;
    DA_DO(mbx_args_set_nil(a, "nil"));
    DA_DO(mbx_args_set_bool(a, "t", 1));
    DA_DO(mbx_args_set_bool(a, "f", 0));
    DA_DO(mbx_args_set_int(a, "min", INT64_MIN));
    DA_DO(mbx_args_set_int(a, "max", INT64_MAX));
    DA_DO(mbx_args_set_double(a, "pi", 3.14159));
    DA_DO(mbx_args_set_str(a, "str", da_utf8));
    DA_DO(mbx_args_set_str(a, "empty", ""));
    DA_DO(mbx_args_set_bytes(a, "bytes", da_nul_bytes, sizeof da_nul_bytes));
    DA_DO(mbx_args_set_int(a, DA_UTF8_KEY, 1));
    mbx_args *arr = da_nested_array(), *map = da_nested_map();
    if (!arr || !map)
        rc = MBX_ENOMEM;
    DA_DO(mbx_args_set_array(a, "arr", &arr));
    DA_DO(mbx_args_set_map(a, "map", &map));
    mbx_args_free(arr);
    mbx_args_free(map);
    return rc;
}

/* New args holding every value; NULL when out of memory. */
static inline mbx_args *
da_build(void)
{
    mbx_args *a = mbx_args_new();
    if (!a || da_build_positional(a) != 0 || da_build_keywords(a) != 0) {
        mbx_args_free(a);
        return NULL;
    }
    return a;
}

/* In the checkers: on a mismatch, return the line that found it. */
#define DA_EXPECT(cond)                                                        \
    do {                                                                       \
        if (!(cond))                                                           \
            return __LINE__;                                                   \
    } while (0)

static inline int
da_is_str(const mbx_args *a, size_t i, const char *want, size_t want_len)
{
    const char *s;
    size_t len;
    return mbx_args_get_str(a, i, &s, &len) == 0 && len == want_len &&
           memcmp(s, want, len) == 0 && s[len] == '\0';
}

static inline int
da_is_int(const mbx_args *a, size_t i, int64_t want)
{
    int64_t v;
    return mbx_args_get_int(a, i, &v) == 0 && v == want;
}

static inline int
da_kw_is_int(const mbx_args *a, const char *key, int64_t want)
{
    int64_t v;
    return mbx_args_kw_int(a, key, &v) == 0 && v == want;
}

static inline int
da_kw_is_str(const mbx_args *a, const char *key, const char *want)
{
    const char *s;
    size_t len;
    return mbx_args_kw_str(a, key, &s, &len) == 0 && len == strlen(want) &&
           memcmp(s, want, len) == 0;
}

/* Checks da_nested_array's value. Returns 0 or the failing line. */
static inline int
da_check_nested_array(const mbx_args *arr)
{
    const mbx_args *in, *in2, *m, *mm;
    int b;
    double d;
    DA_EXPECT(mbx_args_len(arr) == 4 && mbx_args_kw_len(arr) == 0);
    DA_EXPECT(da_is_int(arr, 0, 1) && da_is_str(arr, 1, "two", 3));
    DA_EXPECT(mbx_args_get_array(arr, 2, &in) == 0 && mbx_args_len(in) == 3);
    DA_EXPECT(mbx_args_get_double(in, 0, &d) == 0 && d == 3.5);
    DA_EXPECT(mbx_args_type(in, 1) == MBX_T_NIL);
    DA_EXPECT(mbx_args_get_array(in, 2, &in2) == 0 && mbx_args_len(in2) == 1);
    DA_EXPECT(mbx_args_get_bool(in2, 0, &b) == 0 && b == 1);
    DA_EXPECT(mbx_args_get_map(arr, 3, &m) == 0 && mbx_args_kw_len(m) == 2);
    DA_EXPECT(da_kw_is_str(m, "k", "v"));
    DA_EXPECT(mbx_args_kw_map(m, "n", &mm) == 0 && mbx_args_kw_len(mm) == 1);
    DA_EXPECT(da_kw_is_int(mm, "deep", -7));
    return 0;
}

/* Checks da_nested_map's value. Returns 0 or the failing line. */
static inline int
da_check_nested_map(const mbx_args *m)
{
    const mbx_args *b, *c, *d;
    int v;
    DA_EXPECT(mbx_args_kw_len(m) == 3 && mbx_args_len(m) == 0);
    const char *key;
    DA_EXPECT(mbx_args_kw_key(m, 0, &key) == 0 && strcmp(key, "a") == 0);
    DA_EXPECT(mbx_args_kw_key(m, 2, &key) == 0 && strcmp(key, "c") == 0);
    DA_EXPECT(da_kw_is_int(m, "a", 1));
    DA_EXPECT(mbx_args_kw_array(m, "b", &b) == 0 && mbx_args_len(b) == 2);
    DA_EXPECT(mbx_args_get_bool(b, 0, &v) == 0 && v == 0);
    DA_EXPECT(da_is_str(b, 1, "x", 1));
    DA_EXPECT(mbx_args_kw_map(m, "c", &c) == 0);
    DA_EXPECT(mbx_args_kw_map(c, "d", &d) == 0 && da_kw_is_str(d, "e", "f"));
    return 0;
}

/* Checks the positional values from index *i on, advancing *i. */
static inline int
da_check_scalars(const mbx_args *a, size_t *i)
{
    int b;
    double d;
    DA_EXPECT(mbx_args_type(a, (*i)++) == MBX_T_NIL);
    DA_EXPECT(mbx_args_get_bool(a, (*i)++, &b) == 0 && b == 1);
    DA_EXPECT(mbx_args_get_bool(a, (*i)++, &b) == 0 && b == 0);
    for (size_t k = 0; k < DA_NINTS; k++)
        DA_EXPECT(da_is_int(a, (*i)++, da_ints[k]));
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && d == 0.0 &&
              !signbit(d));
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && d == 0.0 &&
              signbit(d));
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && d == 3.25);
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && d == 1e308);
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && d == 4.9e-324);
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && isinf(d) && d > 0);
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && isinf(d) && d < 0);
    DA_EXPECT(mbx_args_get_double(a, (*i)++, &d) == 0 && isnan(d));
    /* Ints and doubles are never converted. */
    DA_EXPECT(mbx_args_get_double(a, 3, &d) == MBX_ETYPE);
    return 0;
}

/* Checks the strings and bytes from index *i on, advancing *i. */
static inline int
da_check_strings(const mbx_args *a, size_t *i)
{
    DA_EXPECT(da_is_str(a, (*i)++, da_utf8, strlen(da_utf8)));
    for (size_t k = 0; k < DA_NSTRS; k++) {
        const char *s;
        size_t len, n = da_str_lens[k];
        DA_EXPECT(mbx_args_get_str(a, (*i)++, &s, &len) == 0 && len == n);
        for (size_t j = 0; j < n; j++)
            DA_EXPECT(s[j] == da_str_byte(n, j));
    }
    const void *p;
    size_t len;
    DA_EXPECT(mbx_args_get_bytes(a, (*i)++, &p, &len) == 0 && len == 0);
    DA_EXPECT(mbx_args_get_bytes(a, (*i)++, &p, &len) == 0 &&
              len == sizeof da_nul_bytes && memcmp(p, da_nul_bytes, len) == 0);
    DA_EXPECT(mbx_args_get_bytes(a, (*i)++, &p, &len) == 0 && len == DA_BIG);
    for (size_t j = 0; j < DA_BIG; j++)
        DA_EXPECT(((const unsigned char *)p)[j] == da_big_byte(j));
    /* Strings and bytes keep their types. */
    DA_EXPECT(mbx_args_get_str(a, *i - 1, (const char **)&p, &len) ==
              MBX_ETYPE);
    return 0;
}

/* Checks the nested positional values from index *i on. */
static inline int
da_check_containers(const mbx_args *a, size_t *i)
{
    const mbx_args *arr, *map, *deep;
    int rc;
    DA_EXPECT(mbx_args_type(a, *i) == MBX_T_ARRAY);
    DA_EXPECT(mbx_args_get_array(a, (*i)++, &arr) == 0);
    if ((rc = da_check_nested_array(arr)) != 0)
        return rc;
    DA_EXPECT(mbx_args_type(a, *i) == MBX_T_MAP);
    DA_EXPECT(mbx_args_get_map(a, (*i)++, &map) == 0);
    if ((rc = da_check_nested_map(map)) != 0)
        return rc;
    DA_EXPECT(mbx_args_get_array(a, (*i)++, &deep) == 0);
    for (int level = 1; level < DA_DEEP; level++) {
        DA_EXPECT(mbx_args_len(deep) == 1);
        DA_EXPECT(mbx_args_get_array(deep, 0, &deep) == 0);
    }
    DA_EXPECT(mbx_args_len(deep) == 1 && da_is_int(deep, 0, DA_DEEP));
    return 0;
}

/* Checks the keyword values. */
static inline int
da_check_keywords(const mbx_args *a)
{
    static const char *const keys[] = {"nil",   "t",         "f",   "min",
                                       "max",   "pi",        "str", "empty",
                                       "bytes", DA_UTF8_KEY, "arr", "map"};
    DA_EXPECT(mbx_args_kw_len(a) == sizeof keys / sizeof keys[0]);
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *key;
        DA_EXPECT(mbx_args_kw_key(a, k, &key) == 0);
        DA_EXPECT(strcmp(key, keys[k]) == 0);
    }
    int b;
    double d;
    const void *p;
    size_t len;
    const mbx_args *sub;
    int rc;
    DA_EXPECT(mbx_args_kw_type(a, "nil") == MBX_T_NIL);
    DA_EXPECT(mbx_args_kw_bool(a, "t", &b) == 0 && b == 1);
    DA_EXPECT(mbx_args_kw_bool(a, "f", &b) == 0 && b == 0);
    DA_EXPECT(da_kw_is_int(a, "min", INT64_MIN));
    DA_EXPECT(da_kw_is_int(a, "max", INT64_MAX));
    DA_EXPECT(mbx_args_kw_double(a, "pi", &d) == 0 && d == 3.14159);
    DA_EXPECT(da_kw_is_str(a, "str", da_utf8));
    DA_EXPECT(da_kw_is_str(a, "empty", ""));
    DA_EXPECT(mbx_args_kw_bytes(a, "bytes", &p, &len) == 0 &&
              len == sizeof da_nul_bytes && memcmp(p, da_nul_bytes, len) == 0);
    DA_EXPECT(da_kw_is_int(a, DA_UTF8_KEY, 1));
    DA_EXPECT(mbx_args_kw_array(a, "arr", &sub) == 0);
    if ((rc = da_check_nested_array(sub)) != 0)
        return rc;
    DA_EXPECT(mbx_args_kw_map(a, "map", &sub) == 0);
    if ((rc = da_check_nested_map(sub)) != 0)
        return rc;
    DA_EXPECT(mbx_args_kw_type(a, "absent") == MBX_ENOENT);
    return 0;
}

/* Checks args built by da_build. Returns 0, or the line (in this file) of
 * the first check that failed. */
static inline int
da_check(const mbx_args *a)
{
    size_t i = 0;
    int rc;
    if ((rc = da_check_scalars(a, &i)) != 0 ||
        (rc = da_check_strings(a, &i)) != 0 ||
        (rc = da_check_containers(a, &i)) != 0)
        return rc;
    DA_EXPECT(mbx_args_len(a) == i);
    DA_EXPECT(mbx_args_type(a, i) == MBX_ENOENT);
    return da_check_keywords(a);
}

#endif
