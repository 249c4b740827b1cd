"""The SQLite cold store failing under running services:

- locked: another process holds the lock longer than the request deadline
  (8 s; HAProxy's `timeout server` is 10 s), either the writers' side file
  `<db>-writer.lock` (fcntl.flock LOCK_EX, as a stopped or foreign process
  holding it would) or SQLite's own write lock (BEGIN EXCLUSIVE with Python's
  sqlite3 module). Reads of the file still work, so /readyz stays green and
  HAProxy keeps routing. No request outlives the deadline (each answers
  within 9 s, never 504 from HAProxy); a send gets 503 `unavailable` and is
  never delivered; a read (its claim is a write) gets 503 and keeps its
  messages, which the next read after the release returns, once, with
  expiration_date = that read's time. Under a steady load the same lock
  keeps the strict promises: every 201 delivered exactly once, nothing that
  was not answered 201 delivered (FAULT-SUMMARY line).
- replaced: the database file is renamed away and a directory takes its
  path (a volume unmounted, a file deleted). The driver sees that the file
  at the path is no longer its file: fast 503s (a read keeps its messages),
  /readyz says store down; when the file comes back the services serve
  again without a restart, and nothing refused comes back (an ingest
  restarted afterwards repairs the whole index from the file).
"""
import fcntl
import os
import sqlite3
import sys
import threading
import time

import faultlib as fl
import snaptest
from snaptest import test

LOCK_HELD_S = 12.0        # longer than the deadline
MAX_ANSWER_S = 9.0        # SNAP_DEADLINE_MS (8 s) plus a margin; below HAProxy's 10 s
EXPIRY_SLACK_S = 3.0


def db_path(S):
    url = S.env["SNAPTEXT_STORE"]
    assert url.startswith("sqlite://"), url
    return url[len("sqlite://"):]


class WriterFlock:
    """Holds <db>-writer.lock (the services' turn-taking side file) with
    flock(LOCK_EX) from this process until release()."""

    def __init__(self, path):
        self.f = open(path + "-writer.lock", "a+b")
        fcntl.flock(self.f.fileno(), fcntl.LOCK_EX)
        self.t = time.time()

    def release(self):
        fcntl.flock(self.f.fileno(), fcntl.LOCK_UN)
        self.f.close()
        return time.time()


class WriteLock:
    """Holds SQLite's write lock on path from this process until release()."""

    def __init__(self, path):
        self.conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")
        self.t = time.time()

    def release(self):
        self.conn.execute("ROLLBACK")
        self.conn.close()
        return time.time()


LOCKS = {"writer_flock": WriterFlock, "sqlite_exclusive": WriteLock}


def prefill(S, user, n):
    c = fl.Client(S.port)
    try:
        recs = [fl.send(c, user, "pre-%s-%d" % (user, i), 600) for i in range(n)]
    finally:
        c.close()
    assert all(r["status"] == 201 for r in recs), [fl.describe(r) for r in recs]
    return [r["id"] for r in recs]


def expiry_at(S, token, ids, t_read):
    """The ids whose expiration_date is not within the slack of t_read."""
    off = []
    for mid, (st, body) in fl.lookup_all(S.port, token, ids).items():
        if st != 200 or abs(fl.parse_utc(body["expiration_date"]) - t_read) > EXPIRY_SLACK_S:
            off.append((mid, st, body))
    return off


def is_unavailable(r):
    return (r["status"] == 503 and isinstance(r["body"], dict)
            and r["body"].get("error") == "unavailable" and bool(r["retry_after"]))


def in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


