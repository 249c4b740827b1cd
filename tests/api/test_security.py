"""Security properties of the running stack, in `required` auth mode.

 * No route shows one user's messages to another: not another user's token,
   not the admin's, not a name that differs only in case, normalization or
   encoding, and nothing a reader already took comes back.
 * A revoked or expired token is refused by every instance at once, asked
   directly on its own port, not only through HAProxy. Expiry is made quick
   by setting the session key's TTL in Redis (docs/REDIS.md layout).
 * The admin lookup needs the admin role, on every fetch instance; the role
   cannot be claimed at registration or by a look-alike name.
 * HAProxy's rate limit answers 429 JSON with Retry-After (a second HAProxy
   with a low SNAPTEXT_RATE_LIMIT in front of the same services).
 * TLS termination (a third HAProxy with SNAPTEXT_TLS_CERT and a self-signed
   certificate made with openssl): register, send and read over HTTPS.
 * Last: no password or token used above appears in any log of the stack.
Not here: malformed input (test_attacks.py), the plain API (test_api.py).
"""
import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import unicodedata
import urllib.parse

import snaptest
from snaptest import test

S = None  # the stack
SECRETS = []   # every password and token this file used
PASSWORD = "correct horse battery staple"


def remember(*secrets):
    SECRETS.extend(s for s in secrets if s)


def register(name=None, password=None, port=None):
    name = name or S.uname()
    password = password or "%s %s" % (PASSWORD, name)
    st, _, body = snaptest.request("POST", "/users", port=port or S.port,
                                   body={"username": name, "password": password})
    assert st == 201, (st, body)
    remember(password, body["token"])
    return name, body["token"]


def login(name, password):
    st, _, body = S.req("POST", "/sessions", {"username": name, "password": password})
    assert st == 201, (st, body)
    remember(password, body["token"])
    return body["token"]


def admin_token():
    return login(S.admin[0], S.admin[1])


def read(name, token, port=None):
    path = "/chats/" + urllib.parse.quote(name, safe="%")
    st, _, body = snaptest.request("GET", path, port=port or S.port, token=token)
    assert st == 200, (st, body)
    return body


def assert_error(resp, status, code):
    st, h, body = resp
    assert st == status, "expected %d %s, got %s %r" % (status, code, st, body)
    assert isinstance(body, dict) and body.get("error") == code, body
    assert set(body) == {"error", "message"}, "an error carries nothing else: %r" % body


def instances(*names):
    """(label, port) of every instance of the named services."""
    return [(p.name, p.port) for n in names for p in S.services[n]]


# ------------------------------------------------------- no cross reads --

@test
def another_users_token_never_reads_an_inbox():
    a, atok = register(S.uname("a"))
    b, btok = register(S.uname("b"))
    first = S.send(b, "b's first", atok, timeout=None)
    # A, and the admin, are refused on every fetch instance, and the refusal
    # carries no message text.
    adm = admin_token()
    for label, port in instances("fetch") + [("haproxy", S.port)]:
        for tok in (atok, adm):
            resp = snaptest.request("GET", "/chats/" + b, port=port, token=tok)
            assert_error(resp, 403, "forbidden")
            assert "b's first" not in json.dumps(resp[2]), (label, resp)
    assert read(a, atok) == []                      # A's own inbox has none of B's
    assert read(b, btok) == [{"id": first, "text": "b's first"}]
    # After B read: A sends more; B sees only the new one, A still nothing.
    second = S.send(b, "b's second", atok, timeout=None)
    assert_error(S.req("GET", "/chats/" + b, token=atok), 403, "forbidden")
    assert read(a, atok) == []
    assert read(b, btok) == [{"id": second, "text": "b's second"}]
    assert read(b, btok) == []


