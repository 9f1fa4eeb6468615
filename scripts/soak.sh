#!/usr/bin/env bash
# scripts/soak.sh [MINUTES]: a soak of `tether serve` (default 2 minutes).
# Starts the server on a free loopback port with its defaults and runs
# `tether bench soak` against it: fan-out, churn, clients that drop and
# resume, consumers that stop reading, and a flood of handshakes and deflate
# bombs every 30 s, all at once. The server is sampled every 10 s (memory,
# descriptors, threads, sessions, tasks, queues); at the end the run fails
# if a well-behaved client lost a publication or got one twice, a bomb got
# the wrong answer, descriptors or tasks leaked, or memory trended upward.
# Writes target/soak/{summary.txt,report.json,report.html,server.log} and
# stops the server by PID, pass or fail. Loopback only; it stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-2}
if ! [[ $minutes =~ ^[0-9]+$ ]] || [ "$minutes" -lt 1 ]; then
  echo "usage: scripts/soak.sh [MINUTES]   (a whole number, at least 1)" >&2
  exit 64
fi

cargo build --release --quiet -p tether-cli
out=target/soak
mkdir -p "$out"
python=python3
[ -x target/venv/bin/python ] && python=target/venv/bin/python
port=$($python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

target/release/tether serve --listen "127.0.0.1:$port" --log warn 2>"$out/server.log" &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done

status=0
target/release/tether bench soak "ws://127.0.0.1:$port/connection/websocket" \
  --server-pid "$server" --duration $((minutes * 60)) --quiet \
  --json "$out/report.json" --html "$out/report.html" | tee "$out/summary.txt" || status=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "soak: the server is gone; the end of its log:" >&2
  tail -n 40 "$out/server.log" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "soak: failed (exit $status); see $out/summary.txt and $out/server.log" >&2
fi
exit "$status"
