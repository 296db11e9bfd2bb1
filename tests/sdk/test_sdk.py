"""The official turbopuffer Python SDK (3.x) against a local tidepool daemon, unchanged.

Invariant: every call here is one an application would make against turbopuffer itself;
only `base_url` differs. When a test fails, either tidepool deviates from the turbopuffer v2
wire format or the pinned SDK (tests/sdk/requirements.txt) was bumped and changed behaviour.

Notes on SDK 3.1.0 behaviour these tests rely on:
- `ns.write(upsert_rows=[...])` / `upsert_columns` send float vectors as base64 little-endian f32
  (checked on the wire: `[1.0, 0.0]` goes out as "AACAPwAAAAA="); int lists stay JSON arrays.
- Query rows are `turbopuffer.types.Row` models: `row.id`, `row.vector`, `row["$dist"]`, and
  attributes by attribute access or `row["attr"]`.
- Status codes map to exception classes (400 BadRequestError, 404 NotFoundError, >=500
  InternalServerError); all derive from `APIStatusError` with `.status_code` and `.body`.
- The default client retries >=500, 408, 409 and 429 four times; tests that expect a 5xx
  use `max_retries=0` so they fail fast.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import uuid
from typing import Any, Callable, Dict, List

import pytest
import turbopuffer
from turbopuffer.lib.vector import b64decode_vector

from conftest import Daemon

# --------------------------------------------------------------------------------------------
# helpers


def ids(resp) -> List[Any]:
    return [row.id for row in (resp.rows or [])]


def all_ids(ns, **kwargs) -> List[Any]:
    """Every id in the namespace (up to 1000), in id order."""
    return ids(ns.query(rank_by=("id", "asc"), top_k=1000, **kwargs))


def by_id(ns, **kwargs) -> Dict[Any, Any]:
    """Every row with every attribute, keyed by id."""
    resp = ns.query(rank_by=("id", "asc"), top_k=1000, include_attributes=True, **kwargs)
    return {row.id: row for row in resp.rows or []}


def assert_error_body(err: turbopuffer.APIStatusError) -> None:
    """turbopuffer's error shape: {"status": "error", "error": "<message>"}."""
    body = err.body
    assert isinstance(body, dict), f"error body is not a JSON object: {body!r}"
    assert body.get("status") == "error", body
    assert isinstance(body.get("error"), str) and body["error"], body


def vec(*xs: float) -> List[float]:
    return [float(x) for x in xs]


def seed_three(ns) -> None:
    res = ns.write(
        upsert_rows=[
            {"id": 1, "vector": vec(1, 0, 0), "title": "alpha", "n": 1, "color": "red"},
            {"id": 2, "vector": vec(0, 1, 0), "title": "beta", "n": 2, "color": "blue"},
            {"id": 3, "vector": vec(0, 0, 1), "title": "gamma", "n": 3, "color": "red"},
        ],
        distance_metric="cosine_distance",
    )
    assert res.status == "OK"


# --------------------------------------------------------------------------------------------
# create, upsert, exists, metadata, schema


def test_first_write_creates_namespace(ns):
    assert ns.exists() is False
    res = ns.write(
        upsert_rows=[
            {"id": 1, "vector": [1.0, 0.0, 0.0], "title": "alpha", "n": 1},
            {"id": 2, "vector": [0.0, 1.0, 0.0], "title": "beta", "n": 2},
        ],
        distance_metric="cosine_distance",
    )
    assert res.status == "OK"
    assert res.rows_affected == 2
    assert res.rows_upserted == 2
    assert isinstance(res.message, str)
    assert ns.exists() is True
    rows = by_id(ns)
    assert sorted(rows) == [1, 2]
    assert rows[1].title == "alpha" and rows[2]["n"] == 2


def test_upsert_replaces_whole_document(ns):
    seed_three(ns)
    ns.write(upsert_rows=[{"id": 1, "vector": vec(1, 1, 0), "title": "alpha2"}])
    row = by_id(ns)[1]
    assert row.title == "alpha2"
    assert "n" not in (row.model_extra or {}), "an upsert replaces the document: old attributes are gone"
    assert all_ids(ns) == [1, 2, 3]


def test_vectors_round_trip_float_and_base64(ns):
    # Exactly representable in f32, so the daemon must return these exact values.
    v1, v2 = vec(0.5, -0.25, 2), vec(-1, 0.125, 0)
    ns.write(upsert_rows=[{"id": 1, "vector": v1}, {"id": 2, "vector": v2}], distance_metric="euclidean_squared")
    rows = ns.query(rank_by=("id", "asc"), top_k=10, include_attributes=["vector"]).rows
    assert [r.vector for r in rows] == [v1, v2]
    rows = ns.query(rank_by=("id", "asc"), top_k=10, include_attributes=["vector"], vector_encoding="base64").rows
    assert all(isinstance(r.vector, str) for r in rows), [r.vector for r in rows]
    assert [b64decode_vector(r.vector) for r in rows] == [v1, v2]


def test_int_list_vectors_are_sent_as_json(ns):
    # The SDK only base64-encodes lists whose first element is a float.
    ns.write(upsert_rows=[{"id": 7, "vector": [1, 2, 3]}], distance_metric="cosine_distance")
    rows = ns.query(rank_by=("id", "asc"), top_k=1, include_attributes=["vector"]).rows
    assert rows[0].vector == [1.0, 2.0, 3.0]


def test_upsert_columns(ns):
    res = ns.write(
        upsert_columns={
            "id": [10, 11, 12],
            "vector": [vec(1, 0), vec(0, 1), vec(1, 1)],
            "color": ["red", "blue", "red"],
            "n": [1, 2, 3],
        },
        distance_metric="cosine_distance",
    )
    assert res.rows_upserted == 3
    assert ids(ns.query(rank_by=("id", "asc"), top_k=10, filters=("color", "Eq", "red"))) == [10, 12]
    rows = by_id(ns)
    assert rows[11].color == "blue" and rows[11].n == 2


def test_string_ids(ns):
    ns.write(upsert_rows=[{"id": "b", "x": 2}, {"id": "a", "x": 1}, {"id": "c-1", "x": 3}])
    assert all_ids(ns) == ["a", "b", "c-1"]
    assert by_id(ns)["b"].x == 2
    # One namespace cannot mix id types (u64, UUID, string); a uuid-shaped string is a string id
    # unless the schema declares id: uuid (test_client_compat.py).
    for other in (9,):
        with pytest.raises(turbopuffer.BadRequestError) as exc:
            ns.write(upsert_rows=[{"id": other, "x": 4}])
        assert_error_body(exc.value)


