/* Mailboxes: ids, send/receive, timeouts, order, urgent, bounded, stats,
 * destroy. The first group translates triotp's own test_mailbox. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/mailbox.h"
#include "harness.h"
#include "mbx/mbx.h"

static mbx_msg *
text(const char *s)
{
    return mbx_msg_new("", s, strlen(s));
}

static int
body_is(const mbx_msg *m, const char *s)
{
    size_t len;
    const void *b = mbx_msg_body(m, &len);
    return len == strlen(s) && memcmp(b, s, len) == 0;
}

/* A thread that sends one text message to a mailbox after a delay. */
struct delayed_send {
    mbx_id to;
    const char *text;
    int delay_ms;
    int rc;
};

static void *
delayed_send_main(void *p)
{
    struct delayed_send *d = p;
    /* Wait on an empty private mailbox: a real timeout, not a sleep. */
    mbx_id tmp;
    mbx_msg *none = NULL;
    mbx_create(&tmp, NULL);
    mbx_recv(tmp, &none, d->delay_ms);
    mbx_destroy(tmp);
    mbx_msg *m = text(d->text);
    d->rc = mbx_send(d->to, &m, -1);
    mbx_msg_free(m);
    return NULL;
}

/* ---- triotp test_mailbox ----------------------------------------------- */

TEST(triotp_receive_no_timeout)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    struct delayed_send d = {box, "hello", 20, -1};
    pthread_t th;
    pthread_create(&th, NULL, delayed_send_main, &d);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, -1), 0);
    CHECK(m && body_is(m, "hello"));
    pthread_join(th, NULL);
    CHECK_EQ(d.rc, 0);
    mbx_msg_free(m);
    CHECK_EQ(mbx_destroy(box), 0);
}

TEST(triotp_receive_on_timeout)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    struct delayed_send d = {box, "in time", 10, -1};
    pthread_t th;
    pthread_create(&th, NULL, delayed_send_main, &d);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 5000), 0);
    CHECK(m && body_is(m, "in time"));
    pthread_join(th, NULL);
    mbx_msg_free(m);
    mbx_destroy(box);
}

TEST(triotp_receive_too_slow)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    struct delayed_send d = {box, "late", 300, -1};
    pthread_t th;
    pthread_create(&th, NULL, delayed_send_main, &d);
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 20), MBX_ETIMEDOUT);
    CHECK(m == NULL);
    pthread_join(th, NULL);
    /* Nothing was consumed by the timeout: the late message is there. */
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && body_is(m, "late"));
    mbx_msg_free(m);
    mbx_destroy(box);
}

TEST(triotp_no_mailbox)
{
    mbx_msg *m = text("x");
    char name[64];
    CHECK_EQ(mbx_send_to(th_unique(name, sizeof name, "nobody"), &m, 0),
             MBX_ENOENT);
    CHECK(m != NULL); /* still ours */
    mbx_msg_free(m);
}

TEST(triotp_direct)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    mbx_msg *m = text("direct");
    CHECK_EQ(mbx_send(box, &m, 0), 0);
    CHECK(m == NULL);
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && body_is(m, "direct"));
    mbx_msg_free(m);
    mbx_destroy(box);
}

TEST(triotp_register)
{
    mbx_id box, other, found = 0;
    char name[64];
    th_unique(name, sizeof name, "reg");
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_create(&other, NULL), 0);
    /* Unknown id. */
    mbx_id dead;
    mbx_create(&dead, NULL);
    mbx_destroy(dead);
    CHECK_EQ(mbx_register(dead, name), MBX_ENOENT);
    CHECK_EQ(mbx_register(box, name), 0);
    /* Duplicate name, by another mailbox and by the same one. */
    CHECK_EQ(mbx_register(other, name), MBX_EEXIST);
    CHECK_EQ(mbx_register(box, name), MBX_EEXIST);
    CHECK_EQ(mbx_whereis(name, &found), 0);
    CHECK(found == box);
    mbx_msg *m = text("by name");
    CHECK_EQ(mbx_send_to(name, &m, 0), 0);
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && body_is(m, "by name"));
    mbx_msg_free(m);
    mbx_destroy(box);
    mbx_destroy(other);
}

