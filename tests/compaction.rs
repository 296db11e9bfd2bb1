//! Compaction and segments through the engine API.
//!
//! Invariants guarded: compaction never changes what a read returns; it
//! releases exactly the objects it folded; rows retired after a segment was
//! written are hidden by deletion sets; a crash at any step of a compaction
//! loses no acknowledged write and leaves only leaks; corrupt segment bytes
//! give a clean error; writers are never blocked by a merge; a backlog past
//! the bound gets backpressure; background indexing drains a backlog after
//! writes stop, and a tail below the thresholds is indexed once writes go
//! quiet (index status settles); the state a compaction installs (refolded,
//! not replayed) is the one a fresh load of its manifest builds.

use std::sync::Arc;

use serde_json::json;
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, EngineError, ErrorKind, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::model::{DocId, Value};
use tidepool::store::fault::FaultStore;
use tidepool::store::Store;

fn ns() -> NsPath {
    NsPath::new("o", "p", "c").unwrap()
}

fn manual() -> CompactionConfig {
    CompactionConfig { auto: false, ..CompactionConfig::default() }
}

async fn engine(data: &std::path::Path, store: Store, compaction: CompactionConfig) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data.to_path_buf(), store);
    cfg.compaction = compaction;
    Engine::open(cfg).await.unwrap()
}

async fn write(e: &Engine, body: serde_json::Value) -> Result<tidepool::engine::WriteResponse, EngineError> {
    e.write(&ns(), WriteRequest::from_json(&body)?).await
}

async fn ids(e: &Engine) -> Vec<u64> {
    let s = e.existing(&ns(), true).await.unwrap();
    s.state
        .iter()
        .map(|d| match d.id {
            DocId::U64(n) => n,
            _ => panic!("u64 ids"),
        })
        .collect()
}

async fn keys_under(store: &Store, part: &str) -> Vec<String> {
    store
        .list(&ns().prefix())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains(part))
        .collect()
}

#[tokio::test]
async fn compaction_folds_the_wal_into_a_segment_and_releases_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine(dir.path(), store.clone(), manual()).await;
    for i in 0..10u64 {
        write(&e, json!({"upsert_rows": [{"id": i, "vector": [i as f32, 1.0], "n": i}]})).await.unwrap();
    }
    assert_eq!(e.metadata(&ns()).await.unwrap().to_json()["index"]["status"], "updating");
    let r = e.compact(&ns(), true).await.unwrap();
    assert!(
        r.performed && r.wal_objects_folded == 10 && r.segments_written == 1 && r.rows_written == 10,
        "{r:?}"
    );
    assert!(keys_under(&store, "/wal/").await.is_empty(), "folded WAL objects are deleted");
    assert_eq!(keys_under(&store, "/segments/").await.len(), 1);
    assert_eq!(e.metadata(&ns()).await.unwrap().to_json()["index"]["status"], "up-to-date");
    assert_eq!(ids(&e).await, (0..10).collect::<Vec<_>>());
    let d = e.get(&ns(), &[DocId::U64(3)]).await.unwrap().pop().flatten().unwrap();
    assert_eq!(d.vector.as_deref(), Some(&[3.0f32, 1.0][..]));
    assert_eq!(d.attrs["n"], Value::Int(3));
    drop(e);
    let e = engine(dir.path(), store, manual()).await;
    assert_eq!(ids(&e).await, (0..10).collect::<Vec<_>>(), "segments are read back after a restart");
}

