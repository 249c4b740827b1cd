"""bench.py: snaptext's benchmark, every figure from one sitting.

In order, on free loopback ports, each load with wrk (2 threads, 64
connections) after a warm-up of the same load:
  1. the proxy ceiling: HAProxy with the project's own haproxy.cfg (same
     global, defaults, bind and frontend rules) answering every request
     itself instead of passing it on;
  2. the store ceiling: redis-benchmark INCR and SET, unpipelined, on the
     stack's Redis (AOF, fsync always) and INCR on a Redis without AOF;
  3. an `open`-mode stack (Redis, users x1, ingest xN, fetch xN, HAProxy,
     SQLite in a temp dir): first the service floor, a second HAProxy from
     the stack's config that sends every request to ingest as GET /healthz
     (HAProxy and civetweb, no store work), then send, admin lookup, read,
     mixed 80/20;
  4. a `required`-mode stack: send with a bearer token;
  5. the comparison (compare.py): snaptext with deploy/local/up.sh's
     layout and defaults, snaptext with this bench's layout, and the
     reference stacks of tests/bench/peers (peers.py), in alternating
     rounds, medians of req/s, p99 and CPU time per request;
  6. with --scale only: read and send latency with 1,000 and with
     1,000,000 stored messages.
Every HAProxy started from the stack's config gets SNAPTEXT_SERVER_MAXCONN
(--server-maxconn). It records the CPU and RSS of every process (and CPU
time per request, summed over the stack's processes), Redis memory per hot message,
prints one table, writes the figures as JSON with a PNG chart beside it,
and exits non-zero when any request failed (or any check did not hold).
Speed itself is never asserted. The service binaries come from
SNAP_USERS_BIN / SNAP_INGEST_BIN / SNAP_FETCH_BIN (run.sh builds them).

Not here: measuring one load (wrkrun.py), printing and files (report.py),
starting servers (tests/harness/snaptest.py), the requests (*.lua).
"""

import argparse
import datetime
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))

import snaptest  # noqa: E402
import compare  # noqa: E402
import report  # noqa: E402
import wrkrun  # noqa: E402
from wrkrun import LoadError, run_wrk  # noqa: E402

