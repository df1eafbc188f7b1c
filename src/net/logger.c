/*
 * The log handler (winsys's mailslot logging handler): formatted lines sent
 * as messages to one address, usually the network logger "//STAR/LOGGER"
 * (STAR = "*"). Logging never waits: a line that cannot be queued at once
 * is dropped and counted.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/address.h"
#include "mbx/mbx.h"

struct mbx_logger {
    int level;
    _Atomic uint64_t dropped;
    char address[MBX_NAME_MAX + 1];
};

const char *
mbx_log_level_name(int level)
{
    switch (level) {
    case MBX_LOG_DEBUG:
        return "DEBUG";
    case MBX_LOG_INFO:
        return "INFO";
    case MBX_LOG_WARNING:
        return "WARNING";
    case MBX_LOG_ERROR:
        return "ERROR";
    case MBX_LOG_CRITICAL:
        return "CRITICAL";
    default:
        return "LEVEL";
    }
}

int
mbx_logger_open(mbx_logger **out, const char *address, int level)
{
    struct mbx__address a;
    if (!out || level < 0 || mbx__address_parse(address, &a) < 0 ||
        a.scope == MBX__SCOPE_URI)
        return MBX_EINVAL;
    mbx_logger *lg = calloc(1, sizeof *lg);
    if (!lg)
        return MBX_ENOMEM;
    lg->level = level;
    strcpy(lg->address, address);
    *out = lg;
    return 0;
}

int
mbx_log(mbx_logger *lg, int level, const char *fmt, ...)
{
    if (!lg || !fmt)
        return MBX_EINVAL;
    if (level < lg->level)
        return 0;
    char line[1024];
    char *text = line;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return MBX_EINVAL;
    if ((size_t)n >= sizeof line) {
        if (!(text = malloc((size_t)n + 1)))
            return MBX_ENOMEM;
        va_start(ap, fmt);
        vsnprintf(text, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    size_t len = (size_t)n;
    while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    mbx_msg *m = mbx_msg_new(mbx_log_level_name(level), text, len);
    if (text != line)
        free(text);
    if (!m)
        return MBX_ENOMEM;
    int rc = mbx_send_to(lg->address, &m, 0);
    if (rc < 0) {
        mbx_msg_free(m);
        atomic_fetch_add(&lg->dropped, 1);
    }
    return rc == MBX_ETIMEDOUT ? MBX_EAGAIN : rc;
}

uint64_t
mbx_logger_dropped(const mbx_logger *lg)
{
    return lg ? atomic_load(&((mbx_logger *)lg)->dropped) : 0;
}

void
mbx_logger_close(mbx_logger *lg)
{
    free(lg);
}
