/* Address parsing: pure functions over a NUL-terminated string. */
#include "core/address.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Parses "@" + 16 hex digits. */
static int
parse_id(const char *s, mbx_id *out)
{
    mbx_id id = 0;
    size_t i;
    for (i = 0; i < 16; i++) {
        int c = (unsigned char)s[i];
        int v = isdigit(c)               ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (v < 0)
            return MBX_EINVAL;
        id = (id << 4) | (mbx_id)v;
    }
    if (s[i] != '\0' || id == 0)
        return MBX_EINVAL;
    *out = id;
    return 0;
}

int
mbx__address_valid_host(const char *h, size_t n)
{
    if (n == 0 || n > MBX_NAME_MAX)
        return 0;
    if (n == 1 && (h[0] == '.' || h[0] == '*'))
        return 1;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '.' && c != '_')
            return 0;
    }
    return 1;
}

/* Copies a scoped name, turning '\' separators into '/', and checks that
 * no component is empty, "." or "..". */
static int
copy_path(const char *src, char *dst)
{
    size_t n = strlen(src);
    if (n == 0 || n > MBX_NAME_MAX)
        return MBX_EINVAL;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        char c = src[i] == '\\' ? '/' : src[i];
        dst[i] = c;
        if (c != '/' && c != '\0')
            continue;
        size_t len = i - start;
        if (len == 0 || (len == 1 && dst[start] == '.') ||
            (len == 2 && dst[start] == '.' && dst[start + 1] == '.'))
            return MBX_EINVAL;
        start = i + 1;
    }
    return 0;
}

/* "//HOST/NAME" (sep '/') or "\\HOST\mailslot\NAME" (sep '\'). */
static int
parse_scoped(const char *s, char sep, struct mbx__address *out)
{
    const char *host = s + 2;
    const char *end = strchr(host, sep);
    if (!end || !mbx__address_valid_host(host, (size_t)(end - host)))
        return MBX_EINVAL;
    size_t hn = (size_t)(end - host);
    const char *path = end + 1;
    if (sep == '\\') {
        if (strncasecmp(path, "mailslot\\", 9) != 0)
            return MBX_EINVAL;
        path += 9;
    }
    memcpy(out->host, host, hn);
    out->host[hn] = '\0';
    out->scope = (hn == 1 && host[0] == '.') ? MBX__SCOPE_HOST : MBX__SCOPE_NET;
    return copy_path(path, out->name);
}

/* True if s starts with "scheme://" (letters, digits, '+', '-', '.'). */
static int
is_uri(const char *s)
{
    if (!isalpha((unsigned char)s[0]))
        return 0;
    size_t i = 1;
    while (isalnum((unsigned char)s[i]) || s[i] == '+' || s[i] == '-' ||
           s[i] == '.')
        i++;
    return strncmp(s + i, "://", 3) == 0;
}

int
mbx__address_parse(const char *text, struct mbx__address *out)
{
    if (!text || !out)
        return MBX_EINVAL;
    size_t n = strnlen(text, MBX_NAME_MAX + 1);
    if (n == 0 || n > MBX_NAME_MAX)
        return MBX_EINVAL;
    memset(out, 0, sizeof *out);
    if (text[0] == '@') {
        out->scope = MBX__SCOPE_ID;
        return parse_id(text + 1, &out->id);
    }
    if (text[0] == '/' && text[1] == '/')
        return parse_scoped(text, '/', out);
    if (text[0] == '\\' && text[1] == '\\')
        return parse_scoped(text, '\\', out);
    if (is_uri(text)) {
        out->scope = MBX__SCOPE_URI;
        memcpy(out->name, text, n + 1);
        return 0;
    }
    out->scope = MBX__SCOPE_LOCAL;
    memcpy(out->name, text, n + 1);
    return 0;
}
