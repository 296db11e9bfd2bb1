//! Lays a segment file out — header, aligned sections, range checksums, table,
//! table crc — into any [`Write`], one section part at a time, so a segment
//! never has to be whole in memory to be written (a compaction of a million
//! rows streams it into a scratch file).
//!
//! Invariants:
//! - One layout routine for every writer: the in-memory [`assemble`] is this
//!   routine writing into a `Vec`, so a streamed file and an in-memory one
//!   are the same bytes for the same sections (the canonical encoding of the
//!   parent module doc).
//! - Every offset is computed before the first byte is written (the header
//!   names the table offset, and the range-checksum section's length follows
//!   from the bytes it covers), so the output is written strictly in order,
//!   never patched.
//! - Each section's crc32c and the range checksums are computed over the
//!   bytes as they are written, not re-read.
//! - The header's version follows from the docs layout, so the two always agree:
//!   a segment with doc blocks (kind 5) is version 2, one with raw docs version 1.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;

use super::*;

/// Where a piece of a section's bytes is: in memory, or a range of a
/// (spool) file.
#[derive(Debug, Clone, Copy)]
pub(super) enum Part<'a> {
    Bytes(&'a [u8]),
    File { file: &'a File, offset: u64, len: u64 },
}

impl Part<'_> {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => len_u64(b.len()),
            Part::File { len, .. } => *len,
        }
    }
}

/// A section: its kind and its bytes, the concatenation of its parts.
pub(super) type SectionParts<'a> = (u16, Vec<Part<'a>>);

/// Why a segment could not be built: its content, or the I/O of a spooled
/// build (a full scratch disk is an I/O error here).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The content does not make a valid segment.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Reading or writing a spool or the output failed.
    #[error("segment build i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Lay out header, sections, table and table crc of an in-memory segment.
#[cfg(test)]
pub(super) fn assemble(
    id_kind: u8,
    rows: usize,
    dim: u32,
    sections: &[(u16, &[u8])],
    range_checksums: bool,
) -> Result<Vec<u8>, FormatError> {
    let parts: Vec<SectionParts<'_>> = sections.iter().map(|(k, b)| (*k, vec![Part::Bytes(b)])).collect();
    match assemble_into(Vec::new(), id_kind, rows, dim, &parts, range_checksums) {
        Ok(v) => Ok(v),
        Err(BuildError::Format(e)) => Err(e),
        Err(BuildError::Io(e)) => Err(FormatError::Malformed(format!("{WHAT}: in-memory assembly: {e}"))),
    }
}

