#!/usr/bin/env bash
# Runs the official turbopuffer Python SDK (pinned in tests/sdk/requirements.txt) against a
# locally built tidepool daemon: tests/sdk/conftest.py starts `tidepool serve` on 127.0.0.1:0.
#
# Needs only python3 (with venv or pip) and cargo. Creates the virtualenv target/sdk-venv on
# first use and reinstalls into it when requirements.txt changes. Never reads standard input.
# Extra arguments go to pytest, e.g. `tests/sdk/run.sh -k conditional -x`.
# Exits non-zero when the build or any test fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# The SDK raises when a region is set together with a custom base_url; the suite passes the
# daemon's URL and an API key explicitly, so nothing from the environment may interfere.
unset TURBOPUFFER_REGION TURBOPUFFER_BASE_URL TURBOPUFFER_API_KEY TURBOPUFFER_CUSTOM_HEADERS

venv=target/sdk-venv
reqs=tests/sdk/requirements.txt
python=${PYTHON:-python3}
mkdir -p target

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

cargo build --bin tidepool </dev/null
export TIDEPOOL_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/tidepool"

exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/sdk "$@" </dev/null
