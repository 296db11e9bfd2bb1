//! Segment bytes with one set of codes (issue 36 item 4): the IVF section with codes of its own
//! (version 2) against the IVF lists scored with the graph's codes (version 3), and, for
//! version 3, the fallback that scores probed rows exactly (no graph attached), each with 8-bit
//! and 4-bit RaBitQ graph codes, in one process on the same rows.
//!
//! Rows: `normalize(debian[i % 36000] + sigma · N(0, I))`, sigma = 0.6/√384 (the generator of
//! `bench/scale_bench.rs`, SplitMix64 + Box–Muller seeded by row), `IVF_SHARE_ROWS` of them
//! (default 200,000). Queries: the 500 Debian dev queries; truth: exact top 10 over the rows
//! (filtered: over the matching rows). Filters: random rows at 1%, 10% and 30% (narrow: below
//! the planner's 50%), searched as the query engine plans them: the section's calibrated
//! (nprobe, rerank) for recall 0.95 and the exact match count as the filter estimate.
//!
//! Prints bytes per row of every section and, per configuration, recall@10 and single-thread
//! queries per second of CPU time; one JSON object on stdout.
//!
//! Run: `CARGO_TARGET_DIR=... cargo run --profile profiling --example ivf_share`

use std::time::Duration;
use tidepool::index::vector::ann::{self, AnnIndex, AnnParams, SearchParams};
use tidepool::index::vector::distance::Metric;
use tidepool::index::vector::graph::{self, GraphCode, GraphIndex, GraphParams, GraphSearchParams};

