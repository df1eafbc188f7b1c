/*
 * Network mailslots as callers see them: registering a network name,
 * sending, calling and replying across hosts, the spy; and delivery, which
 * the I/O thread runs for every whole message it receives.
 *
 * A network registration is an entry in the process's name registry under
 * the key "//DOMAIN/NAME" (DOMAIN lowercase), so destroying the mailbox or
 * unregistering the name ends it like any other name, and delivery is a
 * registry lookup.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/address.h"
#include "core/call.h"
#include "core/mailbox.h"
#include "core/registry.h"
#include "net/net.h"
#include "net/wire.h"
#include "platform/platform.h"

/* The prefix of reply names: ".reply/SENDER/ID". */
#define REPLY_PREFIX ".reply/"
#define REPLY_PREFIX_LEN 7

/* Domains this process has registered names in (lowercase): delivery
 * looks in each for messages targeted at this host. Written under
 * domains_lock, read by the I/O thread after the count. */
#define DOMAINS_MAX 16
static char domains[DOMAINS_MAX][256];
static _Atomic int domain_count;
static pthread_mutex_t domains_lock = PTHREAD_MUTEX_INITIALIZER;

static _Atomic mbx_id spy_box;

void
mbx__net_key(char *key, const char *domain_lc, const char *name)
{
    size_t d = strnlen(domain_lc, 255), n = strnlen(name, MBX_NAME_MAX);
    key[0] = key[1] = '/';
    memcpy(key + 2, domain_lc, d);
    key[2 + d] = '/';
    memcpy(key + 3 + d, name, n);
    key[3 + d + n] = '\0';
}

/* Remembers domain `lc` for delivery. Returns 0 or MBX_ENOMEM (too many
 * domains). */
static int
add_domain(const char *lc)
{
    int rc = 0;
    pthread_mutex_lock(&domains_lock);
    int n = atomic_load(&domain_count), i = 0;
    while (i < n && strcmp(domains[i], lc) != 0)
        i++;
    if (i == n) {
        if (n == DOMAINS_MAX) {
            rc = MBX_ENOMEM;
        } else {
            strcpy(domains[n], lc);
            atomic_store(&domain_count, n + 1);
        }
    }
    pthread_mutex_unlock(&domains_lock);
    return rc;
}

/* The lowercase domain a registration under a->host means: this process's
 * for "*" and for this host's name, else a->host itself. */
static int
registration_domain(const struct mbx__address *a, char *lc)
{
    const struct mbx__net_config *c;
    int rc = mbx__net_config_get(&c);
    if (rc < 0)
        return rc;
    mbx__net_lower(lc, a->host, strlen(a->host));
    if (strcmp(lc, "*") == 0 || strcmp(lc, c->host_lc) == 0)
        strcpy(lc, c->domain_lc);
    return 0;
}

int
mbx__net_unregister_key(const struct mbx__address *a, char *key)
{
    char lc[256];
    int rc = registration_domain(a, lc);
    if (rc == 0)
        mbx__net_key(key, lc, a->name);
    return rc;
}

int
mbx__net_register(mbx_id id, const struct mbx__address *a)
{
    char lc[256], key[MBX__NET_KEY_MAX];
    int rc = registration_domain(a, lc);
    if (rc < 0)
        return rc;
    if (strncmp(a->name, REPLY_PREFIX, REPLY_PREFIX_LEN) == 0)
        return MBX_EINVAL; /* reserved for replies */
    mbx__net_key(key, lc, a->name);
    struct mbx__box *b;
    if ((rc = mbx__box_acquire(id, &b)) < 0)
        return rc;
    if ((rc = mbx__net_start(true)) == 0 &&
        (rc = mbx__registry_insert(b, id, key)) == 0 &&
        (rc = add_domain(lc)) < 0)
        mbx__registry_remove(key, NULL);
    mbx__box_release(b);
    return rc;
}

/* A key of a network name: "//" and not "//./". */
static bool
is_network_key(const char *key)
{
    return key[0] == '/' && key[1] == '/' && !(key[2] == '.' && key[3] == '/');
}

void
mbx__net_names_fork_lock(void)
{
    pthread_mutex_lock(&domains_lock);
}

