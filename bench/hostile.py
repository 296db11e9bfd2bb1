#!/usr/bin/env python3
"""Hostile load (issue 12, "Tests and figures"), measured on this machine in one run.

A well-behaved client measures `GET /health` and a small query on its own namespace, first on an idle
daemon, then while N attacker threads send a mix of the attack classes of issue 12 for a bounded time:
gzip JSON bombs (16 MB of tiny values in ~16 KB), huge offsets, heavy-but-legal BM25 queries with many
terms and Glob scans over long attributes on an unindexed namespace, bodies trickled byte by byte,
partial HTTP/2 prefaces, and bursts of idle connections. Reports the client's p50/p99 in both phases
and their ratio, what the attacks got back (status counts), and the daemon's peak RSS.

Usage: bench/hostile.sh [--attackers 8] [--seconds 20] (builds the profiling binary, then runs this).
"""
import argparse
import gzip
import http.client
import json
import os
import random
import socket
import sys
import tempfile
import threading
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from footprint import Daemon, percentile, rss_kib  # noqa: E402

WORDS = ("alpha beta gamma delta epsilon zeta theta iota kappa lambda omicron sigma tau upsilon "
         "phi chi psi omega network library daemon parser compiler kernel driver utility").split()


def setup(d, heavy_docs):
    st, body = d.request("POST", "/v2/namespaces/victim", {"upsert_rows": [
        {"id": i, "name": f"pkg{i}", "section": "utils"} for i in range(2000)]})
    assert st == 200, body
    rnd = random.Random(7)
    for start in range(0, heavy_docs, 1000):
        rows = [{"id": i, "text": " ".join(rnd.choice(WORDS) + str(rnd.randrange(5000)) for _ in range(300)),
                 "tag": "".join(rnd.choice("abcdefgh") for _ in range(2000))}
                for i in range(start, start + 1000)]
        st, body = d.request("POST", "/v2/namespaces/heavy", {
            "upsert_rows": rows, "disable_backpressure": True,
            "schema": {"text": {"type": "string", "full_text_search": True}}})
        assert st == 200, body


def measure(d, stop, out):
    conn = http.client.HTTPConnection(d.host, d.port, timeout=120)
    q = {"filters": ["id", "Eq", 17], "rank_by": ["id", "asc"], "top_k": 10}
    while not stop.is_set():
        for kind, method, path, body in (("health", "GET", "/health", None),
                                         ("query", "POST", "/v2/namespaces/victim/query", q)):
            t = time.perf_counter()
            try:
                st, _ = d.request(method, path, body, conn=conn)
            except OSError:
                conn = http.client.HTTPConnection(d.host, d.port, timeout=120)
                st = "error"
            out[kind].append((time.perf_counter() - t) * 1000)
            out[f"{kind}_status"][st] += 1
        time.sleep(0.02)


def raw_post(d, path, payload, headers, timeout=60):
    c = http.client.HTTPConnection(d.host, d.port, timeout=timeout)
    try:
        c.request("POST", path, body=payload, headers={"Content-Type": "application/json", **headers})
        r = c.getresponse()
        r.read()
        return r.status
    except OSError as e:
        return type(e).__name__
    finally:
        c.close()


BOMB = gzip.compress(b'{"upsert_rows":[' + b"0," * (8 << 20) + b"0]}", 1)
QUERY_BOMB = gzip.compress(b'{"rank_by":["id","asc"],"filters":["id","In",[' + b"0," * (8 << 20) + b"0]]}", 1)


def attack_bomb(d, rnd):
    return raw_post(d, "/v2/namespaces/heavy", rnd.choice([BOMB]), {"Content-Encoding": "gzip"})


def attack_query_bomb(d, rnd):
    return raw_post(d, "/v2/namespaces/heavy/query", QUERY_BOMB, {"Content-Encoding": "gzip"})


def attack_offset(d, rnd):
    q = {"rank_by": ["text", "BM25", "alpha"], "top_k": 10, "offset": 1 << rnd.randrange(20, 63)}
    return raw_post(d, "/v2/namespaces/heavy/query", json.dumps(q).encode(), {})


