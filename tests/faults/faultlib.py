"""faultlib: what the fault and soak tests share, on top of snaptest.

- Client: snaptest's keep-alive Client (to HAProxy), reopened after any
  error, that returns one record per request (status, latency, ids, error).
- Load: a few client threads, each looping one kind of request at a steady
  rate, all records kept for the assertions afterwards; mixed_load: the
  sends and reads most fault tests run.
- Probes of the running processes: RSS and open fds from /proc, Redis
  commands (snaptest's redis_cmd: INFO, SCAN), /metrics counters (snaptest's
  parser), HAProxy's server UP/DOWN log lines.
- restart_on_port: starts a service binary again on the port it had, so the
  HAProxy backends file written at start still points at it (snaptest has
  no helper for this; it lives here so the harness stays untouched).
- stack(): a snaptest.Stack for one test, stopped and checked afterwards.
- StallProxy: a TCP proxy between the services and Redis that can hold
  Redis's replies for a while on demand (a slow network, a stalled Redis).
- restart_redis_empty: Redis started again on its port with a new, empty
  data dir (a lost machine).
- Delivery / fault_summary: the strict accounting of the fault tests (every
  201 delivered exactly once, nothing else ever delivered) and the one
  machine-readable line per test (FAULT-SUMMARY {json}) that
  tests/faults/loop.sh adds up.

Not here: the tests and their assertions (tests/faults/test_*.py).
"""

import calendar
import contextlib
import http.client
import json
import os
import random
import re
import select
import socket
import tempfile
import threading
import time

import snaptest

MULT = snaptest.TIMEOUT_MULT


# ------------------------------------------------------------- figures --

def figure(test, **values):
    """One line of figures for docs/RELIABILITY.md: FIGURE <test> k=v ..."""
    parts = []
    for k, v in values.items():
        if isinstance(v, float):
            v = "%.3f" % v
        parts.append("%s=%s" % (k, v))
    print("FIGURE %s %s" % (test, " ".join(parts)), flush=True)


