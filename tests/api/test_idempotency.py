"""Retries with Idempotency-Key, bounded reads and full inboxes, through
HAProxy (API.md "Retries", "GET /chats/{username}", 429 `inbox_full`).

One stack in open mode with SNAPTEXT_READ_MAX=5 and SNAPTEXT_MAX_INBOX=8,
so both bounds are reached with a handful of messages.
- A retried send (same key, same body) gets the same 201 and id, and the
  message exists once (admin lookup; delivered once); the same key with
  another body is 409. The same after a reply lost on purpose: a raw socket
  sends the request, waits until the service has answered, and closes
  without reading the answer.
- A retried read (same key) returns exactly what the first attempt claimed,
  again, even after new messages arrived and even when the first reply was
  lost; a read with another key gets only the rest, nothing twice. Only a
  read with a key leaves its key on what it claimed (the cold store's claim
  column); a read without one leaves nothing there.
- Bad keys are 400 invalid_field naming Idempotency-Key.
- ?limit=N, X-More-Messages: true while more remain, the READ_MAX cap, bad
  limits (400 invalid_field); 429 inbox_full beyond MAX_INBOX unread, with
  nothing stored, and sends accepted again once the inbox was read."""
import json
import socket
import sqlite3
import sys
import time

import snaptest
from snaptest import test

S = None
READ_MAX = 5
MAX_INBOX = 8


def unique(prefix):
    return "%s%d" % (prefix, time.time() * 1e6)


def read(user, key=None, limit=None):
    path = "/chats/" + user + ("?limit=%s" % limit if limit is not None else "")
    return S.req("GET", path, headers={"Idempotency-Key": key} if key else None)


def lose_reply(method, path, body=None, key=None, wait=0.5):
    """Sends one request on a raw socket, gives the service `wait` seconds to
    answer, and closes without reading a byte: the reply is lost."""
    data = json.dumps(body).encode() if body is not None else b""
    head = "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" % (method, path)
    if key:
        head += "Idempotency-Key: %s\r\n" % key
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    s = socket.create_connection(("127.0.0.1", S.port), timeout=5)
    try:
        s.sendall(head.encode() + b"\r\n" + data)
        time.sleep(wait * snaptest.TIMEOUT_MULT)
    finally:
        # RST instead of FIN: the unread reply is discarded
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()


def inbox_ids(user):
    st, h, got = read(user)
    assert st == 200, (st, got)
    return [m["id"] for m in got]


@test
def send_retried_with_the_same_key_is_stored_once():
    user, key = unique("is"), unique("k-")
    st1, h1, b1 = S.send(user, "hello once", key=key, expect=None)
    assert st1 == 201, (st1, b1)
    st2, h2, b2 = S.send(user, "hello once", key=key, expect=None)
    assert st2 == 201 and b2["id"] == b1["id"], (st2, b2, b1)
    assert h2.get("location") == "/chat/%d" % b1["id"], h2
    st, _, b = S.send(user, "another body", key=key, expect=None)
    assert st == 409 and b["error"] == "conflict", (st, b)
    st, _, b = S.send(user, "hello once", timeout=61, key=key, expect=None)
    assert st == 409 and b["error"] == "conflict", ("another timeout, same key", st, b)
    # another key is another message
    st3, _, b3 = S.send(user, "hello once", key=key + "x", expect=None)
    assert st3 == 201 and b3["id"] != b1["id"], (st3, b3)
    st, _, m = S.req("GET", "/chat/%d" % b1["id"], token=S.admin_token())
    assert st == 200 and m["text"] == "hello once" and m["username"] == user, (st, m)
    assert inbox_ids(user) == [b1["id"], b3["id"]]
    assert inbox_ids(user) == []
    # the key still answers the same 201 after the message was read
    st4, _, b4 = S.send(user, "hello once", key=key, expect=None)
    assert st4 == 201 and b4["id"] == b1["id"], (st4, b4)
    assert inbox_ids(user) == [], "a retry after the read made the message deliverable again"


@test
def send_retried_after_its_reply_was_lost():
    user, key = unique("il"), unique("k-")
    st, _, before = S.send(unique("il-other"), "marker", expect=None)
    assert st == 201, before
    lose_reply("POST", "/chat", {"username": user, "text": "lost reply", "timeout": 300}, key)
    st, _, b = S.send(user, "lost reply", key=key, timeout=300, expect=None)
    assert st == 201, (st, b)
    # the lost attempt was stored (its id is the one the retry got, not a new one)
    assert b["id"] == before["id"] + 1, ("the retry made a second message", before, b)
    st, _, m = S.req("GET", "/chat/%d" % (b["id"] + 1), token=S.admin_token())
    assert st == 404 or m["text"] != "lost reply", ("a second copy exists", m)
    st, _, got = read(user)
    assert st == 200 and got == [{"id": b["id"], "text": "lost reply"}], (st, got)
    assert inbox_ids(user) == []


