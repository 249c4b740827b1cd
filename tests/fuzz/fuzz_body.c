/* fuzz_body.c: libFuzzer target for a request body, read the way ingest
 * and users read it: json_strict_parse() on the raw bytes, then the field
 * validators (field_username, field_string, field_timeout) on the object.
 *
 * Besides crashes, leaks and undefined behaviour (ASan + UBSan), it checks
 * what API.md promises about an accepted body against the references in
 * fuzz_oracle.h: the bytes were UTF-8, the result is an object without
 * duplicate top-level keys, every accepted field obeys its rule, and every
 * refusal comes with a NUL-terminated message that names the field.
 *
 * Inputs are handled on one worker thread with the stack a civetweb worker
 * has (Debian's libcivetweb gives its workers 100 KiB: SNAP_FUZZ_STACK
 * below), so input that recurses too deeply crashes here as it would in
 * ingest or users, instead of fitting in the 8 MiB of the main thread.
 * Not here: percent-decoding and ids (fuzz_path.c). */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "snap/config.h"
#include "snap/json_strict.h"
#include "snap/validate.h"

#include "fuzz_oracle.h"

#define TEXT_MAX 4096        /* SNAPTEXT_MAX_TEXT_BYTES default */
#define TIMEOUT_MAX 2592000L /* SNAPTEXT_MAX_TIMEOUT default   */
#ifndef SNAP_FUZZ_STACK
#define SNAP_FUZZ_STACK (100 * 1024) /* a civetweb worker's stack */
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every string in the tree (keys included) is well-formed UTF-8: no lone
 * surrogate escape got through as CESU-8 bytes. Depth is bounded by cJSON. */
static void check_strings(const cJSON *it)
{
    for (; it != NULL; it = it->next) {
        if (it->string != NULL)
            FUZZ_REQUIRE(ref_utf8_valid((const unsigned char *)it->string, strlen(it->string)),
                         "an accepted key is not UTF-8");
        if (cJSON_IsString(it) && it->valuestring != NULL)
            FUZZ_REQUIRE(ref_utf8_valid((const unsigned char *)it->valuestring,
                                        strlen(it->valuestring)),
                         "an accepted string is not UTF-8");
        if (it->child != NULL)
            check_strings(it->child);
    }
}

static void check_no_duplicate_keys(const cJSON *obj)
{
    const cJSON *a, *b;
    for (a = obj->child; a != NULL; a = a->next)
        for (b = a->next; b != NULL; b = b->next)
            FUZZ_REQUIRE(a->string == NULL || b->string == NULL || strcmp(a->string, b->string) != 0,
                         "an accepted body has a duplicate key");
}

/* A refusal leaves a message that is NUL-terminated inside msg. */
static void check_msg(const char *msg, size_t msglen, const char *name)
{
    FUZZ_REQUIRE(memchr(msg, '\0', msglen) != NULL, "message not NUL-terminated");
    if (name != NULL && msglen > 64)
        FUZZ_REQUIRE(strstr(msg, name) != NULL, "message does not name the field");
}

static void fuzz_username(const cJSON *obj, const char *name, size_t msglen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    char *out = malloc(SNAP_USERNAME_MAX + 1); /* exact size: ASan sees overflows */
    char *msg = malloc(msglen);
    int rc, want;

    if (out == NULL || msg == NULL)
        abort();
    memset(msg, 'M', msglen);
    rc = field_username(obj, name, out, msg, msglen);
    want = it != NULL && cJSON_IsString(it) && it->valuestring != NULL &&
           ref_username_valid((const unsigned char *)it->valuestring, strlen(it->valuestring));
    FUZZ_REQUIRE(rc == 0 || rc == -1, "field_username returned something else");
    FUZZ_REQUIRE((rc == 0) == want, "field_username disagrees with the username rule");
    if (rc == 0) {
        FUZZ_REQUIRE(strcmp(out, it->valuestring) == 0, "field_username copied another value");
    } else {
        check_msg(msg, msglen, name);
    }
    free(msg);
    free(out);
}

static void fuzz_string(const cJSON *obj, const char *name, size_t min, size_t max, size_t msglen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    const char *out = NULL;
    size_t len = 0, n;
    char *msg = malloc(msglen);
    int rc, want = 0;

    if (msg == NULL)
        abort();
    rc = field_string(obj, name, min, max, &out, &len, msg, msglen);
    if (it != NULL && cJSON_IsString(it) && it->valuestring != NULL) {
        n = strlen(it->valuestring);
        want = n >= min && n <= max;
    }
    FUZZ_REQUIRE(rc == 0 || rc == -1, "field_string returned something else");
    FUZZ_REQUIRE((rc == 0) == want, "field_string disagrees with its length rule");
    if (rc == 0) {
        FUZZ_REQUIRE(out == it->valuestring && len == strlen(out), "field_string length is off");
        FUZZ_REQUIRE(ref_utf8_valid((const unsigned char *)out, len), "field_string gave non-UTF-8");
    } else {
        check_msg(msg, msglen, name);
    }
    free(msg);
}

