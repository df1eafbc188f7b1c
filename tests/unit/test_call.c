/* Call/reply and monitors. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "core/mailbox.h"
#include "harness.h"
#include "mbx/mbx.h"

/* A callee that answers every call with the request's body reversed, and
 * stops on kind "STOP". */
static void
reverser(mbx_id self, void *arg)
{
    (void)arg;
    mbx_msg *req;
    while (mbx_recv(self, &req, -1) == 0) {
        int stop = strcmp(mbx_msg_kind(req), "STOP") == 0;
        if (mbx_msg_is_call(req)) {
            size_t len;
            const char *b = mbx_msg_body(req, &len);
            char out[64];
            for (size_t i = 0; i < len && i < sizeof out; i++)
                out[i] = b[len - 1 - i];
            mbx_msg *rep = mbx_msg_new("REPLY", out, len);
            mbx_reply(req, &rep);
            mbx_msg_free(rep);
        }
        mbx_msg_free(req);
        if (stop)
            return;
    }
}

static void
stop_and_join(mbx_id task)
{
    mbx_msg *m = mbx_msg_new("STOP", NULL, 0);
    if (mbx_send(task, &m, -1) < 0)
        mbx_msg_free(m);
    CHECK_EQ(mbx_join(task, 10000), 0);
}

TEST(call_gets_reply)
{
    mbx_id callee;
    REQUIRE_EQ(mbx_spawn(&callee, reverser, NULL), 0);
    for (int i = 0; i < 100; i++) {
        mbx_msg *req = mbx_msg_new("REV", "abc", 3), *rep = NULL;
        REQUIRE_EQ(mbx_call(callee, &req, &rep, 10000), 0);
        CHECK(req == NULL);
        size_t len;
        const char *b = mbx_msg_body(rep, &len);
        CHECK(len == 3 && memcmp(b, "cba", 3) == 0);
        CHECK(strcmp(mbx_msg_kind(rep), "REPLY") == 0);
        CHECK_EQ(mbx_msg_is_call(rep), 0);
        mbx_msg_free(rep);
    }
    stop_and_join(callee);
}

TEST(call_to_name)
{
    mbx_id callee;
    char name[64];
    th_unique(name, sizeof name, "rev");
    REQUIRE_EQ(mbx_spawn(&callee, reverser, NULL), 0);
    REQUIRE_EQ(mbx_register(callee, name), 0);
    mbx_msg *req = mbx_msg_new("REV", "xy", 2), *rep = NULL;
    CHECK_EQ(mbx_call_to(name, &req, &rep, 10000), 0);
    CHECK(rep && memcmp(mbx_msg_body(rep, NULL), "yx", 2) == 0);
    mbx_msg_free(rep);
    req = mbx_msg_new("REV", "xy", 2);
    CHECK_EQ(mbx_call_to("t0-no-such-callee", &req, &rep, 100), MBX_ENOENT);
    CHECK(req != NULL);
    mbx_msg_free(req);
    stop_and_join(callee);
}

TEST(call_to_dead_mailbox)
{
    mbx_id box;
    mbx_create(&box, NULL);
    mbx_destroy(box);
    mbx_msg *req = mbx_msg_new("X", NULL, 0), *rep = NULL;
    CHECK_EQ(mbx_call(box, &req, &rep, 1000), MBX_ENOENT);
    REQUIRE(req != NULL);
    /* The request came back unchanged: not a call. */
    CHECK_EQ(mbx_msg_is_call(req), 0);
    mbx_msg_free(req);
}

/* A callee that takes one request and then, without answering, either
 * destroys its own mailbox while holding the request, or frees it. */
struct silent {
    mbx_id box;
    int destroy; /* 1: destroy the mailbox; 0: free the request */
};

static void *
silent_main(void *p)
{
    struct silent *s = p;
    mbx_msg *held = NULL;
    if (mbx_recv(s->box, &held, -1) != 0)
        return NULL;
    if (s->destroy) {
        mbx_destroy(s->box);
        /* The caller has already been told; freeing now is harmless. */
        mbx_msg_free(held);
    } else {
        /* The mailbox stays alive: only the dropped request ends the call. */
        mbx_msg_free(held);
    }
    return NULL;
}

