//! Snapshot file framing (`storage-format.md` 9.6): the 44-byte header, the
//! record header in front of each object, and the footer. The manifest and
//! the objects between them are other formats' bytes; streaming them, and
//! reading or writing files, is the engine's (`engine/snapshot/`).
//!
//! Invariants:
//! - The bytes are those of snapshot version 1 as first released (fixture
//!   `tests/fixtures/v10/snapshot.snp`): the encoders here write them, the
//!   decoders read them.
//! - A decoder checks, in this order, what 9.6 lists: the header's magic,
//!   version, crc32c, flags, then its count and manifest length against
//!   their caps; a record header's key length (before the key is read),
//!   crc32c, UTF-8 key and data length cap; the footer's magic and count.
//!   Nothing is allocated from a length these checks have not bounded.
//! - Decoding is pure: it returns a [`FormatError`] and never panics.

use super::manifest::MAX_MANIFEST_BYTES;
use super::{len_u64, FormatError, Reader, Writer};

/// Magic at offset 0.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"TIDE.SNP";
/// Magic of the footer.
pub const SNAPSHOT_END_MAGIC: &[u8; 8] = b"TIDE.END";
/// The version this build writes (and the highest it reads).
pub const SNAPSHOT_VERSION: u16 = 1;
/// Header length.
pub const SNAPSHOT_HEADER_LEN: usize = 44;
/// Footer length: magic, object count, file crc32c.
pub const SNAPSHOT_FOOTER_LEN: usize = 16;
/// The part of the footer the file crc32c covers (magic and count).
pub const SNAPSHOT_FOOTER_COVERED_LEN: usize = 12;
/// Bytes of a record header before its key (the key length).
pub const RECORD_KEY_LEN_BYTES: usize = 4;
/// Bytes of a record header after its key: data length, data crc32c, record crc32c.
pub const RECORD_TAIL_BYTES: usize = 16;
/// Longest object key.
pub const MAX_SNAPSHOT_KEY_BYTES: u32 = 1024;
/// Largest object in a snapshot (restore maps the file; nothing holds an object whole).
pub const MAX_SNAPSHOT_OBJECT_BYTES: u64 = 2 << 30;
/// Most objects in a snapshot.
pub const MAX_SNAPSHOT_OBJECTS: u32 = 10_000_000;

/// Where the header's crc32c sits (it covers every byte before it).
const HEADER_CRC_AT: usize = 40;
const WHAT: &str = "snapshot file";

/// The fixed header of a snapshot file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// Records in the file (the manifest's distinct object keys).
    pub objects: u32,
    /// The manifest's generation.
    pub generation: u64,
    /// When the snapshot was taken (informational).
    pub created_at_ms: u64,
    /// Length of the manifest bytes that follow the header.
    pub manifest_len: u32,
    /// crc32c of those bytes.
    pub manifest_crc32c: u32,
}

impl SnapshotHeader {
    /// The header of a snapshot of `objects` objects whose manifest file
    /// bytes are `manifest`; refused if a count or length exceeds its cap.
    pub fn for_manifest(
        objects: u32,
        generation: u64,
        created_at_ms: u64,
        manifest: &[u8],
    ) -> Result<SnapshotHeader, FormatError> {
        check_cap("snapshot object count", u64::from(objects), u64::from(MAX_SNAPSHOT_OBJECTS))?;
        check_cap("snapshot manifest length", len_u64(manifest.len()), len_u64(MAX_MANIFEST_BYTES))?;
        Ok(SnapshotHeader {
            objects,
            generation,
            created_at_ms,
            manifest_len: u32::try_from(manifest.len()).unwrap_or(u32::MAX),
            manifest_crc32c: crc32c::crc32c(manifest),
        })
    }

