"""One service instance SIGKILLed behind HAProxy under a steady load.

HAProxy routes around it: requests in flight at the moment of the crash may
fail, but none that starts after HAProxy has marked the server down (two
failed /readyz checks, 500 ms apart). The instance is then started again on
the same port (the backends file is fixed at HAProxy's start); HAProxy marks
it up and it gets traffic again (its own /metrics request counter grows).
Nothing acknowledged is delivered twice, and nothing acknowledged is lost
unless a read that failed in the crash may have taken it."""
import sys
import time

import faultlib as fl
import snaptest
from snaptest import test

ROUTE = {"ingest": "POST /chat", "fetch": "GET /chats/{}"}
MAX_DETECT_S = 3.0   # kill -> HAProxy logs DOWN (fall 2 x inter 500 ms, with slack)


def route_count(proc, kind):
    return fl.metric_sum(fl.metrics(proc.port), "snaptext_http_requests_total",
                         route=ROUTE[kind])


def kill_and_rejoin(kind):
    with fl.stack() as S:
        users = fl.recipients("ik", 6)
        load = fl.mixed_load(S.port, users, "ik", senders=3, send_rate=15, readers=2, read_rate=10)
        load.start()
        time.sleep(2.0)

        victim = S.services[kind][0]
        server = "%s/%s" % (kind, victim.name)
        other = S.services[kind][1]
        t_kill = time.time()
        victim.kill()
        fl.close_logs(victim)
        t_down = fl.wait_server_state(S, server, "DOWN", 1, timeout=10)
        time.sleep(2.0)
        ups_before = fl.haproxy_server_events(S, server)[1]
        t_restart = time.time()
        new = fl.restart_on_port(S, victim)
        t_up = fl.wait_server_state(S, server, "UP", ups_before + 1, timeout=10)
        c0 = route_count(new, kind)
        time.sleep(3.0)
        c1 = route_count(new, kind)
        load.stop()

        recs = load.records
        failed = [r for r in recs if r["status"] not in (200, 201)]
        after_down = [r for r in failed if r["t0"] >= t_down]
        assert t_down - t_kill < MAX_DETECT_S * fl.MULT, (
            "HAProxy took %.1fs to mark %s down" % (t_down - t_kill, server))
        assert not after_down, "failed after HAProxy marked %s down:\n%s" % (
            server, "\n".join(fl.describe(r) for r in after_down[:10]))
        assert c1 > c0, "%s got no %s after rejoining (%d -> %d)" % (
            victim.name, ROUTE[kind], c0, c1)
        assert new.alive() and other.alive()

        reads = [r for r in recs if r["kind"] == "read" and r["status"] == 200]
        reads += fl.drain(S.port, users)
        delivered = [i for r in reads for i in r["ids"]]
        dups = fl.duplicates(delivered)
        assert not dups, "delivered twice: %s" % dups[:20]
        acked = {r["id"]: r for r in recs if r["kind"] == "send" and r["status"] == 201}
        # A read that failed in the crash may have taken its inbox with it.
        failed_reads = [r for r in failed if r["kind"] == "read"]
        lost = [i for i in set(acked) - set(delivered)
                if not any(f["user"] == acked[i]["user"] and acked[i]["t0"] < f["t1"]
                           for f in failed_reads)]
        assert not lost, "acknowledged and never delivered: %s" % sorted(lost)[:20]

        for r in failed:
            print("in flight at the crash (kill at %.3f): %s" % (t_kill, fl.describe(r)))
        s = fl.summary(recs)
        after = fl.summary(load.since(t_up))
        fl.figure("instance_kill_%s" % kind, requests=s["n"],
                  statuses=fl.fmt_statuses(s["statuses"]), failed_before_down=len(failed),
                  down_detected_s=t_down - t_kill,
                  restart_to_up_s=t_up - t_restart,
                  rejoined_requests_3s=int(c1 - c0),
                  p99_after_rejoin_ms=after["p99_ms"], max_ms=s["max_ms"])


@test
def ingest_instance_sigkill_and_rejoin():
    kill_and_rejoin("ingest")


@test
def fetch_instance_sigkill_and_rejoin():
    kill_and_rejoin("fetch")


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
