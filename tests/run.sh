#!/usr/bin/env bash
# tests/run.sh: builds snaptext and runs every test, twice — in the normal
# build (build/) and under AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/). Installs what is missing first (as root). Exit 0 = all green.
#   SNAP_TEST_ARGS  extra ctest arguments, e.g. "-L unit" for a fast loop
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)

./deploy/local/install-deps.sh --test
if [ -f tests/deploy/package-lock.json ]; then
    npm ci --prefix tests/deploy --no-audit --no-fund --loglevel=error >/dev/null
fi
# The browser test drives /usr/bin/chromium (Debian's); playwright-core must
# never fetch a browser of its own.
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/web --no-audit --no-fund --loglevel=error >/dev/null

run_suite() { # name build-dir cmake-args...
    local name=$1 dir=$2
    shift 2
    echo "=== $name: configure and build ($dir)"
    cmake -S . -B "$dir" "$@" >/dev/null
    cmake --build "$dir" -j"$jobs" >/dev/null
    echo "=== $name: ctest"
    (cd "$dir" && ctest --output-on-failure -j"$jobs" ${SNAP_TEST_ARGS:-})
}

run_suite "release" build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=ON
# Sanitizers: everything but the deployment checks, which run no C code.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
SNAP_TIMEOUT_MULTIPLIER=${SNAP_TIMEOUT_MULTIPLIER:-3} SNAP_SANITIZED=1 \
SNAP_TEST_ARGS="-LE deploy ${SNAP_TEST_ARGS:-}" \
    run_suite "sanitizers" build-asan -DCMAKE_BUILD_TYPE=Debug -DSNAP_SANITIZE=ON -DBUILD_TESTING=ON
echo "=== all test suites passed"
