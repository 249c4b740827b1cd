"""check_compose.py: the deploy_compose test (ctest -L deploy).

Checks docker-compose.yml, deploy/docker/ and deploy/haproxy/backends-compose.cfg
as far as a machine without a Docker engine can:

  - `docker-compose config` accepts the file (Debian's docker-compose, v1);
    the rest of the checks read its resolved output (anchors merged,
    variables substituted, with no SNAPTEXT_* set in the environment);
  - every SNAPTEXT_* variable a container gets is one the program in it
    reads: the services' names (deploy_util.SERVICE_NAMES, checked against
    shared/src/config.c once it lists them), HAProxy's from haproxy.cfg;
  - builds name a Dockerfile that exists, HAProxy mounts files that exist,
    ingest and fetch can be scaled, images are pinned, health and start
    order are declared, Redis persists with AOF;
  - the Dockerfile: pinned bases, numeric non-root user, HEALTHCHECK,
    the runtime packages, the three targets; the health check script against
    real sockets; where the service binaries are built, that the runtime
    packages provide every library they link (readelf + dpkg);
  - HAProxy with backends-compose.cfg: `haproxy -c`, and a real HAProxy
    discovering scaled "containers" through a stand-in for Docker's DNS
    (loopback addresses 127.0.0.2-4 answering for `ingest`).

What only a Docker host can show (the image builds, containers start) is
listed in docs/DEPLOY.md. Prints "N passed, N failed" last.
"""

import http.client
import http.server
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import yaml

import deploy_util as du
import snaptest
from deploy_util import Checks, Skip

COMPOSE_FILE = du.path("docker-compose.yml")
DOCKERFILE = du.path("deploy", "docker", "Dockerfile")
HEALTHCHECK = du.path("deploy", "docker", "snaptext-healthcheck")
BACKENDS = du.path("deploy", "haproxy", "backends-compose.cfg")
SERVICES = ("users", "ingest", "fetch")
PORTS = {"users": 8081, "ingest": 8082, "fetch": 8083}
RUNTIME_PACKAGES = {"libcivetweb1", "libmongoc-1.0-0", "libbson-1.0-0", "libhiredis0.14",
                    "libuuid1", "libcjson1", "libsqlite3-0", "libcrypt1", "libssl3",
                    "ca-certificates"}
# Present in debian:bookworm-slim already (apt itself needs them).
SLIM_BASE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


# ---- docker-compose.yml ------------------------------------------------------

def compose_config():
    """The resolved configuration: `docker-compose config` where it exists,
    else the file itself (PyYAML merges the anchors the same way)."""
    tool = du.find_tool("docker-compose")
    if not tool:
        du.missing_tool("docker-compose", "Debian package docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPTEXT_")}
    env["SNAPTEXT_ADMIN_PASSWORD"] = ADMIN_PASSWORD_FOR_CHECKS
    out = subprocess.run([tool, "-f", COMPOSE_FILE, "config"], cwd=du.SOURCE_DIR, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, "docker-compose config failed:\n%s" % out.stderr
    cfg = yaml.safe_load(out.stdout)
    assert isinstance(cfg, dict) and "services" in cfg, "no services in the resolved config"
    return cfg


# The one variable compose requires (there is no default admin password).
ADMIN_PASSWORD_FOR_CHECKS = "compose-check-password"


def check_admin_password_required():
    """Without SNAPTEXT_ADMIN_PASSWORD, `docker-compose config` (and so `up`)
    fails with a message that names it (hardening item 4)."""
    tool = du.find_tool("docker-compose")
    if not tool:
        du.missing_tool("docker-compose", "Debian package docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAPTEXT_")}
    out = subprocess.run([tool, "-f", COMPOSE_FILE, "config"], cwd=du.SOURCE_DIR, env=env,
                         capture_output=True, text=True, timeout=60)
    print("    without it: exit %d, %s" % (out.returncode, out.stderr.strip()[:200]))
    assert out.returncode != 0, "docker-compose config accepted no SNAPTEXT_ADMIN_PASSWORD"
    assert "SNAPTEXT_ADMIN_PASSWORD" in out.stderr, out.stderr