TEST(triotp_unregister)
{
    mbx_id box;
    char name[64];
    th_unique(name, sizeof name, "unreg");
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    REQUIRE_EQ(mbx_register(box, name), 0);
    CHECK_EQ(mbx_unregister(name), 0);
    CHECK_EQ(mbx_unregister(name), MBX_ENOENT);
    mbx_msg *m = text("x");
    CHECK_EQ(mbx_send_to(name, &m, 0), MBX_ENOENT);
    mbx_msg_free(m);
    /* The mailbox itself still works, and the name can be taken again. */
    CHECK_EQ(mbx_register(box, name), 0);
    mbx_destroy(box);
}

TEST(triotp_destroy_unknown)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    CHECK_EQ(mbx_destroy(box), 0);
    CHECK_EQ(mbx_destroy(box), MBX_ENOENT);
    CHECK_EQ(mbx_destroy(0), MBX_ENOENT);
    CHECK_EQ(mbx_destroy(0x7fffffff00001234ull), MBX_ENOENT);
}

/* ---- ids and names ------------------------------------------------------ */

TEST(stale_ids_are_enoent)
{
    mbx_id a, b;
    REQUIRE_EQ(mbx_create(&a, NULL), 0);
    REQUIRE(a != 0);
    REQUIRE_EQ(mbx_destroy(a), 0);
    /* The slot is reused with a new generation: the old id stays dead. */
    REQUIRE_EQ(mbx_create(&b, NULL), 0);
    CHECK(a != b);
    mbx_msg *m = text("x"), *out = NULL;
    mbx_stats st;
    CHECK_EQ(mbx_send(a, &m, 0), MBX_ENOENT);
    CHECK_EQ(mbx_recv(a, &out, 0), MBX_ENOENT);
    CHECK_EQ(mbx_stat(a, &st), MBX_ENOENT);
    CHECK_EQ(mbx_fd(a), MBX_ENOENT);
    CHECK_EQ(mbx_destroy(a), MBX_ENOENT);
    CHECK_EQ(mbx_send(b, &m, 0), 0);
    mbx_destroy(b);
}

TEST(several_names_and_destroy_unregisters)
{
    mbx_id box, found;
    char n1[64], n2[64];
    th_unique(n1, sizeof n1, "one");
    th_unique(n2, sizeof n2, "two");
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    CHECK_EQ(mbx_register(box, n1), 0);
    CHECK_EQ(mbx_register(box, n2), 0);
    CHECK_EQ(mbx_whereis(n2, &found), 0);
    CHECK(found == box);
    mbx_destroy(box);
    CHECK_EQ(mbx_whereis(n1, &found), MBX_ENOENT);
    CHECK_EQ(mbx_whereis(n2, &found), MBX_ENOENT);
    CHECK_EQ(mbx_unregister(n1), MBX_ENOENT);
}

TEST(bad_names)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK_EQ(mbx_register(box, ""), MBX_EINVAL);
    CHECK_EQ(mbx_register(box, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_register(box, longname), MBX_EINVAL);
    CHECK_EQ(mbx_register(box, "@0000000100000001"), MBX_EINVAL);
    CHECK_EQ(mbx_register(box, "nats://host/slot"), MBX_ENOTSUP);
    CHECK_EQ(mbx_register(box, "//./a/../b"), MBX_EINVAL);
    longname[MBX_NAME_MAX] = '\0'; /* exactly the limit is fine */
    CHECK_EQ(mbx_register(box, longname), 0);
    mbx_msg *m = text("x");
    CHECK_EQ(mbx_send_to("nats://x/y", &m, 0), MBX_ENOTSUP);
    CHECK_EQ(mbx_send_to("", &m, 0), MBX_EINVAL);
    CHECK_EQ(mbx_send_to(NULL, &m, 0), MBX_EINVAL);
    mbx_msg_free(m);
    mbx_destroy(box);
}

