//! Warm-path graph index of one segment's dense vectors (section kind 20): a single-layer
//! proximity graph (HNSW layer 0 built by incremental insertion with the HNSW neighbour-selection
//! heuristic) of fixed degree, u32 neighbour ids, greedy beam search over 8-bit codes and an
//! exact f32 rerank of the best candidates from the segment's own vectors. Built at compaction
//! ([`build`]) next to the IVF section (which stays the index for narrow filters and cold reads);
//! served zero-copy from the section bytes ([`GraphIndex::open`]).
//!
//! Section layout (little-endian; blocks start on 64-byte boundaries of the section):
//!
//! ```text
//! 0   magic "TPGRAPH0"   8 version u32 (=2)   12 header_len u32 (=128; version 1: 64)
//! 16  metric u8 (0 cosine, 1 euclidean_squared)   17 reserved 3 bytes (0)
//! 20  dim u32   24 rows u32   28 degree u32   32 code_stride u32 (dim rounded up to 64)
//! 36  entry u32 (start row of every search)   40 default_ef u32   44 reserved 12 bytes (0)
//! 56  crc32c u32 of bytes [0, 56) ++ [64, len)   60 reserved u32 (0)
//! 64  calibration record, 48 bytes (version 2; `calibrate` module: measured recall per ef)
//! 112 reserved 16 bytes (0)
//! 128 scales    f32 [dim]                 per-dimension code scale
//!     mean      f32 [dim]                 m: mean of the indexed vectors (version 2 only)
//!     norms2    f32 [rows]                |x − m|² of the indexed vector (cosine: unit-normalised)
//!     neighbors u32 [rows × degree]       neighbour rows, unused slots u32::MAX (trailing)
//!     codes     u8  [rows × code_stride]  round((x_j − m_j) · s_j) + 128, padding 128
//! ```
//! Block offsets follow from the header (each block padded to 64 bytes); the section length must
//! equal the end of the codes block. Version 1 (64-byte header, no mean block, uncentred codes,
//! no calibration) still opens: it is searched as if `m` = 0 with its stored `default_ef`.
//!
//! Centred codes: the graph works on `x − m`. Squared L2 is translation invariant (and cosine
//! on unit rows is half of it), so every distance is unchanged, but a component all rows share
//! (a narrow cone) no longer spends the 8-bit range of its dimension: the codes resolve the
//! spread between rows, not their common offset.
//!
//! Invariants:
//! - Rows are segment rows; the caller's `vectors` slice is rows × dim in row order.
//! - [`build`] is deterministic: fixed seed for the insertion order, integer (exact) code dot
//!   products for every build-time distance, so the same input gives the same bytes on every CPU.
//! - [`GraphIndex::open`] checks magic, version, crc32c (unless `open_trusted`), every length
//!   (checked arithmetic), that every neighbour id is < rows or the padding value, and that floats
//!   are finite; bad bytes give [`IndexError`], never a panic.
//! - Search never ranks by quantized scores alone: the best `max(rerank, 2k)` candidates are
//!   re-scored with exact f32 distances; results are sorted by (distance, row), at most k, no
//!   duplicate rows. A query of the wrong dimension gives no results; a `vectors` slice that does
//!   not match the index shape falls back to [`super::ann::exact`].
//! - With a filter, the traversal visits every row but only matching rows enter the result list
//!   (suited to wide filters; callers route narrow filters to the IVF index or exact search).
//! - [`build`] calibrates: the stored record gives the recall@10 measured at each ef of
//!   [`EF_LADDER`] on a sample of the segment's own rows; [`GraphIndex::effort`] turns a target
//!   recall into an ef, or into `None` (search exactly) when no measured ef reaches it.

