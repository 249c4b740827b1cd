"""Redis's replies held 2.5 s, several times, by a TCP proxy between every
service and Redis (faultlib.StallProxy), under a steady load of sends and
reads. Nothing crashes: commands reach Redis and run, their replies are
late, so the services time out on calls that Redis did carry out (an
INCRBY, a hot put, a peek, an index drop).

This is the reproduction of issue 10 item 1 (a send answered 503 because
its hot put's reply was late, then delivered) and item 3 (a read whose
reply was lost losing the inbox). Strict: every 201 delivered exactly once,
no send answered otherwise than 201 ever delivered, nothing delivered
twice, nothing lost; clients get only 200/201/503, never after the request
deadline (8 s) plus a margin; the stalls must be seen by clients (503s or
late answers), or the test proves nothing. One FAULT-SUMMARY line."""
import shutil
import sys
import tempfile
import time

import faultlib as fl
import snaptest
from snaptest import test

STALL_S = 2.5
STALLS = 4
GAP_S = 2.0
MAX_ANSWER_S = 9.0  # the 8 s request deadline plus a margin


@test
def redis_replies_stalled_under_load():
    root = tempfile.mkdtemp(prefix="snap-stall-")
    redis = snaptest.start_redis(root=root)
    proxy = fl.StallProxy(redis.port)
    try:
        with fl.stack(redis=redis, env={
                "SNAPTEXT_AUTH": "open",
                "SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % proxy.port}) as S:
            users = fl.recipients("st", 8)
            load = fl.mixed_load(S.port, users, "st", senders=3, send_rate=20, readers=2,
                                 read_rate=15, readable=users[:-1])
            pids = {n: p.pid for n, p in fl.service_procs(S)}
            load.start()
            time.sleep(2.0)
            for _ in range(STALLS):
                proxy.stall(STALL_S)
                time.sleep(STALL_S + GAP_S)
            time.sleep(1.0)
            load.stop()
            recs = load.records

            P = fl.Problems()
            P.check(proxy.connections > 0, "no service connected through the proxy")
            bad = [r for r in recs
                   if r["error"] is not None or r["status"] not in (200, 201, 503)]
            P.check(not bad, "requests failed otherwise than 503:", bad)
            slow = [r for r in recs if r["latency"] > MAX_ANSWER_S * fl.MULT]
            P.check(not slow, "answers slower than %.0fs:" % MAX_ANSWER_S, slow)
            in_stall = [r for r in recs if any(a <= r["t0"] <= b for a, b in proxy.stalls)]
            felt = [r for r in in_stall if r["status"] == 503 or r["latency"] > 1.0]
            P.check(felt, "no request felt the stalls (no 503, none slower than 1 s)")
            unav = [r for r in recs if r["status"] == 503]
            wrong = [r for r in unav if not (isinstance(r["body"], dict)
                                             and r["body"].get("error") == "unavailable"
                                             and r["retry_after"])]
            P.check(not wrong, "503 without `unavailable` + Retry-After:", wrong)
            for n, p in fl.service_procs(S):
                P.check(pids.get(n) == p.pid, "%s was restarted" % n)

            D = fl.Delivery(recs, users)
            D.settle(S.port)
            figures = D.judge(P)
            token = S.admin_token()
            found = fl.lookup_all(S.port, token, sorted(D.acked))
            missing = [i for i, v in found.items() if v[0] != 200]
            P.check(not missing, "acknowledged, not found by the admin lookup: %s" % missing[:10])

            sends = [r for r in recs if r["kind"] == "send"]
            fl.figure("redis_stall", stalls=STALLS, stall_s=STALL_S, requests=len(recs),
                      unavailable_503=len(unav),
                      send_503=len([r for r in sends if r["status"] == 503]),
                      read_503=len([r for r in unav if r["kind"] == "read"]),
                      max_answer_ms=1000 * max(r["latency"] for r in recs),
                      drain_s=D.drain_s,
                      statuses=fl.fmt_statuses(fl.summary(recs)["statuses"]), **figures)
            fl.fault_summary("redis_stall", figures, problems=len(P.items))
            P.assert_none()
    finally:
        proxy.stop()
        redis.stop(expect_clean=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
