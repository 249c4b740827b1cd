"""Process life of a service: a bad setting stops it at start with one line
naming the variable; SIGTERM stops it cleanly (exit 0) after in-flight
requests; it starts before its cold store is reachable and waits."""
import os
import signal
import subprocess
import sys
import threading
import time

import snaptest
from snaptest import test

BINS = {n: os.environ.get("SNAP_%s_BIN" % n.upper()) for n in ("users", "ingest", "fetch")}


def run_with(binary, env, timeout=10):
    e = {k: v for k, v in os.environ.items() if not k.startswith("SNAPTEXT_")}
    e.update(env)
    return subprocess.run([binary], env=e, capture_output=True, text=True, timeout=timeout)


@test
def bad_settings_stop_the_service_with_one_line():
    cases = {
        "SNAPTEXT_MAX_TIMEOUT": "abc", "SNAPTEXT_THREADS": "0", "SNAPTEXT_LISTEN": "99999",
        "SNAPTEXT_AUTH": "maybe", "SNAPTEXT_STORE": "postgres://x", "SNAPTEXT_REDIS_URL": "http://x",
        "SNAPTEXT_MAX_BODY_BYTES": "-1", "SNAPTEXT_LOG_LEVEL": "loud", "SNAPTEXT_SESSION_TTL": "1e3",
        "SNAPTEXT_MAX_TEXT_BYTES": "4096x",
    }
    for var, value in cases.items():
        for name, binary in BINS.items():
            r = run_with(binary, {var: value, "SNAPTEXT_LISTEN": "127.0.0.1:0", var: value})
            assert r.returncode != 0, (name, var, value, r.stdout[-500:])
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            assert len(lines) == 1 and var in lines[0], (name, var, r.stderr)


@test
def admin_password_is_never_echoed():
    r = run_with(BINS["users"], {"SNAPTEXT_ADMIN_USERNAME": "root",
                                 "SNAPTEXT_ADMIN_PASSWORD": "tiny"})
    assert r.returncode != 0 and "tiny" not in r.stderr + r.stdout, r.stderr
    assert "SNAPTEXT_ADMIN_PASSWORD" in r.stderr, r.stderr


@test
def sigterm_finishes_in_flight_requests_then_exits_0():
    stack = snaptest.Stack(env={"SNAPTEXT_AUTH": "open"}, instances=1)
    try:
        ingest = stack.services["ingest"][0]
        results = []

        def client():
            for i in range(200):
                try:
                    st, _, _ = snaptest.request("POST", "/chat", port=ingest.port,
                                                body={"username": "bob", "text": "x%d" % i})
                    results.append(st)
                except OSError:
                    results.append("refused")
        t = threading.Thread(target=client)
        t.start()
        time.sleep(0.3)
        t0 = time.time()
        problems = ingest.stop(timeout=10)
        took = time.time() - t0
        t.join()
        assert problems == [], problems
        assert ingest.returncode == 0 and took < 10, (ingest.returncode, took)
        # every request either completed with 201 or was refused: none half-done
        assert set(results) <= {201, "refused"}, set(results)
    finally:
        stack.stop()
        stack.cleanup()


@test
def waits_for_an_unreachable_cold_store():
    # a mongodb:// URL nobody answers: the service keeps retrying, logs why,
    # and stops cleanly on SIGTERM while waiting
    redis = snaptest.start_redis()
    try:
        port = snaptest.free_port()
        proc = snaptest.Proc("ingest", [BINS["ingest"]], env={
            "SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % redis.port,
            "SNAPTEXT_STORE": "mongodb://127.0.0.1:%d/snaptext?serverSelectionTimeoutMS=200" % port,
            "SNAPTEXT_LISTEN": "127.0.0.1:0"})
        proc.wait_for(lambda: "cold store unreachable" in proc.stdout(), "the retry log line")
        problems = proc.stop(timeout=5)
        assert problems == [] and proc.returncode == 0, (problems, proc.logs())
        proc.cleanup()
    finally:
        redis.stop(expect_clean=False)
        redis.cleanup()


@test
def a_killed_service_leaves_nothing_in_dev_shm():
    # libmongoc, linked into every service, makes /dev/shm/mongoc-<pid> at
    # load; a SIGKILLed service must not leave it behind, or a later process
    # with the same pid prints a stray warning outside the JSON log
    if not os.path.isdir("/dev/shm"):
        print("    skipped: this machine has no /dev/shm")
        return
    for name, binary in BINS.items():
        # Redis nobody answers: the service logs its first retry and waits
        proc = snaptest.Proc(name, [binary], env={
            "SNAPTEXT_LISTEN": "127.0.0.1:0",
            "SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % snaptest.free_port()})
        try:
            proc.wait_for(lambda: proc.stdout() != "", "its first log line")
        finally:
            proc.kill()
            proc.cleanup()
        left = "/dev/shm/mongoc-%d" % proc.pid
        assert not os.path.exists(left), (name, left)


if __name__ == "__main__":
    sys.exit(snaptest.run_tests())
