/*
 * The name registry: a hash table from name to mailbox id under one
 * read-write lock. Each mailbox also links its own names, so destroy
 * removes them without scanning the table.
 */
#include "core/fork.h"
#include "core/registry.h"

#include <stdlib.h>
#include <string.h>

#include "core/address.h"
#include "core/feed.h"
#include "host/host.h"
#include "net/net.h"
#include "platform/lock.h"

struct mbx__name {
    struct mbx__name *next_in_bucket;
    struct mbx__name *next_of_box;
    mbx_id id;
    size_t hash;
    char name[]; /* NUL-terminated */
};

static mbx__rwlock reg_lock; /* see platform/lock.h */
static struct mbx__name **buckets;
static size_t bucket_count, name_count;

static size_t
hash_name(const char *s)
{
    /* FNV-1a: short names, good spread, no seed needed in-process. */
    size_t h = (size_t)14695981039346656037ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * (size_t)1099511628211ull;
    return h;
}

static struct mbx__name **
find_slot(const char *name, size_t h)
{
    if (!bucket_count)
        return NULL;
    struct mbx__name **p = &buckets[h & (bucket_count - 1)];
    for (; *p; p = &(*p)->next_in_bucket)
        if ((*p)->hash == h && strcmp((*p)->name, name) == 0)
            return p;
    return p;
}