def test_uuid_ids(ns):
    u = [str(uuid.UUID(int=i)) for i in (3, 1, 2)]
    ns.write(upsert_rows=[{"id": x, "n": i} for i, x in enumerate(u)])
    assert all_ids(ns) == sorted(u)
    ns.write(deletes=[u[0]])
    assert all_ids(ns) == sorted(u[1:])


def test_metadata(ns):
    seed_three(ns)
    md = ns.metadata()
    assert md.approx_row_count == 3
    assert md.approx_logical_bytes > 0
    assert isinstance(md.created_at, datetime.datetime)
    assert isinstance(md.updated_at, datetime.datetime)
    assert md.updated_at >= md.created_at
    assert md.index.status in ("up-to-date", "updating")
    assert md.encryption.mode == "default"
    assert {"title", "n", "color"} <= set(md.schema_)
    assert md.schema_["n"].type == "int"


def test_schema_and_update_schema(ns):
    seed_three(ns)
    schema = ns.schema()
    assert schema["title"].type == "string"
    assert schema["n"].type == "int"
    assert schema["color"].type == "string"
    assert "vector" in schema and schema["vector"].type in ("[3]f32", "[3]f16"), schema.get("vector")

    updated = ns.update_schema(schema={"title": {"type": "string", "full_text_search": True}})
    assert updated["title"].full_text_search
    assert ns.schema()["title"].full_text_search
    # A new attribute can be declared before any document has it.
    ns.update_schema(schema={"rating": "float"})
    assert ns.schema()["rating"].type == "float"

    with pytest.raises(turbopuffer.BadRequestError) as exc:
        ns.update_schema(schema={"n": "string"})  # an attribute's type cannot change
    assert_error_body(exc.value)
    assert ns.schema()["n"].type == "int"


def test_write_with_schema_declares_types(ns):
    ns.write(
        upsert_rows=[{"id": 1, "price": 3, "body": "hello world"}],
        schema={"price": "float", "body": {"type": "string", "full_text_search": True}},
    )
    schema = ns.schema()
    assert schema["price"].type == "float"
    assert schema["body"].full_text_search
    assert by_id(ns)[1].price == 3


def test_exists_and_create_namespace_false(ns):
    assert ns.exists() is False
    with pytest.raises(turbopuffer.NotFoundError):
        ns.write(upsert_rows=[{"id": 1}], create_namespace=False)
    assert ns.exists() is False
    ns.write(upsert_rows=[{"id": 1}])
    assert ns.exists() is True


def test_create_namespace_true_creates_an_empty_namespace(ns):
    res = ns.write(create_namespace=True, schema={"id": "uint", "title": "string"})
    assert res.status == "OK"
    assert ns.exists() is True
    assert ns.metadata().approx_row_count == 0
    assert (ns.query(rank_by=("id", "asc"), top_k=10).rows or []) == []
    assert ns.schema()["title"].type == "string"


def test_distance_metric_may_be_repeated_not_changed(ns):
    seed_three(ns)
    ns.write(upsert_rows=[{"id": 4, "vector": vec(1, 1, 0)}], distance_metric="cosine_distance")
    with pytest.raises(turbopuffer.BadRequestError):
        ns.write(upsert_rows=[{"id": 5, "vector": vec(1, 1, 0)}], distance_metric="euclidean_squared")
    assert all_ids(ns) == [1, 2, 3, 4]


def test_accepted_write_options(ns):
    # Options a portable application may send; the daemon must accept them.
    res = ns.write(
        upsert_rows=[{"id": 1, "n": 1}],
        encryption={"mode": "default"},
        disable_backpressure=True,
    )
    assert res.rows_upserted == 1
    res = ns.write(delete_by_filter=("n", "Eq", 1), delete_by_filter_allow_partial=True)
    assert res.rows_deleted == 1 and not res.rows_remaining


def test_filterable_rules(ns):
    ns.write(
        upsert_rows=[{"id": 1, "secret": "s1", "body": "hello world", "body2": "hi there"}],
        schema={
            "secret": {"type": "string", "filterable": False},
            "body": {"type": "string", "full_text_search": True},
            "body2": {"type": "string", "full_text_search": True, "filterable": True},
        },
    )
    # filterable: false, and full_text_search without filterable: true, cannot be filtered on.
    for attr in ("secret", "body"):
        with pytest.raises(turbopuffer.BadRequestError) as exc:
            ns.query(rank_by=("id", "asc"), top_k=1, filters=(attr, "Eq", "x"))
        assert_error_body(exc.value)
    assert ids(ns.query(rank_by=("id", "asc"), top_k=1, filters=("body2", "Eq", "hi there"))) == [1]
    # Non-filterable attributes are still stored and returned.
    assert by_id(ns)[1].secret == "s1"


def test_responses_validate_strictly(daemon: Daemon, ns_name):
    """Every response parses under the SDK's strict validation (all required fields, right types)."""
    client = daemon.client(_strict_response_validation=True, max_retries=0)
    try:
        ns = client.namespace(ns_name)
        w = ns.write(upsert_rows=[{"id": 1, "vector": vec(1, 0), "n": 1}], distance_metric="cosine_distance")
        assert w.billing.billable_logical_bytes_written >= 0
        assert w.performance is None or w.performance.server_total_ms >= 0
        q = ns.query(rank_by=("id", "asc"), top_k=1, include_attributes=True)
        assert q.performance.server_total_ms >= 0 and q.billing.billable_logical_bytes_queried >= 0
        assert q.performance.cache_temperature in ("hot", "warm", "cold")
        ns.query(aggregate_by={"c": ("Count",)})
        ns.multi_query(queries=[{"rank_by": ("id", "asc"), "top_k": 1}])
        ns.explain_query(rank_by=("id", "asc"), top_k=1)
        md = ns.metadata()
        assert md.approx_row_count == 1
        ns.schema()
        ns.update_schema(schema={"m": "int"})
        ns.hint_cache_warm()
        assert [n.id for n in client.namespaces(prefix=ns_name)] == [ns_name]
        ns.write(patch_rows=[{"id": 1, "n": 2}], deletes=[7], return_affected_ids=True)
        assert ns.delete_all().status == "OK"
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# patch, delete, delete_by_filter, patch_by_filter, conditional writes


