"""The `tidepool` admin CLI (src/admin.rs) against the same daemon the SDK tests use.

Invariant: the CLI and the SDK see the same namespaces. stdout is a pipe here, so the CLI
prints JSON (its documented rule: a table only on a terminal); errors go to stderr with the
HTTP status and a non-zero exit status.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, List, Optional

import turbopuffer

from conftest import BIN, Daemon


def cli(daemon: Daemon, *args: str, stdin: Optional[str] = None, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [str(BIN), "--url", str(daemon.url), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )
    if ok:
        assert proc.returncode == 0, f"tidepool {' '.join(args)} failed ({proc.returncode}): {proc.stderr}"
    return proc


def out(proc: subprocess.CompletedProcess) -> Any:
    return json.loads(proc.stdout)


def ndjson(rows: List[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def test_write_query_info_list_delete(daemon: Daemon, tpuf: turbopuffer.Turbopuffer, ns_name, tmp_path):
    rows = [{"id": i, "vector": [float(i), 1.0], "title": f"doc {i}", "n": i % 3} for i in range(1, 26)]
    path = tmp_path / "docs.ndjson"
    path.write_text(ndjson(rows[:20]) + "\n")  # a trailing blank line is skipped
    summary = out(cli(daemon, "write", ns_name, str(path), "--batch-size", "7", "--distance-metric", "cosine_distance"))
    assert summary["documents"] == 20 and summary["batches"] == 3 and summary["rows_affected"] == 20
    summary = out(cli(daemon, "write", ns_name, "-", stdin=ndjson(rows[20:])))
    assert summary["documents"] == 5 and summary["batches"] == 1

    # The SDK sees what the CLI wrote.
    got = tpuf.namespace(ns_name).query(rank_by=("id", "asc"), top_k=100, include_attributes=["title"])
    assert [r.id for r in got.rows] == list(range(1, 26))
    assert got.rows[0].title == "doc 1"

    resp = out(
        cli(daemon, "query", ns_name, "--filters", '["n","Eq",0]', "--rank-by", '["id","desc"]', "--top-k", "3",
            "--include-attributes", "title,n")
    )
    assert [(r["id"], r["title"], r["n"]) for r in resp["rows"]] == [(24, "doc 24", 0), (21, "doc 21", 0),
                                                                    (18, "doc 18", 0)]
    resp = out(cli(daemon, "query", ns_name, "--top-k", "2"))
    assert [r["id"] for r in resp["rows"]] == [1, 2], "the default order is id ascending"

    info = out(cli(daemon, "ns", "info", ns_name))
    assert info["approx_row_count"] == 25

    listed = out(cli(daemon, "ns", "list", "--prefix", ns_name))
    assert listed == {"namespaces": [{"id": ns_name}]}
    page = out(cli(daemon, "ns", "list", "--prefix", ns_name, "--page-size", "1"))
    assert [n["id"] for n in page["namespaces"]] == [ns_name]

    refused = cli(daemon, "ns", "delete", ns_name, ok=False)
    assert refused.returncode != 0 and "--yes" in refused.stderr
    assert out(cli(daemon, "ns", "delete", ns_name, "--yes")) == {"status": "OK"}
    assert tpuf.namespace(ns_name).exists() is False


def test_list_follows_cursors(daemon: Daemon, tpuf: turbopuffer.Turbopuffer, ns_name):
    names = [f"{ns_name}-{i}" for i in range(3)]
    try:
        for name in names:
            tpuf.namespace(name).write(upsert_rows=[{"id": 1}])
        listed = out(cli(daemon, "ns", "list", "--prefix", f"{ns_name}-"))
        assert [n["id"] for n in listed["namespaces"]] == names
        page = out(cli(daemon, "ns", "list", "--prefix", f"{ns_name}-", "--page-size", "2"))
        assert [n["id"] for n in page["namespaces"]] == names[:2] and page["next_cursor"]
        rest = out(cli(daemon, "ns", "list", "--prefix", f"{ns_name}-", "--page-size", "2",
                       "--cursor", page["next_cursor"]))
        assert [n["id"] for n in rest["namespaces"]] == names[2:]
    finally:
        for name in names:
            tpuf.namespace(name).delete_all()


def test_errors_name_the_status_and_line(daemon: Daemon, ns_name):
    proc = cli(daemon, "query", ns_name, ok=False)
    assert proc.returncode != 0
    assert "404" in proc.stderr and "not found" in proc.stderr.lower()

    proc = cli(daemon, "write", ns_name, stdin='{"id": 1}\n{"id": 2,\n', ok=False)
    assert proc.returncode != 0 and "line 2" in proc.stderr and "nothing was written" in proc.stderr

    proc = cli(daemon, "write", ns_name, stdin='{"id": 1, "vector": [1.0, 2.0]}\n{"id": 2, "vector": [1.0]}\n',
               ok=False)
    assert proc.returncode != 0 and "400" in proc.stderr, proc.stderr

    proc = cli(daemon, "query", ns_name, "--filters", "[oops", ok=False)
    assert proc.returncode != 0 and "--filters" in proc.stderr
