#!/usr/bin/env bash
# Fuzz smoke test: runs every cargo-fuzz target for a short time.
#
#   bash fuzz/smoke.sh [SECONDS] [TARGET...]
#
# SECONDS defaults to $FUZZ_SECONDS or 20 per target; TARGETs default to all.
# Builds the targets as `cargo fuzz build --dev --sanitizer=none` does (the
# same coverage flags, on the stable toolchain, as redb's CI does), with one
# cargo call for all of them and line tables only for debug info, and without
# needing cargo-fuzz installed (`cargo fuzz run <target>` works on this
# project as usual). Runs two targets at a time (one per core of a CI runner:
# libFuzzer is single-threaded), each for SECONDS.
# Seeds each corpus from the frozen fixtures in tests/fixtures/v1, v2, v4, v7, v8, v9, v10, v11, v13, v14, v16, v17_packed, v18_attr and v19_tight.
# Exits non-zero if a target crashes (the input is kept in fuzz/artifacts/<target>/,
# libFuzzer's output in fuzz/artifacts/<target>/smoke.log).
set -euo pipefail

secs="${1:-${FUZZ_SECONDS:-20}}"
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(wal_decode manifest_decode schema_decode filter_parse filter_decode segment_decode deletes_decode index_open snapshot_decode idempotency_decode sync_record_decode tombstone_decode lease_decode text_prefix_open muvera_open attr_open)
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fixtures="$here/../tests/fixtures/v1"

cd "$here"

# Seed corpora (the first input byte selects the target's mode: even = a
# whole object, odd = a body that the target seals with valid checksums).
seed() { # seed TARGET NAME MODE_BYTE_OCTAL FILE_OR_-
  local dir="corpus/$1"
  mkdir -p "$dir"
  { printf "\\$3"; cat "$4"; } >"$dir/$2"
}
if [ -d "$fixtures" ]; then
  seed wal_decode fixture-wal 000 "$fixtures/wal_batch.bin"
  # Body only; the mode byte is (count << 2) | (own encodings ? 2 : 0) | 1.
  tail -c +49 "$fixtures/wal_batch.bin" | seed wal_decode fixture-wal-body 015 -
  seed wal_decode fixture-wal-filters 000 "$fixtures/wal_batch_filters.bin"
  tail -c +49 "$fixtures/wal_batch_filters.bin" | seed wal_decode fixture-wal-filters-body 005 -
  seed manifest_decode fixture-manifest 000 "$fixtures/manifest.json"
  sed -e 's/^.*"body"://' -e 's/}$//' "$fixtures/manifest.json" | seed manifest_decode fixture-manifest-body 001 -
  seed manifest_decode fixture-current 000 "$fixtures/CURRENT"
  if [ -f "$fixtures/segment.seg" ]; then
    seed segment_decode fixture-segment 000 "$fixtures/segment.seg"
    # Odd mode: the target recomputes the checksums before opening.
    seed segment_decode fixture-segment-resealed 001 "$fixtures/segment.seg"
    seed segment_decode fixture-deletes 000 "$fixtures/deletes.del"
  fi
fi
v2="$here/../tests/fixtures/v2"
if [ -d "$v2" ]; then
  seed manifest_decode fixture-current-v2 000 "$v2/CURRENT"
  seed segment_decode fixture-segment-cold 000 "$v2/segment_cold.seg"
  seed segment_decode fixture-segment-ranges 000 "$v2/segment_ranges.seg"
  # index_open mode 2 (mode % 3 == 2): the cold IVF section (kind 21) cut out of the segment.
  python3 -c 'import struct, sys
b = open(sys.argv[1], "rb").read()
n, t = struct.unpack_from("<I", b, 28)[0], struct.unpack_from("<Q", b, 32)[0]
for i in range(n):
    k, _, _, o, l = struct.unpack_from("<HHIQQ", b, t + 24 * i)
    if k == 21:
        sys.stdout.buffer.write(b[o:o + l])' "$v2/segment_cold.seg" | seed index_open fixture-cold-ivf 002 -
