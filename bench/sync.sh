#!/usr/bin/env bash
# Sync benchmark (issue 11): starts moto (scripts/s3-server.sh), creates a bucket and runs
# bench/sync_bench.rs against it. Usage: bash bench/sync.sh [--hours H]
set -euo pipefail
cd "$(dirname "$0")/.."
portfile=target/bench/s3/endpoint
mkdir -p target/bench/s3
scripts/s3-server.sh start "$portfile" $$
trap 'scripts/s3-server.sh stop "$portfile" || true' EXIT
endpoint=$(cat "$portfile")
bucket="sync-bench-$(date +%s)"
curl -fsS -X PUT "$endpoint/$bucket" >/dev/null
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench} cargo run -q --profile profiling --example sync_bench -- \
    --s3-endpoint "$endpoint" --bucket "$bucket" --data ../shared/data/debian "$@"
