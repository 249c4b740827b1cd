#!/usr/bin/env bash
# up.sh: starts the whole snaptext stack on this machine, without containers:
# Redis (AOF), users x1, ingest x1, fetch x1, pages x1 (the web client and
# the API reference) and HAProxy on 127.0.0.1:8080,
# with the SQLite cold store. Installs missing packages (as root), builds,
# starts, waits until every instance is ready, prints how to use it, and
# leaves it running. Everything lives under .state/ (or SNAPTEXT_STATE_DIR);
# deploy/local/down.sh stops exactly what this started, by PID.
#
# Settings (environment):
#   SNAPTEXT_PUBLIC_PORT      public HAProxy port (8080)
#   SNAPTEXT_ADMIN_USERNAME   first admin (admin)
#   SNAPTEXT_ADMIN_PASSWORD   its password (generated once, kept in .state/admin)
#   SNAPTEXT_AUTH             required | open (required)
#   SNAPTEXT_LOCAL_PORT_BASE  first internal port: Redis, then the services (18080);
#                             the public port must lie outside base..base+6
#   SNAPTEXT_LOCAL_INSTANCES  instances of ingest and of fetch: 1 (default) or 2.
#                             One of each is the faster layout on one machine:
#                             every process on the SQLite file is another
#                             writer taking turns on its lock and emptying the
#                             others' page caches (docs/PERFORMANCE.md); 2 lets
#                             one instance restart while the other serves.
#   SNAPTEXT_BIN_DIR          run the users/ingest/fetch binaries of this dir
#                             instead of building build/ (tests use it)
# When anything fails to start, up.sh says which process and where its log
# is, stops what it had started (down.sh) and exits 1.
# Logs: .state/logs/<process>.log; HAProxy's JSON access lines go to
# .state/logs/haproxy.log (it runs in the foreground of its own process,
# not daemonized, so its `log stdout` reaches that file).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
state=${SNAPTEXT_STATE_DIR:-$root/.state}
public_port=${SNAPTEXT_PUBLIC_PORT:-8080}
base=${SNAPTEXT_LOCAL_PORT_BASE:-18080}
redis_port=$base
auth=${SNAPTEXT_AUTH:-required}
bin_dir=${SNAPTEXT_BIN_DIR:-}
instances=${SNAPTEXT_LOCAL_INSTANCES:-1}

# Settings first, before anything is installed, built or started.
case $instances in 1 | 2) ;; *) echo "SNAPTEXT_LOCAL_INSTANCES must be 1 or 2 (got '$instances')" >&2; exit 1 ;; esac
for v in "$public_port" "$base"; do
    case $v in '' | *[!0-9]*) echo "SNAPTEXT_PUBLIC_PORT / SNAPTEXT_LOCAL_PORT_BASE must be port numbers (got '$v')" >&2; exit 1 ;; esac
done
if [ "$public_port" -lt 1 ] || [ "$public_port" -gt 65535 ] || [ "$base" -lt 1 ] || [ "$((base + 6))" -gt 65535 ]; then
    echo "SNAPTEXT_PUBLIC_PORT must be 1-65535 and SNAPTEXT_LOCAL_PORT_BASE 1-65529" >&2
    exit 1
fi
if [ "$public_port" -ge "$base" ] && [ "$public_port" -le $((base + 6)) ]; then
    echo "SNAPTEXT_PUBLIC_PORT=$public_port lies inside the internal ports $base-$((base + 6)) (Redis and the services, SNAPTEXT_LOCAL_PORT_BASE=$base): pick a public port outside them, or move the base" >&2
    exit 1
fi
mkdir -p "$state/pids" "$state/logs" "$state/redis"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