static void
check_call_ends_early(int destroy)
{
    struct silent s = {0, destroy};
    mbx_create(&s.box, NULL);
    pthread_t th;
    pthread_create(&th, NULL, silent_main, &s);
    mbx_msg *req = mbx_msg_new("Q", NULL, 0), *rep = NULL;
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_call(s.box, &req, &rep, 60000), MBX_ECLOSED);
    CHECK(th_now_ms() - t0 < 5000);
    CHECK(req == NULL && rep == NULL);
    pthread_join(th, NULL);
    CHECK_EQ(mbx_destroy(s.box), destroy ? MBX_ENOENT : 0);
}

TEST(callee_destroyed_before_reply_ends_call_at_once)
{
    check_call_ends_early(1);
}

TEST(request_freed_unanswered_ends_call_at_once)
{
    check_call_ends_early(0);
}

/* Destroys a mailbox once a call request is queued in it. */
static void *
destroy_when_queued_main(void *p)
{
    mbx_id box = *(mbx_id *)p;
    mbx_stats st;
    while (mbx_stat(box, &st) == 0 && st.queued == 0)
        sched_yield();
    mbx_destroy(box);
    return NULL;
}

TEST(callee_destroyed_with_request_queued)
{
    mbx_id box;
    mbx_create(&box, NULL);
    pthread_t th;
    pthread_create(&th, NULL, destroy_when_queued_main, &box);
    mbx_msg *req = mbx_msg_new("Q", NULL, 0), *rep = NULL;
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_call(box, &req, &rep, 60000), MBX_ECLOSED);
    CHECK(th_now_ms() - t0 < 5000);
    pthread_join(th, NULL);
}

TEST(slow_callee_times_out_and_late_reply_is_refused)
{
    mbx_id box;
    mbx_create(&box, NULL);
    mbx_msg *req = mbx_msg_new("Q", "1", 1), *rep = NULL;
    int64_t t0 = th_now_ms();
    CHECK_EQ(mbx_call(box, &req, &rep, 50), MBX_ETIMEDOUT);
    CHECK(th_now_ms() - t0 >= 50);
    CHECK(rep == NULL);
    /* The callee now gets to it: its reply is refused, nothing blocks. */
    mbx_msg *got = NULL;
    REQUIRE_EQ(mbx_recv(box, &got, 0), 0);
    CHECK_EQ(mbx_msg_is_call(got), 1);
    mbx_msg *late = mbx_msg_new("LATE", NULL, 0);
    CHECK_EQ(mbx_reply(got, &late), MBX_ENOENT);
    CHECK(late != NULL);
    /* A second reply to the same request: invalid. */
    CHECK_EQ(mbx_reply(got, &late), MBX_EINVAL);
    CHECK_EQ(mbx_msg_is_call(got), 0);
    mbx_msg_free(late);
    mbx_msg_free(got);

    /* The next call from this thread is not confused by the leftovers. */
    mbx_id callee;
    REQUIRE_EQ(mbx_spawn(&callee, reverser, NULL), 0);
    req = mbx_msg_new("REV", "ab", 2);
    CHECK_EQ(mbx_call(callee, &req, &rep, 10000), 0);
    CHECK(rep && memcmp(mbx_msg_body(rep, NULL), "ba", 2) == 0);
    mbx_msg_free(rep);
    stop_and_join(callee);
    mbx_destroy(box);
}

TEST(reply_misuse_is_harmless)
{
    mbx_msg *plain = mbx_msg_new("P", NULL, 0);
    mbx_msg *rep = mbx_msg_new("R", NULL, 0);
    CHECK_EQ(mbx_reply(plain, &rep), MBX_EINVAL);
    CHECK(rep != NULL);
    CHECK_EQ(mbx_reply(NULL, &rep), MBX_EINVAL);
    CHECK_EQ(mbx_reply(plain, NULL), MBX_EINVAL);
    mbx_msg_free(plain);
    mbx_msg_free(rep);
}

