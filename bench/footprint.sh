#!/usr/bin/env bash
# Footprint figures for BENCHMARKS.md (issue 14, item 5): builds the shipped release binary (stripped,
# fat LTO) and the profiling build (same code, debug info), then runs bench/footprint.py against the
# release binary. Needs python3 and ../shared/data/debian. Output: JSON on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin tidepool
if [ "${FOOTPRINT_PROFILING:-1}" = "1" ]; then
  cargo build --profile profiling --bin tidepool
fi
python3 bench/footprint.py --binary "$target/release/tidepool" --profiling-binary "$target/profiling/tidepool" "$@"
