/*
 * libFuzzer target: mbx__address_parse on arbitrary text.
 *
 * The input is made a C string at its first NUL. Parsing must fail with
 * MBX_EINVAL or produce an address that keeps the promises of
 * src/core/address.h: scoped names are 1..255 bytes of non-empty, non-"."
 * and non-".." '/'-separated components; ids are non-zero and were written
 * as 16 hex digits; local and URI names are the text itself. Parsing twice
 * gives the same result, and a scoped address written back in "//" form
 * parses to the same host and name.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/address.h"

/* Stops the run with the failed condition named; libFuzzer saves the
 * input. */
#define ASSERT(x)                                                              \
    do {                                                                       \
        if (!(x)) {                                                            \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #x);            \
            abort();                                                           \
        }                                                                      \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A NUL-terminated field of n bytes at most holds a string of 1..n-1. */
static size_t
field_len(const char *field, size_t n)
{
    ASSERT(memchr(field, '\0', n) != NULL);
    return strlen(field);
}

/* The name of a host or network address: '/'-separated components, none
 * empty, "." or "..", and no '\' left from the Windows form. */
static void
check_scoped_name(const char *name)
{
    size_t n = field_len(name, MBX_NAME_MAX + 1);
    ASSERT(n >= 1 && n <= MBX_NAME_MAX);
    ASSERT(!strchr(name, '\\'));
    const char *c = name;
    for (;;) {
        size_t len = strcspn(c, "/");
        ASSERT(len > 0);
        ASSERT(!(len == 1 && c[0] == '.'));
        ASSERT(!(len == 2 && c[0] == '.' && c[1] == '.'));
        if (c[len] == '\0')
            break;
        c += len + 1;
    }
}

/* Writes a scoped address back as "//host/name" and parses it again. */
static void
check_rewritten(const struct mbx__address *a)
{
    char text[2 * (MBX_NAME_MAX + 1) + 4];
    int n = snprintf(text, sizeof text, "//%s/%s", a->host, a->name);
    ASSERT(n > 0 && (size_t)n < sizeof text);
    struct mbx__address b;
    int rc = mbx__address_parse(text, &b);
    if (n > MBX_NAME_MAX) {
        ASSERT(rc == MBX_EINVAL);
        return;
    }
    ASSERT(rc == 0);
    ASSERT(b.scope == a->scope);
    ASSERT(strcmp(b.host, a->host) == 0 && strcmp(b.name, a->name) == 0);
}

static void
check_address(const char *text, const struct mbx__address *a)
{
    char id[MBX_ID_ADDRESS_LEN];
    switch (a->scope) {
    case MBX__SCOPE_LOCAL:
    case MBX__SCOPE_URI:
        ASSERT(strcmp(a->name, text) == 0);
        ASSERT(text[0] != '@');
        ASSERT(a->scope == MBX__SCOPE_LOCAL || strstr(text, "://"));
        break;
    case MBX__SCOPE_ID:
        ASSERT(a->id != 0);
        snprintf(id, sizeof id, "@%016" PRIx64, (uint64_t)a->id);
        ASSERT(strcasecmp(id, text) == 0);
        break;
    case MBX__SCOPE_HOST:
    case MBX__SCOPE_NET:
        ASSERT(field_len(a->host, sizeof a->host) >= 1);
        ASSERT((a->scope == MBX__SCOPE_HOST) == (strcmp(a->host, ".") == 0));
        ASSERT(text[0] == '/' || text[0] == '\\');
        check_scoped_name(a->name);
        check_rewritten(a);
        break;
    default:
        ASSERT(!"unknown scope");
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    ASSERT(text != NULL);
    if (size)
        memcpy(text, data, size);
    text[size] = '\0';
    struct mbx__address a, b;
    int rc = mbx__address_parse(text, &a);
    size_t n = strlen(text);
    if (n == 0 || n > MBX_NAME_MAX)
        ASSERT(rc == MBX_EINVAL);
    if (rc == 0) {
        check_address(text, &a);
        ASSERT(mbx__address_parse(text, &b) == 0);
        ASSERT(a.scope == b.scope && a.id == b.id);
        ASSERT(strcmp(a.host, b.host) == 0 && strcmp(a.name, b.name) == 0);
    } else {
        ASSERT(rc == MBX_EINVAL);
    }
    free(text);
    return 0;
}
