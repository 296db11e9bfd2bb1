//! Opening a graph section ([`GraphIndex::open`]: every length and neighbour id checked) and
//! searching it (the greedy beam of the `beam` module over the traversal codes, exact f32
//! rerank).
//!
//! Invariant: a search's answer depends only on the section's bytes, the query and the
//! parameters (the beam's own invariants: the `beam` module).

use super::super::ann::{checksum, corrupt, exact, unsupported};
use super::super::calibrate::{self, Calibration};
use super::super::distance::{kernels, Kernels, Metric};
use super::super::rabitq::{self, Rotation};
use super::super::rows::{RowSource, SliceRows};
use super::super::Ranked;
use super::beam::{beam, BeamScratch, Prefetch};
use super::{
    layout, layout_v3, layout_v4, link_bits, link_bytes, section_crc, GraphSearchParams, CALIB_AT, CRC_AT,
    HEADER_LEN, HEADER_LEN_V1, HEADER_LEN_V4, KIND_RABITQ, KIND_SQ8, LINK_SLACK, MAGIC, NONE, RECORD_AT,
    SEED_AT, VERSION, VERSION_RABITQ, VERSION_SQ8, VERSION_TIGHT,
};
use crate::index::IndexError;
use std::sync::Arc;

/// An opened graph section (owns a cheap clone of the bytes). Cloning it is cheap too: a segment
/// reader hands every query a clone, and the decoded blocks (a norm per row: 3.8 MB at 950k rows)
/// are shared, not copied — a copy per query once cost a 950k-row segment 2.5 ms of its 3.6 ms.
#[derive(Clone)]
pub struct GraphIndex {
    pub(super) bytes: bytes::Bytes,
    pub(super) kern: &'static Kernels,
    pub(super) metric: Metric,
    pub(super) dim: usize,
    pub(super) rows: usize,
    pub(super) degree: usize,
    pub(super) stride: usize,
    pub(super) entry: u32,
    pub(super) default_ef: usize,
    pub(super) calibration: Calibration,
    pub(super) scales: Arc<[f32]>,
    pub(super) mean: Arc<[f32]>,
    pub(super) norms2: Arc<[f32]>,
    pub(super) off_nb: usize,
    pub(super) off_codes: usize,
    pub(super) code: Code,
    pub(super) links: Links,
    /// Where searches start, chosen at the first search (`seeds` module), shared by the clones.
    pub(super) seeds: Arc<std::sync::OnceLock<Box<[u32]>>>,
}

/// How a section stores its neighbour lists (the block `[off_nb, off_codes)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Links {
    /// Versions 1 to 3: `degree` u32 a row, unused slots `u32::MAX` (trailing).
    Wide,
    /// Version 4: `degree` ids of `bits` bits a row (LSB first, `bytes` a row), unused slots
    /// hold the row count.
    Packed { bits: u32, bytes: usize },
}

/// Appends row `u`'s neighbours from a version-4 links block `nb` (rows `rows`) to `out`, up to
/// the first unused slot. Each id is one unaligned 8-byte load, a shift and a mask: the lists'
/// [`LINK_SLACK`] zero bytes keep the last row's loads inside the block.
#[inline]
pub(super) fn unpack_links(
    nb: &[u8],
    u: u32,
    degree: usize,
    (bits, bytes): (u32, usize),
    rows: u32,
    out: &mut Vec<u32>,
) {
    let at = u as usize * bytes;
    let Some(list) = nb.get(at..at + bytes + LINK_SLACK) else { return };
    let mask = (1u64 << bits) - 1;
    for i in 0..degree {
        let bit = i * bits as usize;
        let Some(word) = list.get(bit / 8..bit / 8 + 8) else { return };
        let word =
            u64::from_le_bytes([word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7]]);
        let v = ((word >> (bit % 8)) & mask) as u32;
        if v >= rows {
            return;
        }
        out.push(v);
    }
}

