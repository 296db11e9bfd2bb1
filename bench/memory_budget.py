#!/usr/bin/env python3
"""Ingest into a daemon held in a memory cgroup until (and past) its memory budget (BENCHMARKS.md,
"Memory budget (issue 36 item 2)"): python3 bench/memory_budget.py PATH/TO/tidepool [--rows N]
[--limit-mib M] [--budget-bytes B] [--settle-secs S]

Run as root (it creates a cgroup: v2 `memory.max` where the memory controller is on the unified
hierarchy, else v1 `memory.limit_in_bytes`, swap capped too), starts `tidepool serve` inside it, and
writes N (default 400,000) 384-d rows in 1,000-row requests from 2 writers; the vectors are the Debian
set's (../shared/data/debian, 36,000) rotated by one dimension per pass, so every row is distinct. A
writer answered 429 waits `retry-after-ms` and sends the same request again. Every 100 ms it samples
the daemon's VmRSS and RssAnon and the cgroup's usage; at the end it counts the namespace, waits up to S s (600) for the
index to be up to date, and reads the cgroup's OOM kills. `--budget-bytes` sets memory_budget_bytes (default: derived from the cgroup;
a huge value turns backpressure off, to see what the cap does without it). Prints one JSON object.
The cgroup is removed and the daemon stopped on exit. Standard library only.
"""
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

args = sys.argv[1:]


def opt(name, default):
    return type(default)(args[args.index(name) + 1]) if name in args else default


binary = args[0]
rows, limit_mib, budget = opt("--rows", 400_000), opt("--limit-mib", 512), opt("--budget-bytes", 0)
settle_secs = opt("--settle-secs", 600)
data = os.environ.get("TIDEPOOL_BENCH_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                          "..", "..", "shared", "data", "debian"))
raw = open(f"{data}/vectors.f32", "rb").read()
base = [raw[i * 1536:(i + 1) * 1536] for i in range(len(raw) // 1536)]


def vector(r):
    v, shift = base[r % len(base)], 4 * ((r // len(base)) % 384)
    return base64.b64encode(v[shift:] + v[:shift]).decode()


def make_cgroup():
    limit = limit_mib << 20
    v2 = "/sys/fs/cgroup/cgroup.controllers"
    if os.path.exists(v2) and "memory" in open(v2).read().split():
        cg = "/sys/fs/cgroup/tidepool-bench"
        os.makedirs(cg, exist_ok=True)
        open(f"{cg}/memory.max", "w").write(str(limit))
        open(f"{cg}/memory.swap.max", "w").write("0")
        return cg, "v2"
    cg = "/sys/fs/cgroup/memory/tidepool-bench"
    os.makedirs(cg, exist_ok=True)
    open(f"{cg}/memory.limit_in_bytes", "w").write(str(limit))
    if os.path.exists(f"{cg}/memory.memsw.limit_in_bytes"):
        open(f"{cg}/memory.memsw.limit_in_bytes", "w").write(str(limit))
    return cg, "v1"


def cgroup_usage(cg, kind):
    f = "memory.current" if kind == "v2" else "memory.usage_in_bytes"
    return int(open(f"{cg}/{f}").read())


def oom_kills(cg, kind):
    f = "memory.events" if kind == "v2" else "memory.oom_control"
    for line in open(f"{cg}/{f}"):
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


cg, kind = make_cgroup()
d = tempfile.mkdtemp()
cmd = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$0" "$@"', binary, "serve", "--data-dir", d,
       "--listen", "127.0.0.1:0"]
if budget:
    cmd += ["--memory-budget-bytes", str(budget)]
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=open(f"{d}.log", "w"), text=True)
url = next(line.strip().split("listening on ")[1] for line in p.stdout if "listening on" in line)
host = url[len("http://"):]
peak = {"VmRSS": 0, "RssAnon": 0, "cgroup": 0}
acked, refused, failed, done = [0], [0], [], threading.Event()
lock = threading.Lock()


def sampler():
    while not done.is_set():
        s = status(p.pid)
        with lock:
            for k in ("VmRSS", "RssAnon"):
                peak[k] = max(peak[k], s.get(k, 0))
            peak["cgroup"] = max(peak["cgroup"], cgroup_usage(cg, kind))
        time.sleep(0.1)


def body(start):
    batch = [{"id": r, "vector": vector(r), "n": r} for r in range(start, min(start + 1000, rows))]
    return json.dumps({"upsert_rows": batch, "distance_metric": "cosine_distance"}), len(batch)


def writer(k):
    c = http.client.HTTPConnection(host, timeout=120)
    for start in range(k * 1000, rows, 2000):
        b, n = body(start)
        while True:
            try:
                c.request("POST", "/v2/namespaces/mem", b, {"Content-Type": "application/json"})
                r = c.getresponse()
                text = r.read()
            except (OSError, http.client.HTTPException) as e:
                failed.append(repr(e))
                return
            if r.status == 200:
                with lock:
                    acked[0] += n
                break
            if r.status != 429:
                failed.append(f"{r.status} {text[:200]!r}")
                return
            with lock:
                refused[0] += 1
            time.sleep(int(r.getheader("retry-after-ms", "1000")) / 1000)


threading.Thread(target=sampler, daemon=True).start()
t = time.time()
threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
for th in threads:
    th.start()
for th in threads:
    th.join()
elapsed = time.time() - t
alive = p.poll() is None
result = {"cgroup": kind, "limit_bytes": limit_mib << 20, "rows": rows, "acked_rows": acked[0],
          "refused_429": refused[0], "write_failures": failed[:3], "seconds": round(elapsed, 1),
          "rows_per_s": round(acked[0] / elapsed)}
if alive:
    c = http.client.HTTPConnection(host, timeout=300)
    c.request("GET", "/metrics")
    m = c.getresponse().read().decode()
    val = lambda name: next((float(l.split()[-1]) for l in m.splitlines() if l.startswith(name + " ")), None)
    result["budget_bytes"] = val("tidepool_memory_budget_bytes")
    c.request("POST", "/v2/namespaces/mem/query", json.dumps({"aggregate_by": {"n": ["Count"]}}),
              {"Content-Type": "application/json"})
    result["count_after"] = json.loads(c.getresponse().read())["aggregations"]["n"]
    # Let the backlog's compaction finish inside the cap too.
    settle = time.time()
    while time.time() - settle < settle_secs and p.poll() is None:
        c.request("GET", "/v1/namespaces/mem/metadata")
        meta = json.loads(c.getresponse().read())
        result["index_status"] = meta.get("index", {}).get("status")
        if result["index_status"] == "up-to-date":
            break
        time.sleep(2)
    result["indexed_after_s"] = round(time.time() - settle, 1)
done.set()
time.sleep(0.2)
result.update(alive_at_end=p.poll() is None, exit_status=p.poll(), oom_kills=oom_kills(cg, kind),
              peak_vmrss=peak["VmRSS"], peak_rss_anon=peak["RssAnon"], peak_cgroup_usage=peak["cgroup"],
              vmhwm=status(p.pid).get("VmHWM"))
if p.poll() is None:
    p.terminate()
    p.wait(30)
time.sleep(0.5)
os.rmdir(cg)
shutil.rmtree(d, ignore_errors=True)
print(json.dumps(result))
