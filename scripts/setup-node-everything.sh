#!/usr/bin/env bash
# Install (or reuse) the reference MCP server `@modelcontextprotocol/server-everything` from
# the npm registry, for the test that runs it inside Lodge's sandbox.
#
#   scripts/setup-node-everything.sh   -> prints two lines on stdout:
#                                           NODE=<node binary to run it with>
#                                           EVERYTHING=<path of its dist/index.js>
#
# The package is pinned exactly, its dependencies resolved with `npm install --before`, into
# ${LODGE_CACHE_DIR:-<repo>/.cache}/node-everything. It runs on the system node (>= 18; the
# node under /usr is visible inside the sandbox), else on scripts/setup-node.sh's Node 22.
# Idempotent (a stamp records what was installed); progress on stderr, paths on stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${LODGE_CACHE_DIR:-$REPO/.cache}"
PKG="@modelcontextprotocol/server-everything@2026.8.31"
NPM_BEFORE="2026-11-24T00:00:00Z"

log() { echo "setup-node-everything: $*" >&2; }
die() { echo "setup-node-everything: error: $*" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
DIR="$CACHE_DIR/node-everything"
JS="$DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
STAMP="$DIR/.lodge-stamp"
WANT="pkg=$PKG before=$NPM_BEFORE"

node_bin() {
    local sys
    sys="$(command -v node || true)"
    if [[ -n "$sys" ]] && "$sys" -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' 2>/dev/null; then
        echo "$sys"
    else
        "$REPO/scripts/setup-node.sh" node
    fi
}

if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.node-everything.lock"
    flock 9
fi

if ! [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -f "$JS" ]]; then
    command -v npm >/dev/null 2>&1 || "$REPO/scripts/setup-node.sh" node >/dev/null ||
        die "npm not found"
    command -v npm >/dev/null 2>&1 || die "npm not found on PATH (Debian/Ubuntu: 'sudo apt-get install npm')"
    log "installing $PKG into $DIR"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo '{"name":"lodge-node-everything","private":true}' >"$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --no-update-notifier --save-exact \
        --before "$NPM_BEFORE" --loglevel=error "$PKG" >&2
    [[ -f "$JS" ]] || die "$JS missing after install"
    echo "$WANT" >"$STAMP"
fi

echo "NODE=$(node_bin)"
echo "EVERYTHING=$JS"
