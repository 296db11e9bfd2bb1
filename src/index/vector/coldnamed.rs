//! The cold-read IVF of one named vector attribute (segment kind 31, `storage-format.md` 11.8):
//! a short prefix naming the attribute, then a kind-21 cold IVF section (`coldivf` layout, its
//! own head and list checksums) over the attribute's vectors, so a node with an empty cache
//! answers `[attr, "ANN", ..]` by ranged reads as it answers `vector`'s.
//!
//! ```text
//! 0   magic "TPNCOLDV"   8  u32 version (1)   12 u32 prefix length P (a multiple of 64)
//! 16  u32 name length    20 u32 prefix crc: crc32c of [0, 20) ++ [24, P)
//! 24  name (UTF-8) … zero padding up to P
//! P   the cold IVF section of the attribute (coldivf layout; its list rows are segment rows)
//! ```
//!
//! Invariants:
//! - Written only for a segment where every row holds the attribute (as `vector`'s kind 21
//!   needs every row to hold a vector): a cold reader fetches no presence bitmap, and a list
//!   row is a segment row.
//! - The prefix verifies on its own (its crc), the IVF head and lists on theirs: a reader that
//!   fetched `[0, P + head_len)` and some list blocks never uses an unverified byte. The
//!   manifest's `head` for the section is `P + head_len`.
//! - The IVF is built (k-means, calibration of its default nprobe) over the attribute's own
//!   vectors in the attribute's pinned metric, deterministically: equal inputs, equal bytes.
//! - Parsing checks magic, version, lengths with checked arithmetic and UTF-8; bad bytes give
//!   [`IndexError`], never a panic.

use super::ann::{AnnIndex, AnnParams};
use super::coldivf::ColdHead;
use super::distance::Metric;
use super::rows::SliceRows;
use crate::codec::u32_at;
use crate::index::error::IndexSection;
use crate::index::IndexError;

/// Magic of the section.
pub const MAGIC: [u8; 8] = *b"TPNCOLDV";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;
const NAME_AT: usize = 24;
const CRC_AT: usize = 20;

fn corrupt(what: &'static str) -> IndexError {
    IndexError::corrupt(IndexSection::Ann, what)
}

fn prefix_crc(prefix: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&prefix[..CRC_AT]), &prefix[CRC_AT + 4..])
}

/// Builds the section of attribute `attr` over `vectors` (rows × dim, every row holding the
/// attribute) in `metric`. None when the IVF could not be laid out (then no section).
pub fn build(attr: &str, dim: usize, metric: Metric, vectors: &[f32], params: &AnnParams) -> Option<Vec<u8>> {
    let rows = SliceRows { vectors, dim };
    let ann = super::ann::build_over(&rows, dim, metric, params);
    let ix = AnnIndex::open_trusted(&ann).ok()?;
    let body = super::coldivf::build_over(&ix, &rows, dim)?;
    let mut out = prefix(attr)?;
    out.extend_from_slice(&body);
    Some(out)
}

