"""Hostile request ids and paths against HAProxy's JSON access log
(hardening item 1).

 * An X-Request-Id made only of A-Z a-z 0-9 . _ : - (1-64 characters) is
   echoed; anything else (a quote, a backslash, a comma, braces, 65
   characters, two X-Request-Id headers) is replaced by a generated id on
   the response and in the logs.
 * After a run of hostile requests (those ids, quotes and backslashes in
   the path), every line of HAProxy's access log parses as one JSON object
   with no key twice, and the one a request produced carries the id its
   response carried.
Not here: the services' own logs (log.c escapes every string; test_attacks.py).
"""
import json
import re
import sys
import time

import snaptest
from snaptest import test

S = None
SAFE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
INJECTION = 'x","status":200,"client":"10.9.9.9","z":"'


def unique_keys(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted(k for k in set(keys) if keys.count(k) > 1)
    if dup:
        raise ValueError("duplicate keys %s" % dup)
    return dict(pairs)


def access_lines():
    """HAProxy's stdout: access lines (JSON) and its own event lines
    ("Server users/users1 is UP"); a line that starts like JSON or
    mentions request_id is an access line."""
    return [l for l in S.haproxy.stdout().splitlines()
            if l.startswith("{") or "request_id" in l]


def parsed(line):
    return json.loads(line, object_pairs_hook=unique_keys)


@test
def hostile_request_ids_are_replaced():
    hostile = [INJECTION, 'a"b', "a\\b", "a,b", "{}", "x" * 65, "a b", "<script>", "%22"]
    for value in hostile:
        st, hdrs, _ = S.req("GET", "/chats/nobody", headers={"X-Request-Id": value})
        got = hdrs.get("x-request-id", "")
        assert got != value and SAFE.match(got), (value, got)
    for value in ("ok-id_1.2:3", "A" * 64, "0"):
        st, hdrs, _ = S.req("GET", "/chats/nobody", headers={"X-Request-Id": value})
        assert hdrs.get("x-request-id") == value, (value, hdrs)


@test
def every_access_line_is_json_with_unique_keys():
    sent = []
    for value in (INJECTION, 'a"b\\c', "ok-1"):
        st, hdrs, _ = S.req("GET", "/chats/nobody", headers={"X-Request-Id": value})
        sent.append(hdrs["x-request-id"])
    # Two X-Request-Id headers, and quotes and backslashes in the path,
    # sent as raw bytes (an HTTP client would encode them).
    raw = [b"GET /chats/nobody HTTP/1.1\r\nHost: x\r\nX-Request-Id: good-1\r\n"
           b'X-Request-Id: x","status":200,"z":"\r\nConnection: close\r\n\r\n',
           b'GET /chats/a"b","status":200,"z":" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
           b"GET /chats/a\\b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
           b'GET /nowhere"x HTTP/1.1\r\nHost: x\r\nX-Request-Id: ' + INJECTION.encode() +
           b"\r\nConnection: close\r\n\r\n"]
    for data in raw:
        reply = snaptest.raw_exchange(S.port, data)
        m = re.search(rb"(?im)^x-request-id: *([^\r\n]*)", reply)
        assert m, reply[:300]
        rid = m.group(1).decode()
        assert SAFE.match(rid) and rid != "good-1", (data, rid)
        sent.append(rid)
    # HAProxy writes a line when a stream ends, which may be after its
    # client has read the reply, and lines of the previous test may still
    # be on their way: wait for each id by name, not for a count.
    def all_logged():
        text = "\n".join(access_lines())
        return all(rid in text for rid in sent)
    snaptest.wait_until(all_logged, "HAProxy's access lines for %s" % sent, timeout=5)
    lines = access_lines()
    bad = []
    ids = []
    for l in lines:
        try:
            obj = parsed(l)
            ids.append(obj["request_id"])
            assert SAFE.match(obj["request_id"]), obj
        except (ValueError, AssertionError, KeyError) as e:
            bad.append("%s: %s" % (e, l))
    print("%d access lines, all JSON with unique keys: %s" % (len(lines), not bad))
    assert not bad, "\n".join(bad[:10])
    for rid in sent:
        assert ids.count(rid) == 1, (rid, [l for l in lines if rid in l])


def set_stack(s):
    global S
    S = s


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, instances=1))