use super::ann::{checksum, corrupt, exact, metric_code, quantize_query, quantize_rows, unsupported};
use super::calibrate::{self, Calibration};
use super::distance::{kernels, Kernels, Metric};
use super::Ranked;
use crate::index::IndexError;
use std::collections::BinaryHeap;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPGRAPH0";
/// Current section version.
pub const VERSION: u32 = 2;
const HEADER_LEN: usize = 128;
/// Header length of version 1 sections (no calibration, no mean block).
const HEADER_LEN_V1: usize = 64;
/// Where the calibration record sits (version 2).
const CALIB_AT: usize = 64;
/// Beam widths measured at build time (rerank = ef), cheapest first.
pub const EF_LADDER: [u32; calibrate::MAX_RUNGS] = [24, 40, 64, 100, 160, 256];
const CRC_AT: usize = 56;
const NONE: u32 = u32::MAX;

/// Build parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphParams {
    /// Maximum out-degree (fixed slots per row).
    pub degree: u32,
    /// Beam width while inserting.
    pub ef_construction: u32,
    /// Seed of the insertion order.
    pub seed: u64,
    /// Beam width stored as the search default when calibration cannot run (tiny segments).
    pub default_ef: u32,
    /// Centre the codes on the mean (always, except to measure what centring buys).
    pub centred: bool,
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            degree: 32,
            ef_construction: 96,
            seed: 0x7469_6465_6772_6170,
            default_ef: 24,
            centred: true,
        }
    }
}

/// Search parameters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphSearchParams {
    /// Beam width; 0 = the index default. At least `max(k, rerank)` is used.
    pub ef: u32,
    /// Candidates re-scored exactly; 0 = the beam width (at least 2·k always).
    pub rerank: u32,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pad64(n: usize) -> Option<usize> {
    n.checked_add(63).map(|v| v / 64 * 64)
}

/// Block offsets (scales, mean, norms, neighbors, codes, end) for a shape; None on overflow.
/// Version 1 (`v1`) has a 64-byte header and no mean block (`mean` = `norms`).
fn layout(v1: bool, dim: usize, rows: usize, degree: usize, stride: usize) -> Option<[usize; 6]> {
    let scales = if v1 { HEADER_LEN_V1 } else { HEADER_LEN };
    let mean = scales.checked_add(pad64(dim.checked_mul(4)?)?)?;
    let norms = if v1 { mean } else { mean.checked_add(pad64(dim.checked_mul(4)?)?)? };
    let nb = norms.checked_add(pad64(rows.checked_mul(4)?)?)?;
    let codes = nb.checked_add(pad64(rows.checked_mul(degree)?.checked_mul(4)?)?)?;
    let end = codes.checked_add(rows.checked_mul(stride)?)?;
    Some([scales, mean, norms, nb, codes, end])
}

fn section_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(&b[..CRC_AT]);
    crc32c::crc32c_append(c, &b[HEADER_LEN_V1..])
}

/// Build-time view: codes of every row as data (u8) and as query (i8, bias, inverse scale).
struct Coded<'a> {
    kern: &'a Kernels,
    stride: usize,
    codes: &'a [u8],
    qcodes: &'a [i8],
    qbias: &'a [i32],
    qinv: &'a [f32],
    norms2: &'a [f32],
}

impl Coded<'_> {
    /// Approximate |x_a - x_b|² (exact integer dot product of the codes).
    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        let (a, b) = (a as usize, b as usize);
        let q = &self.qcodes[a * self.stride..(a + 1) * self.stride];
        let c = &self.codes[b * self.stride..(b + 1) * self.stride];
        let s = (self.kern.u8i8(q, c) - self.qbias[a]) as f32 * self.qinv[a];
        self.norms2[a] + self.norms2[b] - 2.0 * s
    }
}

