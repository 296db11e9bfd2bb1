"""What real clients send, through the official SDK 3.1.0: lookups without rank_by (langchain's
get_by_ids), string ids that come back byte for byte, declared uuid ids compared
case-insensitively, `disable_cache`, the typed `performance` of queries, multi-queries and
writes, and `update_metadata(read_only=...)`. Fixtures (`ns`, `tpuf`, the daemon) come from conftest.py.
"""

from __future__ import annotations

import uuid

import pytest
import turbopuffer

UPPER = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"


def ids(result) -> list:
    return [r.id for r in result.rows or []]


def test_lookup_without_rank_by_answers_in_id_order(ns):
    ns.write(upsert_rows=[{"id": i, "vector": [float(i), 1.0], "text": f"t{i}"} for i in range(20)])
    got = ns.query(filters=("id", "In", [17, 3, 11, 99]), include_attributes=True, limit=2)
    assert ids(got) == [3, 11]
    assert got.rows[0].text == "t3"
    assert ids(ns.query(filters=("text", "Eq", "t5"))) == [5]
    with pytest.raises(turbopuffer.BadRequestError):
        ns.query(filters=("id", "In", [1, 2]), offset=1)


def test_string_ids_come_back_byte_for_byte(ns):
    lower = str(uuid.uuid4())
    ns.write(upsert_rows=[{"id": "dummy_document", "vector": [1.0, 0.0]}])
    ns.write(deletes=["dummy_document"])
    # langchain's str(uuid4()) ids in a namespace that held a plain string id.
    ns.write(upsert_rows=[{"id": UPPER, "vector": [0.0, 1.0]}, {"id": lower, "vector": [1.0, 1.0]}])
    got = ns.query(filters=("id", "In", [UPPER, lower]), limit=10)
    assert ids(got) == sorted([UPPER, lower])
    assert ids(ns.query(filters=("id", "Eq", UPPER.lower()))) == [], "another spelling is another string"
    assert ns.schema()["id"].type == "string"


def test_declared_uuid_ids_compare_case_insensitively(ns):
    ns.write(upsert_rows=[{"id": UPPER, "n": 1}], schema={"id": "uuid"})
    ns.write(upsert_rows=[{"id": UPPER.lower(), "n": 2}])
    got = ns.query(filters=("id", "Eq", UPPER), include_attributes=["n"])
    assert [(r.id, r.n) for r in got.rows] == [(UPPER.lower(), 2)]
    assert ns.write(deletes=[UPPER]).rows_deleted == 1
    assert ns.schema()["id"].type == "uuid"


def test_disable_cache_is_accepted(ns):
    ns.write(upsert_rows=[{"id": i, "vector": [float(i), 1.0]} for i in range(5)])
    got = ns.query(rank_by=("vector", "ANN", [1.0, 1.0]), top_k=2, extra_body={"disable_cache": True})
    assert len(got.rows) == 2
    # The namespace is loaded (the write did that), but the memory tier is not used.
    assert got.performance.cache_temperature != "hot"
    assert ns.query(rank_by=("vector", "ANN", [1.0, 1.0]), top_k=2).performance.cache_temperature == "hot"
    with pytest.raises(turbopuffer.BadRequestError):
        ns.query(rank_by=("id", "asc"), extra_body={"disable_cache": "yes"})


def check_query_performance(p, size: int) -> None:
    assert p.approx_namespace_size == size
    assert 0.0 <= p.cache_hit_ratio <= 1.0
    assert p.cache_temperature in ("hot", "warm", "cold")
    assert 0 <= p.exhaustive_search_count <= 16 * size
    assert 0 <= p.query_execution_ms <= p.server_total_ms
    assert p.embedding_ms is None and p.embedding_tokens is None


def test_performance_fields(ns):
    w = ns.write(upsert_rows=[{"id": i, "vector": [float(i), 1.0]} for i in range(12)])
    assert w.performance.server_total_ms >= 0 and w.performance.embedding_ms is None
    q = ns.query(rank_by=("vector", "ANN", [1.0, 1.0]), top_k=3)
    check_query_performance(q.performance, 12)
    assert q.performance.exhaustive_search_count == 12, "every row is unindexed (in the WAL)"
    m = ns.multi_query(queries=[{"rank_by": ("id", "asc"), "top_k": 2}, {"filters": ("id", "Eq", 4)}])
    assert [ids(r) for r in m.results] == [[0, 1], [4]]
    check_query_performance(m.performance, 12)


def test_read_only_refuses_writes_until_cleared(ns):
    # `update_metadata(read_only=True)`: document and schema writes are refused (403, the SDK's
    # PermissionDeniedError), reads and metadata updates still work, `False` allows writes again.
    ns.write(upsert_rows=[{"id": 1, "t": "a"}])
    md = ns.update_metadata(read_only=True)
    assert md.read_only is True
    with pytest.raises(turbopuffer.PermissionDeniedError) as e:
        ns.write(upsert_rows=[{"id": 2, "t": "b"}])
    assert "read-only" in e.value.body["error"]
    with pytest.raises(turbopuffer.PermissionDeniedError):
        ns.update_schema(schema={"t": {"type": "string", "full_text_search": True}})
    assert ids(ns.query(rank_by=("id", "asc"), top_k=10)) == [1]
    assert ns.update_metadata(pinning=True).read_only is True
    assert ns.metadata().read_only is True
    assert not ns.update_metadata(read_only=False).read_only
    ns.write(upsert_rows=[{"id": 2, "t": "b"}])
    assert ids(ns.query(rank_by=("id", "asc"), top_k=10)) == [1, 2]
