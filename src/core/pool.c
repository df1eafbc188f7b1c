/* The message pool: per-thread magazines over a locked depot of batches. */
#include "core/fork.h"
#include "core/pool.h"

#include <pthread.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define POOL_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define POOL_DISABLED 1
#endif
#endif

#define CLASSES 8 /* 64, 128, ... 512 bytes */
#define BATCH 64  /* blocks moved between a cache and the depot at once */
#define DEPOT_MAX                                                              \
    256 /* batches kept per class; beyond, blocks go to free()                 \
         */

/* A free block: a link to the next block, and (in a batch's first block)
 * a link to the next batch. */
struct block {
    struct block *next;
    struct block *next_batch;
};

struct cache {
    struct block *head[CLASSES];
    uint32_t count[CLASSES];
};

struct depot {
    pthread_mutex_t lock;
    struct block *batches; /* each a list of exactly BATCH blocks */
    uint32_t count;
};

static struct depot depots[CLASSES] = {
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
    {PTHREAD_MUTEX_INITIALIZER, NULL, 0}, {PTHREAD_MUTEX_INITIALIZER, NULL, 0},
};
static
    __attribute__((tls_model("initial-exec"))) _Thread_local struct cache cache;
static __attribute__((
    tls_model("initial-exec"))) _Thread_local int cache_registered;
static pthread_key_t cache_key;
static pthread_once_t cache_key_once = PTHREAD_ONCE_INIT;

static size_t
class_size(int c)
{
    return (size_t)64 * (size_t)(c + 1);
}

/* Moves BATCH blocks from the cache to the depot (or to free() when the
 * depot is full). */
static void
spill(int c)
{
    struct block *batch = cache.head[c], *last = batch;
    for (int i = 1; i < BATCH; i++)
        last = last->next;
    cache.head[c] = last->next;
    cache.count[c] -= BATCH;
    last->next = NULL;
    struct depot *d = &depots[c];
    pthread_mutex_lock(&d->lock);
    if (d->count < DEPOT_MAX) {
        batch->next_batch = d->batches;
        d->batches = batch;
        d->count++;
        batch = NULL;
    }
    pthread_mutex_unlock(&d->lock);
    while (batch) {
        struct block *next = batch->next;
        free(batch);
        batch = next;
    }
}

/* Gives every cached block back when a thread exits. */
static void
cache_flush(void *unused)
{
    (void)unused;
    for (int c = 0; c < CLASSES; c++) {
        while (cache.count[c] >= BATCH)
            spill(c);
        while (cache.head[c]) {
            struct block *next = cache.head[c]->next;
            free(cache.head[c]);
            cache.head[c] = next;
        }
        cache.count[c] = 0;
    }
    /* Blocks freed by later destructors register the cache again. */
    cache_registered = 0;
}

static void
cache_key_make(void)
{
    pthread_key_create(&cache_key, cache_flush);
}

/* Makes sure this thread's cache is flushed when the thread exits. */
static void
cache_register(void)
{
    pthread_once(&cache_key_once, cache_key_make);
    pthread_setspecific(cache_key, &cache);
    cache_registered = 1;
}

/* Takes a batch from the depot into the empty cache. Returns 0 if the depot
 * had none. */
static int
refill(int c)
{
    struct depot *d = &depots[c];
    pthread_mutex_lock(&d->lock);
    struct block *batch = d->batches;
    if (batch) {
        d->batches = batch->next_batch;
        d->count--;
    }
    pthread_mutex_unlock(&d->lock);
    if (!batch)
        return 0;
    cache.head[c] = batch;
    cache.count[c] = BATCH;
    return 1;
}

/* The size class serving `size`, or -1 for plain malloc (too large, or
 * the pool is compiled out for the sanitizers). */
static int
class_of(size_t size)
{
#ifdef POOL_DISABLED
    (void)size;
    return -1;
#else
    if (size == 0 || size > MBX__POOL_MAX)
        return -1;
    return (int)((size + 63) / 64) - 1;
#endif
}

void *
mbx__pool_get(size_t size, uint8_t *cls)
{
    int c = class_of(size);
    if (c < 0) {
        *cls = 0;
        return malloc(size);
    }
    *cls = (uint8_t)(c + 1);
    if (!cache_registered)
        cache_register();
    if (!cache.head[c] && !refill(c))
        return malloc(class_size(c));
    struct block *b = cache.head[c];
    cache.head[c] = b->next;
    cache.count[c]--;
    return b;
}

void
mbx__pool_put(void *p, uint8_t cls)
{
    if (!p)
        return;
    if (cls == 0) {
        free(p);
        return;
    }
    int c = cls - 1;
    if (!cache_registered)
        cache_register();
    struct block *b = p;
    b->next = cache.head[c];
    cache.head[c] = b;
    if (++cache.count[c] >= 2 * BATCH)
        spill(c);
}

void
mbx__pool_lock_all(void)
{
    for (int c = 0; c < CLASSES; c++)
        pthread_mutex_lock(&depots[c].lock);
}

void
mbx__pool_unlock_all(int in_child)
{
    (void)in_child;
    for (int c = CLASSES - 1; c >= 0; c--)
        pthread_mutex_unlock(&depots[c].lock);
}
