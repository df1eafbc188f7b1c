/*
 * Args: typed positional and keyword values, carried as the MessagePack
 * [positional array, keyword map] described in docs/args.md.
 *
 * Encoding uses msgpack-c's packer. Decoding instantiates msgpack-c's own
 * unpack template with callbacks that build args directly. We do not use
 * msgpack_unpack_next: it allows only 32 open containers, and it allocates
 * room for as many elements as an array or map header claims before reading
 * any, so five hostile bytes ask for about 100 GB. Here the container limit
 * is ours, and arrays grow only as their elements really arrive.
 */

/* Levels of nested arrays and maps allowed below the top-level args. */
#define ARGS_MAX_DEPTH 64

/* Open containers the decoder allows: the outer array, the positional array
 * or keyword map, and ARGS_MAX_DEPTH nested levels. Read by the unpack
 * template below, so it must come before any msgpack header. */
#define MSGPACK_EMBED_STACK_SIZE (ARGS_MAX_DEPTH + 2)

#include <msgpack.h>

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/args.h"
#include "mbx/mbx.h"
#include "platform/platform.h"

/* One value. Strings and bytes own a malloc'd copy followed by a NUL byte;
 * arrays and maps own their nested args. */
struct value {
    int type; /* enum mbx_type; 0 only for the decoder's unset root */
    union {
        int b;
        int64_t i;
        double d;
        struct {
            char *p;
            size_t len;
        } s;
        mbx_args *sub;
    } u;
};

/* One keyword value. The key is non-empty and holds no NUL byte. */
struct keyword {
    char *key; /* malloc'd, NUL-terminated */
    size_t key_len;
    struct value v;
};

struct mbx_args {
    struct value *pos; /* positional values in order */
    size_t npos, pos_cap;
    struct keyword *kw; /* keyword values in insertion or wire order */
    size_t nkw, kw_cap;
    size_t *index;    /* open addressing: keyword number + 1, 0 when free */
    size_t index_cap; /* a power of two; 0 while the keywords are few */
    uint64_t seed;    /* the index's hash seed */
    unsigned depth;   /* levels of nested arrays and maps below this one */
};

/* Keywords are found by a linear scan up to this many, then by the index. */
#define INDEX_FROM 8

/* MessagePack counts and lengths are 32-bit. */
#define WIRE_MAX UINT32_MAX

#define NOT_FOUND SIZE_MAX

/* ------------------------------------------------------------------------ */
/* Values and storage                                                       */
/* ------------------------------------------------------------------------ */

static void
value_free(struct value *v)
{
    if (v->type == MBX_T_STR || v->type == MBX_T_BYTES)
        free(v->u.s.p);
    else if (v->type == MBX_T_ARRAY || v->type == MBX_T_MAP)
        mbx_args_free(v->u.sub);
    v->type = MBX_T_NIL;
}

static int
is_container(const struct value *v)
{
    return v->type == MBX_T_ARRAY || v->type == MBX_T_MAP;
}

/* Fills *v with a NUL-terminated copy of len bytes at p. */
static int
blob_value(struct value *v, int type, const void *p, size_t len)
{
    if (len > WIRE_MAX)
        return MBX_EINVAL;
    char *copy = malloc(len + 1);
    if (!copy)
        return MBX_ENOMEM;
    if (len)
        memcpy(copy, p, len);
    copy[len] = '\0';
    v->type = type;
    v->u.s.p = copy;
    v->u.s.len = len;
    return 0;
}

/* Makes room for `need` elements of `size` bytes in the array p of *cap
 * elements. Returns the array (moved perhaps), or NULL with p untouched. */
static void *
grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t n = *cap ? *cap * 2 : 4;
    if (n < need)
        n = need;
    if (n > SIZE_MAX / size)
        return NULL;
    void *q = realloc(p, n * size);
    if (q)
        *cap = n;
    return q;
}

/* Raises a's depth to cover v when v is an array or map. */
static void
note_depth(mbx_args *a, const struct value *v)
{
    if (is_container(v) && v->u.sub->depth + 1 > a->depth)
        a->depth = v->u.sub->depth + 1;
}

/* Recomputes a's depth from its values (after one was replaced). */
static void
recompute_depth(mbx_args *a)
{
    a->depth = 0;
    for (size_t i = 0; i < a->npos; i++)
        note_depth(a, &a->pos[i]);
    for (size_t i = 0; i < a->nkw; i++)
        note_depth(a, &a->kw[i].v);
}

