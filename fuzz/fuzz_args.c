/*
 * libFuzzer target: mbx_args_decode on arbitrary bytes.
 *
 * Any input must either fail cleanly (MBX_EBADMSG, *out untouched) or
 * decode into args whose every value reads back through the getters. What
 * decodes must encode, decode again to equal args, and encode to the very
 * same bytes; the same must hold through a message body.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mbx/mbx.h"

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

static void walk(const mbx_args *a, int depth);

/* Reads value i (or `key`) of type t with its own getter, and checks that
 * a getter of another type refuses it. */
static void
read_value(const mbx_args *a, size_t i, const char *key, int t, int depth)
{
    const mbx_args *sub = NULL;
    const char *s = NULL;
    size_t n = 0;
    int64_t v;
    if (t == MBX_T_ARRAY || t == MBX_T_MAP) {
        int rc = key ? (t == MBX_T_ARRAY ? mbx_args_kw_array(a, key, &sub)
                                         : mbx_args_kw_map(a, key, &sub))
                     : (t == MBX_T_ARRAY ? mbx_args_get_array(a, i, &sub)
                                         : mbx_args_get_map(a, i, &sub));
        ASSERT(rc == 0 && sub != NULL);
        ASSERT(t == MBX_T_ARRAY ? mbx_args_kw_len(sub) == 0
                                : mbx_args_len(sub) == 0);
        walk(sub, depth + 1);
    } else if (t == MBX_T_STR) {
        ASSERT((key ? mbx_args_kw_str(a, key, &s, &n)
                    : mbx_args_get_str(a, i, &s, &n)) == 0);
        ASSERT(s != NULL && s[n] == '\0');
    }
    if (t != MBX_T_INT)
        ASSERT((key ? mbx_args_kw_int(a, key, &v)
                    : mbx_args_get_int(a, i, &v)) == MBX_ETYPE);
}

/* Checks every value of a, and of its nested args, down to 64 levels. */
static void
walk(const mbx_args *a, int depth)
{
    ASSERT(depth <= 64);
    for (size_t i = 0; i < mbx_args_len(a); i++) {
        int t = mbx_args_type(a, i);
        ASSERT(t >= MBX_T_NIL && t <= MBX_T_MAP);
        read_value(a, i, NULL, t, depth);
    }
    ASSERT(mbx_args_type(a, mbx_args_len(a)) == MBX_ENOENT);
    for (size_t i = 0; i < mbx_args_kw_len(a); i++) {
        const char *key = NULL;
        ASSERT(mbx_args_kw_key(a, i, &key) == 0 && key && key[0] != '\0');
        int t = mbx_args_kw_type(a, key);
        ASSERT(t >= MBX_T_NIL && t <= MBX_T_MAP);
        read_value(a, 0, key, t, depth);
    }
    const char *none;
    ASSERT(mbx_args_kw_key(a, mbx_args_kw_len(a), &none) == MBX_ENOENT);
}

/* Encodes a, checking that it succeeds. */
static void *
encode(const mbx_args *a, size_t *len)
{
    void *buf = NULL;
    ASSERT(mbx_args_encode(a, &buf, len) == 0 && buf != NULL);
    return buf;
}

/* Sends a's encoding through a message body and back. */
static void
through_message(const mbx_args *a, const void *enc, size_t len)
{
    mbx_msg *m = mbx_msg_new_args("FUZZ", a);
    ASSERT(m != NULL);
    size_t body_len;
    const void *body = mbx_msg_body(m, &body_len);
    ASSERT(body_len == len && memcmp(body, enc, len) == 0);
    mbx_args *b = NULL;
    ASSERT(mbx_msg_args(m, &b) == 0);
    size_t len2;
    void *enc2 = encode(b, &len2);
    ASSERT(len2 == len && memcmp(enc2, enc, len) == 0);
    free(enc2);
    mbx_args_free(b);
    mbx_msg_free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mbx_args *sentinel = (mbx_args *)&sentinel;
    mbx_args *a = sentinel;
    int rc = mbx_args_decode(&a, data, size);
    if (rc != 0) {
        ASSERT(rc == MBX_EBADMSG || rc == MBX_ENOMEM);
        ASSERT(a == sentinel);
        return 0;
    }
    walk(a, 0);
    size_t len1, len2;
    void *enc1 = encode(a, &len1);
    mbx_args *b = NULL;
    ASSERT(mbx_args_decode(&b, enc1, len1) == 0);
    walk(b, 0);
    void *enc2 = encode(b, &len2);
    ASSERT(len1 == len2 && memcmp(enc1, enc2, len1) == 0);
    through_message(a, enc1, len1);
    free(enc2);
    free(enc1);
    mbx_args_free(b);
    mbx_args_free(a);
    return 0;
}