def test_patch_rows(ns):
    seed_three(ns)
    res = ns.write(patch_rows=[{"id": 1, "color": "green", "extra": True}, {"id": 99, "color": "x"}])
    assert res.rows_patched == 1, "a patch of a missing id is ignored"
    rows = by_id(ns)
    assert sorted(rows) == [1, 2, 3], "patching never creates documents"
    assert rows[1].color == "green" and rows[1].extra is True
    assert rows[1].title == "alpha" and rows[1].n == 1, "a patch keeps the other attributes"
    vecs = ns.query(rank_by=("id", "asc"), top_k=1, include_attributes=["vector"]).rows
    assert vecs[0].vector == vec(1, 0, 0), "a patch keeps the vector"

    ns.write(patch_rows=[{"id": 2, "color": None}])
    assert "color" not in (by_id(ns)[2].model_extra or {}), "patching to null removes the attribute"


def test_patch_columns(ns):
    seed_three(ns)
    res = ns.write(patch_columns={"id": [2, 3], "n": [20, 30]})
    assert res.rows_patched == 2
    rows = by_id(ns)
    assert (rows[1].n, rows[2].n, rows[3].n) == (1, 20, 30)
    assert rows[3].title == "gamma"


def test_deletes(ns):
    seed_three(ns)
    res = ns.write(deletes=[1, 3, 42])
    assert res.rows_deleted == 2
    assert all_ids(ns) == [2]
    assert ns.metadata().approx_row_count == 1


def test_delete_by_filter(ns):
    ns.write(upsert_rows=[{"id": i, "n": i} for i in range(1, 11)])
    res = ns.write(delete_by_filter=("n", "Gt", 5))
    assert res.rows_deleted == 5
    assert not res.rows_remaining
    assert all_ids(ns) == [1, 2, 3, 4, 5]


def test_patch_by_filter(ns):
    ns.write(upsert_rows=[{"id": i, "cat": "a" if i % 2 else "b"} for i in range(1, 7)])
    res = ns.write(patch_by_filter={"filters": ("cat", "Eq", "a"), "patch": {"hot": True}})
    assert res.rows_patched == 3
    assert ids(ns.query(rank_by=("id", "asc"), top_k=10, filters=("hot", "Eq", True))) == [1, 3, 5]


def test_one_request_mixes_operations(ns):
    seed_three(ns)
    res = ns.write(
        upsert_rows=[{"id": 4, "vector": vec(1, 1, 1), "title": "delta"}],
        patch_rows=[{"id": 2, "title": "beta2"}],
        deletes=[3],
        return_affected_ids=True,
    )
    assert (res.rows_upserted, res.rows_patched, res.rows_deleted) == (1, 1, 1)
    assert res.upserted_ids == [4] and res.patched_ids == [2] and res.deleted_ids == [3]
    rows = by_id(ns)
    assert sorted(rows) == [1, 2, 4]
    assert rows[2].title == "beta2"


def test_conditional_upsert_with_ref_new(ns):
    ns.write(
        upsert_rows=[
            {"id": 1, "version": 1, "body": "v1"},
            {"id": 2, "version": 3, "body": "v3"},
        ]
    )
    # Only apply an upsert when it is newer, or when there is no current version.
    newer = ("Or", [("version", "Eq", None), ("version", "Lt", {"$ref_new": "version"})])
    res = ns.write(
        upsert_rows=[
            {"id": 1, "version": 2, "body": "new1"},  # 1 < 2: applied
            {"id": 2, "version": 2, "body": "new2"},  # 3 < 2 is false: skipped, not an error
            {"id": 3, "version": 1, "body": "new3"},  # no current document: applied
        ],
        upsert_condition=newer,
    )
    assert res.rows_upserted == 2
    rows = by_id(ns)
    assert (rows[1].body, rows[1].version) == ("new1", 2)
    assert (rows[2].body, rows[2].version) == ("v3", 3)
    assert rows[3].body == "new3"

    # A stale replay of an old version changes nothing.
    res = ns.write(upsert_rows=[{"id": 1, "version": 1, "body": "stale"}], upsert_condition=newer)
    assert res.rows_upserted == 0
    assert by_id(ns)[1].body == "new1"


def test_conditional_patch_and_delete(ns):
    ns.write(upsert_rows=[{"id": i, "version": i} for i in (1, 2, 3)])
    res = ns.write(patch_rows=[{"id": 1, "tag": "x"}, {"id": 3, "tag": "x"}], patch_condition=("version", "Gte", 2))
    assert res.rows_patched == 1
    rows = by_id(ns)
    assert "tag" not in (rows[1].model_extra or {}) and rows[3].tag == "x"

    res = ns.write(deletes=[1, 2, 3], delete_condition=("version", "Lt", 3))
    assert res.rows_deleted == 2
    assert all_ids(ns) == [3]


# --------------------------------------------------------------------------------------------
# query: filters, ordering, top_k, include_attributes

PRIMES = {2, 3, 5, 7}


def _filter_docs() -> List[Dict[str, Any]]:
    docs = []
    for i in range(1, 11):
        d: Dict[str, Any] = {
            "id": i,
            "n": i,
            "cat": "a" if i % 2 else "b",
            "name": f"doc-{i:02d}",
            "tags": (["even"] if i % 2 == 0 else ["odd"]) + (["prime"] if i in PRIMES else []),
        }
        if i <= 3:
            d["opt"] = i * 10
        docs.append(d)
    return docs


FILTER_CASES: List[tuple] = [
    (("n", "Eq", 3), lambda d: d["n"] == 3),
    (("n", "NotEq", 3), lambda d: d["n"] != 3),
    (("n", "In", [1, 5, 9]), lambda d: d["n"] in (1, 5, 9)),
    (("n", "NotIn", [1, 5, 9]), lambda d: d["n"] not in (1, 5, 9)),
    (("n", "Lt", 3), lambda d: d["n"] < 3),
    (("n", "Lte", 3), lambda d: d["n"] <= 3),
    (("n", "Gt", 8), lambda d: d["n"] > 8),
    (("n", "Gte", 8), lambda d: d["n"] >= 8),
    (("cat", "Eq", "a"), lambda d: d["cat"] == "a"),
    (("And", [("n", "Gte", 3), ("cat", "Eq", "a")]), lambda d: d["n"] >= 3 and d["cat"] == "a"),
    (("Or", [("n", "Eq", 1), ("n", "Eq", 10)]), lambda d: d["n"] in (1, 10)),
    (("Not", ("cat", "Eq", "a")), lambda d: d["cat"] != "a"),
    (("name", "Glob", "doc-0*"), lambda d: d["name"].startswith("doc-0")),
    (("tags", "Contains", "prime"), lambda d: "prime" in d["tags"]),
    (("tags", "ContainsAny", ["even", "prime"]), lambda d: bool({"even", "prime"} & set(d["tags"]))),
    (("opt", "Eq", None), lambda d: "opt" not in d),
    (("opt", "NotEq", None), lambda d: "opt" in d),
    (("opt", "Gte", 20), lambda d: d.get("opt", -1) >= 20),
]