TEST(id_address_round_trip)
{
    mbx_id box;
    char addr[MBX_ID_ADDRESS_LEN];
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    mbx_id_format(box, addr);
    CHECK_EQ(strlen(addr), MBX_ID_ADDRESS_LEN - 1);
    CHECK(addr[0] == '@');
    mbx_msg *m = text("by id address");
    CHECK_EQ(mbx_send_to(addr, &m, 0), 0);
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(m && body_is(m, "by id address"));
    mbx_msg_free(m);
    mbx_destroy(box);
    m = text("x");
    CHECK_EQ(mbx_send_to(addr, &m, 0), MBX_ENOENT);
    CHECK_EQ(mbx_send_to("@12", &m, 0), MBX_EINVAL);
    mbx_msg_free(m);
}

/* ---- messages ----------------------------------------------------------- */

static _Atomic int wrapped_frees;

static void
count_free(void *p)
{
    atomic_fetch_add(&wrapped_frees, 1);
    free(p);
}

TEST(message_fields_and_zero_copy)
{
    mbx_msg *m = mbx_msg_new(NULL, NULL, 0);
    REQUIRE(m);
    size_t len = 99;
    CHECK(strcmp(mbx_msg_kind(m), "") == 0);
    CHECK(mbx_msg_body(m, &len) == NULL || len == 0);
    CHECK_EQ(len, 0);
    CHECK(mbx_msg_from(m) == NULL);
    CHECK_EQ(mbx_msg_set_from(m, "reply-here"), 0);
    CHECK(strcmp(mbx_msg_from(m), "reply-here") == 0);
    CHECK_EQ(mbx_msg_set_flags(m, 0x80), MBX_EINVAL);
    CHECK_EQ(mbx_msg_set_flags(m, MBX_MSG_URGENT), 0);
    CHECK_EQ(mbx_msg_flags(m), MBX_MSG_URGENT);
    CHECK_EQ(mbx_msg_is_call(m), 0);
    mbx_msg_free(m);
    mbx_msg_free(NULL);

    char kind[MBX_KIND_MAX + 2];
    memset(kind, 'k', sizeof kind - 1);
    kind[sizeof kind - 1] = '\0';
    CHECK(mbx_msg_new(kind, "x", 1) == NULL);
    CHECK(mbx_msg_new("k", NULL, 3) == NULL);

    /* Zero copy: the body pointer travels; freed once by the receiver. */
    char *body = malloc(16);
    memcpy(body, "zero-copy body!", 16);
    m = mbx_msg_wrap("MSG_BLOB", body, 16, count_free);
    REQUIRE(m);
    mbx_id box;
    mbx_create(&box, NULL);
    CHECK_EQ(mbx_send(box, &m, 0), 0);
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(mbx_msg_body(m, &len) == body);
    CHECK_EQ(len, 16);
    CHECK(strcmp(mbx_msg_kind(m), "MSG_BLOB") == 0);
    mbx_msg_free(m);
    CHECK_EQ(atomic_load(&wrapped_frees), 1);
    /* Queued wrapped bodies are freed by destroy. */
    m = mbx_msg_wrap("", malloc(4), 4, count_free);
    CHECK_EQ(mbx_send(box, &m, 0), 0);
    mbx_destroy(box);
    CHECK_EQ(atomic_load(&wrapped_frees), 2);
}

TEST(send_bad_arguments)
{
    mbx_id box;
    mbx_create(&box, NULL);
    mbx_msg *none = NULL;
    CHECK_EQ(mbx_send(box, NULL, 0), MBX_EINVAL);
    CHECK_EQ(mbx_send(box, &none, 0), MBX_EINVAL);
    CHECK_EQ(mbx_recv(box, NULL, 0), MBX_EINVAL);
    CHECK_EQ(mbx_recv_kind(box, NULL, &none, 0), MBX_EINVAL);
    CHECK_EQ(mbx_create(NULL, NULL), MBX_EINVAL);
    mbx_opts bad = {.capacity = 1, .when_full = 7};
    mbx_id x;
    CHECK_EQ(mbx_create(&x, &bad), MBX_EINVAL);
    CHECK_EQ(mbx_stat(box, NULL), MBX_EINVAL);
    mbx_destroy(box);
}

