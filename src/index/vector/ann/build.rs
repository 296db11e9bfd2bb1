//! Building the IVF section at compaction: k-means centroids, rows assigned to their nearest
//! centroid and grouped by list; version 2 adds per-dimension residual scales and 8-bit codes,
//! version 3 ([`build_lists_over`]) no codes: it is calibrated with the graph section's.
//! Invariant: the output is deterministic for its input vectors and parameters (seeded RNG), and
//! independent of the thread count. No f32 copy of the rows is held: they are read (finite,
//! normalised) on the fly, in blocks.

use super::assign::assign;
use super::*;
use crate::index::vector::graph::GraphIndex;
use crate::index::vector::rows::{RowSource, SliceRows};

pub(super) fn auto_nlist(n: usize) -> usize {
    let by_sqrt = (2.7 * (n as f64).sqrt()).round() as usize;
    by_sqrt.min(n / 16).max(1)
}

pub(super) fn default_nprobe(n: usize, nlist: usize) -> usize {
    // Scan at least 1/9 of the lists, and at least ~512 rows (small segments: everything).
    let a = nlist.div_ceil(9);
    let b = if n == 0 { nlist } else { (512 * nlist).div_ceil(n) };
    a.max(b).clamp(1, nlist.max(1))
}

pub(super) fn normalize_in_place(x: &mut [f32]) -> f32 {
    let n = distance::det_dot(x, x).sqrt();
    if n > 0.0 && n.is_finite() {
        x.iter_mut().for_each(|v| *v /= n);
    }
    n
}

/// The rows the IVF indexes, computed on demand from the caller's vectors (no working copy):
/// non-finite components as 0, cosine rows normalised ([`normalize_in_place`]).
struct IvfRows<'a> {
    /// Scattered rows are read through it.
    source: &'a dyn RowSource,
    vectors: &'a [f32],
    dim: usize,
    metric: Metric,
    /// Per row: the norm (cosine) or the squared norm (euclidean) of the finite row.
    norms: Vec<f32>,
}

impl<'a> IvfRows<'a> {
    fn new(source: &'a dyn RowSource, n: usize, dim: usize, metric: Metric) -> Self {
        let vectors = &source.all()[..n * dim];
        let mut buf = vec![0f32; dim];
        let norms = (0..n)
            .map(|r| {
                finite_into(&vectors[r * dim..(r + 1) * dim], &mut buf);
                let sq = distance::det_dot(&buf, &buf);
                if metric == Metric::CosineDistance {
                    sq.sqrt()
                } else {
                    sq
                }
            })
            .collect();
        IvfRows { source, vectors, dim, metric, norms }
    }

    /// Row `r` in index space, written to `out` (dim values).
    fn row_into(&self, r: usize, out: &mut [f32]) {
        self.as_indexed(r, &self.vectors[r * self.dim..(r + 1) * self.dim], out);
    }

    /// Row `r` (read as `x`) in index space, written to `out`.
    fn as_indexed(&self, r: usize, x: &[f32], out: &mut [f32]) {
        finite_into(x, out);
        let n = self.norms[r];
        if self.metric == Metric::CosineDistance && n > 0.0 && n.is_finite() {
            out.iter_mut().for_each(|v| *v /= n);
        }
    }
}

impl super::super::calibrate::Rows for IvfRows<'_> {
    fn count(&self) -> usize {
        self.norms.len()
    }
    fn block<'a>(&'a self, start: usize, n: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        buf.resize(n * self.dim, 0.0);
        for (i, out) in buf.chunks_exact_mut(self.dim.max(1)).enumerate() {
            self.row_into(start + i, out);
        }
        buf
    }
    fn one<'a>(&'a self, r: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let mut raw = Vec::new();
        let x = self.source.row(r, &mut raw);
        buf.resize(self.dim, 0.0);
        self.as_indexed(r, x, buf);
        buf
    }
}

/// `x` with non-finite components as 0, into `out`.
fn finite_into(x: &[f32], out: &mut [f32]) {
    out.iter_mut().zip(x).for_each(|(o, v)| *o = if v.is_finite() { *v } else { 0.0 });
}

/// Rows assigned (and coded) per block read.
const ASSIGN_BLOCK: usize = 16_384;

/// Builds the ANN section for `vectors` (rows × dim, row order). Rows beyond the last full row
/// are ignored; `dim == 0` gives an empty index. Non-finite components are treated as 0.
/// Holds no f32 copy of the rows (only the k-means training sample).
pub fn build(vectors: &[f32], dim: usize, metric: Metric, params: &AnnParams) -> Vec<u8> {
    let whole = vectors.len().checked_div(dim).unwrap_or(0) * dim;
    build_over(&SliceRows { vectors: &vectors[..whole], dim }, dim, metric, params)
}

