/*
 * Tasks: a thread with its own mailbox (Concurrence's tasklet). A record per
 * running task lets any number of threads join it; the record leaves the
 * table once the task's function has returned and its mailbox is destroyed,
 * after which joining finds the id dead and returns at once.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include "core/fork.h"
#include "core/mailbox.h"

struct task {
    struct task *next;
    mbx_id id;
    void (*fn)(mbx_id self, void *arg);
    void *arg;
    _Atomic uint32_t done; /* futex: 1 once fn returned */
    int refs;              /* the task itself + joiners; tasks_lock */
};

static pthread_mutex_t tasks_lock = PTHREAD_MUTEX_INITIALIZER;
static struct task *tasks;
static _Thread_local mbx_id current_task;

/* Drops one reference; the last one frees. tasks_lock held. */
static void
task_unref(struct task *t)
{
    if (--t->refs == 0)
        free(t);
}

/* Unlinks t from the table. tasks_lock held. */
static void
task_unlink(struct task *t)
{
    struct task **p = &tasks;
    while (*p != t)
        p = &(*p)->next;
    *p = t->next;
}

/* Ends a task: its mailbox goes, its joiners wake. Runs when the function
 * returns, and also if it calls pthread_exit. */
static void
task_finish(void *p)
{
    struct task *t = p;
    mbx_destroy(t->id); /* MBX_ENOENT if someone destroyed it already */
    pthread_mutex_lock(&tasks_lock);
    task_unlink(t);
    atomic_store(&t->done, 1);
    mbx__futex_wake(&t->done, INT_MAX);
    task_unref(t);
    pthread_mutex_unlock(&tasks_lock);
}

static void *
task_main(void *p)
{
    struct task *t = p;
    current_task = t->id;
    pthread_cleanup_push(task_finish, t);
    t->fn(t->id, t->arg);
    pthread_cleanup_pop(1);
    return NULL;
}

int
mbx_spawn(mbx_id *out, void (*fn)(mbx_id self, void *arg), void *arg)
{
    if (!out || !fn)
        return MBX_EINVAL;
    struct task *t = calloc(1, sizeof *t);
    if (!t)
        return MBX_ENOMEM;
    int rc = mbx_create(&t->id, NULL);
    if (rc < 0) {
        free(t);
        return rc;
    }
    atomic_store(&mbx__box_slot(t->id)->is_task, 1);
    t->fn = fn;
    t->arg = arg;
    t->refs = 1;
    *out = t->id;

    pthread_attr_t attr;
    pthread_t th;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_mutex_lock(&tasks_lock);
    t->next = tasks;
    tasks = t;
    rc = pthread_create(&th, &attr, task_main, t);
    if (rc != 0)
        task_unlink(t);
    pthread_mutex_unlock(&tasks_lock);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        mbx_destroy(t->id);
        free(t);
        return rc == ENOMEM ? MBX_ENOMEM : MBX_EAGAIN;
    }
    return 0;
}

/* Joins a task whose mailbox is no longer in the table of running tasks. */
static int
join_finished(mbx_id id)
{
    struct mbx__box *b;
    if (!mbx__id_existed(id))
        return MBX_ENOENT;
    if (mbx__box_acquire(id, &b) == 0) {
        /* A live task mailbox without a record is a task inherited over
         * fork, whose thread is not in this process: it has ended here. */
        int is_task = atomic_load(&b->is_task);
        mbx__box_release(b);
        if (!is_task)
            return MBX_EINVAL; /* a live mailbox that is not a task */
    }
    return 0;
}

int
mbx_join(mbx_id task, int timeout_ms)
{
    if (task == 0)
        return MBX_ENOENT;
    if (task == current_task)
        return MBX_EINVAL;
    int64_t deadline = mbx__deadline(timeout_ms);
    pthread_mutex_lock(&tasks_lock);
    struct task *t = tasks;
    while (t && t->id != task)
        t = t->next;
    if (!t) {
        pthread_mutex_unlock(&tasks_lock);
        return join_finished(task);
    }
    t->refs++;
    pthread_mutex_unlock(&tasks_lock);
    int rc = 0;
    while (!atomic_load(&t->done) && rc == 0)
        rc = mbx__futex_wait(&t->done, 0, deadline);
    if (atomic_load(&t->done))
        rc = 0;
    else if (deadline == 0)
        rc = MBX_EAGAIN;
    pthread_mutex_lock(&tasks_lock);
    task_unref(t);
    pthread_mutex_unlock(&tasks_lock);
    return rc;
}

int
mbx_receive_loop(mbx_id self, mbx_receive_fn handler, void *ctx)
{
    if (!handler)
        return MBX_EINVAL;
    for (;;) {
        mbx_msg *m;
        int rc = mbx_recv(self, &m, -1);
        if (rc < 0)
            return rc;
        rc = handler(self, &m, ctx);
        mbx_msg_free(m);
        if (rc != 0)
            return rc;
    }
}

void
mbx__tasks_lock_all(void)
{
    pthread_mutex_lock(&tasks_lock);
}

/* In a child after fork, the parent's tasks have no thread: they count as
 * ended, so joining one returns at once instead of never. Their mailboxes
 * stay until someone destroys them. */
static void
forget_inherited_tasks(void)
{
    struct task **p = &tasks, *t;
    while ((t = *p)) {
        if (t->id == current_task) { /* fork was called by this task */
            p = &t->next;
            continue;
        }
        *p = t->next;
        atomic_store(&t->done, 1);
        task_unref(t); /* the reference of the thread that is not here */
    }
}

void
mbx__tasks_unlock_all(int in_child)
{
    if (in_child)
        forget_inherited_tasks();
    pthread_mutex_unlock(&tasks_lock);
}
