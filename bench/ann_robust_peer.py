#!/usr/bin/env python3
"""hnswlib peer for the ANN robustness benchmark (bench/ann_robust.rs): reads each set the Rust
harness wrote (base.f32, queries.f32, kth.f32 = exact 10th distances, meta.json), builds hnswlib
(M=16, ef_construction=200, its defaults), and reports recall@10 (same tie rule: a hit when the
returned distance <= kth + |kth|*1e-5 + 1e-6) and single-thread QPS (per CPU second) at ef=64, and at the smallest
ef in a sweep that reaches our recall on that set (and the smallest reaching 0.95). JSON on stdout, progress on stderr.
"""
import json, os, sys, time
import numpy as np
import hnswlib

OUT = os.environ.get("ANN_ROBUST_OUT", "target/bench/robust")
MIN_TIME = float(os.environ.get("ANN_BENCH_MS", "1000")) / 1000.0
K = 10


def qps(index, Q):
    """Queries per CPU second of this thread (the harness measures its thread's CPU time too:
    the machine is shared, and wall time would charge its load to whichever side ran then)."""
    index.knn_query(Q[:20], k=K, num_threads=1)
    n, t0 = 0, time.thread_time()
    while time.thread_time() - t0 < MIN_TIME:
        for q in Q:
            index.knn_query(q, k=K, num_threads=1)
        n += len(Q)
    return n / (time.thread_time() - t0)


def recall(index, Q, kth):
    _, d = index.knn_query(Q, k=K, num_threads=1)
    bound = kth + np.abs(kth) * 1e-5 + 1e-6
    return float(np.mean(np.sum(d[:, :K] <= bound[:, None], axis=1) / K))


results = []
for name in sorted(os.listdir(OUT)):
    d = os.path.join(OUT, name)
    meta = json.load(open(os.path.join(d, "meta.json")))
    dim = meta["dim"]
    X = np.fromfile(os.path.join(d, "base.f32"), dtype="<f4").reshape(-1, dim)
    Q = np.fromfile(os.path.join(d, "queries.f32"), dtype="<f4").reshape(-1, dim)
    kth = np.fromfile(os.path.join(d, "kth.f32"), dtype="<f4").astype(np.float64)
    space = "cosine" if meta["metric"] == "cosine" else "l2"
    t0 = time.perf_counter()
    index = hnswlib.Index(space=space, dim=dim)
    index.init_index(max_elements=len(X), M=16, ef_construction=200, random_seed=100)
    index.add_items(X, np.arange(len(X)), num_threads=1)
    build = time.perf_counter() - t0
    index.set_ef(64)
    r64, q64 = recall(index, Q, kth), qps(index, Q)
    tuned, at95 = None, None
    for ef in [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]:
        index.set_ef(ef)
        r = recall(index, Q, kth)
        if at95 is None and r >= 0.95:
            at95 = {"ef": ef, "recall": r, "qps": qps(index, Q)}
        if r >= meta["recall"] - 1e-9:
            tuned = {"ef": ef, "recall": r, "qps": qps(index, Q)}
            break
    res = {"name": name, "build_s": build, "ef64": {"recall": r64, "qps": q64}, "tuned": tuned, "at95": at95}
    print(f"{name:<18} hnswlib ef64 recall {r64:.3} QPS {q64:.0}; at 0.95 {at95}; tuned {tuned}", file=sys.stderr)
    results.append(res)
print(json.dumps(results, indent=1))
