/*
 * The name registry: a hash table from name to mailbox id under one
 * read-write lock. Each mailbox also links its own names, so destroy
 * removes them without scanning the table.
 */
#include "core/fork.h"
#include "core/registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/address.h"

struct mbx__name {
    struct mbx__name *next_in_bucket;
    struct mbx__name *next_of_box;
    mbx_id id;
    size_t hash;
    char name[]; /* NUL-terminated */
};

static pthread_rwlock_t reg_lock = PTHREAD_RWLOCK_INITIALIZER;
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

/* Checks a name given to register/unregister: local scope only for now. */
static int
check_local_name(const char *name)
{
    struct mbx__address a;
    int rc = mbx__address_parse(name, &a);
    if (rc < 0)
        return rc;
    if (a.scope != MBX__SCOPE_LOCAL)
        return a.scope == MBX__SCOPE_ID ? MBX_EINVAL : MBX_ENOTSUP;
    return 0;
}

int
mbx_register(mbx_id id, const char *name)
{
    int rc = check_local_name(name);
    if (rc < 0)
        return rc;
    struct mbx__box *b;
    /* Pinning the mailbox keeps destroy from running until the name is in
     * its list, so a destroyed mailbox never keeps a name. */
    if ((rc = mbx__box_acquire(id, &b)) < 0)
        return rc;
    size_t len = strlen(name), h = hash_name(name);
    struct mbx__name *e = malloc(sizeof *e + len + 1);
    if (!e) {
        mbx__box_release(b);
        return MBX_ENOMEM;
    }
    memcpy(e->name, name, len + 1);
    e->id = id;
    e->hash = h;
    pthread_rwlock_wrlock(&reg_lock);
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
    pthread_rwlock_unlock(&reg_lock);
    mbx__box_release(b);
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
    int rc = check_local_name(name);
    if (rc < 0)
        return rc;
    struct mbx__name *e = NULL;
    pthread_rwlock_wrlock(&reg_lock);
    struct mbx__name **p = find_slot(name, hash_name(name));
    if (p && *p) {
        e = *p;
        *p = e->next_in_bucket;
        name_count--;
        /* The owner cannot finish destroy while we hold the lock, and its
         * slot memory is stable, so the list is safe to edit. */
        unlink_from_box(mbx__box_slot(e->id), e);
    }
    pthread_rwlock_unlock(&reg_lock);
    free(e);
    return e ? 0 : MBX_ENOENT;
}

int
mbx_whereis(const char *name, mbx_id *out)
{
    if (!name || !out)
        return MBX_EINVAL;
    int rc = MBX_ENOENT;
    pthread_rwlock_rdlock(&reg_lock);
    struct mbx__name **p = find_slot(name, hash_name(name));
    if (p && *p) {
        *out = (*p)->id;
        rc = 0;
    }
    pthread_rwlock_unlock(&reg_lock);
    return rc;
}

void
mbx__registry_forget(struct mbx__box *b)
{
    pthread_rwlock_wrlock(&reg_lock);
    struct mbx__name *e = b->names, *next;
    b->names = NULL;
    for (; e; e = next) {
        next = e->next_of_box;
        struct mbx__name **p = find_slot(e->name, e->hash);
        *p = e->next_in_bucket;
        name_count--;
        free(e);
    }
    pthread_rwlock_unlock(&reg_lock);
}

void
mbx__registry_lock_all(void)
{
    pthread_rwlock_wrlock(&reg_lock);
}

void
mbx__registry_unlock_all(int in_child)
{
    if (in_child)
        pthread_rwlock_init(&reg_lock, NULL);
    else
        pthread_rwlock_unlock(&reg_lock);
}
