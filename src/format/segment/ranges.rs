//! Range checksums (section kind 22, `storage-format.md` 8.3.1): crc32c per fixed-size
//! chunk of the file before the section, so a ranged reader verifies exactly the bytes it
//! fetched, a lazily opened segment checks each chunk on its first read, and the whole file's
//! crc32c is computed from them without reading the chunks ([`crc32c_from_range_checksums`]).
//! Invariant: when present the section is last and covers every byte before it.

use super::*;

/// The range-checksum section (kind 22, `storage-format.md` 8.3.1): crc32c
/// of each `2^chunk_log2`-byte chunk of the file's bytes `[0, covered)` (the
/// last chunk may be shorter). A reader that fetched a byte range widens it to
/// chunk boundaries ([`RangeChecksums::widen`]) and checks every chunk
/// ([`RangeChecksums::verify`]) before using any byte of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeChecksums {
    chunk_log2: u32,
    covered: u64,
    crcs: Vec<u32>,
}

impl RangeChecksums {
    /// Checksums already computed over `covered` bytes (a streaming writer).
    pub(super) fn from_parts(chunk_log2: u32, covered: u64, crcs: Vec<u32>) -> RangeChecksums {
        RangeChecksums { chunk_log2, covered, crcs }
    }

    /// Checksums of `bytes` (the file so far) in chunks of `2^chunk_log2`.
    pub fn compute(bytes: &[u8], chunk_log2: u32) -> RangeChecksums {
        let chunk = 1usize << chunk_log2;
        RangeChecksums {
            chunk_log2,
            covered: len_u64(bytes.len()),
            crcs: bytes.chunks(chunk).map(crc32c::crc32c).collect(),
        }
    }

    /// The section bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(RANGE_HEADER_LEN + 4 * self.crcs.len());
        w.bytes(&RANGE_CHECKSUMS_MAGIC);
        w.u32(1);
        w.u32(self.chunk_log2);
        w.u64(self.covered);
        w.u32(u32::try_from(self.crcs.len()).unwrap_or(u32::MAX));
        w.u32(0);
        for c in &self.crcs {
            w.u32(*c);
        }
        w.into_inner()
    }

    /// Parse section bytes (checked against the section crc by the caller).
    pub fn decode(b: &[u8]) -> Result<RangeChecksums, FormatError> {
        let mut r = Reader::new(b);
        let magic: [u8; 8] = r.array("range checksums magic")?;
        if magic != RANGE_CHECKSUMS_MAGIC {
            return Err(FormatError::BadMagic { what: "range checksums" });
        }
        let version = r.u32("range checksums version")?;
        if version != 1 {
            return Err(FormatError::UnsupportedVersion {
                what: "range checksums",
                version: u64::from(version),
                supported: 1,
            });
        }
        let chunk_log2 = r.u32("range checksums chunk size")?;
        let covered = r.u64("range checksums covered length")?;
        let count = r.u32("range checksums count")?;
        let reserved = r.u32("range checksums reserved")?;
        if !(12..=24).contains(&chunk_log2) || reserved != 0 {
            return Err(malformed(format_args!(
                "range checksums: chunk size 2^{chunk_log2} or reserved bits"
            )));
        }
        if covered.div_ceil(1 << chunk_log2) != u64::from(count) {
            return Err(malformed(format_args!(
                "range checksums: {count} chunks do not cover {covered} bytes"
            )));
        }
        let body = b.get(RANGE_HEADER_LEN..).unwrap_or_default();
        if body.len() != 4 * count as usize {
            return Err(malformed(format_args!("range checksums: {} bytes for {count} chunks", body.len())));
        }
        Ok(RangeChecksums { chunk_log2, covered, crcs: body.chunks_exact(4).map(|c| le_u32(c, 0)).collect() })
    }

    /// Bytes covered (`[0, covered)` of the file).
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// `range` widened to chunk boundaries (None if it leaves the covered bytes).
    pub fn widen(&self, range: Range<u64>) -> Option<Range<u64>> {
        if range.start > range.end || range.end > self.covered {
            return None;
        }
        let chunk = 1u64 << self.chunk_log2;
        let start = range.start / chunk * chunk;
        let end = range.end.div_ceil(chunk).saturating_mul(chunk).min(self.covered);
        Some(start..end)
    }

    /// Check `bytes`, read at file offset `at` (a chunk boundary; they end at
    /// a chunk boundary or at `covered`), chunk by chunk.
    pub fn verify(&self, at: u64, bytes: &[u8]) -> Result<(), FormatError> {
        let chunk = 1usize << self.chunk_log2;
        let aligned = at.is_multiple_of(1 << self.chunk_log2);
        let end = at.checked_add(len_u64(bytes.len()));
        let fits = end.is_some_and(|e| {
            e == self.covered || (e < self.covered && e.is_multiple_of(1 << self.chunk_log2))
        });
        if !aligned || !fits {
            return Err(malformed(format_args!("range {at}+{} is not on chunk boundaries", bytes.len())));
        }
        let first = usize::try_from(at >> self.chunk_log2).unwrap_or(usize::MAX);
        for (i, c) in bytes.chunks(chunk).enumerate() {
            let expected = self.crcs.get(first + i).copied().unwrap_or(0);
            let actual = crc32c::crc32c(c);
            if expected != actual {
                return Err(FormatError::ChecksumMismatch { what: "segment chunk", expected, actual });
            }
        }
        Ok(())
    }
}

