/* handlers.c: the read routes of the fetch service — the read-once inbox
 * read (GET /chats/{username}) and the admin lookup (GET /chat/{id}).
 *
 * A read hands its inbox to the read batcher (reads.c), which claims the
 * candidates in the cold store: concurrent readers on any instance each get
 * a disjoint set (exactly once), and what a read returns is already marked
 * read there, at the read time, before the answer goes out. With an
 * Idempotency-Key, a read first asks the cold store what a read with that
 * key claimed in the last 10 minutes; if anything, that is the answer.
 *
 * ?wait=S: when the read finds nothing, the request thread subscribes to
 * the inbox's wake channel (hot_wait_*), reads again (a send may have come
 * between), and then sleeps until a send to that inbox is published, a
 * second passes (a missed wake-up costs at most that), the S seconds are
 * over or the client goes away — in which case it stops without claiming
 * anything. Each wake-up is an ordinary read: the claim decides who gets a
 * message, so waiting and non-waiting readers on every instance still get
 * each message exactly once. At most SNAPTEXT_MAX_WAITERS wait per
 * instance (each holds a worker thread); beyond that, 503. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <civetweb.h>

#include "fetch.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/deadline.h"
#include "snap/hot_inbox.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/validate.h"

#define READ_KEY_WINDOW_MS (10LL * 60 * 1000) /* API.md: a read's key answers 10 minutes */
#define WAIT_MAX_S         30                   /* API.md: ?wait=S, 0 <= S <= 30         */
#define WAIT_SLICE_MS      1000                 /* re-check at least this often          */

/* Adds "key": <int64> exactly (cJSON numbers are doubles). */
static cJSON *add_int64(cJSON *obj, const char *key, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_AddRawToObject(obj, key, buf);
}

/* One message of a read's reply array. */
static int add_message(cJSON *arr, int64_t id, const char *text)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return -1;
    }
    return add_int64(o, "id", id) && cJSON_AddStringToObject(o, "text", text) ? 0 : -1;
}

/* A read's 200 with arr (res owns it); n messages were claimed. */
static void reply_read(const struct http_req *r, struct http_res *res, cJSON *arr, size_t n,
                       int more)
{
    if (arr == NULL) {
        /* Only on out-of-memory; the messages are claimed, so say which. A
         * retry with the same Idempotency-Key still gets them. */
        log_event(SNAP_LOG_ERROR, r->request_id, "lost_read",
                  "out of memory building the reply of %zu claimed messages", n);
    } else {
        metrics_add(r->ctx->metrics, METRIC_MESSAGES_READ, n);
        if (more) (void)http_res_header(res, "X-More-Messages: true\r\n");
    }
    http_res_json(res, 200, arr, 1);
}

/* The retry of a read: answers what the first read with this key claimed.
 * Returns 1 when res holds the answer. */
static int replay(const struct http_req *r, struct http_res *res, const char *key)
{
    struct cold_msg_list l;
    struct snap_err err;
    int rc = cold_msg_claimed(r->ctx->cold, r->param, key, clock_now_ms() - READ_KEY_WINDOW_MS,
                              &l, &err);

    if (rc != SNAP_OK) {
        http_res_store_error(res, "cold", "looking up the Idempotency-Key", &err);
        return 1;
    }
    if (l.len == 0) return 0;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < l.len; i++)
        if (add_message(arr, l.items[i].id, l.items[i].text) != 0) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    reply_read(r, res, arr, l.len, 0);
    cold_msg_list_free(&l);
    return 1;
}

/* One read: claims through the batcher into *job. */
static int read_once(const struct http_req *r, struct read_job *job, long limit, const char *token)
{
    const struct fetch_state *fs = r->ctx->data;

    *job = (struct read_job){.user = r->param, .limit = (size_t)limit, .token = token,
                             .deadline = deadline_get()};
    return reads_take(fs->reads, job);
}

/* The state of one waiting read (?wait=S), for wait_step and wait_done. */
struct waiter {
    int counted;    /* holds one of SNAPTEXT_MAX_WAITERS       */
    int subscribed; /* r->hot is on the wake channel           */
    int client_fd;  /* -1: unknown                             */
    int woken;      /* a wake-up came at least once            */
};

/* Waits for the next chance of a message. Returns SNAP_OK to read again,
 * or a failure (answered by the caller: SNAP_EFULL, SNAP_EGONE, ...). */
static int wait_step(const struct http_req *r, struct waiter *w, int64_t until, struct snap_err *err)
{
    struct fetch_state *fs = r->ctx->data;

    if (!w->counted) {
        if (atomic_fetch_add(&fs->waiting, 1) >= r->ctx->cfg.max_waiters) {
            atomic_fetch_sub(&fs->waiting, 1);
            metrics_add(r->ctx->metrics, METRIC_WAITS_REFUSED, 1);
            return snap_err_set(err, SNAP_EFULL, "%ld readers wait already",
                                r->ctx->cfg.max_waiters);
        }
        w->counted = 1;
        w->client_fd = http_client_fd(r);
        metrics_add(r->ctx->metrics, METRIC_WAITS_STARTED, 1);
    }
    if (!w->subscribed) {
        /* Subscribed first, then read again: a send in between is seen. */
        int rc = hot_wait_begin(r->hot, r->param, err);
        if (rc != SNAP_OK) return rc;
        w->subscribed = 1;
        return SNAP_OK;
    }
    int64_t left = until - deadline_now();
    int rc = hot_wait_for(r->hot, (int)(left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS),
                          w->client_fd, err);
    if (rc == SNAP_OK) w->woken = 1;
    if (rc == SNAP_ENOTFOUND) rc = SNAP_OK; /* a slice passed: look again */
    if (rc == SNAP_EUNAVAIL) {              /* subscribe again next time */
        hot_wait_end(r->hot);
        w->subscribed = 0;
    }
    if (rc == SNAP_OK && http_client_gone(w->client_fd))
        rc = snap_err_set(err, SNAP_EGONE, "the client went away");
    return rc;
}

