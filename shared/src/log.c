/* log.c: the service's event log, one JSON object per line on stdout.
 *
 * Event lines are built with cJSON, so quoting and control characters are
 * escaped by the encoder; the request line, one per request, is written
 * straight into a buffer (fmt.h) with the same escapes (put_json_string).
 * Neither checks UTF-8, so every string field is first
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
#include "snap/fmt.h"
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

static void put_ts(struct fmt_buf *b);

/* "2026-11-23T10:15:00.123Z" */
static void format_ts(char out[32])
{
    struct fmt_buf b = fmt_buf_on(out, 32);

    put_ts(&b);
    (void)fmt_cstr(&b);
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

/* Appends s as a JSON string (quotes included); s is valid UTF-8
 * (clean_field), so only quotes, backslashes and control characters need
 * escapes. Runs that need none are copied whole. */
static void put_json_string(struct fmt_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    const char *run = s;

    fmt_char(b, '"');
    for (;; s++) {
        unsigned char c = (unsigned char)*s;
        const char *esc = NULL;
        char u[6];

        if (c >= 0x20 && c != '"' && c != '\\') continue;
        fmt_mem(b, run, (size_t)(s - run));
        run = s + 1;
        if (c == '\0') break;
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
            fmt_mem(b, esc, 2);
        } else {
            memcpy(u, "\\u00", 4);
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            fmt_mem(b, u, 6);
        }
    }
    fmt_char(b, '"');
}

/* "2026-11-23T10:15:00.123Z" into b. The date and time to the second are
 * formatted once a second per thread. */
static void put_ts(struct fmt_buf *b)
{
    static __thread int64_t cached_secs = -1;
    static __thread char cached[24];
    static __thread size_t cached_len;
    int64_t ms = clock_now_ms();
    int64_t secs = ms / 1000;

    if (secs != cached_secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        struct fmt_buf c = fmt_buf_on(cached, sizeof cached);

        if (gmtime_r(&t, &tm) == NULL) memset(&tm, 0, sizeof tm);
        fmt_dec(&c, (int64_t)tm.tm_year + 1900);
        fmt_char(&c, '-');
        fmt_2d(&c, tm.tm_mon + 1);
        fmt_char(&c, '-');
        fmt_2d(&c, tm.tm_mday);
        fmt_char(&c, 'T');
        fmt_hms(&c, &tm);
        cached_len = c.len;
        cached_secs = secs;
    }
    fmt_mem(b, cached, cached_len);
    fmt_char(b, '.');
    fmt_char(b, (char)('0' + ms % 1000 / 100));
    fmt_2d(b, (int)(ms % 100));
    fmt_char(b, 'Z');
}

/* One request line, written straight into a buffer: the same keys, in the
 * same order, as the cJSON lines of log_event. A cJSON object per request
 * cost more instructions than the whole floor request it logged, and
 * snprintf's format parsing was most of what was left (docs/PERFORMANCE.md,
 * the profile). */
void log_request(const char *method, const char *route, int status, double latency_ms,
                 const char *request_id)
{
    char line[8 * LOG_FIELD_MAX], msg[LOG_FIELD_MAX * 2];
    char cm[LOG_FIELD_MAX + 1], cr[LOG_FIELD_MAX + 1], cs[LOG_FIELD_MAX + 1];
    char cid[LOG_FIELD_MAX + 1], cmsg[LOG_FIELD_MAX + 1];
    struct fmt_buf b = fmt_buf_on(line, sizeof line), m = fmt_buf_on(msg, sizeof msg);

    if (!log_enabled(SNAP_LOG_INFO)) return;
    method = method ? method : "";
    route = route ? route : "";
    /* "<method> <route> -> <status>", method and route cut at 64 and 200 bytes */
    fmt_mem(&m, method, strnlen(method, 64));
    fmt_char(&m, ' ');
    fmt_mem(&m, route, strnlen(route, 200));
    fmt_mem(&m, " -> ", 4);
    fmt_dec(&m, status);
    (void)fmt_cstr(&m);
    clean_field(method, cm);
    clean_field(route, cr);
    clean_field(log_service, cs);
    clean_field(msg, cmsg);
    fmt_str(&b, "{\"ts\":\"");
    put_ts(&b);
    fmt_str(&b, "\",\"level\":\"info\",\"service\":");
    put_json_string(&b, cs);
    fmt_str(&b, ",\"event\":\"request\"");
    if (request_id != NULL) {
        clean_field(request_id, cid);
        fmt_str(&b, ",\"request_id\":");
        put_json_string(&b, cid);
    }
    fmt_str(&b, ",\"method\":");
    put_json_string(&b, cm);
    fmt_str(&b, ",\"route\":");
    put_json_string(&b, cr);
    fmt_str(&b, ",\"status\":");
    fmt_dec(&b, status);
    /* Three decimals are enough for a latency. */
    fmt_str(&b, ",\"latency_ms\":");
    fmt_fixed(&b, latency_ms > 0 && latency_ms < 1e12 ? (int64_t)(latency_ms * 1000.0 + 0.5) : 0,
              3);
    fmt_str(&b, ",\"msg\":");
    put_json_string(&b, cmsg);
    fmt_mem(&b, "}\n", 2);
    if (b.full) return;
    if (!buffer_line(line, b.len)) {
        (void)pthread_mutex_lock(&log_write_lock);
        flush_locked();
        write_all(line, b.len);
        (void)pthread_mutex_unlock(&log_write_lock);
    }
}
