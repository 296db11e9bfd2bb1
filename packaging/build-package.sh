#!/usr/bin/env bash
# Build a release tarball: the binary, the systemd unit and the example config.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin tidepool
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
out="target/package/tidepool-$version-$(uname -m)-linux"
rm -rf "$out" && mkdir -p "$out"
cp target/release/tidepool packaging/tidepool.service packaging/config.example.toml README.md storage-format.md "$out/"
tar -C target/package -czf "$out.tar.gz" "$(basename "$out")"
echo "$out.tar.gz"