def raw_compose():
    with open(COMPOSE_FILE, encoding="utf-8") as f:
        return yaml.safe_load(f)


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    return env


def check_env_names(cfg):
    problems = []
    hap = du.haproxy_names()
    if "SNAPTEXT_PUBLIC_BIND" not in hap:
        problems.append("haproxy.cfg no longer reads SNAPTEXT_PUBLIC_BIND?")
    for name, svc in cfg["services"].items():
        allowed = hap if name == "haproxy" else du.SERVICE_NAMES
        for var in env_of(svc):
            if var.startswith("SNAPTEXT_") and var not in allowed:
                problems.append("%s sets %s, which %s"
                                % (name, var, "haproxy.cfg does not read" if name == "haproxy"
                                   else "the services do not read (API.md)"))
    return problems


def check_config_c():
    names = du.config_c_names()
    if not names:
        raise Skip("shared/src/config.c names no SNAPTEXT_* variable yet")
    problems = ["%s is in the deploy list but not in shared/src/config.c" % n
                for n in sorted(du.SERVICE_NAMES - names)]
    problems += ["shared/src/config.c reads %s: add it to tests/deploy/deploy_util.py "
                 "(and API.md) if deployments may set it" % n
                 for n in sorted(names - du.SERVICE_NAMES)]
    assert not problems, "\n    ".join(problems)


def check_builds(cfg):
    problems = []
    for name, svc in cfg["services"].items():
        b = svc.get("build")
        if not b:
            continue
        if isinstance(b, str):
            b = {"context": b}
        ctx = os.path.join(du.SOURCE_DIR, b.get("context", "."))
        df = os.path.join(ctx, b.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(df):
            problems.append("%s builds from %s, which does not exist" % (name, df))
    for name in SERVICES:
        if "build" not in cfg["services"].get(name, {}):
            problems.append("%s has no build section" % name)
    return problems


def check_haproxy_mounts(cfg):
    hp = cfg["services"].get("haproxy")
    assert hp, "no haproxy service"
    problems = []
    targets = {}
    for v in hp.get("volumes") or []:
        if isinstance(v, dict):
            src, dst = v.get("source"), v.get("target")
        else:
            parts = v.split(":")
            src, dst = parts[0], parts[1]
        if not os.path.isabs(src):
            src = os.path.join(du.SOURCE_DIR, src)
        if not os.path.isfile(src):
            problems.append("haproxy mounts %s, which is not a file here" % src)
        targets[dst] = src
    cmd = hp.get("command") or []
    if isinstance(cmd, str):
        cmd = cmd.split()
    files = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "-f"]
    if len(files) != 2:
        problems.append("haproxy command should load two files with -f, has %r" % cmd)
    for f in files:
        if f not in targets:
            problems.append("haproxy loads %s, which no volume provides" % f)
    want = {os.path.realpath(du.HAPROXY_CFG), os.path.realpath(BACKENDS)}
    got = {os.path.realpath(targets[f]) for f in files if f in targets}
    if got != want:
        problems.append("haproxy should load deploy/haproxy/haproxy.cfg and backends-compose.cfg, "
                        "loads %s" % sorted(got))
    if files and os.path.realpath(targets.get(files[0], "")) != os.path.realpath(du.HAPROXY_CFG):
        problems.append("haproxy.cfg must be the first -f file (the backends file needs its defaults)")
    env = env_of(hp)
    if env.get("SNAPTEXT_PUBLIC_BIND") != ":8080":
        problems.append("haproxy SNAPTEXT_PUBLIC_BIND should be :8080, is %r" % env.get("SNAPTEXT_PUBLIC_BIND"))
    for k, v in snaptest.HAPROXY_MALLOC_ENV.items():
        if str(env.get(k)) != v:
            problems.append("haproxy %s should be %s (snaptest.HAPROXY_MALLOC_ENV), is %r"
                            % (k, v, env.get(k)))
    ports = hp.get("ports") or []
    published = [p for p in ports if (p.get("target") if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0]) in (8080, "8080")]
    if not published:
        problems.append("haproxy publishes no host port for its listener 8080")
    raw_ports = raw_compose()["services"]["haproxy"].get("ports") or []
    if not any("SNAPTEXT_PUBLIC_PORT:-8080" in str(p) for p in raw_ports):
        problems.append("the published port should be ${SNAPTEXT_PUBLIC_PORT:-8080}")
    return problems


