/*
 * mbx: message passing with mailboxes.
 *
 * A program sends a message to a mailbox, by id or by name, and whoever owns
 * the mailbox receives it. This header is the whole public interface and is
 * self-contained. Conventions used throughout:
 *
 *  - Functions returning int give 0 (or a non-negative count) on success and
 *    a negative MBX_E* code on failure; mbx_strerror() names every code.
 *  - int timeout_ms: -1 waits forever, 0 never blocks, > 0 waits at most that
 *    many milliseconds (measured on the monotonic clock).
 *  - Functions taking mbx_msg ** take ownership of the message on success and
 *    set the caller's pointer to NULL; on failure the caller still owns it.
 *  - Option structs: a NULL pointer means defaults, and a zero field means
 *    that field's default, so new fields can be appended later.
 *  - Every function may be called from any thread unless its comment says
 *    otherwise.
 */
#ifndef MBX_MBX_H
#define MBX_MBX_H

#include <stddef.h>
#include <stdint.h>

#include <mbx/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MBX_STATIC)
#define MBX_API
#elif defined(MBX_BUILDING)
#define MBX_API __attribute__((visibility("default")))
#else
#define MBX_API
#endif

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */
/* ------------------------------------------------------------------------ */

/* Codes that have an errno equivalent equal -errno (Linux values). */
#define MBX_EPERM (-1)       /* operation not allowed for this handle */
#define MBX_ENOENT (-2)      /* no such mailbox, name or message */
#define MBX_EAGAIN (-11)     /* would block (timeout 0, or full and failing) */
#define MBX_ENOMEM (-12)     /* out of memory */
#define MBX_EEXIST (-17)     /* name already registered */
#define MBX_EINVAL (-22)     /* invalid argument */
#define MBX_ERANGE (-34)     /* value does not fit the requested type */
#define MBX_EBADMSG (-74)    /* malformed or truncated encoded data */
#define MBX_EMSGSIZE (-90)   /* message larger than the limit */
#define MBX_ENOTSUP (-95)    /* address scope or feature not supported yet */
#define MBX_ETIMEDOUT (-110) /* the timeout expired; nothing was consumed */

/* Library-only codes live in the reserved range -4001 .. -4099. */
#define MBX_ECLOSED (-4001) /* the mailbox was closed while waiting */
#define MBX_ETYPE (-4002)   /* an argument holds another type */

/* The name of an error code ("no such mailbox or name"), or "unknown error".
 * The returned string is static. */
MBX_API const char *mbx_strerror(int err);

/* The symbolic name of an error code ("MBX_ENOENT"), or "MBX_EUNKNOWN". */
MBX_API const char *mbx_strerror_name(int err);

/* The version of the library at run time, e.g. "0.1.0". Static string. */
MBX_API const char *mbx_version(void);

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* A message: a kind (short string, may be empty), a body (bytes) and
 * metadata (reply address, flags, correlation for call/reply). Owned by one
 * party at a time; ownership passes with a successful send. */
typedef struct mbx_msg mbx_msg;

/* Longest kind, in bytes, not counting the terminating NUL. */
#define MBX_KIND_MAX 255

/* Longest name or address, in bytes, not counting the terminating NUL. */
#define MBX_NAME_MAX 255

/* Message flags (mbx_msg_set_flags / mbx_msg_flags). */
#define MBX_MSG_URGENT 0x1u /* delivered ahead of every queued message */

/* New message with a copy of `len` bytes of `body` (body may be NULL when len
 * is 0) and a copy of `kind` (NULL means ""). Returns NULL when out of memory
 * or when kind is longer than MBX_KIND_MAX. The caller owns the message. */
MBX_API mbx_msg *mbx_msg_new(const char *kind, const void *body, size_t len);

/* New message that takes `body` without copying it. When the message is
 * freed, free_body(body) is called (free_body may be NULL if the body needs
 * no freeing). free_body may run in any thread and inside the library (a
 * destroy freeing queued messages, a send dropping one): it must only free
 * memory, not call mbx functions. Returns NULL as mbx_msg_new; on NULL the
 * body still belongs to the caller. */
MBX_API mbx_msg *mbx_msg_wrap(const char *kind, void *body, size_t len,
                              void (*free_body)(void *));

/* The kind; never NULL. Valid while the message lives. */
MBX_API const char *mbx_msg_kind(const mbx_msg *m);

/* The body, and its length in *len when len is not NULL. May be NULL when
 * the length is 0. Valid while the message lives. */
MBX_API const void *mbx_msg_body(const mbx_msg *m, size_t *len);

/* The sender's reply address set by mbx_msg_set_from, or NULL when the
 * sender gave none. mbx_call does not set it (answer a call with
 * mbx_reply), except that a call from another process shows the caller's
 * reply address ("//./.reply/..."). Valid while the message lives. */
MBX_API const char *mbx_msg_from(const mbx_msg *m);

/* Sets the reply address, any form mbx_send_to accepts (copied, not
 * checked: a bad address shows when someone sends to it). NULL clears it.
 * Returns 0, MBX_EINVAL if empty or longer than MBX_NAME_MAX, or
 * MBX_ENOMEM. */
MBX_API int mbx_msg_set_from(mbx_msg *m, const char *address);

/* Sets MBX_MSG_* flags (replaces the previous set). Returns 0, or MBX_EINVAL
 * for unknown bits. */
MBX_API int mbx_msg_set_flags(mbx_msg *m, unsigned flags);

/* The MBX_MSG_* flags of the message. */
MBX_API unsigned mbx_msg_flags(const mbx_msg *m);

/* 1 if the message is a request made with mbx_call that has not been
 * replied to yet, else 0. */
MBX_API int mbx_msg_is_call(const mbx_msg *m);

/* Frees a message and its body. Accepts NULL. Freeing a call request that
 * was never replied to tells the caller at once: its mbx_call returns
 * MBX_ECLOSED. */
MBX_API void mbx_msg_free(mbx_msg *m);

/* ------------------------------------------------------------------------ */
/* Mailboxes                                                                */
/* ------------------------------------------------------------------------ */

/* A mailbox id: slot index and generation. 0 is never a valid id. An id
 * used after its mailbox was destroyed gives MBX_ENOENT, never a crash. */
typedef uint64_t mbx_id;

/* What a send does when a bounded mailbox is full. */
enum mbx_when_full {
    MBX_FULL_BLOCK = 0, /* wait for room up to the send's timeout (default) */
    MBX_FULL_FAIL = 1,  /* fail at once with MBX_EAGAIN */
    MBX_FULL_DROP = 2,  /* accept, discard and count in mbx_stats.dropped */
};

