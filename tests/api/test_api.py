"""The HTTP API of API.md, end to end in `required` auth mode.

One stack (Redis, users, 2x ingest, 2x fetch, HAProxy, SQLite) for the whole
file; every request goes through HAProxy. At the end the stack is stopped
and every service must have exited 0 without a sanitizer report.
"""
import json
import re
import sys
import threading
import time

import snaptest
from snaptest import test

S = None  # the stack


def assert_error(resp, status, code):
    st, h, body = resp
    assert st == status, "expected %d %s, got %d %r" % (status, code, st, body)
    assert isinstance(body, dict) and body.get("error") == code, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert h.get("content-type", "").startswith("application/json"), h
    assert h.get("x-request-id"), h


# ---------------------------------------------------------------- basics --

@test
def healthz_public_but_not_readyz_or_metrics():
    st, h, body = S.req("GET", "/healthz")
    assert st == 200 and body == {"status": "ok"}, (st, body)
    assert_error(S.req("GET", "/readyz"), 404, "not_found")
    assert_error(S.req("GET", "/metrics"), 404, "not_found")


@test
def each_instance_serves_ops_routes():
    for procs in S.services.values():
        for p in procs:
            st, _, body = snaptest.request("GET", "/readyz", port=p.port)
            assert st == 200 and body == {"status": "ready"}, (p.name, st, body)
            st, h, text = snaptest.request("GET", "/metrics", port=p.port)
            assert st == 200 and "snaptext_http_requests_total" in text, (p.name, st)
            assert h["content-type"].startswith("text/plain"), h


@test
def unknown_route_is_404_json():
    # "/" belongs to the pages service (API.md "For people": 302 to /app/).
    for path in ("/nope", "/app.json", "/docsx", "/chats", "/chats/", "/chat/", "/chats/a/b", "/users/me/x"):
        assert_error(S.req("GET", path), 404, "not_found")


@test
def request_id_echoed_or_generated():
    st, h, _ = S.req("GET", "/healthz", headers={"X-Request-Id": "abc-123"})
    assert h["x-request-id"] == "abc-123", h
    _, h1, _ = S.req("POST", "/chat", {"username": "x", "text": "y"})
    _, h2, _ = S.req("POST", "/chat", {"username": "x", "text": "y"})
    assert h1["x-request-id"] and h1["x-request-id"] != h2["x-request-id"], (h1, h2)
    _, h, _ = S.req("GET", "/users/me", headers={"X-Request-Id": "r-42"})
    assert h["x-request-id"] == "r-42", h


@test
def wrong_method_is_405_with_allow():
    cases = [("GET", "/chat", "POST"), ("DELETE", "/chats/bob", "GET"),
             ("POST", "/chat/5", "GET, DELETE"), ("PUT", "/chat/5/status", "GET"),
             ("PUT", "/users", "POST"),
             ("POST", "/users/me", "GET"), ("GET", "/sessions", "POST"),
             ("GET", "/sessions/current", "DELETE")]
    for method, path, allow in cases:
        resp = S.req(method, path)
        assert_error(resp, 405, "method_not_allowed")
        assert resp[1].get("allow") == allow, (method, path, resp[1])


# ------------------------------------------------------------------ users --

@test
def register_login_me_logout():
    name = S.uname("alice")
    st, h, body = S.req("POST", "/users", {"username": name, "password": "correct horse battery"})
    assert st == 201 and body["username"] == name and len(body["token"]) >= 22, (st, body)
    token = body["token"]
    st, _, me = S.req("GET", "/users/me", token=token)
    assert st == 200 and me["username"] == name and me["role"] == "user", me
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", me["created_at"]), me
    st, _, login = S.req("POST", "/sessions", {"username": name, "password": "correct horse battery"})
    assert st == 201 and login["token"] != token, login
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", login["expires_at"]), login
    days = (time.mktime(time.strptime(login["expires_at"], "%Y-%m-%d %H:%M:%S")) -
            time.mktime(time.gmtime())) / 86400
    assert 29.9 < days < 30.1, login  # default SNAPTEXT_SESSION_TTL
    st, _, body = S.req("DELETE", "/sessions/current", token=login["token"])
    assert st == 204, (st, body)
    assert_error(S.req("GET", "/users/me", token=login["token"]), 401, "unauthorized")
    # the other session is still valid
    assert S.req("GET", "/users/me", token=token)[0] == 200


