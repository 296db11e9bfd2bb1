//! ANN robustness benchmark: recall@10 and single-thread QPS of the default query path on
//! several distributions (`index::vector::synth`: Gaussian mixture, i.i.d. Gaussian, narrow cone,
//! non-negative histogram-like, uniform 8-d; plus the real Debian embeddings), each built as
//! compaction builds a segment (IVF + graph, both calibrated). The query path is the engine's
//! for an unfiltered query: the graph at its calibrated ef for the 0.95 target, else the IVF at
//! its calibrated effort, else exact search. Writes each set (base, queries, exact 10th
//! distances) under `ANN_ROBUST_OUT` for the hnswlib peer (`bench/ann_robust_peer.py`).
//!
//! Per set it also builds the same graph with each traversal code of `ANN_ROBUST_CODES` (default
//! `sq8,rq1,rq2,rq4`: 8-bit codes, RaBitQ 1/2/4-bit) and reports the bytes a row the traversal
//! touches, the calibrated ef and the recall@10 and QPS at it and at every ef of the ladder
//! (`codes` in the JSON; BENCHMARKS "Compact graph codes").
//!
//! The default path escalates a query beyond its section's calibrated reach as the engine does
//! (`query/vector.rs`: the graph to `graph::escalated_ef`, the IVF to an exact scan); the same
//! run measures the path without it (`recall_plain`, `qps_plain`: before stop 47), the share of
//! queries that escalated and an exact scan's QPS.
//!
//! Run: `bash bench/ann_robust.sh` (rows: `ANN_ROBUST_ROWS`, default 30000).

use std::io::Write;
use std::time::{Duration, Instant};
use tidepool::index::vector::ann::{self, AnnIndex, AnnParams, SearchParams};
use tidepool::index::vector::calibrate::DEFAULT_TARGET;
use tidepool::index::vector::distance::Metric;
use tidepool::index::vector::graph::{self, GraphIndex, GraphParams, GraphSearchParams};
use tidepool::index::vector::synth::{generate, Kind};

#[path = "calib_diag.rs"]
mod calib_diag;

const K: usize = 10;
const QUERIES: usize = 200;

struct Set {
    name: String,
    dim: usize,
    metric: Metric,
    base: Vec<f32>,
    queries: Vec<f32>,
}

