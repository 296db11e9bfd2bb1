//! The sync push lease record (`_tidepool/sync/leases/.../{epoch:020}.lease`,
//! `storage-format.md` 12.4): who holds one epoch of a lease, and until when.
//!
//! Layout, little-endian: magic `TPLS` (4 bytes), version u8 (`1`), u64
//! `epoch`, u64 `expires_at_ms`, u32 node-id length + the node id (UTF-8,
//! at most 128 bytes), then the crc32c (u32) of everything before it.
//!
//! Invariants:
//! - The encoding is byte for byte what every build since leases exist wrote
//!   (fixtures `tests/fixtures/v9/lease.lease`, `lease_sweep.lease`).
//! - The decoder never panics and never allocates more than the node id it
//!   returns (its length is checked against 128 and the bytes left first);
//!   magic, version, checksum and the exact length are all checked.
//! - An unknown version is refused, never guessed at.

use crate::codec::{FormatError, Reader, Writer};

/// The magic of a lease record.
pub const LEASE_MAGIC: &[u8; 4] = b"TPLS";
/// The lease record version this build writes and reads.
pub const LEASE_VERSION: u8 = 1;
/// The longest node id a record holds.
pub const LEASE_NODE_MAX: usize = 128;

/// One lease epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The fencing epoch (1, 2, ...).
    pub epoch: u64,
    /// The holder's node id.
    pub node: String,
    /// Valid until (ms since the Unix epoch, the holder's clock).
    pub expires_at_ms: u64,
}

impl Lease {
    /// Encode (see the module doc). A node id longer than
    /// [`LEASE_NODE_MAX`] encodes but does not decode: node ids are
    /// validated where they are configured.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(LEASE_MAGIC);
        w.u8(LEASE_VERSION);
        w.u64(self.epoch);
        w.u64(self.expires_at_ms);
        w.u32(u32::try_from(self.node.len()).unwrap_or(u32::MAX));
        w.bytes(self.node.as_bytes());
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode, checking magic, version, length and checksum.
    pub fn decode(b: &[u8]) -> Result<Lease, FormatError> {
        let mut r = Reader::new(b);
        if r.bytes("lease magic", 4)? != LEASE_MAGIC {
            return Err(FormatError::BadMagic { what: "lease" });
        }
        let version = r.u8("lease version")?;
        if version != LEASE_VERSION {
            let (version, supported) = (u64::from(version), u64::from(LEASE_VERSION));
            return Err(FormatError::UnsupportedVersion { what: "lease", version, supported });
        }
        let epoch = r.u64("lease epoch")?;
        let expires_at_ms = r.u64("lease expiry")?;
        let node = r.str("lease node", LEASE_NODE_MAX)?.to_owned();
        let expected = r.u32("lease crc32c")?;
        r.finish("lease")?;
        // Everything before the checksum (the reads above took 30 bytes at least).
        let actual = crc32c::crc32c(&b[..b.len().saturating_sub(4)]);
        if expected != actual {
            return Err(FormatError::ChecksumMismatch { what: "lease", expected, actual });
        }
        Ok(Lease { epoch, node, expires_at_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_round_trips_and_damage_is_refused() {
        let l = Lease { epoch: 3, node: "edge-1".into(), expires_at_ms: 99 };
        let b = l.encode();
        assert_eq!(Lease::decode(&b).unwrap(), l);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(Lease::decode(&bad).is_err(), "flip at {i}");
        }
        for cut in 0..b.len() {
            assert!(Lease::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn pins_the_layout() {
        let b = Lease { epoch: 1, node: "n".into(), expires_at_ms: 2 }.encode();
        assert_eq!(&b[..5], b"TPLS\x01");
        assert_eq!(&b[5..13], &1u64.to_le_bytes());
        assert_eq!(&b[13..21], &2u64.to_le_bytes());
        assert_eq!(&b[21..26], b"\x01\x00\x00\x00n");
        assert_eq!(&b[26..], &crc32c::crc32c(&b[..26]).to_le_bytes());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let good = Lease { epoch: 1, node: "n".into(), expires_at_ms: 2 }.encode();
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(Lease::decode(&b), Err(FormatError::BadMagic { .. })));
        let mut b = good.clone();
        b[4] = 2;
        assert!(matches!(Lease::decode(&b), Err(FormatError::UnsupportedVersion { version: 2, .. })));
        let mut b = good;
        b[6] ^= 1;
        assert!(matches!(Lease::decode(&b), Err(FormatError::ChecksumMismatch { .. })));
    }

    #[test]
    fn a_node_id_over_the_bound_is_refused_on_decode() {
        let long = Lease { epoch: 1, node: "x".repeat(LEASE_NODE_MAX + 1), expires_at_ms: 2 };
        assert!(Lease::decode(&long.encode()).is_err());
    }
}
