"""Waiting reads (API.md: GET /chats/{username}?wait=S) end to end, through
HAProxy on two ingest and two fetch instances, open mode.

A waiter is woken by a send to either ingest instance without polling; two
waiters and one message: exactly one of them gets it, the other keeps
waiting and ends with []; a waiter with nothing to wait for answers [] after
S seconds; waiters beyond SNAPTEXT_MAX_WAITERS are refused at once with 503;
a waiter whose client goes away claims nothing (the message stays for the
next read); bad values of wait are 400 invalid_field.
"""
import socket
import sys
import threading
import time

import snaptest
from snaptest import test

S = None
MAX_WAITERS = 3  # per fetch instance (two instances)


def waiting_read(user, wait, out, key="r"):
    t0 = time.time()
    st, h, body = S.req("GET", "/chats/%s?wait=%d" % (user, wait), timeout=wait + 15)
    out[key] = (st, body, time.time() - t0, h)


@test
def a_send_to_either_ingest_wakes_the_waiter():
    for ingest in S.services["ingest"]:
        user = S.uname("w")
        out = {}
        th = threading.Thread(target=waiting_read, args=(user, 20, out))
        th.start()
        # Half-way through a 1 s re-check slice: only a real wake-up answers
        # within the bound below; re-checking alone would take about 0.5 s.
        time.sleep(1.5)
        t_send = time.time()
        st, _, body = snaptest.request("POST", "/chat", port=ingest.port,
                                       body={"username": user, "text": "wake up"})
        assert st == 201, (st, body)
        th.join()
        st, got, took, _ = out["r"]
        assert st == 200 and [m["text"] for m in got] == ["wake up"], (st, got)
        delay = time.time() - t_send
        print("    woken %.3f s after the send to %s (waited %.2f s)" % (delay, ingest.name, took))
        assert delay < 0.3, delay  # a wake-up, not the next 1 s re-check


@test
def two_waiters_one_message_exactly_one_gets_it():
    user = S.uname("w")
    out = {}
    threads = [threading.Thread(target=waiting_read, args=(user, 3, out, k)) for k in ("a", "b")]
    for t in threads:
        t.start()
    time.sleep(1.0)
    assert S.req("POST", "/chat", {"username": user, "text": "only one"})[0] == 201
    for t in threads:
        t.join()
    bodies = [out[k][1] for k in ("a", "b")]
    assert all(out[k][0] == 200 for k in ("a", "b")), out
    got = [m["text"] for b in bodies for m in b]
    assert got == ["only one"], bodies
    loser = [out[k] for k in ("a", "b") if out[k][1] == []][0]
    assert loser[2] >= 2.5, "the other waiter should wait its 3 s out: %r" % (loser,)


@test
def nothing_arrives_answers_empty_after_s_seconds():
    out = {}
    waiting_read(S.uname("w"), 2, out)
    st, body, took, _ = out["r"]
    assert st == 200 and body == [], (st, body)
    assert 1.9 <= took < 4.0, took


@test
def waiters_beyond_the_bound_are_refused_at_once():
    out = {}
    users = [S.uname("w") for _ in range(2 * MAX_WAITERS + 2)]
    threads = [threading.Thread(target=waiting_read, args=(u, 4, out, u)) for u in users]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join()
    refused = [v for v in out.values() if v[0] == 503]
    waited = [v for v in out.values() if v[0] == 200]
    assert len(waited) == 2 * MAX_WAITERS, [(v[0], round(v[2], 2)) for v in out.values()]
    assert len(refused) == 2, [(v[0], round(v[2], 2)) for v in out.values()]
    for st, body, took, h in refused:
        assert body["error"] == "unavailable" and h.get("retry-after"), (body, h)
        assert took < 1.0, took  # at once, not after the wait
    # the bound is on waiting, not on reading: a plain read still works
    assert S.req("GET", "/chats/" + users[0])[0] == 200


@test
def a_waiter_whose_client_leaves_claims_nothing():
    user = S.uname("w")
    s = socket.create_connection(("127.0.0.1", S.port))
    s.sendall(("GET /chats/%s?wait=20 HTTP/1.1\r\nHost: t\r\n\r\n" % user).encode())
    time.sleep(1.0)
    s.close()
    time.sleep(0.5)
    st, _, body = S.req("POST", "/chat", {"username": user, "text": "for the next reader"})
    assert st == 201, body
    time.sleep(1.5)  # the abandoned waiter would have claimed it by now
    st, _, got = S.req("GET", "/chats/" + user)
    assert st == 200 and [m["text"] for m in got] == ["for the next reader"], got
    abandoned = sum(snaptest.metric_value(p.port, "snaptext_waits_abandoned_total")
                    for p in S.services["fetch"])
    assert abandoned >= 1, abandoned


@test
def bad_wait_values_are_invalid_field():
    for q in ("wait=-1", "wait=31", "wait=abc", "wait=1.5", "wait=", "wait=1&wait=2"):
        st, _, body = S.req("GET", "/chats/%s?%s" % (S.uname("w"), q))
        assert st == 400 and body["error"] == "invalid_field" and "wait" in body["message"], (q, st, body)
    st, _, body = S.req("GET", "/chats/%s?wait=0" % S.uname("w"))
    assert st == 200 and body == [], (st, body)


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, env={"SNAPTEXT_AUTH": "open",
                                                      "SNAPTEXT_MAX_WAITERS": str(MAX_WAITERS)}))
