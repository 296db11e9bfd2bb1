//! ANN benchmark on the Debian corpus (`/work/shared/data/debian`, or `TIDEPOOL_DATA`):
//! builds the IVF index and the graph index (`index::graph`), then measures recall@10 (tie rule: a hit when the returned row's
//! distance ≤ the k-th ground-truth distance + 1e-5) and single-thread queries per second at
//! several settings, exact search, and filtered search (1% and 10% random filters, recall
//! against filtered exact search). Prints a human-readable table on stderr and one JSON object
//! on stdout.
//!
//! Run: `CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example ann_bench`

use std::time::{Duration, Instant};
use tidepool::index::vector::ann::{self, AnnIndex, AnnParams, SearchParams};
use tidepool::index::vector::distance::{self, Metric};
use tidepool::index::vector::graph::{self, GraphIndex, GraphParams, GraphSearchParams};

const K: usize = 10;

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

struct Gt {
    rows: Vec<u32>,
    dists: Vec<f32>,
}

fn load_gt(path: &str) -> Vec<Gt> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("gt json");
            let rows = v["rows"].as_array().expect("rows").iter().map(|x| x.as_u64().expect("row") as u32);
            let dists =
                v["distances"].as_array().expect("distances").iter().map(|x| x.as_f64().expect("d") as f32);
            Gt { rows: rows.collect(), dists: dists.collect() }
        })
        .collect()
}

/// Fraction of returned results within the k-th reference distance (+1e-5).
fn recall(results: &[(u32, f32)], kth: f32) -> f64 {
    results.iter().take(K).filter(|(_, d)| *d <= kth + 1e-5).count() as f64 / K as f64
}

