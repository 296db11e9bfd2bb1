//! The section table (8.3) and the checks open makes of what sections hold: zero padding and the
//! offsets tables of ids and raw docs (8.4, 8.5). Invariant: nothing here panics on any bytes.

use super::*;

/// The byte ranges of a segment's sections, read from its section table
/// (file offsets; see 8.3). Only checks that the table is where the header
/// says and that its crc matches: meant for a segment this process just built
/// (compaction records the ranges in the manifest) — readers use
/// [`Segment::open`].
pub fn section_table(bytes: &[u8]) -> Result<Vec<SectionInfo>, FormatError> {
    let truncated =
        || FormatError::Truncated { what: "segment", needed: 64, available: len_u64(bytes.len()) };
    let header = bytes.get(..SEGMENT_HEADER_LEN).ok_or_else(truncated)?;
    let count = le_u32(header, 28) as usize;
    let table_at = usize::try_from(le_u64(header, 32)).map_err(|_| truncated())?;
    let table_len = count.checked_mul(SECTION_ENTRY_LEN).ok_or_else(truncated)?;
    let table = bytes.get(table_at..table_at.saturating_add(table_len)).ok_or_else(truncated)?;
    let stored = bytes.get(table_at + table_len..).filter(|b| b.len() == 4).ok_or_else(truncated)?;
    let actual = crc32c::crc32c(table);
    let expected = le_u32(stored, 0);
    if expected != actual {
        return Err(FormatError::ChecksumMismatch { what: "segment section table", expected, actual });
    }
    Ok(table
        .chunks_exact(SECTION_ENTRY_LEN)
        .map(|e| SectionInfo {
            kind: le_u16(e, 0),
            crc32c: le_u32(e, 4),
            offset: le_u64(e, 8),
            len: le_u64(e, 16),
        })
        .collect())
}

/// One section table entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SectionInfo {
    /// The section kind.
    pub kind: u16,
    /// Byte offset within the file (a multiple of 64).
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// crc32c of the section bytes.
    pub crc32c: u32,
}

pub(super) fn check_zero(what: &'static str, b: &[u8]) -> Result<(), FormatError> {
    if b.iter().any(|&x| x != 0) {
        return Err(FormatError::Malformed(format!("{what}: reserved or padding bytes are not zero")));
    }
    Ok(())
}

/// Validate an offsets table of `rows + 1` u64s at the start of `sec`:
/// starts at 0, each step within `min_step..=max_step`, ends at the length
/// of the data that follows. Returns (table range, data range), absolute.
pub(super) fn offsets_table(
    what: &'static str,
    buf: &[u8],
    sec: &Range<usize>,
    rows: usize,
    min_step: u64,
    max_step: u64,
) -> Result<(Range<usize>, Range<usize>), FormatError> {
    let table_len = rows.checked_add(1).and_then(|n| n.checked_mul(8)).ok_or(FormatError::TooLarge {
        what,
        len: len_u64(rows),
        max: len_u64(MAX_SEGMENT_ROWS),
    })?;
    let sec_len = sec.end - sec.start;
    if table_len > sec_len {
        return Err(FormatError::Truncated { what, needed: len_u64(table_len), available: len_u64(sec_len) });
    }
    let table = sec.start..sec.start + table_len;
    let data = table.end..sec.end;
    let data_len = len_u64(data.end - data.start);
    let mut prev = le_u64(buf, table.start);
    if prev != 0 {
        return Err(malformed(format_args!("{what}: the offsets table does not start at 0")));
    }
    for i in 1..=rows {
        let o = le_u64(buf, table.start + i * 8);
        let step = o.checked_sub(prev);
        if !step.is_some_and(|s| (min_step..=max_step).contains(&s)) {
            return Err(malformed(format_args!(
                "{what}: offset {o} of row {} after {prev} is out of order or out of bounds",
                i - 1
            )));
        }
        prev = o;
    }
    if prev != data_len {
        return Err(malformed(format_args!(
            "{what}: the offsets table ends at {prev}, the data is {data_len} bytes"
        )));
    }
    Ok((table, data))
}
