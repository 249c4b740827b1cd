"""test_openapi: real answers through HAProxy checked against the OpenAPI
document the pages service serves (GET /openapi.json), so the document
cannot drift from the code: every status a route answers must be listed for
that operation, its required headers present, and its JSON body valid
against the listed schema (python3-jsonschema, draft 2020-12, $refs resolved
inside the document). Also: the pages' own routes, headers and caching.
Routes of API.md that this server does not have yet (receipts, unsend,
?limit, ?wait) are reported with a note and not checked."""

import json
import os
import sys

import jsonschema

import snaptest
from snaptest import test

S = None
DOC = None
PASSWORD = "openapi-password-1"


def doc():
    global DOC
    if DOC is None:
        st, h, body = S.req("GET", "/openapi.json")
        assert st == 200 and h["content-type"] == "application/json", (st, h)
        DOC = body
    return DOC


def escape(seg):
    return seg.replace("~", "~0").replace("/", "~1")


def deref(pointer):
    node = doc()
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validate_at(pointer, instance):
    root = dict(doc())
    root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    root["$ref"] = pointer
    jsonschema.Draft202012Validator(root).validate(instance)


def response_of(template, method, status):
    """(pointer, response object) of the documented answer, or fails."""
    op = doc()["paths"][template][method.lower()]
    key = str(status)
    assert key in op["responses"], "%s %s answered %s, which the document does not list (%s)" % (
        method, template, status, sorted(op["responses"]))
    pointer = "#/paths/%s/%s/responses/%s" % (escape(template), method.lower(), key)
    resp = op["responses"][key]
    if "$ref" in resp:
        pointer = resp["$ref"]
        resp = deref(pointer)
    return pointer, resp


def conforms(answer, template, method, pointer_override=None):
    """Checks one (status, headers, body) answer against the document."""
    st, h, body = answer
    if pointer_override:
        pointer, resp = pointer_override, deref(pointer_override)
    else:
        pointer, resp = response_of(template, method, st)
    for name, hdr in resp.get("headers", {}).items():
        if "$ref" in hdr:
            hdr = deref(hdr["$ref"])
        if hdr.get("required"):
            assert name.lower() in h, "%s %s %s: header %s missing" % (method, template, st, name)
    content = resp.get("content", {})
    if "application/json" in content and method != "HEAD":
        assert h.get("content-type", "").startswith("application/json"), h
        validate_at(pointer + "/content/application~1json/schema", body)
    elif content:
        ctype = next(iter(content))
        assert h.get("content-type", "").startswith(ctype), (ctype, h.get("content-type"))
    return answer


def route_missing(answer):
    st, _, body = answer
    return st == 405 or (st == 404 and "no such route" in (body or {}).get("message", ""))


def register(name):
    return conforms(S.req("POST", "/users", {"username": name, "password": PASSWORD}), "/users", "POST")


@test
def document_is_served_as_kept_in_the_repository():
    with open(os.path.join(snaptest.SOURCE_DIR, "services", "pages", "site", "openapi.json")) as f:
        kept = json.load(f)
    assert doc() == kept
    assert doc()["openapi"].startswith("3.1")
    conforms(S.req("GET", "/openapi.json"), "/openapi.json", "GET")


@test
def users_and_sessions_conform():
    st, _, body = register("oa-ann")
    assert st == 201 and body["username"] == "oa-ann"
    assert register("oa-ann")[0] == 409
    conforms(S.req("POST", "/users", {"username": "has space", "password": PASSWORD}), "/users", "POST")
    conforms(S.req("POST", "/users", raw=b"{", headers={"Content-Type": "application/json"}), "/users", "POST")
    conforms(S.req("POST", "/users", raw=b"x", headers={"Content-Type": "text/plain"}), "/users", "POST")
    st, _, login = conforms(S.req("POST", "/sessions", {"username": "oa-ann", "password": PASSWORD}),
                            "/sessions", "POST")
    assert st == 201
    assert conforms(S.req("POST", "/sessions", {"username": "oa-ann", "password": "wrong-password"}),
                    "/sessions", "POST")[0] == 401
    st, _, me = conforms(S.req("GET", "/users/me", token=login["token"]), "/users/me", "GET")
    assert st == 200 and me["role"] == "user"
    assert conforms(S.req("GET", "/users/me"), "/users/me", "GET")[0] == 401
    assert conforms(S.req("DELETE", "/sessions/current", token=login["token"]),
                    "/sessions/current", "DELETE")[0] == 204
    assert conforms(S.req("GET", "/users/me", token=login["token"]), "/users/me", "GET")[0] == 401