@test
def register_conflict_and_field_errors():
    name, _ = S.register()
    assert_error(S.req("POST", "/users", {"username": name, "password": "another password"}),
                 409, "conflict")
    bad = [{"username": "a b", "password": "long enough"},
           {"username": "", "password": "long enough"},
           {"username": "x" * 65, "password": "long enough"},
           {"username": "a/b", "password": "long enough"},
           {"username": {"$gt": ""}, "password": "long enough"},
           {"username": S.uname(), "password": "short"},
           {"username": S.uname(), "password": "p" * 1025},
           {"username": S.uname(), "password": 12345678},
           {"password": "long enough"}]
    for b in bad:
        assert_error(S.req("POST", "/users", b), 400, "invalid_field")
    st, _, body = S.req("POST", "/users", {"username": "x" * 64, "password": "p" * 1024})
    assert st in (201, 409), (st, body)


@test
def login_failures_look_the_same():
    name, _ = S.register()
    r1 = S.req("POST", "/sessions", {"username": name, "password": "wrong password"})
    r2 = S.req("POST", "/sessions", {"username": S.uname("ghost"), "password": "wrong password"})
    assert_error(r1, 401, "unauthorized")
    assert_error(r2, 401, "unauthorized")
    assert r1[2]["message"] == r2[2]["message"], (r1[2], r2[2])


@test
def login_timing_does_not_reveal_users():
    name, _ = S.register()
    def timed(user):
        t0 = time.perf_counter()
        S.req("POST", "/sessions", {"username": user, "password": "wrong password"})
        return time.perf_counter() - t0
    known = sorted(timed(name) for _ in range(7))[3]
    unknown = sorted(timed(S.uname("ghost")) for _ in range(7))[3]
    # Both do one full yescrypt check; without the dummy check an unknown
    # user would answer in a small fraction of the time.
    assert unknown > known * 0.5, (known, unknown)


@test
def bad_tokens_are_401():
    for auth in ("Bearer nope", "Bearer ", "Basic abc", "bearer", "Token x" * 100):
        assert_error(S.req("GET", "/users/me", headers={"Authorization": auth}), 401, "unauthorized")
    assert_error(S.req("GET", "/users/me"), 401, "unauthorized")


@test
def admin_bootstrapped():
    st, _, me = S.req("GET", "/users/me", token=S.admin_token())
    assert st == 200 and me["username"] == S.admin[0] and me["role"] == "admin", me


# --------------------------------------------------------------- sending --

@test
def send_requires_token_in_required_mode():
    assert_error(S.req("POST", "/chat", {"username": "bob", "text": "hi"}), 401, "unauthorized")


