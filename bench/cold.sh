#!/usr/bin/env bash
# Cold-query benchmark against an S3-compatible server on loopback, in one run.
#   bash bench/cold.sh [cold_bench options, e.g. --queries 50 --whole 3 --verbose]
#   COLD_S3_SERVER=moto bash bench/cold.sh      (default: s3s-fs)
# 1. Starts the server on a free loopback port; it stops on exit (trap):
#    - s3s-fs (default): the `s3s-fs` crate's server over a directory, installed into
#      target/s3s-tool by `cargo install` on first use. It serves a ranged GET by reading the
#      range, like a real object store.
#    - moto (scripts/s3-server.sh, venv target/s3-venv; the server the test suite uses). moto
#      5.2.5 reads the whole object under a per-object lock for every ranged GET, so its ranged
#      latencies measure moto, not the client (see BENCHMARKS.md).
# 2. Creates the bucket `benchbkt`.
# 3. Runs the release example cold_bench (CARGO_TARGET_DIR=target/bench) on s3://benchbkt/cold.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target/bench
server=${COLD_S3_SERVER:-s3s-fs}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

case "$server" in
  s3s-fs)
    bin=target/s3s-tool/bin/s3s-fs
    if [ ! -x "$bin" ]; then
      echo "cold.sh: installing s3s-fs into target/s3s-tool" >&2
      cargo install s3s-fs@0.14.1 --features binary --root target/s3s-tool --locked
    fi
    root=target/bench/s3s-root
    rm -rf "$root"
    mkdir -p "$root/benchbkt"
    port=$(free_port)
    "$bin" --host 127.0.0.1 --port "$port" --access-key test --secret-key test "$root" \
      >target/bench/s3s-fs.log 2>&1 &
    pid=$!
    trap 'kill $pid 2>/dev/null || true; rm -rf "$root"' EXIT
    URL="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
      curl -s -o /dev/null "$URL/" && break
      sleep 0.1
    done
    ;;
  moto)
    PORTFILE=target/bench/cold-s3.url
    trap 'scripts/s3-server.sh stop "$PORTFILE" || true' EXIT
    scripts/s3-server.sh start "$PORTFILE" $$
    URL=$(cat "$PORTFILE")
    status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$URL/benchbkt")
    case "$status" in
      2*) ;;
      *) echo "cold.sh: creating bucket benchbkt at $URL: HTTP $status" >&2; exit 1 ;;
    esac
    ;;
  *) echo "cold.sh: COLD_S3_SERVER must be s3s-fs or moto" >&2; exit 1 ;;
esac
echo "cold.sh: $server at $URL" >&2
CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example cold_bench -- \
  --s3 s3://benchbkt/cold --s3-endpoint "$URL" "$@"
