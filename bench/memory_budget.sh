#!/usr/bin/env bash
# The memory-budget run of BENCHMARKS.md ("Memory budget (issue 36 item 2)"): builds the release binary and
# ingests 400,000 384-d rows into a daemon held in a 512 MiB memory cgroup (bench/memory_budget.py; run as
# root: it creates and removes the cgroup /sys/fs/cgroup[/memory]/tidepool-bench). Extra arguments go to
# the driver (--rows N, --limit-mib M, --budget-bytes B, --settle-secs S). Output: JSON on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin tidepool >&2
python3 bench/memory_budget.py "$target/release/tidepool" "$@"
