"""Hostile input through HAProxy, table-driven, on one stack.

Each row of the tables below is one attack and the answer API.md documents
for it: operator objects in every field, oversized and malformed heads,
lying Content-Lengths, chunked bodies over the limit, bad UTF-8, NUL bytes,
duplicate keys, deep nesting, path traversal and double encoding in
{username}, odd ids on /chat/{id}, and clients that hold connections open
without sending their body. A row passes when the answer is the documented
status and error code, within a few seconds (a hang fails the row).
After the tables every service instance must still answer /healthz and be
alive, and the victim's inbox must hold exactly what was sent to it.

The proxy's own refusals of unparsable requests (HAProxy 2.6 answers them
from its mux with a fixed HTML page; `http-error` does not apply there) are
checked for their 4xx status only. Not here: auth and leak checks
(test_security.py), the plain API (test_api.py).
"""
import json
import re
import socket
import sys
import time

import snaptest
from snaptest import test

S = None  # the stack
_ctx = {}

PASSWORD = "correct horse battery"
ANSWER_WITHIN = 5.0 * snaptest.TIMEOUT_MULT   # seconds; later is a hang


def ctx():
    """Users for the tables: an attacker, a victim with mail, the admin."""
    if not _ctx:
        for role in ("attacker", "victim"):
            _ctx[role], _ctx[role + "_token"] = S.register(S.uname(role[:3]), PASSWORD)
        _ctx["admin_token"] = S.admin_token()
        mid = S.send(_ctx["victim"], "for the victim", _ctx["attacker_token"], timeout=None)
        _ctx["victim_mail"] = [{"id": mid, "text": "for the victim"}]
    return _ctx


# ------------------------------------------------------------ raw HTTP --
# Raw sockets on purpose: these requests are malformed (NUL bytes in the
# head, lying or doubled Content-Lengths, broken chunking), which
# http.client (under snaptest's Client) refuses to send or rewrites, and a
# hang must come back as "no answer", not as an exception. The body of the
# answer is parsed as snaptest's Client does (snaptest.parse_body).

def raw_http(port, data, timeout=ANSWER_WITHIN):
    """Sends raw bytes and reads one response: the head, then the body by
    Content-Length (or until close). Returns (status, headers, body) with
    status None when nothing came back within timeout."""
    buf = b""
    deadline = time.time() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may refuse and close before all was sent
        try:
            while b"\r\n\r\n" not in buf and time.time() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            if b"\r\n\r\n" not in buf:
                return None, {}, buf
            head, _, body = buf.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            want = int(headers.get("content-length", "-1"))
            while (want < 0 or len(body) < want) and time.time() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                body += chunk
        except socket.timeout:
            if b"\r\n\r\n" not in buf:
                return None, {}, buf
            head, _, body = buf.partition(b"\r\n\r\n")
            return int(head.split()[1]), {}, body
    return status, headers, snaptest.parse_body(body)


def head(method, path, extra=b"", token=None, body=b"", length=None):
    """A raw request: request line, Host, optional token, extra header
    bytes, Content-Length (length, or len(body) when there is a body)."""
    h = b"%s %s HTTP/1.1\r\nHost: snaptext\r\nConnection: close\r\n" % (method, path)
    if token:
        h += b"Authorization: Bearer " + token.encode() + b"\r\n"
    if length is None and body:
        length = len(body)
    if length is not None:
        h += b"Content-Length: " + str(length).encode() + b"\r\n"
    return h + extra + b"\r\n" + body


# ----------------------------------------------------------- assertions --

def check(resp, status, code, elapsed=None):
    """resp = (status, headers, body). status: an int or a tuple of ints.
    code: the API error code, or None for a proxy refusal (status only)."""
    st, h, body = resp
    want = status if isinstance(status, tuple) else (status,)
    assert st is not None, "no answer within %.0fs (a hang)" % ANSWER_WITHIN
    assert st in want, "expected %s %s, got %s %r" % (status, code, st, body)
    if elapsed is not None:
        assert elapsed < ANSWER_WITHIN, "answered after %.1fs" % elapsed
    if code is None:
        return
    assert isinstance(body, dict) and body.get("error") == code, \
        "expected error %r, got %s %r" % (code, st, body)
    assert isinstance(body.get("message"), str) and body["message"], body
    assert h.get("content-type", "").startswith("application/json"), h


