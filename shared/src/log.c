/* log.c: the service's event log, one JSON object per line on stdout.
 *
 * Lines are built with cJSON, so quoting and control characters are escaped
 * by the encoder. cJSON does not check UTF-8, so every string field is first
 * cleaned here: capped at LOG_FIELD_MAX bytes on a character boundary, with
 * each byte that is not part of a well-formed UTF-8 sequence replaced by
 * U+FFFD.
 *
 * Writing: a request's line is appended to an in-memory buffer, and a
 * flusher thread writes what has gathered every LOG_FLUSH_MS, so a busy
 * service makes about a hundred write(2)s a second instead of one per
 * request, and its worker threads no longer queue on a lock around each
 * write (measured: a fifth of a service's context switches under load).
 * Warnings and errors are written at once, after everything buffered
 * before them, so order is kept and nothing that needs a human waits; at
 * exit the buffer is flushed. A crash loses at most the last LOG_FLUSH_MS
 * of info lines. Writes are serialized, so lines never interleave.
 * Not here: deciding what is secret (callers never pass passwords, tokens or
 * message texts). */
#include "snap/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "snap/clock.h"
#include "snap/validate.h"

static char log_service[64] = "snaptext";
static int log_min_level = SNAP_LOG_INFO; /* read with __atomic loads */
static pthread_mutex_t log_write_lock = PTHREAD_MUTEX_INITIALIZER; /* one writer at a time */

#define LOG_BUF_CAP  (128 * 1024) /* bytes gathered before a writer flushes itself */
#define LOG_FLUSH_MS 10

/* The buffer being filled, and the spare one the flusher writes from. */
static struct {
    pthread_mutex_t lock; /* guards fill, len and the flusher's wake-up */
    pthread_cond_t wake;
    char bufs[2][LOG_BUF_CAP];
    char *fill;
    size_t len;
    int running; /* the flusher thread exists: info lines may be buffered */
} lb = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Cleans in into out (LOG_FIELD_MAX + 1 bytes): valid UTF-8, at most
 * LOG_FIELD_MAX bytes, ending in "..." when it was cut. */
static void clean_field(const char *in, char out[LOG_FIELD_MAX + 1])
{
    static const char repl[] = "\xEF\xBF\xBD"; /* U+FFFD */
    const unsigned char *u = (const unsigned char *)in;
    size_t i = 0, o = 0;
    const size_t room = LOG_FIELD_MAX - 3; /* keep space for "..." */

    if (in == NULL) {
        out[0] = '\0';
        return;
    }
    o = strnlen(in, LOG_FIELD_MAX + 1);
    if (o <= LOG_FIELD_MAX && utf8_valid(in, o)) { /* the usual case */
        memcpy(out, in, o + 1);
        return;
    }
    o = 0;
    while (u[i] != '\0') {
        size_t n = 1;
        const char *piece = in + i;
        size_t plen;

        if (u[i] >= 0xC2 && u[i] <= 0xDF)
            n = 2;
        else if (u[i] >= 0xE0 && u[i] <= 0xEF)
            n = 3;
        else if (u[i] >= 0xF0 && u[i] <= 0xF4)
            n = 4;
        if (strnlen(in + i, n) == n && utf8_valid(in + i, n)) {
            plen = n;
        } else { /* a stray byte: replace it alone and resync on the next */
            piece = repl;
            plen = 3;
            n = 1;
        }
        if (o + plen > room) {
            /* Fits whole only if this is the last piece. */
            if (u[i + n] == '\0' && o + plen <= LOG_FIELD_MAX) {
                memcpy(out + o, piece, plen);
                o += plen;
            } else {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        memcpy(out + o, piece, plen);
        o += plen;
        i += n;
    }
    out[o] = '\0';
}

static int add_clean_string(cJSON *obj, const char *key, const char *value)
{
    char buf[LOG_FIELD_MAX + 1];
    clean_field(value, buf);
    return cJSON_AddStringToObject(obj, key, buf) != NULL ? 0 : -1;
}

/* "2026-11-23T10:15:00.123Z" */
static void format_ts(char out[32])
{
    int64_t ms = clock_now_ms();
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;

    if (gmtime_r(&secs, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm) == 0) {
        (void)snprintf(out, 32, "1970-01-01T00:00:00");
    }
    (void)snprintf(out + strlen(out), 32 - strlen(out), ".%03dZ", (int)(ms % 1000));
}

/* Starts a line with ts, level, service, event and request_id. */
static cJSON *line_new(enum snap_log_level level, const char *event, const char *request_id)
{
    cJSON *obj = cJSON_CreateObject();
    char ts[32];

    if (obj == NULL) return NULL;
    format_ts(ts);
    if (cJSON_AddStringToObject(obj, "ts", ts) == NULL ||
        cJSON_AddStringToObject(obj, "level", level_names[level]) == NULL ||
        add_clean_string(obj, "service", log_service) != 0 ||
        add_clean_string(obj, "event", event ? event : "") != 0 ||
        (request_id != NULL && add_clean_string(obj, "request_id", request_id) != 0)) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* Writes all of p[0..len) to stdout. Called with log_write_lock held. */
static void write_all(const char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return; /* stdout is gone; nothing better to do */
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Writes what the buffer holds. Called with log_write_lock held, so the
 * spare buffer is free: swap, then write outside lb.lock. */
static void flush_locked(void)
{
    char *full;
    size_t len;

    (void)pthread_mutex_lock(&lb.lock);
    full = lb.fill;
    len = lb.len;
    lb.fill = full == lb.bufs[0] ? lb.bufs[1] : lb.bufs[0];
    lb.len = 0;
    (void)pthread_mutex_unlock(&lb.lock);
    write_all(full, len);
}

static void log_flush(void)
{
    (void)pthread_mutex_lock(&log_write_lock);
    flush_locked();
    (void)pthread_mutex_unlock(&log_write_lock);
}

static void *flusher_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec nap = {0, LOG_FLUSH_MS * 1000000L};

        (void)pthread_mutex_lock(&lb.lock);
        while (lb.len == 0) (void)pthread_cond_wait(&lb.wake, &lb.lock);
        (void)pthread_mutex_unlock(&lb.lock);
        (void)nanosleep(&nap, NULL); /* let the next lines gather */
        log_flush();
    }
    return NULL;
}

static void flusher_start(void)
{
    pthread_t t;
    pthread_attr_t attr;

    lb.fill = lb.bufs[0];
    if (pthread_attr_init(&attr) != 0) return;
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, flusher_main, NULL) == 0 && atexit(log_flush) == 0)
        lb.running = 1; /* else every line is written at once, as before */
    (void)pthread_attr_destroy(&attr);
}

