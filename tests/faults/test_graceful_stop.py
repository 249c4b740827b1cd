"""SIGTERM to one service instance while a slow, steady stream of requests
goes through HAProxy: the instance exits 0 within 10 s, and clients see no
5xx and no broken connection (what HAProxy may retry on its own side,
`retry-on conn-failure`, is invisible to them). Every acknowledged message
is delivered exactly once. (tests/api/test_lifecycle.py stops an instance
with clients talking to it directly; this is the same stop behind HAProxy.)

A second SIGTERM 0.3 s into the drain (an impatient operator, an
orchestrator repeating itself) does not end the process: it keeps serving
until the drain is over, then exits 0 with "stopped cleanly".
(RELIABILITY.md, hardening item 5.)"""
import os
import signal
import tempfile
import sys
import time

import faultlib as fl
import snaptest
from snaptest import test

STOP_BOUND_S = 10.0
ROUTE = {"ingest": "POST /chat", "fetch": "GET /chats/{}"}


def stop_under_stream(kind):
    # The services' drain on SIGTERM (SNAPTEXT_DRAIN_MS): /readyz goes 503 and
    # HAProxy (checks every 500 ms, down after 2) stops routing here first.
    with fl.stack(env={"SNAPTEXT_AUTH": "open", "SNAPTEXT_DRAIN_MS": "1500"}) as S:
        users = fl.recipients("gs", 4)
        load = fl.mixed_load(S.port, users, "gs", senders=2, send_rate=10, readers=2, read_rate=5)
        load.start()
        time.sleep(2.5)
        victim = S.services[kind][0]
        served = fl.metric_sum(fl.metrics(victim.port), "snaptext_http_requests_total",
                               route=ROUTE[kind])
        assert served > 0, "%s had no traffic before the stop" % victim.name
        t_term = time.time()
        problems = victim.stop(timeout=STOP_BOUND_S)
        took = time.time() - t_term
        time.sleep(2.0)
        load.stop()

        P = fl.Problems()
        P.check(problems == [], "stop problems: %s" % problems)
        P.check(victim.returncode == 0 and took < STOP_BOUND_S,
                "exit status %s after %.1fs" % (victim.returncode, took))
        recs = load.records
        bad = [r for r in recs if r["status"] not in (200, 201)]
        log = victim.stdout()
        for r in bad:
            # did the stopping instance process it? (its log names the request id)
            line = next((l for l in log.splitlines() if r["request_id"] in l), None)
            r["error"] = "%s; %s" % (r["error"], "%s logged it: %s" % (
                victim.name, line[:200]) if line else "not in %s's log" % victim.name)
        P.check(not bad, "clients saw failures around the stop of %s (SIGTERM at %.3f):" % (
            victim.name, t_term), bad)
        reads = [r for r in recs if r["kind"] == "read"] + fl.drain(S.port, users)
        delivered = [i for r in reads for i in r["ids"]]
        acked = {r["id"] for r in recs if r["kind"] == "send" and r["status"] == 201}
        P.check(not fl.duplicates(delivered), "delivered twice: %s" % fl.duplicates(delivered))
        P.check(set(delivered) == acked, "missing %s, delivered without a 201 %s" % (
            sorted(acked - set(delivered))[:20], sorted(set(delivered) - acked)[:20]))
        around = fl.summary(load.since(t_term - 0.5, t_term + took + 1.0))
        fl.figure("graceful_stop_%s" % kind, stop_s=took, requests=len(recs),
                  statuses=fl.fmt_statuses(fl.summary(recs)["statuses"]),
                  around_stop_n=around["n"], around_stop_max_ms=around["max_ms"],
                  served_before_stop=int(served))
        P.assert_none()

@test
def ingest_sigterm_behind_haproxy():
    stop_under_stream("ingest")


@test
def fetch_sigterm_behind_haproxy():
    stop_under_stream("fetch")


@test
def second_sigterm_during_drain():
    root = tempfile.mkdtemp(prefix="snap-sigterm2-")
    redis = snaptest.start_redis(root=root)
    svc = None
    try:
        env = {"SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % redis.port,
               "SNAPTEXT_STORE": "sqlite://%s/cold.db" % root,
               "SNAPTEXT_AUTH": "open", "SNAPTEXT_DRAIN_MS": "1500"}
        svc = snaptest.start_service(os.environ["SNAP_INGEST_BIN"], "ingest1", env, root=root)
        body = {"username": fl.unique("sig"), "text": "during the drain", "timeout": 60}
        st, _, _ = snaptest.request("POST", "/chat", port=svc.port, body=body)
        assert st == 201, st
        svc.signal(signal.SIGTERM)
        time.sleep(0.3)
        svc.signal(signal.SIGTERM)
        time.sleep(0.3)
        assert svc.alive(), "the second SIGTERM ended the process (status %s)\n%s" % (
            svc.popen.poll(), svc.logs())
        # Still serving during the drain, after both signals.
        st, _, _ = snaptest.request("POST", "/chat", port=svc.port, body=body, timeout=5)
        assert st == 201, "a send during the drain got %s" % st
        svc.popen.wait(timeout=10 * snaptest.TIMEOUT_MULT)
        out = svc.stdout()
        print("exit status %s; %s" % (svc.popen.returncode, [
            l for l in out.splitlines() if '"stop"' in l or "stop" in l][-3:]))
        assert svc.popen.returncode == 0, "exit status %s" % svc.popen.returncode
        assert "already draining" in out, "the second signal was not logged"
        assert "stopped cleanly" in out, out[-2000:]
    finally:
        if svc is not None:
            svc.stop(expect_clean=False)
            svc.cleanup()
        redis.stop(expect_clean=False)
        redis.cleanup()


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
