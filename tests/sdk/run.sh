#!/usr/bin/env bash
# Runs the official turbopuffer Python SDK (pinned in tests/sdk/requirements.txt) against a
# locally built tidepool daemon: tests/sdk/conftest.py starts `tidepool serve` on 127.0.0.1:0.
# Then LangChain's turbopuffer suites against it: Python (tests/sdk/langchain, its own virtualenv
# target/langchain-venv) and, on a full run (no arguments), LangChain.js (tests/sdk/js/run.sh).
#
# Needs only python3 (with venv or pip) and cargo (the JS suite installs node/npm if missing).
# Creates the virtualenvs target/sdk-venv and target/langchain-venv on first use and reinstalls
# into them when their requirements.txt changes. Never reads standard input.
# Extra arguments go to both pytest runs, e.g. `tests/sdk/run.sh -k conditional -x` (a suite the
# filter leaves empty passes; the JS suite runs only without arguments).
# Exits non-zero when the build or any test fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# The SDK raises when a region is set together with a custom base_url; the suite passes the
# daemon's URL and an API key explicitly, so nothing from the environment may interfere.
unset TURBOPUFFER_REGION TURBOPUFFER_BASE_URL TURBOPUFFER_API_KEY TURBOPUFFER_CUSTOM_HEADERS

python=${PYTHON:-python3}
mkdir -p target

# ensure_venv DIR REQUIREMENTS: a virtualenv at DIR holding exactly REQUIREMENTS (reinstalled when
# the file changes).
ensure_venv() {
    local venv=$1 reqs=$2
    if [ ! -x "$venv/bin/python" ]; then
        echo "run.sh: creating $venv" >&2
        rm -rf "$venv"
        if ! "$python" -m venv "$venv" </dev/null; then
            # Debian-style Pythons without ensurepip: a bare venv, filled by the system pip.
            echo "run.sh: 'venv' with pip failed; retrying --without-pip" >&2
            rm -rf "$venv"
            "$python" -m venv --without-pip "$venv" </dev/null
        fi
    fi
    if ! cmp -s "$reqs" "$venv/.requirements.installed"; then
        echo "run.sh: installing $(grep -v '^#' "$reqs" | xargs) into $venv" >&2
        if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
            "$venv/bin/python" -m pip install -q -r "$reqs" </dev/null
        else
            "$python" -m pip --python "$venv/bin/python" install -q -r "$reqs" </dev/null
        fi
        cp "$reqs" "$venv/.requirements.installed"
    fi
}

# pytest's exit 5 (no test collected) is a pass for a suite that a -k filter left empty.
run_pytest() {
    local status=0
    "$@" </dev/null || status=$?
    if [ "$status" -eq 5 ] && [ "$filtered" -eq 1 ]; then status=0; fi
    return "$status"
}

ensure_venv target/sdk-venv tests/sdk/requirements.txt
# langchain-turbopuffer 0.2.0 needs turbopuffer<2: its suite has its own virtualenv.
ensure_venv target/langchain-venv tests/sdk/langchain/requirements.txt

TIDEPOOL_BIN=$(scripts/daemon-bin.sh)
export TIDEPOOL_BIN
filtered=$(( $# > 0 ))

echo "run.sh: the turbopuffer Python SDK suite" >&2
run_pytest target/sdk-venv/bin/python -m pytest -q -p no:cacheprovider tests/sdk \
    --ignore=tests/sdk/langchain "$@"
echo "run.sh: LangChain (langchain-turbopuffer's integration tests and the standard suite)" >&2
run_pytest target/langchain-venv/bin/python -m pytest -q -p no:cacheprovider -o asyncio_mode=auto \
    tests/sdk/langchain "$@"
if [ "$filtered" -eq 0 ]; then
    echo "run.sh: LangChain.js (@langchain/community's TurbopufferVectorStore)" >&2
    tests/sdk/js/run.sh
fi
