/* cold_cli.c: a one-shot command-line client of the cold store, for the
 * wire tests. It opens the store named by argv[1] through the public
 * cold_store.h API only (so it exercises exactly what the services do,
 * including cold_open()'s ensure_schema), performs one operation and prints
 * one JSON line: {"op": ..., "status": "<snap_status_name>", "ms": <elapsed
 * milliseconds, open included>, ...result}.
 * Not for production use, and no driver knowledge here: the wire test
 * scripts the server side (test_mongo_wire.py).
 *
 *   cold_cli URL open                                  (open + schema only)
 *   cold_cli URL ping
 *   cold_cli URL put ID USER FROM TEXT TTL_MS [CREATED_MS [IDEM]]  FROM "" = null
 *   cold_cli URL put_many CREATED_MS TTL_MS (ID USER FROM TEXT IDEM)...
 *                                        (one batch; prints "rcs": [status...];
 *                                         IDEM "" = none)
 *   cold_cli URL get ID                  (prints "message")
 *   cold_cli URL claim NOW_MS (USER TOKEN ID[,ID...])...
 *                                        (one call; prints "claims": [{status,
 *                                         claimed: [ids]}...]; IDS "" = none,
 *                                         TOKEN "-" = no token)
 *   cold_cli URL claimed USER TOKEN SINCE_MS          (prints "messages")
 *   cold_cli URL close ID[,ID...] unsent|refused AT_MS (prints "n_closed")
 *   cold_cli URL find_idem IDEM                        (prints "message")
 *   cold_cli URL release_idem ID
 *   cold_cli URL scan_open SINCE_MS NOW_MS AFTER_EXP AFTER_ID MAX
 *                                                      (prints "messages")
 *   cold_cli URL maxid
 *   cold_cli URL user_put NAME HASH ROLE [CREATED_MS]
 *   cold_cli URL user_get NAME
 *   cold_cli URL set_role NAME ROLE
 *
 * Driver warnings go through log.h as JSON lines on stdout too (level warn
 * and up); the result line is the one with "op" and "status".
 * Exit status: 0 when the status is "ok", 1 for any other status, 2 for a
 * usage error (nothing printed on stdout then). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/err.h"
#include "snap/log.h"

#define CLI_MAX_IDS 4096
#define CLI_MAX_MSGS 64

static int usage(const char *why)
{
    fprintf(stderr,
            "cold_cli: %s\n"
            "usage: cold_cli URL open|ping|maxid\n"
            "       cold_cli URL put ID USER FROM TEXT TTL_MS [CREATED_MS [IDEM]]\n"
            "       cold_cli URL put_many CREATED_MS TTL_MS (ID USER FROM TEXT IDEM)...\n"
            "       cold_cli URL get ID | find_idem IDEM | release_idem ID\n"
            "       cold_cli URL claim NOW_MS (USER TOKEN ID[,ID...])...\n"
            "       cold_cli URL claimed USER TOKEN SINCE_MS\n"
            "       cold_cli URL close ID[,ID...] unsent|refused AT_MS\n"
            "       cold_cli URL scan_open SINCE_MS NOW_MS AFTER_EXP AFTER_ID MAX\n"
            "       cold_cli URL user_put NAME HASH ROLE [CREATED_MS] | user_get NAME\n"
            "       cold_cli URL set_role NAME ROLE\n",
            why);
    return 2;
}

/* Strict decimal int64: the whole string, no overflow. */
static int parse_i64(const char *s, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (!s || !*s)
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* Copies s into a fixed array of cap bytes; -1 when it does not fit. */
static int copy_str(char *dst, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap)
        return -1;
    memcpy(dst, s, n + 1);
    return 0;
}

/* int64 values go out as raw JSON numbers, exact beyond 2^53. */
static void add_i64(cJSON *obj, const char *key, int64_t v)
{
    char buf[32];
    (void)snprintf(buf, sizeof buf, "%lld", (long long)v);
    cJSON_AddItemToObject(obj, key, cJSON_CreateRaw(buf));
}

