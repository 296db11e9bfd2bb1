#!/usr/bin/env python3
"""Text ingest over HTTP with 2 writers, and the first BM25 query right after (BENCHMARKS.md, "An
unindexed backlog"): python3 bench/text_ingest.py PATH/TO/tidepool [N] [--plain]

Writes the first N (default 36,000) Debian docs (../shared/data/debian) with their vectors, in 1,000-row
requests split over 2 kept-alive connections, to one namespace with `title` and `body` full-text
(`--plain`: as plain strings), then times one `Sum(title, body)` BM25 query while the rows still wait in
the WAL. Prints docs/s and the query's ms. Standard library only.
"""
import http.client
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import os

args = [a for a in sys.argv[1:] if not a.startswith("--")]
binary, n, plain = args[0], int(args[1]) if len(args) > 1 else 36000, "--plain" in sys.argv
data = os.environ.get("TIDEPOOL_BENCH_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "debian"))
docs = [json.loads(line) for _, line in zip(range(n), open(f"{data}/docs.jsonl"))]
raw = open(f"{data}/vectors.f32", "rb").read(n * 1536)
vecs = [list(struct.unpack_from("384f", raw, i * 1536)) for i in range(n)]
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = next(line.strip().split("listening on ")[1] for line in p.stdout if "listening on" in line)
fts = {"type": "string", "full_text_search": True}
schema = {} if plain else {"title": fts, "body": fts}
bodies = []
for i in range(0, n, 1000):
    rows = [dict(id=i + j, vector=vecs[i + j], title=x["title"], body=x["body"], section=x["section"])
            for j, x in enumerate(docs[i:i + 1000])]
    bodies.append(json.dumps({"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema}))


def writer(k):
    c = http.client.HTTPConnection(url[len("http://"):])
    for b in bodies[k::2]:
        c.request("POST", "/v2/namespaces/deb", b, {"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status


t = time.time()
threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()
elapsed = time.time() - t
c = http.client.HTTPConnection(url[len("http://"):])
q = {"rank_by": ["Sum", [["title", "BM25", "network scanner"], ["body", "BM25", "network scanner"]]], "top_k": 10}
if plain:
    q = {"rank_by": ["id", "asc"], "top_k": 10}
t = time.perf_counter()
c.request("POST", "/v2/namespaces/deb/query", json.dumps(q), {"Content-Type": "application/json"})
c.getresponse().read()
query_ms = (time.perf_counter() - t) * 1000
print(f"{'plain' if plain else 'full-text'}: {n} docs with 2 writers in {elapsed:.2f} s = {n / elapsed:.0f} docs/s; "
      f"first query after: {query_ms:.1f} ms")
p.terminate()
p.wait()
shutil.rmtree(d, True)
