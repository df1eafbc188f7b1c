/* Translated from Concurrence's testcore: ping-pong with args, receive
 * timeouts, call/reply (SUM, MAX, a slow callee), FIFO and urgent order. */
#include <stdatomic.h>
#include <string.h>

#include "harness.h"
#include "mbx/mbx.h"

/* Sends a message of `kind` whose args hold one int, with a reply
 * address. */
static int
send_int(mbx_id to, const char *kind, int64_t v, mbx_id from)
{
    mbx_args *a = mbx_args_new();
    mbx_args_add_int(a, v);
    mbx_args_set_str(a, "note", kind);
    mbx_msg *m = mbx_msg_new_args(kind, a);
    mbx_args_free(a);
    if (!m)
        return MBX_ENOMEM;
    if (from) {
        char addr[MBX_ID_ADDRESS_LEN];
        mbx_msg_set_from(m, mbx_id_format(from, addr));
    }
    int rc = mbx_send(to, &m, -1);
    mbx_msg_free(m);
    return rc;
}

/* Reads the int of a message made by send_int. */
static int64_t
int_of(const mbx_msg *m)
{
    mbx_args *a = NULL;
    int64_t v = -1;
    if (mbx_msg_args(m, &a) == 0)
        mbx_args_get_int(a, 0, &v);
    mbx_args_free(a);
    return v;
}

/* The ponger answers each PING n with PONG n to the PING's sender, until it
 * gets MSG_QUIT. */
static void
ponger(mbx_id self, void *arg)
{
    (void)arg;
    mbx_msg *m;
    while (mbx_recv(self, &m, -1) == 0) {
        int quit = strcmp(mbx_msg_kind(m), "MSG_QUIT") == 0;
        if (strcmp(mbx_msg_kind(m), "MSG_PING") == 0) {
            mbx_msg *pong = NULL;
            mbx_args *a = mbx_args_new();
            mbx_args_add_int(a, int_of(m));
            mbx_args_set_str(a, "note", "MSG_PONG");
            pong = mbx_msg_new_args("MSG_PONG", a);
            mbx_args_free(a);
            if (mbx_send_to(mbx_msg_from(m), &pong, -1) != 0)
                mbx_msg_free(pong);
        }
        mbx_msg_free(m);
        if (quit)
            return;
    }
}

TEST(ping_pong_six_round_trips_with_args)
{
    mbx_id self, pong;
    REQUIRE_EQ(mbx_create(&self, NULL), 0);
    REQUIRE_EQ(mbx_spawn(&pong, ponger, NULL), 0);
    for (int64_t i = 0; i < 6; i++) {
        REQUIRE_EQ(send_int(pong, "MSG_PING", i * 7, self), 0);
        mbx_msg *m = NULL;
        REQUIRE_EQ(mbx_recv(self, &m, 10000), 0);
        CHECK(strcmp(mbx_msg_kind(m), "MSG_PONG") == 0);
        CHECK_EQ(int_of(m), i * 7);
        mbx_args *a = NULL;
        REQUIRE_EQ(mbx_msg_args(m, &a), 0);
        const char *note = NULL;
        CHECK_EQ(mbx_args_kw_str(a, "note", &note, NULL), 0);
        CHECK(note && strcmp(note, "MSG_PONG") == 0);
        mbx_args_free(a);
        mbx_msg_free(m);
    }
    REQUIRE_EQ(send_int(pong, "MSG_QUIT", 0, 0), 0);
    CHECK_EQ(mbx_join(pong, 10000), 0);
    mbx_destroy(self);
}

TEST(receive_timeout)
{
    mbx_id self;
    mbx_create(&self, NULL);
    mbx_msg *m = NULL;
    int64_t t0 = th_now_ns();
    CHECK_EQ(mbx_recv(self, &m, 200), MBX_ETIMEDOUT);
    int64_t took_ms = (th_now_ns() - t0) / 1000000;
    CHECK(took_ms >= 200);
    CHECK(took_ms < 3000);
    mbx_destroy(self);
}

/* The calculator answers MSG_SUM and MSG_MAX calls over their int args;
 * MSG_SLOW is answered only after the caller has given up. */