/* "1,2,3" -> ids. Returns the count, or -1. */
static long parse_ids(const char *s, int64_t *ids, size_t cap)
{
    size_t n = 0;
    const char *p = s;

    while (*p) {
        char buf[32];
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || len >= sizeof buf || n == cap)
            return -1;
        memcpy(buf, p, len);
        buf[len] = '\0';
        if (parse_i64(buf, &ids[n]) != 0)
            return -1;
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    return (long)n;
}

static const char *state_name(int state)
{
    switch (state) {
    case COLD_OPEN: return "open";
    case COLD_READ: return "read";
    case COLD_UNSENT: return "unsent";
    case COLD_REFUSED: return "refused";
    default: return "?";
    }
}

/* Every field of m as one JSON object. */
static cJSON *msg_json(const struct cold_msg *m)
{
    cJSON *j = cJSON_CreateObject();

    add_i64(j, "id", m->id);
    cJSON_AddStringToObject(j, "username", m->username);
    if (m->has_from)
        cJSON_AddStringToObject(j, "from", m->from);
    else
        cJSON_AddNullToObject(j, "from");
    cJSON_AddStringToObject(j, "text", m->text);
    add_i64(j, "text_len", (int64_t)m->text_len);
    add_i64(j, "created_ms", m->created_ms);
    add_i64(j, "expires_ms", m->expires_ms);
    cJSON_AddStringToObject(j, "state", state_name(m->state));
    add_i64(j, "closed_ms", m->closed_ms);
    cJSON_AddStringToObject(j, "idem", m->idem);
    return j;
}

static void add_list(cJSON *out, const struct cold_msg_list *l)
{
    cJSON *arr = cJSON_AddArrayToObject(out, "messages");
    for (size_t i = 0; i < l->len; i++) cJSON_AddItemToArray(arr, msg_json(&l->items[i]));
}