fi
v15="$here/../tests/fixtures/v15"
if [ -d "$v15" ]; then
  # index_open mode 6 (mode % 7 == 6): bare graph sections, version 2 (8-bit codes), 3 (RaBitQ)
  # and 4 (packed links, either code kind).
  seed index_open fixture-graph-v2 006 "$here/../tests/fixtures/v6/graph.bin"
  seed index_open fixture-graph-v3 006 "$v15/graph_rabitq.bin"
  # Version 4 (packed neighbour ids, wide calibration record), either code kind.
  seed index_open fixture-graph-v4-sq8 006 "$here/../tests/fixtures/v17_packed/graph.bin"
  seed index_open fixture-graph-v4-rabitq 006 "$here/../tests/fixtures/v17_packed/graph_rabitq.bin"
  # Version 5 (RaBitQ records at their tight length).
  seed index_open fixture-graph-v5-rabitq 006 "$here/../tests/fixtures/v19_tight/graph_rabitq.bin"
fi
v16="$here/../tests/fixtures/v16"
if [ -d "$v16" ]; then
  # index_open mode 0 (mode % 3 == 0): bare IVF sections, version 2 (own codes) and 3 (lists only).
  seed index_open fixture-ivf-v2 000 "$here/../tests/fixtures/v6/ann_ivf.bin"
  seed index_open fixture-ivf-v3 000 "$v16/ann_lists.bin"
fi
v14="$here/../tests/fixtures/v14"
if [ -d "$v14" ]; then
  # Segment version 2: doc blocks (LZ4 and stored), whole and resealed.
  seed segment_decode fixture-segment-blocks 000 "$v14/segment_blocks.seg"
  seed segment_decode fixture-segment-blocks-resealed 001 "$v14/segment_blocks.seg"
fi
v13="$here/../tests/fixtures/v13"
if [ -d "$v13" ]; then
  # index_open mode 4 (mode % 5 == 4): a named cold IVF section (kind 24).
  seed index_open fixture-named-cold 004 "$v13/named_cold.bin"
  seed wal_decode fixture-wal-in-any 000 "$v13/wal_batch_in_any.bin"
fi
v10="$here/../tests/fixtures/v10"
if [ -d "$v10" ]; then
  seed idempotency_decode fixture-idempotency-bin 000 "$v10/idempotency.bin"
  seed idempotency_decode fixture-idempotency-resealed 001 "$v10/idempotency.bin"
  seed idempotency_decode fixture-idempotency-json 000 "$v10/idempotency.json"
  seed sync_record_decode fixture-sync-record 000 "$v10/sync_record.bin"
  seed sync_record_decode fixture-sync-record-resealed 001 "$v10/sync_record.bin"
  mkdir -p corpus/snapshot_decode
  cp "$v10/snapshot.snp" corpus/snapshot_decode/fixture-snapshot
fi
v7="$here/../tests/fixtures/v7"
if [ -d "$v7" ]; then
  seed wal_decode fixture-wal-own 000 "$v7/wal_batch_own_encodings.bin"
  tail -c +49 "$v7/wal_batch_own_encodings.bin" | seed wal_decode fixture-wal-own-body 007 -
fi
mkdir -p corpus/filter_decode
# ["And", [["a","Eq",1], ["t","Glob","x*"]]] and ["Not", ["b","ContainsAnyToken",["x"]]].
printf '\001\002\000\000\000\004\001\000\000\000a\001\001\002\001\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\004\001\000\000\000t\021\003\002\000\000\000x*' >corpus/filter_decode/and
printf '\003\004\001\000\000\000b\030\006\001\000\000\000\001\000\000\000x' >corpus/filter_decode/not_tokens
v9="$here/../tests/fixtures/v9"
if [ -d "$v9" ]; then
  mkdir -p corpus/tombstone_decode
  cp "$v9/tombstone.gc" corpus/tombstone_decode/fixture-tombstone
  seed lease_decode fixture-lease 000 "$v9/lease.lease"
  seed lease_decode fixture-lease-sweep 000 "$v9/lease_sweep.lease"
  # Odd mode: the body without its crc32c; the target seals it.
  head -c -4 "$v9/lease.lease" | seed lease_decode fixture-lease-body 001 -
