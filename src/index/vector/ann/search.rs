//! Opening an IVF section (layout and crc checked once at open) and searching it: probe the
//! nearest lists, estimate their rows (version 2: their 8-bit codes; version 3: the attached
//! graph's codes, or exactly without one), rerank the best candidates exactly from the
//! segment's f32 vectors.

use super::*;
use crate::index::vector::calibrate::Calibration;
use crate::index::vector::graph::{GraphIndex, RowEstimator};
use crate::index::vector::rows::{RowSource, SliceRows};

/// An opened ANN section, borrowing the section bytes (zero-copy when they are 4-byte aligned
/// on a little-endian host; otherwise the float/int blocks are decoded once at open). Cheap to
/// create from a [`SharedAnnIndex`] (no validation, no allocation beyond an `Arc` clone).
pub struct AnnIndex<'a> {
    bytes: &'a [u8],
    meta: Arc<Meta>,
    kern: &'static Kernels,
    /// Version 3: the graph whose codes score candidates (None: scored exactly).
    graph: Option<GraphIndex>,
}

/// A validated section kept alive by its `Bytes` (e.g. an mmap'd segment): open once per segment,
/// cache it, and call [`SharedAnnIndex::index`] per query. `Clone`, `Send`, `Sync`.
#[derive(Clone)]
pub struct SharedAnnIndex {
    bytes: bytes::Bytes,
    meta: Arc<Meta>,
    graph: Option<GraphIndex>,
}

impl SharedAnnIndex {
    /// Opens and validates a section (crc32c included).
    pub fn open(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        let meta = Arc::new(parse(&bytes, true)?);
        Ok(SharedAnnIndex { bytes, meta, graph: None })
    }
    /// As [`SharedAnnIndex::open`] without the crc check (the caller verified the bytes).
    pub fn open_trusted(bytes: bytes::Bytes) -> Result<Self, IndexError> {
        let meta = Arc::new(parse(&bytes, false)?);
        Ok(SharedAnnIndex { bytes, meta, graph: None })
    }
    /// A search view over the cached section.
    pub fn index(&self) -> AnnIndex<'_> {
        AnnIndex {
            bytes: &self.bytes,
            meta: Arc::clone(&self.meta),
            kern: kernels(),
            graph: self.graph.clone(),
        }
    }
    /// Whether candidates are scored with a graph section's codes (version 3): the caller
    /// attaches the segment's graph with [`SharedAnnIndex::with_graph`].
    pub fn wants_graph(&self) -> bool {
        self.meta.graph_crc.is_some()
    }
    /// Attaches `graph` to score candidates when it is the section the build calibrated with
    /// (its stored crc32c and shape); otherwise (or for versions 1–2) nothing changes and a
    /// version-3 section scores its probed rows exactly.
    pub fn with_graph(mut self, graph: GraphIndex) -> Self {
        if self.meta.matches(&graph) {
            self.graph = Some(graph);
        }
        self
    }
    /// Whether a graph is attached.
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }
    /// Bytes of derived data held in memory besides the section (centroid codes, decoded blocks).
    pub fn heap_bytes(&self) -> usize {
        self.meta.heap_bytes()
    }
}

/// The probing order of one search and its filtered stop rule.
struct Scan<'s> {
    /// Probed lists, best first (all lists, for a filtered search).
    order: &'s [(f32, u32)],
    filter: Option<&'s dyn Fn(u32) -> bool>,
    /// Filtered: stop after the list in which this many matching rows were scored.
    target: usize,
}

/// Validated shape of a section plus data derived at open.
pub(super) struct Meta {
    /// Version 3: the crc32c of the graph section its candidates are scored with.
    graph_crc: Option<u32>,
    metric: Metric,
    dim: usize,
    rows: usize,
    nlist: usize,
    stride: usize,
    default_nprobe: usize,
    /// What the build measured (empty: not calibrated).
    calibration: Calibration,
    /// Byte range of each block inside the section.
    ranges: [(usize, usize); BLOCKS],
    /// Decoded copies of the 4-byte blocks when the bytes cannot be viewed in place.
    decoded: Option<Decoded>,
    centroid_norm2: Vec<f32>,
    centroid_scales: Vec<f32>,
    centroid_codes: Vec<u8>,
}

