//! What `bm25_scale` and `ingest_scale` share: the corpus's schema, its writers and the
//! fold-threshold options (included by both with `#[path]`; not an example of its own).
//!
//! Invariant: both benchmarks write the same rows in the same requests (request `c` of `batch`
//! rows to writer `c % writers`), so their ingest figures compare. A writer's requests are built
//! on a thread of their own, ahead of its writes, as a client process builds its next request
//! while the last one is in flight.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, WriteRequest};
use tidepool::layout::NsPath;
use tokio::sync::mpsc::Receiver;

/// The compaction's fold thresholds, each where a `--wal-objects` / `--wal-bytes` option gave it
/// (the engine's default otherwise).
pub fn fold_thresholds(c: &mut CompactionConfig, wal_objects: Option<usize>, wal_bytes: Option<u64>) {
    c.wal_objects = wal_objects.unwrap_or(c.wal_objects);
    c.wal_bytes = wal_bytes.unwrap_or(c.wal_bytes);
}

/// `title` and `body`, full-text searched as tantivy's side analyses them.
fn schema() -> Json {
    let o = json!({"tokenizer": "word_v3", "stemming": true, "remove_stopwords": false});
    json!({"title": {"type": "string", "full_text_search": o}, "body": {"type": "string", "full_text_search": o}})
}

/// Writes `corpus.tsv` under `dir` with `writers` concurrent writers of `batch`-row requests.
pub async fn write_all(e: &Arc<Engine>, ns: &NsPath, dir: &Path, writers: usize, batch: usize) {
    let text = Arc::new(std::fs::read_to_string(dir.join("corpus.tsv")).expect("corpus.tsv"));
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (e, ns) = (Arc::clone(e), ns.clone());
            let mut requests = requests_of(Arc::clone(&text), w, writers, batch);
            tokio::spawn(async move {
                while let Some(request) = requests.recv().await {
                    e.write(&ns, request).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Writer `w`'s requests, built on a thread of their own at most two ahead of its writes: a
/// client serialises its next request while the last one is in flight, and in its own process,
/// where building it in the writer's task made the engine wait for it between requests.
fn requests_of(text: Arc<String>, w: usize, writers: usize, batch: usize) -> Receiver<WriteRequest> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    std::thread::spawn(move || {
        let lines: Vec<&str> = text.lines().collect();
        for (c, chunk) in lines.chunks(batch).enumerate().filter(|(c, _)| c % writers == w) {
            let rows: Vec<Json> = chunk
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let (title, body) = l.split_once('\t').unwrap_or((l, ""));
                    json!({"id": c * batch + i, "title": title, "body": body})
                })
                .collect();
            let body = json!({"upsert_rows": rows, "schema": schema()});
            if tx.blocking_send(WriteRequest::from_json(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}
