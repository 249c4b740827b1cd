/* cold_mongo_doc.c: the message document of the MongoDB driver, both ways
 * (struct cold_msg -> the document an insert sends; a stored document ->
 * struct cold_msg), and the typed field readers (see cold_mongo_doc.h).
 * Every value is appended as typed BSON from C fields; nothing is parsed.
 * Not here: commands, filters of operations, the client pool (cold_mongo.c). */
#include "cold_mongo_doc.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

bool mongo_doc_str(const bson_t *doc, const char *key, char *out, size_t cap)
{
    bson_iter_t it;
    uint32_t len = 0;
    const char *v;

    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_UTF8(&it)) return false;
    v = bson_iter_utf8(&it, &len);
    if ((size_t)len >= cap || memchr(v, '\0', len) != NULL) return false;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

bool mongo_doc_date(const bson_t *doc, const char *key, int64_t *out)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DATE_TIME(&it)) return false;
    *out = bson_iter_date_time(&it);
    return true;
}

bool mongo_doc_id(const bson_t *doc, int64_t *out)
{
    bson_iter_t it;

    if (!bson_iter_init_find(&it, doc, MDOC_ID)) return false;
    if (BSON_ITER_HOLDS_INT64(&it))
        *out = bson_iter_int64(&it);
    else if (BSON_ITER_HOLDS_INT32(&it))
        *out = bson_iter_int32(&it);
    else
        return false;
    return true;
}

int mongo_doc_of_msg(const struct cold_msg *m, bson_t *doc)
{
    bool ok = true;

    /* cold_store.c checked the rest (ids, lengths, NUL bytes) and checks no
     * encoding. BSON requires UTF-8 strings with an int32 length, so this is
     * the driver's own check, not a repeat of the front's: the text and idem
     * come from clients (SQLite stores the same bytes as they are). */
    if (m->text_len > (size_t)INT_MAX || !bson_utf8_validate(m->text, m->text_len, false) ||
        !bson_utf8_validate(m->idem, strlen(m->idem), false))
        return SNAP_EINVAL;

    ok = ok && BSON_APPEND_INT64(doc, MDOC_ID, m->id);
    ok = ok && BSON_APPEND_UTF8(doc, MDOC_USER, m->username);
    if (m->has_from)
        ok = ok && BSON_APPEND_UTF8(doc, MDOC_FROM, m->from);
    else
        ok = ok && BSON_APPEND_NULL(doc, MDOC_FROM);
    ok = ok && bson_append_utf8(doc, MDOC_TEXT, -1, m->text, (int)m->text_len);
    ok = ok && BSON_APPEND_DATE_TIME(doc, MDOC_CREATED, m->created_ms);
    ok = ok && BSON_APPEND_DATE_TIME(doc, MDOC_EXPIRES, m->expires_ms);
    ok = ok && BSON_APPEND_INT32(doc, MDOC_STATE, COLD_OPEN);
    if (m->idem[0] != '\0') ok = ok && BSON_APPEND_UTF8(doc, MDOC_IDEM, m->idem);
    return ok ? SNAP_OK : SNAP_ERR;
}

/* state: a number 0..3. Written as int32; a hand-made migration may leave
 * an int64 or a whole double, which is the same state. */
static bool get_state(const bson_t *doc, int *out)
{
    bson_iter_t it;
    double d;

    if (!bson_iter_init_find(&it, doc, MDOC_STATE)) return false;
    if (BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it))
        d = (double)bson_iter_as_int64(&it);
    else if (BSON_ITER_HOLDS_DOUBLE(&it))
        d = bson_iter_double(&it);
    else
        return false;
    if (!(d == COLD_OPEN || d == COLD_READ || d == COLD_UNSENT || d == COLD_REFUSED)) return false;
    *out = (int)d;
    return true;
}

/* Optional fields: absent is fine, present with the wrong type is not. */
static bool get_opt_date(const bson_t *doc, const char *key, int64_t *out)
{
    return !bson_has_field(doc, key) || mongo_doc_date(doc, key, out);
}

static bool get_opt_str(const bson_t *doc, const char *key, char *out, size_t cap)
{
    return !bson_has_field(doc, key) || mongo_doc_str(doc, key, out, cap);
}

int mongo_doc_to_msg(const bson_t *doc, struct cold_msg *out, const char **bad)
{
    bson_iter_t it;
    uint32_t len = 0;
    const char *text;

    *bad = NULL;
    if (!mongo_doc_id(doc, &out->id))
        *bad = MDOC_ID;
    else if (!mongo_doc_str(doc, MDOC_USER, out->username, sizeof out->username))
        *bad = MDOC_USER;
    else if (!mongo_doc_date(doc, MDOC_CREATED, &out->created_ms))
        *bad = MDOC_CREATED;
    else if (!mongo_doc_date(doc, MDOC_EXPIRES, &out->expires_ms))
        *bad = MDOC_EXPIRES;
    else if (!get_state(doc, &out->state))
        *bad = MDOC_STATE;
    else if (!get_opt_date(doc, MDOC_CLOSED, &out->closed_ms))
        *bad = MDOC_CLOSED;
    else if (!get_opt_str(doc, MDOC_IDEM, out->idem, sizeof out->idem))
        *bad = MDOC_IDEM;
    else if (!bson_iter_init_find(&it, doc, MDOC_FROM))
        *bad = MDOC_FROM;
    else if (BSON_ITER_HOLDS_NULL(&it))
        out->has_from = 0;
    else if (mongo_doc_str(doc, MDOC_FROM, out->from, sizeof out->from))
        out->has_from = 1;
    else
        *bad = MDOC_FROM;
    if (*bad == NULL && (!bson_iter_init_find(&it, doc, MDOC_TEXT) || !BSON_ITER_HOLDS_UTF8(&it)))
        *bad = MDOC_TEXT;
    if (*bad != NULL) return SNAP_ERR;

    text = bson_iter_utf8(&it, &len);
    out->text = malloc((size_t)len + 1);
    if (!out->text) return SNAP_ERR; /* *bad stays NULL: out of memory */
    memcpy(out->text, text, len);
    out->text[len] = '\0';
    out->text_len = len;
    return SNAP_OK;
}

bool mongo_doc_append_in(bson_t *parent, const char *key, const int64_t *ids, size_t n)
{
    bson_t cond, in;
    bool ok = true;

    ok = ok && BSON_APPEND_DOCUMENT_BEGIN(parent, key, &cond);
    ok = ok && BSON_APPEND_ARRAY_BEGIN(&cond, "$in", &in);
    for (size_t i = 0; ok && i < n; i++) {
        char keybuf[16];
        const char *k;
        size_t klen = bson_uint32_to_string((uint32_t)i, &k, keybuf, sizeof keybuf);
        ok = bson_append_int64(&in, k, (int)klen, ids[i]);
    }
    ok = ok && bson_append_array_end(&cond, &in);
    ok = ok && bson_append_document_end(parent, &cond);
    return ok;
}
