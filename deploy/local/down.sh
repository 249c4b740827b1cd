#!/usr/bin/env bash
# down.sh: stops what deploy/local/up.sh started — the processes whose PIDs
# it recorded under .state/pids, and nothing else. SIGTERM first (services
# finish in-flight requests), SIGKILL after 10 s. Data (.state/redis,
# .state/cold.db) is kept for the next up.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
state=${SNAPTEXT_STATE_DIR:-$root/.state}
shopt -s nullglob
# HAProxy first (no new requests), then the services, Redis last.
order=("$state/pids/haproxy.pid" "$state"/pids/users*.pid "$state"/pids/ingest*.pid
       "$state"/pids/fetch*.pid "$state"/pids/pages*.pid "$state/pids/redis.pid")
stopped=0
for f in "${order[@]}"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$(basename "$f" .pid) (pid $pid) ignored SIGTERM for 10 s; killing" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        stopped=$((stopped + 1))
    fi
    rm -f "$f"
done
echo "snaptext stopped ($stopped processes)."
