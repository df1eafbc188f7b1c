/*
 * The message pool: per-thread caches of small blocks, refilled from and
 * spilled to a shared depot in batches. Messages are typically allocated by
 * one thread and freed by another; with plain malloc both threads then fight
 * over one arena lock. Here each side touches only its own cache, and the
 * shared depot is locked once per batch.
 *
 * Under AddressSanitizer or ThreadSanitizer the pool is bypassed (plain
 * malloc/free), so every use-after-free is still caught.
 */
#ifndef MBX_CORE_POOL_H
#define MBX_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

/* Size classes served by the pool; larger blocks come from malloc. */
#define MBX__POOL_MAX 512

/* A block of at least `size` bytes, aligned for any type. *cls receives the
 * size class to pass back to mbx__pool_put (0: from malloc). Returns NULL
 * when out of memory. Any thread. */
void *mbx__pool_get(size_t size, uint8_t *cls);

/* Returns a block obtained from mbx__pool_get. Any thread. */
void mbx__pool_put(void *p, uint8_t cls);

#endif