/// Every packed id is a row or the unused-slot value (the row count), and the block's bytes past
/// the lists are zero.
fn check_packed(nb: &[u8], rows: usize, degree: usize, packing: (u32, usize)) -> Result<(), IndexError> {
    let (bits, bytes) = packing;
    let used = rows.checked_mul(bytes).ok_or(corrupt("length overflow"))?;
    if nb.get(used..).is_none_or(|tail| tail.iter().any(|b| *b != 0)) {
        return Err(corrupt("links block padding"));
    }
    let mask = (1u64 << bits) - 1;
    for list in nb.chunks_exact(bytes).take(rows) {
        for i in 0..degree {
            let bit = i * bits as usize;
            let mut word = [0u8; 8];
            let end = list.len().min(bit / 8 + 8);
            word[..end - bit / 8].copy_from_slice(&list[bit / 8..end]);
            if (u64::from_le_bytes(word) >> (bit % 8)) & mask > rows as u64 {
                return Err(corrupt("neighbour out of range"));
            }
        }
    }
    Ok(())
}

/// The header fields versions 3 and 4 share (offsets in the module docs), read, not yet checked.
struct Shape {
    metric: Metric,
    kind: u8,
    bits: u32,
    qbits: u32,
    dim: usize,
    rows: usize,
    degree: usize,
    stride: usize,
    entry: usize,
    default_ef: usize,
    seed: u64,
    record: usize,
}

impl Shape {
    fn read(b: &[u8]) -> Result<Shape, IndexError> {
        let metric = super::super::ann::metric_from_code(b[16])?;
        let [dim, rows, degree, stride, entry, default_ef] =
            [20, 24, 28, 32, 36, 40].map(|at| rd_u32(b, at).map(|v| v as usize));
        Ok(Shape {
            metric,
            kind: b[17],
            bits: u32::from(b[18]),
            qbits: u32::from(b[19]),
            dim: dim?,
            rows: rows?,
            degree: degree?,
            stride: stride?,
            entry: entry?,
            default_ef: default_ef?,
            seed: crate::codec::u64_at(b, SEED_AT).ok_or(corrupt("truncated"))?,
            record: rd_u32(b, RECORD_AT)? as usize,
        })
    }
}