/// The range-checksum section of `sections` (kind 22), decoded, if the segment has one: it must
/// be the last section and cover exactly the bytes before it (its own crc is the caller's).
fn range_sums(
    buf: &[u8],
    sections: &[(SectionInfo, Range<usize>)],
) -> Result<Option<(RangeChecksums, usize)>, FormatError> {
    let Some(i) = sections.iter().position(|(s, _)| s.kind == SECTION_RANGE_CHECKSUMS) else {
        return Ok(None);
    };
    let (info, range) = &sections[i];
    if i + 1 != sections.len() {
        return Err(malformed("the range-checksum section must be the last section"));
    }
    let sums = RangeChecksums::decode(buf.get(range.clone()).unwrap_or_default())?;
    if sums.covered() != info.offset {
        return Err(malformed(format_args!(
            "range checksums cover {} bytes, their section starts at {}",
            sums.covered(),
            info.offset
        )));
    }
    Ok(Some((sums, range.start)))
}

/// A range-checksum section (kind 22) must be the last section, cover exactly
/// the bytes before it, and match them, so a ranged reader and a whole-file
/// reader can never disagree about a segment.
pub(super) fn check_range_checksums(
    buf: &[u8],
    sections: &[(SectionInfo, Range<usize>)],
    verified: &dyn Fn(&[u8]),
) -> Result<Option<crate::integrity::ChunkGuard>, FormatError> {
    let Some((sums, covered_len)) = range_sums(buf, sections)? else { return Ok(None) };
    // Stretch by stretch (each a whole number of chunks), handed over once read; the same pass
    // records finer checksums of the bytes that matched, for the checks of later reads.
    let covered = buf.get(..covered_len).unwrap_or_default();
    let mut fine = Vec::with_capacity(covered.len().div_ceil(1 << READ_CHECK_LOG2));
    for (i, stretch) in covered.chunks(super::VERIFY_STRETCH).enumerate() {
        sums.verify(len_u64(i * super::VERIFY_STRETCH), stretch)?;
        fine.extend(stretch.chunks(1 << READ_CHECK_LOG2).map(crc32c::crc32c));
        verified(stretch);
    }
    // (kind 22's chunks are 4 KiB or more, whole multiples of the fine chunks, 8.3.1.)
    Ok(Some(crate::integrity::ChunkGuard::new(READ_CHECK_LOG2, covered.len(), fine)))
}