/* Mailbox options. NULL or all zero: unbounded, blocking. */
typedef struct mbx_opts {
    size_t capacity; /* most messages queued at once; 0 = unbounded */
    int when_full;   /* an enum mbx_when_full value */
} mbx_opts;

/* Creates a mailbox and stores its id in *out. The creator owns it: it alone
 * should destroy it. Returns 0, MBX_EINVAL for bad options, or MBX_ENOMEM. */
MBX_API int mbx_create(mbx_id *out, const mbx_opts *opts);

/* Destroys a mailbox: its names are unregistered, every thread waiting in
 * mbx_recv, a blocking mbx_send or mbx_call on it returns MBX_ECLOSED, its
 * queued messages are freed (queued call requests make their callers return
 * MBX_ECLOSED), monitors get their "DOWN" message, and later use of the id
 * gives MBX_ENOENT. The fd made by mbx_fd is closed: take it out of
 * event loops first. Any thread may destroy; when several try, one gets 0
 * and the others MBX_ENOENT. Returns 0 or MBX_ENOENT. */
MBX_API int mbx_destroy(mbx_id id);

/* Registers `name` for the mailbox. A mailbox may hold several names.
 * Returns 0; MBX_EEXIST if the name is taken (even by this mailbox);
 * MBX_ENOENT for a dead id; MBX_EINVAL for a bad name (empty, longer than
 * MBX_NAME_MAX, starting with '@', which is reserved for id addresses, or a
 * malformed scoped form such as "//x"); MBX_ENOTSUP for "scheme://"
 * names, which later layers provide.
 * A host name ("//./x" or "\\.\mailslot\x") makes the mailbox a host
 * mailslot: see mbx_register_host, which this calls with default options.
 * A network name ("//STAR/x", "//DOMAIN/x", "\\STAR\mailslot\x"; STAR is
 * "*") makes it a reader of that name on the network (see "Network
 * mailslots"); names starting with ".reply/" are reserved (MBX_EINVAL), and
 * the errors of starting the network layer are returned as they are. */
MBX_API int mbx_register(mbx_id id, const char *name);

/* Removes a name. Returns 0, MBX_ENOENT if not registered, MBX_EINVAL for a
 * bad name. */
MBX_API int mbx_unregister(const char *name);

/* Looks a name up. A host name ("//./x") or a network name ("//STAR/x")
 * gives the mailbox of this process that reads it. Returns 0 and the id in
 * *out, or MBX_ENOENT. */
MBX_API int mbx_whereis(const char *name, mbx_id *out);

/* Sends *m to the mailbox `to`. On success the mailbox owns the message and
 * *m is set to NULL. A full bounded mailbox follows its when_full policy:
 * blocking waits at most timeout_ms; MBX_FULL_DROP returns 0 and discards
 * the message. A send to an unbounded mailbox never blocks, though with a
 * backlog of thousands it now and then yields the CPU to let the receiver
 * catch up. Returns 0; MBX_ENOENT for a dead id;
 * MBX_EAGAIN (full, timeout 0 or MBX_FULL_FAIL); MBX_ETIMEDOUT (still full
 * after the timeout); MBX_ECLOSED (destroyed while waiting for room);
 * MBX_EINVAL for a NULL message. */
MBX_API int mbx_send(mbx_id to, mbx_msg **m, int timeout_ms);

/* Sends to an address: a registered name ("worker"), an id address
 * ("@" followed by 16 hex digits, as written by mbx_id_format), or a host
 * mailslot ("//./x" or "\\.\mailslot\x") in any process of this host.
 * A network address ("//STAR/x" with STAR = "*", "//HOST/x", "//DOMAIN/x")
 * queues the message for the network I/O thread and returns: it never
 * fails for lack of readers; MBX_EMSGSIZE for a body over the network's
 * message_size; when the process's send queue is full (16 MiB of
 * messages), it waits up to timeout_ms (MBX_EAGAIN for 0, MBX_ETIMEDOUT).
 * Otherwise as mbx_send; for a host
 * mailslot the reader's ring is the bound: when it is full the send waits
 * up to timeout_ms (MBX_EAGAIN at once for 0, MBX_ETIMEDOUT later), and a
 * mailslot whose reader is gone gives MBX_ENOENT (MBX_EPERM: the ring is
 * another user's; MBX_EAGAIN also when the reader already has 1024 writer
 * processes). */
MBX_API int mbx_send_to(const char *address, mbx_msg **m, int timeout_ms);

/* Receives the next message: urgent messages first, then in send order.
 * On success *out owns the message. Returns 0; MBX_EAGAIN (empty and timeout
 * 0); MBX_ETIMEDOUT (nothing arrived in time, nothing consumed); MBX_ECLOSED
 * (destroyed while waiting); MBX_ENOENT (dead id). Several threads may
 * receive from one mailbox; each message goes to exactly one of them. */
MBX_API int mbx_recv(mbx_id self, mbx_msg **out, int timeout_ms);

/* Selective receive: takes the first queued message whose kind equals
 * `kind`, waiting for one up to the timeout; the others stay queued in their
 * order. Returns as mbx_recv, and MBX_EINVAL for a NULL kind. */
MBX_API int mbx_recv_kind(mbx_id self, const char *kind, mbx_msg **out,
                          int timeout_ms);

/* Synchronous call: sends *req to `to` marked as a call and waits for the
 * callee's mbx_reply. On success *req is NULL (sent) and *reply owns the
 * reply. Returns 0; MBX_ETIMEDOUT (no reply in time, also with timeout 0
 * once the request is sent; a late reply is discarded); MBX_ECLOSED (the
 * callee's mailbox was destroyed, or the request was freed unanswered, before
 * the reply: returned at once); or any mbx_send error, in which case *req still
 * belongs to the caller. */
MBX_API int mbx_call(mbx_id to, mbx_msg **req, mbx_msg **reply, int timeout_ms);

/* mbx_call to an address, resolved as mbx_send_to. A call to a network
 * address reaches every reader of it: the first reply wins and later ones
 * are discarded; with no reader (or none replying) it ends with
 * MBX_ETIMEDOUT, so give it a timeout; a reader freeing the request
 * unanswered (or dropping it, its mailbox full) ends it with MBX_ECLOSED. */
MBX_API int mbx_call_to(const char *address, mbx_msg **req, mbx_msg **reply,
                        int timeout_ms);

