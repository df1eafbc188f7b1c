/* Args: what other modules use of args.c besides the public API. */
#ifndef MBX_CORE_ARGS_H
#define MBX_CORE_ARGS_H

#include <stddef.h>

#include "mbx/mbx.h"

/* Encodes a as mbx_args_encode does, into a buffer the calling thread
 * keeps and reuses: *out is valid until the thread's next call (or its
 * exit). For hot paths that copy the encoding away at once. Returns as
 * mbx_args_encode. */
int mbx__args_encode_reused(const mbx_args *a, const void **out, size_t *len);

#endif
