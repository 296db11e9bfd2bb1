//! Cold-query benchmark (issue 5 target: "cold query, empty disk cache, data in an
//! S3-compatible server on loopback: at most 3 sequential object-store round trips, and the
//! bytes fetched reported").
//!
//! Ingests the Debian corpus (36,000 docs, 384-d, cosine) into the store, compacts it into one
//! segment, then answers dev queries (`rank_by: ["vector", "ANN", q], top_k: 10`) on fresh
//! engines: a new empty data dir (no disk cache, no manifest cache) and a new object-store
//! client (no pooled connections) per query, every request recorded by `TraceStore` (no added
//! latency: the figures are those of the real HTTP round trips).
//!
//! - cold-ranged: `Engine::try_cold_query` (manifest from CURRENT, cold IVF head + ids +
//!   deletion set + WAL, then the probed lists);
//! - cold-whole (peer, same run): the path a node took before, the regular load
//!   (`Engine::existing`, which downloads the segment into the disk cache) then
//!   `query::execute_request`;
//! - warm (reference): a loaded engine, `existing(strong)` + `execute_request`.
//!
//! For each: latency, sequential round trips, requests, bytes read, recall@10 against the
//! exact ground truth with the tie rule of `shared/data/README.md` (a returned row is a hit when
//! its distance, recomputed in f64 from the corpus, is ≤ the 10th ground-truth distance + 1e-5).
//!
//! Also printed: a server-cost probe (single requests timed against the server: a small
//! object, one 64 KiB range of the segment, 57 ranges at once, the whole segment), and, with
//! --s3, a replay of the three paths on the same objects copied into process memory (the
//! client-side cost of each path; `--no-replay` skips it).
//!
//! With `--named` the vectors are written to a named vector attribute `emb` (`[384]f32`, `ann`)
//! instead of `vector`, and the queries rank by `["emb", "ANN", q]` (its cold lists: kind 24).
//!
//! CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example cold_bench -- \
//!     --s3 s3://bucket/prefix --s3-endpoint http://127.0.0.1:PORT [--queries 50] [--whole 3]
//!     [--corpus ../shared/data/debian] [--verbose] [--no-replay] [--named]
//! Without --s3 the store is in memory (a quick check only; the target is about S3).
//! `bench/cold.sh` starts moto, creates the bucket and runs this.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{json, Value as Json};
use tidepool::engine::{CompactionConfig, Engine, EngineConfig, WriteRequest};
use tidepool::layout::NsPath;
use tidepool::query::{execute_request, QueryRequest, QueryResult};
use tidepool::store::trace::{Event, Op, Trace, TraceStore};
use tidepool::store::{S3Options, Store};
use tidepool::wire::query::parse_request;

const DIM: usize = 384;
const K: usize = 10;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn read_f32(path: &Path) -> Vec<f32> {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn load_docs(dir: &Path) -> Vec<Json> {
    let f = std::fs::File::open(dir.join("docs.jsonl")).expect("docs.jsonl");
    std::io::BufReader::new(f)
        .lines()
        .map(|l| serde_json::from_str(&l.expect("line")).expect("json"))
        .collect()
}

/// The 10th ground-truth distance of every dev query.
fn load_kth(dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(dir.join("queries/gt_ids.jsonl")).expect("gt_ids.jsonl");
    text.lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).expect("gt json");
            v["distances"][K - 1].as_f64().expect("distance")
        })
        .collect()
}

/// Where the objects live. Every `client()` is a new client (S3: a new HTTP connection pool).
enum Backend {
    S3 { url: String, opts: S3Options, scratch: PathBuf },
    Memory(Arc<dyn ObjectStore>),
}

impl Backend {
    fn client(&self) -> Arc<dyn ObjectStore> {
        match self {
            Backend::S3 { url, opts, scratch } => {
                Store::from_url(Some(url), scratch, opts).expect("s3 store").inner().clone()
            }
            Backend::Memory(m) => m.clone(),
        }
    }

    fn description(&self) -> String {
        match self {
            Backend::S3 { url, opts, .. } => {
                format!("{url} at {}", opts.endpoint.as_deref().unwrap_or("AWS"))
            }
            Backend::Memory(_) => "memory://".into(),
        }
    }

