#!/usr/bin/env bash
# Install (or reuse) the npm packages the integration tests run: the reference MCP servers
# (hosted inside Lodge's sandbox) and the TypeScript SDK (a client of Lodge).
#
#   scripts/setup-node-packages.sh   -> prints on stdout, one KEY=VALUE a line:
#       NODE=<node binary to run them with>
#       NODE_MODULES=<the node_modules directory they are installed in>
#       EVERYTHING=<@modelcontextprotocol/server-everything's dist/index.js>
#       FILESYSTEM=<@modelcontextprotocol/server-filesystem's dist/index.js>
#       MEMORY=<@modelcontextprotocol/server-memory's dist/index.js>
#       SDK=<@modelcontextprotocol/sdk's package directory>
#       OIDC_PROVIDER=<oidc-provider's package directory> (the authorization server of the
#           OAuth tests, tests/fixtures/node/idp.mjs)
#       PLAYWRIGHT=<playwright-core's package directory> (drives scripts/setup-chromium.sh's
#           Chromium in the web console's browser test, tests/fixtures/node/console.mjs;
#           playwright-core downloads no browser; it needs node >= 20, so that test runs
#           it on scripts/setup-node.sh's Node 22 when NODE is older)
#
# Every package is pinned exactly and its dependencies resolved with `npm install --before`
# (what the registry held at that date), into ${LODGE_CACHE_DIR:-<repo>/.cache}/node-packages.
# They run on the system node (>= 18; the node under /usr is visible inside the sandbox),
# else on scripts/setup-node.sh's Node 22. Idempotent (a stamp records what was installed);
# progress on stderr, paths on stdout.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${LODGE_CACHE_DIR:-$REPO/.cache}"
PKGS=(
    "@modelcontextprotocol/server-everything@2026.8.31"
    "@modelcontextprotocol/server-filesystem@2026.8.31"
    "@modelcontextprotocol/server-memory@2026.8.31"
    "@modelcontextprotocol/sdk@1.32.2"
    "oidc-provider@9.13.3"
    "playwright-core@1.65.1"
)
NPM_BEFORE="2026-11-24T00:00:00Z"

log() { echo "setup-node-packages: $*" >&2; }
die() { echo "setup-node-packages: error: $*" >&2; exit 1; }

mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
DIR="$CACHE_DIR/node-packages"
MODULES="$DIR/node_modules"
STAMP="$DIR/.lodge-stamp"
WANT="pkgs=${PKGS[*]} before=$NPM_BEFORE"

# What each package is run from; all must exist after an install.
declare -A ENTRY=(
    [EVERYTHING]="$MODULES/@modelcontextprotocol/server-everything/dist/index.js"
    [FILESYSTEM]="$MODULES/@modelcontextprotocol/server-filesystem/dist/index.js"
    [MEMORY]="$MODULES/@modelcontextprotocol/server-memory/dist/index.js"
    [SDK]="$MODULES/@modelcontextprotocol/sdk"
    [OIDC_PROVIDER]="$MODULES/oidc-provider"
    [PLAYWRIGHT]="$MODULES/playwright-core"
)

node_bin() {
    local sys
    sys="$(command -v node || true)"
    if [[ -n "$sys" ]] && "$sys" -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' 2>/dev/null; then
        echo "$sys"
    else
        "$REPO/scripts/setup-node.sh" node
    fi
}

all_present() {
    local key
    for key in "${!ENTRY[@]}"; do
        [[ -e "${ENTRY[$key]}" ]] || return 1
    done
}

if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.node-packages.lock"
    flock 9
fi

if ! [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] || ! all_present; then
    command -v npm >/dev/null 2>&1 || "$REPO/scripts/setup-node.sh" node >/dev/null ||
        die "npm not found"
    command -v npm >/dev/null 2>&1 || die "npm not found on PATH (Debian/Ubuntu: 'sudo apt-get install npm')"
    log "installing ${PKGS[*]} into $DIR"
    rm -rf "$DIR"
    mkdir -p "$DIR"
    echo '{"name":"lodge-node-packages","private":true}' >"$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --no-update-notifier --save-exact \
        --before "$NPM_BEFORE" --loglevel=error "${PKGS[@]}" >&2
    for key in "${!ENTRY[@]}"; do
        [[ -e "${ENTRY[$key]}" ]] || die "${ENTRY[$key]} missing after install"
    done
    echo "$WANT" >"$STAMP"
fi

echo "NODE=$(node_bin)"
echo "NODE_MODULES=$MODULES"
for key in EVERYTHING FILESYSTEM MEMORY SDK OIDC_PROVIDER PLAYWRIGHT; do
    echo "$key=${ENTRY[$key]}"
done
