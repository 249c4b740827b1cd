"""A cold store written by the previous release (SQLite schema version 1:
no message states) is upgraded in place at start, and serves on.

The version-1 file is written here with Python's sqlite3, as that release
laid it out. Its messages become `open` ones: the unread, unexpired one is
delivered exactly once (the full rebuild of the hot index at ingest's start
puts it into Redis, which has never seen it), the one that release had read
(its expiry moved to the read time) stays expired, and new sends get ids
above the old ones.
"""
import os
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
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2
        got = []
        for _ in range(20):  # the start-up rebuild of the index runs in the background
            st, _, body = S.req("GET", "/chats/olga")
            assert st == 200, body
            got += body
            if got:
                break
            time.sleep(0.25)
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


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