/* Answers a call request received with mbx_recv. Takes *reply on success
 * (sets it to NULL). The request stays owned by the caller of mbx_reply.
 * Never blocks. Returns 0; MBX_EINVAL if req is not a call or was already
 * answered; MBX_ENOENT if the caller stopped waiting (timed out or gone);
 * MBX_EMSGSIZE if the caller is another process and the reply is larger
 * than half its reply ring (32 KiB less headers): the request is then
 * still unanswered. */
MBX_API int mbx_reply(mbx_msg *req, mbx_msg **reply);

/* A file descriptor that is readable while messages are pending, for
 * poll/epoll/libuv/libevent. Level-triggered: after readiness, receive with
 * timeout 0 until MBX_EAGAIN. Messages set aside by mbx_recv_kind count as
 * pending. Created on the first call (later calls return the same fd); it
 * costs nothing until then. It is an epoll set (two fds are used), so that
 * messages from other processes to a host name of the mailbox make it
 * readable too. Owned by the mailbox: do not close or read it; mbx_destroy
 * closes it. Returns the fd, MBX_ENOENT, or MBX_ENOMEM (no memory or no
 * file descriptor left). */
MBX_API int mbx_fd(mbx_id id);

/* Monitors `target`: when it is destroyed, `watcher` receives a message of
 * kind "DOWN" whose body is the target's id (mbx_msg_down reads it). If the
 * target is already dead (or never existed), the DOWN message is sent at
 * once. Returns 0, MBX_ENOENT if the watcher is dead, or MBX_ENOMEM. */
MBX_API int mbx_monitor(mbx_id watcher, mbx_id target);

/* Removes one monitor made by mbx_monitor(watcher, target). Returns 0 or
 * MBX_ENOENT when there is no such monitor. */
MBX_API int mbx_demonitor(mbx_id watcher, mbx_id target);

/* If m has the shape of a "DOWN" message (that kind, an 8-byte body),
 * stores the dead mailbox's id in *who and returns 0; otherwise MBX_EINVAL.
 * Do not use the kind "DOWN" for messages of your own. */
MBX_API int mbx_msg_down(const mbx_msg *m, mbx_id *who);

/* Room for an id address: "@" + 16 hex digits + NUL. */
#define MBX_ID_ADDRESS_LEN 18

/* Writes the id address of `id` ("@00000001000000a3") into buf, which holds
 * at least MBX_ID_ADDRESS_LEN bytes. Returns buf. */
MBX_API char *mbx_id_format(mbx_id id, char *buf);

/* Counters of one mailbox. */
typedef struct mbx_stats {
    uint64_t queued;       /* messages waiting now */
    uint64_t queued_bytes; /* body bytes waiting now */
    uint64_t sent;         /* messages accepted since creation */
    uint64_t received;     /* messages handed to a receiver */
    uint64_t dropped;      /* messages discarded without delivery */
    uint64_t full;         /* sends refused or timed out because full */
    uint64_t capacity;     /* the capacity option; 0 = unbounded */
    uint64_t reserved[9];  /* room for later counters; zero */
} mbx_stats;

/* Fills *out with the mailbox's counters (a snapshot: with concurrent
 * senders the values may move while read). Returns 0 or MBX_ENOENT. */
MBX_API int mbx_stat(mbx_id id, mbx_stats *out);

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */
/* ------------------------------------------------------------------------ */

/* Starts a task: a new thread that runs fn(self, arg) with its own mailbox
 * `self`, whose id is stored in *out before the thread starts. When fn
 * returns (or calls pthread_exit), the mailbox is destroyed, so later sends
 * get MBX_ENOENT. Returns
 * 0, MBX_ENOMEM, or MBX_EAGAIN when no thread could be started. */
MBX_API int mbx_spawn(mbx_id *out, void (*fn)(mbx_id self, void *arg),
                      void *arg);

/* Waits until the task `task` has returned from its function. Any number of
 * threads may join the same task, before or after it ends. Returns 0 (also
 * when it had already ended); MBX_EAGAIN (timeout 0 and still running);
 * MBX_ETIMEDOUT; MBX_ENOENT if the id never named a mailbox; MBX_EINVAL if
 * it names a live mailbox that is not a task, or a task joining itself. */
MBX_API int mbx_join(mbx_id task, int timeout_ms);

/* Called by mbx_receive_loop for each message. The handler owns *m: it may
 * keep it by setting *m to NULL, otherwise the loop frees it. Returning a
 * non-zero value stops the loop, which returns that value. */
typedef int (*mbx_receive_fn)(mbx_id self, mbx_msg **m, void *ctx);

/* Receives messages on `self` and calls handler for each, until the handler
 * returns non-zero (that value is returned) or the mailbox is destroyed
 * (MBX_ECLOSED, or MBX_ENOENT if it was already dead). */
MBX_API int mbx_receive_loop(mbx_id self, mbx_receive_fn handler, void *ctx);

/* ------------------------------------------------------------------------ */
/* Args: typed positional and keyword arguments, encoded as MessagePack     */
/* ------------------------------------------------------------------------ */

/* A list of positional values plus a map of keyword values. Encoded as a
 * MessagePack array of two elements: [positional array, keyword map], so
 * any language can read it. Values: nil, bool, int64, double, string, bytes,
 * and nested arrays (positional only) and maps (keyword only). One object
 * serves to build (add/set) and to read (getters); decoded args may be
 * extended too. Not thread-safe: one thread at a time per object. */
typedef struct mbx_args mbx_args;

/* Value types, as returned by mbx_args_type / mbx_args_kw_type. */
enum mbx_type {
    MBX_T_NIL = 1,
    MBX_T_BOOL,
    MBX_T_INT,
    MBX_T_DOUBLE,
    MBX_T_STR,
    MBX_T_BYTES,
    MBX_T_ARRAY,
    MBX_T_MAP,
};

/* Empty args, or NULL when out of memory. Free with mbx_args_free. */
MBX_API mbx_args *mbx_args_new(void);

/* Frees args and every nested value. Accepts NULL. */
MBX_API void mbx_args_free(mbx_args *a);

/* Append a positional value. Strings and bytes are copied. Return 0,
 * MBX_EINVAL (NULL args or string), or MBX_ENOMEM. */