/* ---- order, urgent, selective receive ----------------------------------- */

static void
send_kind(mbx_id to, const char *kind, const char *body, unsigned flags)
{
    mbx_msg *m = mbx_msg_new(kind, body, strlen(body));
    mbx_msg_set_flags(m, flags);
    REQUIRE_EQ(mbx_send(to, &m, 0), 0);
}

static void
expect_next(mbx_id from, const char *body)
{
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_recv(from, &m, 0), 0);
    CHECK(body_is(m, body));
    mbx_msg_free(m);
}

TEST(fifo_and_urgent_first)
{
    mbx_id box;
    mbx_create(&box, NULL);
    send_kind(box, "", "1", 0);
    send_kind(box, "", "2", 0);
    send_kind(box, "", "u1", MBX_MSG_URGENT);
    send_kind(box, "", "3", 0);
    send_kind(box, "", "u2", MBX_MSG_URGENT);
    expect_next(box, "u1");
    expect_next(box, "u2");
    expect_next(box, "1");
    expect_next(box, "2");
    expect_next(box, "3");
    mbx_msg *m;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    mbx_destroy(box);
}

TEST(selective_receive_keeps_order)
{
    mbx_id box;
    mbx_create(&box, NULL);
    send_kind(box, "A", "a1", 0);
    send_kind(box, "B", "b1", 0);
    send_kind(box, "A", "a2", 0);
    send_kind(box, "C", "c1", 0);
    send_kind(box, "B", "b2", 0);
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_recv_kind(box, "B", &m, 0), 0);
    CHECK(body_is(m, "b1"));
    mbx_msg_free(m);
    REQUIRE_EQ(mbx_recv_kind(box, "C", &m, 0), 0);
    CHECK(body_is(m, "c1"));
    mbx_msg_free(m);
    CHECK_EQ(mbx_recv_kind(box, "Z", &m, 0), MBX_EAGAIN);
    CHECK_EQ(mbx_recv_kind(box, "Z", &m, 10), MBX_ETIMEDOUT);
    /* Urgent messages sent after the stash was built still come first. */
    send_kind(box, "U", "u1", MBX_MSG_URGENT);
    send_kind(box, "A", "a3", 0);
    expect_next(box, "u1");
    expect_next(box, "a1");
    expect_next(box, "a2");
    expect_next(box, "b2");
    expect_next(box, "a3");
    mbx_stats st;
    mbx_stat(box, &st);
    CHECK_EQ(st.queued, 0);
    CHECK_EQ(st.received, 7);
    mbx_destroy(box);
}

struct kind_waiter {
    mbx_id box;
    int rc;
    char body[16];
};

static void *
kind_waiter_main(void *p)
{
    struct kind_waiter *w = p;
    mbx_msg *m = NULL;
    w->rc = mbx_recv_kind(w->box, "WANTED", &m, 10000);
    if (m) {
        size_t len;
        const void *b = mbx_msg_body(m, &len);
        memcpy(w->body, b, len < 15 ? len : 15);
        mbx_msg_free(m);
    }
    return NULL;
}

TEST(selective_receive_waits_for_its_kind)
{
    mbx_id box;
    mbx_create(&box, NULL);
    struct kind_waiter w = {box, -1, {0}};
    pthread_t th;
    pthread_create(&th, NULL, kind_waiter_main, &w);
    send_kind(box, "OTHER", "o1", 0);
    send_kind(box, "OTHER", "o2", 0);
    send_kind(box, "WANTED", "w1", 0);
    pthread_join(th, NULL);
    CHECK_EQ(w.rc, 0);
    CHECK(strcmp(w.body, "w1") == 0);
    expect_next(box, "o1");
    expect_next(box, "o2");
    mbx_destroy(box);
}

/* ---- timeouts ------------------------------------------------------------ */