pub(super) struct Decoded {
    centroids: Vec<f32>,
    offsets: Vec<u32>,
    row_ids: Vec<u32>,
    norms: Vec<f32>,
    scales: Vec<f32>,
}

impl Meta {
    /// Whether `g` is the graph a version-3 section was calibrated with.
    fn matches(&self, g: &GraphIndex) -> bool {
        self.graph_crc == Some(g.stored_crc())
            && g.rows() == self.rows
            && g.dim() == self.dim
            && g.metric() == self.metric
    }

    fn heap_bytes(&self) -> usize {
        let d = self.decoded.as_ref().map_or(0, |d| {
            4 * (d.centroids.len() + d.offsets.len() + d.row_ids.len() + d.norms.len() + d.scales.len())
        });
        d + 4 * (self.centroid_norm2.len() + self.centroid_scales.len()) + self.centroid_codes.len()
    }
}

/// Views 4-byte-aligned little-endian bytes as `T` (f32 or u32); None when not viewable in place.
pub(super) fn view_4<T: Copy>(b: &[u8]) -> Option<&[T]> {
    debug_assert_eq!(std::mem::size_of::<T>(), 4);
    #[cfg(target_endian = "little")]
    {
        // SAFETY: only instantiated with f32 and u32 (every bit pattern valid); align_to only
        // reinterprets the aligned middle.
        let (pre, mid, post) = unsafe { b.align_to::<T>() };
        if pre.is_empty() && post.is_empty() {
            return Some(mid);
        }
    }
    let _ = b;
    None
}

pub(crate) fn rd_u32(b: &[u8], at: usize) -> Result<u32, IndexError> {
    crate::codec::u32_at(b, at).ok_or(corrupt("truncated header"))
}
pub(crate) fn rd_u64(b: &[u8], at: usize) -> Result<u64, IndexError> {
    crate::codec::u64_at(b, at).ok_or(corrupt("truncated header"))
}

/// The decoded copy if any, else the in-place view (empty if neither; callers check lengths).
pub(super) fn pick<'x, T: Copy>(decoded: Option<&'x Vec<T>>, b: &'x [u8]) -> &'x [T] {
    match decoded {
        Some(v) => v,
        None => view_4(b).unwrap_or(&[]),
    }
}

pub(crate) fn decode_f32(b: &[u8]) -> Vec<f32> {
    crate::codec::f32s_le(b)
}
pub(crate) fn decode_u32(b: &[u8]) -> Vec<u32> {
    crate::codec::u32s_le(b)
}

/// Quantizes a query for codes with per-dimension scales `scales`: returns the i8 query (padded
/// to `stride`), the bias to subtract from the raw biased-u8 dot product (128 · Σq), and the
/// factor turning the corrected integer dot product back into `q · x`.
pub(crate) fn quantize_query(q: &[f32], scales: &[f32], stride: usize) -> (Vec<i8>, i32, f32) {
    let mut qq = vec![0i8; stride];
    let mut maxq = 0f32;
    for (v, s) in q.iter().zip(scales) {
        maxq = maxq.max((v / s).abs());
    }
    let t = if maxq > 0.0 && maxq.is_finite() { 127.0 / maxq } else { 1.0 };
    let mut qsum = 0i32;
    for ((o, v), s) in qq.iter_mut().zip(q).zip(scales) {
        let x = crate::index::vector::round::round127(v / s * t) as i8;
        *o = x;
        qsum += i32::from(x);
    }
    (qq, 128 * qsum, 1.0 / t)
}

/// Per-dimension max-abs scales and biased 8-bit codes (row stride `stride`) of `rows`.
pub(crate) fn quantize_rows(rows: &[f32], dim: usize, stride: usize) -> (Vec<f32>, Vec<u8>) {
    let mut maxabs = vec![0f32; dim];
    if dim == 0 {
        return (maxabs, Vec::new());
    }
    for x in rows.chunks_exact(dim) {
        for (m, v) in maxabs.iter_mut().zip(x) {
            *m = m.max(v.abs());
        }
    }
    let scales: Vec<f32> =
        maxabs.iter().map(|m| if *m > 0.0 && m.is_finite() { 127.0 / m } else { 1.0 }).collect();
    let n = rows.len() / dim;
    let mut codes = vec![128u8; n * stride];
    for (x, out) in rows.chunks_exact(dim).zip(codes.chunks_exact_mut(stride)) {
        for ((o, v), s) in out.iter_mut().zip(x).zip(&scales) {
            *o = crate::index::vector::round::biased_u8(v * s);
        }
    }
    (scales, codes)
}