/* Appends *v to the positional values; a owns it on success. */
static int
pos_push(mbx_args *a, const struct value *v)
{
    if (a->npos >= WIRE_MAX)
        return MBX_EINVAL;
    struct value *pos = grow(a->pos, &a->pos_cap, a->npos + 1, sizeof *pos);
    if (!pos)
        return MBX_ENOMEM;
    a->pos = pos;
    a->pos[a->npos++] = *v;
    note_depth(a, v);
    return 0;
}

mbx_args *
mbx_args_new(void)
{
    return calloc(1, sizeof(mbx_args));
}

void
mbx_args_free(mbx_args *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->npos; i++)
        value_free(&a->pos[i]);
    for (size_t i = 0; i < a->nkw; i++) {
        free(a->kw[i].key);
        value_free(&a->kw[i].v);
    }
    free(a->pos);
    free(a->kw);
    free(a->index);
    free(a);
}

/* ------------------------------------------------------------------------ */
/* Keyword lookup                                                           */
/* ------------------------------------------------------------------------ */

/* FNV-1a from the index's seed, then a final mix so that every bit of the
 * result depends on every byte and on the seed: keys sent from elsewhere
 * cannot be chosen to pile into one bucket without knowing the seed. */
static size_t
key_hash(uint64_t seed, const char *key, size_t len)
{
    uint64_t h = seed ^ 14695981039346656037u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211u;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53u;
    h ^= h >> 33;
    return (size_t)h;
}

static int
key_equal(const struct keyword *k, const char *key, size_t len)
{
    return k->key_len == len && memcmp(k->key, key, len) == 0;
}

/* Records keyword number i in an index of cap slots. */
static void
index_put(const mbx_args *a, size_t *index, size_t cap, size_t i)
{
    const struct keyword *k = &a->kw[i];
    size_t h = key_hash(a->seed, k->key, k->key_len) & (cap - 1);
    while (index[h] != 0)
        h = (h + 1) & (cap - 1);
    index[h] = i + 1;
}

/* Makes sure the index can take n keywords at most half full, building it
 * once there are more than INDEX_FROM. */
static int
index_reserve(mbx_args *a, size_t n)
{
    if (n <= INDEX_FROM || n * 2 <= a->index_cap)
        return 0;
    size_t cap = a->index_cap ? a->index_cap * 2 : 4 * INDEX_FROM;
    size_t *index = calloc(cap, sizeof *index);
    if (!index)
        return MBX_ENOMEM;
    /* The object's address and the time: unknown to whoever sent the keys. */
    if (!a->index)
        a->seed = (uint64_t)(uintptr_t)a ^ (uint64_t)mbx__now_ns();
    for (size_t i = 0; i < a->nkw; i++)
        index_put(a, index, cap, i);
    free(a->index);
    a->index = index;
    a->index_cap = cap;
    return 0;
}

/* The number of the keyword `key` (len bytes), or NOT_FOUND. */
static size_t
kw_find(const mbx_args *a, const char *key, size_t len)
{
    if (!a->index) {
        for (size_t i = 0; i < a->nkw; i++)
            if (key_equal(&a->kw[i], key, len))
                return i;
        return NOT_FOUND;
    }
    size_t mask = a->index_cap - 1;
    for (size_t h = key_hash(a->seed, key, len) & mask;; h = (h + 1) & mask) {
        size_t slot = a->index[h];
        if (slot == 0)
            return NOT_FOUND;
        if (key_equal(&a->kw[slot - 1], key, len))
            return slot - 1;
    }
}

/* Appends a keyword that is not present yet; on success a owns `key` (a
 * malloc'd NUL-terminated copy) and *v. */
static int
kw_append(mbx_args *a, char *key, size_t len, const struct value *v)
{
    if (a->nkw >= WIRE_MAX)
        return MBX_EINVAL;
    struct keyword *kw = grow(a->kw, &a->kw_cap, a->nkw + 1, sizeof *kw);
    if (!kw)
        return MBX_ENOMEM;
    a->kw = kw;
    if (index_reserve(a, a->nkw + 1) != 0)
        return MBX_ENOMEM;
    a->kw[a->nkw] = (struct keyword){.key = key, .key_len = len, .v = *v};
    if (a->index)
        index_put(a, a->index, a->index_cap, a->nkw);
    a->nkw++;
    note_depth(a, v);
    return 0;
}