@test
def send_read_once_oldest_first():
    sender, stoken = S.register(S.uname("s"))
    rcpt, rtoken = S.register(S.uname("r"))
    ids = [S.send(rcpt, "m%d" % i, stoken) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5, ids
    st, h, body = S.req("GET", "/chats/" + rcpt, token=rtoken)
    assert st == 200, (st, body)
    assert body == [{"id": i, "text": "m%d" % n} for n, i in enumerate(ids)], body
    st, _, body = S.req("GET", "/chats/" + rcpt, token=rtoken)
    assert st == 200 and body == [], body


@test
def send_returns_location_and_admin_lookup_finds_it():
    sender, stoken = S.register(S.uname("s"))
    rcpt, rtoken = S.register(S.uname("r"))
    text = 'quotes " and \\ and <script>alert(1)</script> and emoji \U0001F600 and \u00fc'
    st, h, body = S.req("POST", "/chat", {"username": rcpt, "text": text, "timeout": 120},
                        token=stoken)
    assert st == 201 and h["location"] == "/chat/%d" % body["id"], (st, h, body)
    mid = body["id"]
    st, _, m = S.req("GET", "/chat/%d" % mid, token=S.admin_token())
    assert st == 200, (st, m)
    assert m["id"] == mid and m["username"] == rcpt and m["from"] == sender and m["text"] == text, m
    exp = time.mktime(time.strptime(m["expiration_date"], "%Y-%m-%d %H:%M:%S"))
    now = time.mktime(time.gmtime())
    assert 100 < exp - now <= 121, m
    # reading expires it at the read time; the lookup still finds it
    st, _, got = S.req("GET", "/chats/" + rcpt, token=rtoken)
    assert [x["text"] for x in got] == [text], got
    st, _, m2 = S.req("GET", "/chat/%d" % mid, token=S.admin_token())
    exp2 = time.mktime(time.strptime(m2["expiration_date"], "%Y-%m-%d %H:%M:%S"))
    assert abs(exp2 - now) <= 3, (m2, now)


@test
def timeout_forms():
    _, tok = S.register()
    rcpt = S.uname("t")
    for t in (60, 60.0, 6e1, None, 1, 2592000):
        body = {"username": rcpt, "text": "x"}
        if t is not None:
            body["timeout"] = t
        st, _, b = S.req("POST", "/chat", body, token=tok)
        assert st == 201, (t, st, b)
    st, _, b = S.req("POST", "/chat", {"username": rcpt, "text": "x", "timeout": None}, token=tok)
    assert st == 201, b
    # the JSON literal 6e1 as written by a client
    st, _, b = S.req("POST", "/chat", raw=b'{"username":"%s","text":"x","timeout":6e1}' % rcpt.encode(),
                     token=tok)
    assert st == 201, b
    for t in (60.5, "60", True, 0, -5, 2592001, [], {}, 1e300):
        resp = S.req("POST", "/chat", {"username": rcpt, "text": "x", "timeout": t}, token=tok)
        assert_error(resp, 400, "invalid_field")
        assert "timeout" in resp[2]["message"], resp


@test
def send_field_errors():
    _, tok = S.register()
    good = {"username": "bob", "text": "hi"}
    cases = [
        dict(good, username=""), dict(good, username="a b"), dict(good, username="a\tb"),
        dict(good, username="a\u00a0b"), dict(good, username="a\u3000b"), dict(good, username="a\u2028b"),
        dict(good, username="a\x7fb"), dict(good, username="a\u0085b"), dict(good, username="a/b"),
        dict(good, username="x" * 65), dict(good, username=5), dict(good, username=None),
        dict(good, username={"$gt": ""}), dict(good, username=["bob"]),
        dict(good, text=""), dict(good, text="x" * 4097), dict(good, text=7), dict(good, text=None),
        dict(good, text={"$ne": 1}), {"text": "hi"}, {"username": "bob"},
    ]
    for b in cases:
        resp = S.req("POST", "/chat", b, token=tok)
        assert_error(resp, 400, "invalid_field")
    # limits are inclusive; unknown fields are ignored; a unicode name is fine
    assert S.send("x" * 64, "t" * 4096, tok) > 0
    assert S.send("j\u00fcrgen", "hi", tok) > 0
    st, _, b = S.req("POST", "/chat", dict(good, extra={"a": 1}, more=[1]), token=tok)
    assert st == 201, b


@test
def body_errors():
    _, tok = S.register()
    ctype = {"Content-Type": "application/json"}
    for raw in (b"", b"{", b"[]", b'"x"', b"42", b"null", b'{"username":"a","text":"b"} x',
                b"\xff\xfe{}", b'{"username":"a\xc3","text":"b"}', b'{"username":"\xed\xa0\x80"}',
                b'{"username":"bob","text":"\\ud800"}', b'{"username":"bob","text":"\\udc00x"}',
                b'{"username":"bob","text":"a","text":"b"}'):
        resp = S.req("POST", "/chat", raw=raw, token=tok, headers=ctype)
        assert_error(resp, 400, "invalid_json")
    # NUL in a string is a field error (texts are NUL-free), and the message
    # names the field (API.md), on every route with a body
    cases = ((b'{"username":"bob","text":"a\\u0000b"}', "/chat", "text"),
             (b'{"username":"bob\\u0000x","text":"hi"}', "/chat", "username"),
             (b'{"username":"bob\\u0000x","password":"long enough pw"}', "/users", "username"),
             (b'{"username":"bob","password":"long\\u0000enough"}', "/sessions", "password"))
    for raw, path, field in cases:
        resp = S.req("POST", path, raw=raw, token=tok, headers=ctype)
        assert_error(resp, 400, "invalid_field")
        assert resp[2]["message"] == "%s must not contain \\u0000" % field, (path, resp)


@test
def content_type_rules():
    _, tok = S.register()
    raw = b'{"username":"bob","text":"hi"}'
    for ct in ("application/json", "Application/JSON", "application/json; charset=utf-8"):
        st, _, b = S.req("POST", "/chat", raw=raw, token=tok, headers={"Content-Type": ct})
        assert st == 201, (ct, st, b)
    # no Content-Type at all: read as JSON
    st, _, b = S.req("POST", "/chat", raw=raw, token=tok)
    assert st == 201, (st, b)
    for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        assert_error(S.req("POST", "/chat", raw=raw, token=tok, headers={"Content-Type": ct}),
                     415, "unsupported_media_type")


@test
def payload_too_large():
    _, tok = S.register()
    big = b'{"username":"bob","text":"' + b"x" * 70000 + b'"}'
    assert_error(S.req("POST", "/chat", raw=big, token=tok,
                       headers={"Content-Type": "application/json"}), 413, "payload_too_large")
    # a chunked body over the limit (no Content-Length) is refused by the service
    req = (b"POST /chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok.encode() +
           b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n")
    chunk = b"x" * 10000
    body = b'{"username":"bob","text":"'
    data = req + b"%x\r\n%s\r\n" % (len(body), body)
    for _ in range(8):
        data += b"%x\r\n%s\r\n" % (len(chunk), chunk)
    data += b"0\r\n\r\n"
    out = snaptest.raw_exchange(S.port, data)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert b'"payload_too_large"' in out, out[:400]


@test
def check_order_follows_api():
    _, tok = S.register()
    # 401 before 413/415/400
    assert_error(S.req("POST", "/chat", raw=b"nope", headers={"Content-Type": "text/plain"}),
                 401, "unauthorized")
    # 413 before 415 before 400
    assert_error(S.req("POST", "/chat", raw=b"x" * 70000, token=tok,
                       headers={"Content-Type": "text/plain"}), 413, "payload_too_large")
    assert_error(S.req("POST", "/chat", raw=b"nope", token=tok,
                       headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    # 404 before 405 before 401
    assert_error(S.req("DELETE", "/nothing"), 404, "not_found")
    assert_error(S.req("DELETE", "/chat"), 405, "method_not_allowed")
    # 403 before 400: someone else's (invalid) inbox name
    assert_error(S.req("GET", "/chats/a%20b", token=tok), 403, "forbidden")


# --------------------------------------------------------------- reading --

@test
def inbox_auth_rules():
    owner, otok = S.register()
    other, xtok = S.register()
    assert_error(S.req("GET", "/chats/" + owner), 401, "unauthorized")
    assert_error(S.req("GET", "/chats/" + owner, token=xtok), 403, "forbidden")
    assert_error(S.req("GET", "/chats/" + owner, token=S.admin_token()), 403, "forbidden")
    assert S.req("GET", "/chats/" + owner, token=otok)[0] == 200


@test
def percent_decoded_username():
    name = "j\u00fcrgen_" + S.uname()
    _, tok = S.register(name)
    mid = S.send(name, "servus", tok)
    enc = "".join("%%%02X" % b if b >= 0x80 else chr(b) for b in name.encode())
    st, _, body = S.req("GET", "/chats/" + enc, token=tok)
    assert st == 200 and body == [{"id": mid, "text": "servus"}], (st, body)


@test
def expired_messages_are_not_returned():
    rcpt, rtok = S.register()
    _, stok = S.register()
    short = S.send(rcpt, "short", stok, timeout=1)
    keep = S.send(rcpt, "long", stok, timeout=60)
    time.sleep(2.2)
    st, _, body = S.req("GET", "/chats/" + rcpt, token=rtok)
    assert st == 200 and body == [{"id": keep, "text": "long"}], body
    # the admin lookup still finds the expired one
    st, _, m = S.req("GET", "/chat/%d" % short, token=S.admin_token())
    assert st == 200 and m["text"] == "short", m


@test
def exactly_once_with_concurrent_readers():
    rcpt, rtok = S.register()
    _, stok = S.register()
    sent = set()
    lock = threading.Lock()
    got = []
    stop = threading.Event()

    def reader():
        while True:
            done = stop.is_set()
            st, _, body = S.req("GET", "/chats/" + rcpt, token=rtok)
            assert st == 200, (st, body)
            with lock:
                got.extend(m["id"] for m in body)
            if done:
                return

    def sender(n):
        for i in range(n):
            mid = S.send(rcpt, "m", stok)
            with lock:
                sent.add(mid)

    readers = [threading.Thread(target=reader) for _ in range(8)]
    senders = [threading.Thread(target=sender, args=(50,)) for _ in range(4)]
    snaptest.run_threads(senders, background=readers, then=stop.set)
    st, _, body = S.req("GET", "/chats/" + rcpt, token=rtok)
    got.extend(m["id"] for m in body)
    assert len(got) == len(set(got)), "a message was delivered twice"
    assert set(got) == sent, (len(sent), len(set(got)))
    # both fetch instances served reads
    for p in S.services["fetch"]:
        _, _, text = snaptest.request("GET", "/metrics", port=p.port)
        served = sum(int(float(v)) for v in re.findall(
            r'snaptext_http_requests_total\{[^}]*route="GET /chats/\{\}"[^}]*status="200"[^}]*\} (\S+)',
            text))
        assert served > 0, (p.name, text[:2000])


# ------------------------------------------------------------ admin route --

@test
def admin_lookup_rules():
    sender, tok = S.register()
    mid = S.send("bob", "hi", tok)
    assert_error(S.req("GET", "/chat/%d" % mid), 401, "unauthorized")
    assert_error(S.req("GET", "/chat/%d" % mid, token=tok), 403, "forbidden")
    adm = S.admin_token()
    for bad in ("abc", "0", "-1", "1e3", "1" + "0" * 30, "9223372036854775808", "%20"):
        assert_error(S.req("GET", "/chat/" + bad, token=adm), 400, "invalid_field")
    assert_error(S.req("GET", "/chat/9223372036854775807", token=adm), 404, "not_found")
    st, _, m = S.req("GET", "/chat/%d" % mid, token=adm)
    assert st == 200 and m["from"] == sender and m["username"] == "bob", m


@test
def logout_is_seen_by_every_instance_at_once():
    name, tok = S.register()
    for _ in range(4):  # both ingest and both fetch instances accept it
        S.send("bob", "hi", tok)
        assert S.req("GET", "/chats/" + name, token=tok)[0] == 200
    assert S.req("DELETE", "/sessions/current", token=tok)[0] == 204
    for _ in range(4):
        assert_error(S.req("POST", "/chat", {"username": "bob", "text": "x"}, token=tok),
                     401, "unauthorized")
        assert_error(S.req("GET", "/chats/" + name, token=tok), 401, "unauthorized")


@test
def logs_hold_no_secrets():
    name, tok = S.register(password="super secret password 1")
    S.send(name, "the secret text of a snap", tok)
    S.req("GET", "/chats/" + name, token=tok)
    logs = S.all_logs()
    for secret in ("super secret password 1", tok, "the secret text of a snap", S.admin[1]):
        assert secret not in logs, "found a secret in the logs: %r" % secret[:12]
    assert '"event":"request"' in logs.replace(" ", ""), logs[-2000:]


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack))