def attack_bm25_terms(d, rnd):
    terms = " ".join(f"{rnd.choice(WORDS)}{rnd.randrange(5000)}" for _ in range(1000))
    q = {"rank_by": ["text", "BM25", terms], "top_k": 10}
    return raw_post(d, "/v2/namespaces/heavy/query", json.dumps(q).encode(), {})


def attack_glob(d, rnd):
    pattern = "*" + "*".join(rnd.choice("abcdefgh") for _ in range(60)) + "*z"
    q = {"filters": ["tag", "Glob", pattern], "rank_by": ["id", "asc"], "top_k": 10}
    return raw_post(d, "/v2/namespaces/heavy/query", json.dumps(q).encode(), {})


def attack_trickle(d, rnd):
    s = socket.create_connection((d.host, d.port), timeout=30)
    try:
        s.sendall(b"POST /v2/namespaces/heavy HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(8):
            s.sendall(b" ")
            time.sleep(0.5)
        return "trickled"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


def attack_h2_preface(d, rnd):
    s = socket.create_connection((d.host, d.port), timeout=30)
    try:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM")
        s.settimeout(40)  # the default header-read timeout is 30 s
        got = s.recv(1)
        return "closed" if not got else "answered"
    except OSError as e:
        return type(e).__name__
    finally:
        s.close()


def attack_connections(d, rnd):
    socks = []
    try:
        for _ in range(50):
            socks.append(socket.create_connection((d.host, d.port), timeout=10))
        time.sleep(2)
        return "held 50"
    except OSError as e:
        return type(e).__name__
    finally:
        for s in socks:
            s.close()


ATTACKS = [attack_bomb, attack_query_bomb, attack_offset, attack_bm25_terms, attack_glob, attack_trickle,
           attack_h2_preface, attack_connections]


def attacker(d, seed, stop, results):
    rnd = random.Random(seed)
    while not stop.is_set():
        a = rnd.choice(ATTACKS)
        results[a.__name__][str(a(d, rnd))] += 1


def phase(d, seconds, attackers):
    out = {"health": [], "query": [], "health_status": Counter(), "query_status": Counter()}
    results = {a.__name__: Counter() for a in ATTACKS}
    stop = threading.Event()
    peak = [0]

    def watch_rss():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(d.proc.pid))
            time.sleep(0.05)

    threads = [threading.Thread(target=measure, args=(d, stop, out)), threading.Thread(target=watch_rss)]
    threads += [threading.Thread(target=attacker, args=(d, i, stop, results)) for i in range(attackers)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    summary = {k: {"n": len(out[k]), "p50_ms": round(percentile(out[k], 50), 2),
                   "p99_ms": round(percentile(out[k], 99), 2), "max_ms": round(max(out[k]), 1),
                   "status": dict(out[f"{k}_status"])} for k in ("health", "query")}
    summary["peak_rss_mib"] = round(peak[0] / 1024, 1)
    if attackers:
        summary["attacks"] = {k: dict(v) for k, v in results.items()}
    return summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--attackers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--heavy-docs", type=int, default=20000)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tidepool-hostile-")
    d = Daemon(args.binary, os.path.join(tmp, "data"), extra=["--compaction-idle-ms", "0"])
    try:
        setup(d, args.heavy_docs)
        idle = phase(d, args.seconds, 0)
        hostile = phase(d, args.seconds, args.attackers)
        alive = d.request("GET", "/health")[0]
        res = {"attackers": args.attackers, "seconds": args.seconds, "heavy_docs": args.heavy_docs,
               "idle": idle, "hostile": hostile, "alive_after": alive,
               "p99_ratio_health": round(hostile["health"]["p99_ms"] / max(idle["health"]["p99_ms"], 0.01), 2),
               "p99_ratio_query": round(hostile["query"]["p99_ms"] / max(idle["query"]["p99_ms"], 0.01), 2),
               "vmhwm_mib": round(int(open(f"/proc/{d.proc.pid}/status").read().split("VmHWM:")[1].split()[0]) / 1024, 1)}
        print(json.dumps(res, indent=1))
    finally:
        d.stop()


if __name__ == "__main__":
    main()
