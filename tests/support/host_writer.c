/*
 * host_writer: a separate program that writes stamped messages to a host
 * mailslot, so tests can check writers started by fork+exec (a fresh
 * process image that shares nothing with the reader but the runtime
 * directory, found through MBX_RUNTIME_DIR in the environment).
 *
 *   host_writer NAME WRITER_ID COUNT [send|put]
 *
 * Writes COUNT stamps (see host_stamp.h) of writer WRITER_ID, round 0, to
 * "//./NAME" with mbx_send_to (default) or mbx_slot_put, waiting forever
 * for room. Exits 0 when all were accepted, 1 on a send error, 2 on bad
 * arguments.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host_stamp.h"
#include "mbx/mbx.h"

static int
usage(void)
{
    fprintf(stderr, "usage: host_writer NAME WRITER_ID COUNT [send|put]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    if (argc < 4 || argc > 5)
        return usage();
    char *end;
    unsigned long id = strtoul(argv[2], &end, 10);
    if (*end || id > UINT32_MAX)
        return usage();
    long count = strtol(argv[3], &end, 10);
    if (*end || count < 0)
        return usage();
    bool use_put = argc == 5 && strcmp(argv[4], "put") == 0;
    if (argc == 5 && !use_put && strcmp(argv[4], "send") != 0)
        return usage();
    char address[4 + MBX_NAME_MAX + 1];
    if (snprintf(address, sizeof address, "//./%s", argv[1]) >=
        (int)sizeof address)
        return usage();
    return hs_write_stamps(address, (uint32_t)id, count, 0, use_put, NULL) == 0
               ? 0
               : 1;
}