/* Doubles the table when it is as full as it is long. Write lock held. */
static int
grow_if_needed(void)
{
    if (name_count < bucket_count)
        return 0;
    size_t n = bucket_count ? bucket_count * 2 : 64;
    struct mbx__name **nb = calloc(n, sizeof *nb);
    if (!nb)
        return bucket_count ? 0 : MBX_ENOMEM; /* a full table still works */
    for (size_t i = 0; i < bucket_count; i++) {
        struct mbx__name *e = buckets[i], *next;
        for (; e; e = next) {
            next = e->next_in_bucket;
            e->next_in_bucket = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(buckets);
    buckets = nb;
    bucket_count = n;
    return 0;
}

/* Room for any registry key. */
#define KEY_MAX MBX__NET_KEY_MAX

/* Parses a name given to register/unregister: a local name, a host name
 * (for which `key` receives its registry key "//./NAME") or a network
 * name (key "//DOMAIN/NAME"). */
static int
parse_name(const char *name, struct mbx__address *a, char *key)
{
    int rc = mbx__address_parse(name, a);
    if (rc < 0)
        return rc;
    switch (a->scope) {
    case MBX__SCOPE_LOCAL:
        return 0;
    case MBX__SCOPE_HOST:
        mbx__host_key(a->name, key);
        return 0;
    case MBX__SCOPE_NET:
        return mbx__net_unregister_key(a, key);
    case MBX__SCOPE_ID:
        return MBX_EINVAL;
    default:
        return MBX_ENOTSUP;
    }
}

int
mbx_register(mbx_id id, const char *name)
{
    struct mbx__address a;
    char key[KEY_MAX];
    int rc = parse_name(name, &a, key);
    if (rc < 0)
        return rc;
    if (a.scope == MBX__SCOPE_HOST)
        return mbx_register_host(id, name, NULL);
    if (a.scope == MBX__SCOPE_NET)
        return mbx__net_register(id, &a);
    struct mbx__box *b;
    /* Pinning the mailbox keeps destroy from running until the name is in
     * its list, so a destroyed mailbox never keeps a name. */
    if ((rc = mbx__box_acquire(id, &b)) < 0)
        return rc;
    rc = mbx__registry_insert(b, id, name);
    mbx__box_release(b);
    return rc;
}

int
mbx__registry_insert(struct mbx__box *b, mbx_id id, const char *name)
{
    int rc;
    size_t len = strlen(name), h = hash_name(name);
    struct mbx__name *e = malloc(sizeof *e + len + 1);
    if (!e)
        return MBX_ENOMEM;
    memcpy(e->name, name, len + 1);
    e->id = id;
    e->hash = h;
    mbx__rw_write_take(&reg_lock);
    struct mbx__name **p = NULL;
    if ((rc = grow_if_needed()) == 0) {
        p = find_slot(name, h);
        if (*p)
            rc = MBX_EEXIST;
    }
    if (rc == 0) {
        e->next_in_bucket = NULL;
        *p = e;
        e->next_of_box = b->names;
        b->names = e;
        name_count++;
        e = NULL;
    }
    mbx__rw_write_drop(&reg_lock);
    free(e);
    return rc;
}

/* Unlinks entry e from its mailbox's list of names. Write lock held. */
static void
unlink_from_box(struct mbx__box *b, struct mbx__name *e)
{
    struct mbx__name **q = &b->names;
    while (*q != e)
        q = &(*q)->next_of_box;
    *q = e->next_of_box;
}

int
mbx_unregister(const char *name)
{
    struct mbx__address a;
    char key[KEY_MAX];
    int rc = parse_name(name, &a, key);
    if (rc < 0)
        return rc;
    if (a.scope == MBX__SCOPE_NET)
        return mbx__registry_remove(key, NULL);
    if (a.scope != MBX__SCOPE_HOST)
        return mbx__registry_remove(name, NULL);
    mbx_id id;
    if ((rc = mbx__registry_remove(key, &id)) < 0)
        return rc;
    /* The host name goes with its ring: writers find it no more. (A
     * destroy racing with us releases it as well; either is enough.) */
    struct mbx__box *b;
    if (mbx__box_acquire(id, &b) == 0) {
        struct mbx__feed *f = atomic_load(&b->feed);
        if (f)
            f->ops->release(f);
        mbx__box_release(b);
    }
    return 0;
}

int
mbx__registry_remove(const char *name, mbx_id *was)
{
    struct mbx__name *e = NULL;
    mbx__rw_write_take(&reg_lock);
    struct mbx__name **p = find_slot(name, hash_name(name));
    if (p && *p) {
        e = *p;
        *p = e->next_in_bucket;
        name_count--;
        /* The owner cannot finish destroy while we hold the lock, and its
         * slot memory is stable, so the list is safe to edit. */
        unlink_from_box(mbx__box_slot(e->id), e);
        if (was)
            *was = e->id;
    }
    mbx__rw_write_drop(&reg_lock);
    free(e);
    return e ? 0 : MBX_ENOENT;
}

void
mbx__registry_remove_matching(bool (*match)(const char *key))
{
    mbx__rw_write_take(&reg_lock);
    for (size_t i = 0; i < bucket_count; i++) {
        struct mbx__name **p = &buckets[i];
        while (*p) {
            struct mbx__name *e = *p;
            if (!match(e->name)) {
                p = &e->next_in_bucket;
                continue;
            }
            *p = e->next_in_bucket;
            name_count--;
            unlink_from_box(mbx__box_slot(e->id), e);
            free(e);
        }
    }
    mbx__rw_write_drop(&reg_lock);
}

int
mbx_whereis(const char *name, mbx_id *out)
{
    if (!name || !out)
        return MBX_EINVAL;
    /* Host and network names are filed under their registry keys. */
    struct mbx__address a;
    char key[KEY_MAX];
    if ((name[0] == '/' || name[0] == '\\') && parse_name(name, &a, key) == 0 &&
        (a.scope == MBX__SCOPE_HOST || a.scope == MBX__SCOPE_NET))
        name = key;
    return mbx__registry_lookup(name, out);
}

int
mbx__registry_lookup(const char *name, mbx_id *out)
{
    int rc = MBX_ENOENT;
    mbx__rw_read_take(&reg_lock);
    struct mbx__name **p = find_slot(name, hash_name(name));
    if (p && *p) {
        *out = (*p)->id;
        rc = 0;
    }
    mbx__rw_read_drop(&reg_lock);
    return rc;
}

void
mbx__registry_forget(struct mbx__box *b)
{
    mbx__rw_write_take(&reg_lock);
    struct mbx__name *e = b->names, *next;
    b->names = NULL;
    for (; e; e = next) {
        next = e->next_of_box;
        struct mbx__name **p = find_slot(e->name, e->hash);
        *p = e->next_in_bucket;
        name_count--;
        free(e);
    }
    mbx__rw_write_drop(&reg_lock);
}

void
mbx__registry_lock_all(void)
{
    mbx__rw_write_take(&reg_lock);
}

/* In a child after fork: host names are read by the parent, not by the
 * child's copies of its mailboxes. Forget them, so that sends from the
 * child go to the parent. */
static void
forget_host_names(void)
{
    for (size_t i = 0; i < bucket_count; i++) {
        struct mbx__name **p = &buckets[i];
        while (*p) {
            struct mbx__name *e = *p;
            if (strncmp(e->name, "//./", 4) != 0) {
                p = &e->next_in_bucket;
                continue;
            }
            *p = e->next_in_bucket;
            unlink_from_box(mbx__box_slot(e->id), e);
            name_count--;
            free(e);
        }
    }
}

void
mbx__registry_unlock_all(int in_child)
{
    if (in_child) {
        forget_host_names();
        mbx__rw_reset(&reg_lock);
    } else {
        mbx__rw_write_drop(&reg_lock);
    }
}
