#!/usr/bin/env python3
# BM25 at scale over HTTP (issue 39; BENCHMARKS.md "BM25 at a million documents"): the query classes of
# bench/bm25_scale.rs sent to the daemon over loopback, beside the HTTP floor measured in the same run.
#
#   python3 bench/bm25_http.py DIR BINARY [--rounds 3] [--class NAME]
#
# DIR is a bm25_scale directory (DIR/tp holds the data its run wrote, namespace default/default/docs;
# DIR/queries.jsonl the queries). BINARY is the tidepool daemon (`serve --data-dir DIR/tp`, no keys: every
# request is default/default). bm25_scale --http BINARY runs this after its own rounds (its engine closed).
#
# One kept-alive loopback connection (http.client); a query's time is its best over the rounds (as
# bm25_scale times ours and tantivy's); p50 and p99 per class. The floor: a request that does next to
# nothing past HTTP, JSON and the read path (a point read of one id, `limit` 1, no attributes), sent as many
# times, interleaved round by round with the classes. Standard library only.
import http.client, json, os, subprocess, sys, time

args = sys.argv[1:]
rounds = 3
if "--rounds" in args:
    i = args.index("--rounds")
    rounds = int(args[i + 1])
    del args[i:i + 2]
only = None
if "--class" in args:  # only that class's queries (and as many floor requests)
    i = args.index("--class")
    only = args[i + 1]
    del args[i:i + 2]
dirn, binary = args
queries = [json.loads(l) for l in open(os.path.join(dirn, "queries.jsonl"))]
queries = [q for q in queries if only is None or q["class"] == only]
p = subprocess.Popen([binary, "serve", "--data-dir", os.path.join(dirn, "tp"), "--listen", "127.0.0.1:0"],
                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
try:
    url = next(line.strip().split("listening on ")[1] for line in p.stdout if "listening on" in line)
    host, port = url.split("://")[1].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))

    def post(path, body):
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:300])
        return json.loads(data)

    path = "/v2/namespaces/docs/query"
    bm25 = [{"rank_by": ["Sum", [["title", "BM25", q["text"]], ["body", "BM25", q["text"]]]], "top_k": 10}
            for q in queries]
    floor = [{"filters": ["id", "In", [i * 7919 % 1000]], "limit": 1} for i in range(len(queries))]
    for b in bm25[:50] + floor[:50]:  # warm: the segments opened and mapped, the connection up
        post(path, b)
    best = {"q": [float("inf")] * len(bm25), "f": [float("inf")] * len(floor)}
    for _ in range(rounds):
        for kind, bodies in (("q", bm25), ("f", floor)):
            for i, b in enumerate(bodies):
                t = time.perf_counter()
                post(path, b)
                best[kind][i] = min(best[kind][i], (time.perf_counter() - t) * 1000)

    def pct(v, p):
        v = sorted(v)
        return v[round((len(v) - 1) * p)]

    f50 = pct(best["f"], 0.5)
    print(f"HTTP floor (point read of one id, limit 1): p50 {f50:.3f} ms, p99 {pct(best['f'], 0.99):.3f} ms")
    print("| class | queries | HTTP p50 ms | HTTP p99 | floor p50 | p50 − floor |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for c in ["rare", "title", "common", "long", "absent"]:
        v = [best["q"][i] for i, q in enumerate(queries) if q["class"] == c]
        if v:
            print(f"| {c} | {len(v)} | {pct(v, 0.5):.3f} | {pct(v, 0.99):.3f} | {f50:.3f} | {pct(v, 0.5) - f50:.3f} |")
finally:
    p.terminate()
    p.wait()