/* A callee that answers the second request it gets twice over. */
static void
double_replier(mbx_id self, void *arg)
{
    _Atomic int *second_rc = arg;
    mbx_msg *req;
    if (mbx_recv(self, &req, -1) != 0)
        return;
    mbx_msg *r1 = mbx_msg_new("ONE", NULL, 0), *r2 = mbx_msg_new("TWO", 0, 0);
    mbx_reply(req, &r1);
    atomic_store(second_rc, mbx_reply(req, &r2));
    mbx_msg_free(r2);
    mbx_msg_free(req);
}

TEST(second_reply_is_invalid)
{
    _Atomic int second_rc = 1;
    mbx_id callee;
    REQUIRE_EQ(mbx_spawn(&callee, double_replier, &second_rc), 0);
    mbx_msg *req = mbx_msg_new("Q", NULL, 0), *rep = NULL;
    CHECK_EQ(mbx_call(callee, &req, &rep, 10000), 0);
    CHECK(rep && strcmp(mbx_msg_kind(rep), "ONE") == 0);
    mbx_msg_free(rep);
    CHECK_EQ(mbx_join(callee, 10000), 0);
    CHECK_EQ(atomic_load(&second_rc), MBX_EINVAL);
}

/* ---- monitors ------------------------------------------------------------ */

static void
expect_down(mbx_id watcher, mbx_id who)
{
    mbx_msg *m = NULL;
    REQUIRE_EQ(mbx_recv(watcher, &m, 10000), 0);
    CHECK(strcmp(mbx_msg_kind(m), "DOWN") == 0);
    mbx_id got = 0;
    CHECK_EQ(mbx_msg_down(m, &got), 0);
    CHECK(got == who);
    mbx_msg_free(m);
}

TEST(monitor_sends_down_on_destroy)
{
    mbx_id w, t;
    mbx_create(&w, NULL);
    mbx_create(&t, NULL);
    CHECK_EQ(mbx_monitor(w, t), 0);
    CHECK_EQ(mbx_monitor(w, t), 0); /* two monitors: two DOWNs */
    mbx_destroy(t);
    expect_down(w, t);
    expect_down(w, t);
    mbx_msg *m;
    CHECK_EQ(mbx_recv(w, &m, 0), MBX_EAGAIN);
    mbx_destroy(w);
}

TEST(monitor_dead_target_downs_at_once)
{
    mbx_id w, t;
    mbx_create(&w, NULL);
    mbx_create(&t, NULL);
    mbx_destroy(t);
    CHECK_EQ(mbx_monitor(w, t), 0);
    expect_down(w, t);
    mbx_destroy(w);
    CHECK_EQ(mbx_monitor(w, t), MBX_ENOENT);
}

TEST(demonitor_stops_down)
{
    mbx_id w, t;
    mbx_create(&w, NULL);
    mbx_create(&t, NULL);
    CHECK_EQ(mbx_monitor(w, t), 0);
    CHECK_EQ(mbx_demonitor(w, t), 0);
    CHECK_EQ(mbx_demonitor(w, t), MBX_ENOENT);
    mbx_destroy(t);
    mbx_msg *m;
    CHECK_EQ(mbx_recv(w, &m, 0), MBX_EAGAIN);
    mbx_msg *plain = mbx_msg_new("DOWN", "x", 1);
    mbx_id who;
    CHECK_EQ(mbx_msg_down(plain, &who), MBX_EINVAL);
    mbx_msg_free(plain);
    mbx_destroy(w);
}

static void
returns_at_once(mbx_id self, void *arg)
{
    (void)self;
    (void)arg;
}

TEST(monitor_task_exit)
{
    mbx_id w, t;
    mbx_create(&w, NULL);
    /* The task may end before the monitor is set: DOWN comes either way. */
    REQUIRE_EQ(mbx_spawn(&t, returns_at_once, NULL), 0);
    CHECK_EQ(mbx_monitor(w, t), 0);
    expect_down(w, t);
    CHECK_EQ(mbx_join(t, 10000), 0);
    mbx_msg *m = mbx_msg_new("", NULL, 0);
    CHECK_EQ(mbx_send(t, &m, 0), MBX_ENOENT);
    mbx_msg_free(m);
    mbx_destroy(w);
}