TEXT_BYTES = 100          # every snap text in the workloads, exactly
RECIPIENTS = 1000         # send and mixed workloads spread over this many users
SEND_TIMEOUT_S = 3600     # long enough that nothing expires during a run
SCALE_TIMEOUT_S = 2592000  # the longest timeout the services accept by default
REQUIRED_SENDERS = 8      # registered senders whose tokens the required-mode send uses
PASSWORD = "bench password 1"


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="tests/bench/run.sh",
        description="snaptext benchmark: proxy and store ceilings, then the snaptext "
                    "workloads, in one sitting.")
    p.add_argument("--duration", type=int, default=15,
                   help="seconds of each measured load (default 15)")
    p.add_argument("--warmup", type=int, default=None,
                   help="seconds of the warm-up before each load (default: duration/3, 1 to 5)")
    p.add_argument("--smoke", action="store_true",
                   help="3-second run of everything, no scaling check (CI)")
    p.add_argument("--scale", action="store_true",
                   help="also the scaling check: 1,000 vs 1,000,000 stored messages")
    p.add_argument("--scale-messages", type=int, default=1000000,
                   help="stored messages of the large scaling stage (default 1000000)")
    p.add_argument("--scale-users", type=int, default=100000,
                   help="users they are spread over (default 100000)")
    p.add_argument("--out", default=None,
                   help="JSON output path (default build-release/bench-results/<time>.json); "
                        "the PNG chart is written beside it")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--instances", type=int, default=1,
                   help="ingest and fetch instances each (default 1, as deploy/local/up.sh "
                        "runs them; 2 is its SNAPTEXT_LOCAL_INSTANCES=2)")
    p.add_argument("--service-threads", type=int, default=128,
                   help="SNAPTEXT_THREADS of every service (default 128: civetweb keeps a "
                        "worker per open connection, and HAProxy keeps up to one per client "
                        "connection open to each backend)")
    p.add_argument("--haproxy-threads", type=int, default=1,
                   help="SNAPTEXT_HAPROXY_THREADS of every HAProxy of the run (default 1, "
                        "as deployed)")
    p.add_argument("--server-maxconn", type=int, default=64,
                   help="SNAPTEXT_SERVER_MAXCONN of every HAProxy: connections it holds open "
                        "to each server at most (default 64: HAProxy may hold as many as the "
                        "services have spare workers, and they run --service-threads, 128 by "
                        "default; must be below --service-threads)")
    p.add_argument("--read-batch", type=int, default=2,
                   help="messages waiting in each inbox the read workload reads (2)")
    p.add_argument("--keep", action="store_true", help="keep the temp dirs and logs")
    c = p.add_argument_group(
        "comparison", "snaptext with up.sh's defaults and with the bench's layout beside the "
        "reference stacks (tests/bench/peers), in alternating rounds (compare.py)")
    c.add_argument("--compare-rounds", type=int, default=3,
                   help="rounds; each figure is the median over them (3)")
    c.add_argument("--compare-duration", type=int, default=5,
                   help="seconds of each measured load of the comparison (5)")
    c.add_argument("--compare-warmup", type=int, default=2,
                   help="seconds of the warm-up before each load of the comparison (2)")
    c.add_argument("--peers", default="flask,node,go",
                   help="reference stacks, comma-separated, of flask,node,go (all; '' for none)")
    c.add_argument("--compare-own-only", action="store_true",
                   help="only each peer's own durability, not the variant with snaptext's")
    c.add_argument("--compare-skip-tuned", action="store_true",
                   help="leave the bench's own layout out of the comparison")
    c.add_argument("--no-compare", action="store_true", help="no comparison at all")
    c.add_argument("--compare-only", action="store_true",
                   help="only the comparison (no ceilings, no single-sitting rows)")
    a = p.parse_args(argv)
    if a.smoke:
        # one tiny round: every stack still starts and answers every load
        a.duration = 3
        a.scale = False
        a.compare_rounds, a.compare_duration, a.compare_warmup = 1, 1, 1
        a.compare_own_only = a.compare_skip_tuned = True
    if a.duration < 1:
        p.error("--duration must be at least 1 second")
    if a.warmup is None:
        a.warmup = max(1, min(5, a.duration // 3))
    if a.threads < 1 or a.connections < a.threads:
        p.error("need at least one wrk thread and one connection per thread")
    if a.instances < 1 or a.read_batch < 1 or a.service_threads < 1 or a.server_maxconn < 1 \
            or a.haproxy_threads < 1:
        p.error("--instances, --service-threads, --server-maxconn, --haproxy-threads and "
                "--read-batch must be "
                "at least 1")
    if a.server_maxconn >= a.service_threads:
        p.error("--server-maxconn (%d) must be below --service-threads (%d): HAProxy holds up "
                "to that many connections to each server, and civetweb keeps a worker per "
                "open connection, so the services need workers left over for health checks "
                "and /metrics" % (a.server_maxconn, a.service_threads))
    if a.compare_rounds < 1 or a.compare_duration < 1 or a.compare_warmup < 1:
        p.error("--compare-rounds, --compare-duration and --compare-warmup must be at least 1")
    bad = [k for k in a.peers.split(",") if k and k not in ("flask", "node", "go")]
    if bad:
        p.error("unknown peer %s (flask, node, go)" % ", ".join(bad))
    if a.no_compare and a.compare_only:
        p.error("--no-compare and --compare-only exclude each other")
    if a.scale_users < 1 or a.scale_messages < 1000:
        p.error("--scale-users must be >= 1 and --scale-messages >= 1000")
    return a


# ------------------------------------------------------------- the sitting --

class Sitting:
    """Everything one run measured, and every process it still has to stop."""

    def __init__(self, args):
        self.args = args
        self.rows = []          # one per workload, in table order
        self.rss = {}           # {stack: {process: {"idle", "end", "peak"}}}
        self.redis_memory = {}
        self.scale = None
        self.problems = []      # teardown problems (exit status, sanitizer reports)
        self.failure = None     # the exception that ended the run early, as text
        self.live = []          # Stack or Proc objects not stopped yet
        self.keep_dirs = []
        self.comparison = None  # compare.run()'s results
        self.compare_checks = []
        self.log = log

    # --- loads ---
    def wrk(self, port, script, args, duration, watch=(), threads=None, connections=None):
        t = threads or self.args.threads
        a = dict(args)
        a["threads"] = t
        return run_wrk(port, script, a, duration, threads=t,
                       connections=connections or self.args.connections, watch=watch)

    def measure(self, name, kind, port, script, args, watch, notes=None, warm_args=None):
        """Warm-up (warm_args, or the same load), then the measured run."""
        log("%s: warm-up %ds" % (name, self.args.warmup))
        warm = self.wrk(port, script, warm_args or args, self.args.warmup)
        if warm["errors"]:
            log("%s: %d errors during the warm-up (%s)" % (name, warm["errors"],
                                                           warm["errors_detail"]))
        log("%s: measuring %ds" % (name, self.args.duration))
        fig = self.wrk(port, script, args, self.args.duration, watch=watch)
        return self.add_row(name, kind, fig, notes, warmup_errors=warm["errors"])

    def add_row(self, name, kind, fig, notes=None, warmup_errors=0):
        row = {"name": name, "kind": kind}
        row.update(fig)
        row["warmup_s"] = self.args.warmup
        row["warmup_errors"] = warmup_errors
        row["notes"] = notes or {}
        self.rows.append(row)
        log("%s: %.0f req/s, p50 %.2f ms, p99 %.2f ms, %d errors" % (
            name, row["req_s"], row["p50_ms"] or 0, row["p99_ms"] or 0, row["errors"]))
        return row

    # --- processes ---
    def stop(self, thing):
        if thing in self.live:
            self.live.remove(thing)
        if isinstance(thing, snaptest.Stack):
            # HAProxy first, with SIGTERM and its exit status not judged:
            # after the loads of the sanitizer suite's bench_smoke, HAProxy
            # 2.6.12 has died of a SIGSEGV in its soft stop (SIGUSR1, what
            # snaptest sends; dmesg: "segfault at 70", the same code address
            # each time), every request long answered. The loads are over
            # here, so there is nothing for a soft stop to drain; the
            # services' own clean exits are still checked below.
            if thing.haproxy is not None:
                thing.haproxy.stop_signal = signal.SIGTERM
                thing.haproxy.stop(expect_clean=False)
            self.problems.extend(thing.stop())
            if self.args.keep:
                self.keep_dirs.append(thing.root)
            else:
                thing.cleanup()
        else:
            self.problems.extend(thing.stop(expect_clean=False))
            if self.args.keep:
                self.keep_dirs.append(thing.dir)
            else:
                thing.cleanup()

    def stop_all(self):
        for thing in list(reversed(self.live)):
            try:
                self.stop(thing)
            except Exception as e:  # keep stopping the others
                self.problems.append("stopping %r: %s" % (thing, e))


def watch_of(stack):
    return [(p.name, p.pid) for p in stack.procs]


def idle_rss(stack, settle=1.0):
    time.sleep(settle)
    return {p.name: wrkrun.rss_kb(p.pid) for p in stack.procs}


def record_rss(sitting, label, idle, rows):
    """idle: {proc: kB} before any load; end: the last sample of the last
    load; peak: the highest sample over the stack's loads."""
    out = {}
    last = rows[-1]["machine"]["rss_kb"] if rows else {}
    for name, kb in idle.items():
        peak = max([r["machine"]["rss_peak_kb"].get(name, 0) for r in rows] + [kb or 0])
        out[name] = {"idle": kb, "end": last.get(name), "peak": peak}
    sitting.rss[label] = out


# ---------------------------------------------------------------- HAProxy --

def haproxy_env(s, extra=None):
    """What every HAProxy of the run started from the stack's config gets in
    its environment, on top of snaptest's (bind address, rate limit)."""
    e = {"SNAPTEXT_SERVER_MAXCONN": str(s.args.server_maxconn),
         "SNAPTEXT_HAPROXY_THREADS": str(s.args.haproxy_threads)}
    e.update(extra or {})
    return e


def check_haproxy_env(s, proc):
    """The running HAProxy really got the run's settings (from /proc)."""
    want = haproxy_env(s)
    try:
        with open("/proc/%d/environ" % proc.pid, "rb") as f:
            got = dict(kv.partition("=")[::2] for kv in
                       f.read().decode("utf-8", "replace").split("\0") if kv)
    except OSError as e:
        raise LoadError("cannot read the environment of haproxy (pid %d): %s" % (proc.pid, e))
    for k, v in want.items():
        if got.get(k) != v:
            raise LoadError("haproxy (pid %d) runs with %s=%r, not %r" % (proc.pid, k, got.get(k),
                                                                          v))


def start_bench_haproxy(s, backends, root, cfg, env=None):
    """A HAProxy of our own (the ceiling, the floor): snaptest.start_haproxy
    with cfg, a variant of the project's haproxy.cfg, and the run's settings."""
    # snaptest.start_haproxy always loads the project's haproxy.cfg; point it
    # at the variant for this one call.
    saved = snaptest.HAPROXY_CFG
    snaptest.HAPROXY_CFG = cfg
    try:
        proc = snaptest.start_haproxy(backends, root=root, env=haproxy_env(s, env))
    finally:
        snaptest.HAPROXY_CFG = saved
    s.live.append(proc)
    check_haproxy_env(s, proc)
    return proc


def start_stack(s, auth):
    """A snaptest.Stack of the run's services. snaptest starts the stack's
    HAProxy with an environment of its own choosing; for this one stack its
    start_haproxy adds the run's settings (haproxy_env) to it."""
    orig = snaptest.start_haproxy

    def with_run_env(backends, root=None, env=None):
        return orig(backends, root=root, env=haproxy_env(s, env))
    snaptest.start_haproxy = with_run_env
    try:
        stack = snaptest.Stack(env=stack_env(s, auth), instances=s.args.instances)
    finally:
        snaptest.start_haproxy = orig
    s.live.append(stack)
    check_haproxy_env(s, stack.haproxy)
    return stack


def frontend_public(lines):
    """(first, end): the line of 'frontend public' and the line after its
    section, in the lines of a HAProxy config."""
    start = next((i for i, l in enumerate(lines) if re.match(r"^frontend\s+public\b", l)), None)
    if start is None:
        raise LoadError("%s has no 'frontend public' section" % snaptest.HAPROXY_CFG)
    end = len(lines)
    for i in range(start + 1, len(lines)):
        if re.match(r"^[A-Za-z]", lines[i]):
            end = i
            break
    return start, end


# --------------------------------------------------------------- ceiling --

CEILING_RULE = ("    # tests/bench: the proxy ceiling answers every request itself.\n"
                "    http-request return status 200 content-type application/json "
                "string '{\"bench\":\"ceiling\"}'\n")


def ceiling_config(path):
    """The project's haproxy.cfg with one rule added at the end of the
    public frontend: every request that passed the frontend's own rules
    (request id, rate limit, routes, body limit) is answered by HAProxy."""
    with open(snaptest.HAPROXY_CFG) as f:
        lines = f.read().splitlines(True)
    _, end = frontend_public(lines)
    lines.insert(end, CEILING_RULE)
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def run_ceiling(s, root):
    # The rate limit counts per client address over 10 s: far above
    # anything one loopback client can send here.
    proc = start_bench_haproxy(s, {"users": [], "ingest": [], "fetch": []}, root,
                               ceiling_config(os.path.join(root, "ceiling.cfg")),
                               env={"SNAPTEXT_RATE_LIMIT": "2000000000"})
    st, _, body = snaptest.request("POST", "/chat", port=proc.port,
                                   body={"username": "c0", "text": "x"})
    if st != 200 or body != {"bench": "ceiling"}:
        raise LoadError("the ceiling HAProxy answered %s %r" % (st, body))
    args = {"prefix": "c", "users": RECIPIENTS, "text": TEXT_BYTES,
            "timeout": SEND_TIMEOUT_S, "check": "0"}
    s.measure("proxy ceiling (HAProxy answers)", "ceiling", proc.port, "send.lua", args,
              watch=[("haproxy", proc.pid)],
              notes={"request": "the send workload's POST /chat, answered 200 by HAProxy"})
    s.stop(proc)


# ---------------------------------------------------------- service floor --

FLOOR_NAME = "service floor (HAProxy -> ingest /healthz)"
EMPTY_READ_NAME = "empty read GET /chats/{user}"
FLOOR_RULES = (
    "    # tests/bench: the service floor. After all the frontend's own rules\n"
    "    # (its own answer to GET /healthz among them), every request goes to\n"
    "    # ingest as GET /healthz, which the service answers itself.\n"
    "    http-request set-method GET\n"
    "    http-request set-path /healthz\n"
    "    use_backend ingest\n")
# The service's /healthz and HAProxy's own answer carry the same body; only
# the service's carries this header (shared/src/http.c).
SERVICE_HEADER = ("cache-control", "no-store")


def floor_config(path):
    """The project's haproxy.cfg with FLOOR_RULES inserted in the public
    frontend before its first use_backend: the frontend's http-request
    rules all run first (HAProxy runs every http-request rule before any
    use_backend), then the rewrite, then the first use_backend wins."""
    with open(snaptest.HAPROXY_CFG) as f:
        lines = f.read().splitlines(True)
    start, end = frontend_public(lines)
    first = next((i for i in range(start, end) if re.match(r"^\s*use_backend\b", lines[i])),
                 None)
    if first is None:
        raise LoadError("%s: 'frontend public' has no use_backend" % snaptest.HAPROXY_CFG)
    lines.insert(first, FLOOR_RULES)
    with open(path, "w") as f:
        f.writelines(lines)
    return path


def from_service(headers):
    return SERVICE_HEADER[1] in headers.get(SERVICE_HEADER[0], "")


def service_answers(stack, name, route="other", status="200"):
    """How many requests the instances of a service answered on one
    metrics route (the built-ins /healthz, /readyz and /metrics are all
    "other") with one status, from their own /metrics."""
    pat = re.compile(r'^snaptext_http_requests_total\{[^}]*route="%s",status="%s"\} (\d+)$' % (
        re.escape(route), re.escape(status)), re.M)
    total = 0
    for p in stack.services[name]:
        st, _, body = snaptest.request("GET", "/metrics", port=p.port)
        if st != 200 or not isinstance(body, str):
            raise LoadError("%s /metrics answered %s" % (p.name, st))
        total += sum(int(n) for n in pat.findall(body))
    return total


def run_floor(s, stack, root):
    """HAProxy (the stack's config, same frontend) passing every request of
    the send load on to ingest as GET /healthz: what a request costs through
    HAProxy and civetweb before any store work."""
    backends = {k: [p.port for p in v] for k, v in stack.services.items()}
    proc = start_bench_haproxy(s, backends, root, floor_config(os.path.join(root, "floor.cfg")))
    # Until HAProxy has ingest up (a 503 until then), then: the rewritten
    # request is answered by the service, HAProxy's own /healthz is not.
    deadline = time.monotonic() + 20
    while True:
        st, hdrs, body = snaptest.request("POST", "/chat", port=proc.port,
                                          body={"username": "f0", "text": "x"})
        if st != 503 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if st != 200 or body != {"status": "ok"} or not from_service(hdrs):
        raise LoadError("the floor HAProxy answered POST /chat with %s %r %r, not the "
                        "service's /healthz" % (st, hdrs, body))
    st, hdrs, body = snaptest.request("GET", "/healthz", port=proc.port)
    if st != 200 or from_service(hdrs):
        raise LoadError("HAProxy's own GET /healthz answer (%s %r) cannot be told from the "
                        "service's" % (st, hdrs))

    name = FLOOR_NAME
    args = {"prefix": "f", "users": RECIPIENTS, "text": TEXT_BYTES, "timeout": SEND_TIMEOUT_S}
    watch = [("haproxy", proc.pid)] + [(p.name, p.pid) for p in stack.procs
                                       if p is not stack.haproxy]
    log("%s: warm-up %ds" % (name, s.args.warmup))
    warm = s.wrk(proc.port, "send.lua", args, s.args.warmup)
    if warm["errors"]:
        log("%s: %d errors during the warm-up (%s)" % (name, warm["errors"],
                                                       warm["errors_detail"]))
    before = service_answers(stack, "ingest")
    log("%s: measuring %ds" % (name, s.args.duration))
    fig = s.wrk(proc.port, "send.lua", args, s.args.duration, watch=watch)
    answered = service_answers(stack, "ingest") - before
    s.add_row(name, "floor", fig,
              {"request": "the send workload's POST /chat, rewritten by HAProxy to GET /healthz "
                          "and answered by ingest",
               "ingest_answered": answered}, warmup_errors=warm["errors"])
    s.stop(proc)


# ----------------------------------------------------------------- store --

def run_store(s, stack, root):
    n = 50000 * s.args.duration
    log("redis-benchmark INCR, SET (-P 1 -c %d -n %d) on the stack's Redis" % (
        s.args.connections, n))
    conf = "AOF, appendfsync everysec, as the stack"
    # One test per run, so that each row has its own CPU figures.
    for test, name in (("INCR", "redis INCR (stack's Redis)"),
                       ("SET", "redis SET 100 B (stack's Redis)")):
        res = wrkrun.run_redis_benchmark(stack.redis.port, [test], n,
                                         clients=s.args.connections, data_bytes=TEXT_BYTES,
                                         watch=[("redis", stack.redis.pid)])
        s.add_row(name, "store", res[test], {"redis": conf, "clients": s.args.connections,
                                             "pipeline": 1})
    # redis-benchmark's literal keys; they must not count in the memory figures.
    wrkrun.redis_cli(stack.redis.port, "DEL", "counter:__rand_int__", "key:__rand_int__")

    plain = snaptest.start_redis(root=root, appendonly=False, name="redis-noaof")
    s.live.append(plain)
    try:
        res = wrkrun.run_redis_benchmark(plain.port, ["INCR"], n, clients=s.args.connections,
                                         watch=[("redis", plain.pid)])
        s.add_row("redis INCR (no AOF)", "store", res["INCR"],
                  {"redis": "appendonly no: the same Redis without persistence",
                   "clients": s.args.connections, "pipeline": 1})
    finally:
        s.stop(plain)


# ------------------------------------------------------------ fill inboxes --

def memory_per_message(before, after, messages):
    """Redis memory that `messages` new hot messages took, from two
    wrkrun.redis_memory() readings."""
    out = {"messages": messages, "text_bytes": TEXT_BYTES, "before": before, "after": after,
           "bytes_per_message": None, "overhead_bytes_per_message": None,
           "used_memory_bytes_per_message": None}
    if messages > 0:
        per = (after["used_memory_dataset"] - before["used_memory_dataset"]) / float(messages)
        out["bytes_per_message"] = round(per, 1)
        out["overhead_bytes_per_message"] = round(per - TEXT_BYTES, 1)
        out["used_memory_bytes_per_message"] = round(
            (after["used_memory"] - before["used_memory"]) / float(messages), 1)
    return out


def fill(s, port, redis_port, prefix, users, total, rate_hint, timeout=SEND_TIMEOUT_S,
         offset=0, what="fill"):
    """Sends `total` messages through the API (wrk, POST /chat): message n
    goes to <prefix><(offset + n) % users>. Returns how many were stored
    (from the Redis id counter). Runs in rounds of a bounded length; each
    wrk thread stops at its quota."""
    id0 = wrkrun.redis_next_id(redis_port)
    stored = 0
    rate = max(rate_hint, 50.0)
    t0 = time.monotonic()
    for _ in range(100):
        remaining = total - stored
        if remaining <= 0:
            break
        quota = int(math.ceil(remaining / float(s.args.threads)))
        dur = int(min(120, max(1, math.ceil(remaining / rate * 1.15) + 1)))
        fig = s.wrk(port, "send.lua", {"prefix": prefix, "users": users, "text": TEXT_BYTES,
                                       "timeout": timeout, "offset": offset + stored,
                                       "quota": quota}, dur)
        if fig["errors"]:
            raise LoadError("%s: %d errors while filling (%s)" % (what, fig["errors"],
                                                                   fig["errors_detail"]))
        now = wrkrun.redis_next_id(redis_port) - id0
        if now <= stored:
            raise LoadError("%s: no progress (stored %d of %d)" % (what, stored, total))
        stored = now
        rate = max(stored / (time.monotonic() - t0), 50.0)
        if total >= 20000:
            log("%s: %d of %d stored (%.0f/s)" % (what, stored, total, rate))
    else:
        raise LoadError("%s: gave up after 100 rounds (%d of %d)" % (what, stored, total))
    return stored


# ------------------------------------------------------- open-mode stack --

def stack_env(s, auth):
    # snaptest.Stack sets 8 threads for the tests; this overrides it.
    return {"SNAPTEXT_AUTH": auth, "SNAPTEXT_THREADS": str(s.args.service_threads)}


def run_open_stack(s, root):
    log("starting the open-mode stack (users x1, ingest x%d, fetch x%d)" % (
        s.args.instances, s.args.instances))
    stack = start_stack(s, "open")
    idle = idle_rss(stack)
    first = len(s.rows)
    watch = watch_of(stack)
    port, rport = stack.port, stack.redis.port

    run_store(s, stack, root)
    run_floor(s, stack, root)

    # empty read: users nobody has written to, so every read is a 200 with
    # []; what a read costs beyond the floor when there is nothing to claim
    row = s.measure(EMPTY_READ_NAME, "snaptext", port, "read.lua",
                    {"prefix": "e", "from": 0, "to": 10 ** 9}, watch,
                    warm_args={"prefix": "ew", "from": 0, "to": 10 ** 9})
    c = row["counters"]
    row["notes"].update({"reads": c.get("reads"), "empty_reads": c.get("empty"),
                         "messages_returned": c.get("msgs")})

    # send: the warm-up goes to the same recipients, so every inbox exists
    # before the measured run and the memory growth is the messages' own.
    send_args = {"prefix": "s", "users": RECIPIENTS, "text": TEXT_BYTES,
                 "timeout": SEND_TIMEOUT_S}
    log("send: warm-up %ds" % s.args.warmup)
    warm = s.wrk(port, "send.lua", send_args, s.args.warmup)
    mem0, id0 = wrkrun.redis_memory(rport), wrkrun.redis_next_id(rport)
    log("send: measuring %ds" % s.args.duration)
    fig = s.wrk(port, "send.lua", send_args, s.args.duration, watch=watch)
    mem1, id1 = wrkrun.redis_memory(rport), wrkrun.redis_next_id(rport)
    sent = id1 - id0
    s.redis_memory["send_workload"] = memory_per_message(mem0, mem1, sent)
    s.redis_memory["send_workload"]["inboxes"] = RECIPIENTS
    send_row = s.add_row("send POST /chat", "snaptext", fig,
                         {"recipients": RECIPIENTS, "text_bytes": TEXT_BYTES,
                          "messages_stored": sent}, warmup_errors=warm["errors"])

    # admin lookup over the ids the measured send stored
    if sent < 1:
        raise LoadError("the send workload stored no message")
    token = stack.admin_token()
    s.measure("admin GET /chat/{id}", "snaptext", port, "admin.lua",
              {"lo": id0 + 1, "hi": id1, "token": token}, watch,
              notes={"ids": [id0 + 1, id1]})

    # read: inboxes filled first, each read once (read.lua)
    batch = s.args.read_batch
    send_rate = max(send_row["req_s"], 50.0)
    warm_users = max(200, int(send_rate * s.args.warmup / batch))
    log("read: filling %d inboxes with %d messages each (warm-up supply)" % (warm_users, batch))
    fill(s, port, rport, "rw", warm_users, warm_users * batch, send_rate, what="read warm-up fill")
    log("read: warm-up %ds" % s.args.warmup)
    warm = s.wrk(port, "read.lua", {"prefix": "rw", "from": 0, "to": warm_users},
                 s.args.warmup)
    read_rate = max(warm["req_s"], 50.0)
    users = int(math.ceil(read_rate * s.args.duration * 1.25)) + 2 * s.args.connections
    log("read: filling %d inboxes with %d messages each (est. %.0f reads/s, %.0f s to fill)" % (
        users, batch, read_rate, users * batch / send_rate))
    fill(s, port, rport, "r", users, users * batch, send_rate, what="read fill")
    log("read: measuring up to %ds" % s.args.duration)
    fig = s.wrk(port, "read.lua", {"prefix": "r", "from": 0, "to": users}, s.args.duration,
                watch=watch)
    c = fig["counters"]
    s.add_row("read GET /chats/{user}", "snaptext", fig,
              {"messages_per_inbox": batch, "inboxes_filled": users,
               "reads": c.get("reads"), "empty_reads": c.get("empty"),
               "messages_returned": c.get("msgs"),
               "supply_ran_out": bool(c.get("exhausted", 0) >= s.args.threads)},
              warmup_errors=warm["errors"])

    # mixed: 80 % sends, 20 % reads (mixed.lua); warm-up on the same users
    mixed_args = {"prefix": "x", "users": RECIPIENTS, "text": TEXT_BYTES,
                  "timeout": SEND_TIMEOUT_S}
    row = s.measure("mixed 80% send/20% read", "snaptext", port, "mixed.lua", mixed_args, watch)
    c = row["counters"]
    row["notes"].update({"sends": c.get("sends"), "reads": c.get("reads"),
                         "empty_reads": c.get("empty"), "messages_returned": c.get("msgs")})

    record_rss(s, "open", idle, [r for r in s.rows[first:] if r["kind"] == "snaptext"])
    s.stop(stack)


# --------------------------------------------------- required-mode stack --

def run_required_stack(s):
    log("starting the required-mode stack")
    stack = start_stack(s, "required")
    idle = idle_rss(stack)
    first = len(s.rows)
    tokens = []
    for i in range(REQUIRED_SENDERS):
        tokens.append(stack.register("bench_sender_%d" % i, PASSWORD)[1])
    tok_file = os.path.join(stack.root, "tokens.txt")
    with open(tok_file, "w") as f:
        f.write("\n".join(tokens) + "\n")
    # Without a token the route must refuse: the mode is really `required`.
    st, _, _ = stack.req("POST", "/chat", {"username": "t0", "text": "x"})
    if st != 401:
        raise LoadError("required mode accepted a send without a token (%s)" % st)
    s.measure("send POST /chat (required, bearer)", "snaptext", stack.port, "send.lua",
              {"prefix": "t", "users": RECIPIENTS, "text": TEXT_BYTES,
               "timeout": SEND_TIMEOUT_S, "tokens": tok_file}, watch_of(stack),
              notes={"senders": REQUIRED_SENDERS, "recipients": RECIPIENTS})
    record_rss(s, "required", idle, s.rows[first:])
    s.stop(stack)


# ------------------------------------------------------------ scale check --

def scale_probe(s, stack, label, probe_seconds):
    """Send then read, one connection, one request at a time: the cost of
    one request with this many messages stored. The probe's own messages
    go to fresh users and are all read back, so the stored total stays."""
    prefix = "p%s_" % label
    send = s.wrk(stack.port, "send.lua", {"prefix": prefix, "users": 10000000, "text": TEXT_BYTES,
                                          "timeout": SCALE_TIMEOUT_S},
                 probe_seconds, threads=1, connections=1)
    sent = int(send["counters"].get("sent", 0))
    read = s.wrk(stack.port, "read.lua", {"prefix": prefix, "from": 0, "to": sent},
                 probe_seconds, threads=1, connections=1)
    out = {}
    for name, fig in (("send", send), ("read", read)):
        out[name] = {k: fig[k] for k in ("requests", "req_s", "p50_ms", "p90_ms", "p99_ms",
                                         "mean_ms", "errors")}
    out["read"]["empty_reads"] = read["counters"].get("empty")
    out["read"]["messages_returned"] = read["counters"].get("msgs")
    return out


def run_scale(s):
    log("scaling check: starting a fresh open-mode stack")
    stack = start_stack(s, "open")
    rport = stack.redis.port
    users = s.args.scale_users
    small, large = 1000, s.args.scale_messages
    probe_seconds = max(3, min(s.args.duration, 10))
    send_rate = next((r["req_s"] for r in s.rows if r["name"] == "send POST /chat"), 1000.0)
    stages = []
    stored = 0
    for target in (small, large):
        log("scaling check: storing %d messages over up to %d users" % (target, users))
        t0 = time.monotonic()
        stored += fill(s, stack.port, rport, "z", users, target - stored, send_rate,
                       timeout=SCALE_TIMEOUT_S, offset=stored, what="scale fill")
        load_s = time.monotonic() - t0
        mem = wrkrun.redis_memory(rport)
        log("scaling check: probing with %d stored" % stored)
        probe = scale_probe(s, stack, str(target), probe_seconds)
        stages.append({"stored_messages": stored, "users": min(users, stored),
                       "load_seconds": round(load_s, 1), "redis_memory": mem,
                       "probe": probe})
    a, b = stages
    mem = memory_per_message(a["redis_memory"], b["redis_memory"],
                             b["stored_messages"] - a["stored_messages"])
    mem["inboxes"] = min(users, b["stored_messages"])
    s.scale = {
        "probe": "one connection, one request at a time, %d s each" % probe_seconds,
        "stages": stages,
        "read_p50_growth": round(b["probe"]["read"]["p50_ms"] /
                                 max(a["probe"]["read"]["p50_ms"], 1e-6), 3),
        "send_p50_growth": round(b["probe"]["send"]["p50_ms"] /
                                 max(a["probe"]["send"]["p50_ms"], 1e-6), 3),
    }
    s.redis_memory["scale_fill"] = mem
    s.stop(stack)


def scale_table(scale):
    head = ["stored", "send p50", "send p99", "read p50", "read p99", "msgs/read", "errors"]
    lines = []
    for st in scale["stages"]:
        p = st["probe"]
        lines.append(["%d" % st["stored_messages"],
                      "%.2f" % p["send"]["p50_ms"], "%.2f" % p["send"]["p99_ms"],
                      "%.2f" % p["read"]["p50_ms"], "%.2f" % p["read"]["p99_ms"],
                      "%.2f" % (float(p["read"].get("messages_returned") or 0) /
                                max(p["read"]["requests"], 1)),
                      str(p["send"]["errors"] + p["read"]["errors"])])
    widths = [max(len(head[i]), *(len(l[i]) for l in lines)) for i in range(len(head))]
    fmt = lambda cols: "  ".join(c.rjust(widths[i]) for i, c in enumerate(cols))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(l) for l in lines])


