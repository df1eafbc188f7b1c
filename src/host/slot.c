/*
 * mbx_slot: winsys's Queue-like mailslot handle over a host or network
 * mailslot. A reader handle owns a mailbox registered under the name; a
 * host writer handle owns its own connection to the reader's ring, and a
 * network writer sends through the network layer.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/address.h"
#include "core/fork.h"
#include "core/msg.h"
#include "host/endpoint.h"
#include "host/host.h"
#include "platform/platform.h"

enum slot_role { ROLE_NONE, ROLE_READER, ROLE_WRITER };

struct mbx_slot {
    enum slot_role role;
    mbx_slot_opts o;
    mbx_id box;            /* reader: its mailbox, 0 until registered */
    struct mbx__writer *w; /* writer (or a handle peeking at the ring) */
    bool net;              /* a network name: address holds it */
    char name[MBX_NAME_MAX + 1];
    char address[4 + 2 * MBX_NAME_MAX + 1]; /* "//HOST/NAME" when net */
};

/* Reads a slot name: a host or network address in either form, or a bare
 * name (a host name). */
static int
slot_name_of(const char *text, mbx_slot *s)
{
    struct mbx__address a;
    char buf[4 + MBX_NAME_MAX + 1];
    if (!text)
        return MBX_EINVAL;
    bool scoped = (text[0] == '/' && text[1] == '/') ||
                  (text[0] == '\\' && text[1] == '\\');
    if (!scoped) {
        if (strlen(text) > MBX_NAME_MAX)
            return MBX_EINVAL;
        memcpy(buf, "//./", 4);
        strcpy(buf + 4, text);
        text = buf;
    }
    int rc = mbx__address_parse(text, &a);
    if (rc < 0)
        return rc;
    if (a.scope == MBX__SCOPE_NET) {
        s->net = true;
        snprintf(s->address, sizeof s->address, "//%s/%s", a.host, a.name);
    } else if (a.scope != MBX__SCOPE_HOST) {
        return MBX_EINVAL;
    }
    strcpy(s->name, a.name);
    return 0;
}

int
mbx_slot_open(mbx_slot **out, const char *name, const mbx_slot_opts *opts)
{
    mbx_slot_opts o = opts ? *opts : (mbx_slot_opts){0};
    if (!out || o.timeout_ms < 0 || o.ring_size > MBX_RING_MAX ||
        (o.mode && o.mode != 0600 && o.mode != 0660))
        return MBX_EINVAL;
    mbx_slot *s = calloc(1, sizeof *s);
    if (!s)
        return MBX_ENOMEM;
    int rc = slot_name_of(name, s);
    if (rc < 0) {
        free(s);
        return rc;
    }
    s->o = o;
    *out = s;
    return 0;
}

/* Makes the handle the reader, registering the name on first success. */
static int
become_reader(mbx_slot *s)
{
    if (!s)
        return MBX_EINVAL;
    if (s->role == ROLE_WRITER)
        return MBX_EPERM;
    s->role = ROLE_READER;
    if (s->box)
        return 0;
    mbx__writer_close(s->w); /* a look taken by qsize before any role */
    s->w = NULL;
    mbx_id id;
    int rc = mbx_create(&id, NULL);
    if (rc < 0)
        return rc;
    if (s->net) {
        if ((rc = mbx_register(id, s->address)) < 0) {
            mbx_destroy(id);
            return rc;
        }
        s->box = id;
        return 0;
    }
    char key[4 + MBX_NAME_MAX + 1] = "//./";
    strcat(key, s->name);
    mbx_host_opts ho = {.ring_size = s->o.ring_size,
                        .mode = s->o.mode,
                        .message_size = s->o.message_size};
    if ((rc = mbx_register_host(id, key, &ho)) < 0) {
        mbx_destroy(id);
        return rc;
    }
    s->box = id;
    return 0;
}

/* Connects s->w to the reader, or reconnects it when its ring is no
 * longer live (a new reader may hold the name) or it was inherited across
 * fork. (Whether the reader still lives is the put's question.) */
static int
connect_writer(mbx_slot *s)
{
    if (s->w && (s->w->fork_gen != mbx__fork_generation ||
                 atomic_load(&s->w->ring.hdr->state) != MBX__RING_LIVE)) {
        mbx__writer_close(s->w);
        s->w = NULL;
    }
    return s->w ? 0 : mbx__writer_open(&s->w, s->name);
}

/* The deadline for a wait of the slot's timeout option. */
static int64_t
slot_deadline(const mbx_slot *s)
{
    return s->o.timeout_ms ? mbx__deadline(s->o.timeout_ms) : MBX__NEVER;
}

/* A put to a network name: never fails for lack of readers. */
static int
net_put(mbx_slot *s, const void *data, size_t len)
{
    mbx_msg *m = mbx_msg_new(NULL, data, len);
    if (!m)
        return MBX_ENOMEM;
    int rc =
        mbx_send_to(s->address, &m, s->o.timeout_ms ? s->o.timeout_ms : -1);
    mbx_msg_free(m);
    return rc;
}