#[tokio::test]
async fn rows_changed_after_compaction_are_retired_by_deletion_sets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine(dir.path(), store.clone(), manual()).await;
    write(&e, json!({"upsert_rows": (0..20u64).map(|i| json!({"id": i, "n": i})).collect::<Vec<_>>()}))
        .await
        .unwrap();
    e.compact(&ns(), true).await.unwrap();
    write(
        &e,
        json!({"deletes": [1, 2], "patch_rows": [{"id": 3, "n": -3}], "upsert_rows": [{"id": 50, "n": 50}]}),
    )
    .await
    .unwrap();
    write(&e, json!({"delete_by_filter": ["n", "Gte", 15]})).await.unwrap();
    let expect: Vec<u64> = (0..15).filter(|i| *i != 1 && *i != 2).collect();
    assert_eq!(ids(&e).await, expect, "before the second compaction (overlay over a segment)");
    let r = e.compact(&ns(), true).await.unwrap();
    assert!(r.performed);
    assert_eq!(keys_under(&store, "/segments/").await.iter().filter(|k| k.ends_with(".del")).count(), 1);
    assert_eq!(ids(&e).await, expect, "after it (segments + deletion set)");
    let d3 = e.get(&ns(), &[DocId::U64(3)]).await.unwrap().pop().flatten().unwrap();
    assert_eq!(d3.attrs["n"], Value::Int(-3));
    assert_eq!(e.metadata(&ns()).await.unwrap().to_json()["approx_row_count"], expect.len());
    drop(e);
    let e = engine(dir.path(), store, manual()).await;
    assert_eq!(ids(&e).await, expect);
}

#[tokio::test]
async fn small_segments_are_merged_and_the_merged_ones_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let cfg = CompactionConfig { max_segments: 3, ..manual() };
    let e = engine(dir.path(), store.clone(), cfg).await;
    for round in 0..6u64 {
        write(
            &e,
            json!({"upsert_rows": [{"id": round * 10, "r": round}, {"id": round * 10 + 1, "r": round}]}),
        )
        .await
        .unwrap();
        e.compact(&ns(), true).await.unwrap();
    }
    let m = e.latest_manifest(&ns()).await.unwrap().unwrap();
    assert!(m.segments.len() <= 3, "{} segments", m.segments.len());
    let files = keys_under(&store, "data.seg").await;
    assert_eq!(files.len(), m.segments.len(), "merged segments were deleted: {files:?}");
    assert_eq!(ids(&e).await.len(), 12);
}

/// Segments of 10, 30 and 100 rows (each larger than the smaller ones together) are
/// past `max_segments` but no merge qualifies: a write does not start a round that
/// would fold it into one more segment (its WAL waits for the thresholds).
#[tokio::test]
async fn segments_no_merge_lowers_do_not_fold_each_write() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let cfg = CompactionConfig { max_segments: 2, ..manual() };
    let e = engine(dir.path(), store.clone(), cfg.clone()).await;
    let mut next = 0u64;
    for n in [10u64, 30, 100] {
        let rows: Vec<_> = (next..next + n).map(|i| json!({"id": i})).collect();
        write(&e, json!({"upsert_rows": rows})).await.unwrap();
        e.compact(&ns(), true).await.unwrap();
        next += n;
    }
    drop(e);
    let e = engine(dir.path(), store, CompactionConfig { auto: true, ..cfg }).await;
    write(&e, json!({"upsert_rows": [{"id": next}]})).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    while e.compactions_running() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let m = e.latest_manifest(&ns()).await.unwrap().unwrap();
    let rows: Vec<u64> = m.segments.iter().map(|s| s.rows).collect();
    assert_eq!((rows.len(), m.wal.len()), (3, 1), "segments {rows:?}");
    assert_eq!(ids(&e).await.len(), next as usize + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_keep_committing_while_a_compaction_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine(dir.path(), store, manual()).await;
    write(&e, json!({"upsert_rows": (0..2000u64).map(|i| json!({"id": i})).collect::<Vec<_>>()}))
        .await
        .unwrap();
    let writer = {
        let e = e.clone();
        tokio::spawn(async move {
            for i in 0..40u64 {
                write(&e, json!({"upsert_rows": [{"id": 10_000 + i}], "deletes": [i]})).await.unwrap();
            }
        })
    };
    let compactor = {
        let e = e.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                e.compact(&ns(), true).await.unwrap();
            }
        })
    };
    writer.await.unwrap();
    compactor.await.unwrap();
    let got = ids(&e).await;
    assert_eq!(got.len(), 2000);
    assert!(got.contains(&10_039) && !got.contains(&0) && got.contains(&40));
}

