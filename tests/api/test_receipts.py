"""Receipts and unsend (API.md: GET /chat/{id}/status, DELETE /chat/{id}),
end to end through HAProxy on two ingest and two fetch instances.

A receipt walks through every state a sender can see (unread, read with its
read time, expired, unsent) and never shows the text; only the sender and
admins see or withdraw a message (401 / 403 / 404 / 409 as API.md says);
and an unsend racing reads on both fetch instances ends with every message
either read or unsent, never both and never neither.
"""
import sys
import threading
import time

import snaptest
from snaptest import test

S = None


def status(mid, token):
    return S.req("GET", "/chat/%d/status" % mid, token=token)


def code(resp):
    st, _, body = resp
    return st, body.get("error") if isinstance(body, dict) else None


@test
def status_walks_through_every_state():
    alice, ta = S.register()
    bob, tb = S.register()
    mid = S.send(bob, "a secret text", ta)
    st, h, body = status(mid, ta)
    assert st == 200, (st, body)
    assert body["id"] == mid and body["state"] == "unread" and body["read_at"] is None, body
    assert "text" not in body and "a secret text" not in str(body), body
    assert h.get("content-type", "").startswith("application/json"), h

    before = time.time()
    st, _, got = S.req("GET", "/chats/" + bob, token=tb)
    assert st == 200 and [m["id"] for m in got] == [mid], got
    st, _, body = status(mid, ta)
    assert st == 200 and body["state"] == "read", body
    read_at = time.mktime(time.strptime(body["read_at"], "%Y-%m-%d %H:%M:%S")) - time.timezone
    assert abs(read_at - before) < 3, (body, before)

    short = S.send(bob, "gone soon", ta, timeout=1)
    time.sleep(1.3)
    assert status(short, ta)[2]["state"] == "expired"
    # an expired message is not delivered, and stays expired
    assert S.req("GET", "/chats/" + bob, token=tb)[2] == []
    assert status(short, ta)[2]["state"] == "expired"


@test
def unsend_withdraws_an_unread_message_everywhere():
    alice, ta = S.register()
    bob, tb = S.register()
    keep = S.send(bob, "keep", ta)
    gone = S.send(bob, "take back", ta)
    st, h, body = S.req("DELETE", "/chat/%d" % gone, token=ta)
    assert st == 204, (st, body)
    assert status(gone, ta)[2]["state"] == "unsent"
    # no read on any instance returns it
    seen = []
    for _ in range(4):
        st, _, got = S.req("GET", "/chats/" + bob, token=tb)
        assert st == 200, got
        seen += [m["id"] for m in got]
    assert seen == [keep], seen
    # the admin lookup still finds it, closed at the unsend time
    st, _, m = S.req("GET", "/chat/%d" % gone, token=S.admin_token())
    assert st == 200 and m["text"] == "take back", m
    # a second unsend, or one of a read message: 409
    assert code(S.req("DELETE", "/chat/%d" % gone, token=ta)) == (409, "conflict")
    assert code(S.req("DELETE", "/chat/%d" % keep, token=ta)) == (409, "conflict")


@test
def who_may_see_and_withdraw():
    alice, ta = S.register()
    bob, tb = S.register()
    mid = S.send(bob, "private", ta)
    assert code(status(mid, None)) == (401, "unauthorized")
    assert code(S.req("DELETE", "/chat/%d" % mid)) == (401, "unauthorized")
    # not even the recipient: the receipt is the sender's
    assert code(status(mid, tb)) == (403, "forbidden")
    assert code(S.req("DELETE", "/chat/%d" % mid, token=tb)) == (403, "forbidden")
    assert code(status(999999999999, ta)) == (404, "not_found")
    assert code(S.req("DELETE", "/chat/999999999999", token=ta)) == (404, "not_found")
    for bad in ("abc", "0", "-1"):
        assert code(S.req("GET", "/chat/%s/status" % bad, token=ta)) == (400, "invalid_field")
    st, h, _ = S.req("POST", "/chat/%d/status" % mid, token=ta)
    assert st == 405 and h.get("allow") == "GET", (st, h)
    # an admin may do both
    adm = S.admin_token()
    assert status(mid, adm)[2]["state"] == "unread"
    assert S.req("DELETE", "/chat/%d" % mid, token=adm)[0] == 204


@test
def unsend_racing_reads_never_both_never_neither():
    alice, ta = S.register()
    bob, tb = S.register()
    ids = [S.send(bob, "race %d" % i, ta) for i in range(40)]
    read, unsent, errors = [], [], []
    start = threading.Event()

    def reader():
        start.wait()
        for _ in range(10):
            st, _, got = S.req("GET", "/chats/" + bob, token=tb)
            if st != 200:
                errors.append(("read", st, got))
                continue
            read.extend(m["id"] for m in got)

    def unsender():
        start.wait()
        for mid in ids:
            st, _, body = S.req("DELETE", "/chat/%d" % mid, token=ta)
            if st == 204:
                unsent.append(mid)
            elif st != 409:
                errors.append(("unsend", st, body))

    threads = [threading.Thread(target=reader) for _ in range(2)] + [threading.Thread(target=unsender)]
    snaptest.run_threads(threads, go=start.set)
    st, _, rest = S.req("GET", "/chats/" + bob, token=tb)
    read += [m["id"] for m in rest]
    assert not errors, errors
    assert len(read) == len(set(read)), "read twice: %r" % read
    assert not set(read) & set(unsent), "both read and unsent: %r" % (set(read) & set(unsent))
    assert sorted(read + unsent) == sorted(ids), "neither read nor unsent: %r" % (
        set(ids) - set(read) - set(unsent))
    for mid in ids:
        want = "unsent" if mid in unsent else "read"
        assert status(mid, ta)[2]["state"] == want, mid


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack))
