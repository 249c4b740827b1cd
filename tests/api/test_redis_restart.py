"""Redis restarts under a running stack: the services recover by themselves
(no restart of theirs), ids keep increasing, and nothing that got a 201 is
lost — it is still deliverable and the admin lookup finds it. During the
outage clients get 503 `unavailable` with Retry-After, quickly."""
import signal
import sys
import time

import snaptest
from snaptest import test

S = None


def restart(kill):
    """Stops Redis (SIGTERM, or SIGKILL as a crash), waits, starts it again
    on the same port and data dir; returns the outage answers seen."""
    old = S.redis
    if kill:
        old.kill()
    else:
        old.signal(signal.SIGTERM)
        old.popen.wait(timeout=10)
        old.returncode = old.popen.returncode
    outage = []
    for _ in range(3):
        t0 = time.time()
        st, h, body = S.req("POST", "/chat", {"username": "bob", "text": "during"})
        outage.append((st, body, h.get("retry-after"), time.time() - t0))
        time.sleep(0.3)
    S.redis = snaptest.restart_redis(old, root=S.root)
    S.procs.append(S.redis)
    return outage


def roundtrip_after_restart(kill):
    name = "rr_%s_%d" % ("kill" if kill else "term", time.time() * 1000)
    before = []
    for i in range(20):
        st, _, b = S.req("POST", "/chat", {"username": name, "text": "before %d" % i, "timeout": 300})
        assert st == 201, (st, b)
        before.append(b["id"])
    outage = restart(kill)
    t_restart = time.time()
    for st, body, retry_after, secs in outage:
        assert st == 503 and body["error"] == "unavailable", (st, body)
        assert retry_after, "503 without Retry-After"
        assert secs < 2.5, "an outage answer took %.1fs" % secs
    # the services reconnect by themselves
    deadline = time.time() + 15 * snaptest.TIMEOUT_MULT
    while True:
        st, _, b = S.req("POST", "/chat", {"username": name, "text": "after", "timeout": 300})
        if st == 201:
            break
        assert time.time() < deadline, "no recovery: %s %s" % (st, b)
        time.sleep(0.2)
    assert b["id"] > max(before), (b["id"], max(before))
    recovered = time.time() - t_restart
    S.wait_ready()  # every backend is back in HAProxy
    print("  recovered %.2fs after Redis came back" % recovered)
    st, _, got = S.req("GET", "/chats/" + name)
    assert st == 200, got
    ids = [m["id"] for m in got]
    assert ids == before + [b["id"]], (ids, before)
    adm = S.admin_token()
    for mid in before:
        st, _, m = S.req("GET", "/chat/%d" % mid, token=adm)
        assert st == 200, (mid, st, m)


@test
def graceful_redis_restart():
    roundtrip_after_restart(kill=False)


@test
def redis_crash_loses_nothing_acknowledged():
    roundtrip_after_restart(kill=True)


@test
def readyz_reports_redis_down():
    S.redis.kill()
    p = S.services["fetch"][0]
    st, h, body = snaptest.request("GET", "/readyz", port=p.port)
    assert st == 503 and body == {"status": "unavailable", "redis": "down", "store": "ok"}, (st, body)
    S.redis = snaptest.restart_redis(S.redis, root=S.root)
    S.procs.append(S.redis)
    deadline = time.time() + 10
    while snaptest.request("GET", "/readyz", port=p.port)[0] != 200:
        assert time.time() < deadline
        time.sleep(0.1)


def set_stack(stack):
    global S
    S = stack


if __name__ == "__main__":
    sys.exit(snaptest.main_with_stack(set_stack, env={"SNAPTEXT_AUTH": "open"}))
