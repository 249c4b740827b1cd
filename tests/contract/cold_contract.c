/* cold_contract.c: the contract of the cold store (cold_store.h), run once
 * per driver. This suite is what defines the interface: a driver is right
 * when every check here passes against it, whatever its storage.
 *
 * It uses cold_store.h only (never sqlite3.h or mongoc.h) and reads the
 * store URL from SNAPTEXT_TEST_STORE. Ids and usernames are unique per run
 * (derived from the clock and the pid), so it can share a real MongoDB with
 * other runs; it never deletes anything. Never point it at production data:
 * its ids are large and would move cold_msg_max_id().
 * SNAPTEXT_TEST_STORE_FRESH=1 says the store was empty at start, which
 * enables the exact checks of an empty store.
 *
 * The rules asserted, in short:
 *   - put/get round-trips every field exactly: id, username, from (absent is
 *     has_from == 0 with from ""), text bytes and length (NUL-terminated on
 *     get), created_ms and expires_ms to the millisecond;
 *   - get of an unknown id is SNAP_ENOTFOUND and leaves *out zeroed;
 *   - a second put with an existing id is SNAP_ECONFLICT and changes nothing;
 *   - put_many stores a whole batch with one outcome per message: a taken
 *     id is that message's SNAP_ECONFLICT (the stored one unchanged, the
 *     others stored, the call SNAP_ECONFLICT); one invalid message refuses
 *     the batch before anything is written;
 *   - a put stores COLD_OPEN with closed_ms 0 and its idem; a second
 *     message with a taken idem is SNAP_EEXIST (not stored) until the
 *     first one's idem is released; find_idem finds the holder;
 *   - claim (the arbiter of delivery) wins exactly the candidates that are
 *     of the inbox, COLD_OPEN and unexpired, records READ, the claim time
 *     and the token, leaves every other field alone, never wins a message
 *     twice (also with many threads claiming the same ids at once), and
 *     claimed() gives back what a token won; a claim without a token wins
 *     the same way and no token finds what it won;
 *   - close moves only COLD_OPEN unexpired messages to UNSENT / REFUSED,
 *     counts what moved, and may be repeated; a closed message is never
 *     claimed;
 *   - scan_open pages through exactly the claimable messages created since
 *     a time, in (expires_ms, id) order;
 *   - max_id is at least every id put (exactly it on a fresh store, 0 when
 *     empty);
 *   - users round-trip; a taken username is SNAP_ECONFLICT; usernames are
 *     exact byte strings (case matters); set_role of an unknown user is
 *     SNAP_ENOTFOUND and of the same role is success;
 *   - every operation is safe from many threads at once;
 *   - bad arguments and bad URLs are SNAP_EINVAL, an unreachable store is a
 *     failure, never a crash.
 * Not here: faults that only one driver can stage (sqlite_faults.c). */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/err.h"
#include "../testing.h"

#define ID_SPAN 16384     /* ids this run may use: id_base + 1 .. + ID_SPAN-1 */
#define CONC_THREADS 8
#define CONC_PUTS 200

static const char *store_url;
static int store_fresh;
static struct cold_store *cs;
static int64_t id_base;
static int64_t id_seq;
static int64_t highest_put;   /* largest id this run stored */
static char tag[24];          /* unique per run, part of every username */
static int64_t t0;            /* a time with a non-zero millisecond part */
static void *not_null[1];     /* cold_open must overwrite *out even on failure */
#define SENTINEL ((struct cold_store *)(void *)not_null)

/* ---- helpers ----------------------------------------------------------------- */

static int64_t new_id(void)
{
    if (id_seq + 1 >= ID_SPAN) {
        fprintf(stderr, "cold_contract: out of ids for this run\n");
        exit(2);
    }
    return id_base + ++id_seq;
}

/* A username unique to this run: "ct<tag>-<suffix>". */
static void user_name(char out[SNAP_USERNAME_MAX + 1], const char *suffix)
{
    int n = snprintf(out, SNAP_USERNAME_MAX + 1, "ct%s-%s", tag, suffix);
    if (n < 0 || n > SNAP_USERNAME_MAX) {
        fprintf(stderr, "cold_contract: username too long\n");
        exit(2);
    }
}

/* Fills m for a put. text stays the caller's; from NULL means open mode. */
static void msg_init(struct cold_msg *m, int64_t id, const char *user_suffix,
                     const char *from_suffix, char *text, size_t len, int64_t created,
                     int64_t expires)
{
    memset(m, 0, sizeof *m);
    m->id = id;
    user_name(m->username, user_suffix);
    if (from_suffix != NULL) {
        m->has_from = 1;
        user_name(m->from, from_suffix);
    }
    m->text = text;
    m->text_len = len;
    m->created_ms = created;
    m->expires_ms = expires;
}

/* Puts m and records the id for the max_id checks. */
static int put(const struct cold_msg *m, struct snap_err *err)
{
    int rc = cold_msg_put(cs, m, err);
    if (rc == SNAP_OK && m->id > highest_put)
        highest_put = m->id;
    return rc;
}

/* Puts msgs[0..n) as one batch and records the ids stored. */
static int put_many(const struct cold_msg *msgs, size_t n, int *rcs, struct snap_err *err)
{
    int rc = cold_msg_put_many(cs, msgs, n, rcs, err);
    for (size_t i = 0; rc != SNAP_EINVAL && i < n; i++) {
        if (rcs[i] == SNAP_OK && msgs[i].id > highest_put) highest_put = msgs[i].id;
    }
    return rc;
}

/* Gets id and checks every field against want. */
static void check_roundtrip(const struct cold_msg *want)
{
    struct snap_err err;
    struct cold_msg got;
    int rc = cold_msg_get(cs, want->id, &got, &err);

    CHECK_EQ_INT(rc, SNAP_OK);
    if (rc != SNAP_OK) {
        fprintf(stderr, "  get %lld: %s\n", (long long)want->id, err.msg);
        return;
    }
    CHECK_EQ_INT(got.id, want->id);
    CHECK_EQ_STR(got.username, want->username);
    CHECK_EQ_INT(got.has_from, want->has_from ? 1 : 0);
    CHECK_EQ_STR(got.from, want->has_from ? want->from : "");
    CHECK_EQ_INT(got.text_len, want->text_len);
    CHECK(got.text != NULL);
    if (got.text != NULL && got.text_len == want->text_len) {
        CHECK(memcmp(got.text, want->text, want->text_len) == 0);
        CHECK(got.text[got.text_len] == '\0');
    }
    CHECK_EQ_INT(got.created_ms, want->created_ms);
    CHECK_EQ_INT(got.expires_ms, want->expires_ms);
    CHECK_EQ_INT(got.state, want->state);
    CHECK_EQ_INT(got.closed_ms, want->closed_ms);
    CHECK_EQ_STR(got.idem, want->idem);
    cold_msg_cleanup(&got);
    CHECK(got.text == NULL && got.id == 0);
}

