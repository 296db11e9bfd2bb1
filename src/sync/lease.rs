//! The push lease: one writer per `push` namespace across nodes
//! (`storage-format.md` 12.4). Leases are immutable objects in the remote,
//! `_tidepool/sync/leases/{org}/{project}/{ns}/{epoch:020}.lease`; the one with
//! the highest epoch is the lease.
//!
//! Invariants:
//! - A lease is only ever taken by a conditional create of epoch `e + 1`
//!   after reading epoch `e`, so two nodes can never both take the same
//!   epoch; renewing is taking the next epoch too (no conditional update is
//!   needed, so every store backend works).
//! - A node takes or renews a lease only when the newest one is its own or
//!   has expired by its clock; otherwise it does not push, and reports the
//!   holder. The epoch it pushes under is recorded in the pushed manifest's
//!   `origin`.
//! - A record is 4 + 1 + 8 + 8 + 4 + node + 4 bytes, little-endian, with a
//!   crc32c of everything before it; a damaged newest lease counts as expired
//!   (a damaged object must not block pushes forever).

use bytes::Bytes;

use crate::codec::{FormatError, Reader, Writer};
use crate::engine::EngineError;
use crate::layout::NsPath;
use crate::store::{CreateOutcome, Store};

const MAGIC: &[u8; 4] = b"TPLS";
const VERSION: u8 = 1;
/// Leases kept behind the newest (older epochs are deleted by their holder).
const KEEP: usize = 2;

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
    /// Encode (12.4).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC);
        w.u8(VERSION);
        w.u64(self.epoch);
        w.u64(self.expires_at_ms);
        w.u32(u32::try_from(self.node.len()).unwrap_or(u32::MAX));
        w.bytes(self.node.as_bytes());
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.into_inner()
    }

    /// Decode, checking magic, version and checksum.
    pub fn decode(b: &[u8]) -> Result<Lease, FormatError> {
        let bad = |m: &str| FormatError::Malformed(format!("lease: {m}"));
        let body = b.len().checked_sub(4).ok_or_else(|| bad("too short"))?;
        let mut r = Reader::new(b);
        if r.bytes("lease magic", 4)? != MAGIC || r.u8("lease version")? != VERSION {
            return Err(bad("magic or version"));
        }
        let epoch = r.u64("lease epoch")?;
        let expires_at_ms = r.u64("lease expiry")?;
        let node = r.str("lease node", 128)?.to_owned();
        let crc = r.u32("lease crc32c")?;
        r.finish("lease")?;
        if crc != crc32c::crc32c(&b[..body]) {
            return Err(bad("checksum"));
        }
        Ok(Lease { epoch, node, expires_at_ms })
    }
}

/// Where a namespace's leases live in the remote.
pub fn prefix(path: &NsPath) -> String {
    format!("_tidepool/sync/leases/{}/{}/{}/", path.org(), path.project(), path.ns())
}

/// Where the remote sweep's lease lives (one sweeping node at a time).
pub const SWEEP_PREFIX: &str = "_tidepool/sync/sweep-lease/";

fn key(prefix: &str, epoch: u64) -> String {
    format!("{prefix}{epoch:020}.lease")
}

/// What [`acquire`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// This node holds the lease under this epoch.
    Ours(u64),
    /// Another node holds it.
    Theirs(Lease),
}

/// Take or renew the lease under `prefix` (a namespace's [`prefix`], or
/// [`SWEEP_PREFIX`]) for `node` until `now + ttl_ms`, unless another node
/// holds an unexpired one.
pub async fn acquire(
    remote: &Store,
    prefix: &str,
    node: &str,
    now: u64,
    ttl_ms: u64,
) -> Result<Held, EngineError> {
    let listed = remote.list(prefix).await?;
    let mut epochs: Vec<u64> = listed
        .iter()
        .filter_map(|o| o.key.rsplit('/').next()?.strip_suffix(".lease")?.parse().ok())
        .collect();
    epochs.sort_unstable();
    let newest = match epochs.last() {
        Some(&e) => Some((e, remote.get_opt(&key(prefix, e)).await?.and_then(|b| Lease::decode(&b).ok()))),
        None => None,
    };
    let next_epoch = match &newest {
        Some((_, Some(l))) if l.node != node && l.expires_at_ms > now => return Ok(Held::Theirs(l.clone())),
        Some((e, Some(l))) if l.node == node && l.expires_at_ms > now + ttl_ms / 2 => {
            return Ok(Held::Ours(*e))
        }
        Some((e, _)) => e + 1,
        None => 1,
    };
    let lease = Lease { epoch: next_epoch, node: node.to_owned(), expires_at_ms: now.saturating_add(ttl_ms) };
    match remote.put_if_absent(&key(prefix, next_epoch), Bytes::from(lease.encode())).await? {
        CreateOutcome::Created => {
            for old in epochs.iter().rev().skip(KEEP) {
                if let Err(e) = remote.delete(&key(prefix, *old)).await {
                    tracing::debug!(lease = prefix, epoch = old, error = %e, "old lease not deleted");
                }
            }
            Ok(Held::Ours(next_epoch))
        }
        CreateOutcome::AlreadyExists => {
            let theirs = remote.get_opt(&key(prefix, next_epoch)).await?.and_then(|b| Lease::decode(&b).ok());
            match theirs {
                Some(l) if l.node == node => Ok(Held::Ours(next_epoch)),
                Some(l) => Ok(Held::Theirs(l)),
                None => {
                    Err(EngineError::unavailable(format!("lease {prefix}{next_epoch:020} is unreadable")))
                }
            }
        }
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
    }

    #[tokio::test]
    async fn one_holder_until_expiry_then_the_next_epoch() {
        let remote = Store::memory();
        let p = &prefix(&NsPath::new("o", "p", "n").unwrap());
        assert_eq!(acquire(&remote, p, "a", 1_000, 100).await.unwrap(), Held::Ours(1));
        assert_eq!(acquire(&remote, p, "a", 1_010, 100).await.unwrap(), Held::Ours(1), "fresh: kept");
        assert!(
            matches!(acquire(&remote, p, "b", 1_050, 100).await.unwrap(), Held::Theirs(l) if l.node == "a")
        );
        assert_eq!(
            acquire(&remote, p, "a", 1_060, 100).await.unwrap(),
            Held::Ours(2),
            "renewed past half-life"
        );
        assert_eq!(acquire(&remote, p, "b", 1_200, 100).await.unwrap(), Held::Ours(3), "expired: taken over");
        assert!(
            matches!(acquire(&remote, p, "a", 1_210, 100).await.unwrap(), Held::Theirs(l) if l.node == "b")
        );
        for n in 0..4u64 {
            acquire(&remote, p, "b", 1_300 + n * 100, 100).await.unwrap();
        }
        assert!(remote.list(p).await.unwrap().len() <= KEEP + 1, "old epochs are deleted");
    }
}
