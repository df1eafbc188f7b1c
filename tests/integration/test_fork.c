/* Fork safety: a child forked while other threads are inside the library
 * (creating, naming, sending, freeing, spawning) can use mbx at once. */
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
