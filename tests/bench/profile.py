"""profile.py: instructions per request, by process and by function, for
one send, one empty read and one floor request of the default deployment.

Starts Redis (AOF, appendfsync everysec), users, ingest, fetch (one instance
each, every SNAPTEXT_* at its default but open auth) and HAProxy from the
project's haproxy.cfg, with ingest, fetch and HAProxy under valgrind's
callgrind, on free loopback ports. For each load it zeroes the counters,
runs wrk for a few seconds (few connections: valgrind runs one thread
at a time), dumps the counters and divides by the requests completed. Instruction counts do not depend on what else the machine is
doing, unlike seconds; they leave out the kernel (system calls, network
stack), which /proc's CPU times in the bench include.

    SNAP_USERS_BIN=... SNAP_INGEST_BIN=... SNAP_FETCH_BIN=... \\
        python3 tests/bench/profile.py [--seconds S] [--out DIR]

Prints a table and the top functions (inclusive) of each process; DIR
keeps the callgrind files for callgrind_annotate.
Not here: throughput (bench.py, compare.py).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import snaptest  # noqa: E402
import wrkrun  # noqa: E402

VALGRIND = ["valgrind", "--tool=callgrind", "--collect-atstart=yes", "--separate-threads=no"]


def under_callgrind(name, argv, out_dir, env, root):
    out = os.path.join(out_dir, "callgrind.%s.%%p" % name)
    return snaptest.Proc(name, VALGRIND + ["--callgrind-out-file=" + out] + argv, env=env,
                         root=root)


def control(flag, pid):
    subprocess.run(["callgrind_control", flag, str(pid)], capture_output=True, timeout=120,
                   check=True)


def latest_dump(out_dir, name, pid, before):
    files = [f for f in os.listdir(out_dir) if f.startswith("callgrind.%s.%d" % (name, pid))]
    new = sorted((f for f in files if f not in before),
                 key=lambda f: os.path.getmtime(os.path.join(out_dir, f)))
    return os.path.join(out_dir, new[-1]) if new else None


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    return 0


def top_functions(path, n):
    done = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", path],
                          capture_output=True, text=True, timeout=300)
    rows = []
    for line in done.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)$", line)
        if m and "PROGRAM TOTALS" not in line:
            rows.append((m.group(2), m.group(3).strip()))
    return rows[:n]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=int, default=10, help="seconds of each load (10)")
    p.add_argument("--connections", type=int, default=4, help="wrk connections (4)")
    p.add_argument("--top", type=int, default=25, help="functions shown per process (25)")
    p.add_argument("--out", default=None, help="keep the callgrind files here")
    a = p.parse_args()
    for v in ("SNAP_USERS_BIN", "SNAP_INGEST_BIN", "SNAP_FETCH_BIN"):
        if not os.environ.get(v):
            sys.exit("%s must name the binary" % v)
    root = tempfile.mkdtemp(prefix="snap-profile-")
    out_dir = os.path.abspath(a.out or os.path.join(root, "callgrind"))
    os.makedirs(out_dir, exist_ok=True)
    for k in ("SNAPTEXT_THREADS", "SNAPTEXT_SERVER_MAXCONN", "SNAPTEXT_HAPROXY_THREADS"):
        os.environ.pop(k, None)
    procs = []
    try:
        redis = snaptest.start_redis(root=root)
        procs.append(redis)
        env = {"SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % redis.port,
               "SNAPTEXT_STORE": "sqlite://%s/cold.db" % root, "SNAPTEXT_AUTH": "open",
               "SNAPTEXT_LISTEN": "127.0.0.1:0", "SNAPTEXT_DRAIN_MS": "0",
               "SNAPTEXT_ADMIN_USERNAME": "admin", "SNAPTEXT_ADMIN_PASSWORD": "admin-password-1"}
        users = snaptest.start_service(os.environ["SNAP_USERS_BIN"], "users1", env, root=root)
        procs.append(users)
        svc = {}
        for name in ("ingest", "fetch"):
            # a port of our choosing: at SNAPTEXT_LOG_LEVEL=warn there is no
            # "listening port=N" line to read it from
            port = snaptest.free_port()
            proc = under_callgrind(name, [os.environ["SNAP_%s_BIN" % name.upper()]], out_dir,
                                   dict(env, SNAPTEXT_LISTEN="127.0.0.1:%d" % port), root)
            proc.port = port
            procs.append(proc)
            proc.wait_for(lambda: snaptest.port_open(port), "port %d" % port, timeout=120)
            svc[name] = proc
        backends = {"users": [users.port], "ingest": [svc["ingest"].port],
                    "fetch": [svc["fetch"].port]}
        cfg_dir = tempfile.mkdtemp(dir=root)
        bfile = snaptest.write_backends(os.path.join(cfg_dir, "backends.cfg"), backends)
        floor_cfg = os.path.join(cfg_dir, "floor.cfg")
        write_floor_config(floor_cfg)
        hap = {}
        for label, cfg in (("haproxy", snaptest.HAPROXY_CFG), ("haproxy-floor", floor_cfg)):
            port = snaptest.free_port()
            proc = under_callgrind(label, [snaptest.which_or_fail("haproxy"), "-db", "-f", cfg,
                                           "-f", bfile], out_dir,
                                   {"SNAPTEXT_PUBLIC_BIND": "127.0.0.1:%d" % port,
                                    "SNAPTEXT_RATE_LIMIT": "1000000"}, root)
            proc.stop_signal = 10  # SIGUSR1: soft stop
            proc.port = port
            procs.append(proc)
            hap[label] = proc
        for proc in hap.values():
            proc.wait_for(lambda pr=proc: snaptest.port_open(pr.port), "haproxy port",
                          timeout=60)
        snaptest.wait_until(lambda: snaptest.request("POST", "/chat", port=hap["haproxy"].port,
                                                     body={"username": "w", "text": "x"},
                                                     timeout=5)[0] == 201, "a send", 60)
        snaptest.wait_until(lambda: snaptest.request("POST", "/chat",
                                                     port=hap["haproxy-floor"].port,
                                                     body={"username": "w", "text": "x"},
                                                     timeout=5)[1].get("cache-control") ==
                            "no-store", "the floor", 60)

        t, secs = 2, a.seconds
        loads = [
            ("send", "haproxy", ["haproxy", "ingest"], "send.lua",
             {"prefix": "p", "users": 1000, "text": 100, "timeout": 3600}),
            ("empty read", "haproxy", ["haproxy", "fetch"], "read.lua",
             {"prefix": "nobody", "from": 0, "to": 10000000}),
            ("floor", "haproxy-floor", ["haproxy-floor", "ingest"], "send.lua",
             {"prefix": "f", "users": 1000, "text": 100, "timeout": 3600}),
        ]
        byname = {"haproxy": hap["haproxy"], "haproxy-floor": hap["haproxy-floor"],
                  "ingest": svc["ingest"], "fetch": svc["fetch"]}
        report = []
        for load, front, who, script, args in loads:
            args = dict(args, threads=t)
            print("%s: warm-up, then %d s under callgrind" % (load, secs), flush=True)
            wrkrun.run_wrk(hap[front].port, script, dict(args, prefix="w" + args["prefix"]),
                           max(secs // 3, 1), threads=t, connections=a.connections)
            for name in who:
                control("-z", byname[name].pid)
            # counted: every request wrk completed between the zeroing and
            # the dump (at most `connections` more were in flight at the end)
            fig = wrkrun.run_wrk(hap[front].port, script, args, secs, threads=t,
                                 connections=a.connections)
            done = fig["requests"]
            if fig["errors"]:
                raise RuntimeError("%s: %d errors %s" % (load, fig["errors"],
                                                         fig["errors_detail"]))
            for name in who:
                pr = byname[name]
                before = set(os.listdir(out_dir))
                control("-d", pr.pid)
                time.sleep(0.5)
                path = latest_dump(out_dir, name, pr.pid, before)
                ir = total_ir(path) if path else 0
                report.append((load, name, done, ir, path))
        n = a.seconds
        print("\ninstructions per request (callgrind, user space only; %d s per load, "
              "%d wrk connections):" % (n, a.connections))
        for load, name, done, ir, path in report:
            print("  %-11s %-14s %9.0f Ir/request" % (load, name, ir / float(max(done, 1))))
        for load, name, done, ir, path in report:
            print("\n--- %s, %s: top functions, inclusive %% of %d Ir (%s)" % (
                load, name, ir, os.path.basename(path or "-")))
            for pct, fn in top_functions(path, a.top) if path else []:
                print("  %6s%%  %s" % (pct, fn[:150]))
    finally:
        for proc in reversed(procs):
            proc.stop(expect_clean=False, timeout=60)
    print("\ncallgrind files: %s" % out_dir)


def write_floor_config(path):
    """The project's haproxy.cfg with bench.py's floor rules (every request
    to ingest as GET /healthz), as in the bench."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_main", os.path.join(HERE, "bench.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.floor_config(path)


if __name__ == "__main__":
    main()
