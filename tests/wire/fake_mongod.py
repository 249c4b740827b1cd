#!/usr/bin/python3
"""fake_mongod.py: a very small in-memory MongoDB, made with python3-mockupdb,
that can run the driver-neutral cold-store contract suite through the real
libmongoc when there is no mongod on the machine.

It implements only the commands that shared/src/cold_mongo.c sends, and only
the parts of them that the driver uses:
  - createIndexes and ping: accepted;
  - insert: stores the documents; a duplicate _id is a write error with code
    11000 in any collection, and so is a duplicate username in "users"
    (standing in for the unique index username_1); ordered (the default)
    stops at the first such error, ordered: false goes on with the next
    document and reports one write error per refused document;
  - find: equality, $in and $gt filters, one sort key, limit, and an
    inclusion projection;
  - update: the same filters, $set only, multi or single; replies n and
    nModified.
Anything else is answered with a command error, so the driver cannot start
depending on a command that the fake does not model without noticing.
mockupdb runs one request at a time, so every command here is atomic.

This is NOT a substitute for a real server: semantics such as type ordering,
collations and index builds are not modelled. Run contract_mongo against a
real MongoDB for that (docs/MONGODB.md).

Usage: fake_mongod.py PROGRAM [ARGS...]
Runs PROGRAM with SNAPTEXT_TEST_STORE set to the fake's URL and
SNAPTEXT_TEST_STORE_FRESH=1, and exits with PROGRAM's status. If mockupdb
is missing it exits 77 (skipped), or 1 under CI=true.
"""
import os
import subprocess
import sys

try:
    from bson.int64 import Int64
    from mockupdb import MockupDB
except ImportError as exc:  # pragma: no cover - depends on the machine
    print("python3-mockupdb is not installed (%s)" % exc)
    print("0 passed, %d failed" % (1 if os.environ.get("CI") == "true" else 0))
    sys.exit(1 if os.environ.get("CI") == "true" else 77)

HELLO = {"ismaster": True, "isWritablePrimary": True, "minWireVersion": 0,
         "maxWireVersion": 13, "maxBsonObjectSize": 16 * 1024 * 1024,
         "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000}
UNIQUE = {"users": ("_id", "username")}    # every other collection: _id only
DB = "snaptext_contract"


class Unsupported(Exception):
    pass


class FakeMongod:
    def __init__(self):
        self.collections = {}   # name -> list of documents, in insert order

    def coll(self, name):
        return self.collections.setdefault(name, [])

    # ---- filters ----

    @staticmethod
    def matches(doc, flt):
        for key, cond in flt.items():
            if key.startswith("$"):
                raise Unsupported("top-level operator " + key)
            value = doc.get(key)
            if isinstance(cond, dict):
                for op, arg in cond.items():
                    if op == "$in":
                        if value not in arg:
                            return False
                    elif op == "$gt":
                        if value is None or type(value) is not type(arg) or not value > arg:
                            return False
                    else:
                        raise Unsupported("operator " + op)
            elif key not in doc or not FakeMongod.same(value, cond):
                return False
        return True

    @staticmethod
    def same(a, b):
        """Equality as the server sees it: numbers across int widths, others
        only with the same type."""
        num = (int, Int64)
        if isinstance(a, bool) or isinstance(b, bool):
            return type(a) is type(b) and a == b
        if isinstance(a, num) and isinstance(b, num):
            return int(a) == int(b)
        return type(a) is type(b) and a == b

    # ---- commands ----

    def insert(self, cmd):
        coll = self.coll(cmd["insert"])
        keys = UNIQUE.get(cmd["insert"], ("_id",))
        ordered = cmd.get("ordered", True)
        n = 0
        errors = []
        for i, doc in enumerate(cmd["documents"]):
            taken = [key for key in keys
                     if any(key in old and self.same(old[key], doc.get(key)) for old in coll)]
            if taken:
                errors.append({"index": i, "code": 11000,
                               "errmsg": "E11000 duplicate key error (fake) on %s" % taken[0]})
                if ordered:
                    break
                continue
            coll.append(dict(doc))
            n += 1
        reply = {"n": n}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def find(self, cmd):
        docs = [d for d in self.coll(cmd["find"]) if self.matches(d, cmd.get("filter", {}))]
        sort = cmd.get("sort") or {}
        if len(sort) > 1:
            raise Unsupported("compound sort")
        for key, direction in sort.items():
            docs.sort(key=lambda d: d[key], reverse=direction < 0)
        limit = int(cmd.get("limit", 0))
        if limit:
            docs = docs[:limit]
        proj = cmd.get("projection")
        if proj:
            if any(not v for v in proj.values()):
                raise Unsupported("exclusion projection")
            docs = [{k: v for k, v in d.items() if k in proj or k == "_id"} for d in docs]
        return {"cursor": {"id": Int64(0), "ns": "%s.%s" % (cmd["$db"], cmd["find"]),
                           "firstBatch": docs}}

    def update(self, cmd):
        matched = modified = 0
        for upd in cmd["updates"]:
            change = upd["u"]
            if list(change) != ["$set"]:
                raise Unsupported("update other than $set")
            for doc in self.coll(cmd["update"]):
                if not self.matches(doc, upd["q"]):
                    continue
                matched += 1
                before = dict(doc)
                doc.update(change["$set"])
                modified += before != doc
                if not upd.get("multi"):
                    break
        return {"n": matched, "nModified": modified}

    def handle(self, request):
        name = request.command_name or ""
        if name.lower() in ("ismaster", "hello"):
            return None  # auto_ismaster answers
        try:
            if name in ("createIndexes", "ping"):
                return request.ok()
            if name in ("insert", "find", "update"):
                return request.replies(getattr(self, name)(request.doc))
            raise Unsupported("command " + name)
        except Unsupported as exc:
            sys.stderr.write("fake_mongod: unsupported %s in %r\n" % (exc, request.doc))
            return request.command_err(code=59, errmsg="fake_mongod: unsupported " + str(exc))


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: fake_mongod.py PROGRAM [ARGS...]\n")
        return 2
    fake = FakeMongod()
    server = MockupDB(auto_ismaster=HELLO, request_timeout=5)
    server.autoresponds(fake.handle)
    port = server.run()
    env = dict(os.environ)
    env["SNAPTEXT_TEST_STORE"] = "mongodb://127.0.0.1:%d/%s" % (port, DB)
    env["SNAPTEXT_TEST_STORE_FRESH"] = "1"
    try:
        rc = subprocess.run(sys.argv[1:], env=env, timeout=240).returncode
    except subprocess.TimeoutExpired:
        print("fake_mongod: %s hung" % sys.argv[1])
        rc = 1
    finally:
        server.stop()
    return rc


if __name__ == "__main__":
    sys.exit(main())
