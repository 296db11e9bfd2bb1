//! Lazy open (`storage-format.md` 8.3.1, "Lazy open"): a segment that carries range checksums
//! (kind 22) is served without reading it whole at open. Open checks what it reads or keeps —
//! the header, the section table, the kind-22 section, and the sections it parses (ids, raw docs,
//! the vector-absent bitmap, the doc blocks' header and table, the vectors when it copies them or
//! checks absent rows' zeros) — and leaves every other 16 KiB chunk to its first read
//! (`crate::integrity`, `ChunkGuard::lazy`).
//!
//! Invariants:
//! - Only the deferred kinds ([`deferred`]) skip their section crc at a lazy open; every byte of
//!   them is checked against its chunk's crc before it is used: by a guarded read, or whole by
//!   the section accessors (`Segment::section`) before a reader parses the section.
//! - The chunks open reads are settled before open returns (their fine crcs kept), so the guarded
//!   reads of ids, docs offsets and the absent bitmap need not read them again.
//! - The whole-section crc32c of a deferred section is checked only by a full open
//!   (`Segment::open`, which verify and restore use); a deferred section's chunks cover it.

use std::sync::atomic::AtomicBool;

use super::*;
use crate::integrity::ChunkGuard;

/// Whether the section table (`table`, checked) ends with a range-checksum section.
pub(super) fn has_range_checksums(table: &[u8]) -> bool {
    let at = table.len().checked_sub(SECTION_ENTRY_LEN);
    at.is_some_and(|at| le_u16(table, at) == SECTION_RANGE_CHECKSUMS)
}

/// Kinds whose section crc a lazy open does not check: the bulk sections, read in small parts
/// (vectors, doc blocks) or parsed by their readers on first use (the index sections).
pub(super) fn deferred(kind: u16) -> bool {
    matches!(kind, SECTION_VECTORS | SECTION_DOC_BLOCKS)
        || (kind >= FIRST_EXTENSION_KIND && kind != SECTION_RANGE_CHECKSUMS)
}

/// Settled flags of a segment verified whole.
pub(super) fn all_settled(sections: usize) -> Box<[AtomicBool]> {
    (0..sections).map(|_| AtomicBool::new(true)).collect()
}

/// Settle what a lazy open reads (module docs) with `guard`; the guard and, per section, whether
/// it is settled whole. A mismatch refuses the segment.
pub(super) fn settle_eager(
    buf: &[u8],
    sections: &[(SectionInfo, Range<usize>)],
    guard: Option<ChunkGuard>,
    verified: &dyn Fn(&[u8]),
) -> Result<(Option<ChunkGuard>, Box<[AtomicBool]>), FormatError> {
    let Some(guard) = guard else { return Ok((None, all_settled(sections.len()))) };
    let settle = |r: Range<usize>| {
        guard.settle(buf, r, verified).map_err(|rot| FormatError::ChecksumMismatch {
            what: "segment range checksum",
            expected: rot.expected,
            actual: rot.actual,
        })
    };
    settle(0..SEGMENT_HEADER_LEN)?;
    let absent = sections.iter().any(|(s, _)| s.kind == SECTION_VECTOR_ABSENT);
    let mut flags = Vec::with_capacity(sections.len());
    for (info, range) in sections {
        let whole = !deferred(info.kind) || (info.kind == SECTION_VECTORS && (absent || copied(buf, range)));
        if whole {
            settle(range.clone())?;
        } else if info.kind == SECTION_DOC_BLOCKS {
            settle(range.start..(range.start + DOC_BLOCKS_HEADER_LEN).min(range.end))?;
            settle(doc_blocks_head(buf, range))?;
        }
        flags.push(AtomicBool::new(whole));
    }
    Ok((Some(guard), flags.into()))
}

/// Whether open copies the vectors (misaligned in memory, or a big-endian host).
fn copied(buf: &[u8], range: &Range<usize>) -> bool {
    crate::codec::f32_slice(buf.get(range.clone()).unwrap_or_default()).is_none()
}

/// The header and table of a doc-blocks section (8.5.1; its header settled), within the section.
fn doc_blocks_head(buf: &[u8], range: &Range<usize>) -> Range<usize> {
    let count = buf.get(range.clone()).filter(|b| b.len() >= 4).map_or(0, |b| le_u32(b, 0) as usize);
    let len = count.saturating_mul(DOC_BLOCK_ENTRY_LEN).saturating_add(DOC_BLOCKS_HEADER_LEN);
    range.start..range.start.saturating_add(len).min(range.end)
}