def check_services(cfg):
    problems = []
    svcs = cfg["services"]
    for name in SERVICES:
        s = svcs.get(name)
        if not s:
            problems.append("no service %s" % name)
            continue
        cmd = s.get("command")
        if cmd not in ([name], name):
            problems.append("%s command should be [%r], is %r" % (name, name, cmd))
        env = env_of(s)
        if env.get("SNAPTEXT_STORE") != "mongodb://mongo:27017/snaptext":
            problems.append("%s SNAPTEXT_STORE is %r" % (name, env.get("SNAPTEXT_STORE")))
        if env.get("SNAPTEXT_REDIS_URL") != "redis://redis:6379/0":
            problems.append("%s SNAPTEXT_REDIS_URL is %r" % (name, env.get("SNAPTEXT_REDIS_URL")))
        deps = s.get("depends_on") or {}
        for dep in ("redis", "mongo"):
            cond = (deps.get(dep) or {}).get("condition") if isinstance(deps, dict) else None
            if cond != "service_healthy":
                problems.append("%s should wait for %s to be healthy (condition %r)" % (name, dep, cond))
        if not s.get("restart"):
            problems.append("%s has no restart policy" % name)
        if name in ("ingest", "fetch"):
            if s.get("container_name"):
                problems.append("%s has a container_name: it cannot be scaled" % name)
            if s.get("ports"):
                problems.append("%s publishes host ports: it cannot be scaled" % name)
    users_env = env_of(svcs.get("users", {}))
    if not users_env.get("SNAPTEXT_ADMIN_USERNAME"):
        problems.append("users has no default for SNAPTEXT_ADMIN_USERNAME")
    if users_env.get("SNAPTEXT_ADMIN_PASSWORD") != ADMIN_PASSWORD_FOR_CHECKS:
        problems.append("users does not take SNAPTEXT_ADMIN_PASSWORD from the environment "
                        "(got %r)" % users_env.get("SNAPTEXT_ADMIN_PASSWORD"))
    images = {svcs[n].get("image") for n in SERVICES if n in svcs}
    if len(images) != 1:
        problems.append("users, ingest and fetch should be one image, are %s" % sorted(map(str, images)))
    for name, s in svcs.items():
        p = du.image_problem(s.get("image"))
        if p:
            problems.append("%s: %s" % (name, p))
    for name in ("redis", "mongo"):
        s = svcs.get(name, {})
        if not (s.get("healthcheck") or {}).get("test"):
            problems.append("%s has no healthcheck" % name)
        vols = [v.get("source") if isinstance(v, dict) else v.split(":")[0] for v in s.get("volumes") or []]
        if not any(v in (cfg.get("volumes") or {}) for v in vols):
            problems.append("%s keeps its data in no named volume" % name)
    redis_cmd = svcs.get("redis", {}).get("command") or []
    if isinstance(redis_cmd, str):
        redis_cmd = redis_cmd.split()
    joined = " ".join(map(str, redis_cmd))
    if "--appendonly yes" not in joined or "--appendfsync everysec" not in joined:
        problems.append("redis should run with --appendonly yes --appendfsync everysec, runs %r" % joined)
    if "mongosh" not in json.dumps(svcs.get("mongo", {}).get("healthcheck")):
        problems.append("mongo's healthcheck should ping through mongosh")
    return problems