MBX_API int mbx_args_add_nil(mbx_args *a);
MBX_API int mbx_args_add_bool(mbx_args *a, int v);
MBX_API int mbx_args_add_int(mbx_args *a, int64_t v);
MBX_API int mbx_args_add_double(mbx_args *a, double v);
MBX_API int mbx_args_add_str(mbx_args *a, const char *s);
MBX_API int mbx_args_add_strn(mbx_args *a, const char *s, size_t len);
MBX_API int mbx_args_add_bytes(mbx_args *a, const void *p, size_t len);
/* Appends a nested array (sub holds only positional values) or map (sub
 * holds only keyword values); takes *sub on success and sets it to NULL.
 * MBX_EINVAL if sub holds the other kind of value too, if sub is a itself,
 * or if the nesting would pass 64 levels (a value directly in the args is
 * level 0; each array or map opens one more). Strings, bytes and containers
 * are limited to 2^32 - 1 bytes or values (MBX_EINVAL beyond). */
MBX_API int mbx_args_add_array(mbx_args *a, mbx_args **sub);
MBX_API int mbx_args_add_map(mbx_args *a, mbx_args **sub);

/* Set a keyword value; replaces an existing value of the same key (the key
 * keeps its place). Keys are non-empty strings. Return as the add calls. */
MBX_API int mbx_args_set_nil(mbx_args *a, const char *key);
MBX_API int mbx_args_set_bool(mbx_args *a, const char *key, int v);
MBX_API int mbx_args_set_int(mbx_args *a, const char *key, int64_t v);
MBX_API int mbx_args_set_double(mbx_args *a, const char *key, double v);
MBX_API int mbx_args_set_str(mbx_args *a, const char *key, const char *s);
MBX_API int mbx_args_set_strn(mbx_args *a, const char *key, const char *s,
                              size_t len);
MBX_API int mbx_args_set_bytes(mbx_args *a, const char *key, const void *p,
                               size_t len);
MBX_API int mbx_args_set_array(mbx_args *a, const char *key, mbx_args **sub);
MBX_API int mbx_args_set_map(mbx_args *a, const char *key, mbx_args **sub);

/* Number of positional values / keyword values. */
MBX_API size_t mbx_args_len(const mbx_args *a);
MBX_API size_t mbx_args_kw_len(const mbx_args *a);

/* The key of keyword value number i (in insertion or wire order), valid
 * while `a` lives. Returns 0, or MBX_ENOENT when i is out of range. */
MBX_API int mbx_args_kw_key(const mbx_args *a, size_t i, const char **key);

/* The MBX_T_* type of positional value i / keyword `key`, or MBX_ENOENT. */
MBX_API int mbx_args_type(const mbx_args *a, size_t i);
MBX_API int mbx_args_kw_type(const mbx_args *a, const char *key);

/* Type-checked getters. Return 0 and the value; MBX_ENOENT when there is no
 * such index or key; MBX_ETYPE when the value has another type (ints and
 * doubles are never converted); MBX_EINVAL for a NULL args, key or out
 * pointer. Strings and bytes are borrowed: valid while `a` lives and is not
 * modified. A string's length is stored in *len when len is not NULL; strings
 * are NUL-terminated but may hold NUL bytes. Nested arrays and maps are
 * borrowed args views
 * (*out must not be freed). */
MBX_API int mbx_args_get_bool(const mbx_args *a, size_t i, int *out);
MBX_API int mbx_args_get_int(const mbx_args *a, size_t i, int64_t *out);
MBX_API int mbx_args_get_double(const mbx_args *a, size_t i, double *out);
MBX_API int mbx_args_get_str(const mbx_args *a, size_t i, const char **out,
                             size_t *len);
MBX_API int mbx_args_get_bytes(const mbx_args *a, size_t i, const void **out,
                               size_t *len);
MBX_API int mbx_args_get_array(const mbx_args *a, size_t i,
                               const mbx_args **out);
MBX_API int mbx_args_get_map(const mbx_args *a, size_t i, const mbx_args **out);
MBX_API int mbx_args_kw_bool(const mbx_args *a, const char *key, int *out);
MBX_API int mbx_args_kw_int(const mbx_args *a, const char *key, int64_t *out);
MBX_API int mbx_args_kw_double(const mbx_args *a, const char *key, double *out);
MBX_API int mbx_args_kw_str(const mbx_args *a, const char *key,
                            const char **out, size_t *len);
MBX_API int mbx_args_kw_bytes(const mbx_args *a, const char *key,
                              const void **out, size_t *len);
MBX_API int mbx_args_kw_array(const mbx_args *a, const char *key,
                              const mbx_args **out);
MBX_API int mbx_args_kw_map(const mbx_args *a, const char *key,
                            const mbx_args **out);

/* Encodes args as MessagePack into a new malloc'd buffer (*out, *len); the
 * caller frees it with free(). Returns 0, MBX_EINVAL, or MBX_ENOMEM. */
MBX_API int mbx_args_encode(const mbx_args *a, void **out, size_t *len);

/* Decodes `len` bytes into new args (*out, freed with mbx_args_free). Never
 * reads outside [data, data + len), and allocates only as values actually
 * arrive. Returns 0; MBX_EBADMSG for empty, malformed, truncated or
 * trailing data, map keys that are not non-empty strings without NUL bytes,
 * duplicate keys, unsupported MessagePack types (ext), nesting deeper than
 * 64, or integers above INT64_MAX; MBX_ENOMEM. On failure *out is left
 * untouched. Strings are not checked for UTF-8. */
MBX_API int mbx_args_decode(mbx_args **out, const void *data, size_t len);

/* New message whose body is the encoding of `a` (a stays the caller's).
 * Returns NULL when out of memory, for a NULL `a`, or for a kind longer
 * than MBX_KIND_MAX. */
MBX_API mbx_msg *mbx_msg_new_args(const char *kind, const mbx_args *a);

/* Decodes the message's body as args (*out freed with mbx_args_free).
 * Returns as mbx_args_decode; an empty body decodes as empty args. */
MBX_API int mbx_msg_args(const mbx_msg *m, mbx_args **out);

/* ------------------------------------------------------------------------ */
/* Host mailslots: a mailbox reachable from every process of this host       */
/* ------------------------------------------------------------------------ */

/* A mailbox registered under a host name ("//./NAME", also written
 * "\\.\mailslot\NAME") owns a ring of messages in a shared mapping under
 * the runtime directory: $MBX_RUNTIME_DIR if set, else $XDG_RUNTIME_DIR/mbx,
 * else /tmp/mbx-UID (created with mode 0700; a /tmp/mbx-UID owned by
 * someone else is refused). Other processes of the same user copy messages
 * straight into the ring with mbx_send_to, mbx_call_to or mbx_slot_put, and
 * the owner receives them with mbx_recv like any other message, together
 * with what its own threads send. Kind, body, flags, the reply address
 * (mbx_msg_from) and call/reply all cross the process boundary. */

