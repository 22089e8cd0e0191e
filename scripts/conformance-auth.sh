#!/usr/bin/env bash
# Run the MCP conformance suite's client-side authorization scenarios (npm
# @modelcontextprotocol/conformance, pinned in scripts/setup-node.sh) with `lodge connect
# --oauth-headless` as the client under test: the suite starts its own MCP server that
# answers 401, its own authorization server (which approves without a person), and checks
# the client's discovery, registration, PKCE, resource indicators, scopes and token use.
#
#   scripts/conformance-auth.sh              # every scenario in SCENARIOS below
#   scripts/conformance-auth.sh auth/NAME... # just those
#
# (The suite has no authorization scenario for a *server*: Lodge's resource-server side is
# tested against a real authorization server in crates/lodge/tests/integration/auth.rs.)
#
# Environment: CONFORMANCE_OUT (results root, default target/conformance-auth; the suite's
# per-scenario checks.json land there), LODGE_CACHE_DIR (as for setup-node.sh).
# Exit 1 when any scenario has a FAILURE check (WARNINGs are listed, and do not count).
#
# Internal: `conformance-auth.sh --client URL` is the command the suite runs for each
# scenario. It passes the pre-registered credentials the suite hands over in
# MCP_CONFORMANCE_CONTEXT (auth/pre-registration) as lodge connect's --oauth-client-id and
# --oauth-client-secret flags, and calls the suite server's one tool.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
log() { echo "conformance-auth: $*" >&2; }
die() {
    echo "conformance-auth: error: $*" >&2
    exit 1
}

if [[ "${1:-}" == "--client" ]]; then
    url="${2:?--client needs the server URL}"
    args=(connect --oauth-headless)
    if [[ -n "${MCP_CONFORMANCE_CONTEXT:-}" ]]; then
        # One KEY=VALUE a line: the context's client_id / client_secret, when it has them.
        while IFS='=' read -r key value; do
            case "$key" in
            client_id) args+=(--oauth-client-id "$value") ;;
            client_secret) args+=(--oauth-client-secret "$value") ;;
            esac
        done < <("$LODGE_CONFORMANCE_NODE" -e '
            const c = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT);
            for (const k of ["client_id", "client_secret"])
                if (typeof c[k] === "string" && !/[\n=]/.test(c[k])) console.log(`${k}=${c[k]}`);')
    fi
    exec "$LODGE_CONFORMANCE_BIN" "${args[@]}" --call test-tool "$url"
fi

cd "$REPO"
# Every client auth scenario of the suite but its extensions (client credentials, enterprise
# managed authorization, DPoP, workload identity: lodge connect has none of those flows).
# auth/basic-cimd passes with a warning: lodge connect registers dynamically unless given
# --oauth-client-metadata-url.
SCENARIOS=(
    auth/metadata-default
    auth/metadata-var1
    auth/metadata-var2
    auth/metadata-var3
    auth/basic-cimd
    auth/scope-from-www-authenticate
    auth/scope-from-scopes-supported
    auth/scope-omitted-when-undefined
    auth/scope-step-up
    auth/scope-retry-limit
    auth/token-endpoint-auth-basic
    auth/token-endpoint-auth-post
    auth/token-endpoint-auth-none
    auth/pre-registration
    auth/resource-mismatch
    auth/offline-access-scope
    auth/offline-access-not-supported
    auth/authorization-server-migration
    auth/iss-supported
    auth/iss-not-advertised
    auth/iss-supported-missing
    auth/iss-wrong-issuer
    auth/iss-unexpected
    auth/iss-normalized
    auth/metadata-issuer-mismatch
    auth/2025-03-26-oauth-metadata-backcompat
    auth/2025-03-26-oauth-endpoint-fallback
)
[[ $# -eq 0 ]] || SCENARIOS=("$@")
OUT="${CONFORMANCE_OUT:-$REPO/target/conformance-auth}"

NODE="$(scripts/setup-node.sh node)"
SUITE="$(scripts/setup-node.sh conformance)"
log "building lodge (debug)"
cargo build --quiet -p lodge
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
export LODGE_CONFORMANCE_BIN="$TARGET_DIR/debug/lodge"
export LODGE_CONFORMANCE_NODE="$NODE"
[[ -x "$LODGE_CONFORMANCE_BIN" ]] || die "$LODGE_CONFORMANCE_BIN missing"

rm -rf "$OUT"
mkdir -p "$OUT"
failed=()
for scenario in "${SCENARIOS[@]}"; do
    dir="$OUT/${scenario//\//-}"
    # The suite exits non-zero on a WARNING too, so the verdict is read from its checks.
    "$NODE" "$SUITE" client --command "bash $REPO/scripts/conformance-auth.sh --client" \
        --scenario "$scenario" -o "$dir" >"$dir.log" 2>&1 || true
    if "$NODE" -e '
        const fs = require("fs"), path = require("path");
        const files = fs.readdirSync(process.argv[1], { recursive: true })
            .filter((f) => path.basename(f) === "checks.json");
        const checks = files.flatMap((f) => JSON.parse(fs.readFileSync(path.join(process.argv[1], f))));
        process.exit(files.length > 0 && !checks.some((c) => c.status === "FAILURE") ? 0 : 1);' "$dir"; then
        status=passed
    else
        status=FAILED
        failed+=("$scenario")
    fi
    summary="$(grep -m1 -E '^(Passed|Total):' "$dir.log" || true)"
    log "$scenario: $status ($summary)"
done
if [[ ${#failed[@]} -gt 0 ]]; then
    log "failed: ${failed[*]} (logs in $OUT)"
    exit 1
fi
echo "conformance-auth: ${#SCENARIOS[@]} passed, 0 failed"
