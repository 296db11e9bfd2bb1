"""Local models through the official turbopuffer Python SDK (3.1): what the SDK sends for native
embedding and model reranking is answered by the daemon's own all-MiniLM-L6-v2 ("minilm").

Invariant: a schema `embed` makes writes report `embedding_ms`/`embedding_tokens` and store a
384-d `$embed_<attr>`; `("text", "ANN", ("Embed", q))` ranks by it (the document written with the
query's own words first) and reports its embedding time; `compute_attributes` `Embed` returns the
query's vector; `rerank_by` a model returns the same rows by descending score; an unknown model is
a BadRequestError naming the configured one.
"""

from __future__ import annotations

import numpy as np
import pytest
import turbopuffer

from conftest import MODEL_DIR

DOCS = [
    "nginx: small, powerful, scalable web and reverse proxy server",
    "postgresql: object-relational SQL database server",
    "vim: Vi IMproved - enhanced vi text editor",
    "openssh-server: secure shell (SSH) server, for secure access from remote machines",
    "gimp: GNU Image Manipulation Program for photo retouching and image authoring",
    "python3: interactive high-level object-oriented programming language",
]


@pytest.fixture(autouse=True)
def _model_installed():
    assert (MODEL_DIR / "model.safetensors").is_file(), (
        f"the test model is not installed at {MODEL_DIR}: run scripts/models.sh {MODEL_DIR.parent}"
    )


def test_embed_write_query_compute_and_rerank(ns):
    res = ns.write(
        upsert_rows=[{"id": i, "text": t} for i, t in enumerate(DOCS)],
        schema={"text": {"type": "string", "embed": "minilm", "full_text_search": True}},
    )
    assert res.performance.embedding_ms >= 1 and res.performance.embedding_tokens > 30

    q = ns.query(rank_by=("text", "ANN", ("Embed", "a database for SQL")), top_k=3, include_attributes=["$embed_text"])
    assert q.rows[0].id == 1
    assert q.performance.embedding_ms >= 1 and q.performance.embedding_tokens >= 5
    v = np.array(q.rows[0]["$embed_text"], dtype=np.float32)
    assert v.shape == (384,) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-4

    c = ns.query(rank_by=("id", "asc"), top_k=6, compute_attributes={"e": ("Embed", "photo editing")})
    e = np.array(c.rows[0]["e"], dtype=np.float32)
    assert e.shape == (384,)

    r = ns.query(
        rank_by=("text", "BM25", "server"),
        top_k=5,
        include_attributes=["text"],
        rerank_by={"attribute": "text", "model": "minilm", "query": "remote login over ssh"},
    )
    assert r.rows[0].id == 3
    scores = [row["$dist"] for row in r.rows]
    assert scores == sorted(scores, reverse=True)

    with pytest.raises(turbopuffer.BadRequestError) as err:
        ns.query(rank_by=("text", "ANN", ("Embed", "x", {"model": "nope"})), top_k=1)
    assert "minilm" in err.value.body["error"]
