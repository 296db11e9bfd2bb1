"""How much a write grows the daemon's anonymous memory while it is written (BENCHMARKS.md, "Memory budget"):
python3 bench/write_growth.py PATH/TO/tidepool WRITERS ROWS ROUNDS [serve flags...]

Starts `tidepool serve` on a fresh data dir, then runs ROUNDS rounds of WRITERS concurrent writes of ROWS
384-d base64 rows each (the Debian vectors, ../shared/data/debian, rotated per pass), sampling RssAnon every
2 ms; prints per round the growth at its peak and what stayed, against the body length. This is the figure
`BODY_COST_FACTOR` (src/engine/budget.rs) is set from. Standard library only.
With TIDEPOOL_GROWTH_TEXT=CORPUS.tsv (bench/bm25_corpus.py's), the rows are that corpus's title and body instead,
full-text searched as bench/bm25_writers.rs declares them (the write analyses them before it queues).
"""
import base64, http.client, json, os, subprocess, sys, tempfile, threading, time
binary, writers, batch, requests = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
extra = sys.argv[5:]
raw = open(os.environ.get("TIDEPOOL_BENCH_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "debian")) + "/vectors.f32", "rb").read()
base = [raw[i * 1536:(i + 1) * 1536] for i in range(len(raw) // 1536)]
def vector(r):
    v, shift = base[r % len(base)], 4 * ((r // len(base)) % 384)
    return base64.b64encode(v[shift:] + v[:shift]).decode()
def anon(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) * 1024
d = tempfile.mkdtemp()
p = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"] + extra,
                     stdout=subprocess.PIPE, stderr=open(f"{d}.log", "w"), text=True)
url = next(l.strip().split("listening on ")[1] for l in p.stdout if "listening on" in l)
host = url[len("http://"):]
bodies = []
text = os.environ.get("TIDEPOOL_GROWTH_TEXT")
lines = open(text).read().split("\n")[: writers * 2 * batch] if text else []
fts = {"tokenizer": "word_v3", "stemming": True, "remove_stopwords": False}
schema = {a: {"type": "string", "full_text_search": fts} for a in ("title", "body")}
for i in range(writers * 2):
    if text:
        rows = [l.split("\t", 1) + [""] for l in lines[i * batch:(i + 1) * batch]]
        b = [{"id": i * batch + r, "title": t[0], "body": t[1]} for r, t in enumerate(rows)]
        bodies.append(json.dumps({"upsert_rows": b, "schema": schema}).encode())
        continue
    b = [{"id": i * batch + r, "vector": vector(i * batch + r), "n": r} for r in range(batch)]
    bodies.append(json.dumps({"upsert_rows": b, "distance_metric": "cosine_distance"}).encode())
blen = len(bodies[0])
peak, done = [0], threading.Event()
def sampler():
    while not done.is_set():
        peak[0] = max(peak[0], anon(p.pid)); time.sleep(0.002)
time.sleep(1)
base_anon = anon(p.pid)
threading.Thread(target=sampler, daemon=True).start()
rounds = []
def writer(k, n):
    c = http.client.HTTPConnection(host, timeout=300)
    for j in range(n):
        c.request("POST", "/v2/namespaces/g", bodies[(k * 2 + j) % len(bodies)], {"Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        assert r.status == 200, r.status
for rnd in range(requests):
    before = anon(p.pid); peak[0] = before
    ts = [threading.Thread(target=writer, args=(k, 1)) for k in range(writers)]
    [t.start() for t in ts]; [t.join() for t in ts]
    time.sleep(0.05)
    after = anon(p.pid)
    rounds.append({"before_mb": before / 1e6, "peak_growth_mb": (peak[0] - before) / 1e6, "kept_mb": (after - before) / 1e6})
done.set(); p.terminate(); p.wait()
print(json.dumps({"body_mb": blen / 1e6, "writers": writers, "base_anon_mb": base_anon / 1e6,
                  "rounds": rounds}, indent=1))