/// [`build`] over `rows`: every pass reads `rows.all()` in row order, and the
/// scattered reads (the calibration's reranks) go through `rows.row`. Rows
/// mapped from a file are read in order there (pages given back behind);
/// read at random through the mapping, each fault would map far more than
/// its row, and a 1.5 GB mapping became resident within a second.
pub fn build_over(rows: &dyn RowSource, dim: usize, metric: Metric, params: &AnnParams) -> Vec<u8> {
    build_impl(rows, dim, metric, params, None)
}

/// The version-3 section over `rows` (as [`build_over`]): the same k-means and lists, no norms,
/// scales or codes; its candidates are scored with `graph`'s traversal codes (the segment's graph
/// section over the same rows), which the calibration measures and whose crc the header names.
pub fn build_lists_over(
    rows: &dyn RowSource,
    dim: usize,
    metric: Metric,
    params: &AnnParams,
    graph: &GraphIndex,
) -> Vec<u8> {
    build_impl(rows, dim, metric, params, Some(graph))
}

/// [`build_lists_over`] over an in-memory slice (rows × dim, row order).
pub fn build_lists(
    vectors: &[f32],
    dim: usize,
    metric: Metric,
    params: &AnnParams,
    graph: &GraphIndex,
) -> Vec<u8> {
    let whole = vectors.len().checked_div(dim).unwrap_or(0) * dim;
    build_lists_over(&SliceRows { vectors: &vectors[..whole], dim }, dim, metric, params, graph)
}

