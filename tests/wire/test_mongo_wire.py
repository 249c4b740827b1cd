#!/usr/bin/python3
"""test_mongo_wire.py: what the MongoDB cold-store driver puts on the wire.

A scripted MongoDB server (python3-mockupdb) listens on a free loopback port;
cold_cli (tests/wire/cold_cli.c) performs one cold-store operation per run
through the public cold_store.h API, with the real libmongoc. Every command
the driver sends is recorded and compared, BSON types included (int64 vs
int32, dates, null), with the exact command we expect. The server's answers
are scripted to check the status mapping (duplicate key -> conflict, any
other failure -> unavailable; for a batch, one outcome per message) and the
default timeouts (a dead or silent server is "unavailable" in about 2 s,
never a hang).

Not here: behaviour against a real mongod (tests/contract, contract_mongo).

Usage: test_mongo_wire.py [path/to/cold_cli]   (or SNAP_COLD_CLI=...)
Ends with "N passed, N failed"; exit 1 on any failure, 77 when mockupdb is
missing (a failure under CI=true).
"""
import calendar
import datetime
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback

try:
    from bson.int64 import Int64
    from bson.objectid import ObjectId
    from mockupdb import MockupDB
except ImportError as exc:  # pragma: no cover - depends on the machine
    print("python3-mockupdb is not installed (%s)" % exc)
    print("0 passed, %d failed" % (1 if os.environ.get("CI") == "true" else 0))
    sys.exit(1 if os.environ.get("CI") == "true" else 77)

CLI = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("SNAP_COLD_CLI", "")
DB = "snaptext_test"
# Short timeouts for the scripted runs; the timeout tests below use none,
# to check the driver's own defaults.
SHORT = "serverSelectionTimeoutMS=1000&connectTimeoutMS=500&socketTimeoutMS=1000"
WC = {"w": "majority", "j": True}           # the driver's default write concern
RUN_TIMEOUT = 20                             # seconds before a run counts as a hang
SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "runtime error:")

