"""mem0's turbopuffer vector store (mem0ai, `mem0/vector_stores/turbopuffer.py`) against a tidepool
daemon: `python mem0_client.py URL`.

Invariant: with only `base_url` set (region None), the unchanged store inserts uuid-string ids
with payloads, searches by vector with and without a payload filter, gets, updates (vector and
payload), lists with a filter, counts, lists namespaces, reports namespace info, deletes one
memory and resets (deletes the namespace).
"""

import sys
import uuid

from mem0.vector_stores.turbopuffer import TurbopufferDB

url = sys.argv[1]
db = TurbopufferDB(collection_name=f"mem0_{uuid.uuid4().hex[:8]}", embedding_model_dims=4, api_key="local-dev", region=None, extra_params={"base_url": url})
ids = [str(uuid.uuid4()).upper() if i == 1 else str(uuid.uuid4()) for i in range(3)]
payloads = [{"data": "a", "user_id": "u1"}, {"data": "b", "user_id": "u2"}, {"data": "c", "user_id": "u1"}]
db.insert([[1, 0, 0, 0], [0, 1, 0, 0], [0.9, 0.1, 0, 0]], payloads=payloads, ids=ids)
got = db.search("q", [1, 0, 0, 0], top_k=2)
assert [o.id for o in got] == [ids[0], ids[2]] and got[0].payload == payloads[0], got
assert [o.id for o in db.search("q", [1, 0, 0, 0], top_k=5, filters={"user_id": "u2"})] == [ids[1]]
assert db.get(ids[1]).id == ids[1], "an upper-case uuid-shaped id comes back byte for byte"
db.update(ids[2], vector=[0, 0, 1, 0], payload={"data": "c2", "user_id": "u1"})
assert db.get(ids[2]).payload["data"] == "c2"
assert db.search("q", [0, 0, 1, 0], top_k=1)[0].id == ids[2]
assert {o.id for o in db.list(filters={"user_id": "u1"})[0]} == {ids[0], ids[2]}
assert db.count() == 3
assert db.collection_name in [c.id for c in db.list_cols()]
assert db.col_info()["approx_row_count"] == 3
db.delete(ids[0])
assert db.get(ids[0]) is None and db.count() == 2
db.reset()
print("mem0: OK")
