//! On-storage formats: the WAL batch codec ([`wal`]), the manifest and
//! CURRENT-hint codecs ([`manifest`]), the segment and deletion-set codecs
//! ([`segment`]), and the bounded byte [`Reader`] /
//! little-endian [`Writer`] they are built on. `storage-format.md` at the
//! repository root is the source of truth; this code follows it.
//!
//! Invariants:
//! - Every persisted file carries a magic, a format version and a crc32c
//!   (Castagnoli). Unknown versions are refused with
//!   [`FormatError::UnsupportedVersion`], never guessed at.
//! - Integers are fixed-width little-endian; `usize` never reaches the disk.
//! - Decoding never panics and never allocates from an unchecked length: every
//!   length or count is checked against a cap and against the bytes remaining
//!   *before* anything is allocated, so a buffer of n bytes can make the
//!   decoder allocate O(n) memory at most.
//! - Decoding is strict: truncation, trailing bytes, unknown tags and flags,
//!   and checksum mismatches are errors.

use std::fmt;

pub mod attrs;
pub mod manifest;
pub mod segment;
pub mod wal;

/// Current (and highest supported) version of every format in this module.
pub const FORMAT_VERSION_V1: u16 = 1;

/// Why a persisted object could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The input ended before a field was complete.
    #[error("{what}: truncated: needed {needed} bytes, {available} available")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// The object does not start with the expected magic.
    #[error("{what}: bad magic (not a tidepool object of this kind)")]
    BadMagic {
        /// The kind of object expected.
        what: &'static str,
    },
    /// The object was written in a format version this build cannot read.
    #[error("{what}: unsupported format version {version} (this build reads versions 1..={supported})")]
    UnsupportedVersion {
        /// The kind of object.
        what: &'static str,
        /// The version found.
        version: u64,
        /// The highest version this build reads.
        supported: u64,
    },
    /// A checksum did not match the bytes it covers (corruption).
    #[error("{what}: crc32c mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    ChecksumMismatch {
        /// The checksummed region.
        what: &'static str,
        /// The stored checksum.
        expected: u32,
        /// The checksum of the bytes as read.
        actual: u32,
    },
    /// A declared length or count exceeds its cap.
    #[error("{what}: length {len} exceeds the limit {max}")]
    TooLarge {
        /// The field.
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The cap.
        max: u64,
    },
    /// Bytes were left over after a complete object.
    #[error("{what}: {extra} trailing bytes after the end of the object")]
    TrailingBytes {
        /// The kind of object.
        what: &'static str,
        /// How many bytes were left.
        extra: u64,
    },
    /// Structurally invalid content (bad tag, bad UTF-8, bad JSON, failed
    /// sanity check, ...).
    #[error("malformed: {0}")]
    Malformed(String),
}

impl FormatError {
    /// Whether this error means the bytes are damaged or not ours (as opposed
    /// to written by a newer version of tidepool).
    pub fn is_corruption(&self) -> bool {
        !matches!(self, FormatError::UnsupportedVersion { .. })
    }
}