def locked_store_single_requests(kind):
    with fl.stack() as S:
        reader_user, victim = fl.unique("lr"), fl.unique("lv")
        ids = prefill(S, reader_user, 6)
        pids = {n: p.pid for n, p in fl.service_procs(S)}

        lock = LOCKS[kind](db_path(S))
        # Sends one after the other and reads, all while the lock is held.
        c_send, c_read = fl.Client(S.port, timeout=30), fl.Client(S.port, timeout=30)
        ts, sends = in_thread(lambda: [fl.send(c_send, victim, "locked-%d" % i, 600)
                                       for i in range(2)])
        tr, reads = in_thread(lambda: fl.read(c_read, reader_user))
        ts.join(40)
        tr.join(40)
        rest = LOCK_HELD_S - (time.time() - lock.t)
        if rest > 0:
            time.sleep(rest)
        t_release = lock.release()
        c_send.close()
        c_read.close()
        sends, rd = sends[0], reads[0]

        P = fl.Problems()
        P.check(sends[-1]["t1"] < t_release and rd["t1"] < t_release,
                "the requests were not answered while the lock was held")
        for r in sends:
            P.check(is_unavailable(r) and r["latency"] < MAX_ANSWER_S * fl.MULT,
                    "send while the store is locked: not a 503 unavailable within %.0fs" % (
                        MAX_ANSWER_S), [r])
        P.check(is_unavailable(rd) and rd["latency"] < MAX_ANSWER_S * fl.MULT,
                "read while the store is locked: not a 503 unavailable within %.0fs" % (
                    MAX_ANSWER_S), [rd])

        # the store is back: sends succeed without any restart
        c = fl.Client(S.port)
        t_back = fl.wait_until(
            lambda: fl.send(c, fl.unique("lb"), "back", 60)["status"] == 201,
            "a 201 once the lock is released", 15)
        # the 503'd read kept its messages: the next read gets them, once
        again = fl.read(c, reader_user)
        c.close()
        P.check(again["status"] == 200 and again["ids"] == ids,
                "the first read after the release (expected 200 with ids %s):" % ids, [again])
        token = S.admin_token()
        off = expiry_at(S, token, ids, again["t0"])
        P.check(not off, "expiration_date is not the read time: %s" % off[:3])
        time.sleep(1.0)
        for r in fl.drain(S.port, [victim, reader_user]):
            P.check(r["ids"] == [], "delivered after a 503, or twice:", [r])
        for n, p in fl.service_procs(S):
            P.check(pids.get(n) == p.pid, "%s was restarted" % n)

        fl.figure("cold_locked_" + kind, lock_held_s=t_release - lock.t,
                  send_503_latency_s=max(r["latency"] for r in sends),
                  read_503_latency_s=rd["latency"], kept_messages=len(again["ids"]),
                  send_201_after_release_s=t_back - t_release)
        P.assert_none()


@test
def writer_flock_held_past_the_deadline():
    locked_store_single_requests("writer_flock")


@test
def sqlite_lock_held_past_the_deadline():
    locked_store_single_requests("sqlite_exclusive")


@test
def writer_flock_under_concurrent_load_keeps_the_contract():
    """<db>-writer.lock held 12 s under a steady load of concurrent sends
    and reads: only 200/201/503, none later than the deadline plus a margin
    (no 504); every 201 delivered exactly once; a send that did not get its
    201 never delivered."""
    with fl.stack() as S:
        users = fl.recipients("lc", 4)
        load = fl.mixed_load(S.port, users, "lc", senders=4, send_rate=4, readers=2, read_rate=2,
                             timeout=30.0)
        load.start()
        time.sleep(2.0)
        lock = WriterFlock(db_path(S))
        time.sleep(LOCK_HELD_S)
        t_release = lock.release()
        time.sleep(4.0)
        load.stop(timeout=40)
        recs = load.records

        P = fl.Problems()
        odd = [r for r in recs if r["status"] not in (200, 201) and not is_unavailable(r)]
        P.check(not odd, "answers other than 200/201/503 unavailable:", odd)
        slow = [r for r in recs if r["latency"] > MAX_ANSWER_S * fl.MULT]
        P.check(not slow, "answers slower than %.0fs (lock held %.3f..%.3f):" % (
            MAX_ANSWER_S, lock.t, t_release), slow)
        # (a read of an empty inbox claims nothing and needs no write: 200 [])
        during = [r for r in recs if lock.t + 0.5 < r["t0"] < t_release - MAX_ANSWER_S
                  and r["kind"] == "send"]
        P.check(during and all(is_unavailable(r) for r in during),
                "sends started while the lock was held were not all 503:",
                [r for r in during if not is_unavailable(r)])
        after = [r for r in recs if r["t0"] > t_release + 1.0]
        P.check(after and all(r["status"] in (200, 201) for r in after),
                "requests after the release failed:",
                [r for r in after if r["status"] not in (200, 201)])

        D = fl.Delivery(recs, users)
        D.settle(S.port)
        figures = D.judge(P)
        s = fl.summary(recs)
        fl.figure("cold_locked_concurrent", lock_held_s=t_release - lock.t, requests=s["n"],
                  statuses=fl.fmt_statuses(s["statuses"]), max_ms=s["max_ms"], **figures)
        fl.fault_summary("cold_writer_flock", figures, problems=len(P.items))
        P.assert_none()