/// The guard of a segment opened lazily (8.3.1, "Lazy open"): nothing the range checksums cover
/// is read here; each 16 KiB chunk is checked against its crc on its first read
/// (`crate::integrity`). None: the segment has no range checksums.
pub(super) fn lazy_range_guard(
    buf: &[u8],
    sections: &[(SectionInfo, Range<usize>)],
) -> Result<Option<crate::integrity::ChunkGuard>, FormatError> {
    let Some((sums, covered)) = range_sums(buf, sections)? else { return Ok(None) };
    let guard = crate::integrity::ChunkGuard::lazy(READ_CHECK_LOG2, covered, sums.chunk_log2, sums.crcs);
    guard.map(Some).ok_or_else(|| malformed("range checksums: chunks finer than the read checks"))
}

/// The crc32c of a whole segment file computed from its range checksums (kind 22) and the bytes
/// after them (the kind-22 section, padding, section table), without reading the bytes they
/// cover: equal to `crc32c(bytes)` exactly when every covered chunk matches its stored crc, which
/// a lazily opened segment checks on the first read of each chunk. So a cache can match a segment
/// against its manifest's crc32c at open and leave the chunks to their first reads. None when the
/// file has no range checksums (or its table or kind-22 section does not check): read it all.
pub fn crc32c_from_range_checksums(bytes: &[u8]) -> Option<u32> {
    let table = section_table(bytes).ok()?;
    let last = table.last().filter(|s| s.kind == SECTION_RANGE_CHECKSUMS)?;
    let start = usize::try_from(last.offset).ok()?;
    let end = start.checked_add(usize::try_from(last.len).ok()?)?;
    let section = bytes.get(start..end)?;
    if crc32c::crc32c(section) != last.crc32c {
        return None;
    }
    let sums = RangeChecksums::decode(section).ok()?;
    if sums.covered != last.offset {
        return None;
    }
    let chunk = 1usize << sums.chunk_log2;
    let shift = ShiftBy::bytes(chunk);
    let full = start / chunk;
    let mut crc = sums.crcs.iter().take(full).fold(0u32, |acc, c| shift.apply(acc) ^ c);
    if let Some(last) = sums.crcs.get(full) {
        crc = crc32c::crc32c_combine(crc, *last, start - full * chunk);
    }
    Some(crc32c::crc32c_append(crc, bytes.get(start..)?))
}

/// `crc ↦ crc32c_combine(crc, 0, n)` for one fixed `n`, as byte tables: combining a crc with the
/// next chunk's is then `apply(crc) ^ next` (the map is linear over GF(2)), four lookups instead
/// of a matrix power per chunk.
struct ShiftBy([[u32; 256]; 4]);

impl ShiftBy {
    fn bytes(n: usize) -> ShiftBy {
        let cols: Vec<u32> = (0..32).map(|i| crc32c::crc32c_combine(1 << i, 0, n)).collect();
        let mut t = [[0u32; 256]; 4];
        for (k, table) in t.iter_mut().enumerate() {
            for (b, slot) in table.iter_mut().enumerate() {
                *slot = (0..8).filter(|bit| b & (1 << bit) != 0).fold(0, |acc, bit| acc ^ cols[8 * k + bit]);
            }
        }
        ShiftBy(t)
    }

    fn apply(&self, crc: u32) -> u32 {
        let [t0, t1, t2, t3] = &self.0;
        let b = crc.to_le_bytes();
        t0[usize::from(b[0])] ^ t1[usize::from(b[1])] ^ t2[usize::from(b[2])] ^ t3[usize::from(b[3])]
    }
}

/// The granularity (log2 bytes) of the checks of reads after open: 1 KiB, so a read of one row
/// (a 1.5 KiB vector, a document) checks about its own bytes, not a 16 KiB chunk around them; the
/// checksums cost 4 bytes per KiB of segment in memory (0.4 %).
pub const READ_CHECK_LOG2: u32 = 10;
