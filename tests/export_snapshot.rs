//! NDJSON export/import and snapshot files.
//!
//! Invariants guarded: an export is every live document of one generation,
//! and importing it reproduces the namespace exactly; a snapshot restored on
//! another node (another data dir and store) reproduces the namespace
//! exactly; a corrupted, truncated or extended snapshot is refused with a
//! clear error and leaves no namespace and no objects behind; a snapshot file
//! is replaced atomically (the old file survives a failed snapshot).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::store::Store;

fn ns(name: &str) -> NsPath {
    NsPath::new("o", "p", name).unwrap()
}

async fn engine_with(data_dir: &std::path::Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data_dir.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.unwrap()
}

async fn write(e: &Engine, name: &str, body: Json) -> Result<tidepool::engine::WriteResponse, EngineError> {
    e.write(&ns(name), WriteRequest::from_json(&body)?).await
}

async fn docs(e: &Engine, name: &str) -> BTreeMap<DocId, Json> {
    let s = e.existing(&ns(name), true).await.unwrap_or_else(|err| panic!("{name}: {err}"));
    s.state.iter_from(Bound::Unbounded).map(|d| (d.id.clone(), d.to_json())).collect()
}

/// A namespace with every value kind, vectors, a deletion, a compaction and
/// WAL on top of the segment.
async fn rich_namespace(e: &Engine, name: &str) {
    let mut rows = Vec::new();
    for i in 0..300u64 {
        #[allow(clippy::cast_precision_loss)]
        let f = i as f32;
        rows.push(json!({
            "id": i,
            "vector": [f * 0.1, -f, 1.0 / (f + 1.0)],
            "title": format!("doc {i} \u{00e9}\u{1f30a}"),
            "score": f64::from(u32::try_from(i).unwrap()) * 1.25,
            "big": 9_007_199_254_740_993u64 + i,
            "neg": -(i64::try_from(i).unwrap()),
            "flag": i % 2 == 0,
            "tags": ["a", format!("t{}", i % 7)],
            "nums": [1, 2, i],
        }));
    }
    write(e, name, json!({"upsert_rows": rows, "distance_metric": "cosine_distance"})).await.unwrap();
    e.compact(&ns(name), true).await.unwrap();
    write(e, name, json!({"deletes": [3, 4], "upsert_rows": [{"id": 1000, "vector": [0.5, 0.25, 0.125]}]}))
        .await
        .unwrap();
    write(e, name, json!({"patch_rows": [{"id": 5, "title": "patched"}]})).await.unwrap();
}

#[tokio::test]
async fn export_then_import_reproduces_every_document_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap()).await;
    rich_namespace(&e, "src").await;
    let snap = e.existing(&ns("src"), true).await.unwrap();
    let mut out = Vec::new();
    let summary = e.export_ndjson(&snap, &mut out).await.unwrap();
    assert_eq!(summary.documents, snap.state.len());
    assert_eq!(summary.bytes, out.len() as u64);
    // Import exactly as `tidepool write` does: one document per line, in batches.
    let text = String::from_utf8(out.clone()).unwrap();
    let lines: Vec<Json> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len() as u64, summary.documents);
    for chunk in lines.chunks(100) {
        write(&e, "dst", json!({"upsert_rows": chunk, "distance_metric": "cosine_distance"})).await.unwrap();
    }
    assert_eq!(docs(&e, "dst").await, docs(&e, "src").await);
    let snap2 = e.existing(&ns("dst"), true).await.unwrap();
    let mut again = Vec::new();
    e.export_ndjson(&snap2, &mut again).await.unwrap();
    assert_eq!(again, out, "re-export of the import is byte-identical");
}

#[tokio::test]
async fn an_export_is_one_generation_even_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap()).await;
    let rows: Vec<Json> = (0..5000u64).map(|i| json!({"id": i, "v": i})).collect();
    let g = write(&e, "n", json!({ "upsert_rows": rows })).await.unwrap().generation;
    let snap = e.snapshot_at(&ns("n"), Some(g), true).await.unwrap();
    write(&e, "n", json!({"deletes": [1, 2, 3], "upsert_rows": [{"id": 9999}]})).await.unwrap();
    let mut out = Vec::new();
    let s = e.export_ndjson(&snap, &mut out).await.unwrap();
    assert_eq!((s.generation, s.documents), (g, 5000));
    let first: Json = serde_json::from_str(String::from_utf8(out).unwrap().lines().nth(1).unwrap()).unwrap();
    assert_eq!(first, json!({"id": 1, "v": 1}));
}

