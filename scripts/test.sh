#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh                      # whole workspace
#   scripts/test.sh -p lodge-runtime     # extra args go to the test runner as-is
#
# 1. Makes sure the Python fixture venv exists (scripts/setup-python.sh; a no-op when it is
#    already at the pinned versions) and exports LODGE_TEST_PYTHON=<venv python>, which tests
#    use to run tests/fixtures/python/server.py. A LODGE_TEST_PYTHON already set is kept.
# 2. Makes sure Chromium is there for the web console's browser test
#    (scripts/setup-chromium.sh: Debian's chromium with apt-get when root and missing);
#    when it cannot be had, that test fails under CI=true and skips elsewhere.
# 3. Runs `cargo nextest run --workspace --no-fail-fast` when cargo-nextest is installed,
#    else `cargo test --workspace`. Cargo's incremental builds keep reruns fast.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${LODGE_TEST_PYTHON:-}" ]]; then
    LODGE_TEST_PYTHON="$(scripts/setup-python.sh)"
fi
export LODGE_TEST_PYTHON
echo "test.sh: LODGE_TEST_PYTHON=$LODGE_TEST_PYTHON" >&2

scripts/setup-chromium.sh >/dev/null ||
    echo "test.sh: no Chromium: the console's browser test skips (fails under CI=true)" >&2

# The cluster test starts a redis-server of its own (Debian's; installed here when root).
if ! command -v redis-server >/dev/null 2>&1 && [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing Debian's redis-server for the cluster test" >&2
    (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server) >&2 ||
        echo "test.sh: no redis-server: the cluster test skips (fails under CI=true)" >&2
fi

# Tests start the example servers' binaries (conformance-server is no dependency of
# lodge): build every binary once up front instead of racing to build it from tests.
cargo build --workspace --bins --quiet

if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --workspace --no-fail-fast "$@"
else
    echo "test.sh: cargo-nextest not found; using cargo test" >&2
    exec cargo test --workspace "$@"
fi
