#!/usr/bin/env python3
# Warm query latency over HTTP, for before/after comparisons of one change (BENCHMARKS.md, "Stored bytes
# are ours"): python3 bench/http_latency.py PATH/TO/tidepool N. Ingests the first N Debian docs
# (../shared/data/debian) with their vectors and a BM25 schema, compacts, then sends 300 ANN, 300 BM25
# (title+body) and 300 filtered ANN queries one at a time (a new loopback connection each, urllib); prints
# p50/p99 per kind. Standard library only.
import json, os, struct, subprocess, sys, tempfile, time, urllib.request, statistics
binary, n = sys.argv[1], int(sys.argv[2])
data = os.environ.get("TIDEPOOL_BENCH_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "debian"))
docs = [json.loads(l) for _, l in zip(range(n), open(f"{data}/docs.jsonl"))]
raw = open(f"{data}/vectors.f32", "rb").read(n * 384 * 4)
vecs = [list(struct.unpack_from("384f", raw, i * 1536)) for i in range(n)]
qraw = open(f"{data}/queries/query_vectors.f32", "rb").read()
qs = [json.loads(l) for l in open(f"{data}/queries/queries.jsonl")][:300]
qv = [list(struct.unpack_from("384f", qraw, i * 1536)) for i in range(len(qs))]
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = None
for line in p.stdout:
    if "listening on" in line:
        url = line.strip().split("listening on ")[1]; break
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())
ns = "/v2/namespaces/deb"
schema = {"title": {"type": "string", "full_text_search": True}, "body": {"type": "string", "full_text_search": True}}
t = time.time()
for i in range(0, n, 1000):
    rows = [dict(id=x["id"], vector=vecs[i + j], title=x["title"], body=x["body"], section=x["section"]) for j, x in enumerate(docs[i:i + 1000])]
    post(ns, {"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema})
ingest = time.time() - t
post("/v1/namespaces/deb/_admin/compact", {})
def lat(bodies):
    out = []
    for b in bodies:
        t = time.perf_counter(); post(ns + "/query", b); out.append((time.perf_counter() - t) * 1000)
    out.sort(); return statistics.median(out), out[int(len(out) * 0.99) - 1]
for b in [{"rank_by": ["vector", "ANN", qv[0]], "top_k": 10}] * 50: post(ns + "/query", b)  # warm
ann = lat([{"rank_by": ["vector", "ANN", v], "top_k": 10} for v in qv])
bm25 = lat([{"rank_by": ["Sum", [["title", "BM25", q["text"]], ["body", "BM25", q["text"]]]], "top_k": 10} for q in qs])
filt = lat([{"rank_by": ["vector", "ANN", v], "top_k": 10, "filters": ["section", "Eq", "games"], "include_attributes": ["title"]} for v in qv])
p.terminate(); p.wait()
print(f"ingest {n} docs {ingest:.2f}s; ANN p50 {ann[0]:.3f} ms p99 {ann[1]:.3f}; BM25 p50 {bm25[0]:.3f} p99 {bm25[1]:.3f}; filtered ANN p50 {filt[0]:.3f} p99 {filt[1]:.3f}")