    /// The 44 header bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(SNAPSHOT_MAGIC);
        w.u16(SNAPSHOT_VERSION);
        w.u16(0);
        w.u32(self.objects);
        w.u64(self.generation);
        w.u64(self.created_at_ms);
        w.u32(self.manifest_len);
        w.u32(self.manifest_crc32c);
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode the first [`SNAPSHOT_HEADER_LEN`] bytes of a file.
    pub fn decode(h: &[u8]) -> Result<SnapshotHeader, FormatError> {
        let mut r = Reader::new(h);
        let magic: [u8; 8] = r.array("snapshot magic")?;
        if &magic != SNAPSHOT_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = r.u16("snapshot version")?;
        if version == 0 || version > SNAPSHOT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version: u64::from(version),
                supported: u64::from(SNAPSHOT_VERSION),
            });
        }
        let covered = h.get(..HEADER_CRC_AT).ok_or(FormatError::Truncated {
            what: "snapshot header",
            needed: len_u64(SNAPSHOT_HEADER_LEN),
            available: len_u64(h.len()),
        })?;
        let flags = r.u16("snapshot flags")?;
        let header = SnapshotHeader {
            objects: r.u32("snapshot object count")?,
            generation: r.u64("snapshot generation")?,
            created_at_ms: r.u64("snapshot created_at_ms")?,
            manifest_len: r.u32("snapshot manifest length")?,
            manifest_crc32c: r.u32("snapshot manifest crc32c")?,
        };
        let stored = r.u32("snapshot header crc32c")?;
        r.finish("snapshot header")?;
        let actual = crc32c::crc32c(covered);
        if stored != actual {
            return Err(FormatError::ChecksumMismatch { what: "snapshot header", expected: stored, actual });
        }
        if flags != 0 {
            return Err(FormatError::Malformed(format!("snapshot header: unknown flags {flags:#06x}")));
        }
        check_cap("snapshot object count", u64::from(header.objects), u64::from(MAX_SNAPSHOT_OBJECTS))?;
        check_cap("snapshot manifest length", u64::from(header.manifest_len), len_u64(MAX_MANIFEST_BYTES))?;
        Ok(header)
    }
}

fn check_cap(what: &'static str, len: u64, max: u64) -> Result<(), FormatError> {
    if len > max {
        return Err(FormatError::TooLarge { what, len, max });
    }
    Ok(())
}

/// One object's record header, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    /// The object's key on the source node.
    pub key: String,
    /// Length of the data that follows.
    pub data_len: u64,
    /// crc32c of that data.
    pub data_crc32c: u32,
}

/// The record header in front of an object's data: key length, key, data
/// length, data crc32c, record crc32c.
pub fn encode_record_header(key: &str, data_len: u64, data_crc32c: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
    w.bytes(key.as_bytes());
    w.u64(data_len);
    w.u32(data_crc32c);
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);
    w.into_inner()
}

/// The key length at the start of a record header (read before the key is),
/// within `1..=`[`MAX_SNAPSHOT_KEY_BYTES`].
pub fn decode_record_key_len(b: &[u8]) -> Result<u32, FormatError> {
    let mut r = Reader::new(b);
    let len = r.u32("snapshot record key length")?;
    r.finish("snapshot record key length")?;
    if len == 0 {
        return Err(FormatError::Malformed("snapshot record: empty key".into()));
    }
    check_cap("snapshot record key length", u64::from(len), u64::from(MAX_SNAPSHOT_KEY_BYTES))?;
    Ok(len)
}

/// A whole record header from its three parts as read: the 4 key-length
/// bytes, the key bytes and the [`RECORD_TAIL_BYTES`] after them.
pub fn decode_record_header(key_len: &[u8], key: &[u8], tail: &[u8]) -> Result<RecordHeader, FormatError> {
    let declared = decode_record_key_len(key_len)?;
    if len_u64(key.len()) != u64::from(declared) {
        return Err(FormatError::Malformed("snapshot record: key length mismatch".into()));
    }
    let mut r = Reader::new(tail);
    let data_len = r.u64("snapshot record data length")?;
    let data_crc32c = r.u32("snapshot record data crc32c")?;
    let stored = r.u32("snapshot record crc32c")?;
    r.finish("snapshot record header")?;
    let covered = tail.get(..RECORD_TAIL_BYTES - 4).unwrap_or_default();
    let actual = [key_len, key, covered].iter().fold(0, |crc, part| crc32c::crc32c_append(crc, part));
    if stored != actual {
        return Err(FormatError::ChecksumMismatch {
            what: "snapshot record header",
            expected: stored,
            actual,
        });
    }
    let key = std::str::from_utf8(key)
        .map_err(|_| FormatError::Malformed("snapshot record: key is not UTF-8".into()))?
        .to_owned();
    check_cap("snapshot object length", data_len, MAX_SNAPSHOT_OBJECT_BYTES)?;
    Ok(RecordHeader { key, data_len, data_crc32c })
}

/// The footer bytes the file crc32c covers (its magic and the object
/// count); the writer appends that crc32c after them.
pub fn encode_footer(objects: u32) -> Vec<u8> {
    let mut w = Writer::new();
    w.bytes(SNAPSHOT_END_MAGIC);
    w.u32(objects);
    w.into_inner()
}

