#!/usr/bin/env bash
# The comparison benchmark in one command: builds tether and the peer servers
# (tokio-tungstenite, fastwebsockets) in release mode, then runs every
# measurement with each server on core 0 and the load on core 1, and prints the
# table of ratios. Arguments go to the runner: --quick (smoke run), --runs N,
# --only NAME. Results: target/compare/{table.md,results.json}.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p tether-cli -p tether-compare
exec target/release/compare "$@"
