#!/usr/bin/env bash
# loop.sh: runs each strict fault test of issue 10 N times and adds up the
# FAULT-SUMMARY lines they print. Not part of CI (ctest runs each once).
#
#   tests/faults/loop.sh [N=20] [BUILD_DIR=build]
#
# The tests: Redis SIGKILL + AOF restart and + empty restart
# (test_redis_crash.py), Redis replies stalled by a proxy
# (test_redis_stall.py), the SQLite writer flock held past the deadline
# under load (test_cold_store.py, that test only) and a Sentinel failover
# (tests/api/test_sentinel_failover.py). Prints, per test: runs, failed
# runs, and the totals of acknowledged, delivered, lost, twice and
# refused_but_delivered; each run's output is kept in $LOOP_LOG_DIR
# (default a temp dir). For a sanitizer build, set SNAP_TIMEOUT_MULTIPLIER=3
# SNAP_SANITIZED=1 as tests/run.sh does. Exit status 1 if any run failed or
# any total of lost / twice / refused_but_delivered is not 0.
set -u
N=${1:-20}
BUILD=$(cd "${2:-build}" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
LOG_DIR=${LOOP_LOG_DIR:-$(mktemp -d -t snap-loop-XXXXXX)}
mkdir -p "$LOG_DIR" || exit 2
export PYTHONPATH="$SRC/tests/harness" PYTHONDONTWRITEBYTECODE=1 SNAP_SOURCE_DIR="$SRC"
export SNAP_USERS_BIN="$BUILD/users" SNAP_INGEST_BIN="$BUILD/ingest" SNAP_FETCH_BIN="$BUILD/fetch"
for b in "$SNAP_USERS_BIN" "$SNAP_INGEST_BIN" "$SNAP_FETCH_BIN"; do
  [ -x "$b" ] || { echo "loop.sh: $b is not built" >&2; exit 2; }
done

# name|script|test functions (empty: all of the script)
RUNS=(
  "redis_crash|tests/faults/test_redis_crash.py|"
  "redis_stall|tests/faults/test_redis_stall.py|"
  "cold_writer_flock|tests/faults/test_cold_store.py|writer_flock_under_concurrent_load_keeps_the_contract"
  "sentinel_failover|tests/api/test_sentinel_failover.py|"
)
FAILED=0
for i in $(seq 1 "$N"); do
  for spec in "${RUNS[@]}"; do
    IFS='|' read -r name script fns <<<"$spec"
    log="$LOG_DIR/$name.$i.log"
    # shellcheck disable=SC2086
    if python3 "$SRC/$script" $fns >"$log" 2>&1; then
      echo "run $i $name: ok"
    else
      echo "run $i $name: FAILED (see $log)"
      echo "RUN-FAILED $name" >>"$log"
      FAILED=1
    fi
  done
done

python3 - "$LOG_DIR" <<'EOF'
import glob, json, os, sys
keys = ["acknowledged", "delivered", "lost", "twice", "refused_but_delivered"]
tot, runs, failed = {}, {}, {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.log"))):
    for line in open(path, errors="replace"):
        if line.startswith("FAULT-SUMMARY "):
            d = json.loads(line[len("FAULT-SUMMARY "):])
            t = tot.setdefault(d["test"], dict.fromkeys(keys, 0))
            for k in keys:
                t[k] += d.get(k, 0)
            runs[d["test"]] = runs.get(d["test"], 0) + 1
            if d.get("problems"):
                failed[d["test"]] = failed.get(d["test"], 0) + 1
        elif line.startswith("RUN-FAILED "):
            n = line.split()[1]
            failed["file:" + n] = failed.get("file:" + n, 0) + 1
print("%-22s %5s %6s %12s %10s %5s %6s %22s" % ("test", "runs", "failed", "acknowledged",
                                               "delivered", "lost", "twice",
                                               "refused_but_delivered"))
bad = 0
for name in sorted(tot):
    t = tot[name]
    print("%-22s %5d %6d %12d %10d %5d %6d %22d" % (name, runs[name], failed.get(name, 0),
          t["acknowledged"], t["delivered"], t["lost"], t["twice"], t["refused_but_delivered"]))
    bad |= bool(t["lost"] or t["twice"] or t["refused_but_delivered"])
for k, v in sorted(failed.items()):
    if k.startswith("file:"):
        print("failed runs of %s: %d" % (k[5:], v))
sys.exit(1 if bad else 0)
EOF
SUMMARY=$?
echo "logs: $LOG_DIR"
[ "$FAILED" = 0 ] && [ "$SUMMARY" = 0 ]