static void
calculator(mbx_id self, void *arg)
{
    (void)arg;
    mbx_msg *m;
    while (mbx_recv(self, &m, -1) == 0) {
        const char *k = mbx_msg_kind(m);
        if (strcmp(k, "MSG_QUIT") == 0) {
            mbx_msg_free(m);
            return;
        }
        mbx_args *in = NULL;
        int64_t sum = 0, max = INT64_MIN, v;
        if (mbx_msg_args(m, &in) == 0)
            for (size_t i = 0; mbx_args_get_int(in, i, &v) == 0; i++) {
                sum += v;
                max = v > max ? v : max;
            }
        mbx_args_free(in);
        if (strcmp(k, "MSG_SLOW") == 0) {
            /* Take longer than the caller waits: wait on our own mailbox
             * for a message that never comes. */
            mbx_msg *none = NULL;
            mbx_recv_kind(self, "NEVER", &none, 300);
        }
        mbx_args *out = mbx_args_new();
        mbx_args_add_int(out, strcmp(k, "MSG_MAX") == 0 ? max : sum);
        mbx_msg *rep = mbx_msg_new_args("MSG_RESULT", out);
        mbx_args_free(out);
        if (mbx_reply(m, &rep) != 0)
            mbx_msg_free(rep);
        mbx_msg_free(m);
    }
}

static int
call_ints(mbx_id to, const char *kind, int timeout_ms, int64_t *result)
{
    mbx_args *a = mbx_args_new();
    mbx_args_add_int(a, 10);
    mbx_args_add_int(a, 20);
    mbx_args_add_int(a, 30);
    mbx_msg *req = mbx_msg_new_args(kind, a), *rep = NULL;
    mbx_args_free(a);
    int rc = mbx_call(to, &req, &rep, timeout_ms);
    mbx_msg_free(req);
    if (rc == 0)
        *result = int_of(rep);
    mbx_msg_free(rep);
    return rc;
}

TEST(call_sum_max_and_slow_callee)
{
    mbx_id calc;
    REQUIRE_EQ(mbx_spawn(&calc, calculator, NULL), 0);
    int64_t r = 0;
    CHECK_EQ(call_ints(calc, "MSG_SUM", 10000, &r), 0);
    CHECK_EQ(r, 60);
    CHECK_EQ(call_ints(calc, "MSG_MAX", 10000, &r), 0);
    CHECK_EQ(r, 30);
    int64_t t0 = th_now_ms();
    CHECK_EQ(call_ints(calc, "MSG_SLOW", 50, &r), MBX_ETIMEDOUT);
    CHECK(th_now_ms() - t0 >= 50);
    /* The calculator is still fine, and its late answer does not confuse
     * the next call. */
    CHECK_EQ(call_ints(calc, "MSG_SUM", 10000, &r), 0);
    CHECK_EQ(r, 60);
    REQUIRE_EQ(send_int(calc, "MSG_QUIT", 0, 0), 0);
    CHECK_EQ(mbx_join(calc, 10000), 0);
}

TEST(fifo_order_and_urgent_first)
{
    mbx_id box;
    mbx_create(&box, NULL);
    for (int64_t i = 0; i < 10; i++)
        REQUIRE_EQ(send_int(box, "MSG_NORMAL", i, 0), 0);
    mbx_args *a = mbx_args_new();
    mbx_args_add_int(a, 100);
    mbx_msg *u = mbx_msg_new_args("MSG_URGENT", a);
    mbx_args_free(a);
    mbx_msg_set_flags(u, MBX_MSG_URGENT);
    REQUIRE_EQ(mbx_send(box, &u, 0), 0);
    mbx_msg *m;
    REQUIRE_EQ(mbx_recv(box, &m, 0), 0);
    CHECK(strcmp(mbx_msg_kind(m), "MSG_URGENT") == 0);
    CHECK_EQ(int_of(m), 100);
    mbx_msg_free(m);
    for (int64_t i = 0; i < 10; i++) {
        REQUIRE_EQ(mbx_recv(box, &m, 0), 0);
        CHECK_EQ(int_of(m), i);
        mbx_msg_free(m);
    }
    mbx_destroy(box);
}
