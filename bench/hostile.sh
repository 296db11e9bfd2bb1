#!/usr/bin/env bash
# Hostile-load figures for BENCHMARKS.md (issue 12): builds the profiling binary (release code with debug
# info) and runs bench/hostile.py against it. Needs python3 only. Output: JSON on stdout.
# Extra arguments go to hostile.py, e.g. `bench/hostile.sh --attackers 8 --seconds 20`.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --profile profiling --bin tidepool
python3 bench/hostile.py --binary "$target/profiling/tidepool" "$@"