/// Write the segment whose sections are `sections` (in file order) into `out`;
/// with `range_checksums`, a range-checksum section (kind 22) covering every
/// byte before it follows them. Returns the writer.
pub(super) fn assemble_into<W: Write>(
    out: W,
    id_kind: u8,
    rows: usize,
    dim: u32,
    sections: &[SectionParts<'_>],
    range_checksums: bool,
) -> Result<W, BuildError> {
    let plan = Plan::new(sections, range_checksums)?;
    let mut out = Out { w: out, at: 0, ranges: range_checksums.then(RangeHasher::default) };
    let version = if sections.iter().any(|(k, _)| *k == SECTION_DOC_BLOCKS) {
        SEGMENT_FORMAT_VERSION
    } else {
        SEGMENT_FORMAT_V1
    };
    out.put(&header(version, id_kind, rows, dim, plan.count, plan.table_offset))?;
    let mut table = Writer::with_capacity(plan.count * SECTION_ENTRY_LEN);
    for ((kind, parts), at) in sections.iter().zip(&plan.offsets) {
        out.pad_to(*at)?;
        let mut crc = 0u32;
        for p in parts {
            crc = out.copy(p, crc)?;
        }
        entry(&mut table, *kind, crc, *at, parts.iter().map(Part::len).sum());
    }
    if let Some(covered) = plan.covered {
        out.pad_to(covered)?;
        let sums = out.ranges.take().map(|h| h.finish(covered)).unwrap_or_default();
        entry(&mut table, SECTION_RANGE_CHECKSUMS, crc32c::crc32c(&sums), covered, len_u64(sums.len()));
        out.put(&sums)?;
    }
    out.pad_to(plan.table_offset)?;
    out.put(table.as_slice())?;
    out.put(&crc32c::crc32c(table.as_slice()).to_le_bytes())?;
    out.w.flush()?;
    Ok(out.w)
}

/// Offsets of every section and of the table, computed from lengths alone.
struct Plan {
    offsets: Vec<u64>,
    /// With range checksums: where their section starts (= bytes covered).
    covered: Option<u64>,
    table_offset: u64,
    count: usize,
}

impl Plan {
    fn new(sections: &[SectionParts<'_>], range_checksums: bool) -> Result<Plan, FormatError> {
        let count = sections.len() + usize::from(range_checksums);
        if count > MAX_SECTIONS {
            return Err(FormatError::TooLarge {
                what: "segment sections",
                len: len_u64(count),
                max: len_u64(MAX_SECTIONS),
            });
        }
        let too_large = || FormatError::TooLarge { what: "segment", len: u64::MAX, max: len_u64(usize::MAX) };
        let align = |n: u64| {
            n.checked_add(SECTION_ALIGN as u64 - 1).map(|n| n / SECTION_ALIGN as u64 * SECTION_ALIGN as u64)
        };
        let mut end = SEGMENT_HEADER_LEN as u64;
        let mut offsets = Vec::with_capacity(sections.len());
        for (_, parts) in sections {
            let at = align(end).ok_or_else(too_large)?;
            offsets.push(at);
            end = parts.iter().try_fold(at, |e, p| e.checked_add(p.len())).ok_or_else(too_large)?;
        }
        let covered = if range_checksums {
            let covered = align(end).ok_or_else(too_large)?;
            let chunks = covered.div_ceil(1 << RANGE_CHUNK_LOG2);
            end = covered.checked_add(RANGE_HEADER_LEN as u64 + 4 * chunks).ok_or_else(too_large)?;
            Some(covered)
        } else {
            None
        };
        let table_offset = align(end).ok_or_else(too_large)?;
        let total = table_offset.checked_add(len_u64(count * SECTION_ENTRY_LEN) + 4).ok_or_else(too_large)?;
        usize::try_from(total).map_err(|_| too_large())?;
        Ok(Plan { offsets, covered, table_offset, count })
    }
}

fn header(version: u16, id_kind: u8, rows: usize, dim: u32, count: usize, table_offset: u64) -> Vec<u8> {
    let mut w = Writer::with_capacity(SEGMENT_HEADER_LEN);
    w.bytes(&SEGMENT_MAGIC);
    w.u16(version);
    w.u16(0); // flags
    w.u8(id_kind);
    w.bytes(&[0; 3]);
    w.u64(len_u64(rows));
    w.u32(dim);
    w.u32(u32::try_from(count).unwrap_or(u32::MAX));
    w.u64(table_offset);
    w.bytes(&[0; OFF_HEADER_CRC - 40]);
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);
    w.into_inner()
}

fn entry(table: &mut Writer, kind: u16, crc: u32, offset: u64, len: u64) {
    table.u16(kind);
    table.u16(0); // flags
    table.u32(crc);
    table.u64(offset);
    table.u64(len);
}

/// The output and what is computed over it as it goes.
struct Out<W> {
    w: W,
    at: u64,
    ranges: Option<RangeHasher>,
}

/// Bytes copied from a spool file per read.
const COPY_CHUNK: usize = 1 << 20;

impl<W: Write> Out<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.w.write_all(b)?;
        if let Some(h) = &mut self.ranges {
            h.update(b);
        }
        self.at += len_u64(b.len());
        Ok(())
    }

    fn pad_to(&mut self, at: u64) -> std::io::Result<()> {
        const ZEROS: [u8; SECTION_ALIGN] = [0; SECTION_ALIGN];
        while self.at < at {
            let n = usize::try_from((at - self.at).min(len_u64(SECTION_ALIGN))).unwrap_or(SECTION_ALIGN);
            self.put(&ZEROS[..n])?;
        }
        Ok(())
    }

    /// Copy one part, extending the section crc `crc`.
    fn copy(&mut self, p: &Part<'_>, crc: u32) -> std::io::Result<u32> {
        match p {
            Part::Bytes(b) => {
                self.put(b)?;
                Ok(crc32c::crc32c_append(crc, b))
            }
            Part::File { file, offset, len } => {
                let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(*len).unwrap_or(COPY_CHUNK))];
                let (mut done, mut crc) = (0u64, crc);
                while done < *len {
                    let n = usize::try_from((*len - done).min(len_u64(buf.len()))).unwrap_or(buf.len());
                    file.read_exact_at(&mut buf[..n], offset + done)?;
                    self.put(&buf[..n])?;
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    done += len_u64(n);
                }
                Ok(crc)
            }
        }
    }
}

/// crc32c of every `2^RANGE_CHUNK_LOG2` bytes written (the range-checksum
/// section, storage-format 8.3.1), computed as the bytes go by.
#[derive(Default)]
struct RangeHasher {
    crcs: Vec<u32>,
    current: u32,
    filled: usize,
}

impl RangeHasher {
    fn update(&mut self, mut b: &[u8]) {
        let chunk = 1usize << RANGE_CHUNK_LOG2;
        while !b.is_empty() {
            let n = (chunk - self.filled).min(b.len());
            self.current = crc32c::crc32c_append(self.current, &b[..n]);
            self.filled += n;
            b = &b[n..];
            if self.filled == chunk {
                self.crcs.push(std::mem::take(&mut self.current));
                self.filled = 0;
            }
        }
    }

    /// The section bytes for the `covered` bytes hashed.
    fn finish(mut self, covered: u64) -> Vec<u8> {
        if self.filled > 0 {
            self.crcs.push(self.current);
        }
        RangeChecksums::from_parts(RANGE_CHUNK_LOG2, covered, self.crcs).encode()
    }
}
