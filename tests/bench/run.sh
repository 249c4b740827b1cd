#!/usr/bin/env bash
# tests/bench/run.sh: snaptext's benchmark in one command (see
# docs/PERFORMANCE.md). On a fresh machine it installs what is missing (as
# root, through deploy/local/install-deps.sh: the build and run packages,
# redis-tools among them, and with --test also wrk and gnuplot-nox, asked
# for only when those two commands are missing), builds the release
# binaries in build-release/, and runs tests/bench/bench.py, which starts
# its own stacks on free loopback ports and stops them again: snaptext's,
# and the reference stacks of tests/bench/peers, which bench.py installs
# itself (Debian packages as root, npm ci, a GOPATH build of the Go one).
#
# When SNAP_USERS_BIN, SNAP_INGEST_BIN and SNAP_FETCH_BIN are all set (as
# ctest does for bench_smoke), those binaries are used: nothing is installed
# or built.
#
#   tests/bench/run.sh [--duration S] [--smoke] [--scale] [--out FILE.json] ...
#   tests/bench/run.sh --help        every option
#   tests/bench/run.sh --waiters [--waiters N --rate R ...]   the waiting-read
#                                    load instead (tests/bench/waiters.py)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
python=${SNAP_PYTHON:-/usr/bin/python3}

if [ -z "${SNAP_USERS_BIN:-}" ] || [ -z "${SNAP_INGEST_BIN:-}" ] || [ -z "${SNAP_FETCH_BIN:-}" ]; then
    "$root/deploy/local/install-deps.sh"
    if ! command -v wrk >/dev/null || ! command -v gnuplot >/dev/null; then
        "$root/deploy/local/install-deps.sh" --test
    fi
    build="$root/build-release"
    mkdir -p "$build"
    echo "building the release binaries ($build, log in $build/bench-build.log) ..."
    jobs=$(nproc 2>/dev/null || echo 2)
    if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF &&
           cmake --build "$build" -j"$jobs" --target users ingest fetch; } >"$build/bench-build.log" 2>&1; then
        tail -n 30 "$build/bench-build.log" >&2
        echo "the release build failed; full log in $build/bench-build.log" >&2
        exit 1
    fi
    export SNAP_USERS_BIN="$build/users" SNAP_INGEST_BIN="$build/ingest" SNAP_FETCH_BIN="$build/fetch"
fi

export PYTHONPATH="$root/tests/harness${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export SNAP_SOURCE_DIR="${SNAP_SOURCE_DIR:-$root}"
if [ "${1:-}" = "--waiters" ]; then
    shift
    exec "$python" "$root/tests/bench/waiters.py" "$@"
fi
exec "$python" "$root/tests/bench/bench.py" "$@"
