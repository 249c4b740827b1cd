/* handlers.c: the two read routes of the fetch service.
 *
 * GET /chats/{username} hands its inbox to the read batcher (reads.c): one
 * atomic Redis step per inbox empties it, so concurrent readers on any
 * instance each get a disjoint set (exactly once), and what was taken is
 * expired in the cold store at the read time before the answer goes out. */
#include <stdio.h>

#include "fetch.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/validate.h"

/* Adds "key": <int64> exactly (cJSON numbers are doubles). */
static cJSON *add_int64(cJSON *obj, const char *key, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_AddRawToObject(obj, key, buf);
}

void fetch_chats_read(struct http_req *r)
{
    const struct fetch_state *fs = r->ctx->data;

    if (!username_valid(r->param, r->param_len)) {
        http_reply_error(r, HTTP_E_INVALID_FIELD,
                         "username in the path must be 1 to 64 bytes of UTF-8 without "
                         "whitespace, control characters or '/'");
        return;
    }
    struct read_job job = {.user = r->param};
    if (reads_take(fs->reads, &job) != SNAP_OK) {
        http_reply_store_error(r, "redis", "reading the inbox", &job.err);
        return;
    }
    struct hot_msg_list l = job.msgs;
    size_t n_expired = job.n_expired;

    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < l.len; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o) || !add_int64(o, "id", l.items[i].id) ||
            !cJSON_AddStringToObject(o, "text", l.items[i].text)) {
            cJSON_Delete(arr);
            arr = NULL;
        }
    }
    if (!arr) {
        /* Only on out-of-memory; the messages are taken, so say which. */
        log_event(SNAP_LOG_ERROR, r->request_id, "lost_read",
                  "out of memory building the reply of %zu taken messages", l.len);
        http_reply_error(r, HTTP_E_INTERNAL, "out of memory");
    } else {
        metrics_add(r->ctx->metrics, METRIC_MESSAGES_READ, l.len);
        metrics_add(r->ctx->metrics, METRIC_MESSAGES_EXPIRED, n_expired);
        http_reply_json(r, 200, arr, NULL);
        cJSON_Delete(arr);
    }
    hot_msg_list_free(&l);
}

void fetch_chat_lookup(struct http_req *r)
{
    int64_t id;
    if (id_parse(r->param, r->param_len, &id) != 0) {
        http_reply_error(r, HTTP_E_INVALID_FIELD,
                         "id must be a positive 64-bit integer (decimal digits only)");
        return;
    }
    struct cold_msg m;
    struct snap_err err;
    int rc = cold_msg_get(r->ctx->cold, id, &m, &err);
    if (rc == SNAP_ENOTFOUND) {
        http_reply_error(r, HTTP_E_NOT_FOUND, "no message with id %lld", (long long)id);
        return;
    }
    if (rc != SNAP_OK) {
        http_reply_store_error(r, "cold", "looking up the message", &err);
        return;
    }
    char when[SNAP_TIME_STR_LEN];
    cJSON *o = cJSON_CreateObject();
    int ok = o && add_int64(o, "id", m.id) && cJSON_AddStringToObject(o, "username", m.username) &&
             (m.has_from ? cJSON_AddStringToObject(o, "from", m.from) != NULL
                         : cJSON_AddNullToObject(o, "from") != NULL) &&
             cJSON_AddStringToObject(o, "text", m.text) &&
             cJSON_AddStringToObject(o, "expiration_date", clock_format_utc(m.expires_ms, when));
    if (ok)
        http_reply_json(r, 200, o, NULL);
    else
        http_reply_error(r, HTTP_E_INTERNAL, "out of memory");
    cJSON_Delete(o);
    cold_msg_cleanup(&m);
}
