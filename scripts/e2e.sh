#!/usr/bin/env bash
# Browser tests: starts `tether serve` on a free loopback port (SSE streams
# cut every 4 KiB), runs the Playwright tests in tests/e2e against it with
# Debian's chromium, and stops the server by PID. The resilience, fallback
# and shared-connection tests start their own servers (and TCP relays).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p tether-cli
port=$(target/venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# SSE streams end every 4 KiB, so the EventSource test sees the server end
# its stream and the browser resume it.
config=$(mktemp --suffix=.toml)
printf '[http]\nmax_stream_bytes = 4096\n' > "$config"
target/release/tether serve --listen "127.0.0.1:$port" --config "$config" --log warn &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$config"' EXIT
for _ in $(seq 1 100); do
  if target/venv/bin/python -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
  sleep 0.1
done
# Each test file starts (and kills) its own servers and relays besides this
# one; --test-force-exit ends a file once its tests are done even if a socket
# the relay reset is still being torn down.
TETHER_URL="http://127.0.0.1:$port/" node --test --test-force-exit --test-timeout=120000 tests/e2e/