/// Row stride of the centroids' 8-bit codes: `dim` rounded up to 64.
fn centroid_stride(dim: usize) -> usize {
    dim.div_ceil(64) * 64
}

pub(super) fn parse(bytes: &[u8], check_crc: bool) -> Result<Meta, IndexError> {
    if bytes.len() < HEADER_LEN_V1 {
        return Err(corrupt("shorter than the header"));
    }
    if bytes[0..8] != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let version = rd_u32(bytes, 8)?;
    let kind = bytes[17];
    let (header_len, want_kind) = match version {
        1 => (HEADER_LEN_V1, KIND_IVF_SQ8),
        VERSION_SQ8 => (HEADER_LEN, KIND_IVF_SQ8),
        VERSION => (HEADER_LEN, KIND_IVF_LISTS),
        _ => return Err(unsupported(version, kind)),
    };
    if kind != want_kind {
        return Err(unsupported(version, kind));
    }
    let lists_only = kind == KIND_IVF_LISTS;
    if rd_u32(bytes, 12)? as usize != header_len || bytes.len() < header_len {
        return Err(corrupt("bad header length"));
    }
    if check_crc && rd_u32(bytes, CRC_AT)? != section_crc(bytes) {
        return Err(checksum());
    }
    let metric = metric_from_code(bytes[16])?;
    let dim = rd_u32(bytes, 20)? as usize;
    let rows = rd_u32(bytes, 24)? as usize;
    let nlist = rd_u32(bytes, 28)? as usize;
    let stride = rd_u32(bytes, 32)? as usize;
    let default_nprobe = rd_u32(bytes, 36)? as usize;
    if stride != if lists_only { 0 } else { dim.div_ceil(64) * 64 } {
        return Err(corrupt("bad code stride"));
    }
    let graph_crc = lists_only.then(|| rd_u32(bytes, GRAPH_CRC_AT)).transpose()?;
    // Bytes 60..64 lie outside the crc: version 3 holds them to their reserved 0.
    if lists_only && rd_u32(bytes, CRC_AT + 4)? != 0 {
        return Err(corrupt("reserved bytes set"));
    }
    if (rows > 0 && (nlist == 0 || nlist > rows || dim == 0)) || (rows == 0 && nlist != 0) {
        return Err(corrupt("bad list count"));
    }
    if nlist > 0 && (default_nprobe == 0 || default_nprobe > nlist) {
        return Err(corrupt("bad default nprobe"));
    }
    let too_big = corrupt("size overflow");
    let expect = [
        nlist.checked_mul(dim).and_then(|v| v.checked_mul(4)).ok_or(too_big)?,
        (nlist + 1).checked_mul(4).ok_or(too_big)?,
        rows.checked_mul(4).ok_or(too_big)?,
        if lists_only { 0 } else { rows.checked_mul(4).ok_or(too_big)? },
        if lists_only { 0 } else { dim.checked_mul(4).ok_or(too_big)? },
        rows.checked_mul(stride).ok_or(too_big)?,
    ];
    let mut blk: [&[u8]; BLOCKS] = [&[]; BLOCKS];
    let mut ranges = [(0usize, 0usize); BLOCKS];
    for (i, want) in expect.iter().enumerate() {
        let off = rd_u64(bytes, 64 + 16 * i)?;
        let len = rd_u64(bytes, 72 + 16 * i)?;
        if len != *want as u64 {
            return Err(corrupt("block length does not match the header"));
        }
        if lists_only && i >= 3 {
            // Version 3 holds no norms, scales or codes: their entries are (0, 0).
            if off != 0 {
                return Err(corrupt("version 3 with a code block"));
            }
            continue;
        }
        if off % 64 != 0 || off < header_len as u64 {
            return Err(corrupt("misaligned block"));
        }
        let end = off.checked_add(len).ok_or(corrupt("block out of bounds"))?;
        if end > bytes.len() as u64 {
            return Err(corrupt("block out of bounds"));
        }
        blk[i] = &bytes[off as usize..end as usize];
        ranges[i] = (off as usize, end as usize);
    }
    let in_place = view_4::<f32>(bytes).is_some() || bytes.is_empty();
    let decoded = if in_place {
        None
    } else {
        Some(Decoded {
            centroids: decode_f32(blk[0]),
            offsets: decode_u32(blk[1]),
            row_ids: decode_u32(blk[2]),
            norms: decode_f32(blk[3]),
            scales: decode_f32(blk[4]),
        })
    };
    let centroids = pick(decoded.as_ref().map(|d| &d.centroids), blk[0]);
    let offsets = pick(decoded.as_ref().map(|d| &d.offsets), blk[1]);
    let row_ids = pick(decoded.as_ref().map(|d| &d.row_ids), blk[2]);
    let norms = pick(decoded.as_ref().map(|d| &d.norms), blk[3]);
    let scales = pick(decoded.as_ref().map(|d| &d.scales), blk[4]);
    if centroids.len() * 4 != blk[0].len()
        || offsets.len() * 4 != blk[1].len()
        || row_ids.len() * 4 != blk[2].len()
        || norms.len() * 4 != blk[3].len()
        || scales.len() * 4 != blk[4].len()
    {
        return Err(corrupt("unaligned block"));
    }
    if !centroids.iter().all(|v| v.is_finite()) {
        return Err(corrupt("non-finite centroid"));
    }
    if !scales.iter().all(|v| v.is_finite() && *v > 0.0) {
        return Err(corrupt("bad code scale"));
    }
    if !norms.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return Err(corrupt("bad row norm"));
    }
    if offsets.first() != Some(&0)
        || offsets.last().map(|v| *v as usize) != Some(rows)
        || offsets.windows(2).any(|w| w[0] > w[1])
    {
        return Err(corrupt("bad list offsets"));
    }
    let mut seen = vec![false; rows];
    for r in row_ids.iter() {
        match seen.get_mut(*r as usize) {
            Some(s) if !*s => *s = true,
            _ => return Err(corrupt("row ids are not a permutation")),
        }
    }
    let centroid_norm2 = if metric == Metric::EuclideanSquared && dim > 0 {
        centroids.chunks_exact(dim).map(|c| distance::det_dot(c, c)).collect()
    } else {
        Vec::new()
    };
    // The centroids' own 8-bit codes (built here, for the list ranking) use the padded stride
    // whatever the section holds.
    let (centroid_scales, centroid_codes) = quantize_rows(centroids, dim, centroid_stride(dim));
    let calibration = match version {
        1 => Calibration::default(),
        _ => Calibration::decode(&bytes[CALIB_AT..])?,
    };
    if calibration.rungs.iter().any(|r| r.effort as usize > nlist) {
        return Err(corrupt("calibrated nprobe above nlist"));
    }
    Ok(Meta {
        graph_crc,
        calibration,
        metric,
        dim,
        rows,
        nlist,
        stride,
        default_nprobe,
        ranges,
        decoded,
        centroid_norm2,
        centroid_scales,
        centroid_codes,
    })
}