/* Sets `key` to *v, replacing an existing value in its place; a owns *v on
 * success. */
static int
kw_put(mbx_args *a, const char *key, const struct value *v)
{
    size_t len = strlen(key);
    size_t i = kw_find(a, key, len);
    if (i != NOT_FOUND) {
        struct value old = a->kw[i].v;
        int was_container = is_container(&old);
        a->kw[i].v = *v;
        value_free(&old);
        if (was_container)
            recompute_depth(a); /* the old value may have been the deepest */
        else
            note_depth(a, v);
        return 0;
    }
    char *copy = malloc(len + 1);
    if (!copy)
        return MBX_ENOMEM;
    memcpy(copy, key, len + 1);
    int rc = kw_append(a, copy, len, v);
    if (rc != 0)
        free(copy);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Building                                                                 */
/* ------------------------------------------------------------------------ */

/* Appends a value that owns no memory. */
static int
add_scalar(mbx_args *a, struct value v)
{
    if (!a)
        return MBX_EINVAL;
    return pos_push(a, &v);
}

/* Appends a copy of a string or bytes. */
static int
add_blob(mbx_args *a, int type, const void *p, size_t len)
{
    struct value v;
    if (!a || (!p && (type == MBX_T_STR || len)))
        return MBX_EINVAL;
    int rc = blob_value(&v, type, p, len);
    if (rc == 0 && (rc = pos_push(a, &v)) != 0)
        value_free(&v);
    return rc;
}

/* Checks that *sub may become a nested array or map of a and wraps it in
 * *v (without taking it yet). */
static int
sub_value(const mbx_args *a, mbx_args **sub, int type, struct value *v)
{
    if (!a || !sub || !*sub || *sub == a)
        return MBX_EINVAL;
    const mbx_args *s = *sub;
    if ((type == MBX_T_ARRAY && s->nkw) || (type == MBX_T_MAP && s->npos))
        return MBX_EINVAL;
    if (s->depth + 1 > ARGS_MAX_DEPTH)
        return MBX_EINVAL;
    v->type = type;
    v->u.sub = *sub;
    return 0;
}

/* Appends *sub as a nested array or map, taking it on success. */
static int
add_sub(mbx_args *a, mbx_args **sub, int type)
{
    struct value v;
    int rc = sub_value(a, sub, type, &v);
    if (rc == 0 && (rc = pos_push(a, &v)) == 0)
        *sub = NULL;
    return rc;
}

int
mbx_args_add_nil(mbx_args *a)
{
    return add_scalar(a, (struct value){.type = MBX_T_NIL});
}

int
mbx_args_add_bool(mbx_args *a, int v)
{
    return add_scalar(a, (struct value){.type = MBX_T_BOOL, .u.b = v != 0});
}

int
mbx_args_add_int(mbx_args *a, int64_t v)
{
    return add_scalar(a, (struct value){.type = MBX_T_INT, .u.i = v});
}

int
mbx_args_add_double(mbx_args *a, double v)
{
    return add_scalar(a, (struct value){.type = MBX_T_DOUBLE, .u.d = v});
}

int
mbx_args_add_str(mbx_args *a, const char *s)
{
    return add_blob(a, MBX_T_STR, s, s ? strlen(s) : 0);
}

int
mbx_args_add_strn(mbx_args *a, const char *s, size_t len)
{
    return add_blob(a, MBX_T_STR, s, len);
}

int
mbx_args_add_bytes(mbx_args *a, const void *p, size_t len)
{
    return add_blob(a, MBX_T_BYTES, p, len);
}

int
mbx_args_add_array(mbx_args *a, mbx_args **sub)
{
    return add_sub(a, sub, MBX_T_ARRAY);
}

int
mbx_args_add_map(mbx_args *a, mbx_args **sub)
{
    return add_sub(a, sub, MBX_T_MAP);
}

/* Sets a keyword to a value that owns no memory. */
static int
set_scalar(mbx_args *a, const char *key, struct value v)
{
    if (!a || !key || !*key)
        return MBX_EINVAL;
    return kw_put(a, key, &v);
}

/* Sets a keyword to a copy of a string or bytes. */
static int
set_blob(mbx_args *a, const char *key, int type, const void *p, size_t len)
{
    struct value v;
    if (!a || !key || !*key || (!p && (type == MBX_T_STR || len)))
        return MBX_EINVAL;
    int rc = blob_value(&v, type, p, len);
    if (rc == 0 && (rc = kw_put(a, key, &v)) != 0)
        value_free(&v);
    return rc;
}

/* Sets a keyword to *sub as a nested array or map, taking it on success. */
static int
set_sub(mbx_args *a, const char *key, mbx_args **sub, int type)
{
    struct value v;
    if (!key || !*key)
        return MBX_EINVAL;
    int rc = sub_value(a, sub, type, &v);
    if (rc == 0 && (rc = kw_put(a, key, &v)) == 0)
        *sub = NULL;
    return rc;
}

int
mbx_args_set_nil(mbx_args *a, const char *key)
{
    return set_scalar(a, key, (struct value){.type = MBX_T_NIL});
}

int
mbx_args_set_bool(mbx_args *a, const char *key, int v)
{
    return set_scalar(a, key,
                      (struct value){.type = MBX_T_BOOL, .u.b = v != 0});
}

int
mbx_args_set_int(mbx_args *a, const char *key, int64_t v)
{
    return set_scalar(a, key, (struct value){.type = MBX_T_INT, .u.i = v});
}

int
mbx_args_set_double(mbx_args *a, const char *key, double v)
{
    return set_scalar(a, key, (struct value){.type = MBX_T_DOUBLE, .u.d = v});
}

int
mbx_args_set_str(mbx_args *a, const char *key, const char *s)
{
    return set_blob(a, key, MBX_T_STR, s, s ? strlen(s) : 0);
}

int
mbx_args_set_strn(mbx_args *a, const char *key, const char *s, size_t len)
{
    return set_blob(a, key, MBX_T_STR, s, len);
}

int
mbx_args_set_bytes(mbx_args *a, const char *key, const void *p, size_t len)
{
    return set_blob(a, key, MBX_T_BYTES, p, len);
}

int
mbx_args_set_array(mbx_args *a, const char *key, mbx_args **sub)
{
    return set_sub(a, key, sub, MBX_T_ARRAY);
}

int
mbx_args_set_map(mbx_args *a, const char *key, mbx_args **sub)
{
    return set_sub(a, key, sub, MBX_T_MAP);
}

/* ------------------------------------------------------------------------ */
/* Reading                                                                  */
/* ------------------------------------------------------------------------ */

size_t
mbx_args_len(const mbx_args *a)
{
    return a ? a->npos : 0;
}

size_t
mbx_args_kw_len(const mbx_args *a)
{
    return a ? a->nkw : 0;
}

int
mbx_args_kw_key(const mbx_args *a, size_t i, const char **key)
{
    if (!a || !key)
        return MBX_EINVAL;
    if (i >= a->nkw)
        return MBX_ENOENT;
    *key = a->kw[i].key;
    return 0;
}

/* The positional value i in *v, or MBX_EINVAL / MBX_ENOENT. */
static int
pos_value(const mbx_args *a, size_t i, const struct value **v)
{
    if (!a)
        return MBX_EINVAL;
    if (i >= a->npos)
        return MBX_ENOENT;
    *v = &a->pos[i];
    return 0;
}

/* The keyword value `key` in *v, or MBX_EINVAL / MBX_ENOENT. */
static int
kw_value(const mbx_args *a, const char *key, const struct value **v)
{
    if (!a || !key)
        return MBX_EINVAL;
    size_t i = kw_find(a, key, strlen(key));
    if (i == NOT_FOUND)
        return MBX_ENOENT;
    *v = &a->kw[i].v;
    return 0;
}

int
mbx_args_type(const mbx_args *a, size_t i)
{
    const struct value *v;
    int rc = pos_value(a, i, &v);
    return rc ? rc : v->type;
}

int
mbx_args_kw_type(const mbx_args *a, const char *key)
{
    const struct value *v;
    int rc = kw_value(a, key, &v);
    return rc ? rc : v->type;
}

/* Positional value i of `type` in *v; MBX_EINVAL for a NULL a or out. */
static int
pos_typed(const mbx_args *a, size_t i, int type, const void *out,
          const struct value **v)
{
    int rc = pos_value(a, i, v);
    if (rc != 0)
        return rc;
    if (!out)
        return MBX_EINVAL;
    return (*v)->type == type ? 0 : MBX_ETYPE;
}

/* Keyword value `key` of `type` in *v; MBX_EINVAL for a NULL a, key or
 * out. */
static int
kw_typed(const mbx_args *a, const char *key, int type, const void *out,
         const struct value **v)
{
    int rc = kw_value(a, key, v);
    if (rc != 0)
        return rc;
    if (!out)
        return MBX_EINVAL;
    return (*v)->type == type ? 0 : MBX_ETYPE;
}

int
mbx_args_get_bool(const mbx_args *a, size_t i, int *out)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_BOOL, out, &v);
    if (rc == 0)
        *out = v->u.b;
    return rc;
}

