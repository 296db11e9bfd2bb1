//! Graph build benchmark: build time, build memory and recall@10 of the graph section on
//! Debian-derived 384-d vectors (`/work/shared/data/debian`, or `TIDEPOOL_DATA`), grown to
//! `ROWS` rows by repeating the corpus with small deterministic noise (row i = corpus row
//! i mod 36 000 + N(0, 0.01²) per component for i ≥ 36 000).
//!
//! Prints one JSON line: rows, threads, build seconds (wall and CPU of all threads), the build's own peak memory (VmHWM after
//! the build minus the resident size before it, MiB), the calibrated default ef and the
//! recall@10 at that ef on the dev queries (exact truth over the grown set, tie rule of
//! `_debug/recall`), the mean search time at that ef (µs) and the section's crc32c (a change
//! meant to keep the section's bytes must keep it). `GRAPH_EFC` / `GRAPH_DEGREE` override the
//! linking's beam width and degree (build cost against search cost).
//!
//! Run: `CARGO_TARGET_DIR=target/bench cargo build --profile profiling --example graph_build`
//! then `/usr/bin/time -v target/bench/profiling/examples/graph_build ROWS THREADS [ivf [RERANK]]` (`ivf`:
//! the IVF section instead: build time, calibration and recall at its calibrated default; `RERANK`:
//! `AnnParams::assign_rerank`, 0 for the exact assignment).

use std::time::Instant;
use tidepool::index::vector::ann;
use tidepool::index::vector::distance::Metric;
use tidepool::index::vector::graph::{self, GraphIndex, GraphParams, GraphSearchParams};

const DIM: usize = 384;
const K: usize = 10;
const QUERIES: usize = 200;

fn read_f32(path: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// A field of `/proc/self/status` in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Standard normal draws from a splitmix64 stream (Box–Muller).
fn normal(s: &mut u64) -> f32 {
    let mut next = || {
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let (u, v) = (next().max(1e-300), next());
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let threads: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let root = std::env::var("TIDEPOOL_DATA").unwrap_or_else(|_| "/work/shared/data/debian".into());
    let base = read_f32(&format!("{root}/vectors.f32"));
    let queries = read_f32(&format!("{root}/queries/query_vectors.f32"));
    let n0 = base.len() / DIM;
    let mut vectors = Vec::with_capacity(rows * DIM);
    let mut s = 0x006e_6f69_7365_u64;
    for i in 0..rows {
        let src = &base[(i % n0) * DIM..(i % n0 + 1) * DIM];
        if i < n0 {
            vectors.extend_from_slice(src);
        } else {
            vectors.extend(src.iter().map(|v| v + 0.01 * normal(&mut s)));
        }
    }
    drop(base);
    if args.get(3).is_some_and(|a| a == "ivf") {
        let rerank =
            args.get(4).map_or(ann::AnnParams::default().assign_rerank, |a| a.parse().expect("RERANK"));
        return ivf(&vectors, &queries, rows, (threads, rerank));
    }
    let params = graph_params(threads);
    // Reset the peak-RSS mark (Linux: writing 5 to clear_refs) so VmHWM covers the build only.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss0 = status_kib("VmRSS:");
    let (t, cpu0) = (Instant::now(), cpu_secs());
    let section = graph::build(&vectors, DIM, Metric::CosineDistance, &params);
    let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    let build_mib = status_kib("VmHWM:").saturating_sub(rss0) as f64 / 1024.0;
    // The section's bytes, to check that a change to the build kept them.
    let crc = crc32c::crc32c(&section);
    let ix = GraphIndex::open(bytes::Bytes::from(section)).expect("graph section");
    let ef = ix.default_ef() as u32;
    let mut hit = 0usize;
    let nq = QUERIES.min(queries.len() / DIM);
    let mut search_s = 0.0;
    for q in queries.chunks_exact(DIM).take(nq) {
        let truth = ann::exact(&vectors, DIM, Metric::CosineDistance, q, K, None);
        let kth = truth[K - 1].1;
        let t = Instant::now();
        let got = ix.search(&vectors, q, K, None, &GraphSearchParams { ef, rerank: 0 });
        search_s += t.elapsed().as_secs_f64();
        hit += got.iter().filter(|(_, d)| *d <= kth + 1e-5).count();
    }
    let recall = hit as f64 / (nq * K) as f64;
    let search_us = search_s * 1e6 / nq.max(1) as f64;
    println!(
        "{{\"rows\":{rows},\"threads\":{threads},\"build_s\":{secs:.2},\"build_cpu_s\":{cpu:.2},\"build_peak_mib\":{build_mib:.0},\
         \"default_ef\":{ef},\"recall_at_10\":{recall:.4},\"search_us\":{search_us:.0},\"section_crc\":\"{crc:08x}\"}}"
    );
}

/// The IVF section instead: build time and the dev queries' recall@10 at its calibrated default.
fn ivf(vectors: &[f32], queries: &[f32], rows: usize, (threads, assign_rerank): (u32, u32)) {
    let params = ann::AnnParams { threads, assign_rerank, ..ann::AnnParams::default() };
    let (t, cpu0) = (Instant::now(), cpu_secs());
    let section = ann::build(vectors, DIM, Metric::CosineDistance, &params);
    let (secs, cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - cpu0);
    let crc = crc32c::crc32c(&section);
    let ix = ann::AnnIndex::open(&section).expect("ivf section");
    let mut hit = 0usize;
    let nq = QUERIES.min(queries.len() / DIM);
    for q in queries.chunks_exact(DIM).take(nq) {
        let truth = ann::exact(vectors, DIM, Metric::CosineDistance, q, K, None);
        let got = ix.search(vectors, q, K, None, &ann::SearchParams::default());
        hit += got.iter().filter(|(_, d)| *d <= truth[K - 1].1 + 1e-5).count();
    }
    let recall = hit as f64 / (nq * K) as f64;
    let cal: Vec<String> = ix
        .calibration()
        .rungs
        .iter()
        .map(|r| format!("{}/{}:{:.3}", r.effort, r.rerank, r.recall()))
        .collect();
    println!(
        "{{\"rows\":{rows},\"threads\":{threads},\"assign_rerank\":{assign_rerank},\"ivf_build_s\":{secs:.2},\"build_cpu_s\":{cpu:.2},\"nlist\":{},         \"calibration\":\"{}\",\"recall_at_10\":{recall:.4},\"section_crc\":\"{crc:08x}\"}}",
        ix.nlist(),
        cal.join(" ")
    );
}

fn graph_params(threads: u32) -> GraphParams {
    // Bench-only overrides of the linking's effort (A/B of build cost against search cost).
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    let d = GraphParams::default();
    GraphParams {
        threads,
        ef_construction: env("GRAPH_EFC").unwrap_or(d.ef_construction),
        degree: env("GRAPH_DEGREE").unwrap_or(d.degree),
        ..d
    }
}

/// CPU seconds (user + system, every thread) of this process so far (`/proc/self/stat`).
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map_or("", |p| p.1);
    // Fields 14 and 15 (utime, stime, in 1/100 s) are the 12th and 13th after the command name.
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
