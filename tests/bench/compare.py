"""compare.py: snaptext as users deploy it, beside the reference stacks,
in one sitting.

The stacks, all started first and left running until the end:
  * snaptext default: exactly deploy/local/up.sh's layout and settings
    (users x1, ingest x1, fetch x1, SNAPTEXT_THREADS and HAProxy's
    SNAPTEXT_SERVER_MAXCONN left at their defaults), open auth;
  * snaptext tuned: the bench's own layout (bench.py --instances,
    --service-threads, --server-maxconn), only when it differs from the
    default one;
  * every peer of peers.py, in its own durability and in snaptext's.
Every stack sits behind a HAProxy started from the project's haproxy.cfg
the same way (rate limit lifted), on free loopback ports.

Then rounds: in each, every stack in turn (A, B, C, ..., then A, B, C, ...
again) runs send, read and mixed 80/20, each snaptext stack first its
service floor (a HAProxy of the same settings sending every request to
ingest as GET /healthz). This machine's throughput drifts by a quarter
within minutes, so each figure reported is the median over the rounds:
req/s, p99 and CPU time per request, the utime + stime that every process
of the stack (HAProxy, each service or worker, Redis) spent during the load
divided by the requests completed.

Reads need full inboxes: before each read load the stack gets, through its
API, enough inboxes of --read-batch messages for its read rate (estimated
from its send rate, then from its previous round), but never more than two
loads' worth of its sends; a read load whose supply runs out is counted
over the time until it did (read.lua).

Not here: the peers themselves (peers.py), printing (report.py).
"""

import math
import os
import statistics
import time

import peers
import snaptest
import wrkrun
from wrkrun import LoadError

WORKLOADS = ("floor", "send", "read", "mixed")
DEFAULT_NAME = "snaptext default (up.sh)"
# up.sh's layout and the services' and haproxy.cfg's defaults.
UPSH_INSTANCES, UPSH_THREADS, UPSH_SERVER_MAXCONN, UPSH_HAPROXY_THREADS = 1, 128, 64, 1
TUNED_NAME = "snaptext tuned (bench)"
FLOOR_REQUEST = "the send load's POST /chat, rewritten by HAProxy to GET /healthz on ingest"


class Target:
    """One stack of the comparison, snaptext's or a peer's."""

    def __init__(self, name, kind, port, watch, stored, layout, durability, stack):
        self.name, self.kind, self.port = name, kind, port
        self.watch = watch          # -> [(name, pid)]
        self.stored = stored        # -> sends stored so far (the id counter)
        self.layout, self.durability = layout, durability
        self.stack = stack          # has stop()
        self.floor = None           # (port, watch) of the floor HAProxy (snaptext only)
        self.read_est = None        # reads/s last round
        self.fill_errors = 0        # failed sends of a peer's last fill (see _fill)


def _snap_target(name, stack, layout, start_floor):
    t = Target(name, "snaptext", stack.port, lambda: [(p.name, p.pid) for p in stack.procs],
               lambda: wrkrun.redis_next_id(stack.redis.port), layout,
               "SQLite synchronous=FULL (WAL), Redis appendfsync everysec (the cold store decides delivery)", stack)
    t.floor = start_floor
    return t


def _floor_haproxy(stack, root, cfg, env):
    """The floor's HAProxy for one floor load, stopped right after it: while
    it runs, the connections it keeps open each hold a civetweb worker of
    ingest, which the stack's own HAProxy would then miss (with the default
    32 workers and 24 connections per server, its health checks time out)."""
    saved = snaptest.HAPROXY_CFG
    snaptest.HAPROXY_CFG = cfg
    try:
        proc = snaptest.start_haproxy({k: [p.port for p in v] for k, v in stack.services.items()},
                                      root=root, env=env)
    finally:
        snaptest.HAPROXY_CFG = saved
    deadline = time.monotonic() + 20
    while True:
        st, hdrs, _ = snaptest.request("POST", "/chat", port=proc.port,
                                       body={"username": "f0", "text": "x"})
        # answered by the service itself (its header), not by HAProxy's own /healthz
        if st == 200 and "no-store" in hdrs.get("cache-control", ""):
            return proc.port, proc
        if time.monotonic() > deadline:
            proc.stop(expect_clean=False)
            raise LoadError("the floor HAProxy never reached ingest (%s)" % st)
        time.sleep(0.05)


