#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, inside the repository:
#   - Python peers (kosoku for Autobahn, websockets for interop, prometheus_client
#     to parse /metrics, jsonschema to check messages against the protocol schema) in target/venv
#   - Node peer (ws) in tests/interop/node/node_modules
#   - Debian's chromium and Playwright (playwright-core) in tests/e2e/node_modules
#   - the TypeScript compiler, to check the JavaScript client's types, in
#     clients/js/node_modules
#   - Debian's redis-server and nginx, which the cluster tests start on free
#     ports (their services are not started at install), and openssl, which
#     makes the HTTPS browser test's certificate
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v python3 >/dev/null || missing+=(python3 python3-venv)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null || missing+=(redis-server)
[ -x /usr/sbin/nginx ] || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    # Installed packages start no service (there may be no init, and port 80
    # may be taken): the tests start their own processes.
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
fi

if [ ! -x target/venv/bin/python ]; then
  mkdir -p target
  python3 -m venv target/venv
fi
if ! target/venv/bin/python -c 'import kosoku, websockets, prometheus_client, jsonschema' 2>/dev/null; then
  target/venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi

if [ ! -d tests/interop/node/node_modules/ws ]; then
  (cd tests/interop/node && npm install --no-package-lock --no-audit --no-fund --silent)
fi
if [ ! -d tests/e2e/node_modules/playwright-core ]; then
  (cd tests/e2e && npm install --no-package-lock --no-audit --no-fund --silent)
fi
if [ ! -d clients/js/node_modules/typescript ]; then
  (cd clients/js && npm install --no-package-lock --no-audit --no-fund --silent)
fi
echo "test peers installed: $(target/venv/bin/kosoku --help >/dev/null && echo kosoku), websockets $(target/venv/bin/python -c 'import websockets; print(websockets.__version__)'), ws $(node -p 'require("./tests/interop/node/node_modules/ws/package.json").version'), playwright-core $(node -p 'require("./tests/e2e/node_modules/playwright-core/package.json").version'), typescript $(node -p 'require("./clients/js/node_modules/typescript/package.json").version'), $(/usr/bin/chromium --version 2>/dev/null), $(redis-server --version | cut -d' ' -f1-3), $(/usr/sbin/nginx -v 2>&1)"