@test
def messages_conform():
    tok_a = register("oa-amy")[2]["token"]
    tok_b = register("oa-ben")[2]["token"]
    st, h, sent = conforms(S.req("POST", "/chat", {"username": "oa-ben", "text": "<b>hi</b>", "timeout": 60},
                                 token=tok_a), "/chat", "POST")
    assert st == 201 and h["location"] == "/chat/%d" % sent["id"]
    conforms(S.req("POST", "/chat", {"username": "oa-ben", "text": "second"}, token=tok_a), "/chat", "POST")
    for bad in ({"username": "oa-ben", "text": ""}, {"username": "oa-ben", "text": "x", "timeout": 0},
                {"username": "oa-ben", "text": "x", "timeout": "60"}):
        assert conforms(S.req("POST", "/chat", bad, token=tok_a), "/chat", "POST")[0] == 400
    assert conforms(S.req("POST", "/chat", {"username": "oa-ben", "text": "x"}), "/chat", "POST")[0] == 401
    keyed = conforms(S.req("POST", "/chat", {"username": "oa-ben", "text": "x"}, token=tok_a,
                           headers={"Idempotency-Key": "not valid!"}), "/chat", "POST")
    if keyed[0] == 201:
        print("note: Idempotency-Key is not checked by this server yet (a bad key was answered 201)")
    else:
        assert keyed[0] == 400 and "Idempotency-Key" in keyed[2]["message"], keyed
    big = {"username": "oa-ben", "text": "x" * 70000}
    assert conforms(S.req("POST", "/chat", big, token=tok_a), "/chat", "POST")[0] == 413

    assert conforms(S.req("GET", "/chats/oa-ben", token=tok_a), "/chats/{username}", "GET")[0] == 403
    assert conforms(S.req("GET", "/chats/oa-ben"), "/chats/{username}", "GET")[0] == 401
    limited = S.req("GET", "/chats/oa-ben?limit=1", token=tok_b)
    if limited[0] == 200 and len(limited[2]) == 1:
        conforms(limited, "/chats/{username}", "GET")
        assert limited[1].get("x-more-messages") == "true", limited[1]
    else:
        print("note: ?limit=N is not on this server yet (a read with limit=1 answered %s with %r); "
              "X-More-Messages is not checked" % (limited[0], limited[2]))
    st, _, msgs = conforms(S.req("GET", "/chats/oa-ben", token=tok_b), "/chats/{username}", "GET")
    assert st == 200 and "<b>hi</b>" in [m["text"] for m in msgs] + [m["text"] for m in limited[2]
                                                                       if isinstance(limited[2], list)]
    assert conforms(S.req("GET", "/chats/oa-ben", token=tok_b), "/chats/{username}", "GET")[2] == []

    tok_admin = S.req("POST", "/sessions", {"username": S.admin[0], "password": S.admin[1]})[2]["token"]
    st, _, found = conforms(S.req("GET", "/chat/%d" % sent["id"], token=tok_admin), "/chat/{id}", "GET")
    assert st == 200 and found["from"] == "oa-amy" and found["text"] == "<b>hi</b>"
    for path, want in (("/chat/99999999", 404), ("/chat/abc", 400), ("/chat/0", 400)):
        assert conforms(S.req("GET", path, token=tok_admin), "/chat/{id}", "GET")[0] == want
    assert conforms(S.req("GET", "/chat/1", token=tok_a), "/chat/{id}", "GET")[0] == 403
    assert conforms(S.req("GET", "/chat/1"), "/chat/{id}", "GET")[0] == 401

    status = S.req("GET", "/chat/%d/status" % sent["id"], token=tok_a)
    if route_missing(status):
        print("note: GET /chat/{id}/status is not on this server yet (%s); not checked" % status[0])
    else:
        st, _, body = conforms(status, "/chat/{id}/status", "GET")
        assert st == 200 and body["state"] == "read" and body["read_at"] is not None, body
    unsend = S.req("DELETE", "/chat/%d" % sent["id"], token=tok_a)
    if route_missing(unsend):
        print("note: DELETE /chat/{id} is not on this server yet (%s); not checked" % unsend[0])
    else:
        assert conforms(unsend, "/chat/{id}", "DELETE")[0] == 409