@test
def look_alike_names_are_other_inboxes():
    """Case, Unicode normalization and invisible characters do not alias
    inboxes: each look-alike is a user of its own with an empty inbox."""
    pairs = []
    for make in (lambda b: (b, b.upper()), lambda b: (b, b.lower()),
                 lambda b: (unicodedata.normalize("NFC", "j\u00fcrgen_" + b),
                            unicodedata.normalize("NFD", "j\u00fcrgen_" + b)),
                 lambda b: (b, b + "\u200b")):
        pairs.append(make(S.uname("Ju")))
    for victim, lookalike in pairs:
        assert victim != lookalike
        vname, vtok = register(victim)
        mid = S.send(vname, "for %s only" % vname, vtok, timeout=None)
        lname, ltok = register(lookalike)
        assert read(lname, ltok) == [], (victim, lookalike)
        enc = "".join("%%%02X" % c for c in vname.encode())
        assert_error(S.req("GET", "/chats/" + enc, token=ltok), 403, "forbidden")
        assert read(vname, vtok) == [{"id": mid, "text": "for %s only" % vname}]


@test
def own_name_percent_encoded_is_still_only_yours():
    name, tok = register(S.uname("p"))
    other, otok = register(S.uname("q"))
    mid = S.send(name, "mine", otok, timeout=None)
    enc = "".join("%%%02X" % c for c in name.encode())
    assert_error(S.req("GET", "/chats/" + enc, token=otok), 403, "forbidden")
    assert read(enc, tok) == [{"id": mid, "text": "mine"}]


@test
def send_and_errors_reveal_nothing_about_inboxes():
    a, atok = register(S.uname("a"))
    b, btok = register(S.uname("b"))
    S.send(b, "secret for b", atok, timeout=None)
    st, h, body = S.req("POST", "/chat", {"username": b, "text": "another"}, token=atok)
    assert st == 201 and set(body) == {"id"}, body
    st, _, me = S.req("GET", "/users/me", token=atok)
    assert st == 200 and me["username"] == a, me
    assert "secret for b" not in json.dumps(me)
    assert len(read(b, btok)) == 2


# ------------------------------------------ revoked and expired tokens --

def every_instance_accepts(name, tok):
    for label, port in instances("ingest"):
        assert snaptest.request("POST", "/chat", port=port, token=tok,
                                body={"username": name, "text": "x"})[0] == 201, label
    for label, port in instances("fetch"):
        assert snaptest.request("GET", "/chats/" + name, port=port, token=tok)[0] == 200, label
    for label, port in instances("users"):
        assert snaptest.request("GET", "/users/me", port=port, token=tok)[0] == 200, label


def every_instance_refuses(name, tok):
    for label, port in instances("ingest") + [("haproxy", S.port)]:
        resp = snaptest.request("POST", "/chat", port=port, token=tok,
                                body={"username": name, "text": "x"})
        assert resp[0] == 401, (label, resp)
        assert_error(resp, 401, "unauthorized")
    for label, port in instances("fetch") + [("haproxy", S.port)]:
        resp = snaptest.request("GET", "/chats/" + name, port=port, token=tok)
        assert resp[0] == 401, (label, resp)
        assert_error(resp, 401, "unauthorized")
    for label, port in instances("users") + [("haproxy", S.port)]:
        for method, path in (("GET", "/users/me"), ("DELETE", "/sessions/current")):
            resp = snaptest.request(method, path, port=port, token=tok)
            assert resp[0] == 401, (label, method, path, resp)
            assert_error(resp, 401, "unauthorized")


@test
def revoked_token_refused_by_every_instance_at_once():
    name, tok = register(S.uname("r"))
    every_instance_accepts(name, tok)
    st, _, body = S.req("DELETE", "/sessions/current", token=tok)
    assert st == 204, (st, body)
    every_instance_refuses(name, tok)   # no wait: at once


