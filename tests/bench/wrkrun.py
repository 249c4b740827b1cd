"""wrkrun: runs one load and measures the processes under it.

A load is wrk with one of this folder's Lua scripts (they end with a line
"BENCH-RESULT {json}", see common.lua) or redis-benchmark. Around each run
this module reads, from /proc, the CPU time of every process of the stack
and of the load generator, the machine's busy time, and the RSS of each
process (sampled twice a second while the load runs).

Not here: which loads run in which order (bench.py), printing and files
(report.py), starting servers (tests/harness/snaptest.py).
"""

import csv
import io
import json
import os
import re
import resource
import shutil
import subprocess
import threading
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


class LoadError(Exception):
    pass


def tool(name):
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if not path:
        raise LoadError("%s is not installed (tests/bench/run.sh installs it as root)" % name)
    return path


# ------------------------------------------------------------------ /proc --

def cpu_ticks(pid):
    """utime + stime of a process (all its threads), in clock ticks; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def rss_kb(pid):
    """VmRSS of a process in kB; None if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def machine_ticks():
    """(busy, total) clock ticks of all CPUs since boot."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0)  # idle + iowait
    total = sum(parts[:8])  # guest time is already inside user
    return total - idle, total


def group_of(name):
    """ingest2 -> ingest: the instances of a service add up."""
    return re.sub(r"\d+$", "", name)


class Watch:
    """CPU of procs (a list of (name, pid)) and of the machine between
    start() and stop(), plus RSS samples while it runs."""

    def __init__(self, procs, interval=0.5):
        self.procs = list(procs)
        self.interval = interval
        self.rss_last = {}
        self.rss_peak = {}
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self.t0 = time.monotonic()
        self.cpu0 = {name: cpu_ticks(pid) for name, pid in self.procs}
        self.machine0 = machine_ticks()
        self.children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            for name, pid in self.procs:
                kb = rss_kb(pid)
                if kb is not None:
                    self.rss_last[name] = kb
                    self.rss_peak[name] = max(kb, self.rss_peak.get(name, 0))
            self._stop.wait(self.interval)

    def stop(self):
        """Returns {"cpu_pct": {name: % of one core}, "cpu_s": {name: seconds of
        utime + stime}, "cpu_pct_by_service": ...,
        "load_generator_cpu_pct", "machine_busy_pct", "rss_kb": {name: last sample}}."""
        self._stop.set()
        if self._thread:
            self._thread.join()
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        busy1, total1 = machine_ticks()
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu, cpu_s = {}, {}
        for name, pid in self.procs:
            t1 = cpu_ticks(pid)
            if t1 is not None and self.cpu0.get(name) is not None:
                cpu_s[name] = (t1 - self.cpu0[name]) / float(CLK_TCK)
                cpu[name] = round(100.0 * cpu_s[name] / elapsed, 1)
        by_service = {}
        for name, pct in cpu.items():
            g = group_of(name)
            by_service[g] = round(by_service.get(g, 0.0) + pct, 1)
        # The load generator has exited and been reaped by now: its CPU time
        # is what the children's rusage grew by.
        gen = ((children1.ru_utime - self.children0.ru_utime) +
               (children1.ru_stime - self.children0.ru_stime))
        busy0, total0 = self.machine0
        return {
            "elapsed_s": round(elapsed, 2),
            "cpu_pct": cpu,
            "cpu_s": cpu_s,
            "cpu_pct_by_service": by_service,
            "load_generator_cpu_pct": round(100.0 * gen / elapsed, 1),
            "machine_busy_pct": round(100.0 * (busy1 - busy0) / max(total1 - total0, 1), 1),
            "rss_kb": dict(self.rss_last),
            "rss_peak_kb": dict(self.rss_peak),
        }


# ------------------------------------------------------------------- wrk --

RESULT_RE = re.compile(r"^BENCH-RESULT (\{.*\})\s*$", re.M)


def run_wrk(port, script, args, duration, threads=2, connections=64, watch=(),
            request_timeout=10):
    """Runs wrk for duration seconds against 127.0.0.1:port with the Lua
    script of this folder; args is a dict passed as key=value. watch: the
    (name, pid) pairs whose CPU and RSS to record. Returns a dict of figures
    (see figures()); raises LoadError if wrk fails or prints no result."""
    argv = [tool("wrk"), "-t", str(threads), "-c", str(connections),
            "-d", "%ds" % duration, "--timeout", "%ds" % request_timeout,
            "-s", os.path.join(BENCH_DIR, script), "http://127.0.0.1:%d" % port, "--"]
    argv += ["%s=%s" % (k, v) for k, v in args.items()]
    w = Watch(watch).start()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    try:
        out, err = proc.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        w.stop()
        raise LoadError("wrk did not finish within %ds of its duration" % 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    machine = w.stop()
    m = RESULT_RE.search(out)
    if proc.returncode != 0 or not m:
        raise LoadError("wrk %s failed (exit %s):\n%s\n%s" % (
            script, proc.returncode, out[-2000:], err[-2000:]))
    raw = json.loads(m.group(1))
    return figures(raw, threads, machine)


def cpu_us_per_request(fig):
    """CPU time of every watched process (utime + stime, all of them added
    up) over the load, in microseconds per completed request; also by
    service: ({group: us}, total us), or (None, None) without figures."""
    secs = (fig.get("machine") or {}).get("cpu_s") or {}
    if not secs or not fig.get("requests"):
        return None, None
    by = {}
    for name, s in secs.items():
        g = group_of(name)
        by[g] = by.get(g, 0.0) + s
    n = float(fig["requests"])
    return ({g: round(s * 1e6 / n, 1) for g, s in by.items()},
            round(sum(secs.values()) * 1e6 / n, 1))


def figures(raw, threads, machine):
    """Turns a BENCH-RESULT into the figures every workload reports.

    The rate is requests per second of wrk's duration, except when every
    thread ran out of work early (read.lua, quotas): then it is the useful
    requests over the time until the last thread ran out."""
    c = raw.get("counters", {})
    e = raw["errors"]
    socket_errors = e["connect"] + e["read"] + e["write"] + e["timeout"]
    # Scripts that look at responses count every status outside 2xx; wrk's
    # own count (status >= 400) is the floor when a script does not look.
    bad_status = max(e["status"], int(c.get("non2xx", 0)))
    requests = raw["requests"]
    elapsed = raw["duration_us"] / 1e6
    useful = requests - int(c.get("idle", 0))
    if threads and c.get("exhausted", 0) >= threads and raw.get("ran_out_us"):
        elapsed = max((raw["ran_out_us"] - raw["started_us"]) / 1e6, 1e-3)
        useful = int(c.get("reads", c.get("sent", useful)))
    lat = raw["latency_us"]
    out = {
        "requests": useful,
        "duration_s": round(elapsed, 3),
        "req_s": round(useful / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(lat["p50"] / 1000.0, 3),
        "p90_ms": round(lat["p90"] / 1000.0, 3),
        "p99_ms": round(lat["p99"] / 1000.0, 3),
        "p999_ms": round(lat["p999"] / 1000.0, 3),
        "mean_ms": round(lat["mean"] / 1000.0, 3),
        "max_ms": round(lat["max"] / 1000.0, 3),
        "errors": socket_errors + bad_status,
        "errors_detail": {"connect": e["connect"], "read": e["read"], "write": e["write"],
                          "timeout": e["timeout"], "status_ge_400": e["status"],
                          "non_2xx": int(c.get("non2xx", 0))},
        "counters": c,
        "machine": machine,
    }
    out["cpu_us_per_req_by_service"], out["cpu_us_per_req"] = cpu_us_per_request(out)
    return out


# ------------------------------------------------------- redis-benchmark --

def run_redis_benchmark(port, tests, requests, clients=64, data_bytes=100, watch=()):
    """redis-benchmark, unpipelined (-P 1), one result per test (INCR, SET):
    {"INCR": figures, ...}. The figures have the same keys as run_wrk's."""
    argv = [tool("redis-benchmark"), "-h", "127.0.0.1", "-p", str(port),
            "-c", str(clients), "-P", "1", "-n", str(requests), "-d", str(data_bytes),
            "-t", ",".join(t.lower() for t in tests), "--csv"]
    w = Watch(watch).start()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        w.stop()
        raise LoadError("redis-benchmark did not finish within 300 s")
    machine = w.stop()
    if done.returncode != 0:
        raise LoadError("redis-benchmark failed (exit %d): %s" % (done.returncode,
                                                                   done.stderr[-2000:]))
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    out = {}
    for row in rows:
        name = row["test"].upper()
        rps = float(row["rps"])
        out[name] = {
            "requests": requests,
            "duration_s": round(requests / rps, 3) if rps else 0.0,
            "req_s": round(rps, 1),
            "p50_ms": float(row["p50_latency_ms"]),
            "p90_ms": None,
            "p99_ms": float(row["p99_latency_ms"]),
            "p999_ms": None,
            "mean_ms": float(row["avg_latency_ms"]),
            "max_ms": float(row["max_latency_ms"]),
            # redis-benchmark stops on a connection error and does not count
            # error replies; a run that finished is taken as error free.
            "errors": 0,
            "errors_detail": {},
            "counters": {},
            # When several tests share one run, the CPU figures cover them all.
            "machine": machine,
        }
        out[name]["cpu_us_per_req_by_service"], out[name]["cpu_us_per_req"] = \
            cpu_us_per_request(out[name])
    missing = [t for t in tests if t.upper() not in out]
    if missing:
        raise LoadError("redis-benchmark printed no result for %s:\n%s" % (
            ", ".join(missing), done.stdout[-2000:]))
    return out


def redis_cli(port, *args):
    """One redis-cli command; returns its stdout (raw, no type prefixes)."""
    done = subprocess.run([tool("redis-cli"), "-h", "127.0.0.1", "-p", str(port)] +
                          [str(a) for a in args],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LoadError("redis-cli %s failed: %s" % (" ".join(map(str, args)), done.stderr))
    return done.stdout


def redis_memory(port):
    """INFO memory's used_memory and used_memory_dataset (used_memory less
    Redis's overhead: client buffers, replication and AOF buffers, the
    keyspace's own tables). The dataset figure does not move with the query
    buffers of the services' many idle connections, so per-message figures
    use it."""
    out = {}
    for line in redis_cli(port, "INFO", "memory").splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("used_memory", "used_memory_dataset"):
            out[key] = int(value)
    if len(out) != 2:
        raise LoadError("INFO memory lacks used_memory or used_memory_dataset")
    return out


def redis_next_id(port, key="snap:next_id"):
    """The id counter (snaptext's, or a peer's key): how many sends were stored."""
    out = redis_cli(port, "GET", key).strip()
    return int(out) if out else 0
