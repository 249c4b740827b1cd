/* err.c: fills the caller-owned struct snap_err of err.h and names the
 * status codes for log lines.
 * The reason written here is for logs only; it is always NUL-terminated and
 * never longer than the struct's buffer. Not here: turning a status into an
 * HTTP reply (http.c) or writing the log line (log.c). */
#include "snap/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* When vsnprintf cut the text, the cut may have landed inside a multi-byte
 * UTF-8 sequence (a username or a driver message can hold any UTF-8). Drop
 * the incomplete tail so the log's JSON encoder only ever sees whole
 * characters, then mark the cut with "...". */
static void mark_truncated(char *msg, size_t size)
{
    size_t len = strlen(msg);
    size_t start = len;

    /* Walk back over continuation bytes (10xxxxxx) to the lead byte. */
    while (start > 0 && ((unsigned char)msg[start - 1] & 0xC0) == 0x80) start--;
    if (start > 0 && ((unsigned char)msg[start - 1] & 0x80) != 0) {
        unsigned char lead = (unsigned char)msg[start - 1];
        size_t need = (lead & 0xE0) == 0xC0   ? 2
                      : (lead & 0xF0) == 0xE0 ? 3
                      : (lead & 0xF8) == 0xF0 ? 4
                                              : 1;
        if (len - (start - 1) < need)
            len = start - 1; /* incomplete last character: cut before it */
    }
    if (len > size - 4) len = size - 4;
    /* The "..." may itself have cut a character again; step back once more. */
    while (len > 0 && ((unsigned char)msg[len] & 0xC0) == 0x80) len--;
    memcpy(msg + len, "...", 4);
}

int snap_err_set(struct snap_err *err, int code, const char *fmt, ...)
{
    struct snap_err tmp;
    va_list ap;
    int n;

    if (err == NULL) return code;
    /* Format into a local record first: a caller may pass err->msg itself
     * as an argument ("...: %s", err->msg), and vsnprintf must not read and
     * write the same bytes. */
    va_start(ap, fmt);
    n = vsnprintf(tmp.msg, sizeof tmp.msg, fmt, ap);
    va_end(ap);
    if (n < 0) {
        /* An encoding error in the format: keep the code, say so. */
        (void)snprintf(tmp.msg, sizeof tmp.msg, "(unformattable error message)");
    } else if ((size_t)n >= sizeof tmp.msg) {
        mark_truncated(tmp.msg, sizeof tmp.msg);
    }
    memcpy(err->msg, tmp.msg, sizeof err->msg);
    err->code = code;
    return code;
}

void snap_err_clear(struct snap_err *err)
{
    if (err == NULL) return;
    err->code = SNAP_OK;
    err->msg[0] = '\0';
}

const char *snap_status_name(int code)
{
    switch (code) {
    case SNAP_OK:
        return "ok";
    case SNAP_ERR:
        return "error";
    case SNAP_ENOTFOUND:
        return "not_found";
    case SNAP_EUNAVAIL:
        return "unavailable";
    case SNAP_ECONFLICT:
        return "conflict";
    case SNAP_EINVAL:
        return "invalid";
    case SNAP_EUNAUTH:
        return "unauthorized";
    case SNAP_EEXIST:
        return "exists";
    case SNAP_EFULL:
        return "full";
    case SNAP_ETIMEOUT:
        return "timeout";
    case SNAP_EGONE:
        return "gone";
    default:
        return "unknown";
    }
}