@test
def method_not_allowed_conforms():
    ans = S.req("PUT", "/chat", {"x": 1})
    assert ans[0] == 405 and "allow" in ans[1], ans
    conforms(ans, "/chat", "PUT", pointer_override="#/components/responses/MethodNotAllowed")


@test
def failed_logins_are_throttled_as_documented():
    register("oa-throttled")
    for _ in range(60):
        ans = S.req("POST", "/sessions", {"username": "oa-throttled", "password": "wrong-password"})
        conforms(ans, "/sessions", "POST")
        if ans[0] == 429:
            assert ans[2]["error"] == "rate_limited" and int(ans[1]["retry-after"]) >= 1
            return
    print("note: this server does not throttle failed logins yet (60 were all answered 401); "
          "HAProxy's 429 is checked in proxy_rate_limit_conforms")


@test
def proxy_rate_limit_conforms():
    backends = {k: [p.port for p in v] for k, v in S.services.items()}
    proxy = snaptest.start_haproxy(backends, root=S.root, env={"SNAPTEXT_RATE_LIMIT": "3"})
    S.procs.append(proxy)
    answers = [snaptest.request("GET", "/users/me", port=proxy.port) for _ in range(8)]
    limited = [a for a in answers if a[0] == 429]
    assert limited, [a[0] for a in answers]
    conforms(limited[0], "/users/me", "GET")
    assert limited[0][2]["error"] == "rate_limited"


@test
def operations_conform():
    conforms(S.req("GET", "/healthz"), "/healthz", "GET")
    for procs in S.services.values():
        for p in procs:
            conforms(snaptest.request("GET", "/readyz", port=p.port), "/readyz", "GET")
    assert S.req("GET", "/readyz")[0] == 404  # not public


@test
def pages_conform_and_cache_as_static_files():
    st, h, _ = conforms(S.req("GET", "/"), "/", "GET")
    assert st == 302 and h["location"] == "/app/"
    st, h, html = conforms(S.req("GET", "/app/"), "/app/", "GET")
    assert st == 200 and "<title>snaptext</title>" in html
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in html.replace(" ", ""), "no inline script in the page"
    assert h["cache-control"] == "no-cache" and h["etag"].startswith('"')
    assert h["x-content-type-options"] == "nosniff"
    again = S.req("GET", "/app/", headers={"If-None-Match": h["etag"]})
    assert again[0] == 304 and not again[2]
    st, h, js = S.req("GET", "/app/main.js")
    assert st == 200 and h["content-type"].startswith("text/javascript")
    assert "max-age=" in h["cache-control"] and "etag" in h
    st, h, page = conforms(S.req("GET", "/docs"), "/docs", "GET")
    assert st == 200 and "/docs/swagger-ui-bundle.js" in page
    assert S.req("GET", "/docs/swagger-ui-bundle.js")[0] == 200
    st, h, body = S.req("GET", "/app/..%2Fopenapi.json")
    assert st == 404 and body["error"] == "not_found"
    assert S.req("GET", "/app/nothing-here.js")[0] == 404
    assert S.req("HEAD", "/app/")[0] == 200
    st, h, body = S.req("POST", "/app/", {"x": 1})
    assert st == 405 and "GET" in h["allow"]
    # The JSON API keeps its own headers.
    assert S.req("GET", "/users/me")[1]["cache-control"] == "no-store"


@test
def unavailable_conforms():  # last: stops Redis
    tok = register("oa-late")[2]["token"]
    S.redis.stop(expect_clean=False)
    ans = S.req("POST", "/chat", {"username": "oa-ben", "text": "x"}, token=tok)
    assert ans[0] == 503, ans
    conforms(ans, "/chat", "POST")
    assert ans[2]["error"] == "unavailable" and int(ans[1]["retry-after"]) >= 1


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, pages=True, instances=1))
