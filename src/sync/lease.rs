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
//! - The epochs are one [`SeqLog`] (`store/seqlog.rs`, no tombstones): the
//!   conditional create and its ambiguous outcome (an epoch found holding our
//!   node id is ours) are that type's. An epoch of ours whose create failed
//!   on a local-directory remote (durability unknown, `store/durability.rs`)
//!   is not held on: the lease is renewed at the next epoch, written in full.
//! - The record is [`Lease`] (`format/lease.rs`); a damaged newest lease
//!   counts as expired (a damaged object must not block pushes forever).

use bytes::Bytes;

use crate::engine::EngineError;
use crate::layout::{NsPath, Series};
use crate::store::seqlog::{Created, SeqError, SeqLog};
use crate::store::{Store, StoreError};

pub use crate::format::lease::Lease;

/// Leases kept behind the newest (older epochs are deleted by their holder).
const KEEP: usize = 2;

/// Where a namespace's leases live in the remote (`NsPath::lease_dir`).
pub fn prefix(path: &NsPath) -> String {
    path.lease_dir()
}

/// Where the remote sweep's lease lives (one sweeping node at a time).
pub const SWEEP_PREFIX: &str = crate::layout::SWEEP_LEASE_DIR;

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
    let log = SeqLog::new(remote.clone(), Series::leases(prefix));
    let epochs = log.list().await?.live;
    let newest = match epochs.last() {
        Some(&e) => Some((e, log.get(e).await?.and_then(|b| Lease::decode(&b).ok()))),
        None => None,
    };
    let next_epoch = match &newest {
        Some((_, Some(l))) if l.node != node && l.expires_at_ms > now => return Ok(Held::Theirs(l.clone())),
        Some((e, Some(l)))
            if l.node == node
                && l.expires_at_ms > now + ttl_ms / 2
                && !remote.durability_unknown(&log.key(*e)) =>
        {
            return Ok(Held::Ours(*e))
        }
        Some((e, _)) => e + 1,
        None => 1,
    };
    let lease = Lease { epoch: next_epoch, node: node.to_owned(), expires_at_ms: now.saturating_add(ttl_ms) };
    let ours = |found: &[u8]| Ok(Lease::decode(found)?.node == node);
    let unreadable = || EngineError::unavailable(format!("lease {prefix}{next_epoch:020} is unreadable"));
    match log.create(next_epoch, Bytes::from(lease.encode()), ours).await {
        Ok(Created::Won) => {
            for old in epochs.iter().rev().skip(KEEP) {
                if let Err(e) = log.delete(*old).await {
                    tracing::debug!(lease = prefix, epoch = old, error = %e, "old lease not deleted");
                }
            }
            Ok(Held::Ours(next_epoch))
        }
        Ok(Created::Lost(theirs)) => Lease::decode(&theirs).map(Held::Theirs).map_err(|_| unreadable()),
        // A lease series has no tombstones: nothing fences an epoch but the next one.
        Ok(Created::Fenced) => Err(EngineError::internal(format!("lease {prefix} reported fenced"))),
        Err(SeqError::Unreadable { source, .. }) => Err(unreadable().with_source(source)),
        // The contested epoch vanished between the create and the read back.
        Err(SeqError::Store(e @ StoreError::NotFound(_))) => Err(unreadable().with_source(e)),
        Err(SeqError::Store(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn an_epoch_whose_create_failed_on_a_local_remote_is_not_held_on() {
        use crate::store::fault::{Fault, FaultStore};
        let dir = tempfile::tempdir().unwrap();
        let fault = std::sync::OnceLock::new();
        let remote = Store::local(dir.path()).unwrap().with_inner(|inner| {
            let f = FaultStore::new(inner);
            let _ = fault.set(f.clone());
            f
        });
        let p = &prefix(&NsPath::new("o", "p", "n").unwrap());
        // Epoch 1 lands, its create reports an error (an fsync): not taken.
        fault.get().unwrap().fail_next_put("00000000000000000001", Fault::After);
        assert!(acquire(&remote, p, "a", 1_000, 100).await.is_err());
        // It is ours and fresh, but of unknown durability: the next epoch.
        assert_eq!(acquire(&remote, p, "a", 1_010, 100).await.unwrap(), Held::Ours(2));
        assert_eq!(acquire(&remote, p, "a", 1_020, 100).await.unwrap(), Held::Ours(2), "durable: kept");
    }
}