# ------------------------------------------------------------------ main --

def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def machine_info():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                         None)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version()}


def run_comparison(s, root):
    d = os.path.join(root, "compare")
    os.makedirs(d)

    def tuned_stack():
        stack = start_stack(s, "open")
        s.live.remove(stack)  # compare.run stops it
        return stack
    hooks = {"floor_config": floor_config, "tuned_stack": tuned_stack,
             "tuned_haproxy_env": haproxy_env(s)}
    s.comparison, s.compare_checks = compare.run(s, d, hooks)


def checks(s):
    """(name, ok, detail) for every check; speed is never one of them."""
    out = []
    if s.args.compare_only:
        return s.compare_checks + [("clean teardown", not s.problems, "; ".join(s.problems))] + (
            [("run completed", False, s.failure.strip().splitlines()[-1])] if s.failure else [])
    expected = ["proxy ceiling (HAProxy answers)", "redis INCR (stack's Redis)",
                "redis SET 100 B (stack's Redis)", "redis INCR (no AOF)", FLOOR_NAME,
                EMPTY_READ_NAME, "send POST /chat",
                "admin GET /chat/{id}", "read GET /chats/{user}", "mixed 80% send/20% read",
                "send POST /chat (required, bearer)"]
    by_name = {r["name"]: r for r in s.rows}
    for name in expected:
        r = by_name.get(name)
        if r is None:
            out.append((name, False, "did not run"))
            continue
        figures = r["requests"] > 0 and r["req_s"] > 0 and r["p50_ms"] is not None and \
            r["p99_ms"] is not None
        detail = []
        if not figures:
            detail.append("no figures")
        if r["errors"]:
            detail.append("%d errors %s" % (r["errors"], r["errors_detail"]))
        if r.get("warmup_errors"):
            detail.append("%d errors during the warm-up" % r["warmup_errors"])
        if name == FLOOR_NAME:
            # Every request wrk counted reached ingest (its own count of the
            # built-ins also holds the health checks: at least as many).
            answered = int(r["notes"].get("ingest_answered") or 0)
            if answered < r["requests"]:
                detail.append("ingest answered %d of the %d requests" % (answered,
                                                                         r["requests"]))
        if name == EMPTY_READ_NAME:
            # (reads counts requests sent, the last few of which wrk never
            # answers: what was answered must all be empty)
            got = int(r["notes"].get("messages_returned") or 0)
            if not r["notes"].get("empty_reads") or got:
                detail.append("%s empty reads, %d messages returned" % (
                    r["notes"].get("empty_reads"), got))
        if name.startswith("read") or name.startswith("mixed"):
            reads = int(r["notes"].get("reads") or 0)
            empty = int(r["notes"].get("empty_reads") or 0)
            if reads == 0 or not r["notes"].get("messages_returned"):
                detail.append("reads returned no messages")
            elif empty > 0.05 * reads:
                detail.append("%d of %d reads were empty" % (empty, reads))
        out.append((name, not detail, "; ".join(detail)))
    if s.args.scale:
        ok = s.scale is not None and all(
            st["probe"]["send"]["errors"] == 0 and st["probe"]["read"]["errors"] == 0
            for st in s.scale["stages"])
        out.append(("scaling check", ok, "" if ok else "did not complete without errors"))
    out.extend(s.compare_checks)
    out.append(("clean teardown", not s.problems, "; ".join(s.problems)))
    if s.failure:
        out.append(("run completed", False, s.failure.strip().splitlines()[-1]))
    return out


