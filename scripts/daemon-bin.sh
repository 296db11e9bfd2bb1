#!/usr/bin/env bash
# Prints the path of a debug daemon binary for the suites that start one (tests/sdk, tests/console,
# tests/sdk/extra). scripts/test.sh names the one its `cargo test` step built (TIDEPOOL_BUILT_BIN):
# building again would recompile the crate and a few dependencies without the dev-dependencies'
# features. Alone, it runs `cargo build --bin tidepool` (its output on stderr). Run from the repo root.
set -euo pipefail
if [ -n "${TIDEPOOL_BUILT_BIN:-}" ]; then
    printf '%s\n' "$TIDEPOOL_BUILT_BIN"
    exit 0
fi
cargo build --bin tidepool </dev/null >&2
printf '%s\n' "${CARGO_TARGET_DIR:-$PWD/target}/debug/tidepool"