@test
def store_file_replaced_by_a_directory():
    with fl.stack() as S:
        path = db_path(S)
        reader_user = fl.unique("dr")
        users = fl.recipients("dv", 4)
        ids = prefill(S, reader_user, 5)
        pids = {n: p.pid for n, p in fl.service_procs(S)}
        load = fl.Load(S.port, timeout=15.0)
        load.add("send", lambda c, n, rng: fl.send(c, rng.choice(users), "dv-%d" % n, 600),
                 rate=10)
        load.start()
        time.sleep(1.0)

        t_fault = time.time()
        os.rename(path, path + ".away")
        os.mkdir(path)
        c = fl.Client(S.port)
        rd = fl.read(c, reader_user)  # its claim cannot be written: 503, keeps them
        time.sleep(2.5)
        ready = {p.name: snaptest.request("GET", "/readyz", port=p.port, timeout=5)
                 for k in ("ingest", "fetch") for p in S.services[k]}
        t_restore = time.time()
        os.rmdir(path)
        os.rename(path + ".away", path)
        t_back = fl.wait_until(
            lambda: fl.send(c, fl.unique("db"), "back", 60)["status"] == 201,
            "a 201 once the file is back", 15)
        time.sleep(2.0)
        load.stop()
        c.close()
        # An ingest started now repairs the whole index from the cold store
        # (repair.c, once at start): a refused send that reached the moved
        # file as claimable would come back deliverable.
        ingest1 = S.services["ingest"][0]
        ingest1.kill()
        fl.close_logs(ingest1)
        fresh = fl.restart_on_port(S, ingest1)
        pids[fresh.name] = fresh.pid
        S.wait_ready()
        time.sleep(2.0)

        P = fl.Problems()
        P.check(is_unavailable(rd) and rd["latency"] < 2.5 * fl.MULT,
                "read right after the store went away (expected a quick 503):", [rd])
        for name, (st, _, body) in ready.items():
            P.check(st == 503 and isinstance(body, dict) and body.get("store") == "down",
                    "%s /readyz while the file is gone: %s %s" % (name, st, body))
        during = load.since(t_fault + 0.05, t_restore, kind="send")
        P.check(during, "no send during the fault")
        P.check(all(is_unavailable(r) and r["latency"] < 2.5 * fl.MULT for r in during),
                "sends while the file is gone, not a quick 503 unavailable:",
                [r for r in during if not (is_unavailable(r) and r["latency"] < 2.5 * fl.MULT)])
        outside = [r for r in load.records
                   if r["t1"] < t_fault or r["t0"] > t_back + 0.5]
        P.check(all(r["status"] == 201 for r in outside), "sends outside the fault failed:",
                [r for r in outside if r["status"] != 201])

        time.sleep(1.0)
        reads = fl.drain(S.port, users + [reader_user])
        kept = [r for r in reads if r["user"] == reader_user and r["ids"]]
        P.check(len(kept) == 1 and kept[0]["ids"] == ids,
                "the messages of the 503'd read (%s) were not returned once:" % ids, kept)
        delivered = [i for r in reads for i in r["ids"]]
        texts = {t for r in reads for t in r["texts"]}
        acked = {r["id"] for r in load.records if r["status"] == 201}
        refused = [r for r in load.records if r["status"] != 201]
        late = [r for r in refused if r["text"] in texts]
        P.check(not late, "%d refused sends delivered later:" % len(late), late)
        P.check(not fl.duplicates(delivered), "delivered twice: %s" % fl.duplicates(delivered))
        P.check(acked <= set(delivered), "acknowledged, never delivered: %s" % sorted(
            acked - set(delivered))[:20])
        token = S.admin_token()
        off = expiry_at(S, token, ids, kept[0]["t0"]) if kept else []
        P.check(not off, "expiration_date is not the read time: %s" % off[:3])
        found = fl.lookup_all(S.port, token, sorted(acked))
        P.check(all(v[0] == 200 for v in found.values()), "acknowledged, not found: %s" % [
            (i, v) for i, v in found.items() if v[0] != 200][:10])
        for n, p in fl.service_procs(S):
            P.check(pids.get(n) == p.pid, "%s was restarted" % n)

        fl.figure("cold_replaced", fault_s=t_restore - t_fault, sends_during=len(during),
                  p99_503_ms=1000 * fl.percentile([r["latency"] for r in during], 99),
                  send_201_after_restore_s=t_back - t_restore,
                  acked=len(acked), found=len(found), delivered=len(delivered),
                  refused=len(refused), refused_but_delivered=len(late))
        P.assert_none()

if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
