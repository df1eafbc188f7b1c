/* Tasks: spawn, join, the receive loop, and the task mailbox's end. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "harness.h"
#include "mbx/mbx.h"

struct counter {
    _Atomic int handled;
    _Atomic int stopped_with;
};

/* Counts messages until kind "STOP"; returns 42 from the handler then. */
static int
count_until_stop(mbx_id self, mbx_msg **m, void *ctx)
{
    (void)self;
    struct counter *c = ctx;
    if (strcmp(mbx_msg_kind(*m), "STOP") == 0)
        return 42;
    atomic_fetch_add(&c->handled, 1);
    return 0;
}

static void
loop_task(mbx_id self, void *arg)
{
    struct counter *c = arg;
    atomic_store(&c->stopped_with, mbx_receive_loop(self, count_until_stop, c));
}

TEST(receive_loop_and_join)
{
    struct counter c = {0, 0};
    mbx_id t;
    REQUIRE_EQ(mbx_spawn(&t, loop_task, &c), 0);
    for (int i = 0; i < 1000; i++) {
        mbx_msg *m = mbx_msg_new("WORK", &i, sizeof i);
        REQUIRE_EQ(mbx_send(t, &m, -1), 0);
    }
    mbx_msg *stop = mbx_msg_new("STOP", NULL, 0);
    REQUIRE_EQ(mbx_send(t, &stop, -1), 0);
    CHECK_EQ(mbx_join(t, 10000), 0);
    CHECK_EQ(atomic_load(&c.handled), 1000);
    CHECK_EQ(atomic_load(&c.stopped_with), 42);
    /* The task's mailbox died with it: sends are refused, never lost. */
    mbx_msg *late = mbx_msg_new("WORK", NULL, 0);
    CHECK_EQ(mbx_send(t, &late, 0), MBX_ENOENT);
    CHECK(late != NULL);
    mbx_msg_free(late);
    /* Joining again, or from several threads, is fine. */
    CHECK_EQ(mbx_join(t, 0), 0);
}

static void
wait_forever(mbx_id self, void *arg)
{
    _Atomic int *rc = arg;
    mbx_msg *m = NULL;
    atomic_store(rc, mbx_recv(self, &m, -1));
    mbx_msg_free(m);
}

TEST(destroying_a_task_mailbox_ends_its_wait)
{
    _Atomic int rc = 1;
    mbx_id t;
    REQUIRE_EQ(mbx_spawn(&t, wait_forever, &rc), 0);
    CHECK_EQ(mbx_join(t, 20), MBX_ETIMEDOUT);
    CHECK_EQ(mbx_join(t, 0), MBX_EAGAIN);
    CHECK_EQ(mbx_destroy(t), 0);
    CHECK_EQ(mbx_join(t, 10000), 0);
    /* Either it was parked (closed under it) or it had not reached its
     * receive yet (the id was already dead). */
    int got = atomic_load(&rc);
    CHECK(got == MBX_ECLOSED || got == MBX_ENOENT);
}

TEST(join_errors)
{
    mbx_id box;
    mbx_create(&box, NULL);
    CHECK_EQ(mbx_join(box, 0), MBX_EINVAL); /* not a task */
    mbx_destroy(box);
    CHECK_EQ(mbx_join(box, 0), 0); /* dead: nothing to wait for */
    CHECK_EQ(mbx_join(0x0000000100ffffffull, 0), MBX_ENOENT);
    CHECK_EQ(mbx_join(0, 0), MBX_ENOENT);
    CHECK_EQ(mbx_spawn(NULL, wait_forever, NULL), MBX_EINVAL);
    mbx_id t;
    CHECK_EQ(mbx_spawn(&t, NULL, NULL), MBX_EINVAL);
    CHECK_EQ(mbx_receive_loop(box, NULL, NULL), MBX_EINVAL);
}

static void
join_self(mbx_id self, void *arg)
{
    atomic_store((_Atomic int *)arg, mbx_join(self, 0));
}

TEST(task_cannot_join_itself)
{
    _Atomic int rc = 1;
    mbx_id t;
    REQUIRE_EQ(mbx_spawn(&t, join_self, &rc), 0);
    CHECK_EQ(mbx_join(t, 10000), 0);
    CHECK_EQ(atomic_load(&rc), MBX_EINVAL);
}

static void
spawn_many_child(mbx_id self, void *arg)
{
    (void)self;
    atomic_fetch_add((_Atomic int *)arg, 1);
}

TEST(many_tasks)
{
    enum { N = 200 };
    _Atomic int ran = 0;
    mbx_id ids[N];
    for (int i = 0; i < N; i++)
        REQUIRE_EQ(mbx_spawn(&ids[i], spawn_many_child, &ran), 0);
    for (int i = 0; i < N; i++)
        CHECK_EQ(mbx_join(ids[i], 10000), 0);
    CHECK_EQ(atomic_load(&ran), N);
}

static void
exits_early(mbx_id self, void *arg)
{
    (void)self;
    (void)arg;
    pthread_exit(NULL);
}

TEST(task_calling_pthread_exit_still_ends_properly)
{
    mbx_id t;
    REQUIRE_EQ(mbx_spawn(&t, exits_early, NULL), 0);
    CHECK_EQ(mbx_join(t, 10000), 0);
    mbx_msg *m = mbx_msg_new("", NULL, 0);
    CHECK_EQ(mbx_send(t, &m, 0), MBX_ENOENT);
    mbx_msg_free(m);
}
