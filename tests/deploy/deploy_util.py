"""deploy_util.py: what the deploy checks share.

A tiny check runner (one line per check, then "N passed, N failed" with
", N skipped" when something was skipped), the repository paths, and the
lists of configuration names the deployments may set. Not here: the checks
themselves (check_compose.py, check_k8s.py).
"""

import os
import re
import shutil
import sys
import traceback

SOURCE_DIR = os.environ.get(
    "SNAP_SOURCE_DIR",
    os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")))
DEPLOY_TEST_DIR = os.path.dirname(os.path.abspath(__file__))
IN_CI = os.environ.get("CI", "").lower() == "true"

# The services' configuration (API.md, "Configuration", plus
# SNAPTEXT_REDIS_SENTINELS, SNAPTEXT_DRAIN_MS and SNAPTEXT_PAGES_ROOT of shared/include/snap/config.h). Kept here, not
# read from ../shared/API.md, so the test does not depend on a file beside
# the checkout; checked against shared/src/config.c once that file names
# its variables (see config_c_names()).
SERVICE_NAMES = frozenset({
    "SNAPTEXT_REDIS_URL", "SNAPTEXT_REDIS_SENTINELS", "SNAPTEXT_REDIS_SENTINEL_PASSWORD",
    "SNAPTEXT_STORE", "SNAPTEXT_LISTEN",
    "SNAPTEXT_AUTH", "SNAPTEXT_THREADS", "SNAPTEXT_MAX_BODY_BYTES", "SNAPTEXT_MAX_TEXT_BYTES",
    "SNAPTEXT_MAX_TIMEOUT", "SNAPTEXT_SESSION_TTL", "SNAPTEXT_ADMIN_USERNAME",
    "SNAPTEXT_ADMIN_PASSWORD", "SNAPTEXT_LOG_LEVEL", "SNAPTEXT_DRAIN_MS", "SNAPTEXT_READ_MAX",
    "SNAPTEXT_MAX_INBOX", "SNAPTEXT_MAX_WAITERS", "SNAPTEXT_PAGES_ROOT",
    # the login throttle and the hash queue (README.md, Reliability)
    "SNAPTEXT_LOGIN_MAX_FAILS", "SNAPTEXT_LOGIN_MAX_FAILS_ADDR", "SNAPTEXT_LOGIN_WINDOW",
    "SNAPTEXT_HASH_QUEUE",
})

HAPROXY_CFG = os.path.join(SOURCE_DIR, "deploy", "haproxy", "haproxy.cfg")


def path(*parts):
    return os.path.join(SOURCE_DIR, *parts)


def read(*parts):
    with open(path(*parts), encoding="utf-8") as f:
        return f.read()


def haproxy_names():
    """The SNAPTEXT_* variables deploy/haproxy/haproxy.cfg reads (${NAME...})."""
    with open(HAPROXY_CFG, encoding="utf-8") as f:
        return frozenset(re.findall(r"\$\{(SNAPTEXT_[A-Z0-9_]+)", f.read()))


def config_c_names():
    """The SNAPTEXT_* names shared/src/config.c spells as string literals;
    empty while that file does not (yet) hold its table."""
    p = path("shared", "src", "config.c")
    if not os.path.exists(p):
        return frozenset()
    with open(p, encoding="utf-8", errors="replace") as f:
        return frozenset(re.findall(r'"(SNAPTEXT_[A-Z0-9_]*[A-Z0-9])"', f.read()))


def find_tool(name):
    return shutil.which(name) or next(
        (p for p in ("/usr/sbin/" + name, "/usr/bin/" + name) if os.path.exists(p)), None)


class Skip(Exception):
    """Raised by a check that cannot run here (a missing tool outside CI)."""


def missing_tool(name, why):
    """A tool a check needs is absent: a failure under CI=true, else a skip."""
    msg = "%s is not installed (%s)" % (name, why)
    if IN_CI:
        raise AssertionError(msg + "; under CI=true this is a failure")
    raise Skip(msg)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def run(self, name, fn, *args):
        """Runs fn(*args); an AssertionError or any exception fails the check,
        Skip skips it. Returns fn's value, or None when it did not pass."""
        try:
            value = fn(*args)
        except Skip as e:
            self.skipped += 1
            print("skip %s: %s" % (name, e), flush=True)
            return None
        except AssertionError as e:
            self.failed += 1
            print("not ok %s: %s" % (name, e), flush=True)
            return None
        except Exception:
            self.failed += 1
            print("not ok %s" % name, flush=True)
            traceback.print_exc()
            return None
        self.passed += 1
        print("ok %s" % name, flush=True)
        return value

    def expect(self, name, problems):
        """Passes when problems (a list of strings) is empty; lists them otherwise."""
        def fn():
            if problems:
                raise AssertionError("\n    " + "\n    ".join(problems))
        return self.run(name, fn)

    def finish(self):
        line = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            line += ", %d skipped" % self.skipped
        print(line, flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1


def image_problem(image):
    """Why an image reference is not pinned, or None: it needs a tag other
    than `latest`, or a digest."""
    if not image or not isinstance(image, str):
        return "no image"
    if "@sha256:" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "%s has no tag (that means latest)" % image
    tag = last.split(":", 1)[1]
    if tag == "latest" or not tag:
        return "%s uses the tag latest" % image
    return None


def main_guard(fn):
    try:
        sys.exit(fn())
    except KeyboardInterrupt:
        sys.exit(130)
