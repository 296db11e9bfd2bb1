//! The byte codec every on-storage layout is built on, at the bottom of the crate (it depends
//! on nothing in it): the bounded sequential [`Reader`] and little-endian [`Writer`] of the
//! `format` codecs, their [`FormatError`], and the positional little-endian reads
//! ([`u16_at`], [`u32_at`], [`u64_at`]), word copies ([`f32s_le`], [`u32s_le`]) and the in-place
//! f32 view ([`f32_slice`]) that the segment and index sections use on mmap'd bytes. `format`
//! re-exports the first three; `index` uses this module directly (it must not import `format`,
//! which imports `filter`, which imports `index`).
//!
//! Invariants:
//! - Reads never panic: every read checks the bytes remaining (or the range) first; a
//!   positional read out of range is `None`, never a wrap-around.
//! - Decoding never allocates from an unchecked length (see [`Reader`]).
//! - The positional reads are `#[inline]` and compile to one bounds check and one unaligned
//!   load, as the hand-written readers they replace did.

use std::fmt;

/// Reinterpret little-endian f32 bytes in place, if `b` is 4-byte aligned
/// in memory, a whole number of f32s long, and the host is little-endian.
pub(crate) fn f32_slice(b: &[u8]) -> Option<&[f32]> {
    if !cfg!(target_endian = "little") || b.as_ptr().align_offset(std::mem::align_of::<f32>()) != 0 {
        return None;
    }
    if !b.len().is_multiple_of(std::mem::size_of::<f32>()) {
        return None;
    }
    // SAFETY: the pointer is non-null and aligned for f32 (checked above);
    // `b.len() / 4` f32s cover exactly the `b.len()` bytes of `b`, which are
    // initialized and live (and immutable) for the lifetime of the returned
    // slice, which borrows `b`; every bit pattern is a valid f32; and on a
    // little-endian host the stored little-endian bytes are the native
    // representation.
    Some(unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) })
}

/// The little-endian f32s of `b`, copied (a trailing partial word is ignored). For sections
/// that cannot be borrowed in place (misaligned buffer or big-endian host).
#[inline]
pub fn f32s_le(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The little-endian u32s of `b`, copied (a trailing partial word is ignored).
#[inline]
pub fn u32s_le(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// The little-endian u16 at byte `at` of `b`, if the two bytes are there.
#[inline]
pub fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?).and_then(|s| <[u8; 2]>::try_from(s).ok()).map(u16::from_le_bytes)
}

/// The little-endian u32 at byte `at` of `b`, if the four bytes are there.
#[inline]
pub fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).and_then(|s| <[u8; 4]>::try_from(s).ok()).map(u32::from_le_bytes)
}

/// The little-endian u64 at byte `at` of `b`, if the eight bytes are there.
#[inline]
pub fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    b.get(at..at.checked_add(8)?).and_then(|s| <[u8; 8]>::try_from(s).ok()).map(u64::from_le_bytes)
}

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
pub(crate) fn len_u64(n: usize) -> u64 {
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

    /// The next byte, not consumed (None at the end).
    pub fn peek_u8(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
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

    /// Forgets what was written, keeping the buffer (a scratch writer reused row after row).
    pub fn clear(&mut self) {
        self.buf.clear();
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
