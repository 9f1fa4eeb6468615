#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the test peers, checks formatting
# and lints, runs unit, integration and interop tests, replays the fuzz corpus,
# runs the JavaScript client's tests, the browser tests, the Autobahn TestSuite
# in both roles, a two-minute soak of the server, and a short smoke run of the comparison benchmark
# (benchmarks themselves are not part of CI).
# Each stage prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

suite_start=$SECONDS
stage_name=""
stage_start=$SECONDS

# A clean clone builds once: incremental state would only double the target's size.
if [ "${CI:-}" = "true" ]; then
  export CARGO_INCREMENTAL=0
fi
echo "disk before the suite: $(df -h --output=avail . | tail -1 | tr -d ' ') free"

# Starts a stage, closing the one before with its duration.
stage() {
  end_stage
  stage_name=$1
  stage_start=$SECONDS
  echo "== $stage_name"
}

end_stage() {
  if [ -n "$stage_name" ]; then
    echo "-- $stage_name: $((SECONDS - stage_start)) s"
  fi
}

stage "install the test peers"
scripts/setup.sh

stage "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

stage "unit, integration and interop tests"
cargo test --workspace

stage "fuzz corpus replay"
cargo run --quiet --release -p tether-fuzz --bin replay -- fuzz/corpus

stage "JavaScript client tests (node --test against tether serve)"
cargo build --release --quiet -p tether-cli
(cd clients/js && npm test)

stage "browser tests (Playwright + Chromium)"
scripts/e2e.sh

stage "browser tests again, against two nodes on Redis behind nginx"
TETHER_CLUSTER=2 scripts/e2e.sh

stage "browser tests again, over https (Chromium on HTTP/2, WebSockets by RFC 8441)"
TETHER_TLS=1 scripts/e2e.sh

stage "Autobahn TestSuite"
scripts/autobahn.sh

stage "soak: two minutes of everything at once on tether serve"
scripts/soak.sh 2

stage "comparison benchmark smoke run (builds the peers, one short run each)"
scripts/compare.sh --quick

end_stage
echo "target/ after the suite: $(du -sh target | cut -f1), disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free"
echo "== all tests passed in $((SECONDS - suite_start)) s"
