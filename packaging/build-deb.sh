#!/usr/bin/env bash
# Build the Debian package: target/deb/tidepool_VERSION_ARCH.deb
#   packaging/build-deb.sh                  release build (stripped, LTO), then package
#   packaging/build-deb.sh --binary PATH    package an already built binary (stripped here; the tests do this)
#   --out DIR                               where the .deb goes (default target/deb)
#   --fast                                  gzip -1 instead of xz (the tests: the same package, built in seconds)
# Contents: /usr/bin/tidepool (stripped), /lib/systemd/system/tidepool.service, /etc/tidepool/config.toml
# (a conffile, every setting commented), /usr/share/doc/tidepool/. Maintainer scripts reload systemd and
# enable/start the unit the usual Debian way (deb-systemd-helper / deb-systemd-invoke when present), and
# honour $DPKG_ROOT so the package also installs into a separate root (dpkg --root).
set -euo pipefail
cd "$(dirname "$0")/.."
binary="" out="target/deb" compress=(-Zxz)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) binary=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --fast) compress=(-Zgzip -z1); shift ;;
    *) echo "usage: $0 [--binary PATH] [--out DIR] [--fast]" >&2; exit 2 ;;
  esac
done
if [ -z "$binary" ]; then
  cargo build --release --bin tidepool
  binary=target/release/tidepool
fi
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d "${TMPDIR:-/tmp}/tidepool-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/tidepool" \
  "$stage/usr/share/doc/tidepool"
install -m 0755 "$binary" "$stage/usr/bin/tidepool"
strip --strip-unneeded "$stage/usr/bin/tidepool"
install -m 0644 packaging/tidepool.service "$stage/lib/systemd/system/tidepool.service"
install -m 0644 packaging/config.example.toml "$stage/etc/tidepool/config.toml"
install -m 0644 README.md storage-format.md "$stage/usr/share/doc/tidepool/"
installed_kb=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: tidepool
Version: $version
Architecture: $arch
Maintainer: tidepool developers <tidepool@localhost>
Installed-Size: $installed_kb
Depends: libc6 (>= 2.31)
Section: database
Priority: optional
Homepage: https://github.com/tidepool/tidepool
Description: edge search daemon speaking the turbopuffer v2 API
 tidepool serves vector, full-text and attribute search over HTTP on the node
 itself, keeps working without its uplink, and stores namespaces as immutable,
 checksummed objects in a local directory or an S3-compatible bucket.
CONTROL
echo /etc/tidepool/config.toml > "$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
mkdir -p "$out"
deb="$out/tidepool_${version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$stage" "$deb" >/dev/null
echo "$deb"