/// Check the footer's magic and count (the first
/// [`SNAPSHOT_FOOTER_COVERED_LEN`] footer bytes) against the header's count.
pub fn check_footer(b: &[u8], objects: u32) -> Result<(), FormatError> {
    let mut r = Reader::new(b);
    let magic: [u8; 8] = r.array("snapshot footer magic")?;
    let count = r.u32("snapshot footer object count")?;
    r.finish("snapshot footer")?;
    if &magic != SNAPSHOT_END_MAGIC || count != objects {
        return Err(FormatError::Malformed("the footer is missing or damaged".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> SnapshotHeader {
        SnapshotHeader::for_manifest(3, 9, 1_700_000_000_000, b"{\"manifest\":1}\n").unwrap()
    }

    #[test]
    fn the_header_round_trips_in_44_bytes_and_refuses_any_flipped_bit() {
        let b = header().encode();
        assert_eq!(b.len(), SNAPSHOT_HEADER_LEN);
        assert_eq!(&b[..8], SNAPSHOT_MAGIC);
        assert_eq!(SnapshotHeader::decode(&b).unwrap(), header());
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut bad = b.clone();
                bad[i] ^= 1 << bit;
                assert!(SnapshotHeader::decode(&bad).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 0..b.len() {
            assert!(SnapshotHeader::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn header_checks_come_in_the_documented_order() {
        let reseal = |mut b: Vec<u8>| {
            let crc = crc32c::crc32c(&b[..HEADER_CRC_AT]);
            b[HEADER_CRC_AT..].copy_from_slice(&crc.to_le_bytes());
            b
        };
        let mut foreign = header().encode();
        foreign[0] = b'X';
        assert!(matches!(SnapshotHeader::decode(&foreign), Err(FormatError::BadMagic { .. })));
        for version in [0u16, 2] {
            let mut b = header().encode();
            b[8..10].copy_from_slice(&version.to_le_bytes());
            assert!(matches!(SnapshotHeader::decode(&b), Err(FormatError::UnsupportedVersion { .. })));
        }
        let mut flagged = header().encode();
        flagged[10] = 1;
        assert!(matches!(SnapshotHeader::decode(&flagged), Err(FormatError::ChecksumMismatch { .. })));
        assert!(matches!(SnapshotHeader::decode(&reseal(flagged)), Err(FormatError::Malformed(_))));
        let mut many = header().encode();
        many[12..16].copy_from_slice(&(MAX_SNAPSHOT_OBJECTS + 1).to_le_bytes());
        assert!(matches!(SnapshotHeader::decode(&reseal(many)), Err(FormatError::TooLarge { .. })));
        let mut long = header().encode();
        long[32..36].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(SnapshotHeader::decode(&reseal(long)), Err(FormatError::TooLarge { .. })));
    }

    fn split(b: &[u8]) -> (&[u8], &[u8], &[u8]) {
        let key_end = b.len() - RECORD_TAIL_BYTES;
        (&b[..RECORD_KEY_LEN_BYTES], &b[RECORD_KEY_LEN_BYTES..key_end], &b[key_end..])
    }

    #[test]
    fn a_record_header_round_trips_and_refuses_damage() {
        let b = encode_record_header("o/p/namespaces/n/wal/1.wal", 1234, 0xdead_beef);
        let (len, key, tail) = split(&b);
        let h = decode_record_header(len, key, tail).unwrap();
        assert_eq!(
            h,
            RecordHeader {
                key: "o/p/namespaces/n/wal/1.wal".into(),
                data_len: 1234,
                data_crc32c: 0xdead_beef
            }
        );
        for i in RECORD_KEY_LEN_BYTES..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            let (len, key, tail) = split(&bad);
            assert!(decode_record_header(len, key, tail).is_err(), "flip at {i}");
        }
        assert!(decode_record_key_len(&0u32.to_le_bytes()).is_err());
        assert!(decode_record_key_len(&(MAX_SNAPSHOT_KEY_BYTES + 1).to_le_bytes()).is_err());
        assert_eq!(
            decode_record_key_len(&MAX_SNAPSHOT_KEY_BYTES.to_le_bytes()).unwrap(),
            MAX_SNAPSHOT_KEY_BYTES
        );
        let huge = encode_record_header("k", MAX_SNAPSHOT_OBJECT_BYTES + 1, 0);
        let (len, key, tail) = split(&huge);
        assert!(matches!(decode_record_header(len, key, tail), Err(FormatError::TooLarge { .. })));
    }

    #[test]
    fn the_footer_must_name_the_header_count() {
        let f = encode_footer(5);
        assert_eq!(f.len(), SNAPSHOT_FOOTER_COVERED_LEN);
        check_footer(&f, 5).unwrap();
        assert!(check_footer(&f, 4).is_err());
        let mut bad = f.clone();
        bad[0] = b'X';
        assert!(check_footer(&bad, 5).is_err());
        assert!(check_footer(&f[..11], 5).is_err());
    }
}