/// The prefix naming `attr` (None: a name too long for a u32 length).
fn prefix(attr: &str) -> Option<Vec<u8>> {
    let len = NAME_AT.checked_add(attr.len())?.checked_next_multiple_of(64)?;
    let mut p = Vec::with_capacity(len);
    p.extend_from_slice(&MAGIC);
    p.extend_from_slice(&VERSION.to_le_bytes());
    p.extend_from_slice(&u32::try_from(len).ok()?.to_le_bytes());
    p.extend_from_slice(&u32::try_from(attr.len()).ok()?.to_le_bytes());
    p.extend_from_slice(&[0; 4]);
    p.extend_from_slice(attr.as_bytes());
    p.resize(len, 0);
    let crc = prefix_crc(&p);
    p[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Some(p)
}

/// A parsed, verified section start: the attribute and the cold IVF head after the prefix.
#[derive(Debug, Clone)]
pub struct NamedColdHead {
    attr: String,
    prefix_len: usize,
    head: ColdHead,
}

impl NamedColdHead {
    /// Parses and verifies the prefix and the IVF head: `bytes` start at the section start and
    /// hold at least `P + head_len` bytes (extra bytes are ignored).
    pub fn parse(bytes: &[u8]) -> Result<NamedColdHead, IndexError> {
        let (attr, prefix_len) = parse_prefix(bytes)?;
        let head = ColdHead::parse(&bytes[prefix_len..])?;
        Ok(NamedColdHead { attr: attr.to_owned(), prefix_len, head })
    }

    /// The attribute indexed.
    pub fn attr(&self) -> &str {
        &self.attr
    }

    /// Where the IVF section starts, relative to this section.
    pub fn ivf_at(&self) -> u64 {
        self.prefix_len as u64
    }

    /// The IVF head.
    pub fn ivf(&self) -> &ColdHead {
        &self.head
    }

    /// Bytes a reader fetches to parse this: the prefix and the IVF head (the manifest's `head`).
    pub fn head_len(&self) -> u64 {
        self.prefix_len as u64 + self.head.head_len()
    }

    /// Splits into the attribute, the IVF's offset in the section and its head.
    pub fn into_parts(self) -> (String, u64, ColdHead) {
        (self.attr, self.prefix_len as u64, self.head)
    }
}

/// The attribute and prefix length of a section, verified (magic, version, crc, UTF-8).
fn parse_prefix(bytes: &[u8]) -> Result<(&str, usize), IndexError> {
    if bytes.get(..8) != Some(&MAGIC[..]) {
        return Err(corrupt("bad named cold ivf magic"));
    }
    let field = |at| u32_at(bytes, at).map(|v| v as usize).ok_or(corrupt("named cold ivf prefix truncated"));
    let version = field(8)?;
    if version != VERSION as usize {
        return Err(IndexError::new(
            IndexSection::Ann,
            crate::index::error::IndexErrorKind::Unsupported { version: version as u32, kind: 0 },
        ));
    }
    let (len, name_len) = (field(12)?, field(16)?);
    let name_end = NAME_AT.checked_add(name_len).ok_or(corrupt("named cold ivf name length"))?;
    if !len.is_multiple_of(64) || name_end > len {
        return Err(corrupt("named cold ivf prefix length"));
    }
    let prefix = bytes.get(..len).ok_or(corrupt("named cold ivf prefix truncated"))?;
    if field(CRC_AT)? as u32 != prefix_crc(prefix) {
        return Err(corrupt("named cold ivf prefix does not match its checksum"));
    }
    let name = std::str::from_utf8(&prefix[NAME_AT..name_end]).map_err(|_| corrupt("named cold ivf name"))?;
    Ok((name, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(rows: usize, dim: usize) -> Vec<f32> {
        let mut s = 7u64;
        (0..rows * dim)
            .map(|i| (i / dim % 5) as f32 + (super::super::splitmix(&mut s) % 1000) as f32 / 4000.0)
            .collect()
    }

    #[test]
    fn a_section_names_its_attribute_and_reads_back_its_lists() {
        let (rows, dim) = (1500, 8);
        let v = blobs(rows, dim);
        let bytes = build("title_vec", dim, Metric::EuclideanSquared, &v, &AnnParams::default()).unwrap();
        let h = NamedColdHead::parse(&bytes).unwrap();
        assert_eq!(h.attr(), "title_vec");
        assert_eq!(h.ivf_at(), 64);
        let ivf = h.ivf();
        assert_eq!((ivf.rows(), ivf.dim(), ivf.metric()), (rows, dim, Metric::EuclideanSquared));
        let mut seen = vec![false; rows];
        for c in 0..ivf.nlist() {
            let r = ivf.list_range(c);
            let at = (h.ivf_at() + r.start) as usize..(h.ivf_at() + r.end) as usize;
            let list = ivf.open_list(c, &bytes[at]).unwrap();
            for (row, x) in list.rows.iter().zip(list.vectors.chunks_exact(dim)) {
                assert_eq!(x, &v[*row as usize * dim..(*row as usize + 1) * dim]);
                seen[*row as usize] = true;
            }
        }
        assert!(seen.iter().all(|s| *s));
        // Deterministic.
        assert_eq!(
            bytes,
            build("title_vec", dim, Metric::EuclideanSquared, &v, &AnnParams::default()).unwrap()
        );
    }

    #[test]
    fn damaged_prefixes_are_errors_not_panics() {
        let v = blobs(1100, 4);
        let bytes = build("a", 4, Metric::CosineDistance, &v, &AnnParams::default()).unwrap();
        let head = NamedColdHead::parse(&bytes).unwrap().head_len() as usize;
        for at in 0..64 {
            let mut b = bytes[..head].to_vec();
            b[at] ^= 0x10;
            assert!(NamedColdHead::parse(&b).is_err(), "flip at {at}");
        }
        for cut in [0, 7, 23, 63, 64, head - 1] {
            assert!(NamedColdHead::parse(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(NamedColdHead::parse(&bytes[..head]).is_ok());
    }
}
