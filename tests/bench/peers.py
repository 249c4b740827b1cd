"""peers.py: the reference stacks of tests/bench, from install to teardown.

A peer is the classic API (open, no users) written the obvious way in
another language: peers/flask (Flask + gunicorn, 4 sync workers),
peers/node (fastify + ioredis + better-sqlite3 12, 2 cluster workers) and
peers/go (net/http + redigo + go-sqlite3). All three keep the same layout:
Redis `chat:next_id` (INCR), `chat:<id>` (the text, with EX) and
`inbox:<user>` (a list of ids); SQLite table `chats(id, username, text,
expiration_date)` in WAL mode.

Each runs in its own durability (SQLite synchronous=NORMAL, Redis without
persistence) or, `durable`, in snaptext's (synchronous=FULL, Redis AOF with
appendfsync always). A PeerStack is Redis, the peer and a HAProxy started
from the project's own haproxy.cfg exactly as snaptext's stacks are
(snaptest.start_haproxy), with its three backends all pointing at the
peer's port, so every request crosses the same frontend rules.

install() brings what the peers need on a fresh machine: Debian packages
through apt-get (as root), the Node packages with `npm ci` from the
committed package-lock.json, and the Go binary built in GOPATH mode from
Debian's Go sources, offline. Both land in a cache keyed by the sources'
hash, outside the work tree, so a second run reuses them.

Not here: what is measured and in which order (compare.py).
"""

import hashlib
import os
import shutil
import subprocess
import time

import snaptest
import wrkrun
from wrkrun import LoadError

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS_DIR = os.path.join(HERE, "peers")
COUNTER_KEY = "chat:next_id"

APT = {"flask": ["python3-flask", "gunicorn", "python3-redis"],
       "node": [],  # nodejs / npm, only when the commands are missing (see install)
       "go": ["golang-go", "golang-github-gomodule-redigo-dev",
              "golang-github-mattn-go-sqlite3-dev", "libsqlite3-dev"]}

# What each peer is, for the report.
DESCRIPTION = {
    "flask": "Flask + gunicorn (4 sync workers) + redis-py + sqlite3",
    "node": "Node.js fastify + ioredis + better-sqlite3, 2 cluster workers",
    "go": "Go net/http + redigo + go-sqlite3",
}
OWN_DURABILITY = "SQLite synchronous=NORMAL, Redis without persistence"
SNAP_DURABILITY = ("SQLite synchronous=FULL, Redis appendfsync always "
                   "(snaptext's guarantee: a 201 survives a crash)")


def label(kind, durable):
    return "%s%s" % (kind, ", snaptext durability" if durable else "")


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "snaptext", "bench-peers")


def digest(*paths):
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def _installed(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                         text=True)
    return "install ok installed" in out.stdout


