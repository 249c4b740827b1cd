"""sentinel_check.py HOT_STORE_TEST_BIN: does hot_store follow Redis Sentinel?

Starts a primary, one replica and three redis-sentinel processes on free
loopback ports (down-after-milliseconds 1000, failover-timeout 3000), then
runs `HOT_STORE_TEST_BIN --sentinel-probe` (tests/redis/test_hot_store.c),
which calls hot_next_id every 100 ms through SNAPTEXT_REDIS_SENTINELS while
its SNAPTEXT_REDIS_URL points at a closed port, so every success went
through Sentinel discovery. It checks that the probe finds the master, then
SIGKILLs the primary, waits for the sentinels to promote the replica, and
checks that the probe's calls succeed again against the new master with ids
still increasing. Ends with "N passed, N failed".

Registered with ctest as redis_sentinel_discovery; by hand:
    python3 tests/redis/sentinel_check.py build/tests/test_hot_store
"""
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
import snaptest  # noqa: E402

MASTER = "mymaster"
BIN = None


RespError = snaptest.RespError
cmd = snaptest.redis_cmd


wait_until = snaptest.wait_until


def start_sentinel(root, master_port, name):
    return snaptest.start_sentinel(root, master_port, name, MASTER)


def probe_lines(probe):
    """[(ms, status, id-or-reason)] parsed from the probe's stdout."""
    out = []
    for line in probe.stdout().splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3:
            out.append((int(parts[0]), parts[1], parts[2]))
    return out


def oks(probe, after_ms=-1):
    return [(ms, int(v)) for ms, st, v in probe_lines(probe) if st == "ok" and ms > after_ms]


@snaptest.test
def test_sentinel_failover():
    root = tempfile.mkdtemp(prefix="snap-sentinel-")
    procs = []
    probe = None
    try:
        primary = snaptest.start_redis(root=root, appendonly=False, name="primary")
        procs.append(primary)
        replica = snaptest.start_redis(
            root=root, appendonly=False, name="replica",
            extra=["--replicaof", "127.0.0.1", str(primary.port)])
        procs.append(replica)
        wait_until(lambda: "master_link_status:up" in cmd(replica.port, "INFO", "replication"),
                   "the replica to sync", 15)
        sentinels = [start_sentinel(root, primary.port, "sentinel%d" % i) for i in range(3)]
        procs.extend(sentinels)
        # Failover needs every sentinel to know the replica and the others
        # (they find each other through hello messages every ~2 s).
        for s in sentinels:
            wait_until(lambda s=s: len(cmd(s.port, "SENTINEL", "replicas", MASTER)) == 1 and
                       len(cmd(s.port, "SENTINEL", "sentinels", MASTER)) == 2,
                       "%s to see the replica and the other sentinels" % s.name, 30)

        spec = ",".join("127.0.0.1:%d" % s.port for s in sentinels) + ";" + MASTER
        probe = snaptest.Proc("probe", [BIN, "--sentinel-probe"], root=root, env={
            # A closed port: only Sentinel discovery can make calls succeed.
            "SNAPTEXT_REDIS_URL": "redis://127.0.0.1:1/0",
            "SNAPTEXT_REDIS_SENTINELS": spec,
        })
        procs.append(probe)
        probe.wait_for(lambda: len(oks(probe)) >= 5, "5 ids through Sentinel", 10)
        before = oks(probe)
        assert int(cmd(primary.port, "GET", "snap:next_id")) >= before[-1][1], \
            "ids were not counted on the primary"

        t_kill = probe_lines(probe)[-1][0]
        primary.kill()
        wait_until(lambda: int(cmd(sentinels[0].port, "SENTINEL", "get-master-addr-by-name",
                                   MASTER)[1]) == replica.port,
                   "the sentinels to promote the replica", 30)
        print("  sentinels promoted the replica", flush=True)
        probe.wait_for(lambda: len(oks(probe, t_kill)) >= 5, "5 ids after failover", 15)
        problems = probe.stop()
        assert not problems, problems

        lines = probe_lines(probe)
        after = oks(probe, t_kill)
        failed = [(ms, st, v) for ms, st, v in lines if st != "ok"]
        ids = [i for _, i in oks(probe)]
        outage = after[0][0] - max(ms for ms, _ in oks(probe) if ms <= t_kill)
        print("  %d calls ok before the kill, %d failed during failover (%s), %d ok after; "
              "outage %d ms" % (len(before), len(failed),
                                failed[0][2] if failed else "-", len(after), outage),
              flush=True)
        assert ids == sorted(set(ids)), "ids did not keep increasing: %s" % ids
        assert int(cmd(replica.port, "GET", "snap:next_id")) == ids[-1], \
            "the last ids were not written to the promoted replica"
        assert cmd(replica.port, "ROLE")[0] == "master"
    finally:
        for p in reversed(procs):
            if p.returncode is None:
                p.stop(expect_clean=False)
        if probe is not None and probe.returncode not in (None, 0):
            print(probe.logs(), flush=True)
        shutil.rmtree(root, ignore_errors=True)  # every proc's dir lives under it


@snaptest.test
def test_sentinel_password():
    """Sentinels with a password of their own (requirepass) in front of a
    master with another: without SNAPTEXT_REDIS_SENTINEL_PASSWORD every call
    fails naming the refusal; with it calls succeed."""
    root = tempfile.mkdtemp(prefix="snap-sentinel-auth-")
    procs = []
    try:
        primary = snaptest.start_redis(root=root, appendonly=False, name="primary",
                                       extra=["--requirepass", "master-pw"])
        procs.append(primary)
        sentinel = snaptest.start_sentinel(
            root, primary.port, "sentinel", MASTER,
            extra_conf=["requirepass sentinel-pw", "sentinel auth-pass %s master-pw" % MASTER])
        procs.append(sentinel)
        env = {"SNAPTEXT_REDIS_URL": "redis://:master-pw@127.0.0.1:1/0",
               "SNAPTEXT_REDIS_SENTINELS": "127.0.0.1:%d;%s" % (sentinel.port, MASTER)}
        without = snaptest.Proc("probe-nopw", [BIN, "--sentinel-probe"], root=root, env=env)
        procs.append(without)
        without.wait_for(lambda: len(probe_lines(without)) >= 3, "3 calls without the password", 10)
        without.stop()
        lines = probe_lines(without)
        assert not oks(without), "calls succeeded without the sentinel password: %s" % lines
        assert all("NOAUTH" in v for _, st, v in lines), lines
        with_pw = snaptest.Proc("probe-pw", [BIN, "--sentinel-probe"], root=root,
                                env=dict(env, SNAPTEXT_REDIS_SENTINEL_PASSWORD="sentinel-pw"))
        procs.append(with_pw)
        with_pw.wait_for(lambda: len(oks(with_pw)) >= 3, "3 ids with the sentinel password", 10)
        problems = with_pw.stop()
        assert not problems, problems
        print("  without the password: %d calls, all NOAUTH (%s); with it: %d ids"
              % (len(lines), lines[0][2], len(oks(with_pw))), flush=True)
    finally:
        for p in reversed(procs):
            if p.returncode is None:
                p.stop(expect_clean=False)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print("usage: sentinel_check.py HOT_STORE_TEST_BIN", file=sys.stderr)
        sys.exit(2)
    BIN = os.path.abspath(sys.argv[1])
    sys.exit(snaptest.run_tests(sys.argv[:1]))