    /// A store on a new client, every request recorded.
    fn traced(&self) -> (Store, Arc<TraceStore>) {
        let trace = TraceStore::new(self.client(), Duration::ZERO);
        (Store::new(trace.clone(), format!("trace({})", self.description())), trace)
    }
}

async fn engine(data: &Path, store: Store) -> Arc<Engine> {
    let mut cfg = EngineConfig::new(data.to_path_buf(), store);
    cfg.compaction = CompactionConfig { auto: false, ..CompactionConfig::default() };
    Engine::open(cfg).await.expect("engine")
}

/// The attribute the vectors are written to and ranked by: `vector`, or `emb` with `--named`.
fn ranked_attr() -> &'static str {
    static NAMED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *NAMED.get_or_init(|| std::env::args().any(|a| a == "--named")) {
        "emb"
    } else {
        "vector"
    }
}

/// The cold lists' section kind of the ranked attribute.
fn cold_kind() -> u16 {
    use tidepool::format::segment::{SECTION_COLD_IVF, SECTION_NAMED_COLD_IVF};
    if ranked_attr() == "vector" {
        SECTION_COLD_IVF
    } else {
        SECTION_NAMED_COLD_IVF
    }
}

fn row(i: usize, d: &Json, vecs: &[f32]) -> Json {
    let mut row = json!({
        "id": i, "package": d["id"], "title": d["title"],
        "body": d["body"], "section": d["section"], "priority": d["priority"],
        "installed_size": d["installed_size"], "version": d["version"],
    });
    row[ranked_attr()] = json!(&vecs[i * DIM..(i + 1) * DIM]);
    row
}

/// What one query cost and returned.
#[derive(Clone, Copy, Default)]
struct Sample {
    ms: f64,
    round_trips: usize,
    requests: usize,
    bytes: u64,
    recall: f64,
    /// Largest |returned `$dist` − f64 recomputation| over the rows.
    dist_err: f64,
}

struct Corpus {
    vecs: Vec<f32>,
    queries: Vec<f32>,
    kth: Vec<f64>,
}

impl Corpus {
    fn query(&self, i: usize) -> &[f32] {
        &self.queries[i * DIM..(i + 1) * DIM]
    }

    fn request(&self, i: usize) -> QueryRequest {
        parse_request(&json!({"rank_by": [ranked_attr(), "ANN", self.query(i)], "top_k": K}), false)
            .expect("query")
    }

    /// (recall@10 with the tie rule, largest distance error) of one result.
    fn score(&self, i: usize, r: &QueryResult) -> (f64, f64) {
        let rows = r.rows.as_ref().expect("rows");
        assert_eq!(rows.len(), K, "query {i}: {} rows", rows.len());
        let q = self.query(i);
        let (mut hits, mut err) = (0usize, 0f64);
        for row in rows {
            let tidepool::model::DocId::U64(id) = row.doc.id else { panic!("u64 ids") };
            let id = usize::try_from(id).expect("id");
            let v = &self.vecs[id * DIM..(id + 1) * DIM];
            let d = 1.0 - q.iter().zip(v).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>();
            if d <= self.kth[i] + 1e-5 {
                hits += 1;
            }
            err = err.max((row.dist.expect("$dist") - d).abs());
        }
        (hits as f64 / K as f64, err)
    }
}