void
mbx__net_names_fork_unlock(int in_child)
{
    if (in_child) {
        /* A child reads none of the parent's network names (as with host
         * names): it would fill copies of mailboxes nobody reads. */
        mbx__registry_remove_matching(is_network_key);
        atomic_store(&domain_count, 0);
        atomic_store(&spy_box, 0);
    }
    pthread_mutex_unlock(&domains_lock);
}

int
mbx_net_spy(mbx_id id)
{
    if (id == 0) {
        atomic_store(&spy_box, 0);
        return 0;
    }
    mbx_id none = 0;
    if (!atomic_compare_exchange_strong(&spy_box, &none, id))
        return none == id ? 0 : MBX_EEXIST;
    int rc = mbx__net_start(true);
    if (rc < 0)
        atomic_store(&spy_box, 0);
    return rc;
}

/* ---- sending
 * -----------------------------------------------------------------
 */

/* Encodes the envelope ctx into a queued message's buffer. */
static int
fill_env(uint8_t *buf, void *ctx)
{
    int rc = mbx__wire_put_env(buf, ctx);
    return rc < 0 ? rc : 0;
}

/* Builds the envelope of m for target `target` and name `name`. */
static int
envelope_of(struct mbx__wire_env *e, const mbx_msg *m, const char *target,
            const char *name)
{
    const struct mbx__net_config *c;
    int rc = mbx__net_config_get(&c);
    if (rc < 0)
        return rc;
    if (m->len > c->message_size)
        return MBX_EMSGSIZE;
    *e = (struct mbx__wire_env){
        .flags = (m->flags & MBX_MSG_URGENT) ? MBX__ENV_URGENT : 0,
        .domain = c->domain,
        .domain_len = strlen(c->domain),
        .target = target,
        .target_len = strlen(target),
        .host = c->host,
        .host_len = strlen(c->host),
        .name = name,
        .name_len = strlen(name),
        .kind = m->kind,
        .kind_len = strlen(m->kind),
        .from = m->from,
        .from_len = m->from ? strlen(m->from) : 0,
        .body = m->body,
        .body_len = m->len,
    };
    return 0;
}

/* Queues envelope e. */
static int
enqueue_env(struct mbx__wire_env *e, int64_t deadline)
{
    return mbx__net_enqueue(mbx__wire_env_size(e), fill_env, e, deadline);
}

int
mbx__net_send(const struct mbx__address *a, mbx_msg **m, int timeout_ms)
{
    struct mbx__wire_env e;
    mbx_msg *msg = *m;
    int rc = envelope_of(&e, msg, a->host, a->name);
    if (rc == 0 && msg->role == MBX__CALL) {
        /* Forwarding a request: it stays a call, answerable by the next
         * reader, when its caller is on the network; a caller in this
         * process or host has no address there. */
        if (msg->reply_to || !msg->from || strncmp(msg->from, "//./", 4) == 0)
            return MBX_EINVAL;
        e.flags |= MBX__ENV_CALL;
        e.corr = msg->corr;
    }
    if (rc == 0)
        rc = enqueue_env(&e, mbx__deadline(timeout_ms));
    if (rc == 0) {
        if (msg->role == MBX__CALL)
            msg->role = MBX__ANSWERED; /* the next reader answers it */
        mbx_msg_free(msg);
        *m = NULL;
    }
    return rc;
}

int
mbx__net_call(const struct mbx__address *a, mbx_msg **req, mbx_msg **reply,
              int timeout_ms)
{
    const struct mbx__net_config *c;
    mbx_id rid;
    int rc = mbx__net_config_get(&c);
    if (rc == 0)
        rc = mbx__call_reply_box(&rid);
    if (rc == 0)
        rc = mbx__net_start(true); /* the reply comes over the network */
    if (rc < 0)
        return rc;
    int64_t deadline = mbx__deadline(timeout_ms);
    struct mbx__box *rb = mbx__box_slot(rid);
    char from[MBX__ENV_FROM_MAX];
    snprintf(from, sizeof from,
             "//%s/" REPLY_PREFIX "%016" PRIx64 "/%016" PRIx64, c->host,
             mbx__net_sender_id(), rid);
    uint64_t corr = mbx__call_next_corr();
    struct mbx__wire_env e;
    if ((rc = envelope_of(&e, *req, a->host, a->name)) < 0)
        return rc;
    e.flags |= MBX__ENV_CALL;
    e.corr = corr;
    e.from = from;
    e.from_len = strlen(from);
    atomic_store(&rb->awaiting_corr, corr);
    rc = enqueue_env(&e, deadline);
    if (rc == 0) {
        mbx_msg_free(*req);
        *req = NULL;
        /* Every reader replies; the first reply wins and the others are
         * discarded as late. With no reader, the call times out. */
        rc = mbx__call_await(rb, rid, corr, reply, deadline);
    }
    atomic_store(&rb->awaiting_corr, 0);
    return rc;
}

