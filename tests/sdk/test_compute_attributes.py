"""`compute_attributes` and the rank combinators through the official turbopuffer Python SDK.

Invariant: what the SDK sends for `compute_attributes` (VectorDist, Highlight, rank expressions)
and for `rank_by` combinators (Attribute, Saturate, Decay, Dist, filters as terms) is answered
as README.md documents: VectorDist agrees with numpy to 1e-4 under both metrics, a rank
expression's value is the row's ranking score, Highlight fragments contain the query's terms
(stemmed forms too) with offsets that slice the text in each unit, bad expressions are 400s
naming the key.
"""

from __future__ import annotations

import numpy as np
import pytest
import turbopuffer

from test_sdk import compact, ids


@pytest.mark.parametrize("metric", ["cosine_distance", "euclidean_squared"])
def test_vector_dist_matches_numpy(tpuf, ns, ns_name, metric):
    rng = np.random.default_rng(7)
    vecs = rng.normal(size=(60, 16)).astype(np.float32)
    rows = [{"id": i, "vector": vecs[i].tolist()} for i in range(60)]
    ns.write(upsert_rows=rows[:40], distance_metric=metric)
    compact(tpuf, ns_name)
    ns.write(upsert_rows=rows[40:])
    q = rng.normal(size=16).astype(np.float32)
    other = rng.normal(size=16).astype(np.float32)
    resp = ns.query(
        rank_by=("vector", "kNN", q.tolist()),
        top_k=60,
        compute_attributes={"to_q": ("vector", "VectorDist", q.tolist()), "to_other": ("vector", "VectorDist", other.tolist())},
    )
    assert len(resp.rows) == 60
    for row in resp.rows:
        v = vecs[row.id].astype(np.float64)
        o = other.astype(np.float64)
        if metric == "cosine_distance":
            want = 1.0 - v.dot(o) / (np.linalg.norm(v) * np.linalg.norm(o))
        else:
            want = float(((v - o) ** 2).sum())
        assert abs(row["to_other"] - want) < 1e-4, (row.id, row["to_other"], want)
        assert row["to_q"] == row["$dist"]
    with pytest.raises(turbopuffer.BadRequestError) as e:
        ns.query(rank_by=("id", "asc"), compute_attributes={"d": ("vector", "VectorDist", [1.0, 2.0])})
    assert "compute_attributes.d" in e.value.body["error"]


TEXT = "Prelude. The naïve Foxes were JUMPING — 🦊 over the fence! Nothing here. A fox jumps."


def seed_text(tpuf, ns, ns_name):
    ns.write(
        upsert_rows=[
            {"id": 1, "text": TEXT, "clicks": 3, "cat": "a"},
            {"id": 2, "text": "lazy dogs sleep", "clicks": 30, "cat": "b"},
            {"id": 3, "text": "the quick fox", "clicks": 10, "cat": "b"},
        ],
        schema={"text": {"type": "string", "full_text_search": {"stemming": True}}},
    )
    compact(tpuf, ns_name)


def slice_in(text: str, unit: str, start: int, end: int) -> str:
    if unit == "utf-8":
        return text.encode("utf-8")[start:end].decode("utf-8")
    if unit == "utf-16":
        return text.encode("utf-16-le")[2 * start : 2 * end].decode("utf-16-le")
    return text[start:end]


@pytest.mark.parametrize("unit", ["utf-8", "utf-16", "codepoints"])
def test_highlight_fragments_and_offsets(tpuf, ns, ns_name, unit):
    seed_text(tpuf, ns, ns_name)
    resp = ns.query(
        rank_by=("text", "BM25", "jumping fox"),
        top_k=5,
        compute_attributes={"hl": ("Highlight", "text", {"include_offsets": unit, "fragment_limit": 5})},
    )
    row = next(r for r in resp.rows if r.id == 1)
    frags = row["hl"]
    # Only the sentences holding a term (best first; here both hold two).
    assert sorted(f["text"] for f in frags) == ["A fox jumps.", "The naïve Foxes were JUMPING — 🦊 over the fence!"]
    for f in frags:
        assert f["highlights"], f
        assert set(f["highlights"]) <= {"Foxes", "JUMPING", "fox", "jumps"}
        assert slice_in(TEXT, unit, f["start"], f["end"]) == f["text"]
        for word, (s, e) in zip(f["highlights"], f["highlight_offsets"]):
            assert slice_in(TEXT, unit, s, e) == word


def test_rank_values_and_combinators(tpuf, ns, ns_name):
    seed_text(tpuf, ns, ns_name)
    expr = ("Sum", [("text", "BM25", "fox"), ("Product", 2.0, ("cat", "Eq", "b"))])
    resp = ns.query(rank_by=expr, top_k=5, compute_attributes={"score": expr})
    assert set(ids(resp)) == {1, 3}, "rows without a BM25 match do not rank"
    for row in resp.rows:
        assert row["score"] == row["$dist"]
    plain = {r.id: r["$dist"] for r in ns.query(rank_by=("text", "BM25", "fox"), top_k=5).rows}
    got = {r.id: r["$dist"] for r in resp.rows}
    assert abs(got[3] - (plain[3] + 2.0)) < 1e-5 and abs(got[1] - plain[1]) < 1e-6
    sat = ns.query(rank_by=("Saturate", ("Attribute", "clicks"), {"midpoint": 10, "exponent": 2}), top_k=5)
    assert ids(sat) == [2, 3, 1]
    for row, x in zip(sat.rows, [30, 10, 3]):
        assert abs(row["$dist"] - x * x / (x * x + 100)) < 1e-6
    decay = ns.query(rank_by=("Decay", ("Dist", ("Attribute", "clicks"), 10), {"midpoint": 5}), top_k=5)
    assert ids(decay) == [3, 1, 2]
    for row, x in zip(decay.rows, [0, 7, 20]):
        assert abs(row["$dist"] - 5 / (x + 5)) < 1e-6
    with pytest.raises(turbopuffer.BadRequestError) as e:
        ns.query(rank_by=("id", "asc"), compute_attributes={"hl": ("Highlight", "clicks")})
    assert "compute_attributes.hl" in e.value.body["error"]
