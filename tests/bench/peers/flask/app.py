"""app.py: the classic snaptext API as a Flask developer would write it on
a first pass, a reference stack for tests/bench (docs/PERFORMANCE.md).

Flask under gunicorn (4 sync workers), redis-py and the standard sqlite3
module. POST /chat takes an id from Redis INCR, inserts the row into
SQLite and commits, then stores the hot copy (SET with EX) and pushes the
id onto the recipient's inbox list. GET /chats/<username> empties the
inbox in one MULTI, fetches the texts still alive, deletes them and marks
their rows expired.

Durability: SQLite in WAL mode with synchronous=NORMAL (a commit reaches
the disk at the next checkpoint), Redis as the harness starts it (no
persistence). PEER_DURABLE=1 asks for synchronous=FULL instead; the
harness then starts Redis with appendfsync always.

Settings: PEER_REDIS (127.0.0.1:6379), PEER_DB (chats.db), PEER_DURABLE.
Run: gunicorn -w 4 -b 127.0.0.1:8000 app:app
"""

import datetime
import json
import os
import sqlite3

import redis
from flask import Flask, Response, g, request

app = Flask(__name__)
host, _, port = os.environ.get("PEER_REDIS", "127.0.0.1:6379").partition(":")
r = redis.Redis(host=host, port=int(port))
SYNC = "FULL" if os.environ.get("PEER_DURABLE") == "1" else "NORMAL"


DB_PATH = os.environ.get("PEER_DB", "chats.db")


def init_db():
    """WAL mode and the table, once at start (gunicorn --preload runs this in
    its master, before the workers fork): two first connections switching a
    new file to WAL at once can fail with "database is locked"."""
    c = sqlite3.connect(DB_PATH, timeout=5)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE IF NOT EXISTS chats (id INTEGER PRIMARY KEY, "
              "username TEXT NOT NULL, text TEXT NOT NULL, "
              "expiration_date TEXT NOT NULL)")
    c.commit()
    c.close()


init_db()


def db():
    if "db" not in g:
        g.db = sqlite3.connect(DB_PATH, timeout=5)
        g.db.execute("PRAGMA synchronous=" + SYNC)
    return g.db


@app.teardown_appcontext
def close_db(exc):
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def as_json(body, status):
    return Response(json.dumps(body), status=status, mimetype="application/json")


def stamp(t):
    return t.strftime("%Y-%m-%d %H:%M:%S")


@app.post("/chat")
def send():
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not body.get("username") or not body.get("text"):
        return as_json({"error": "invalid_json"}, 400)
    timeout = body.get("timeout") or 60
    if not isinstance(timeout, int) or timeout < 1:
        return as_json({"error": "invalid_field"}, 400)
    chat_id = r.incr("chat:next_id")
    expires = datetime.datetime.utcnow() + datetime.timedelta(seconds=timeout)
    conn = db()
    conn.execute("INSERT INTO chats (id, username, text, expiration_date) VALUES (?, ?, ?, ?)",
                 (chat_id, body["username"], body["text"], stamp(expires)))
    conn.commit()
    pipe = r.pipeline()
    pipe.set("chat:%d" % chat_id, body["text"], ex=timeout)
    pipe.rpush("inbox:" + body["username"], chat_id)
    pipe.execute()
    resp = as_json({"id": chat_id}, 201)
    resp.headers["Location"] = "/chat/%d" % chat_id
    return resp


@app.get("/chats/<username>")
def read(username):
    pipe = r.pipeline()
    pipe.lrange("inbox:" + username, 0, -1)
    pipe.delete("inbox:" + username)
    ids = [int(i) for i in pipe.execute()[0]]
    out = []
    if ids:
        keys = ["chat:%d" % i for i in ids]
        texts = r.mget(keys)
        r.delete(*keys)
        out = [{"id": i, "text": t.decode()} for i, t in zip(ids, texts) if t is not None]
        if out:
            now = stamp(datetime.datetime.utcnow())
            conn = db()
            conn.executemany("UPDATE chats SET expiration_date = ? WHERE id = ?",
                             [(now, m["id"]) for m in out])
            conn.commit()
    return as_json(out, 200)


@app.get("/readyz")
@app.get("/healthz")
def ready():
    return as_json({"status": "ok"}, 200)
