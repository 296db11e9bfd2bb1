//! The deletion-set codec (`deletes-{token}.del`): a bitset over one segment's row
//! positions with its own magic, version and crc32c. Invariant: bits at or above `rows` are
//! zero, and `count` equals the number of set bits.

use super::*;

/// The set of retired rows of one segment: a bitset over its row positions
/// `0..rows`. Stored as its own object (`deletes-{token}.del`).
///
/// ```text
/// 0       8        10      12         16       24          32
/// +-------+--------+-------+----------+--------+-----------+-------------------+-------+
/// | magic |version | flags | reserved | rows   | deleted   | ceil(rows/64) u64 | crc32c|
/// | 8 B   | u16    | u16   | u32 (0)  | u64    | u64       | bitmap words      | u32   |
/// +-------+--------+-------+----------+--------+-----------+-------------------+-------+
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionSet {
    rows: usize,
    words: Vec<u64>,
    count: usize,
}

impl DeletionSet {
    /// An empty set over a segment of `rows` rows (at most [`MAX_SEGMENT_ROWS`]
    /// to be encodable).
    pub fn new(rows: usize) -> Self {
        DeletionSet { rows, words: vec![0; rows.div_ceil(64)], count: 0 }
    }

    /// Mark `row` deleted. Returns whether it was newly inserted; a row out of
    /// range (`>= rows()`) is not inserted and returns false.
    pub fn insert(&mut self, row: usize) -> bool {
        if row >= self.rows {
            return false;
        }
        let Some(w) = self.words.get_mut(row / 64) else { return false };
        let bit = 1u64 << (row % 64);
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        self.count += 1;
        true
    }

    /// Whether `row` is deleted (false out of range).
    pub fn contains(&self, row: usize) -> bool {
        row < self.rows && self.words.get(row / 64).is_some_and(|w| w & (1u64 << (row % 64)) != 0)
    }

    /// Number of deleted rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no row is deleted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Rows of the segment this set is over.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Rows not deleted.
    pub fn live_rows(&self) -> usize {
        self.rows - self.count
    }

    /// The deleted rows, increasing.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros() as usize;
                w &= w - 1;
                Some(i * 64 + b)
            })
        })
    }

    /// The union of two sets over the same segment (if their row counts
    /// differ, the result covers the larger one).
    pub fn union(&self, other: &DeletionSet) -> DeletionSet {
        let rows = self.rows.max(other.rows);
        let mut words = vec![0u64; rows.div_ceil(64)];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.words.get(i).copied().unwrap_or(0) | other.words.get(i).copied().unwrap_or(0);
        }
        let count = words.iter().map(|w| w.count_ones() as usize).sum();
        DeletionSet { rows, words, count }
    }

    /// Encode (see the type doc).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(DELETES_HEADER_LEN + self.words.len() * 8 + 4);
        w.bytes(&DELETES_MAGIC);
        w.u16(DELETES_FORMAT_VERSION);
        w.u16(0); // flags
        w.u32(0); // reserved
        w.u64(len_u64(self.rows));
        w.u64(len_u64(self.count));
        for word in &self.words {
            w.u64(*word);
        }
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode and verify a deletion set: magic, version, length, crc32c,
    /// flags, bits beyond `rows` zero, and `deleted` equal to the bits set.
    pub fn decode(bytes: &[u8]) -> Result<DeletionSet, FormatError> {
        let mut r = Reader::new(bytes);
        let magic: [u8; 8] = r.array("deletion set magic")?;
        if magic != DELETES_MAGIC {
            return Err(FormatError::BadMagic { what: DEL_WHAT });
        }
        let version = r.u16("deletion set version")?;
        if version != DELETES_FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: DEL_WHAT,
                version: u64::from(version),
                supported: u64::from(DELETES_FORMAT_VERSION),
            });
        }
        let flags = r.u16("deletion set flags")?;
        let reserved = r.u32("deletion set reserved")?;
        let rows = r.u64("deletion set rows")?;
        let deleted = r.u64("deletion set count")?;
        if rows > len_u64(MAX_SEGMENT_ROWS) {
            return Err(FormatError::TooLarge {
                what: "deletion set rows",
                len: rows,
                max: len_u64(MAX_SEGMENT_ROWS),
            });
        }
        let rows = to_usize("deletion set rows", rows)?;
        let words = rows.div_ceil(64);
        let expected = DELETES_HEADER_LEN + words * 8 + 4;
        match expected.cmp(&bytes.len()) {
            Ordering::Greater => {
                return Err(FormatError::Truncated {
                    what: DEL_WHAT,
                    needed: len_u64(expected),
                    available: len_u64(bytes.len()),
                })
            }
            Ordering::Less => {
                return Err(FormatError::TrailingBytes {
                    what: DEL_WHAT,
                    extra: len_u64(bytes.len() - expected),
                })
            }
            Ordering::Equal => {}
        }
        let stored = le_u32(bytes, expected - 4);
        let actual = crc32c::crc32c(bytes.get(..expected - 4).unwrap_or_default());
        if stored != actual {
            return Err(FormatError::ChecksumMismatch { what: DEL_WHAT, expected: stored, actual });
        }
        if flags != 0 || reserved != 0 {
            return Err(FormatError::Malformed(format!(
                "{DEL_WHAT}: unknown flags {flags:#06x} or non-zero reserved field"
            )));
        }
        let bitmap = bytes.get(DELETES_HEADER_LEN..expected - 4).unwrap_or_default();
        check_bitmap(DEL_WHAT, bitmap, rows)?;
        let words: Vec<u64> = (0..words).map(|i| le_u64(bitmap, i * 8)).collect();
        let count: usize = words.iter().map(|w| w.count_ones() as usize).sum();
        if len_u64(count) != deleted {
            return Err(FormatError::Malformed(format!(
                "{DEL_WHAT}: header says {deleted} deleted rows, the bitmap has {count}"
            )));
        }
        Ok(DeletionSet { rows, words, count })
    }
}
