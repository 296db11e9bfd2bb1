//! Building a graph section: the indexed rows computed on the fly (no f32 copy of the input),
//! centred codes, the parallel deterministic linking, serialisation and calibration.
//! The linking reads codes, norms and lists at random over the whole segment: its beam
//! prefetches them as the served search does, and its buffers ask for huge pages
//! (`heap::advise_huge_pages`); neither changes a byte of the section.

use super::super::ann::{metric_code, quantize_query};
use super::super::calibrate::{self, Calibration};
use super::super::distance::{kernels, prefetch, prefetch_f32, Kernels, Metric};
use super::super::rabitq;
use super::super::rows::{RowSource, SliceRows};
use super::super::Ranked;
use super::beam::{beam, BeamScratch, Prefetch};
use super::search::GraphIndex;
use super::*;

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

    /// Hints the CPU to load what [`Coded::dist`] reads of its second row `b`: its data code and
    /// its norm. A large segment's codes (and norms) are far past the caches: without it, each
    /// distance of the linking waited for them from memory.
    #[inline]
    fn prefetch(&self, b: u32) {
        let (b, stride) = (b as usize, self.stride);
        prefetch(self.codes.get(b * stride..(b + 1) * stride).unwrap_or(&[]), stride);
        prefetch_f32(self.norms2.get(b..).unwrap_or(&[]));
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

/// The rows the graph indexes, computed on demand from the caller's vectors (no copy): cosine
/// rows unit-normalised by their f64 norm, euclidean rows as given.
struct Space<'a> {
    /// Scattered rows are read through it.
    source: &'a dyn RowSource,
    vectors: &'a [f32],
    dim: usize,
    rows: usize,
    /// Cosine: the f64 norm of every row (rows with a zero or non-finite norm stay as given).
    norms: Option<Vec<f64>>,
}

impl<'a> Space<'a> {
    fn new(source: &'a dyn RowSource, rows: usize, dim: usize, metric: Metric) -> Self {
        let vectors = &source.all()[..rows * dim];
        let norms = (metric == Metric::CosineDistance).then(|| {
            (0..rows)
                .map(|r| {
                    let x = &vectors[r * dim..(r + 1) * dim];
                    x.iter().map(|a| f64::from(*a) * f64::from(*a)).sum::<f64>().sqrt()
                })
                .collect()
        });
        Space { source, vectors, dim, rows, norms }
    }

    /// Row `r` in index space (borrowed when it needs no normalising, else written to `buf`).
    #[inline]
    fn row<'b>(&'b self, r: usize, buf: &'b mut [f32]) -> &'b [f32] {
        match self.normalise(r, buf) {
            Some(x) => x,
            None => buf,
        }
    }

    /// Writes row `r` normalised to `out`, or returns it when it stays as given (euclidean, or a
    /// zero or non-finite norm).
    #[inline]
    fn normalise(&self, r: usize, out: &mut [f32]) -> Option<&[f32]> {
        self.normalise_read(r, &self.vectors[r * self.dim..(r + 1) * self.dim], out)
    }

    /// [`Space::normalise`] of row `r` read as `x`.
    #[inline]
    fn normalise_read<'b>(&self, r: usize, x: &'b [f32], out: &mut [f32]) -> Option<&'b [f32]> {
        match self.norms.as_ref().map(|n| n[r]) {
            Some(n) if n > 0.0 && n.is_finite() => {
                out.iter_mut().zip(x).for_each(|(o, a)| *o = (f64::from(*a) / n) as f32);
                None
            }
            _ => Some(x),
        }
    }
}

impl calibrate::Rows for Space<'_> {
    fn count(&self) -> usize {
        self.rows
    }
    fn block<'a>(&'a self, start: usize, n: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let x = &self.vectors[start * self.dim..(start + n) * self.dim];
        if self.norms.is_none() {
            return x;
        }
        buf.resize(x.len(), 0.0);
        for (r, out) in buf.chunks_exact_mut(self.dim.max(1)).enumerate() {
            if let Some(x) = self.normalise(start + r, out) {
                out.copy_from_slice(x);
            }
        }
        buf
    }
    fn one<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let mut raw = Vec::new();
        let x = self.source.row(r, &mut raw);
        buf.resize(self.dim, 0.0);
        let as_read = self.normalise_read(r, x, buf).is_some();
        if as_read {
            buf.copy_from_slice(x);
        }
        buf
    }
}