fi
v8="$here/../tests/fixtures/v8"
if [ -d "$v8" ]; then
  # Manifest version 3 (the schema in tidepool's encoding); odd mode 5 seals the body as version 3.
  seed manifest_decode fixture-manifest-v3 000 "$v8/manifest.json"
  sed -e 's/^.*"body"://' -e 's/}$//' "$v8/manifest.json" | seed manifest_decode fixture-manifest-v3-body 005 -
  seed schema_decode fixture-schema-v2 000 "$v8/schema.json"
  sed -e 's/^.*"body"://' -e 's/}$//' "$v8/schema.json" | seed schema_decode fixture-schema-v2-body 001 -
fi
v4="$here/../tests/fixtures/v4"
if [ -d "$v4" ]; then
  # Schema object version 1 (turbopuffer's shape, the legacy reader).
  seed schema_decode fixture-schema-v1 000 "$v4/schema.json"
  sed -e 's/^.*"body"://' -e 's/}$//' "$v4/schema.json" | seed schema_decode fixture-schema-v1-body 002 -
fi
v11="$here/../tests/fixtures/v11"
if [ -d "$v11" ]; then
  # The full-text section version 2 (prefix dictionary): whole, and as a body resealed (mode 1).
  seed text_prefix_open fixture-text-prefixes 000 "$v11/text_prefixes.bin"
  head -c -4 "$v11/text_prefixes.bin" | seed text_prefix_open fixture-text-prefixes-body 001 -
  seed schema_decode fixture-schema-prefixes 000 "$v11/schema_prefixes.json"
fi
v18="$here/../tests/fixtures/v18_attr"
if [ -d "$v18" ]; then
  # The attribute index section (kind 19): versions 1 and 2, whole and as bodies resealed (mode 1).
  for f in attr_v1 attr attr_str_v1 attr_str; do
    seed attr_open "fixture-$f" 000 "$v18/$f.bin"
    head -c -4 "$v18/$f.bin" | seed attr_open "fixture-$f-body" 001 -
  done
fi
mkdir -p corpus/filter_parse
printf '%s' '["a","Eq",1]' >corpus/filter_parse/eq
printf '%s' '["And",[["a","Gte",1.5],["Not",["b","In",["x","y"]]]]]' >corpus/filter_parse/and
printf '%s' '["Or",[["id","NotEq",null],["t","Glob","a*"],["t","Regex","^a.c$"]]]' >corpus/filter_parse/or
printf '%s' '["body","ContainsAllTokens","hello world"]' >corpus/filter_parse/tokens

# cargo-fuzz's flags for `--dev --sanitizer=none` on Linux (cargo-fuzz 0.13, src/project.rs). The
# explicit --target keeps them off build scripts and proc macros, as cargo-fuzz does.
triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cllvm-args=-simplifycfg-branch-fold-threshold=0 \
-Cllvm-args=-sanitizer-coverage-stack-depth -Cdebug-assertions ${RUSTFLAGS:-}"
bin_args=()
for t in "${targets[@]}"; do bin_args+=(--bin "$t"); done
echo "smoke.sh: building ${#targets[@]} targets" >&2
CARGO_PROFILE_DEV_DEBUG=line-tables-only cargo build --manifest-path Cargo.toml --target "$triple" "${bin_args[@]}"
unset RUSTFLAGS
bins="${CARGO_TARGET_DIR:-$here/target}/$triple/debug"

# fuzz TARGET: SECONDS of libFuzzer on TARGET's corpus; its output goes to its log, shown on failure.
fuzz() {
  local t="$1" log="artifacts/$1/smoke.log"
  mkdir -p "artifacts/$t" "corpus/$t"
  if "$bins/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$secs" "corpus/$t" >"$log" 2>&1; then
    echo "smoke.sh: $t ran ${secs}s: $(grep -E '^Done|^#[0-9]+.*DONE' "$log" | tail -1)" >&2
  else
    echo "smoke.sh: $t FAILED; its log ($log):" >&2
    tail -40 "$log" >&2
    return 1
  fi
}
failed=0
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do
    fuzz "$t" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
done
[ "$failed" = 0 ] || { echo "smoke.sh: a target crashed (inputs in fuzz/artifacts/)" >&2; exit 1; }
echo "smoke.sh: all targets ran ${secs}s without a crash" >&2