@pytest.fixture
def filter_ns(ns):
    ns.write(upsert_rows=_filter_docs())
    return ns


@pytest.mark.parametrize("flt,pred", FILTER_CASES, ids=[repr(c[0]) for c in FILTER_CASES])
def test_query_filters(filter_ns, flt, pred: Callable[[Dict[str, Any]], bool]):
    want = [d["id"] for d in _filter_docs() if pred(d)]
    got = ids(filter_ns.query(rank_by=("id", "asc"), top_k=100, filters=flt))
    assert got == want


def test_query_attribute_order_and_top_k(filter_ns):
    assert ids(filter_ns.query(rank_by=("n", "desc"), top_k=3)) == [10, 9, 8]
    assert ids(filter_ns.query(rank_by=("name", "asc"), top_k=2)) == [1, 2]
    assert ids(filter_ns.query(rank_by=("id", "desc"), top_k=1)) == [10]
    got = filter_ns.query(rank_by=("n", "desc"), top_k=2, filters=("cat", "Eq", "a"), include_attributes=["n"])
    assert ids(got) == [9, 7]
    assert [r.n for r in got.rows] == [9, 7]


def test_query_limit_is_top_k(filter_ns):
    assert ids(filter_ns.query(rank_by=("n", "asc"), limit=3)) == [1, 2, 3]


def test_query_no_match_is_empty(filter_ns):
    resp = filter_ns.query(rank_by=("id", "asc"), top_k=10, filters=("n", "Gt", 1000))
    assert (resp.rows or []) == []


def test_include_attributes(filter_ns):
    rows = filter_ns.query(rank_by=("id", "asc"), top_k=2, include_attributes=["name", "n"]).rows
    assert [(r.id, r.name, r.n) for r in rows] == [(1, "doc-01", 1), (2, "doc-02", 2)]
    assert all(set(r.model_extra or {}) <= {"name", "n"} for r in rows), [r.model_extra for r in rows]

    rows = filter_ns.query(rank_by=("id", "asc"), top_k=1, include_attributes=True).rows
    assert {"n", "cat", "name", "tags", "opt"} <= set(rows[0].model_extra or {})
    assert rows[0].tags == ["odd"]

    rows = filter_ns.query(rank_by=("id", "asc"), top_k=1, exclude_attributes=["tags", "name"]).rows
    extra = set(rows[0].model_extra or {})
    assert "tags" not in extra and "name" not in extra and "n" in extra


def test_query_response_shape(filter_ns):
    resp = filter_ns.query(rank_by=("id", "asc"), top_k=1)
    raw = resp.model_dump(by_alias=True)
    assert "rows" in raw
    # billing/performance are declared required by the SDK's model; tidepool should send them.
    assert resp.performance is not None and resp.billing is not None


def test_query_multi_key_order_and_offset(filter_ns):
    # cat asc, then n desc: the "a"s (odd n) first, highest n first within each.
    got = filter_ns.query(rank_by=[("cat", "asc"), ("n", "desc")], top_k=10)
    assert ids(got) == [9, 7, 5, 3, 1, 10, 8, 6, 4, 2]
    pages = [ids(filter_ns.query(rank_by=("n", "asc"), top_k=3, offset=o)) for o in (0, 3, 6, 9)]
    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]


def test_export_by_id_paging(filter_ns):
    # The documented export pattern: page by id with ["id", "Gt", last].
    seen: List[Any] = []
    last = None
    while True:
        kwargs: Dict[str, Any] = {"rank_by": ("id", "asc"), "top_k": 3, "include_attributes": True}
        if last is not None:
            kwargs["filters"] = ("id", "Gt", last)
        rows = filter_ns.query(**kwargs).rows or []
        if not rows:
            break
        seen.extend(r.id for r in rows)
        last = rows[-1].id
    assert seen == list(range(1, 11))


def test_aggregations(filter_ns):
    resp = filter_ns.query(
        aggregate_by={"count": ("Count",), "total": ("Sum", "n"), "with_opt": ("Count", "opt")},
        filters=("n", "Lte", 6),
    )
    assert resp.aggregations == {"count": 6, "total": 21, "with_opt": 3}

    resp = filter_ns.query(aggregate_by={"count": ("Count",), "total": ("Sum", "n")}, group_by=["cat"])
    groups = sorted(resp.aggregation_groups or [], key=lambda g: g["cat"])
    assert groups == [{"cat": "a", "count": 5, "total": 25}, {"cat": "b", "count": 5, "total": 30}]


def test_group_by_for_each_unique(filter_ns):
    # A document joins one group per distinct tag; group keys combine with plain attributes.
    resp = filter_ns.query(
        aggregate_by={"count": ("Count",), "total": ("Sum", "n")},
        group_by=[{"tag": ("ForEachUnique", "tags")}],
    )
    docs = _filter_docs()
    want = []
    for tag in sorted({t for d in docs for t in d["tags"]}):
        members = [d for d in docs if tag in d["tags"]]
        want.append({"tag": tag, "count": len(members), "total": sum(d["n"] for d in members)})
    assert resp.aggregation_groups == want
    resp = filter_ns.query(
        aggregate_by={"count": ("Count",)},
        group_by=["cat", {"tag": ("ForEachUnique", "tags")}],
        filters=("tags", "Contains", "prime"),
    )
    primes = [d for d in docs if "prime" in d["tags"]]
    got = {(g["cat"], g["tag"]): g["count"] for g in resp.aggregation_groups or []}
    assert got[("a", "prime")] == sum(1 for d in primes if d["cat"] == "a")
    assert got[("b", "even")] == sum(1 for d in primes if d["cat"] == "b")


