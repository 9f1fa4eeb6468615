#!/usr/bin/env bash
# scripts/ab-fanout.sh OLD_TETHER NEW_TETHER [SUBSCRIBERS] [ROUNDS]
# `tether serve` fan-out of two builds measured in turn on one machine (the
# server on core 0, the load on core 1, the same load generator for both),
# so that a change between them is told from this machine's run-to-run noise.
# Each run publishes 4 million deliveries back to back with the comparison's
# server settings; prints deliveries per server CPU-second per run and the
# median of each build. Loopback only; every run is bounded (120 s).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1
new=$2
subscribers=${3:-5000}
rounds=${4:-5}
load=target/release/tether
[ -x "$load" ] || cargo build --release --quiet -p tether-cli
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
printf '[namespaces.bench]\npresence = false\n' > "$out/serve.toml"
ulimit -n 20000
messages=$((4000000 / subscribers))
for round in $(seq 1 "$rounds"); do
  for build in old new; do
    binary=$old
    [ "$build" = new ] && binary=$new
    # Below the ephemeral range, where earlier runs' TIME_WAIT sockets are.
    port=$((10000 + RANDOM % 20000))
    taskset -c 0 "$binary" serve --listen "127.0.0.1:$port" --config "$out/serve.toml" \
      --log warn --max-connections-per-ip 0 --outbound-queue 8192 \
      --rate-limit 10000000 --rate-burst 10000000 &
    server=$!
    for _ in $(seq 50); do
      (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
      sleep 0.1
    done
    taskset -c 1 timeout 120 "$load" bench fanout "ws://127.0.0.1:$port/connection/websocket" \
      -c "$subscribers" -r inf -m "$messages" -d 60 --channel bench:feed \
      --server-pid "$server" --json "$out/run.json" --quiet --log error > /dev/null 2>&1 || true
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    python3 - "$out/run.json" "$build" "$round" >> "$out/results" <<'PY'
import json, sys
path, build, round_ = sys.argv[1:]
try:
    report = json.load(open(path))
    rate = (report.get("server") or {}).get("per_cpu_second") or 0
    print(build, round_, rate, report.get("lost", 0))
except FileNotFoundError:
    print(build, round_, 0, "failed")
PY
    rm -f "$out/run.json"
    tail -n 1 "$out/results"
  done
done
python3 - "$out/results" "$subscribers" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
medians = {}
for build in ("old", "new"):
    rates = [float(r[2]) for r in rows if r[0] == build and float(r[2]) > 0]
    medians[build] = statistics.median(rates) if rates else 0
    print(f"{build}: median {medians[build] / 1e6:.2f} M deliveries per server CPU-s over {len(rates)} runs")
if medians["old"]:
    print(f"new / old at {sys.argv[2]} subscribers: {medians['new'] / medians['old']:.2f}")
PY
