#!/usr/bin/env bash
# Runs the Autobahn TestSuite cases (through the PyPI runner kosoku) in both roles:
#   server: kosoku's fuzzingclient against `tether echo`
#   client: kosoku's fuzzingserver driven by the autobahn-client example
# and prints one summary line per role. Reports (HTML and JSON) go to
# target/autobahn/{server,client}. Exits non-zero if any case failed.
#
# Needs the venv made by scripts/setup.sh (or KOSOKU pointing at a kosoku binary).
# Extra arguments are passed to kosoku in both roles, e.g. `-i '1.*'`.
set -euo pipefail
cd "$(dirname "$0")/.."

KOSOKU=${KOSOKU:-target/venv/bin/kosoku}
PYTHON=${PYTHON:-target/venv/bin/python}
OUT=target/autobahn
rm -rf "$OUT"
mkdir -p "$OUT"

cargo build --release --quiet -p tether-cli -p tether --bins --example autobahn-client

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

wait_for_port() {
  for _ in $(seq 1 100); do
    if "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listening on port $1" >&2
  return 1
}

status=0

# --- server role -----------------------------------------------------------
port=$(free_port)
target/release/tether echo --listen "127.0.0.1:$port" --log warn &
pids+=($!)
wait_for_port "$port"
timeout 1800 "$KOSOKU" -m fuzzingclient -p 2 -o "$OUT/server" "$@" "127.0.0.1:$port" > "$OUT/server.log" 2>&1 || true
kill "${pids[-1]}" 2>/dev/null || true
"$PYTHON" tests/autobahn/summary.py server "$OUT/server" || status=1

# --- client role -----------------------------------------------------------
port=$(free_port)
timeout 1800 "$KOSOKU" -m fuzzingserver -o "$OUT/client" "$@" "127.0.0.1:$port" > "$OUT/client.log" 2>&1 &
fuzzingserver=$!
pids+=($fuzzingserver)
wait_for_port "$port"
timeout 1800 target/release/examples/autobahn-client "ws://127.0.0.1:$port" > "$OUT/client-driver.log" 2>&1 || true
wait "$fuzzingserver" || true
"$PYTHON" tests/autobahn/summary.py client "$OUT/client" || status=1

echo "autobahn reports: $OUT/server/index.html $OUT/client/index.html"
exit $status
