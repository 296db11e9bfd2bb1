#!/usr/bin/env python3
"""Multi-vector (late interaction) ANN against brute-force MaxSim in numpy, in one run (issue 34).

Generates clustered synthetic ColBERT-like data (every document 8..32 vectors near two of 64 topic
centres, every query 8 vectors near two centres; unit-normalized, cosine), writes it through HTTP
to a tidepool daemon (`[][dim]f32` with `ann: {"late_interaction": true}`), compacts (which builds
the MUVERA section), then for the same queries:
  - numpy brute force: exact MaxSim over every document (the ground truth), single thread;
  - tidepool ANN (MUVERA candidates reranked exactly) over HTTP, one client, sequential;
  - tidepool kNN (exact) over HTTP, for contrast.
Prints recall@10 of ANN and kNN against numpy, and QPS of each.

Usage: bench/multivector.py --binary target/release/tidepool [--docs 5000] [--dim 64] [--queries 50]
Needs numpy (e.g. a virtualenv: python3 -m venv v && v/bin/pip install numpy).
"""
import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


class Daemon:
    def __init__(self, binary, data_dir):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEPOOL_")}
        env["TIDEPOOL_LOG"] = "warn"
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on http://"), line
        self.host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
        self.conn = http.client.HTTPConnection(self.host, int(port), timeout=600)
        while self.request("GET", "/ready")[0] != 200:
            time.sleep(0.01)

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def clustered(rng, n, lo, hi, centres):
    sets = []
    for _ in range(n):
        m = int(rng.integers(lo, hi + 1))
        topics = rng.integers(0, len(centres), size=2)
        v = centres[topics[np.arange(m) % 2]] + 0.35 * rng.standard_normal((m, centres.shape[1]))
        sets.append((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32))
    return sets


def maxsim_top(docs_flat, owner, ndocs, q, k):
    """Exact MaxSim (cosine on unit vectors): per document, Σ_q max_d q·d; the top k ids."""
    sims = q @ docs_flat.T                                   # (|Q|, total vectors)
    best = np.full((q.shape[0], ndocs), -np.inf, dtype=np.float32)
    for i in range(q.shape[0]):
        np.maximum.at(best[i], owner, sims[i])
    score = best.sum(axis=0)
    top = np.argpartition(-score, k)[:k]
    return set(top[np.argsort(-score[top], kind="stable")].tolist())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/tidepool")
    ap.add_argument("--docs", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    k = 10
    rng = np.random.default_rng(a.seed)
    centres = rng.standard_normal((64, a.dim)).astype(np.float32)
    docs = clustered(rng, a.docs, 8, 32, centres)
    queries = clustered(rng, a.queries, 8, 8, centres)
    flat = np.concatenate(docs)
    owner = np.concatenate([np.full(len(d), i) for i, d in enumerate(docs)])
    print(f"{a.docs} docs, {len(flat)} vectors (dim {a.dim}), {a.queries} queries of 8 vectors", file=sys.stderr)

    t0 = time.perf_counter()
    truth = [maxsim_top(flat, owner, len(docs), q, k) for q in queries]
    numpy_qps = len(queries) / (time.perf_counter() - t0)

    tmp = tempfile.mkdtemp(prefix="mv-bench-")
    d = Daemon(a.binary, tmp)
    try:
        schema = {"tok": {"type": f"[][{a.dim}]f32", "ann": {"late_interaction": True}}}
        t0 = time.perf_counter()
        for s in range(0, len(docs), 500):
            rows = [{"id": i, "tok": docs[i].tolist()} for i in range(s, min(s + 500, len(docs)))]
            st, b = d.request("POST", "/v2/namespaces/mv", {"schema": schema, "upsert_rows": rows})
            assert st == 200, b
        st, b = d.request("POST", "/v1/namespaces/mv/_admin/compact", {})
        assert st == 200, b
        print(f"write + compaction: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        st, b = d.request("POST", "/v2/namespaces/mv/explain_query",
                          {"rank_by": ["tok", "ANN", queries[0].tolist()], "limit": k})
        print(b["plan_text"], file=sys.stderr)
        out = {"numpy_bruteforce_qps": round(numpy_qps, 1)}
        for op in ["ANN", "kNN"]:
            bodies = [{"rank_by": ["tok", op, q.tolist()], "limit": k} for q in queries]
            d.request("POST", "/v2/namespaces/mv/query", bodies[0])  # warm
            hits, t0 = 0, time.perf_counter()
            for body, want in zip(bodies, truth):
                st, b = d.request("POST", "/v2/namespaces/mv/query", body)
                assert st == 200, b
                hits += len(want & {r["id"] for r in b["rows"]})
            out[op] = {"qps": round(len(queries) / (time.perf_counter() - t0), 1),
                       "recall_at_10": round(hits / (k * len(queries)), 4)}
        print(json.dumps(out))
    finally:
        d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