def default_out():
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(snaptest.SOURCE_DIR, "build-release", "bench-results", stamp + ".json")


class Terminated(Exception):
    pass


def _terminated(signum, frame):
    raise Terminated("signal %d" % signum)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The bench sets every setting it changes itself; one left in the
    # environment would also reach the stack that is meant to run defaults.
    for k in ("SNAPTEXT_THREADS", "SNAPTEXT_SERVER_MAXCONN", "SNAPTEXT_HAPROXY_THREADS"):
        if os.environ.pop(k, None) is not None:
            log("ignoring %s from the environment (--service-threads, --server-maxconn, "
                "--haproxy-threads)" % k)
    out_json = os.path.abspath(args.out or default_out())
    out_png = os.path.splitext(out_json)[0] + ".png"
    # TERM (a ctest timeout) or Ctrl-C still stops every process we started:
    # the handler raises an ordinary exception, which snaptest.Stack also
    # cleans up after when it comes in the middle of starting a stack.
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)

    s = Sitting(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    binaries = {}
    root = None
    try:
        for name in ("users", "ingest", "fetch"):
            var = "SNAP_%s_BIN" % name.upper()
            path = os.environ.get(var)
            if not path or not os.access(path, os.X_OK):
                raise LoadError("%s must name the %s binary (run.sh builds and sets it)" % (
                    var, name))
            binaries[name] = path
        for t in ("wrk", "redis-benchmark", "redis-cli", "redis-server", "haproxy", "gnuplot"):
            wrkrun.tool(t)
        root = tempfile.mkdtemp(prefix="snap-bench-")
        log("%s run: %ds per load after a %ds warm-up, wrk %d threads / %d connections; "
            "results -> %s" % ("smoke" if args.smoke else "full", args.duration, args.warmup,
                               args.threads, args.connections, out_json))
        if not args.compare_only:
            run_ceiling(s, root)
            run_open_stack(s, root)
            run_required_stack(s)
        if not args.no_compare:
            run_comparison(s, root)
        if args.scale:
            run_scale(s)
    except Exception as e:
        s.failure = traceback.format_exc()
        print(s.failure, file=sys.stderr, flush=True)
        if isinstance(e, Terminated):
            log("stopped by a signal; stopping every process of the run")
    finally:
        s.stop_all()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if root and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        elif root:
            s.keep_dirs.append(root)

    ceiling = next((r["req_s"] for r in s.rows if r["kind"] == "ceiling"), None)
    for r in s.rows:
        r["ratio"] = round(r["req_s"] / ceiling, 4) if ceiling else None

    results = {
        "schema": 1,
        "started_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ"),
        "mode": "smoke" if args.smoke else "full",
        "machine": machine_info(),
        "versions": {"haproxy": version_of(["haproxy", "-v"]),
                     "redis": version_of(["redis-server", "--version"]),
                     "wrk": version_of(["wrk", "-v"])},
        "settings": {"duration_s": args.duration, "warmup_s": args.warmup,
                     "wrk_threads": args.threads, "wrk_connections": args.connections,
                     "instances": {"users": 1, "ingest": args.instances,
                                   "fetch": args.instances},
                     "service_threads": args.service_threads,
                     "server_maxconn": args.server_maxconn,
                     "haproxy_threads": args.haproxy_threads,
                     "text_bytes": TEXT_BYTES, "recipients": RECIPIENTS,
                     "read_batch": args.read_batch, "log_level": "info"},
        "binaries": binaries,
        "ceiling_req_s": ceiling,
        "workloads": s.rows,
        "rss_kb": s.rss,
        "redis_memory": s.redis_memory,
        "scale": s.scale,
        "comparison": s.comparison,
    }
    results["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in checks(s)]
    # Failed requests of the measured runs and of their warm-ups.
    results["errors_total"] = sum(r["errors"] + r.get("warmup_errors", 0) for r in s.rows)
    if s.comparison:
        results["errors_total"] += sum(r["errors"] + r["warmup_errors"]
                                       for r in s.comparison["runs"])
    results["ok"] = all(c["ok"] for c in results["checks"])
    if s.failure:
        results["failure"] = s.failure

    print()
    print(report.table(s.rows))
    if s.rows:
        print()
        print("CPU during each load, %% of one core (this machine has %d):" % os.cpu_count())
        print(report.cpu_table([r for r in s.rows if r.get("machine")]))
    if s.rss:
        print()
        print("RSS (VmRSS) per process:")
        print(report.rss_table(s.rss))
    for label, m in s.redis_memory.items():
        if m.get("bytes_per_message") is not None:
            print("Redis memory per hot message (%s): %.0f bytes of used_memory_dataset, %.0f "
                  "beyond the %d-byte text (used_memory: %.0f) over %d messages in %d "
                  "inboxes" % (label, m["bytes_per_message"], m["overhead_bytes_per_message"],
                               TEXT_BYTES, m["used_memory_bytes_per_message"], m["messages"],
                               m["inboxes"]))
    if s.comparison and s.comparison["medians"]:
        cmp = s.comparison
        print()
        print("Comparison: medians of %d round(s), %d s per load after %d s of warm-up, stacks "
              "alternating in each round; CPU = utime + stime of every process of the stack "
              "(HAProxy, services or workers, Redis) per completed request:" % (
                  cmp["rounds"], cmp["duration_s"], cmp["warmup_s"]))
        print(report.compare_table(cmp["medians"]))
        print()
        print("CPU us per request by process:")
        print(report.compare_cpu_table(cmp["medians"]))
        if cmp["ratios"]:
            print()
            print("snaptext / peer (req/s ratio; in brackets the peer's CPU per request over "
                  "snaptext's):")
            print(report.ratio_table(cmp["ratios"]))
        print()
        for st in cmp["stacks"]:
            print("  %s: %s; %s" % (st["name"], st["layout"], st["durability"]))
    if s.scale:
        print()
        print("Scaling check (%s):" % s.scale["probe"])
        print(scale_table(s.scale))
        print("read p50 grew x%.2f, send p50 x%.2f from the small to the large stage" % (
            s.scale["read_p50_growth"], s.scale["send_p50_growth"]))

    try:
        report.write_json(out_json, results)
        print()
        print("JSON: %s" % out_json)
        if s.rows:
            report.write_chart(out_png, s.rows)
            print("chart: %s" % out_png)
    except (OSError, LoadError) as e:
        results["ok"] = False
        print("writing the results failed: %s" % e, flush=True)
        results["checks"].append({"name": "results written", "ok": False, "detail": str(e)})
    for d in s.keep_dirs:
        print("kept: %s" % d)

    if results["errors_total"]:
        bad = ["%s: %d" % (r["name"], r["errors"] + r.get("warmup_errors", 0))
               for r in s.rows if r["errors"] or r.get("warmup_errors")]
        bar = "!" * 72
        print("\n%s\n!! REQUESTS FAILED: %s\n!! These figures are not valid; see the services' "
              "logs (--keep).\n%s" % (bar, ", ".join(bad), bar), flush=True)
    print()
    passed = failed = 0
    for c in results["checks"]:
        if c["ok"]:
            passed += 1
            print("ok %s" % c["name"])
        else:
            failed += 1
            print("not ok %s: %s" % (c["name"], c["detail"]))
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and results["errors_total"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
