//! The MUVERA section of one multi-vector attribute of one segment (segment section kind
//! 30, one per `late_interaction` attribute): every row's fixed dimensional encoding
//! (`fde.rs`), scanned by inner product with the query's encoding for candidates that the
//! query layer reranks by exact late-interaction distance.
//!
//! Section format, all integers little-endian:
//! ```text
//! +0  magic "TPMUVERA" | +8 version u32 (=1) | +12 attr_len u32 (1..=4096)
//! +16 rows u32 | +20 dim u32 (1..=MAX_VECTOR_DIM) | +24 k_sim u32 (1..=8) | +28 reps u32 (1..=64)
//! +32 d_proj u32 (1..=dim) | +36 metric u32 (0 cosine_distance, 1 euclidean_squared)
//! +40 seed u64
//! +48 attr name (attr_len bytes, UTF-8), zero-padded to a multiple of 4
//!     present bitmap (ceil(rows / 8) bytes, bit r % 8 of byte r / 8: row r has the
//!     attribute), zero-padded to a multiple of 4
//!     encodings (rows × reps · 2^k_sim · d_proj f32; zeros for absent rows)
//!     crc32c u32 of every byte before it
//! ```
//!
//! Invariants: [`MuveraIndex::open`] checks magic, version, crc, every bound and the exact
//! length, so reading never panics on bad bytes; the section covers every row of its
//! segment in row order; the parameters and seed are stored, so a query rebuilds the
//! encoder the section was built with whatever the current defaults are.

use crate::codec::{Reader, Writer};
use crate::index::error::{IndexError, IndexErrorKind, IndexSection};
use crate::index::vector::distance::{kernels, Metric};

use super::fde::{Fde, FdeParams, MAX_K_SIM, MAX_REPS};

/// Section magic.
pub const MAGIC: [u8; 8] = *b"TPMUVERA";
const VERSION: u32 = 1;
const HEADER_LEN: usize = 48;
const MAX_ATTR_LEN: usize = 4096;

fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(IndexSection::Muvera, what)
}

fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Builds the section of `attr` over `rows` rows from `(row, vectors)` (rows increasing).
pub fn build<'d>(
    attr: &str,
    rows: usize,
    metric: Metric,
    p: FdeParams,
    docs: impl IntoIterator<Item = (u32, &'d [Vec<f32>])>,
) -> Vec<u8> {
    let fde = Fde::new(p);
    let (fd, bitmap_len) = (p.fde_dim(), pad4(rows.div_ceil(8)));
    let mut present = vec![0u8; bitmap_len];
    let mut enc = vec![0.0f32; rows * fd];
    for (row, vs) in docs {
        let r = row as usize;
        if r < rows {
            present[r / 8] |= 1 << (r % 8);
            enc[r * fd..][..fd].copy_from_slice(&fde.document(metric, vs));
        }
    }
    let u32_of = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut w = Writer::with_capacity(HEADER_LEN + pad4(attr.len()) + bitmap_len + enc.len() * 4 + 4);
    w.bytes(&MAGIC);
    for v in [VERSION, u32_of(attr.len()), u32_of(rows), u32_of(p.dim), p.k_sim, p.reps, u32_of(p.d_proj)] {
        w.u32(v);
    }
    w.u32(u32::from(metric == Metric::EuclideanSquared));
    w.u64(p.seed);
    w.bytes(attr.as_bytes());
    w.bytes(&[0; 3][..pad4(attr.len()) - attr.len()]);
    w.bytes(&present);
    for x in &enc {
        w.f32(*x);
    }
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);
    w.into_inner()
}

/// An opened section.
pub struct MuveraIndex<'a> {
    /// The attribute it indexes.
    pub attr: &'a str,
    /// Rows covered.
    pub rows: usize,
    /// The metric it was built for.
    pub metric: Metric,
    params: FdeParams,
    present: &'a [u8],
    enc: &'a [u8],
}

impl<'a> MuveraIndex<'a> {
    /// Opens `bytes`, checking everything (see the module doc).
    pub fn open(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Self::open_with(bytes, true)
    }

    /// Opens `bytes` without the crc check (the segment's section table already verified
    /// the section's crc32c; also lets a fuzzer reach the structural checks).
    pub fn open_trusted(bytes: &'a [u8]) -> Result<Self, IndexError> {
        Self::open_with(bytes, false)
    }

