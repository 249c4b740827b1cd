/* auth.c: who is calling — bearer tokens, password hashes, and the lookup
 * of a token's session in Redis.
 *
 * Tokens are 32 bytes from the OpenSSL RNG, sent base64url-encoded; only
 * their SHA-256 is ever stored (the session key in Redis), so a copy of
 * Redis does not yield usable tokens. Passwords are hashed with libcrypt's
 * yescrypt at its default cost, applied to the SHA-256 hex of the password
 * (libcrypt refuses passphrases over CRYPT_MAX_PASSPHRASE_SIZE = 512 bytes,
 * API.md allows 1024; pre-hashing gives every length one path) (about 12 ms and 16 MiB per hash
 * here); at most AUTH_HASH_PARALLEL hashes run at once, which bounds both the CPU a login flood can
 * take and the memory it can pin. At most auth_hash_queue_limit() more requests wait for a slot;
 * beyond that a request is refused at once (SNAP_EUNAVAIL, a 503), so a flood of logins cannot
 * hold every worker thread and starve the other routes. Not here: which route needs which role
 * (http.c), storing users (cold_store), counting failed logins (hot_store, users). */
#include "snap/auth.h"

#include <crypt.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <pthread.h>

#include "snap/session_store.h"

#define AUTH_HASH_PARALLEL 2
#define AUTH_TOKEN_MAX     256

static sem_t hash_slots;
static pthread_once_t hash_slots_once = PTHREAD_ONCE_INIT;
/* Callers holding or waiting for a slot, and how many may wait (-1: no bound). */
static atomic_long hash_in_line;
static atomic_long hash_queue_max = -1;

static void hash_slots_init(void)
{
    (void)sem_init(&hash_slots, 0, AUTH_HASH_PARALLEL);
}

void auth_hash_queue_limit(long waiting)
{
    atomic_store(&hash_queue_max, waiting < 0 ? -1 : waiting);
}

/* 0 with a slot held, or -1 (bounded only) when the line is full. */
static int hash_slot_take(int bounded)
{
    long max = atomic_load(&hash_queue_max);
    long ahead = atomic_fetch_add(&hash_in_line, 1);
    if (bounded && max >= 0 && ahead >= AUTH_HASH_PARALLEL + max) {
        atomic_fetch_sub(&hash_in_line, 1);
        return -1;
    }
    pthread_once(&hash_slots_once, hash_slots_init);
    while (sem_wait(&hash_slots) != 0 && errno == EINTR) {
    }
    return 0;
}

static void hash_slot_give(void)
{
    (void)sem_post(&hash_slots);
    atomic_fetch_sub(&hash_in_line, 1);
}

