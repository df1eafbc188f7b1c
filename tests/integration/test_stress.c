/* Stress: many producers, several consumers, destroy racing with every
 * operation, and mailbox churn with stale ids. Threads record what they saw;
 * the test thread asserts after joining them. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "mbx/mbx.h"

struct stamp {
    uint32_t producer;
    uint32_t seq;
};

/* ---- 8 producers x 1M messages into one mailbox -------------------------- */

struct producer {
    mbx_id to;
    uint32_t id;
    long count;
    int failures;
};

static void *
producer_main(void *p)
{
    struct producer *pr = p;
    for (long i = 0; i < pr->count; i++) {
        struct stamp s = {pr->id, (uint32_t)i};
        mbx_msg *m = mbx_msg_new("", &s, sizeof s);
        if (!m || mbx_send(pr->to, &m, -1) != 0) {
            pr->failures++;
            mbx_msg_free(m);
        }
    }
    return NULL;
}

/* Receives `total` stamped messages from `box` and checks that, per
 * producer, sequence numbers arrive exactly once and in order. */
static void
consume_in_order(mbx_id box, int producers, long per_producer,
                 uint64_t capacity)
{
    uint32_t *next = calloc((size_t)producers, sizeof *next);
    long bad = 0, overfull = 0, total = (long)producers * per_producer;
    for (long i = 0; i < total; i++) {
        mbx_msg *m = NULL;
        int rc = mbx_recv(box, &m, 30000);
        REQUIRE_EQ(rc, 0);
        size_t len;
        const struct stamp *s = mbx_msg_body(m, &len);
        if (len != sizeof *s || s->producer >= (uint32_t)producers ||
            s->seq != next[s->producer])
            bad++;
        else
            next[s->producer]++;
        mbx_msg_free(m);
        /* A bounded mailbox never holds more than its capacity. */
        mbx_stats st;
        if (capacity && i % 256 == 0 && mbx_stat(box, &st) == 0 &&
            st.queued > capacity)
            overfull++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(overfull, 0);
    for (int p = 0; p < producers; p++)
        CHECK_EQ(next[p], per_producer);
    mbx_msg *extra = NULL;
    CHECK_EQ(mbx_recv(box, &extra, 0), MBX_EAGAIN);
    free(next);
}

static void
run_producers(int n, long per_producer, const mbx_opts *opts)
{
    mbx_id box;
    REQUIRE_EQ(mbx_create(&box, opts), 0);
    struct producer pr[16];
    pthread_t th[16];
    for (int i = 0; i < n; i++) {
        pr[i] = (struct producer){box, (uint32_t)i, per_producer, 0};
        pthread_create(&th[i], NULL, producer_main, &pr[i]);
    }
    consume_in_order(box, n, per_producer, opts ? opts->capacity : 0);
    for (int i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(pr[i].failures, 0);
    }
    mbx_stats st;
    mbx_stat(box, &st);
    CHECK_EQ(st.sent, (uint64_t)n * (uint64_t)per_producer);
    CHECK_EQ(st.received, st.sent);
    CHECK_EQ(st.queued, 0);
    mbx_destroy(box);
}

TEST(eight_producers_million_each)
{
    run_producers(8, th_scaled(1000000), NULL);
}

TEST(eight_producers_bounded_blocking)
{
    mbx_opts o = {.capacity = 64, .when_full = MBX_FULL_BLOCK};
    run_producers(8, th_scaled(100000), &o);
}

TEST(producers_with_urgent_interleaved)
{
    /* Urgent messages from one producer keep their own order too. */
    mbx_id box;
    mbx_create(&box, NULL);
    long n = th_scaled(200000);
    for (long i = 0; i < n; i++) {
        struct stamp s = {(uint32_t)(i & 1), (uint32_t)(i / 2)};
        mbx_msg *m = mbx_msg_new("", &s, sizeof s);
        mbx_msg_set_flags(m, (i & 1) ? MBX_MSG_URGENT : 0);
        REQUIRE_EQ(mbx_send(box, &m, 0), 0);
    }
    /* All urgent ones (producer 1) first, in order, then the rest. */
    for (long i = 0; i < n; i++) {
        mbx_msg *m;
        REQUIRE_EQ(mbx_recv(box, &m, 0), 0);
        const struct stamp *s = mbx_msg_body(m, NULL);
        uint32_t want_p = i < n / 2 ? 1 : 0;
        uint32_t want_seq = (uint32_t)(i < n / 2 ? i : i - n / 2);
        if (s->producer != want_p || s->seq != want_seq) {
            CHECK_EQ(s->producer, want_p);
            CHECK_EQ(s->seq, want_seq);
            mbx_msg_free(m);
            break;
        }
        mbx_msg_free(m);
    }
    mbx_destroy(box);
}

/* ---- several consumers: each message to exactly one ---------------------- */

struct consumer {
    mbx_id from;
    _Atomic unsigned char *seen;
    long got;
    long dup;
};

static void *
consumer_main(void *p)
{
    struct consumer *c = p;
    mbx_msg *m;
    while (mbx_recv(c->from, &m, -1) == 0) {
        const struct stamp *s = mbx_msg_body(m, NULL);
        if (s->producer == UINT32_MAX) { /* end marker, one per consumer */
            mbx_msg_free(m);
            break;
        }
        long idx = (long)s->producer * 1000000L + s->seq;
        if (atomic_exchange(&c->seen[idx], 1))
            c->dup++;
        c->got++;
        mbx_msg_free(m);
    }
    return NULL;
}

TEST(four_producers_three_consumers_exactly_once)
{
    enum { P = 4, C = 3 };
    long per = th_scaled(200000);
    mbx_id box;
    mbx_create(&box, NULL);
    _Atomic unsigned char *seen = calloc(P * 1000000L, 1);
    struct consumer cs[C];
    pthread_t ct[C], pt[P];
    struct producer pr[P];
    for (int i = 0; i < C; i++) {
        cs[i] = (struct consumer){box, seen, 0, 0};
        pthread_create(&ct[i], NULL, consumer_main, &cs[i]);
    }
    for (int i = 0; i < P; i++) {
        pr[i] = (struct producer){box, (uint32_t)i, per, 0};
        pthread_create(&pt[i], NULL, producer_main, &pr[i]);
    }
    for (int i = 0; i < P; i++)
        pthread_join(pt[i], NULL);
    for (int i = 0; i < C; i++) {
        struct stamp end = {UINT32_MAX, 0};
        mbx_msg *m = mbx_msg_new("", &end, sizeof end);
        REQUIRE_EQ(mbx_send(box, &m, -1), 0);
    }
    long got = 0, dup = 0;
    for (int i = 0; i < C; i++) {
        pthread_join(ct[i], NULL);
        got += cs[i].got;
        dup += cs[i].dup;
    }
    CHECK_EQ(dup, 0);
    CHECK_EQ(got, P * per);
    long missing = 0;
    for (int p = 0; p < P; p++)
        for (long s = 0; s < per; s++)
            missing += !atomic_load(&seen[p * 1000000L + s]);
    CHECK_EQ(missing, 0);
    free(seen);
    mbx_destroy(box);
}

/* ---- destroy racing with senders, receivers and callers ------------------ */

static _Atomic long bodies_alive;

static void
body_free(void *p)
{
    atomic_fetch_sub(&bodies_alive, 1);
    free(p);
}

static mbx_msg *
counted_msg(const char *kind)
{
    char *b = malloc(8);
    atomic_fetch_add(&bodies_alive, 1);
    memcpy(b, "payload", 8);
    return mbx_msg_wrap(kind, b, 8, body_free);
}

struct racer {
    mbx_id box;
    int role; /* 0 sender, 1 receiver, 2 caller */
    int last_rc;
    long ok;
};

static void *
racer_main(void *p)
{
    struct racer *r = p;
    for (;;) {
        int rc;
        mbx_msg *m = NULL, *rep = NULL;
        if (r->role == 0) {
            m = counted_msg("DATA");
            rc = mbx_send(r->box, &m, -1);
        } else if (r->role == 1) {
            rc = mbx_recv(r->box, &m, -1);
            if (rc == 0 && mbx_msg_is_call(m)) {
                rep = counted_msg("REPLY");
                if (mbx_reply(m, &rep) != 0)
                    mbx_msg_free(rep);
                rep = NULL;
            }
        } else {
            m = counted_msg("CALL");
            rc = mbx_call(r->box, &m, &rep, -1);
        }
        mbx_msg_free(m);
        mbx_msg_free(rep);
        if (rc != 0) {
            r->last_rc = rc;
            return NULL;
        }
        r->ok++;
    }
}

TEST(destroy_races_with_everything)
{
    int rounds = (int)th_scaled(200);
    for (int round = 0; round < rounds; round++) {
        enum { N = 6 };
        struct racer r[N];
        pthread_t th[N];
        mbx_opts o = {.capacity = (round % 2) ? 4 : 0};
        mbx_id box;
        REQUIRE_EQ(mbx_create(&box, &o), 0);
        for (int i = 0; i < N; i++) {
            r[i] = (struct racer){box, i % 3, 0, 0};
            pthread_create(&th[i], NULL, racer_main, &r[i]);
        }
        /* Let some traffic flow, then destroy under their feet. */
        mbx_stats st;
        while (mbx_stat(box, &st) == 0 && st.sent < (uint64_t)(round % 50))
            sched_yield();
        REQUIRE_EQ(mbx_destroy(box), 0);
        for (int i = 0; i < N; i++) {
            pthread_join(th[i], NULL);
            /* Every racer stops with "closed" or "gone", never hangs. */
            if (r[i].last_rc != MBX_ECLOSED && r[i].last_rc != MBX_ENOENT)
                CHECK_EQ(r[i].last_rc, MBX_ECLOSED);
        }
    }
    /* Every message ever made was freed exactly once: none lost in a dead
     * mailbox, none freed twice (ASan would catch that). */
    CHECK_EQ(atomic_load(&bodies_alive), 0);
}

/* ---- 100k mailboxes created and destroyed across threads ---------------- */

struct churn {
    long count;
    long stale_ok;
    long errors;
};

static void *
churn_main(void *p)
{
    struct churn *c = p;
    mbx_id prev = 0;
    for (long i = 0; i < c->count; i++) {
        mbx_id id;
        if (mbx_create(&id, NULL) != 0) {
            c->errors++;
            continue;
        }
        if (id == prev || id == 0)
            c->errors++;
        mbx_msg *m = mbx_msg_new("", "x", 1);
        if (mbx_send(id, &m, 0) != 0)
            c->errors++;
        if (mbx_destroy(id) != 0)
            c->errors++;
        /* The stale id stays dead even after its slot is reused. */
        m = mbx_msg_new("", "x", 1);
        if (prev && mbx_send(prev, &m, 0) == MBX_ENOENT &&
            mbx_send(id, &m, 0) == MBX_ENOENT)
            c->stale_ok++;
        else if (prev)
            c->errors++;
        mbx_msg_free(m);
        prev = id;
    }
    return NULL;
}

TEST(hundred_thousand_mailboxes_across_threads)
{
    enum { T = 4 };
    struct churn c[T];
    pthread_t th[T];
    long per = th_scaled(25000);
    for (int i = 0; i < T; i++) {
        c[i] = (struct churn){per, 0, 0};
        pthread_create(&th[i], NULL, churn_main, &c[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK_EQ(c[i].errors, 0);
        CHECK_EQ(c[i].stale_ok, per - 1);
    }
    /* 100k live at once, then all destroyed. */
    long n = th_scaled(100000);
    mbx_id *ids = malloc((size_t)n * sizeof *ids);
    for (long i = 0; i < n; i++)
        REQUIRE_EQ(mbx_create(&ids[i], NULL), 0);
    for (long i = 0; i < n; i++)
        REQUIRE_EQ(mbx_destroy(ids[i]), 0);
    long alive = 0;
    for (long i = 0; i < n; i++) {
        mbx_stats st;
        alive += mbx_stat(ids[i], &st) != MBX_ENOENT;
    }
    CHECK_EQ(alive, 0);
    free(ids);
}