int
mbx__net_reply(const char *from, uint64_t corr, mbx_msg *m)
{
    struct mbx__address a;
    if (!from || mbx__address_parse(from, &a) < 0 || a.scope != MBX__SCOPE_NET)
        return MBX_ENOENT;
    struct mbx__wire_env e;
    int rc = envelope_of(&e, m, a.host, a.name);
    if (rc == MBX_EMSGSIZE)
        return rc;
    if (rc < 0)
        return MBX_ENOENT;
    e.flags |=
        m->role == MBX__CALL_ENDED ? MBX__ENV_CALL_ENDED : MBX__ENV_REPLY;
    if (m->role == MBX__CALL_ENDED) {
        e.kind_len = 0; /* a bare notice (docs/protocol.md) */
        e.body = NULL;
        e.body_len = 0;
    }
    e.corr = corr;
    e.from = NULL;
    e.from_len = 0;
    if (enqueue_env(&e, 0) < 0)
        return MBX_ENOENT;
    mbx_msg_free(m);
    return 0;
}

/* ---- delivery (the I/O thread) ---------------------------------------------
 */

/* A message for mailbox `id` from envelope e. */
static mbx_msg *
message_of(const struct mbx__wire_env *e)
{
    char kind[MBX_KIND_MAX + 1];
    memcpy(kind, e->kind, e->kind_len);
    kind[e->kind_len] = '\0';
    mbx_msg *m = mbx__msg_alloc(kind, e->body_len + e->host_len + 1);
    if (!m)
        return NULL;
    char *body = m->body;
    memcpy(body, e->body, e->body_len);
    memcpy(body + e->body_len, e->host, e->host_len);
    body[e->body_len + e->host_len] = '\0';
    m->origin = body + e->body_len;
    m->len = e->body_len;
    if (!e->body_len)
        m->body = NULL;
    if (e->flags & MBX__ENV_URGENT)
        m->flags = MBX_MSG_URGENT;
    if (e->from_len) {
        m->from = malloc(e->from_len + 1);
        if (!m->from) {
            m->origin = NULL;
            mbx_msg_free(m);
            return NULL;
        }
        memcpy(m->from, e->from, e->from_len);
        m->from[e->from_len] = '\0';
    }
    if (e->flags & MBX__ENV_CALL) {
        m->role = MBX__CALL;
        m->corr = e->corr;
    }
    return m;
}

/* Sends the spy its summary of e. */
static void
tell_spy(mbx_id spy, const struct mbx__wire_env *e)
{
    mbx_args *a = mbx_args_new();
    if (!a)
        return;
    struct {
        const char *key, *s;
        size_t n;
    } fields[] = {{"name", e->name, e->name_len},
                  {"target", e->target, e->target_len},
                  {"domain", e->domain, e->domain_len},
                  {"host", e->host, e->host_len},
                  {"kind", e->kind, e->kind_len}};
    int rc = 0;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0] && rc == 0; i++)
        rc = mbx_args_set_strn(a, fields[i].key, fields[i].s, fields[i].n);
    if (rc == 0)
        rc = mbx_args_set_int(a, "size", (int64_t)e->body_len);
    mbx_msg *m = rc == 0 ? mbx_msg_new_args("mbx.spy", a) : NULL;
    mbx_args_free(a);
    if (m && mbx_send(spy, &m, 0) < 0)
        mbx_msg_free(m);
}

/* Reads 16 lowercase hex digits. */
static bool
hex16(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9')
            v = v << 4 | (uint64_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v = v << 4 | (uint64_t)(ch - 'a' + 10);
        else
            return false;
    }
    *out = v;
    return true;
}

