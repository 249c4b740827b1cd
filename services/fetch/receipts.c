/* receipts.c: the sender's side of a message — its receipt
 * (GET /chat/{id}/status) and unsend (DELETE /chat/{id}).
 *
 * Both read the cold store, the system of record: a message is unread,
 * read (claimed by a read), expired (its timeout passed unread) or unsent.
 * Unsend is the same kind of conditional write as a read's claim
 * (cold_msg_close: only an open, unexpired message moves), so a read and an
 * unsend racing for one message end with exactly one of them having it.
 * Only the sender (the message's `from`) and admins may see or withdraw a
 * message; the text is never part of a receipt. */
#include <stdio.h>
#include <string.h>

#include "fetch.h"
#include "snap/clock.h"
#include "snap/log.h"
#include "snap/metrics.h"
#include "snap/validate.h"

/* Loads the message of the path's id for its sender or an admin into *m.
 * Returns 0 with *m filled (cold_msg_cleanup), or -1 with the refusal in res. */
static int load_for_sender(const struct http_req *r, struct http_res *res, struct cold_msg *m)
{
    struct snap_err err;
    int64_t id;

    if (id_parse(r->param, r->param_len, &id) != 0) {
        http_res_error(res, HTTP_E_INVALID_FIELD,
                         "id must be a positive 64-bit integer (decimal digits only)");
        return -1;
    }
    int rc = cold_msg_get(r->ctx->cold, id, m, &err);
    if (rc == SNAP_OK && m->state == COLD_REFUSED) { /* its send failed: it never existed */
        cold_msg_cleanup(m);
        rc = SNAP_ENOTFOUND;
    }
    if (rc == SNAP_ENOTFOUND) {
        http_res_error(res, HTTP_E_NOT_FOUND, "no message with id %lld", (long long)id);
        return -1;
    }
    if (rc != SNAP_OK) {
        http_res_store_error(res, "cold", "looking up the message", &err);
        return -1;
    }
    if (strcmp(r->who.role, "admin") != 0 &&
        !(m->has_from && strcmp(m->from, r->who.username) == 0)) {
        cold_msg_cleanup(m);
        http_res_error(res, HTTP_E_FORBIDDEN, "only the sender of a message or an admin may do this");
        return -1;
    }
    return 0;
}

void fetch_chat_status(const struct http_req *r, struct http_res *res)
{
    struct cold_msg m;
    char when[SNAP_TIME_STR_LEN], id[24];
    const char *state;

    if (load_for_sender(r, res, &m) != 0) return;
    switch (m.state) {
    case COLD_READ: state = "read"; break;
    case COLD_UNSENT: state = "unsent"; break;
    default: state = m.expires_ms > clock_now_ms() ? "unread" : "expired"; break;
    }
    snprintf(id, sizeof id, "%lld", (long long)m.id);
    cJSON *o = cJSON_CreateObject();
    int ok = o && cJSON_AddRawToObject(o, "id", id) && cJSON_AddStringToObject(o, "state", state) &&
             cJSON_AddStringToObject(o, "expires_at", clock_format_utc(m.expires_ms, when)) &&
             (m.state == COLD_READ
                  ? cJSON_AddStringToObject(o, "read_at", clock_format_utc(m.closed_ms, when)) != NULL
                  : cJSON_AddNullToObject(o, "read_at") != NULL);
    if (ok) metrics_add(r->ctx->metrics, METRIC_STATUS_READS, 1);
    http_res_json(res, 200, o, ok);
    cold_msg_cleanup(&m);
}

void fetch_chat_unsend(const struct http_req *r, struct http_res *res)
{
    struct cold_msg m;
    struct snap_err err;
    size_t closed = 0;

    if (load_for_sender(r, res, &m) != 0) return;
    int64_t id = m.id;
    char user[SNAP_USERNAME_MAX + 1];
    snprintf(user, sizeof user, "%s", m.username);
    cold_msg_cleanup(&m);
    if (cold_msg_close(r->ctx->cold, &id, 1, COLD_UNSENT, clock_now_ms(), &closed, &err) !=
        SNAP_OK) {
        http_res_store_error(res, "cold", "unsending the message", &err);
        return;
    }
    if (closed == 0) {
        http_res_error(res, HTTP_E_CONFLICT,
                         "message %lld is no longer unread (already read, expired or unsent)",
                         (long long)id);
        return;
    }
    /* The index entry is stale now; a read would refuse it anyway. */
    struct hot_drop d = {user, &id, 1};
    if (r->hot != NULL && hot_inbox_drop_many(r->hot, &d, 1, &err) != SNAP_OK)
        log_event(SNAP_LOG_INFO, r->request_id, "unsend",
                  "message %lld unsent; its index entry stays until a read drops it: %s",
                  (long long)id, err.msg);
    metrics_add(r->ctx->metrics, METRIC_UNSENDS, 1);
    http_res_raw(res, 204, "application/json", "", 0);
}
