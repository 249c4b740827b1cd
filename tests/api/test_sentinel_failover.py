"""Redis failover under Sentinel, through the whole stack.

A primary, two replicas and three redis-sentinel processes on loopback; the
services find the master only through SNAPTEXT_REDIS_SENTINELS (their
SNAPTEXT_REDIS_URL points at a closed port). Sends run steadily through
HAProxy while the primary is SIGKILLed, and reads of the same inboxes run
too: the services must move to the promoted replica by themselves, answer
only 200/201 or 503 meanwhile, and keep the strict promises (issue 10):
every acknowledged message is delivered exactly once (by the reads during
the failover or the drain afterwards) and found by the admin lookup,
nothing is delivered twice (a promoted replica that still holds entries a
read already claimed must not resurrect them), nothing is delivered whose
send was not answered 201; ids keep increasing.
"""
import json
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
        # primary still has one to confirm writes (WAIT, see redis_wait_replicated in redis_conn.c).
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

        users = ["fo%d" % i for i in range(4)]
        acked, statuses, stop = [], [], threading.Event()
        sent = {}        # text -> (status, id, user) of every send
        delivered = []   # (id, text, user) of every message any read returned
        lock = threading.Lock()

        def sender(k):
            i = 0
            while not stop.is_set():
                i += 1
                user, text = users[i % len(users)], "%d-%d" % (k, i)
                try:
                    st, _, b = stack.req("POST", "/chat", {"username": user, "text": text,
                                                          "timeout": 600}, timeout=5)
                except OSError as e:
                    st, b = "error: %s" % e, None
                with lock:
                    statuses.append((time.time(), st))
                    sent[text] = (st, b["id"] if st == 201 else None, user)
                    if st == 201:
                        acked.append((time.time(), b["id"]))
                time.sleep(0.01)

        def reader(k):
            i = 0
            while not stop.is_set():
                i += 1
                user = users[(i + k) % len(users)]
                try:
                    st, _, got = stack.req("GET", "/chats/" + user, timeout=5)
                except OSError as e:
                    st, got = "error: %s" % e, None
                with lock:
                    statuses.append((time.time(), st))
                    if st == 200:
                        delivered.extend((m["id"], m["text"], user) for m in got)
                time.sleep(0.05)

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        threads += [threading.Thread(target=reader, args=(k,)) for k in range(2)]
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

        bad = {st for _, st in statuses if st not in (200, 201, 503)}
        assert not bad, "answers other than 200/201/503 during the failover: %s" % bad
        ids = [i for _, i in acked]
        after = [i for t, i in acked if t > t_back]
        assert min(after) > max(before), (max(before), min(after))
        assert int(snaptest.redis_cmd(new_port, "GET", "snap:next_id")) >= max(ids)

        stack.wait_ready()
        # Drain until every acknowledged message arrived (the repair may have
        # to put entries the promoted replica never got back), then once
        # more after a pause: a late resurrection shows up as twice.
        deadline = time.time() + 20 * snaptest.TIMEOUT_MULT
        while True:
            for user in users:
                while True:
                    st, _, got = stack.req("GET", "/chats/" + user)
                    assert st == 200, (st, got)
                    delivered.extend((m["id"], m["text"], user) for m in got)
                    if not got:
                        break
            if set(ids) <= {d[0] for d in delivered} or time.time() > deadline:
                break
            time.sleep(0.5)
        time.sleep(1.5)
        for user in users:
            st, _, got = stack.req("GET", "/chats/" + user)
            assert st == 200, (st, got)
            delivered.extend((m["id"], m["text"], user) for m in got)
        got_ids = [d[0] for d in delivered]
        twice = sorted({i for i in got_ids if got_ids.count(i) > 1})
        missing = set(ids) - set(got_ids)
        refused = [(mid, text) for mid, text, _ in delivered
                   if text not in sent or sent[text][0] != 201]
        print("FAULT-SUMMARY " + json.dumps({
            "test": "sentinel_failover", "acknowledged": len(ids),
            "delivered": len(set(got_ids)), "lost": len(missing), "twice": len(twice),
            "refused_but_delivered": len(refused),
            "sends": len(sent), "refused": len([v for v in sent.values() if v[0] != 201])},
            sort_keys=True), flush=True)
        assert not twice, "delivered more than once: %s" % twice[:20]
        assert not missing, "%d acknowledged messages lost in the failover: %s" % (
            len(missing), sorted(missing)[:10])
        assert not refused, "delivered although not answered 201: %s" % refused[:10]
        wrong = [d for d in delivered if sent[d[1]][1:] != (d[0], d[2])]
        assert not wrong, "delivered with another id or to another user: %s" % wrong[:10]
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
              "(kill -> first 201 on the new primary)" % (len(ids), len(set(got_ids)),
                                                         t_back - t_kill))
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