/// Version 2 (`graph` None: residual codes) or version 3 (lists scored with `graph`'s codes).
fn build_impl(
    rows: &dyn RowSource,
    dim: usize,
    metric: Metric,
    params: &AnnParams,
    graph: Option<&GraphIndex>,
) -> Vec<u8> {
    use super::super::calibrate::Rows;
    let vectors = rows.all();
    let n = vectors.len().checked_div(dim).unwrap_or(0).min(u32::MAX as usize - 1);
    let data = IvfRows::new(rows, n, dim, metric);
    let norms_row = &data.norms;
    let nlist = if n == 0 {
        0
    } else if params.nlist == 0 {
        auto_nlist(n)
    } else {
        (params.nlist as usize).min(n)
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(params.seed);
    let threads = params.threads.max(1) as usize;

    // --- k-means on a sample.
    let mut centroids = vec![0f32; nlist * dim];
    if nlist > 0 {
        let cap = nlist.saturating_mul(params.max_train_per_list.max(1) as usize);
        let train_rows: Vec<usize> = if n > cap {
            let mut v = sample(&mut rng, n, cap).into_vec();
            v.sort_unstable();
            v
        } else {
            (0..n).collect()
        };
        let mut train = vec![0f32; train_rows.len() * dim];
        for (&r, out) in train_rows.iter().zip(train.chunks_exact_mut(dim)) {
            data.row_into(r, out);
        }
        let m = train_rows.len();
        let mut init = sample(&mut rng, m, nlist).into_vec();
        init.sort_unstable();
        for (c, &r) in init.iter().enumerate() {
            centroids[c * dim..(c + 1) * dim].copy_from_slice(&train[r * dim..(r + 1) * dim]);
        }
        let mut sums = vec![0f64; nlist * dim];
        let mut counts = vec![0usize; nlist];
        for _ in 0..params.iterations {
            let a = assign(&train, dim, &centroids, metric, (threads, params.assign_rerank as usize));
            sums.iter_mut().for_each(|s| *s = 0.0);
            counts.iter_mut().for_each(|c| *c = 0);
            for (x, (c, _)) in train.chunks_exact(dim).zip(&a) {
                let c = *c as usize;
                counts[c] += 1;
                for (s, v) in sums[c * dim..(c + 1) * dim].iter_mut().zip(x) {
                    *s += f64::from(*v);
                }
            }
            // Empty clusters take the worst-served training points (deterministic order).
            let mut worst: Vec<usize> = (0..m).collect();
            match metric {
                Metric::CosineDistance => worst.sort_by(|&i, &j| a[i].1.total_cmp(&a[j].1).then(i.cmp(&j))),
                Metric::EuclideanSquared => worst.sort_by(|&i, &j| a[j].1.total_cmp(&a[i].1).then(i.cmp(&j))),
            }
            let mut next_worst = worst.into_iter();
            for c in 0..nlist {
                let cent = &mut centroids[c * dim..(c + 1) * dim];
                if counts[c] == 0 {
                    if let Some(r) = next_worst.next() {
                        cent.copy_from_slice(&train[r * dim..(r + 1) * dim]);
                    }
                    continue;
                }
                let inv = 1.0 / counts[c] as f64;
                for (v, s) in cent.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *v = (*s * inv) as f32;
                }
                if metric == Metric::CosineDistance {
                    normalize_in_place(cent);
                }
            }
        }
    }

    // --- Final assignment and list order.
    let mut assignment = Vec::with_capacity(if nlist > 0 { n } else { 0 });
    if nlist > 0 {
        let mut buf = Vec::new();
        for start in (0..n).step_by(ASSIGN_BLOCK) {
            let block = data.block(start, ASSIGN_BLOCK.min(n - start), &mut buf);
            assignment.extend(assign(
                block,
                dim,
                &centroids,
                metric,
                (threads, params.assign_rerank as usize),
            ));
        }
    }
    let mut offsets = vec![0u32; nlist + 1];
    for (c, _) in &assignment {
        offsets[*c as usize + 1] += 1;
    }
    for c in 0..nlist {
        offsets[c + 1] += offsets[c];
    }
    // Each row's position in list order (rows of a list in row order).
    let mut fill: Vec<u32> = offsets[..nlist].to_vec();
    let mut row_ids = vec![0u32; n];
    let mut position = vec![0u32; n];
    for (row, (c, _)) in assignment.iter().enumerate() {
        let p = &mut fill[*c as usize];
        row_ids[*p as usize] = row as u32;
        position[row] = *p;
        *p += 1;
    }

    let out = match graph {
        None => {
            let norms: Vec<f32> = row_ids.iter().map(|&r| norms_row[r as usize]).collect();
            write_sq8(&data, &assignment, &position, &centroids, (&offsets, &row_ids, &norms), n)
        }
        Some(g) => write_lists(&data, &centroids, &offsets, &row_ids, g.stored_crc()),
    };
    drop(position);
    let mut out = calibrate_section(out, rows, &data, metric, default_nprobe(n, nlist), graph);
    let crc = section_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The header fields both versions share (version, kind and code stride aside).
fn header(data: &IvfRows<'_>, nlist: usize, version: u32, kind: u8, stride: usize) -> Vec<u8> {
    let n = data.norms.len();
    let mut out = vec![0u8; HEADER_LEN];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&version.to_le_bytes());
    out[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    out[16] = metric_code(data.metric);
    out[17] = kind;
    out[20..24].copy_from_slice(&(data.dim as u32).to_le_bytes());
    out[24..28].copy_from_slice(&(n as u32).to_le_bytes());
    out[28..32].copy_from_slice(&(nlist as u32).to_le_bytes());
    out[32..36].copy_from_slice(&(stride as u32).to_le_bytes());
    out[36..40].copy_from_slice(&(default_nprobe(n, nlist) as u32).to_le_bytes());
    out
}

/// Records block `i` at the end of `out` (its table entry), returning its offset.
fn place(out: &mut [u8], i: usize, len: usize) -> usize {
    let off = out.len();
    out[64 + 16 * i..72 + 16 * i].copy_from_slice(&(off as u64).to_le_bytes());
    out[72 + 16 * i..80 + 16 * i].copy_from_slice(&(len as u64).to_le_bytes());
    off
}

/// Version 3 (uncalibrated, no crc yet): header, centroids, offsets, row ids; blocks 3–5 (0, 0).
fn write_lists(
    data: &IvfRows<'_>,
    centroids: &[f32],
    offsets: &[u32],
    row_ids: &[u32],
    graph_crc: u32,
) -> Vec<u8> {
    let nlist = offsets.len() - 1;
    let mut out = header(data, nlist, VERSION, KIND_IVF_LISTS, 0);
    out[GRAPH_CRC_AT..GRAPH_CRC_AT + 4].copy_from_slice(&graph_crc.to_le_bytes());
    let blocks: [Vec<u8>; 3] = [
        centroids.iter().flat_map(|v| v.to_le_bytes()).collect(),
        offsets.iter().flat_map(|v| v.to_le_bytes()).collect(),
        row_ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
    ];
    // The directory (centroids, offsets) first, as in version 2, then the row ids.
    for (i, b) in blocks.iter().enumerate() {
        place(&mut out, i, b.len());
        out.extend_from_slice(b);
        out.resize(out.len().div_ceil(64) * 64, 0);
    }
    out
}

/// Version 2 (uncalibrated, no crc yet): residuals, per-dimension scales, 8-bit codes.
fn write_sq8(
    data: &IvfRows<'_>,
    assignment: &[(u32, f32)],
    position: &[u32],
    centroids: &[f32],
    (offsets, row_ids, norms): (&[u32], &[u32], &[f32]),
    n: usize,
) -> Vec<u8> {
    let (dim, nlist) = (data.dim, offsets.len() - 1);
    let mut rowbuf = vec![0f32; dim];
    // --- Residuals, per-dimension scales, codes.
    let stride = dim.div_ceil(64) * 64;
    let mut maxabs = vec![0f32; dim];
    for (row, (c, _)) in assignment.iter().enumerate() {
        data.row_into(row, &mut rowbuf);
        let x = &rowbuf;
        let cent = &centroids[*c as usize * dim..(*c as usize + 1) * dim];
        for j in 0..dim {
            maxabs[j] = maxabs[j].max((x[j] - cent[j]).abs());
        }
    }
    let scales: Vec<f32> =
        maxabs.iter().map(|m| if *m > 0.0 && m.is_finite() { 127.0 / m } else { 1.0 }).collect();
    // --- Serialize: the small blocks, then the codes coded in place (no
    // second copy of the largest block).
    let blocks: [Vec<u8>; BLOCKS - 1] = [
        centroids.iter().flat_map(|v| v.to_le_bytes()).collect(),
        offsets.iter().flat_map(|v| v.to_le_bytes()).collect(),
        row_ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
        norms.iter().flat_map(|v| v.to_le_bytes()).collect(),
        scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
    ];
    let mut out = header(data, nlist, VERSION_SQ8, KIND_IVF_SQ8, stride);
    // Physical order: the small directory blocks (centroids, offsets, scales) first, so the
    // header and directory are one contiguous range; then ids, norms and codes.
    for i in [0usize, 1, 4, 2, 3] {
        place(&mut out, i, blocks[i].len());
        out.extend_from_slice(&blocks[i]);
        out.resize(out.len().div_ceil(64) * 64, 0);
    }
    drop(blocks);
    let codes_at = place(&mut out, BLOCKS - 1, n * stride);
    out.resize(codes_at + n * stride, 128);
    let codes = &mut out[codes_at..];
    // In row order (the reads in order, the writes scattered over the codes).
    for (row, (c, _)) in assignment.iter().enumerate() {
        let (pos, c) = (position[row] as usize, *c as usize);
        data.row_into(row, &mut rowbuf);
        let x = &rowbuf;
        let cent = &centroids[c * dim..(c + 1) * dim];
        let code = &mut codes[pos * stride..pos * stride + dim];
        for j in 0..dim {
            code[j] = crate::index::vector::round::biased_u8((x[j] - cent[j]) * scales[j]);
        }
    }
    out.resize(out.len().div_ceil(64) * 64, 0);
    out
}

/// Measures the built section on a sample of its own rows (deterministic kernels: the record is
/// the same on every CPU) over [`LADDER`], stores the record and, as `default_nprobe`, the
/// nprobe reaching the default target (the top rung when none does; queries then search
/// exactly).
fn calibrate_section(
    mut out: Vec<u8>,
    rows: &dyn RowSource,
    space: &IvfRows<'_>,
    metric: Metric,
    base: usize,
    graph: Option<&GraphIndex>,
) -> Vec<u8> {
    use super::super::calibrate;
    let cal = match parse(&out, false) {
        Ok(meta) => {
            let mut ix = AnnIndex::with_kernels(&out, meta, distance::deterministic());
            if let Some(g) = graph {
                ix = ix.with_graph(g);
            }
            let nlist = ix.nlist();
            let mut ladder: Vec<(u32, u32)> = Vec::new();
            for (m, rerank) in LADDER {
                let nprobe = (base * m).min(nlist) as u32;
                if ladder.last().is_none_or(|l| l.0 < nprobe) {
                    ladder.push((nprobe, rerank));
                }
            }
            let sample = calibrate::sample_rows(space, space.dim, metric);
            calibrate::calibrate_rows(space, metric, &sample, &ladder, |qv, _, nprobe, rerank| {
                let p = SearchParams { nprobe, rerank, ..SearchParams::default() };
                ix.search_rows(rows, qv, calibrate::K + 1, None, &p).into_iter().map(|r| r.0).collect()
            })
        }
        Err(_) => calibrate::Calibration::default(),
    };
    if let Some(top) = cal.rungs.last() {
        let nprobe = cal.pick(calibrate::DEFAULT_TARGET).unwrap_or(*top).effort;
        out[36..40].copy_from_slice(&nprobe.to_le_bytes());
    }
    out[CALIB_AT..CALIB_AT + calibrate::RECORD_LEN].copy_from_slice(&cal.encode());
    out
}

/// The metric of a stored metric byte (0 cosine, 1 euclidean_squared), the inverse of
/// [`metric_code`]; shared by every index section that stores one.
pub(crate) fn metric_from_code(c: u8) -> Result<Metric, IndexError> {
    match c {
        0 => Ok(Metric::CosineDistance),
        1 => Ok(Metric::EuclideanSquared),
        _ => Err(corrupt("unknown metric")),
    }
}

pub(crate) fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::CosineDistance => 0,
        Metric::EuclideanSquared => 1,
    }
}

pub(super) fn section_crc(b: &[u8]) -> u32 {
    let c = crc32c::crc32c(&b[..CRC_AT]);
    crc32c::crc32c_append(c, &b[64..])
}