# ---- Dockerfile --------------------------------------------------------------

def dockerfile_stages():
    """[(from_image, [instruction lines])] with continuation lines joined and
    ${ARG} defaults of the global ARGs substituted."""
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    lines, cur = [], ""
    for raw in text.splitlines():
        s = raw.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append((cur + s).strip())
        cur = ""
    args, stages = {}, []
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "ARG" and not stages:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
        elif word == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest.split()[0])
            stages.append((image, []))
        elif stages:
            stages[-1][1].append((word, rest))
    return stages


def check_dockerfile():
    stages = dockerfile_stages()
    problems = []
    if len(stages) < 2:
        return ["the Dockerfile should have a build stage and a runtime stage"]
    for image, _ in stages:
        p = du.image_problem(image)
        if p or "$" in image:
            problems.append("FROM %s: %s" % (image, p or "unresolved variable"))
    build_image, build = stages[0]
    run_image, runtime = stages[-1]
    if not build_image.startswith("debian:bookworm"):
        problems.append("build stage should be debian:bookworm, is %s" % build_image)
    if run_image != "debian:bookworm-slim":
        problems.append("runtime stage should be debian:bookworm-slim, is %s" % run_image)
    build_runs = " ".join(r for w, r in build if w == "RUN")
    for pkg in ("cmake", "gcc", "pkg-config", "libcivetweb-dev", "libmongoc-dev", "libhiredis-dev",
                "uuid-dev", "libcjson-dev", "libsqlite3-dev", "libcrypt-dev", "libssl-dev"):
        if not re.search(r"(^|\s)%s(\s|$)" % re.escape(pkg), build_runs):
            problems.append("build stage does not install %s" % pkg)
    if "-DCMAKE_BUILD_TYPE=Release" not in build_runs:
        problems.append("build stage does not configure a Release build")
    if not re.search(r"--target users ingest fetch", build_runs):
        problems.append("build stage does not build the targets users ingest fetch")
    run_runs = " ".join(r for w, r in runtime if w == "RUN")
    installed = set(re.findall(r"[a-z0-9][a-z0-9.+-]+", run_runs.split("--no-install-recommends", 1)[-1].split("&&")[0]))
    for pkg in sorted(RUNTIME_PACKAGES - installed):
        problems.append("runtime stage does not install %s" % pkg)
    for pkg in ("curl", "wget", "cmake", "gcc"):
        if pkg in installed:
            problems.append("runtime stage installs %s" % pkg)
    users = [r for w, r in runtime if w == "USER"]
    if not users or not re.fullmatch(r"10001(:10001)?", users[-1].strip()):
        problems.append("runtime USER should be 10001 (numeric), is %r" % (users[-1] if users else None))
    hc = [r for w, r in runtime if w == "HEALTHCHECK"]
    if not hc or "snaptext-healthcheck" not in hc[-1]:
        problems.append("no HEALTHCHECK running snaptext-healthcheck")
    copies = [r for w, r in runtime if w == "COPY"]
    if not any("deploy/docker/snaptext-healthcheck" in c for c in copies):
        problems.append("the runtime stage does not copy deploy/docker/snaptext-healthcheck")
    if not os.access(HEALTHCHECK, os.X_OK):
        problems.append("deploy/docker/snaptext-healthcheck is not executable")
    # Every file the build copies must survive .dockerignore (whitelist style).
    ignore = du.read(".dockerignore").split("\n")
    allowed = [l[1:].rstrip("/") for l in ignore if l.startswith("!")]
    sources = []
    for w, r in build + runtime:
        if w == "COPY" and "--from=" not in r:
            sources += r.split()[:-1]
    for src in sources:
        src = src.rstrip("/")
        if not any(src == a or src.startswith(a + "/") for a in allowed):
            problems.append(".dockerignore keeps %s out of the build context" % src)
        if not os.path.exists(du.path(src)):
            problems.append("the Dockerfile copies %s, which does not exist" % src)
    return problems


