#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, inside the repository:
#   - Python peers (kosoku for Autobahn, websockets for interop) in target/venv
#   - Node peer (ws) in tests/interop/node/node_modules
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v python3 >/dev/null || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv nodejs npm >/dev/null
  else
    echo "python3, node and npm are required" >&2
    exit 1
  fi
fi

if [ ! -x target/venv/bin/python ]; then
  mkdir -p target
  python3 -m venv target/venv
fi
if ! target/venv/bin/python -c 'import kosoku, websockets' 2>/dev/null; then
  target/venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi

if [ ! -d tests/interop/node/node_modules/ws ]; then
  (cd tests/interop/node && npm install --no-package-lock --no-audit --no-fund --silent)
fi
echo "test peers installed: $(target/venv/bin/kosoku --help >/dev/null && echo kosoku), websockets $(target/venv/bin/python -c 'import websockets; print(websockets.__version__)'), ws $(node -p 'require("./tests/interop/node/node_modules/ws/package.json").version')"
