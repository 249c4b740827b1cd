"""snaptest: start real snaptext servers for tests and stop them by PID.

Everything a test needs to run redis-server, the three service binaries and
HAProxy on free loopback ports, each in its own temp dir with its stdout and
stderr in files, plus a small HTTP client (request: one request on a new
connection; Client: a keep-alive connection) and a tiny test runner that
ends with the line "N passed, N failed".

Teardown (Proc.stop) sends SIGTERM, waits a bounded time, escalates to
SIGKILL, and fails the test if a service did not exit 0 or wrote a
sanitizer report. Not here: the tests themselves (tests/api/, tests/wire/).
"""

import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SOURCE_DIR = os.environ.get(
    "SNAP_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
# Scales every wait, for slow runs (sanitizers, valgrind).
TIMEOUT_MULT = float(os.environ.get("SNAP_TIMEOUT_MULTIPLIER", "1"))
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)|"
    r"runtime error:|SUMMARY: (Address|Undefined|Leak)")


class HarnessError(Exception):
    pass


def free_port(host="127.0.0.1"):
    """A loopback port that was free a moment ago (bind to 0, then close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def which_or_fail(name):
    path = shutil.which(name) or (os.path.exists("/usr/sbin/" + name) and "/usr/sbin/" + name)
    if not path:
        raise HarnessError("%s is not installed (tests/run.sh installs it)" % name)
    return path


class Proc:
    """One child process with its own dir and log files."""

    def __init__(self, name, argv, env=None, cwd=None, root=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="snap-%s-" % name, dir=root)
        self.stdout_path = os.path.join(self.dir, "stdout.log")
        self.stderr_path = os.path.join(self.dir, "stderr.log")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.argv = argv
        self.popen = subprocess.Popen(argv, env=full_env, cwd=cwd or self.dir,
                                      stdout=self._out, stderr=self._err,
                                      stdin=subprocess.DEVNULL)
        self.pid = self.popen.pid
        self.port = None
        self.returncode = None
        self.stop_signal = signal.SIGTERM

    def alive(self):
        return self.popen.poll() is None

    def stdout(self):
        with open(self.stdout_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stderr(self):
        with open(self.stderr_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, predicate, what, timeout=10.0):
        """Polls predicate until true; fails at once if the child died."""
        deadline = time.time() + timeout * TIMEOUT_MULT
        while time.time() < deadline:
            if predicate():
                return
            if not self.alive():
                raise HarnessError("%s exited with %s while waiting for %s\n%s" % (
                    self.name, self.popen.returncode, what, self.logs()))
            time.sleep(0.02)
        raise HarnessError("%s: timed out waiting for %s\n%s" % (self.name, what, self.logs()))

    def logs(self, tail=4000):
        return "--- %s stdout ---\n%s\n--- %s stderr ---\n%s" % (
            self.name, self.stdout()[-tail:], self.name, self.stderr()[-tail:])

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL, as a crash would; the exit status is then not checked."""
        self.signal(signal.SIGKILL)
        self.popen.wait(timeout=10)
        self.returncode = self.popen.returncode

    def stop(self, expect_clean=True, timeout=10.0):
        """SIGTERM, bounded wait, SIGKILL. Returns a list of problems."""
        problems = []
        if self.alive():
            os.kill(self.pid, self.stop_signal)
            try:
                self.popen.wait(timeout=timeout * TIMEOUT_MULT)
            except subprocess.TimeoutExpired:
                problems.append("%s did not exit within %.0fs of SIGTERM; killed" % (
                    self.name, timeout * TIMEOUT_MULT))
                self.popen.kill()
                self.popen.wait()
        if self.returncode is None:
            self.returncode = self.popen.returncode
            if expect_clean and self.returncode != 0:
                problems.append("%s exited with status %s" % (self.name, self.returncode))
        self._out.close()
        self._err.close()
        if SANITIZER_RE.search(self.stderr()):
            problems.append("%s wrote a sanitizer report" % self.name)
        return problems

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- servers --

def start_redis(root=None, port=None, appendonly=True, extra=None, name="redis", fsync="everysec"):
    """redis-server on a free loopback port with its own dir; retries if
    the port was taken between choosing and binding."""
    binary = which_or_fail("redis-server")
    last = None
    for _ in range(5):
        p = port or free_port()
        argv = [binary, "--port", str(p), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes" if appendonly else "no",
                "--appendfsync", fsync, "--daemonize", "no",
                "--maxmemory-policy", "noeviction", "--protected-mode", "no"]
        argv += extra or []
        # Its data dir (AOF) is separate from the log dir, so a restart
        # with the same argv replays the same AOF.
        argv += ["--dir", tempfile.mkdtemp(prefix="snap-redisdata-", dir=root)]
        proc = Proc(name, argv, root=root)
        try:
            proc.wait_for(lambda: port_open(p), "redis port %d" % p)
            proc.port = p
            return proc
        except HarnessError as e:
            last = e
            proc.stop(expect_clean=False)
            if "Address already in use" not in proc.stdout() + proc.stderr():
                raise
    raise last


