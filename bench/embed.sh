#!/usr/bin/env bash
# Local models, side by side in one run (issue 35's "done when"):
#   bash bench/embed.sh [--docs N] [--speed-docs N] [--queries N] [--rerank-queries N]
# 1. Installs all-MiniLM-L6-v2 (scripts/models.sh target/test-models) and, on first use, a venv
#    with sentence-transformers 6.2.0 / torch 2.15.0 / transformers 5.23.0 (the versions that made
#    shared/data/debian's vectors) into target/bench/st-venv. PyPI's torch wheel brings its CUDA
#    libraries (a few GB); only the CPU is used.
# 2. Speed, back to back on the same texts, 2 threads each: the release example embed_bench
#    (tidepool::models in-process) and bench/embed_peer.py (sentence-transformers); the ratio of
#    their docs/s and each one's 10-word query p50.
# 3. Over HTTP (bench/embed_http.py) against a release daemon with --model minilm=DIR: ingest of
#    the Debian docs with `text` embedded by the daemon, fidelity of every stored $embed_text to the
#    shipped vector, recall@10 of ["Embed", query] over the dev queries (full corpus only), query
#    latency, and BM25 top 50 reranked by the model against BM25 alone (MRR@10).
set -euo pipefail
cd "$(dirname "$0")/.."
docs=36000 speed_docs=2000 queries=500 rerank_queries=100
while [ $# -gt 0 ]; do
  case "$1" in
    --docs) docs=$2; shift 2 ;;
    --speed-docs) speed_docs=$2; shift 2 ;;
    --queries) queries=$2; shift 2 ;;
    --rerank-queries) rerank_queries=$2; shift 2 ;;
    *) echo "embed.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
data=$(cd .. && pwd)/shared/data/debian
mkdir -p target/bench
scripts/models.sh target/test-models >&2
model=$(pwd)/target/test-models/all-minilm-l6-v2
venv=target/bench/st-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
  echo "embed.sh: installing sentence-transformers into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.15.0 sentence-transformers==6.2.0 transformers==5.23.0
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench/cargo}
cargo build --release --example embed_bench --bin tidepool >&2
bin=$CARGO_TARGET_DIR/release

echo "== speed: tidepool::models, 2 threads, $speed_docs docs" >&2
ours=$("$bin/examples/embed_bench" --model "$model" --data "$data" --docs "$speed_docs" --threads 2)
echo "$ours"
echo "== speed: sentence-transformers (PyTorch CPU), 2 threads, $speed_docs docs" >&2
peer=$(HF_HUB_OFFLINE=1 "$venv/bin/python" bench/embed_peer.py --model "$model" --data "$data" --docs "$speed_docs" --threads 2 2>/dev/null)
echo "$peer"
python3 -c "import json,sys; a=json.loads(sys.argv[1]); b=json.loads(sys.argv[2]); print(json.dumps({'docs_per_s_ratio': round(a['docs_per_s']/b['docs_per_s'], 2)}))" "$ours" "$peer"

echo "== over HTTP: $docs docs" >&2
dir=$(mktemp -d target/bench/embed.XXXXXX)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
"$bin/tidepool" serve --data-dir "$dir" --listen 127.0.0.1:0 --model "minilm=$model" \
  --retention-secs 0 >"$dir/out.log" 2>"$dir/err.log" &
pid=$!
for _ in $(seq 1 300); do
  grep -q '^listening on' "$dir/out.log" 2>/dev/null && break
  sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$dir/out.log")
"$venv/bin/python" bench/embed_http.py --url "$url" --data "$data" --docs "$docs" --queries "$queries" \
  --rerank-queries "$rerank_queries"
