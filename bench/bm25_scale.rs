//! BM25 at scale (issue 39): tidepool against tantivy on a synthetic corpus of N documents with
//! the Debian corpus's word statistics (`bench/bm25_corpus.py` writes it and the query classes),
//! both in-process, alternating in the same run.
//!
//! Ours: the documents written through the engine (`Engine::write`, `--writers` concurrent writers
//! of `--batch` rows, automatic compaction on, as a daemon runs), then compacted until nothing is
//! left in the WAL ("ingest to searchable"); each query is `Sum(title BM25, body BM25)`, top 10,
//! through the entry point the HTTP handler calls (`Engine::read` → `ReadView::query`: the
//! snapshot, the query pool, evaluation) and, beside it, the evaluation alone
//! (`query::execute_request` on the loaded state). The peer: `bench/tantivy_scale.py` (pip
//! `tantivy`, `en_stem`, `parse_query(q, ["title", "body"])` + `search(q, 10)`), driven through a
//! pipe so that rounds alternate ours / tantivy under the same machine load. A query's time is its
//! best over `--rounds` rounds; the table gives p50 and p99 per class and the p50 ratio.
//!
//! Checks, reported not asserted: our top 10 equals the exhaustive evaluation (every segment's
//! `search_fields_exhaustive` under the same global statistics: ids and f32 score bits, ties by
//! ascending id), and agrees with tantivy's (same ids in the same order; same id set; largest
//! score difference).
//!
//! The engine's data directory (`DIR/tp`) and tantivy's index (`DIR/tantivy`) are kept, so a
//! second run only queries: delete them to measure ingest again.
//!
//! Usage: `python3 bench/bm25_corpus.py --n N --out DIR && cargo run --profile profiling
//! --example bm25_scale -- --dir DIR [--rounds 5] [--writers 2] [--batch 1000] [--no-peer]
//! [--only-ours [--class NAME]] [--http BINARY] [--wal-objects N] [--wal-bytes N]` (`--only-ours`:
//! no exhaustive check either, for a profiler; `--class`: only that class's queries; `--http`: then the classes over HTTP through the
//! daemon `BINARY` on the same data, beside the HTTP floor, `bench/bm25_http.py`; `--wal-objects`,
//! `--wal-bytes`: the compaction's fold thresholds for a fresh ingest, default the engine's).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value as Json};
use tidepool::engine::NsState;
use tidepool::engine::{Engine, EngineConfig, ReadOptions};
use tidepool::index::text::{search_fields_exhaustive, Analyzer, Bm25Params, CorpusStats, FieldQuery};
use tidepool::layout::NsPath;
use tidepool::model::DocId;
use tidepool::query::{execute_request, QueryRequest};
use tidepool::schema::FullTextSearch;
use tidepool::store::Store;
use tidepool::wire::query::parse_request;

const CLASSES: [&str; 5] = ["rare", "title", "common", "long", "absent"];

/// tantivy's `en_stem`: split on non-alphanumerics, lowercase, Snowball English, no stop words.
fn en_stem() -> FullTextSearch {
    FullTextSearch {
        tokenizer: "word_v3".into(),
        stemming: true,
        remove_stopwords: false,
        ..Default::default()
    }
}

#[path = "bm25_writers.rs"]
mod bm25_writers;
use bm25_writers::{fold_thresholds, write_all};

struct Query {
    class: String,
    text: String,
    req: QueryRequest,
}

fn read_queries(dir: &Path) -> Vec<Query> {
    let s = std::fs::read_to_string(dir.join("queries.jsonl")).expect("queries.jsonl");
    s.lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).expect("query line");
            let text = v["text"].as_str().expect("text").to_owned();
            let body =
                json!({"rank_by": ["Sum", [["title", "BM25", text], ["body", "BM25", text]]], "top_k": 10});
            Query {
                class: v["class"].as_str().expect("class").to_owned(),
                req: parse_request(&body, false).unwrap(),
                text,
            }
        })
        .collect()
}