/// The traversal codes of an opened section.
#[derive(Clone)]
pub(super) enum Code {
    /// 8-bit centred codes (`stride` bytes a row), `scales` and `norms2` decoded.
    Sq8,
    /// Bit-plane records of `record` bytes a row over padded length `stride`.
    Planes { bits: u32, qbits: u32, record: usize, rot: Arc<Rotation> },
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

/// Every neighbour id is a row or the padding value.
fn check_neighbours(nb: &[u8], rows: usize) -> Result<(), IndexError> {
    for c in nb.chunks_exact(4) {
        let u = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if u != NONE && u as usize >= rows {
            return Err(corrupt("neighbour out of range"));
        }
    }
    Ok(())
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

    pub(super) fn parse(bytes: bytes::Bytes, check_crc: bool) -> Result<Self, IndexError> {
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
            (VERSION_SQ8, HEADER_LEN) if b.len() >= HEADER_LEN => false,
            (VERSION_RABITQ, HEADER_LEN) if b.len() >= HEADER_LEN => return Self::parse_v3(bytes, check_crc),
            (VERSION, HEADER_LEN_V4) if b.len() >= HEADER_LEN_V4 => {
                return Self::parse_v4(bytes, check_crc, false)
            }
            (VERSION_TIGHT, HEADER_LEN_V4) if b.len() >= HEADER_LEN_V4 => {
                return Self::parse_v4(bytes, check_crc, true)
            }
            _ => return Err(unsupported(version, b[16])),
        };
        let metric = super::super::ann::metric_from_code(b[16])?;
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
        check_neighbours(b.get(o_nb..o_c).ok_or(corrupt("truncated neighbours"))?, rows)?;
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
            scales: scales.into(),
            mean: mean.into(),
            norms2: norms2.into(),
            off_nb: o_nb,
            off_codes: o_c,
            code: Code::Sq8,
            links: Links::Wide,
            seeds: Arc::default(),
            bytes,
        })
    }

    /// Version 3: the header of version 2 with a code kind (byte 17), code and query bits (18,
    /// 19), the rotation seed (44) and the record length (52); mean, neighbours, records.
    fn parse_v3(bytes: bytes::Bytes, check_crc: bool) -> Result<Self, IndexError> {
        let b = &bytes[..];
        let Shape { metric, kind, bits, qbits, dim, rows, degree, stride, entry, default_ef, seed, record } =
            Shape::read(b)?;
        if kind != KIND_RABITQ {
            return Err(unsupported(VERSION_RABITQ, kind));
        }
        let shape_ok = dim > 0
            && stride == rabitq::padded(dim)
            && (1..=256).contains(&degree)
            && default_ef > 0
            && (1..=rabitq::MAX_BITS).contains(&bits)
            && qbits == rabitq::query_bits(bits)
            && record == rabitq::record_len(bits, stride);
        if !shape_ok {
            return Err(corrupt("bad shape"));
        }
        if rows > 0 && entry >= rows {
            return Err(corrupt("entry out of range"));
        }
        let [o_m, o_nb, o_r, end] = layout_v3(dim, rows, degree, record).ok_or(corrupt("length overflow"))?;
        if end != b.len() {
            return Err(corrupt("length does not match the shape"));
        }
        if check_crc && rd_u32(b, CRC_AT)? != section_crc(b) {
            return Err(checksum());
        }
        let mean = rd_f32s(b, o_m, dim)?;
        let calibration = Calibration::decode(&b[CALIB_AT..])?;
        check_neighbours(&b[o_nb..o_r], rows)?;
        for r in b[o_r..].chunks_exact(record) {
            if !rabitq::factors(r, bits, stride).iter().all(|f| f.is_finite()) {
                return Err(corrupt("non-finite float"));
            }
        }
        Ok(GraphIndex {
            kern: kernels(),
            metric,
            dim,
            rows,
            degree,
            stride,
            entry: entry as u32,
            default_ef,
            calibration,
            scales: Vec::new().into(),
            mean: mean.into(),
            norms2: Vec::new().into(),
            off_nb: o_nb,
            off_codes: o_r,
            code: Code::Planes { bits, qbits, record, rot: Arc::new(Rotation::new(stride, seed)) },
            links: Links::Wide,
            seeds: Arc::default(),
            bytes,
        })
    }

    /// Version 4: the header of version 3 for either code kind (byte 17: 0 = 8-bit codes, with
    /// code and query bits 8, seed 0 and record length = stride), 192 bytes with the wide
    /// calibration record; blocks scales (8-bit), mean, norms (8-bit), packed links, codes.
    /// Version 5 (`tight`) is version 4 with RaBitQ codes only, records of
    /// `rabitq::record_len_tight` bytes.
    fn parse_v4(bytes: bytes::Bytes, check_crc: bool, tight: bool) -> Result<Self, IndexError> {
        let b = &bytes[..];
        let Shape { metric, kind, bits, qbits, dim, rows, degree, stride, entry, default_ef, seed, record } =
            Shape::read(b)?;
        let record_len = if tight { rabitq::record_len_tight } else { rabitq::record_len };
        let codes_ok = match kind {
            KIND_SQ8 if !tight => {
                stride == dim.div_ceil(64) * 64 && bits == 8 && qbits == 8 && seed == 0 && record == stride
            }
            KIND_RABITQ => {
                stride == rabitq::padded(dim)
                    && (1..=rabitq::MAX_BITS).contains(&bits)
                    && qbits == rabitq::query_bits(bits)
                    && record == record_len(bits, stride)
            }
            _ => return Err(unsupported(if tight { VERSION_TIGHT } else { VERSION }, kind)),
        };
        let reserved = b[60..64].iter().chain(&b[CALIB_AT + calibrate::WIDE_RECORD_LEN..HEADER_LEN_V4]);
        if !codes_ok || dim == 0 || !(1..=256).contains(&degree) || default_ef == 0 {
            return Err(corrupt("bad shape"));
        }
        if reserved.into_iter().any(|x| *x != 0) {
            return Err(corrupt("reserved header bytes"));
        }
        if rows > 0 && entry >= rows {
            return Err(corrupt("entry out of range"));
        }
        let sq8 = kind == KIND_SQ8;
        let [o_sc, o_m, o_n, o_nb, o_c, end] =
            layout_v4(sq8, dim, rows, degree, record).ok_or(corrupt("length overflow"))?;
        if end != b.len() {
            return Err(corrupt("length does not match the shape"));
        }
        if check_crc && rd_u32(b, CRC_AT)? != section_crc(b) {
            return Err(checksum());
        }
        let calibration = Calibration::decode_wide(&b[CALIB_AT..])?;
        let packing = (link_bits(rows), link_bytes(rows, degree).ok_or(corrupt("length overflow"))?);
        check_packed(&b[o_nb..o_c], rows, degree, packing)?;
        let mean = rd_f32s(b, o_m, dim)?;
        let (scales, norms2, code) = if sq8 {
            (rd_f32s(b, o_sc, dim)?, rd_f32s(b, o_n, rows)?, Code::Sq8)
        } else {
            for r in b[o_c..].chunks_exact(record) {
                if !rabitq::factors(r, bits, stride).iter().all(|f| f.is_finite()) {
                    return Err(corrupt("non-finite float"));
                }
            }
            let rot = Arc::new(Rotation::new(stride, seed));
            (Vec::new(), Vec::new(), Code::Planes { bits, qbits, record, rot })
        };
        Ok(GraphIndex {
            kern: kernels(),
            metric,
            dim,
            rows,
            degree,
            stride,
            entry: entry as u32,
            default_ef,
            calibration,
            scales: scales.into(),
            mean: mean.into(),
            norms2: norms2.into(),
            off_nb: o_nb,
            off_codes: o_c,
            code,
            links: Links::Packed { bits: packing.0, bytes: packing.1 },
            seeds: Arc::default(),
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
        let rotation = match &self.code {
            Code::Sq8 => 0,
            // A sign (bool) and a permutation entry (u32) per padded dimension and round.
            Code::Planes { rot, .. } => rot.len() * rabitq::ROUNDS * 5,
        };
        (self.scales.len() + self.mean.len() + self.norms2.len()) * 4 + rotation
    }
    /// The traversal codes: bits per dimension (8 for the 8-bit codes of versions 1 and 2).
    pub fn code_bits(&self) -> u32 {
        match &self.code {
            Code::Sq8 => 8,
            Code::Planes { bits, .. } => *bits,
        }
    }
    /// Bytes a row costs the traversal: its code (record) and its neighbour list.
    pub fn traversal_bytes_per_row(&self) -> usize {
        let code = match &self.code {
            Code::Sq8 => self.stride + 4,
            Code::Planes { record, .. } => *record,
        };
        code + self.link_row_bytes()
    }

    /// Whether the codes are 8-bit, and the bytes of one row's code.
    pub(super) fn code_layout(&self) -> (bool, usize) {
        match &self.code {
            Code::Sq8 => (true, self.stride),
            Code::Planes { record, .. } => (false, *record),
        }
    }

    /// Bytes of one row's neighbour list (versions 1 to 3: 4 a slot; version 4: packed).
    pub fn link_row_bytes(&self) -> usize {
        match self.links {
            Links::Wide => self.degree * 4,
            Links::Packed { bytes, .. } => bytes,
        }
    }

    /// Row `u`'s neighbours (empty for a row out of range), appended to `out`.
    pub fn neighbours(&self, u: u32, out: &mut Vec<u32>) {
        let nb = &self.bytes[self.off_nb..self.off_codes];
        match self.links {
            Links::Wide => wide_links(nb, u, self.degree, out),
            Links::Packed { bits, bytes } => {
                unpack_links(nb, u, self.degree, (bits, bytes), self.rows as u32, out)
            }
        }
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
        self.search_rows(&SliceRows { vectors, dim: self.dim }, query, k, filter, params)
    }

    /// [`GraphIndex::search`] over rows read through `rows` (see [`RowSource`]).
    pub fn search_rows(
        &self,
        rows: &dyn RowSource,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &GraphSearchParams,
    ) -> Vec<(u32, f32)> {
        self.search_hiding(rows, query, k, filter, params, None)
    }

    /// [`GraphIndex::search`] as if row `hidden` were not in the graph (never entered, so its
    /// own links — which lead straight to its neighbours — are not followed): a stored row then
    /// queries the graph like a fresh vector does. The calibration's search; public for the
    /// benchmarks that check it (`bench/ann_robust.rs`).
    pub fn search_hiding(
        &self,
        rows: &dyn RowSource,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &GraphSearchParams,
        hidden: Option<u32>,
    ) -> Vec<(u32, f32)> {
        let mut out = self.ranked(rows, query, k, filter, params, hidden);
        out.truncate(k);
        out
    }

    /// [`GraphIndex::search_rows`] that checks its own answer against the calibration's reach
    /// (`calibrate::Calibration::beyond_reach`): when the [`calibrate::K`]-th row it found lies
    /// farther out than the calibration's queries had theirs, the query is not one the stored
    /// recall was measured on, and it is searched again at [`escalated_ef`] (the whole beam
    /// reranked). Returns the rows and whether it escalated. In
    /// distribution the check costs a comparison (and, for a first pass shallower than
    /// [`calibrate::K`], the exact distances up to the K-th); sections without a reach (older
    /// records, uncalibrated) never escalate, and neither does a search already as wide.
    pub fn search_escalating(
        &self,
        rows: &dyn RowSource,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &GraphSearchParams,
    ) -> (Vec<(u32, f32)>, bool) {
        let kk = calibrate::K;
        // The K-th row's exact distance is the one the reach bounds: rerank at least K of the beam.
        let checked = GraphSearchParams {
            rerank: if params.rerank == 0 { 0 } else { params.rerank.max(kk as u32) },
            ..params.clone()
        };
        let mut out = self.ranked(rows, query, k, filter, &checked, None);
        let ef = if params.ef == 0 { self.default_ef as u32 } else { params.ef };
        let wide = escalated_ef(ef);
        let escalate = wide > ef && out.get(kk - 1).is_some_and(|r| self.calibration.beyond_reach(r.1));
        if escalate {
            out = self.ranked(rows, query, k, filter, &GraphSearchParams { ef: wide, rerank: 0 }, None);
        }
        out.truncate(k);
        (out, escalate)
    }

    /// The search's reranked candidates (at least `k` when there are as many), sorted by (exact
    /// distance, row).
    fn ranked(
        &self,
        rows: &dyn RowSource,
        query: &[f32],
        k: usize,
        filter: Option<&dyn Fn(u32) -> bool>,
        params: &GraphSearchParams,
        hidden: Option<u32>,
    ) -> Vec<(u32, f32)> {
        // Only the exact fallbacks read every row (a guarded source checks what it hands out).
        let floats = rows.floats();
        if k == 0 || query.len() != self.dim || self.rows == 0 {
            return Vec::new();
        }
        if floats != self.rows * self.dim {
            return exact(rows.all(), self.dim, self.metric, query, k, filter);
        }
        let kern = self.kern;
        // Centred query in the codes' space (see the module docs; `RowEstimator`); a cosine
        // query without a direction is answered exactly.
        let Some(est) = self.row_estimator(query, kern) else {
            return exact(rows.all(), self.dim, self.metric, query, k, filter);
        };
        let ef = if params.ef == 0 { self.default_ef } else { params.ef as usize }.max(k);
        let rerank = if params.rerank == 0 { ef } else { params.rerank as usize }.max(rerank_floor(k));
        let ef = ef.max(rerank);
        let all = |_: u32| true;
        let accept: &dyn Fn(u32) -> bool = match filter {
            Some(f) => f,
            None => &all,
        };
        let picked: Vec<u32> = self.walk(ef, hidden, accept, &est).iter().take(rerank).map(|d| d.1).collect();
        rows.will_read(&picked);
        let mut buf = Vec::new();
        let qn = kern.dot(query, query).sqrt();
        let mut out: Vec<(u32, f32)> = picked
            .iter()
            .map(|&r| (r, kern.distance_with_norm(self.metric, query, qn, rows.row(r as usize, &mut buf))))
            .collect();
        out.sort_unstable_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }

    /// The beam search from the seeds over the codes `est` reads.
    fn walk(
        &self,
        ef: usize,
        hidden: Option<u32>,
        accept: &dyn Fn(u32) -> bool,
        est: &super::RowEstimator<'_>,
    ) -> Vec<Ranked> {
        let nb = &self.bytes[self.off_nb..self.off_codes];
        let (degree, rows) = (self.degree, self.rows as u32);
        let row_bytes = self.link_row_bytes();
        let list = |u: u32| nb.get(u as usize * row_bytes..).unwrap_or(&[]);
        let prefetch = |what: Prefetch, u: u32| match what {
            Prefetch::Code => est.prefetch(u),
            Prefetch::Links => super::super::distance::prefetch(list(u), row_bytes.min(MAX_LINKS_PREFETCH)),
        };
        // One beam per link layout: the unpacking is inlined in the loop, not matched per row.
        match self.links {
            Links::Wide => {
                self.beam_from(ef, hidden, accept, est, |u, out| wide_links(nb, u, degree, out), prefetch)
            }
            Links::Packed { bits, bytes } => self.beam_from(
                ef,
                hidden,
                accept,
                est,
                |u, out| unpack_links(nb, u, degree, (bits, bytes), rows, out),
                prefetch,
            ),
        }
    }

    /// The beam (`beam` module) from the seeds with this thread's scratch.
    fn beam_from(
        &self,
        ef: usize,
        hidden: Option<u32>,
        accept: &dyn Fn(u32) -> bool,
        est: &super::RowEstimator<'_>,
        neighbors: impl FnMut(u32, &mut Vec<u32>),
        prefetch: impl Fn(Prefetch, u32),
    ) -> Vec<Ranked> {
        SCRATCH.with(|cell| {
            let mut v = cell.borrow_mut();
            if v.rows() < self.rows {
                *v = BeamScratch::new(self.rows);
            }
            let state = (&mut *v, hidden);
            // A beam compiled for low-dimensional 8-bit estimates (`LowDim`), else the general one.
            match est.low_dim() {
                Some(low) => beam(self.seeds(), ef, state, |u| low.estimate(u), neighbors, prefetch, accept),
                None => beam(self.seeds(), ef, state, |u| est.estimate(u), neighbors, prefetch, accept),
            }
        })
    }
}

/// Appends row `u`'s neighbours from a u32 links block (versions 1 to 3) to `out`, up to the
/// first unused slot.
#[inline]
fn wide_links(nb: &[u8], u: u32, degree: usize, out: &mut Vec<u32>) {
    let list = nb.get(u as usize * degree * 4..(u as usize + 1) * degree * 4).unwrap_or(&[]);
    for c in list.chunks_exact(4) {
        let w = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        if w == NONE {
            break;
        }
        out.push(w);
    }
}

/// The beam width of a search at `ef` that escalated (`GraphIndex::search_escalating`):
/// [`ESCALATION`] × `ef`, at most [`ESCALATED_EF`], the top rung of both ladders
/// ([`super::EF_LADDER`], [`super::PLANES_LADDER`]). A query beyond the calibration's reach has
/// no measured rung. On the 28-copies set (Debian dev queries far from every row; BENCHMARKS
/// "stop 47") the calibrated ef 24 gave 0.834; escalating to ef 256 gave 0.998 at 1/7.4 of the
/// QPS, to ef 96 (4×) 0.973 at 1/4.5 (1.3× hnswlib's QPS at 0.95 there). An exact scan would
/// guarantee the answer but costs the whole segment (529 QPS there against 42,738 at ef 24).
/// At least [`ESCALATED_MIN_EF`]: the ladders now start lower (ef 22 in stop 49, 10 since stop
/// 50), and 4 × a low pick is barely wider than the rungs the escalation is for (far queries of
/// the near-copies test case, `tests/ann_escalation.rs`: 0.928 at 4 × the stop-49 pick, 0.95
/// needed).
pub fn escalated_ef(ef: u32) -> u32 {
    ef.saturating_mul(ESCALATION).clamp(ESCALATED_MIN_EF, ESCALATED_EF).max(ef)
}

/// The fewest candidates a search for `k` rows re-scores exactly: 2k, but at most
/// [`calibrate::K`] for k ≤ K. The calibration measures every rung as a search for K rows
/// (recall@10), so a rung narrower than 2K is measured at the depth it is served at, and the
/// calibration decides whether it reaches a target; before stop 50 the floor was 2k for every k
/// and held a k = 10 search at a beam of 20 where 8-d uniform and near-copy data need about 10.
/// Searches for more than K rows keep 2k (no rung measures them).
pub fn rerank_floor(k: usize) -> usize {
    if k <= calibrate::K {
        (2 * k).min(calibrate::K)
    } else {
        2 * k
    }
}

/// The narrowest escalated beam: 4 × 24, the lowest rung before stop 49.
pub const ESCALATED_MIN_EF: u32 = 96;

/// How much wider an escalated beam is ([`escalated_ef`]).
pub const ESCALATION: u32 = 4;
/// The widest escalated beam.
pub const ESCALATED_EF: u32 = 256;

/// Most bytes of a neighbour list prefetched (degree 64).
const MAX_LINKS_PREFETCH: usize = 256;

thread_local! {
    static SCRATCH: std::cell::RefCell<BeamScratch> = std::cell::RefCell::new(BeamScratch::new(0));
}
