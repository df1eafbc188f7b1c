/* Messages: kind + body + metadata in (usually) one allocation. */
#include "core/msg.h"

#include <stdlib.h>
#include <string.h>

#include "core/call.h"
#include "core/pool.h"

/* Bodies copied in start at this offset so they are aligned for any type. */
#define MBX__BODY_OFFSET                                                       \
    ((sizeof(struct mbx_msg) + _Alignof(max_align_t) - 1) &                    \
     ~(_Alignof(max_align_t) - 1))

mbx_msg *
mbx__msg_alloc(const char *kind, size_t len)
{
    size_t klen = kind ? strlen(kind) : 0;
    if (klen > MBX_KIND_MAX || len > SIZE_MAX - MBX__BODY_OFFSET - klen - 1)
        return NULL;
    uint8_t pool;
    mbx_msg *m = mbx__pool_get(MBX__BODY_OFFSET + len + klen + 1, &pool);
    if (!m)
        return NULL;
    m->pool = pool;
    char *body = (char *)m + MBX__BODY_OFFSET;
    char *k = body + len;
    memcpy(k, kind ? kind : "", klen + 1);
    atomic_init(&m->link.next, NULL);
    m->kind = k;
    m->body = len ? body : NULL;
    m->len = len;
    m->free_body = NULL;
    m->from = NULL;
    m->origin = NULL;
    m->corr = 0;
    m->reply_to = 0;
    m->flags = 0;
    m->role = MBX__PLAIN;
    return m;
}

mbx_msg *
mbx_msg_new(const char *kind, const void *body, size_t len)
{
    if (len && !body)
        return NULL;
    mbx_msg *m = mbx__msg_alloc(kind, len);
    if (m && len)
        memcpy(m->body, body, len);
    return m;
}

mbx_msg *
mbx_msg_wrap(const char *kind, void *body, size_t len,
             void (*free_body)(void *))
{
    if (len && !body)
        return NULL;
    mbx_msg *m = mbx__msg_alloc(kind, 0);
    if (!m)
        return NULL;
    m->body = body;
    m->len = len;
    m->free_body = free_body;
    return m;
}

mbx_msg *
mbx__msg_notice(const char *kind, unsigned role, uint64_t corr, mbx_id about)
{
    mbx_msg *m = mbx_msg_new(kind, &about, sizeof about);
    if (m) {
        m->role = role;
        m->corr = corr;
    }
    return m;
}

const char *
mbx_msg_kind(const mbx_msg *m)
{
    return m ? m->kind : "";
}

const void *
mbx_msg_body(const mbx_msg *m, size_t *len)
{
    if (len)
        *len = m ? m->len : 0;
    return m ? m->body : NULL;
}

const char *
mbx_msg_from(const mbx_msg *m)
{
    return m ? m->from : NULL;
}

const char *
mbx_msg_origin(const mbx_msg *m)
{
    return m ? m->origin : NULL;
}

int
mbx_msg_set_from(mbx_msg *m, const char *address)
{
    if (!m)
        return MBX_EINVAL;
    char *copy = NULL;
    if (address) {
        size_t n = strlen(address);
        if (n == 0 || n > MBX_NAME_MAX)
            return MBX_EINVAL;
        copy = malloc(n + 1);
        if (!copy)
            return MBX_ENOMEM;
        memcpy(copy, address, n + 1);
    }
    free(m->from);
    m->from = copy;
    return 0;
}

int
mbx_msg_set_flags(mbx_msg *m, unsigned flags)
{
    if (!m || (flags & ~MBX_MSG_URGENT))
        return MBX_EINVAL;
    m->flags = flags;
    return 0;
}

unsigned
mbx_msg_flags(const mbx_msg *m)
{
    return m ? m->flags : 0;
}

int
mbx_msg_is_call(const mbx_msg *m)
{
    return m && m->role == MBX__CALL;
}

int
mbx_msg_down(const mbx_msg *m, mbx_id *who)
{
    if (!m || !who || m->role != MBX__PLAIN || strcmp(m->kind, "DOWN") != 0 ||
        m->len != sizeof(mbx_id))
        return MBX_EINVAL;
    memcpy(who, m->body, sizeof *who);
    return 0;
}

void
mbx_msg_free(mbx_msg *m)
{
    if (!m)
        return;
    /* A request dropped without an answer ends its caller's wait now rather
     * than at its timeout. */
    if (m->role == MBX__CALL)
        mbx__call_abandon(m);
    if (m->free_body)
        m->free_body(m->body);
    free(m->from);
    mbx__pool_put(m, m->pool);
}