/// Writes `corpus.tsv` with `writers` concurrent writers (request `c` goes to writer `c % writers`),
/// then compacts until the WAL is empty. Returns (seconds writing, seconds until all indexed).
async fn ingest(e: &Arc<Engine>, ns: &NsPath, dir: &Path, writers: usize, batch: usize) -> (f64, f64) {
    let t = Instant::now();
    write_all(e, ns, dir, writers, batch).await;
    let written = t.elapsed().as_secs_f64();
    while e.compact(ns, true).await.unwrap().performed {}
    (written, t.elapsed().as_secs_f64())
}

/// Bytes under `dir`, by whether the path names a segment, a WAL object or something else.
fn disk(dir: &Path) -> (u64, u64, u64) {
    let (mut seg, mut wal, mut other) = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let (p, m) = (ent.path(), ent.metadata().unwrap());
            if m.is_dir() {
                stack.push(p);
                continue;
            }
            let s = p.to_string_lossy();
            let slot = if s.contains("/segments/") {
                &mut seg
            } else if s.contains("/wal/") {
                &mut wal
            } else {
                &mut other
            };
            *slot += m.len();
        }
    }
    (seg, wal, other)
}

/// The exhaustive top 10 of `Sum(title, body)`: global statistics over every segment (nothing is
/// deleted or in the overlay after the compaction), every posting scored, ties by ascending id.
fn exhaustive(state: &NsState, an: &Analyzer, text: &str) -> Vec<(DocId, u32)> {
    let params = Bm25Params::from_options(&en_stem());
    let terms = an.query_terms(text);
    let (mut st, mut sb) = (CorpusStats::default(), CorpusStats::default());
    let segs = state.segments();
    for s in segs {
        st.add_index(&s.text_index("title").expect("title index"), &terms);
        sb.add_index(&s.text_index("body").expect("body index"), &terms);
    }
    let mut all = Vec::new();
    for s in segs {
        let (t, b) = (s.text_index("title").unwrap(), s.text_index("body").unwrap());
        let fq = [FieldQuery::plain(&t, &terms, &st, params), FieldQuery::plain(&b, &terms, &sb, params)];
        let live = |r: u32| !s.deleted.contains(r as usize);
        for (row, score) in search_fields_exhaustive(&fq, 10, Some(&live)).unwrap() {
            all.push((s.seg.try_id(row as usize).unwrap(), score));
        }
    }
    all.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    all.into_iter().take(10).map(|(id, s)| (id, s.to_bits())).collect()
}

fn top_of(rows: &[tidepool::query::Row]) -> Vec<(DocId, u32)> {
    rows.iter().map(|r| (r.doc.id.clone(), (r.dist.unwrap_or(f64::NAN) as f32).to_bits())).collect()
}

/// The tantivy peer process, spoken to line by line.
struct Peer {
    child: std::process::Child,
    out: std::io::BufReader<std::process::ChildStdout>,
}

impl Peer {
    fn start(corpus: &Path, index: &Path) -> Peer {
        let mut child = std::process::Command::new("target/bench-venv/bin/python")
            .args(["bench/tantivy_scale.py", "serve"])
            .args([corpus, index])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start tantivy peer (bash bench/peers.sh first)");
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut p = Peer { child, out };
        p.line();
        p
    }

    fn line(&mut self) -> Json {
        let mut s = String::new();
        std::io::BufRead::read_line(&mut self.out, &mut s).expect("peer output");
        serde_json::from_str(&s).expect("peer json")
    }