class _FakeHealth(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.server.status if self.path == "/healthz" else 404
        body = b'{"status":"ok"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    # HAProxy's health checks close with a reset; that is not news.
    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _serve(addr, handler, **attrs):
    srv = _QuietServer(addr, handler)
    srv.daemon_threads = True
    for k, v in attrs.items():
        setattr(srv, k, v)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def check_healthcheck_script():
    ok = _serve(("127.0.0.1", 0), _FakeHealth, status=200)
    bad = _serve(("127.0.0.1", 0), _FakeHealth, status=503)
    closed = snaptest.free_port()
    problems = []
    try:
        def rc(args, env=None):
            e = {k: v for k, v in os.environ.items() if not k.startswith("SNAPTEXT_")}
            e.update(env or {})
            return subprocess.run([HEALTHCHECK] + args, env=e, capture_output=True, timeout=20).returncode

        cases = [
            ("200 on the given port", [str(ok.server_port)], None, 0),
            ("503 on the given port", [str(bad.server_port)], None, 1),
            ("nothing listening", [str(closed)], None, 1),
            ("port from SNAPTEXT_LISTEN", [], {"SNAPTEXT_LISTEN": "127.0.0.1:%d" % ok.server_port}, 0),
            ("bare port in SNAPTEXT_LISTEN", [], {"SNAPTEXT_LISTEN": str(ok.server_port)}, 0),
            ("503 via SNAPTEXT_LISTEN", [], {"SNAPTEXT_LISTEN": "0.0.0.0:%d" % bad.server_port}, 1),
            ("not a port", ["http"], None, 1),
        ]
        for what, args, env, want in cases:
            got = rc(args, env)
            if got != want:
                problems.append("%s: exit %d, expected %d" % (what, got, want))
    finally:
        ok.shutdown()
        bad.shutdown()
    return problems


def check_runtime_libraries():
    bins = [os.environ.get("SNAP_%s_BIN" % n.upper()) for n in SERVICES]
    bins = [b for b in bins if b and os.path.exists(b)]
    if len(bins) != len(SERVICES):
        raise Skip("the service binaries are not built (SNAP_*_BIN)")
    readelf = du.find_tool("readelf")
    if not readelf or not du.find_tool("dpkg"):
        raise Skip("readelf or dpkg missing")
    problems = []
    for b in bins:
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                            subprocess.run([readelf, "-d", b], capture_output=True, text=True).stdout)
        ldd = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
        for lib in needed:
            p = where.get(lib)
            if not p:
                problems.append("%s: %s not found by ldd" % (os.path.basename(b), lib))
                continue
            out = subprocess.run(["dpkg", "-S", os.path.realpath(p)], capture_output=True, text=True)
            if out.returncode != 0:
                out = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
            pkg = out.stdout.split(":", 1)[0].strip() if out.returncode == 0 else None
            if pkg not in RUNTIME_PACKAGES | SLIM_BASE_PACKAGES:
                problems.append("%s needs %s from package %s, which the runtime stage does not install"
                                % (os.path.basename(b), lib, pkg))
    return problems


# ---- HAProxy with backends-compose.cfg -----------------------------------------

def check_backends_file():
    text = open(BACKENDS, encoding="utf-8").read()
    problems = []
    if not re.search(r"^\s*nameserver\s+\S+\s+127\.0\.0\.11:53\s*$", text, re.M):
        problems.append("resolvers should use Docker's DNS 127.0.0.11:53")
    for name, port in PORTS.items():
        if not re.search(r"^backend %s\s*$" % name, text, re.M):
            problems.append("no backend %s" % name)
        m = re.search(r"^\s*server-template\s+\S+\s+\S+\s+(\S+)\s+(.*)$"
                      r"", text.split("backend %s" % name, 1)[-1], re.M)
        if not m or m.group(1) != "%s:%d" % (name, port):
            problems.append("backend %s should template %s:%d" % (name, name, port))
        elif "resolvers" not in m.group(2) or "init-addr none" not in m.group(2):
            problems.append("backend %s: server-template needs resolvers and init-addr none" % name)
    return problems


