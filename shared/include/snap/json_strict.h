/* json_strict.h: reading a request body as the API's JSON — strict RFC 8259
 * (what cJSON would let through is refused first), one object, no
 * duplicate keys, bounded nesting. No civetweb here: the dispatcher
 * (http.c) reads the bytes and calls this; tests and fuzz targets call it
 * directly. */
#ifndef SNAP_JSON_STRICT_H
#define SNAP_JSON_STRICT_H

#include <stddef.h>
#include <cjson/cJSON.h>

/* Parses and checks a request body: valid UTF-8 (no lone surrogate escape),
 * a JSON object, no duplicate keys. Returns the object (caller owns it:
 * cJSON_Delete) or NULL with a reason in msg that the 400 invalid_json
 * reply can show. A string holding "\u0000" gives NULL with *nul_field set
 * to 1 (answer invalid_field: strings must be NUL-free). */
cJSON *json_strict_parse(const char *buf, size_t len, int *nul_field, char *msg, size_t msglen);

#endif
