/* Error codes: one table behind mbx_strerror and mbx_strerror_name. */
#include <errno.h>

#include "mbx/mbx.h"

/* Codes with an errno equivalent must equal -errno. */
_Static_assert(MBX_EPERM == -EPERM, "EPERM");
_Static_assert(MBX_ENOENT == -ENOENT, "ENOENT");
_Static_assert(MBX_EAGAIN == -EAGAIN, "EAGAIN");
_Static_assert(MBX_ENOMEM == -ENOMEM, "ENOMEM");
_Static_assert(MBX_EEXIST == -EEXIST, "EEXIST");
_Static_assert(MBX_EINVAL == -EINVAL, "EINVAL");
_Static_assert(MBX_ERANGE == -ERANGE, "ERANGE");
_Static_assert(MBX_EBADMSG == -EBADMSG, "EBADMSG");
_Static_assert(MBX_EMSGSIZE == -EMSGSIZE, "EMSGSIZE");
_Static_assert(MBX_ENOTSUP == -EOPNOTSUPP, "EOPNOTSUPP");
_Static_assert(MBX_ETIMEDOUT == -ETIMEDOUT, "ETIMEDOUT");

#define MBX_ERRORS(X)                                                          \
    X(MBX_EPERM, "operation not permitted for this handle")                    \
    X(MBX_ENOENT, "no such mailbox, name or message")                          \
    X(MBX_EAGAIN, "resource temporarily unavailable")                          \
    X(MBX_ENOMEM, "out of memory")                                             \
    X(MBX_EEXIST, "name already registered")                                   \
    X(MBX_EINVAL, "invalid argument")                                          \
    X(MBX_ERANGE, "value out of range")                                        \
    X(MBX_EBADMSG, "malformed message")                                        \
    X(MBX_EMSGSIZE, "message too long")                                        \
    X(MBX_ENOTSUP, "not supported")                                            \
    X(MBX_ETIMEDOUT, "timed out")                                              \
    X(MBX_ECLOSED, "mailbox closed")                                           \
    X(MBX_ETYPE, "value has another type")

const char *
mbx_strerror(int err)
{
#define X(code, text)                                                          \
    if (err == code)                                                           \
        return text;
    MBX_ERRORS(X)
#undef X
    return err == 0 ? "success" : "unknown error";
}

const char *
mbx_strerror_name(int err)
{
#define X(code, text)                                                          \
    if (err == code)                                                           \
        return #code;
    MBX_ERRORS(X)
#undef X
    return err == 0 ? "MBX_OK" : "MBX_EUNKNOWN";
}

const char *
mbx_version(void)
{
    return MBX_VERSION_STRING;
}
