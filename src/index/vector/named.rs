//! The index section of one named vector attribute (segment kind 23, `storage-format.md` 11.7):
//! the attribute's name, which rows hold it, their vectors (row-major, zeros where absent) and
//! a calibrated graph section over them (the `graph` module's own bytes, kind-20 layout).
//!
//! ```text
//! 0   magic "TPNAMEDV"          8   u16 version (1)       10  u16 metric (0 cosine, 1 euclidean²)
//! 12  u32 name length           16  u32 dim (≥ 1)          20  u32 rows
//! 24  u64 present offset        32  u64 vectors offset     40  u64 graph offset   48 u64 graph length
//! 56  name (UTF-8) … pad to 64 | present: ⌈rows/64⌉ u64 bitmap (bit set = the row holds the
//! attribute) … pad | vectors: rows × dim f32 LE … pad | graph section bytes
//! ```
//!
//! Invariants:
//! - Offsets are section-relative multiples of 64 in increasing order, every block inside the
//!   section; anything else is refused (never a panic, never an allocation from an unchecked
//!   length: the bitmap and vectors are read in place, or the vectors copied once when the
//!   buffer is misaligned).
//! - The graph covers exactly `rows` rows of `dim` dimensions in the stored metric; a search
//!   passes a filter that admits only present rows, so an absent row (zeros) is never returned.
//! - Building is deterministic (the graph builder's own guarantee): equal inputs, equal bytes.

use bytes::Bytes;

use super::distance::Metric;
use super::graph::{GraphIndex, GraphParams};
use super::rows::SliceRows;
use crate::codec::{u32_at, u64_at};
use crate::index::error::IndexSection;
use crate::index::IndexError;

/// Magic of the section.
pub const MAGIC: [u8; 8] = *b"TPNAMEDV";
/// The version this build writes and reads.
pub const VERSION: u16 = 1;
const HEADER_LEN: usize = 56;

fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(IndexSection::Ann, what)
}

fn pad64(n: usize) -> usize {
    n.div_ceil(64) * 64
}

fn metric_code(m: Metric) -> u16 {
    match m {
        Metric::CosineDistance => 0,
        Metric::EuclideanSquared => 1,
    }
}

