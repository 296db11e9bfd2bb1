//! Sync records: what `meta.redb`'s table `sync` keeps per synced namespace
//! (`storage-format.md` 6.1 and 12.1): the last pair of generations known to
//! hold the same documents here and in the sync remote, and the WAL floor of
//! that local generation. `sync/` decides when one is written; this module
//! only says how it is stored.
//!
//! Invariants:
//! - A record is 41 bytes: magic `TPSY` (4), version u8 (`1`), four `u64`
//!   little-endian, then the crc32c (u32 LE) of the 37 bytes before it. The
//!   bytes are those of the first release of sync (fixture
//!   `tests/fixtures/v10/sync_record.bin`).
//! - Decoding checks magic, version, length and checksum, and returns no
//!   value from a record that fails any of them.

use super::{len_u64, FormatError, Reader, Writer};

/// Magic at offset 0.
pub const SYNC_RECORD_MAGIC: &[u8; 4] = b"TPSY";
/// The version this build writes (and the only one it reads).
pub const SYNC_RECORD_VERSION: u8 = 1;
/// Length of a version 1 record.
pub const SYNC_RECORD_LEN: usize = 4 + 1 + 4 * 8 + 4;
const WHAT: &str = "sync record";

/// The last point at which a namespace was in sync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncRecord {
    /// The local generation that was in sync (0: never).
    pub local_generation: u64,
    /// The remote generation that held the same documents (0: never).
    pub remote_generation: u64,
    /// `next_wal_seq` of that local generation: local WAL batches from this
    /// seq on are the writes the remote has not seen.
    pub wal_floor: u64,
    /// When (ms since the Unix epoch).
    pub synced_at_ms: u64,
}

impl SyncRecord {
    /// Encode (6.1).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(SYNC_RECORD_MAGIC);
        w.u8(SYNC_RECORD_VERSION);
        for v in [self.local_generation, self.remote_generation, self.wal_floor, self.synced_at_ms] {
            w.u64(v);
        }
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode, checking magic, version, length and checksum.
    pub fn decode(b: &[u8]) -> Result<SyncRecord, FormatError> {
        let mut r = Reader::new(b);
        if r.bytes("sync record magic", SYNC_RECORD_MAGIC.len())? != SYNC_RECORD_MAGIC {
            return Err(FormatError::BadMagic { what: WHAT });
        }
        let version = r.u8("sync record version")?;
        if version != SYNC_RECORD_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: WHAT,
                version: u64::from(version),
                supported: u64::from(SYNC_RECORD_VERSION),
            });
        }
        let rec = SyncRecord {
            local_generation: r.u64("local_generation")?,
            remote_generation: r.u64("remote_generation")?,
            wal_floor: r.u64("wal_floor")?,
            synced_at_ms: r.u64("synced_at_ms")?,
        };
        let stored = r.u32("sync record crc32c")?;
        r.finish(WHAT)?;
        let covered = b.get(..SYNC_RECORD_LEN - 4).ok_or(FormatError::Truncated {
            what: WHAT,
            needed: len_u64(SYNC_RECORD_LEN),
            available: len_u64(b.len()),
        })?;
        let actual = crc32c::crc32c(covered);
        if stored != actual {
            return Err(FormatError::ChecksumMismatch { what: WHAT, expected: stored, actual });
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_damage_is_refused() {
        let r = SyncRecord { local_generation: 7, remote_generation: 3, wal_floor: 12, synced_at_ms: 99 };
        let b = r.encode();
        assert_eq!(b.len(), SYNC_RECORD_LEN);
        assert_eq!(SyncRecord::decode(&b).unwrap(), r);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x20;
            assert!(SyncRecord::decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..b.len() {
            assert!(SyncRecord::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(matches!(SyncRecord::decode(&long), Err(FormatError::TrailingBytes { .. })));
    }

    #[test]
    fn the_layout_is_pinned() {
        let r = SyncRecord { local_generation: 1, remote_generation: 2, wal_floor: 3, synced_at_ms: 4 };
        let b = r.encode();
        assert_eq!(&b[..5], b"TPSY\x01");
        assert_eq!(&b[5..13], &1u64.to_le_bytes());
        assert_eq!(&b[29..37], &4u64.to_le_bytes());
        assert_eq!(&b[37..], &crc32c::crc32c(&b[..37]).to_le_bytes());
    }

    #[test]
    fn another_version_is_unsupported() {
        let mut b = SyncRecord::default().encode();
        b[4] = 2;
        let crc = crc32c::crc32c(&b[..37]);
        b[37..].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(SyncRecord::decode(&b), Err(FormatError::UnsupportedVersion { version: 2, .. })));
    }
}