/* A reply to a call of this process: to the waiting caller's mailbox. */
static void
deliver_reply(const struct mbx__net_config *c, const struct mbx__wire_env *e)
{
    const char *rest = e->name + REPLY_PREFIX_LEN; /* "SENDER/ID" */
    char target[256];
    mbx__net_lower(target, e->target, e->target_len);
    uint64_t sender, id;
    if (!(e->flags & (MBX__ENV_REPLY | MBX__ENV_CALL_ENDED)) ||
        e->name_len - REPLY_PREFIX_LEN != 33 || rest[16] != '/' ||
        !hex16(rest, &sender) || !hex16(rest + 17, &id) ||
        sender != mbx__net_sender_id() || strcmp(target, c->host_lc) != 0) {
        atomic_fetch_add(&mbx__net_count.not_for_us, 1);
        return;
    }
    struct mbx__box *b;
    if (mbx__box_acquire(id, &b) < 0) {
        atomic_fetch_add(&mbx__net_count.dropped_full, 1);
        return;
    }
    int rc = MBX_ENOENT;
    if (atomic_load(&b->awaiting_corr) == e->corr) {
        mbx_msg *m = message_of(e);
        if (m) {
            m->role =
                (e->flags & MBX__ENV_REPLY) ? MBX__REPLY : MBX__CALL_ENDED;
            m->corr = e->corr;
            if ((rc = mbx__box_push(b, id, m, 0, true)) < 0)
                mbx_msg_free(m);
        }
    }
    mbx__box_release(b);
    atomic_fetch_add(
        rc == 0 ? &mbx__net_count.delivered : &mbx__net_count.dropped_full, 1);
}

/* The mailboxes the last delivered envelope went to, kept pinned while the
 * I/O thread handles one batch of datagrams: a burst of messages to one
 * name then costs one registry lookup and one pin, not one per message.
 * mbx__net_deliver_done ends the batch (a destroy waits for the pins). */
static struct {
    bool valid;
    size_t target_len, domain_len, name_len;
    char target[256], domain[256], name[MBX_NAME_MAX + 1];
    int n;
    mbx_id ids[DOMAINS_MAX + 1];
    struct mbx__box *boxes[DOMAINS_MAX + 1];
    /* Messages for unbounded mailboxes wait here, newest first, to be
     * pushed as one chain when the batch or the route ends. */
    mbx_msg *newest[DOMAINS_MAX + 1], *oldest[DOMAINS_MAX + 1];
    uint64_t count[DOMAINS_MAX + 1], bytes[DOMAINS_MAX + 1];
} route;

/* Pushes the messages waiting for mailbox i of the route. */
static void
route_flush(int i)
{
    if (!route.count[i])
        return;
    mbx__box_push_chain(route.boxes[i], route.newest[i], route.oldest[i],
                        route.count[i], route.bytes[i]);
    atomic_fetch_add(&mbx__net_count.delivered, route.count[i]);
    route.newest[i] = route.oldest[i] = NULL;
    route.count[i] = route.bytes[i] = 0;
}

void
mbx__net_deliver_done(void)
{
    for (int i = 0; i < route.n; i++) {
        route_flush(i);
        mbx__box_release(route.boxes[i]);
    }
    route.n = 0;
    route.valid = false;
}

/* Delivers m to mailbox i of the route: chained for an unbounded mailbox
 * (normal messages), else at once, after what is chained. */
static void
route_deliver(int i, mbx_msg *m)
{
    struct mbx__box *b = route.boxes[i];
    if (!(m->flags & MBX_MSG_URGENT) && !mbx__box_bounded(b)) {
        atomic_store_explicit(&m->link.next,
                              route.newest[i] ? &route.newest[i]->link : NULL,
                              memory_order_relaxed);
        if (!route.newest[i])
            route.oldest[i] = m;
        route.newest[i] = m;
        route.count[i]++;
        route.bytes[i] += m->len;
        return;
    }
    route_flush(i);
    if (mbx__box_push(b, route.ids[i], m, 0, false) == 0) {
        atomic_fetch_add(&mbx__net_count.delivered, 1);
        return;
    }
    mbx_msg_free(m);
    atomic_fetch_add(&mbx__net_count.dropped_full, 1);
}

