#!/usr/bin/env bash
# Two more real turbopuffer clients against a local tidepool daemon, as a user would run them:
# VectorDBBench's turbopuffer client (vectordb-bench) and mem0's turbopuffer vector store (mem0ai).
# Not part of scripts/test.sh (CI): vectordb-bench installs a dashboard stack of several hundred
# MB. Run it when the wire format or the namespace/metadata routes change:
#
#   tests/sdk/extra/run.sh        # builds the daemon, creates target/extra-{vdb,mem0}-venv once
#
# Needs python3 (venv) and cargo. Each script exits non-zero on the first assertion that fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset TURBOPUFFER_REGION TURBOPUFFER_BASE_URL TURBOPUFFER_API_KEY
here=tests/sdk/extra

venv() { # venv DIR REQUIREMENTS
    if [ ! -x "$1/bin/python" ]; then python3 -m venv "$1" </dev/null; fi
    if ! cmp -s "$2" "$1/.requirements.installed"; then
        "$1/bin/python" -m pip install -q -r "$2" </dev/null
        cp "$2" "$1/.requirements.installed"
    fi
}
venv target/extra-vdb-venv "$here/requirements-vectordbbench.txt"
venv target/extra-mem0-venv "$here/requirements-mem0.txt"

bin=$(scripts/daemon-bin.sh)
data=$(mktemp -d)
log="$data/daemon.log"
"$bin" serve --data-dir "$data/node" --listen 127.0.0.1:0 >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1 || true)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { echo "run.sh: the daemon did not start:" >&2; cat "$log" >&2; exit 1; }
echo "run.sh: daemon at $url" >&2
target/extra-vdb-venv/bin/python "$here/vectordbbench_client.py" "$url"
target/extra-vdb-venv/bin/python "$here/vectordbbench_client.py" "$url" pin
target/extra-mem0-venv/bin/python "$here/mem0_client.py" "$url"
echo "run.sh: all extra clients passed" >&2