TEST(receive_timeout_takes_about_its_time)
{
    mbx_id box;
    mbx_create(&box, NULL);
    mbx_msg *m = NULL;
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_recv(box, &m, 100), MBX_ETIMEDOUT);
    int64_t took = th_now_ms() - t0;
    CHECK(took >= 100);
    CHECK(took < 2000);
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    mbx_destroy(box);
}

/* ---- bounded mailboxes --------------------------------------------------- */

TEST(bounded_fail_policy)
{
    mbx_id box;
    mbx_opts o = {.capacity = 2, .when_full = MBX_FULL_FAIL};
    REQUIRE_EQ(mbx_create(&box, &o), 0);
    send_kind(box, "", "1", 0);
    send_kind(box, "", "2", 0);
    mbx_msg *m = text("3");
    CHECK_EQ(mbx_send(box, &m, 1000), MBX_EAGAIN);
    CHECK(m != NULL);
    expect_next(box, "1");
    CHECK_EQ(mbx_send(box, &m, 0), 0);
    mbx_stats st;
    mbx_stat(box, &st);
    CHECK_EQ(st.queued, 2);
    CHECK_EQ(st.full, 1);
    CHECK_EQ(st.capacity, 2);
    mbx_destroy(box);
}

TEST(bounded_block_policy_times_out_then_gets_room)
{
    mbx_id box;
    mbx_opts o = {.capacity = 1};
    REQUIRE_EQ(mbx_create(&box, &o), 0);
    send_kind(box, "", "1", 0);
    mbx_msg *m = text("2");
    CHECK_EQ(mbx_send(box, &m, 0), MBX_EAGAIN);
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_send(box, &m, 50), MBX_ETIMEDOUT);
    CHECK(th_now_ms() - t0 >= 50);
    CHECK(m != NULL);
    mbx_msg_free(m);
    mbx_destroy(box);
}

struct blocked_sender {
    mbx_id box;
    int rc;
};

static void *
blocked_sender_main(void *p)
{
    struct blocked_sender *s = p;
    mbx_msg *m = text("second");
    s->rc = mbx_send(s->box, &m, -1);
    mbx_msg_free(m);
    return NULL;
}

TEST(bounded_block_policy_wakes_on_room)
{
    mbx_id box;
    mbx_opts o = {.capacity = 1};
    REQUIRE_EQ(mbx_create(&box, &o), 0);
    send_kind(box, "", "first", 0);
    struct blocked_sender s = {box, -1};
    pthread_t th;
    pthread_create(&th, NULL, blocked_sender_main, &s);
    expect_next(box, "first");
    mbx_msg *m = NULL;
    CHECK_EQ(mbx_recv(box, &m, 10000), 0);
    CHECK(m && body_is(m, "second"));
    mbx_msg_free(m);
    pthread_join(th, NULL);
    CHECK_EQ(s.rc, 0);
    mbx_destroy(box);
}

TEST(bounded_drop_policy_counts)
{
    mbx_id box;
    mbx_opts o = {.capacity = 3, .when_full = MBX_FULL_DROP};
    REQUIRE_EQ(mbx_create(&box, &o), 0);
    for (int i = 0; i < 10; i++) {
        mbx_msg *m = text("x");
        CHECK_EQ(mbx_send(box, &m, -1), 0);
        CHECK(m == NULL);
    }
    mbx_stats st;
    mbx_stat(box, &st);
    CHECK_EQ(st.queued, 3);
    CHECK_EQ(st.dropped, 7);
    CHECK_EQ(st.sent, 3);
    mbx_destroy(box);
}

TEST(stats_count_bytes)
{
    mbx_id box;
    mbx_create(&box, NULL);
    send_kind(box, "", "12345", 0);
    send_kind(box, "", "123", 0);
    mbx_stats st;
    REQUIRE_EQ(mbx_stat(box, &st), 0);
    CHECK_EQ(st.queued, 2);
    CHECK_EQ(st.queued_bytes, 8);
    CHECK_EQ(st.sent, 2);
    CHECK_EQ(st.received, 0);
    expect_next(box, "12345");
    mbx_stat(box, &st);
    CHECK_EQ(st.queued, 1);
    CHECK_EQ(st.queued_bytes, 3);
    CHECK_EQ(st.received, 1);
    mbx_destroy(box);
}

