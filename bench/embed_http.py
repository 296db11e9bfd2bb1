"""Local models over HTTP, as a user meets them (bench/embed.sh runs it against a fresh daemon).

Against a running tidepool started with `--model minilm=DIR` (all-MiniLM-L6-v2, the model that
embedded shared/data/debian):
1. ingest: the Debian docs written with `text` (title + ". " + body) embedded by the daemon
   (`"embed": "minilm"`), in requests of --batch rows, one client at a time: docs/s;
2. fidelity: every stored `$embed_text` against the shipped vectors.f32 row (cosine, min/mean);
3. retrieval: each dev query's text ranked by `["text", "ANN", ["Embed", text]]`, recall@10 against
   the exact ground truth (a returned doc counts when its distance to the shipped query vector is
   within the 10th + 1e-5, the data README's tie rule), and the query latency over HTTP (p50/p99, the daemon's embedding_ms);
4. rerank: BM25 top 50 reranked by the model (`rerank_by`), known-item MRR@10 against BM25 alone.
Prints one JSON object.
"""

import argparse
import json
import statistics
import time
import urllib.request

import numpy as np

DIM = 384


def call(url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def load(data, n):
    docs = [json.loads(l) for l in open(f"{data}/docs.jsonl", encoding="utf-8")][:n]
    vecs = np.fromfile(f"{data}/vectors.f32", dtype="<f4").reshape(-1, DIM)[: len(docs)]
    qs = [json.loads(l) for l in open(f"{data}/queries/queries.jsonl")]
    gt = [json.loads(l) for l in open(f"{data}/queries/gt_ids.jsonl")]
    qvecs = np.fromfile(f"{data}/queries/query_vectors.f32", dtype="<f4").reshape(-1, DIM)
    return docs, vecs, qs, gt, qvecs


def ingest(base, ns, docs, batch):
    schema = {"text": {"type": "string", "embed": "minilm", "full_text_search": True}}
    started, tokens, embed_ms = time.perf_counter(), 0, 0
    for i in range(0, len(docs), batch):
        rows = [{"id": j, "text": f"{d['title']}. {d['body']}", "title": d["title"]} for j, d in enumerate(docs[i : i + batch], i)]
        body = {"upsert_rows": rows}
        if i == 0:
            body["schema"] = schema
        r = call(f"{base}/v2/namespaces/{ns}", body)
        tokens += r["performance"]["embedding_tokens"]
        embed_ms += r["performance"]["embedding_ms"]
    secs = time.perf_counter() - started
    return {"docs": len(docs), "seconds": round(secs, 1), "docs_per_s": round(len(docs) / secs, 1),
            "tokens": tokens, "embedding_ms": embed_ms}


def fidelity(base, ns, vecs):
    cos, after = [], -1
    while True:
        r = call(f"{base}/v2/namespaces/{ns}/query", {"rank_by": ["id", "asc"], "top_k": 1000,
                 "filters": ["id", "Gt", after], "include_attributes": ["$embed_text"]})
        rows = r["rows"]
        if not rows:
            break
        for row in rows:
            v = np.array(row["$embed_text"], dtype=np.float32)
            s = vecs[row["id"]]
            cos.append(float(v @ s / (np.linalg.norm(v) * np.linalg.norm(s))))
        after = rows[-1]["id"]
    cos = np.array(cos)
    return {"rows": len(cos), "min_cosine": round(float(cos.min()), 6), "mean_cosine": round(float(cos.mean()), 6),
            "below_0_999": int((cos < 0.999).sum())}


def retrieval(base, ns, qs, gt, qvecs, vecs, n):
    hits, lat, emb = [], [], []
    for q, g, qv in zip(qs, gt, qvecs):
        started = time.perf_counter()
        r = call(f"{base}/v2/namespaces/{ns}/query", {"rank_by": ["text", "ANN", ["Embed", q["text"]]], "top_k": 10})
        lat.append((time.perf_counter() - started) * 1000)
        emb.append(r["performance"]["embedding_ms"])
        if n < 36000:
            continue  # the ground truth is over the whole corpus
        kth = g["distances"][9]
        got = [row["id"] for row in r["rows"]]
        dist = [1 - float(qv @ vecs[i]) for i in got]
        hits.append(sum(1 for d in dist if d <= kth + 1e-5) / 10)
    out = {"queries": len(lat), "http_p50_ms": round(statistics.median(lat), 2),
           "http_p99_ms": round(float(np.percentile(lat, 99)), 2), "embedding_ms_p50": statistics.median(emb)}
    if hits:
        out["recall_at_10"] = round(float(np.mean(hits)), 4)
    return out


def mrr(ranked, target):
    for i, t in enumerate(ranked[:10]):
        if t == target:
            return 1 / (i + 1)
    return 0.0


def rerank(base, ns, qs, docs):
    index = {d["id"]: i for i, d in enumerate(docs)}
    plain, reranked, lat = [], [], []
    for q in qs:
        target = index.get(q["target_id"])
        if target is None:
            continue
        text = "".join(c if c.isalnum() else " " for c in q["text"].lower())
        body = {"rank_by": ["text", "BM25", text], "top_k": 50, "include_attributes": ["text"]}
        a = call(f"{base}/v2/namespaces/{ns}/query", body)
        body["rerank_by"] = {"attribute": "text", "model": "minilm", "query": q["text"]}
        started = time.perf_counter()
        b = call(f"{base}/v2/namespaces/{ns}/query", body)
        lat.append((time.perf_counter() - started) * 1000)
        plain.append(mrr([r["id"] for r in a["rows"]], target))
        reranked.append(mrr([r["id"] for r in b["rows"]], target))
    if not plain:
        return {"queries": 0}  # no query's target is among the docs written
    return {"queries": len(plain), "bm25_mrr_at_10": round(float(np.mean(plain)), 4),
            "reranked_mrr_at_10": round(float(np.mean(reranked)), 4), "rerank_http_p50_ms": round(statistics.median(lat), 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--docs", type=int, default=36000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--rerank-queries", type=int, default=100)
    a = ap.parse_args()
    docs, vecs, qs, gt, qvecs = load(a.data, a.docs)
    ns = "embedbench"
    out = {"ingest": ingest(a.url, ns, docs, a.batch)}
    out["fidelity"] = fidelity(a.url, ns, vecs)
    out["retrieval"] = retrieval(a.url, ns, qs[: a.queries], gt[: a.queries], qvecs, vecs, a.docs)
    out["rerank"] = rerank(a.url, ns, qs[: a.rerank_queries], docs)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