def redis_command(*args):
    """One command to the stack's Redis over RESP; returns the reply line."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", S.redis.port), timeout=5) as s:
        s.sendall(out)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


@test
def expired_token_refused_by_every_instance():
    name, first = register(S.uname("e"))
    tok = login(name, "%s %s" % (PASSWORD, name))
    every_instance_accepts(name, tok)
    key = "snap:session:" + hashlib.sha256(tok.encode()).hexdigest()
    assert redis_command("PEXPIRE", key, 1000) == ":1", \
        "no session key %s in Redis (docs/REDIS.md layout)" % key
    time.sleep(1.5)
    assert redis_command("EXISTS", key) == ":0"
    every_instance_refuses(name, tok)
    # the user's other session is untouched
    every_instance_accepts(name, first)


# ------------------------------------------------------- admin lookup --

@test
def admin_lookup_needs_the_admin_role_on_every_instance():
    a, atok = register(S.uname("a"))
    mid = S.send(a, "look me up", atok, timeout=None)
    adm = admin_token()
    for label, port in instances("fetch") + [("haproxy", S.port)]:
        assert_error(snaptest.request("GET", "/chat/%d" % mid, port=port), 401, "unauthorized")
        resp = snaptest.request("GET", "/chat/%d" % mid, port=port, token=atok)
        assert_error(resp, 403, "forbidden")
        assert "look me up" not in json.dumps(resp[2])
        st, _, m = snaptest.request("GET", "/chat/%d" % mid, port=port, token=adm)
        assert st == 200 and m["text"] == "look me up", (label, st, m)
    # a revoked admin token is just a revoked token
    assert S.req("DELETE", "/sessions/current", token=adm)[0] == 204
    for label, port in instances("fetch"):
        assert_error(snaptest.request("GET", "/chat/%d" % mid, port=port, token=adm),
                     401, "unauthorized")


@test
def admin_role_cannot_be_claimed():
    name = S.uname("m")
    password = "%s %s" % (PASSWORD, name)
    st, _, body = S.req("POST", "/users", {"username": name, "password": password,
                                           "role": "admin", "admin": True})
    assert st == 201, (st, body)
    remember(password, body["token"])
    st, _, me = S.req("GET", "/users/me", token=body["token"])
    assert st == 200 and me["role"] == "user", me
    mid = S.send(name, "x", body["token"], timeout=None)
    assert_error(S.req("GET", "/chat/%d" % mid, token=body["token"]), 403, "forbidden")
    # the admin's own name is taken; look-alikes are plain users
    assert_error(S.req("POST", "/users", {"username": S.admin[0], "password": "another password"}),
                 409, "conflict")
    for look in (S.admin[0].upper(), S.admin[0] + "\u200b", S.admin[0] + "_"):
        lname, ltok = register(look)
        st, _, me = S.req("GET", "/users/me", token=ltok)
        assert me["role"] == "user", me
        assert_error(S.req("GET", "/chat/%d" % mid, token=ltok), 403, "forbidden")
    # a well-formed token that was never issued
    assert_error(S.req("GET", "/chat/%d" % mid, token="A" * 43), 401, "unauthorized")


# ---------------------------------------------------------- rate limit --

def backends():
    return {k: [p.port for p in v] for k, v in S.services.items()}


@test
def rate_limit_answers_429_json_with_retry_after():
    limit = 5
    hp = snaptest.start_haproxy(backends(), root=S.root, env={"SNAPTEXT_RATE_LIMIT": str(limit)})
    S.procs.append(hp)   # stopped, checked and logged with the stack
    # A fresh table: HAProxy answers /healthz itself, so no backend is needed
    # yet and exactly `limit` requests pass.
    statuses = []
    for i in range(limit):
        statuses.append(snaptest.request("GET", "/healthz", port=hp.port)[0])
    assert statuses == [200] * limit, statuses
    for method, path, body in (("GET", "/healthz", None), ("POST", "/chat", {"username": "x", "text": "y"}),
                               ("GET", "/chats/x", None), ("POST", "/users", {"username": "x"})):
        st, h, b = snaptest.request(method, path, port=hp.port, body=body)
        assert st == 429, (method, path, st, b)
        assert b.get("error") == "rate_limited" and b.get("message"), b
        assert h.get("content-type", "").startswith("application/json"), h
        assert h.get("retry-after", "").isdigit() and int(h["retry-after"]) >= 1, h
        assert h.get("x-request-id"), h
    # the main HAProxy has its own table and is not limited
    assert S.req("GET", "/healthz")[0] == 200


# ----------------------------------------------------------------- TLS --

def make_certificate(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", key, "-out", cert, "-subj", "/CN=snaptext-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True)
    pem = os.path.join(d, "snaptext.pem")
    with open(pem, "wb") as out:
        for part in (cert, key):
            with open(part, "rb") as f:
                out.write(f.read())
    return cert, pem


def https(port, ctx, method, path, body=None, token=None):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=10)
    try:
        h = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            h["Authorization"] = "Bearer " + token
        conn.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                     headers=h)
        resp = conn.getresponse()
        data = resp.read()
        version = conn.sock.version() if conn.sock else None
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, \
            (json.loads(data) if data else None), version
    finally:
        conn.close()


@test
def tls_termination_register_send_read():
    d = os.path.join(S.root, "tls")
    os.makedirs(d, exist_ok=True)
    cert, pem = make_certificate(d)
    tls_port = snaptest.free_port()
    hp = snaptest.start_haproxy(backends(), root=S.root, env={
        "SNAPTEXT_TLS_CERT": pem, "SNAPTEXT_TLS_BIND": "127.0.0.1:%d" % tls_port})
    S.procs.append(hp)
    deadline = time.time() + 5 * snaptest.TIMEOUT_MULT
    while not snaptest.port_open(tls_port) and time.time() < deadline:
        time.sleep(0.05)
    assert snaptest.port_open(tls_port), (
        "HAProxy opened no HTTPS listener for SNAPTEXT_TLS_CERT: deploy/haproxy/haproxy.cfg "
        "needs the TLS bind of docs/TLS.md\n" + hp.logs())
    ctx = ssl.create_default_context(cafile=cert)   # verifies the chain and 127.0.0.1
    deadline = time.time() + 10 * snaptest.TIMEOUT_MULT
    while https(tls_port, ctx, "GET", "/chats/x")[0] == 503 and time.time() < deadline:
        time.sleep(0.1)

    name = S.uname("tls")
    password = "%s %s" % (PASSWORD, name)
    st, h, body, version = https(tls_port, ctx, "POST", "/users",
                                 {"username": name, "password": password})
    assert st == 201, (st, body)
    assert version in ("TLSv1.2", "TLSv1.3"), version
    assert h.get("strict-transport-security", "").startswith("max-age="), h
    assert h.get("x-request-id"), h
    tok = body["token"]
    remember(password, tok)
    st, h, body, _ = https(tls_port, ctx, "POST", "/chat", {"username": name, "text": "over tls"},
                           token=tok)
    assert st == 201, (st, body)
    mid = body["id"]
    st, _, body, _ = https(tls_port, ctx, "GET", "/chats/" + name, token=tok)
    assert st == 200 and body == [{"id": mid, "text": "over tls"}], (st, body)
    st, _, body, _ = https(tls_port, ctx, "GET", "/nope")
    assert st == 404 and body["error"] == "not_found", (st, body)
    # the same rules as plain HTTP: the route table and the body limit
    st, _, body, _ = https(tls_port, ctx, "GET", "/chats/" + name)
    assert st == 401 and body["error"] == "unauthorized", (st, body)
    # plain HTTP on the TLS port gets no HTTP answer
    out = snaptest.raw_exchange(tls_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert not out.startswith(b"HTTP/1.1 200"), out[:100]
    # and the plain listener of the same HAProxy still works, without HSTS
    st, h, _ = snaptest.request("GET", "/healthz", port=hp.port)
    assert st == 200 and "strict-transport-security" not in h, (st, h)


# ---------------------------------------------------------- last: logs --

@test
def no_password_or_token_in_any_log():
    # a password typed into the username field, and a failed login
    typed = "%s typed-as-name" % PASSWORD
    remember(typed)
    S.req("POST", "/sessions", {"username": typed, "password": typed})
    S.req("POST", "/sessions", {"username": S.admin[0], "password": typed})
    remember(S.admin[1])
    time.sleep(0.5)   # let the services write their lines
    texts = []
    for p in S.procs:
        for path in (p.stdout_path, p.stderr_path):
            with open(path, "rb") as f:
                texts.append((p.name, path, f.read().decode("utf-8", "replace")))
    assert sum(len(t) for _, _, t in texts) > 0
    found = []
    for secret in set(SECRETS):
        probes = [secret]
        if len(secret) >= 40:            # a token: half of it is already a leak
            probes.append(secret[:len(secret) // 2])
        for name, path, text in texts:
            if any(p in text for p in probes):
                found.append("%s...%s in %s (%s)" % (secret[:4], secret[-2:], name, path))
    assert not found, "secrets in the logs: %s" % found
    assert len(SECRETS) > 20, SECRETS


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack))