def test_multi_query(filter_ns):
    resp = filter_ns.multi_query(
        queries=[
            {"rank_by": ("n", "desc"), "top_k": 2},
            {"rank_by": ("id", "asc"), "top_k": 3, "filters": ("cat", "Eq", "b")},
            {"aggregate_by": {"count": ("Count",)}},
        ]
    )
    assert len(resp.results) == 3
    assert [r.id for r in resp.results[0].rows] == [10, 9]
    assert [r.id for r in resp.results[1].rows] == [2, 4, 6]
    assert resp.results[2].aggregations == {"count": 10}


def test_explain_query(filter_ns):
    resp = filter_ns.explain_query(rank_by=("n", "asc"), top_k=3, filters=("cat", "Eq", "a"))
    assert isinstance(resp.plan_text, str) and resp.plan_text


def test_hint_cache_warm(filter_ns):
    resp = filter_ns.hint_cache_warm()
    assert resp.status == "ACCEPTED"


def test_metadata_is_served_on_v1_and_v2(tpuf, filter_ns):
    # The SDK uses /v2/.../metadata; the docs show /v1/...; both must answer the same.
    v1 = tpuf.get(f"/v1/namespaces/{filter_ns.id}/metadata", cast_to=object)
    v2 = tpuf.get(f"/v2/namespaces/{filter_ns.id}/metadata", cast_to=object)
    assert isinstance(v1, dict) and v1["approx_row_count"] == 10
    assert {k: v for k, v in v1.items()} == {k: v for k, v in v2.items()}


def test_attribute_types_round_trip(ns):
    doc = {
        "id": 1,
        "s": "héllo wörld ✓",
        "i": -42,
        "f": 2.5,
        "b": True,
        "ints": [3, 1, 2],
        "strs": ["x", "ÿ"],
        "floats": [0.5, 1.5],
    }
    ns.write(upsert_rows=[doc, {"id": 2, "s": "other", "i": 7, "f": -1.25, "b": False}])
    row = by_id(ns)[1]
    for k, v in doc.items():
        assert row[k] == v, k
    schema = ns.schema()
    assert {k: schema[k].type for k in ("s", "i", "f", "b", "ints", "strs")} == {
        "s": "string", "i": "int", "f": "float", "b": "bool", "ints": "[]int", "strs": "[]string",
    }
    assert ids(ns.query(rank_by=("id", "asc"), top_k=5, filters=("b", "Eq", True))) == [1]
    assert ids(ns.query(rank_by=("id", "asc"), top_k=5, filters=("f", "Lt", 0))) == [2]
    assert ids(ns.query(rank_by=("id", "asc"), top_k=5, filters=("s", "Eq", "héllo wörld ✓"))) == [1]
    assert ids(ns.query(rank_by=("id", "asc"), top_k=5, filters=("ints", "Contains", 2))) == [1]
    assert ids(ns.query(rank_by=("i", "asc"), top_k=5)) == [1, 2]


def test_datetime_values_are_instants(ns):
    """ISO 8601 with any offset or precision names one UTC instant: stored as milliseconds,
    returned canonical, filtered and ordered by time; a non-date is a 400."""
    minus4 = datetime.timezone(datetime.timedelta(hours=-4))
    ns.write(
        upsert_rows=[
            {"id": 1, "ts": datetime.datetime(2015, 1, 20, 12, 34, 56, tzinfo=minus4).isoformat()},
            {"id": 2, "ts": "2015-01-20T12:40:00Z"},
            {"id": 3, "ts": "2015-01-20"},
        ],
        schema={"ts": "datetime"},
    )
    assert ns.schema()["ts"].type == "datetime"
    assert by_id(ns)[1]["ts"] == "2015-01-20T16:34:56.000Z"
    later = ns.query(rank_by=("ts", "asc"), top_k=5, filters=("ts", "Gte", "2015-01-20T12:40:00Z"))
    assert ids(later) == [2, 1]
    assert ids(ns.query(rank_by=("ts", "desc"), top_k=5)) == [1, 2, 3]
    with pytest.raises(turbopuffer.BadRequestError):
        ns.write(upsert_rows=[{"id": 4, "ts": "not a date"}])
    with pytest.raises(turbopuffer.BadRequestError):
        ns.query(rank_by=("id", "asc"), top_k=5, filters=("ts", "Lt", "yesterday"))
    assert ids(ns.query(rank_by=("id", "asc"), top_k=10)) == [1, 2, 3]


def test_eventual_consistency_query(filter_ns):
    resp = filter_ns.query(rank_by=("id", "asc"), top_k=3, consistency={"level": "eventual"})
    assert ids(resp) == [1, 2, 3]


def test_top_k_above_the_maximum_is_bad_request(filter_ns):
    with pytest.raises(turbopuffer.BadRequestError):
        filter_ns.query(rank_by=("id", "asc"), top_k=10_001)


def test_invalid_namespace_name_is_bad_request(tpuf):
    for bad in ("bad name", "x" * 129, "semi;colon"):
        with pytest.raises(turbopuffer.BadRequestError) as exc:
            tpuf.namespace(bad).write(upsert_rows=[{"id": 1}])
        assert_error_body(exc.value)


