/*
 * triotp_mailbox: the mailbox tutorial of triotp, written with mbx.
 *
 * A consumer thread creates a mailbox, registers it under the name
 * "consumer" and waits for a message with a timeout. The producer (the main
 * thread) finds the consumer by its name and sends it "Hello World!". On the
 * way, the program shows the two errors a triotp user meets first: a receive
 * that times out, and a name that nobody registered.
 *
 * Build on its own:
 *   cc -std=c11 triotp_mailbox.c $(pkg-config --cflags --libs mbx) -pthread
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbx/mbx.h>

/* How long any step may wait before the example gives up (milliseconds). */
#define PATIENCE_MS 5000

/* Ends the program on an mbx result it did not expect. */
static void
fail(const char *what, int rc)
{
    fprintf(stderr, "triotp_mailbox: %s: %s (%s)\n", what,
            mbx_strerror_name(rc), mbx_strerror(rc));
    exit(EXIT_FAILURE);
}

/* Every mbx call that should succeed goes through check(). */
static void
check(int rc, const char *what)
{
    if (rc < 0)
        fail(what, rc);
}

/* The calls that should fail in a known way go through expect(). */
static void
expect(int rc, int expected, const char *what)
{
    if (rc != expected)
        fail(what, rc);
}

/* Prints a message's body as text. Bodies are bytes, not C strings, so the
 * length comes from the message rather than from a terminating NUL. */
static void
print_body(const char *who, const mbx_msg *m)
{
    size_t len;
    const char *text = mbx_msg_body(m, &len);
    printf("%s: received \"%.*s\"\n", who, (int)len, text ? text : "");
}

/* The consumer: owns the mailbox registered as "consumer". `arg` points to
 * the producer's mailbox id, which it uses to say that it is ready. */
static void *
consumer(void *arg)
{
    mbx_id producer = *(const mbx_id *)arg;
    mbx_id self;
    mbx_msg *m = NULL;

    /* The thread that creates a mailbox owns it and will destroy it. */
    check(mbx_create(&self, NULL), "mbx_create");
    check(mbx_register(self, "consumer"), "mbx_register");
    printf("consumer: mailbox registered as \"consumer\"\n");

    /* A name points to one mailbox. Taking it again fails, even for the
     * mailbox that already holds it. */
    expect(mbx_register(self, "consumer"), MBX_EEXIST, "register twice");
    printf("consumer: registering \"consumer\" again -> MBX_EEXIST\n");

    /* Nobody has sent anything yet, so this wait ends with MBX_ETIMEDOUT.
     * A timed-out receive consumes nothing. */
    expect(mbx_recv(self, &m, 50), MBX_ETIMEDOUT, "mbx_recv (timeout)");
    printf("consumer: receive with a 50 ms timeout -> MBX_ETIMEDOUT\n");

    /* Tell the producer that the name is in place (triotp's
     * task_status.started()). This message goes by id, not by name. */
    m = mbx_msg_new("started", NULL, 0);
    if (!m)
        fail("mbx_msg_new", MBX_ENOMEM);
    check(mbx_send(producer, &m, PATIENCE_MS), "mbx_send (started)");

    /* Now wait for the real message, with a generous timeout. */
    check(mbx_recv(self, &m, PATIENCE_MS), "mbx_recv");
    print_body("consumer", m);
    mbx_msg_free(m);

    /* Destroying the mailbox also removes its name from the registry. */
    check(mbx_destroy(self), "mbx_destroy");
    printf("consumer: mailbox destroyed, its name is free again\n");
    return NULL;
}

/* Sends `text` to an address. On success the mailbox owns the message and
 * mbx_send_to sets m to NULL; on failure m is still ours, so it is freed
 * here either way (mbx_msg_free accepts NULL). */
static int
send_text(const char *address, const char *text)
{
    mbx_msg *m = mbx_msg_new("", text, strlen(text));
    if (!m)
        fail("mbx_msg_new", MBX_ENOMEM);
    int rc = mbx_send_to(address, &m, PATIENCE_MS);
    mbx_msg_free(m);
    return rc;
}

int
main(void)
{
    mbx_id self, found;
    mbx_msg *m = NULL;
    pthread_t thread;
    char id_address[MBX_ID_ADDRESS_LEN];

    /* A name that nobody registered: looking it up or sending to it gives
     * MBX_ENOENT, and the message stays with the sender. */
    expect(mbx_whereis("consumer", &found), MBX_ENOENT, "mbx_whereis");
    printf("producer: whereis(\"consumer\") before it exists -> MBX_ENOENT\n");
    expect(send_text("nobody", "anyone there?"), MBX_ENOENT, "send_to");
    printf("producer: send_to(\"nobody\") -> MBX_ENOENT\n");

    /* The producer's own mailbox, where the consumer says it is ready. */
    check(mbx_create(&self, NULL), "mbx_create");
    if (pthread_create(&thread, NULL, consumer, &self) != 0) {
        fprintf(stderr, "triotp_mailbox: cannot start a thread\n");
        return EXIT_FAILURE;
    }
    check(mbx_recv_kind(self, "started", &m, PATIENCE_MS), "wait started");
    mbx_msg_free(m);

    /* Look the name up (triotp's mailbox.resolve), then send by name. The
     * lookup is not needed for sending: mbx_send_to resolves the name. */
    check(mbx_whereis("consumer", &found), "mbx_whereis");
    printf("producer: found \"consumer\", sending \"Hello World!\"\n");
    check(send_text("consumer", "Hello World!"), "send_to consumer");

    if (pthread_join(thread, NULL) != 0) {
        fprintf(stderr, "triotp_mailbox: cannot join the consumer\n");
        return EXIT_FAILURE;
    }

    /* The consumer is gone. Its name, its id and its id address ("@" and
     * 16 hex digits) all give MBX_ENOENT now, never a crash. */
    expect(send_text("consumer", "still there?"), MBX_ENOENT, "send_to");
    printf("producer: send_to(\"consumer\") after it left -> MBX_ENOENT\n");
    mbx_id_format(found, id_address);
    expect(send_text(id_address, "still there?"), MBX_ENOENT, "send_to @id");
    printf("producer: send_to(its id address) after it left -> MBX_ENOENT\n");

    check(mbx_destroy(self), "mbx_destroy");
    return EXIT_SUCCESS;
}