int
mbx_slot_put(mbx_slot *s, const void *data, size_t len)
{
    if (!s || (len && !data))
        return MBX_EINVAL;
    if (s->role == ROLE_READER)
        return MBX_EPERM;
    s->role = ROLE_WRITER;
    if (s->o.message_size && len > s->o.message_size)
        return MBX_EMSGSIZE;
    if (s->net)
        return net_put(s, data, len);
    struct mbx__rec_view v = {
        .role = MBX__PLAIN, .kind = "", .body = data, .body_len = len};
    int64_t deadline = slot_deadline(s);
    for (int attempt = 0;; attempt++) {
        int rc = connect_writer(s);
        if (rc < 0)
            return rc;
        rc = mbx__writer_put(s->w, &v, deadline);
        /* A reader that left may have been replaced: try the name once
         * more. */
        if (rc != MBX_ENOENT || attempt == 1)
            return rc;
    }
}

int
mbx_slot_get(mbx_slot *s, mbx_msg **out, int timeout_ms)
{
    if (!out ||
        (timeout_ms < 0 && timeout_ms != -1 && timeout_ms != MBX_SLOT_FOREVER))
        return MBX_EINVAL;
    int rc = become_reader(s);
    if (rc < 0)
        return rc;
    if (timeout_ms == -1)
        timeout_ms = s->o.timeout_ms ? s->o.timeout_ms : -1;
    else if (timeout_ms == MBX_SLOT_FOREVER)
        timeout_ms = -1;
    return mbx_recv(s->box, out, timeout_ms);
}

int
mbx_slot_get_nowait(mbx_slot *s, mbx_msg **out)
{
    return mbx_slot_get(s, out, 0);
}

int
mbx_slot_next(mbx_slot *s, mbx_msg **out, const void *sentinel,
              size_t sentinel_len, int timeout_ms)
{
    int rc = mbx_slot_get(s, out, timeout_ms);
    if (rc == MBX_ECLOSED)
        return 0;
    if (rc < 0)
        return rc;
    size_t len;
    const void *body = mbx_msg_body(*out, &len);
    if (sentinel && len == sentinel_len &&
        (len == 0 || memcmp(body, sentinel, len) == 0)) {
        mbx_msg_free(*out);
        *out = NULL;
        return 0;
    }
    return 1;
}

/* The reader's ring as this handle sees it: its own (reader) or the one it
 * writes to (connecting, without fixing the role, if it has none yet). */
static int
ring_of(mbx_slot *s, const struct mbx__ring **out)
{
    if (!s)
        return MBX_EINVAL;
    if (s->role == ROLE_READER)
        return mbx__host_reader_ring(s->box, out);
    int rc = connect_writer(s);
    if (rc == 0)
        *out = &s->w->ring;
    return rc;
}

int
mbx_slot_qsize(mbx_slot *s)
{
    if (s && s->net) {
        /* A network slot's queue is its reader's mailbox; a writer has
         * none it could see. */
        mbx_stats st;
        int rc = s->role == ROLE_READER ? mbx_stat(s->box, &st) : 0;
        if (s->role != ROLE_READER)
            return 0;
        return rc < 0 ? rc : st.queued > INT32_MAX ? INT32_MAX : (int)st.queued;
    }
    const struct mbx__ring *r;
    int rc = ring_of(s, &r);
    if (rc < 0)
        return rc;
    uint64_t n = mbx__ring_queued(r);
    mbx_stats st;
    if (s->role == ROLE_READER && mbx_stat(s->box, &st) == 0)
        n += st.queued;
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

int
mbx_slot_empty(mbx_slot *s)
{
    int n = mbx_slot_qsize(s);
    return n < 0 ? n : n == 0;
}

int
mbx_slot_full(mbx_slot *s)
{
    if (s && s->net)
        return 0; /* sends to the network never wait for readers */
    const struct mbx__ring *r;
    int rc = ring_of(s, &r);
    if (rc < 0)
        return rc;
    size_t body = s->o.message_size ? s->o.message_size : 1;
    return mbx__ring_full_for(r, mbx__ring_record_size(0, 0, body));
}

int
mbx_slot_fd(mbx_slot *s)
{
    int rc = become_reader(s);
    return rc < 0 ? rc : mbx_fd(s->box);
}

int
mbx_slot_mailbox(mbx_slot *s, mbx_id *out)
{
    if (!out)
        return MBX_EINVAL;
    int rc = become_reader(s);
    if (rc == 0)
        *out = s->box;
    return rc;
}

void
mbx_slot_close(mbx_slot *s)
{
    if (!s)
        return;
    if (s->box)
        mbx_destroy(s->box);
    mbx__writer_close(s->w);
    free(s);
}