/// Builds the section of attribute `attr`: `vectors` holds `rows × dim` floats (zeros for rows
/// without the attribute), `present[r]` whether row `r` holds it.
pub fn build(
    attr: &str,
    dim: usize,
    metric: Metric,
    vectors: &[f32],
    present: &[bool],
    params: &GraphParams,
) -> Vec<u8> {
    let rows = present.len();
    debug_assert_eq!(vectors.len(), rows * dim);
    let graph = super::graph::build_over(&SliceRows { vectors, dim }, dim, metric, params);
    let present_at = pad64(HEADER_LEN + attr.len());
    let vectors_at = pad64(present_at + rows.div_ceil(64) * 8);
    let graph_at = pad64(vectors_at + vectors.len() * 4);
    let mut out = Vec::with_capacity(graph_at + graph.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&metric_code(metric).to_le_bytes());
    for n in [attr.len(), dim, rows] {
        out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
    }
    for n in [present_at, vectors_at, graph_at, graph.len()] {
        out.extend_from_slice(&(n as u64).to_le_bytes());
    }
    out.extend_from_slice(attr.as_bytes());
    out.resize(present_at, 0);
    for chunk in present.chunks(64) {
        let word = chunk.iter().enumerate().fold(0u64, |w, (i, p)| w | (u64::from(*p) << i));
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.resize(vectors_at, 0);
    for x in vectors {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.resize(graph_at, 0);
    out.extend_from_slice(&graph);
    out
}

/// The attribute a section indexes, read from its header (None: not such a section).
pub fn attr_of(b: &[u8]) -> Option<&str> {
    if b.get(..8)? != MAGIC {
        return None;
    }
    let n = u32_at(b, 12)? as usize;
    std::str::from_utf8(b.get(HEADER_LEN..HEADER_LEN.checked_add(n)?)?).ok()
}

/// An opened section.
#[derive(Clone)]
pub struct NamedIndex {
    attr: String,
    dim: usize,
    rows: usize,
    metric: Metric,
    bytes: Bytes,
    present: std::ops::Range<usize>,
    vectors: Vectors,
    graph: GraphIndex,
    /// The segment's guard and whole buffer: rows handed out are checked first
    /// (`crate::integrity`; None: unchecked).
    guard: Option<(crate::integrity::ChunkGuard, Bytes)>,
}

#[derive(Clone)]
enum Vectors {
    /// In place, aligned (a byte range of `bytes`).
    Borrowed(std::ops::Range<usize>),
    /// Copied at open (misaligned buffer or big-endian host).
    Owned(std::sync::Arc<[f32]>),
}

impl NamedIndex {
    /// Opens a section (its checksum was verified with the segment).
    pub fn open(bytes: Bytes) -> Result<NamedIndex, IndexError> {
        let b = &bytes[..];
        if b.len() < HEADER_LEN || b[..8] != MAGIC {
            return Err(corrupt("named vector section: bad magic or short header"));
        }
        let version = u32::from(u16::from_le_bytes([b[8], b[9]]));
        if version != u32::from(VERSION) {
            return Err(IndexError::new(
                IndexSection::Ann,
                crate::index::error::IndexErrorKind::Unsupported { version, kind: 0 },
            ));
        }
        let metric = match u16::from_le_bytes([b[10], b[11]]) {
            0 => Metric::CosineDistance,
            1 => Metric::EuclideanSquared,
            _ => return Err(corrupt("named vector section: unknown metric")),
        };
        let attr = attr_of(b).ok_or(corrupt("named vector section: bad name"))?.to_owned();
        let word = |at| u32_at(b, at).map(|v| v as usize).ok_or(corrupt("named vector section: header"));
        let off = |at| {
            u64_at(b, at).and_then(|v| usize::try_from(v).ok()).ok_or(corrupt("named vector section: header"))
        };
        let (dim, rows) = (word(16)?, word(20)?);
        let (present_at, vectors_at, graph_at, graph_len) = (off(24)?, off(32)?, off(40)?, off(48)?);
        let present_len = rows.div_ceil(64) * 8;
        let vectors_len = rows
            .checked_mul(dim)
            .and_then(|n| n.checked_mul(4))
            .ok_or(corrupt("named vector section: size"))?;
        let ordered = dim > 0
            && present_at == pad64(HEADER_LEN + attr.len())
            && vectors_at == pad64(present_at + present_len)
            && graph_at
                == pad64(vectors_at.checked_add(vectors_len).ok_or(corrupt("named vector section: size"))?)
            && graph_at.checked_add(graph_len) == Some(b.len());
        if !ordered {
            return Err(corrupt("named vector section: blocks out of place"));
        }
        let graph = GraphIndex::open_trusted(bytes.slice(graph_at..graph_at + graph_len))?;
        if graph.rows() != rows || graph.dim() != dim || graph.metric() != metric {
            return Err(corrupt("named vector section: graph shape differs"));
        }
        let raw = &b[vectors_at..vectors_at + vectors_len];
        let vectors = if crate::codec::f32_slice(raw).is_some() {
            Vectors::Borrowed(vectors_at..vectors_at + vectors_len)
        } else {
            Vectors::Owned(crate::codec::f32s_le(raw).into())
        };
        let present = present_at..present_at + present_len;
        Ok(NamedIndex { attr, dim, rows, metric, bytes, present, vectors, graph, guard: None })
    }

    /// Check every row handed out from now on with the segment's `guard` over its whole buffer
    /// `file` (the section's bytes must lie inside it; elsewhere they are not checked).
    pub fn guarded(mut self, guard: Option<crate::integrity::ChunkGuard>, file: Bytes) -> NamedIndex {
        self.guard = guard.map(|g| (g, file));
        self
    }

    fn checked<T>(&self, sub: &[T]) -> bool {
        self.guard.as_ref().is_none_or(|(g, file)| crate::integrity::FileGuard::new(file, g).check_slice(sub))
    }

    /// The rows as a search reads them (checked as they are handed out).
    pub fn row_source(&self) -> NamedRows<'_> {
        NamedRows { ix: self }
    }

    /// The attribute indexed.
    pub fn attr(&self) -> &str {
        &self.attr
    }

    /// Its dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Rows covered (the segment's).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The metric the graph was built in.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Whether `row` holds the attribute.
    pub fn present(&self, row: usize) -> bool {
        let bits = &self.bytes[self.present.clone()];
        row < self.rows
            && bits.get(row / 64 * 8..row / 64 * 8 + 8).is_some_and(|w| self.checked(w))
            && u64_at(bits, row / 64 * 8).is_some_and(|w| w & (1 << (row % 64)) != 0)
    }

    /// Every row's vector, row-major (zeros where absent).
    pub fn vectors(&self) -> &[f32] {
        match &self.vectors {
            Vectors::Owned(v) => v,
            // `open` found the range viewable in place (aligned, little-endian host).
            Vectors::Borrowed(r) => crate::codec::f32_slice(&self.bytes[r.clone()]).unwrap_or_default(),
        }
    }

    /// The row's vector, if it holds the attribute.
    pub fn vector(&self, row: usize) -> Option<&[f32]> {
        let v =
            self.present(row).then(|| self.vectors().get(row * self.dim..(row + 1) * self.dim)).flatten()?;
        self.checked(v);
        Some(v)
    }

    /// The graph over the vectors.
    pub fn graph(&self) -> &GraphIndex {
        &self.graph
    }

    /// Heap bytes held besides the segment's buffer.
    pub fn heap_bytes(&self) -> usize {
        self.graph.heap_bytes() + if let Vectors::Owned(v) = &self.vectors { v.len() * 4 } else { 0 }
    }
}

/// A named index's rows as a search reads them: each row checked against the segment's range
/// checksums as it is handed out (a mismatch fails the evaluation's scope, `crate::integrity`).
pub struct NamedRows<'a> {
    ix: &'a NamedIndex,
}