/* Default size of a host ring in bytes (1 MiB). */
#define MBX_RING_DEFAULT (1u << 20)

/* Smallest and largest host ring, in bytes. */
#define MBX_RING_MIN (4u << 10)
#define MBX_RING_MAX (1u << 30)

/* Options of a host mailslot. NULL or all zero: defaults. */
typedef struct mbx_host_opts {
    size_t ring_size;    /* bytes, rounded up to a power of two within
                          * [MBX_RING_MIN, MBX_RING_MAX]; 0 = MBX_RING_DEFAULT.
                          * One message (kind, reply address and body, plus a
                          * 24-byte header, padded to 8) may take at most half
                          * of it. */
    unsigned mode;       /* file permissions of the ring: 0 = 0600 (only this
                          * user); 0660 also admits the owner's group, and then
                          * makes the runtime directory group-searchable. Only
                          * 0600 and 0660 are accepted. */
    size_t message_size; /* largest body writers may send (MBX_EMSGSIZE
                          * beyond, nothing sent), as a Windows mailslot's
                          * reader sets it; 0 = what the ring takes */
} mbx_host_opts;

/* Registers a host name for the mailbox: from now on any process of this
 * host may send to it. A mailbox holds at most one host name in its life
 * (it may hold local names beside it). The name stays taken while this
 * process lives and the mailbox is not destroyed or the name unregistered;
 * the name of a reader that died, even by SIGKILL, is taken over by the
 * next one, with an empty ring. Messages queued in the ring when the name
 * is unregistered stay in the mailbox. Returns 0; MBX_EEXIST if a live
 * process (this one included) reads that name; MBX_ENOTSUP if the mailbox
 * already had a host name; MBX_ENOENT for a dead id; MBX_EINVAL for a name
 * that is not a valid host name or bad options; MBX_EPERM if the runtime
 * directory cannot be used safely; MBX_ENOMEM, or another negative errno
 * from the file system (e.g. -ENOSPC). */
MBX_API int mbx_register_host(mbx_id id, const char *name,
                              const mbx_host_opts *opts);

/* A handle on one host mailslot with winsys's Queue-like interface. Its
 * first use fixes its role: mbx_slot_put makes it a writer, mbx_slot_get,
 * mbx_slot_get_nowait, mbx_slot_next and mbx_slot_fd make it the reader
 * (which creates a mailbox and registers the name, as mbx_register_host).
 * The other use then returns MBX_EPERM. A handle is used by one thread at a
 * time. */
typedef struct mbx_slot mbx_slot;

/* Options of a slot. NULL or all zero: defaults. */
typedef struct mbx_slot_opts {
    size_t message_size; /* largest body a put accepts; 0 = the ring's limit */
    int timeout_ms;      /* the wait of mbx_slot_get(.., -1) and of a put
                          * into a full ring; 0 = wait forever */
    size_t ring_size;    /* reader: as mbx_host_opts.ring_size; a reader's
                          * message_size also caps its writers' puts */
    unsigned mode;       /* reader: as mbx_host_opts.mode */
} mbx_slot_opts;

/* Wait forever in mbx_slot_get, whatever the slot's timeout option. */
#define MBX_SLOT_FOREVER (-2)

/* Opens a handle on the host mailslot `name`: "\\.\mailslot\NAME" (the word
 * "mailslot" in any case), "//./NAME", or a bare NAME meaning the same.
 * Opening touches nothing: the role and the checks come with first use.
 * A network name ("\\*\mailslot\x", "//STAR/x", "//HOST/x") opens a network
 * mailslot: the reader registers the name as mbx_register does, a writer's
 * puts never fail for lack of readers, qsize counts what the reader's
 * mailbox holds (0 for a writer), and full is always 0.
 * Returns 0 and the handle in *out; MBX_EINVAL for a bad name or options;
 * MBX_ENOMEM. */
MBX_API int mbx_slot_open(mbx_slot **out, const char *name,
                          const mbx_slot_opts *opts);

/* Writes one message (kind "", `len` bytes of `data`) to the slot's reader.
 * Waits for room in a full ring up to the slot's timeout. Returns 0;
 * MBX_EMSGSIZE (larger than message_size or the reader's limit: nothing
 * sent); MBX_ENOENT (no live reader); MBX_ETIMEDOUT (still full);
 * MBX_EPERM (the handle reads, or the ring is not this user's);
 * MBX_EAGAIN (the reader already has 1024 writer processes); MBX_EINVAL
 * (data NULL with len > 0). */
MBX_API int mbx_slot_put(mbx_slot *s, const void *data, size_t len);

/* Reads the next message into *out (the caller owns it). timeout_ms: -1 =
 * the slot's timeout, 0 = do not wait, MBX_SLOT_FOREVER, or milliseconds.
 * Returns 0; MBX_EAGAIN (empty, not waiting); MBX_ETIMEDOUT; MBX_EEXIST
 * (another live reader holds the name: the handle stays a reader and a
 * later call tries to take the name again); MBX_EPERM (the handle writes);
 * errors of mbx_register_host on first use. */
MBX_API int mbx_slot_get(mbx_slot *s, mbx_msg **out, int timeout_ms);

/* mbx_slot_get(s, out, 0). */
MBX_API int mbx_slot_get_nowait(mbx_slot *s, mbx_msg **out);

/* For "for each message until a sentinel": waits as mbx_slot_get(s, out,
 * timeout_ms). Returns 1 with a message in *out; 0 when the message's body
 * equals the sentinel (sentinel_len bytes; NULL for none: it is freed, *out
 * is NULL) or the slot was closed under the reader (MBX_ECLOSED); or an
 * error of mbx_slot_get. So `while (mbx_slot_next(s, &m, "STOP", 4, -1) >
 * 0)` loops over every message until "STOP". */
MBX_API int mbx_slot_next(mbx_slot *s, mbx_msg **out, const void *sentinel,
                          size_t sentinel_len, int timeout_ms);

/* Messages waiting: for the reader, in its ring and its mailbox; for a
 * writer (or a handle not used yet), in the reader's ring. Returns the count,
 * or MBX_ENOENT when nobody reads the name. */
MBX_API int mbx_slot_qsize(mbx_slot *s);

/* 1 when no message waits, 0 when some do, or a negative error as
 * mbx_slot_qsize. */
MBX_API int mbx_slot_empty(mbx_slot *s);