/* Whether e goes where the cached route goes. */
static bool
same_route(const struct mbx__wire_env *e)
{
    return route.valid && route.name_len == e->name_len &&
           route.target_len == e->target_len &&
           route.domain_len == e->domain_len &&
           memcmp(route.name, e->name, e->name_len) == 0 &&
           memcmp(route.target, e->target, e->target_len) == 0 &&
           memcmp(route.domain, e->domain, e->domain_len) == 0;
}

/* Adds the mailbox registered under key to the route, pinned, unless it
 * is there already. */
static void
route_add(const char *key)
{
    mbx_id id;
    struct mbx__box *b;
    if (mbx__registry_lookup(key, &id) < 0)
        return;
    for (int i = 0; i < route.n; i++)
        if (route.ids[i] == id)
            return;
    if (mbx__box_acquire(id, &b) < 0)
        return;
    route.ids[route.n] = id;
    route.boxes[route.n++] = b;
}

/* Works out (and pins) the mailboxes e is for, by the rules of docs/net.md
 * ("Names, domains and who accepts what"). */
static void
route_find(const struct mbx__net_config *c, const struct mbx__wire_env *e)
{
    mbx__net_deliver_done();
    char name[MBX_NAME_MAX + 1], target[256], key[MBX__NET_KEY_MAX];
    memcpy(name, e->name, e->name_len);
    name[e->name_len] = '\0';
    mbx__net_lower(target, e->target, e->target_len);
    if (strcmp(target, "*") == 0) {
        char lc[256];
        mbx__net_lower(lc, e->domain, e->domain_len);
        mbx__net_key(key, lc, name);
        route_add(key);
    } else {
        mbx__net_key(key, target, name);
        route_add(key);
        if (strcmp(target, c->host_lc) == 0) {
            int count = atomic_load(&domain_count);
            for (int i = 0; i < count; i++) {
                mbx__net_key(key, domains[i], name);
                route_add(key);
            }
        }
    }
    route.valid = true;
    route.name_len = e->name_len;
    route.target_len = e->target_len;
    route.domain_len = e->domain_len;
    memcpy(route.name, e->name, e->name_len);
    memcpy(route.target, e->target, e->target_len);
    memcpy(route.domain, e->domain, e->domain_len);
}

void
mbx__net_deliver(const struct mbx__wire_env *e)
{
    const struct mbx__net_config *c;
    if (mbx__net_config_get(&c) < 0)
        return;
    if (e->body_len > c->message_size) {
        atomic_fetch_add(&mbx__net_count.dropped_size, 1);
        return;
    }
    /* A call's reply goes back over the network: a reply address of this
     * host's scope ("//./...") would let a peer write into local rings. */
    if ((e->flags & MBX__ENV_CALL) &&
        (e->from_len < 3 || e->from[0] != '/' || e->from[1] != '/' ||
         (e->from[2] == '.' && e->from_len > 3 && e->from[3] == '/'))) {
        atomic_fetch_add(&mbx__net_count.malformed, 1);
        return;
    }
    atomic_fetch_add(&mbx__net_count.received, 1);
    mbx_id spy = atomic_load(&spy_box);
    if (spy)
        tell_spy(spy, e);
    bool reply_name = e->name_len > REPLY_PREFIX_LEN &&
                      memcmp(e->name, REPLY_PREFIX, REPLY_PREFIX_LEN) == 0;
    if (reply_name || (e->flags & (MBX__ENV_REPLY | MBX__ENV_CALL_ENDED))) {
        if (reply_name)
            deliver_reply(c, e);
        else
            atomic_fetch_add(&mbx__net_count.not_for_us, 1);
        return;
    }
    if (!same_route(e))
        route_find(c, e);
    if (route.n == 0) {
        atomic_fetch_add(&mbx__net_count.not_for_us, 1);
        return;
    }
    for (int i = 0; i < route.n; i++) {
        mbx_msg *m = message_of(e);
        if (m)
            route_deliver(i, m);
        else
            atomic_fetch_add(&mbx__net_count.dropped_full, 1);
    }
}
