/* metrics.c: request counters, a latency histogram per route and the
 * service's own counters, rendered as Prometheus text format 0.0.4.
 *
 * Every cell is a uint64_t updated with relaxed atomic adds, so any worker
 * thread may count without a lock; a render reads each cell once (a scrape
 * is a consistent-enough snapshot, as with every Prometheus client).
 * Label cardinality is fixed at start: routes come from the service's table
 * (plus "other"), statuses from a short list (plus "other").
 * Not here: serving /metrics (http.c). */
#include "snap/metrics.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Statuses that get their own label value; anything else is "other". */
static const int metric_statuses[] = {200, 201, 204, 400, 401, 403, 404,
                                      405, 409, 413, 415, 429, 500, 503};
#define NSTATUS (sizeof metric_statuses / sizeof metric_statuses[0] + 1)

/* Histogram upper bounds in seconds; the last bucket is +Inf. */
static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                       0.05,   0.1,   0.25,   0.5,   1,    2.5};
static const char *const bucket_labels[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                            "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5"};
#define NBOUNDS  (sizeof bucket_bounds / sizeof bucket_bounds[0])
#define NBUCKETS (NBOUNDS + 1)

struct metrics {
    char service[64];
    const char *const *route_names; /* borrowed: outlives the registry */
    size_t nroutes;                 /* index nroutes is "other"        */
    uint64_t counters[METRIC__COUNT];
    uint64_t *requests; /* [(nroutes + 1) * NSTATUS]                   */
    uint64_t *buckets;  /* [(nroutes + 1) * NBUCKETS], not cumulative  */
    uint64_t *sum_ns;   /* [nroutes + 1]                               */
};

struct metrics *metrics_new(const char *service, const char *const *route_names, size_t nroutes)
{
    struct metrics *m;
    size_t nr = nroutes + 1;

    if (nroutes > 4096 || (nroutes > 0 && route_names == NULL))
        return NULL; /* a route table is small; anything else is a bug */
    m = calloc(1, sizeof *m);
    if (m == NULL) return NULL;
    (void)snprintf(m->service, sizeof m->service, "%s", service ? service : "");
    m->route_names = route_names;
    m->nroutes = nroutes;
    m->requests = calloc(nr * NSTATUS, sizeof *m->requests);
    m->buckets = calloc(nr * NBUCKETS, sizeof *m->buckets);
    m->sum_ns = calloc(nr, sizeof *m->sum_ns);
    if (m->requests == NULL || m->buckets == NULL || m->sum_ns == NULL) {
        metrics_free(m);
        return NULL;
    }
    return m;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL) return;
    free(m->requests);
    free(m->buckets);
    free(m->sum_ns);
    free(m);
}

static size_t status_index(int status)
{
    size_t i;
    for (i = 0; i + 1 < NSTATUS; i++)
        if (metric_statuses[i] == status) return i;
    return NSTATUS - 1;
}

