"""VectorDBBench's turbopuffer client (vectordb-bench, `backend/clients/turbopuffer`), driven as
its runner drives it, against a tidepool daemon: `python vectordbbench_client.py URL [pin]`.

Invariant: with only `api_base_url` set (region None), the unchanged client inserts embeddings
with scalar labels, reports readiness from the namespace metadata, warms the cache, and its
searches find the nearest ids with no filter, with `id >= N` (NumGE) and with `label == v`
(Label), for every payload profile; its full-text mode writes string ids with a schema and
searches BM25; its multi-tenant mode writes and searches one namespace per tenant. With `pin`,
the namespace is written first (not dropped) and the client's pinning request and wait
(PATCH/GET `.../metadata`) succeed.
"""

import logging
import sys

import numpy as np
from vectordb_bench.backend.clients.api import MetricType
from vectordb_bench.backend.clients.turbopuffer.config import (
    TurboPufferFtsConfig,
    TurboPufferIndexConfig,
    TurboPufferMultitenantWarmupPolicy,
)
from vectordb_bench.backend.clients.turbopuffer.turbopuffer import TurboPuffer
from vectordb_bench.backend.filter import LabelFilter, NewIntFilter, NonFilter
from vectordb_bench.backend.payload import PayloadProfile

logging.basicConfig(level=logging.WARNING)
url = sys.argv[1]
pin = len(sys.argv) > 2 and sys.argv[2] == "pin"
cfg = {"api_key": "local-dev", "region": None, "api_base_url": url, "namespace": "vdb", "pin_namespace": pin, "pin_timeout": 30}
rng = np.random.default_rng(1)
X = rng.standard_normal((3000, 8)).astype(np.float32)

db = TurboPuffer(8, cfg, TurboPufferIndexConfig(metric_type=MetricType.COSINE, time_wait_warmup=0), drop_old=not pin, with_scalar_labels=True)
with db.init():
    for s in range(0, 3000, 1000):
        ids = list(range(s, s + 1000))
        n, err = db.insert_embeddings(list(X[s : s + 1000]), ids, labels_data=[f"l{i % 10}" for i in ids])
        assert err is None and n == 1000, err
    ready = db.poll_insert_readiness(3000)
    assert ready["fully_searchable"], ready
    db.optimize()
    db.prepare_filter(NonFilter())
    assert db.search_embedding(X[5].tolist(), k=10)[0] == 5
    for profile in [PayloadProfile.VECTOR, PayloadProfile.SCALAR_LABEL]:
        assert db.search_embedding(X[7].tolist(), k=5, payload_profile=profile)[0] == 7, profile
    db.prepare_filter(NewIntFilter(filter_rate=0.5, int_value=1500))
    got = db.search_embedding(X[2005].tolist(), k=10)
    assert got[0] == 2005 and all(i >= 1500 for i in got), got
    label = LabelFilter(label_percentage=0.1)
    db.insert_embeddings(list(X[:50]), list(range(50)), labels_data=[label.label_value if i % 5 == 0 else "x" for i in range(50)])
    db.prepare_filter(label)
    got = db.search_embedding(X[10].tolist(), k=20)
    assert got[0] == 10 and sorted(got) == list(range(0, 50, 5)), got
print("vectors: OK")

fts = TurboPuffer(0, dict(cfg, namespace="vdbfts", pin_namespace=False), TurboPufferFtsConfig(time_wait_warmup=0), drop_old=True)
with fts.init():
    n, err = fts.insert_documents(["the quick brown fox", "lazy dogs sleep", "a fox and a dog"], ["d1", "d2", "d3"], filter_ids=[1, 2, 3])
    assert err is None, err
    assert set(fts.search_documents("fox", k=5)) == {"d1", "d3"}
print("full text: OK")

mt_case = TurboPufferIndexConfig(metric_type=MetricType.L2, time_wait_warmup=0, multitenant_warmup_policy=TurboPufferMultitenantWarmupPolicy.ALL)
mt = TurboPuffer(8, dict(cfg, pin_namespace=False), mt_case, drop_old=True, multitenant_tenant_labels=["t1", "t2"])
with mt.init():
    n, err = mt.insert_embeddings(list(X[:100]), list(range(100)), tenant_labels_data=["t1" if i % 2 else "t2" for i in range(100)])
    assert err is None and n == 100, err
    assert mt.poll_insert_readiness(100)["fully_searchable"]
    mt.optimize()
    mt.prepare_filter(NonFilter())
    assert mt.search_embedding(X[3].tolist(), k=3, tenant="t1")[0] == 3
    assert mt.search_embedding(X[4].tolist(), k=3, tenant="t2")[0] == 4
print("multi-tenant: OK")