# The handshake answer: a standalone mongod 5.0 (wire version 13), which
# libmongoc 1.23 talks to with OP_MSG commands.
HELLO = {"ismaster": True, "isWritablePrimary": True, "minWireVersion": 0,
         "maxWireVersion": 13, "maxBsonObjectSize": 16 * 1024 * 1024,
         "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000}
HANDSHAKE = ("ismaster", "hello")


# ---- BSON with its types ----------------------------------------------------

def date(ms):
    """A BSON date as mockupdb decodes it: naive UTC datetime."""
    return datetime.datetime(1970, 1, 1) + datetime.timedelta(milliseconds=ms)


def ms_of(dt):
    return calendar.timegm(dt.utctimetuple()) * 1000 + dt.microsecond // 1000


def typed(v):
    """v with its BSON type made explicit, so that 7 (int32) != Int64(7) and
    True != 1. Sub-documents keep their key order."""
    if isinstance(v, bool):
        return ("bool", v)
    if isinstance(v, Int64):
        return ("int64", int(v))
    if isinstance(v, int):
        return ("int32", v)
    if isinstance(v, float):
        return ("double", v)
    if isinstance(v, str):
        return ("string", v)
    if v is None:
        return ("null",)
    if isinstance(v, datetime.datetime):
        return ("date", ms_of(v))
    if isinstance(v, ObjectId):
        return ("objectid", str(v))
    if isinstance(v, list):
        return ("array", [typed(x) for x in v])
    if isinstance(v, dict):
        return ("document", [(k, typed(x)) for k, x in v.items()])
    return ("other", repr(v))


def typed_command(doc):
    """A command: its name must come first; the other top-level fields are
    compared as a set (their order is libmongoc's business)."""
    items = list(doc.items())
    return (items[0], sorted((k, typed(v)) for k, v in items[1:]))


def check_command(actual, expected, what):
    if typed_command(actual) == typed_command(expected):
        return
    # Name the differing fields with their BSON types (7 and Int64(7) print
    # alike otherwise).
    diffs = []
    for key in sorted(set(actual) | set(expected)):
        a = typed(actual[key]) if key in actual else "(absent)"
        e = typed(expected[key]) if key in expected else "(absent)"
        if a != e:
            diffs.append("   %s: sent %r\n   %s  expected %r" % (key, a, " " * len(key), e))
    raise AssertionError("%s:\n   sent     %r\n   expected %r\n%s"
                         % (what, dict(actual), expected, "\n".join(diffs)))


def cmd(name, coll, db=DB, **fields):
    """An expected command document, name first, then $db."""
    d = {name: coll, "$db": db}
    d.update(fields)
    return d


SCHEMA = [
    cmd("createIndexes", "messages", writeConcern=WC, indexes=[
        {"key": {"username": 1}, "name": "username_1"},
        {"key": {"idem": 1}, "name": "idem_1", "unique": True,
         "partialFilterExpression": {"idem": {"$exists": True}}},
        {"key": {"username": 1, "claim": 1}, "name": "username_1_claim_1",
         "partialFilterExpression": {"claim": {"$exists": True}}},
        {"key": {"state": 1, "expires_at": 1, "_id": 1}, "name": "state_1_expires_at_1__id_1"}]),
    cmd("createIndexes", "users", writeConcern=WC,
        indexes=[{"key": {"username": 1}, "name": "username_1", "unique": True}]),
]


def insert_cmd(coll, doc, wc=None, db=DB, ordered=True):
    return cmd("insert", coll, db=db, ordered=ordered, writeConcern=wc or WC, documents=[doc])


def put_cmd(doc, wc=None):
    """A single message put: a batch of one, so an unordered insert."""
    return insert_cmd("messages", doc, wc=wc, ordered=False)


def message_doc(mid, user, frm, text, created, expires, idem=None, **stored):
    """A message document as an insert sends it (state 0, idem only when
    given); stored adds the fields a later change sets (closed_at, ...)."""
    doc = {"_id": Int64(mid), "username": user, "from": frm, "text": text,
           "created_at": date(created), "expires_at": date(expires), "state": 0}
    if idem:
        doc["idem"] = idem
    doc.update(stored)
    return doc


def find_reply(coll, docs):
    return {"cursor": {"id": Int64(0), "ns": "%s.%s" % (DB, coll), "firstBatch": docs}}


# ---- the scripted server ------------------------------------------------------

class Server:
    """A MockupDB that answers the handshake, records every other command
    in arrival order and answers it with the handler set for its name
    (default: a plain success)."""

    def __init__(self):
        self.db = MockupDB(auto_ismaster=HELLO, request_timeout=5)
        self.lock = threading.Lock()
        self.commands = []
        self.handshakes = []
        self.handlers = {}
        self.db.autoresponds(self._handle)
        self.port = self.db.run()

    def url(self, path="/" + DB, query=SHORT):
        return "mongodb://127.0.0.1:%d%s%s" % (self.port, path, "?" + query if query else "")

    def on(self, name, handler):
        self.handlers[name] = handler

    def _handle(self, request):
        name = request.command_name or ""
        with self.lock:
            if name.lower() in HANDSHAKE:
                self.handshakes.append(request.doc)
                return None  # falls through to auto_ismaster
            self.commands.append(request.doc)
        handler = self.handlers.get(name)
        if handler is not None:
            return handler(request)
        return request.replies(DEFAULT_REPLIES.get(name, {}))

    def sent(self):
        with self.lock:
            return list(self.commands)

    def stop(self):
        self.db.stop()

    def stop_later(self):
        """MockupDB.stop() waits about 1 s for its accept loop: do that in
        the background; main() joins every stopper before exiting."""
        t = threading.Thread(target=self.db.stop)
        t.start()
        STOPPERS.append(t)


STOPPERS = []


DEFAULT_REPLIES = {
    "insert": {"n": 1},
    "update": {"n": 1, "nModified": 1},
    "find": {"cursor": {"id": Int64(0), "ns": DB + ".x", "firstBatch": []}},
}


def silent(_request):
    """Swallow the request: the client waits for an answer that never comes."""
    return True


def write_error(code, errmsg):
    return lambda r: r.replies({"n": 0, "writeErrors": [
        {"index": 0, "code": code, "errmsg": errmsg}]})


def run(url, *args):
    """Runs cold_cli once; returns (result dict, wall seconds, stderr)."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([CLI, url] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError("cold_cli %s hung for %d s" % (args[0], RUN_TIMEOUT))
    wall = time.monotonic() - t0
    out = p.stdout.decode("utf-8", "replace")
    err = p.stderr.decode("utf-8", "replace")
    for mark in SANITIZER_MARKS:
        if mark in err:
            raise AssertionError("sanitizer report from cold_cli:\n" + err)
    result = None
    for line in out.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "op" in obj and "status" in obj:
            result = obj
    if result is None:
        raise AssertionError("cold_cli printed no result (exit %d)\nstdout: %s\nstderr: %s"
                             % (p.returncode, out, err))
    expected_exit = 0 if result["status"] == "ok" else 1
    if p.returncode != expected_exit:
        raise AssertionError("cold_cli exit %d for status %s" % (p.returncode, result["status"]))
    return result, wall, err


def expect_status(result, status):
    if result["status"] != status:
        raise AssertionError("status %r, expected %r: %r" % (result["status"], status, result))


def expect_commands(srv, op_commands):
    """Exactly the schema commands of cold_open, then op_commands."""
    sent = srv.sent()
    expected = SCHEMA + op_commands
    if len(sent) != len(expected):
        raise AssertionError("sent %d commands, expected %d:\n   %s"
                             % (len(sent), len(expected),
                                "\n   ".join(repr(dict(c)) for c in sent)))
    for i, (a, e) in enumerate(zip(sent, expected)):
        check_command(a, e, "command %d (%s)" % (i, list(e)[0]))


TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def with_server(fn):
    """Gives the test a fresh scripted server and always stops it."""
    def wrapper():
        srv = Server()
        try:
            fn(srv)
        finally:
            srv.stop_later()
    wrapper.__name__ = fn.__name__
    return wrapper


# ---- schema -------------------------------------------------------------------

@test
@with_server
def test_open_creates_indexes(srv):
    result, _, _ = run(srv.url(), "open")
    expect_status(result, "ok")
    assert result.get("driver") == "mongodb", result
    expect_commands(srv, [])
    hs = srv.handshakes[0]
    assert hs["client"]["application"]["name"] == "snaptext", hs


@test
@with_server
def test_open_index_conflict_is_an_error(srv):
    srv.on("createIndexes", lambda r: r.command_err(
        code=85, errmsg="Index already exists with a different name or options"))
    result, _, _ = run(srv.url(), "open")
    expect_status(result, "error")


@test
@with_server
def test_open_default_database(srv):
    result, _, _ = run(srv.url(path="/"), "ping")
    expect_status(result, "ok")
    for c in srv.sent()[:2]:
        assert c["$db"] == "snaptext", c


# ---- messages -----------------------------------------------------------------

@test
@with_server
def test_put_document_and_write_concern(srv):
    text = 'hello "quoted" \u2713 <script>\u00e9'
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", text, 60000, 1700000000000)
    expect_status(result, "ok")
    expect_commands(srv, [put_cmd(message_doc(
        7, "alice", "bob", text, 1700000000000, 1700000060000))])


@test
@with_server
def test_put_open_mode_from_is_null_and_id_is_int64(srv):
    mid = 2 ** 40 + 3
    result, _, _ = run(srv.url(), "put", mid, "j\u00fcrgen", "", "x", 1000, 5000)
    expect_status(result, "ok")
    expect_commands(srv, [put_cmd(message_doc(
        mid, "j\u00fcrgen", None, "x", 5000, 6000))])


@test
@with_server
def test_put_with_idem_key(srv):
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", "hi", 1000, 5000, "bob/key-1")
    expect_status(result, "ok")
    expect_commands(srv, [put_cmd(message_doc(
        7, "alice", "bob", "hi", 5000, 6000, idem="bob/key-1"))])


@test
@with_server
def test_put_duplicate_key_is_conflict(srv):
    srv.on("insert", write_error(
        11000, "E11000 duplicate key error collection: snaptext_test.messages "
               "index: _id_ dup key: { _id: 7 }"))
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", "hi", 60000)
    expect_status(result, "conflict")


@test
@with_server
def test_put_other_write_error_is_unavailable(srv):
    srv.on("insert", write_error(121, "Document failed validation"))
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", "hi", 60000)
    expect_status(result, "unavailable")


@test
@with_server
def test_put_write_concern_error_is_unavailable(srv):
    srv.on("insert", lambda r: r.replies({"n": 1, "writeConcernError": {
        "code": 64, "errmsg": "waiting for replication timed out"}}))
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", "hi", 60000)
    expect_status(result, "unavailable")


@test
@with_server
def test_put_command_error_is_unavailable(srv):
    srv.on("insert", lambda r: r.command_err(code=10107, errmsg="not primary"))
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", "hi", 60000)
    expect_status(result, "unavailable")


@test
@with_server
def test_put_hangup_is_unavailable(srv):
    srv.on("insert", lambda r: r.hangup())
    result, _, _ = run(srv.url(), "put", 7, "alice", "bob", "hi", 60000)
    expect_status(result, "unavailable")


@test
@with_server
def test_put_url_write_concern_wins(srv):
    result, _, _ = run(srv.url(query=SHORT + "&w=1&journal=false"),
                       "put", 8, "alice", "bob", "hi", 1000, 2000)
    expect_status(result, "ok")
    wc = {"w": 1, "j": False}
    schema = [dict(c, writeConcern=wc) for c in SCHEMA]
    sent = srv.sent()
    assert len(sent) == 3, sent
    for a, e in zip(sent, schema + [put_cmd(message_doc(
            8, "alice", "bob", "hi", 2000, 3000), wc=wc)]):
        check_command(a, e, list(e)[0])


# put_many: one unordered insert for the whole batch; one outcome per message.

T0 = 1700000000000
BATCH = [(7, "alice", "bob", "hi", "bob/k1"), (2 ** 40 + 3, "carol", "", "open mode", ""),
         (9, "j\u00fcrgen", "dave", 'h\u00e9llo "q" \u2713', "dave/k\u00e9")]


def put_many(srv, batch=BATCH, created=T0, ttl=60000):
    args = ["put_many", created, ttl]
    for mid, user, frm, text, idem in batch:
        args += [mid, user, frm, text, idem]
    result, _, _ = run(srv.url(), *args)
    return result


def expect_rcs(result, rcs):
    if result.get("rcs") != rcs:
        raise AssertionError("rcs %r, expected %r: %r" % (result.get("rcs"), rcs, result))


def put_many_cmd(batch=BATCH, created=T0, ttl=60000):
    return cmd("insert", "messages", ordered=False, writeConcern=WC, documents=[
        message_doc(mid, user, frm or None, text, created, created + ttl, idem=idem)
        for mid, user, frm, text, idem in batch])


def write_errors(*errors, n=None, wce=None):
    """A reply to an insert of len(BATCH) documents: writeErrors given as
    (index, code) pairs, and an optional writeConcernError."""
    reply = {"n": len(BATCH) - len(errors) if n is None else n,
             "writeErrors": [{"index": i, "code": code, "errmsg": "scripted error %d" % code}
                             for i, code in errors]}
    if wce is not None:
        reply["writeConcernError"] = {"code": wce, "errmsg": "scripted write concern error"}
    return lambda r: r.replies(reply)


@test
@with_server
def test_put_many_is_one_unordered_insert(srv):
    result = put_many(srv)
    expect_status(result, "ok")
    expect_rcs(result, ["ok", "ok", "ok"])
    expect_commands(srv, [put_many_cmd()])


@test
@with_server
def test_put_many_duplicate_key_marks_that_message(srv):
    srv.on("insert", write_errors((1, 11000)))
    result = put_many(srv)
    expect_status(result, "conflict")
    expect_rcs(result, ["ok", "conflict", "ok"])
    expect_commands(srv, [put_many_cmd()])


def dup_error(index, field, value, errmsg=None, key_fields=True):
    """A duplicate-key write error as a 4.4+ server sends it (keyPattern,
    keyValue), or without them as older servers do (key_fields=False)."""
    e = {"index": index, "code": 11000, "errmsg": errmsg or (
        "E11000 duplicate key error collection: %s.messages index: %s dup key: { %s: %r }"
        % (DB, "_id_" if field == "_id" else field + "_1", field, value))}
    if key_fields:
        e["keyPattern"] = {field: 1}
        e["keyValue"] = {field: value}
    return e


@test
@with_server
def test_put_many_duplicate_idem_is_exists_and_id_is_conflict(srv):
    srv.on("insert", lambda r: r.replies({"n": 1, "writeErrors": [
        dup_error(0, "idem", "bob/k1"), dup_error(2, "_id", Int64(9))]}))
    result = put_many(srv)
    expect_status(result, "exists")   # the first of the two kinds of conflict
    expect_rcs(result, ["exists", "ok", "conflict"])


@test
@with_server
def test_put_many_duplicate_idem_named_by_errmsg_only(srv):
    # An older server: no keyPattern / keyValue, the index name in errmsg.
    srv.on("insert", lambda r: r.replies({"n": 1, "writeErrors": [
        dup_error(0, "_id", Int64(7), key_fields=False),
        dup_error(2, "idem", "dave/k", key_fields=False)]}))
    result = put_many(srv)
    expect_status(result, "conflict")
    expect_rcs(result, ["conflict", "ok", "exists"])


@test
@with_server
def test_put_many_other_write_error_is_unavailable_for_that_message(srv):
    srv.on("insert", write_errors((0, 11000), (2, 121)))
    result = put_many(srv)
    expect_status(result, "unavailable")
    expect_rcs(result, ["conflict", "ok", "unavailable"])


@test
@with_server
def test_put_many_write_concern_error_fails_the_unmarked(srv):
    srv.on("insert", write_errors((1, 11000), wce=64))
    result = put_many(srv)
    expect_status(result, "unavailable")
    expect_rcs(result, ["unavailable", "conflict", "unavailable"])


@test
@with_server
def test_put_many_unconfirmed_inserts_are_unavailable(srv):
    srv.on("insert", write_errors((1, 11000), n=0))
    result = put_many(srv)
    expect_status(result, "unavailable")
    expect_rcs(result, ["unavailable", "conflict", "unavailable"])


@test
@with_server
def test_put_many_command_error_fails_all(srv):
    srv.on("insert", lambda r: r.command_err(code=10107, errmsg="not primary"))
    result = put_many(srv)
    expect_status(result, "unavailable")
    expect_rcs(result, ["unavailable", "unavailable", "unavailable"])


@test
@with_server
def test_put_many_hangup_fails_all(srv):
    srv.on("insert", lambda r: r.hangup())
    result = put_many(srv)
    expect_status(result, "unavailable")
    expect_rcs(result, ["unavailable", "unavailable", "unavailable"])


@test
@with_server
def test_get_filter_by_id(srv):
    result, _, _ = run(srv.url(), "get", 7)
    expect_status(result, "not_found")
    expect_commands(srv, [cmd("find", "messages", filter={"_id": Int64(7)}, limit=Int64(1))])


@test
@with_server
def test_get_reads_every_field(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [message_doc(
        2 ** 33, "alice", None, "h\u00e9llo", 1700000000000, 1700000060000)])))
    result, _, _ = run(srv.url(), "get", 2 ** 33)
    expect_status(result, "ok")
    m = result["message"]
    assert m == {"id": 2 ** 33, "username": "alice", "from": None, "text": "h\u00e9llo",
                 "text_len": 6, "created_ms": 1700000000000,
                 "expires_ms": 1700000060000, "state": "open", "closed_ms": 0,
                 "idem": ""}, m


@test
@with_server
def test_get_reads_state_closed_at_and_idem(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [message_doc(
        9, "alice", "bob", "t", 1000, 60000, idem="bob/k", state=1,
        closed_at=date(1500), claim="tok", claim_op=ObjectId())])))
    result, _, _ = run(srv.url(), "get", 9)
    expect_status(result, "ok")
    m = result["message"]
    assert (m["state"], m["closed_ms"], m["idem"], m["expires_ms"]) == \
        ("read", 1500, "bob/k", 60000), m


@test
@with_server
def test_get_from_string(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [message_doc(
        9, "alice", "bob", "t", 1000, 2000)])))
    result, _, _ = run(srv.url(), "get", 9)
    expect_status(result, "ok")
    assert result["message"]["from"] == "bob", result


@test
@with_server
def test_get_malformed_document_is_error(srv):
    for field, bad in (("expires_at", "tomorrow"), ("state", 7), ("state", "open"),
                       ("closed_at", 5), ("idem", 5)):
        doc = message_doc(9, "alice", None, "t", 1000, 2000)
        doc[field] = bad
        srv.on("find", lambda r, d=doc: r.replies(find_reply("messages", [d])))
        result, _, _ = run(srv.url(), "get", 9)
        expect_status(result, "error")
        assert field in result["reason"], result
    # An old document, before the migration of docs/MONGODB.md.
    doc = message_doc(9, "alice", None, "t", 1000, 2000)
    del doc["state"]
    doc["expiration_date"] = doc.pop("expires_at")
    srv.on("find", lambda r: r.replies(find_reply("messages", [doc])))
    result, _, _ = run(srv.url(), "get", 9)
    expect_status(result, "error")


@test
@with_server
def test_get_server_error_is_unavailable(srv):
    srv.on("find", lambda r: r.command_err(code=13, errmsg="not authorized"))
    result, _, _ = run(srv.url(), "get", 7)
    expect_status(result, "unavailable")


# claim: one unordered update, one statement per claim, then one find per
# claim by the claim_op that statement set.

NOW = 1700000005000


def claim_statement(ids, user, token, now=NOW, op=None):
    """The update statement of one claim; op is the ObjectId it was sent with.
    A claim without a token (None) sets no claim field."""
    claim = {"claim": token} if token is not None else {}
    return {"q": {"_id": {"$in": [Int64(i) for i in ids]}, "username": user, "state": 0,
                  "expires_at": {"$gt": date(now)}},
            "u": {"$set": {"state": 1, "closed_at": date(now), **claim, "claim_op": op}},
            "upsert": False, "multi": True}   # a bulk statement names upsert


def sent_ops(srv, n):
    """The claim_op ObjectIds of the n statements of the claim update."""
    upd = [c for c in srv.sent() if list(c)[0] == "update"]
    assert upd, srv.sent()
    ops = [u["u"]["$set"]["claim_op"] for u in upd[0]["updates"]]
    assert len(ops) == n and all(isinstance(o, ObjectId) for o in ops), ops
    assert len(set(ops)) == n, "claim_op repeated: %r" % ops
    return ops


def outcome_find(ids, op):
    return cmd("find", "messages", filter={"_id": {"$in": [Int64(i) for i in ids]},
                                           "claim_op": op},
               sort={"_id": 1}, projection={"_id": 1})


def won_by(srv, table):
    """A find handler answering each claim's outcome find with the ids that
    table[token] lists, by looking up which statement set that claim_op."""
    def handler(r):
        upd = [c for c in srv.sent() if list(c)[0] == "update"][0]
        op = r.doc["filter"]["claim_op"]
        token = [u["u"]["$set"]["claim"] for u in upd["updates"]
                 if u["u"]["$set"]["claim_op"] == op][0]
        return r.replies(find_reply("messages", [{"_id": Int64(i)} for i in table[token]]))
    return handler


@test
@with_server
def test_claim_update_then_find_by_claim_op(srv):
    srv.on("update", lambda r: r.replies({"n": 3, "nModified": 3}))
    srv.on("find", won_by(srv, {"t-1": [3, 7], "t-2": [2 ** 40]}))
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "t-1", "7,3,5", "bob", "t-2",
                       str(2 ** 40))
    expect_status(result, "ok")
    assert result["claims"] == [{"status": "ok", "claimed": [3, 7]},
                                {"status": "ok", "claimed": [2 ** 40]}], result
    ops = sent_ops(srv, 2)
    expect_commands(srv, [
        cmd("update", "messages", ordered=False, writeConcern=WC, updates=[
            claim_statement([7, 3, 5], "alice", "t-1", op=ops[0]),
            claim_statement([2 ** 40], "bob", "t-2", op=ops[1])]),
        outcome_find([7, 3, 5], ops[0]),
        outcome_find([2 ** 40], ops[1])])


@test
@with_server
def test_claim_without_token_sets_no_claim_field(srv):
    # A read without an Idempotency-Key: its documents stay out of
    # username_1_claim_1, and what it won is still read back by claim_op.
    srv.on("update", lambda r: r.replies({"n": 2, "nModified": 2}))
    srv.on("find", lambda r: r.replies(find_reply("messages", [{"_id": Int64(4)}])))
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "-", "4,6")
    expect_status(result, "ok")
    assert result["claims"] == [{"status": "ok", "claimed": [4]}], result
    ops = sent_ops(srv, 1)
    expect_commands(srv, [
        cmd("update", "messages", ordered=False, writeConcern=WC, updates=[
            claim_statement([4, 6], "alice", None, op=ops[0])]),
        outcome_find([4, 6], ops[0])])


@test
@with_server
def test_claim_of_no_ids_sends_nothing(srv):
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "t-1", "")
    expect_status(result, "ok")
    assert result["claims"] == [{"status": "ok", "claimed": []}], result
    expect_commands(srv, [])


@test
@with_server
def test_claim_write_error_fails_only_its_claim(srv):
    srv.on("update", lambda r: r.replies({"n": 1, "nModified": 1, "writeErrors": [
        {"index": 0, "code": 121, "errmsg": "Document failed validation"}]}))
    srv.on("find", won_by(srv, {"t-2": [9]}))
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "t-1", "7", "bob", "t-2", "9")
    expect_status(result, "unavailable")
    assert result["claims"] == [{"status": "unavailable", "claimed": []},
                                {"status": "ok", "claimed": [9]}], result
    ops = sent_ops(srv, 2)
    sent = srv.sent()
    assert len(sent) == len(SCHEMA) + 2, sent   # the update, then claim 1's find only
    check_command(sent[-1], outcome_find([9], ops[1]), "find")


@test
@with_server
def test_claim_write_concern_error_fails_every_claim(srv):
    # Applied perhaps, but not majority-confirmed: nothing is reported won,
    # and no find is sent.
    srv.on("update", lambda r: r.replies({"n": 2, "nModified": 2, "writeConcernError": {
        "code": 64, "errmsg": "waiting for replication timed out"}}))
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "t-1", "7", "bob", "t-2", "9")
    expect_status(result, "unavailable")
    assert result["claims"] == [{"status": "unavailable", "claimed": []}] * 2, result
    assert len(srv.sent()) == len(SCHEMA) + 1, srv.sent()


@test
@with_server
def test_claim_hangup_fails_every_claim(srv):
    srv.on("update", lambda r: r.hangup())
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "t-1", "7", "bob", "t-2", "9")
    expect_status(result, "unavailable")
    assert result["claims"] == [{"status": "unavailable", "claimed": []}] * 2, result


@test
@with_server
def test_claim_find_failure_fails_that_claim(srv):
    srv.on("find", lambda r: r.command_err(code=13, errmsg="not authorized"))
    result, _, _ = run(srv.url(), "claim", NOW, "alice", "t-1", "7")
    expect_status(result, "unavailable")
    assert result["claims"] == [{"status": "unavailable", "claimed": []}], result


@test
@with_server
def test_claimed_find(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [
        message_doc(3, "alice", "bob", "one", 1000, 60000, state=1, closed_at=date(NOW),
                    claim="key-A", claim_op=ObjectId()),
        message_doc(8, "alice", None, "two", 1000, 60000, state=1, closed_at=date(NOW),
                    claim="key-A", claim_op=ObjectId())])))
    result, _, _ = run(srv.url(), "claimed", "alice", "key-A", NOW - 1000)
    expect_status(result, "ok")
    assert [(m["id"], m["text"], m["state"], m["closed_ms"]) for m in result["messages"]] == \
        [(3, "one", "read", NOW), (8, "two", "read", NOW)], result
    expect_commands(srv, [cmd("find", "messages", filter={
        "username": "alice", "claim": "key-A", "state": 1,
        "closed_at": {"$gte": date(NOW - 1000)}}, sort={"_id": 1})])


def close_cmd(ids, state, at):
    return cmd("update", "messages", ordered=True, writeConcern=WC, updates=[{
        "q": {"_id": {"$in": [Int64(i) for i in ids]}, "state": 0,
              "expires_at": {"$gt": date(at)}},
        "u": {"$set": {"state": state, "closed_at": date(at)}},
        "multi": True}])


@test
@with_server
def test_close_update_counts_modified(srv):
    srv.on("update", lambda r: r.replies({"n": 2, "nModified": 2}))
    result, _, _ = run(srv.url(), "close", "3,1,2", "unsent", 1700000000123)
    expect_status(result, "ok")
    assert result["n_closed"] == 2, result
    expect_commands(srv, [close_cmd([3, 1, 2], 2, 1700000000123)])


@test
@with_server
def test_close_refused_in_batches_of_1000(srv):
    ids = list(range(1, 2502))
    result, _, _ = run(srv.url(), "close", ",".join(map(str, ids)), "refused", 5000)
    expect_status(result, "ok")
    assert result["n_closed"] == 3, result    # nModified 1 per command (default reply)
    expect_commands(srv, [close_cmd(ids[0:1000], 3, 5000), close_cmd(ids[1000:2000], 3, 5000),
                          close_cmd(ids[2000:], 3, 5000)])


@test
@with_server
def test_close_nothing_sends_nothing(srv):
    result, _, _ = run(srv.url(), "close", "", "unsent", 5000)
    expect_status(result, "ok")
    expect_commands(srv, [])


@test
@with_server
def test_close_command_error_is_unavailable(srv):
    srv.on("update", lambda r: r.command_err(code=10107, errmsg="not primary"))
    result, _, _ = run(srv.url(), "close", "4", "refused", 5000)
    expect_status(result, "unavailable")


@test
@with_server
def test_find_idem(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [message_doc(
        12, "alice", "bob", "hi", 1000, 60000, idem="bob/k-1")])))
    result, _, _ = run(srv.url(), "find_idem", "bob/k-1")
    expect_status(result, "ok")
    assert (result["message"]["id"], result["message"]["idem"]) == (12, "bob/k-1"), result
    expect_commands(srv, [cmd("find", "messages", filter={"idem": "bob/k-1"},
                              limit=Int64(1))])


@test
@with_server
def test_find_idem_none_is_not_found(srv):
    result, _, _ = run(srv.url(), "find_idem", '{"$gt":""}')
    expect_status(result, "not_found")
    expect_commands(srv, [cmd("find", "messages", filter={"idem": '{"$gt":""}'},
                              limit=Int64(1))])


@test
@with_server
def test_release_idem_unset(srv):
    srv.on("update", lambda r: r.replies({"n": 0, "nModified": 0}))  # unknown id: fine
    result, _, _ = run(srv.url(), "release_idem", 2 ** 40)
    expect_status(result, "ok")
    expect_commands(srv, [cmd("update", "messages", ordered=True, writeConcern=WC, updates=[{
        "q": {"_id": Int64(2 ** 40)}, "u": {"$unset": {"idem": ""}}}])])


def scan_filter(since, now, after=None):
    f = {"state": 0, "expires_at": {"$gt": date(now)}, "created_at": {"$gte": date(since)}}
    if after is not None:
        f["$or"] = [{"expires_at": {"$gt": date(after[0])}},
                    {"expires_at": date(after[0]), "_id": {"$gt": Int64(after[1])}}]
    return f


@test
@with_server
def test_scan_open_first_page(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [
        message_doc(5, "alice", None, "a", 1000, 9000),
        message_doc(4, "bob", "carol", "b", 1000, 9500)])))
    result, _, _ = run(srv.url(), "scan_open", 1000, 2000, 0, 0, 2)
    expect_status(result, "ok")
    assert [(m["id"], m["expires_ms"]) for m in result["messages"]] == [(5, 9000), (4, 9500)]
    expect_commands(srv, [cmd("find", "messages", filter=scan_filter(1000, 2000),
                              sort={"expires_at": 1, "_id": 1}, limit=Int64(2))])


@test
@with_server
def test_scan_open_after_cursor(srv):
    result, _, _ = run(srv.url(), "scan_open", 1000, 2000, 9500, 4, 500)
    expect_status(result, "ok")
    assert result["messages"] == [], result
    expect_commands(srv, [cmd("find", "messages", filter=scan_filter(1000, 2000, (9500, 4)),
                              sort={"expires_at": 1, "_id": 1}, limit=Int64(500))])


@test
@with_server
def test_scan_open_malformed_document_is_error(srv):
    doc = message_doc(5, "alice", None, "a", 1000, 9000)
    del doc["state"]
    srv.on("find", lambda r: r.replies(find_reply("messages", [doc])))
    result, _, _ = run(srv.url(), "scan_open", 1000, 2000, 0, 0, 2)
    expect_status(result, "error")


@test
@with_server
def test_max_id_sort(srv):
    srv.on("find", lambda r: r.replies(find_reply("messages", [{"_id": Int64(2 ** 40)}])))
    result, _, _ = run(srv.url(), "maxid")
    expect_status(result, "ok")
    assert result["max_id"] == 2 ** 40, result
    expect_commands(srv, [cmd("find", "messages", filter={}, sort={"_id": -1},
                              limit=Int64(1), projection={"_id": 1})])


@test
@with_server
def test_max_id_empty_is_zero(srv):
    result, _, _ = run(srv.url(), "maxid")
    expect_status(result, "ok")
    assert result["max_id"] == 0, result


# ---- users --------------------------------------------------------------------

HASH = "$6$salt$abcdefghijklmnopqrstuvwxyz"


@test
@with_server
def test_user_put_document(srv):
    result, _, _ = run(srv.url(), "user_put", "alice", HASH, "user", 1700000000000)
    expect_status(result, "ok")
    expect_commands(srv, [insert_cmd("users", {
        "_id": "alice", "username": "alice", "password_hash": HASH, "role": "user",
        "created_at": date(1700000000000)})])


@test
@with_server
def test_user_put_duplicate_is_conflict(srv):
    srv.on("insert", write_error(
        11000, "E11000 duplicate key error collection: snaptext_test.users "
               "index: _id_ dup key: { _id: \"alice\" }"))
    result, _, _ = run(srv.url(), "user_put", "alice", HASH, "user")
    expect_status(result, "conflict")


@test
@with_server
def test_user_get_filter_and_fields(srv):
    srv.on("find", lambda r: r.replies(find_reply("users", [{
        "_id": "alice", "username": "alice", "password_hash": HASH, "role": "admin",
        "created_at": date(1700000000000)}])))
    result, _, _ = run(srv.url(), "user_get", "alice")
    expect_status(result, "ok")
    assert result["user"] == {"username": "alice", "password_hash": HASH, "role": "admin",
                              "created_ms": 1700000000000}, result
    expect_commands(srv, [cmd("find", "users", filter={"username": "alice"}, limit=Int64(1))])


@test
@with_server
def test_user_get_operator_text_stays_a_string(srv):
    name = '{"$gt":""}'
    result, _, _ = run(srv.url(), "user_get", name)
    expect_status(result, "not_found")
    expect_commands(srv, [cmd("find", "users", filter={"username": name}, limit=Int64(1))])


@test
@with_server
def test_set_role_update(srv):
    result, _, _ = run(srv.url(), "set_role", "alice", "admin")
    expect_status(result, "ok")
    expect_commands(srv, [cmd("update", "users", ordered=True, writeConcern=WC, updates=[{
        "q": {"username": "alice"}, "u": {"$set": {"role": "admin"}}}])])


@test
@with_server
def test_set_role_unknown_user_is_not_found(srv):
    srv.on("update", lambda r: r.replies({"n": 0, "nModified": 0}))
    result, _, _ = run(srv.url(), "set_role", "nobody", "admin")
    expect_status(result, "not_found")


@test
@with_server
def test_ping(srv):
    result, _, _ = run(srv.url(), "ping")
    expect_status(result, "ok")
    expect_commands(srv, [cmd("ping", 1, db="admin")])


# ---- nobody answering: the driver's default timeouts ----------------------------

def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def expect_quick_unavailable(result, wall, limit):
    expect_status(result, "unavailable")
    if wall > limit:
        raise AssertionError("took %.2f s, expected under %.1f s" % (wall, limit))


@test
def test_no_server_on_port_is_unavailable_quickly():
    url = "mongodb://127.0.0.1:%d/%s" % (free_port(), DB)   # driver defaults only
    result, wall, _ = run(url, "put", 7, "alice", "bob", "hi", 60000)
    expect_quick_unavailable(result, wall, 2.5)


@test
def test_stopped_server_is_unavailable_quickly():
    srv = Server()
    url = srv.url(query="")
    srv.stop()
    result, wall, _ = run(url, "ping")
    expect_quick_unavailable(result, wall, 2.5)


@test
@with_server
def test_silent_server_is_unavailable_after_socket_timeout(srv):
    srv.on("insert", silent)
    result, wall, _ = run(srv.url(query=""), "put", 7, "alice", "bob", "hi", 60000)
    # socketTimeoutMS defaults to 2000: the answer comes at about 2 s.
    expect_quick_unavailable(result, wall, 3.0)
    if wall < 1.8:
        raise AssertionError("gave up after %.2f s, before the 2 s socket timeout" % wall)


@test
@with_server
def test_url_timeouts_win(srv):
    srv.on("find", silent)
    result, wall, _ = run(srv.url(query="socketTimeoutMS=300"), "get", 7)
    expect_quick_unavailable(result, wall, 1.5)


# ---- main ---------------------------------------------------------------------

def main():
    if not CLI or not os.access(CLI, os.X_OK):
        print("cold_cli not found: pass its path or set SNAP_COLD_CLI")
        print("0 passed, 1 failed")
        return 1
    passed = failed = 0
    for fn in TESTS:
        t0 = time.monotonic()
        try:
            fn()
        except Exception:  # an AssertionError or a broken script: both fail
            failed += 1
            print("not ok %s" % fn.__name__)
            traceback.print_exc(file=sys.stdout)
        else:
            passed += 1
            print("ok %s (%.2f s)" % (fn.__name__, time.monotonic() - t0))
        sys.stdout.flush()
    for t in STOPPERS:
        t.join(30)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
