/* auth.h: who is calling. Bearer tokens (random, stored only as SHA-256),
 * password hashes (libcrypt yescrypt), and the lookup of a token's user and
 * role in Redis.
 * Not here: which route needs which role (the route table, http.h) or
 * storing users (cold_store.h). */
#ifndef SNAP_AUTH_H
#define SNAP_AUTH_H

#include <stddef.h>
#include "snap/config.h"
#include "snap/err.h"

#define AUTH_TOKEN_LEN 43       /* base64url of 32 random bytes (256 bits) */
#define AUTH_HASH_HEX_LEN 64    /* SHA-256 in hex */
#define AUTH_ROLE_USER "user"
#define AUTH_ROLE_ADMIN "admin"

struct hot_store;

struct auth_identity {
    int valid;                                   /* 1 when a token was accepted */
    char username[SNAP_USERNAME_MAX + 1];
    char role[16];
    char token_hash[AUTH_HASH_HEX_LEN + 1];
};

/* Makes a new random token (NUL-terminated, AUTH_TOKEN_LEN chars) and its
 * hash. Returns SNAP_ERR only if the system RNG fails. */
int auth_token_new(char token[AUTH_TOKEN_LEN + 1], char hash_hex[AUTH_HASH_HEX_LEN + 1]);

/* SHA-256 hex of token[0..len). */
void auth_token_hash(const char *token, size_t len, char hash_hex[AUTH_HASH_HEX_LEN + 1]);

/* Extracts the token of an "Authorization: Bearer <token>" value. Returns
 * the token length, or -1 when the header is absent, not Bearer, or the
 * token is empty or longer than 256 bytes. *token points into header. */
long auth_bearer(const char *header, const char **token);

/* Resolves the Authorization header value to an identity via the sessions
 * in Redis. SNAP_EUNAUTH for a missing/malformed/unknown/revoked/expired
 * token, SNAP_EUNAVAIL when Redis cannot answer. */
int auth_identify(struct hot_store *hot, const char *authorization,
                  struct auth_identity *who, struct snap_err *err);

/* How many callers may wait for one of the few hash slots (beyond those
 * hashing); more are refused at once. waiting < 0 (the default): no bound.
 * Set once at start (SNAPTEXT_HASH_QUEUE). */
void auth_hash_queue_limit(long waiting);

/* Hashes password with a fresh salt (yescrypt). out holds 256 bytes.
 * SNAP_EUNAVAIL when the hash queue is full (answer 503). */
int auth_password_hash(const char *password, char out[256], struct snap_err *err);

/* 1 when password matches hash, 0 otherwise, -1 when the hash queue is
 * full and nothing was checked (answer 503). With hash == NULL it burns the
 * same time against a fixed dummy hash and returns 0, so an unknown user
 * costs as much as a wrong password. */
int auth_password_verify(const char *password, const char *hash);

#endif