#[tokio::test]
async fn a_crash_at_any_step_of_a_compaction_loses_nothing() {
    for k in 0..8u64 {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        {
            let local = Store::local(&store_dir).unwrap();
            let fault = FaultStore::new(local.inner().clone());
            let e = engine(&dir.path().join("a"), Store::new(fault.clone(), "faulty"), manual()).await;
            write(&e, json!({"upsert_rows": (0..10u64).map(|i| json!({"id": i})).collect::<Vec<_>>()}))
                .await
                .unwrap();
            e.compact(&ns(), true).await.unwrap();
            write(&e, json!({"deletes": [0], "upsert_rows": [{"id": 99}]})).await.unwrap();
            fault.crash_after_mutations(k);
            let _ = e.compact(&ns(), true).await;
        }
        let e = engine(&dir.path().join("a"), Store::local(&store_dir).unwrap(), manual()).await;
        let got = ids(&e).await;
        let expect: Vec<u64> = (1..10).chain([99]).collect();
        assert_eq!(got, expect, "crash after {k} mutations");
        // And the namespace still compacts and serves.
        e.compact(&ns(), true).await.unwrap();
        assert_eq!(ids(&e).await, expect);
    }
}

#[tokio::test]
async fn a_corrupt_segment_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    {
        let e = engine(&dir.path().join("a"), Store::local(&store_dir).unwrap(), manual()).await;
        write(&e, json!({"upsert_rows": (0..10u64).map(|i| json!({"id": i, "s": "x"})).collect::<Vec<_>>()}))
            .await
            .unwrap();
        e.compact(&ns(), true).await.unwrap();
    }
    let seg = keys_under(&Store::local(&store_dir).unwrap(), "data.seg").await.pop().unwrap();
    let path = store_dir.join(&seg);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();
    let e = engine(&dir.path().join("b"), Store::local(&store_dir).unwrap(), manual()).await;
    let err = e.existing(&ns(), true).await.unwrap_err();
    assert!((err).kind() == ErrorKind::Corrupted, "{err:?}");
    std::fs::write(&path, &bytes[..mid]).unwrap();
    let e2 = engine(&dir.path().join("c"), Store::local(&store_dir).unwrap(), manual()).await;
    assert!((e2.existing(&ns(), true).await.unwrap_err()).kind() == ErrorKind::Corrupted);
}