/// Beam search over an adjacency accessor; returns up to `ef` (distance, row) ascending.
fn beam(
    entry: u32,
    ef: usize,
    visited: (&mut Visited, Option<u32>),
    mut dist: impl FnMut(u32) -> f32,
    mut neighbors: impl FnMut(u32, &mut Vec<u32>),
    accept: &dyn Fn(u32) -> bool,
) -> Vec<Ranked> {
    let (visited, hidden) = visited;
    visited.next();
    // A hidden row is never entered (calibration hides the stored row it queries with).
    if let Some(h) = hidden.filter(|h| *h != entry) {
        visited.insert(h);
    }
    let mut cand: BinaryHeap<std::cmp::Reverse<Ranked>> = BinaryHeap::with_capacity(ef * 4);
    let mut res: BinaryHeap<Ranked> = BinaryHeap::with_capacity(ef + 1);
    let d0 = dist(entry);
    visited.insert(entry);
    cand.push(std::cmp::Reverse(Ranked(d0, entry)));
    if accept(entry) {
        res.push(Ranked(d0, entry));
    }
    let mut nb = Vec::with_capacity(64);
    while let Some(std::cmp::Reverse(c)) = cand.pop() {
        if res.len() >= ef && res.peek().is_some_and(|w| c.0 > w.0) {
            break;
        }
        nb.clear();
        neighbors(c.1, &mut nb);
        nb.retain(|&u| visited.insert(u));
        for &u in &nb {
            let d = dist(u);
            let worst = res.peek().map_or(f32::INFINITY, |w| w.0);
            if res.len() < ef || d < worst {
                cand.push(std::cmp::Reverse(Ranked(d, u)));
                if accept(u) {
                    res.push(Ranked(d, u));
                    if res.len() > ef {
                        res.pop();
                    }
                }
            }
        }
    }
    let mut v = res.into_vec();
    v.sort_unstable();
    v
}

/// Epoch-stamped visited set.
struct Visited {
    stamp: Vec<u32>,
    epoch: u32,
}

impl Visited {
    fn new(n: usize) -> Self {
        Visited { stamp: vec![0; n], epoch: 0 }
    }
    fn next(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.epoch = 1;
        }
    }
    /// True when `u` was not visited yet (and marks it); out-of-range ids count as visited.
    #[inline]
    fn insert(&mut self, u: u32) -> bool {
        match self.stamp.get_mut(u as usize) {
            Some(s) if *s != self.epoch => {
                *s = self.epoch;
                true
            }
            _ => false,
        }
    }
}

/// HNSW neighbour-selection heuristic: from `cands` (ascending by distance to the base), keep a
/// candidate when it is closer to the base than to every kept one; fill up with the closest
/// discarded ones to `m`.
fn select(cands: &[Ranked], m: usize, cd: &Coded<'_>) -> Vec<u32> {
    let mut kept: Vec<Ranked> = Vec::with_capacity(m);
    let mut rest: Vec<u32> = Vec::new();
    for c in cands {
        if kept.len() >= m {
            break;
        }
        if kept.iter().all(|s| cd.dist(c.1, s.1) > c.0) {
            kept.push(*c);
        } else {
            rest.push(c.1);
        }
    }
    let mut out: Vec<u32> = kept.iter().map(|d| d.1).collect();
    for r in rest {
        if out.len() >= m {
            break;
        }
        out.push(r);
    }
    out
}

/// The vectors the graph indexes: cosine rows unit-normalised (f64 norms), euclidean as given.
fn index_space(vectors: &[f32], rows: usize, dim: usize, metric: Metric) -> Vec<f32> {
    let mut v = vectors[..rows * dim].to_vec();
    if metric == Metric::CosineDistance {
        for x in v.chunks_exact_mut(dim.max(1)) {
            let n: f64 = x.iter().map(|a| f64::from(*a) * f64::from(*a)).sum::<f64>().sqrt();
            if n > 0.0 && n.is_finite() {
                x.iter_mut().for_each(|a| *a = (f64::from(*a) / n) as f32);
            }
        }
    }
    v
}

/// Mean of the rows (f64 sums in row order: deterministic).
fn mean_of(space: &[f32], dim: usize) -> Vec<f64> {
    let mut mean = vec![0f64; dim];
    let rows = space.len().checked_div(dim).unwrap_or(0);
    for x in space.chunks_exact(dim.max(1)) {
        mean.iter_mut().zip(x).for_each(|(m, v)| *m += f64::from(*v));
    }
    mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
    mean
}

/// The row closest to the mean: the entry of every search.
fn entry_row(space: &[f32], dim: usize, mean: &[f64]) -> u32 {
    let (mut entry, mut best) = (0u32, f64::INFINITY);
    for (r, x) in space.chunks_exact(dim.max(1)).enumerate() {
        let d: f64 = x.iter().zip(mean).map(|(v, m)| (f64::from(*v) - m).powi(2)).sum();
        if d < best {
            best = d;
            entry = r as u32;
        }
    }
    entry
}