fn sample(c: &Corpus, i: usize, r: &QueryResult, elapsed: Duration, t: &Trace) -> Sample {
    let (recall, dist_err) = c.score(i, r);
    Sample {
        ms: elapsed.as_secs_f64() * 1e3,
        round_trips: t.sequential_round_trips(),
        requests: t.requests(),
        bytes: t.bytes_read(),
        recall,
        dist_err,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn max(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(f64::NAN, f64::max)
}

fn min(v: impl Iterator<Item = f64>) -> f64 {
    v.fold(f64::NAN, f64::min)
}

/// Medians of a set of samples.
struct Summary {
    n: usize,
    ms: f64,
    ms_min: f64,
    ms_max: f64,
    rt: f64,
    rt_max: f64,
    requests: f64,
    bytes: f64,
    bytes_max: f64,
    recall: f64,
    dist_err: f64,
}

fn summarize(s: &[Sample]) -> Summary {
    let col = |f: fn(&Sample) -> f64| s.iter().map(f).collect::<Vec<f64>>();
    Summary {
        n: s.len(),
        ms: median(col(|x| x.ms)),
        ms_min: min(s.iter().map(|x| x.ms)),
        ms_max: max(s.iter().map(|x| x.ms)),
        rt: median(col(|x| x.round_trips as f64)),
        rt_max: max(s.iter().map(|x| x.round_trips as f64)),
        requests: median(col(|x| x.requests as f64)),
        bytes: median(col(|x| x.bytes as f64)),
        bytes_max: max(s.iter().map(|x| x.bytes as f64)),
        recall: s.iter().map(|x| x.recall).sum::<f64>() / s.len() as f64,
        dist_err: max(s.iter().map(|x| x.dist_err)),
    }
}

fn print_summary(name: &str, s: &Summary, trips: bool) {
    let rt =
        if trips { format!("; round trips median {:.0}, max {:.0}", s.rt, s.rt_max) } else { String::new() };
    println!(
        "{name:<12} n={:<3} latency median {:.2} ms (min {:.2}, max {:.2}){rt}; requests median {:.0}",
        s.n, s.ms, s.ms_min, s.ms_max, s.requests
    );
    println!(
        "{:<12} bytes read median {:.2} MB (max {:.2} MB); recall@10 {:.4}; max |$dist - exact f64| {:.1e}",
        "",
        s.bytes / 1e6,
        s.bytes_max / 1e6,
        s.recall,
        s.dist_err
    );
}

/// The last two components of a key, for the request breakdown.
fn short(key: &str) -> String {
    let parts: Vec<&str> = key.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [a, b, _] | [a, b] => format!("{b}/{a}"),
        _ => key.to_owned(),
    }
}

/// Each request's position in the longest chain (the same rule as
/// `Trace::sequential_round_trips`), to show which requests made up which round trip.
fn depths(events: &[Event]) -> Vec<(usize, &Event)> {
    let mut ev: Vec<&Event> = events.iter().collect();
    ev.sort_by_key(|e| e.start);
    let mut depth = vec![0usize; ev.len()];
    for i in 0..ev.len() {
        depth[i] = (0..i).filter(|&j| ev[j].end <= ev[i].start).map(|j| depth[j]).max().unwrap_or(0) + 1;
    }
    depth.into_iter().zip(ev).collect()
}

fn print_breakdown(t: &Trace) {
    let d = depths(&t.events);
    let rounds = d.iter().map(|x| x.0).max().unwrap_or(0);
    let Some(first) = t.events.iter().map(|e| e.start).min() else { return };
    for r in 1..=rounds {
        let evs: Vec<&Event> = d.iter().filter(|x| x.0 == r).map(|x| x.1).collect();
        let bytes: u64 = evs.iter().map(|e| e.bytes).sum();
        let mut kinds: Vec<String> = Vec::new();
        for e in &evs {
            let k = format!("{:?} {}", e.op, short(&e.key));
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        let start = evs.iter().map(|e| e.start).min().expect("event");
        let end = evs.iter().map(|e| e.end).max().expect("event");
        let each: Vec<f64> = evs.iter().map(|e| (e.end - e.start).as_secs_f64() * 1e3).collect();
        println!(
            "  round trip {r}: {} request(s), {bytes} bytes, {:.2}–{:.2} ms (each request {:.2}–{:.2} ms): {}",
            evs.len(),
            (start - first).as_secs_f64() * 1e3,
            (end - first).as_secs_f64() * 1e3,
            min(each.iter().copied()),
            max(each.iter().copied()),
            kinds.join(", ")
        );
    }
}

/// Everything measured on one backend.
#[derive(Default)]
struct Run {
    ranged: Vec<Sample>,
    whole: Vec<Sample>,
    warm: Vec<Sample>,
    /// Warm, the executor alone (ms).
    warm_exec: Vec<f64>,
    first_trace: Option<Trace>,
    whole_trace: Option<Trace>,
    fallbacks: usize,
    open_requests: usize,
    engines: usize,
}

/// What to run on a backend.
struct Plan<'a> {
    ns: &'a NsPath,
    /// The generation the cold path must read.
    generation: u64,
    /// Cold-ranged and warm queries.
    nq: usize,
    /// Cold-whole queries.
    nwhole: usize,
    verbose: bool,
    /// Where the fresh data dirs go.
    scratch: &'a Path,
}

/// Cold-ranged on `nq` fresh engines, cold-whole on `nwhole` fresh engines, warm on the last
/// of those.
async fn run_paths(backend: &Backend, c: &Corpus, p: &Plan<'_>) -> Run {
    let Plan { ns, generation, nq, nwhole, verbose, scratch } = *p;
    let mut run = Run::default();
    for i in 0..nq {
        let dir = tempfile::tempdir_in(scratch).expect("dir");
        let (store, trace) = backend.traced();
        let e = engine(dir.path(), store).await;
        run.engines += 1;
        run.open_requests += trace.take().requests();
        let req = c.request(i);
        let t = Instant::now();
        let ans = e.try_cold_query(ns, &req).await.expect("cold query");
        let elapsed = t.elapsed();
        let tr = trace.take();
        let Some(ans) = ans else {
            run.fallbacks += 1;
            continue;
        };
        assert_eq!(ans.generation, generation);
        assert_eq!(tr.count(Op::List), 0, "no listing on the cold path");
        let s = sample(c, i, &ans.results[0], elapsed, &tr);
        if verbose {
            println!(
                "  cold-ranged q{i}: {:.2} ms, {} round trips, {} requests, {} bytes, recall {:.1}",
                s.ms, s.round_trips, s.requests, s.bytes, s.recall
            );
            if s.round_trips > 3 {
                print_breakdown(&tr);
            }
        }
        if run.first_trace.is_none() {
            run.first_trace = Some(tr);
        }
        run.ranged.push(s);
    }

    let mut loaded = None;
    for i in 0..nwhole.min(nq) {
        let dir = tempfile::tempdir_in(scratch).expect("dir");
        let (store, trace) = backend.traced();
        let e = engine(dir.path(), store).await;
        run.engines += 1;
        run.open_requests += trace.take().requests();
        let req = c.request(i);
        let t = Instant::now();
        let snap = e.existing(ns, true).await.expect("load");
        let res = execute_request(&req, &snap.state).expect("query");
        let elapsed = t.elapsed();
        let tr = trace.take();
        let s = sample(c, i, &res[0], elapsed, &tr);
        if verbose {
            println!(
                "  cold-whole  q{i}: {:.2} ms, {} round trips, {} requests, {} bytes, recall {:.1}",
                s.ms, s.round_trips, s.requests, s.bytes, s.recall
            );
        }
        run.whole.push(s);
        run.whole_trace = Some(tr);
        loaded = Some((dir, e, trace));
    }

    // Warm: the last loaded engine, after one pass that opens its index sections.
    if let Some((_dir, e, trace)) = &loaded {
        for i in 0..nq {
            let snap = e.existing(ns, true).await.expect("snapshot");
            execute_request(&c.request(i), &snap.state).expect("query");
        }
        trace.take();
        for i in 0..nq {
            let req = c.request(i);
            let t = Instant::now();
            let snap = e.existing(ns, true).await.expect("snapshot");
            let t_exec = Instant::now();
            let res = execute_request(&req, &snap.state).expect("query");
            let elapsed = t.elapsed();
            run.warm_exec.push(t_exec.elapsed().as_secs_f64() * 1e3);
            let tr = trace.take();
            run.warm.push(sample(c, i, &res[0], elapsed, &tr));
        }
    }
    run
}

/// Prints the summary of a run; returns (cold-ranged, cold-whole, warm) summaries. Without
/// `trips` (an in-process store, whose requests complete at once and so never overlap), round
/// trips are not reported.
fn report(run: &Run, seg_bytes: u64, trips: bool) -> (Summary, Summary, Summary) {
    if !trips {
        println!(
            "(in-process store: every request completes before the next starts, so round trips are not meaningful here)"
        );
    } else if let Some(t) = &run.first_trace {
        println!("cold-ranged, query 0, requests by round trip:");
        print_breakdown(t);
    }
    if let Some(t) = run.whole_trace.as_ref().filter(|_| trips) {
        println!("cold-whole, last query, requests by round trip:");
        print_breakdown(t);
    }
    println!(
        "fresh engines: {} (requests while opening them: {}); cold-ranged fallbacks (None): {}",
        run.engines, run.open_requests, run.fallbacks
    );
    let (r, w, h) = (summarize(&run.ranged), summarize(&run.whole), summarize(&run.warm));
    print_summary("cold-ranged", &r, trips);
    print_summary("cold-whole", &w, trips);
    print_summary("warm", &h, trips);
    println!(
        "warm, executor only (without the strong-consistency probe): median {:.3} ms, max {:.3} ms",
        median(run.warm_exec.clone()),
        max(run.warm_exec.iter().copied())
    );
    if trips {
        println!(
            "target ≤ 3 sequential round trips: median {:.0}, max {:.0} → {}",
            r.rt,
            r.rt_max,
            if r.rt_max <= 3.0 && run.fallbacks == 0 { "met" } else { "NOT met" }
        );
    }
    println!(
        "bytes per cold-ranged query: median {:.2} MB (max {:.2} MB) = {:.2}% of the {:.1} MB segment",
        r.bytes / 1e6,
        r.bytes_max / 1e6,
        100.0 * r.bytes / seg_bytes as f64,
        seg_bytes as f64 / 1e6
    );
    println!(
        "ratio cold-ranged / cold-whole: latency {:.3} (median {:.1} ms vs {:.1} ms), bytes {:.4} ({:.1}x fewer){}",
        r.ms / w.ms,
        r.ms,
        w.ms,
        r.bytes / w.bytes,
        w.bytes / r.bytes,
        if trips { format!(", round trips {:.0} vs {:.0}", r.rt, w.rt) } else { String::new() }
    );
    println!(
        "ratio cold-ranged / warm: latency {:.1}x (median {:.2} ms vs {:.3} ms)",
        r.ms / h.ms,
        r.ms,
        h.ms
    );
    (r, w, h)
}

/// What the server itself costs per request: a small whole object, a 64 KiB range of the
/// segment, 57 such ranges at once (the probe count of a cold query), the whole segment.
async fn server_probe(store: &Store, small: &str, seg: &str) {
    async fn time<F: std::future::Future<Output = ()>>(n: usize, mut f: impl FnMut() -> F) -> f64 {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            f().await;
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        median(v)
    }
    let small_ms = time(5, || async {
        store.get(small).await.expect("get");
    })
    .await;
    let range_ms = time(5, || async {
        store.get_range(seg, 0..65_536).await.expect("range");
    })
    .await;
    let many_ms = time(1, || async {
        let reads = (0..57u64).map(|i| store.get_range(seg, i * 65_536..(i + 1) * 65_536));
        futures::future::try_join_all(reads).await.expect("ranges");
    })
    .await;
    let whole_ms = time(3, || async {
        store.get(seg).await.expect("get");
    })
    .await;
    println!(
        "server cost (medians): GET of the {small} object {small_ms:.2} ms; one 64 KiB ranged GET of the segment {range_ms:.2} ms; 57 such ranged GETs issued together {many_ms:.1} ms; whole-segment GET {whole_ms:.1} ms"
    );
}

#[tokio::main]
async fn main() {
    let corpus_dir = PathBuf::from(arg("--corpus").unwrap_or_else(|| "../shared/data/debian".into()));
    let nq: usize = arg("--queries").map_or(50, |v| v.parse().expect("--queries N"));
    let nwhole: usize = arg("--whole").map_or(3, |v| v.parse().expect("--whole N"));
    let verbose = std::env::args().any(|a| a == "--verbose");
    let replay = !std::env::args().any(|a| a == "--no-replay");
    let tmp = tempfile::tempdir().expect("tmp");

    let docs = load_docs(&corpus_dir);
    let c = Corpus {
        vecs: read_f32(&corpus_dir.join("vectors.f32")),
        queries: read_f32(&corpus_dir.join("queries/query_vectors.f32")),
        kth: load_kth(&corpus_dir),
    };
    assert_eq!(c.vecs.len(), docs.len() * DIM);
    let nq = nq.min(c.kth.len());
    let s3 = arg("--s3").is_some();
    let backend = match arg("--s3") {
        Some(url) => Backend::S3 {
            url,
            opts: S3Options {
                endpoint: arg("--s3-endpoint"),
                access_key_id: Some("test".into()),
                secret_access_key: Some("test".into()),
                allow_http: true,
                ..S3Options::default()
            },
            scratch: tmp.path().join("unused"),
        },
        None => Backend::Memory(Arc::new(object_store::memory::InMemory::new())),
    };
    println!("store: {} (TraceStore, no added latency)", backend.description());
    let ns = NsPath::new("bench", "bench", "debian").expect("ns");

    // Ingest and compact into one segment.
    let writer_store = Store::new(backend.client(), backend.description());
    let writer = engine(&tmp.path().join("writer"), writer_store.clone()).await;
    let t = Instant::now();
    for (b, chunk) in docs.chunks(1000).enumerate() {
        let rows: Vec<Json> = chunk.iter().enumerate().map(|(j, d)| row(b * 1000 + j, d, &c.vecs)).collect();
        let schema = json!({"emb": {"type": format!("[{DIM}]f32"), "ann": true}});
        let mut body = json!({"upsert_rows": rows, "distance_metric": "cosine_distance"});
        if ranked_attr() != "vector" {
            body["schema"] = schema;
        }
        writer.write(&ns, WriteRequest::from_json(&body).expect("request")).await.expect("write");
    }
    let ingest = t.elapsed();
    let t = Instant::now();
    let report_c = writer.compact(&ns, true).await.expect("compact");
    let compaction = t.elapsed();
    let m = writer.latest_manifest(&ns).await.expect("manifest").expect("namespace");
    assert_eq!(m.segments.len(), 1, "one segment");
    assert!(m.wal.is_empty(), "WAL folded");
    let seg = &m.segments[0];
    let cold = seg.sections.iter().find(|s| s.kind == cold_kind());
    let ids = seg.sections.iter().find(|s| s.kind == tidepool::format::segment::SECTION_IDS);
    let stored: u64 = writer_store.list(&ns.prefix()).await.expect("list").iter().map(|o| o.size).sum();
    println!(
        "ingest: {} docs in {ingest:.2?}; compaction {compaction:.2?} ({} rows, {} segment(s)); generation {}",
        docs.len(),
        report_c.rows_written,
        report_c.segments_written,
        m.generation
    );
    println!(
        "segment: {} bytes ({:.1} MB); cold IVF section of {} {} bytes (head {}), ids section {} bytes; all objects of the namespace {:.1} MB",
        seg.bytes,
        seg.bytes as f64 / 1e6,
        ranked_attr(),
        cold.map_or(0, |s| s.len),
        cold.map_or(0, |s| s.head),
        ids.map_or(0, |s| s.len),
        stored as f64 / 1e6
    );
    drop(writer);
    let seg_key = seg.files.first().expect("segment file").key.clone();
    let probe_store = Store::new(backend.client(), backend.description());
    server_probe(&probe_store, &ns.current_key(), &seg_key).await;

    println!();
    println!("== {} ==", backend.description());
    let plan = Plan { ns: &ns, generation: m.generation, nq, nwhole, verbose, scratch: tmp.path() };
    let run = run_paths(&backend, &c, &plan).await;
    report(&run, seg.bytes, s3);

    // The same objects in process memory: no network and no server, so what the client side of
    // each path costs (and what a server that serves ranges in O(range) would add to).
    if s3 && replay {
        use futures::TryStreamExt;
        let src = backend.client();
        let mem = Arc::new(object_store::memory::InMemory::new());
        let all: Vec<_> = src.list(None).try_collect().await.expect("list");
        for o in &all {
            let b = src.get(&o.location).await.expect("get").bytes().await.expect("bytes");
            mem.put(&o.location, b.into()).await.expect("put");
        }
        let mem_backend = Backend::Memory(mem);
        println!();
        println!(
            "== replay: the same {} objects copied into process memory (no network, no server) ==",
            all.len()
        );
        server_probe(&Store::new(mem_backend.client(), "memory://"), &ns.current_key(), &seg_key).await;
        let run = run_paths(&mem_backend, &c, &Plan { verbose: false, ..plan }).await;
        report(&run, seg.bytes, false);
    }
}