int main(int argc, char **argv)
{
    static int64_t ids[CLI_MAX_IDS];
    struct snap_err err = {0, ""};
    struct cold_store *cs = NULL;
    cJSON *out;
    const char *op;
    char *line;
    int64_t t0;
    int rc;

    if (argc < 3)
        return usage("missing arguments");
    op = argv[2];
    log_init("cold_cli", SNAP_LOG_WARN);
    t0 = clock_mono_ns();
    out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "op", op);

    rc = cold_open(argv[1], &cs, &err);
    if (rc != SNAP_OK) {
        cJSON_ReplaceItemInObject(out, "op", cJSON_CreateString("open"));
        cJSON_AddStringToObject(out, "during", op);
    } else if (strcmp(op, "open") == 0 && argc == 3) {
        cJSON_AddStringToObject(out, "driver", cold_driver_name(cs));
    } else if (strcmp(op, "ping") == 0 && argc == 3) {
        rc = cold_ping(cs, &err);
    } else if (strcmp(op, "put") == 0 && argc >= 8 && argc <= 10) {
        struct cold_msg m;
        int64_t ttl;
        memset(&m, 0, sizeof m);
        if (parse_i64(argv[3], &m.id) != 0 || copy_str(m.username, sizeof m.username, argv[4]) ||
            copy_str(m.from, sizeof m.from, argv[5]) || parse_i64(argv[7], &ttl) != 0 ||
            (argc >= 9 && parse_i64(argv[8], &m.created_ms) != 0) ||
            (argc == 10 && copy_str(m.idem, sizeof m.idem, argv[9]))) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad put arguments");
        }
        m.has_from = argv[5][0] != '\0';
        m.text = argv[6];
        m.text_len = strlen(argv[6]);
        if (argc == 8)
            m.created_ms = clock_now_ms();
        m.expires_ms = m.created_ms + ttl;
        rc = cold_msg_put(cs, &m, &err);
        add_i64(out, "created_ms", m.created_ms);
        add_i64(out, "expires_ms", m.expires_ms);
    } else if (strcmp(op, "put_many") == 0 && argc >= 10 && (argc - 5) % 5 == 0 &&
               (argc - 5) / 5 <= CLI_MAX_MSGS) {
        static struct cold_msg msgs[CLI_MAX_MSGS];
        int rcs[CLI_MAX_MSGS];
        size_t n = (size_t)(argc - 5) / 5;
        int64_t created, ttl;
        cJSON *arr;
        if (parse_i64(argv[3], &created) != 0 || parse_i64(argv[4], &ttl) != 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad put_many arguments");
        }
        for (size_t i = 0; i < n; i++) {
            char **a = argv + 5 + 5 * i; /* ID USER FROM TEXT IDEM */
            struct cold_msg *m = &msgs[i];
            memset(m, 0, sizeof *m);
            if (parse_i64(a[0], &m->id) != 0 || copy_str(m->username, sizeof m->username, a[1]) ||
                copy_str(m->from, sizeof m->from, a[2]) || copy_str(m->idem, sizeof m->idem, a[4])) {
                cold_close(cs);
                cJSON_Delete(out);
                return usage("bad put_many message");
            }
            m->has_from = a[2][0] != '\0';
            m->text = a[3];
            m->text_len = strlen(a[3]);
            m->created_ms = created;
            m->expires_ms = created + ttl;
            rcs[i] = SNAP_ERR;
        }
        rc = cold_msg_put_many(cs, msgs, n, rcs, &err);
        arr = cJSON_AddArrayToObject(out, "rcs");
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(arr, cJSON_CreateString(snap_status_name(rcs[i])));
    } else if (strcmp(op, "get") == 0 && argc == 4) {
        struct cold_msg m;
        int64_t id;
        if (parse_i64(argv[3], &id) != 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad id");
        }
        rc = cold_msg_get(cs, id, &m, &err);
        if (rc == SNAP_OK) cJSON_AddItemToObject(out, "message", msg_json(&m));
        cold_msg_cleanup(&m);
    } else if (strcmp(op, "find_idem") == 0 && argc == 4) {
        struct cold_msg m;
        rc = cold_msg_find_idem(cs, argv[3], &m, &err);
        if (rc == SNAP_OK) cJSON_AddItemToObject(out, "message", msg_json(&m));
        cold_msg_cleanup(&m);
    } else if (strcmp(op, "release_idem") == 0 && argc == 4) {
        int64_t id;
        if (parse_i64(argv[3], &id) != 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad id");
        }
        rc = cold_msg_release_idem(cs, id, &err);
    } else if (strcmp(op, "claim") == 0 && argc >= 7 && (argc - 4) % 3 == 0 &&
               (argc - 4) / 3 <= CLI_MAX_MSGS) {
        static struct cold_claim claims[CLI_MAX_MSGS];
        static int64_t won[CLI_MAX_IDS];
        size_t n = (size_t)(argc - 4) / 3, used = 0;
        int64_t now;
        cJSON *arr;
        if (parse_i64(argv[3], &now) != 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad claim time");
        }
        for (size_t i = 0; i < n; i++) { /* USER TOKEN IDS */
            long k = parse_ids(argv[4 + 3 * i + 2], ids + used, CLI_MAX_IDS - used);
            if (k < 0) {
                cold_close(cs);
                cJSON_Delete(out);
                return usage("bad claim ids");
            }
            claims[i] = (struct cold_claim){.username = argv[4 + 3 * i],
                                            .token = strcmp(argv[4 + 3 * i + 1], "-") == 0
                                                         ? NULL
                                                         : argv[4 + 3 * i + 1],
                                            .ids = ids + used, .n = (size_t)k,
                                            .claimed = won + used};
            used += (size_t)k;
        }
        rc = cold_msg_claim(cs, claims, n, now, &err);
        arr = cJSON_AddArrayToObject(out, "claims");
        for (size_t i = 0; i < n; i++) {
            cJSON *c = cJSON_CreateObject(), *w;
            cJSON_AddStringToObject(c, "status", snap_status_name(claims[i].rc));
            w = cJSON_AddArrayToObject(c, "claimed");
            for (size_t k = 0; k < claims[i].n_claimed; k++) {
                char buf[32];
                (void)snprintf(buf, sizeof buf, "%lld", (long long)claims[i].claimed[k]);
                cJSON_AddItemToArray(w, cJSON_CreateRaw(buf));
            }
            cJSON_AddItemToArray(arr, c);
        }
    } else if (strcmp(op, "claimed") == 0 && argc == 6) {
        struct cold_msg_list l = {0};
        int64_t since;
        if (parse_i64(argv[5], &since) != 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad claimed arguments");
        }
        rc = cold_msg_claimed(cs, argv[3], argv[4], since, &l, &err);
        if (rc == SNAP_OK) add_list(out, &l);
        cold_msg_list_free(&l);
    } else if (strcmp(op, "close") == 0 && argc == 6) {
        long n = parse_ids(argv[3], ids, CLI_MAX_IDS);
        int to = strcmp(argv[4], "unsent") == 0 ? COLD_UNSENT
                 : strcmp(argv[4], "refused") == 0 ? COLD_REFUSED : -1;
        size_t moved = 0;
        int64_t at;
        if (n < 0 || to < 0 || parse_i64(argv[5], &at) != 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad close arguments");
        }
        rc = cold_msg_close(cs, ids, (size_t)n, to, at, &moved, &err);
        add_i64(out, "n_closed", (int64_t)moved);
    } else if (strcmp(op, "scan_open") == 0 && argc == 8) {
        struct cold_msg_list l = {0};
        int64_t since, now, ae, ai, max;
        if (parse_i64(argv[3], &since) != 0 || parse_i64(argv[4], &now) != 0 ||
            parse_i64(argv[5], &ae) != 0 || parse_i64(argv[6], &ai) != 0 ||
            parse_i64(argv[7], &max) != 0 || max < 0) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad scan_open arguments");
        }
        rc = cold_msg_scan_open(cs, since, now, ae, ai, (size_t)max, &l, &err);
        if (rc == SNAP_OK) add_list(out, &l);
        cold_msg_list_free(&l);
    } else if (strcmp(op, "maxid") == 0 && argc == 3) {
        int64_t max = -1;
        rc = cold_msg_max_id(cs, &max, &err);
        if (rc == SNAP_OK)
            add_i64(out, "max_id", max);
    } else if (strcmp(op, "user_put") == 0 && (argc == 6 || argc == 7)) {
        struct cold_user u;
        memset(&u, 0, sizeof u);
        if (copy_str(u.username, sizeof u.username, argv[3]) ||
            copy_str(u.password_hash, sizeof u.password_hash, argv[4]) ||
            copy_str(u.role, sizeof u.role, argv[5]) ||
            (argc == 7 && parse_i64(argv[6], &u.created_ms) != 0)) {
            cold_close(cs);
            cJSON_Delete(out);
            return usage("bad user_put arguments");
        }
        if (argc == 6)
            u.created_ms = clock_now_ms();
        rc = cold_user_put(cs, &u, &err);
        add_i64(out, "created_ms", u.created_ms);
    } else if (strcmp(op, "user_get") == 0 && argc == 4) {
        struct cold_user u;
        rc = cold_user_get(cs, argv[3], &u, &err);
        if (rc == SNAP_OK) {
            cJSON *j = cJSON_AddObjectToObject(out, "user");
            cJSON_AddStringToObject(j, "username", u.username);
            cJSON_AddStringToObject(j, "password_hash", u.password_hash);
            cJSON_AddStringToObject(j, "role", u.role);
            add_i64(j, "created_ms", u.created_ms);
        }
    } else if (strcmp(op, "set_role") == 0 && argc == 5) {
        rc = cold_user_set_role(cs, argv[3], argv[4], &err);
    } else {
        cold_close(cs);
        cJSON_Delete(out);
        return usage("unknown operation or wrong number of arguments");
    }

    cold_close(cs);
    cJSON_AddStringToObject(out, "status", snap_status_name(rc));
    if (rc != SNAP_OK)
        cJSON_AddStringToObject(out, "reason", err.msg); /* a test tool: show it */
    add_i64(out, "ms", (clock_mono_ns() - t0) / 1000000);

    line = cJSON_PrintUnformatted(out);
    if (line) {
        printf("%s\n", line);
        cJSON_free(line);
    }
    cJSON_Delete(out);
    (void)fflush(stdout);
    return rc == SNAP_OK ? 0 : 1;
}