/// Mean of the rows (f64 sums in row order: deterministic).
fn mean_of(space: &Space<'_>) -> Vec<f64> {
    let mut mean = vec![0f64; space.dim];
    let mut buf = vec![0f32; space.dim];
    for r in 0..space.rows {
        let x = space.row(r, &mut buf);
        mean.iter_mut().zip(x).for_each(|(m, v)| *m += f64::from(*v));
    }
    mean.iter_mut().for_each(|m| *m /= space.rows.max(1) as f64);
    mean
}

/// The row closest to the mean: the entry of every search.
fn entry_row(space: &Space<'_>, mean: &[f64]) -> u32 {
    let (mut entry, mut best) = (0u32, f64::INFINITY);
    let mut buf = vec![0f32; space.dim];
    for r in 0..space.rows {
        let x = space.row(r, &mut buf);
        let d: f64 = x.iter().zip(mean).map(|(v, m)| (f64::from(*v) - m).powi(2)).sum();
        if d < best {
            best = d;
            entry = r as u32;
        }
    }
    entry
}

/// Codes of the centred rows besides the data codes (written into the section): query codes
/// (i8, bias, inverse scale), |x − m|².
struct CentredCodes {
    scales: Vec<f32>,
    qcodes: Vec<i8>,
    qbias: Vec<i32>,
    qinv: Vec<f32>,
    norms2: Vec<f32>,
}

/// Codes the rows `x − m` (computed row by row: no centred copy). Per-dimension max-abs scales
/// (`127 / max |x_j − m_j|`), data codes `round((x_j − m_j) · s_j) + 128` (padding 128) into
/// `codes` (rows × stride), query codes as [`quantize_query`] gives them.
fn centred_codes(
    space: &Space<'_>,
    mean: &[f32],
    stride: usize,
    threads: usize,
    codes: &mut [u8],
) -> CentredCodes {
    let (rows, dim) = (space.rows, space.dim);
    let mut maxabs = vec![0f32; dim];
    let mut buf = vec![0f32; dim];
    for r in 0..rows {
        let x = space.row(r, &mut buf);
        for ((m, v), c) in maxabs.iter_mut().zip(x).zip(mean) {
            *m = m.max((v - c).abs());
        }
    }
    let scales: Vec<f32> =
        maxabs.iter().map(|m| if *m > 0.0 && m.is_finite() { 127.0 / m } else { 1.0 }).collect();
    codes.fill(128);
    let mut qcodes = vec![0i8; rows * stride];
    crate::heap::advise_huge_pages(&mut qcodes);
    let mut cc = CentredCodes {
        qcodes,
        qbias: vec![0i32; rows],
        qinv: vec![0f32; rows],
        norms2: vec![0f32; rows],
        scales,
    };
    if dim == 0 || rows == 0 {
        return cc;
    }
    // Rows are independent: code them in parallel, in contiguous parts.
    let per = rows.div_ceil(threads.max(1));
    let scales = &cc.scales;
    let code_part =
        |first: usize, codes: &mut [u8], qcodes: &mut [i8], rest: (&mut [i32], &mut [f32], &mut [f32])| {
            let (qbias, qinv, norms2) = rest;
            let mut buf = vec![0f32; dim];
            let mut centred = vec![0f32; dim];
            for (i, (code, qcode)) in
                codes.chunks_exact_mut(stride).zip(qcodes.chunks_exact_mut(stride)).enumerate()
            {
                let x = space.row(first + i, &mut buf);
                centred.iter_mut().zip(x).zip(mean).for_each(|((o, v), m)| *o = v - m);
                for ((o, v), s) in code.iter_mut().zip(&centred).zip(scales) {
                    *o = crate::index::vector::round::biased_u8(v * s);
                }
                let (q, b, inv) = quantize_query(&centred, scales, stride);
                qcode.copy_from_slice(&q);
                qbias[i] = b;
                qinv[i] = inv;
                norms2[i] = centred.iter().map(|a| f64::from(*a) * f64::from(*a)).sum::<f64>() as f32;
            }
        };
    std::thread::scope(|s| {
        let parts = codes
            .chunks_mut(per * stride)
            .zip(cc.qcodes.chunks_mut(per * stride))
            .zip(cc.qbias.chunks_mut(per))
            .zip(cc.qinv.chunks_mut(per))
            .zip(cc.norms2.chunks_mut(per))
            .enumerate();
        for (p, ((((codes, qcodes), qbias), qinv), norms2)) in parts {
            let code_part = &code_part;
            s.spawn(move || code_part(p * per, codes, qcodes, (qbias, qinv, norms2)));
        }
    });
    cc
}

