#!/usr/bin/env python3
"""BM25 peer for bench/bm25_bench.rs: tantivy (pip `tantivy`) on the Debian corpus.

Builds the reference setup of shared/data/debian/queries/meta.json (fields id raw, title and body
`en_stem`, one writer thread, one commit), then times `parse_query(q, ["title", "body"])` +
`searcher.search(q, 10)` over the dev queries, single-threaded, and prints one JSON object:
{"version", "build_s", "qps", "qps_preparsed" (queries parsed beforehand), "mrr10", "hit10", "overlap_ref", "top10": {qid: [ids]}}.

Usage: target/bench-venv/bin/python bench/tantivy_peer.py DATA_DIR [ROUNDS]
"""
import json
import sys
import tempfile
import time

import tantivy


def query_text(title: str) -> str:
    # Same as the reference: lowercase, every non-alphanumeric character -> space.
    return "".join(c if c.isalnum() else " " for c in title.lower())


def main() -> None:
    data = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    docs = [json.loads(line) for line in open(f"{data}/docs.jsonl", encoding="utf-8")]
    queries = [json.loads(line) for line in open(f"{data}/queries/queries.jsonl", encoding="utf-8")]
    ref = {}
    for line in open(f"{data}/queries/tantivy_top10.jsonl", encoding="utf-8"):
        r = json.loads(line)
        ref[r["qid"]] = r["ids"]

    sb = tantivy.SchemaBuilder()
    sb.add_text_field("id", stored=True, tokenizer_name="raw")
    sb.add_text_field("title", stored=False, tokenizer_name="en_stem", index_option="position")
    sb.add_text_field("body", stored=False, tokenizer_name="en_stem", index_option="position")
    schema = sb.build()
    tmp = tempfile.TemporaryDirectory()
    index = tantivy.Index(schema, path=tmp.name)
    t0 = time.perf_counter()
    writer = index.writer(heap_size=200_000_000, num_threads=1)
    for d in docs:
        writer.add_document(tantivy.Document(id=d["id"], title=d["title"], body=d["body"]))
    writer.commit()
    writer.wait_merging_threads()
    build_s = time.perf_counter() - t0
    index.reload()
    searcher = index.searcher()

    texts = [query_text(q["text"]) for q in queries]
    # Warm-up + results.
    top10 = {}
    mrr = 0.0
    hit = 0
    overlap = 0.0
    for q, text in zip(queries, texts):
        res = searcher.search(index.parse_query(text, ["title", "body"]), 10)
        ids = [searcher.doc(addr)["id"][0] for _, addr in res.hits]
        top10[q["qid"]] = ids
        if q["target_id"] in ids:
            hit += 1
            mrr += 1.0 / (ids.index(q["target_id"]) + 1)
        overlap += len(set(ids) & set(ref[q["qid"]])) / max(1, len(ref[q["qid"]]))
    # Timed: parse + search, no stored-field fetch (the Rust side returns rows, not documents).
    best = float("inf")
    best_cpu = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        c0 = time.thread_time()
        for text in texts:
            searcher.search(index.parse_query(text, ["title", "body"]), 10)
        best_cpu = min(best_cpu, time.thread_time() - c0)
        best = min(best, time.perf_counter() - t0)
    parsed = [index.parse_query(text, ["title", "body"]) for text in texts]
    best_pre = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for q in parsed:
            searcher.search(q, 10)
        best_pre = min(best_pre, time.perf_counter() - t0)
    n = len(queries)
    print(
        json.dumps(
            {
                "version": getattr(tantivy, "__version__", "?"),
                "build_s": build_s,
                "qps": n / best,
                "qps_cpu": n / best_cpu,
                "qps_preparsed": n / best_pre,
                "mrr10": mrr / n,
                "hit10": hit / n,
                "overlap_ref": overlap / n,
                "top10": top10,
            }
        )
    )


if __name__ == "__main__":
    main()