/// Codes of the centred rows: data codes, query codes (i8, bias, inverse scale), |x − m|².
struct CentredCodes {
    scales: Vec<f32>,
    codes: Vec<u8>,
    qcodes: Vec<i8>,
    qbias: Vec<i32>,
    qinv: Vec<f32>,
    norms2: Vec<f32>,
}

fn centred_codes(space: &[f32], mean: &[f32], dim: usize, stride: usize) -> CentredCodes {
    let rows = space.len().checked_div(dim).unwrap_or(0);
    let mut centred = space.to_vec();
    for x in centred.chunks_exact_mut(dim.max(1)) {
        x.iter_mut().zip(mean).for_each(|(v, m)| *v -= m);
    }
    let (scales, codes) = quantize_rows(&centred, dim, stride);
    let mut cc = CentredCodes {
        qcodes: vec![0i8; rows * stride],
        qbias: vec![0i32; rows],
        qinv: vec![0f32; rows],
        norms2: vec![0f32; rows],
        scales,
        codes,
    };
    for (r, x) in centred.chunks_exact(dim.max(1)).enumerate() {
        let (q, b, inv) = quantize_query(x, &cc.scales, stride);
        cc.qcodes[r * stride..(r + 1) * stride].copy_from_slice(&q);
        cc.qbias[r] = b;
        cc.qinv[r] = inv;
        cc.norms2[r] = x.iter().map(|a| f64::from(*a) * f64::from(*a)).sum::<f64>() as f32;
    }
    cc
}

