#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the test peers, checks formatting
# and lints, runs unit, integration and interop tests, replays the fuzz corpus,
# runs the browser tests, the Autobahn TestSuite in both roles, and a short smoke
# run of the comparison benchmark (benchmarks themselves are not part of CI).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

echo "== format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== unit, integration and interop tests"
cargo test --workspace

echo "== fuzz corpus replay"
cargo run --quiet --release -p tether-fuzz --bin replay -- fuzz/corpus

echo "== browser tests (Playwright + Chromium)"
scripts/e2e.sh

echo "== Autobahn TestSuite"
scripts/autobahn.sh

echo "== comparison benchmark smoke run (builds the peers, one short run each)"
scripts/compare.sh --quick
