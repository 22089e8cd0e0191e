#!/usr/bin/env bash
# Where a new session's spawn goes when many are already open (BENCHMARKS.md, run 4).
#
#   scripts/profile-spawn.sh BACKEND N     # e.g. namespaces 3000
#
# Starts the release `lodge serve --demo` on BACKEND, opens N idle sessions (8 at a time),
# then records `perf record -a -g` while 100 more open one at a time, and prints the
# kernel symbols that cost most. Needs root, perf and curl; build first with
# `cargo build --release -p lodge`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

backend="${1:?usage: $0 BACKEND N}"
sessions="${2:?usage: $0 BACKEND N}"
port=8799
data="target/profile-spawn-$backend-$sessions.data"
init='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"profile","version":"1"}}}'

target/release/lodge serve --demo --backend "$backend" --listen "127.0.0.1:$port" \
    --max-sessions $((sessions + 200)) >"target/profile-spawn.log" 2>&1 &
lodge=$!
trap 'kill $lodge 2>/dev/null; wait $lodge 2>/dev/null || true' EXIT
sleep 1

open_sessions() { # COUNT PARALLEL
    seq "$1" | xargs -P "$2" -I{} curl -s -o /dev/null \
        -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
        "http://127.0.0.1:$port/mcp" -d "$init"
}
export -f open_sessions
export port init

open_sessions "$sessions" 8
echo "descriptors in Lodge: $(ls /proc/$lodge/fd | wc -l); processes on the host: $(ls -d /proc/[0-9]* | wc -l)"
perf record -q -a -g -o "$data" -- bash -c 'open_sessions 100 1' >/dev/null 2>&1
perf report -i "$data" --no-children --sort sym 2>/dev/null \
    | grep -E '^ +[0-9.]+%' | head -15
