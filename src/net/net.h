/*
 * The network scope as the rest of mbx sees it (design: docs/net.md, wire
 * format: docs/protocol.md). The layer has three parts:
 *   config.c    options, environment, identity (host, domain) and the key
 *   io.c        the I/O thread: sockets, the send queue and coalescing,
 *               receiving, replay window, reassembly, delivery
 *   send.c      what callers do: send, call, reply, register, spy
 * and the pure pieces wire.c (encoding) and crypto.c (sealing).
 */
#ifndef MBX_NET_NET_H
#define MBX_NET_NET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "mbx/mbx.h"

struct mbx__address;

/* ---- config.c ---------------------------------------------------------- */

/* The resolved configuration, fixed once the layer starts. */
struct mbx__net_config {
    char domain[256];    /* as given */
    char domain_lc[256]; /* lowercase, for keys and comparisons */
    char host[256];
    char host_lc[256];
    struct sockaddr_storage group; /* where datagrams go */
    socklen_t group_len;
    int family;         /* AF_INET or AF_INET6 */
    bool broadcast;     /* IPv4 broadcast instead of multicast */
    unsigned ifindex;   /* 0: the kernel's choice */
    bool loopback_only; /* the interface is "lo" */
    bool has_key;
    uint8_t key[32];
    size_t message_size;
    size_t datagram_size;
    int ttl;
    int reassembly_ms;
    size_t reassembly_bytes;
};

/* The configuration, resolved on first call from the options given to
 * mbx_net_configure and the environment. Returns 0 and *out (valid for the
 * life of the process), or the error the resolution met. */
int mbx__net_config_get(const struct mbx__net_config **out);

/* Marks the configuration as used (mbx_net_configure then fails). */
void mbx__net_config_freeze(void);

/* Hold the configuration's lock across fork (io.c's fork handlers). */
void mbx__net_config_fork_lock(void);
void mbx__net_config_fork_unlock(void);

/* Hold the registered domains' lock across fork; in the child, forget the
 * network names it inherited (send.c). */
void mbx__net_names_fork_lock(void);
void mbx__net_names_fork_unlock(int in_child);

/* Reads a key file's text (64 hex digits, optional newline) into key.
 * Returns 0 or MBX_EINVAL. */
int mbx__net_key_parse(const char *text, size_t len, uint8_t key[32]);

/* Lowercases ASCII letters of s[0..len) into out (NUL-terminated). */
void mbx__net_lower(char *out, const char *s, size_t len);

/* ---- crypto.c ---------------------------------------------------------- */

/* Initialises libsodium. Returns 0 or MBX_ENOMEM. */
int mbx__net_crypto_init(void);

/* Seals the datagram dgram[0..len) in place (header as associated data,
 * frames encrypted) and appends the tag: dgram has room for 16 more bytes.
 * Returns the sealed length. */
size_t mbx__net_seal(const uint8_t key[32], uint8_t *dgram, size_t len);

/* Opens a sealed datagram in place. Returns 0 and the length of header +
 * frames in *plain_len, or MBX_EBADMSG (forged, truncated, other key). */
int mbx__net_open(const uint8_t key[32], uint8_t *dgram, size_t len,
                  size_t *plain_len);

/* ---- io.c -------------------------------------------------------------- */

/* Starts the I/O thread and the sending socket if they are not running;
 * with `receive`, also the receiving socket (joined to the group). Returns
 * 0 or an error (the configuration's, or the sockets'). */
int mbx__net_start(bool receive);

/* Queues an envelope of `len` bytes built by `fill(buf, ctx)` for sending,
 * waiting up to the deadline for room in the queue. Returns 0; MBX_EAGAIN
 * (no room, deadline 0); MBX_ETIMEDOUT; MBX_ENOMEM; the error of fill
 * (negative: nothing queued); or a start error. */
int mbx__net_enqueue(size_t len, int (*fill)(uint8_t *buf, void *ctx),
                     void *ctx, int64_t deadline);

/* This process's sender id (random; a fork child picks a new one). */
uint64_t mbx__net_sender_id(void);

/* ---- receive.c (I/O thread only) ---------------------------------------- */

/* Handles one datagram read from the socket (opened in place if sealed):
 * authentication, replay window, frames, reassembly, delivery. */
void mbx__net_receive(uint8_t *buf, size_t len, int64_t now);

/* Drops partial messages older than the reassembly timeout. Returns the
 * nanoseconds until the next one expires, or -1 when none is pending. */
int64_t mbx__net_receive_expire(int64_t now);

/* Frees the receiving state. */
void mbx__net_receive_reset(void);

/* ---- send.c: what the core calls -------------------------------------- */

/* The registry key of a network registration of `name` in domain `lc`
 * (lowercase): "//lc/name". key has room for 2 + 255 + 1 + 255 + 1. */
#define MBX__NET_KEY_MAX (2 + 255 + 1 + MBX_NAME_MAX + 1)
void mbx__net_key(char *key, const char *domain_lc, const char *name);

/* Registers mailbox `id` under the parsed network address a (scope NET).
 * As mbx_register. */
int mbx__net_register(mbx_id id, const struct mbx__address *a);

/* The registry key for unregistering a parsed network address. */
int mbx__net_unregister_key(const struct mbx__address *a, char *key);

/* Sends *m to the parsed network address a, as mbx_send_to. */
int mbx__net_send(const struct mbx__address *a, mbx_msg **m, int timeout_ms);

/* Calls readers of the network address a, as mbx_call_to: the first reply
 * wins. */
int mbx__net_call(const struct mbx__address *a, mbx_msg **req, mbx_msg **reply,
                  int timeout_ms);

/* Sends m (role REPLY or CALL_ENDED) to the network reply address `from`
 * for call `corr`. Never blocks. Returns 0 (m taken), MBX_EMSGSIZE (too
 * large, m still the caller's) or MBX_ENOENT (bad address or no room). */
int mbx__net_reply(const char *from, uint64_t corr, mbx_msg *m);

/* ---- delivery, called by io.c ------------------------------------------ */

struct mbx__wire_env;

/* Delivers a whole, authenticated envelope to the mailboxes of this
 * process it is meant for; counts what happens to it. Mailboxes stay
 * pinned from one call to the next until mbx__net_deliver_done. */
void mbx__net_deliver(const struct mbx__wire_env *e);

/* Ends a batch of deliveries: unpins the mailboxes. */
void mbx__net_deliver_done(void);

/* Counters, shared by the parts. */
struct mbx__net_counters {
    _Atomic uint64_t sent, sent_datagrams, send_dropped;
    _Atomic uint64_t received, delivered, recv_datagrams, not_for_us;
    _Atomic uint64_t dropped_full, dropped_size, malformed, unauthenticated;
    _Atomic uint64_t replayed, reassembly_timeouts, reassembly_evicted;
    _Atomic uint64_t reassembly_bytes, reassembly_peak, socket_overflows;
};
extern struct mbx__net_counters mbx__net_count;

#endif