impl<'a> AnnIndex<'a> {
    /// Opens a section, verifying its crc32c and structure.
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Ok(AnnIndex { bytes, meta: Arc::new(parse(bytes, true)?), kern: kernels(), graph: None })
    }

    /// A view searching with `kern` (build-time calibration: the deterministic kernels).
    pub(super) fn with_kernels(bytes: &'a [u8], meta: Meta, kern: &'static Kernels) -> Self {
        AnnIndex { bytes, meta: Arc::new(meta), kern, graph: None }
    }

    /// This view scoring with `graph` when it is the one a version-3 section names (see
    /// [`SharedAnnIndex::with_graph`]); unchanged otherwise.
    pub fn with_graph(mut self, graph: &GraphIndex) -> Self {
        if self.meta.matches(graph) {
            self.graph = Some(graph.clone());
        }
        self
    }

    /// Whether candidates are estimated by a graph's codes (version 3 with its graph attached).
    pub fn has_graph(&self) -> bool {
        self.graph.is_some()
    }

    /// Whether the section holds lists only (version 3: no codes of its own).
    pub fn lists_only(&self) -> bool {
        self.meta.graph_crc.is_some()
    }

    /// Opens a section whose bytes were already checksummed by the caller (e.g. the segment's
    /// section crc); every structural check still runs.
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Ok(AnnIndex { bytes, meta: Arc::new(parse(bytes, false)?), kern: kernels(), graph: None })
    }

    fn block(&self, i: usize) -> &'a [u8] {
        let (a, b) = self.meta.ranges[i];
        self.bytes.get(a..b).unwrap_or(&[])
    }
    fn centroids(&self) -> &[f32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.centroids), self.block(0))
    }
    fn offsets(&self) -> &[u32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.offsets), self.block(1))
    }
    fn row_ids(&self) -> &[u32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.row_ids), self.block(2))
    }
    fn norms(&self) -> &[f32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.norms), self.block(3))
    }
    fn scales(&self) -> &[f32] {
        pick(self.meta.decoded.as_ref().map(|d| &d.scales), self.block(4))
    }
    fn codes(&self) -> &'a [u8] {
        self.block(5)
    }

    /// The IVF directory: centroids (nlist × dim; cosine: unit length), list offsets
    /// (nlist + 1) and the row of each list position (lists in centroid order, rows ascending
    /// within a list). The cold-read section ([`super::coldivf`]) is built from it.
    pub fn directory(&self) -> (&[f32], &[u32], &[u32]) {
        (self.centroids(), self.offsets(), self.row_ids())
    }

    /// Distance metric the index was built for.
    pub fn metric(&self) -> Metric {
        self.meta.metric
    }
    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.meta.dim
    }
    /// Indexed rows.
    pub fn rows(&self) -> usize {
        self.meta.rows
    }
    /// Number of clusters.
    pub fn nlist(&self) -> usize {
        self.meta.nlist
    }
    /// Clusters probed by an unfiltered search with `nprobe = 0`.
    pub fn default_nprobe(&self) -> usize {
        self.meta.default_nprobe
    }
    /// What the build measured (empty for sections built before calibration).
    pub fn calibration(&self) -> &Calibration {
        &self.meta.calibration
    }
    /// (nprobe, rerank) for a target recall@10: the cheapest measured rung reaching it, the
    /// stored default nprobe with the default rerank when the section is not calibrated, `None`
    /// when no measured rung reaches it (the caller searches exactly).
    pub fn effort(&self, target: f32) -> Option<(u32, u32)> {
        if !self.meta.calibration.is_calibrated() {
            return Some((self.meta.default_nprobe as u32, SearchParams::default().rerank));
        }
        self.meta.calibration.pick(target).map(|r| (r.effort, r.rerank))
    }
    /// Rows in cluster `c` (0 when out of range).
    pub fn list_len(&self, c: usize) -> usize {
        match (self.offsets().get(c), self.offsets().get(c + 1)) {
            (Some(a), Some(b)) => (*b - *a) as usize,
            _ => 0,
        }
    }

    /// Approximate k nearest rows (see the module docs for the filtered strategy). `vectors` is
    /// the segment's rows × dim in row order; results are (row, exact distance) sorted by
    /// (distance, row).
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &SearchParams,
    ) -> Vec<(u32, f32)> {
        self.search_rows(&SliceRows { vectors, dim: self.meta.dim }, query, k, filter, params)
    }

    /// [`AnnIndex::search`] over rows read through `rows` (see [`RowSource`]).
    pub fn search_rows(
        &self,
        rows: &dyn RowSource,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &SearchParams,
    ) -> Vec<(u32, f32)> {
        // Only the exact fallbacks read every row (a guarded source checks what it hands out).
        let floats = rows.floats();
        if k == 0 || query.len() != self.meta.dim || self.meta.rows == 0 {
            return Vec::new();
        }
        if floats != self.meta.rows * self.meta.dim {
            return exact_with(self.kern, rows.all(), self.meta.dim, self.meta.metric, query, k, filter);
        }
        let mut est_matches = self.meta.rows;
        if let Some(f) = filter {
            est_matches = match params.filter_estimate {
                Some(e) => e as usize,
                None => self.estimate_matches(f),
            };
            if est_matches <= params.exact_threshold as usize {
                return exact_with(self.kern, rows.all(), self.meta.dim, self.meta.metric, query, k, filter);
            }
        }
        let kern = self.kern;
        let dim = self.meta.dim;
        // Query in index space.
        let qnorm = kern.dot(query, query).sqrt();
        let qn: Cow<[f32]> = match self.meta.metric {
            Metric::CosineDistance => {
                if !(qnorm > 0.0 && qnorm.is_finite()) {
                    return exact_with(kern, rows.all(), dim, self.meta.metric, query, k, filter);
                }
                Cow::Owned(query.iter().map(|v| v / qnorm).collect())
            }
            Metric::EuclideanSquared => Cow::Borrowed(query),
        };
        // Centroid ranking (smaller is better) from 8-bit centroid codes; the exact q·c of a
        // probed cluster is computed when it is scanned.
        let (cq, cbias, cinv) = quantize_query(&qn, &self.meta.centroid_scales, centroid_stride(dim));
        let mut craw = vec![0i32; self.meta.nlist];
        kern.u8i8_batch(&cq, &self.meta.centroid_codes, &mut craw);
        let cdot: Vec<f32> = craw.iter().map(|r| (*r - cbias) as f32 * cinv).collect();
        let mut order: Vec<(f32, u32)> = match self.meta.metric {
            Metric::CosineDistance => cdot.iter().enumerate().map(|(c, s)| (-*s, c as u32)).collect(),
            Metric::EuclideanSquared => cdot
                .iter()
                .zip(&self.meta.centroid_norm2)
                .enumerate()
                .map(|(c, (s, n2))| (n2 - 2.0 * s, c as u32))
                .collect(),
        };
        // nprobe 0: the stored default, with the rerank depth it was calibrated with.
        let default_rerank = match self.meta.calibration.pick(crate::index::vector::calibrate::DEFAULT_TARGET)
        {
            Some(r) if params.nprobe == 0 => r.rerank,
            _ => 0,
        };
        let nprobe = if params.nprobe == 0 { self.meta.default_nprobe } else { params.nprobe as usize }
            .clamp(1, self.meta.nlist);
        let cmp = |a: &(f32, u32), b: &(f32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if filter.is_none() && nprobe < self.meta.nlist {
            order.select_nth_unstable_by(nprobe - 1, cmp);
            order.truncate(nprobe);
        }
        order.sort_unstable_by(cmp);
        let r = (params.rerank.max(default_rerank) as usize).max(2 * k);
        // Filtered stop rule: the rows an unfiltered search would scan, times √selectivity
        // (a selective filter's k-th match is farther away, so a larger share of the matching
        // rows must be scored), at least the rerank depth.
        let target = if params.filter_min_scored == 0 {
            let scan = (nprobe * self.meta.rows).div_ceil(self.meta.nlist) as f64;
            let sel = (est_matches as f64 / self.meta.rows as f64).clamp(0.0, 1.0);
            ((scan * sel.sqrt()).ceil() as usize).max(r)
        } else {
            params.filter_min_scored as usize
        };
        let scan = Scan { order: &order, filter, target };
        let cands = if self.lists_only() {
            let graph = self.graph.as_ref().and_then(|g| g.row_estimator(query, kern));
            self.scan_rows(&scan, graph.as_ref(), rows, query, r)
        } else {
            self.scan_codes(&scan, &qn, r)
        };
        // Exact rerank.
        let mut top = TopK::new(k);
        let mut buf = Vec::new();
        let picked: Vec<u32> = cands.sorted().iter().map(|&(p, _)| self.row_ids()[p as usize]).collect();
        rows.will_read(&picked);
        for row in picked {
            // The row's norm worked out here, not the index's stored one: a row's `$dist` has the
            // bits every other path gives it (the stored norm may come from the build's kernels).
            let d = kern.distance_with_norm(self.meta.metric, query, qnorm, rows.row(row as usize, &mut buf));
            top.push(d, row);
        }
        top.sorted()
    }

    /// Version 1–2 candidates: the probed lists' 8-bit residual codes, estimating q·c + q·r
    /// (`qn`: the query in index space). Returns the best `r` list positions.
    fn scan_codes(&self, scan: &Scan<'_>, qn: &[f32], r: usize) -> TopK {
        let (kern, dim, stride) = (self.kern, self.meta.dim, self.meta.stride);
        let (qq, bias, inv_t) = quantize_query(qn, self.scales(), stride);
        let mut cands = TopK::new(r);
        let mut raw = Vec::new();
        let mut scored = 0usize;
        for (oi, &(_, c)) in scan.order.iter().enumerate() {
            if let Some(&(_, nc)) = scan.order.get(oi + 1) {
                let na = self.offsets()[nc as usize] as usize * stride;
                let nb = self.offsets()[nc as usize + 1] as usize * stride;
                distance::prefetch(&self.codes()[na..nb], 4 * stride);
            }
            let (a, b) = (self.offsets()[c as usize] as usize, self.offsets()[c as usize + 1] as usize);
            if a == b {
                continue;
            }
            raw.resize(b - a, 0i32);
            let base = kern.dot(qn, &self.centroids()[c as usize * dim..(c as usize + 1) * dim]);
            let ids = &self.row_ids()[a..b];
            let norms = &self.norms()[a..b];
            let est = |d: i32, i: usize| {
                let ip = base + (d - bias) as f32 * inv_t;
                match self.meta.metric {
                    Metric::CosineDistance => -ip,
                    Metric::EuclideanSquared => norms[i] - 2.0 * ip,
                }
            };
            match scan.filter {
                None => {
                    kern.u8i8_batch(&qq, &self.codes()[a * stride..b * stride], &mut raw);
                    for (i, d) in raw.iter().enumerate() {
                        cands.push(est(*d, i), (a + i) as u32);
                    }
                }
                Some(f) => {
                    for (i, row) in ids.iter().enumerate() {
                        if !f(*row) {
                            continue;
                        }
                        let p = a + i;
                        let d = kern.u8i8(&qq, &self.codes()[p * stride..(p + 1) * stride]);
                        cands.push(est(d, i), p as u32);
                        scored += 1;
                    }
                    if scored >= scan.target {
                        break;
                    }
                }
            }
        }
        cands
    }

    /// Version 3 candidates: each probed (matching) row estimated by the graph's codes, or its
    /// exact distance read from `rows` when no graph is attached. Returns the best `r` list
    /// positions.
    fn scan_rows(
        &self,
        scan: &Scan<'_>,
        graph: Option<&RowEstimator<'_>>,
        rows: &dyn RowSource,
        query: &[f32],
        r: usize,
    ) -> TopK {
        /// Scored rows ahead whose codes are prefetched.
        const AHEAD: usize = 8;
        let mut cands = TopK::new(r);
        let mut buf = Vec::new();
        let mut scored = 0usize;
        let all = self.row_ids();
        // The list's (position, row) pairs to score: only matching rows, so a narrow filter
        // neither scores nor prefetches the codes of rows it skips.
        let mut picked: Vec<(u32, u32)> = Vec::new();
        for &(_, c) in scan.order {
            let (a, b) = (self.offsets()[c as usize] as usize, self.offsets()[c as usize + 1] as usize);
            picked.clear();
            picked.extend(
                (a..b)
                    .zip(&all[a..b])
                    .filter(|(_, r)| scan.filter.is_none_or(|f| f(**r)))
                    .map(|(p, r)| (p as u32, *r)),
            );
            for (j, &(p, row)) in picked.iter().enumerate() {
                if let (Some(g), Some(next)) = (graph, picked.get(j + AHEAD)) {
                    g.prefetch(next.1);
                }
                let d = match graph {
                    Some(g) => g.estimate(row),
                    None => self.kern.distance(self.meta.metric, query, rows.row(row as usize, &mut buf)),
                };
                cands.push(d, p);
            }
            scored += picked.len();
            if scan.filter.is_some() && scored >= scan.target {
                break;
            }
        }
        cands
    }

    /// Estimated rows matching `filter`: evaluates it on up to 256 evenly spaced rows.
    pub fn estimate_matches(&self, filter: &dyn Fn(u32) -> bool) -> usize {
        if self.meta.rows == 0 {
            return 0;
        }
        let samples = self.meta.rows.min(256);
        let hits = (0..samples).filter(|i| filter((i * self.meta.rows / samples) as u32)).count();
        (hits * self.meta.rows).div_ceil(samples)
    }
}
