#!/usr/bin/env bash
# Creates target/bench-venv with the benchmark peers (pip packages), idempotently.
# Usage: bash bench/peers.sh   (then run the benches; they call target/bench-venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet numpy tantivy==0.27.0
echo "peers ready in $VENV"
