"""check_local.py: deploy/local/up.sh and down.sh as an operator meets them
(hardening items 1 and 7), each run in its own SNAPTEXT_STATE_DIR on free
ports, with the binaries ctest built (SNAPTEXT_BIN_DIR), so nothing here
touches .state/ or build/.

 * A public port inside the internal range (base..base+6) is refused
   before anything starts, with a line that says so.
 * A service that cannot start (a bad SNAPTEXT_AUTH) is named with its log,
   and everything up.sh had started (Redis) is stopped again.
 * A good start: HAProxy's JSON access lines reach .state/logs/haproxy.log,
   and down.sh stops every process by PID.
Ends with "N passed, N failed".
"""
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

import deploy_util as du
import snaptest

UP = du.path("deploy", "local", "up.sh")
DOWN = du.path("deploy", "local", "down.sh")


def ephemeral_range():
    """The kernel's range of ports for outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _free_below_ephemeral(count, avoid=None):
    """count free consecutive ports below the ephemeral range: up.sh binds
    fixed ports, and one inside that range can be taken at any moment as
    the local port of some outgoing connection (the services open one per
    worker to Redis while the later ones start)."""
    lo, _ = ephemeral_range()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, max(10001, lo - count - 1))
        if avoid and base <= avoid[1] and avoid[0] <= base + count - 1:
            continue  # overlaps the range to keep clear
        if not any(snaptest.port_open(base + i) for i in range(count)):
            return base
    raise AssertionError("no %d free consecutive ports below %d" % (count, lo))


def free_base():
    """Seven free consecutive ports (Redis + six services)."""
    return _free_below_ephemeral(7)


def public_port(base):
    """A free port outside base..base+6."""
    return _free_below_ephemeral(1, avoid=(base, base + 6))


def run_up(state, env_extra, timeout=120):
    bin_dir = os.path.dirname(os.environ.get("SNAP_USERS_BIN", ""))
    if not bin_dir:
        raise du.Skip("SNAP_USERS_BIN is not set (ctest sets it)")
    env = dict(os.environ, SNAPTEXT_STATE_DIR=state, SNAPTEXT_BIN_DIR=bin_dir)
    env.update(env_extra)
    return subprocess.run(["bash", UP], env=env, capture_output=True, text=True,
                          timeout=timeout)


def pids_alive(state):
    alive = []
    d = os.path.join(state, "pids")
    for f in os.listdir(d) if os.path.isdir(d) else []:
        with open(os.path.join(d, f)) as fh:
            pid = int(fh.read().strip() or 0)
        try:
            os.kill(pid, 0)
            alive.append("%s (pid %d)" % (f, pid))
        except OSError:
            pass
    return alive


def down(state):
    subprocess.run(["bash", DOWN], env=dict(os.environ, SNAPTEXT_STATE_DIR=state),
                   capture_output=True, text=True, timeout=60)


def with_state(fn):
    def wrapped():
        state = tempfile.mkdtemp(prefix="snap-local-")
        try:
            fn(state)
        finally:
            down(state)
            shutil.rmtree(state, ignore_errors=True)
    return wrapped


@with_state
def public_port_in_internal_range(state):
    base = free_base()
    r = run_up(state, {"SNAPTEXT_LOCAL_PORT_BASE": str(base),
                       "SNAPTEXT_PUBLIC_PORT": str(base + 1)}, timeout=30)
    print("    up.sh said: %s" % r.stderr.strip()[:300])
    assert r.returncode != 0, "up.sh accepted a public port inside the internal range"
    assert "inside the internal ports" in r.stderr, r.stderr
    assert not pids_alive(state), pids_alive(state)
    assert not any(snaptest.port_open(base + i) for i in range(7)), "something listens"


@with_state
def failed_service_is_named_and_stack_stopped(state):
    base = free_base()
    public = public_port(base)
    r = run_up(state, {"SNAPTEXT_LOCAL_PORT_BASE": str(base), "SNAPTEXT_PUBLIC_PORT": str(public),
                       "SNAPTEXT_AUTH": "bogus"})
    print("    up.sh said: %s" % r.stderr.strip().replace("\n", "\n    ")[:800])
    assert r.returncode != 0, r.stdout + r.stderr
    log = os.path.join(state, "logs", "users1.log")
    assert "users1 exited at start" in r.stderr and log in r.stderr, r.stderr
    assert "SNAPTEXT_AUTH" in r.stderr, "the log's reason is not shown: " + r.stderr
    time.sleep(0.2)
    assert not pids_alive(state), "still running: %s" % pids_alive(state)
    assert not snaptest.port_open(base), "Redis still listens on %d" % base


@with_state
def haproxy_access_log_reaches_state_logs(state):
    base = free_base()
    public = public_port(base)
    r = run_up(state, {"SNAPTEXT_LOCAL_PORT_BASE": str(base), "SNAPTEXT_PUBLIC_PORT": str(public),
                       "SNAPTEXT_ADMIN_PASSWORD": "local-check-password-1"})
    assert r.returncode == 0, r.stdout + r.stderr
    st, hdrs, _ = snaptest.request("GET", "/users/me", port=public)
    assert st == 401, st
    rid = hdrs["x-request-id"]
    path = os.path.join(state, "logs", "haproxy.log")

    def logged():
        with open(path, encoding="utf-8", errors="replace") as f:
            return [json.loads(l) for l in f if l.startswith("{") and rid in l]
    snaptest.wait_until(lambda: logged(), "the access line of %s in %s" % (rid, path), timeout=5)
    line = logged()[0]
    print("    %s: %s" % (path, json.dumps(line)))
    assert line["status"] == 401 and line["path"] == "/users/me", line
    running = pids_alive(state)
    assert len(running) == 6, running  # redis, users, ingest, fetch, pages, haproxy
    with open(os.path.join(state, "pids", "haproxy.pid")) as f:
        with open("/proc/%d/environ" % int(f.read()), "rb") as e:
            env = dict(kv.decode().partition("=")[::2] for kv in e.read().split(b"\0") if kv)
    for k, v in snaptest.HAPROXY_MALLOC_ENV.items():
        assert env.get(k) == v, (k, env.get(k))
    down(state)
    assert not pids_alive(state), pids_alive(state)


def main():
    c = du.Checks()
    if not du.find_tool("haproxy") or not du.find_tool("redis-server"):
        c.run("haproxy and redis-server present", du.missing_tool, "haproxy/redis-server",
              "up.sh starts them")
        return c.finish()
    c.run("up.sh refuses a public port inside the internal range, before starting anything",
          public_port_in_internal_range)
    c.run("up.sh names a service that fails to start and its log, and stops what it started",
          failed_service_is_named_and_stack_stopped)
    c.run("HAProxy's access lines reach .state/logs/haproxy.log; down.sh stops all",
          haproxy_access_log_reaches_state_logs)
    return c.finish()


if __name__ == "__main__":
    du.main_guard(main)