fn env_usize(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn read_f32(path: &str) -> Option<Vec<f32>> {
    let b = std::fs::read(path).ok()?;
    Some(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

fn sets(rows: usize) -> Vec<Set> {
    let synth = |name: &str, kind: Kind, dim: usize, metric: Metric| Set {
        name: name.into(),
        dim,
        metric,
        base: generate(kind, rows, dim, 1),
        queries: generate(kind, QUERIES, dim, 2),
    };
    let mut v = vec![
        synth("clustered-96-l2", Kind::Clustered, 96, Metric::EuclideanSquared),
        synth("gaussian-96-cos", Kind::Gaussian, 96, Metric::CosineDistance),
        synth("gaussian-128-l2", Kind::Gaussian, 128, Metric::EuclideanSquared),
        synth("cone-256-cos", Kind::Cone, 256, Metric::CosineDistance),
        synth("histogram-128-l2", Kind::Histogram, 128, Metric::EuclideanSquared),
        synth("uniform-8-l2", Kind::Uniform, 8, Metric::EuclideanSquared),
    ];
    let dir = std::env::var("TIDEPOOL_DATA").unwrap_or_else(|_| "/work/shared/data/debian".into());
    if let (Some(b), Some(q)) =
        (read_f32(&format!("{dir}/vectors.f32")), read_f32(&format!("{dir}/queries/query_vectors.f32")))
    {
        let dim = 384;
        let n = rows.min(b.len() / dim);
        let queries = q[..QUERIES.min(q.len() / dim) * dim].to_vec();
        v.push(Set {
            name: "debian-384-cos".into(),
            dim,
            metric: Metric::CosineDistance,
            base: b[..n * dim].to_vec(),
            queries: queries.clone(),
        });
        let bases: Vec<f32> = b[..(rows / COPIES).min(n) * dim].to_vec();
        v.push(Set {
            name: "copies-384-cos".into(),
            dim,
            metric: Metric::CosineDistance,
            base: noisy_copies(&bases, dim, rows),
            queries: queries.clone(),
        });
        let near = near_bases(&b, &queries, dim, rows / COPIES);
        v.push(Set {
            name: "copies-near-384-cos".into(),
            dim,
            metric: Metric::CosineDistance,
            base: noisy_copies(&near, dim, rows),
            queries,
        });
    }
    v
}

/// Noisy copies per Debian vector in the near-copy set: the 1M scale benchmark's density
/// (36,000 vectors, 28 copies each), where own-row calibration queries overstated recall.
const COPIES: usize = 28;

/// `want` Debian vectors around the queries: each query's nearest ones in turn (round robin over
/// the queries, no repeats). At 1M rows every Debian vector has its copies, so a dev query finds
/// its own neighbourhood among the rows; `rows / 28` vectors taken in order (`copies-384-cos`)
/// leave the queries far from every row, this keeps them near, as at 1M.
fn near_bases(debian: &[f32], queries: &[f32], dim: usize, want: usize) -> Vec<f32> {
    let n = debian.len() / dim;
    let ranked: Vec<Vec<(u32, f32)>> = queries
        .chunks_exact(dim)
        .map(|q| {
            ann::exact(debian, dim, Metric::CosineDistance, q, want.div_ceil(queries.len() / dim) + 8, None)
        })
        .collect();
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(want * dim);
    'fill: for depth in 0.. {
        let mut any = false;
        for r in &ranked {
            let Some(&(row, _)) = r.get(depth) else { continue };
            any = true;
            if !std::mem::replace(&mut seen[row as usize], true) {
                out.extend_from_slice(&debian[row as usize * dim..(row as usize + 1) * dim]);
                if out.len() >= want * dim {
                    break 'fill;
                }
            }
        }
        if !any {
            break;
        }
    }
    out
}

/// `rows` rows `normalize(bases[i % bases] + noise)`, noise of norm 0.6 (the scale benchmark's
/// and `bench/calib_probe.rs`'s rows).
fn noisy_copies(bases: &[f32], dim: usize, rows: usize) -> Vec<f32> {
    let debian = bases;
    let bases = (debian.len() / dim).max(1);
    let sigma = 0.6 / (dim as f64).sqrt();
    let mut rng = tidepool::index::vector::synth::Rng::new(16);
    let mut out = Vec::with_capacity(rows * dim);
    for i in 0..rows {
        let b = &debian[(i % bases) * dim..(i % bases + 1) * dim];
        let v: Vec<f32> = b.iter().map(|x| (*x as f64 + sigma * rng.normal()) as f32).collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
        out.extend(v.iter().map(|x| x / n));
    }
    out
}

/// Queries per CPU second of one thread over all queries, for at least `min` of its CPU time:
/// the machine is shared, and wall time would charge other processes' load to whichever side
/// ran while it was heavier (the peer measures `time.thread_time()` the same way).
fn qps(nq: usize, min: Duration, mut f: impl FnMut(usize)) -> f64 {
    (0..nq.min(20)).for_each(&mut f);
    let start = thread_cpu();
    let mut done = 0usize;
    while thread_cpu() - start < min {
        for i in 0..nq {
            f(i);
        }
        done += nq;
    }
    done as f64 / (thread_cpu() - start).as_secs_f64()
}

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
}

/// CPU time of the calling thread (Linux `CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu() -> Duration {
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(t.sec as u64, t.nsec as u32)
}

/// Time of the graph calibration's work, redone outside the build: the sample's brute force and
/// a search per sampled query (own rows and perturbed) at each measured rung (the build does the same with deterministic
/// kernels).
fn calibration_seconds(set: &Set, g: &GraphIndex) -> f64 {
    let (dim, m) = (set.dim, set.metric);
    let t = Instant::now();
    let mut space = set.base.clone();
    if m == Metric::CosineDistance {
        for x in space.chunks_exact_mut(dim) {
            let n = x.iter().map(|v| v * v).sum::<f32>().sqrt();
            x.iter_mut().for_each(|v| *v /= n.max(f32::MIN_POSITIVE));
        }
    }
    let s = tidepool::index::vector::calibrate::sample(&space, dim, m);
    for r in &g.calibration().rungs {
        for i in 0..s.len() {
            let qv = s.query(i);
            let p = GraphSearchParams { ef: r.effort, rerank: r.rerank };
            std::hint::black_box(g.search(&set.base, qv, K + 1, None, &p));
        }
    }
    t.elapsed().as_secs_f64()
}