def test_large_write(ns):
    # ~5k rows of 64-dim base64 vectors: a multi-megabyte body through the SDK's default client.
    n, dim = 5000, 64
    rows = [{"id": i, "vector": [float((i * 7 + j) % 13) / 13.0 for j in range(dim)], "g": i % 10} for i in range(n)]
    res = ns.write(upsert_rows=rows, distance_metric="euclidean_squared")
    assert res.rows_upserted == n
    assert ns.metadata().approx_row_count == n
    resp = ns.query(rank_by=("id", "desc"), top_k=2, include_attributes=["vector"], filters=("g", "Eq", 9))
    assert ids(resp) == [4999, 4989]
    assert resp.rows[0].vector == pytest.approx(rows[4999]["vector"], rel=1e-6)
    resp = ns.query(aggregate_by={"count": ("Count",)}, filters=("g", "Eq", 3))
    assert resp.aggregations == {"count": n // 10}


# --------------------------------------------------------------------------------------------
# namespaces listing, delete_all


def test_namespaces_listing_with_prefix_and_pages(tpuf, ns_name):
    prefix = f"{ns_name}-"
    names = [f"{prefix}{c}" for c in ("c", "a", "b")]
    try:
        for name in names:
            tpuf.namespace(name).write(upsert_rows=[{"id": 1}])
        listed = [n.id for n in tpuf.namespaces(prefix=prefix)]
        assert listed == sorted(names)

        first = tpuf.namespaces(prefix=prefix, page_size=2)
        assert [n.id for n in first.namespaces] == sorted(names)[:2]
        assert first.next_cursor, "a full page with more to come has a next_cursor"
        # Iterating a page follows next_cursor through every page (SDK auto-pagination).
        assert [n.id for n in first] == sorted(names)
        assert [n.id for n in tpuf.namespaces(prefix=prefix, page_size=1)] == sorted(names)
        assert [n.id for n in tpuf.namespaces(prefix=f"{ns_name}-zzz")] == []
    finally:
        for name in names:
            try:
                tpuf.namespace(name).delete_all()
            except turbopuffer.NotFoundError:
                pass
    assert [n.id for n in tpuf.namespaces(prefix=prefix)] == []


def test_delete_all(tpuf, ns):
    seed_three(ns)
    res = ns.delete_all()
    assert res.status == "OK"
    assert ns.exists() is False
    with pytest.raises(turbopuffer.NotFoundError):
        ns.query(rank_by=("id", "asc"), top_k=10)
    with pytest.raises(turbopuffer.NotFoundError):
        ns.delete_all()
    assert ns.id not in [n.id for n in tpuf.namespaces(prefix=ns.id)]
    # The name can be reused, with a different id type even.
    ns.write(upsert_rows=[{"id": "x", "n": 1}])
    assert all_ids(ns) == ["x"]


# --------------------------------------------------------------------------------------------
# errors


def test_missing_namespace_is_not_found(tpuf, ns_name):
    missing = tpuf.namespace(ns_name)
    with pytest.raises(turbopuffer.NotFoundError) as exc:
        missing.query(rank_by=("id", "asc"), top_k=10)
    assert exc.value.status_code == 404
    assert_error_body(exc.value)
    with pytest.raises(turbopuffer.NotFoundError):
        missing.metadata()
    with pytest.raises(turbopuffer.NotFoundError):
        missing.schema()


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"upsert_rows": [{"id": 9, "vector": vec(1, 0)}]}, id="vector-dimension-mismatch"),
        pytest.param({"upsert_rows": [{"id": 9, "n": "not-an-int"}]}, id="attribute-type-mismatch"),
        pytest.param({"upsert_rows": [{"id": 9, "vector": vec(1, 0, 0)}], "distance_metric": "euclidean_squared"},
                     id="distance-metric-change"),
        pytest.param({"upsert_rows": [{"id": 9}], "distance_metric": "dot"}, id="unknown-distance-metric"),
        pytest.param({"delete_by_filter": ("n", "Near", 1)}, id="unknown-filter-op"),
        pytest.param({"upsert_rows": [{"id": -1}]}, id="negative-id"),
        pytest.param({"upsert_rows": [{"id": 9, "vector": "!!not-base64"}]}, id="bad-base64-vector"),
    ],
)
def test_invalid_write_is_bad_request_and_changes_nothing(ns, kwargs):
    seed_three(ns)
    before = by_id(ns)
    with pytest.raises(turbopuffer.BadRequestError) as exc:
        ns.write(**kwargs)
    assert exc.value.status_code == 400
    assert_error_body(exc.value)
    assert by_id(ns).keys() == before.keys()
    assert by_id(ns)[1].n == 1


def test_invalid_query_is_bad_request(filter_ns):
    with pytest.raises(turbopuffer.BadRequestError) as exc:
        filter_ns.query(rank_by=("id", "asc"), top_k=10, filters=("n", "NoSuchOp", 1))
    assert_error_body(exc.value)
    with pytest.raises(turbopuffer.BadRequestError):
        filter_ns.query(rank_by=("id", "sideways"), top_k=10)


# --------------------------------------------------------------------------------------------
# ranking: ANN, kNN, BM25, hybrid multi-query with RRF, recall


def compact(tpuf: turbopuffer.Turbopuffer, name: str) -> None:
    """Fold the WAL into an indexed segment (tidepool's admin route, not part of the SDK)."""
    tpuf.post(f"/v1/namespaces/{name}/_admin/compact", cast_to=object, body={})


