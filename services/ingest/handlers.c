/* handlers.c: POST /chat — send a snap.
 *
 * The handler checks the request and hands the message to the pipeline
 * (pipeline.c), which keeps API.md's promise ("201 means durable and
 * deliverable; anything else means never delivered"): an id from the Redis
 * counter, the durable record in the cold store (after which the message
 * is claimable and the admin lookup finds it), then its hot copy in the
 * recipient's inbox index.
 *
 * Idempotency-Key: the key, scoped by the sender ("<from>/<key>"; "/<key>"
 * without a token), is stored with the message, and the store keeps it
 * unique. A retry finds the message by it and gets the same 201; the same
 * key with another message is 409. A key older than 24 hours is released
 * and may be used again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "ingest.h"
#include "snap/clock.h"
#include "snap/fmt.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/validate.h"

#define DEFAULT_TIMEOUT_S 60
#define IDEM_KEEP_MS      (24LL * 3600 * 1000) /* API.md: a send's key lives 24 hours */

/* 201 {"id":N} with Location for message id: written as is (the reply of
 * every send; a cJSON tree for one number cost more than the rest of the
 * reply). */
static void reply_created(struct http_res *res, int64_t id)
{
    char *body = malloc(8 + FMT_I64_MAX);
    struct fmt_buf b = fmt_buf_on(body, body != NULL ? 8 + FMT_I64_MAX : 0);

    if (body == NULL) {
        http_res_error(res, HTTP_E_INTERNAL, "out of memory");
        return;
    }
    fmt_str(&b, "{\"id\":");
    fmt_dec(&b, id); /* exact, not via double */
    fmt_char(&b, '}');
    (void)http_res_header(res, "Location: /chat/%lld\r\n", (long long)id);
    http_res_raw_take(res, 201, "application/json", body, b.len);
}

/* The retry of a send: answers from the message that holds m->idem, if a
 * live one does. Returns 1 when res holds the answer, 0 when the key is
 * free (a stale holder is released first). */
static int replay(const struct http_req *r, struct http_res *res, const struct cold_msg *m,
                  int64_t timeout_s)
{
    struct cold_msg old;
    struct snap_err err;
    int rc = cold_msg_find_idem(r->ctx->cold, m->idem, &old, &err);

    if (rc == SNAP_ENOTFOUND) return 0;
    if (rc != SNAP_OK) {
        http_res_store_error(res, "cold", "looking up the Idempotency-Key", &err);
        return 1;
    }
    if (old.created_ms < clock_now_ms() - IDEM_KEEP_MS) {
        rc = cold_msg_release_idem(r->ctx->cold, old.id, &err);
        cold_msg_cleanup(&old);
        if (rc == SNAP_OK) return 0;
        http_res_store_error(res, "cold", "releasing an old Idempotency-Key", &err);
        return 1;
    }
    if (strcmp(old.username, m->username) == 0 && old.text_len == m->text_len &&
        memcmp(old.text, m->text, m->text_len) == 0 &&
        old.expires_ms - old.created_ms == timeout_s * 1000)
        reply_created(res, old.id);
    else
        http_res_error(res, HTTP_E_CONFLICT,
                         "this Idempotency-Key was already used for a different message; "
                         "use a new key for a new message");
    cold_msg_cleanup(&old);
    return 1;
}

void ingest_chat_send(const struct http_req *r, struct http_res *res)
{
    const struct snap_config *cfg = &r->ctx->cfg;
    const struct ingest_state *st = r->ctx->data;
    const char *key = mg_get_header(r->conn, "Idempotency-Key");
    char msg[200];
    struct cold_msg m;
    memset(&m, 0, sizeof m);
    const char *text;
    long timeout;
    long dflt = cfg->max_timeout < DEFAULT_TIMEOUT_S ? cfg->max_timeout : DEFAULT_TIMEOUT_S;

    if (key != NULL && !idem_key_valid(key)) {
        http_res_error(res, HTTP_E_INVALID_FIELD,
                         "Idempotency-Key must be 1 to 64 characters of A-Z a-z 0-9 _ -");
        return;
    }
    if (field_username(r->body, "username", m.username, msg, sizeof msg) != 0 ||
        field_string(r->body, "text", 1, (size_t)cfg->max_text_bytes, &text, &m.text_len, msg,
                     sizeof msg) != 0 ||
        field_timeout(r->body, "timeout", dflt, cfg->max_timeout, &timeout, msg, sizeof msg) != 0) {
        http_res_error(res, HTTP_E_INVALID_FIELD, "%s", msg);
        return;
    }
    m.text = (char *)text; /* borrowed from the body until the pipeline is done */
    if (r->who.valid) {
        m.has_from = 1;
        snprintf(m.from, sizeof m.from, "%s", r->who.username);
    }
    if (key != NULL) {
        snprintf(m.idem, sizeof m.idem, "%s/%s", m.has_from ? m.from : "", key);
        if (replay(r, res, &m, timeout)) return;
    }
    m.created_ms = clock_now_ms();
    m.expires_ms = m.created_ms + (int64_t)timeout * 1000;

    struct send_job job = {.msg = m, .request_id = r->request_id};
    int rc = pipeline_send(st->pipeline, &job);
    if (rc == SNAP_EEXIST) { /* a concurrent send with the same key won */
        if (!replay(r, res, &m, timeout))
            http_res_error(res, HTTP_E_CONFLICT, "this Idempotency-Key is in use; retry");
        return;
    }
    if (rc == SNAP_EFULL) {
        http_res_error(res, HTTP_E_INBOX_FULL,
                         "%s already holds %ld unread messages; nothing was stored", m.username,
                         cfg->max_inbox);
        return;
    }
    if (rc != SNAP_OK) {
        http_res_store_error(res, job.store ? job.store : "ingest",
                               job.what ? job.what : "queueing the message", &job.err);
        return;
    }
    metrics_add(r->ctx->metrics, METRIC_MESSAGES_SENT, 1);
    reply_created(res, job.msg.id);
}