static void hex_encode(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

void auth_token_hash(const char *token, size_t len, char hash_hex[AUTH_HASH_HEX_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(token, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        /* Cannot happen with a working libcrypto; never match anything. */
        memset(hash_hex, '0', AUTH_HASH_HEX_LEN);
        hash_hex[AUTH_HASH_HEX_LEN] = '\0';
        return;
    }
    hex_encode(md, 32, hash_hex);
}

int auth_token_new(char token[AUTH_TOKEN_LEN + 1], char hash_hex[AUTH_HASH_HEX_LEN + 1])
{
    unsigned char raw[32];
    unsigned char b64[48];
    if (RAND_bytes(raw, sizeof raw) != 1) return SNAP_ERR;
    int n = EVP_EncodeBlock(b64, raw, sizeof raw); /* 44 chars, one '=' */
    if (n != 44) return SNAP_ERR;
    for (int i = 0; i < AUTH_TOKEN_LEN; i++) {
        unsigned char c = b64[i];
        token[i] = c == '+' ? '-' : c == '/' ? '_' : (char)c;
    }
    token[AUTH_TOKEN_LEN] = '\0';
    auth_token_hash(token, AUTH_TOKEN_LEN, hash_hex);
    return SNAP_OK;
}

long auth_bearer(const char *header, const char **token)
{
    if (!header) return -1;
    while (*header == ' ' || *header == '\t') header++;
    if (strncasecmp(header, "Bearer", 6) != 0 || (header[6] != ' ' && header[6] != '\t')) return -1;
    const char *t = header + 6;
    while (*t == ' ' || *t == '\t') t++;
    size_t len = strlen(t);
    while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t')) len--;
    if (len == 0 || len > AUTH_TOKEN_MAX) return -1;
    for (size_t i = 0; i < len; i++)
        if (!isgraph((unsigned char)t[i])) return -1;
    *token = t;
    return (long)len;
}

int auth_identify(struct hot_store *hot, const char *authorization, struct auth_identity *who,
                  struct snap_err *err)
{
    memset(who, 0, sizeof *who);
    const char *token;
    long len = auth_bearer(authorization, &token);
    if (len < 0)
        return snap_err_set(err, SNAP_EUNAUTH, "missing or malformed Authorization header");
    auth_token_hash(token, (size_t)len, who->token_hash);
    int rc = hot_session_get(hot, who->token_hash, who->username, who->role, err);
    if (rc == SNAP_ENOTFOUND)
        return snap_err_set(err, SNAP_EUNAUTH, "unknown, revoked or expired token");
    if (rc != SNAP_OK) return rc;
    who->valid = 1;
    return SNAP_OK;
}

/* The string actually given to crypt: SHA-256 hex of the password. */
static void password_prehash(const char *password, char out[AUTH_HASH_HEX_LEN + 1])
{
    auth_token_hash(password, strlen(password), out);
}

static int password_hash(const char *password, char out[256], int bounded, struct snap_err *err);

int auth_password_hash(const char *password, char out[256], struct snap_err *err)
{
    return password_hash(password, out, 1, err);
}

static int password_hash(const char *password, char out[256], int bounded, struct snap_err *err)
{
    char pre[AUTH_HASH_HEX_LEN + 1];
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof salt))
        return snap_err_set(err, SNAP_ERR, "crypt_gensalt failed: %s", strerror(errno));
    struct crypt_data *data = calloc(1, sizeof *data);
    if (!data) return snap_err_set(err, SNAP_ERR, "out of memory for crypt_data");
    int rc = SNAP_OK;
    if (hash_slot_take(bounded) != 0) {
        free(data);
        return snap_err_set(err, SNAP_EUNAVAIL, "every password hash slot is busy");
    }
    password_prehash(password, pre);
    const char *h = crypt_r(pre, salt, data);
    hash_slot_give();
    explicit_bzero(pre, sizeof pre);
    if (!h || h[0] == '*' || strlen(h) >= 256)
        rc = snap_err_set(err, SNAP_ERR, "crypt_r failed");
    else
        strcpy(out, h);
    explicit_bzero(data, sizeof *data);
    free(data);
    return rc;
}

/* A real hash of a random password, made once: verifying against it costs
 * what a real check costs and cannot succeed. */
static char dummy_hash[256];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void dummy_hash_init(void)
{
    char pw[AUTH_TOKEN_LEN + 1], unused[AUTH_HASH_HEX_LEN + 1];
    if (auth_token_new(pw, unused) != SNAP_OK ||
        password_hash(pw, dummy_hash, 0, NULL) != SNAP_OK)
        strcpy(dummy_hash,
               "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7");
}

int auth_password_verify(const char *password, const char *hash)
{
    struct crypt_data *data = calloc(1, sizeof *data);
    if (!data) return 0;
    if (!hash) pthread_once(&dummy_once, dummy_hash_init);
    const char *setting = hash ? hash : dummy_hash;
    char pre[AUTH_HASH_HEX_LEN + 1];
    if (hash_slot_take(1) != 0) {
        free(data);
        return -1;
    }
    password_prehash(password, pre);
    const char *h = crypt_r(pre, setting, data);
    hash_slot_give();
    explicit_bzero(pre, sizeof pre);
    int ok = 0;
    if (hash && h && h[0] != '*') {
        size_t n = strlen(hash);
        ok = strlen(h) == n && CRYPTO_memcmp(h, hash, n) == 0;
    }
    explicit_bzero(data, sizeof *data);
    free(data);
    return ok;
}
