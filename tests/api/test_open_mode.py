"""`open` auth mode (SNAPTEXT_AUTH=open): the classic unauthenticated API for
sending and reading, while /users, /sessions and the admin lookup keep
their rules. One stack for the file, through HAProxy."""
import sys
import time

import snaptest
from snaptest import test

S = None


def register(name):
    st, _, body = S.req("POST", "/users", {"username": name, "password": "correct horse battery"})
    assert st == 201, (st, body)
    return body["token"]


@test
def send_and_read_without_token():
    name = "open_%d" % (time.time() * 1000)
    st, h, body = S.req("POST", "/chat", {"username": name, "text": "classic"})
    assert st == 201 and h["location"] == "/chat/%d" % body["id"], (st, body)
    st, _, got = S.req("GET", "/chats/" + name)
    assert st == 200 and got == [{"id": body["id"], "text": "classic"}], got
    st, _, m = S.req("GET", "/chat/%d" % body["id"], token=S.admin_token())
    assert st == 200 and m["from"] is None, m


@test
def valid_token_still_records_from():
    sender = "sender_%d" % (time.time() * 1000)
    tok = register(sender)
    st, _, body = S.req("POST", "/chat", {"username": "bob", "text": "signed"}, token=tok)
    assert st == 201, body
    st, _, m = S.req("GET", "/chat/%d" % body["id"], token=S.admin_token())
    assert m["from"] == sender, m


@test
def a_bad_token_is_refused_even_in_open_mode():
    st, _, body = S.req("POST", "/chat", {"username": "bob", "text": "x"}, token="forged")
    assert st == 401 and body["error"] == "unauthorized", (st, body)


@test
def admin_lookup_still_needs_admin():
    st, _, body = S.req("POST", "/chat", {"username": "bob", "text": "x"})
    mid = body["id"]
    assert S.req("GET", "/chat/%d" % mid)[0] == 401
    tok = register("plain_%d" % (time.time() * 1000))
    assert S.req("GET", "/chat/%d" % mid, token=tok)[0] == 403
    assert S.req("GET", "/chat/%d" % mid, token=S.admin_token())[0] == 200


@test
def users_routes_unchanged():
    assert S.req("GET", "/users/me")[0] == 401
    assert S.req("DELETE", "/sessions/current")[0] == 401


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, env={"SNAPTEXT_AUTH": "open"}))