def _apt(pkgs, log):
    missing = [p for p in pkgs if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise LoadError("the reference stacks need these Debian packages: %s (run as root, "
                        "or install them)" % " ".join(missing))
    log("installing for the reference stacks: %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (["apt-get", "update", "-q"],
                 ["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            raise LoadError("%s failed:\n%s" % (" ".join(argv[:2]), done.stderr[-2000:]))


def _run(argv, what, cwd, env=None, timeout=900):
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise LoadError("%s failed (exit %d):\n%s\n%s" % (what, done.returncode,
                                                           done.stdout[-2000:],
                                                           done.stderr[-2000:]))


def install_node(log):
    """npm ci from the committed lock file into the cache; returns the
    NODE_PATH that server.js finds its packages in."""
    src = os.path.join(PEERS_DIR, "node")
    lock = os.path.join(src, "package-lock.json")
    dest = os.path.join(cache_dir(), "node-" + digest(os.path.join(src, "package.json"), lock))
    modules = os.path.join(dest, "node_modules")
    if not os.path.exists(os.path.join(dest, "ok")):
        log("npm ci for the Node.js peer (%s; better-sqlite3 may build from source, "
            "a minute or two)" % dest)
        shutil.rmtree(dest, ignore_errors=True)
        os.makedirs(dest)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(src, name), dest)
        _run(["npm", "ci", "--no-audit", "--no-fund"], "npm ci (peers/node)", dest)
        open(os.path.join(dest, "ok"), "w").close()
    return modules


def install_go(log):
    """Builds peers/go in GOPATH mode against Debian's Go packages; returns
    the binary."""
    src = os.path.join(PEERS_DIR, "go", "main.go")
    dest = os.path.join(cache_dir(), "go-" + digest(src))
    binary = os.path.join(dest, "peer-go")
    if not os.access(binary, os.X_OK):
        log("building the Go peer (%s)" % binary)
        os.makedirs(dest, exist_ok=True)
        env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off",
                   GOFLAGS="", GOPROXY="off", GOCACHE=os.path.join(dest, "gocache"))
        # libsqlite3: link Debian's libsqlite3 (the Debian source ships no
        # amalgamation).
        _run(["go", "build", "-tags", "libsqlite3", "-o", binary + ".tmp", src],
             "go build (peers/go)", os.path.dirname(src), env=env)
        os.replace(binary + ".tmp", binary)
    return binary


def install(kinds, log):
    """Everything the given peers need; returns {kind: what start() needs}."""
    pkgs = []
    for k in kinds:
        pkgs += APT[k]
    if "node" in kinds:
        if not shutil.which("node"):
            pkgs.append("nodejs")
        if not shutil.which("npm"):
            pkgs.append("npm")
    _apt(pkgs, log)
    out = {}
    if "flask" in kinds:
        out["flask"] = shutil.which("gunicorn") or "/usr/bin/gunicorn"
    if "node" in kinds:
        out["node"] = install_node(log)
    if "go" in kinds:
        out["go"] = install_go(log)
    return out


def descendants(pid):
    """The pids of every process below pid (gunicorn's and node's workers)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class PeerStack:
    """Redis + one peer + HAProxy on free loopback ports, in root."""

    def __init__(self, kind, durable, installed, root, haproxy_env=None):
        self.kind, self.durable = kind, durable
        self.name = label(kind, durable)
        self.root = root
        self.procs = []
        self.redis = self.app = self.haproxy = None
        try:
            # Durable: a 201 must survive a crash, as snaptext's does. Redis
            # is what these peers deliver from, so that takes every write
            # fsynced (snaptext's Redis runs everysec: its cold store decides).
            self.redis = snaptest.start_redis(root=root, appendonly=durable,
                                              fsync="always" if durable else "everysec",
                                              name="redis")
            self.procs.append(self.redis)
            self.app = self._start_app(installed[kind])
            self.procs.append(self.app)
            ports = [self.app.port]
            self.haproxy = snaptest.start_haproxy(
                {"users": ports, "ingest": ports, "fetch": ports}, root=root, env=haproxy_env)
            self.procs.append(self.haproxy)
            self._wait_through_haproxy()
        except Exception:
            self.stop()
            raise

    def _start_app(self, what):
        db = os.path.join(self.root, "%s-chats.db" % self.kind)
        for _ in range(5):
            port = snaptest.free_port()
            env = {"PEER_LISTEN": "127.0.0.1:%d" % port,
                   "PEER_REDIS": "127.0.0.1:%d" % self.redis.port, "PEER_DB": db,
                   "PEER_DURABLE": "1" if self.durable else "0"}
            if self.kind == "flask":
                argv = [what, "--workers", "4", "--preload", "--bind", "127.0.0.1:%d" % port,
                        "--chdir", os.path.join(PEERS_DIR, "flask"), "app:app"]
            elif self.kind == "node":
                env["NODE_PATH"] = what
                argv = ["node", os.path.join(PEERS_DIR, "node", "server.js")]
            else:
                argv = [what]
            proc = snaptest.Proc(self.kind, argv, env=env, root=self.root)
            try:
                proc.wait_for(lambda: _ready(port), "%s /readyz on port %d" % (self.kind, port),
                              timeout=30)
                proc.port = port
                # every worker up (gunicorn's 4, node's 2) before any load
                want = {"flask": 4, "node": 2}.get(self.kind, 0)
                proc.wait_for(lambda: len(descendants(proc.pid)) >= want,
                              "%d workers" % want, timeout=30)
                return proc
            except snaptest.HarnessError:
                proc.stop(expect_clean=False)
                if "in use" not in proc.stdout() + proc.stderr():
                    raise
        raise LoadError("no free port for the %s peer" % self.kind)

    def _wait_through_haproxy(self):
        deadline = time.monotonic() + 20
        for path in ("/chats/_probe", "/chat"):
            while True:
                method = "GET" if path.startswith("/chats") else "POST"
                st, _, _ = snaptest.request(method, path, port=self.haproxy.port,
                                            body=None if method == "GET" else
                                            {"username": "_probe", "text": "x", "timeout": 5})
                if st not in (503, 0):
                    break
                if time.monotonic() > deadline:
                    raise LoadError("HAProxy still answers 503 for the %s peer" % self.name)
                time.sleep(0.05)

    @property
    def port(self):
        return self.haproxy.port

    def watch(self):
        """(name, pid) of every process of the stack, the peer's workers too."""
        out = [("haproxy", self.haproxy.pid), ("redis", self.redis.pid),
               (self.kind, self.app.pid)]
        out += [("%s-worker%d" % (self.kind, i + 1), pid)
                for i, pid in enumerate(descendants(self.app.pid))]
        return out

    def stored(self):
        return wrkrun.redis_next_id(self.redis.port, COUNTER_KEY)

    def stop(self):
        problems = []
        workers = descendants(self.app.pid) if self.app and self.app.alive() else []
        for p in reversed(self.procs):
            if p.returncode is None:
                problems.extend(p.stop(expect_clean=False))
        deadline = time.monotonic() + 5
        while workers and time.monotonic() < deadline:
            workers = [w for w in workers if _alive(w)]
            time.sleep(0.05)
        for pid in workers:  # a worker its master left behind
            try:
                os.kill(pid, 9)
                problems.append("%s worker %d outlived its master" % (self.kind, pid))
            except OSError:
                pass
        return problems


def _alive(pid):
    """pid still runs (a zombie of another parent counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _ready(port):
    try:
        st, _, _ = snaptest.request("GET", "/readyz", port=port, timeout=1)
        return st == 200
    except OSError:
        return False