#[tokio::test]
async fn a_backlog_past_the_bound_gets_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CompactionConfig { backlog_bytes: 1, ..manual() };
    let e = engine(dir.path(), Store::local(&dir.path().join("store")).unwrap(), cfg).await;
    write(&e, json!({"upsert_rows": [{"id": 1}]})).await.unwrap();
    let err = write(&e, json!({"upsert_rows": [{"id": 2}]})).await.unwrap_err();
    assert!(err.kind() == ErrorKind::Backpressure && err.retry_after_ms() > 0, "{err:?}");
    write(&e, json!({"upsert_rows": [{"id": 2}], "disable_backpressure": true})).await.unwrap();
    e.compact(&ns(), true).await.unwrap();
    write(&e, json!({"upsert_rows": [{"id": 3}]})).await.unwrap();
    assert_eq!(ids(&e).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn thresholds_trigger_background_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = CompactionConfig { wal_objects: 4, ..CompactionConfig::default() };
    let e = engine(dir.path(), Store::local(&dir.path().join("store")).unwrap(), cfg).await;
    for i in 0..4u64 {
        write(&e, json!({"upsert_rows": [{"id": i}]})).await.unwrap();
    }
    for _ in 0..200 {
        if e.latest_manifest(&ns()).await.unwrap().unwrap().segments.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let m = e.latest_manifest(&ns()).await.unwrap().unwrap();
    assert_eq!(m.segments.len(), 1, "background compaction ran");
    assert_eq!(ids(&e).await, vec![0, 1, 2, 3]);
}

async fn wal_objects(e: &Engine) -> usize {
    e.existing(&ns(), true).await.unwrap().manifest.map_or(0, |m| m.wal.len())
}

/// Poll `f` until it holds, for up to 10 s.
async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let t = std::time::Instant::now();
    while !f().await {
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_small_tail_is_indexed_once_writes_go_quiet_so_status_settles() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine(dir.path(), store, CompactionConfig { idle_ms: 300, ..CompactionConfig::default() }).await;
    for i in 0..3u64 {
        write(&e, json!({"upsert_rows": [{"id": i}]})).await.unwrap();
    }
    assert_eq!(e.metadata(&ns()).await.unwrap().to_json()["index"]["status"], "updating");
    eventually("status up-to-date", || async {
        e.metadata(&ns()).await.unwrap().to_json()["index"]["status"] == "up-to-date"
    })
    .await;
    assert_eq!(ids(&e).await, vec![0, 1, 2]);

    // Writes that keep coming push the idle timer back: no compaction between them.
    let idle = CompactionConfig { idle_ms: 1_500, ..CompactionConfig::default() };
    let e2 = engine(&dir.path().join("b"), Store::memory(), idle).await;
    for i in 0..6u64 {
        write(&e2, json!({"upsert_rows": [{"id": i}]})).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(wal_objects(&e2).await, 6, "no idle compaction while writes keep coming");
    eventually("idle tail indexed", || async { wal_objects(&e2).await == 0 }).await;
}

/// Automatic compaction on, thresholds only at 4 WAL objects, no idle timer.
fn manual_idle() -> CompactionConfig {
    CompactionConfig { wal_objects: 4, idle_ms: 0, ..CompactionConfig::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_indexing_drains_the_backlog_after_writes_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine(dir.path(), store, manual_idle()).await;
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let e = e.clone();
            tokio::spawn(async move {
                for i in 0..15u64 {
                    write(&e, json!({"upsert_rows": [{"id": w * 100 + i}]})).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    eventually("the backlog below the threshold", || async { wal_objects(&e).await < 4 }).await;
    assert_eq!(ids(&e).await.len(), 60);
}

/// A write that lands while a background round runs (its manifest still lists the WAL being folded,
/// so it crosses the thresholds, and the round holds the lock) leaves a tail below them: the drain
/// arms the idle timer when it ends, so that tail is indexed too instead of staying `updating`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_written_during_a_round_is_indexed_after_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let cfg = CompactionConfig { wal_objects: 2, idle_ms: 300, ..CompactionConfig::default() };
    let e = engine(dir.path(), store, cfg).await;
    let rows = |from: u64, n: u64| -> Vec<serde_json::Value> {
        (from..from + n).map(|i| json!({"id": i, "vector": (0..16).map(|j| ((i * 31 + j) % 17) as f32).collect::<Vec<_>>()})).collect()
    };
    write(&e, json!({"upsert_rows": rows(0, 2000), "distance_metric": "euclidean_squared"})).await.unwrap();
    write(&e, json!({"upsert_rows": rows(2000, 2000)})).await.unwrap(); // crosses the threshold: a round starts
    write(&e, json!({"upsert_rows": rows(4000, 1)})).await.unwrap(); // lands while it runs
    let t = std::time::Instant::now();
    while wal_objects(&e).await > 0 {
        assert!(t.elapsed() < std::time::Duration::from_secs(120), "the tail was never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(ids(&e).await.len(), 4001);
}

/// `tidepool_compaction_loads_total{how}` as the engine's metrics render it.
fn compaction_loads(e: &Engine, how: &str) -> u64 {
    let text = e.metrics().render(&tidepool::metrics::Gauges::default(), None);
    let prefix = format!("tidepool_compaction_loads_total{{how=\"{how}\"}} ");
    let line =
        text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    line[prefix.len()..].trim().parse().unwrap()
}

/// Everything a load derives from a manifest: documents in id order, count,
/// idempotency keys, schema and settings.
async fn loaded_state(e: &Engine) -> (u64, Vec<tidepool::model::Document>, String, String) {
    let s = e.existing(&ns(), true).await.unwrap();
    let docs: Vec<_> = s.state.iter().map(|d| (*d).clone()).collect();
    assert_eq!(s.state.len(), docs.len() as u64, "len counts the live documents");
    let mut keys: Vec<_> = s.state.idempotency.iter().map(|(k, c)| format!("{k}={c:?}")).collect();
    keys.sort();
    let settings = format!(
        "{:?} {:?} {:?} {:?} {}",
        s.state.schema, s.state.id_type, s.state.distance_metric, s.state.vector_dim, s.state.logical_bytes
    );
    (s.generation(), docs, keys.join(","), settings)
}

/// The state a compaction installs (refolded from the states around it, not
/// replayed) is the one a fresh load of the same manifest builds, also when
/// writes of every kind land while the rounds run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_a_compaction_installs_equals_a_fresh_load_of_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::local(&dir.path().join("store")).unwrap();
    let e = engine(dir.path(), store.clone(), manual()).await;
    let row = |i: u64| json!({"id": i, "vector": [i as f32, 1.0], "a": i % 7, "b": format!("b{}", i % 3)});
    for chunk in 0..3u64 {
        write(&e, json!({"upsert_rows": (chunk * 400..(chunk + 1) * 400).map(row).collect::<Vec<_>>()}))
            .await
            .unwrap();
    }
    let writer = {
        let e = e.clone();
        tokio::spawn(async move {
            for i in 0..48u64 {
                let body = match i % 8 {
                    0 => {
                        json!({"upsert_rows": [row(5000 + i), row(i * 13)], "idempotency_key": format!("k{i}")})
                    }
                    1 => json!({"patch_rows": [{"id": i * 7, "a": null, "c": true}]}),
                    2 => json!({"deletes": [i * 11, 5000 + i - 2]}),
                    3 => json!({"delete_by_filter": ["And", [["a", "Eq", 3], ["b", "Eq", "b0"]]]}),
                    4 => json!({"patch_by_filter": {"filters": ["b", "Eq", "b1"], "patch": {"d": i}}}),
                    5 => json!({"schema": {format!("s{i}"): "string"}, "upsert_rows": [row(i * 17)]}),
                    6 => json!({"upsert_rows": [row(i * 3)], "upsert_condition": ["a", "Lt", 4]}),
                    _ => json!({"deletes": [i * 5, i * 5 + 1], "delete_condition": ["b", "Eq", "b2"]}),
                };
                write(&e, body).await.unwrap();
            }
        })
    };
    let compactor = {
        let e = e.clone();
        tokio::spawn(async move {
            let mut performed = 0;
            for _ in 0..6 {
                performed += u64::from(e.compact(&ns(), true).await.unwrap().performed);
            }
            performed
        })
    };
    writer.await.unwrap();
    let performed = compactor.await.unwrap();
    // One process: every round's commit fits the refold (no WAL replayed).
    assert!(performed >= 1);
    assert_eq!((compaction_loads(&e, "refolded"), compaction_loads(&e, "replayed")), (performed, 0));
    let mine = loaded_state(&e).await;
    // A second engine (own data dir and cache) loads the same manifest by
    // replaying its WAL on top of its segments.
    let other_dir = tempfile::tempdir().unwrap();
    let fresh = engine(other_dir.path(), store.clone(), manual()).await;
    let theirs = loaded_state(&fresh).await;
    assert_eq!(mine.0, theirs.0, "same generation");
    assert_eq!(mine.1.len(), theirs.1.len(), "same number of documents");
    assert_eq!(mine, theirs);
    // One more round with nothing written during it ends the same way.
    e.compact(&ns(), true).await.unwrap();
    let after = loaded_state(&e).await;
    let third_dir = tempfile::tempdir().unwrap();
    let fresh = engine(third_dir.path(), store, manual()).await;
    assert_eq!(after, loaded_state(&fresh).await);
}

/// Resident bytes of this process's mappings of the file of object `key` (`/proc/self/smaps`: every
/// mapping whose path ends with the key, a store's file or the cache's copy of it); None when
/// nothing maps it.
fn resident_bytes_of(key: &str) -> Option<u64> {
    let suffix = format!("/{key}");
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let (mut ours, mut mapped) = (false, false);
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            ours = line.ends_with(&suffix);
            mapped |= ours;
        } else if let (true, Some(v)) = (ours, line.strip_prefix("Rss:")) {
            kib += v.trim().trim_end_matches(" kB").parse::<u64>().unwrap();
        }
    }
    mapped.then_some(kib * 1024)
}

/// A merge reads its source segments' rows through their mappings; it gives their pages back as it
/// goes, so a merge does not keep the vectors of the segments it reads resident until it commits
/// (a 3M namespace's serving RSS carried them while a merge ran). The merge is held at its
/// segment put (everything read and built) and the source's resident bytes are read then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_gives_back_the_pages_of_the_segments_it_read() {
    // Wide rows, few of them: 4 MB of vectors a segment, and no index to build for the source.
    const DIM: usize = 1024;
    const ROWS: u64 = 1_000;
    let rows = |from: u64| -> Vec<serde_json::Value> {
        let v = |i: u64| (0..DIM as u64).map(|j| ((i * 31 + j * 7) % 97) as f32 / 97.0).collect::<Vec<_>>();
        (from..from + ROWS).map(|i| json!({"id": i, "vector": v(i)})).collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let fault = FaultStore::new(Store::local(&store_dir).unwrap().inner().clone());
    let cfg = CompactionConfig { max_segments: 1, ..manual() };
    let e = engine(&dir.path().join("data"), Store::new(fault.clone(), "faulty"), cfg).await;
    write(&e, json!({"upsert_rows": rows(0), "distance_metric": "euclidean_squared"})).await.unwrap();
    e.compact(&ns(), true).await.unwrap();
    write(&e, json!({"upsert_rows": rows(ROWS)})).await.unwrap();
    e.compact(&ns(), true).await.unwrap();
    let sources = keys_under(&Store::local(&store_dir).unwrap(), "data.seg").await;
    assert_eq!(sources.len(), 2, "two segments to merge: {sources:?}");
    let vector_bytes = 2 * ROWS * DIM as u64 * 4;

    fault.hold_puts("data.seg");
    let merge = tokio::spawn({
        let e = e.clone();
        async move { e.compact(&ns(), true).await }
    });
    let t = std::time::Instant::now();
    while fault.waiting_puts() == 0 {
        assert!(!merge.is_finished(), "the merge ended before its segment put");
        assert!(t.elapsed() < std::time::Duration::from_secs(120), "the merge never reached its segment put");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let resident: u64 = sources
        .iter()
        .map(|k| resident_bytes_of(k).expect("a merged segment is mapped while it is read"))
        .sum();
    fault.release_puts();
    let r = merge.await.unwrap().unwrap();
    assert_eq!((r.rows_written, r.segments_merged), (2 * ROWS, 2), "{r:?}");
    assert!(
        resident < vector_bytes / 10,
        "the merge kept {resident} bytes of the segments it read resident ({vector_bytes} bytes of vectors)"
    );
    assert_eq!(ids(&e).await.len() as u64, 2 * ROWS);
}
