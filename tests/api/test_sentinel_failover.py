"""Redis failover under Sentinel, through the whole stack.

A primary, two replicas and three redis-sentinel processes on loopback; the
services find the master only through SNAPTEXT_REDIS_SENTINELS (their
SNAPTEXT_REDIS_URL points at a closed port). Sends run steadily through
HAProxy while the primary is SIGKILLed: the services must move to the
promoted replica by themselves, answer only 201 or 503 meanwhile, and lose
no acknowledged message (each is delivered exactly once afterwards and the
admin lookup finds it); ids keep increasing.
"""
import sys
import tempfile
import threading
import time

import snaptest
from snaptest import test

MASTER = "mymaster"


wait_until = snaptest.wait_until


def info_field(port, section, field):
    for line in snaptest.redis_cmd(port, "INFO", section).splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return None


@test
def services_follow_a_sentinel_failover():
    root = tempfile.mkdtemp(prefix="snap-failover-")
    servers = []
    stack = None
    try:
        primary = snaptest.start_redis(root=root, name="redis-primary")
        servers.append(primary)
        # Two replicas, as in k8s/overlays/prod: after a failover the new
        # primary still has one to confirm writes (WAIT, see hot_store.c).
        replicas = [snaptest.start_redis(root=root, name="redis-replica%d" % i,
                                         extra=["--replicaof", "127.0.0.1", str(primary.port)])
                    for i in (1, 2)]
        servers.extend(replicas)
        for r in replicas:
            wait_until(lambda: info_field(r.port, "replication", "master_link_status") == "up",
                       "the replicas to sync", 15)
        sentinels = [snaptest.start_sentinel(root, primary.port, "sentinel%d" % i, MASTER)
                     for i in (1, 2, 3)]
        servers.extend(sentinels)
        wait_until(lambda: all(
            int(dict(zip(*[iter(snaptest.redis_cmd(s.port, "SENTINEL", "MASTER", MASTER))] * 2))
                ["num-other-sentinels"]) == 2 for s in sentinels),
            "the sentinels to see each other", 20)

        closed = snaptest.free_port()
        stack = snaptest.Stack(redis=primary, root=root, env={
            "SNAPTEXT_AUTH": "open",
            "SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % closed,
            "SNAPTEXT_REDIS_SENTINELS": "%s;%s" % (
                ",".join("127.0.0.1:%d" % s.port for s in sentinels), MASTER)})

        acked, statuses, stop = [], [], threading.Event()
        lock = threading.Lock()

        def sender(k):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    st, _, b = stack.req("POST", "/chat", {"username": "fo", "text": "%d-%d" % (k, i),
                                                          "timeout": 600}, timeout=5)
                except OSError as e:
                    st, b = "error: %s" % e, None
                with lock:
                    statuses.append((time.time(), st))
                    if st == 201:
                        acked.append((time.time(), b["id"]))
                time.sleep(0.01)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        with lock:
            before = [i for _, i in acked]
        assert before, "no send succeeded before the failover"
        t_kill = time.time()
        primary.kill()
        wait_until(lambda: snaptest.redis_cmd(sentinels[0].port, "SENTINEL",
                                              "get-master-addr-by-name", MASTER)[1] in
                   [str(r.port) for r in replicas], "the sentinels to promote a replica", 20)
        new_port = int(snaptest.redis_cmd(sentinels[0].port, "SENTINEL",
                                          "get-master-addr-by-name", MASTER)[1])
        # sends succeed again, on the new primary
        wait_until(lambda: any(t > time.time() - 1 and st == 201 for t, st in statuses[-40:]),
                   "sends to succeed after the failover", 20)
        t_back = min(t for t, st in statuses if t > t_kill + 0.5 and st == 201)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()

        bad = {st for _, st in statuses if st not in (201, 503)}
        assert not bad, "answers other than 201/503 during the failover: %s" % bad
        ids = [i for _, i in acked]
        after = [i for t, i in acked if t > t_back]
        assert min(after) > max(before), (max(before), min(after))
        assert int(snaptest.redis_cmd(new_port, "GET", "snap:next_id")) >= max(ids)

        stack.wait_ready()
        st, _, got = stack.req("GET", "/chats/fo")
        assert st == 200, (st, got)
        delivered = [m["id"] for m in got]
        assert len(delivered) == len(set(delivered)), "a message was delivered twice"
        missing = set(ids) - set(delivered)
        assert not missing, "%d acknowledged messages lost in the failover: %s" % (
            len(missing), sorted(missing)[:10])
        # A login is a write too: until Sentinel has re-pointed the surviving
        # replica at the new primary, it gets 503 + Retry-After (WAIT finds
        # no replica). Retry as a client would.
        login = {}

        def logged_in():
            st, _, body = stack.req("POST", "/sessions", {"username": stack.admin[0],
                                                          "password": stack.admin[1]})
            login["token"] = body.get("token") if st == 201 else None
            return st == 201
        wait_until(logged_in, "a login to succeed on the new primary", 20)
        tok = login
        for mid in ids[:: max(1, len(ids) // 50)]:
            st, _, m = stack.req("GET", "/chat/%d" % mid, token=tok["token"])
            assert st == 200, (mid, st, m)
        print("  %d acknowledged, %d delivered; sends failed for %.2fs around the failover "
              "(kill -> first 201 on the new primary)" % (len(ids), len(delivered), t_back - t_kill))
    finally:
        problems = stack.stop() if stack else []
        for p in reversed(servers):
            if p.returncode is None:
                p.stop(expect_clean=False)
        if problems:
            print(stack.all_logs()[-6000:])
        assert not problems, problems


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
