#!/usr/bin/env bash
# A fuzzing campaign with cargo-fuzz (libFuzzer) on every target, then a merge of
# whatever found new coverage into the committed corpus (fuzz/corpus).
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60)
# Needs `cargo install cargo-fuzz`. libFuzzer wants nightly features; with the one
# stable toolchain here, RUSTC_BOOTSTRAP=1 unlocks them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
export RUSTC_BOOTSTRAP=1
for target in decode_frames_server decode_frames_client parse_request parse_response inflate session_requests api_requests; do
  work=target/fuzz-work/$target
  mkdir -p "$work"
  cp -n fuzz/corpus/$target/* "$work/" 2>/dev/null || true
  cargo fuzz run "$target" --features libfuzzer "$work" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -max_len=70000 -print_final_stats=1 2>&1 | grep -E "^(stat::number_of_executed_units|Done|==|SUMMARY)" || true
  cargo fuzz run "$target" --features libfuzzer -- -merge=1 "fuzz/corpus/$target" "$work" 2>&1 | grep -E "MERGE-OUTER: [0-9]+ new files" || true
done
