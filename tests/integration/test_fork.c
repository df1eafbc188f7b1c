/* Fork safety: a child forked while other threads are inside the library
 * (creating, naming, sending, freeing, spawning) can use mbx at once. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "mbx/mbx.h"

static _Atomic int churning = 1;
static _Atomic long churn_rounds; /* iterations done by all churners */

static void
short_task(mbx_id self, void *arg)
{
    (void)self;
    (void)arg;
}

/* Goes through every process-wide lock of the library, over and over. */
static void *
churn_main(void *p)
{
    long id = (long)p;
    char name[64];
    snprintf(name, sizeof name, "t%ld-churn-%ld", (long)getpid(), id);
    while (atomic_load(&churning)) {
        mbx_id box, task;
        if (mbx_create(&box, NULL) != 0)
            continue;
        mbx_register(box, name);
        for (int i = 0; i < 100; i++) {
            mbx_msg *m = mbx_msg_new("K", "payload", 7);
            if (mbx_send(box, &m, 0) != 0)
                mbx_msg_free(m);
        }
        mbx_msg *m;
        while (mbx_recv(box, &m, 0) == 0)
            mbx_msg_free(m);
        if (mbx_spawn(&task, short_task, NULL) == 0)
            mbx_join(task, -1);
        mbx_destroy(box);
        atomic_fetch_add(&churn_rounds, 1);
    }
    return NULL;
}

/* What a child does: the whole in-process API, then exit 0. A child that
 * hangs on a lock left held by the fork is ended by its alarm. */
static void
child_main(void)
{
    alarm(10);
    mbx_id box, task;
    if (mbx_create(&box, NULL) != 0 || mbx_register(box, "child-box") != 0)
        _exit(3);
    for (int i = 0; i < 200; i++) {
        mbx_msg *m = mbx_msg_new("K", &i, sizeof i);
        if (mbx_send_to("child-box", &m, 0) != 0)
            _exit(4);
    }
    for (int i = 0; i < 200; i++) {
        mbx_msg *m;
        if (mbx_recv(box, &m, 0) != 0 ||
            *(const int *)mbx_msg_body(m, NULL) != i)
            _exit(5);
        mbx_msg_free(m);
    }
    if (mbx_spawn(&task, short_task, NULL) != 0 || mbx_join(task, -1) != 0)
        _exit(6);
    _exit(mbx_destroy(box) == 0 ? 0 : 7);
}

TEST(fork_while_other_threads_use_the_library)
{
    enum { THREADS = 3 };
    pthread_t th[THREADS];
    for (long i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, churn_main, (void *)i);
    int forks = (int)th_scaled(100), bad = 0;
    for (int i = 0; i < forks; i++) {
        /* Fork only while the churners are busy: wait for fresh rounds. */
        long seen = atomic_load(&churn_rounds);
        while (atomic_load(&churn_rounds) < seen + THREADS)
            sched_yield();
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0)
            child_main();
        int status;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            bad++;
            fprintf(stderr, "  child %d: %s %d\n", i,
                    WIFSIGNALED(status) ? "killed by signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status)
                                        : WEXITSTATUS(status));
        }
    }
    atomic_store(&churning, 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ(bad, 0);
}

static void
wait_for_stop(mbx_id self, void *arg)
{
    (void)arg;
    mbx_msg *m = NULL;
    mbx_recv(self, &m, -1);
    mbx_msg_free(m);
}

/* What the child inherits from other threads: a task with no thread (it
 * counts as ended there) and eventfds shared with the parent (the child
 * drops its copies, so a receive there cannot drain the parent's). */
TEST(child_does_not_share_fds_or_wait_on_parent_tasks)
{
    mbx_id box, task;
    REQUIRE_EQ(mbx_create(&box, NULL), 0);
    int fd = mbx_fd(box);
    REQUIRE(fd >= 0);
    REQUIRE_EQ(mbx_spawn(&task, wait_for_stop, NULL), 0);
    /* A message pending before the fork: the parent's fd is readable. */
    mbx_msg *m = mbx_msg_new("", "p", 1);
    REQUIRE_EQ(mbx_send(box, &m, 0), 0);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    REQUIRE_EQ(poll(&p, 1, 0), 1);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        alarm(10);
        if (mbx_join(task, 1000) != 0)
            _exit(3); /* would wait for a thread that is not here */
        /* Receiving the child's copy of the message must not drain the
         * parent's readiness. */
        if (mbx_recv(box, &m, 0) != 0)
            _exit(4);
        mbx_msg_free(m);
        _exit(mbx_fd(box) >= 0 ? 0 : 5);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* The parent's message is still pending, and its fd still says so. */
    CHECK_EQ(poll(&p, 1, 1000), 1);
    CHECK_EQ(mbx_recv(box, &m, 0), 0);
    mbx_msg_free(m);
    m = mbx_msg_new("", NULL, 0);
    REQUIRE_EQ(mbx_send(task, &m, 0), 0);
    CHECK_EQ(mbx_join(task, 10000), 0);
    mbx_destroy(box);
}
