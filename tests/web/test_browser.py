"""test_browser: the web client in Debian's chromium (browser.mjs, driven
by playwright-core) against a real stack: Redis, users, ingest, fetch and
pages behind HAProxy, plus a second HAProxy over the same services with a
low SNAPTEXT_RATE_LIMIT, so that the 429 is real. When browser.mjs prints
"@@stop-redis", Redis is stopped here, so that the 503 is real too.
Screenshots go to SNAP_WEB_SHOTS (ctest: <build>/screenshots)."""

import os
import subprocess
import sys

import snaptest

HERE = os.path.dirname(os.path.abspath(__file__))
ADMIN = ("admin", "admin-password-1")


def main():
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        print("not ok playwright-core is not installed: npm ci --prefix tests/web (tests/run.sh does it)")
        print("0 passed, 1 failed")
        return 1
    if not os.access("/usr/bin/chromium", os.X_OK):
        print("not ok /usr/bin/chromium is missing: apt-get install chromium (tests/run.sh does it)")
        print("0 passed, 1 failed")
        return 1
    stack = snaptest.Stack(pages=True, instances=1, admin=ADMIN)
    code = 1
    try:
        backends = {k: [p.port for p in v] for k, v in stack.services.items()}
        limited = snaptest.start_haproxy(backends, root=stack.root,
                                         env={"SNAPTEXT_RATE_LIMIT": "15"})
        stack.procs.append(limited)
        env = dict(os.environ)
        env.update({
            "SNAP_WEB_URL": "http://127.0.0.1:%d" % stack.port,
            "SNAP_WEB_LIMITED_URL": "http://127.0.0.1:%d" % limited.port,
            "SNAP_WEB_ADMIN_USER": ADMIN[0], "SNAP_WEB_ADMIN_PASS": ADMIN[1],
            "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
            "PLAYWRIGHT_BROWSERS_PATH": "0",
        })
        node = subprocess.Popen(["node", os.path.join(HERE, "browser.mjs")], cwd=HERE, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for line in node.stdout:
            line = line.rstrip("\n")
            if line == "@@stop-redis":
                stack.redis.stop(expect_clean=False)
                node.stdin.write("stopped\n")
                node.stdin.flush()
                continue
            print(line, flush=True)
        code = node.wait(timeout=60 * snaptest.TIMEOUT_MULT)
    finally:
        code = stack.teardown(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
