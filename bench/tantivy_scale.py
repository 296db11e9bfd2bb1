#!/usr/bin/env python3
"""tantivy peer for bench/bm25_scale.rs: the same synthetic corpus and queries (bench/bm25_corpus.py).

Schema: `id` u64 (stored, indexed), `title` and `body` tokenizer `en_stem`, stored (the document store
is part of the disk compared), index option `freq` (ours keeps no positions either).

Two commands:
* `build CORPUS_DIR INDEX_DIR [THREADS]`: indexes `corpus.tsv` (line i = id i) with THREADS writer threads
  (default 2), commits, waits for merges, prints `{"build_s", "segments", "bytes"}`.
* `serve CORPUS_DIR INDEX_DIR`: opens the index and reads commands from stdin, one a line:
  `time`  -> one JSON line: every query of `queries.jsonl`, in order, timed single-threaded
             (parse_query(q, ["title", "body"]) + searcher.search(q, 10)), `{"ms": [...]}`;
  `top`   -> `{"top": [[[id, score], ...], ...]}` (the top 10 of each query, untimed);
  `quit`.
  Alternating these with our rounds keeps both sides under the same machine load.

Usage: target/bench-venv/bin/python bench/tantivy_scale.py build|serve CORPUS_DIR INDEX_DIR
"""
import json
import os
import sys
import time

import tantivy


def schema():
    sb = tantivy.SchemaBuilder()
    sb.add_unsigned_field("id", stored=True, indexed=True)
    sb.add_text_field("title", stored=True, tokenizer_name="en_stem", index_option="freq")
    sb.add_text_field("body", stored=True, tokenizer_name="en_stem", index_option="freq")
    return sb.build()


def dir_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def build(corpus, path, threads):
    os.makedirs(path, exist_ok=True)
    index = tantivy.Index(schema(), path=path)
    t0 = time.perf_counter()
    writer = index.writer(heap_size=400_000_000, num_threads=threads)
    with open(f"{corpus}/corpus.tsv", encoding="utf-8") as f:
        for i, line in enumerate(f):
            title, body = line.rstrip("\n").split("\t", 1)
            doc = tantivy.Document(title=title, body=body)
            doc.add_unsigned("id", i)
            writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()
    build_s = time.perf_counter() - t0
    index.reload()
    segments = len(index.searcher().segment_readers()) if hasattr(index.searcher(), "segment_readers") else None
    print(json.dumps({"build_s": build_s, "segments": segments, "bytes": dir_bytes(path)}))


def serve(corpus, path):
    index = tantivy.Index.open(path)
    searcher = index.searcher()
    texts = [json.loads(line)["text"] for line in open(f"{corpus}/queries.jsonl", encoding="utf-8")]
    print(json.dumps({"ready": True, "num_docs": searcher.num_docs}), flush=True)
    for cmd in sys.stdin:
        cmd = cmd.strip()
        if cmd == "time":
            ms = []
            for t in texts:
                t0 = time.perf_counter()
                searcher.search(index.parse_query(t, ["title", "body"]), 10)
                ms.append((time.perf_counter() - t0) * 1e3)
            print(json.dumps({"ms": ms}), flush=True)
        elif cmd == "top":
            top = []
            for t in texts:
                res = searcher.search(index.parse_query(t, ["title", "body"]), 10)
                top.append([[searcher.doc(a)["id"][0], s] for s, a in res.hits])
            print(json.dumps({"top": top}), flush=True)
        else:
            return


if __name__ == "__main__":
    cmd, corpus, path = sys.argv[1], sys.argv[2], sys.argv[3]
    if cmd == "build":
        build(corpus, path, int(sys.argv[4]) if len(sys.argv) > 4 else 2)
    else:
        serve(corpus, path)