    fn ask(&mut self, cmd: &str) -> Json {
        use std::io::Write;
        writeln!(self.child.stdin.as_mut().unwrap(), "{cmd}").unwrap();
        self.line()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_peer(corpus: &Path, index: &Path) -> Json {
    let out = std::process::Command::new("target/bench-venv/bin/python")
        .args(["bench/tantivy_scale.py", "build"])
        .args([corpus, index])
        .output()
        .expect("tantivy build");
    assert!(out.status.success(), "tantivy build: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("build json")
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn min_into(best: &mut [f64], round: &[f64]) {
    for (b, r) in best.iter_mut().zip(round) {
        *b = b.min(*r);
    }
}

struct Args {
    dir: PathBuf,
    rounds: usize,
    writers: usize,
    batch: usize,
    peer: bool,
    only_ours: bool,
    /// Only the queries of this class (a profile of one class).
    class: Option<String>,
    /// The daemon binary: after the in-process rounds, the classes over HTTP beside the HTTP
    /// floor (`bench/bm25_http.py`, same run).
    http: Option<PathBuf>,
    /// The compaction's fold thresholds for a fresh ingest (default: the engine's).
    wal_objects: Option<usize>,
    wal_bytes: Option<u64>,
}

fn args() -> Args {
    let mut a = Args {
        dir: PathBuf::new(),
        rounds: 5,
        writers: 2,
        batch: 1000,
        peer: true,
        only_ours: false,
        class: None,
        http: None,
        wal_objects: None,
        wal_bytes: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse().ok()).expect("a number");
        match x.as_str() {
            "--dir" => a.dir = PathBuf::from(it.next().expect("--dir DIR")),
            "--rounds" => a.rounds = num(),
            "--writers" => a.writers = num(),
            "--batch" => a.batch = num(),
            "--no-peer" => a.peer = false,
            "--only-ours" => (a.peer, a.only_ours) = (false, true),
            "--class" => a.class = Some(it.next().expect("--class NAME")),
            "--http" => a.http = Some(PathBuf::from(it.next().expect("--http BINARY"))),
            "--wal-objects" => a.wal_objects = Some(num()),
            "--wal-bytes" => a.wal_bytes = Some(num() as u64),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let a = args();
    let mut queries = read_queries(&a.dir);
    if let Some(c) = &a.class {
        // The peer times every query of the file: a class alone is for profiling ours.
        assert!(!a.peer, "--class needs --only-ours");
        queries.retain(|q| &q.class == c);
    }
    let data = a.dir.join("tp");
    let fresh = !data.join("ingest.json").exists();
    let store = Store::local(&data.join("store")).unwrap();
    let mut cfg = EngineConfig::new(data.clone(), store);
    fold_thresholds(&mut cfg.compaction, a.wal_objects, a.wal_bytes);
    let e = Engine::open(cfg).await.unwrap();
    // The daemon's namespace when it runs without keys (default/default): `--http` serves this data.
    let ns = NsPath::new("default", "default", "docs").unwrap();
    if fresh {
        let (w, s) = ingest(&e, &ns, &a.dir, a.writers, a.batch).await;
        std::fs::write(data.join("ingest.json"), json!({"write_s": w, "searchable_s": s}).to_string())
            .unwrap();
    }
    let ing: Json =
        serde_json::from_str(&std::fs::read_to_string(data.join("ingest.json")).unwrap()).unwrap();
    let state = e.existing(&ns, true).await.unwrap().state;
    let (seg, wal, other) = disk(&data.join("store"));
    println!(
        "tidepool: {} docs in {} segments, overlay {}; ingest ({} writers): written {:.1} s, searchable {:.1} s{}",
        state.len(),
        state.segments().len(),
        state.overlay().len(),
        a.writers,
        ing["write_s"].as_f64().unwrap(),
        ing["searchable_s"].as_f64().unwrap(),
        if fresh { "" } else { " (earlier run)" }
    );
    println!("tidepool disk: segments {seg} B, WAL {wal} B, other {other} B, total {} B", seg + wal + other);
    let tdir = a.dir.join("tantivy");
    if a.peer && !tdir.exists() {
        let b = build_peer(&a.dir, &tdir);
        std::fs::write(a.dir.join("tantivy.json"), b.to_string()).unwrap();
    }
    let mut peer = a.peer.then(|| Peer::start(&a.dir, &tdir));
    if let Ok(b) = std::fs::read_to_string(a.dir.join("tantivy.json")) {
        let b: Json = serde_json::from_str(&b).unwrap();
        println!(
            "tantivy: build ({} threads) {:.1} s, index+store {} B",
            a.writers, b["build_s"], b["bytes"]
        );
    }

    let n = queries.len();
    let (mut read, mut eval, mut theirs) = (vec![f64::MAX; n], vec![f64::MAX; n], vec![f64::MAX; n]);
    let mut tops = Vec::new();
    for round in 0..a.rounds {
        let mut r = Vec::with_capacity(n);
        for q in &queries {
            let t = Instant::now();
            let ans = e.read(&ns, ReadOptions::default()).await.unwrap().query(&q.req).await.unwrap();
            r.push(t.elapsed().as_secs_f64() * 1e3);
            if round == 0 {
                tops.push(top_of(ans.results[0].rows.as_deref().unwrap_or_default()));
            }
        }
        min_into(&mut read, &r);
        if let Some(p) = peer.as_mut() {
            let v = p.ask("time");
            let ms: Vec<f64> = v["ms"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            min_into(&mut theirs, &ms);
        }
        let mut r = Vec::with_capacity(n);
        for q in &queries {
            let t = Instant::now();
            // In an integrity scope, as the query pool runs it (outside one, every read is checked again).
            std::hint::black_box(
                tidepool::integrity::within(|| execute_request(&q.req, &state).unwrap()).unwrap(),
            );
            r.push(t.elapsed().as_secs_f64() * 1e3);
        }
        min_into(&mut eval, &r);
    }

    // Agreement.
    let an = Analyzer::new(&en_stem());
    let same_exh: Vec<bool> = if a.only_ours {
        vec![true; n]
    } else {
        queries.iter().zip(&tops).map(|(q, t)| exhaustive(&state, &an, &q.text) == *t).collect()
    };
    let peer_top: Option<Vec<Vec<(u64, f64)>>> = peer.as_mut().map(|p| {
        let v = p.ask("top");
        v["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                l.as_array()
                    .unwrap()
                    .iter()
                    .map(|h| (h[0].as_u64().unwrap(), h[1].as_f64().unwrap()))
                    .collect()
            })
            .collect()
    });
    drop(peer);

    println!(
        "| class | queries | ours p50 ms (read path) | ours p99 | ours p50 (evaluate) | tantivy p50 ms | tantivy p99 | \
         p50 ratio (read path) | p50 ratio (evaluate) | = exhaustive | same top-10 as tantivy (order / set) | max score diff |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for class in CLASSES {
        let idx: Vec<usize> = (0..n).filter(|&i| queries[i].class == class).collect();
        if idx.is_empty() {
            continue;
        }
        let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let (mut r, mut ev, mut th) = (pick(&read), pick(&eval), pick(&theirs));
        let (r50, r99, e50) = (pct(&mut r, 0.5), pct(&mut r, 0.99), pct(&mut ev, 0.5));
        let exh = idx.iter().filter(|&&i| same_exh[i]).count();
        let (mut order, mut set, mut diff) = (0, 0, 0f64);
        if let Some(pt) = &peer_top {
            for &i in &idx {
                let ours: Vec<u64> = tops[i].iter().map(|(id, _)| id_u64(id)).collect();
                let them: Vec<u64> = pt[i].iter().map(|h| h.0).collect();
                order += usize::from(ours == them);
                let (mut so, mut st) = (ours.clone(), them.clone());
                so.sort_unstable();
                st.sort_unstable();
                set += usize::from(so == st);
                for (id, bits) in &tops[i] {
                    if let Some(h) = pt[i].iter().find(|h| h.0 == id_u64(id)) {
                        diff = diff.max((f64::from(f32::from_bits(*bits)) - h.1).abs());
                    }
                }
            }
        }
        let (t50, t99) =
            if peer_top.is_some() { (pct(&mut th, 0.5), pct(&mut th, 0.99)) } else { (f64::NAN, f64::NAN) };
        println!(
            "| {class} | {} | {r50:.3} | {r99:.3} | {e50:.3} | {t50:.3} | {t99:.3} | {:.2} | {:.2} | {exh}/{} | {order} / {set} | {diff:.1e} |",
            idx.len(),
            r50 / t50,
            e50 / t50,
            idx.len()
        );
    }
    if let Some(bin) = &a.http {
        drop(state);
        drop(e);
        over_http(bin, &a.dir, a.rounds);
    }
}

/// The classes over HTTP (`bench/bm25_http.py` starts the daemon on this run's data): the engine
/// is closed first, so the daemon is the only one reading the data directory.
fn over_http(binary: &Path, dir: &Path, rounds: usize) {
    let out = std::process::Command::new("python3")
        .arg("bench/bm25_http.py")
        .args([dir, binary])
        .args(["--rounds", &rounds.to_string()])
        .output()
        .expect("bench/bm25_http.py");
    assert!(out.status.success(), "bm25_http.py: {}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn id_u64(id: &DocId) -> u64 {
    id.to_string().parse().unwrap_or(u64::MAX)
}
