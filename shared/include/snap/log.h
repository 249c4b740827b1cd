/* log.h: one JSON object per line on stdout, for every event the service
 * reports (start, stop, each request, each store failure).
 *
 * The level is checked before anything is formatted. Strings that came from
 * a client are escaped by the JSON encoder and capped in length by the
 * caller's field (log_request) or by LOG_FIELD_MAX. Passwords, tokens and
 * message texts are never passed here. Thread-safe: lines never interleave.
 * Info and debug lines are buffered and written within about 10 ms (see
 * log.c); warnings and errors are written before the call returns. */
#ifndef SNAP_LOG_H
#define SNAP_LOG_H

#include <stdint.h>
#include "snap/config.h"

#define LOG_FIELD_MAX 256 /* longest string field kept in a log line */

/* Sets the service name stamped on every line and the minimum level. */
void log_init(const char *service, enum snap_log_level level);

/* Returns 1 when a line at level would be written. */
int log_enabled(enum snap_log_level level);

/* Writes {"ts":..., "level":..., "service":..., "event": event,
 * "request_id": request_id (omitted when NULL), "msg": <formatted>}. */
void log_event(enum snap_log_level level, const char *request_id, const char *event,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The access-log line of one request: method, route (the table's pattern,
 * not the raw path), status, latency in milliseconds, request id. */
void log_request(const char *method, const char *route, int status,
                 double latency_ms, const char *request_id);

#endif