@test
def read_retried_with_the_same_key_gets_what_the_first_claimed():
    user = unique("ir")
    first = [S.send(user, "r%d" % i) for i in range(3)]
    k1, k2 = unique("rk-"), unique("rk-")
    lose_reply("GET", "/chats/" + user, key=k1)
    later = [S.send(user, "later%d" % i) for i in range(2)]
    for _ in range(2):
        st, _, got = read(user, key=k1)
        assert st == 200 and [m["id"] for m in got] == first, ("retry of the lost read", got)
        assert [m["text"] for m in got] == ["r0", "r1", "r2"], got
    st, _, got = read(user, key=k2)
    assert st == 200 and [m["id"] for m in got] == later, ("another key", got, later)
    st, _, got = read(user, key=k2)
    assert st == 200 and [m["id"] for m in got] == later, ("retry of the second", got)
    assert inbox_ids(user) == []
    # what the lost read claimed is marked read at its time (admin lookup)
    tok = S.admin_token()
    now = time.time()
    for mid in first:
        st, _, m = S.req("GET", "/chat/%d" % mid, token=tok)
        exp = time.mktime(time.strptime(m["expiration_date"], "%Y-%m-%d %H:%M:%S")) - time.timezone
        assert st == 200 and exp <= now + 1, (mid, m)


@test
def only_a_read_with_a_key_records_its_claim():
    a, b, key = unique("ck"), unique("ck"), unique("ck-")
    ida, idb = S.send(a, "read without a key"), S.send(b, "read with one")
    st, _, got = read(a)
    assert st == 200 and [m["id"] for m in got] == [ida], got
    st, _, got = read(b, key=key)
    assert st == 200 and [m["id"] for m in got] == [idb], got
    db = sqlite3.connect(S.env["SNAPTEXT_STORE"][len("sqlite://"):])
    rows = {r[0]: r[1:] for r in db.execute(
        "SELECT id, state, claim FROM messages WHERE id IN (?, ?)", (ida, idb))}
    db.close()
    assert rows == {ida: (1, None), idb: (1, key)}, rows


@test
def bad_idempotency_keys_are_invalid_field():
    for bad in ("has space", "x" * 65, "semi;colon", "ünï"):
        for st, _, b in (S.send("ibad", "t", key=bad, expect=None), read("ibad", key=bad)):
            assert st == 400 and b["error"] == "invalid_field", (bad, st, b)
            assert "Idempotency-Key" in b["message"], b
    st, _, b = S.send("ibad", "t", key="A-z_0-9" + "x" * 57, expect=None)  # 64 characters: fine
    assert st == 201, (st, b)


@test
def bounded_reads_with_limit_and_more_header():
    user = unique("ib")
    ids = [S.send(user, "b%d" % i) for i in range(8)]
    st, h, got = read(user, limit=2)
    assert st == 200 and [m["id"] for m in got] == ids[:2], got
    assert h.get("x-more-messages") == "true", h
    st, h, got = read(user)  # READ_MAX caps it
    assert st == 200 and [m["id"] for m in got] == ids[2:2 + READ_MAX], got
    assert h.get("x-more-messages") == "true", h
    st, h, got = read(user, limit=READ_MAX)
    assert st == 200 and [m["id"] for m in got] == ids[2 + READ_MAX:], got
    assert "x-more-messages" not in h, h
    st, h, got = read(user)
    assert st == 200 and got == [] and "x-more-messages" not in h, (got, h)
    for bad in ("0", "-1", str(READ_MAX + 1), "abc", "1.5", "", "1e1", "99999999999999999999"):
        st, _, b = read(user, limit=bad)
        assert st == 400 and b["error"] == "invalid_field", (bad, st, b)
        assert "limit" in b["message"], b


@test
def full_inbox_is_429_and_stores_nothing():
    user = unique("if")
    ids = []
    for i in range(MAX_INBOX):
        st, _, b = S.send(user, "f%d" % i, expect=None)
        assert st == 201, (i, st, b)
        ids.append(b["id"])
    st, h, b = S.send(user, "one too many", expect=None)
    assert st == 429 and b["error"] == "inbox_full", (st, b)
    st, _, other = S.send(unique("if-other"), "others still fine", expect=None)
    assert st == 201, other
    got = []
    while True:
        st, _, page = read(user)
        assert st == 200, page
        if not page:
            break
        got += page
    assert [m["id"] for m in got] == ids, got
    assert "one too many" not in [m["text"] for m in got]
    st, _, b = S.send(user, "room again", expect=None)
    assert st == 201, (st, b)
    assert inbox_ids(user) == [b["id"]]


def set_stack(s):
    global S
    S = s


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, env={
        "SNAPTEXT_AUTH": "open", "SNAPTEXT_READ_MAX": str(READ_MAX),
        "SNAPTEXT_MAX_INBOX": str(MAX_INBOX)}))
