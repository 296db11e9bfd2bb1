//! Moving immutable objects between the node's store and the sync remote.
//!
//! Invariants:
//! - Every object is checked against the length and crc32c its manifest
//!   records before it is written to the other side, so a damaged byte is
//!   never propagated (the copy fails and the round reports it).
//! - Objects are immutable and their keys unique, so a copy is idempotent: a
//!   crash in the middle leaves objects no manifest references yet, which the
//!   next copy skips or writes again with the same bytes.
//! - What counts as present depends on the direction ([`Check`]). Downloads
//!   trust only a HEAD of the node's own store, made for every copy (local
//!   compaction deletes objects this process downloaded earlier), and not
//!   an object whose write failed there (`Store::holds_durably`: present is
//!   not durable after a failed fsync; it is written again). Uploads trust only what the
//!   caller knows the remote's newest manifest references, and what this
//!   process uploaded within the last `fresh` interval: anything else is
//!   sent again, because the remote sweep may delete an unreferenced object
//!   at any time once it is older than its grace period (sending it again
//!   resets its age).
//! - At most [`CONCURRENCY`] objects are in flight; one larger than
//!   [`STREAM_ABOVE`] is streamed in parts (`store::copy`), so memory stays
//!   bounded (about 4 × 16 MiB) whatever the object sizes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};

use crate::engine::EngineError;
use crate::format::manifest::{Manifest, ObjectRef};
use crate::store::copy::CopyError;
use crate::store::Store;

/// Objects copied at once.
pub const CONCURRENCY: usize = 4;
/// Objects larger than this are streamed in parts (`Store::copy_verified`)
/// instead of being held whole.
pub const STREAM_ABOVE: u64 = 8 << 20;

/// Every object a manifest references, with its recorded length and crc32c.
pub fn object_refs(m: &Manifest) -> Vec<ObjectRef> {
    m.object_refs()
}

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    /// Objects written to the destination.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// How a [`Transfer`] decides that the destination holds an object.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Ask the destination (HEAD).
    Head,
    /// Trust the caller's `known` set and this process's uploads younger than this.
    Known {
        /// How long an upload of this process is trusted.
        fresh: Duration,
    },
}

/// Copies objects from one store to another, remembering what it wrote.
#[derive(Debug)]
pub struct Transfer {
    from: Store,
    to: Store,
    check: Check,
    written: Mutex<HashMap<String, Instant>>,
}

impl Transfer {
    /// Copies from `from` to `to`.
    pub fn new(from: Store, to: Store, check: Check) -> Self {
        Transfer { from, to, check, written: Mutex::new(HashMap::new()) }
    }

    /// The objects of `refs` not known to be on the destination (no request made).
    pub fn unknown<'a>(&self, refs: &'a [ObjectRef], known: &HashSet<String>) -> Vec<&'a ObjectRef> {
        let written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = |k: &str| match (self.check, written.get(k)) {
            (_, None) => false,
            // The node's own GC deletes objects at any time: ask every time.
            (Check::Head, Some(_)) => false,
            (Check::Known { fresh }, Some(at)) => at.elapsed() < fresh,
        };
        refs.iter().filter(|r| !known.contains(&r.key) && !fresh(&r.key)).collect()
    }

    /// Copy every object of `refs` the destination may lack (`known`: keys
    /// the destination certainly holds).
    pub async fn copy_missing(
        &self,
        refs: &[ObjectRef],
        known: &HashSet<String>,
    ) -> Result<Copied, EngineError> {
        let todo: Vec<ObjectRef> = self.unknown(refs, known).into_iter().cloned().collect();
        let copies: Vec<_> = todo.iter().map(|r| self.copy_one(r)).collect();
        let sent: Vec<Option<u64>> =
            futures::stream::iter(copies).buffer_unordered(CONCURRENCY).try_collect().await?;
        let sent: Vec<u64> = sent.into_iter().flatten().collect();
        Ok(Copied { objects: sent.len() as u64, bytes: sent.iter().sum() })
    }

    /// Copy one object unless present; returns the bytes sent (None: present).
    async fn copy_one(&self, r: &ObjectRef) -> Result<Option<u64>, EngineError> {
        // Present is not enough on a local directory: an object whose write
        // failed here (an fsync, maybe) is written again in full.
        if matches!(self.check, Check::Head) && self.to.holds_durably(&r.key).await? {
            self.remember(&r.key);
            return Ok(None);
        }
        self.copy_over(r).await.map(Some)
    }

    /// Copy one object whether or not the destination holds it (a damaged
    /// copy there is replaced), verified against its manifest entry; returns
    /// the bytes sent.
    pub async fn copy_over(&self, r: &ObjectRef) -> Result<u64, EngineError> {
        let mismatch = || {
            EngineError::corrupted(format!(
                "object {} does not match its manifest (length or crc32c) in {}; not copied",
                r.key,
                self.from.description()
            ))
        };
        if r.bytes > STREAM_ABOVE {
            self.from.copy_verified(&r.key, &self.to, r.bytes, r.crc32c).await.map_err(|e| match e {
                CopyError::Store(e) => EngineError::from(e),
                CopyError::Mismatch { .. } => mismatch(),
            })?;
        } else {
            let bytes = self.from.get(&r.key).await?;
            if bytes.len() as u64 != r.bytes || crc32c::crc32c(&bytes) != r.crc32c {
                return Err(mismatch());
            }
            self.to.put(&r.key, bytes).await?;
        }
        self.remember(&r.key);
        Ok(r.bytes)
    }

    fn remember(&self, key: &str) {
        let mut written = self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        written.insert(key.to_owned(), Instant::now());
    }
}