def haproxy_check_config(backends, env=None):
    tool = du.find_tool("haproxy")
    if not tool:
        du.missing_tool("haproxy", "Debian package haproxy")
    e = dict(os.environ)
    e.update(env or {})
    out = subprocess.run([tool, "-c", "-f", du.HAPROXY_CFG, "-f", backends],
                         capture_output=True, text=True, env=e, timeout=30)
    assert out.returncode == 0, "haproxy -c failed:\n%s%s" % (out.stdout, out.stderr)


class _FakeDNS:
    """Answers A queries from a table that the test changes, like Docker's
    embedded DNS as containers come and go; NXDOMAIN for other names."""

    def __init__(self):
        self.table = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stop:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                reply = self._answer(data)
            except (IndexError, struct.error):
                continue
            self.sock.sendto(reply, peer)

    def _answer(self, q):
        qid, _flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            return struct.pack("!HHHHHH", qid, 0x8181, 0, 0, 0, 0)
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype, qclass = struct.unpack("!HH", q[i + 1:i + 5])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        addrs = list(self.table.get(name, []))
        if name not in self.table:
            return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
        answers = b""
        count = 0
        if qtype == 1 and qclass == 1:
            for a in addrs:
                answers += struct.pack("!HHHLH", 0xC00C, 1, 1, 1, 4) + socket.inet_aton(a)
                count += 1
        return struct.pack("!HHHHHH", qid, 0x8180, 1, count, 0, 0) + question + answers

    def close(self):
        self.stop = True
        self.thread.join(2)
        self.sock.close()