def row(name, send, status, code, names_field=None):
    """Registers one table row as a test."""
    def fn():
        t0 = time.time()
        resp = send()
        check(resp, status, code, time.time() - t0)
        if names_field:
            assert names_field in resp[2]["message"], \
                "the message should name %r: %r" % (names_field, resp[2])
    fn.__name__ = name
    test(fn)


def post(path, body=None, raw=None, token_of=None, ctype=True):
    def send():
        c = ctx()
        headers = {"Content-Type": "application/json"} if ctype else {}
        token = c[token_of + "_token"] if token_of else None
        data = raw if raw is not None else json.dumps(body).encode()
        return S.req("POST", path, raw=data, token=token, headers=headers)
    return send


def get(path, token_of=None):
    def send():
        c = ctx()
        return S.req("GET", path() if callable(path) else path,
                     token=c[token_of + "_token"] if token_of else None)
    return send


def raw_to_proxy(build):
    def send():
        return raw_http(S.port, build(ctx()))
    return send


# --------------------------------------------- 1. operators in every field --

OPERATORS = [("gt", {"$gt": ""}), ("ne", {"$ne": None}), ("regex", {"$regex": ".*"}),
             ("where", {"$where": "sleep(1000)"}), ("array", ["bob"]), ("empty_array", []),
             ("array_of_operator", [{"$gt": ""}])]


def chat_base(c):
    return {"username": c["victim"], "text": "hi", "timeout": 60}


def users_base(c):
    return {"username": S.uname("op"), "password": PASSWORD}


def sessions_base(c):
    return {"username": c["attacker"], "password": PASSWORD}


for _route, _base, _fields, _tok in (("/chat", chat_base, ("username", "text", "timeout"), "attacker"),
                                     ("/users", users_base, ("username", "password"), None),
                                     ("/sessions", sessions_base, ("username", "password"), None)):
    for _field in _fields:
        for _opname, _op in OPERATORS:
            def _send(route=_route, base=_base, field=_field, op=_op, tok=_tok):
                c = ctx()
                body = base(c)
                body[field] = op
                return post(route, body, token_of=tok)()
            row("operator_%s_%s_%s" % (_route.strip("/"), _field, _opname), _send, 400,
                "invalid_field", names_field=_field)


@test
def operators_on_both_login_fields_never_log_in():
    for op in (o for _, o in OPERATORS):
        st, _, body = S.req("POST", "/sessions", {"username": op, "password": op})
        check((st, _, body), 400, "invalid_field")


# -------------------------------------------------- 2. oversized heads --

def many_headers(n, size=8):
    return b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * size) for i in range(n))


row("header_one_40kb", raw_to_proxy(lambda c: head(
    b"GET", b"/chats/" + c["attacker"].encode(), token=c["attacker_token"],
    extra=b"X-Big: " + b"a" * 40960 + b"\r\n")), (400, 413, 431), None)
row("header_count_200", raw_to_proxy(lambda c: head(
    b"GET", b"/chats/" + c["attacker"].encode(), token=c["attacker_token"],
    extra=many_headers(200))), (400, 431), None)
row("headers_30kb_in_60_lines", raw_to_proxy(lambda c: head(
    b"GET", b"/chats/" + c["attacker"].encode(), token=c["attacker_token"],
    extra=many_headers(60, 500))), (400, 413, 431), None)
row("authorization_10kb_token", raw_to_proxy(lambda c: head(
    b"GET", b"/users/me", extra=b"Authorization: Bearer " + b"A" * 10240 + b"\r\n")),
    401, "unauthorized")
row("header_with_raw_nul", raw_to_proxy(lambda c: head(
    b"GET", b"/users/me", token=c["attacker_token"], extra=b"X-Evil: a\x00b\r\n")), 400, None)
row("path_with_raw_nul", raw_to_proxy(lambda c: head(
    b"GET", b"/chats/" + c["victim"].encode() + b"\x00", token=c["attacker_token"])), 400, None)


# ------------------------------------------- 3. lying or huge lengths --

SMALL = b'{"username":"bob","text":"hi"}'

for _cl in (10 ** 12, 2 ** 31, 2 ** 32 + 1, 2 ** 63 - 1):
    row("content_length_%d_small_body" % _cl, raw_to_proxy(lambda c, cl=_cl: head(
        b"POST", b"/chat", token=c["attacker_token"], body=SMALL, length=cl,
        extra=b"Content-Type: application/json\r\n")), 413, "payload_too_large")