/// `usize` → `u64` for error fields (lossless on every supported target).
fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A bounded reader over a byte slice. Every read checks the bytes remaining
/// first; reads never panic.
#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader").field("len", &self.buf.len()).field("pos", &self.pos).finish()
    }
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Consume exactly `n` bytes.
    pub fn bytes(&mut self, what: &'static str, n: usize) -> Result<&'a [u8], FormatError> {
        let available = self.remaining();
        if n > available {
            return Err(FormatError::Truncated { what, needed: len_u64(n), available: len_u64(available) });
        }
        let start = self.pos;
        self.pos += n;
        self.buf.get(start..self.pos).ok_or(FormatError::Truncated {
            what,
            needed: len_u64(n),
            available: len_u64(available),
        })
    }

    /// Consume a fixed-size array.
    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let b = self.bytes(what, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A `u8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, FormatError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A little-endian two's-complement `i128` (16 bytes).
    pub fn i128(&mut self, what: &'static str) -> Result<i128, FormatError> {
        Ok(i128::from_le_bytes(self.array(what)?))
    }

    /// A little-endian IEEE-754 `f32` (bit-exact).
    pub fn f32(&mut self, what: &'static str) -> Result<f32, FormatError> {
        Ok(f32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian IEEE-754 `f64` (bit-exact).
    pub fn f64(&mut self, what: &'static str) -> Result<f64, FormatError> {
        Ok(f64::from_le_bytes(self.array(what)?))
    }

    /// A boolean byte: exactly 0 or 1.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, FormatError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(FormatError::Malformed(format!("{what}: boolean byte {b} is neither 0 nor 1"))),
        }
    }

    /// A u32 element count, checked against `max` and against the bytes
    /// remaining (each element takes at least `min_elem_bytes`), so that
    /// `Vec::with_capacity(count)` is bounded by the input size.
    pub fn count(
        &mut self,
        what: &'static str,
        min_elem_bytes: usize,
        max: usize,
    ) -> Result<usize, FormatError> {
        let n = self.u32(what)?;
        let n = usize::try_from(n).map_err(|_| FormatError::TooLarge {
            what,
            len: u64::from(n),
            max: len_u64(max),
        })?;
        if n > max {
            return Err(FormatError::TooLarge { what, len: len_u64(n), max: len_u64(max) });
        }
        let needed = n.saturating_mul(min_elem_bytes.max(1));
        let available = self.remaining();
        if needed > available {
            return Err(FormatError::Truncated {
                what,
                needed: len_u64(needed),
                available: len_u64(available),
            });
        }
        Ok(n)
    }

    /// A u32-length-prefixed UTF-8 string of at most `max` bytes.
    pub fn str(&mut self, what: &'static str, max: usize) -> Result<&'a str, FormatError> {
        let n = self.count(what, 1, max)?;
        let b = self.bytes(what, n)?;
        std::str::from_utf8(b).map_err(|e| FormatError::Malformed(format!("{what}: invalid UTF-8: {e}")))
    }

    /// Succeed only if every byte was consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), FormatError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(FormatError::TrailingBytes { what, extra: len_u64(extra) }),
        }
    }
}

/// An append-only little-endian writer.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// An empty writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer { buf: Vec::with_capacity(n) }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes written so far.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// A `u8`.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// A boolean as one byte (0 or 1).
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `i128`.
    pub fn i128(&mut self, v: i128) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `f32` (bit-exact).
    pub fn f32(&mut self, v: f32) {
        self.bytes(&v.to_le_bytes());
    }

    /// A little-endian `f64` (bit-exact).
    pub fn f64(&mut self, v: f64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Overwrite 4 bytes at `at` with a little-endian `u32` (for checksums
    /// and lengths patched in after the fact). Out-of-range `at` is ignored.
    pub fn patch_u32(&mut self, at: usize, v: u32) {
        if let Some(dst) = self.buf.get_mut(at..at.saturating_add(4)) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// Overwrite 8 bytes at `at` with a little-endian `u64`. Out-of-range
    /// `at` is ignored.
    pub fn patch_u64(&mut self, at: usize, v: u64) {
        if let Some(dst) = self.buf.get_mut(at..at.saturating_add(8)) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// The written bytes.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_little_endian_fixed_width() {
        let mut w = Writer::new();
        w.u8(7);
        w.u16(0x0102);
        w.u32(0x0304_0506);
        w.u64(0x0708_090a_0b0c_0d0e);
        w.i128(-2);
        w.f32(1.5);
        w.f64(-0.25);
        w.bool(true);
        let bytes = w.into_inner();
        assert_eq!(&bytes[..7], &[7, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03]);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x0102);
        assert_eq!(r.u32("c").unwrap(), 0x0304_0506);
        assert_eq!(r.u64("d").unwrap(), 0x0708_090a_0b0c_0d0e);
        assert_eq!(r.i128("e").unwrap(), -2);
        assert_eq!(r.f32("f").unwrap(), 1.5);
        assert_eq!(r.f64("g").unwrap(), -0.25);
        assert!(r.bool("h").unwrap());
        r.finish("all").unwrap();
    }

    #[test]
    fn reader_reports_truncation_without_consuming() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u32("x"), Err(FormatError::Truncated { what: "x", needed: 4, available: 3 }));
        assert_eq!(r.remaining(), 3);
        assert_eq!(r.u16("y").unwrap(), 0x0201);
        assert_eq!(r.finish("obj"), Err(FormatError::TrailingBytes { what: "obj", extra: 1 }));
    }

    #[test]
    fn counts_are_checked_against_cap_and_remaining_bytes_before_allocation() {
        // Declares u32::MAX elements in a 4-byte buffer.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(r.clone().count("n", 1, usize::MAX), Err(FormatError::Truncated { .. })));
        assert!(matches!(
            r.count("n", 1, 10),
            Err(FormatError::TooLarge { len: 4_294_967_295, max: 10, .. })
        ));
        // 3 elements of at least 2 bytes need 6 bytes.
        let mut r = Reader::new(&[3, 0, 0, 0, 1, 2, 3, 4, 5]);
        assert!(matches!(r.count("n", 2, 10), Err(FormatError::Truncated { needed: 6, available: 5, .. })));
    }

    #[test]
    fn strings_must_be_utf8_and_bool_bytes_canonical() {
        let mut r = Reader::new(&[2, 0, 0, 0, 0xc3, 0x28]);
        assert!(matches!(r.str("s", 100), Err(FormatError::Malformed(_))));
        let mut r = Reader::new(&[2]);
        assert!(matches!(r.bool("b"), Err(FormatError::Malformed(_))));
    }
}