/* Appends line (len bytes, '\n' included) to the buffer; 0 when it did not
 * fit or nothing is flushing, and the caller writes it itself. */
static int buffer_line(const char *line, size_t len)
{
    int ok = 0;

    (void)pthread_mutex_lock(&lb.lock);
    if (lb.running && lb.len + len <= LOG_BUF_CAP) {
        memcpy(lb.fill + lb.len, line, len);
        if (lb.len == 0) (void)pthread_cond_signal(&lb.wake);
        lb.len += len;
        ok = 1;
    }
    (void)pthread_mutex_unlock(&lb.lock);
    return ok;
}

/* Encodes obj as one line, frees obj, and buffers the line (debug, info) or
 * writes it now after whatever is buffered (warn, error, or a full buffer). */
static void line_write(cJSON *obj, enum snap_log_level level)
{
    char *text = cJSON_PrintUnformatted(obj);
    size_t len;

    cJSON_Delete(obj);
    if (text == NULL) return; /* out of memory: the line is lost, the service goes on */
    len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the length is known from here on */
    if (level >= SNAP_LOG_WARN || !buffer_line(text, len + 1)) {
        (void)pthread_mutex_lock(&log_write_lock);
        flush_locked();
        write_all(text, len + 1);
        (void)pthread_mutex_unlock(&log_write_lock);
    }
    cJSON_free(text);
}

void log_init(const char *service, enum snap_log_level level)
{
    (void)pthread_once(&log_once, flusher_start);
    if (service != NULL) (void)snprintf(log_service, sizeof log_service, "%s", service);
    if ((int)level < (int)SNAP_LOG_DEBUG || (int)level > (int)SNAP_LOG_ERROR) level = SNAP_LOG_INFO;
    __atomic_store_n(&log_min_level, (int)level, __ATOMIC_RELAXED);
}

int log_enabled(enum snap_log_level level)
{
    return (int)level >= __atomic_load_n(&log_min_level, __ATOMIC_RELAXED) &&
           level <= SNAP_LOG_ERROR;
}

