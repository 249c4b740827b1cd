"""The SQLite cold store failing under running services, two ways:

- locked: another process holds the write lock (BEGIN EXCLUSIVE with
  Python's sqlite3 module) longer than the driver's 5 s busy timeout.
  Reads of the file still work, so /readyz stays green and HAProxy keeps
  routing: sends must get 503 `unavailable` (and never be delivered later),
  reads that took messages from Redis must still return them (200), and
  their cold-store expiry must be applied by the retry worker once the lock
  is gone (admin lookup: expiration_date = the read time).
- replaced: the database file is renamed away and a directory takes its
  path (a volume unmounted, a file deleted). The driver sees that the file
  at the path is no longer its file: fast 503s, /readyz says store down;
  when the file comes back the services serve again without a restart.
"""
import os
import sqlite3
import sys
import threading
import time

import faultlib as fl
import snaptest
from snaptest import test

BUSY_TIMEOUT_S = 5.0      # SQ_BUSY_TIMEOUT_MS in shared/src/cold_sqlite.c
HAPROXY_SERVER_TIMEOUT_S = 10.0  # `timeout server` in deploy/haproxy/haproxy.cfg
EXPIRY_SLACK_S = 3.0


def db_path(S):
    url = S.env["SNAPTEXT_STORE"]
    assert url.startswith("sqlite://"), url
    return url[len("sqlite://"):]


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


def prefill(S, user, n):
    c = fl.Client(S.port)
    try:
        recs = [fl.send(c, user, "pre-%s-%d" % (user, i), 600) for i in range(n)]
    finally:
        c.close()
    assert all(r["status"] == 201 for r in recs), [fl.describe(r) for r in recs]
    return [r["id"] for r in recs]


def expiry_applied(S, token, ids, t_read):
    """True once every id's expiration_date is within the slack of t_read."""
    for mid, (st, body) in fl.lookup_all(S.port, token, ids).items():
        assert st == 200, (mid, st, body)
        if abs(fl.parse_utc(body["expiration_date"]) - t_read) > EXPIRY_SLACK_S:
            return False
    return True


def is_unavailable(r):
    return (r["status"] == 503 and isinstance(r["body"], dict)
            and r["body"].get("error") == "unavailable" and bool(r["retry_after"]))


def in_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()), daemon=True)
    t.start()
    return t, out


@test
def locked_store_sends_503_reads_200_expiry_retried():
    with fl.stack() as S:
        reader_user, victim = fl.unique("lr"), fl.unique("lv")
        ids = prefill(S, reader_user, 6)
        pids = {n: p.pid for n, p in fl.service_procs(S)}

        lock = WriteLock(db_path(S))
        # Two sends one after the other (each waits out the busy timeout), and
        # one read at the same time.
        c_send, c_read = fl.Client(S.port, timeout=30), fl.Client(S.port, timeout=30)
        ts, sends = in_thread(lambda: [fl.send(c_send, victim, "locked-%d" % i, 600)
                                       for i in range(2)])
        tr, reads = in_thread(lambda: fl.read(c_read, reader_user))
        # The lock is released only once both have answered: the busy
        # timeout counts the driver's sleeps, which a loaded machine stretches.
        ts.join(60)
        tr.join(60)
        time.sleep(1.0)
        t_release = lock.release()
        c_send.close()
        c_read.close()
        sends, rd = sends[0], reads[0]

        P = fl.Problems()
        for r in sends:
            P.check(is_unavailable(r) and r["latency"] < HAPROXY_SERVER_TIMEOUT_S,
                    "send while the store is locked: not a 503 unavailable within %.0fs" % (
                        HAPROXY_SERVER_TIMEOUT_S), [r])
        P.check(rd["status"] == 200 and rd["ids"] == ids,
                "read while the store is locked (expected 200 with ids %s):" % ids, [rd])

        # the store is back: sends succeed without any restart
        c = fl.Client(S.port)
        t_back = fl.wait_until(
            lambda: fl.send(c, fl.unique("lb"), "back", 60)["status"] == 201,
            "a 201 once the lock is released", 15)
        c.close()
        # the read's expiry was retried: expiration_date = read time
        token = fl.admin_token(S.port, S.admin)
        t_applied = fl.wait_until(lambda: expiry_applied(S, token, ids, rd["t0"]),
                                  "the deferred expiry to be applied", 15)
        retries = sum(fl.metric_sum(fl.metrics(p.port), "snaptext_expire_retries_total")
                      for p in S.services["fetch"])
        P.check(retries >= len(ids), "expire retries counted: %d" % retries)
        # the refused sends are never delivered; the read messages not twice
        time.sleep(1.0)
        for r in fl.drain(S.port, [victim, reader_user]):
            P.check(r["ids"] == [], "delivered after a 503, or twice:", [r])
        for n, p in fl.service_procs(S):
            P.check(pids.get(n) == p.pid, "%s was restarted" % n)

        fl.figure("cold_locked", lock_held_s=t_release - lock.t,
                  send_503_latency_s=max(r["latency"] for r in sends),
                  read_200_latency_s=rd["latency"], read_messages=len(rd["ids"]),
                  send_201_after_release_s=t_back - t_release,
                  expiry_applied_after_release_s=t_applied - t_release,
                  expire_retries=int(retries))
        P.assert_none()


