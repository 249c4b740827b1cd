#!/usr/bin/env bash
# install-deps.sh [--test]: makes sure the Debian packages snaptext needs are
# installed — to build and run it, and with --test also to test it. Missing
# ones are installed with apt-get when run as root; otherwise it lists them
# and fails. Used by deploy/local/up.sh and tests/run.sh.
set -euo pipefail

pkgs=(gcc make cmake pkg-config ca-certificates curl openssl
      libcivetweb-dev libmongoc-dev libhiredis-dev uuid-dev libcjson-dev
      libsqlite3-dev libcrypt-dev libssl-dev redis-server redis-tools haproxy python3)
if [ "${1:-}" = "--test" ]; then
    # mockupdb: scripted MongoDB for the wire tests; docker-compose: validates
    # docker-compose.yml; redis-sentinel: failover tests; nodejs/npm: offline
    # Kubernetes schema validation; clang: fuzz targets; wrk/gnuplot: benchmarks.
    # chromium + python3-jsonschema: the web client's browser test and the
    # OpenAPI conformance test (tests/web/, tests/api/test_openapi.py).
    pkgs+=(python3-mockupdb docker-compose redis-sentinel clang
           libclang-rt-14-dev wrk gnuplot-nox python3-yaml chromium python3-jsonschema)
fi
# nodejs/npm: the build installs the docs page's renderer with npm ci. Node.js
# may come from elsewhere than Debian (then Debian's npm would conflict with
# it): ask for the packages only when the commands are missing.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)

missing=()
for p in "${pkgs[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "snaptext needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