void log_event(enum snap_log_level level, const char *request_id, const char *event,
               const char *fmt, ...)
{
    char msg[LOG_FIELD_MAX * 2];
    va_list ap;
    cJSON *obj;

    if (!log_enabled(level)) return;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap); /* cut further by clean_field */
    va_end(ap);
    obj = line_new(level, event, request_id);
    if (obj == NULL) return;
    if (add_clean_string(obj, "msg", msg) != 0) {
        cJSON_Delete(obj);
        return;
    }
    line_write(obj, level);
}

/* Appends s as a JSON string (quotes included) at buf + *off, at most up to
 * cap; s is valid UTF-8 (clean_field), so only quotes, backslashes and
 * control characters need escapes. Returns -1 when it does not fit. */
static int put_json_string(char *buf, size_t cap, size_t *off, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = *off;

    if (o + 2 > cap) return -1;
    buf[o++] = '"';
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc != NULL) {
            if (o + 2 >= cap) return -1;
            buf[o++] = esc[0];
            buf[o++] = esc[1];
        } else if (c < 0x20) {
            if (o + 6 >= cap) return -1;
            memcpy(buf + o, "\\u00", 4);
            buf[o + 4] = hex[c >> 4];
            buf[o + 5] = hex[c & 15];
            o += 6;
        } else {
            if (o + 1 >= cap) return -1;
            buf[o++] = (char)c;
        }
    }
    if (o + 1 >= cap) return -1;
    buf[o++] = '"';
    *off = o;
    return 0;
}

/* One request line, written straight into a buffer: the same keys, in the
 * same order, as the cJSON lines of log_event. A cJSON object per request
 * cost more instructions than the whole floor request it logged
 * (docs/PERFORMANCE.md, the profile). */
void log_request(const char *method, const char *route, int status, double latency_ms,
                 const char *request_id)
{
    char line[8 * LOG_FIELD_MAX], ts[32], msg[LOG_FIELD_MAX * 2];
    char cm[LOG_FIELD_MAX + 1], cr[LOG_FIELD_MAX + 1], cs[LOG_FIELD_MAX + 1];
    char cid[LOG_FIELD_MAX + 1], cmsg[LOG_FIELD_MAX + 1];
    size_t o = 0;
    int n;

    if (!log_enabled(SNAP_LOG_INFO)) return;
    method = method ? method : "";
    route = route ? route : "";
    (void)snprintf(msg, sizeof msg, "%.64s %.200s -> %d", method, route, status);
    clean_field(method, cm);
    clean_field(route, cr);
    clean_field(log_service, cs);
    clean_field(msg, cmsg);
    format_ts(ts);
    n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"info\",\"service\":", ts);
    if (n < 0 || (size_t)n >= sizeof line) return;
    o = (size_t)n;
    if (put_json_string(line, sizeof line, &o, cs) != 0) return;
    n = snprintf(line + o, sizeof line - o, ",\"event\":\"request\"");
    if (n < 0 || (size_t)n >= sizeof line - o) return;
    o += (size_t)n;
    if (request_id != NULL) {
        clean_field(request_id, cid);
        n = snprintf(line + o, sizeof line - o, ",\"request_id\":");
        if (n < 0 || (size_t)n >= sizeof line - o) return;
        o += (size_t)n;
        if (put_json_string(line, sizeof line, &o, cid) != 0) return;
    }
    n = snprintf(line + o, sizeof line - o, ",\"method\":");
    if (n < 0 || (size_t)n >= sizeof line - o) return;
    o += (size_t)n;
    if (put_json_string(line, sizeof line, &o, cm) != 0) return;
    n = snprintf(line + o, sizeof line - o, ",\"route\":");
    if (n < 0 || (size_t)n >= sizeof line - o) return;
    o += (size_t)n;
    if (put_json_string(line, sizeof line, &o, cr) != 0) return;
    /* Three decimals are enough for a latency. */
    n = snprintf(line + o, sizeof line - o, ",\"status\":%d,\"latency_ms\":%.3f,\"msg\":", status,
                 latency_ms >= 0 ? latency_ms : 0.0);
    if (n < 0 || (size_t)n >= sizeof line - o) return;
    o += (size_t)n;
    if (put_json_string(line, sizeof line, &o, cmsg) != 0 || o + 2 > sizeof line) return;
    line[o++] = '}';
    line[o++] = '\n';
    if (!buffer_line(line, o)) {
        (void)pthread_mutex_lock(&log_write_lock);
        flush_locked();
        write_all(line, o);
        (void)pthread_mutex_unlock(&log_write_lock);
    }
}
