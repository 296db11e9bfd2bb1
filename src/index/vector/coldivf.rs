//! Cold-read IVF section (kind 21): the IVF lists of a segment laid out for ranged reads from the
//! object store, so a query on a node with an empty cache needs one read for the directory and
//! one parallel wave of reads for the probed lists (`storage-format.md` 11.4).
//!
//! Section layout (all integers little-endian):
//!
//! ```text
//! 0   magic "TPIVFCLD"   8 version u32 (=1)   12 metric u8 (0 cosine, 1 euclidean_squared)
//! 13  reserved 3 B (0)   16 dim u32           20 rows u32          24 nlist u32
//! 28  default_nprobe u32 32 head_len u64 (a multiple of 64)        40 reserved 16 B (0)
//! 56  head_crc u32: crc32c of the head bytes [0, 56) ++ [60, head_len)  60 reserved u32 (0)
//! 64  centroids f32 [nlist × dim]      (the kind-16 section's centroids; cosine: unit length)
//!     offsets   u32 [nlist + 1]        list c holds list positions offsets[c] .. offsets[c+1]
//!     list_crcs u32 [nlist]            crc32c of each list block
//!     zero padding up to head_len
//! head_len + (4 + 4·dim)·offsets[c]: list block c, n = offsets[c+1] − offsets[c] rows:
//!     rows    u32 [n]                  segment rows, ascending
//!     vectors f32 [n × dim]            the rows' vectors exactly as in the vectors section
//! ```
//!
//! Invariants:
//! - The head (`[0, head_len)`) and every list block verify on their own (head crc, per-list
//!   crc), so a reader that fetched only those byte ranges never uses unverified bytes.
//! - The lists are the kind-16 section's lists (same centroids, same assignment, same order):
//!   [`build`] derives this section from an opened [`AnnIndex`] and the segment's vectors, with
//!   no clustering of its own, so the two never disagree.
//! - Distances are exact f32 over the stored vectors (no quantization): a cold search returns the
//!   same distances as an exhaustive search over the probed lists.
//! - `default_nprobe` is what the kind-16 section's calibration measured for the default target
//!   recall, or `nlist` when no measured effort reached it: on data where IVF cannot reach the
//!   target cheaply, a cold read probes every list, which is the exact search.
//! - Parsing checks magic, version, lengths with checked arithmetic, monotone offsets ending at
//!   `rows` and finite centroids; bad bytes give [`IndexError`], never a panic.

use std::ops::Range;

use super::ann::{
    checksum, corrupt, decode_f32, decode_u32, metric_code, metric_from_code, rd_u32, rd_u64, unsupported,
    AnnIndex,
};
use super::distance::{kernels, Metric};
use super::rows::{RowSource, SliceRows};
use crate::index::IndexError;

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPIVFCLD";
/// Current section version.
pub const VERSION: u32 = 1;
const FIXED_HEADER: usize = 64;
const HEAD_CRC_AT: usize = 56;

fn head_crc(head: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&head[..HEAD_CRC_AT]), &head[HEAD_CRC_AT + 4..])
}

/// Length of the head for a shape (None on overflow).
fn head_len_for(nlist: usize, dim: usize) -> Option<usize> {
    let centroids = nlist.checked_mul(dim)?.checked_mul(4)?;
    let tables = nlist.checked_mul(8)?.checked_add(4)?;
    let raw = FIXED_HEADER.checked_add(centroids)?.checked_add(tables)?;
    raw.checked_next_multiple_of(64)
}

/// Builds the section from the segment's ANN index and its vectors (rows × dim, row order).
/// Returns None when the index does not match the vectors (the caller then writes no section).
pub fn build(ann: &AnnIndex<'_>, vectors: &[f32], dim: usize) -> Option<Vec<u8>> {
    build_over(ann, &SliceRows { vectors, dim }, dim)
}

/// [`build`] over `rows`: the lists' rows are read in list order through `rows.row` (scattered
/// reads; see `ann::build_over`).
pub fn build_over(ann: &AnnIndex<'_>, rows_in: &dyn RowSource, dim: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    write_over(ann, rows_in, dim, &mut |piece| out.extend_from_slice(piece))?;
    Some(out)
}