const DIM: usize = 384;
const K: usize = 10;
const TARGET: f32 = 0.95;

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Row `i` of the scale benchmark's generator (seed 1), unit length.
fn row(base: &[f32], i: u64, sigma: f64, out: &mut [f32]) {
    let mut s = 1u64 ^ (i.wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut unit = || ((splitmix(&mut s) >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64);
    let b = (i as usize % (base.len() / DIM)) * DIM;
    for (j, pair) in out.chunks_exact_mut(2).enumerate() {
        let r = (-2.0 * unit().ln()).sqrt();
        let theta = std::f64::consts::TAU * unit();
        pair[0] = (f64::from(base[b + 2 * j]) + sigma * r * theta.cos()) as f32;
        pair[1] = (f64::from(base[b + 2 * j + 1]) + sigma * r * theta.sin()) as f32;
    }
    let n = out.iter().map(|x| x * x).sum::<f32>().sqrt();
    out.iter_mut().for_each(|x| *x /= n);
}

fn thread_cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Recall@10 against `truth` and queries per CPU second (at least `min` of CPU time).
fn measure(
    nq: usize,
    truth: &[Vec<(u32, f32)>],
    min: Duration,
    f: impl Fn(usize) -> Vec<(u32, f32)>,
) -> (f64, f64) {
    let mut hit = 0usize;
    let mut total = 0usize;
    for (q, t) in truth.iter().enumerate().take(nq) {
        let kth = t.last().map_or(f32::INFINITY, |x| x.1);
        hit += f(q).iter().take(K).filter(|r| r.1 <= kth + 1e-5).count();
        total += t.len();
    }
    let cpu0 = thread_cpu_ns();
    let mut done = 0usize;
    while thread_cpu_ns() - cpu0 < min.as_nanos() as u64 {
        for q in 0..nq {
            std::hint::black_box(f(q));
        }
        done += nq;
    }
    (hit as f64 / total.max(1) as f64, done as f64 / ((thread_cpu_ns() - cpu0) as f64 * 1e-9))
}

fn main() {
    let dir = std::env::var("TIDEPOOL_DATA").unwrap_or_else(|_| "/work/shared/data/debian".into());
    let n: usize = std::env::var("IVF_SHARE_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let min = Duration::from_millis(
        std::env::var("IVF_SHARE_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
    );
    let base = read_f32(&format!("{dir}/vectors.f32"));
    let queries = read_f32(&format!("{dir}/queries/query_vectors.f32"));
    let nq = queries.len() / DIM;
    let q = |i: usize| &queries[i * DIM..(i + 1) * DIM];
    let sigma = 0.6 / (DIM as f64).sqrt();
    let mut v = vec![0f32; n * DIM];
    for (i, out) in v.chunks_exact_mut(DIM).enumerate() {
        row(&base, i as u64, sigma, out);
    }
    drop(base);
    let metric = Metric::CosineDistance;
    let raw = (n * DIM * 4) as f64;
    eprintln!("rows {n}, queries {nq}, raw vectors {:.1} MB", raw / 1e6);
    let filters: Vec<(u64, Vec<bool>)> = [1u64, 10, 30]
        .iter()
        .map(|&pct| {
            let mut s = pct.wrapping_mul(0xA5A5);
            (pct, (0..n).map(|_| splitmix(&mut s) % 100 < pct).collect())
        })
        .collect();
    let truth_of = |f: Option<&dyn Fn(u32) -> bool>| -> Vec<Vec<(u32, f32)>> {
        (0..nq).map(|i| ann::exact(&v, DIM, metric, q(i), K, f)).collect()
    };
    let truth = truth_of(None);
    let ftruth: Vec<Vec<Vec<(u32, f32)>>> =
        filters.iter().map(|(_, keep)| truth_of(Some(&|r: u32| keep[r as usize]))).collect();
    let params = AnnParams { threads: 2, ..AnnParams::default() };
    let mut json = serde_json::json!({"rows": n, "dim": DIM, "queries": nq, "raw_bytes": raw});
    let mut results = Vec::new();
    let per_row = |b: usize| b as f64 / n as f64;

    // IVF with codes of its own (version 2), as every segment held before.
    let t = std::time::Instant::now();
    let v2 = ann::build(&v, DIM, metric, &params);
    eprintln!(
        "ivf v2 (own 8-bit codes): {:.1} B/row, built in {:.1} s",
        per_row(v2.len()),
        t.elapsed().as_secs_f64()
    );
    json["ivf_v2_bytes_per_row"] = serde_json::json!(per_row(v2.len()));
    let ix2 = AnnIndex::open(&v2).expect("open v2");
    results.extend(ivf_cases("ivf v2 own codes", &ix2, &v, &truth, &filters, &ftruth, nq, min, &q));
    drop(ix2);
    drop(v2);

    for (name, code) in [("sq8", GraphCode::Sq8), ("rabitq4", GraphCode::RaBitQ { bits: 4 })] {
        let gp = GraphParams { threads: 2, code, ..GraphParams::default() };
        let t = std::time::Instant::now();
        let gbytes = graph::build(&v, DIM, metric, &gp);
        let gsecs = t.elapsed().as_secs_f64();
        let glen = gbytes.len();
        let g = GraphIndex::open(bytes::Bytes::from(gbytes)).expect("open graph");
        let t = std::time::Instant::now();
        let v3 = ann::build_lists(&v, DIM, metric, &params, &g);
        eprintln!("graph {name} built in {gsecs:.1} s, ivf v3 over it in {:.1} s", t.elapsed().as_secs_f64());
        let sum = raw + (glen + v3.len()) as f64;
        eprintln!(
            "graph {name}: {:.1} B/row; ivf v3: {:.1} B/row; vectors + graph + ivf v3 = {:.3}x raw (with v2 it was {:.3}x)",
            per_row(glen),
            per_row(v3.len()),
            sum / raw,
            (sum - v3.len() as f64) / raw + json["ivf_v2_bytes_per_row"].as_f64().unwrap_or(0.0) * n as f64 / raw
        );
        json[format!("graph_{name}_bytes_per_row")] = serde_json::json!(per_row(glen));
        json[format!("ivf_v3_{name}_bytes_per_row")] = serde_json::json!(per_row(v3.len()));
        let gp = GraphSearchParams { ef: g.effort(TARGET).unwrap_or(0), rerank: 0 };
        let (rec, qps) = measure(nq, &truth, min, |i| g.search(&v, q(i), K, None, &gp));
        eprintln!("graph {name} ef {:>3} unfiltered: recall {rec:.4} qps/cpu {qps:.0}", gp.ef);
        results.push(serde_json::json!({"case": format!("graph {name}"), "filter_pct": 0, "effort": gp.ef, "recall": rec, "qps_cpu": qps}));
        let with = AnnIndex::open(&v3).expect("open v3").with_graph(&g);
        assert!(with.has_graph());
        let without = AnnIndex::open(&v3).expect("open v3");
        for (label, ix) in
            [(format!("ivf v3 {name} codes"), &with), (format!("ivf v3 exact ({name} calib.)"), &without)]
        {
            results.extend(ivf_cases(&label, ix, &v, &truth, &filters, &ftruth, nq, min, &q));
        }
    }
    json["results"] = serde_json::Value::Array(results);
    println!("{json}");
}

/// Unfiltered and filtered searches of one IVF section at its calibrated effort.
#[allow(clippy::too_many_arguments)]
fn ivf_cases<'q>(
    name: &str,
    ix: &AnnIndex<'_>,
    v: &[f32],
    truth: &[Vec<(u32, f32)>],
    filters: &[(u64, Vec<bool>)],
    ftruth: &[Vec<Vec<(u32, f32)>>],
    nq: usize,
    min: Duration,
    q: &impl Fn(usize) -> &'q [f32],
) -> Vec<serde_json::Value> {
    let Some((nprobe, rerank)) = ix.effort(TARGET) else {
        eprintln!("{name}: no calibrated nprobe reaches {TARGET} (exact)");
        return vec![serde_json::json!({"case": name, "exact": true})];
    };
    let mut out = Vec::new();
    let sp = SearchParams { nprobe, rerank, ..SearchParams::default() };
    let (rec, qps) = measure(nq, truth, min, |i| ix.search(v, q(i), K, None, &sp));
    eprintln!("{name} nprobe {nprobe} rerank {rerank} unfiltered: recall {rec:.4} qps/cpu {qps:.0}");
    out.push(serde_json::json!({"case": name, "filter_pct": 0, "effort": nprobe, "rerank": rerank, "recall": rec, "qps_cpu": qps}));
    for ((pct, keep), t) in filters.iter().zip(ftruth) {
        let matching = keep.iter().filter(|b| **b).count() as u32;
        let f = |r: u32| keep[r as usize];
        let sp = SearchParams { nprobe, rerank, filter_estimate: Some(matching), ..SearchParams::default() };
        let (rec, qps) = measure(nq, t, min, |i| ix.search(v, q(i), K, Some(&f), &sp));
        eprintln!("{name} filter {pct:>2}%: recall {rec:.4} qps/cpu {qps:.0}");
        out.push(serde_json::json!({"case": name, "filter_pct": pct, "effort": nprobe, "recall": rec, "qps_cpu": qps}));
    }
    out
}
