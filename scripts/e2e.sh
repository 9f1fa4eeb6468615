#!/usr/bin/env bash
# Browser tests: starts `tether serve` on a free loopback port (SSE streams
# cut every 4 KiB), runs the Playwright tests in tests/e2e against it with
# Debian's chromium, and stops the server by PID. The resilience, fallback
# and shared-connection tests start their own servers (and TCP relays).
#
# TETHER_CLUSTER=N runs the same suite against clusters instead: every
# server a test starts is N nodes on a fresh redis-server behind nginx.
# TETHER_TLS=1 runs it against servers on https:// with a certificate of the
# test's own: Chromium then speaks HTTP/2, its WebSockets included (RFC 8441).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p tether-cli
if [ -n "${TETHER_TLS:-}" ]; then
  # The servers have the test's own certificate (clients/js/test/harness.mjs):
  # Node's fetch in the tests trusts it as Chromium does (--ignore-certificate-errors).
  export NODE_TLS_REJECT_UNAUTHORIZED=0
fi
# SSE streams end every 4 KiB, so the EventSource test sees the server end
# its stream and the browser resume it.
urls=$(mktemp)
node tests/e2e/serve.mjs --http.max-stream-bytes 4096 > "$urls" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -f "$urls"' EXIT
for _ in $(seq 1 300); do
  [ -s "$urls" ] && break
  kill -0 $server 2>/dev/null || { echo "the shared test server did not start" >&2; exit 1; }
  sleep 0.1
done
url=$(head -1 "$urls")
echo "browser tests against $url${TETHER_CLUSTER:+ ($TETHER_CLUSTER nodes on Redis behind nginx)}${TETHER_TLS:+ (TLS: HTTP/2 in the browser)}"
# Each test file starts (and kills) its own servers and relays besides this
# one (clusters too, with TETHER_CLUSTER set); --test-force-exit ends a file
# once its tests are done even if a socket the relay reset is still being
# torn down.
TETHER_URL="$url/" node --test --test-force-exit --test-timeout=120000 tests/e2e/
