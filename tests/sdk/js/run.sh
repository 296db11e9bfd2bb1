#!/usr/bin/env bash
# LangChain.js's TurbopufferVectorStore (@langchain/community, pinned with its dependency tree in
# package.json / package-lock.json beside this file) against a local tidepool daemon, with node's
# built-in test runner. Called by tests/sdk/run.sh (which builds the daemon and sets TIDEPOOL_BIN);
# standalone: `TIDEPOOL_BIN=target/debug/tidepool tests/sdk/js/run.sh`.
#
# Installs Debian's nodejs and npm when node or npm is missing; installs the npm packages with
# `npm ci` into target/sdk-js (out of the source tree), again only when the lock file changed.
# Never reads standard input. Exits non-zero when a test fails.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
src=tests/sdk/js
work=target/sdk-js
: "${TIDEPOOL_BIN:=${CARGO_TARGET_DIR:-$PWD/target}/debug/tidepool}"
export TIDEPOOL_BIN

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "js/run.sh: installing Debian's nodejs and npm" >&2
    sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq </dev/null
    "${sudo_cmd[@]}" apt-get install -y -qq nodejs npm </dev/null
fi

mkdir -p "$work"
if ! cmp -s "$src/package-lock.json" "$work/.lock.installed"; then
    echo "js/run.sh: npm ci (@langchain/community, @langchain/core) into $work" >&2
    cp "$src/package.json" "$src/package-lock.json" "$work/"
    # No install scripts and no optional packages: the store needs neither.
    (cd "$work" && npm ci --no-audit --no-fund --omit=optional --ignore-scripts --loglevel=error </dev/null)
    cp "$src/package-lock.json" "$work/.lock.installed"
fi
cp "$src/langchain_store.test.mjs" "$work/"
export DAEMON_LOG="$PWD/$work/daemon.log"
: >"$DAEMON_LOG"
status=0
node --test "$work/langchain_store.test.mjs" </dev/null || status=$?
if [ "$status" -ne 0 ]; then
    echo "js/run.sh: daemon log tail:" >&2
    tail -n 40 "$DAEMON_LOG" >&2
fi
exit "$status"