def cosine(a: List[float], b: List[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    na = sum(x * x for x in a) ** 0.5
    nb = sum(x * x for x in b) ** 0.5
    return 1.0 - dot / (na * nb)


def test_ann_and_knn_rank_by_distance(tpuf, ns, ns_name):
    import random

    rng = random.Random(5)
    vecs = {i: [rng.gauss(0, 1) for _ in range(8)] for i in range(1, 201)}
    rows = [{"id": i, "vector": v, "cat": i % 4} for i, v in vecs.items()]
    ns.write(upsert_rows=rows[:120], distance_metric="cosine_distance")
    compact(tpuf, ns_name)
    ns.write(upsert_rows=rows[120:])  # unindexed WAL rows are searched too
    for _ in range(5):
        q = [rng.gauss(0, 1) for _ in range(8)]
        want = sorted(vecs, key=lambda i: (cosine(vecs[i], q), i))[:10]
        knn = ns.query(rank_by=("vector", "kNN", q), top_k=10)
        assert ids(knn) == want
        dists = [row["$dist"] for row in knn.rows]
        assert dists == sorted(dists)
        assert abs(dists[0] - cosine(vecs[want[0]], q)) < 1e-4
        ann = ns.query(rank_by=("vector", "ANN", q), top_k=10)
        assert len(set(ids(ann)) & set(want)) >= 9
        filtered = ns.query(rank_by=("vector", "ANN", q), top_k=5, filters=("cat", "Eq", 2))
        fwant = sorted((i for i in vecs if i % 4 == 2), key=lambda i: (cosine(vecs[i], q), i))[:5]
        assert ids(filtered) == fwant
    perf = ns.query(rank_by=("vector", "ANN", vecs[1]), top_k=1).performance
    assert perf.exhaustive_search_count == 80


def test_bm25_ranking(tpuf, ns, ns_name):
    docs = {
        1: "the quick brown fox",
        2: "a fox and another fox",
        3: "lazy dogs sleep",
        4: "quick quick quick",
    }
    ns.write(
        upsert_rows=[{"id": i, "text": t} for i, t in docs.items()],
        schema={"text": {"type": "string", "full_text_search": True}},
    )
    wal = ns.query(rank_by=("text", "BM25", "fox"), top_k=10)
    assert ids(wal) == [2, 1]
    scores = [row["$dist"] for row in wal.rows]
    assert scores[0] > scores[1] > 0
    compact(tpuf, ns_name)
    seg = ns.query(rank_by=("text", "BM25", "fox"), top_k=10)
    assert [row["$dist"] for row in seg.rows] == scores, "scores do not depend on indexing"
    both = ns.query(rank_by=("Sum", [("text", "BM25", "fox"), ("text", "BM25", "quick")]), top_k=10)
    assert set(ids(both)) == {1, 2, 4}
    prefix = ns.query(rank_by=("text", "BM25", "qui", {"last_as_prefix": True}), top_k=10)
    assert set(ids(prefix)) == {1, 4}


def test_index_prefixes_search_as_you_type(tpuf, ns, ns_name):
    """`full_text_search.index_prefixes` (not yet a field of the SDK's typed config; a dict
    passes it through): every row with a term starting with the last token matches, past the
    64 terms the unindexed expansion stops at, with equal scores before and after compaction."""
    rows = [{"id": i, "title": f"wire sha{i:03}x"} for i in range(100)]
    rows += [{"id": 1000 + i, "title": f"wire other{i}"} for i in range(5)]
    ns.write(
        upsert_rows=rows,
        schema={"title": {"type": "string", "full_text_search": {"index_prefixes": True}}},
    )
    assert ns.schema()["title"].full_text_search.to_dict().get("index_prefixes") is True
    query = {"rank_by": ("title", "BM25", "wire sha", {"last_as_prefix": True}), "top_k": 200}
    wal = ns.query(**query)
    assert len(wal.rows) == 105
    assert sorted(ids(wal)[:100]) == list(range(100)), "the prefix matches rank first"
    compact(tpuf, ns_name)
    seg = ns.query(**query)
    assert [(r.id, r["$dist"]) for r in seg.rows] == [(r.id, r["$dist"]) for r in wal.rows]
    only = ns.query(rank_by=("title", "BM25", "sha", {"last_as_prefix": True}), top_k=200)
    assert sorted(ids(only)) == list(range(100))
    with pytest.raises(turbopuffer.BadRequestError) as err:
        ns.update_schema(schema={"title": {"type": "string", "full_text_search": {"index_prefixes": 1}}})
    assert "index_prefixes" in err.value.body["error"]


def test_hybrid_multi_query_with_rrf(tpuf, ns, ns_name):
    ns.write(
        upsert_rows=[
            {"id": 1, "vector": vec(1, 0), "text": "apple pie"},
            {"id": 2, "vector": vec(0.9, 0.1), "text": "banana bread"},
            {"id": 3, "vector": vec(0, 1), "text": "apple juice apple"},
        ],
        distance_metric="cosine_distance",
        schema={"text": {"type": "string", "full_text_search": True}},
    )
    resp = ns.multi_query(
        queries=[
            {"rank_by": ("vector", "ANN", vec(1, 0)), "top_k": 3},
            {"rank_by": ("text", "BM25", "apple"), "top_k": 3},
        ],
        rerank_by=("RRF", {"rank_constant": 60}),
        limit=3,
    )
    assert len(resp.results) == 1
    fused = resp.results[0].rows
    # vector ranks 1,2,3; text ranks 3,1 → id 1: 1/61 + 1/62, id 3: 1/63 + 1/61, id 2: 1/62.
    assert [row.id for row in fused] == [1, 3, 2]
    assert abs(fused[0]["$dist"] - (1 / 61 + 1 / 62)) < 1e-9
    plain = ns.multi_query(
        queries=[{"rank_by": ("vector", "kNN", vec(0, 1)), "top_k": 1}, {"rank_by": ("id", "asc"), "top_k": 1}]
    )
    assert [ids(r) for r in plain.results] == [[3], [1]]


def test_recall_endpoint(tpuf, ns, ns_name):
    import random

    rng = random.Random(9)
    ns.write(
        upsert_rows=[{"id": i, "vector": [rng.gauss(0, 1) for _ in range(4)]} for i in range(50)],
        distance_metric="euclidean_squared",
    )
    compact(tpuf, ns_name)
    r = ns.recall(num=5, top_k=5)
    assert r.avg_recall >= 0.9
    assert r.avg_exhaustive_count == 5
    r = ns.recall(num=2, top_k=3, include_ground_truth=True)
    assert r.ground_truth is not None and len(r.ground_truth) == 2
    assert len(r.ground_truth[0].nearest_neighbors) == 3


def test_explain_ranked_query(ns):
    seed_three(ns)
    plan = ns.explain_query(rank_by=("vector", "ANN", vec(1, 0, 0)), top_k=2).plan_text
    assert "unindexed WAL rows" in plan and "ANN" in plan


# --------------------------------------------------------------------------------------------
# transport: gzip request bodies, concurrency, restart durability


def test_gzip_request_bodies(daemon: Daemon, ns_name):
    client = daemon.client(compression=True)  # bodies over 1 KiB go out gzipped
    try:
        ns = client.namespace(ns_name)
        rows = [{"id": i, "vector": vec(i, 1, 0), "text": "x" * 200} for i in range(50)]
        assert ns.write(upsert_rows=rows, distance_metric="cosine_distance").rows_upserted == 50
        assert len(all_ids(ns)) == 50
        ns.delete_all()
    finally:
        client.close()


def test_async_client(daemon: Daemon, ns_name):
    # AsyncTurbopuffer uses a different transport (aiohttp) from the sync client.
    import asyncio

    async def main() -> None:
        client = turbopuffer.AsyncTurbopuffer(api_key="local-dev", base_url=daemon.url)
        try:
            ns = client.namespace(ns_name)
            await ns.write(upsert_rows=[{"id": i, "vector": vec(i, 1), "n": i} for i in range(1, 21)],
                           distance_metric="cosine_distance")
            results = await asyncio.gather(
                *[ns.query(rank_by=("n", "desc"), top_k=k, filters=("n", "Lte", 10)) for k in (1, 2, 3)]
            )
            assert [ids(r) for r in results] == [[10], [10, 9], [10, 9, 8]]
            assert (await ns.metadata()).approx_row_count == 20
            assert [n.id async for n in client.namespaces(prefix=ns_name)] == [ns_name]
            await ns.delete_all()
            assert await ns.exists() is False
        finally:
            await client.close()

    asyncio.run(main())


def test_concurrent_writers(ns):
    ns.write(upsert_rows=[{"id": 0, "w": -1}])

    def writer(w: int) -> None:
        for b in range(5):
            ns.write(upsert_rows=[{"id": 1 + w * 100 + b * 10 + i, "w": w} for i in range(10)])

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        for f in [pool.submit(writer, w) for w in range(8)]:
            f.result()
    got = all_ids(ns)
    assert len(got) == 1 + 8 * 5 * 10
    assert ns.metadata().approx_row_count == len(got)


def test_data_survives_restart(tmp_path):
    d = Daemon(tmp_path / "data", tmp_path / "daemon.log")
    d.start()
    try:
        client = d.client()
        ns = client.namespace("durable")
        seed_three(ns)
        ns.write(deletes=[2], patch_rows=[{"id": 3, "title": "gamma2"}])
        client.close()
        code = d.stop()
        assert code in (0, -15), f"SIGTERM should be a clean shutdown, got {code}:\n{d.log_tail()}"

        d.start()  # same data directory, new port
        client = d.client()
        ns = client.namespace("durable")
        rows = by_id(ns)
        assert sorted(rows) == [1, 3]
        assert rows[3].title == "gamma2"
        assert ns.metadata().approx_row_count == 2
        assert [n.id for n in client.namespaces(prefix="dur")] == ["durable"]
        client.close()
    finally:
        d.stop()


def test_named_vector_attributes(tpuf, ns, ns_name):
    # Declared in the same write, `title_vec` and `img` go out base64 (the SDK encodes every
    # attribute whose schema has `ann`); later writes without the schema send JSON floats.
    schema = {
        "title_vec": {"type": "[3]f32", "ann": True},
        "img": {"type": "[2]f16", "ann": {"distance_metric": "euclidean_squared"}},
    }
    t1, t2 = vec(1, 0, 0), vec(0, 1, 0)
    ns.write(
        upsert_rows=[{"id": 1, "title_vec": t1, "img": vec(0, 0)}, {"id": 2, "title_vec": t2, "img": vec(5, 5)}],
        schema=schema,
    )
    ns.write(upsert_columns={"id": [3, 4], "title_vec": [vec(0.5, 0.5, 0), vec(0, 0, 1)], "img": [vec(1, 1), vec(2, 2)]}, schema=schema)
    ns.write(upsert_rows=[{"id": 5, "title_vec": vec(0.75, 0.25, 0), "img": vec(9, 9)}])  # JSON floats
    compact(tpuf, ns_name)
    ns.write(upsert_rows=[{"id": 6, "title_vec": vec(-1, 0, 0), "img": vec(0.5, 0)}])  # unindexed tail

    got = ns.schema()
    assert got["title_vec"].type == "[3]f32"
    rows = ns.query(rank_by=("id", "asc"), top_k=10, include_attributes=["title_vec", "img"]).rows
    assert [r.title_vec for r in rows][:2] == [t1, t2]
    assert rows[4].title_vec == vec(0.75, 0.25, 0)
    rows = ns.query(
        rank_by=("id", "asc"), top_k=2, include_attributes=["title_vec"], vector_encoding="base64"
    ).rows
    assert [b64decode_vector(r.title_vec) for r in rows] == [t1, t2]

    # Each attribute ranks in its own metric: cosine for title_vec, euclidean for img.
    knn = ns.query(rank_by=("title_vec", "kNN", vec(2, 0, 0)), top_k=3)
    assert ids(knn) == [1, 5, 3]
    assert abs(knn.rows[0]["$dist"]) < 1e-6
    ann = ns.query(rank_by=("img", "ANN", vec(0.4, 0)), top_k=2)
    assert ids(ann) == [6, 1]
    assert abs(ann.rows[1]["$dist"] - 0.16) < 1e-4

    with pytest.raises(turbopuffer.BadRequestError) as e:
        ns.write(upsert_rows=[{"id": 9, "title_vec": vec(1, 2)}])
    assert "title_vec" in e.value.body["error"]
    with pytest.raises(turbopuffer.BadRequestError):
        ns.query(rank_by=("id", "asc"), top_k=1, filters=("title_vec", "Eq", 1))


def test_multi_vector_late_interaction(tpuf, ns, ns_name):
    # A `[][N]f32` attribute with `ann: {"late_interaction": true}`: the SDK sends vector arrays
    # as JSON (never base64). kNN is exact late interaction, $dist = Σ_q min_d cosine_distance
    # (= |Q| − MaxSim), equal to a numpy brute force; ANN (MUVERA section after compaction,
    # reranked exactly) returns the same top rows on this small set.
    import numpy as np

    rng = np.random.default_rng(5)
    docs = {i: rng.standard_normal((int(rng.integers(1, 6)), 4)).astype(np.float32) for i in range(1, 41)}
    schema = {"tok": {"type": "[][4]f32", "ann": {"late_interaction": True}}}
    ns.write(upsert_rows=[{"id": i, "tok": d.tolist()} for i, d in list(docs.items())[:30]], schema=schema)
    compact(tpuf, ns_name)
    ns.write(upsert_columns={"id": list(range(31, 41)), "tok": [docs[i].tolist() for i in range(31, 41)]})

    def unit(m):
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    def dist(q, d):
        return float((1.0 - unit(q) @ unit(d).T).min(axis=1).sum())

    q = rng.standard_normal((3, 4)).astype(np.float32)
    want = sorted(docs, key=lambda i: (dist(q, docs[i]), i))[:5]
    for op in ["kNN", "ANN"]:
        res = ns.query(rank_by=("tok", op, q.tolist()), top_k=5)
        assert ids(res) == want, op
        for r in res.rows:
            assert abs(r["$dist"] - dist(q, docs[r.id])) < 1e-4
    rows = ns.query(rank_by=("id", "asc"), top_k=1, include_attributes=["tok"]).rows
    assert np.allclose(np.array(rows[0].tok, dtype=np.float32), docs[1])
    assert ns.schema()["tok"].type == "[][4]f32"

    with pytest.raises(turbopuffer.BadRequestError) as e:
        ns.write(upsert_rows=[{"id": 99, "tok": [[1.0, 2.0]]}])
    assert "tok" in e.value.body["error"]
    with pytest.raises(turbopuffer.BadRequestError):
        ns.write(upsert_rows=[{"id": 1}], schema={"bad": {"type": "[][4]f32", "ann": True}})