int
mbx_args_get_int(const mbx_args *a, size_t i, int64_t *out)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_INT, out, &v);
    if (rc == 0)
        *out = v->u.i;
    return rc;
}

int
mbx_args_get_double(const mbx_args *a, size_t i, double *out)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_DOUBLE, out, &v);
    if (rc == 0)
        *out = v->u.d;
    return rc;
}

int
mbx_args_get_str(const mbx_args *a, size_t i, const char **out, size_t *len)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_STR, out, &v);
    if (rc == 0)
        *out = v->u.s.p;
    if (rc == 0 && len)
        *len = v->u.s.len;
    return rc;
}

int
mbx_args_get_bytes(const mbx_args *a, size_t i, const void **out, size_t *len)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_BYTES, out, &v);
    if (rc == 0)
        *out = v->u.s.p;
    if (rc == 0 && len)
        *len = v->u.s.len;
    return rc;
}

int
mbx_args_get_array(const mbx_args *a, size_t i, const mbx_args **out)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_ARRAY, out, &v);
    if (rc == 0)
        *out = v->u.sub;
    return rc;
}

int
mbx_args_get_map(const mbx_args *a, size_t i, const mbx_args **out)
{
    const struct value *v;
    int rc = pos_typed(a, i, MBX_T_MAP, out, &v);
    if (rc == 0)
        *out = v->u.sub;
    return rc;
}

