"""The console in a real headless browser (Debian's chromium through Playwright) against a real
daemon: the namespace list, a namespace page with schema, segments and recall, documents with
the filter builder, ANN / BM25 / hybrid / local-model queries with their code, the live charts,
sync status, the read-only key's page without write controls, and a delete confirmed by name.

Invariants: every test fails on any error the browser logs (conftest's `console` fixture), and
leaves a screenshot per page in target/console-artifacts/ (the README's picture comes from
there). Expected ids come from the seed in conftest (deterministic vectors and texts).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import urllib.request

import pytest
from playwright.sync_api import expect

from conftest import ARTIFACTS, RO_KEY, ROWS, RW_KEY, category_of, has_model, vector_of


def test_the_key_dialog_and_the_namespace_list(console):
    page = console.page
    page.goto(f"{console.node.url}/console")
    # A node with keys: the page asks for one first (nothing fails meanwhile).
    expect(page.locator("#key-dialog")).to_be_visible()
    page.fill("#key-input", RW_KEY)
    page.click("#key-save")
    expect(page.locator("#who")).to_contain_text("acme/edge")
    expect(page.locator("#who")).to_contain_text("read-write key")
    row = page.locator('#ns-table tr[data-ns="products"]')
    expect(row).to_contain_text(f"{ROWS}")
    expect(row).to_contain_text("up-to-date")
    expect(page.locator('#ns-table tr[data-ns="notes"]')).to_contain_text("team=docs")
    expect(page.locator('#ns-table tr[data-ns="notes"]')).to_contain_text("pinned")
    expect(page.locator('#ns-table tr[data-ns="products-branch"]')).to_contain_text(re.compile(r"products @ v\d+"))
    console.shot("namespaces")
    assert page.evaluate("sessionStorage.getItem('tidepool.key')") == RW_KEY
    assert page.evaluate("localStorage.length") == 0, "the key is kept in the tab's session only"


def test_a_namespace_page_shows_schema_segments_and_recall(console):
    page = console.open("#/")
    page.click('#ns-table tr[data-ns="products"] a.ns-link')
    expect(page.locator("#ns-page")).to_have_attribute("data-ns", "products")
    expect(page.locator('#schema-table tr[data-attr="description"]')).to_contain_text("full_text_search")
    expect(page.locator('#schema-table tr[data-attr="vector"]')).to_contain_text(f"[{16}]f32")
    expect(page.locator("#segments-table tbody tr")).to_have_count(1)
    expect(page.locator("#segments-table tbody tr")).to_contain_text(str(ROWS))
    recall = float(page.locator("#recall-value").inner_text())
    assert 0.9 <= recall <= 1.0
    assert page.locator("#recall-chart rect.bar").count() >= 1
    assert page.locator("#recall-chart line.target").count() == 1
    console.shot("namespace")


def test_documents_page_with_the_filter_builder(console):
    page = console.open("#/ns/products/documents")
    expect(page.locator("#docs-table tbody tr")).to_have_count(25)
    page.click("#filter-builder .add-clause")
    clause = page.locator("#filter-builder .clause").first
    clause.locator("select.attr").select_option("category")
    clause.locator("select.op").select_option("Eq")
    clause.locator("input.value").fill("science")
    expect(page.locator("#filter-json")).to_have_text(json.dumps(["category", "Eq", "science"], separators=(",", ":")))
    page.click("#docs-apply")
    expected = [i for i in range(ROWS) if category_of(i) == "science"]
    first = page.locator("#docs-table tbody tr").first
    expect(first).to_have_attribute("data-id", str(expected[0]))
    rows = page.locator("#docs-table tbody tr")
    expect(rows).to_have_count(25)
    ids = [int(rows.nth(k).get_attribute("data-id")) for k in range(25)]
    assert ids == expected[:25]
    page.click("#docs-next")
    expect(page.locator("#docs-table tbody tr").first).to_have_attribute("data-id", str(expected[25]))
    page.locator("#docs-table tbody tr").first.click()
    detail = json.loads(page.locator("#doc-detail").inner_text())
    assert detail["id"] == expected[25] and detail["category"] == "science"
    assert detail["price"] == expected[25] * 3 % 100
    assert detail["vector"].endswith("… 16 dims]"), "vectors are shortened"
    console.shot("documents")


def code_env():
    return {**os.environ, "TIDEPOOL_API_KEY": RW_KEY}


def run_curl(code: str):
    out = subprocess.run(["bash", "-c", code], capture_output=True, text=True, env=code_env(), timeout=60, check=True)
    return [r["id"] for r in json.loads(out.stdout)["rows"]]


def run_python(code: str):
    """Run the console's Python code with the turbopuffer SDK; the ids it printed."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=code_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    return [int(i) for i in re.findall(r"Row\(id=(\d+)", out.stdout)]