class Comparison:
    def __init__(self, sitting, root, hooks, kinds, durable_variants):
        self.s = sitting
        self.args = sitting.args
        self.root = root
        self.hooks = hooks          # from bench.py: tuned stack, its HAProxy env, floor config
        self.kinds = kinds
        self.durable_variants = durable_variants
        self.targets = []
        self.runs = []              # every measured load, every round
        self.problems = []

    # --- stacks ---
    def start(self):
        log = self.s.log
        installed = peers.install(self.kinds, log) if self.kinds else {}
        floor_cfg = self.hooks["floor_config"](os.path.join(self.root, "compare-floor.cfg"))

        log("comparison: starting snaptext with up.sh's layout and defaults")
        d = os.path.join(self.root, "snap-default")
        os.makedirs(d)
        stack = snaptest.Stack(env={"SNAPTEXT_AUTH": "open"}, instances=UPSH_INSTANCES, root=d)
        self._check_defaults(stack)
        self.targets.append(_snap_target(
            DEFAULT_NAME, stack, "users x1, ingest x1, fetch x1, SNAPTEXT_THREADS default (128), "
            "SNAPTEXT_SERVER_MAXCONN default (64), 1 HAProxy thread",
            lambda st=stack, where=d: _floor_haproxy(st, where, floor_cfg, None)))

        same = (self.args.instances, self.args.service_threads, self.args.server_maxconn,
                self.args.haproxy_threads) == \
            (UPSH_INSTANCES, UPSH_THREADS, UPSH_SERVER_MAXCONN, UPSH_HAPROXY_THREADS)
        if same and not self.args.compare_skip_tuned:
            log("comparison: the bench's layout is up.sh's; it runs once, as the default")
        if not self.args.compare_skip_tuned and not same:
            log("comparison: starting snaptext with the bench's layout")
            stack = self.hooks["tuned_stack"]()
            self.targets.append(_snap_target(
                TUNED_NAME, stack, "users x1, ingest x%d, fetch x%d, SNAPTEXT_THREADS %d, "
                "SNAPTEXT_SERVER_MAXCONN %d, %d HAProxy thread(s)" % (
                    self.args.instances, self.args.instances, self.args.service_threads,
                    self.args.server_maxconn, self.args.haproxy_threads),
                lambda st=stack: _floor_haproxy(st, st.root, floor_cfg,
                                                self.hooks["tuned_haproxy_env"])))

        for kind in self.kinds:
            for durable in self.durable_variants:
                log("comparison: starting the %s peer" % peers.label(kind, durable))
                d = os.path.join(self.root, "peer-%s%s" % (kind, "-durable" if durable else ""))
                os.makedirs(d)
                p = peers.PeerStack(kind, durable, installed, d)
                self.targets.append(Target(
                    p.name, "peer", p.port, p.watch, p.stored, peers.DESCRIPTION[kind],
                    peers.SNAP_DURABILITY if durable else peers.OWN_DURABILITY, p))

    def _check_defaults(self, stack):
        """The default stack really runs without the bench's overrides."""
        for p in stack.procs:
            env = _environ(p.pid)
            for k in ("SNAPTEXT_THREADS", "SNAPTEXT_SERVER_MAXCONN", "SNAPTEXT_HAPROXY_THREADS"):
                if k in env:
                    raise LoadError("%s of the default stack runs with %s=%s" % (p.name, k,
                                                                                env[k]))

    def stop(self):
        for t in reversed(self.targets):
            try:
                self.problems.extend(t.stack.stop())
                if not self.args.keep and hasattr(t.stack, "cleanup"):
                    t.stack.cleanup()
            except Exception as e:  # keep stopping the others
                self.problems.append("stopping %s: %s" % (t.name, e))
        self.targets = []

    # --- loads ---
    def _record(self, t, workload, rnd, fig, warm_errors=0, notes=None):
        run = {"stack": t.name, "workload": workload, "round": rnd, "warmup_errors": warm_errors,
               "notes": notes or {}}
        run.update(fig)
        self.runs.append(run)
        self.s.log("  %s / %s: %.0f req/s, p99 %.2f ms, CPU %s us/req, %d errors" % (
            t.name, workload, fig["req_s"], fig["p99_ms"] or 0,
            "%.0f" % fig["cpu_us_per_req"] if fig["cpu_us_per_req"] is not None else "-",
            fig["errors"]))
        return run

    def _load(self, port, script, args, watch, warm=True):
        warm_errors = 0
        if warm:
            w = self.s.wrk(port, script, args, self.args.compare_warmup)
            warm_errors = w["errors"]
        fig = self.s.wrk(port, script, args, self.args.compare_duration, watch=watch)
        return fig, warm_errors

    def _fill(self, t, prefix, users, rate):
        """users inboxes of --read-batch messages each, through the API, in
        wrk runs about as long as the sends should take (wrk runs for its
        whole duration even when every thread has stopped at its quota).
        A failed send of snaptext's ends the run; a peer's (its own limit) is
        counted in t.fill_errors, reported with that round's read (Go with
        snaptext's durability has answered a few fill sends with errors)."""
        total = users * self.args.read_batch
        t.fill_errors = 0
        before = t.stored()
        stored = 0
        # wrk may stop a thread before its last request went out: a message
        # or two short of the quota leaves an inbox with one less
        for _ in range(20):
            if stored >= total - 2 * self.args.threads:
                return
            remaining = total - stored
            quota = int(math.ceil(remaining / float(self.args.threads)))
            dur = int(min(120, math.ceil(remaining / max(rate, 50.0) * 1.1) + 1))
            fig = self.s.wrk(t.port, "send.lua", {"prefix": prefix, "users": users, "text": 100,
                                                  "timeout": 3600, "quota": quota,
                                                  "offset": stored}, dur)
            if fig["errors"]:
                if t.kind == "snaptext":
                    raise LoadError("%s: %d errors while filling (%s)" % (
                        t.name, fig["errors"], fig["errors_detail"]))
                t.fill_errors += fig["errors"]
                self.s.log("  %s: %d errors while filling (%s), reported with its read" % (
                    t.name, fig["errors"], fig["errors_detail"]))
            now = t.stored() - before
            if now <= stored:
                raise LoadError("%s: filling made no progress (%d of %d)" % (t.name, now, total))
            stored = now
        raise LoadError("%s: filling %d inboxes stored %d of %d messages" % (
            t.name, users, stored, total))

    def round(self, rnd):
        a = self.args
        for t in self.targets:
            if t.floor:
                port, proc = t.floor()
                try:
                    watch = [("haproxy", proc.pid)] + [(n, pid) for n, pid in t.watch()
                                                       if pid != t.stack.haproxy.pid]
                    fig, we = self._load(port, "send.lua", {"prefix": "f", "users": 1000,
                                                            "text": 100, "timeout": 3600}, watch)
                finally:
                    self.problems.extend(proc.stop(expect_clean=False))
                    proc.cleanup()
                self._record(t, "floor", rnd, fig, we, {"request": FLOOR_REQUEST})
            send_args = {"prefix": "s", "users": 1000, "text": 100, "timeout": 3600}
            fig, we = self._load(t.port, "send.lua", send_args, t.watch())
            send = self._record(t, "send", rnd, fig, we)

            # read: a supply of full inboxes for about one load, at most two
            # loads' worth of sends to fill
            send_rate = max(send["req_s"], 50.0)
            est = t.read_est or 2 * send_rate
            users = int(min(est * a.compare_duration * 1.25,
                            send_rate * 2 * a.compare_duration / a.read_batch))
            users = max(users, 4 * a.connections)
            prefix = "r%d_" % rnd
            self._fill(t, prefix, users, send_rate)
            fig = self.s.wrk(t.port, "read.lua", {"prefix": prefix, "from": 0, "to": users},
                             a.compare_duration, watch=t.watch())
            c = fig["counters"]
            self._record(t, "read", rnd, fig, 0, {
                "inboxes_filled": users, "messages_per_inbox": a.read_batch,
                "fill_errors": t.fill_errors,
                "reads": c.get("reads"), "empty_reads": c.get("empty"),
                "messages_returned": c.get("msgs"),
                "supply_ran_out": bool(c.get("exhausted", 0) >= a.threads)})
            t.read_est = max(fig["req_s"], 50.0)

            fig, we = self._load(t.port, "mixed.lua", {"prefix": "x%d_" % rnd, "users": 1000,
                                                       "text": 100, "timeout": 3600}, t.watch())
            c = fig["counters"]
            self._record(t, "mixed", rnd, fig, we, {
                "sends": c.get("sends"), "reads": c.get("reads"), "empty_reads": c.get("empty"),
                "messages_returned": c.get("msgs")})

    # --- results ---
    def medians(self):
        out = []
        for t in self.targets_seen():
            for w in WORKLOADS:
                runs = [r for r in self.runs if r["stack"] == t["name"] and r["workload"] == w]
                if not runs:
                    continue
                med = lambda key: _median([r[key] for r in runs])
                groups = sorted({g for r in runs for g in (r["cpu_us_per_req_by_service"] or {})})
                out.append({
                    "stack": t["name"], "kind": t["kind"], "workload": w, "rounds": len(runs),
                    "req_s": med("req_s"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
                    "cpu_us_per_req": med("cpu_us_per_req"),
                    "cpu_us_per_req_by_service": {
                        g: _median([(r["cpu_us_per_req_by_service"] or {}).get(g)
                                    for r in runs]) for g in groups},
                    "req_s_rounds": [r["req_s"] for r in runs],
                    "cpu_us_per_req_rounds": [r["cpu_us_per_req"] for r in runs],
                    "errors": sum(r["errors"] + r["warmup_errors"] for r in runs)})
        return out

    def targets_seen(self):
        seen, out = set(), []
        for r in self.runs:
            if r["stack"] not in seen:
                seen.add(r["stack"])
                kind = next((t.kind for t in self.all_targets if t.name == r["stack"]), "peer")
                out.append({"name": r["stack"], "kind": kind})
        return out

    def ratios(self, medians):
        """snaptext's req/s over each peer's, and the peer's CPU per request
        over snaptext's, per workload (medians over the rounds)."""
        by = {(m["stack"], m["workload"]): m for m in medians}
        out = []
        for snap in (DEFAULT_NAME, TUNED_NAME):
            for t in self.targets_seen():
                if t["kind"] != "peer":
                    continue
                for w in ("send", "read", "mixed"):
                    a, b = by.get((snap, w)), by.get((t["name"], w))
                    if not a or not b or not b["req_s"]:
                        continue
                    out.append({"snaptext": snap, "peer": t["name"], "workload": w,
                                "req_s_ratio": round(a["req_s"] / b["req_s"], 2),
                                "cpu_ratio": (round(b["cpu_us_per_req"] / a["cpu_us_per_req"], 2)
                                              if a["cpu_us_per_req"] and b["cpu_us_per_req"]
                                              else None)})
        return out

    def checks(self):
        out = []
        for t in self.targets_seen():
            runs = [r for r in self.runs if r["stack"] == t["name"]]
            detail = []
            for r in runs:
                where = "%s round %d" % (r["workload"], r["round"] + 1)
                if r["requests"] <= 0 or r["req_s"] <= 0:
                    detail.append("%s: no figures" % where)
                if r["errors"] or r["warmup_errors"]:
                    detail.append("%s: %d errors %s" % (where, r["errors"] + r["warmup_errors"],
                                                         r["errors_detail"]))
                if r["workload"] in ("read", "mixed"):
                    reads = int(r["notes"].get("reads") or 0)
                    empty = int(r["notes"].get("empty_reads") or 0)
                    if reads == 0 or not r["notes"].get("messages_returned"):
                        detail.append("%s: reads returned no messages" % where)
                    # mixed: a slow stack's warm-up reaches fewer of its users
                    # than it reads in the measured run, so allow more there
                    elif empty > (0.05 if r["workload"] == "read" else 0.25) * reads:
                        detail.append("%s: %d of %d reads were empty" % (where, empty, reads))
            out.append(("comparison: %s" % t["name"], not detail, "; ".join(detail)))
        return out

    def results(self):
        med = self.medians()
        return {
            "rounds": self.args.compare_rounds,
            "duration_s": self.args.compare_duration,
            "warmup_s": self.args.compare_warmup,
            "order": [t.name for t in self.all_targets],
            "stacks": [{"name": t.name, "kind": t.kind, "layout": t.layout,
                        "durability": t.durability} for t in self.all_targets],
            "medians": med,
            "ratios": self.ratios(med),
            "runs": self.runs,
        }


def _median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def _environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return dict(kv.partition("=")[::2] for kv in
                        f.read().decode("utf-8", "replace").split("\0") if kv)
    except OSError:
        return {}


def run(sitting, root, hooks):
    """Runs the whole comparison; returns its results (also when it failed
    part way: what was measured until then) and its checks."""
    a = sitting.args
    kinds = [k for k in a.peers.split(",") if k] if a.peers else []
    durable = [False] if a.compare_own_only else [False, True]
    c = Comparison(sitting, root, hooks, kinds, durable)
    c.all_targets = c.targets
    failure = None
    try:
        c.start()
        for rnd in range(a.compare_rounds):
            sitting.log("comparison: round %d of %d (%s)" % (
                rnd + 1, a.compare_rounds, ", ".join(t.name for t in c.targets)))
            c.round(rnd)
    except (LoadError, snaptest.HarnessError, OSError) as e:
        # what was measured until then is still reported; anything else
        # (a signal) ends the whole run, after the stacks are stopped
        failure = "%s: %s" % (type(e).__name__, e)
        sitting.log("comparison failed: %s" % failure)
    finally:
        c.all_targets = list(c.targets)
        c.stop()
    res = c.results()
    checks = c.checks()
    checks.append(("comparison: clean teardown", not c.problems, "; ".join(c.problems)))
    if failure:
        res["failure"] = failure
        checks.append(("comparison completed", False, failure))
    return res, checks
