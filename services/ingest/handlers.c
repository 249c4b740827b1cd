/* handlers.c: POST /chat — send a snap.
 *
 * Order matters for the promise of API.md ("201 means durable and
 * deliverable; anything else means never delivered"):
 *   1. id from the Redis counter (INCR);
 *   2. durable insert in the cold store — after this the admin lookup finds it;
 *   3. hot copy in the recipient's inbox, with its expiry.
 * A failure at 1 or 2 leaves nothing deliverable. A failure at 3 leaves a
 * cold record that is then marked expired at its send time, so it is shown
 * as never delivered. If the cold store already holds the id (Redis lost
 * its last INCRs in a crash), the counter is raised past the highest stored
 * id and a new id is taken: ids are never reused. */
#include <stdio.h>
#include <string.h>

#include "ingest.h"
#include "snap/clock.h"
#include "snap/cold_store.h"
#include "snap/hot_store.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/validate.h"

#define DEFAULT_TIMEOUT_S   60
#define ID_CONFLICT_RETRIES 3

/* Answers a failed store call and returns -1: record() must never return
 * http_reply_store_error()'s own result, which is 0 once the reply went out
 * (that made a refused send go on to become deliverable). */
static int refuse(struct http_req *r, const char *store, const char *what,
                  const struct snap_err *err)
{
    (void)http_reply_store_error(r, store, what, err);
    return -1;
}

/* Steps 1 and 2: a fresh id recorded with m in the cold store. Returns 0,
 * or -1 after it has answered the request (nothing was made deliverable). */
static int record(struct http_req *r, struct cold_msg *m)
{
    struct snap_err err;
    for (int attempt = 0; attempt < ID_CONFLICT_RETRIES; attempt++) {
        if (hot_next_id(r->hot, &m->id, &err) != SNAP_OK)
            return refuse(r, "redis", "taking a message id", &err);
        int rc = cold_msg_put(r->ctx->cold, m, &err);
        if (rc == SNAP_OK) return SNAP_OK;
        if (rc != SNAP_ECONFLICT) return refuse(r, "cold", "recording the message", &err);
        int64_t max_id = 0;
        log_event(SNAP_LOG_WARN, r->request_id, "id_conflict",
                  "id %lld already stored (Redis lost writes?); raising the counter",
                  (long long)m->id);
        if (cold_msg_max_id(r->ctx->cold, &max_id, &err) != SNAP_OK)
            return refuse(r, "cold", "reading the highest id", &err);
        if (hot_id_floor(r->hot, max_id, &err) != SNAP_OK)
            return refuse(r, "redis", "raising the id counter", &err);
    }
    snap_err_set(&err, SNAP_ERR, "ids kept conflicting after %d attempts", ID_CONFLICT_RETRIES);
    return refuse(r, "cold", "recording the message", &err);
}

void ingest_chat_send(struct http_req *r)
{
    const struct snap_config *cfg = &r->ctx->cfg;
    char msg[200];
    struct cold_msg m;
    memset(&m, 0, sizeof m);
    const char *text;
    long timeout;
    long dflt = cfg->max_timeout < DEFAULT_TIMEOUT_S ? cfg->max_timeout : DEFAULT_TIMEOUT_S;

    if (field_username(r->body, "username", m.username, msg, sizeof msg) != 0 ||
        field_string(r->body, "text", 1, (size_t)cfg->max_text_bytes, &text, &m.text_len, msg,
                     sizeof msg) != 0 ||
        field_timeout(r->body, "timeout", dflt, cfg->max_timeout, &timeout, msg, sizeof msg) != 0) {
        http_reply_error(r, HTTP_E_INVALID_FIELD, "%s", msg);
        return;
    }
    m.text = (char *)text; /* borrowed from the body; put() copies what it keeps */
    if (r->who.valid) {
        m.has_from = 1;
        snprintf(m.from, sizeof m.from, "%s", r->who.username);
    }
    m.created_ms = clock_now_ms();
    m.expires_ms = m.created_ms + (int64_t)timeout * 1000;

    if (record(r, &m) != SNAP_OK) return;

    struct snap_err err;
    if (hot_inbox_put(r->hot, m.username, m.id, m.expires_ms, m.text, m.text_len, &err) !=
        SNAP_OK) {
        struct snap_err err2;
        if (cold_msg_expire(r->ctx->cold, &m.id, 1, m.created_ms, &err2) != SNAP_OK)
            log_event(SNAP_LOG_ERROR, r->request_id, "undeliverable",
                      "message %lld is stored but not deliverable and could not be marked "
                      "expired: %s",
                      (long long)m.id, err2.msg);
        http_reply_store_error(r, "redis", "making the message deliverable", &err);
        return;
    }

    metrics_add(r->ctx->metrics, METRIC_MESSAGES_SENT, 1);
    char location[48];
    snprintf(location, sizeof location, "Location: /chat/%lld\r\n", (long long)m.id);
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)m.id); /* exact, not via double */
    cJSON *out = cJSON_CreateObject();
    if (!out || !cJSON_AddRawToObject(out, "id", id)) {
        cJSON_Delete(out);
        http_reply_error(r, HTTP_E_INTERNAL, "out of memory");
        return;
    }
    http_reply_json(r, 201, out, location);
    cJSON_Delete(out);
}
