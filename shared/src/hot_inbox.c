/* hot_inbox.c: the inbox index in Redis (snap/hot_inbox.h) — puts with
 * their wake-up PUBLISH and the send pipeline's id reservation, bounded
 * peeks, drops by id, waiting on an inbox's wake channel, and the epoch
 * that tells a repair whether Redis still holds the index.
 * Not here: the connection (redis_conn.c), delivery (cold_store.c). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include "snap/hot_inbox.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"
#include "snap/clock.h"

/* A message text far above any SNAPTEXT_MAX_TEXT_BYTES, well under Redis's
 * 512 MB bulk limit: anything larger is a caller bug, not a message. */
#define HOT_TEXT_MAX  ((size_t)64 * 1024 * 1024)
#define HOT_SCORE_MAX ((int64_t)1 << 53) /* ids a sorted-set score holds exactly */
#define HOT_PEEK_MAX  100000             /* most candidates one peek returns */

static const char KEY_EPOCH[] = "snap:epoch";
static const char KEY_INBOX_SUFFIX[] = "}:msgs";
static const char KEY_WAKE_SUFFIX[] = "}:wake";

/* key = "snap:{" user "}:inbox"; key holds HOT_INBOX_KEY_MAX bytes. */
#define HOT_INBOX_KEY_MAX                                                                          \
    (sizeof REDIS_KEY_USER_OPEN - 1 + SNAP_USERNAME_MAX + sizeof KEY_INBOX_SUFFIX)

static int inbox_key(const char *user, char *key, size_t *key_len, struct snap_err *err)
{
    return redis_make_key(REDIS_KEY_USER_OPEN, user, SNAP_USERNAME_MAX, KEY_INBOX_SUFFIX,
                          "inbox: username", key, key_len, err);
}

/* The pub/sub channel "snap:{" user "}:wake": a message there says "this
 * inbox just got an entry". Holds HOT_INBOX_KEY_MAX bytes. */
static int wake_channel(const char *user, char *chan, size_t *chan_len, struct snap_err *err)
{
    return redis_make_key(REDIS_KEY_USER_OPEN, user, SNAP_USERNAME_MAX, KEY_WAKE_SUFFIX,
                          "wake: username", chan, chan_len, err);
}

#define HOT_PUT_CMDS 6 /* MULTI ZADD PEXPIREAT PEXPIREAT EXEC PUBLISH */

/* The five commands that put p into its inbox, built in c[0..5) over the
 * buffers of b (which must outlive the round trip; b->member is heap
 * memory the caller frees).
 *
 * One MULTI ... EXEC, applied atomically. The inbox is a sorted set scored
 * by id (oldest first, bounded reads take a prefix) whose members are
 * "<id> <expires_ms> <text>": the id keeps members unique, so putting the
 * same message again (a repair) changes nothing. NX gives a new inbox its
 * first TTL; GT then only ever moves an existing TTL later, so the key
 * lives exactly until its last message expires. MULTI rather than a
 * script: plain commands need no script cache to (re)load after a restart
 * or a failover, and read as themselves in MONITOR and SLOWLOG. Every
 * command names the one hash-tagged key, so it also holds on Cluster. A
 * message already expired when put into a new inbox makes PEXPIREAT delete
 * the key at once: nothing deliverable is lost. Scores are doubles, exact
 * for ids below 2^53. */
struct put_bufs {
    char key[HOT_INBOX_KEY_MAX], chan[HOT_INBOX_KEY_MAX], score[24], exp[24];
    size_t key_len, chan_len, score_len, exp_len;
    char *member;
    size_t member_len;
};

/* "<id> <expires_ms> <text>" into *out (heap, the caller's). */
static int member_build(int64_t id, int64_t expires_ms, const char *text, size_t text_len,
                        char **out, size_t *out_len, struct snap_err *err)
{
    char a[24], b[24];
    size_t al = redis_fmt_i64(a, id), bl = redis_fmt_i64(b, expires_ms),
           len = al + 1 + bl + 1 + text_len;
    char *m = malloc(len);

    *out = NULL;
    if (m == NULL) return snap_err_set(err, SNAP_ERR, "inbox: out of memory (%zu bytes)", len);
    memcpy(m, a, al);
    m[al] = ' ';
    memcpy(m + al + 1, b, bl);
    m[al + 1 + bl] = ' ';
    if (text_len > 0) memcpy(m + al + 2 + bl, text, text_len);
    *out = m;
    *out_len = len;
    return SNAP_OK;
}