def run_typescript(code: str):
    """Run the console's TypeScript code (plain ES module syntax) with the TypeScript SDK."""
    js = os.environ.get("CONSOLE_JS")
    assert js, "CONSOLE_JS (the TypeScript SDK's directory) is set by tests/console/run.sh"
    script = pathlib.Path(js) / "generated.mjs"
    script.write_text(code)
    out = subprocess.run(["node", str(script)], capture_output=True, text=True, env=code_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    rows = result["rows"] if "rows" in result else result["results"][0]["rows"]
    return [r["id"] for r in rows]


def bm25_query(page, text: str):
    """Run a BM25 query for `text` in the playground; its first row."""
    page.select_option("#q-mode", "bm25")
    page.fill("#q-text", text)
    run_query(page)
    return page.locator("#q-results tbody tr").first


def run_query(page):
    """Run the playground's query and wait for its (new) results."""
    runs = int(page.locator("#q-out").get_attribute("data-run"))
    page.click("#q-run")
    expect(page.locator("#q-out")).to_have_attribute("data-run", str(runs + 1))


def test_ann_query_with_a_filter_code_and_explain(console):
    page = console.open("#/ns/products/query")
    page.select_option("#q-mode", "ann")
    page.fill("#q-vector", json.dumps(vector_of(42)))
    run_query(page)
    expect(page.locator("#q-results tbody tr").first).to_have_attribute("data-id", "42")
    expect(page.locator("#q-results tbody tr")).to_have_count(10)
    perf = json.loads(page.locator("#q-performance").inner_text())
    assert "server_total_ms" in perf
    # With a filter: only that category, and the request as code.
    page.click("#filter-builder .add-clause")
    clause = page.locator("#filter-builder .clause").first
    clause.locator("select.attr").select_option("category")
    clause.locator("input.value").fill(category_of(43))
    page.fill("#q-vector", json.dumps(vector_of(43)))
    run_query(page)
    expect(page.locator("#q-results tbody tr").first).to_have_attribute("data-id", "43")
    texts = page.locator("#q-results tbody tr").all_inner_texts()
    assert len(texts) == 10 and all(category_of(43) in t for t in texts), texts
    request = json.loads(page.locator("#q-request").inner_text())
    assert request["filters"] == ["category", "Eq", category_of(43)]
    console.shot("query-ann")
    # The request as code runs as shown: curl, the Python SDK and the TypeScript SDK.
    ids = [int(page.locator("#q-results tbody tr").nth(k).get_attribute("data-id")) for k in range(10)]
    assert run_curl(page.locator("#q-code-curl").inner_text()) == ids
    assert run_python(page.locator("#q-code-python").inner_text()) == ids
    assert run_typescript(page.locator("#q-code-ts").inner_text()) == ids
    page.click("#q-explain")
    expect(page.locator("#q-explain-out")).to_contain_text("ANN")


def test_bm25_and_hybrid_queries(console):
    page = console.open("#/ns/products/query")
    expect(bm25_query(page, "marker7")).to_have_attribute("data-id", "7")
    expect(page.locator("#q-results tbody tr")).to_have_count(1)
    console.shot("query-bm25")
    page.select_option("#q-mode", "hybrid")
    page.fill("#q-vector", json.dumps(vector_of(7)))
    run_query(page)
    expect(page.locator("#q-results tbody tr").first).to_have_attribute("data-id", "7")
    rows = page.locator("#q-results tbody tr")
    ids = [int(rows.nth(k).get_attribute("data-id")) for k in range(rows.count())]
    # The fused request as SDK code: multi_query / multiQuery with rerank_by.
    assert run_python(page.locator("#q-code-python").inner_text()) == ids
    assert run_typescript(page.locator("#q-code-ts").inner_text()) == ids


def test_aggregation(console):
    page = console.open("#/ns/products/query")
    page.select_option("#q-mode", "aggregate")
    page.select_option("#q-group-by", "category")
    run_query(page)
    groups = json.loads(page.locator("#q-aggregations").inner_text())
    assert sorted((g["category"], g["count"]) for g in groups) == sorted(
        (c, sum(1 for i in range(ROWS) if category_of(i) == c)) for c in {category_of(i) for i in range(ROWS)})


@pytest.mark.skipif(not has_model(), reason="scripts/models.sh installs the model (scripts/test.sh runs it)")
def test_text_query_through_the_local_model(console):
    docs = ["a tcp port scanner for networks", "a music player for the terminal", "a fast text editor"]
    console.node.call("POST", "/v2/namespaces/articles", {
        "upsert_rows": [{"id": i + 1, "title": t} for i, t in enumerate(docs)],
        "schema": {"title": {"type": "string", "full_text_search": True, "embed": "minilm"}}})
    page = console.open("#/ns/articles/query")
    page.select_option("#q-mode", "embed")
    page.fill("#q-text", "listen to songs")
    run_query(page)
    expect(page.locator("#q-results tbody tr").first).to_have_attribute("data-id", "2")
    console.shot("query-embed")


def test_health_charts_move_and_recall_and_sync_show(console):
    page = console.open("#/health")
    expect(page.locator("#chart-memory")).to_have_attribute("data-points", re.compile(r"^[1-9]"))
    # The request-rate chart needs two samples; it keeps moving while the page is open.
    expect(page.locator("#chart-rate")).to_have_attribute("data-points", re.compile(r"^[1-9]"))
    first = int(page.locator("#chart-rate").get_attribute("data-points"))
    expect(page.locator("#chart-rate")).not_to_have_attribute("data-points", str(first), timeout=10_000)
    assert page.locator("#chart-rate path.line").count() == 1
    page.click("#recall-run")
    row = page.locator('#recall-table tr[data-ns="products"]')
    expect(row).to_be_visible(timeout=30_000)
    assert 0.9 <= float(row.locator("td").nth(1).inner_text()) <= 1.0
    assert page.locator('#recall-table tr[data-ns="notes"]').count() == 0, "notes has no vectors"
    expect(page.locator("#sync-table")).to_contain_text("products")
    console.shot("health")


def test_a_read_only_key_sees_no_write_controls(console):
    page = console.open("#/", key=RO_KEY)
    expect(page.locator('#ns-table tr[data-ns="products"]')).to_be_visible()
    assert page.locator(".write-control").count() == 0
    page.click('#ns-table tr[data-ns="products"] a.ns-link')
    expect(page.locator("#who")).to_contain_text("read-only key")
    expect(page.locator("#segments-table")).to_be_visible()
    assert page.locator(".write-control").count() == 0
    # It still reads and queries.
    page.click('button[data-tab="query"]')
    expect(bm25_query(page, "marker9")).to_have_attribute("data-id", "9")
    console.shot("read-only")


def test_write_controls_and_delete_confirmed_by_name(console):
    console.node.call("POST", "/v2/namespaces/scratch", {"upsert_rows": [{"id": 1, "a": "b"}]})
    page = console.open("#/ns/scratch")
    expect(page.locator("#ns-page")).to_be_visible()
    assert page.locator(".write-control").count() == 2
    page.click("#compact")
    expect(page.locator("#note")).to_contain_text("Compacted")
    page.click("#delete")
    ok = page.locator("#confirm-ok")
    expect(ok).to_be_disabled()
    page.fill("#confirm-name", "scratc")
    expect(ok).to_be_disabled()
    page.fill("#confirm-name", "scratch")
    expect(ok).to_be_enabled()
    console.shot("delete-confirm")
    ok.click()
    expect(page.locator('#ns-table tr[data-ns="products"]')).to_be_visible()
    assert page.locator('#ns-table tr[data-ns="scratch"]').count() == 0
    names = [n["id"] for n in console.node.call("GET", "/v1/namespaces")["namespaces"]]
    assert "scratch" not in names


def test_open_mode_serves_its_own_page_and_refuses_other_origins(browser, open_node, tmp_path):
    """No keys: the console works from the daemon's own origin; a page of another local origin
    can neither read (no CORS) nor write with a "simple" request (403, nothing written)."""
    ctx = browser.new_context()
    page = ctx.new_page()
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{open_node.url}/console#/ns/local/query")
    expect(page.locator("#who")).to_contain_text("open (loopback)")
    expect(page.locator("#key-button")).to_be_hidden()
    expect(bm25_query(page, "works")).to_have_attribute("data-id", "1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "open-mode.png"), full_page=True)
    assert errors == []
    # Another origin on the same machine (another port).
    (tmp_path / "index.html").write_text("<!doctype html><title>elsewhere</title>")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
        read = page.evaluate("""url => fetch(url + '/v1/namespaces').then(r => 'read ' + r.status, () => 'blocked')""",
                             open_node.url)
        assert read == "blocked"
        write = page.evaluate("""url => fetch(url + '/v2/namespaces/evil', {method: 'POST', mode: 'no-cors',
            headers: {'content-type': 'text/plain'}, body: JSON.stringify({upsert_rows: [{id: 1}]})})
            .then(r => 'sent ' + r.type, () => 'blocked')""", open_node.url)
        assert write in ("sent opaque", "blocked")
        names = [n["id"] for n in open_node.call("GET", "/v1/namespaces")["namespaces"]]
        assert names == ["local"], "the foreign page wrote nothing"
    finally:
        server.shutdown()
        ctx.close()


def test_restore_a_snapshot_into_a_new_namespace_named_by_the_user(console, tmp_path):
    snap = tmp_path / "products.snapshot"
    req = urllib.request.Request(f"{console.node.url}/v1/namespaces/products/_admin/snapshot")
    req.add_header("authorization", f"Bearer {RW_KEY}")
    with urllib.request.urlopen(req, timeout=60) as resp:
        snap.write_bytes(resp.read())
    page = console.open("#/")
    expect(page.locator('#ns-table tr[data-ns="products"]')).to_be_visible()
    page.set_input_files("#restore-file", str(snap))
    ok = page.locator("#confirm-ok")
    page.fill("#confirm-name", "products")
    expect(ok).to_be_disabled()  # an existing name is refused before anything is sent
    page.fill("#confirm-name", "products-restored")
    expect(ok).to_be_enabled()
    ok.click()
    expect(page.locator("#ns-page")).to_have_attribute("data-ns", "products-restored")
    expect(page.locator("#ns-cards")).to_contain_text(str(ROWS))
    console.shot("restore")