def restart_redis(old, root=None, data_dir=None):
    """Starts redis again on the same port and data dir (AOF is replayed);
    data_dir: another one instead (a new, empty one: a lost machine)."""
    argv = list(old.argv)
    i = argv.index("--dir")
    argv[i + 1] = data_dir or argv[i + 1]
    assert argv[i + 1]
    proc = Proc(old.name, argv, root=root)
    proc.wait_for(lambda: port_open(old.port), "redis port %d" % old.port, timeout=15)
    proc.port = old.port
    return proc


def wait_until(pred, what, timeout, step=0.1):
    """Polls pred every step seconds (connection errors count as "not yet")
    until it is true and returns that time; fails after timeout seconds
    (scaled by SNAP_TIMEOUT_MULTIPLIER)."""
    deadline = time.time() + timeout * TIMEOUT_MULT
    while time.time() < deadline:
        try:
            if pred():
                return time.time()
        except (OSError, RespError):
            pass
        time.sleep(step)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class RespError(Exception):
    pass


def _resp_read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed mid-reply")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode("utf-8", "replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise ConnectionError("not RESP: %r" % line[:40])


def redis_cmd(port, *args, timeout=1.0):
    """One Redis command on a new loopback connection (a few lines of RESP,
    so tests need no Redis client library). Raises RespError on -ERR."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    req = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        with s.makefile("rb") as f:
            return _resp_read(f)


def start_sentinel(root, master_port, name, master="mymaster", extra_conf=()):
    """redis-sentinel on a free loopback port watching 127.0.0.1:master_port
    (quorum 2, down after 1 s, failover timeout 3 s); extra_conf: more lines
    for its configuration (e.g. requirepass, sentinel auth-pass)."""
    binary = which_or_fail("redis-sentinel")
    for _ in range(5):
        port = free_port()
        d = tempfile.mkdtemp(prefix="snap-%s-cfg-" % name, dir=root)
        conf = os.path.join(d, "sentinel.conf")  # sentinel rewrites it: its own copy
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\n" % (port, d))
            f.write("sentinel monitor %s 127.0.0.1 %d 2\n" % (master, master_port))
            f.write("sentinel down-after-milliseconds %s 1000\n" % master)
            f.write("sentinel failover-timeout %s 3000\n" % master)
            f.write("sentinel parallel-syncs %s 1\n" % master)
            f.writelines(line + "\n" for line in extra_conf)
        proc = Proc(name, [binary, conf], root=root)
        try:
            proc.wait_for(lambda: port_open(port), "sentinel port %d" % port)
            proc.port = port
            return proc
        except HarnessError:
            proc.stop(expect_clean=False)
            if "Address already in use" not in proc.stdout() + proc.stderr():
                raise
    raise HarnessError("no free port for %s" % name)


LISTEN_RE = re.compile(r"listening port=(\d+)")


def start_service(binary, name, env, root=None):
    """A service binary with SNAPTEXT_LISTEN=127.0.0.1:0; the port is read
    from its "listening port=N" log line, so there is no port race."""
    # No drain on SIGTERM unless a test asks for it: teardown stays fast.
    e = {"SNAPTEXT_LISTEN": "127.0.0.1:0", "SNAPTEXT_LOG_LEVEL": "info", "SNAPTEXT_DRAIN_MS": "0"}
    e.update(env)
    argv = [binary]
    if os.environ.get("SNAP_VALGRIND") == "1":
        argv = ["valgrind", "--quiet", "--leak-check=full", "--error-exitcode=99"] + argv
    proc = Proc(name, argv, env=e, root=root)

    def ready():
        m = LISTEN_RE.search(proc.stdout())
        if m:
            proc.port = int(m.group(1))
            return True
        return False
    try:
        proc.wait_for(ready, "its listening line", timeout=20)
    except HarnessError:  # not the caller's yet: stop it here, or it outlives the test
        proc.stop(expect_clean=False)
        raise
    return proc


HAPROXY_CFG = os.path.join(SOURCE_DIR, "deploy", "haproxy", "haproxy.cfg")
# glibc's malloc gives freed heap back to the kernel whenever 128 KiB lie free
# at its top; HAProxy's 80 KiB request buffers (tune.bufsize) cross that line
# all the time under load, and each crossing costs a brk(2) and, later, page
# faults to refill. Every deployment starts HAProxy with this in its
# environment (up.sh, docker-compose.yml, k8s; docs/PERFORMANCE.md, "HAProxy's
# heap"), the tests and the bench too; tests/deploy holds them to this value.
HAPROXY_MALLOC_ENV = {"MALLOC_TRIM_THRESHOLD_": "33554432"}


def write_backends(path, backends):
    """Writes a HAProxy backends file: backends = {"users": [port, ...], ...};
    checks and limits come from the shared config's default-server. A
    backend of haproxy.cfg that is not given (pages, when a test starts no
    pages service) is written without servers: its routes answer 503."""
    backends = dict(backends)
    for name in ("users", "ingest", "fetch", "pages"):
        backends.setdefault(name, [])
    with open(path, "w") as f:
        f.write("# generated by tests/harness/snaptest.py\n")
        for name, ports in backends.items():
            f.write("backend %s\n" % name)
            if name == "fetch":  # waiting reads (?wait=S): as the deployments do
                f.write("    http-request set-timeout server 45s if { url_param(wait) -m found }\n")
            for i, port in enumerate(ports):
                f.write("    server %s%d 127.0.0.1:%d\n" % (name, i + 1, port))
    return path


def start_haproxy(backends, root=None, env=None):
    """HAProxy with the project's own frontend config and a generated
    backends file, on a free loopback port."""
    binary = which_or_fail("haproxy")
    d = tempfile.mkdtemp(prefix="snap-haproxy-cfg-", dir=root)
    bfile = write_backends(os.path.join(d, "backends.cfg"), backends)
    last = None
    for _ in range(5):
        port = free_port()
        e = dict(HAPROXY_MALLOC_ENV, SNAPTEXT_PUBLIC_BIND="127.0.0.1:%d" % port,
                 SNAPTEXT_RATE_LIMIT="1000000")
        e.update(env or {})
        proc = Proc("haproxy", [binary, "-db", "-f", HAPROXY_CFG, "-f", bfile], env=e, root=root)
        proc.stop_signal = signal.SIGUSR1  # soft stop: exit 0 once idle
        try:
            proc.wait_for(lambda: port_open(port), "haproxy port %d" % port)
            proc.port = port
            proc.cfg_dir = d
            return proc
        except HarnessError as err:
            last = err
            proc.stop(expect_clean=False)
            if "ddress already in use" not in proc.stderr():
                raise
    raise last


class Stack:
    """Redis + users + N ingest + N fetch + HAProxy, all on loopback.

    env: extra SNAPTEXT_* for every service. store: a SNAPTEXT_STORE url
    (default: a fresh SQLite file in the stack's dir). redis: use this
    running Redis instead of starting one; root: the dir to work in.
    pages: also start the pages service (SNAP_PAGES_BIN), serving
    SNAP_PAGES_ROOT (the build's site folder)."""

    def __init__(self, env=None, instances=2, store=None, admin=("admin", "admin-password-1"),
                 redis=None, root=None, pages=False):
        self.root = root or tempfile.mkdtemp(prefix="snap-stack-")
        self.procs = []
        self.problems = []
        self.admin = admin
        self.redis = None
        self.haproxy = None
        self.services = {"users": [], "ingest": [], "fetch": []}
        try:
            # redis: a Proc the caller started (and stops) instead of our own
            self.redis = redis or start_redis(root=self.root)
            if redis is None:
                self.procs.append(self.redis)
            self.env = {
                "SNAPTEXT_REDIS_URL": "redis://127.0.0.1:%d/0" % self.redis.port,
                "SNAPTEXT_STORE": store or "sqlite://%s/cold.db" % self.root,
            }
            if admin:
                self.env["SNAPTEXT_ADMIN_USERNAME"] = admin[0]
                self.env["SNAPTEXT_ADMIN_PASSWORD"] = admin[1]
            self.env.update(env or {})
            for name, count in (("users", 1), ("ingest", instances), ("fetch", instances)):
                for i in range(count):
                    self.add_instance(name)
            if pages:
                self.services["pages"] = []
                root_dir = os.environ.get("SNAP_PAGES_ROOT")
                if not root_dir:
                    raise HarnessError("SNAP_PAGES_ROOT is not set (ctest sets it)")
                self.add_instance("pages", {"SNAPTEXT_PAGES_ROOT": root_dir})
            self.haproxy = start_haproxy(
                {k: [p.port for p in v] for k, v in self.services.items()}, root=self.root)
            self.procs.append(self.haproxy)
            self.wait_ready()
        except Exception:
            self.stop()
            raise

    def binary(self, name):
        var = "SNAP_%s_BIN" % name.upper()
        path = os.environ.get(var)
        if not path:
            raise HarnessError("%s is not set (ctest sets it)" % var)
        return path

    def add_instance(self, name, env=None):
        e = dict(self.env)
        e.update(env or {})
        idx = len(self.services[name]) + 1
        proc = start_service(self.binary(name), "%s%d" % (name, idx), e, root=self.root)
        self.services[name].append(proc)
        self.procs.append(proc)
        return proc

    def wait_ready(self, timeout=20):
        """Until every instance's /readyz is green and HAProxy sees them up."""
        deadline = time.time() + timeout * TIMEOUT_MULT
        for procs in self.services.values():
            for p in procs:
                while True:
                    try:
                        st, _, _ = request("GET", "/readyz", port=p.port, timeout=2)
                        if st == 200:
                            break
                    except OSError:
                        pass
                    if time.time() > deadline:
                        raise HarnessError("%s never became ready\n%s" % (p.name, p.logs()))
                    time.sleep(0.05)
        # Then through HAProxy: one route per backend must stop answering 503
        # (HAProxy marks a server up after a good health check).
        probes = (("GET", "/users/me"), ("GET", "/chat"), ("GET", "/chats/_probe"))
        if self.services.get("pages"):
            probes += (("GET", "/openapi.json"),)
        for method, path in probes:
            while True:
                st, _, _ = request(method, path, port=self.haproxy.port, timeout=2)
                if st != 503:
                    break
                if time.time() > deadline:
                    raise HarnessError("HAProxy still answers 503 for %s %s" % (method, path))
                time.sleep(0.05)

    @property
    def port(self):
        return self.haproxy.port

    def req(self, method, path, body=None, token=None, headers=None, raw=None, timeout=10):
        return request(method, path, port=self.port, body=body, token=token,
                       headers=headers, raw=raw, timeout=timeout)

    # The account and send helpers every API test file needs (one copy, here).
    _names = itertools.count(1)

    def uname(self, prefix="u"):
        """A username no other test of this run uses."""
        return "%s%d_%d" % (prefix, int(time.time() * 1000) % 100000, next(Stack._names))

    def register(self, name=None, password="correct horse battery"):
        """Registers a fresh user through HAProxy: (name, token)."""
        name = name or self.uname()
        st, _, body = self.req("POST", "/users", {"username": name, "password": password})
        if st != 201:
            raise HarnessError("register %s: %s %r" % (name, st, body))
        return name, body["token"]

    def send(self, to, text="hello", token=None, timeout=60, key=None, expect=201, port=None):
        """snaptest.send through HAProxy, or to port (one instance)."""
        return send(port or self.port, to, text, token=token, timeout=timeout, key=key,
                    expect=expect)

    def admin_token(self):
        st, _, body = self.req("POST", "/sessions",
                               {"username": self.admin[0], "password": self.admin[1]})
        if st != 201:
            raise HarnessError("admin login: %s %r" % (st, body))
        return body["token"]

    def stop(self):
        for p in reversed(self.procs):
            if p.returncode is None:
                self.problems.extend(p.stop(expect_clean=(p.name not in ("redis",))))
        return self.problems

    def all_logs(self):
        return "\n".join(p.logs() for p in self.procs)

    def cleanup(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def teardown(self, code):
        """Stops and removes the stack; returns code, or 1 when a process
        did not exit cleanly (its logs are printed)."""
        problems = self.stop()
        if problems:
            print("teardown problems: %s" % "; ".join(problems), flush=True)
            print(self.all_logs()[-8000:], flush=True)
            code = 1
        self.cleanup()
        return code


# ------------------------------------------------------------ HTTP client --

def parse_body(payload):
    """A reply body as the clients here return it: parsed JSON, else the
    text, None when empty."""
    if not payload:
        return None
    text = payload.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


class Client:
    """One keep-alive HTTP/1.1 connection to host:port, opened on first use
    and again after the server closed it or a request failed (the error is
    raised: OSError or http.client.HTTPException). source: the local address
    to connect from (another loopback address such as 127.0.0.2 looks like
    another client)."""

    def __init__(self, port, host="127.0.0.1", timeout=10, source=None):
        self.port = port
        self.host = host
        self.timeout = timeout
        self.source = source
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, token=None, headers=None, raw=None):
        """One request. body: a Python value sent as JSON; raw: bytes sent as
        is. Returns (status, headers dict lower-cased, parse_body)."""
        h = {}
        if token:
            h["Authorization"] = "Bearer " + token
        data = None
        if raw is not None:
            data = raw
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=self.timeout,
                    source_address=(self.source, 0) if self.source else None)
            self.conn.request(method, path, body=data, headers=h)
            resp = self.conn.getresponse()
            payload = resp.read()
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if resp.will_close:
                self.close()
            return resp.status, hdrs, parse_body(payload)
        except BaseException:
            self.close()
            raise


def request(method, path, port, body=None, token=None, headers=None, raw=None, timeout=10,
            host="127.0.0.1", source=None):
    """One HTTP/1.1 request on a new connection (a Client used once); the
    arguments and the answer are Client.request's."""
    c = Client(port, host=host, timeout=timeout, source=source)
    try:
        return c.request(method, path, body=body, token=token, headers=headers, raw=raw)
    finally:
        c.close()


def chat_body(to, text="hello", timeout=60):
    """The body of POST /chat; timeout None leaves the field out (the
    service's default)."""
    body = {"username": to, "text": text}
    if timeout is not None:
        body["timeout"] = timeout
    return body


def send(port, to, text="hello", token=None, timeout=60, key=None, expect=201):
    """POST /chat (chat_body) to port, with an Idempotency-Key when key is
    given. expect: the status it must answer (AssertionError otherwise);
    returns the new id on a 201, else the body. expect=None: no check,
    returns the reply (status, headers, body) as it came."""
    st, h, b = request("POST", "/chat", port=port, body=chat_body(to, text, timeout),
                       token=token, headers={"Idempotency-Key": key} if key else None)
    if expect is None:
        return st, h, b
    assert st == expect, (st, b)
    return b["id"] if st == 201 else b


def metrics(port):
    """/metrics of one instance: {'series{labels}': float}."""
    st, _, text = request("GET", "/metrics", port=port, timeout=5)
    if st != 200:
        raise HarnessError("metrics of port %d: status %s" % (port, st))
    out = {}
    for line in str(text).splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, val = line.rpartition(" ")
        try:
            out[key] = float(val)
        except ValueError:
            pass
    return out


def metric_sum(m, name, **labels):
    """Sum of the series of `name` whose labels include every labels item."""
    total = 0.0
    for key, val in m.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        if all('%s="%s"' % (k, v) in rest for k, v in labels.items()):
            total += val
    return total


def metric_value(port, name, **labels):
    """metric_sum of one instance's /metrics."""
    return metric_sum(metrics(port), name, **labels)


def raw_exchange(port, data, timeout=5, host="127.0.0.1"):
    """Sends raw bytes, returns all bytes read until close or timeout."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        except socket.timeout:
            pass
    return b"".join(chunks)


def run_threads(threads, background=(), go=None, then=None):
    """Starts background and threads (threading.Thread objects), calls go()
    once all run (e.g. an Event's set, so they begin together), waits for
    threads, calls then() (e.g. to tell background to end), and waits for
    background."""
    for t in list(background) + list(threads):
        t.start()
    if go:
        go()
    for t in threads:
        t.join()
    if then:
        then()
    for t in background:
        t.join()


# ------------------------------------------------------------ test runner --

_TESTS = []


def test(fn):
    _TESTS.append(fn)
    return fn


def run_tests(argv=None, setup=None, teardown=None):
    """Runs every @test function (or those named in argv). Prints one line
    per test and the final "N passed, N failed"; returns the exit code."""
    names = set((argv or sys.argv)[1:])
    passed = failed = 0
    for fn in _TESTS:
        if names and fn.__name__ not in names:
            continue
        t0 = time.time()
        try:
            fn()
            passed += 1
            print("ok %s (%.1fs)" % (fn.__name__, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("not ok %s" % fn.__name__, flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 0 if failed == 0 and passed > 0 else 1


def main_with_stack(set_stack, **stack_kwargs):
    """Starts one Stack for a test file, hands it to set_stack, runs the
    file's tests, and stops it: a service that did not exit 0 or wrote a
    sanitizer report fails the file. Returns the exit code."""
    stack = Stack(**stack_kwargs)
    set_stack(stack)
    code = 1
    try:
        code = run_tests()
    finally:
        code = stack.teardown(code)
    return code