void metrics_observe(struct metrics *m, size_t route, int status, double seconds)
{
    size_t b;
    uint64_t ns;

    if (m == NULL) return;
    if (route > m->nroutes) route = m->nroutes;
    if (!(seconds >= 0)) /* negative or NaN */
        seconds = 0;
    for (b = 0; b < NBOUNDS; b++)
        if (seconds <= bucket_bounds[b]) break;
    ns = seconds < 1e9 ? (uint64_t)(seconds * 1e9 + 0.5) : (uint64_t)1e18;
    __atomic_fetch_add(&m->requests[route * NSTATUS + status_index(status)], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->buckets[route * NBUCKETS + b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&m->sum_ns[route], ns, __ATOMIC_RELAXED);
}

void metrics_add(struct metrics *m, enum metrics_counter c, unsigned long n)
{
    if (m == NULL || (int)c < 0 || (int)c >= (int)METRIC__COUNT) return;
    __atomic_fetch_add(&m->counters[c], (uint64_t)n, __ATOMIC_RELAXED);
}

/* ---- rendering ----------------------------------------------------------- */

/* A growing text buffer; after a failed allocation it stays failed. */
struct mbuf {
    char *p;
    size_t len, cap;
    int failed;
};

static int mbuf_reserve(struct mbuf *b, size_t extra)
{
    size_t want, cap;
    char *np;

    if (b->failed) return -1;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->failed = 1;
        return -1;
    }
    want = b->len + extra + 1;
    if (want <= b->cap) return 0;
    cap = b->cap ? b->cap : 4096;
    while (cap < want) cap *= 2;
    np = realloc(b->p, cap);
    if (np == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

static void mbuf_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void mbuf_printf(struct mbuf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (mbuf_reserve(b, 128) != 0) return;
    va_start(ap, fmt);
    n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n >= b->cap - b->len) { /* did not fit: grow and redo */
        if (mbuf_reserve(b, (size_t)n) != 0) return;
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t)n >= b->cap - b->len) {
            b->failed = 1;
            return;
        }
    }
    b->len += (size_t)n;
}

/* Appends s as a label value: backslash, double quote and newline escaped. */
static void mbuf_label(struct mbuf *b, const char *s)
{
    size_t i, n = strlen(s);

    if (mbuf_reserve(b, 2 * n) != 0) return;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' || c == '"') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = c;
        } else if (c == '\n') {
            b->p[b->len++] = '\\';
            b->p[b->len++] = 'n';
        } else {
            b->p[b->len++] = c;
        }
    }
    b->p[b->len] = '\0';
}

