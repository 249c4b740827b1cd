"""A cold store written by the previous release (SQLite schema version 1:
no message states) is upgraded in place at start to version 3, and serves on.

The version-1 file is written here with Python's sqlite3, as that release
laid it out. Its messages become `open` ones: the unread, unexpired one is
delivered exactly once (the full rebuild of the hot index at ingest's start
puts it into Redis, which has never seen it), the one that release had read
(its expiry moved to the read time) stays expired, and new sends get ids
above the old ones.
"""
import os
import shutil
import sqlite3
import sys
import tempfile
import time

import snaptest
from snaptest import test

V1 = """
CREATE TABLE messages (id INTEGER PRIMARY KEY, username TEXT NOT NULL, sender TEXT,
  text TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
CREATE INDEX messages_username ON messages (username);
CREATE TABLE users (username TEXT PRIMARY KEY NOT NULL, password_hash TEXT NOT NULL,
  role TEXT NOT NULL, created_ms INTEGER NOT NULL);
PRAGMA user_version = 1;
"""


def first_read(S, user):
    """What the first non-empty read of user's inbox gets, within 5 s: the
    start-up rebuild of the Redis index runs in the background."""
    got = []
    for _ in range(20):
        st, _, body = S.req("GET", "/chats/" + user)
        assert st == 200, body
        got += body
        if got:
            break
        time.sleep(0.25)
    return got


@test
def version_1_store_is_upgraded_and_keeps_its_messages():
    root = tempfile.mkdtemp(prefix="snap-upgrade-")
    path = os.path.join(root, "cold.db")
    now = int(time.time() * 1000)
    db = sqlite3.connect(path)
    db.executescript(V1)
    db.execute("INSERT INTO messages VALUES (41, 'olga', 'ivan', 'from the old days', ?, ?)",
               (now - 5000, now + 600000))
    db.execute("INSERT INTO messages VALUES (42, 'olga', NULL, 'read back then', ?, ?)",
               (now - 5000, now - 4000))
    db.commit()
    db.close()
    S = snaptest.Stack(env={"SNAPTEXT_AUTH": "open"}, store="sqlite://" + path, root=root)
    try:
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        db.close()
        # Version 3 drops the index on username alone (no statement used it).
        assert "messages_username" not in indexes and "messages_open" in indexes, indexes
        got = first_read(S, "olga")
        assert [(m["id"], m["text"]) for m in got] == [(41, "from the old days")], got
        assert S.req("GET", "/chats/olga")[2] == []
        st, _, m = S.req("GET", "/chat/42", token=S.admin_token())
        assert st == 200 and m["text"] == "read back then", m
        st, _, b = S.req("POST", "/chat", {"username": "olga", "text": "new"})
        assert st == 201 and b["id"] > 42, b
    finally:
        problems = S.stop()
        S.cleanup()
    assert not problems, problems


@test
def version_2_store_loses_the_username_index_and_keeps_its_messages():
    data = tempfile.mkdtemp(prefix="snap-upgrade-")
    path = os.path.join(data, "cold.db")
    env = {"SNAPTEXT_AUTH": "open"}
    S = snaptest.Stack(env=env, store="sqlite://" + path)
    try:
        st, _, b = S.req("POST", "/chat", {"username": "olga", "text": "kept across"})
        assert st == 201, b
    finally:
        problems = S.stop()
        S.cleanup()
    assert not problems, problems
    db = sqlite3.connect(path)  # as version 2 left it: the same, plus that index
    db.execute("CREATE INDEX messages_username ON messages (username)")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    S = snaptest.Stack(env=env, store="sqlite://" + path)  # a new, empty Redis
    try:
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
        assert db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'messages_username'"
                          ).fetchone()[0] == 0
        db.close()
        got = first_read(S, "olga")
        assert [m["text"] for m in got] == ["kept across"], got
    finally:
        problems = S.stop()
        S.cleanup()
        shutil.rmtree(data, ignore_errors=True)
    assert not problems, problems


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