/// CPU time of the calling thread in nanoseconds (Linux `/proc/thread-self/schedstat`).
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f` over all queries repeatedly for at least `min` time. Returns queries per second of
/// wall time and of this thread's CPU time (the latter is robust to other load on the machine).
fn qps(nq: usize, min: Duration, mut f: impl FnMut(usize)) -> (f64, f64) {
    for q in 0..nq.min(50) {
        f(q); // warm-up
    }
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    let mut done = 0usize;
    while start.elapsed() < min {
        for q in 0..nq {
            f(q);
        }
        done += nq;
    }
    let wall = done as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => done as f64 / ((b - a) as f64 * 1e-9),
        _ => wall,
    };
    (wall, cpu)
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn main() {
    let dir = std::env::var("TIDEPOOL_DATA").unwrap_or_else(|_| "/work/shared/data/debian".into());
    let min_time = Duration::from_millis(
        std::env::var("ANN_BENCH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500),
    );
    let dim = 384;
    let vectors = read_f32(&format!("{dir}/vectors.f32"));
    let queries = read_f32(&format!("{dir}/queries/query_vectors.f32"));
    let gt = load_gt(&format!("{dir}/queries/gt_ids.jsonl"));
    let n = vectors.len() / dim;
    let nq = queries.len() / dim;
    let q = |i: usize| &queries[i * dim..(i + 1) * dim];
    eprintln!("kernels: {}, rows {n}, queries {nq}", distance::kernels().name());
    let metric = Metric::CosineDistance;

    let threads: u32 = std::env::var("ANN_BUILD_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let nlist: u32 = std::env::var("ANN_NLIST").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let params = AnnParams { threads, nlist, ..AnnParams::default() };
    let t = Instant::now();
    let section = ann::build(&vectors, dim, metric, &params);
    let build_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let index = AnnIndex::open(&section).expect("open");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "build {build_s:.2}s ({threads} threads), section {} bytes, open (crc + checks) {open_ms:.2} ms, nlist {}, default nprobe {}",
        section.len(),
        index.nlist(),
        index.default_nprobe()
    );
    let mut json = serde_json::json!({
        "rows": n, "queries": nq, "dim": dim, "kernels": distance::kernels().name(),
        "build_seconds": build_s, "build_threads": threads, "section_bytes": section.len(),
        "open_ms": open_ms, "nlist": index.nlist(), "default_nprobe": index.default_nprobe(),
    });

    if std::env::var("ANN_BENCH_PROFILE").is_ok() {
        let sp = SearchParams::default();
        let r = qps(nq, Duration::from_secs(10), |i| {
            std::hint::black_box(index.search(&vectors, q(i), K, None, &sp));
        });
        eprintln!("profile loop: QPS wall {:.0} cpu {:.0}", r.0, r.1);
        return;
    }
    // Unfiltered sweep.
    let mut sweep = Vec::new();
    let defaults = SearchParams::default();
    let mut settings: Vec<(u32, u32)> = vec![(0, defaults.rerank)];
    let nps: Vec<u32> = std::env::var("ANN_NPROBES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 24, 32, 40, 48, 56, 64, 80, 96, 128]);
    for np in nps {
        settings.push((np, 40));
    }
    for (np, rr) in settings {
        let sp = SearchParams { nprobe: np, rerank: rr, ..SearchParams::default() };
        let rec: f64 = (0..nq)
            .map(|i| recall(&index.search(&vectors, q(i), K, None, &sp), gt[i].dists[K - 1]))
            .sum::<f64>()
            / nq as f64;
        let r = qps(nq, min_time, |i| {
            std::hint::black_box(index.search(&vectors, q(i), K, None, &sp));
        });
        let label = if np == 0 {
            format!("default (nprobe {})", index.default_nprobe())
        } else {
            format!("nprobe {np}")
        };
        eprintln!(
            "ivf {label:>22} rerank {rr:>3}: recall@10 {rec:.4}  QPS wall {:>7.0} cpu {:>7.0}",
            r.0, r.1
        );
        sweep.push(serde_json::json!({"nprobe": if np == 0 { index.default_nprobe() as u32 } else { np },
            "default": np == 0, "rerank": rr, "recall": rec, "qps_wall": r.0, "qps_cpu": r.1}));
    }
    json["ivf"] = serde_json::Value::Array(sweep);

    // Graph section (kind 20): build, then an ef sweep.
    let gp = GraphParams::default();
    let t = Instant::now();
    let gsec = graph::build(&vectors, dim, metric, &gp);
    let gbuild_s = t.elapsed().as_secs_f64();
    let gbytes = gsec.len();
    let t = Instant::now();
    let gix = GraphIndex::open(bytes::Bytes::from(gsec)).expect("open graph");
    let gopen_ms = t.elapsed().as_secs_f64() * 1e3;
    eprintln!(
        "graph build {gbuild_s:.2}s (1 thread, degree {}, ef_construction {}), section {gbytes} bytes, open {gopen_ms:.2} ms",
        gp.degree, gp.ef_construction
    );
    let mut gsweep = Vec::new();
    // "ef:rerank" pairs; ef 0 / rerank 0 = the defaults.
    let efs: Vec<(u32, u32)> = std::env::var("ANN_EFS")
        .ok()
        .map(|v| {
            v.split(',')
                .filter_map(|x| {
                    let (a, b) = x.split_once(':').unwrap_or((x, "0"));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_else(|| vec![(0, 0), (20, 20), (32, 32), (40, 40), (64, 40)]);
    for (ef, rr) in efs {
        let sp = GraphSearchParams { ef, rerank: rr };
        let efv = if ef == 0 { gix.default_ef() as u32 } else { ef };
        let rr = if rr == 0 { efv.max(2 * K as u32) } else { rr };
        let rec: f64 = (0..nq)
            .map(|i| recall(&gix.search(&vectors, q(i), K, None, &sp), gt[i].dists[K - 1]))
            .sum::<f64>()
            / nq as f64;
        let r = qps(nq, min_time, |i| {
            std::hint::black_box(gix.search(&vectors, q(i), K, None, &sp));
        });
        eprintln!(
            "graph ef {efv:>3}{} rerank {rr:>3}: recall@10 {rec:.4}  QPS wall {:>7.0} cpu {:>7.0}",
            if ef == 0 { " (default)" } else { "" },
            r.0,
            r.1
        );
        gsweep.push(serde_json::json!({"ef": efv, "default": ef == 0, "rerank": rr, "recall": rec,
            "qps_wall": r.0, "qps_cpu": r.1}));
    }
    json["graph"] = serde_json::Value::Array(gsweep);
    json["graph_build_seconds"] = serde_json::json!(gbuild_s);
    json["graph_section_bytes"] = serde_json::json!(gbytes);
    json["graph_open_ms"] = serde_json::json!(gopen_ms);

    if std::env::var("ANN_BENCH_SWEEP_ONLY").is_ok() {
        println!("{json}");
        return;
    }
    // Exact.
    let rec: f64 = (0..nq)
        .map(|i| recall(&ann::exact(&vectors, dim, metric, q(i), K, None), gt[i].dists[K - 1]))
        .sum::<f64>()
        / nq as f64;
    let r = qps(nq, min_time, |i| {
        std::hint::black_box(ann::exact(&vectors, dim, metric, q(i), K, None));
    });
    eprintln!("exact f32: recall@10 {rec:.4}  QPS wall {:.0} cpu {:.0}", r.0, r.1);
    json["exact"] = serde_json::json!({"recall": rec, "qps_wall": r.0, "qps_cpu": r.1});
    // Sanity: ground-truth rows agree with the exact search.
    let agree = (0..nq)
        .filter(|&i| ann::exact(&vectors, dim, metric, q(i), 1, None)[0].1 <= gt[i].dists[0] + 1e-5)
        .count();
    eprintln!("exact top-1 within gt distance: {agree}/{nq}");
    let _ = &gt[0].rows;

    // Filtered: random filters at 1% and 10%.
    let mut filtered = Vec::new();
    for (pct, seed) in [(1u64, 11u64), (10, 12)] {
        let keep: Vec<bool> = (0..n as u64).map(|r| splitmix(r ^ (seed << 40)) % 100 < pct).collect();
        let matching = keep.iter().filter(|b| **b).count();
        let f = |r: u32| keep.get(r as usize).copied().unwrap_or(false);
        let fref: &dyn Fn(u32) -> bool = &f;
        let truth: Vec<Vec<(u32, f32)>> =
            (0..nq).map(|i| ann::exact(&vectors, dim, metric, q(i), K, Some(fref))).collect();
        let mut cases: Vec<(String, SearchParams)> = vec![("default".into(), SearchParams::default())];
        for ms in [0u32, 250, 500, 1000, 2000] {
            cases.push((
                format!(
                    "ivf forced, min_scored {}",
                    if ms == 0 { "auto".to_string() } else { ms.to_string() }
                ),
                SearchParams { exact_threshold: 0, filter_min_scored: ms, ..SearchParams::default() },
            ));
        }
        for (name, sp) in cases {
            let rec: f64 = (0..nq)
                .map(|i| {
                    let kth = truth[i].get(K - 1).map_or(f32::INFINITY, |x| x.1);
                    recall(&index.search(&vectors, q(i), K, Some(fref), &sp), kth)
                })
                .sum::<f64>()
                / nq as f64;
            let r = qps(nq, min_time, |i| {
                std::hint::black_box(index.search(&vectors, q(i), K, Some(fref), &sp));
            });
            eprintln!(
                "filter {pct:>2}% ({matching} rows) {name:>28}: recall@10 {rec:.4}  QPS wall {:>7.0} cpu {:>7.0}",
                r.0, r.1
            );
            filtered
                .push(serde_json::json!({"selectivity_pct": pct, "matching_rows": matching, "mode": name,
                "recall": rec, "qps_wall": r.0, "qps_cpu": r.1}));
        }
    }
    json["filtered"] = serde_json::Value::Array(filtered);
    println!("{json}");
}