/// Builds the proximity graph over the coded rows: the adjacency (rows × degree, `NONE` padded).
fn link(cd: &Coded<'_>, rows: usize, degree: usize, entry: u32, params: &GraphParams) -> Vec<u32> {
    let mut adj = vec![NONE; rows * degree];
    let mut len = vec![0u32; rows];
    // Insertion order: entry first, the rest shuffled with the seed.
    let mut order: Vec<u32> = (0..rows as u32).filter(|r| *r != entry).collect();
    let mut s = params.seed;
    for i in (1..order.len()).rev() {
        let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let mut visited = Visited::new(rows);
    let efc = (params.ef_construction as usize).max(degree);
    let accept_all = |_: u32| true;
    for &v in &order {
        let found = {
            let (adj, len) = (&adj, &len);
            beam(
                entry,
                efc,
                (&mut visited, None),
                |u| cd.dist(v, u),
                |u, out| {
                    let u = u as usize;
                    out.extend_from_slice(&adj[u * degree..u * degree + len[u] as usize]);
                },
                &accept_all,
            )
        };
        let chosen = select(&found, degree, cd);
        let vi = v as usize;
        adj[vi * degree..vi * degree + chosen.len()].copy_from_slice(&chosen);
        len[vi] = chosen.len() as u32;
        for &u in &chosen {
            let ui = u as usize;
            let l = len[ui] as usize;
            if l < degree {
                adj[ui * degree + l] = v;
                len[ui] += 1;
            } else {
                let mut c: Vec<Ranked> =
                    adj[ui * degree..(ui + 1) * degree].iter().map(|&w| Ranked(cd.dist(u, w), w)).collect();
                c.push(Ranked(cd.dist(u, v), v));
                c.sort_unstable();
                let sel = select(&c, degree, cd);
                adj[ui * degree..(ui + 1) * degree].fill(NONE);
                adj[ui * degree..ui * degree + sel.len()].copy_from_slice(&sel);
                len[ui] = sel.len() as u32;
            }
        }
    }
    adj
}

fn put_f32s(b: &mut [u8], at: usize, v: &[f32]) {
    for (i, x) in v.iter().enumerate() {
        b[at + 4 * i..at + 4 * i + 4].copy_from_slice(&x.to_le_bytes());
    }
}

/// Builds the section for `vectors` (rows × dim, row order), calibrated (see the module docs).
/// Rows of zeros (e.g. rows without a vector) are indexed like any other; callers exclude them
/// with the search filter.
pub fn build(vectors: &[f32], dim: usize, metric: Metric, params: &GraphParams) -> Vec<u8> {
    let rows = vectors.len().checked_div(dim).unwrap_or(0);
    let degree = params.degree.clamp(2, 256) as usize;
    let stride = dim.div_ceil(64) * 64;
    let space = index_space(vectors, rows, dim, metric);
    let mean64 = mean_of(&space, dim);
    let mean: Vec<f32> = mean64.iter().map(|m| if params.centred { *m as f32 } else { 0.0 }).collect();
    let entry = entry_row(&space, dim, &mean64);
    let cc = centred_codes(&space, &mean, dim, stride);
    let cd = Coded {
        kern: kernels(),
        stride,
        codes: &cc.codes,
        qcodes: &cc.qcodes,
        qbias: &cc.qbias,
        qinv: &cc.qinv,
        norms2: &cc.norms2,
    };
    let adj = link(&cd, rows, degree, entry, params);
    let Some([o_sc, o_m, o_n, o_nb, o_c, end]) = layout(false, dim, rows, degree, stride) else {
        return Vec::new();
    };
    let mut b = vec![0u8; end];
    b[..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    b[16] = metric_code(metric);
    for (at, v) in [
        (20, dim as u32),
        (24, rows as u32),
        (28, degree as u32),
        (32, stride as u32),
        (36, entry),
        (40, params.default_ef.max(1)),
    ] {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    put_f32s(&mut b, o_sc, &cc.scales);
    put_f32s(&mut b, o_m, &mean);
    put_f32s(&mut b, o_n, &cc.norms2);
    for (i, v) in adj.iter().enumerate() {
        b[o_nb + 4 * i..o_nb + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    b[o_c..end].copy_from_slice(&cc.codes);
    drop(cc);
    let mut b = calibrate_section(b, &vectors[..rows * dim], &space, dim, metric);
    let crc = section_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Measures the built section on a sample of its own rows (deterministic kernels: the record
/// is the same on every CPU), stores the record and, as `default_ef`, the ef that reaches the default
/// target (the top of the ladder when none does; queries then search exactly).
fn calibrate_section(b: Vec<u8>, vectors: &[f32], space: &[f32], dim: usize, metric: Metric) -> Vec<u8> {
    let sample = calibrate::sample(space, dim, metric);
    let bytes = bytes::Bytes::from(b);
    let cal = match GraphIndex::parse(bytes.clone(), false) {
        Ok(mut ix) => {
            ix.kern = super::distance::deterministic();
            let ladder: Vec<(u32, u32)> = EF_LADDER.iter().map(|e| (*e, *e)).collect();
            calibrate::calibrate(space, dim, metric, &sample, &ladder, |q, ef, rerank| {
                let qv = &vectors[q as usize * dim..(q as usize + 1) * dim];
                let p = GraphSearchParams { ef, rerank };
                let found = ix.search_hiding(vectors, qv, calibrate::K + 1, None, &p, Some(q));
                found.into_iter().map(|r| r.0).collect()
            })
        }
        Err(_) => Calibration::default(),
    };
    let mut b = Vec::from(bytes);
    if let Some(top) = cal.rungs.last() {
        let ef = cal.pick(calibrate::DEFAULT_TARGET).unwrap_or(*top).effort;
        b[40..44].copy_from_slice(&ef.to_le_bytes());
    }
    b[CALIB_AT..CALIB_AT + calibrate::RECORD_LEN].copy_from_slice(&cal.encode());
    b
}

/// An opened graph section (owns a cheap clone of the bytes).
#[derive(Clone)]
pub struct GraphIndex {
    bytes: bytes::Bytes,
    kern: &'static Kernels,
    metric: Metric,
    dim: usize,
    rows: usize,
    degree: usize,
    stride: usize,
    entry: u32,
    default_ef: usize,
    calibration: Calibration,
    scales: Vec<f32>,
    mean: Vec<f32>,
    norms2: Vec<f32>,
    off_nb: usize,
    off_codes: usize,
}

fn rd_u32(b: &[u8], at: usize) -> Result<u32, IndexError> {
    crate::codec::u32_at(b, at).ok_or(corrupt("truncated"))
}

fn rd_f32s(b: &[u8], at: usize, n: usize) -> Result<Vec<f32>, IndexError> {
    let end = n.checked_mul(4).and_then(|l| l.checked_add(at)).ok_or(corrupt("length overflow"))?;
    let s = b.get(at..end).ok_or(corrupt("truncated block"))?;
    let v = crate::codec::f32s_le(s);
    if v.iter().all(|x| x.is_finite()) {
        Ok(v)
    } else {
        Err(corrupt("non-finite float"))
    }
}

impl GraphIndex {
    /// Opens and validates a section (crc32c included).
    pub fn open(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        Self::parse(bytes, true)
    }

    /// Opens a section whose bytes were verified by the caller (skips only the crc32c).
    pub fn open_trusted(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        Self::parse(bytes, false)
    }

    fn parse(bytes: bytes::Bytes, check_crc: bool) -> Result<Self, IndexError> {
        let b = &bytes[..];
        if b.len() < HEADER_LEN_V1 {
            return Err(corrupt("shorter than the header"));
        }
        if b[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = rd_u32(b, 8)?;
        let v1 = match (version, rd_u32(b, 12)? as usize) {
            (1, HEADER_LEN_V1) => true,
            (VERSION, HEADER_LEN) if b.len() >= HEADER_LEN => false,
            _ => return Err(unsupported(version, b[16])),
        };
        let metric = super::ann::metric_from_code(b[16])?;
        let dim = rd_u32(b, 20)? as usize;
        let rows = rd_u32(b, 24)? as usize;
        let degree = rd_u32(b, 28)? as usize;
        let stride = rd_u32(b, 32)? as usize;
        let entry = rd_u32(b, 36)?;
        let default_ef = rd_u32(b, 40)? as usize;
        if dim == 0 || stride != dim.div_ceil(64) * 64 || degree == 0 || degree > 256 || default_ef == 0 {
            return Err(corrupt("bad shape"));
        }
        if rows > 0 && entry as usize >= rows {
            return Err(corrupt("entry out of range"));
        }
        let [o_sc, o_m, o_n, o_nb, o_c, end] =
            layout(v1, dim, rows, degree, stride).ok_or(corrupt("length overflow"))?;
        if end != b.len() {
            return Err(corrupt("length does not match the shape"));
        }
        if check_crc && rd_u32(b, CRC_AT)? != section_crc(b) {
            return Err(checksum());
        }
        let scales = rd_f32s(b, o_sc, dim)?;
        let (mean, calibration) = if v1 {
            (vec![0f32; dim], Calibration::default())
        } else {
            (rd_f32s(b, o_m, dim)?, Calibration::decode(&b[CALIB_AT..])?)
        };
        let norms2 = rd_f32s(b, o_n, rows)?;
        let nb = b.get(o_nb..o_c).ok_or(corrupt("truncated neighbours"))?;
        for c in nb.chunks_exact(4) {
            let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if u != NONE && u as usize >= rows {
                return Err(corrupt("neighbour out of range"));
            }
        }
        Ok(GraphIndex {
            kern: kernels(),
            metric,
            dim,
            rows,
            degree,
            stride,
            entry,
            default_ef,
            calibration,
            scales,
            mean,
            norms2,
            off_nb: o_nb,
            off_codes: o_c,
            bytes,
        })
    }

    /// Distance metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// Rows indexed.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Default beam width (calibrated sections: the ef that reached the build's target).
    pub fn default_ef(&self) -> usize {
        self.default_ef
    }
    /// What the build measured (empty for sections built before calibration).
    pub fn calibration(&self) -> &Calibration {
        &self.calibration
    }
    /// The beam width for a target recall@10: the cheapest measured ef reaching it, the stored
    /// default when the section is not calibrated, `None` when no measured ef reaches it (the
    /// caller searches exactly).
    pub fn effort(&self, target: f32) -> Option<u32> {
        if !self.calibration.is_calibrated() {
            return Some(self.default_ef as u32);
        }
        self.calibration.pick(target).map(|r| r.effort)
    }
    /// Heap bytes held besides the section bytes.
    pub fn heap_bytes(&self) -> usize {
        (self.scales.len() + self.mean.len() + self.norms2.len()) * 4
    }

    /// Approximate k nearest rows: (row, exact distance) sorted by (distance, row). Only rows
    /// passing `filter` are returned (the traversal still walks through the others).
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &GraphSearchParams,
    ) -> Vec<(u32, f32)> {
        self.search_hiding(vectors, query, k, filter, params, None)
    }

    /// [`GraphIndex::search`] as if row `hidden` were not in the graph (never entered, so its
    /// own links — which lead straight to its neighbours — are not followed): a stored row then
    /// queries the graph like a fresh vector does.
    fn search_hiding(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &GraphSearchParams,
        hidden: Option<u32>,
    ) -> Vec<(u32, f32)> {
        if k == 0 || query.len() != self.dim || self.rows == 0 {
            return Vec::new();
        }
        if vectors.len() != self.rows * self.dim {
            return exact(vectors, self.dim, self.metric, query, k, filter);
        }
        let kern = self.kern;
        let qn: Vec<f32> = match self.metric {
            Metric::CosineDistance => {
                let n = kern.dot(query, query).sqrt();
                if !(n > 0.0 && n.is_finite()) {
                    return exact(vectors, self.dim, self.metric, query, k, filter);
                }
                query.iter().map(|v| v / n).collect()
            }
            Metric::EuclideanSquared => query.to_vec(),
        };
        // Centred query (see the module docs); the constant |q − m|² is left out of the ranking.
        let qc: Vec<f32> = qn.iter().zip(&self.mean).map(|(v, m)| v - m).collect();
        let (qq, bias, inv) = quantize_query(&qc, &self.scales, self.stride);
        let ef = if params.ef == 0 { self.default_ef } else { params.ef as usize }.max(k);
        let rerank = if params.rerank == 0 { ef } else { params.rerank as usize }.max(2 * k);
        let ef = ef.max(rerank);
        let b = &self.bytes[..];
        let codes = &b[self.off_codes..];
        let nb = &b[self.off_nb..self.off_codes];
        let stride = self.stride;
        let degree = self.degree;
        let norms2 = &self.norms2;
        let dist = |u: u32| {
            let u = u as usize;
            let c = codes.get(u * stride..(u + 1) * stride).unwrap_or(&[]);
            if c.len() != stride {
                return f32::INFINITY;
            }
            let s = (kern.u8i8(&qq, c) - bias) as f32 * inv;
            norms2.get(u).copied().unwrap_or(0.0) - 2.0 * s
        };
        let neighbors = |u: u32, out: &mut Vec<u32>| {
            let u = u as usize;
            if let Some(s) = nb.get(u * degree * 4..(u + 1) * degree * 4) {
                for c in s.chunks_exact(4) {
                    let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    if w == NONE {
                        break;
                    }
                    super::distance::prefetch(codes.get(w as usize * stride..).unwrap_or(&[]), 128);
                    out.push(w);
                }
            }
        };
        let all = |_: u32| true;
        let accept: &dyn Fn(u32) -> bool = match filter {
            Some(f) => f,
            None => &all,
        };
        let found = VISITED.with(|cell| {
            let mut v = cell.borrow_mut();
            if v.stamp.len() < self.rows {
                *v = Visited::new(self.rows);
            }
            beam(self.entry, ef, (&mut v, hidden), dist, neighbors, accept)
        });
        let dim = self.dim;
        let mut out: Vec<(u32, f32)> = found
            .iter()
            .take(rerank)
            .map(|d| {
                let r = d.1 as usize;
                (d.1, kern.distance(self.metric, query, &vectors[r * dim..(r + 1) * dim]))
            })
            .collect();
        out.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out.truncate(k);
        out
    }
}

thread_local! {
    static VISITED: std::cell::RefCell<Visited> = std::cell::RefCell::new(Visited::new(0));
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
