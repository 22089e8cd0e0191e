#!/usr/bin/env bash
# Install (or reuse) a headless-capable Chromium for the web console's browser test
# (crates/lodge/tests/integration/console.rs, driven by playwright-core from
# scripts/setup-node-packages.sh; Playwright's own browser download is never used).
#
#   scripts/setup-chromium.sh   -> prints the chromium binary's path on stdout
#
# Uses $LODGE_TEST_CHROMIUM when set, else `chromium` on PATH (/usr/bin/chromium), else
# installs Debian's `chromium` package with apt-get when running as root (as
# scripts/setup-node.sh does for npm). Fails (exit 1, reason on stderr) when none of
# these works; the test decides whether that is a skip or a failure.
set -euo pipefail

log() { echo "setup-chromium: $*" >&2; }
die() { echo "setup-chromium: error: $*" >&2; exit 1; }

found() {
    if [[ -n "${LODGE_TEST_CHROMIUM:-}" ]]; then
        if [[ -x "$LODGE_TEST_CHROMIUM" ]]; then echo "$LODGE_TEST_CHROMIUM"; fi
        return 0
    fi
    command -v chromium || command -v chromium-browser || true
}

bin="$(found)"
if [[ -z "$bin" ]]; then
    [[ -z "${LODGE_TEST_CHROMIUM:-}" ]] || die "LODGE_TEST_CHROMIUM=$LODGE_TEST_CHROMIUM is not an executable"
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        # Serialize concurrent runs (several test processes at once).
        if command -v flock >/dev/null 2>&1; then
            exec 9>/tmp/lodge-setup-chromium.lock
            flock 9
        fi
        bin="$(found)"
        if [[ -z "$bin" ]]; then
            log "chromium not found; installing Debian's chromium with apt-get"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >&2
            apt-get install -y -qq --no-install-recommends chromium >&2 || die "could not install chromium"
            bin="$(found)"
        fi
    else
        die "chromium not found on PATH and not root with apt-get to install it (Debian/Ubuntu: 'sudo apt-get install chromium')"
    fi
fi
[[ -n "$bin" ]] || die "chromium missing after install"
"$bin" --version >&2 || die "$bin does not run"
echo "$bin"
