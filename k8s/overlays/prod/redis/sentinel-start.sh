#!/bin/sh
# sentinel-start.sh: starts one of the three Sentinels of the prod Redis.
#
# Sentinel rewrites its configuration file as it learns, so the file is
# written here into a writable emptyDir (/sentinel) at every start. The
# primary to monitor is the one the other Sentinels report, or redis-0 when
# none answers (first start). Quorum 2 of 3: a failover needs two Sentinels
# to agree that the primary is down. Hostnames everywhere, since pod
# addresses change on restart (resolve-hostnames / announce-hostnames).
# REDIS_PASSWORD (from the Secret) is the password of the Redis members
# (auth-pass) and of the Sentinels themselves (requirepass; Sentinels use it
# with each other too, so all three share it). redis-cli reads REDISCLI_AUTH.
set -eu
[ -n "${REDIS_PASSWORD:-}" ] || { echo "sentinel-start: REDIS_PASSWORD is empty" >&2; exit 1; }
umask 077

conf=/sentinel/sentinel.conf
self="${HOSTNAME}.redis-sentinel"

primary=""
for i in 0 1 2; do
    peer="redis-sentinel-$i.redis-sentinel"
    [ "$peer" = "$self" ] && continue
    answer=$(timeout 3 redis-cli -h "$peer" -p 26379 --raw \
             sentinel get-master-addr-by-name mymaster 2>/dev/null | head -n 1) || true
    case $answer in
        ''|*ERR*|*rror*) ;;
        *) primary=$answer; break ;;
    esac
done
[ -n "$primary" ] || primary=redis-0.redis-headless

# Sentinel refuses a monitor line whose name does not resolve; the primary's
# DNS record appears once its pod is scheduled.
tries=0
until getent hosts "$primary" >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -ge 60 ]; then
        echo "sentinel-start: $primary does not resolve" >&2
        exit 1
    fi
    sleep 2
done

cat > "$conf" <<CONF
port 26379
dir /sentinel
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $self
requirepass $REDIS_PASSWORD
sentinel monitor mymaster $primary 6379 2
sentinel auth-pass mymaster $REDIS_PASSWORD
sentinel down-after-milliseconds mymaster 5000
sentinel failover-timeout mymaster 60000
sentinel parallel-syncs mymaster 1
CONF
echo "sentinel-start: $self monitors $primary"
exec redis-server "$conf" --sentinel