/// [`build_over`] handed to `out` piece by piece (the head, then one list at a time), so the
/// section is never held whole: it holds every vector again, 1.5 GB at 1M × 384. The head
/// carries every list's checksum, so a first pass reads the lists for their checksums and a
/// second writes them (the rows are read twice, by positioned reads). Returns None, having
/// written nothing, when the index does not match the vectors.
pub fn write_over(
    ann: &AnnIndex<'_>,
    rows_in: &dyn RowSource,
    dim: usize,
    out: &mut dyn FnMut(&[u8]),
) -> Option<()> {
    let (centroids, offsets, row_ids) = ann.directory();
    let (nlist, rows) = (ann.nlist(), ann.rows());
    if ann.dim() != dim || dim == 0 || rows_in.all().len() != rows.checked_mul(dim)? || row_ids.len() != rows
    {
        return None;
    }
    let head_len = head_len_for(nlist, dim)?;
    let mut head = vec![0u8; FIXED_HEADER];
    head[0..8].copy_from_slice(&MAGIC);
    head[8..12].copy_from_slice(&VERSION.to_le_bytes());
    head[12] = metric_code(ann.metric());
    head[16..20].copy_from_slice(&u32::try_from(dim).ok()?.to_le_bytes());
    head[20..24].copy_from_slice(&u32::try_from(rows).ok()?.to_le_bytes());
    head[24..28].copy_from_slice(&u32::try_from(nlist).ok()?.to_le_bytes());
    head[28..32].copy_from_slice(&u32::try_from(cold_nprobe(ann)).ok()?.to_le_bytes());
    head[32..40].copy_from_slice(&(head_len as u64).to_le_bytes());
    head.extend(centroids.iter().flat_map(|v| v.to_le_bytes()));
    head.extend(offsets.iter().flat_map(|v| v.to_le_bytes()));
    let crcs_at = head.len();
    head.resize(head_len, 0);
    let (mut list, mut buf) = (Vec::new(), Vec::new());
    let mut list_block = |c: usize, list: &mut Vec<u8>| {
        list.clear();
        let ids = &row_ids[offsets[c] as usize..offsets[c + 1] as usize];
        list.extend(ids.iter().flat_map(|row| row.to_le_bytes()));
        for &row in ids {
            list.extend(rows_in.row(row as usize, &mut buf).iter().flat_map(|v| v.to_le_bytes()));
        }
    };
    for c in 0..nlist {
        list_block(c, &mut list);
        let at = crcs_at + 4 * c;
        head[at..at + 4].copy_from_slice(&crc32c::crc32c(&list).to_le_bytes());
    }
    let crc = head_crc(&head);
    head[HEAD_CRC_AT..HEAD_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    out(&head);
    drop(head);
    for c in 0..nlist {
        list_block(c, &mut list);
        out(&list);
    }
    Some(())
}

/// The lists a cold read probes first: the cheapest calibrated nprobe that reached the default
/// target recall on the segment's own rows, or every list when none did (a cold read of every
/// list is an exact search: the lists hold the rows' f32 vectors), or the stored default for an
/// uncalibrated section.
fn cold_nprobe(ann: &AnnIndex<'_>) -> usize {
    match ann.effort(crate::index::vector::calibrate::DEFAULT_TARGET) {
        Some((nprobe, _)) => (nprobe as usize).clamp(1, ann.nlist().max(1)),
        None => ann.nlist(),
    }
}

/// The parsed, verified head of a cold IVF section.
#[derive(Debug, Clone)]
pub struct ColdHead {
    metric: Metric,
    dim: usize,
    rows: usize,
    nlist: usize,
    default_nprobe: usize,
    head_len: usize,
    centroids: Vec<f32>,
    offsets: Vec<u32>,
    list_crcs: Vec<u32>,
}

/// One verified list block: its segment rows and their vectors.
#[derive(Debug, Clone)]
pub struct ColdList {
    /// Segment rows, ascending.
    pub rows: Vec<u32>,
    /// Their vectors, rows.len() × dim.
    pub vectors: Vec<f32>,
}

impl ColdHead {
    /// Parses and verifies a head: `bytes` must start at the section start and hold at least the
    /// head (`head_len` from the manifest; extra bytes are ignored).
    pub fn parse(bytes: &[u8]) -> Result<ColdHead, IndexError> {
        if bytes.len() < FIXED_HEADER {
            return Err(corrupt("cold ivf head shorter than its header"));
        }
        if bytes[0..8] != MAGIC {
            return Err(corrupt("bad cold ivf magic"));
        }
        let version = rd_u32(bytes, 8)?;
        if version != VERSION {
            return Err(unsupported(version, 0));
        }
        let metric = metric_from_code(bytes[12])?;
        let dim = rd_u32(bytes, 16)? as usize;
        let rows = rd_u32(bytes, 20)? as usize;
        let nlist = rd_u32(bytes, 24)? as usize;
        let default_nprobe = rd_u32(bytes, 28)? as usize;
        let head_len = usize::try_from(rd_u64(bytes, 32)?).map_err(|_| corrupt("head length"))?;
        if dim == 0 || head_len_for(nlist, dim) != Some(head_len) {
            return Err(corrupt("cold ivf head length does not match its shape"));
        }
        let head = bytes.get(..head_len).ok_or(corrupt("cold ivf head truncated"))?;
        if rd_u32(head, HEAD_CRC_AT)? != head_crc(head) {
            return Err(checksum());
        }
        let c_end = FIXED_HEADER + nlist * dim * 4;
        let o_end = c_end + (nlist + 1) * 4;
        let centroids = decode_f32(&head[FIXED_HEADER..c_end]);
        let offsets = decode_u32(&head[c_end..o_end]);
        let list_crcs = decode_u32(&head[o_end..o_end + nlist * 4]);
        if offsets.first() != Some(&0)
            || offsets.last().map(|o| *o as usize) != Some(rows)
            || offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err(corrupt("cold ivf list offsets"));
        }
        if centroids.iter().any(|v| !v.is_finite()) || (nlist > 0 && default_nprobe == 0) {
            return Err(corrupt("cold ivf centroids or nprobe"));
        }
        Ok(ColdHead { metric, dim, rows, nlist, default_nprobe, head_len, centroids, offsets, list_crcs })
    }

    /// Distance metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }
    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Rows covered (the segment's rows).
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of lists.
    pub fn nlist(&self) -> usize {
        self.nlist
    }
    /// Lists probed by default (the same as the kind-16 index).
    pub fn default_nprobe(&self) -> usize {
        self.default_nprobe
    }
    /// Length of the head (where the list blocks start).
    pub fn head_len(&self) -> u64 {
        self.head_len as u64
    }
    /// Rows in list `c`.
    pub fn list_len(&self, c: usize) -> usize {
        (self.offsets[c + 1] - self.offsets[c]) as usize
    }

    /// The `nprobe` lists nearest to `query` (0 = the default), best first, ties by list.
    /// Empty for a query of the wrong dimension.
    pub fn probe(&self, query: &[f32], nprobe: usize) -> Vec<usize> {
        if query.len() != self.dim || self.nlist == 0 {
            return Vec::new();
        }
        let kern = kernels();
        let q: Vec<f32> = match self.metric {
            Metric::CosineDistance => {
                let n = kern.dot(query, query).sqrt();
                if !(n > 0.0 && n.is_finite()) {
                    return (0..self.nlist).collect(); // no direction: every list
                }
                query.iter().map(|v| v / n).collect()
            }
            Metric::EuclideanSquared => query.to_vec(),
        };
        let mut order: Vec<(f32, usize)> = self
            .centroids
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(c, cent)| {
                let s = match self.metric {
                    Metric::CosineDistance => -kern.dot(&q, cent),
                    Metric::EuclideanSquared => kern.euclidean_squared(&q, cent),
                };
                (s, c)
            })
            .collect();
        order.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let n = if nprobe == 0 { self.default_nprobe } else { nprobe }.clamp(1, self.nlist);
        order.into_iter().take(n).map(|(_, c)| c).collect()
    }

    /// Byte range of list block `c` within the section.
    pub fn list_range(&self, c: usize) -> Range<u64> {
        let per_row = 4 + 4 * self.dim as u64;
        let start = self.head_len as u64 + per_row * u64::from(self.offsets[c]);
        start..start + per_row * self.list_len(c) as u64
    }

    /// Verifies and decodes list block `c` from exactly the bytes of [`ColdHead::list_range`].
    pub fn open_list(&self, c: usize, block: &[u8]) -> Result<ColdList, IndexError> {
        let want = self.list_range(c);
        if block.len() as u64 != want.end - want.start {
            return Err(corrupt("cold ivf list block has the wrong length"));
        }
        if crc32c::crc32c(block) != self.list_crcs[c] {
            return Err(checksum());
        }
        let n = self.list_len(c);
        let rows = decode_u32(&block[..4 * n]);
        if rows.windows(2).any(|w| w[0] >= w[1]) || rows.last().is_some_and(|r| *r as usize >= self.rows) {
            return Err(corrupt("cold ivf list rows"));
        }
        Ok(ColdList { rows, vectors: decode_f32(&block[4 * n..]) })
    }
}