static int put_build(const struct hot_put *p, struct put_bufs *b, struct redis_cmd c[HOT_PUT_CMDS],
                     struct snap_err *err)
{
    int rc = inbox_key(p->user, b->key, &b->key_len, err);

    if (rc == SNAP_OK) rc = wake_channel(p->user, b->chan, &b->chan_len, err);
    b->member = NULL;
    if (rc != SNAP_OK) return rc;
    if (p->id <= 0 || p->id > HOT_SCORE_MAX || p->expires_ms <= 0)
        return snap_err_set(err, SNAP_EINVAL, "inbox put: id and expiry must be positive");
    if ((p->text == NULL && p->text_len > 0) || p->text_len > HOT_TEXT_MAX)
        return snap_err_set(err, SNAP_EINVAL, "inbox put: bad text (%zu bytes)", p->text_len);
    b->score_len = redis_fmt_i64(b->score, p->id);
    b->exp_len = redis_fmt_i64(b->exp, p->expires_ms);
    rc = member_build(p->id, p->expires_ms, p->text, p->text_len, &b->member, &b->member_len, err);
    if (rc != SNAP_OK) return rc;

    memset(c, 0, HOT_PUT_CMDS * sizeof *c);
    redis_cmd_adds(&c[0], "MULTI");
    redis_cmd_adds(&c[1], "ZADD");
    redis_cmd_add(&c[1], b->key, b->key_len);
    redis_cmd_add(&c[1], b->score, b->score_len);
    redis_cmd_add(&c[1], b->member, b->member_len);
    for (int i = 2; i <= 3; i++) {
        redis_cmd_adds(&c[i], "PEXPIREAT");
        redis_cmd_add(&c[i], b->key, b->key_len);
        redis_cmd_add(&c[i], b->exp, b->exp_len);
        redis_cmd_adds(&c[i], i == 2 ? "NX" : "GT");
    }
    redis_cmd_adds(&c[4], "EXEC");
    /* Then wake whoever waits for this inbox (hot_wait_*): after the EXEC,
     * so a woken reader finds the entry. */
    redis_cmd_adds(&c[5], "PUBLISH");
    redis_cmd_add(&c[5], b->chan, b->chan_len);
    redis_cmd_adds(&c[5], "");
    return SNAP_OK;
}

