#!/usr/bin/env bash
# Fuzzes Lodge's parsers (the targets in fuzz/, see RELIABILITY.md "Fuzzing").
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   default 30; CI runs `scripts/fuzz.sh 20`
#   scripts/fuzz.sh 3600                   the long run: an hour per target
#   FUZZ_TARGETS="message headers" scripts/fuzz.sh 60   only some targets
#
# Each target starts from fuzz/seeds/TARGET and keeps what it learns in fuzz/corpus/TARGET
# (not in git), so later runs go on where earlier ones stopped. A crash stops the script
# with the reproducer in fuzz/artifacts/TARGET/; it becomes a file in fuzz/regressions/
# and a unit test in the crate concerned.
#
# With a nightly toolchain the targets are built with AddressSanitizer (cargo-fuzz's
# default); without one, with the stable toolchain, RUSTC_BOOTSTRAP=1 (cargo-fuzz needs
# -Z flags) and no sanitizer: safe Rust needs ASan for little, a panic is still a crash.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
    exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
fi

if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
    sanitizer=()
    echo "toolchain: $(cargo +nightly --version), AddressSanitizer"
else
    export RUSTC_BOOTSTRAP=1
    toolchain=()
    sanitizer=(--sanitizer none)
    echo "toolchain: $(cargo --version) with RUSTC_BOOTSTRAP=1, no sanitizer (no nightly)"
fi

# Overflow checks and debug assertions on: an arithmetic overflow is a finding too.
build=(--release --debug-assertions "${sanitizer[@]}")
targets="${FUZZ_TARGETS:-$(cargo "${toolchain[@]}" fuzz list)}"

cargo "${toolchain[@]}" fuzz build "${build[@]}"

logs=fuzz/target/logs
mkdir -p "$logs"
for target in $targets; do
    mkdir -p "fuzz/corpus/$target"
    log="$logs/$target.log"
    # -timeout: one input taking over 10 s is a hang, reported like a crash.
    if ! cargo "${toolchain[@]}" fuzz run "${build[@]}" "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz target $target FAILED: reproducer in fuzz/artifacts/$target/ (log: $log)" >&2
        exit 1
    fi
    runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
    echo "fuzz target $target: ${runs:-?} inputs in ${seconds}s, no crash, corpus $(find "fuzz/corpus/$target" -type f | wc -l) files"
done