/// Rows inserted one at a time before batching starts (small graphs are built exactly as the
/// sequential HNSW insertion builds them).
pub(super) const SEQUENTIAL: usize = 2048;
/// A batch holds at most 1/`BATCH_FRACTION` of the rows inserted before it...
pub(super) const BATCH_FRACTION: usize = 32;
/// ...and at most this many rows.
pub(super) const MAX_BATCH: usize = 4096;
/// Rows a worker takes at a time from a batch.
const GRAIN: usize = 8;

/// Build-time slots per row, in tenths of the degree: a row's list may grow to this before it is
/// pruned back to the degree (the in-link slack of DiskANN's build). Pruning at every in-link
/// of a full list was two thirds of the build's distance work; a prune now takes a dozen
/// in-links at once. Lists still over the degree after the last batch are pruned at the end.
pub(super) const SLACK_TENTHS: usize = 13;

/// The adjacency under construction: `slots` per row, the first `len[r]` used.
struct Adjacency {
    adj: Vec<u32>,
    len: Vec<u32>,
    slots: usize,
}

/// The bytes of `v`, in place (for prefetch hints).
fn u32_bytes(v: &[u32]) -> &[u8] {
    // SAFETY: a u32 is 4 initialised bytes with no padding; u8 has alignment 1 and the slice
    // borrows `v` for its lifetime.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// Bytes of a list prefetched before it is read: its first 32 links (the degree's worth).
const LINKS_PREFETCH: usize = 128;

impl Adjacency {
    fn links(&self, u: u32) -> &[u32] {
        let u = u as usize;
        &self.adj[u * self.slots..u * self.slots + self.len[u] as usize]
    }

    /// Hints the CPU to load the list of `u` (its slots and its length).
    #[inline]
    fn prefetch(&self, u: u32) {
        let u = u as usize;
        prefetch(
            u32_bytes(self.adj.get(u * self.slots..(u + 1) * self.slots).unwrap_or(&[])),
            LINKS_PREFETCH,
        );
        prefetch(u32_bytes(self.len.get(u..u + 1).unwrap_or(&[])), 1);
    }

    /// Replaces the links of `u` (at most `slots`; the rest of the slots become `NONE`).
    fn set(&mut self, u: u32, links: &[u32]) {
        let u = u as usize;
        let slots = &mut self.adj[u * self.slots..(u + 1) * self.slots];
        slots.fill(NONE);
        slots[..links.len()].copy_from_slice(links);
        self.len[u] = links.len() as u32;
    }

    /// Prunes every list over `degree` (rows in parallel, each independent), then packs the
    /// lists into `degree` slots per row, in place.
    fn finish(mut self, cd: &Coded<'_>, degree: usize, scratch: &mut [BeamScratch]) -> Vec<u32> {
        let over: Vec<u32> =
            (0..self.len.len() as u32).filter(|&u| self.len[u as usize] as usize > degree).collect();
        for part in over.chunks(PRUNE_CHUNK) {
            let pruned = par_map(part, scratch, |&u, _| prune(cd, u, self.links(u), degree));
            for (&u, links) in part.iter().zip(&pruned) {
                self.set(u, links);
            }
        }
        // Row r's first `degree` slots move down to r × degree ≤ r × slots: in row order,
        // nothing is overwritten before it is read.
        for r in 0..self.len.len() {
            self.adj.copy_within(r * self.slots..r * self.slots + degree, r * degree);
        }
        self.adj.truncate(self.len.len() * degree);
        self.adj.shrink_to_fit();
        self.adj
    }
}

/// Rows pruned per parallel step of [`Adjacency::finish`] (bounds the pruned lists held).
const PRUNE_CHUNK: usize = 65_536;

/// The neighbours chosen for row `v`: a beam search from `entry` over the graph as it stands,
/// then the selection heuristic.
fn choose(
    cd: &Coded<'_>,
    g: &Adjacency,
    degree: usize,
    entry: u32,
    v: u32,
    efc: usize,
    scratch: &mut BeamScratch,
) -> Vec<u32> {
    let accept_all = |_: u32| true;
    let found = beam(
        &[entry],
        efc,
        (scratch, None),
        |u| cd.dist(v, u),
        |u, out| out.extend_from_slice(g.links(u)),
        |what, u| match what {
            Prefetch::Code => cd.prefetch(u),
            Prefetch::Links => g.prefetch(u),
        },
        &accept_all,
    );
    select(&found, degree, cd)
}

/// `links` of row `u` after adding the in-link from `v`: appended while one of the `slots` is
/// free, else pruned to `degree` by the selection heuristic over the old links and `v`.
fn add_in_link(cd: &Coded<'_>, u: u32, links: &mut Vec<u32>, v: u32, degree: usize, slots: usize) {
    links.push(v);
    if links.len() > slots {
        *links = prune(cd, u, links, degree);
    }
}

/// The selection heuristic over `links` of row `u`, by distance to `u`: at most `degree`.
fn prune(cd: &Coded<'_>, u: u32, links: &[u32], degree: usize) -> Vec<u32> {
    links.iter().for_each(|&w| cd.prefetch(w));
    let mut c: Vec<Ranked> = links.iter().map(|&w| Ranked(cd.dist(u, w), w)).collect();
    c.sort_unstable();
    select(&c, degree, cd)
}

/// `f` over `items` on one thread per beam scratch (dynamic grains), results in item order.
fn par_map<T: Sync, R: Send>(
    items: &[T],
    scratch: &mut [BeamScratch],
    f: impl Fn(&T, &mut BeamScratch) -> R + Sync,
) -> Vec<R> {
    if scratch.len() <= 1 || items.len() <= GRAIN {
        let own = &mut scratch[0];
        return items.iter().map(|x| f(x, own)).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (f, next) = (&f, &next);
    let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|s| {
        let handles: Vec<_> = scratch
            .iter_mut()
            .map(|own| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i0 = next.fetch_add(GRAIN, std::sync::atomic::Ordering::Relaxed);
                        if i0 >= items.len() {
                            break out;
                        }
                        for (i, x) in items.iter().enumerate().skip(i0).take(GRAIN) {
                            out.push((i, f(x, own)));
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    for (i, r) in parts.into_iter().flatten() {
        slots[i] = Some(r);
    }
    slots.into_iter().flatten().collect()
}

/// Builds the proximity graph over the coded rows: the adjacency (rows × degree, `NONE` padded).
/// See "Parallel linking" in the module docs.
fn link(cd: &Coded<'_>, rows: usize, degree: usize, entry: u32, params: &GraphParams) -> Vec<u32> {
    let slots = degree * SLACK_TENTHS / 10;
    // Huge pages before the first write (`vec![NONE; n]` would touch every page at once).
    let mut adj = vec![0u32; rows * slots];
    crate::heap::advise_huge_pages(&mut adj);
    adj.fill(NONE);
    let mut g = Adjacency { adj, len: vec![0u32; rows], slots };
    // Insertion order: entry first, the rest shuffled with the seed.
    let mut order: Vec<u32> = (0..rows as u32).filter(|r| *r != entry).collect();
    let mut s = params.seed;
    for i in (1..order.len()).rev() {
        let j = (splitmix(&mut s) % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let threads = params.threads.clamp(1, 64) as usize;
    let mut scratch: Vec<BeamScratch> = (0..threads).map(|_| BeamScratch::new(rows)).collect();
    let efc = (params.ef_construction as usize).max(degree);
    let mut links = Vec::with_capacity(degree + 1);
    let seq = order.len().min(SEQUENTIAL);
    for &v in &order[..seq] {
        let chosen = choose(cd, &g, degree, entry, v, efc, &mut scratch[0]);
        g.set(v, &chosen);
        for &u in &chosen {
            links.clear();
            links.extend_from_slice(g.links(u));
            add_in_link(cd, u, &mut links, v, degree, slots);
            g.set(u, &links);
        }
    }
    // Batches count the entry as inserted.
    let mut at = seq;
    while at < order.len() {
        let size = ((at + 1) / BATCH_FRACTION).clamp(1, MAX_BATCH).min(order.len() - at);
        let batch = &order[at..at + size];
        let chosen = par_map(batch, &mut scratch, |&v, own| choose(cd, &g, degree, entry, v, efc, own));
        // In-links grouped by target (a stable sort keeps each target's in insertion order).
        // Targets were inserted before the batch, so no batch row is one.
        let mut inlinks: Vec<(u32, u32)> = Vec::with_capacity(size * degree);
        for (&v, c) in batch.iter().zip(&chosen) {
            g.set(v, c);
            inlinks.extend(c.iter().map(|&u| (u, v)));
        }
        inlinks.sort_by_key(|p| p.0);
        let groups: Vec<&[(u32, u32)]> = inlinks.chunk_by(|a, b| a.0 == b.0).collect();
        let updated = par_map(&groups, &mut scratch, |group, _| {
            let u = group[0].0;
            let mut links = g.links(u).to_vec();
            for &(_, v) in group.iter() {
                add_in_link(cd, u, &mut links, v, degree, slots);
            }
            links
        });
        for (group, links) in groups.iter().zip(&updated) {
            g.set(group[0].0, links);
        }
        at += size;
    }
    g.finish(cd, degree, &mut scratch)
}

fn put_f32s(b: &mut [u8], at: usize, v: &[f32]) {
    for (i, x) in v.iter().enumerate() {
        b[at + 4 * i..at + 4 * i + 4].copy_from_slice(&x.to_le_bytes());
    }
}

/// Builds the section for `vectors` (rows × dim, row order), calibrated (see the module docs).
/// Rows of zeros (e.g. rows without a vector) are indexed like any other; callers exclude them
/// with the search filter. Holds no f32 copy of the rows (cosine rows are normalised on the fly,
/// also for calibration): the working set is the codes, the adjacency and the section.
pub fn build(vectors: &[f32], dim: usize, metric: Metric, params: &GraphParams) -> Vec<u8> {
    let whole = vectors.len().checked_div(dim).unwrap_or(0) * dim;
    build_over(&SliceRows { vectors: &vectors[..whole], dim }, dim, metric, params)
}

/// [`build`] over `rows`: the passes read `rows.all()` in row order, the calibration's
/// reranks (scattered rows) go through `rows.row` (see `ann::build_over`). The data codes are
/// coded straight into the section (never a second copy of them).
pub fn build_over(rows_in: &dyn RowSource, dim: usize, metric: Metric, params: &GraphParams) -> Vec<u8> {
    match params.code {
        GraphCode::Sq8 => build_sq8(rows_in, dim, metric, params),
        GraphCode::RaBitQ { bits } => {
            build_planes(rows_in, dim, metric, params, bits.clamp(1, rabitq::MAX_BITS))
        }
    }
}

/// What every section kind shares: the rows in index space, the mean codes are centred on
/// (f64 and as stored) and the entry row.
struct Prepared<'a> {
    space: Space<'a>,
    rows: usize,
    mean: Vec<f32>,
    entry: u32,
}

fn prepare<'a>(rows_in: &'a dyn RowSource, dim: usize, metric: Metric, params: &GraphParams) -> Prepared<'a> {
    let rows = rows_in.all().len().checked_div(dim).unwrap_or(0);
    let space = Space::new(rows_in, rows, dim, metric);
    let mean64 = mean_of(&space);
    let mean: Vec<f32> = mean64.iter().map(|m| if params.centred { *m as f32 } else { 0.0 }).collect();
    let entry = entry_row(&space, &mean64);
    Prepared { space, rows, mean, entry }
}

/// Codes the rows with centred 8-bit codes into `codes` (rows × stride) and links the graph
/// over them: the adjacency and the row norms |x − m|².
fn link_sq8(
    pre: &Prepared<'_>,
    stride: usize,
    params: &GraphParams,
    codes: &mut [u8],
) -> (Vec<u32>, CentredCodes) {
    let degree = params.degree.clamp(2, 256) as usize;
    let threads = params.threads.clamp(1, 64) as usize;
    let mut cc = centred_codes(&pre.space, &pre.mean, stride, threads, codes);
    let cd = Coded {
        kern: kernels(),
        stride,
        codes,
        qcodes: &cc.qcodes,
        qbias: &cc.qbias,
        qinv: &cc.qinv,
        norms2: &cc.norms2,
    };
    let adj = link(&cd, pre.rows, degree, pre.entry, params);
    // The query codes served the linking only.
    (cc.qcodes, cc.qbias, cc.qinv) = (Vec::new(), Vec::new(), Vec::new());
    (adj, cc)
}

/// The version-4 header (version 5 for RaBitQ codes) but the calibration record and crc: shape (dim, rows, degree, stride,
/// entry, default ef), code kind, code and query bits, rotation seed and record length.
fn put_header(
    head: &mut [u8],
    metric: Metric,
    shape: [u32; 6],
    code: (u8, u32, u32),
    seed: u64,
    record: usize,
) {
    let version = if code.0 == KIND_RABITQ { VERSION_TIGHT } else { VERSION };
    head[..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&version.to_le_bytes());
    head[12..16].copy_from_slice(&(HEADER_LEN_V4 as u32).to_le_bytes());
    head[16] = metric_code(metric);
    (head[17], head[18], head[19]) = (code.0, code.1 as u8, code.2 as u8);
    for (i, v) in shape.iter().enumerate() {
        head[20 + 4 * i..24 + 4 * i].copy_from_slice(&v.to_le_bytes());
    }
    head[SEED_AT..SEED_AT + 8].copy_from_slice(&seed.to_le_bytes());
    head[RECORD_AT..RECORD_AT + 4].copy_from_slice(&(record as u32).to_le_bytes());
}

/// Packs the adjacency (rows × degree, `NONE` padded) into `out` at [`link_bits`] bits an id,
/// [`link_bytes`] a row, unused slots as the row count (`out` zeroed, with [`LINK_SLACK`]
/// bytes after the last list: every id is written with one 8-byte read-modify-write).
fn pack_links(out: &mut [u8], adj: &[u32], rows: usize, degree: usize) {
    let (bits, Some(bytes)) = (link_bits(rows) as usize, link_bytes(rows, degree)) else { return };
    for (r, list) in adj.chunks_exact(degree).enumerate() {
        for (i, &v) in list.iter().enumerate() {
            let id = if v == NONE { rows as u64 } else { u64::from(v) };
            let bit = i * bits;
            let at = r * bytes + bit / 8;
            let mut word = [0u8; 8];
            word.copy_from_slice(&out[at..at + 8]);
            let word = u64::from_le_bytes(word) | id << (bit % 8);
            out[at..at + 8].copy_from_slice(&word.to_le_bytes());
        }
    }
}

/// A version-4 section with 8-bit codes (coded straight into the section).
fn build_sq8(rows_in: &dyn RowSource, dim: usize, metric: Metric, params: &GraphParams) -> Vec<u8> {
    let pre = prepare(rows_in, dim, metric, params);
    let degree = params.degree.clamp(2, 256) as usize;
    let stride = dim.div_ceil(64) * 64;
    let Some([o_sc, o_m, o_n, o_nb, o_c, end]) = layout_v4(true, dim, pre.rows, degree, stride) else {
        return Vec::new();
    };
    // Zeroed (untouched pages cost nothing until written): the codes part is written now, the
    // rest once the links are made.
    let mut b = vec![0u8; end];
    let (head, codes) = b.split_at_mut(o_c);
    crate::heap::advise_huge_pages(codes);
    let (adj, cc) = link_sq8(&pre, stride, params, codes);
    let shape = [dim, pre.rows, degree, stride].map(|v| v as u32);
    let shape = [shape[0], shape[1], shape[2], shape[3], pre.entry, params.default_ef.max(1)];
    put_header(head, metric, shape, (KIND_SQ8, 8, 8), 0, stride);
    put_f32s(head, o_sc, &cc.scales);
    put_f32s(head, o_m, &pre.mean);
    put_f32s(head, o_n, &cc.norms2);
    pack_links(&mut head[o_nb..], &adj, pre.rows, degree);
    drop(adj);
    drop(cc);
    finish(b, rows_in, &pre.space, (dim, metric, params.perturb), &EF_LADDER)
}

/// Seed of a section's rotation, derived from the build seed.
fn rotation_seed(params: &GraphParams) -> u64 {
    params.seed ^ 0x726f_7461_7465
}

/// A version-5 section (version 4 with tight records) with RaBitQ codes: linked over temporary 8-bit codes (the graph is the one a version-2
/// build makes), traversed over `bits`-bit RaBitQ records.
fn build_planes(
    rows_in: &dyn RowSource,
    dim: usize,
    metric: Metric,
    params: &GraphParams,
    bits: u32,
) -> Vec<u8> {
    let pre = prepare(rows_in, dim, metric, params);
    let degree = params.degree.clamp(2, 256) as usize;
    let p = rabitq::padded(dim);
    let record = rabitq::record_len_tight(bits, p);
    let Some([_, o_m, _, o_nb, o_r, end]) = layout_v4(false, dim, pre.rows, degree, record) else {
        return Vec::new();
    };
    let Some(tmp_len) = pre.rows.checked_mul(p) else {
        return Vec::new();
    };
    let mut tmp = vec![0u8; tmp_len];
    crate::heap::advise_huge_pages(&mut tmp);
    let (adj, cc) = link_sq8(&pre, p, params, &mut tmp);
    drop((cc, tmp));
    let mut b = vec![0u8; end];
    let (head, recs) = b.split_at_mut(o_r);
    let shape = [dim, pre.rows, degree, p].map(|v| v as u32);
    let shape = [shape[0], shape[1], shape[2], shape[3], pre.entry, params.default_ef.max(1)];
    let code = (KIND_RABITQ, bits, rabitq::query_bits(bits));
    put_header(head, metric, shape, code, rotation_seed(params), record);
    put_f32s(head, o_m, &pre.mean);
    pack_links(&mut head[o_nb..], &adj, pre.rows, degree);
    drop(adj);
    let rot = rabitq::Rotation::new(p, rotation_seed(params));
    encode_records(&pre, &rot, bits, params.threads.clamp(1, 64) as usize, recs, record);
    finish(b, rows_in, &pre.space, (dim, metric, params.perturb), &PLANES_LADDER)
}

/// Every row's record (rows independent: coded in parallel, in contiguous parts).
fn encode_records(
    pre: &Prepared<'_>,
    rot: &rabitq::Rotation,
    bits: u32,
    threads: usize,
    recs: &mut [u8],
    record: usize,
) {
    let dim = pre.space.dim;
    if pre.rows == 0 || record == 0 {
        return;
    }
    let per = pre.rows.div_ceil(threads.max(1));
    let code_part = |first: usize, part: &mut [u8]| {
        let (mut buf, mut centred, mut r) = (vec![0f32; dim], vec![0f32; dim], vec![0f32; rot.len()]);
        for (i, rec) in part.chunks_exact_mut(record).enumerate() {
            let x = pre.space.row(first + i, &mut buf);
            centred.iter_mut().zip(x).zip(&pre.mean).for_each(|((o, v), m)| *o = v - m);
            rot.apply(&centred, &mut r);
            rabitq::encode(&r, bits, rec);
        }
    };
    std::thread::scope(|s| {
        for (i, part) in recs.chunks_mut(per * record).enumerate() {
            let code_part = &code_part;
            s.spawn(move || code_part(i * per, part));
        }
    });
}

/// Calibrates the section over `ladder` (perturbation scale `shape.2`) and seals it with its
/// crc32c.
fn finish(
    b: Vec<u8>,
    rows_in: &dyn RowSource,
    space: &Space<'_>,
    shape: (usize, Metric, f32),
    ladder: &[u32],
) -> Vec<u8> {
    let mut b = calibrate_section(b, rows_in, space, shape, ladder);
    let crc = section_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// Measures the built section on a sample of its own rows (deterministic kernels: the record
/// is the same on every CPU), stores the record and, as `default_ef`, the ef that reaches the default
/// target (the top of the ladder when none does; queries then search exactly).
fn calibrate_section(
    b: Vec<u8>,
    rows: &dyn RowSource,
    space: &Space<'_>,
    (dim, metric, perturb): (usize, Metric, f32),
    ladder: &[u32],
) -> Vec<u8> {
    let sample = calibrate::sample_rows_scaled(
        space,
        dim,
        metric,
        if perturb.is_finite() { perturb.clamp(0.0, 4.0) } else { calibrate::PERTURB },
    );
    let bytes = bytes::Bytes::from(b);
    let cal = match GraphIndex::parse(bytes.clone(), false) {
        Ok(mut ix) => {
            ix.kern = super::super::distance::deterministic();
            let ladder: Vec<(u32, u32)> = ladder.iter().map(|e| (*e, *e)).collect();
            calibrate::calibrate_rows(space, metric, &sample, &ladder, |qv, hidden, ef, rerank| {
                let p = GraphSearchParams { ef, rerank };
                // A search for K rows, as a k = 10 query is served (its rerank floor, not K + 1's:
                // the hidden row is never entered, unless it is the entry: then one query of the
                // sample has 9 rows to score, a hair below what it would get).
                let found = ix.search_hiding(rows, qv, calibrate::K, None, &p, hidden);
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
    b[CALIB_AT..CALIB_AT + calibrate::WIDE_RECORD_LEN].copy_from_slice(&cal.encode_wide());
    b
}

/// The version-2 (8-bit codes) or version-3 (RaBitQ) section of the graph a version-4 or -5
/// section holds: the same header fields, codes and lists, with u32 neighbour slots, records
/// padded to 16 bytes and the narrow calibration record (its first [`calibrate::MAX_RUNGS`] rungs). What builds wrote before
/// version 4: the benchmarks measure both link layouts on one graph in one run, the tests check
/// that the versions search alike. None for bytes that are not a valid version-4 section.
pub fn downgrade(v4: &[u8]) -> Option<Vec<u8>> {
    let ix = GraphIndex::open(bytes::Bytes::copy_from_slice(v4)).ok()?;
    let version = crate::codec::u32_at(v4, 8)?;
    if version != VERSION && version != VERSION_TIGHT {
        return None;
    }
    let (sq8, record) = ix.code_layout();
    let [o_sc, _, _, o_nb, o_c, _] = layout_v4(sq8, ix.dim, ix.rows, ix.degree, record)?;
    let mut b = v4[..HEADER_LEN].to_vec();
    b[8..12].copy_from_slice(&(if sq8 { VERSION_SQ8 } else { VERSION_RABITQ }).to_le_bytes());
    b[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    if sq8 {
        b[17..20].fill(0);
        b[SEED_AT..CRC_AT].fill(0);
    }
    b[CALIB_AT..CALIB_AT + calibrate::RECORD_LEN].copy_from_slice(&ix.calibration().encode());
    b[CALIB_AT + calibrate::RECORD_LEN..HEADER_LEN].fill(0);
    // The float blocks (scales, mean, norms) sit before the links, padded alike in both.
    b.extend_from_slice(&v4[o_sc..o_nb]);
    let mut list = Vec::with_capacity(ix.degree);
    for r in 0..ix.rows as u32 {
        list.clear();
        ix.neighbours(r, &mut list);
        list.resize(ix.degree, NONE);
        list.iter().for_each(|v| b.extend_from_slice(&v.to_le_bytes()));
    }
    b.resize(pad64(b.len())?, 0);
    if version == VERSION_TIGHT {
        // Version 3 pads each record to 16 bytes.
        let padded = rabitq::record_len(u32::from(v4[18]), ix.stride);
        b[RECORD_AT..RECORD_AT + 4].copy_from_slice(&(padded as u32).to_le_bytes());
        for rec in v4[o_c..].chunks_exact(record) {
            b.extend_from_slice(rec);
            b.resize(b.len() + padded - record, 0);
        }
    } else {
        b.extend_from_slice(&v4[o_c..]);
    }
    let crc = section_crc(&b);
    b[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Some(b)
}
