"""Recall of the indexes issue 34 added, through the official turbopuffer Python SDK, against a
numpy brute force in the same process.

Invariant: at the default target recall, `[attr, "ANN", q]` on named vector attributes (each in
its own metric and dimension, after compaction built their calibrated graph sections) and
`[attr, "ANN", [[..], ..]]` on a late-interaction multi-vector attribute (after compaction built
its MUVERA section) find at least 95% of the exact top 10, and every `$dist` they return is the
exact distance (to 1e-4).
"""

from __future__ import annotations

import numpy as np

from test_sdk import compact


def clustered(rng: np.random.Generator, n: int, dim: int, centers: int = 24) -> np.ndarray:
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    return (c[rng.integers(0, centers, n)] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def cosine_dists(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    return 1.0 - (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))


def euclid_dists(q: np.ndarray, m: np.ndarray) -> np.ndarray:
    return ((m - q) ** 2).sum(axis=1)


def recall_of(ns, attr: str, queries: np.ndarray, dists, data: np.ndarray) -> float:
    hits = 0
    for q in queries:
        d = dists(q, data)
        want = set(np.lexsort((np.arange(len(d)), d))[:10].tolist())
        res = ns.query(rank_by=(attr, "ANN", q.tolist()), top_k=10)
        assert len(res.rows) == 10
        for r in res.rows:
            assert abs(r["$dist"] - float(d[r.id])) <= 1e-4 * max(1.0, abs(float(d[r.id]))), (attr, r.id)
        hits += len(want & {r.id for r in res.rows})
    return hits / (10 * len(queries))


def test_named_vector_ann_reaches_095_against_numpy(tpuf, ns, ns_name):
    rng = np.random.default_rng(17)
    n = 3000
    title = clustered(rng, n, 24)
    image = clustered(rng, n, 12) * 3.0
    schema = {
        "title": {"type": "[24]f32", "ann": True},
        "image": {"type": "[12]f32", "ann": {"distance_metric": "euclidean_squared"}},
    }
    for start in range(0, n, 1000):
        ids = list(range(start, start + 1000))
        ns.write(
            upsert_columns={"id": ids, "title": title[ids].tolist(), "image": image[ids].tolist()},
            schema=schema,
            distance_metric="cosine_distance",
        )
    compact(tpuf, ns_name)
    explain = ns.explain_query(rank_by=("title", "ANN", title[0].tolist()), top_k=10)
    assert "graph" in str(explain).lower(), explain
    for attr, data, dists in [("title", title, cosine_dists), ("image", image, euclid_dists)]:
        queries = data[rng.integers(0, n, 40)] + 0.1 * rng.standard_normal((40, data.shape[1])).astype(np.float32)
        recall = recall_of(ns, attr, queries, dists, data)
        print(f"{attr}: recall@10 {recall:.3f}")
        assert recall >= 0.95, (attr, recall)


def test_multi_vector_ann_reaches_095_against_numpy(tpuf, ns, ns_name):
    rng = np.random.default_rng(23)
    n, dim = 600, 16
    centers = rng.standard_normal((16, dim)).astype(np.float32)

    def tokens(k: int) -> np.ndarray:
        return (centers[rng.integers(0, 16, k)] + 0.3 * rng.standard_normal((k, dim))).astype(np.float32)

    docs = [tokens(int(rng.integers(2, 9))) for _ in range(n)]
    schema = {"tok": {"type": f"[][{dim}]f32", "ann": {"late_interaction": True}}}
    ns.write(upsert_rows=[{"id": i, "tok": d.tolist()} for i, d in enumerate(docs)], schema=schema)
    compact(tpuf, ns_name)

    def unit(m: np.ndarray) -> np.ndarray:
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    units = [unit(d) for d in docs]
    hits, queries = 0, 30
    for _ in range(queries):
        q = tokens(4)
        uq = unit(q)
        d = np.array([float((1.0 - uq @ u.T).min(axis=1).sum()) for u in units])
        want = set(np.lexsort((np.arange(n), d))[:10].tolist())
        res = ns.query(rank_by=("tok", "ANN", q.tolist()), top_k=10)
        for r in res.rows:
            assert abs(r["$dist"] - d[r.id]) < 1e-4, r.id
        hits += len(want & {r.id for r in res.rows})
    recall = hits / (10 * queries)
    print(f"multi-vector: recall@10 {recall:.3f}")
    assert recall >= 0.95, recall
