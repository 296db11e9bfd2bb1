#!/usr/bin/env python3
"""What the console costs over the API it calls (BENCHMARKS.md, "The console").

    target/console-venv/bin/python bench/console_load.py target/release/tidepool [NAMESPACES]

(tests/console/run.sh creates target/console-venv; chromium from Debian.) Starts the daemon on a fresh
data dir with the 36,000 Debian docs (vectors, title/body BM25) in `debian`, compacted, plus NAMESPACES
small namespaces (default 300). Then, 5 times each, in headless chromium: the namespace list until every
row is drawn, the `debian` page until its recall is shown (both from the start of the page load, by the page's own
clock), and one ANN query from the playground from the click until its table is drawn; beside each, the floor: the same API calls from Python on a kept-alive connection. Prints medians and console/floor ratios.
"""
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import atexit
import http.client
import threading

from playwright.sync_api import sync_playwright

binary = sys.argv[1]
n_small = int(sys.argv[2]) if len(sys.argv) > 2 else 300
data = os.environ.get("TIDEPOOL_BENCH_DATA",
                      os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "debian"))
docs = [json.loads(line) for line in open(f"{data}/docs.jsonl")]
raw = open(f"{data}/vectors.f32", "rb").read()
vecs = [list(struct.unpack_from("384f", raw, i * 1536)) for i in range(len(docs))]
qv = list(struct.unpack_from("384f", open(f"{data}/queries/query_vectors.f32", "rb").read(), 0))

d = tempfile.mkdtemp()
proc = subprocess.Popen([binary, "serve", "--data-dir", d, "--listen", "127.0.0.1:0"],
                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
atexit.register(shutil.rmtree, d, True)
atexit.register(proc.wait)
atexit.register(proc.terminate)  # also when a step fails; then the data dir goes
url = next(line.strip().split("listening on ")[1] for line in proc.stdout if "listening on" in line)


conns = threading.local()


def call(method, path, body=None):
    """One request on this thread's kept-alive connection (as a browser keeps them)."""
    if not hasattr(conns, "c"):
        conns.c = http.client.HTTPConnection(url.removeprefix("http://"))
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conns.c.request(method, path, None if body is None else json.dumps(body), headers)
    r = conns.c.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit(f"{method} {path}: {r.status} {data.decode()[:300]}")
    return json.loads(data)


schema = {"title": {"type": "string", "full_text_search": True}, "body": {"type": "string", "full_text_search": True}}
for i in range(0, len(docs), 2000):
    rows = [dict(id=i + j, package=x["id"], vector=vecs[i + j], title=x["title"], body=x["body"], section=x["section"])
            for j, x in enumerate(docs[i:i + 2000])]
    call("POST", "/v2/namespaces/debian", {"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema})
call("POST", "/v1/namespaces/debian/_admin/compact", {})
for k in range(n_small):
    call("POST", f"/v2/namespaces/small-{k:04}", {"upsert_rows": [{"id": 1, "a": k}]})
names = [n["id"] for n in call("GET", "/v1/namespaces?page_size=1000")["namespaces"]]


def timed(fn, runs=5):
    """Median ms of `fn` (its return value when it measures itself, else wall time)."""
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        ms = fn()
        out.append(ms if ms is not None else (time.perf_counter() - t) * 1000)
    return statistics.median(out)


def floor_list():
    call("GET", "/v1/whoami")
    call("GET", "/v1/namespaces?page_size=1000&include_metadata=true")


def floor_page():
    call("GET", "/v1/whoami")
    call("GET", "/v1/namespaces/debian/metadata")
    call("POST", "/v1/namespaces/debian/_debug/recall", {"num": 10, "top_k": 10})


ann = {"rank_by": ["vector", "ANN", qv], "top_k": 10, "include_attributes": True}
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"), args=["--no-sandbox"])
    page = browser.new_page()
    page.set_default_timeout(120_000)

    # The page's own clock: from the start of the page load to the view drawn with its data
    # (body[data-rendered], set by console.js), so no polling interval of the driver is counted.
    def console_list():
        page.goto("about:blank")
        page.goto(f"{url}/console#/")
        page.wait_for_selector("body[data-rendered]")
        assert page.locator("#ns-table tbody tr").count() == len(names)
        return float(page.get_attribute("body", "data-rendered"))

    def console_page():
        page.goto("about:blank")
        page.goto(f"{url}/console#/ns/debian")
        page.wait_for_selector("body[data-rendered]")
        assert page.locator("#recall-value").count() == 1
        return float(page.get_attribute("body", "data-rendered"))

    runs = [0]

    def open_playground():
        page.goto(f"{url}/console#/ns/debian/query")
        page.wait_for_selector("#q-vector")
        page.fill("#q-vector", json.dumps(qv))

    def console_query():
        runs[0] += 1
        page.click("#q-run")
        page.wait_for_selector(f"#q-out[data-run='{runs[0]}'] #q-results")
        return float(page.get_attribute("#q-out", "data-ms"))

    results = [
        (f"namespace list ({len(names)} namespaces)", timed(console_list), timed(floor_list)),
        ("namespace page (debian, recall of 10 queries)", timed(console_page), timed(floor_page)),
    ]
    open_playground()
    results.append(("ANN query from the playground (36k docs)", timed(console_query),
                    timed(lambda: call("POST", "/v2/namespaces/debian/query", ann) and None)))
    browser.close()
print(f"{'what':50} {'console ms':>11} {'API floor ms':>13} {'ratio':>6}")
for what, c, f in results:
    print(f"{what:50} {c:11.1f} {f:13.1f} {c / f:6.2f}")
