//! What a node remembers about each synced namespace (`meta.redb` table
//! `sync`, `storage-format.md` 6.1) and what it reports (`GET /v1/sync/status`).
//!
//! Invariants:
//! - A [`SyncRecord`] names a pair of generations that held the same
//!   documents: `local_generation` here and `remote_generation` in the
//!   remote. It is written only after the remote commit (push) or the local
//!   commit (pull) that made them equal, so a crash leaves the previous pair,
//!   and the next round recognises its own landed push by the manifest's
//!   `origin` instead of calling it a conflict.
//! - The record is 4 + 1 + 4 × 8 + 4 bytes, little-endian, with a crc32c of
//!   everything before it; a record that fails the check is treated as
//!   absent (the next round starts from scratch, which only re-uploads).

use serde::Serialize;

use crate::codec::{FormatError, Reader, Writer};

const MAGIC: &[u8; 4] = b"TPSY";
const VERSION: u8 = 1;

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
        w.bytes(MAGIC);
        w.u8(VERSION);
        for v in [self.local_generation, self.remote_generation, self.wal_floor, self.synced_at_ms] {
            w.u64(v);
        }
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode, checking magic, version and checksum.
    pub fn decode(b: &[u8]) -> Result<SyncRecord, FormatError> {
        let body_len =
            b.len().checked_sub(4).ok_or(FormatError::Malformed("sync record too short".into()))?;
        let mut r = Reader::new(b);
        if r.bytes("sync record magic", 4)? != MAGIC {
            return Err(FormatError::Malformed("sync record magic".into()));
        }
        if r.u8("sync record version")? != VERSION {
            return Err(FormatError::Malformed("sync record version".into()));
        }
        let rec = SyncRecord {
            local_generation: r.u64("local_generation")?,
            remote_generation: r.u64("remote_generation")?,
            wal_floor: r.u64("wal_floor")?,
            synced_at_ms: r.u64("synced_at_ms")?,
        };
        let crc = r.u32("sync record crc32c")?;
        r.finish("sync record")?;
        if crc != crc32c::crc32c(&b[..body_len]) {
            return Err(FormatError::Malformed("sync record checksum".into()));
        }
        Ok(rec)
    }
}

/// A conflict met and how it was resolved.
#[derive(Debug, Clone, Serialize)]
pub struct ConflictReport {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// `rebase` or `branch`: what was done.
    pub resolution: String,
    /// The remote generation met.
    pub remote_generation: u64,
    /// The local generation that carried the unsynced writes.
    pub local_generation: u64,
    /// Rebase: the requests re-applied; branch: the branch published.
    pub detail: String,
}

/// Conflicts kept per namespace in the status (the oldest are dropped).
pub const MAX_CONFLICTS_REPORTED: usize = 16;

/// One namespace in `GET /v1/sync/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NamespaceStatus {
    /// `org/project/ns`'s namespace name.
    pub namespace: String,
    /// push | pull | both.
    pub mode: &'static str,
    /// rebase | branch.
    pub on_conflict: &'static str,
    /// The newest local generation seen.
    pub local_generation: u64,
    /// The newest remote generation seen.
    pub remote_generation: u64,
    /// Objects of the local generation not known to be in the remote.
    pub pending_objects: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Seconds since the namespace was last in sync, while it is not (0 when in sync).
    pub lag_secs: u64,
    /// When the last round for this namespace succeeded (ms since the epoch).
    pub last_success: Option<u64>,
    /// The last round's error, if it failed.
    pub last_error: Option<String>,
    /// Conflicts met, newest last.
    pub conflicts: Vec<ConflictReport>,
    /// Objects and bytes this node uploaded for the namespace since it started.
    pub uploaded_objects: u64,
    /// See `uploaded_objects`.
    pub uploaded_bytes: u64,
    /// Objects and bytes this node downloaded for the namespace since it started.
    pub downloaded_objects: u64,
    /// See `downloaded_objects`.
    pub downloaded_bytes: u64,
    /// The node holding the namespace's push lease (None: no lease in use).
    pub lease_holder: Option<String>,
    #[serde(skip)]
    /// The org/project the namespace belongs to (for scoping by key).
    pub project: String,
}

/// The remote in `GET /v1/sync/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RemoteStatus {
    /// The remote URL.
    pub url: String,
    /// Whether the last request to it succeeded (None: not tried yet).
    pub reachable: Option<bool>,
    /// When a request to it last succeeded (ms since the epoch).
    pub last_contact: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_damage_is_refused() {
        let r = SyncRecord { local_generation: 7, remote_generation: 3, wal_floor: 12, synced_at_ms: 99 };
        let b = r.encode();
        assert_eq!(b.len(), 4 + 1 + 32 + 4);
        assert_eq!(SyncRecord::decode(&b).unwrap(), r);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x20;
            assert!(SyncRecord::decode(&bad).is_err(), "flip at {i}");
        }
        assert!(SyncRecord::decode(&b[..b.len() - 1]).is_err());
        assert!(SyncRecord::decode(&[]).is_err());
    }
}
