#!/bin/sh
# The HAProxy example on one machine: Redis, the three nodes and HAProxy, on loopback
# addresses standing in for the hosts (10.0.0.N becomes 127.0.0.N). Clients use
# http://127.0.0.1:8080/mcp; HAProxy's view of the nodes is at http://127.0.0.1:8404/.
# Ctrl-C stops everything.
#
#   deploy/haproxy/local.sh                        # lodge, redis-server, haproxy on PATH
#   LODGE=target/release/lodge deploy/haproxy/local.sh
#
# The nodes use the namespaces backend, which needs root; as another user, run with
# LODGE_BACKEND=process (no isolation). Files go to $WORK (default: a new temp dir).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
lodge=$(command -v "${LODGE:-lodge}") || { echo "lodge not found (set LODGE=path)" >&2; exit 1; }
lodge=$(cd "$(dirname "$lodge")" && pwd)/$(basename "$lodge")
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
echo "files and logs in $work"

# One key and one admin token, shared by every node.
[ -f "$work/cluster.key" ] || "$lodge" cluster keygen --out "$work/cluster.key"
[ -f "$work/admin.token" ] || { od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$work/admin.token"; chmod 600 "$work/admin.token"; }

pids=""
# SIGTERM makes a cluster node drain (up to 30m); a second one ends it at once.
trap 'kill $pids 2>/dev/null; sleep 1; kill $pids 2>/dev/null; wait 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# Redis keeps nothing Lodge needs across a restart (every key expires): no persistence.
redis-server --bind 127.0.0.10 --port 6379 --save '' --appendonly no > "$work/redis.log" 2>&1 &
pids="$pids $!"

for n in a b c; do
    sed -e 's/10\.0\.0\./127.0.0./g' \
        -e "s#/etc/lodge/#$work/#g" \
        -e "s#/var/lib/lodge/scratch#$work/scratch-$n#" \
        -e "s#/usr/local/bin/lodge#$lodge#" \
        "$here/node-$n.toml" > "$work/node-$n.toml"
    "$lodge" serve --config "$work/node-$n.toml" > "$work/node-$n.log" 2>&1 &
    pids="$pids $!"
done

sed -e 's/10\.0\.0\./127.0.0./g' -e 's/^\( *bind\) :80$/\1 127.0.0.1:8080/' \
    -e '/^ *chroot /d' -e '/^ *user /d' -e '/^ *group /d' \
    "$here/haproxy.cfg" > "$work/haproxy.cfg"
haproxy -db -f "$work/haproxy.cfg" > "$work/haproxy.log" 2>&1 &
pids="$pids $!"

echo "MCP: http://127.0.0.1:8080/mcp   nodes: http://127.0.0.1:8404/   admin token: $work/admin.token"
wait
