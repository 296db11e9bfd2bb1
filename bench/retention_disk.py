#!/usr/bin/env python3
"""What the time-travel retention costs on disk after a bulk ingest (BENCHMARKS.md, "Retention within a byte
budget"): python3 bench/retention_disk.py PATH/TO/tidepool [N] [--rounds R]

For each setting of `--retention-max-ratio` (the default 0.25, then `inf` = the retention hour alone), in
alternation, R rounds: start a daemon on a fresh data dir (retention 1 hour, GC interval 10 minutes, the
defaults), write the first N (default 36,000) Debian docs (../shared/data/debian) with their 384-d vectors in
1,000-row requests over 2 kept-alive connections, wait until the namespace's index is `up-to-date`, then watch
the data dir for 20 s. Prints, per setting, the raw f32 vector bytes, the data dir and its WAL objects at the
end, each as a ratio of the raw vector bytes. Standard library only.
"""
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
binary, n = args[0], int(args[1]) if len(args) > 1 else 36000
rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 1
data = os.environ.get("TIDEPOOL_BENCH_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "debian"))
docs = [json.loads(line) for _, line in zip(range(n), open(f"{data}/docs.jsonl"))]
raw = open(f"{data}/vectors.f32", "rb").read(n * 1536)
vecs = [list(struct.unpack_from("384f", raw, i * 1536)) for i in range(n)]
bodies = []
for i in range(0, n, 1000):
    rows = [dict(id=i + j, vector=vecs[i + j], title=x["title"], body=x["body"], section=x["section"])
            for j, x in enumerate(docs[i:i + 1000])]
    bodies.append(json.dumps({"upsert_rows": rows, "distance_metric": "cosine_distance"}))
raw_bytes = n * 384 * 4


def du(path, only_wal=False):
    total = 0
    for root, _, files in os.walk(path):
        if only_wal and "/wal" not in root:
            continue
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


def one_run(ratio):
    d = tempfile.mkdtemp()
    p = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0", "--retention-max-ratio", ratio],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    url = next(line.strip().split("listening on ")[1] for line in p.stdout if "listening on" in line)
    host = url[len("http://"):]

    def writer(k):
        c = http.client.HTTPConnection(host)
        for b in bodies[k::2]:
            c.request("POST", "/v2/namespaces/deb", b, {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            assert r.status == 200, r.status

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    peak = 0
    while any(th.is_alive() for th in threads):
        peak = max(peak, du(d))
        time.sleep(0.5)
    c = http.client.HTTPConnection(host)
    for _ in range(1200):
        c.request("GET", "/v1/namespaces/deb/metadata")
        meta = json.loads(c.getresponse().read())
        if meta.get("index", {}).get("status") == "up-to-date":
            break
        peak = max(peak, du(d))
        time.sleep(0.5)
    end = time.time() + 20
    while time.time() < end:
        peak = max(peak, du(d))
        time.sleep(0.5)
    final, wal = du(d), du(d, only_wal=True)
    p.terminate()
    p.wait()
    shutil.rmtree(d, True)
    return peak, final, wal


results = {"0.25": [], "inf": []}
for _ in range(rounds):
    for ratio in results:
        results[ratio].append(one_run(ratio))
print(f"{n} docs, raw vectors {raw_bytes / 2**20:.1f} MiB")
for ratio, runs in results.items():
    for peak, final, wal in runs:
        print(f"--retention-max-ratio {ratio:>4}: data dir peak {peak / 2**20:7.1f} MiB ({peak / raw_bytes:.2f}x raw), "
              f"20 s after up-to-date {final / 2**20:7.1f} MiB ({final / raw_bytes:.2f}x), "
              f"of which WAL {wal / 2**20:6.1f} MiB ({wal / raw_bytes:.2f}x)")