/* 1 when the reader's ring has no room for a message of the slot's
 * message_size (or of one byte when that is 0), else 0; or a negative error
 * as mbx_slot_qsize. Compares bytes with bytes. */
MBX_API int mbx_slot_full(mbx_slot *s);

/* A file descriptor readable while messages wait (level-triggered), for
 * poll/epoll; makes the handle the reader. Owned by the slot: do not close
 * it. Returns the fd or an error of mbx_slot_get's first use. */
MBX_API int mbx_slot_fd(mbx_slot *s);

/* The reader's mailbox, for mbx_recv, mbx_recv_kind and mbx_reply; makes
 * the handle the reader. Returns 0 and the id in *out, or an error as
 * mbx_slot_fd. The mailbox belongs to the slot: do not destroy it. */
MBX_API int mbx_slot_mailbox(mbx_slot *s, mbx_id *out);

/* Closes the handle: a reader releases the name (messages still queued are
 * freed); a writer lets go of the ring. Accepts NULL; closing twice is a
 * bug as with free(). */
MBX_API void mbx_slot_close(mbx_slot *s);

/* What mbx_slot_list reports about one live host mailslot. */
typedef struct mbx_slot_info {
    const char *name;      /* the name, without "//./" */
    long pid;              /* the reading process */
    uint64_t queued;       /* messages in the ring */
    uint64_t queued_bytes; /* bytes of the ring in use */
    uint64_t ring_size;    /* bytes of the ring */
    uint64_t dropped;      /* malformed records the reader dropped */
    unsigned mode;         /* file permissions of the ring */
} mbx_slot_info;

/* Calls fn for each host mailslot of the runtime directory whose reader is
 * alive (fn's info is valid during the call only), in no set order, until fn
 * returns non-zero (which is then returned). Returns 0, or a negative error
 * from opening the runtime directory. */
MBX_API int mbx_slot_list(int (*fn)(const mbx_slot_info *info, void *ctx),
                          void *ctx);

/* ------------------------------------------------------------------------ */
/* Network mailslots: every reader of a name on the LAN, and the logger     */
/* ------------------------------------------------------------------------ */

/* A mailbox registered under a network name receives what any process on
 * the network sends to that name:
 *
 *   "//STAR/NAME", "\\STAR\mailslot\NAME" (STAR is "*")
 *       registering: a reader of NAME in this process's domain;
 *       sending: to every reader of NAME in the sender's domain.
 *   "//X/NAME", "\\X\mailslot\NAME"
 *       registering: a reader of NAME in domain X (X equal to this host's
 *       name means this process's domain);
 *       sending: to every reader of NAME on host X or in domain X (host
 *       and domain names compare case-insensitively).
 *
 * Delivery is best effort (UDP multicast): sending never fails for lack of
 * readers, every reader gets its own copy, a message arrives whole or not
 * at all and at most once, and what is dropped on the way (loss, bad or
 * unauthenticated datagrams, a full mailbox) is counted in mbx_net_stat.
 * Kind, body, the urgent flag, the reply address and call/reply cross
 * hosts; mbx_msg_origin names the sending host.
 *
 * One I/O thread per process owns the socket: it starts on the first
 * network send or registration and stops at mbx_net_stop or exit. Sends
 * queue the message for it and return at once; messages queued in a burst
 * share datagrams. Names registered here are one per process: a second
 * registration of the same network name in one process is MBX_EEXIST,
 * while any number of processes (on one host or many) read it. */

/* Largest network message body by default (64 KiB). */
#define MBX_NET_MESSAGE_DEFAULT (64u << 10)

/* Largest network message body that can be configured (16 MiB). */
#define MBX_NET_MESSAGE_MAX (16u << 20)

/* Defaults of the network layer; each can also be set in the environment
 * (the option wins over the environment). */
#define MBX_NET_DOMAIN_DEFAULT "mbx"          /* $MBX_DOMAIN */
#define MBX_NET_GROUP_DEFAULT "239.255.77.88" /* $MBX_GROUP */
#define MBX_NET_PORT_DEFAULT 7788             /* $MBX_PORT */

/* Network options, fixed for the life of the process once the layer
 * starts. NULL or zero fields: the environment, else the default. */
typedef struct mbx_net_opts {
    const char *domain;      /* this process's domain ($MBX_DOMAIN, "mbx") */
    const char *host;        /* this host's name ($MBX_HOSTNAME, gethostname;
                              * as addresses write hosts: letters, digits,
                              * '-', '.', '_'; at most 212 bytes, so that
                              * reply addresses fit; domains up to 255) */
    const char *group;       /* $MBX_GROUP: an IPv4 multicast group (default
                              * 239.255.77.88), an IPv6 one ("ff02::..."), or an
                              * IPv4 broadcast address for plain broadcast:
                              * "255.255.255.255", an interface's subnet
                              * broadcast ("10.0.0.255"), or 127.255.255.255 */
    int port;                /* UDP port ($MBX_PORT, 7788) */
    const char *iface;       /* interface name ($MBX_IFACE): where to join the
                              * group and send; default the kernel's choice, and
                              * "lo" keeps traffic on this host */
    const char *key_file;    /* shared key written by `mbx keygen`
                              * ($MBX_KEY_FILE); none: plain, unauthenticated */
    size_t message_size;     /* largest body sent or accepted
                              * (MBX_NET_MESSAGE_DEFAULT, at most
                              * MBX_NET_MESSAGE_MAX) */
    size_t datagram_size;    /* largest datagram sent (1452: fits an Ethernet
                              * frame over IPv4 or IPv6), 512..65507 */
    int ttl;                 /* multicast hops (1: this LAN only) */
    int reassembly_ms;       /* how long a partly received message may wait
                              * for its missing fragments (1000) */
    size_t reassembly_bytes; /* memory for partly received messages
                              * (4 MiB); the oldest is dropped beyond it */
} mbx_net_opts;

/* Sets the network options. Call before the first network use. Returns 0;
 * MBX_EEXIST once the layer has started; MBX_EINVAL for a bad value (a
 * group that is neither multicast nor a broadcast address, an IPv6 group
 * on an interface without multicast such as "lo", an unknown interface, a
 * key file that is unreadable or not a key); MBX_EPERM for a key file
 * others may read. Bad environment values are reported the same way by
 * the first network call. */
MBX_API int mbx_net_configure(const mbx_net_opts *opts);

