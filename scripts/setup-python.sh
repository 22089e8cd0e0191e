#!/usr/bin/env bash
# Create (or reuse) the Python virtualenv used by the test fixtures.
#
#   scripts/setup-python.sh        -> prints the venv's python path on stdout
#
# The venv lives at ${LODGE_CACHE_DIR:-<repo>/.cache}/venv and gets the exact pins in
# tests/fixtures/python/requirements.txt. Idempotent: when the venv already matches the
# pins (and the same base python3), it does nothing. Progress goes to stderr; stdout
# carries only the python path, so callers can do PY=$(scripts/setup-python.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${LODGE_CACHE_DIR:-$REPO/.cache}"
REQS="$REPO/tests/fixtures/python/requirements.txt"

log() { echo "setup-python: $*" >&2; }
die() { echo "setup-python: error: $*" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH"
[[ -f "$REQS" ]] || die "missing $REQS"

mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
VENV="$CACHE_DIR/venv"
VPY="$VENV/bin/python"
STAMP="$VENV/.lodge-stamp"

# Serialize concurrent runs (e.g. two test runs started at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE_DIR/.venv.lock"
    flock 9
fi

# The stamp records what the venv was built from: the base interpreter and the pins.
BASE_PY="$(command -v python3)"
BASE_VER="$(python3 -c 'import sys; print(sys.version.split()[0])')"
REQS_SUM="$(sha256sum "$REQS" | cut -d' ' -f1)"
WANT="python3=$BASE_PY $BASE_VER reqs=$REQS_SUM"

if [[ -x "$VPY" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] && "$VPY" -c '' 2>/dev/null; then
    echo "$VPY"
    exit 0
fi

# python3 -m venv needs the venv and ensurepip modules; Debian ships them separately.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        minor="$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
        log "python3 venv module missing; installing python3-venv with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq python3-venv >&2 ||
            apt-get install -y -qq "python${minor}-venv" >&2 ||
            die "could not install python3-venv"
        python3 -c 'import venv, ensurepip' >/dev/null 2>&1 ||
            die "python3 still lacks the venv module after installing python3-venv"
    else
        die "python3 ($BASE_PY) has no working venv module; install it (Debian/Ubuntu: 'sudo apt-get install python3-venv') and re-run"
    fi
fi

if [[ -d "$VENV" ]]; then
    log "venv at $VENV is stale or incomplete; recreating"
    rm -rf "$VENV"
fi

log "creating venv at $VENV with $BASE_PY ($BASE_VER)"
python3 -m venv "$VENV" >&2
log "installing pins from ${REQS#"$REPO"/}"
"$VPY" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS" >&2
"$VPY" -c 'import mcp' || die "mcp does not import in the new venv"
# The registry servers of crates/lodge/tests/integration/registry.rs.
"$VPY" -c 'import fastmcp, mcp_server_time, mcp_server_git' ||
    die "fastmcp, mcp_server_time or mcp_server_git does not import in the new venv"
echo "$WANT" >"$STAMP"
log "ready: $("$VPY" -m pip --disable-pip-version-check freeze 2>/dev/null | grep -i '^mcp==' || true)"

echo "$VPY"