static void fuzz_timeout(const cJSON *obj, const char *name, long dflt, long max, size_t msglen)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
    long out = -12345;
    char *msg = malloc(msglen);
    int rc, want;
    double v;

    if (msg == NULL)
        abort();
    rc = field_timeout(obj, name, dflt, max, &out, msg, msglen);
    if (it == NULL || cJSON_IsNull(it)) {
        want = 1;
    } else if (cJSON_IsNumber(it)) {
        v = it->valuedouble; /* integral, 1..max; NaN fails every comparison */
        want = v >= 1.0 && v <= (double)max && v == (double)(long)v;
    } else {
        want = 0;
    }
    FUZZ_REQUIRE(rc == 0 || rc == -1, "field_timeout returned something else");
    FUZZ_REQUIRE((rc == 0) == want, "field_timeout disagrees with the timeout rule");
    if (rc == 0) {
        if (it == NULL || cJSON_IsNull(it)) {
            FUZZ_REQUIRE(out == dflt, "field_timeout default is off");
        } else {
            FUZZ_REQUIRE(out >= 1 && out <= max, "field_timeout gave a value out of range");
            FUZZ_REQUIRE((double)out == it->valuedouble, "field_timeout changed the value");
        }
    } else {
        check_msg(msg, msglen, name);
    }
    free(msg);
}

struct input {
    const uint8_t *data;
    size_t size;
};

static void one_input(const uint8_t *data, size_t size)
{
    char msg[160];
    int nul = -1;
    cJSON *obj;
    size_t small;

    memset(msg, 'M', sizeof msg);
    obj = json_strict_parse((const char *)data, size, &nul, msg, sizeof msg);
    FUZZ_REQUIRE(nul == 0 || nul == 1, "nul_field not set");
    if (obj == NULL) {
        FUZZ_REQUIRE(msg[0] != '\0', "a refused body has no message");
        check_msg(msg, sizeof msg, NULL);
        /* The same refusal with a tiny message buffer must stay in bounds. */
        small = 1 + (size > 0 ? data[0] % 8 : 0);
        {
            char *m = malloc(small);
            cJSON *again;
            if (m == NULL)
                abort();
            again = json_strict_parse((const char *)data, size, &nul, m, small);
            FUZZ_REQUIRE(again == NULL, "the same body parsed differently");
            check_msg(m, small, NULL);
            free(m);
        }
        return;
    }

    FUZZ_REQUIRE(nul == 0, "an accepted body reports a NUL");
    FUZZ_REQUIRE(cJSON_IsObject(obj), "an accepted body is not an object");
    FUZZ_REQUIRE(ref_utf8_valid(data, size), "a body that is not UTF-8 was accepted");
    check_no_duplicate_keys(obj);
    check_strings(obj->child);

    /* POST /chat (ingest) */
    fuzz_username(obj, "username", 160);
    fuzz_string(obj, "text", 1, TEXT_MAX, 160);
    fuzz_timeout(obj, "timeout", 60, TIMEOUT_MAX, 160);
    /* POST /users and /sessions (users) */
    fuzz_string(obj, "password", SNAP_PASSWORD_MIN, SNAP_PASSWORD_MAX, 160);
    /* Small limits and small message buffers: boundaries and truncation. */
    small = 1 + size % 7;
    fuzz_username(obj, "username", small);
    fuzz_string(obj, "text", 2, 5, small);
    fuzz_timeout(obj, "timeout", 60, 100, small);
    fuzz_timeout(obj, "t", 1, 1, 160);

    cJSON_Delete(obj);
}

/* The one worker thread and the input it is handed. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static const struct input *pending; /* set by the fuzzer, cleared when done */

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        const struct input *in;
        pthread_mutex_lock(&lock);
        while (pending == NULL)
            pthread_cond_wait(&changed, &lock);
        in = pending;
        pthread_mutex_unlock(&lock);

        one_input(in->data, in->size);

        pthread_mutex_lock(&lock);
        pending = NULL;
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pthread_t t;
    static int started;
    struct input in = {data, size};

    if (!started) {
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) != 0 ||
            pthread_attr_setstacksize(&attr, SNAP_FUZZ_STACK) != 0 ||
            pthread_create(&t, &attr, worker, NULL) != 0)
            abort();
        (void)pthread_attr_destroy(&attr);
        started = 1;
    }
    pthread_mutex_lock(&lock);
    pending = &in;
    pthread_cond_broadcast(&changed);
    while (pending != NULL)
        pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
    return 0;
}
