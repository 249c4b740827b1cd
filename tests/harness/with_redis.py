"""with_redis.py BINARY [ARGS...]: runs a test binary against a fresh
redis-server on a free loopback port (its own temp dir), exported as
SNAPTEXT_REDIS_URL, plus SNAP_REDIS_PORT and SNAP_REDIS_PID for tests that
restart or kill it. Redis is stopped by PID afterwards; the binary's exit
code is returned."""
import os
import subprocess
import sys

import snaptest


def main():
    if len(sys.argv) < 2:
        print("usage: with_redis.py BINARY [ARGS...]", file=sys.stderr)
        return 2
    redis = snaptest.start_redis()
    try:
        env = dict(os.environ)
        env["SNAPTEXT_REDIS_URL"] = "redis://127.0.0.1:%d/0" % redis.port
        env["SNAP_REDIS_PORT"] = str(redis.port)
        env["SNAP_REDIS_PID"] = str(redis.pid)
        return subprocess.call(sys.argv[1:], env=env)
    finally:
        redis.stop(expect_clean=False)
        redis.cleanup()


if __name__ == "__main__":
    sys.exit(main())
