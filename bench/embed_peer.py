"""The peer of bench/embed.sh: sentence-transformers (PyTorch, CPU) embedding the same Debian texts
with the same model directory and truncation (max_seq_length 256), on 2 threads, as the data set's
vectors were made (`title + ". " + body`, mean pooling, normalised). Prints one JSON object:
docs/s over the first --docs docs (after one warm-up batch), the 10-word query p50 (one text per
call), and the cosine of its vectors with the shipped ones (a check that it runs the same model).
"""

import argparse
import json
import statistics
import time

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

DIM = 384


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    docs = [json.loads(l) for l in open(f"{a.data}/docs.jsonl", encoding="utf-8")][: a.docs]
    texts = [f"{d['title']}. {d['body']}" for d in docs]
    shipped = np.fromfile(f"{a.data}/vectors.f32", dtype="<f4").reshape(-1, DIM)[: len(texts)]
    model = SentenceTransformer(a.model, device="cpu")
    model.max_seq_length = 256
    model.encode(texts[:32], batch_size=32)
    started = time.perf_counter()
    vecs = model.encode(texts, batch_size=32, normalize_embeddings=True)
    secs = time.perf_counter() - started
    cos = (vecs * shipped).sum(axis=1)
    words = "fast secure web server with proxy cache and load balancing".split()
    lat = []
    for i in range(50):
        q = " ".join(words[i % 3 :] + words[: i % 3])
        t = time.perf_counter()
        model.encode([q])
        lat.append((time.perf_counter() - t) * 1000)
    print(json.dumps({
        "docs": len(texts), "seconds": round(secs, 2), "docs_per_s": round(len(texts) / secs, 1),
        "threads": torch.get_num_threads(), "min_cosine_vs_shipped": round(float(cos.min()), 6),
        "query_p50_ms": round(statistics.median(lat), 2), "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
