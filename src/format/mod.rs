//! On-storage formats: the WAL batch codec ([`wal`]), the manifest and
//! CURRENT-hint codecs ([`manifest`]), the persisted schema encoding
//! ([`schema`]), the segment and deletion-set codecs
//! ([`segment`]), the attribute/value codec both WAL documents and segment
//! rows use ([`attrs`]), the filter and schema-update codecs of WAL records
//! ([`filter`], [`schema_codec`]), the idempotency records of `meta.redb`
//! ([`idempotency`]) and sync records ([`sync_record`]), the snapshot file's
//! framing ([`snapshot`]), the GC tombstone body ([`tombstone`]), the sync
//! lease record ([`lease`]), and (re-exported from [`crate::codec`]) the bounded
//! byte [`Reader`] / little-endian [`Writer`] they are built on. `storage-format.md` at the
//! repository root is the source of truth; this code follows it.
//!
//! Invariants:
//! - Every persisted file carries a magic, a format version and a crc32c
//!   (Castagnoli). Unknown versions are refused with
//!   [`FormatError::UnsupportedVersion`], never guessed at. The one
//!   exception is the GC tombstone body ([`tombstone`]): no reader depends on
//!   it (the key's existence is its meaning), so it has a magic only.
//! - Integers are fixed-width little-endian; `usize` never reaches the disk.
//! - Decoding never panics and never allocates from an unchecked length: every
//!   length or count is checked against a cap and against the bytes remaining
//!   *before* anything is allocated, so a buffer of n bytes can make the
//!   decoder allocate O(n) memory at most.
//! - Decoding is strict: truncation, trailing bytes, unknown tags and flags,
//!   and checksum mismatches are errors.

pub mod attrs;
mod attrs_multi;
pub mod filter;
pub mod idempotency;
pub mod lease;
pub mod manifest;
mod manifest_body;
mod manifest_envelope;
pub mod schema;
pub mod schema_codec;
pub mod segment;
pub mod snapshot;
pub mod sync_record;
pub mod tombstone;
pub mod wal;

/// Current (and highest supported) version of every format in this module.
pub const FORMAT_VERSION_V1: u16 = 1;

// The byte codec lives in `crate::codec` (below `index`, which must not import
// `format`); its reader, writer and error are part of this module's API too.
use crate::codec::len_u64;
pub use crate::codec::{FormatError, Reader, Writer};

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