class _FakeService(http.server.BaseHTTPRequestHandler):
    """A stand-in for an ingest container: ready, and says who answered."""
    protocol_version = "HTTP/1.1"

    def _reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._reply(200 if self.path in ("/readyz", "/healthz") else 404, {"status": "ready"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self._reply(201, {"backend": self.server.server_address[0]})

    def log_message(self, *args):
        pass


def check_dns_discovery():
    tool = du.find_tool("haproxy")
    if not tool:
        du.missing_tool("haproxy", "Debian package haproxy")
    tmp = tempfile.mkdtemp(prefix="snap-deploy-dns-")
    dns = _FakeDNS()
    backends, proc = {}, None
    try:
        # Three "containers" on one port at 127.0.0.2-4.
        for _ in range(20):
            port = snaptest.free_port("127.0.0.2")
            try:
                for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                    backends[ip] = _serve((ip, port), _FakeService)
                break
            except OSError:
                for srv in backends.values():
                    srv.shutdown()
                    srv.server_close()
                backends = {}
        assert backends, "no common free port on 127.0.0.2-4"
        # The backends file under test with two stand-ins: our DNS for
        # Docker's, and the fake containers' port for 8082.
        text = open(BACKENDS, encoding="utf-8").read()
        text, n1 = re.subn(r"127\.0\.0\.11:53", "127.0.0.1:%d" % dns.port, text)
        text, n2 = re.subn(r"\bingest:8082\b", "ingest:%d" % port, text)
        assert n1 == 1 and n2 == 1, "backends-compose.cfg changed shape (nameserver/ingest:8082)"
        bfile = os.path.join(tmp, "backends.cfg")
        open(bfile, "w").write(text)
        mfile = du.HAPROXY_CFG
        public = snaptest.free_port()
        env = dict(os.environ, SNAPTEXT_PUBLIC_BIND="127.0.0.1:%d" % public,
                   SNAPTEXT_RATE_LIMIT="1000000")
        log = open(os.path.join(tmp, "haproxy.log"), "w")
        dns.table = {"ingest": ["127.0.0.2"]}
        proc = subprocess.Popen([tool, "-db", "-f", mfile, "-f", bfile], env=env,
                                stdout=log, stderr=subprocess.STDOUT)

        def post():
            try:
                st, _, body = snaptest.request("POST", "/chat", port=public, raw=b"{}", timeout=3,
                                               headers={"Content-Type": "application/json"})
            except (OSError, http.client.HTTPException):
                return None
            return body.get("backend") if st == 201 and isinstance(body, dict) else None

        def wait_for(what, cond, seconds=20):
            deadline = time.time() + seconds
            while time.time() < deadline:
                if proc.poll() is not None:
                    raise AssertionError("haproxy exited with %s:\n%s" % (
                        proc.returncode, open(os.path.join(tmp, "haproxy.log")).read()))
                if cond():
                    return
                time.sleep(0.2)
            raise AssertionError("timed out waiting for %s; haproxy said:\n%s" % (
                what, open(os.path.join(tmp, "haproxy.log")).read()[-2000:]))

        # One container.
        wait_for("the first ingest container to get traffic", lambda: post() == "127.0.0.2")
        # --scale ingest=3
        dns.table = {"ingest": ["127.0.0.2", "127.0.0.3", "127.0.0.4"]}
        seen = set()
        wait_for("all three ingest containers to get traffic",
                 lambda: seen.update(post() for _ in range(6)) or {"127.0.0.2", "127.0.0.3", "127.0.0.4"} <= seen)
        # --scale ingest=1: two containers go away (and stop answering).
        for ip in ("127.0.0.2", "127.0.0.3"):
            backends[ip].shutdown()
            backends[ip].server_close()
        dns.table = {"ingest": ["127.0.0.4"]}
        wait_for("traffic to go only to the remaining container",
                 lambda: all(post() == "127.0.0.4" for _ in range(10)))
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for srv in backends.values():
            try:
                srv.shutdown()
                srv.server_close()
            except OSError:
                pass
        dns.close()


def main():
    c = Checks()
    cfg = c.run("docker-compose config accepts docker-compose.yml", compose_config)
    if cfg is None:
        # docker-compose missing (skipped) or failing: check the raw file.
        cfg = raw_compose()
    c.expect("SNAPTEXT_* variables are ones the programs read", check_env_names(cfg))
    c.run("the deploy list of SNAPTEXT_* names matches shared/src/config.c", check_config_c)
    c.expect("builds name a Dockerfile that exists", check_builds(cfg))
    c.expect("haproxy mounts haproxy.cfg and backends-compose.cfg, which exist", check_haproxy_mounts(cfg))
    c.expect("services: command, stores, health order, scaling, pinned images, AOF", check_services(cfg))
    c.run("compose refuses to start without SNAPTEXT_ADMIN_PASSWORD", check_admin_password_required)
    c.expect("Dockerfile: pinned bases, packages, targets, uid 10001, HEALTHCHECK", check_dockerfile())
    c.run("snaptext-healthcheck answers for /healthz over real sockets",
          lambda: _raise_problems(check_healthcheck_script()))
    c.run("runtime packages provide every library the service binaries link",
          lambda: _raise_problems(check_runtime_libraries()))
    c.expect("backends-compose.cfg: Docker DNS and the three server-templates", check_backends_file())
    c.run("haproxy -c accepts haproxy.cfg + backends-compose.cfg",
          haproxy_check_config, BACKENDS)
    c.run("haproxy finds scaled ingest containers through DNS (up to 3, down to 1)",
          check_dns_discovery)
    return c.finish()


def _raise_problems(problems):
    if problems:
        raise AssertionError("\n    " + "\n    ".join(problems))


if __name__ == "__main__":
    du.main_guard(main)
