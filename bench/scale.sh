#!/usr/bin/env bash
# Scale benchmark (issue 16 item 2): N x 384-d cosine vectors (default 1,000,000; Debian vectors plus
# seeded noise) through the shipped daemon over HTTP: ingest rate, catch-up time to `up-to-date`, peak
# and steady RSS, segment bytes, warm and cold query latency, recall@10 — with the raw vector bytes
# (N * 384 * 4) as the yardstick. Builds the release daemon (what ships) and the bench client (profiling
# profile), then runs bench/scale_bench.rs; arguments pass through, e.g.
#   bash bench/scale.sh --rows 100000
# Needs ../shared/data/debian (or ../../shared from a worktree). At 1M rows it takes the whole machine
# (2 cores, several GB of RAM, ~10 GB of temp space): run nothing else meanwhile. Output: JSON on stdout, progress and pass/fail on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-target}
cargo build --release --bin tidepool
cargo build --profile profiling --example scale_bench
exec "$target/profiling/examples/scale_bench" --binary "$target/release/tidepool" "$@"