row("content_length_overflowing_64_bits", raw_to_proxy(lambda c: head(
    b"POST", b"/chat", token=c["attacker_token"], body=SMALL, length="9" * 30)), 400, None)
row("content_length_negative", raw_to_proxy(lambda c: head(
    b"POST", b"/chat", token=c["attacker_token"], body=SMALL, length=-1)), 400, None)
row("content_length_twice_differing", raw_to_proxy(lambda c: head(
    b"POST", b"/chat", token=c["attacker_token"], body=SMALL,
    extra=b"Content-Length: 3\r\n")), 400, None)


def chunked(token, chunks, size_line=None):
    h = (b"POST /chat HTTP/1.1\r\nHost: snaptext\r\nConnection: close\r\n"
         b"Authorization: Bearer " + token.encode() + b"\r\n"
         b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for c in chunks:
        h += (size_line or b"%x" % len(c)) + b"\r\n" + c + b"\r\n"
    return h + b"0\r\n\r\n"


row("chunked_one_chunk_over_limit", raw_to_proxy(lambda c: chunked(
    c["attacker_token"], [b'{"username":"bob","text":"' + b"x" * 70000 + b'"}'])),
    413, "payload_too_large")
row("chunked_size_line_overflow", raw_to_proxy(lambda c: chunked(
    c["attacker_token"], [b"abc"], size_line=b"f" * 40)), 400, None)
row("chunked_and_content_length_both", raw_to_proxy(lambda c: head(
    b"POST", b"/chat", token=c["attacker_token"], length=5,
    extra=b"Transfer-Encoding: chunked\r\n", body=b"0\r\n\r\n")), 400, "invalid_json")


@test
def chunked_over_limit_direct_to_each_ingest():
    """The service's own limit, without HAProxy in front."""
    c = ctx()
    for p in S.services["ingest"]:
        resp = raw_http(p.port, chunked(c["attacker_token"], [b"x" * 30000] * 3))
        check(resp, 413, "payload_too_large")


# ------------------------------------------------ 4. bytes of the body --

BAD_UTF8 = [("overlong_slash", b"\xc0\xaf"), ("five_byte_form", b"\xf8\x88\x80\x80\x80"),
            ("byte_ff", b"\xff"), ("above_u10ffff", b"\xf4\x90\x80\x80"),
            ("cesu_surrogate", b"\xed\xb0\x80"), ("truncated_4_byte", b"\xf0\x9f\x98")]
for _n, _b in BAD_UTF8:
    row("utf8_%s_in_text" % _n, post("/chat", raw=b'{"username":"bob","text":"a' + _b + b'"}',
                                     token_of="attacker"), 400, "invalid_json")
    row("utf8_%s_in_key" % _n, post("/chat", raw=b'{"username":"bob","text":"a","k' + _b +
                                    b'":1}', token_of="attacker"), 400, "invalid_json")
row("utf8_bad_in_password_register", post(
    "/users", raw=b'{"username":"u8x","password":"long enough \xc0\xaf"}'), 400, "invalid_json")
row("utf8_bad_in_password_login", post(
    "/sessions", raw=b'{"username":"u8x","password":"long enough \xff"}'), 400, "invalid_json")
row("utf16_body", post("/chat", raw='{"username":"bob","text":"hi"}'.encode("utf-16"),
                       token_of="attacker"), 400, "invalid_json")
row("surrogates_reversed", post("/chat", raw=b'{"username":"bob","text":"\\udc00\\ud800"}',
                                token_of="attacker"), 400, "invalid_json")

row("nul_raw_in_text", post("/chat", raw=b'{"username":"bob","text":"a\x00b"}',
                            token_of="attacker"), 400, "invalid_json")
row("nul_raw_between_tokens", post("/chat", raw=b'{"username":"bob",\x00"text":"b"}',
                                   token_of="attacker"), 400, "invalid_json")
row("nul_raw_after_object", post("/chat", raw=SMALL + b"\x00", token_of="attacker"),
    400, "invalid_json")
row("nul_escaped_in_text", post("/chat", raw=b'{"username":"bob","text":"a\\u0000b"}',
                                token_of="attacker"), 400, "invalid_field")
row("nul_escaped_in_username", post("/chat", raw=b'{"username":"bob\\u0000x","text":"b"}',
                                    token_of="attacker"), 400, "invalid_field")
row("nul_escaped_in_password", post(
    "/users", raw=b'{"username":"nulpw","password":"long enough\\u0000"}'), 400, "invalid_field")


def dup_victim(c):
    return ('{"username":"%s","username":"%s","text":"x"}' % (c["victim"], c["attacker"])).encode()


row("duplicate_username_chat", lambda: post("/chat", raw=dup_victim(ctx()),
                                            token_of="attacker")(), 400, "invalid_json")
row("duplicate_key_by_escape", post("/chat", raw=b'{"username":"bob","usern\\u0061me":"eve",'
                                    b'"text":"x"}', token_of="attacker"), 400, "invalid_json")
row("duplicate_password_login", lambda: post("/sessions", raw=(
    '{"username":"%s","password":"wrong password","password":"%s"}' %
    (ctx()["attacker"], PASSWORD)).encode())(), 400, "invalid_json")
row("duplicate_username_register", post(
    "/users", raw=b'{"username":"dupa","username":"dupb","password":"long enough"}'),
    400, "invalid_json")

# ---------------------------------------------- 5. the {username} path --

def victim_path(fmt):
    return lambda: fmt % ctx()["victim"]


TRAVERSALS = ["/chats/..%2F..%2Fetc", "/chats/%252e%252e", "/chats/%00", "/chats/a%2Fb",
              "/chats/%2e%2e", "/chats/..%5C..%5Cetc", "/chats/%2e%2e%2F%2e%2e%2Fusers%2Fme",
              "/chats/%ZZ", "/chats/%", "/chats/%C0%AF", "/chats/" + "%41" * 400]
for _i, _p in enumerate(TRAVERSALS):
    row("traversal_%d_without_token" % _i, get(_p), 401, "unauthorized")
    row("traversal_%d_other_users_token" % _i, get(_p, token_of="attacker"), 403, "forbidden")
    row("traversal_%d_admin_token" % _i, get(_p, token_of="admin"), 403, "forbidden")

for _i, _fmt in enumerate(["/chats/%s%%00", "/chats/%s%%20", "/chats/%s%%2F..%%2Fx",
                           "/chats/%%2e%%2e%%2F%s", "/chats/%s%%0A"]):
    row("victim_name_variant_%d" % _i, get(victim_path(_fmt), token_of="attacker"),
        403, "forbidden")
row("literal_dotdot_is_no_route", get("/chats/../users/me", token_of="attacker"), 404, "not_found")
row("username_10kb_in_path", get("/chats/" + "a" * 10240, token_of="attacker"), 403, "forbidden")
row("username_10kb_in_path_without_token", get("/chats/" + "a" * 10240), 401, "unauthorized")
row("username_40kb_in_path", raw_to_proxy(lambda c: head(
    b"GET", b"/chats/" + b"a" * 40960, token=c["attacker_token"])), (400, 403, 414, 431), None)


# ------------------------------------------------ 6. ids on /chat/{id} --

BAD_IDS = ["-9223372036854775808", "18446744073709551616", "18446744073709551617", "1.0",
           "1.5", "+1", "0x10", "00", "1e0", "%31%2E5", "%2D1", "%D9%A1", "Infinity", "NaN",
           "1%00", "9" * 100, "1" * 10240, "%20%31", "1%20", "0.0", "-0"]
for _i, _id in enumerate(BAD_IDS):
    row("bad_id_%d" % _i, get("/chat/" + _id, token_of="admin"), 400, "invalid_field")
row("bad_id_with_user_token_is_403_first", get("/chat/1.5", token_of="attacker"), 403, "forbidden")
row("bad_id_without_token_is_401_first", get("/chat/-1"), 401, "unauthorized")


# ------------------------------- 7. clients that hold connections open --

def hold_connections(port, n, request):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(request)
        socks.append(s)
    return socks


def timed_send(port):
    c = ctx()
    t0 = time.time()
    try:
        st, _, body = snaptest.request("POST", "/chat", port=port, token=c["attacker_token"],
                                       body={"username": c["attacker"], "text": "still here"},
                                       timeout=15)
    except OSError as e:
        st, body = None, repr(e)
    return st, body, time.time() - t0


def workers():
    return int(S.env.get("SNAPTEXT_THREADS", "128"))


def proxied_capacity():
    """Requests HAProxy lets one ingest instance take at once: its workers,
    or the default-server maxconn, whichever is larger."""
    with open(snaptest.HAPROXY_CFG) as f:
        m = re.search(r"^\s*default-server\b.*\bmaxconn (\d+)", f.read(), re.M)
    return max(workers(), int(m.group(1)) if m else 0) * len(S.services["ingest"])


def starvation_row(name, port_of, capacity, request_of):
    """More idle attacker connections than the target takes at once; a
    normal request must still be answered at once."""
    def fn():
        c = ctx()
        socks = hold_connections(port_of(), capacity() + 4, request_of(c))
        try:
            time.sleep(1.0)  # let them reach the workers
            st, body, dt = timed_send(port_of())
        finally:
            for s in socks:
                s.close()
        assert st == 201 and dt < 3.0 * snaptest.TIMEOUT_MULT, \
            "a normal POST /chat got %s after %.1fs while %d connections idled: %r" % (
                st, dt, len(socks), body)
    fn.__name__ = name
    test(fn)


_hdr = (b"POST /chat HTTP/1.1\r\nHost: snaptext\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer %s\r\nContent-Length: %d\r\n\r\n{")
# Through HAProxy, enough for every ingest instance.
starvation_row("slow_bodies_do_not_starve_others", lambda: S.port, proxied_capacity,
               lambda c: _hdr % (c["attacker_token"].encode(), 100))
starvation_row("huge_declared_bodies_do_not_starve_others", lambda: S.port, proxied_capacity,
               lambda c: _hdr % (c["attacker_token"].encode(), 2 ** 32 + 1))
# Directly at one instance: after its 413 a service must close, not wait
# for the rest of a body it has already refused.
starvation_row("refused_body_is_not_drained_by_ingest", lambda: S.services["ingest"][0].port,
               workers, lambda c: _hdr % (c["attacker_token"].encode(), 10 ** 12))


# ------------------------------------------------ 8. deep nesting (last) --
# Last of the tables: a crash here takes an instance down, and the rows
# above should still say what they found.

row("nesting_10000_open_brackets", post("/chat", raw=b"[" * 10000, token_of="attacker"),
    400, "invalid_json")
row("nesting_10000_closed_arrays", post("/chat", raw=b"[" * 10000 + b"]" * 10000,
                                        token_of="attacker"), 400, "invalid_json")
row("nesting_10000_objects", post("/chat", raw=b'{"a":' * 10000 + b"1" + b"}" * 10000,
                                  token_of="attacker"), 400, "invalid_json")
row("nesting_60000_in_a_field", post("/chat", raw=b'{"username":"bob","text":' + b"[" * 60000,
                                     token_of="attacker"), 400, "invalid_json")


def nested_unknown_field(route, body, token_of, status):
    """A valid body plus an unknown field holding 1,000 nested arrays (1 KiB
    of brackets). Unknown fields are ignored, so the body may be accepted,
    or refused as too deeply nested; the instances must stay up."""
    def fn():
        data = json.dumps(body(ctx())).encode()[:-1] + b',"x":' + b"[" * 1000 + b"]" * 1000 + b"}"
        t0 = time.time()
        resp = post(route, raw=data, token_of=token_of)()
        check(resp, status, None, time.time() - t0)
        if resp[0] == 400:
            check(resp, 400, "invalid_json")
        service = {"/chat": "ingest", "/users": "users", "/sessions": "users"}[route]
        dead = [p.name for p in S.services[service] if not p.alive()]
        assert not dead, "%s died on %d bytes of nested arrays" % (dead, len(data))
    fn.__name__ = "nesting_1000_in_unknown_field_" + route.strip("/")
    test(fn)


nested_unknown_field("/chat", chat_base, "attacker", (201, 400))
nested_unknown_field("/users", users_base, None, (201, 400))
nested_unknown_field("/sessions", lambda c: dict(sessions_base(c), password="wrong password"),
                     None, (400, 401))


# ----------------------------------------------------------- afterwards --

@test
def every_instance_healthy_and_alive_afterwards():
    for name, procs in S.services.items():
        for p in procs:
            assert p.alive(), "%s died: %s" % (p.name, p.logs())
            st, _, body = snaptest.request("GET", "/healthz", port=p.port, timeout=10)
            assert st == 200 and body == {"status": "ok"}, (p.name, st, body)
    assert S.haproxy.alive(), S.haproxy.logs()
    assert S.req("GET", "/healthz")[0] == 200


@test
def victims_inbox_untouched_by_the_attacks():
    c = ctx()
    st, _, body = S.req("GET", "/chats/" + c["victim"], token=c["victim_token"])
    assert st == 200 and body == c["victim_mail"], (st, body)


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack))
