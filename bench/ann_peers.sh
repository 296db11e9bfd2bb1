#!/usr/bin/env bash
# ANN benchmark, side by side with hnswlib, in one run.
#   bash bench/ann_peers.sh
# 1. Adds hnswlib + numpy (pip) to the shared peer virtualenv target/bench-venv (created if missing;
#    bench/peers.sh installs the other peers into the same venv).
# 2. Runs our harness (cargo example ann_bench, release, CARGO_TARGET_DIR=target/bench; IVF and graph) and the
#    hnswlib harness (bench/hnsw_peer.py) one after the other on the same data, single-threaded search.
# 3. Prints both JSON results and the ratios at matched recall (>= 0.95).
# Results go to target/bench/ann-ours.json and target/bench/ann-hnswlib.json.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=target/bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import hnswlib, numpy" 2>/dev/null || "$VENV/bin/pip" install --quiet hnswlib numpy
mkdir -p target/bench
CARGO_TARGET_DIR=target/bench cargo build --profile profiling --example ann_bench
target/bench/profiling/examples/ann_bench > target/bench/ann-ours.json
"$VENV/bin/python" bench/hnsw_peer.py > target/bench/ann-hnswlib.json
"$VENV/bin/python" - <<'PY'
import json
ours = json.load(open("target/bench/ann-ours.json"))
peer = json.load(open("target/bench/ann-hnswlib.json"))
best = peer["best"]
d = next(p for p in ours["ivf"] if p["default"])
ok = [p for p in ours["ivf"] if p["recall"] >= 0.95]
fast = max(ok, key=lambda p: p["qps_cpu"]) if ok else None
g = next((p for p in ours.get("graph", []) if p["default"]), None)
gok = [p for p in ours.get("graph", []) if p["recall"] >= 0.95]
gfast = max(gok, key=lambda p: p["qps_cpu"]) if gok else None
print(json.dumps({"ours_default": d, "ours_fastest_at_0.95": fast, "graph_default": g,
                  "graph_fastest_at_0.95": gfast, "hnswlib_best_at_0.95": best}, indent=1))
if best:
    for name, p in [("ivf default", d), ("ivf fastest >= 0.95", fast), ("graph default (warm path)", g),
                    ("graph fastest >= 0.95", gfast)]:
        if p:
            print(f"ours {name}: recall {p['recall']:.4f} vs hnswlib {best['recall']:.4f} (M={best['M']}, ef={best['ef']}); "
                  f"QPS ratio ours/hnswlib: cpu {p['qps_cpu']/best['qps_cpu']:.2f}, wall {p['qps_wall']/best['qps_wall']:.2f}")
PY