int
mbx_args_kw_bool(const mbx_args *a, const char *key, int *out)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_BOOL, out, &v);
    if (rc == 0)
        *out = v->u.b;
    return rc;
}

int
mbx_args_kw_int(const mbx_args *a, const char *key, int64_t *out)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_INT, out, &v);
    if (rc == 0)
        *out = v->u.i;
    return rc;
}

int
mbx_args_kw_double(const mbx_args *a, const char *key, double *out)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_DOUBLE, out, &v);
    if (rc == 0)
        *out = v->u.d;
    return rc;
}

int
mbx_args_kw_str(const mbx_args *a, const char *key, const char **out,
                size_t *len)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_STR, out, &v);
    if (rc == 0)
        *out = v->u.s.p;
    if (rc == 0 && len)
        *len = v->u.s.len;
    return rc;
}

int
mbx_args_kw_bytes(const mbx_args *a, const char *key, const void **out,
                  size_t *len)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_BYTES, out, &v);
    if (rc == 0)
        *out = v->u.s.p;
    if (rc == 0 && len)
        *len = v->u.s.len;
    return rc;
}

int
mbx_args_kw_array(const mbx_args *a, const char *key, const mbx_args **out)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_ARRAY, out, &v);
    if (rc == 0)
        *out = v->u.sub;
    return rc;
}