/* ---- opening ----------------------------------------------------------------- */

static void test_open_bad_urls(void)
{
    static const char *const bad[] = {
        "", "sqlite:", "sqlite:/x.db", "SQLITE", "redis://127.0.0.1:6379/0",
        "sqlite://", "sqlite:///", "sqlite://:memory:", "sqlite:///tmp/x.db?mode=ro",
    };
    struct snap_err err;
    struct cold_store *s;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = SENTINEL; /* must be reset to NULL */
        snap_err_clear(&err);
        CHECK_EQ_INT(cold_open(bad[i], &s, &err), SNAP_EINVAL);
        CHECK(s == NULL);
        CHECK_EQ_INT(err.code, SNAP_EINVAL);
        CHECK(err.msg[0] != '\0');
        if (s != NULL)
            cold_close(s);
    }
    s = SENTINEL;
    CHECK_EQ_INT(cold_open(NULL, &s, &err), SNAP_EINVAL);
    CHECK(s == NULL);
    CHECK_EQ_INT(cold_open(store_url, NULL, &err), SNAP_EINVAL);
}

/* An unknown scheme names the accepted ones, and never echoes the rest of
 * the URL (it may hold a password). */
static void test_open_unknown_scheme_message(void)
{
    struct snap_err err;
    struct cold_store *s = NULL;

    CHECK_EQ_INT(cold_open("postgres://admin:s3cretpw@db.example:5432/x", &s, &err),
                 SNAP_EINVAL);
    CHECK(s == NULL);
    CHECK(strstr(err.msg, "sqlite://") != NULL);
    CHECK(strstr(err.msg, "mongodb://") != NULL);
    CHECK(strstr(err.msg, "s3cretpw") == NULL);
}

/* A store that cannot be created is a failure (SNAP_EUNAVAIL), not a crash,
 * and leaves nothing behind. */
static void test_open_unwritable_sqlite(void)
{
    char url[128], dir[64];
    struct snap_err err;
    struct cold_store *s = SENTINEL;
    struct stat sb;

    snprintf(dir, sizeof dir, "/nonexistent-snaptext-%s", tag);
    snprintf(url, sizeof url, "sqlite://%s/sub/cold.db", dir);
    CHECK_EQ_INT(cold_open(url, &s, &err), SNAP_EUNAVAIL);
    CHECK(s == NULL);
    CHECK_EQ_INT(err.code, SNAP_EUNAVAIL);
    CHECK(err.msg[0] != '\0');
    CHECK(stat(dir, &sb) != 0);
    if (s != NULL)
        cold_close(s);
}

static void test_driver_name_and_ping(void)
{
    struct snap_err err;

    if (strncmp(store_url, "sqlite://", 9) == 0)
        CHECK_EQ_STR(cold_driver_name(cs), "sqlite");
    else if (strncmp(store_url, "mongodb://", 10) == 0)
        CHECK_EQ_STR(cold_driver_name(cs), "mongodb");
    CHECK(cold_driver_name(NULL) != NULL);
    CHECK_EQ_INT(cold_ping(cs, &err), SNAP_OK);
}

/* Opening an existing store again runs ensure_schema again: idempotent, and
 * both handles see the same data. */
