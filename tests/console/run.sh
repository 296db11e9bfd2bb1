#!/usr/bin/env bash
# The console's end-to-end tests: a real daemon and Debian's chromium, driven by Playwright
# (tests/console/test_console.py). Called by scripts/test.sh; standalone: `tests/console/run.sh`
# (extra arguments go to pytest, e.g. `-k health -x`).
#
# Installs what it needs when missing, never by hand and never a browser download:
# - Debian's `chromium` (apt), which Playwright drives through executable_path;
# - the virtualenv target/console-venv from tests/console/requirements.txt (Playwright, pytest,
#   the turbopuffer Python SDK the console's generated Python code is run with);
# - Debian's nodejs/npm and, with `npm ci` into target/console-js, the TypeScript SDK the
#   generated TypeScript code is run with (tests/console/js/package-lock.json).
# Screenshots of every page are left in target/console-artifacts/. Never reads standard input.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# Nothing from the environment may point the SDKs elsewhere.
unset TURBOPUFFER_REGION TURBOPUFFER_BASE_URL TURBOPUFFER_API_KEY TURBOPUFFER_CUSTOM_HEADERS

apt_install() {
    local sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq </dev/null
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "$@" </dev/null
}

: "${CHROMIUM:=$(command -v chromium || true)}"
if [ -z "$CHROMIUM" ]; then
    echo "console/run.sh: installing Debian's chromium" >&2
    apt_install chromium
    CHROMIUM=$(command -v chromium)
fi
export CHROMIUM

venv=target/console-venv reqs=tests/console/requirements.txt
if [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" </dev/null || { rm -rf "$venv"; python3 -m venv --without-pip "$venv" </dev/null; }
fi
if ! cmp -s "$reqs" "$venv/.requirements.installed"; then
    echo "console/run.sh: installing $(grep -v '^#' "$reqs" | xargs) into $venv" >&2
    if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        "$venv/bin/python" -m pip install -q -r "$reqs" </dev/null
    else
        python3 -m pip --python "$venv/bin/python" install -q -r "$reqs" </dev/null
    fi
    cp "$reqs" "$venv/.requirements.installed"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "console/run.sh: installing Debian's nodejs and npm" >&2
    apt_install nodejs npm
fi
js=target/console-js
mkdir -p "$js"
if ! cmp -s tests/console/js/package-lock.json "$js/.lock.installed"; then
    cp tests/console/js/package.json tests/console/js/package-lock.json "$js/"
    (cd "$js" && npm ci --no-audit --no-fund --omit=optional --ignore-scripts --loglevel=error </dev/null)
    cp tests/console/js/package-lock.json "$js/.lock.installed"
fi
export CONSOLE_JS="$PWD/$js"

TIDEPOOL_BIN=$(scripts/daemon-bin.sh)
export TIDEPOOL_BIN
rm -rf target/console-artifacts
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/console "$@" </dev/null