/* Sends what is queued and stops the I/O thread; the names registered
 * stay registered and the next network call starts it again. Waits up to
 * timeout_ms for what was queued before the call to be sent; whatever is
 * still queued then (other threads may keep sending) is dropped and
 * counted in send_dropped. Returns 0, or MBX_ETIMEDOUT (the wait ran out).
 * Also run at exit, with a 1 s wait. */
MBX_API int mbx_net_stop(int timeout_ms);

/* Waits until every network message this process queued so far has been
 * handed to the kernel. Returns 0, MBX_ETIMEDOUT, or 0 at once when the
 * layer never started. */
MBX_API int mbx_net_flush(int timeout_ms);

/* Counters of this process's network layer, since it first started. */
typedef struct mbx_net_stats {
    uint64_t sent;                /* messages queued and sent */
    uint64_t sent_datagrams;      /* datagrams handed to the kernel */
    uint64_t send_dropped;        /* messages not sent: queue full with timeout
                                   * 0, socket errors, the layer stopping */
    uint64_t received;            /* messages received whole and accepted */
    uint64_t delivered;           /* ... put into a mailbox (counted just
                                   * after: a reader may see it first) */
    uint64_t recv_datagrams;      /* datagrams read from the socket */
    uint64_t not_for_us;          /* messages for names, hosts or domains not
                                   * read here */
    uint64_t dropped_full;        /* the reader's mailbox was full or gone */
    uint64_t dropped_size;        /* larger than the reader's message_size */
    uint64_t malformed;           /* datagrams or messages that do not decode */
    uint64_t unauthenticated;     /* sealed with another key, forged, plain
                                   * while a key is set, or sealed while none */
    uint64_t replayed;            /* datagrams seen before, or too old */
    uint64_t reassembly_timeouts; /* messages missing fragments too long */
    uint64_t reassembly_evicted;  /* ... dropped to stay within memory */
    uint64_t reassembly_bytes;    /* memory held now by partial messages */
    uint64_t reassembly_peak;     /* the most it ever held */
    uint64_t socket_overflows;    /* datagrams the kernel dropped because
                                   * this process's socket buffer was full
                                   * (the reader fell behind) */
    uint64_t reserved[7];
} mbx_net_stats;

/* Fills *out. Returns 0 or MBX_EINVAL. */
MBX_API int mbx_net_stat(mbx_net_stats *out);

/* The host name a network message came from, or NULL for a message from
 * this host's processes or threads sent to a local or host address. Valid
 * while the message lives. */
MBX_API const char *mbx_msg_origin(const mbx_msg *m);

/* This process's host name and domain as used on the network (after
 * options and environment). Returns 0, or an error of starting the layer's
 * configuration. */
MBX_API int mbx_net_identity(const char **host, const char **domain);

/* Makes mailbox `id` a spy: it receives a summary of every network
 * message this process reads, whatever its name, target or domain (the
 * sealed ones only once authenticated), sent with timeout 0 (a full spy
 * mailbox misses summaries). Each summary has kind "mbx.spy" and args with
 * the keywords "name", "target", "domain", "host", "kind" (strings) and
 * "size" (int: body bytes). One spy per process; id 0 stops spying (and
 * starts nothing). Starts the layer. Returns 0, MBX_EEXIST (another spy),
 * or an error of starting the layer (then no spy is set). */
MBX_API int mbx_net_spy(mbx_id id);

/* Writes a new random key for sealed network mailslots to `path` (mode
 * 0600, created): 64 hex digits and a newline. Returns 0; MBX_EEXIST (the
 * file exists: never overwritten); MBX_EPERM (not allowed there);
 * MBX_EINVAL (no such directory, or the key could not be written: nothing
 * is left behind); MBX_ENOMEM (libsodium could not start). */
MBX_API int mbx_net_keygen(const char *path);

/* Log levels, as Python's logging (what winsys's mailslot handler used). */
#define MBX_LOG_DEBUG 10
#define MBX_LOG_INFO 20
#define MBX_LOG_WARNING 30
#define MBX_LOG_ERROR 40
#define MBX_LOG_CRITICAL 50

/* A log handler: formats lines and sends them to one address, usually
 * "//STAR/LOGGER" (any scope works). Logging never blocks: a line that
 * cannot be queued at once is dropped and counted. Each line is a message
 * of kind "DEBUG", "INFO", "WARNING", "ERROR" or "CRITICAL" whose body is
 * the text (no trailing newline, no NUL). One logger may be used by several
 * threads. */
typedef struct mbx_logger mbx_logger;

/* Opens a logger on `address` that sends lines of at least `level`.
 * Returns 0; MBX_EINVAL (bad address or level); MBX_ENOMEM. */
MBX_API int mbx_logger_open(mbx_logger **out, const char *address, int level);

/* Logs one line. Returns 0 (sent or filtered out by level); MBX_EAGAIN
 * (dropped: no room at once); MBX_ENOENT (a local or host address with no
 * reader: dropped); MBX_EINVAL. */