/* ---- destroy wakes waiters ----------------------------------------------- */

struct waiter {
    mbx_id box;
    int rc;
};

static void *
recv_waiter_main(void *p)
{
    struct waiter *w = p;
    mbx_msg *m = NULL;
    w->rc = mbx_recv(w->box, &m, -1);
    mbx_msg_free(m);
    return NULL;
}

static void *
send_waiter_main(void *p)
{
    struct waiter *w = p;
    mbx_msg *m = text("blocked");
    w->rc = mbx_send(w->box, &m, -1);
    mbx_msg_free(m);
    return NULL;
}

/* Waits until `n` threads are parked in the mailbox (receivers, or senders
 * waiting for room), read from the slot itself. */
static void
wait_parked(mbx_id id, unsigned n, int senders)
{
    struct mbx__box *b = mbx__box_slot(id);
    _Atomic uint32_t *count = senders ? &b->space_waiters : &b->waiters;
    while (atomic_load(count) < n)
        sched_yield();
}

TEST(destroy_wakes_receivers_and_senders)
{
    mbx_id rbox, sbox;
    mbx_opts o = {.capacity = 1};
    mbx_create(&rbox, NULL);
    mbx_create(&sbox, &o);
    send_kind(sbox, "", "fill", 0);
    struct waiter r[3], s[2];
    pthread_t rt[3], st[2];
    for (int i = 0; i < 3; i++) {
        r[i] = (struct waiter){.box = rbox, .rc = 1};
        pthread_create(&rt[i], NULL, recv_waiter_main, &r[i]);
    }
    for (int i = 0; i < 2; i++) {
        s[i] = (struct waiter){.box = sbox, .rc = 1};
        pthread_create(&st[i], NULL, send_waiter_main, &s[i]);
    }
    wait_parked(rbox, 3, 0);
    wait_parked(sbox, 2, 1);
    CHECK_EQ(mbx_destroy(rbox), 0);
    CHECK_EQ(mbx_destroy(sbox), 0);
    for (int i = 0; i < 3; i++) {
        pthread_join(rt[i], NULL);
        CHECK_EQ(r[i].rc, MBX_ECLOSED);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(st[i], NULL);
        CHECK_EQ(s[i].rc, MBX_ECLOSED);
    }
}

/* ---- the eventfd --------------------------------------------------------- */

struct trickle {
    mbx_id to;
    uint32_t id;
    long count;
};

/* Sends stamped messages with a pause between them, so the receiver keeps
 * finding the mailbox empty and clearing the fd while sends arrive. */
static void *
trickle_main(void *p)
{
    struct trickle *t = p;
    for (long i = 0; i < t->count; i++) {
        long stamp[2] = {t->id, i};
        mbx_msg *m = mbx_msg_new("", stamp, sizeof stamp);
        if (mbx_send(t->to, &m, -1) < 0) {
            mbx_msg_free(m);
            return NULL;
        }
        for (volatile int spin = 0; spin < 50; spin++)
            ;
    }
    return NULL;
}