#[tokio::test]
async fn a_snapshot_restores_identically_on_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with(&dir.path().join("a"), Store::local(&dir.path().join("store-a")).unwrap()).await;
    rich_namespace(&e, "src").await;
    let file = dir.path().join("src.snap");
    let info = e.write_snapshot_file(&ns("src"), None, &file).await.unwrap();
    assert_eq!(info.bytes, std::fs::metadata(&file).unwrap().len());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|d| d.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");

    // Another node: its own data dir and store, another org/project even.
    let store_b = Store::local(&dir.path().join("store-b")).unwrap();
    let other = engine_with(&dir.path().join("b"), store_b.clone()).await;
    let dst = NsPath::new("x", "y", "restored").unwrap();
    let mut f = tokio::io::BufReader::new(tokio::fs::File::open(&file).await.unwrap());
    let (m, restored) = other.restore_snapshot(&dst, &mut f).await.unwrap();
    assert_eq!(restored.objects, info.objects);
    assert!(m.lineage.is_none());
    for k in m.object_keys() {
        assert!(dst.owns(&k), "{k}");
        assert_eq!(other.meta().refcount("x/y", &k).unwrap(), 1);
    }
    let got = other.existing(&dst, true).await.unwrap();
    let got: BTreeMap<DocId, Json> =
        got.state.iter_from(Bound::Unbounded).map(|d| (d.id.clone(), d.to_json())).collect();
    assert_eq!(got, docs(&e, "src").await);
    // Restoring over a namespace with documents is refused.
    let mut f = tokio::io::BufReader::new(tokio::fs::File::open(&file).await.unwrap());
    let err = other.restore_snapshot(&dst, &mut f).await.unwrap_err();
    assert!((err).kind() == ErrorKind::PreconditionFailed, "{err:?}");
    // The restored namespace is an ordinary one: writes, compaction.
    other
        .write(
            &dst,
            WriteRequest::from_json(&json!({"upsert_rows": [{"id": 77777, "vector": [0.0, 0.0, 1.0]}]}))
                .unwrap(),
        )
        .await
        .unwrap();
    other.compact(&dst, true).await.unwrap();
    assert!(other.existing(&dst, true).await.unwrap().state.get(&DocId::U64(77777)).is_some());
}

#[tokio::test]
async fn corrupted_snapshots_are_refused_with_a_clear_error_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine_with(&dir.path().join("data"), store.clone()).await;
    write(&e, "src", json!({"upsert_rows": [{"id": 1, "a": "x"}, {"id": 2, "a": "y", "n": 2.5}]}))
        .await
        .unwrap();
    write(&e, "src", json!({"upsert_rows": [{"id": 3}]})).await.unwrap();
    let mut good = Vec::new();
    e.write_snapshot(&ns("src"), None, &mut good).await.unwrap();
    let n = good.len();
    let mut cases: Vec<(String, Vec<u8>)> = Vec::new();
    // A flipped bit anywhere: header, manifest, record headers, data, footer.
    for pos in (0..n).step_by((n / 97).max(1)).chain([0, 9, 41, 50, n - 20, n - 10, n - 1]) {
        let mut b = good.clone();
        b[pos] ^= 0x10;
        cases.push((format!("bit flip at {pos}"), b));
    }
    for cut in [0, 10, 44, 60, n / 2, n - 16, n - 1] {
        cases.push((format!("truncated to {cut}"), good[..cut].to_vec()));
    }
    let mut extra = good.clone();
    extra.push(0);
    cases.push(("trailing byte".into(), extra));
    let mut wrong_version = good.clone();
    wrong_version[8] = 9;
    cases.push(("unknown version".into(), wrong_version));
    for (i, (what, bytes)) in cases.iter().enumerate() {
        let dst = ns(&format!("r{i}"));
        let err = e.restore_snapshot(&dst, &mut bytes.as_slice()).await.unwrap_err();
        assert!((err).kind() == ErrorKind::InvalidInput, "{what}: {err:?}");
        assert!(err.to_string().contains("invalid snapshot file"), "{what}: {err}");
        assert!(e.latest_manifest(&dst).await.unwrap().is_none(), "{what}: a namespace was created");
        assert!(store.list(&dst.prefix()).await.unwrap().is_empty(), "{what}: objects left behind");
        let verified = tidepool::engine::snapshot::verify_snapshot(&mut bytes.as_slice()).await;
        assert!(verified.is_err(), "{what}: verify accepted it");
    }
    let err = e.restore_snapshot(&ns("v"), &mut &good[..0]).await.unwrap_err().to_string();
    assert!(err.contains("shorter than a snapshot header"), "{err}");
    let mut not_snap = b"{\"id\": 1}\n".repeat(10);
    let err = e.restore_snapshot(&ns("v"), &mut not_snap.as_slice()).await.unwrap_err().to_string();
    assert!(err.contains("not a tidepool snapshot"), "{err}");
    not_snap.clear();
    // The good one still restores.
    e.restore_snapshot(&ns("ok"), &mut good.as_slice()).await.unwrap();
    assert_eq!(docs(&e, "ok").await, docs(&e, "src").await);
}

#[tokio::test]
async fn a_failed_snapshot_leaves_the_previous_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap()).await;
    write(&e, "src", json!({"upsert_rows": [{"id": 1}]})).await.unwrap();
    let file = dir.path().join("out.snap");
    e.write_snapshot_file(&ns("src"), None, &file).await.unwrap();
    let before = std::fs::read(&file).unwrap();
    let err = e.write_snapshot_file(&ns("missing"), None, &file).await.unwrap_err();
    assert!((err).kind() == ErrorKind::NotFound, "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

#[tokio::test]
async fn a_snapshot_of_an_older_generation_holds_that_generation() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine_with(&dir.path().join("data"), Store::local(&dir.path().join("store")).unwrap()).await;
    let g1 = write(&e, "src", json!({"upsert_rows": [{"id": 1}, {"id": 2}]})).await.unwrap().generation;
    write(&e, "src", json!({"deletes": [1]})).await.unwrap();
    let mut bytes = Vec::new();
    let info = e.write_snapshot(&ns("src"), Some(g1), &mut bytes).await.unwrap();
    assert_eq!(info.generation, g1);
    e.restore_snapshot(&ns("old"), &mut bytes.as_slice()).await.unwrap();
    assert_eq!(docs(&e, "old").await.len(), 2);
}
