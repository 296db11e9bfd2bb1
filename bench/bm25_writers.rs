//! What `bm25_scale` and `ingest_scale` share: the corpus's schema and its writers
//! (included by both with `#[path]`; not an example of its own).
//!
//! Invariant: both benchmarks write the same rows in the same requests (request `c` of `batch`
//! rows to writer `c % writers`), so their ingest figures compare.

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value as Json};
use tidepool::engine::{Engine, WriteRequest};
use tidepool::layout::NsPath;

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
            let (e, ns, text) = (Arc::clone(e), ns.clone(), Arc::clone(&text));
            tokio::spawn(async move {
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
                    e.write(&ns, WriteRequest::from_json(&body).unwrap()).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}
