/* metrics.h: the counters and histogram every service exposes on
 * /metrics, in Prometheus text format.
 *
 * All updates are lock-free atomic increments, safe from any thread. Route
 * labels come from the service's route table (fixed at start), so label
 * cardinality is bounded whatever clients send.
 * Not here: serving /metrics (http.c). */
#ifndef SNAP_METRICS_H
#define SNAP_METRICS_H

#include <stddef.h>

enum metrics_counter {
    METRIC_STORE_ERRORS_REDIS,
    METRIC_STORE_ERRORS_COLD,
    METRIC_MESSAGES_SENT,
    METRIC_MESSAGES_READ,
    METRIC_MESSAGES_EXPIRED,     /* found expired in an inbox and dropped    */
    METRIC_MESSAGES_REPAIRED,    /* put back into the hot index from the cold store */
    METRIC_UNSENDS,              /* messages withdrawn by DELETE /chat/{id}  */
    METRIC_STATUS_READS,         /* receipts served by GET /chat/{id}/status */
    METRIC_WAITS_STARTED,        /* reads that began to wait (?wait=S)       */
    METRIC_WAITS_WOKEN,          /* waits ended by an arriving message       */
    METRIC_WAITS_TIMED_OUT,      /* waits that ran their S seconds out       */
    METRIC_WAITS_REFUSED,        /* waits refused: SNAPTEXT_MAX_WAITERS full  */
    METRIC_WAITS_ABANDONED,      /* waits whose client went away            */
    METRIC__COUNT
};

struct metrics;

/* route_names[i] labels route index i (e.g. "POST /chat"); the array and
 * its strings must outlive the registry. Returns NULL when out of memory.
 * The caller owns it: metrics_free(). */
struct metrics *metrics_new(const char *service, const char *const *route_names,
                            size_t nroutes);
void metrics_free(struct metrics *m); /* NULL is fine */

/* Counts one request of route index route (or nroutes for "other": unknown
 * paths and built-in routes) answered with status after seconds. */
void metrics_observe(struct metrics *m, size_t route, int status, double seconds);

void metrics_add(struct metrics *m, enum metrics_counter c, unsigned long n);

/* Renders everything. *out is heap memory owned by the caller (free()). */
int metrics_render(const struct metrics *m, char **out, size_t *len);

#endif
