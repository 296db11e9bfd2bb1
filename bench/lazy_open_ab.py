#!/usr/bin/env python3
"""A/B of the first query after a restart (BENCHMARKS.md, "Opening a segment chunk by chunk"): alternate two tidepool binaries on one kept data dir,
each started in a memory cgroup (v1) capped at CAP MiB; per start: seconds to /ready, the first
query's latency, the next N queries' p50, then WARM passes of the same queries (p50/p99).
Usage: ab_open.py DATA_DIR ROUNDS N WARM CAP [--drop-caches] name=binary ...
"""
import http.client, json, os, signal, struct, subprocess, sys, time

data_dir, rounds, n, warm, cap = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rest = sys.argv[6:]
drop = "--drop-caches" in rest
bins = [a.split("=", 1) for a in rest if "=" in a]
QV = "/work/shared/data/debian/queries/query_vectors.f32"
raw = open(QV, "rb").read()
dim = 384
qs = [list(struct.unpack_from(f"<{dim}f", raw, i * dim * 4)) for i in range(min(len(raw) // (dim * 4), 200))]
CG = "/sys/fs/cgroup/memory/lazyopen-ab"


def cgroup():
    os.makedirs(CG, exist_ok=True)
    lim = str(cap << 20)
    # v1 keeps limit <= memsw limit: raising needs memsw first, lowering the limit first.
    for name in ("memory.memsw.limit_in_bytes", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
        try:
            open(f"{CG}/{name}", "w").write(lim)
        except OSError:
            pass
    assert open(f"{CG}/memory.limit_in_bytes").read().strip() == lim, "could not set the cgroup's limit"


def start(binary):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEPOOL_")}
    env["TIDEPOOL_LOG"] = "warn"
    t0 = time.time()
    p = subprocess.Popen(["sh", "-c", f'echo $$ > {CG}/cgroup.procs && exec "$0" "$@"', binary, "serve",
                          "--data-dir", data_dir, "--listen", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    for line in p.stdout:
        if line.startswith("listening on "):
            addr = line.split("listening on ", 1)[1].strip().replace("http://", "")
            break
    host, port = addr.rsplit(":", 1)
    while True:
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=600)
            c.request("GET", "/ready")
            r = c.getresponse(); r.read()
            if r.status == 200:
                break
        except OSError:
            pass
        time.sleep(0.005)
    return p, c, time.time() - t0


def query(c, q):
    body = json.dumps({"rank_by": ["vector", "ANN", q], "top_k": 10})
    t = time.perf_counter()
    c.request("POST", "/v2/namespaces/scale/query", body, {"Content-Type": "application/json"})
    r = c.getresponse(); out = r.read()
    dt = (time.perf_counter() - t) * 1000
    assert r.status == 200, out[:300]
    return dt


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


cgroup()
for rnd in range(rounds):
    for name, binary in bins:
        if drop:
            subprocess.run(["sync"]); open("/proc/sys/vm/drop_caches", "w").write("3")
        p, c, ready = start(binary)
        t = time.perf_counter()
        first = query(c, qs[0])
        nxt = [query(c, q) for q in qs[1:1 + n]]
        passes = []
        for _ in range(warm):
            lat = [query(c, q) for q in qs]
            passes.append((round(pct(lat, 0.5), 2), round(pct(lat, 0.99), 2)))
        rss = [l for l in open(f"/proc/{p.pid}/status") if l.startswith("VmRSS")][0].split()[1]
        peak = open(f"{CG}/memory.max_usage_in_bytes").read().strip()
        print(json.dumps({"round": rnd, "bin": name, "ready_s": round(ready, 2), "first_ms": round(first, 1),
                          f"next{n}_p50_ms": round(pct(nxt, 0.5), 2), "warm_p50_p99": passes,
                          "rss_kib": int(rss), "cg_peak_mib": int(peak) >> 20,
                          "load": os.getloadavg()[0]}), flush=True)
        p.send_signal(signal.SIGTERM); p.wait(60)
        open(f"{CG}/memory.max_usage_in_bytes", "w").write("0")
