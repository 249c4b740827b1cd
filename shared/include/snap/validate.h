/* validate.h: the field rules of API.md (usernames, texts, passwords,
 * timeouts, ids), on raw bytes and on fields of a parsed JSON body.
 *
 * Each field_* function returns 0 and fills *out, or returns -1 and writes
 * into msg the sentence the 400 invalid_field reply shows, naming the field
 * and what is accepted. Wrong JSON types (objects such as {"$gt": ""},
 * arrays, numbers for strings, ...) are refused here, so no operator ever
 * reaches a store. Not here: reading or parsing the body (http.h). */
#ifndef SNAP_VALIDATE_H
#define SNAP_VALIDATE_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>

/* 1 when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * nothing above U+10FFFF). */
int utf8_valid(const char *s, size_t len);

/* 1 when s[0..len) is a valid username: 1..64 bytes of UTF-8, no
 * whitespace (ASCII or Unicode White_Space), no control (C0, DEL, C1), no '/'. */
int username_valid(const char *s, size_t len);

/* Required string field holding a valid username; out holds 65 bytes. */
int field_username(const cJSON *obj, const char *name, char *out, char *msg, size_t msglen);

/* Required string field of min..max bytes; *out points into obj. */
int field_string(const cJSON *obj, const char *name, size_t min, size_t max,
                 const char **out, size_t *len, char *msg, size_t msglen);

/* Optional integer number of seconds: absent or null gives dflt; 60, 60.0
 * and 6e1 are 60; 60.5, "60", true, 0, -5 and anything above max are
 * refused. */
int field_timeout(const cJSON *obj, const char *name, long dflt, long max, long *out,
                  char *msg, size_t msglen);

/* Parses a message id of a path: decimal digits only, 1..INT64_MAX.
 * "abc", "0", "-1", "1e3", "+5" and 10^30 are refused (returns -1). */
int id_parse(const char *s, size_t len, int64_t *out);

/* API.md's Idempotency-Key: 1..SNAP_IDEM_KEY_MAX of A-Z a-z 0-9 _ -.
 * 1 when s (NUL-terminated) is one. */
#define SNAP_IDEM_KEY_MAX 64
int idem_key_valid(const char *s);

/* A query parameter that must be an integer in [min, max]: 0 and *out set
 * when query (NULL: none) holds name=<digits> in range, 1 when name is
 * absent (*out untouched), -1 when it is there but not such a number. */
int query_long(const char *query, const char *name, long min, long max, long *out);

#endif
