//! The compressed document store (issue 39 item 4, storage-format 8.5.1): disk and read cost of
//! segment version 2's doc blocks against version 1's raw docs, on the same rows, in one run.
//!
//! Loads the Debian corpus (36,000 documents: `title`, `body`, `section`, `priority`,
//! `installed_size`, `version`, `package`; ids are row numbers) and builds the same segment
//! twice, with range checksums as compaction writes it: raw docs (`with_raw_docs`, version 1) and
//! doc blocks (version 2). Reports the docs section of each, then times, single-threaded,
//! through the segment's row readers inside an integrity scope (as a query on the query pool),
//! the two layouts alternating round by round (best of rounds):
//! * `scan`: `attrs_without_dense` of every row and a `section = games` test (a filter with no
//!   attribute index: every row decoded in row order);
//! * `attrs`: `attrs` of every row (an export, a compaction's merge);
//! * `top10`: 500 pages of 10 scattered rows, `doc(row)` each (a page of results; every row a
//!   different block, so nearly every read decodes a block).
//!
//! Usage: `CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example docstore_bench
//! -- [--corpus DIR] [--rounds N]`.

use std::io::BufRead;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value as Json;
use tidepool::format::segment::{Segment, SegmentBuilder, SECTION_DOCS, SECTION_DOC_BLOCKS};
use tidepool::model::{AttrMap, DocId, Document, IdType, Value};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn load(dir: &std::path::Path) -> Vec<Document> {
    let f = std::fs::File::open(dir.join("docs.jsonl")).expect("docs.jsonl");
    std::io::BufReader::new(f)
        .lines()
        .enumerate()
        .map(|(row, l)| {
            let j: Json = serde_json::from_str(&l.expect("line")).expect("json");
            let s = |k: &str| Value::Str(j[k].as_str().unwrap_or_default().to_owned());
            let attrs: AttrMap = [
                ("body", s("body")),
                ("installed_size", Value::Int(i128::from(j["installed_size"].as_i64().unwrap_or(0)))),
                ("package", s("id")),
                ("priority", s("priority")),
                ("section", s("section")),
                ("title", s("title")),
                ("version", s("version")),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
            Document { id: DocId::U64(row as u64), vector: None, attrs }
        })
        .collect()
}

fn build(docs: &[Document], raw: bool) -> (Segment, Duration) {
    let t = Instant::now();
    let mut b = SegmentBuilder::new(IdType::U64, None).with_range_checksums();
    if raw {
        b = b.with_raw_docs();
    }
    docs.iter().for_each(|d| b.push(d).expect("push"));
    let bytes = b.finish().expect("finish");
    let took = t.elapsed();
    (Segment::open(Bytes::from(bytes)).expect("open"), took)
}

fn scan(seg: &Segment) -> usize {
    let games = Value::Str("games".into());
    (0..seg.len())
        .filter(|&r| seg.attrs_without_dense(r).expect("row").get("section") == Some(&games))
        .count()
}

fn attrs(seg: &Segment) -> usize {
    (0..seg.len()).map(|r| seg.attrs(r).expect("row").len()).sum()
}

fn top10(seg: &Segment) -> usize {
    let n = seg.len() as u64;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut total = 0;
    for _ in 0..500 {
        for _ in 0..10 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            total += seg.doc(((x >> 33) % n) as usize).expect("row").attrs.len();
        }
    }
    total
}

/// A read class: its name and the reads it times.
type Class = (&'static str, fn(&Segment) -> usize);

fn timed(seg: &Segment, f: fn(&Segment) -> usize) -> (Duration, usize) {
    let t = Instant::now();
    let out = tidepool::integrity::within(|| f(seg)).expect("no rot");
    (t.elapsed(), out)
}

fn main() {
    let dir = PathBuf::from(arg("--corpus").unwrap_or_else(|| "/work/shared/data/debian".into()));
    let rounds: usize = arg("--rounds").and_then(|r| r.parse().ok()).unwrap_or(7);
    let docs = load(&dir);
    let (raw, raw_build) = build(&docs, true);
    let (packed, packed_build) = build(&docs, false);
    let raw_docs = raw.section(SECTION_DOCS).expect("kind 2").len();
    let packed_docs = packed.section(SECTION_DOC_BLOCKS).expect("kind 5").len();
    println!("rows {}", docs.len());
    println!(
        "docs section: raw (v1, kind 2) {raw_docs} B, blocks (v2, kind 5) {packed_docs} B, ratio {:.3}",
        raw_docs as f64 / packed_docs as f64
    );
    println!("segment file: raw {} B, blocks {} B", raw.byte_len(), packed.byte_len());
    println!(
        "build: raw {:.1} ms, blocks {:.1} ms",
        raw_build.as_secs_f64() * 1e3,
        packed_build.as_secs_f64() * 1e3
    );
    let classes: [Class; 3] = [("scan", scan), ("attrs", attrs), ("top10", top10)];
    for (name, f) in classes {
        let (mut best_raw, mut best_packed) = (Duration::MAX, Duration::MAX);
        for _ in 0..rounds {
            let (a, out_a) = timed(&raw, f);
            let (b, out_b) = timed(&packed, f);
            assert_eq!(out_a, out_b, "{name}: the layouts disagree");
            best_raw = best_raw.min(a);
            best_packed = best_packed.min(b);
        }
        println!(
            "{name:<6} raw {:>8.2} ms  blocks {:>8.2} ms  ratio {:.2}",
            best_raw.as_secs_f64() * 1e3,
            best_packed.as_secs_f64() * 1e3,
            best_packed.as_secs_f64() / best_raw.as_secs_f64()
        );
    }
}
