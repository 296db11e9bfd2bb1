#!/usr/bin/env python3
"""Footprint of the shipped daemon (issue 14, item 5), measured on this machine in one run.

Reports: the stripped release binary's size (and the profiling build's, for contrast); time from spawn
to /ready and idle RSS on an empty data dir; idle RSS with 1,000 small namespaces loaded; time to ready
and RSS after a restart with those 1,000 namespaces; and, on the Debian corpus (36,000 docs, 384-d
vectors, title/body text), the p99 latency of small probe queries (ANN top 10 on a compacted
namespace) while a 36,000-document compaction runs, against the same client's idle p99, with the peak
RSS meanwhile.

Usage: bench/footprint.sh (builds target/release/tidepool, then runs this with --binary).
"""
import argparse
import http.client
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "debian")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Daemon:
    def __init__(self, binary, data_dir, extra=()):
        t0 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEPOOL_")}
        env["TIDEPOOL_LOG"] = "warn"
        self.proc = subprocess.Popen(
            [binary, "serve", "--data-dir", data_dir, "--listen", "127.0.0.1:0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on http://"), line
        self.host, port = line.strip().removeprefix("listening on http://").rsplit(":", 1)
        self.port = int(port)
        while self.request("GET", "/ready")[0] != 200:
            time.sleep(0.005)
        self.ready_s = time.monotonic() - t0
        self.conn = None

    def request(self, method, path, body=None, conn=None):
        c = conn or http.client.HTTPConnection(self.host, self.port, timeout=600)
        data = json.dumps(body).encode() if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        payload = r.read()
        if conn is None:
            c.close()
        return r.status, payload

    def rss(self):
        return rss_kib(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def load_corpus(limit):
    docs = []
    with open(os.path.join(DATA, "docs.jsonl")) as f:
        for i, line in enumerate(f):
            if i >= limit:
                break
            docs.append(json.loads(line))
    dim = 384
    with open(os.path.join(DATA, "vectors.f32"), "rb") as f:
        raw = f.read(len(docs) * dim * 4)
    for i, d in enumerate(docs):
        d["vector"] = list(struct.unpack_from(f"<{dim}f", raw, i * dim * 4))
    return docs


def write_docs(d, ns, docs, batch=1000):
    for i in range(0, len(docs), batch):
        # Row numbers as ids: a few package names exceed the 64-byte id limit.
        rows = [{"id": i + j, "name": x["id"], "vector": x["vector"], "title": x["title"], "body": x["body"],
                 "section": x["section"]} for j, x in enumerate(docs[i:i + batch])]
        st, body = d.request("POST", f"/v2/namespaces/{ns}", {
            "upsert_rows": rows, "distance_metric": "cosine_distance",
            "schema": {"title": {"type": "string", "full_text_search": True},
                       "body": {"type": "string", "full_text_search": True}}})
        assert st == 200, body


def probe_latencies(d, vectors, stop=None, count=None):
    conn = http.client.HTTPConnection(d.host, d.port, timeout=60)
    out = []
    i = 0
    while (count is None or len(out) < count) and not (stop and stop.is_set()):
        q = {"rank_by": ["vector", "ANN", vectors[i % len(vectors)]], "top_k": 10}
        t = time.perf_counter()
        st, body = d.request("POST", "/v2/namespaces/probe/query", q, conn=conn)
        out.append((time.perf_counter() - t) * 1000)
        assert st == 200, body
        i += 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--profiling-binary")
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--docs", type=int, default=36000)
    args = ap.parse_args()
    res = {"binary_bytes": os.path.getsize(args.binary), "namespaces": args.namespaces, "docs": args.docs}
    if args.profiling_binary and os.path.exists(args.profiling_binary):
        res["profiling_binary_bytes"] = os.path.getsize(args.profiling_binary)
    tmp = tempfile.mkdtemp(prefix="tidepool-footprint-")
    try:
        data = os.path.join(tmp, "data")
        d = Daemon(args.binary, data)
        res["ready_s_empty"] = round(d.ready_s, 3)
        time.sleep(1)
        res["idle_rss_mib_empty"] = round(d.rss() / 1024, 1)
        for n in range(args.namespaces):
            st, body = d.request("POST", f"/v2/namespaces/ns{n:04}", {"upsert_rows": [
                {"id": i, "title": f"package {n} {i}", "section": "utils"} for i in range(5)]})
            assert st == 200, body
        time.sleep(2)
        res["idle_rss_mib_n_ns"] = round(d.rss() / 1024, 1)
        d.stop()
        d = Daemon(args.binary, data)
        res["ready_s_n_ns"] = round(d.ready_s, 3)
        time.sleep(1)
        res["idle_rss_mib_n_ns_after_restart"] = round(d.rss() / 1024, 1)
        d.stop()

        # Compaction under query load: no automatic compaction, one big one on demand.
        data = os.path.join(tmp, "data2")
        d = Daemon(args.binary, data, ["--compaction-wal-objects", "1000000",
                                       "--compaction-wal-bytes", str(1 << 40), "--backlog-bytes", str(1 << 40)])
        docs = load_corpus(args.docs)
        write_docs(d, "probe", docs[:min(5000, len(docs))])
        st, body = d.request("POST", "/v1/namespaces/probe/_admin/compact")
        assert st == 200, body
        write_docs(d, "debian", docs)
        rng = random.Random(7)
        vectors = [docs[rng.randrange(len(docs))]["vector"] for _ in range(200)]
        probe_latencies(d, vectors, count=100)  # warm
        idle = probe_latencies(d, vectors, count=600)
        res["probe_p50_ms_idle"] = round(percentile(idle, 50), 3)
        res["probe_p99_ms_idle"] = round(percentile(idle, 99), 3)
        res["rss_mib_before_compaction"] = round(d.rss() / 1024, 1)
        stop = threading.Event()
        peak = [0]
        busy = []

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], d.rss())
                time.sleep(0.02)

        def probe():
            busy.extend(probe_latencies(d, vectors, stop=stop))

        threads = [threading.Thread(target=sample), threading.Thread(target=probe)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        st, body = d.request("POST", "/v1/namespaces/debian/_admin/compact")
        res["compaction_s"] = round(time.monotonic() - t0, 2)
        stop.set()
        for t in threads:
            t.join()
        assert st == 200, body
        res["probe_queries_during_compaction"] = len(busy)
        res["probe_p50_ms_compacting"] = round(percentile(busy, 50), 3)
        res["probe_p99_ms_compacting"] = round(percentile(busy, 99), 3)
        res["p99_ratio_compacting_to_idle"] = round(percentile(busy, 99) / percentile(idle, 99), 2)
        res["peak_rss_mib_compacting"] = round(peak[0] / 1024, 1)
        d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["cores"] = os.cpu_count()
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    sys.exit(main())