impl crate::index::vector::rows::RowSource for NamedRows<'_> {
    fn row<'a>(&'a self, r: usize, _buf: &'a mut Vec<f32>) -> &'a [f32] {
        let dim = self.ix.dim;
        let v = self.ix.vectors().get(r * dim..(r + 1) * dim).unwrap_or(&[]);
        self.ix.checked(v);
        v
    }

    fn all(&self) -> &[f32] {
        let all = self.ix.vectors();
        self.ix.checked(all);
        all
    }

    fn floats(&self) -> usize {
        self.ix.vectors().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::graph::GraphSearchParams;

    fn sample(rows: usize, dim: usize) -> (Vec<f32>, Vec<bool>) {
        let mut s = 7u64;
        let vectors =
            (0..rows * dim).map(|_| (super::super::splitmix(&mut s) % 1000) as f32 / 100.0).collect();
        let present = (0..rows).map(|r| r % 5 != 3).collect();
        (vectors, present)
    }

    #[test]
    fn a_section_opens_to_what_was_built_and_refuses_damage() {
        let (mut vectors, present) = sample(300, 6);
        for (r, p) in present.iter().enumerate() {
            if !p {
                vectors[r * 6..r * 6 + 6].fill(0.0);
            }
        }
        let params = GraphParams { threads: 1, ..GraphParams::default() };
        let bytes = build("title_vec", 6, Metric::EuclideanSquared, &vectors, &present, &params);
        assert_eq!(bytes, build("title_vec", 6, Metric::EuclideanSquared, &vectors, &present, &params));
        assert_eq!(attr_of(&bytes), Some("title_vec"));
        let ix = NamedIndex::open(Bytes::from(bytes.clone())).unwrap();
        assert_eq!(
            (ix.attr(), ix.dim(), ix.rows(), ix.metric()),
            ("title_vec", 6, 300, Metric::EuclideanSquared)
        );
        assert_eq!(ix.vectors(), &vectors[..]);
        for (r, p) in present.iter().enumerate() {
            assert_eq!(ix.present(r), *p, "row {r}");
        }
        assert_eq!(ix.vector(3), None);
        assert_eq!(ix.vector(4), Some(&vectors[24..30]));
        let q = &vectors[0..6];
        let only_present = |r: u32| ix.present(r as usize);
        let p = GraphSearchParams { ef: 64, rerank: 0 };
        let hits = ix.graph().search(ix.vectors(), q, 3, Some(&only_present), &p);
        assert_eq!(hits[0], (0, 0.0));
        assert!(hits.iter().all(|(r, _)| present[*r as usize]));
        // Truncations, a moved offset, another version: refused, never a panic.
        for cut in [0, 8, HEADER_LEN, bytes.len() / 2, bytes.len() - 1] {
            assert!(NamedIndex::open(Bytes::from(bytes[..cut].to_vec())).is_err(), "cut at {cut}");
        }
        for (at, v) in [(8usize, 2u8), (10, 9), (24, 1), (40, 64), (16, 1)] {
            let mut bad = bytes.clone();
            bad[at] = bad[at].wrapping_add(v);
            assert!(NamedIndex::open(Bytes::from(bad)).is_err(), "byte {at}");
        }
    }
}
