#!/usr/bin/env python3
# Lookup latency over HTTP (BENCHMARKS.md, "Clients as they speak it today"):
# python3 bench/lookup_latency.py PATH/TO/tidepool N. Ingests N documents with string ids (langchain's
# str(uuid4()) spelling) and a text attribute, compacts, then sends 300 langchain get_by_ids lookups
# ({"filters": ["id", "In", [2 ids]], "include_attributes": true, "limit": 2}, answered by point reads)
# and 300 of the same filter wrapped in an Or (which no access path narrows: a scan of the namespace),
# one at a time; prints p50/p99 of each. Standard library only.
import json, statistics, subprocess, sys, tempfile, time, urllib.request, uuid, random
binary, n = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
url = next(line.strip().split("listening on ")[1] for line in p.stdout if "listening on" in line)
def post(path, body):
    req = urllib.request.Request(url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())
ns = "/v2/namespaces/look"
ids = [str(uuid.UUID(int=random.Random(i).getrandbits(128))).upper() for i in range(n)]
for i in range(0, n, 5000):
    post(ns, {"upsert_rows": [{"id": x, "text": f"document {i + j}"} for j, x in enumerate(ids[i:i + 5000])]})
post("/v1/namespaces/look/_admin/compact", {})
rng = random.Random(7)
pairs = [rng.sample(ids, 2) for _ in range(300)]
def lat(bodies):
    out = []
    for b in bodies:
        t = time.perf_counter(); r = post(ns + "/query", b); out.append((time.perf_counter() - t) * 1000)
        assert len(r["rows"]) == 2, r
    out.sort(); return statistics.median(out), out[int(len(out) * 0.99) - 1]
pinned = lat([{"filters": ["id", "In", pr], "include_attributes": True, "limit": 2} for pr in pairs])
scan = lat([{"filters": ["Or", [["id", "In", pr]]], "include_attributes": True, "limit": 2} for pr in pairs])
print(f"N={n} get_by_ids (point reads): p50 {pinned[0]:.2f} ms p99 {pinned[1]:.2f} ms")
print(f"N={n} same filter as a scan:    p50 {scan[0]:.2f} ms p99 {scan[1]:.2f} ms")
p.terminate(); p.wait()