@test
def locked_store_under_concurrent_load_keeps_the_contract():
    """The same lock, held 14 s, under a steady load of concurrent sends and
    reads: still only 201/200 or 503; a send that did not get its 201 is
    never delivered; everything acknowledged is delivered exactly once."""
    with fl.stack() as S:
        users = ["lc%d_%s" % (i, fl.unique("u")) for i in range(4)]
        load = fl.Load(S.port, timeout=30.0)
        for i in range(4):
            load.add("send%d" % i, lambda c, n, rng, i=i: fl.send(
                c, rng.choice(users), "lc-%d-%d" % (i, n), 600), rate=2)
        for i in range(2):
            load.add("read%d" % i, lambda c, n, rng: fl.read(c, rng.choice(users)), rate=1)
        load.start()
        time.sleep(2.0)
        lock = WriteLock(db_path(S))
        time.sleep(14.0)
        t_release = lock.release()
        time.sleep(4.0)
        load.stop(timeout=40)
        time.sleep(2.0)  # anything a service still had queued has finished
        recs = load.records
        reads = [r for r in recs if r["kind"] == "read" and r["status"] == 200]
        reads += fl.drain(S.port, users)
        delivered = [i for r in reads for i in r["ids"]]
        delivered_texts = {t for r in reads for t in r["texts"]}
        sends = [r for r in recs if r["kind"] == "send"]
        acked = {r["id"]: r for r in sends if r["status"] == 201}
        refused = [r for r in sends if r["status"] != 201]
        s = fl.summary(recs)
        fl.figure("cold_locked_concurrent", lock_held_s=t_release - lock.t, requests=s["n"],
                  statuses=fl.fmt_statuses(s["statuses"]), max_ms=s["max_ms"],
                  acked=len(acked), refused=len(refused), delivered=len(delivered),
                  refused_but_delivered=fl.fmt_statuses(fl.summary(
                      [r for r in refused if r["text"] in delivered_texts])["statuses"]),
                  acked_not_delivered=len(set(acked) - set(delivered)),
                  failed_reads=len([r for r in recs if r["kind"] == "read"
                                    and r["status"] != 200]))

        P = fl.Problems()
        odd = [r for r in recs if r["status"] not in (200, 201) and not is_unavailable(r)]
        P.check(not odd, "answers other than 200/201/503 unavailable:", odd)
        late = [r for r in refused if r["text"] in delivered_texts]
        P.check(not late, "sends answered non-201 but delivered later:", late)
        dups = fl.duplicates(delivered)
        P.check(not dups, "delivered twice: %s" % dups[:20])
        lost = sorted(set(acked) - set(delivered))
        P.check(not lost, "acknowledged (201) but never delivered: %s" % lost[:20])
        P.assert_none()


@test
def store_file_replaced_by_a_directory():
    with fl.stack() as S:
        path = db_path(S)
        reader_user = fl.unique("dr")
        users = ["dv%d_%s" % (i, fl.unique("u")) for i in range(4)]
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
        rd = fl.read(c, reader_user)  # the inbox leaves Redis; the expiry must wait
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

        P = fl.Problems()
        P.check(rd["status"] == 200 and rd["ids"] == ids,
                "read right after the store went away (expected 200 with ids %s):" % ids, [rd])
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
        delivered = [i for r in reads for i in r["ids"]]
        texts = {t for r in reads for t in r["texts"]}
        acked = {r["id"] for r in load.records if r["status"] == 201}
        refused = [r for r in load.records if r["status"] != 201]
        late = [r for r in refused if r["text"] in texts]
        P.check(not late, "%d refused sends delivered later:" % len(late), late)
        P.check(not fl.duplicates(delivered), "delivered twice: %s" % fl.duplicates(delivered))
        P.check(acked <= set(delivered), "acknowledged, never delivered: %s" % sorted(
            acked - set(delivered))[:20])
        token = fl.admin_token(S.port, S.admin)
        t_applied = fl.wait_until(lambda: expiry_applied(S, token, ids, rd["t0"]),
                                  "the deferred expiry to be applied", 15)
        found = fl.lookup_all(S.port, token, sorted(acked))
        P.check(all(v[0] == 200 for v in found.values()), "acknowledged, not found: %s" % [
            (i, v) for i, v in found.items() if v[0] != 200][:10])
        for n, p in fl.service_procs(S):
            P.check(pids.get(n) == p.pid, "%s was restarted" % n)

        fl.figure("cold_replaced", fault_s=t_restore - t_fault, sends_during=len(during),
                  p99_503_ms=1000 * fl.percentile([r["latency"] for r in during], 99),
                  send_201_after_restore_s=t_back - t_restore,
                  expiry_applied_after_restore_s=t_applied - t_restore,
                  acked=len(acked), found=len(found), delivered=len(delivered),
                  refused=len(refused), refused_but_delivered=len(late))
        P.assert_none()

if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
