/* handlers.c: POST /chat — send a snap.
 *
 * The handler checks the request and hands the message to the pipeline
 * (pipeline.c), which keeps the order of API.md's promise ("201 means
 * durable and deliverable; anything else means never delivered"):
 *   1. id from the Redis counter;
 *   2. durable insert in the cold store — after this the admin lookup finds it;
 *   3. hot copy in the recipient's inbox, with its expiry.
 * The answer waits for all three. */
#include <stdio.h>
#include <string.h>

#include "ingest.h"
#include "snap/clock.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/validate.h"

#define DEFAULT_TIMEOUT_S 60

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
    m.text = (char *)text; /* borrowed from the body until the pipeline is done */
    if (r->who.valid) {
        m.has_from = 1;
        snprintf(m.from, sizeof m.from, "%s", r->who.username);
    }
    m.created_ms = clock_now_ms();
    m.expires_ms = m.created_ms + (int64_t)timeout * 1000;

    struct send_job job = {.msg = m, .request_id = r->request_id};
    if (pipeline_send(r->ctx->data, &job) != SNAP_OK) {
        http_reply_store_error(r, job.store ? job.store : "ingest",
                               job.what ? job.what : "queueing the message", &job.err);
        return;
    }
    m.id = job.msg.id;

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