int hot_inbox_put_many(struct hot_store *h, const struct hot_put *puts, size_t n, int *rcs,
                       size_t reserve, int64_t *first_id, const char *const *count_users,
                       size_t ncount, int64_t *counts, struct snap_err *err)
{
    struct put_bufs *b = NULL;
    char(*ckeys)[HOT_INBOX_KEY_MAX] = NULL;
    struct redis_cmd *cmds = NULL;
    redisReply **r = NULL;
    size_t ncmds = HOT_PUT_CMDS * n + (reserve > 0) + ncount, i, at;
    char count[24];
    int rc = redis_check_handle(h, err), first_fail = SNAP_OK;

    if (rc != SNAP_OK) return rc;
    if ((n > 0 && (puts == NULL || rcs == NULL)) || (reserve > 0 && first_id == NULL) ||
        (ncount > 0 && (count_users == NULL || counts == NULL)) || reserve > (size_t)INT64_MAX ||
        ncmds == 0)
        return snap_err_set(err, SNAP_EINVAL, "inbox put: nothing to do or no output");
    if (first_id != NULL) *first_id = 0;
    for (i = 0; i < ncount; i++) counts[i] = -1;
    b = calloc(n ? n : 1, sizeof *b);
    ckeys = calloc(ncount ? ncount : 1, sizeof *ckeys);
    cmds = calloc(ncmds, sizeof *cmds);
    r = calloc(ncmds, sizeof *r);
    if (b == NULL || ckeys == NULL || cmds == NULL || r == NULL) {
        rc = snap_err_set(err, SNAP_ERR, "inbox put: out of memory for %zu puts", n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        rc = put_build(&puts[i], &b[i], &cmds[HOT_PUT_CMDS * i], err);
        if (rc != SNAP_OK) goto out; /* a caller bug: nothing is sent */
    }
    at = HOT_PUT_CMDS * n;
    if (reserve > 0) {
        redis_cmd_adds(&cmds[at], "INCRBY");
        redis_cmd_add(&cmds[at], REDIS_KEY_NEXT_ID, sizeof REDIS_KEY_NEXT_ID - 1);
        redis_cmd_add(&cmds[at], count, redis_fmt_i64(count, (int64_t)reserve));
        at++;
    }
    for (i = 0; i < ncount; i++, at++) {
        size_t key_len;
        rc = inbox_key(count_users[i], ckeys[i], &key_len, err);
        if (rc != SNAP_OK) goto out;
        redis_cmd_adds(&cmds[at], "ZCARD");
        redis_cmd_add(&cmds[at], ckeys[i], key_len);
    }
    /* Resent on a stale connection like any idempotent write: a put is a
     * ZADD of the same member, and an INCRBY that ran twice only skips ids. */
    rc = redis_roundtrip(h, cmds, ncmds, r, err);
    if (rc != SNAP_OK) {
        for (i = 0; i < n; i++) rcs[i] = rc;
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct snap_err one;
        rcs[i] = redis_transaction_ok(h, &r[HOT_PUT_CMDS * i], 5, "inbox put", &one);
        if (rcs[i] != SNAP_OK && first_fail == SNAP_OK) {
            first_fail = rcs[i];
            *err = one;
        }
    }
    at = HOT_PUT_CMDS * n;
    if (reserve > 0) {
        const redisReply *ir = r[at++];
        struct snap_err one;
        int irc = redis_reply_ok(h, ir, "INCRBY", &one);
        if (irc == SNAP_OK && (ir->type != REDIS_REPLY_INTEGER || ir->integer < (long long)reserve))
            irc = redis_unexpected(h, "INCRBY", &one);
        if (irc == SNAP_OK)
            *first_id = (int64_t)ir->integer - (int64_t)reserve + 1;
        else if (first_fail == SNAP_OK) {
            first_fail = irc;
            *err = one;
        }
    }
    for (i = 0; i < ncount; i++, at++)
        if (r[at]->type == REDIS_REPLY_INTEGER) counts[i] = (int64_t)r[at]->integer;
    rc = first_fail;
out:
    if (r != NULL) redis_free_replies(r, ncmds);
    for (i = 0; b != NULL && i < n; i++) free(b[i].member);
    free(b);
    free(ckeys);
    free(cmds);
    free(r);
    return rc;
}

int hot_inbox_put(struct hot_store *h, const char *user, int64_t id, int64_t expires_ms,
                  const char *text, size_t text_len, struct snap_err *err)
{
    struct hot_put p = {user, id, expires_ms, text, text_len};
    int rc1;

    return hot_inbox_put_many(h, &p, 1, &rc1, 0, NULL, NULL, 0, NULL, err);
}

/* Appends id to p's dead list. */
static int dead_add(struct hot_peek *p, size_t cap, int64_t id)
{
    if (p->n_dead < cap) p->dead[p->n_dead++] = id;
    return SNAP_OK;
}

/* Turns ZRANGE ... WITHSCORES' flat [member, score, ...] into p: the
 * members that expire after now_ms become candidates (in id order, as
 * Redis returns them); expired or malformed ones go to p->dead by their
 * score, so the caller can drop them. */
static int collect(const redisReply *all, int64_t now_ms, struct hot_peek *p, struct snap_err *err)
{
    size_t pairs = all->elements / 2;

    if (pairs == 0) return SNAP_OK;
    p->msgs.items = calloc(pairs, sizeof *p->msgs.items);
    p->dead = calloc(pairs, sizeof *p->dead);
    if (p->msgs.items == NULL || p->dead == NULL)
        return snap_err_set(err, SNAP_ERR, "inbox peek: out of memory (%zu messages)", pairs);
    for (size_t i = 0; i < pairs; i++) {
        const redisReply *v = all->element[2 * i], *sc = all->element[2 * i + 1];
        struct hot_msg *m = &p->msgs.items[p->msgs.len];
        const char *sp1, *sp2;
        int64_t score_id = 0;
        size_t text_len;

        if (sc->type != REDIS_REPLY_STRING || !redis_parse_i64(sc->str, sc->len, &score_id) ||
            score_id <= 0)
            continue; /* not ours at all (a score with a fraction): left alone */
        if (v->type != REDIS_REPLY_STRING || (sp1 = memchr(v->str, ' ', v->len)) == NULL ||
            !redis_parse_i64(v->str, (size_t)(sp1 - v->str), &m->id) || m->id != score_id ||
            (sp2 = memchr(sp1 + 1, ' ', v->len - (size_t)(sp1 + 1 - v->str))) == NULL ||
            !redis_parse_i64(sp1 + 1, (size_t)(sp2 - sp1 - 1), &m->expires_ms) ||
            m->expires_ms <= now_ms) {
            (void)dead_add(p, pairs, score_id);
            continue;
        }
        text_len = v->len - (size_t)(sp2 + 1 - v->str);
        m->text = malloc(text_len + 1);
        if (m->text == NULL)
            return snap_err_set(err, SNAP_ERR, "inbox peek: out of memory (%zu bytes)",
                                text_len + 1);
        memcpy(m->text, sp2 + 1, text_len);
        m->text[text_len] = '\0';
        m->text_len = text_len;
        p->msgs.len++;
    }
    return SNAP_OK;
}

int hot_inbox_peek_many(struct hot_store *h, const char *const *users, const size_t *limits,
                        size_t n, int64_t now_ms, struct hot_peek *outs, struct snap_err *err)
{
    char(*keys)[HOT_INBOX_KEY_MAX] = NULL;
    char(*stops)[24] = NULL;
    struct redis_cmd *cmds = NULL;
    redisReply **r = NULL;
    size_t i;
    int rc = redis_check_handle(h, err), first_fail = SNAP_OK;

    for (i = 0; outs != NULL && i < n; i++) outs[i] = (struct hot_peek){.rc = SNAP_ERR};
    if (rc != SNAP_OK) return rc;
    if (n == 0) return SNAP_OK;
    if (users == NULL || limits == NULL || outs == NULL)
        return snap_err_set(err, SNAP_EINVAL, "inbox peek: no users, limits or output");
    keys = calloc(n, sizeof *keys);
    stops = calloc(n, sizeof *stops);
    cmds = calloc(2 * n, sizeof *cmds);
    r = calloc(2 * n, sizeof *r);
    if (keys == NULL || stops == NULL || cmds == NULL || r == NULL) {
        rc = snap_err_set(err, SNAP_ERR, "inbox peek: out of memory for %zu inboxes", n);
        goto out;
    }
    for (i = 0; i < n; i++) {
        size_t key_len;
        struct redis_cmd *c = &cmds[2 * i];

        rc = inbox_key(users[i], keys[i], &key_len, err);
        if (rc == SNAP_OK && (limits[i] == 0 || limits[i] > HOT_PEEK_MAX))
            rc = snap_err_set(err, SNAP_EINVAL, "inbox peek: limit %zu out of range", limits[i]);
        if (rc != SNAP_OK) goto out; /* a caller bug: nothing is sent */
        redis_cmd_adds(&c[0], "ZRANGE");
        redis_cmd_add(&c[0], keys[i], key_len);
        redis_cmd_adds(&c[0], "0");
        redis_cmd_add(&c[0], stops[i], redis_fmt_i64(stops[i], (int64_t)limits[i] - 1));
        redis_cmd_adds(&c[0], "WITHSCORES");
        redis_cmd_adds(&c[1], "ZCARD");
        redis_cmd_add(&c[1], keys[i], key_len);
    }
    /* Reads only: safe to resend on a stale connection. */
    rc = redis_roundtrip(h, cmds, 2 * n, r, err);
    if (rc != SNAP_OK) {
        for (i = 0; i < n; i++) outs[i].rc = rc;
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct hot_peek *p = &outs[i];
        struct snap_err one;
        const redisReply *all = r[2 * i], *card = r[2 * i + 1];

        p->rc = redis_reply_ok(h, all, "inbox peek", &one);
        if (p->rc == SNAP_OK) p->rc = redis_reply_ok(h, card, "inbox peek", &one);
        if (p->rc == SNAP_OK && (all->type != REDIS_REPLY_ARRAY || all->elements % 2 != 0 ||
                                 card->type != REDIS_REPLY_INTEGER))
            p->rc = redis_unexpected(h, "inbox peek", &one);
        if (p->rc == SNAP_OK) {
            p->total = (int64_t)card->integer;
            p->rc = collect(all, now_ms, p, &one);
        }
        if (p->rc != SNAP_OK) {
            hot_peek_free(p);
            p->rc = p->rc == SNAP_OK ? SNAP_ERR : p->rc;
            if (first_fail == SNAP_OK) {
                first_fail = p->rc;
                *err = one;
            }
        }
    }
    rc = first_fail;
out:
    if (r != NULL) redis_free_replies(r, 2 * n);
    free(keys);
    free(stops);
    free(cmds);
    free(r);
    return rc;
}

void hot_peek_free(struct hot_peek *p)
{
    if (p == NULL) return;
    hot_msg_list_free(&p->msgs);
    free(p->dead);
    p->dead = NULL;
    p->n_dead = 0;
}

int hot_inbox_drop_many(struct hot_store *h, const struct hot_drop *drops, size_t n,
                        struct snap_err *err)
{
    char(*keys)[HOT_INBOX_KEY_MAX] = NULL;
    char(*nums)[24] = NULL;
    struct redis_cmd *cmds = NULL;
    redisReply **r = NULL;
    size_t total = 0, i, j, k = 0;
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (n > 0 && drops == NULL) return snap_err_set(err, SNAP_EINVAL, "inbox drop: no drops");
    for (i = 0; i < n; i++) {
        if (drops[i].n > 0 && drops[i].ids == NULL)
            return snap_err_set(err, SNAP_EINVAL, "inbox drop: no ids");
        total += drops[i].n;
    }
    if (total == 0) return SNAP_OK;
    keys = calloc(n, sizeof *keys);
    nums = calloc(total, sizeof *nums);
    cmds = calloc(total, sizeof *cmds);
    r = calloc(total, sizeof *r);
    if (keys == NULL || nums == NULL || cmds == NULL || r == NULL) {
        rc = snap_err_set(err, SNAP_ERR, "inbox drop: out of memory for %zu ids", total);
        goto out;
    }
    /* By score, one command per id: exactly the entries given, whatever
     * their member holds, and nothing put meanwhile with another id. */
    for (i = 0; i < n; i++) {
        size_t key_len;
        rc = inbox_key(drops[i].user, keys[i], &key_len, err);
        if (rc != SNAP_OK) goto out;
        for (j = 0; j < drops[i].n; j++, k++) {
            size_t len = redis_fmt_i64(nums[k], drops[i].ids[j]);
            redis_cmd_adds(&cmds[k], "ZREMRANGEBYSCORE");
            redis_cmd_add(&cmds[k], keys[i], key_len);
            redis_cmd_add(&cmds[k], nums[k], len);
            redis_cmd_add(&cmds[k], nums[k], len);
        }
    }
    rc = redis_roundtrip(h, cmds, total, r, err); /* idempotent */
    for (k = 0; rc == SNAP_OK && k < total; k++) rc = redis_reply_ok(h, r[k], "inbox drop", err);
out:
    if (r != NULL) redis_free_replies(r, total);
    free(keys);
    free(nums);
    free(cmds);
    free(r);
    return rc;
}

void hot_msg_list_free(struct hot_msg_list *l)
{
    if (l == NULL) return;
    for (size_t i = 0; i < l->len; i++) free(l->items[i].text);
    free(l->items);
    l->items = NULL;
    l->len = 0;
}

/* Waiting for an inbox (a read with ?wait=S): the handle's connection is
 * given over to pub/sub on the inbox's wake channel for the wait and closed
 * at its end (hot_wait_end), so no subscription outlives it; the next call
 * on the handle connects afresh. Ingest publishes on the channel after each
 * hot put (put_build). */
int hot_wait_begin(struct hot_store *h, const char *user, struct snap_err *err)
{
    char chan[HOT_INBOX_KEY_MAX];
    size_t chan_len;
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = redis_check_handle(h, err);

    if (rc == SNAP_OK) rc = wake_channel(user, chan, &chan_len, err);
    if (rc != SNAP_OK) return rc;
    redis_cmd_adds(&cmd, "SUBSCRIBE");
    redis_cmd_add(&cmd, chan, chan_len);
    rc = redis_roundtrip(h, &cmd, 1, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_ARRAY) rc = redis_unexpected(h, "SUBSCRIBE", err);
    freeReplyObject(r);
    return rc;
}

int hot_wait_for(struct hot_store *h, int timeout_ms, int client_fd, struct snap_err *err)
{
    int64_t until = clock_mono_ns() / 1000000 + timeout_ms;

    if (h == NULL || h->c == NULL) return snap_err_set(err, SNAP_EINVAL, "wait: not subscribed");
    for (;;) {
        void *reply = NULL;
        int64_t left = until - clock_mono_ns() / 1000000;
        struct pollfd p[2] = {{.fd = h->c->fd, .events = POLLIN},
                              {.fd = client_fd, .events = POLLRDHUP}};

        if (redisGetReplyFromReader(h->c, &reply) != REDIS_OK)
            return snap_err_set(err, SNAP_EUNAVAIL, "wait: %s", h->c->errstr);
        if (reply != NULL) { /* a message on the channel: something arrived */
            freeReplyObject(reply);
            return SNAP_OK;
        }
        if (left <= 0) return SNAP_ENOTFOUND;
        int n = poll(p, client_fd >= 0 ? 2 : 1, (int)left);
        if (n < 0 && errno != EINTR) return snap_err_set(err, SNAP_EUNAVAIL, "wait: poll failed");
        if (n <= 0) continue;
        if (client_fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            return snap_err_set(err, SNAP_EGONE, "wait: the client went away");
        if (p[0].revents & (POLLHUP | POLLERR | POLLNVAL))
            return snap_err_set(err, SNAP_EUNAVAIL, "wait: redis closed the connection");
        if ((p[0].revents & POLLIN) && redisBufferRead(h->c) != REDIS_OK)
            return snap_err_set(err, SNAP_EUNAVAIL, "wait: %s", h->c->errstr);
    }
}

void hot_wait_end(struct hot_store *h)
{
    if (h == NULL || h->c == NULL) return;
    redis_close(h); /* a clean close: not a lost connection */
}

/* The epoch: a random value Redis holds as long as it holds its data. A
 * Redis that comes back without it (restarted empty, a new machine) has
 * lost the hot index, and the repair rebuilds all of it. */
int hot_epoch_get(struct hot_store *h, char *out, size_t cap, struct snap_err *err)
{
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (out == NULL || cap == 0) return snap_err_set(err, SNAP_EINVAL, "epoch: no output");
    out[0] = '\0';
    redis_cmd_adds(&cmd, "GET");
    redis_cmd_add(&cmd, KEY_EPOCH, sizeof KEY_EPOCH - 1);
    rc = redis_command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = snap_err_set(err, SNAP_ENOTFOUND, "epoch: not set");
    else if (r->type != REDIS_REPLY_STRING || r->len >= cap)
        rc = redis_unexpected(h, "GET epoch", err);
    else {
        memcpy(out, r->str, r->len);
        out[r->len] = '\0';
    }
    freeReplyObject(r);
    return rc;
}

int hot_epoch_set(struct hot_store *h, const char *value, struct snap_err *err)
{
    struct redis_cmd cmd = {0};
    redisReply *r = NULL;
    int rc = redis_check_handle(h, err);

    if (rc != SNAP_OK) return rc;
    if (value == NULL || value[0] == '\0') return snap_err_set(err, SNAP_EINVAL, "epoch: empty");
    redis_cmd_adds(&cmd, "SET");
    redis_cmd_add(&cmd, KEY_EPOCH, sizeof KEY_EPOCH - 1);
    redis_cmd_adds(&cmd, value);
    redis_cmd_adds(&cmd, "NX"); /* the first process to set it wins; the others adopt it */
    rc = redis_command(h, &cmd, &r, err);
    if (rc != SNAP_OK) return rc;
    if (r->type != REDIS_REPLY_STATUS && r->type != REDIS_REPLY_NIL)
        rc = redis_unexpected(h, "SET epoch", err);
    freeReplyObject(r);
    return rc;
}