static void mbuf_raw(struct mbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (mbuf_reserve(b, n) != 0) return;
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* Writes `name{service="..."` (the caller closes the brace). */
static void series_start(struct mbuf *b, const struct metrics *m, const char *name)
{
    mbuf_raw(b, name);
    mbuf_raw(b, "{service=\"");
    mbuf_label(b, m->service);
    mbuf_raw(b, "\"");
}

static const char *route_name(const struct metrics *m, size_t r)
{
    if (r < m->nroutes && m->route_names[r] != NULL) return m->route_names[r];
    return "other";
}

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void render_requests(struct mbuf *b, const struct metrics *m)
{
    size_t r, s;

    mbuf_raw(b, "# HELP snaptext_http_requests_total HTTP requests answered, by route and "
                "status.\n# TYPE snaptext_http_requests_total counter\n");
    for (r = 0; r <= m->nroutes; r++) {
        for (s = 0; s < NSTATUS; s++) {
            uint64_t v = load(&m->requests[r * NSTATUS + s]);
            if (v == 0) continue; /* series appear on first use */
            series_start(b, m, "snaptext_http_requests_total");
            mbuf_raw(b, ",route=\"");
            mbuf_label(b, route_name(m, r));
            if (s + 1 < NSTATUS)
                mbuf_printf(b, "\",status=\"%d\"} %llu\n", metric_statuses[s],
                            (unsigned long long)v);
            else
                mbuf_printf(b, "\",status=\"other\"} %llu\n", (unsigned long long)v);
        }
    }
}

static void render_histogram(struct mbuf *b, const struct metrics *m)
{
    const char *name = "snaptext_http_request_duration_seconds";
    size_t r, k;

    mbuf_printf(b, "# HELP %s Time from request to reply, by route.\n# TYPE %s histogram\n", name,
                name);
    for (r = 0; r <= m->nroutes; r++) {
        uint64_t cum = 0, sum_ns = load(&m->sum_ns[r]);
        for (k = 0; k < NBUCKETS; k++) {
            cum += load(&m->buckets[r * NBUCKETS + k]);
            series_start(b, m, "snaptext_http_request_duration_seconds_bucket");
            mbuf_raw(b, ",route=\"");
            mbuf_label(b, route_name(m, r));
            mbuf_printf(b, "\",le=\"%s\"} %llu\n", k < NBOUNDS ? bucket_labels[k] : "+Inf",
                        (unsigned long long)cum);
        }
        series_start(b, m, "snaptext_http_request_duration_seconds_sum");
        mbuf_raw(b, ",route=\"");
        mbuf_label(b, route_name(m, r));
        mbuf_printf(b, "\"} %llu.%09llu\n", (unsigned long long)(sum_ns / 1000000000u),
                    (unsigned long long)(sum_ns % 1000000000u));
        series_start(b, m, "snaptext_http_request_duration_seconds_count");
        mbuf_raw(b, ",route=\"");
        mbuf_label(b, route_name(m, r));
        mbuf_printf(b, "\"} %llu\n", (unsigned long long)cum);
    }
}

static void render_counter(struct mbuf *b, const struct metrics *m, const char *name,
                           const char *help, enum metrics_counter c)
{
    mbuf_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    series_start(b, m, name);
    mbuf_printf(b, "} %llu\n", (unsigned long long)load(&m->counters[c]));
}

int metrics_render(const struct metrics *m, char **out, size_t *len)
{
    struct mbuf b = {NULL, 0, 0, 0};

    *out = NULL;
    *len = 0;
    if (mbuf_reserve(&b, 0) != 0) return -1;
    b.p[0] = '\0';
    if (m != NULL) {
        render_requests(&b, m);
        render_histogram(&b, m);

        mbuf_raw(&b, "# HELP snaptext_store_errors_total Failed calls to a store, by store.\n"
                     "# TYPE snaptext_store_errors_total counter\n");
        series_start(&b, m, "snaptext_store_errors_total");
        mbuf_printf(&b, ",store=\"redis\"} %llu\n",
                    (unsigned long long)load(&m->counters[METRIC_STORE_ERRORS_REDIS]));
        series_start(&b, m, "snaptext_store_errors_total");
        mbuf_printf(&b, ",store=\"cold\"} %llu\n",
                    (unsigned long long)load(&m->counters[METRIC_STORE_ERRORS_COLD]));

        render_counter(&b, m, "snaptext_messages_sent_total",
                       "Messages accepted and durably recorded.", METRIC_MESSAGES_SENT);
        render_counter(&b, m, "snaptext_messages_read_total", "Messages delivered to their reader.",
                       METRIC_MESSAGES_READ);
        render_counter(&b, m, "snaptext_messages_expired_total",
                       "Messages found expired in an inbox and dropped.", METRIC_MESSAGES_EXPIRED);
        render_counter(&b, m, "snaptext_messages_repaired_total",
                       "Messages put back into the hot index from the cold store.",
                       METRIC_MESSAGES_REPAIRED);
        render_counter(&b, m, "snaptext_unsends_total", "Messages withdrawn by their sender.",
                       METRIC_UNSENDS);
        render_counter(&b, m, "snaptext_status_reads_total", "Receipts served.",
                       METRIC_STATUS_READS);
        render_counter(&b, m, "snaptext_waits_started_total", "Reads that began to wait.",
                       METRIC_WAITS_STARTED);
        render_counter(&b, m, "snaptext_waits_woken_total",
                       "Waits ended by an arriving message.", METRIC_WAITS_WOKEN);
        render_counter(&b, m, "snaptext_waits_timed_out_total",
                       "Waits that ran out with nothing.", METRIC_WAITS_TIMED_OUT);
        render_counter(&b, m, "snaptext_waits_refused_total",
                       "Waits refused because SNAPTEXT_MAX_WAITERS were waiting.",
                       METRIC_WAITS_REFUSED);
        render_counter(&b, m, "snaptext_waits_abandoned_total",
                       "Waits whose client went away (nothing claimed).",
                       METRIC_WAITS_ABANDONED);
    }
    if (b.failed) {
        free(b.p);
        return -1;
    }
    *out = b.p;
    *len = b.len;
    return 0;
}