MBX_API int mbx_log(mbx_logger *lg, int level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* The name of a level ("INFO"), or "LEVEL" for other values. */
MBX_API const char *mbx_log_level_name(int level);

/* Lines dropped by mbx_log since the logger was opened. */
MBX_API uint64_t mbx_logger_dropped(const mbx_logger *lg);

/* Closes a logger (NULL is fine). */
MBX_API void mbx_logger_close(mbx_logger *lg);

/* ------------------------------------------------------------------------ */
/* Dispatcher: events with handlers, across fork (mpdispatcher)             */
/* ------------------------------------------------------------------------ */

/* A sender/receiver pair over a shared ring in anonymous memory (a memfd),
 * made before fork so that both processes hold both ends; after fork
 * either process may fire and either may handle (also several of each:
 * every event is handled exactly once, by one receiver). Events carry a
 * name (1 to MBX_KIND_MAX bytes) and optional args. Handlers are connected
 * per process: connect them in the process that handles. */
typedef struct mbx_dispatcher mbx_dispatcher;
typedef struct mbx_sender mbx_sender;
typedef struct mbx_receiver mbx_receiver;

/* A handler: called with the event's name and its args (never NULL: empty
 * args when fired without), valid during the call only. Returning
 * non-zero stops the remaining handlers of this event, and mbx_handle_next
 * returns that value. A handler may call mbx_receiver_close, mbx_fire and
 * mbx_connect/mbx_disconnect (taking effect from the next event). */
typedef int (*mbx_handler)(const char *event, const mbx_args *args, void *ctx);

/* Dispatcher options. NULL or all zero: defaults. */
typedef struct mbx_dispatcher_opts {
    size_t ring_size; /* bytes of the shared ring, as mbx_host_opts */
} mbx_dispatcher_opts;

/* Creates a dispatcher. Returns 0 and *out; MBX_EINVAL (bad options);
 * MBX_ENOMEM, or a negative errno (no memfd, no fds left). */
MBX_API int mbx_dispatcher_new(mbx_dispatcher **out,
                               const mbx_dispatcher_opts *opts);

/* The sending and the receiving end. Owned by the dispatcher. */
MBX_API mbx_sender *mbx_dispatcher_sender(mbx_dispatcher *d);
MBX_API mbx_receiver *mbx_dispatcher_receiver(mbx_dispatcher *d);

/* Room for a handle string: "mbxd:" and five fd numbers. */
#define MBX_DISPATCHER_HANDLE_LEN 64

/* For fork+exec: makes the dispatcher's fds survive exec and writes a
 * handle string for the new program (argv or environment) into buf
 * (MBX_DISPATCHER_HANDLE_LEN bytes). Returns 0 or a negative errno. */
MBX_API int mbx_dispatcher_export(mbx_dispatcher *d, char *buf);

/* In a program started with a handle from mbx_dispatcher_export: the same
 * dispatcher. Returns 0 and *out; MBX_EINVAL for a malformed handle;
 * MBX_EBADMSG when the fds are not a dispatcher's. */
MBX_API int mbx_dispatcher_import(mbx_dispatcher **out, const char *handle);

/* Frees this process's dispatcher: its fds, mapping and handlers. Other
 * processes' ends are not affected (a sender that was not closed counts as
 * gone once every process holding it has freed it or exited). NULL is
 * fine. */
MBX_API void mbx_dispatcher_free(mbx_dispatcher *d);

/* Connects fn(ctx) to `event`. Several handlers of one event run in
 * connection order; the same pair may be connected twice (and then runs
 * twice). Returns 0, MBX_EINVAL (bad name or NULL fn) or MBX_ENOMEM. */
MBX_API int mbx_connect(mbx_receiver *r, const char *event, mbx_handler fn,
                        void *ctx);

/* Disconnects the first connection of (event, fn, ctx). Returns 0 or
 * MBX_ENOENT. */
MBX_API int mbx_disconnect(mbx_receiver *r, const char *event, mbx_handler fn,
                           void *ctx);

/* Fires `event` with args (NULL: none; encoded now, still the caller's).
 * Never waits for the receiver, only for room in a full ring (not from one
 * of this dispatcher's own handlers: there a full ring gives MBX_EAGAIN, as
 * only its receiver, busy in the handler, could make room). Returns 0;
 * MBX_EINVAL (empty or NULL event, longer than MBX_KIND_MAX); MBX_EMSGSIZE
 * (encoded args larger than half the ring); MBX_ECLOSED (this process
 * closed the sender, the close was consumed, or the ring is full and no
 * process holds the receiver any more); MBX_ENOMEM. Nothing is sent on
 * error. Any thread. */
MBX_API int mbx_fire(mbx_sender *s, const char *event, const mbx_args *args);

/* mbx_fire with args built from a format: one character per positional
 * value, then optionally '|' and one character per keyword value, each
 * keyword value preceded by its key (const char *). Characters: 'n' nil (no
 * argument), 'b' bool (int), 'i' int64_t, 'd' double, 's' string (const
 * char *), 'y' bytes (const void *, size_t). Example:
 * mbx_firef(s, "on_new_user", "si|s", "bob", (int64_t)42, "email", "b@x").
 * Returns as mbx_fire, or MBX_EINVAL for a bad format. */
MBX_API int mbx_firef(mbx_sender *s, const char *event, const char *fmt, ...);

/* Closes the dispatcher for everyone: receivers handle every event fired
 * before, then the receiver that reaches the close consumes it (its
 * mbx_handle_until_closed returns 0) and every receiver's next
 * mbx_handle_next gives MBX_ECLOSED; events fired later are not handled.
 * Later fires from this process give MBX_ECLOSED. Never waits. Returns 0,
 * or MBX_ECLOSED if this process had closed it already. */
MBX_API int mbx_sender_close(mbx_sender *s);

/* Handles one event: waits up to timeout_ms for it and runs its handlers.
 * Returns 0 (handled, ignored for lack of handlers, or the close was
 * consumed), a handler's non-zero value, MBX_EAGAIN (timeout 0) or
 * MBX_ETIMEDOUT (nothing came), or MBX_ECLOSED (the close was consumed
 * before, or every process holding the sender is gone and nothing is
 * left). A process that handles without having fired lets go of its copy
 * of the sender, so that the senders' exit can be seen. */
MBX_API int mbx_handle_next(mbx_receiver *r, int timeout_ms);

/* Handles every event fired before the call (and whatever else is there),
 * without waiting. Returns the number of events taken, a handler's
 * non-zero value (negative values are errors), or MBX_ECLOSED. */
MBX_API int mbx_handle_until_blocking(mbx_receiver *r);

/* Handles events until the close: returns 0 after this receiver consumed
 * the close; MBX_ECLOSED if another receiver (thread or process) consumed
 * it, if it was consumed before the call, or if every sender process went
 * away without closing; or a handler's non-zero value. */
MBX_API int mbx_handle_until_closed(mbx_receiver *r);

/* A file descriptor readable while events wait or the close is due
 * (level-triggered), and from the moment every process holding the sender
 * is gone, for any event loop; when it is readable, call
 * mbx_handle_until_blocking, and stop watching it once that returns
 * MBX_ECLOSED. (An epoll set: the events' eventfd and the senders' pipe.)
 * Owned by the dispatcher. Returns the fd, or MBX_ECLOSED once closed. */
MBX_API int mbx_receiver_fd(mbx_receiver *r);

/* Ends the receiving loops after the events already queued: marks the
 * close behind them (no room in the ring needed), as mbx_sender_close
 * does. Callable from a handler. Returns 0. */
MBX_API int mbx_receiver_close(mbx_receiver *r);

/* Counters of this process's receiver. */
typedef struct mbx_receiver_stats {
    uint64_t handled; /* events whose handlers ran */
    uint64_t ignored; /* events with no handler connected */
    uint64_t dropped; /* records dropped here: bad names or args (records
                       * whose framing the ring cannot parse are dropped
                       * before they reach a receiver) */
    uint64_t reserved[5];
} mbx_receiver_stats;

/* Fills *out. Returns 0 or MBX_EINVAL. */
MBX_API int mbx_receiver_stat(const mbx_receiver *r, mbx_receiver_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* MBX_MBX_H */