def percentile(values, p):
    """Nearest-rank percentile of values (p in 0..100); 0.0 when empty."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def parse_utc(text):
    """'YYYY-MM-DD HH:MM:SS' (UTC, API.md) -> epoch seconds."""
    return calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S"))


# -------------------------------------------------------------- client --

class Client(snaptest.Client):
    """snaptest's keep-alive Client (reopened after any error) whose every
    call returns a record dict: t0, t1, latency, status (None on a
    connection-level error), error (repr of the exception, or None), body
    (parsed JSON or text), retry_after, and whatever the caller adds."""

    def __init__(self, port, timeout=10.0, host="127.0.0.1"):
        super().__init__(port, host=host, timeout=timeout)

    def call(self, method, path, body=None, token=None, headers=None):
        h = {"X-Request-Id": "flt-%016x" % random.getrandbits(64)}
        h.update(headers or {})
        rec = {"method": method, "path": path, "status": None, "error": None,
               "body": None, "retry_after": None, "request_id": h["X-Request-Id"]}
        rec["t0"] = time.time()
        try:
            st, hdrs, rec["body"] = self.request(method, path, body=body, token=token,
                                                 headers=h)
            rec["status"] = st
            rec["retry_after"] = hdrs.get("retry-after")
            rec["more"] = hdrs.get("x-more-messages") == "true"
        except (OSError, http.client.HTTPException) as e:
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        rec["t1"] = time.time()
        rec["latency"] = rec["t1"] - rec["t0"]
        return rec


def send(client, user, text, timeout_s):
    """POST /chat; rec gets kind, user, text, and id on a 201."""
    rec = client.call("POST", "/chat", snaptest.chat_body(user, text, timeout_s))
    rec.update(kind="send", user=user, text=text, id=None)
    if rec["status"] == 201 and isinstance(rec["body"], dict):
        rec["id"] = rec["body"].get("id")
    return rec


def read(client, user):
    """GET /chats/{user}; rec gets kind, user, and ids/texts on a 200."""
    rec = client.call("GET", "/chats/" + user)
    rec.update(kind="read", user=user, ids=[], texts=[])
    if rec["status"] == 200 and isinstance(rec["body"], list):
        rec["ids"] = [m["id"] for m in rec["body"]]
        rec["texts"] = [m["text"] for m in rec["body"]]
    return rec


# ---------------------------------------------------------------- load --

class Load:
    """Client threads looping requests at a steady rate.

    add(name, step, rate): step(client, seq, rng) -> record dict; the thread
    calls it about `rate` times a second (never in bursts to catch up).
    Every record is kept in self.records (list.append is atomic)."""

    def __init__(self, port, timeout=10.0, seed=None):
        self.port = port
        self.timeout = timeout
        self.records = []
        self._stop = threading.Event()
        self._threads = []
        self._plans = []
        self._seed = seed if seed is not None else int(time.time())

    def add(self, name, step, rate):
        self._plans.append((name, step, float(rate)))
        return self

    def _run(self, name, step, rate, rng):
        client = Client(self.port, timeout=self.timeout)
        period = 1.0 / rate
        nxt = time.time()
        seq = 0
        try:
            while not self._stop.is_set():
                rec = step(client, seq, rng)
                rec["thread"] = name
                self.records.append(rec)
                seq += 1
                nxt += period
                delay = nxt - time.time()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    nxt = time.time()
        finally:
            client.close()

    def start(self):
        for i, (name, step, rate) in enumerate(self._plans):
            rng = random.Random(self._seed * 1000 + i)
            t = threading.Thread(target=self._run, args=(name, step, rate, rng),
                                 name="load-" + name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout=30.0):
        self._stop.set()
        for t in self._threads:
            t.join(timeout * MULT)
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, "load threads still running: %s" % alive

    def since(self, t_from, t_to=None, kind=None):
        return [r for r in self.records
                if r["t0"] >= t_from and (t_to is None or r["t0"] < t_to)
                and (kind is None or r.get("kind") == kind)]


def mixed_load(port, users, prefix, senders, send_rate, readers, read_rate, readable=None,
               msg_timeout=600, timeout=15.0):
    """The load of most fault tests: `senders` threads (send0, send1, ...)
    each sending send_rate messages a second to a random one of users, with
    the unique texts "<prefix>-<thread>-<n>" and msg_timeout seconds, and
    `readers` threads (read0, ...) each reading a random inbox of readable
    (default: users) read_rate times a second. Not started yet."""
    readable = users if readable is None else readable
    load = Load(port, timeout=timeout)
    for i in range(senders):
        load.add("send%d" % i, lambda c, n, rng, i=i: send(
            c, rng.choice(users), "%s-%d-%d" % (prefix, i, n), msg_timeout), rate=send_rate)
    for i in range(readers):
        load.add("read%d" % i, lambda c, n, rng: read(c, rng.choice(readable)), rate=read_rate)
    return load


def summary(records):
    """'n=.. ok=.. statuses={..} errors=.. p50=.. p99=.. max=..' as a dict."""
    lat = [r["latency"] for r in records]
    statuses = {}
    for r in records:
        key = r["status"] if r["status"] is not None else "conn-error"
        statuses[key] = statuses.get(key, 0) + 1
    return {"n": len(records), "statuses": statuses,
            "p50_ms": 1000 * percentile(lat, 50), "p99_ms": 1000 * percentile(lat, 99),
            "max_ms": 1000 * max(lat) if lat else 0.0}


def fmt_statuses(statuses):
    return ",".join("%s:%d" % (k, v) for k, v in sorted(statuses.items(), key=str))


def describe(rec):
    """A short line for an assertion message."""
    return "%s %s t0=%.3f lat=%.3fs status=%s error=%s body=%s request_id=%s" % (
        rec["method"], rec["path"], rec["t0"], rec["latency"], rec["status"], rec["error"],
        str(rec["body"])[:160], rec.get("request_id"))


# -------------------------------------------------- one-off API helpers --

def lookup_all(port, token, ids):
    """Admin lookup of every id: {id: (status, body)} over one connection."""
    c = Client(port)
    out = {}
    try:
        for mid in ids:
            r = c.call("GET", "/chat/%d" % mid, token=token)
            out[mid] = (r["status"] if r["error"] is None else r["error"], r["body"])
    finally:
        c.close()
    return out


def drain(port, users, rounds=3):
    """Reads every user's inbox until it answers []; returns the read records.
    Fails on anything but 200."""
    c = Client(port)
    recs = []
    try:
        for u in users:
            for _ in range(rounds):
                r = read(c, u)
                assert r["status"] == 200, ("drain", describe(r))
                recs.append(r)
                if not r["ids"]:
                    break
    finally:
        c.close()
    return recs


def wait_until(predicate, what, timeout):
    """snaptest.wait_until polling every 50 ms: returns when it first held."""
    return snaptest.wait_until(predicate, what, timeout, step=0.05)


# --------------------------------------------------------- process probes --

def proc_status_kb(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def fd_kinds(pid):
    """Open fds of pid by kind: {'socket': n, 'file': n, 'pipe': n, 'other': n}."""
    out = {"socket": 0, "file": 0, "pipe": 0, "other": 0}
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            target = os.readlink(os.path.join(d, name))
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:"):
            out["socket"] += 1
        elif target.startswith("pipe:"):
            out["pipe"] += 1
        elif target.startswith("/"):
            out["file"] += 1
        else:
            out["other"] += 1
    return out


def service_procs(stack):
    """[(name, Proc)] of every running service instance."""
    return [(p.name, p) for procs in stack.services.values() for p in procs if p.alive()]


# One parser of /metrics for every test: the harness's.
metrics = snaptest.metrics
metric_sum = snaptest.metric_sum


# ------------------------------------------------------------------ Redis --

def redis_cmd(port, *args, timeout=5.0):
    """snaptest.redis_cmd with a longer default timeout (a loaded machine)."""
    return snaptest.redis_cmd(port, *args, timeout=timeout)


def redis_info(port, section="memory"):
    out = {}
    for line in redis_cmd(port, "INFO", section).splitlines():
        if ":" in line and not line.startswith("#"):
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def redis_used_memory(port):
    return int(redis_info(port)["used_memory"])


def redis_keys(port, pattern):
    """Every key matching pattern, by SCAN (never KEYS)."""
    keys, cursor = [], "0"
    while True:
        cursor, batch = redis_cmd(port, "SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
        keys.extend(batch)
        if cursor == "0":
            return keys


# -------------------------------------------------------------- HAProxy --

def haproxy_log(stack):
    return stack.haproxy.stdout() + "\n" + stack.haproxy.stderr()


def haproxy_server_events(stack, server):
    """How many times HAProxy logged server (e.g. 'ingest/ingest1') DOWN and UP."""
    log = haproxy_log(stack)
    down = len(re.findall(r"Server %s is DOWN" % re.escape(server), log))
    up = len(re.findall(r"Server %s is UP" % re.escape(server), log))
    return down, up


def wait_server_state(stack, server, state, count, timeout=10.0):
    """Waits until HAProxy has logged server `state` ('DOWN'/'UP') at least
    `count` times; returns the time it was first seen."""
    idx = 0 if state == "DOWN" else 1
    return wait_until(lambda: haproxy_server_events(stack, server)[idx] >= count,
                      "HAProxy to log %s %s (#%d)" % (server, state, count), timeout)


# ------------------------------------------------------------- services --

def kind_of(proc):
    return proc.name.rstrip("0123456789")


def restart_on_port(stack, old, attempts=20):
    """Starts old's binary again listening on old.port (so HAProxy's fixed
    backends file still reaches it) and puts it in old's place in
    stack.services; old must be dead. Retries while the port is still held."""
    assert not old.alive(), "%s is still running" % old.name
    kind = kind_of(old)
    env = dict(stack.env)
    env["SNAPTEXT_LISTEN"] = "127.0.0.1:%d" % old.port
    last = None
    for _ in range(attempts):
        try:
            proc = snaptest.start_service(stack.binary(kind), old.name, env, root=stack.root)
        except snaptest.HarnessError as e:
            last = e
            time.sleep(0.25)
            continue
        assert proc.port == old.port, (proc.port, old.port)
        lst = stack.services[kind]
        lst[lst.index(old)] = proc
        stack.procs.append(proc)
        return proc
    raise last


def close_logs(proc):
    """Closes the log files of a process that was killed (Proc.kill leaves them open)."""
    for f in (proc._out, proc._err):
        if not f.closed:
            f.close()


@contextlib.contextmanager
def stack(**kwargs):
    """A Stack for one test: stopped afterwards; a service that did not exit
    0 or wrote a sanitizer report fails the test; logs printed on failure."""
    kwargs.setdefault("env", {"SNAPTEXT_AUTH": "open"})
    s = snaptest.Stack(**kwargs)
    failed = True
    try:
        yield s
        failed = False
    finally:
        problems = s.stop()
        if failed or problems:
            print(s.all_logs()[-12000:], flush=True)
        if os.environ.get("SNAP_KEEP_STACK") == "1":
            print("SNAP_KEEP_STACK=1: logs and data kept in %s" % s.root, flush=True)
        else:
            s.cleanup()
    assert not problems, "teardown problems: %s" % "; ".join(problems)


def unique(prefix):
    return "%s%d%03d" % (prefix, int(time.time()), random.randrange(1000))


def recipients(prefix, n):
    """n inbox names for one test: <prefix><i>_<unique>."""
    return ["%s%d_%s" % (prefix, i, unique("u")) for i in range(n)]


def duplicates(values):
    """Sorted values that occur more than once."""
    seen, dups = set(), set()
    for v in values:
        if v in seen:
            dups.add(v)
        seen.add(v)
    return sorted(dups)


class Problems:
    """Collects failed checks so one run reports everything that is wrong
    (and prints its figures first); assert_none() fails with all of them."""

    def __init__(self):
        self.items = []

    def check(self, ok, msg, recs=()):
        if not ok:
            self.items.append(msg + "".join("\n    " + describe(r) for r in list(recs)[:10]))
        return bool(ok)

    def assert_none(self):
        assert not self.items, "\n".join(self.items)


# ------------------------------------------------------------ Redis faults --

def restart_redis_empty(old, root=None):
    """Starts Redis again on old's port with a new, empty data dir (the AOF
    and everything in it are gone, as on a replaced machine)."""
    return snaptest.restart_redis(
        old, root=root, data_dir=tempfile.mkdtemp(prefix="snap-redisdata-empty-", dir=root))


class StallProxy:
    """A TCP proxy on a free loopback port in front of 127.0.0.1:target.

    stall(seconds): from now on, for `seconds`, nothing Redis sends reaches
    the client (each connection's reply bytes wait in the proxy, then go out
    in order): commands still reach Redis and run, their replies are late.
    Connections are never closed by the proxy. stop() closes everything."""

    def __init__(self, target):
        self.target = target
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(128)
        self.port = self.lsock.getsockname()[1]
        self.hold_until = 0.0
        self.stalls = []          # (t_start, t_end) of every stall
        self.connections = 0
        self._stop = threading.Event()
        self._socks = []
        self._lock = threading.Lock()
        t = threading.Thread(target=self._accept, name="stall-accept", daemon=True)
        t.start()

    def stall(self, seconds):
        t = time.time()
        self.hold_until = t + seconds
        self.stalls.append((t, t + seconds))

    def _accept(self):
        while not self._stop.is_set():
            try:
                r, _, _ = select.select([self.lsock], [], [], 0.2)
                if not r:
                    continue
                client, _ = self.lsock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target), timeout=2)
            except OSError:
                client.close()
                continue
            for sk in (client, upstream):
                sk.settimeout(None)
                sk.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks += [client, upstream]
                self.connections += 1
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, src, dst, replies):
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if replies:
                    while time.time() < self.hold_until and not self._stop.is_set():
                        time.sleep(min(0.01, max(0.0, self.hold_until - time.time())))
                dst.sendall(data)
        except OSError:
            pass
        for sk in (src, dst):
            try:
                sk.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
        for sk in socks + [self.lsock]:
            try:
                sk.close()
            except OSError:
                pass


# --------------------------------------------------- strict accounting --

def read_all(client, user, limit=None, key=None):
    """GET /chats/{user}[?limit=N] with an optional Idempotency-Key; the
    record also gets `more` (X-More-Messages: true)."""
    path = "/chats/" + user + ("?limit=%d" % limit if limit else "")
    rec = client.call("GET", path, headers={"Idempotency-Key": key} if key else None)
    rec.update(kind="read", user=user, ids=[], texts=[])
    rec.setdefault("more", False)
    if rec["status"] == 200 and isinstance(rec["body"], list):
        rec["ids"] = [m["id"] for m in rec["body"]]
        rec["texts"] = [m["text"] for m in rec["body"]]
    return rec


class Delivery:
    """What the load saw, judged strictly: every send with a unique text;
    every 200 read's messages collected. After the load, settle() drains
    every inbox until each 201 is delivered (the repair may need a few
    seconds to put index entries back) or `timeout` passes, then reads once
    more after a pause so that anything delivered late shows up as twice."""

    def __init__(self, records, users):
        self.users = list(users)
        self.sends = [r for r in records if r.get("kind") == "send"]
        self.reads = [r for r in records if r.get("kind") == "read" and r["status"] == 200]
        self.by_text = {}
        for r in self.sends:
            assert r["text"] not in self.by_text, "send texts must be unique: %r" % r["text"]
            self.by_text[r["text"]] = r
        self.acked = {r["id"]: r for r in self.sends if r["status"] == 201}
        self.drain_s = 0.0

    def delivered(self):
        return [(i, t, r["user"]) for r in self.reads for i, t in zip(r["ids"], r["texts"])]

    def settle(self, port, timeout=20.0, pause=1.5):
        t0 = time.time()
        c = Client(port)
        try:
            deadline = t0 + timeout * MULT
            while True:
                for u in self.users:
                    while True:
                        r = read(c, u)
                        assert r["status"] == 200, ("drain", describe(r))
                        self.reads.append(r)
                        if not r["ids"]:
                            break
                got = {i for i, _, _ in self.delivered()}
                if set(self.acked) <= got or time.time() > deadline:
                    break
                time.sleep(0.5)
            time.sleep(pause)
            for u in self.users:
                r = read(c, u)
                assert r["status"] == 200, ("final read", describe(r))
                self.reads.append(r)
        finally:
            c.close()
        self.drain_s = time.time() - t0

    def judge(self, problems):
        """Checks every strict promise into problems; returns the figures."""
        dl = self.delivered()
        ids = [i for i, _, _ in dl]
        twice = duplicates(ids)
        lost = sorted(set(self.acked) - set(ids))
        refused_delivered, unknown, mismatched = [], [], []
        for mid, text, user in dl:
            s = self.by_text.get(text)
            if s is None:
                unknown.append(mid)
            elif s["status"] != 201:
                refused_delivered.append(s)
            elif s["id"] != mid or s["user"] != user:
                mismatched.append((mid, text, user, s["id"], s["user"]))
        problems.check(not lost, "acknowledged (201) but never delivered: %d ids %s; their "
                       "sends:" % (len(lost), lost[:20]), [self.acked[i] for i in lost])
        problems.check(not twice, "delivered more than once: %s" % twice[:20])
        problems.check(not refused_delivered, "delivered although the send was not answered "
                       "201 (%d):" % len(refused_delivered), refused_delivered)
        problems.check(not unknown, "delivered messages no send of this test sent: %s" % unknown[:20])
        problems.check(not mismatched, "delivered with another id or to another user than "
                       "acknowledged: %s" % mismatched[:10])
        return {"acknowledged": len(self.acked), "delivered": len(set(ids)), "lost": len(lost),
                "twice": len(twice), "refused_but_delivered": len(refused_delivered),
                "sends": len(self.sends),
                "refused": len([r for r in self.sends if r["status"] != 201])}


def fault_summary(test, figures, **extra):
    """One machine-readable line per fault test (tests/faults/loop.sh sums them)."""
    d = {"test": test}
    d.update(figures)
    d.update(extra)
    print("FAULT-SUMMARY " + json.dumps(d, sort_keys=True), flush=True)
