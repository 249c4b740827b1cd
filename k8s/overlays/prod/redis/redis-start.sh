#!/bin/sh
# redis-start.sh ARGS...: starts one member of the prod Redis StatefulSet.
# ARGS is the redis-server command line of k8s/base/redis.yaml (persistence,
# memory); this script adds what makes the member the primary or a replica:
#
#   - The Sentinels know the current primary (after a failover it is not
#     redis-0): ask each until one answers.
#   - No Sentinel answers (the very first start of the whole set): redis-0
#     is the primary and the others replicate it.
#   - Members announce their stable DNS name (redis-N.redis-headless), not
#     the pod address, which changes on every restart.
#   - min-replicas-to-write 1: a primary cut off from both replicas stops
#     taking writes after 10 s instead of accepting writes (hot copies,
#     sessions) that the failover on the other side of the partition would
#     lose. The services answer 503 meanwhile.
#   - The password (REDIS_PASSWORD, from the Secret) is both this member's
#     requirepass and the masterauth it replicates with; it goes to
#     redis-server on stdin, never in argv. redis-cli (asking the Sentinels,
#     which have the same password) reads REDISCLI_AUTH.
set -eu
[ -n "${REDIS_PASSWORD:-}" ] || { echo "redis-start: REDIS_PASSWORD is empty" >&2; exit 1; }

self="${HOSTNAME}.redis-headless"
self_ip=$(hostname -i 2>/dev/null || true)

primary=""
for i in 0 1 2; do
    answer=$(timeout 3 redis-cli -h "redis-sentinel-$i.redis-sentinel" -p 26379 --raw \
             sentinel get-master-addr-by-name mymaster 2>/dev/null | head -n 1) || true
    case $answer in
        ''|*ERR*|*rror*) ;;
        *) primary=$answer; break ;;
    esac
done
if [ -z "$primary" ]; then
    if [ "${HOSTNAME##*-}" = "0" ]; then primary=$self; else primary=redis-0.redis-headless; fi
fi
if [ "$primary" = "$self_ip" ]; then
    primary=$self
fi

set -- "$@" --replica-announce-ip "$self" --min-replicas-to-write 1 --min-replicas-max-lag 10
if [ "$primary" = "$self" ]; then
    echo "redis-start: $self starts as the primary"
else
    echo "redis-start: $self starts as a replica of $primary"
    set -- "$@" --replicaof "$primary" 6379
fi
exec "$@" - <<EOF
requirepass $REDIS_PASSWORD
masterauth $REDIS_PASSWORD
EOF