int
mbx_args_kw_map(const mbx_args *a, const char *key, const mbx_args **out)
{
    const struct value *v;
    int rc = kw_typed(a, key, MBX_T_MAP, out, &v);
    if (rc == 0)
        *out = v->u.sub;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */
/* ------------------------------------------------------------------------ */

static int pack_positional(msgpack_packer *pk, const mbx_args *a);
static int pack_keywords(msgpack_packer *pk, const mbx_args *a);

/* Packs one value. Like the msgpack_pack_* calls, returns 0 or -1 when the
 * buffer could not grow. */
static int
pack_value(msgpack_packer *pk, const struct value *v)
{
    switch (v->type) {
    case MBX_T_NIL:
        return msgpack_pack_nil(pk);
    case MBX_T_BOOL:
        return v->u.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case MBX_T_INT:
        return msgpack_pack_int64(pk, v->u.i);
    case MBX_T_DOUBLE:
        return msgpack_pack_double(pk, v->u.d);
    case MBX_T_STR:
        return msgpack_pack_str_with_body(pk, v->u.s.p, v->u.s.len);
    case MBX_T_BYTES:
        return msgpack_pack_bin_with_body(pk, v->u.s.p, v->u.s.len);
    case MBX_T_ARRAY:
        return pack_positional(pk, v->u.sub);
    default:
        return pack_keywords(pk, v->u.sub);
    }
}

/* Packs a's positional values as an array. */
static int
pack_positional(msgpack_packer *pk, const mbx_args *a)
{
    if (msgpack_pack_array(pk, a->npos) != 0)
        return -1;
    for (size_t i = 0; i < a->npos; i++)
        if (pack_value(pk, &a->pos[i]) != 0)
            return -1;
    return 0;
}

/* Packs a's keyword values as a map with string keys. */
static int
pack_keywords(msgpack_packer *pk, const mbx_args *a)
{
    if (msgpack_pack_map(pk, a->nkw) != 0)
        return -1;
    for (size_t i = 0; i < a->nkw; i++) {
        const struct keyword *k = &a->kw[i];
        if (msgpack_pack_str_with_body(pk, k->key, k->key_len) != 0 ||
            pack_value(pk, &k->v) != 0)
            return -1;
    }
    return 0;
}

/* A growing output buffer for the packer. msgpack-c's own (sbuffer)
 * starts at 8 KiB, which for the few dozen bytes of a typical event costs a
 * large allocation per encoding. */
struct out_buf {
    char *data;
    size_t len, cap;
};

static int
out_buf_write(void *ctx, const char *buf, size_t len)
{
    struct out_buf *o = ctx;
    if (len > o->cap - o->len) {
        size_t cap = o->cap ? o->cap : 128;
        while (cap - o->len < len) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *n = realloc(o->data, cap);
        if (!n)
            return -1;
        o->data = n;
        o->cap = cap;
    }
    memcpy(o->data + o->len, buf, len);
    o->len += len;
    return 0;
}

/* Encodes a after what o holds. Returns 0, MBX_EINVAL or MBX_ENOMEM. */
static int
encode_into(const mbx_args *a, struct out_buf *o)
{
    if (!a || a->depth > ARGS_MAX_DEPTH)
        return MBX_EINVAL;
    msgpack_packer pk;
    msgpack_packer_init(&pk, o, out_buf_write);
    if (msgpack_pack_array(&pk, 2) != 0 || pack_positional(&pk, a) != 0 ||
        pack_keywords(&pk, a) != 0)
        return MBX_ENOMEM;
    return 0;
}

int
mbx_args_encode(const mbx_args *a, void **out, size_t *len)
{
    if (!out || !len)
        return MBX_EINVAL;
    struct out_buf o = {0};
    int rc = encode_into(a, &o);
    if (rc < 0) {
        free(o.data);
        return rc;
    }
    *out = o.data;
    *len = o.len;
    return 0;
}

/* The buffer each thread reuses for mbx__args_encode_reused, freed when
 * the thread exits. */
static _Thread_local struct out_buf reused;
static pthread_key_t reused_key;
static pthread_once_t reused_key_once = PTHREAD_ONCE_INIT;

static void
reused_free(void *p)
{
    (void)p;
    free(reused.data);
    reused = (struct out_buf){0};
}

static void
reused_key_make(void)
{
    pthread_key_create(&reused_key, reused_free);
}

int
mbx__args_encode_reused(const mbx_args *a, const void **out, size_t *len)
{
    if (!reused.data) {
        pthread_once(&reused_key_once, reused_key_make);
        pthread_setspecific(reused_key, &reused);
    }
    reused.len = 0;
    int rc = encode_into(a, &reused);
    if (rc < 0)
        return rc;
    *out = reused.data;
    *len = reused.len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Decoding: callbacks for msgpack-c's unpack template                      */
/* ------------------------------------------------------------------------ */

/* What the callbacks share: the reason for a failure they report. */
struct decoder {
    int err; /* MBX_EBADMSG or MBX_ENOMEM once a callback failed, else 0 */
};

/* Records why decoding stops; the template then returns a negative code. */
static int
fail(struct decoder *d, int err)
{
    d->err = err;
    return -1;
}

static int
int_value(int64_t x, struct value *o)
{
    o->type = MBX_T_INT;
    o->u.i = x;
    return 0;
}

static int
double_value(double x, struct value *o)
{
    o->type = MBX_T_DOUBLE;
    o->u.d = x;
    return 0;
}

static struct value
cb_root(struct decoder *d)
{
    (void)d;
    return (struct value){.type = 0};
}

static int
cb_uint8(struct decoder *d, uint8_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_uint16(struct decoder *d, uint16_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_uint32(struct decoder *d, uint32_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_uint64(struct decoder *d, uint64_t x, struct value *o)
{
    if (x > INT64_MAX)
        return fail(d, MBX_EBADMSG);
    return int_value((int64_t)x, o);
}

static int
cb_int8(struct decoder *d, int8_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_int16(struct decoder *d, int16_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_int32(struct decoder *d, int32_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_int64(struct decoder *d, int64_t x, struct value *o)
{
    (void)d;
    return int_value(x, o);
}

static int
cb_float(struct decoder *d, float x, struct value *o)
{
    (void)d;
    return double_value(x, o);
}

static int
cb_double(struct decoder *d, double x, struct value *o)
{
    (void)d;
    return double_value(x, o);
}

static int
cb_nil(struct decoder *d, struct value *o)
{
    (void)d;
    o->type = MBX_T_NIL;
    return 0;
}

static int
cb_true(struct decoder *d, struct value *o)
{
    (void)d;
    o->type = MBX_T_BOOL;
    o->u.b = 1;
    return 0;
}

static int
cb_false(struct decoder *d, struct value *o)
{
    (void)d;
    o->type = MBX_T_BOOL;
    o->u.b = 0;
    return 0;
}

/* Starts an array or map. The claimed count n is not trusted: storage
 * grows as elements arrive, and a short input ends in "truncated". */
static int
container_value(struct decoder *d, int type, struct value *o)
{
    mbx_args *sub = mbx_args_new();
    if (!sub)
        return fail(d, MBX_ENOMEM);
    o->type = type;
    o->u.sub = sub;
    return 0;
}

static int
cb_array(struct decoder *d, unsigned n, struct value *o)
{
    (void)n;
    return container_value(d, MBX_T_ARRAY, o);
}

static int
cb_map(struct decoder *d, unsigned n, struct value *o)
{
    (void)n;
    return container_value(d, MBX_T_MAP, o);
}

/* Adds an element to an array under construction; frees it on failure. */
static int
cb_array_item(struct decoder *d, struct value *c, struct value o)
{
    int rc = pos_push(c->u.sub, &o);
    if (rc == 0)
        return 0;
    value_free(&o);
    return fail(d, rc == MBX_ENOMEM ? MBX_ENOMEM : MBX_EBADMSG);
}

/* Adds a key and value to a map under construction. The key must be a
 * non-empty string without NUL bytes, seen once in this map. On failure
 * the value is freed here; the key stays with the template's stack, which
 * free_stack releases. */
static int
cb_map_item(struct decoder *d, struct value *c, struct value k, struct value v)
{
    int rc = MBX_EBADMSG;
    if (k.type == MBX_T_STR && k.u.s.len > 0 &&
        !memchr(k.u.s.p, '\0', k.u.s.len) &&
        kw_find(c->u.sub, k.u.s.p, k.u.s.len) == NOT_FOUND)
        rc = kw_append(c->u.sub, k.u.s.p, k.u.s.len, &v);
    if (rc == 0)
        return 0;
    value_free(&v);
    return fail(d, rc == MBX_ENOMEM ? MBX_ENOMEM : MBX_EBADMSG);
}

/* Copies a string or bin body; `base` is the whole input, unused. */
static int
blob_callback(struct decoder *d, int type, const char *p, unsigned len,
              struct value *o)
{
    int rc = blob_value(o, type, p, len);
    return rc == 0 ? 0 : fail(d, rc);
}

static int
cb_str(struct decoder *d, const char *base, const char *p, unsigned len,
       struct value *o)
{
    (void)base;
    return blob_callback(d, MBX_T_STR, p, len, o);
}

static int
cb_bin(struct decoder *d, const char *base, const char *p, unsigned len,
       struct value *o)
{
    (void)base;
    return blob_callback(d, MBX_T_BYTES, p, len, o);
}

/* Extension types carry meanings we cannot represent: rejected. */
static int
cb_ext(struct decoder *d, const char *base, const char *p, unsigned len,
       struct value *o)
{
    (void)base, (void)p, (void)len, (void)o;
    return fail(d, MBX_EBADMSG);
}

#define msgpack_unpack_func(ret, name) static inline ret dec##name
#define msgpack_unpack_callback(name) cb##name
#define msgpack_unpack_struct(name) struct dec##name
#define msgpack_unpack_object struct value
#define msgpack_unpack_user struct decoder

/* The template is msgpack-c's, written in GNU C (case ranges). */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#include <msgpack/unpack_define.h>
#include <msgpack/unpack_template.h>
#pragma GCC diagnostic pop

_Static_assert(sizeof((struct dec_context *)0)->stack /
                       sizeof((struct dec_context *)0)->stack[0] ==
                   ARGS_MAX_DEPTH + 2,
               "a msgpack header was included before MSGPACK_EMBED_STACK_SIZE");

/* Frees what a failed or truncated run left on the template's stack: the
 * containers still open and a map key still waiting for its value. */
static void
free_stack(struct dec_context *ctx)
{
    for (unsigned i = 0; i < ctx->top; i++) {
        if (ctx->stack[i].ct == MSGPACK_CT_MAP_VALUE)
            value_free(&ctx->stack[i].map_key);
        value_free(&ctx->stack[i].obj);
    }
}

/* Turns the decoded root [array, map] into args: the array's values and
 * the map's keywords move into the array's args, which goes to *out. */
static int
take_root(struct value *root, mbx_args **out)
{
    if (root->type != MBX_T_ARRAY)
        return MBX_EBADMSG;
    mbx_args *top = root->u.sub;
    if (top->npos != 2 || top->pos[0].type != MBX_T_ARRAY ||
        top->pos[1].type != MBX_T_MAP)
        return MBX_EBADMSG;
    mbx_args *a = top->pos[0].u.sub;
    mbx_args *kw = top->pos[1].u.sub;
    a->kw = kw->kw, a->nkw = kw->nkw, a->kw_cap = kw->kw_cap;
    a->index = kw->index, a->index_cap = kw->index_cap, a->seed = kw->seed;
    if (kw->depth > a->depth)
        a->depth = kw->depth;
    kw->kw = NULL, kw->nkw = 0, kw->kw_cap = 0;
    kw->index = NULL, kw->index_cap = 0;
    top->pos[0].type = MBX_T_NIL; /* a is no longer top's */
    *out = a;
    return 0;
}

int
mbx_args_decode(mbx_args **out, const void *data, size_t len)
{
    if (!out || (!data && len))
        return MBX_EINVAL;
    struct dec_context ctx;
    dec_init(&ctx);
    ctx.user.err = 0;
    size_t off = 0;
    /* 1: one whole object; 0: the input ended inside it; < 0: failed. */
    int ret = len ? dec_execute(&ctx, data, len, &off) : 0;
    if (ret <= 0) {
        free_stack(&ctx);
        return ctx.user.err ? ctx.user.err : MBX_EBADMSG;
    }
    struct value root = dec_data(&ctx);
    int rc = off == len ? take_root(&root, out) : MBX_EBADMSG;
    value_free(&root);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

mbx_msg *
mbx_msg_new_args(const char *kind, const mbx_args *a)
{
    void *body;
    size_t len;
    if (mbx_args_encode(a, &body, &len) != 0)
        return NULL;
    /* The encoding becomes the body as it is, without a copy. */
    mbx_msg *m = mbx_msg_wrap(kind, body, len, free);
    if (!m)
        free(body);
    return m;
}

int
mbx_msg_args(const mbx_msg *m, mbx_args **out)
{
    if (!m || !out)
        return MBX_EINVAL;
    size_t len;
    const void *body = mbx_msg_body(m, &len);
    if (len > 0)
        return mbx_args_decode(out, body, len);
    mbx_args *a = mbx_args_new();
    if (!a)
        return MBX_ENOMEM;
    *out = a;
    return 0;
}