/// Fraction of returned rows within the exact 10th distance (the `_debug/recall` tie rule).
fn recall(found: &[(u32, f32)], kth: f32) -> f64 {
    let bound = kth + kth.abs() * 1e-5 + 1e-6;
    found.iter().take(K).filter(|r| r.1 <= bound).count() as f64 / K as f64
}

fn write_f32(path: &std::path::Path, v: &[f32]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
    for x in v {
        f.write_all(&x.to_le_bytes()).expect("write");
    }
}

fn run(set: &Set, out: &std::path::Path, min: Duration) -> serde_json::Value {
    let (dim, m) = (set.dim, set.metric);
    let nq = set.queries.len() / dim;
    let q = |i: usize| &set.queries[i * dim..(i + 1) * dim];
    let kth: Vec<f32> = (0..nq).map(|i| ann::exact(&set.base, dim, m, q(i), K, None)[K - 1].1).collect();
    let t = Instant::now();
    let ivf_bytes = ann::build(&set.base, dim, m, &AnnParams { threads: 1, ..AnnParams::default() });
    let ivf_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let g_bytes = graph::build(&set.base, dim, m, &GraphParams::default());
    let graph_s = t.elapsed().as_secs_f64();
    let ivf = AnnIndex::open(&ivf_bytes).expect("ivf");
    let g = GraphIndex::open(bytes::Bytes::from(g_bytes)).expect("graph");
    let cal_s = calibration_seconds(set, &g);
    // The engine's unfiltered path (`escalate`: as today; without: before stop 47). Returns the
    // rows and whether the query escalated.
    let rows = tidepool::index::vector::rows::SliceRows { vectors: &set.base, dim };
    let path_of = |i: usize, escalate: bool| -> (Vec<(u32, f32)>, bool) {
        if let Some(ef) = g.effort(DEFAULT_TARGET) {
            let p = GraphSearchParams { ef, rerank: 0 };
            if escalate {
                return g.search_escalating(&rows, q(i), K, None, &p);
            }
            return (g.search(&set.base, q(i), K, None, &p), false);
        }
        match ivf.effort(DEFAULT_TARGET) {
            Some((nprobe, rerank)) => {
                let p = SearchParams { nprobe, rerank, ..SearchParams::default() };
                let found = ivf.search(&set.base, q(i), K, None, &p);
                if escalate && found.get(K - 1).is_some_and(|r| ivf.calibration().beyond_reach(r.1)) {
                    return (ann::exact(&set.base, dim, m, q(i), K, None), true);
                }
                (found, false)
            }
            None => (ann::exact(&set.base, dim, m, q(i), K, None), false),
        }
    };
    let search = |i: usize| path_of(i, true).0;
    let plain = |i: usize| path_of(i, false).0;
    let escalated = (0..nq).filter(|i| path_of(*i, true).1).count() as f64 / nq as f64;
    let path = match (g.effort(DEFAULT_TARGET), ivf.effort(DEFAULT_TARGET)) {
        (Some(ef), _) => format!("graph ef {ef}"),
        (None, Some((np, rr))) => format!("ivf nprobe {np}/{} rerank {rr}", ivf.nlist()),
        (None, None) => "exact".into(),
    };
    let rec = (0..nq).map(|i| recall(&search(i), kth[i])).sum::<f64>() / nq as f64;
    let ours_qps = qps(nq, min, |i| {
        std::hint::black_box(search(i));
    });
    let rec_plain = (0..nq).map(|i| recall(&plain(i), kth[i])).sum::<f64>() / nq as f64;
    let plain_qps = qps(nq, min, |i| {
        std::hint::black_box(plain(i));
    });
    let exact_qps = qps(nq, min / 4, |i| {
        std::hint::black_box(ann::exact(&set.base, dim, m, q(i), K, None));
    });
    let kth_mean = kth.iter().map(|d| f64::from(*d)).sum::<f64>() / nq as f64;
    let at = |ix: &GraphIndex, ef: u32| {
        (0..nq)
            .map(|i| {
                recall(&ix.search(&set.base, q(i), K, None, &GraphSearchParams { ef, rerank: 0 }), kth[i])
            })
            .sum::<f64>()
            / nq as f64
    };
    // What centring buys: the same graph build with uncentred codes, at fixed beam widths.
    let centring = if set.name.starts_with("cone") || set.name.starts_with("gaussian-96") {
        let plain = GraphParams { centred: false, ..GraphParams::default() };
        let u = GraphIndex::open(bytes::Bytes::from(graph::build(&set.base, dim, m, &plain))).expect("graph");
        serde_json::json!({"centred_ef24": at(&g, 24), "uncentred_ef24": at(&u, 24),
            "centred_ef64": at(&g, 64), "uncentred_ef64": at(&u, 64)})
    } else {
        serde_json::Value::Null
    };
    let codes = compare_codes(set, &kth, min / 4);
    let dir = out.join(&set.name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    write_f32(&dir.join("base.f32"), &set.base);
    write_f32(&dir.join("queries.f32"), &set.queries);
    write_f32(&dir.join("kth.f32"), &kth);
    let cal = |c: &tidepool::index::vector::calibrate::Calibration| -> Vec<serde_json::Value> {
        c.rungs.iter().map(|r| serde_json::json!([r.effort, r.rerank, r.recall()])).collect()
    };
    let res = serde_json::json!({
        "name": set.name, "rows": set.base.len() / dim, "dim": dim,
        "metric": if m == Metric::CosineDistance { "cosine" } else { "l2" },
        "path": path, "recall": rec, "qps": ours_qps, "recall_plain": rec_plain, "qps_plain": plain_qps,
        "escalated": escalated, "qps_exact": exact_qps, "held_out_kth_mean": kth_mean,
        "graph_reach": g.calibration().reach(), "ivf_reach": ivf.calibration().reach(), "ivf_build_s": ivf_s, "graph_build_s": graph_s, "graph_calibration_s": cal_s,
        "graph_calibration": cal(g.calibration()), "ivf_calibration": cal(ivf.calibration()),
        "centring": centring, "graph_code_bits": g.code_bits(),
        "traversal_bytes_per_row": g.traversal_bytes_per_row(), "codes": codes,
    });
    std::fs::write(dir.join("meta.json"), res.to_string()).expect("meta");
    eprintln!(
        "{:<18} {:<28} recall@10 {rec:.3}  QPS {ours_qps:>7.0}  escalated {escalated:.3} (without: {rec_plain:.3}, {plain_qps:.0} QPS; exact {exact_qps:.0} QPS)  build ivf {ivf_s:.1}s graph {graph_s:.1}s (calibration ~{cal_s:.2}s)  {}",
        set.name, path, res["centring"]
    );
    res
}

/// The graph codes compared (`ANN_ROBUST_CODES`, comma separated: `sq8`, `rq1`, `rq2`, `rq4`;
/// default all four): for each, the same graph built with those traversal codes, its bytes per
/// row touched by the traversal (codes + neighbours), the calibrated ef for the 0.95 target and
/// the recall@10 and single-thread QPS of the graph alone at it and at every ef of its ladder.
///
/// Link layouts (stop 49): every point is measured on the section as built (version 4, packed
/// neighbour ids) and on the same graph with u32 ids (`graph::downgrade`: version 2 or 3),
/// alternately, twice each (`qps` packed, `qps_u32`); both return the same rows. Calibration
/// scales (`ANN_ROBUST_PERTURB`, default `1.0,0.7,0.5`): the same section built with each
/// perturbation scale (`GraphParams::perturb`; only the record differs) and the ef it picks.
fn compare_codes(set: &Set, kth: &[f32], min: Duration) -> serde_json::Value {
    let (dim, m) = (set.dim, set.metric);
    let nq = set.queries.len() / dim;
    let q = |i: usize| &set.queries[i * dim..(i + 1) * dim];
    let list = std::env::var("ANN_ROBUST_CODES").unwrap_or_else(|_| "sq8,rq1,rq2,rq4".into());
    let scales = std::env::var("ANN_ROBUST_PERTURB").unwrap_or_else(|_| "1.0,0.7,0.5".into());
    let mut out = Vec::new();
    for name in list.split(',').filter(|s| !s.is_empty()) {
        let code = match name.strip_prefix("rq").and_then(|b| b.parse().ok()) {
            Some(bits) => graph::GraphCode::RaBitQ { bits },
            None => graph::GraphCode::Sq8,
        };
        let t = Instant::now();
        let bytes = graph::build(&set.base, dim, m, &GraphParams { code, ..GraphParams::default() });
        let build_s = t.elapsed().as_secs_f64();
        let wide_bytes = graph::downgrade(&bytes).expect("a version-4 section");
        let section_row = bytes.len() as f64 / (set.base.len() / dim) as f64;
        let section_row_u32 = wide_bytes.len() as f64 / (set.base.len() / dim) as f64;
        let g = GraphIndex::open(bytes::Bytes::from(bytes)).expect("graph");
        let w = GraphIndex::open(bytes::Bytes::from(wide_bytes)).expect("graph u32");
        let point = |ef: u32| {
            let p = GraphSearchParams { ef, rerank: 0 };
            let found: Vec<_> = (0..nq).map(|i| g.search(&set.base, q(i), K, None, &p)).collect();
            assert!((0..nq).all(|i| w.search(&set.base, q(i), K, None, &p) == found[i]), "layouts differ");
            let rec = (0..nq).map(|i| recall(&found[i], kth[i])).sum::<f64>() / nq as f64;
            let (mut packed, mut wide) = (0.0, 0.0);
            for _ in 0..2 {
                packed += qps(nq, min, |i| {
                    std::hint::black_box(g.search(&set.base, q(i), K, None, &p));
                }) / 2.0;
                wide += qps(nq, min, |i| {
                    std::hint::black_box(w.search(&set.base, q(i), K, None, &p));
                }) / 2.0;
            }
            serde_json::json!({"ef": ef, "recall": rec, "qps": packed, "qps_u32": wide})
        };
        let ladder: &[u32] =
            if code == graph::GraphCode::Sq8 { &graph::EF_LADDER } else { &graph::PLANES_LADDER };
        let sweep: Vec<_> = ladder.iter().map(|ef| point(*ef)).collect();
        let at95 = g
            .effort(DEFAULT_TARGET)
            .map(|ef| sweep.iter().find(|p| p["ef"] == ef).cloned().unwrap_or_else(|| point(ef)));
        let picks: Vec<_> = scales
            .split(',')
            .filter_map(|v| v.parse::<f32>().ok())
            .map(|perturb| {
                let b = graph::build(&set.base, dim, m, &GraphParams { code, perturb, ..GraphParams::default() });
                let s = GraphIndex::open(bytes::Bytes::from(b)).expect("graph");
                let ef = s.effort(DEFAULT_TARGET);
                let at = ef.and_then(|ef| sweep.iter().find(|p| p["ef"] == ef).cloned());
                serde_json::json!({"perturb": perturb, "ef": ef, "at": at, "reach": s.calibration().reach(),
                    "calibration": s.calibration().rungs.iter().map(|r| serde_json::json!([r.effort, r.recall()])).collect::<Vec<_>>()})
            })
            .collect();
        eprintln!(
            "  {name:<4} bytes/row {:>4} (u32 links {:>4}) section/row {section_row:.1} (u32 {section_row_u32:.1})  at 0.95: {}\n    picks {}\n    sweep {}",
            g.traversal_bytes_per_row(),
            w.traversal_bytes_per_row(),
            at95.as_ref().map_or("exact".into(), |v| v.to_string()),
            serde_json::Value::from(picks.clone()),
            serde_json::Value::from(sweep.clone())
        );
        out.push(serde_json::json!({"code": name, "bits": g.code_bits(),
            "bytes_per_row": g.traversal_bytes_per_row(), "bytes_per_row_u32": w.traversal_bytes_per_row(),
            "section_bytes_per_row": section_row, "section_bytes_per_row_u32": section_row_u32, "build_s": build_s,
            "calibration": g.calibration().rungs.iter().map(|r| serde_json::json!([r.effort, r.recall()])).collect::<Vec<_>>(),
            "at95": at95, "sweep": sweep, "picks": picks}));
    }
    serde_json::Value::from(out)
}

fn main() {
    let rows = env_usize("ANN_ROBUST_ROWS", 30_000);
    let min = Duration::from_millis(env_usize("ANN_BENCH_MS", 1000) as u64);
    let out = std::path::PathBuf::from(
        std::env::var("ANN_ROBUST_OUT").unwrap_or_else(|_| "target/bench/robust".into()),
    );
    let only = std::env::var("ANN_ROBUST_ONLY").ok();
    let diagnose = std::env::var("ANN_ROBUST_DIAG").is_ok_and(|v| v == "1");
    let mut all = Vec::new();
    for set in sets(rows) {
        if only.as_ref().is_some_and(|o| !set.name.contains(o.as_str())) {
            continue;
        }
        if diagnose {
            calib_diag::run(&set.name, &set.base, &set.queries, set.dim, set.metric);
            continue;
        }
        all.push(run(&set, &out, min));
    }
    println!("{}", serde_json::to_string_pretty(&all).expect("json"));
}