impl ColdList {
    /// Exact distances of the rows for which `keep(row)` holds: (row, distance).
    pub fn distances(&self, metric: Metric, query: &[f32], keep: impl Fn(u32) -> bool) -> Vec<(u32, f32)> {
        let dim = query.len();
        if dim == 0 || self.vectors.len() != self.rows.len() * dim {
            return Vec::new();
        }
        let kern = kernels();
        self.rows
            .iter()
            .zip(self.vectors.chunks_exact(dim))
            .filter(|(r, _)| keep(**r))
            .map(|(r, x)| (*r, kern.distance(metric, query, x)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::vector::ann::{self, AnnParams};
    use rand::{Rng, SeedableRng};

    fn data(seed: u64, n: usize, dim: usize) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    fn built(n: usize, dim: usize, metric: Metric) -> (Vec<f32>, Vec<u8>, Vec<u8>) {
        let v = data(7, n, dim);
        let params = AnnParams { nlist: 16, ..AnnParams::default() };
        let ann_bytes = ann::build(&v, dim, metric, &params);
        let ix = AnnIndex::open(&ann_bytes).unwrap();
        let cold = build(&ix, &v, dim).unwrap();
        (v, ann_bytes, cold)
    }

    /// Invariant: the streamed section is the built one, handed over as the head and then one
    /// piece per list (never whole); a mismatched index hands over nothing.
    #[test]
    fn the_section_is_written_list_by_list_as_built() {
        let (dim, metric) = (24, Metric::EuclideanSquared);
        let (v, ann_bytes, cold) = built(600, dim, metric);
        let ix = AnnIndex::open(&ann_bytes).unwrap();
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        write_over(&ix, &SliceRows { vectors: &v, dim }, dim, &mut |p| pieces.push(p.to_vec())).unwrap();
        assert_eq!(pieces.len(), 1 + ix.nlist());
        let h = ColdHead::parse(&pieces[0]).unwrap();
        for c in 0..ix.nlist() {
            let r = h.list_range(c);
            assert_eq!(r.end - r.start, pieces[1 + c].len() as u64, "list {c}");
            h.open_list(c, &pieces[1 + c]).unwrap();
        }
        assert_eq!(pieces.concat(), cold);
        let mut handed = 0;
        assert!(
            write_over(&ix, &SliceRows { vectors: &v[..dim * 10], dim }, dim, &mut |_| handed += 1).is_none()
        );
        assert_eq!(handed, 0);
    }

    /// Invariant: a search over every list through ranged reads equals exact search.
    #[test]
    fn all_lists_give_the_exact_answer_for_both_metrics() {
        for metric in [Metric::CosineDistance, Metric::EuclideanSquared] {
            let (v, _, cold) = built(600, 24, metric);
            let h = ColdHead::parse(&cold).unwrap();
            assert_eq!((h.rows(), h.dim(), h.nlist()), (600, 24, 16));
            let q = data(99, 1, 24);
            let mut got = Vec::new();
            for c in h.probe(&q, h.nlist()) {
                let r = h.list_range(c);
                let list = h.open_list(c, &cold[r.start as usize..r.end as usize]).unwrap();
                got.extend(list.distances(metric, &q, |_| true));
            }
            assert_eq!(got.len(), 600, "every row is in exactly one list");
            got.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let want = ann::exact(&v, 24, metric, &q, 10, None);
            let got_rows: Vec<u32> = got.iter().take(10).map(|x| x.0).collect();
            let want_rows: Vec<u32> = want.iter().map(|x| x.0).collect();
            assert_eq!(got_rows, want_rows);
            for ((_, a), (_, b)) in got.iter().zip(&want) {
                assert!((a - b).abs() < 1e-5);
            }
        }
    }

    /// Invariant: the lists are the kind-16 lists (same rows per list, same order).
    #[test]
    fn lists_match_the_ann_directory() {
        let (_, ann_bytes, cold) = built(500, 8, Metric::CosineDistance);
        let ix = AnnIndex::open(&ann_bytes).unwrap();
        let (_, offsets, row_ids) = ix.directory();
        let h = ColdHead::parse(&cold).unwrap();
        for c in 0..h.nlist() {
            let r = h.list_range(c);
            let list = h.open_list(c, &cold[r.start as usize..r.end as usize]).unwrap();
            assert_eq!(list.rows, row_ids[offsets[c] as usize..offsets[c + 1] as usize]);
        }
        assert_eq!(h.list_range(h.nlist() - 1).end as usize, cold.len());
    }

    /// Invariant: unverified bytes are never used: any flipped bit of the head or of a list is
    /// an error, not a wrong answer.
    #[test]
    fn flipped_bits_are_refused() {
        let (_, _, cold) = built(300, 4, Metric::EuclideanSquared);
        let h = ColdHead::parse(&cold).unwrap();
        let head_len = h.list_range(0).start as usize;
        for i in (0..head_len).step_by(7) {
            let mut b = cold.clone();
            b[i] ^= 0x10;
            assert!(ColdHead::parse(&b).is_err(), "head byte {i}");
        }
        let r = h.list_range(3);
        let mut block = cold[r.start as usize..r.end as usize].to_vec();
        for i in (0..block.len()).step_by(5) {
            block[i] ^= 1;
            assert!(h.open_list(3, &block).is_err(), "list byte {i}");
            block[i] ^= 1;
        }
        assert!(h.open_list(3, &block[1..]).is_err());
        for cut in 0..head_len {
            assert!(ColdHead::parse(&cold[..cut]).is_err());
        }
    }

    /// Invariant: a cold read probes the nprobe the IVF calibrated for the default target, or
    /// every list (the exact search) where no calibrated nprobe reached it.
    #[test]
    fn cold_reads_probe_the_calibrated_lists_or_every_list() {
        use crate::index::vector::calibrate::DEFAULT_TARGET;
        use crate::index::vector::synth::{generate, Kind};
        for kind in [Kind::Gaussian, Kind::Clustered] {
            let (n, dim) = (2000, 48);
            let v = generate(kind, n, dim, 11);
            let bytes = ann::build(&v, dim, Metric::CosineDistance, &AnnParams::default());
            let ix = AnnIndex::open(&bytes).unwrap();
            assert!(ix.calibration().is_calibrated());
            let head = ColdHead::parse(&build(&ix, &v, dim).unwrap()).unwrap();
            let want = ix.effort(DEFAULT_TARGET).map_or(ix.nlist(), |(nprobe, _)| nprobe as usize);
            assert_eq!(head.default_nprobe(), want, "{}", kind.name());
        }
    }
}