static void wait_done(const struct http_req *r, struct waiter *w, size_t got)
{
    struct fetch_state *fs = r->ctx->data;

    if (w->subscribed) hot_wait_end(r->hot);
    if (!w->counted) return;
    atomic_fetch_sub(&fs->waiting, 1);
    metrics_add(r->ctx->metrics, got > 0 ? METRIC_WAITS_WOKEN : METRIC_WAITS_TIMED_OUT, 1);
}

void fetch_chats_read(const struct http_req *r, struct http_res *res)
{
    const char *key = mg_get_header(r->conn, "Idempotency-Key");
    long limit = r->ctx->cfg.read_max, wait_s = 0;
    struct waiter w = {0, 0, -1, 0};
    struct read_job job;
    struct snap_err err;

    if (!username_valid(r->param, r->param_len)) {
        http_res_error(res, HTTP_E_INVALID_FIELD,
                         "username in the path must be 1 to 64 bytes of UTF-8 without "
                         "whitespace, control characters or '/'");
        return;
    }
    if (key != NULL && !idem_key_valid(key)) {
        http_res_error(res, HTTP_E_INVALID_FIELD,
                         "Idempotency-Key must be 1 to 64 characters of A-Z a-z 0-9 _ -");
        return;
    }
    if (query_long(r->ri->query_string, "limit", 1, r->ctx->cfg.read_max, &limit) < 0) {
        http_res_error(res, HTTP_E_INVALID_FIELD, "limit must be an integer between 1 and %ld",
                         r->ctx->cfg.read_max);
        return;
    }
    if (query_long(r->ri->query_string, "wait", 0, WAIT_MAX_S, &wait_s) < 0) {
        http_res_error(res, HTTP_E_INVALID_FIELD,
                         "wait must be an integer number of seconds between 0 and %d",
                         WAIT_MAX_S);
        return;
    }
    /* Only a read with a key records a token: no retry can ask for what a
     * read without one got, and the store keeps no claim entry for it. */
    if (key != NULL && replay(r, res, key)) return;
    /* A waiting read has its S seconds on top of the usual budget (HAProxy
     * gives ?wait requests a longer server timeout to match). */
    int64_t until = deadline_now() + wait_s * 1000;
    if (wait_s > 0) deadline_set(until + SNAP_DEADLINE_MS);
    for (;;) {
        if (read_once(r, &job, limit, key) != SNAP_OK) {
            wait_done(r, &w, 0);
            http_res_store_error(res, job.store ? job.store : "fetch", "reading the inbox",
                                   &job.err);
            return;
        }
        if (job.msgs.len > 0 || job.more || deadline_now() >= until) break;
        hot_msg_list_free(&job.msgs); /* empty, but a lost claim leaves its array */
        int rc = wait_step(r, &w, until, &err);
        if (rc == SNAP_OK) continue;
        wait_done(r, &w, 0);
        if (rc == SNAP_EGONE) {
            metrics_add(r->ctx->metrics, METRIC_WAITS_ABANDONED, 1);
            log_event(SNAP_LOG_INFO, r->request_id, "wait",
                      "the client of a waiting read went away; nothing was claimed");
        }
        if (rc == SNAP_EFULL)
            http_res_error(res, HTTP_E_UNAVAILABLE,
                             "too many readers are waiting on this instance; retry shortly "
                             "(or read without ?wait)");
        else
            http_res_store_error(res, "redis", "waiting for the inbox", &err);
        return;
    }
    wait_done(r, &w, job.msgs.len);
    struct hot_msg_list l = job.msgs;
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < l.len; i++)
        if (add_message(arr, l.items[i].id, l.items[i].text) != 0) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    metrics_add(r->ctx->metrics, METRIC_MESSAGES_EXPIRED, job.n_expired);
    reply_read(r, res, arr, l.len, job.more);
    hot_msg_list_free(&l);
}

void fetch_chat_lookup(const struct http_req *r, struct http_res *res)
{
    int64_t id;
    if (id_parse(r->param, r->param_len, &id) != 0) {
        http_res_error(res, HTTP_E_INVALID_FIELD,
                         "id must be a positive 64-bit integer (decimal digits only)");
        return;
    }
    struct cold_msg m;
    struct snap_err err;
    int rc = cold_msg_get(r->ctx->cold, id, &m, &err);
    if (rc == SNAP_ENOTFOUND) {
        http_res_error(res, HTTP_E_NOT_FOUND, "no message with id %lld", (long long)id);
        return;
    }
    if (rc != SNAP_OK) {
        http_res_store_error(res, "cold", "looking up the message", &err);
        return;
    }
    /* expiration_date: when it stopped being deliverable — its read (or
     * unsend) time if that came first, else the end of its timeout. */
    char when[SNAP_TIME_STR_LEN];
    int64_t exp = m.state != COLD_OPEN && m.closed_ms > 0 ? m.closed_ms : m.expires_ms;
    cJSON *o = cJSON_CreateObject();
    http_res_json(res, 200, o,
                  o && add_int64(o, "id", m.id) &&
                      cJSON_AddStringToObject(o, "username", m.username) &&
                      (m.has_from ? cJSON_AddStringToObject(o, "from", m.from) != NULL
                                  : cJSON_AddNullToObject(o, "from") != NULL) &&
                      cJSON_AddStringToObject(o, "text", m.text) &&
                      cJSON_AddStringToObject(o, "expiration_date", clock_format_utc(exp, when)));
    cold_msg_cleanup(&m);
}