TEST(fd_readiness_is_never_lost)
{
    mbx_id box;
    mbx_create(&box, NULL);
    int fd = mbx_fd(box);
    REQUIRE(fd >= 0);
    CHECK_EQ(mbx_fd(box), fd); /* the same fd every time */
    enum { P = 3 };
    struct trickle t[P];
    pthread_t th[P];
    long total = 0;
    for (int i = 0; i < P; i++) {
        t[i] = (struct trickle){box, (uint32_t)i, th_scaled(200000)};
        total += t[i].count;
        pthread_create(&th[i], NULL, trickle_main, &t[i]);
    }
    long got = 0, stuck = 0, next[P] = {0};
    while (got < total) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) == 0) {
            stuck = 1; /* pending messages, unreadable fd */
            break;
        }
        mbx_msg *m;
        while (mbx_recv(box, &m, 0) == 0) {
            long stamp[2];
            memcpy(stamp, mbx_msg_body(m, NULL), sizeof stamp);
            if (stamp[1] != next[stamp[0]])
                CHECK_EQ(stamp[1], next[stamp[0]]);
            next[stamp[0]] = stamp[1] + 1;
            got++;
            mbx_msg_free(m);
        }
    }
    for (int i = 0; i < P; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(stuck, 0);
    CHECK_EQ(got, total);
    /* Drained: the fd is not readable. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 0), 0);
    mbx_destroy(box);
}

TEST(fd_created_late_is_readable_for_queued_messages)
{
    mbx_id box;
    mbx_create(&box, NULL);
    send_kind(box, "", "early", 0);
    int fd = mbx_fd(box);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 0), 1);
    expect_next(box, "early");
    mbx_msg *m;
    CHECK_EQ(mbx_recv(box, &m, 0), MBX_EAGAIN);
    CHECK_EQ(poll(&p, 1, 0), 0);
    send_kind(box, "", "later", 0);
    CHECK_EQ(poll(&p, 1, 0), 1);
    mbx_destroy(box);
}

/* ---- several receivers --------------------------------------------------- */

static void *
take_one_main(void *p)
{
    struct waiter *w = p;
    mbx_msg *m = NULL;
    w->rc = mbx_recv(w->box, &m, 10000);
    mbx_msg_free(m);
    return NULL;
}

/* Receivers each taking one message and leaving: whoever takes over a
 * batch of several must not strand the rest while the others stay parked. */
TEST(parked_receivers_each_get_one_of_a_batch)
{
    enum { R = 3 };
    for (int round = 0; round < 200; round++) {
        mbx_id box;
        mbx_create(&box, NULL);
        struct waiter w[R];
        pthread_t th[R];
        for (int i = 0; i < R; i++) {
            w[i] = (struct waiter){.box = box, .rc = 1};
            pthread_create(&th[i], NULL, take_one_main, &w[i]);
        }
        wait_parked(box, R, 0);
        for (int i = 0; i < R; i++)
            send_kind(box, "", "one", 0);
        for (int i = 0; i < R; i++) {
            pthread_join(th[i], NULL);
            CHECK_EQ(w[i].rc, 0);
        }
        mbx_destroy(box);
    }
}

struct plain_counter {
    mbx_id box;
    _Atomic long got;
};

static void *
count_plain_main(void *p)
{
    struct plain_counter *c = p;
    mbx_msg *m;
    while (mbx_recv(c->box, &m, -1) == 0) {
        mbx_msg_free(m);
        atomic_fetch_add(&c->got, 1);
    }
    return NULL;
}

static _Atomic int polling = 1;

static void *
poll_kind_main(void *p)
{
    mbx_id box = *(mbx_id *)p;
    while (atomic_load(&polling)) {
        mbx_msg *m;
        if (mbx_recv_kind(box, "never", &m, 0) == 0)
            mbx_msg_free(m);
    }
    return NULL;
}

/* A selective receiver that takes a batch over and finds nothing of its
 * kind must not leave a plain receiver asleep beside those messages. */
TEST(selective_poller_never_strands_a_plain_receiver)
{
    struct plain_counter c = {0, 0};
    mbx_create(&c.box, NULL);
    pthread_t sel, plain;
    pthread_create(&sel, NULL, poll_kind_main, &c.box);
    pthread_create(&plain, NULL, count_plain_main, &c);
    long n = th_scaled(30000), stranded = 0;
    for (long i = 0; i < n && !stranded; i++) {
        send_kind(c.box, "x", "", 0);
        int64_t t0 = th_now_ms();
        while (atomic_load(&c.got) != i + 1) {
            if (th_now_ms() - t0 > 5000) {
                stranded = i + 1; /* queued, and nobody woke up for it */
                break;
            }
            sched_yield();
        }
    }
    CHECK_EQ(stranded, 0);
    atomic_store(&polling, 0);
    pthread_join(sel, NULL);
    mbx_destroy(c.box);
    pthread_join(plain, NULL);
}