static void test_reopen_same_store(void)
{
    struct snap_err err;
    struct cold_store *again = NULL;
    struct cold_msg m, got;
    char text[] = "seen through a second handle";
    int64_t id = new_id();

    msg_init(&m, id, "reopen", NULL, text, strlen(text), t0, t0 + 60000);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    CHECK_EQ_INT(cold_open(store_url, &again, &err), SNAP_OK);
    if (again == NULL) {
        fprintf(stderr, "  reopen: %s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(cold_msg_get(again, id, &got, &err), SNAP_OK);
    CHECK_EQ_INT(got.text_len, strlen(text));
    cold_msg_cleanup(&got);
    cold_close(again);
    /* The first handle still works after the second is closed. */
    CHECK_EQ_INT(cold_ping(cs, &err), SNAP_OK);
}

/* ---- arguments (checked once, in cold_store.c, for every driver) ------------ */

static void test_bad_arguments(void)
{
    struct snap_err err;
    struct cold_msg m, got;
    struct cold_user u;
    char text[] = "x";
    int64_t ids[2] = {new_id(), 0};
    int64_t max = 0;

    msg_init(&m, new_id(), "args", NULL, text, 1, t0, t0 + 1000);
    CHECK_EQ_INT(cold_ping(NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_put(NULL, &m, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_put(cs, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(err.code, SNAP_EINVAL);

    m.id = 0;
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EINVAL);
    m.id = -7;
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EINVAL);
    m.id = new_id();
    m.username[0] = '\0';
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EINVAL);
    user_name(m.username, "args");
    m.has_from = 1; /* with an empty from */
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EINVAL);
    m.has_from = 0;
    m.text = NULL;
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EINVAL);
    m.text = text;
    m.text_len = 2; /* includes the NUL: texts are NUL-free */
    CHECK_EQ_INT(cold_msg_put(cs, &m, &err), SNAP_EINVAL);
    /* None of the refused puts stored anything. */
    CHECK_EQ_INT(cold_msg_get(cs, m.id, &got, &err), SNAP_ENOTFOUND);

    CHECK_EQ_INT(cold_msg_get(cs, 0, &got, &err), SNAP_EINVAL);
    CHECK(got.text == NULL);
    CHECK_EQ_INT(cold_msg_get(cs, -1, &got, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_get(cs, 1, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_get(NULL, 1, &got, &err), SNAP_EINVAL);

    CHECK_EQ_INT(cold_msg_close(cs, ids, 2, COLD_UNSENT, t0, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_close(cs, NULL, 1, COLD_UNSENT, t0, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_close(cs, NULL, 0, COLD_UNSENT, t0, NULL, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_close(cs, ids, 1, COLD_READ, t0, NULL, &err), SNAP_EINVAL);
    {
        struct cold_claim c = {.username = "", .token = "t", .ids = ids, .n = 1,
                               .claimed = ids};
        struct cold_msg_list l = {0};
        CHECK_EQ_INT(cold_msg_claim(cs, &c, 1, t0, &err), SNAP_EINVAL);
        c.username = "someone";
        c.token = "";
        CHECK_EQ_INT(cold_msg_claim(cs, &c, 1, t0, &err), SNAP_EINVAL);
        c.token = "t";
        c.claimed = NULL;
        CHECK_EQ_INT(cold_msg_claim(cs, &c, 1, t0, &err), SNAP_EINVAL);
        CHECK_EQ_INT(cold_msg_claim(cs, NULL, 0, t0, &err), SNAP_OK);
        CHECK_EQ_INT(cold_msg_claimed(cs, "someone", "", t0, &l, &err), SNAP_EINVAL);
        CHECK_EQ_INT(cold_msg_claimed(cs, "someone", "t", t0, NULL, &err), SNAP_EINVAL);
        CHECK_EQ_INT(cold_msg_find_idem(cs, "", &got, &err), SNAP_EINVAL);
        CHECK_EQ_INT(cold_msg_scan_open(cs, 0, t0, 0, 0, 0, &l, &err), SNAP_EINVAL);
        cold_msg_list_free(NULL);
    }
    CHECK_EQ_INT(cold_msg_max_id(cs, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_max_id(NULL, &max, &err), SNAP_EINVAL);

    memset(&u, 0, sizeof u);
    CHECK_EQ_INT(cold_user_put(cs, &u, &err), SNAP_EINVAL);
    user_name(u.username, "args");
    CHECK_EQ_INT(cold_user_put(cs, &u, &err), SNAP_EINVAL); /* no hash, no role */
    CHECK_EQ_INT(cold_user_put(cs, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_user_get(cs, "", &u, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_user_get(cs, NULL, &u, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_user_get(cs, "someone", NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_user_set_role(cs, "", "admin", &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_user_set_role(cs, u.username, "", &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_user_set_role(cs, u.username, NULL, &err), SNAP_EINVAL);

    /* The release functions accept NULL; a NULL err is allowed everywhere. */
    cold_close(NULL);
    cold_msg_cleanup(NULL);
    CHECK_EQ_INT(cold_msg_get(cs, 0, &got, NULL), SNAP_EINVAL);
}

/* ---- messages ---------------------------------------------------------------- */

static void test_fresh_store_is_empty(void)
{
    struct snap_err err;
    int64_t max = -1;

    if (!store_fresh)
        return;
    CHECK_EQ_INT(cold_msg_max_id(cs, &max, &err), SNAP_OK);
    CHECK_EQ_INT(max, 0);
}

static void test_msg_roundtrip_with_from(void)
{
    struct snap_err err;
    struct cold_msg m;
    char text[] = "This is a message";

    msg_init(&m, new_id(), "alice", "bob", text, strlen(text), t0, t0 + 60000);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    check_roundtrip(&m);
}

/* Open mode: no sender. Whatever is in from when has_from == 0 is not kept. */
static void test_msg_roundtrip_open_mode(void)
{
    struct snap_err err;
    struct cold_msg m;
    char text[] = "sent without a token";

    msg_init(&m, new_id(), "alice", NULL, text, strlen(text), t0 + 1, t0 + 2);
    memcpy(m.from, "leftover", 9);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    m.from[0] = '\0';
    check_roundtrip(&m);
}

/* Non-ASCII everywhere: recipient, sender and text. */
static void test_msg_roundtrip_utf8(void)
{
    struct snap_err err;
    struct cold_msg m;
    char text[] = "h\xc3\xa9llo \xf0\x9f\x91\xbb\xf0\x9f\x94\xa5 \"quoted\" 'single' \\back\\slash "
                  "<script>alert(1)</script> {\"$gt\": \"\"} '; DROP TABLE messages; --\n"
                  "\t\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xe2\x80\xa8 %s %n "
                  "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d";

    msg_init(&m, new_id(), "j\xc3\xbcrgen", "\xf0\x9f\x98\x80sender", text, strlen(text), t0,
             t0 + 999);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    check_roundtrip(&m);
}

/* The largest text the API allows (4096 bytes), with multi-byte characters
 * up to the last byte, and the smallest (1 byte). */
static void test_msg_roundtrip_sizes(void)
{
    static const char piece[] = "\xf0\x9f\x8c\x8a wave \"q\" \xc3\xa9 "; /* 18 bytes */
    struct snap_err err;
    struct cold_msg m;
    char big[4096 + 1], one[] = "!";
    size_t len = 0;

    while (len + sizeof piece - 1 <= 4096) {
        memcpy(big + len, piece, sizeof piece - 1);
        len += sizeof piece - 1;
    }
    while (len < 4096)
        big[len++] = 'z';
    big[len] = '\0';
    msg_init(&m, new_id(), "big", "bob", big, 4096, t0, t0 + 5);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    check_roundtrip(&m);

    msg_init(&m, new_id(), "small", NULL, one, 1, t0, t0 + 5);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    check_roundtrip(&m);
}

/* Times far apart keep their exact millisecond values (no rounding to
 * seconds, no 32-bit truncation, no time-zone shift). */
static void test_msg_roundtrip_times(void)
{
    struct snap_err err;
    struct cold_msg m;
    char text[] = "timing";

    msg_init(&m, new_id(), "times", NULL, text, strlen(text), INT64_C(1),
             INT64_C(253402300799999)); /* 9999-12-31 23:59:59.999 */
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    check_roundtrip(&m);

    msg_init(&m, new_id(), "times", NULL, text, strlen(text), INT64_C(4102444800123),
             INT64_C(4102444800124));
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    check_roundtrip(&m);
}

static void test_msg_get_unknown(void)
{
    struct snap_err err;
    struct cold_msg got;
    int64_t id = new_id(); /* never put */

    memset(&got, 0x5a, sizeof got);
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_msg_get(cs, id, &got, &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(err.code, SNAP_ENOTFOUND);
    CHECK(got.text == NULL);
    CHECK_EQ_INT(got.id, 0);
    CHECK_EQ_INT(got.text_len, 0);
    cold_msg_cleanup(&got); /* safe after a failed get */
}

/* A duplicate id is refused and the first message stays as it was. */
static void test_msg_duplicate_id(void)
{
    struct snap_err err;
    struct cold_msg first, second;
    char t1[] = "first", t2[] = "second, must not replace the first";
    int64_t id = new_id();

    msg_init(&first, id, "dup", "bob", t1, strlen(t1), t0, t0 + 60000);
    msg_init(&second, id, "other", NULL, t2, strlen(t2), t0 + 7, t0 + 8);
    CHECK_EQ_INT(put(&first, &err), SNAP_OK);
    snap_err_clear(&err);
    CHECK_EQ_INT(put(&second, &err), SNAP_ECONFLICT);
    CHECK_EQ_INT(err.code, SNAP_ECONFLICT);
    check_roundtrip(&first);
}

/* A batch is stored whole, every field of every message exact, each with
 * its own outcome SNAP_OK. */
static void test_msg_put_many_roundtrip(void)
{
    struct snap_err err;
    struct cold_msg batch[4];
    int rcs[4];
    char t1[] = "first of a batch", t2[] = "open mode in a batch",
         t3[] = "h\xc3\xa9llo \xf0\x9f\x91\xbb \"quoted\" {\"$gt\": \"\"}", t4[] = "!";

    msg_init(&batch[0], new_id(), "many", "bob", t1, strlen(t1), t0, t0 + 60000);
    msg_init(&batch[1], new_id(), "many", NULL, t2, strlen(t2), t0 + 1, t0 + 2);
    msg_init(&batch[2], new_id(), "j\xc3\xbcrgen", "\xf0\x9f\x98\x80sender", t3, strlen(t3),
             INT64_C(1), INT64_C(253402300799999));
    msg_init(&batch[3], new_id(), "many2", NULL, t4, 1, t0, t0 + 5);
    for (size_t i = 0; i < 4; i++) rcs[i] = 12345; /* must be overwritten */
    CHECK_EQ_INT(put_many(batch, 4, rcs, &err), SNAP_OK);
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ_INT(rcs[i], SNAP_OK);
        check_roundtrip(&batch[i]);
    }
}

/* One id of the batch already stored: that message alone is SNAP_ECONFLICT
 * and leaves the stored one as it was; the others are stored; the call
 * returns SNAP_ECONFLICT. */
static void test_msg_put_many_conflict(void)
{
    struct snap_err err;
    struct cold_msg first, batch[3];
    int rcs[3] = {12345, 12345, 12345};
    char t1[] = "stored before the batch", t2[] = "must not replace the stored one",
         t3[] = "before the taken id", t4[] = "after the taken id";
    int64_t taken = new_id();

    msg_init(&first, taken, "dupmany", "bob", t1, strlen(t1), t0, t0 + 60000);
    CHECK_EQ_INT(put(&first, &err), SNAP_OK);

    msg_init(&batch[0], new_id(), "dupmany", NULL, t3, strlen(t3), t0, t0 + 1000);
    msg_init(&batch[1], taken, "other", NULL, t2, strlen(t2), t0 + 7, t0 + 8);
    msg_init(&batch[2], new_id(), "dupmany", "carol", t4, strlen(t4), t0 + 2, t0 + 3000);
    snap_err_clear(&err);
    CHECK_EQ_INT(put_many(batch, 3, rcs, &err), SNAP_ECONFLICT);
    CHECK_EQ_INT(err.code, SNAP_ECONFLICT);
    CHECK(err.msg[0] != '\0');
    CHECK_EQ_INT(rcs[0], SNAP_OK);
    CHECK_EQ_INT(rcs[1], SNAP_ECONFLICT);
    CHECK_EQ_INT(rcs[2], SNAP_OK);
    check_roundtrip(&first); /* text, username and the rest unchanged */
    check_roundtrip(&batch[0]);
    check_roundtrip(&batch[2]);
}

/* Arguments: an empty batch is success; no messages or no results is
 * SNAP_EINVAL; one invalid message refuses the whole batch before anything
 * is written. */
static void test_msg_put_many_arguments(void)
{
    struct snap_err err;
    struct cold_msg batch[3], got;
    int rcs[3];
    char text[] = "never stored";

    msg_init(&batch[0], new_id(), "manyargs", NULL, text, strlen(text), t0, t0 + 1000);
    msg_init(&batch[1], new_id(), "manyargs", NULL, text, strlen(text), t0, t0 + 1000);
    msg_init(&batch[2], new_id(), "manyargs", "bob", text, strlen(text), t0, t0 + 1000);

    CHECK_EQ_INT(cold_msg_put_many(cs, batch, 0, rcs, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_put_many(cs, NULL, 0, NULL, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_put_many(cs, NULL, 2, rcs, &err), SNAP_EINVAL);
    CHECK_EQ_INT(err.code, SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_put_many(cs, batch, 2, NULL, &err), SNAP_EINVAL);
    CHECK_EQ_INT(cold_msg_put_many(NULL, batch, 3, rcs, &err), SNAP_EINVAL);

    batch[1].id = 0;
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_msg_put_many(cs, batch, 3, rcs, &err), SNAP_EINVAL);
    CHECK_EQ_INT(err.code, SNAP_EINVAL);
    batch[1].id = -3;
    CHECK_EQ_INT(cold_msg_put_many(cs, batch, 3, rcs, &err), SNAP_EINVAL);
    batch[1].id = new_id();
    batch[2].text = NULL; /* the last one invalid: the first two not stored either */
    CHECK_EQ_INT(cold_msg_put_many(cs, batch, 3, rcs, &err), SNAP_EINVAL);
    for (size_t i = 0; i < 3; i++) {
        CHECK_EQ_INT(cold_msg_get(cs, batch[i].id, &got, &err), SNAP_ENOTFOUND);
        cold_msg_cleanup(&got);
    }
}

/* Claims ids[0..n) for user with token at now; returns how many were won,
 * the won ids in won[] (room for n). */
static size_t claim_ids(const char *user, const char *token, const int64_t *ids, size_t n,
                        int64_t now, int64_t *won, int *rc)
{
    struct snap_err err;
    struct cold_claim c = {.username = user, .token = token, .ids = ids, .n = n, .claimed = won};

    *rc = cold_msg_claim(cs, &c, 1, now, &err);
    if (*rc != SNAP_OK) fprintf(stderr, "  claim: %s\n", err.msg);
    CHECK_EQ_INT(c.rc, *rc);
    return c.n_claimed;
}

static void test_msg_put_is_open(void)
{
    struct snap_err err;
    struct cold_msg m;
    char text[] = "fresh";

    msg_init(&m, new_id(), "open", NULL, text, strlen(text), t0, t0 + 60000);
    m.state = COLD_READ; /* ignored: a put is always open */
    m.closed_ms = t0 + 5;
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    m.state = COLD_OPEN;
    m.closed_ms = 0;
    check_roundtrip(&m);
}

/* The claim wins exactly the candidates a read may have. */
static void test_claim_semantics(void)
{
    struct cold_msg a, gone, other, d, unsent;
    struct snap_err err;
    char text[] = "read me once";
    int64_t cand[6], won[8];
    int rc;

    msg_init(&a, new_id(), "cl", "bob", text, strlen(text), t0, t0 + 60000);
    msg_init(&gone, new_id(), "cl", NULL, text, strlen(text), t0, t0 + 500);
    msg_init(&other, new_id(), "cl-other", NULL, text, strlen(text), t0, t0 + 60000);
    msg_init(&d, new_id(), "cl", NULL, text, strlen(text), t0, t0 + 60000);
    msg_init(&unsent, new_id(), "cl", NULL, text, strlen(text), t0, t0 + 60000);
    CHECK_EQ_INT(put(&a, &err), SNAP_OK);
    CHECK_EQ_INT(put(&gone, &err), SNAP_OK);
    CHECK_EQ_INT(put(&other, &err), SNAP_OK);
    CHECK_EQ_INT(put(&d, &err), SNAP_OK);
    CHECK_EQ_INT(put(&unsent, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_close(cs, &unsent.id, 1, COLD_UNSENT, t0 + 900, NULL, &err), SNAP_OK);

    /* Given in any order, with an unknown id among them. */
    cand[0] = d.id;
    cand[1] = gone.id;
    cand[2] = new_id();
    cand[3] = other.id;
    cand[4] = unsent.id;
    cand[5] = a.id;
    CHECK_EQ_INT(claim_ids(a.username, "tok-1", cand, 6, t0 + 1000, won, &rc), 2);
    CHECK_EQ_INT(rc, SNAP_OK);
    CHECK_EQ_INT(won[0], a.id); /* ascending */
    CHECK_EQ_INT(won[1], d.id);
    a.state = d.state = COLD_READ;
    a.closed_ms = d.closed_ms = t0 + 1000;
    check_roundtrip(&a); /* text, from, expires_ms untouched */
    check_roundtrip(&d);
    check_roundtrip(&gone);  /* expired unread: stays open, never won */
    check_roundtrip(&other); /* another inbox */
    unsent.state = COLD_UNSENT;
    unsent.closed_ms = t0 + 900;
    check_roundtrip(&unsent);

    /* Never twice: not by another token, not by the same one. */
    CHECK_EQ_INT(claim_ids(a.username, "tok-2", cand, 6, t0 + 1001, won, &rc), 0);
    CHECK_EQ_INT(claim_ids(a.username, "tok-1", cand, 6, t0 + 1002, won, &rc), 0);
    check_roundtrip(&a);
    /* The other inbox's message is still there for its own reader. */
    CHECK_EQ_INT(claim_ids(other.username, "tok-3", cand, 6, t0 + 1003, won, &rc), 1);
    CHECK_EQ_INT(won[0], other.id);
}

/* A claim without a token (a read without an Idempotency-Key): it wins
 * like any other, once, and claimed() finds it under no token. */
static void test_claim_without_token(void)
{
    struct cold_msg a, b;
    struct cold_msg_list l = {0};
    struct snap_err err;
    char text[] = "nobody retries this";
    int64_t cand[2], won[4];
    int rc;

    msg_init(&a, new_id(), "clnt", NULL, text, strlen(text), t0, t0 + 60000);
    msg_init(&b, new_id(), "clnt", NULL, text, strlen(text), t0, t0 + 60000);
    CHECK_EQ_INT(put(&a, &err), SNAP_OK);
    CHECK_EQ_INT(put(&b, &err), SNAP_OK);
    cand[0] = b.id;
    cand[1] = a.id;
    CHECK_EQ_INT(claim_ids(a.username, NULL, cand, 2, t0 + 3000, won, &rc), 2);
    CHECK_EQ_INT(rc, SNAP_OK);
    CHECK_EQ_INT(won[0], a.id);
    CHECK_EQ_INT(won[1], b.id);
    a.state = b.state = COLD_READ;
    a.closed_ms = b.closed_ms = t0 + 3000;
    check_roundtrip(&a);
    check_roundtrip(&b);
    CHECK_EQ_INT(claim_ids(a.username, NULL, cand, 2, t0 + 3001, won, &rc), 0);
    CHECK_EQ_INT(claim_ids(a.username, "tok-late", cand, 2, t0 + 3002, won, &rc), 0);
    CHECK_EQ_INT(cold_msg_claimed(cs, a.username, "~", t0, &l, &err), SNAP_OK);
    CHECK_EQ_INT(l.len, 0);
    cold_msg_list_free(&l);
}

/* claimed(): what a token won, oldest first, for the retry of a read. */
static void test_claimed_lookup(void)
{
    struct cold_msg a, b;
    struct cold_msg_list l = {0};
    struct snap_err err;
    char ta[] = "first \xf0\x9f\x93\xa8", tb[] = "second";
    int64_t cand[2], won[4];
    int rc;

    msg_init(&a, new_id(), "clk", NULL, ta, strlen(ta), t0, t0 + 60000);
    msg_init(&b, new_id(), "clk", "carol", tb, strlen(tb), t0, t0 + 60000);
    CHECK_EQ_INT(put(&b, &err), SNAP_OK);
    CHECK_EQ_INT(put(&a, &err), SNAP_OK);
    cand[0] = b.id;
    cand[1] = a.id;
    CHECK_EQ_INT(claim_ids(a.username, "key-A", cand, 2, t0 + 2000, won, &rc), 2);

    CHECK_EQ_INT(cold_msg_claimed(cs, a.username, "key-A", t0 + 1000, &l, &err), SNAP_OK);
    CHECK_EQ_INT(l.len, 2);
    if (l.len == 2) {
        CHECK_EQ_INT(l.items[0].id, a.id);
        CHECK_EQ_INT(l.items[0].text_len, strlen(ta));
        CHECK(memcmp(l.items[0].text, ta, strlen(ta)) == 0);
        CHECK_EQ_INT(l.items[1].id, b.id);
        CHECK_EQ_STR(l.items[1].text, tb);
        CHECK_EQ_INT(l.items[1].state, COLD_READ);
        CHECK_EQ_INT(l.items[1].closed_ms, t0 + 2000);
    }
    cold_msg_list_free(&l);
    CHECK(l.items == NULL && l.len == 0);
    /* Too old for the window, another token, another inbox: nothing. */
    CHECK_EQ_INT(cold_msg_claimed(cs, a.username, "key-A", t0 + 2001, &l, &err), SNAP_OK);
    CHECK_EQ_INT(l.len, 0);
    CHECK_EQ_INT(cold_msg_claimed(cs, a.username, "key-B", t0, &l, &err), SNAP_OK);
    CHECK_EQ_INT(l.len, 0);
    CHECK_EQ_INT(cold_msg_claimed(cs, "clk-nobody", "key-A", t0, &l, &err), SNAP_OK);
    CHECK_EQ_INT(l.len, 0);
    cold_msg_list_free(&l);
}

/* close(): unsend and refusal only ever end an open, unexpired message. */
static void test_close_semantics(void)
{
    struct cold_msg a, b, late, read;
    struct snap_err err;
    char text[] = "maybe not";
    int64_t batch[3], won[4];
    size_t moved = 99;
    int rc;

    msg_init(&a, new_id(), "cls", NULL, text, strlen(text), t0, t0 + 60000);
    msg_init(&b, new_id(), "cls", NULL, text, strlen(text), t0, t0 + 60000);
    msg_init(&late, new_id(), "cls", NULL, text, strlen(text), t0, t0 + 100);
    msg_init(&read, new_id(), "cls", NULL, text, strlen(text), t0, t0 + 60000);
    CHECK_EQ_INT(put(&a, &err), SNAP_OK);
    CHECK_EQ_INT(put(&b, &err), SNAP_OK);
    CHECK_EQ_INT(put(&late, &err), SNAP_OK);
    CHECK_EQ_INT(put(&read, &err), SNAP_OK);
    CHECK_EQ_INT(claim_ids(read.username, "r", &read.id, 1, t0 + 10, won, &rc), 1);

    CHECK_EQ_INT(cold_msg_close(cs, &a.id, 1, COLD_UNSENT, t0 + 500, &moved, &err), SNAP_OK);
    CHECK_EQ_INT(moved, 1);
    a.state = COLD_UNSENT;
    a.closed_ms = t0 + 500;
    check_roundtrip(&a);
    /* Repeated, or of something read or expired: nothing moves. */
    batch[0] = a.id;
    batch[1] = late.id;
    batch[2] = read.id;
    CHECK_EQ_INT(cold_msg_close(cs, batch, 3, COLD_REFUSED, t0 + 600, &moved, &err), SNAP_OK);
    CHECK_EQ_INT(moved, 0);
    check_roundtrip(&a);
    check_roundtrip(&late);
    read.state = COLD_READ;
    read.closed_ms = t0 + 10;
    check_roundtrip(&read);
    /* Refused (with an unknown id beside it): never claimed afterwards. */
    batch[0] = b.id;
    batch[1] = new_id();
    CHECK_EQ_INT(cold_msg_close(cs, batch, 2, COLD_REFUSED, t0 + 700, &moved, &err), SNAP_OK);
    CHECK_EQ_INT(moved, 1);
    CHECK_EQ_INT(cold_msg_get(cs, batch[1], &read, &err), SNAP_ENOTFOUND);
    b.state = COLD_REFUSED;
    b.closed_ms = t0 + 700;
    check_roundtrip(&b);
    CHECK_EQ_INT(claim_ids(b.username, "r2", &b.id, 1, t0 + 800, won, &rc), 0);
    check_roundtrip(&b);
}

/* The Idempotency-Key of a send is unique while it is held. */
static void test_idem_keys(void)
{
    struct cold_msg a, b, got;
    struct snap_err err;
    char ta[] = "once", tb[] = "once again";
    char idem[COLD_IDEM_MAX + 1];
    int rcs[1];

    snprintf(idem, sizeof idem, "ct%s-sender/key-1", tag);
    msg_init(&a, new_id(), "idem", "sender", ta, strlen(ta), t0, t0 + 60000);
    snprintf(a.idem, sizeof a.idem, "%s", idem);
    CHECK_EQ_INT(put(&a, &err), SNAP_OK);
    check_roundtrip(&a);
    CHECK_EQ_INT(cold_msg_find_idem(cs, idem, &got, &err), SNAP_OK);
    CHECK_EQ_INT(got.id, a.id);
    CHECK_EQ_STR(got.text, ta);
    CHECK_EQ_STR(got.idem, idem);
    cold_msg_cleanup(&got);

    msg_init(&b, new_id(), "idem", "sender", tb, strlen(tb), t0, t0 + 60000);
    snprintf(b.idem, sizeof b.idem, "%s", idem);
    CHECK_EQ_INT(put_many(&b, 1, rcs, &err), SNAP_EEXIST);
    CHECK_EQ_INT(rcs[0], SNAP_EEXIST);
    CHECK_EQ_INT(cold_msg_get(cs, b.id, &got, &err), SNAP_ENOTFOUND);

    CHECK_EQ_INT(cold_msg_find_idem(cs, "ct-nobody/none", &got, &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(cold_msg_release_idem(cs, a.id, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_release_idem(cs, new_id(), &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_find_idem(cs, idem, &got, &err), SNAP_ENOTFOUND);
    a.idem[0] = '\0';
    check_roundtrip(&a);
    CHECK_EQ_INT(put(&b, &err), SNAP_OK);
    check_roundtrip(&b);
}

/* scan_open(): the rebuild of the hot index sees exactly what a read could
 * claim. Created far in the future, so that nothing else matches. */
static void test_scan_open(void)
{
    enum { N = 7 };
    struct cold_msg m[N];
    struct snap_err err;
    char text[] = "rebuild me";
    int64_t fut = t0 + 100LL * 86400 * 1000, now = fut + 1000, won[2];
    int64_t ae = 0, ai = 0;
    int want[N] = {1, 1, 0, 1, 0, 0, 1}, seen[N] = {0}, rc;
    size_t pages = 0, total = 0;

    for (int i = 0; i < N; i++) {
        /* expiries out of id order, to check the (expires_ms, id) order */
        msg_init(&m[i], new_id(), "scan", NULL, text, strlen(text), fut + (i == 5 ? -1 : 0),
                 now + 10000 - 100 * (i % 3));
        CHECK_EQ_INT(put(&m[i], &err), SNAP_OK);
    }
    m[2].expires_ms = now; /* expired at now: not claimable */
    CHECK_EQ_INT(cold_msg_close(cs, &m[2].id, 1, COLD_REFUSED, fut, NULL, &err), SNAP_OK);
    CHECK_EQ_INT(claim_ids(m[4].username, "s", &m[4].id, 1, fut, won, &rc), 1);
    /* m[5] was created before since. */
    for (;;) {
        struct cold_msg_list l = {0};
        int64_t pe = ae, pi = ai;
        CHECK_EQ_INT(cold_msg_scan_open(cs, fut, now, ae, ai, 2, &l, &err), SNAP_OK);
        if (l.len == 0) break;
        CHECK(l.len <= 2);
        for (size_t k = 0; k < l.len; k++) {
            const struct cold_msg *x = &l.items[k];
            CHECK(x->expires_ms > pe || (x->expires_ms == pe && x->id > pi));
            pe = x->expires_ms;
            pi = x->id;
            CHECK_EQ_INT(x->state, COLD_OPEN);
            for (int i = 0; i < N; i++)
                if (x->id == m[i].id) {
                    seen[i]++;
                    CHECK_EQ_STR(x->text, text);
                    CHECK_EQ_STR(x->username, m[i].username);
                    CHECK_EQ_INT(x->expires_ms, m[i].expires_ms);
                }
            total++;
        }
        ae = pe;
        ai = pi;
        cold_msg_list_free(&l);
        if (++pages > 100) break;
    }
    for (int i = 0; i < N; i++) CHECK_EQ_INT(seen[i], want[i]);
    (void)total;
}

struct claim_race {
    const char *user;
    const int64_t *ids;
    size_t n;
    char token[16];
    int64_t won[64];
    size_t n_won;
    int rc;
};

static void *claim_racer(void *p)
{
    struct claim_race *r = p;
    struct snap_err err;

    for (size_t start = 0; start < r->n; start += 16) {
        struct cold_claim c = {.username = r->user, .token = r->token, .ids = r->ids,
                               .n = r->n, .claimed = r->won + r->n_won};
        /* every racer offers all ids, again and again */
        c.n = r->n;
        if (cold_msg_claim(cs, &c, 1, t0 + 5000, &err) != SNAP_OK) r->rc = c.rc;
        r->n_won += c.n_claimed;
    }
    return NULL;
}

/* Exactly once under contention: 8 threads claim the same 32 messages. */
static void test_claim_concurrent(void)
{
    enum { NM = 32 };
    struct cold_msg m;
    struct claim_race races[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    int64_t ids[NM];
    int count[NM] = {0};
    struct snap_err err;
    char text[] = "race";

    for (int i = 0; i < NM; i++) {
        msg_init(&m, new_id(), "race", NULL, text, strlen(text), t0, t0 + 60000);
        CHECK_EQ_INT(put(&m, &err), SNAP_OK);
        ids[i] = m.id;
    }
    for (int t = 0; t < CONC_THREADS; t++) {
        memset(&races[t], 0, sizeof races[t]);
        races[t].user = m.username;
        races[t].ids = ids;
        races[t].n = NM;
        snprintf(races[t].token, sizeof races[t].token, "racer-%d", t);
        CHECK(pthread_create(&th[t], NULL, claim_racer, &races[t]) == 0);
    }
    for (int t = 0; t < CONC_THREADS; t++) {
        (void)pthread_join(th[t], NULL);
        CHECK_EQ_INT(races[t].rc, SNAP_OK);
        for (size_t k = 0; k < races[t].n_won; k++)
            for (int i = 0; i < NM; i++)
                if (races[t].won[k] == ids[i]) count[i]++;
    }
    for (int i = 0; i < NM; i++) CHECK_EQ_INT(count[i], 1);
}

static void test_msg_max_id(void)
{
    struct snap_err err;
    struct cold_msg m;
    char text[] = "the highest so far";
    int64_t max = 0;

    /* The top of this run's range, then one below it: max follows the
     * highest id, not the latest put. */
    msg_init(&m, id_base + ID_SPAN - 1, "max", NULL, text, strlen(text), t0, t0 + 1);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    msg_init(&m, new_id(), "max", NULL, text, strlen(text), t0, t0 + 1);
    CHECK_EQ_INT(put(&m, &err), SNAP_OK);
    CHECK_EQ_INT(cold_msg_max_id(cs, &max, &err), SNAP_OK);
    CHECK(max >= highest_put);
    if (store_fresh)
        CHECK_EQ_INT(max, highest_put);
}

/* ---- users ------------------------------------------------------------------- */

static void user_init(struct cold_user *u, const char *suffix, const char *role,
                      int64_t created)
{
    memset(u, 0, sizeof *u);
    user_name(u->username, suffix);
    snprintf(u->password_hash, sizeof u->password_hash,
             "$y$j9T$%s$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ", tag);
    snprintf(u->role, sizeof u->role, "%s", role);
    u->created_ms = created;
}

static void check_user(const struct cold_user *want)
{
    struct snap_err err;
    struct cold_user got;
    int rc = cold_user_get(cs, want->username, &got, &err);

    CHECK_EQ_INT(rc, SNAP_OK);
    if (rc != SNAP_OK) {
        fprintf(stderr, "  user get: %s\n", err.msg);
        return;
    }
    CHECK_EQ_STR(got.username, want->username);
    CHECK_EQ_STR(got.password_hash, want->password_hash);
    CHECK_EQ_STR(got.role, want->role);
    CHECK_EQ_INT(got.created_ms, want->created_ms);
}

static void test_user_roundtrip(void)
{
    struct snap_err err;
    struct cold_user u;

    user_init(&u, "alice", "user", t0 + 42);
    CHECK_EQ_INT(cold_user_put(cs, &u, &err), SNAP_OK);
    check_user(&u);

    user_init(&u, "\xc3\xa9mile\xf0\x9f\x90\x8d", "admin", t0);
    /* The longest hash the struct holds. */
    memset(u.password_hash, 'h', COLD_HASH_MAX);
    u.password_hash[COLD_HASH_MAX] = '\0';
    CHECK_EQ_INT(cold_user_put(cs, &u, &err), SNAP_OK);
    check_user(&u);
}

static void test_user_conflict(void)
{
    struct snap_err err;
    struct cold_user first, second;

    user_init(&first, "taken", "user", t0);
    user_init(&second, "taken", "admin", t0 + 1);
    memcpy(second.password_hash, "$y$other", 9);
    CHECK_EQ_INT(cold_user_put(cs, &first, &err), SNAP_OK);
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_user_put(cs, &second, &err), SNAP_ECONFLICT);
    CHECK_EQ_INT(err.code, SNAP_ECONFLICT);
    check_user(&first); /* unchanged */
}

/* Usernames are exact byte strings: case and accents make different users. */
static void test_user_names_are_exact(void)
{
    struct snap_err err;
    struct cold_user lower, upper, got;
    char other[SNAP_USERNAME_MAX + 1];

    user_init(&lower, "case", "user", t0);
    user_init(&upper, "CASE", "admin", t0);
    CHECK_EQ_INT(cold_user_put(cs, &lower, &err), SNAP_OK);
    CHECK_EQ_INT(cold_user_put(cs, &upper, &err), SNAP_OK);
    check_user(&lower);
    check_user(&upper);
    user_name(other, "Case");
    CHECK_EQ_INT(cold_user_get(cs, other, &got, &err), SNAP_ENOTFOUND);
}

static void test_user_set_role(void)
{
    struct snap_err err;
    struct cold_user u;

    user_init(&u, "promote", "user", t0);
    CHECK_EQ_INT(cold_user_put(cs, &u, &err), SNAP_OK);
    CHECK_EQ_INT(cold_user_set_role(cs, u.username, "admin", &err), SNAP_OK);
    memcpy(u.role, "admin", 6);
    check_user(&u); /* role changed, the rest kept */
    /* Setting the role it already has is success, not "not found". */
    CHECK_EQ_INT(cold_user_set_role(cs, u.username, "admin", &err), SNAP_OK);
    check_user(&u);
    CHECK_EQ_INT(cold_user_set_role(cs, u.username, "user", &err), SNAP_OK);
    memcpy(u.role, "user", 5);
    check_user(&u);
}

static void test_user_unknown(void)
{
    struct snap_err err;
    struct cold_user got;
    char name[SNAP_USERNAME_MAX + 1];

    user_name(name, "nobody");
    memset(&got, 0x5a, sizeof got);
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_user_get(cs, name, &got, &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(err.code, SNAP_ENOTFOUND);
    snap_err_clear(&err);
    CHECK_EQ_INT(cold_user_set_role(cs, name, "admin", &err), SNAP_ENOTFOUND);
    CHECK_EQ_INT(err.code, SNAP_ENOTFOUND);
    /* set_role does not create the user. */
    CHECK_EQ_INT(cold_user_get(cs, name, &got, &err), SNAP_ENOTFOUND);
}

/* ---- concurrency -------------------------------------------------------------- */

struct conc_arg {
    int64_t first_id;      /* this thread puts first_id .. first_id+CONC_PUTS-1 */
    int thread;
    int put_failures;
    int get_failures;
    struct snap_err last;  /* the last failure, for the log */
};

static void conc_text(char *buf, size_t len, int thread, int i)
{
    snprintf(buf, len, "thread %d message %d \xe2\x9c\x93", thread, i);
}

/* Each put is read back at once, on whatever pooled connection comes up. */
static void *conc_worker(void *p)
{
    struct conc_arg *a = p;
    char text[64], suffix[16];

    snprintf(suffix, sizeof suffix, "conc%d", a->thread);
    for (int i = 0; i < CONC_PUTS; i++) {
        struct cold_msg m, got;
        struct snap_err err;

        conc_text(text, sizeof text, a->thread, i);
        msg_init(&m, a->first_id + i, suffix, NULL, text, strlen(text), t0, t0 + 60000);
        if (cold_msg_put(cs, &m, &err) != SNAP_OK) {
            a->put_failures++;
            a->last = err;
            continue;
        }
        if (cold_msg_get(cs, m.id, &got, &err) != SNAP_OK || got.text_len != m.text_len ||
            memcmp(got.text, text, m.text_len) != 0) {
            a->get_failures++;
            a->last = err;
        }
        cold_msg_cleanup(&got);
    }
    return NULL;
}

static void test_concurrent_puts(void)
{
    struct conc_arg args[CONC_THREADS];
    pthread_t th[CONC_THREADS];
    int started[CONC_THREADS];
    int missing = 0;
    int64_t first = id_base + id_seq + 1;
    int64_t max = 0;
    struct snap_err err;

    id_seq += CONC_THREADS * CONC_PUTS;
    CHECK(id_seq < ID_SPAN - 1);
    if (id_seq >= ID_SPAN - 1)
        return;
    for (int t = 0; t < CONC_THREADS; t++) {
        memset(&args[t], 0, sizeof args[t]);
        args[t].first_id = first + (int64_t)t * CONC_PUTS;
        args[t].thread = t;
        started[t] = pthread_create(&th[t], NULL, conc_worker, &args[t]) == 0;
        CHECK(started[t]);
    }
    for (int t = 0; t < CONC_THREADS; t++) {
        if (!started[t])
            continue;
        (void)pthread_join(th[t], NULL);
        CHECK_EQ_INT(args[t].put_failures, 0);
        CHECK_EQ_INT(args[t].get_failures, 0);
        if (args[t].put_failures || args[t].get_failures)
            fprintf(stderr, "  thread %d: %s (%s)\n", t, args[t].last.msg,
                    snap_status_name(args[t].last.code));
    }
    if (first + CONC_THREADS * CONC_PUTS - 1 > highest_put)
        highest_put = first + CONC_THREADS * CONC_PUTS - 1;

    /* Afterwards, every one is there with its own text. */
    for (int t = 0; t < CONC_THREADS; t++) {
        for (int i = 0; i < CONC_PUTS; i++) {
            struct cold_msg got;
            char text[64];

            conc_text(text, sizeof text, t, i);
            if (cold_msg_get(cs, args[t].first_id + i, &got, &err) != SNAP_OK ||
                got.text_len != strlen(text) || memcmp(got.text, text, got.text_len) != 0)
                missing++;
            cold_msg_cleanup(&got);
        }
    }
    CHECK_EQ_INT(missing, 0);
    CHECK_EQ_INT(cold_msg_max_id(cs, &max, &err), SNAP_OK);
    CHECK(max >= highest_put);
}

/* ---- main ---------------------------------------------------------------------- */

int main(void)
{
    struct snap_err err;
    const char *fresh = getenv("SNAPTEXT_TEST_STORE_FRESH");
    int64_t now = clock_now_ms();

    store_url = getenv("SNAPTEXT_TEST_STORE");
    if (store_url == NULL || store_url[0] == '\0') {
        fprintf(stderr, "cold_contract: set SNAPTEXT_TEST_STORE to the store url\n");
        printf("0 passed, 1 failed\n");
        return 1;
    }
    store_fresh = fresh != NULL && strcmp(fresh, "1") == 0;
    /* Runs in different milliseconds get disjoint ranges; runs in the same
     * millisecond differ by pid. 2^20 * now_ms stays below INT64_MAX until
     * the year 2248. */
    id_base = (now << 20) | ((int64_t)(getpid() & 63) << 14);
    snprintf(tag, sizeof tag, "%llx", (unsigned long long)(id_base >> 14));
    t0 = (now / 1000) * 1000 + 123;

    RUN(test_open_bad_urls);
    RUN(test_open_unknown_scheme_message);
    RUN(test_open_unwritable_sqlite);

    if (cold_open(store_url, &cs, &err) != SNAP_OK) {
        fprintf(stderr, "cold_contract: cannot open the store: %s (%s)\n", err.msg,
                snap_status_name(err.code));
        t_failed++;
        return TEST_SUMMARY();
    }
    RUN(test_fresh_store_is_empty);
    RUN(test_driver_name_and_ping);
    RUN(test_bad_arguments);
    RUN(test_msg_roundtrip_with_from);
    RUN(test_msg_roundtrip_open_mode);
    RUN(test_msg_roundtrip_utf8);
    RUN(test_msg_roundtrip_sizes);
    RUN(test_msg_roundtrip_times);
    RUN(test_msg_get_unknown);
    RUN(test_msg_duplicate_id);
    RUN(test_msg_put_many_roundtrip);
    RUN(test_msg_put_many_conflict);
    RUN(test_msg_put_many_arguments);
    RUN(test_msg_put_is_open);
    RUN(test_claim_semantics);
    RUN(test_claim_without_token);
    RUN(test_claimed_lookup);
    RUN(test_close_semantics);
    RUN(test_idem_keys);
    RUN(test_scan_open);
    RUN(test_claim_concurrent);
    RUN(test_user_roundtrip);
    RUN(test_user_conflict);
    RUN(test_user_names_are_exact);
    RUN(test_user_set_role);
    RUN(test_user_unknown);
    RUN(test_reopen_same_store);
    RUN(test_concurrent_puts);
    RUN(test_msg_max_id);
    cold_close(cs);
    return TEST_SUMMARY();
}
