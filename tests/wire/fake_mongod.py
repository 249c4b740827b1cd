#!/usr/bin/python3
"""fake_mongod.py: a very small in-memory MongoDB, made with python3-mockupdb,
that can run the driver-neutral cold-store contract suite through the real
libmongoc when there is no mongod on the machine.

It implements only the commands that shared/src/cold_mongo.c sends, and only
the parts of them that the driver uses:
  - createIndexes: records each index; the unique ones are then enforced
    (one key each, with an optional partialFilterExpression {f: {$exists:
    true}}), as is _id in every collection; ping: accepted;
  - insert: stores the documents; a duplicate key is a write error with code
    11000, keyPattern, keyValue and an errmsg naming the index, as a 4.4+
    server sends it; ordered (the default) stops at the first such error,
    ordered: false goes on with the next document and reports one write
    error per refused document;
  - find: equality, $in, $gt, $gte and $exists filters, a top-level $or,
    sorts on one or more keys, limit, and an inclusion projection;
  - update: the same filters, $set and $unset, multi or single, one or more
    statements (ordered or not); replies n and nModified.
Anything else is answered with a command error, so the driver cannot start
depending on a command that the fake does not model without noticing.
Each command runs under one lock, so every command here is atomic, as a
single-document write is on a real server (and a multi update is per
document there: the claim relies only on that).

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
import threading

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
DB = "snaptext_contract"
MISSING = object()


class Unsupported(Exception):
    pass


def is_num(v):
    return isinstance(v, (int, Int64)) and not isinstance(v, bool)


def same(a, b):
    """Equality as the server sees it: numbers across int widths, others
    only with the same type."""
    if is_num(a) and is_num(b):
        return int(a) == int(b)
    return type(a) is type(b) and a == b


def comparable(a, b):
    return (is_num(a) and is_num(b)) or (a is not MISSING and type(a) is type(b))


class FakeMongod:
    def __init__(self):
        self.collections = {}   # name -> list of documents, in insert order
        # name -> [(index name, field, partial field or None)], _id_ always
        self.unique = {}
        self.lock = threading.Lock()

    def coll(self, name):
        self.unique.setdefault(name, [("_id_", "_id", None)])
        return self.collections.setdefault(name, [])

    # ---- filters ----

    @staticmethod
    def matches(doc, flt):
        for key, cond in flt.items():
            if key == "$or":
                if not any(FakeMongod.matches(doc, alt) for alt in cond):
                    return False
                continue
            if key.startswith("$"):
                raise Unsupported("top-level operator " + key)
            value = doc.get(key, MISSING)
            if isinstance(cond, dict):
                for op, arg in cond.items():
                    if op == "$in":
                        if not any(same(value, a) for a in arg):
                            return False
                    elif op in ("$gt", "$gte"):
                        if not comparable(value, arg):
                            return False
                        if not (value > arg if op == "$gt" else value >= arg):
                            return False
                    elif op == "$exists":
                        if (value is not MISSING) != bool(arg):
                            return False
                    else:
                        raise Unsupported("operator " + op)
            elif not same(value, cond):
                return False
        return True

    # ---- unique indexes ----

    def dup_key(self, name, doc, others, skip=None):
        """The first unique index that doc would break among others (but
        skip, the document doc replaces), as (index name, field), or None."""
        for index, field, partial in self.unique.get(name, []):
            if field not in doc or (partial is not None and partial not in doc):
                continue
            for old in others:
                if old is skip or field not in old:
                    continue
                if partial is not None and partial not in old:
                    continue
                if same(old[field], doc[field]):
                    return index, field
        return None

    @staticmethod
    def dup_error(i, cmd, index, field, value):
        return {"index": i, "code": 11000, "keyPattern": {field: 1}, "keyValue": {field: value},
                "errmsg": "E11000 duplicate key error collection: %s.%s index: %s dup key: "
                          "{ %s: %r } (fake)" % (cmd["$db"], cmd.get("insert") or
                                                 cmd.get("update"), index, field, value)}

    # ---- commands ----

    def create_indexes(self, cmd):
        self.coll(cmd["createIndexes"])
        unique = self.unique[cmd["createIndexes"]]
        for spec in cmd["indexes"]:
            keys = list(spec["key"])
            if not spec.get("unique"):
                continue
            if len(keys) != 1:
                raise Unsupported("compound unique index")
            partial = None
            pfe = spec.get("partialFilterExpression")
            if pfe:
                (partial, cond), = pfe.items()
                if cond != {"$exists": True}:
                    raise Unsupported("partial filter other than $exists: true")
            if not any(name == spec["name"] for name, _, _ in unique):
                unique.append((spec["name"], keys[0], partial))
        return {"ok": 1}

    def insert(self, cmd):
        coll = self.coll(cmd["insert"])
        ordered = cmd.get("ordered", True)
        n = 0
        errors = []
        for i, doc in enumerate(cmd["documents"]):
            dup = self.dup_key(cmd["insert"], doc, coll)
            if dup:
                errors.append(self.dup_error(i, cmd, dup[0], dup[1], doc[dup[1]]))
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
        sort = list((cmd.get("sort") or {}).items())
        for key, direction in reversed(sort):   # stable: the last key first
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
        coll = self.coll(cmd["update"])
        matched = modified = 0
        errors = []
        for i, upd in enumerate(cmd["updates"]):
            change = upd["u"]
            if not set(change) <= {"$set", "$unset"} or not change:
                raise Unsupported("update other than $set / $unset")
            for doc in coll:
                if not self.matches(doc, upd["q"]):
                    continue
                matched += 1
                after = dict(doc)
                after.update(change.get("$set", {}))
                for key in change.get("$unset", {}):
                    after.pop(key, None)
                dup = self.dup_key(cmd["update"], after, coll, skip=doc)
                if dup:
                    errors.append(self.dup_error(i, cmd, dup[0], dup[1], after[dup[1]]))
                    break
                modified += after != doc
                doc.clear()
                doc.update(after)
                if not upd.get("multi"):
                    break
            if errors and cmd.get("ordered", True):
                break
        reply = {"n": matched, "nModified": modified}
        if errors:
            reply["writeErrors"] = errors
        return reply

    def handle(self, request):
        name = request.command_name or ""
        if name.lower() in ("ismaster", "hello"):
            return None  # auto_ismaster answers
        try:
            with self.lock:
                if name == "ping":
                    return request.ok()
                if name == "createIndexes":
                    return request.replies(self.create_indexes(request.doc))
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