running=0
for f in "$state"/pids/*.pid; do
    [ -e "$f" ] && alive "$f" && running=$((running + 1))
done
if [ "$running" -gt 0 ]; then
    echo "snaptext is already running ($running processes, state in $state)."
    echo "Stop it with ./deploy/local/down.sh; the URL is http://127.0.0.1:$(cat "$state/public_port" 2>/dev/null || echo "$public_port")"
    exit 0
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in "$public_port" $(seq "$base" $((base + 6))); do
    if port_busy "$p"; then
        echo "port $p on 127.0.0.1 is already in use: set SNAPTEXT_PUBLIC_PORT / SNAPTEXT_LOCAL_PORT_BASE" >&2
        exit 1
    fi
done

"$root/deploy/local/install-deps.sh"

if [ -n "$bin_dir" ]; then
    for b in users ingest fetch pages; do
        [ -x "$bin_dir/$b" ] || { echo "SNAPTEXT_BIN_DIR=$bin_dir has no executable $b" >&2; exit 1; }
    done
else
    bin_dir=$root/build
    echo "building (build/) ..."
    cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$state/logs/build.log" 2>&1 ||
        { echo "configure failed, see $state/logs/build.log" >&2; exit 1; }
    cmake --build "$root/build" -j"$(nproc)" --target users ingest fetch pages >>"$state/logs/build.log" 2>&1 ||
        { echo "build failed, see $state/logs/build.log" >&2; exit 1; }
fi

# From here on processes run: any failure names the process and its log,
# stops everything started so far, and exits 1.
give_up() { # message [log file]
    echo "up.sh: $1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "--- last lines of $2 ---" >&2
        tail -n 5 "$2" >&2
    fi
    echo "up.sh: stopping what was started" >&2
    "$root/deploy/local/down.sh" >&2 || true
    exit 1
}
trap 'give_up "a step failed (line $LINENO: $BASH_COMMAND); logs in $state/logs"' ERR
# A process recorded in pids/ that is no longer running: say which and where.
check_started() { # name pidfile log
    alive "$2" && return 0
    local status=unknown
    if [ -f "$2" ]; then
        wait "$(cat "$2")" 2>/dev/null && status=0 || status=$?
    fi
    trap - ERR
    give_up "$1 exited at start (status $status); its log is $3" "$3"
}

# The admin password is made once and kept: the admin account keeps it.
admin_user=${SNAPTEXT_ADMIN_USERNAME:-admin}
if [ -n "${SNAPTEXT_ADMIN_PASSWORD:-}" ]; then
    admin_pass=$SNAPTEXT_ADMIN_PASSWORD
elif [ -f "$state/admin" ] && [ "$(sed -n 1p "$state/admin")" = "$admin_user" ]; then
    admin_pass=$(sed -n 2p "$state/admin")
else
    admin_pass=$(openssl rand -base64 18 | tr -d '/+=' | cut -c1-20)
fi
(umask 077 && printf '%s\n%s\n' "$admin_user" "$admin_pass" >"$state/admin")

# Redis: AOF fsynced every second. Redis is the index, not the record: what
# a crash loses, ingest's repair puts back from the cold store
# (docs/RELIABILITY.md).
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$state/redis" \
    --appendonly yes --appendfsync everysec --save "" --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$state/pids/redis.pid" --logfile "$state/logs/redis.log"
for _ in $(seq 100); do alive "$state/pids/redis.pid" && port_busy "$redis_port" && break; sleep 0.05; done
alive "$state/pids/redis.pid" && port_busy "$redis_port" ||
    { trap - ERR; give_up "redis-server did not start on port $redis_port; its log is $state/logs/redis.log" "$state/logs/redis.log"; }

export SNAPTEXT_REDIS_URL="redis://127.0.0.1:$redis_port/0"
export SNAPTEXT_STORE="sqlite://$state/cold.db"
export SNAPTEXT_AUTH=$auth
export SNAPTEXT_ADMIN_USERNAME=$admin_user SNAPTEXT_ADMIN_PASSWORD=$admin_pass

start_service() { # name instance port
    SNAPTEXT_LISTEN="127.0.0.1:$3" nohup "$bin_dir/$1" >"$state/logs/$1$2.log" 2>&1 &
    echo $! >"$state/pids/$1$2.pid"
}
start_service users 1 $((base + 1))
# Fixed ports whatever the layout: ingest base+2 (and +3), fetch base+4 (and +5).
ingest_servers="" fetch_servers="" probes="users:1:1"
for i in $(seq "$instances"); do
    start_service ingest "$i" $((base + 1 + i))
    start_service fetch "$i" $((base + 3 + i))
    ingest_servers+="    server ingest$i 127.0.0.1:$((base + 1 + i))"$'\n'
    fetch_servers+="    server fetch$i 127.0.0.1:$((base + 3 + i))"$'\n'
    probes+=" ingest:$i:$((1 + i)) fetch:$i:$((3 + i))"
done
SNAPTEXT_PAGES_ROOT="$bin_dir/site" start_service pages 1 $((base + 6))

cat >"$state/haproxy-backends.cfg" <<EOF
# generated by deploy/local/up.sh
backend users
    server users1 127.0.0.1:$((base + 1))
backend ingest
${ingest_servers}backend fetch
    http-request set-timeout server 45s if { url_param(wait) -m found }
${fetch_servers}backend pages
    server pages1 127.0.0.1:$((base + 6))
EOF
# Foreground mode (-db) in a process of its own: its stdout, where
# haproxy.cfg sends the access log, is haproxy.log.
# MALLOC_TRIM_THRESHOLD_: glibc keeps up to 32 MiB of freed heap instead of
# handing it back each time HAProxy's 80 KiB buffers free 128 KiB (a brk(2)
# and page faults per few requests; docs/PERFORMANCE.md, "HAProxy's heap").
MALLOC_TRIM_THRESHOLD_=33554432 SNAPTEXT_PUBLIC_BIND="127.0.0.1:$public_port" nohup haproxy -db \
    -f "$root/deploy/haproxy/haproxy.cfg" -f "$state/haproxy-backends.cfg" \
    >>"$state/logs/haproxy.log" 2>&1 &
echo $! >"$state/pids/haproxy.pid"
echo "$public_port" >"$state/public_port"
for _ in $(seq 100); do alive "$state/pids/haproxy.pid" && port_busy "$public_port" && break; sleep 0.05; done
check_started haproxy "$state/pids/haproxy.pid" "$state/logs/haproxy.log"
port_busy "$public_port" ||
    { trap - ERR; give_up "haproxy is not listening on 127.0.0.1:$public_port; its log is $state/logs/haproxy.log" "$state/logs/haproxy.log"; }

ready() { curl -fs -o /dev/null --max-time 1 "http://127.0.0.1:$1/readyz" 2>/dev/null; }
deadline=$((SECONDS + 30))
for svc in $probes pages:1:6; do
    IFS=: read -r name inst off <<<"$svc"
    port=$((base + off))
    until ready "$port"; do
        check_started "$name$inst" "$state/pids/$name$inst.pid" "$state/logs/$name$inst.log"
        if [ $SECONDS -ge $deadline ]; then
            trap - ERR
            give_up "$name$inst (port $port) did not become ready in 30 s; its log is $state/logs/$name$inst.log" "$state/logs/$name$inst.log"
        fi
        sleep 0.1
    done
done
# Through HAProxy: one route of each backend must stop answering 503 (it
# marks a server up after two good health checks).
for probe in "GET /users/me" "GET /chat" "GET /chats/_probe" "GET /openapi.json"; do
    until [ "$(curl -s -o /dev/null -w '%{http_code}' -X "${probe% *}" "http://127.0.0.1:$public_port${probe#* }")" != 503 ] &&
        [ "$(curl -s -o /dev/null -w '%{http_code}' -X "${probe% *}" "http://127.0.0.1:$public_port${probe#* }")" != 000 ]; do
        [ $SECONDS -ge $deadline ] && { trap - ERR; give_up "HAProxy does not reach the services; see $state/logs/haproxy.log" "$state/logs/haproxy.log"; }
        sleep 0.1
    done
done

trap - ERR
url="http://127.0.0.1:$public_port"
demo="alice-$(openssl rand -hex 3)" # a fresh name, so the lines work on every run
cat <<EOF
snaptext is running at $url  (auth mode: $auth; state and logs in $state)
admin: $admin_user / $admin_pass

In a browser: the web client at $url/ , the API reference at $url/docs

Try it (register, send, read):
  TOKEN=\$(curl -s -X POST $url/users -H 'Content-Type: application/json' -d '{"username":"$demo","password":"correct horse battery"}' | sed -n 's/.*"token":"\([^"]*\)".*/\1/p')
  curl -s -X POST $url/chat -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' -d '{"username":"$demo","text":"hello","timeout":60}'
  curl -s $url/chats/$demo -H "Authorization: Bearer \$TOKEN"

Stop it with ./deploy/local/down.sh
EOF