    fn open_with(bytes: &'a [u8], check_crc: bool) -> Result<Self, IndexError> {
        let body =
            bytes.len().checked_sub(4).filter(|b| *b >= HEADER_LEN).ok_or_else(|| corrupt("truncated"))?;
        if bytes.get(..8) != Some(&MAGIC[..]) {
            return Err(corrupt("bad magic"));
        }
        let mut r = Reader::new(&bytes[8..body]);
        let mut u = || r.u32("muvera header").map_err(|_| corrupt("truncated header"));
        let version = u()?;
        if version != VERSION {
            return Err(IndexError::new(
                IndexSection::Muvera,
                IndexErrorKind::Unsupported { version, kind: 0 },
            ));
        }
        let [attr_len, rows, dim, k_sim, reps, d_proj, metric] = [u()?, u()?, u()?, u()?, u()?, u()?, u()?];
        let seed = r.u64("seed").map_err(|_| corrupt("truncated header"))?;
        let (attr_len, rows, dim, d_proj) = (attr_len as usize, rows as usize, dim as usize, d_proj as usize);
        let ok = (1..=MAX_ATTR_LEN).contains(&attr_len)
            && (1..=crate::model::MAX_VECTOR_DIM).contains(&dim)
            && (1..=MAX_K_SIM).contains(&k_sim)
            && (1..=MAX_REPS).contains(&reps)
            && (1..=dim).contains(&d_proj)
            && metric <= 1;
        if !ok {
            return Err(corrupt("parameter out of range"));
        }
        let params = FdeParams { dim, k_sim, reps, d_proj, seed };
        let bitmap_at = HEADER_LEN + pad4(attr_len);
        let enc_at = bitmap_at + pad4(rows.div_ceil(8));
        let enc_len = rows.checked_mul(params.fde_dim()).and_then(|n| n.checked_mul(4));
        if enc_len.and_then(|n| n.checked_add(enc_at)) != Some(body) {
            return Err(corrupt("length does not match the header"));
        }
        if check_crc
            && crc32c::crc32c(&bytes[..body])
                != u32::from_le_bytes([bytes[body], bytes[body + 1], bytes[body + 2], bytes[body + 3]])
        {
            return Err(IndexError::new(IndexSection::Muvera, IndexErrorKind::Checksum));
        }
        let attr = std::str::from_utf8(&bytes[HEADER_LEN..HEADER_LEN + attr_len])
            .map_err(|_| corrupt("attr name"))?;
        let metric = if metric == 0 { Metric::CosineDistance } else { Metric::EuclideanSquared };
        Ok(MuveraIndex {
            attr,
            rows,
            metric,
            params,
            present: &bytes[bitmap_at..enc_at],
            enc: &bytes[enc_at..body],
        })
    }

    /// The encoder parameters it was built with.
    pub fn params(&self) -> FdeParams {
        self.params
    }

    /// Whether `row` has the attribute.
    pub fn has(&self, row: usize) -> bool {
        row < self.rows && self.present[row / 8] & (1 << (row % 8)) != 0
    }

    /// The `depth` rows with the largest encoding inner product with `queries`' encoding
    /// among those `keep` accepts, best first (ties by row).
    pub fn candidates(&self, queries: &[Vec<f32>], depth: usize, keep: impl Fn(usize) -> bool) -> Vec<usize> {
        let q = Fde::new(self.params).query(self.metric, queries);
        let fd = self.params.fde_dim();
        let k = kernels();
        // Read in place when the mapping allows it (aligned, little-endian host), else copied.
        let direct = crate::codec::f32_slice(self.enc);
        let mut row_buf = vec![0.0f32; fd];
        let mut scored: Vec<(f32, usize)> = Vec::new();
        for row in (0..self.rows).filter(|r| self.has(*r) && keep(*r)) {
            let enc = match direct {
                Some(all) => &all[row * fd..][..fd],
                None => {
                    let b = &self.enc[row * fd * 4..][..fd * 4];
                    for (x, c) in row_buf.iter_mut().zip(b.chunks_exact(4)) {
                        *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                    &row_buf
                }
            };
            scored.push((k.dot(&q, enc), row));
        }
        let by = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if scored.len() > depth {
            scored.select_nth_unstable_by(depth, by);
            scored.truncate(depth);
        }
        scored.sort_by(by);
        scored.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let docs = [vec![vec![1.0, 0.0, 0.0]], vec![vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 1.0]]];
        let rows = [(0u32, docs[0].as_slice()), (2, docs[1].as_slice())];
        build("tok", 3, Metric::CosineDistance, FdeParams::defaults(3), rows)
    }

    #[test]
    fn opens_what_it_builds_and_finds_the_nearest_set() {
        let b = sample();
        let ix = MuveraIndex::open(&b).unwrap();
        assert_eq!((ix.attr, ix.rows, ix.has(0), ix.has(1), ix.has(2)), ("tok", 3, true, false, true));
        assert_eq!(ix.candidates(&[vec![0.0, 0.9, 0.1]], 1, |_| true), vec![2]);
        assert_eq!(ix.candidates(&[vec![1.0, 0.1, 0.0]], 5, |_| true), vec![0, 2]);
        assert_eq!(ix.candidates(&[vec![1.0, 0.1, 0.0]], 5, |r| r != 0), vec![2]);
    }

    #[test]
    fn every_corruption_is_refused() {
        let b = sample();
        for at in 0..b.len() {
            let mut bad = b.clone();
            bad[at] ^= 0x40;
            assert!(MuveraIndex::open(&bad).is_err(), "flipped byte {at}");
        }
        for n in 0..b.len() {
            assert!(MuveraIndex::open(&b[..n]).is_err(), "prefix {n}");
        }
    }
}
