//! One protocol for objects named by a sequence number (`storage-format.md`
//! 5.1–5.3, 9.4, 12.4): manifest generations and their GC tombstones, sync
//! lease epochs. A [`SeqLog`] is one series ([`Series`], `layout.rs`) on one
//! [`Store`]; it owns naming, the conditional create and the resolution of
//! its ambiguous outcomes, fencing by tombstone, collection (tombstone, then
//! delete) and finding the newest object by probing `n + 1`. What an object
//! holds, and which one to create, stays with the caller.
//!
//! Invariants:
//! - Keys come from the series only: `{dir}{n:020}{suffix}`, tombstones
//!   `{dir}{n:020}{tombstone suffix}`; this module adds no key of its own.
//! - Every conditional create the daemon makes ([`Store::put_if_absent`])
//!   is made here: no module outside `store/` calls it.
//! - [`SeqLog::create`]: a create that reported an error is retried with the
//!   same bytes (at most [`CREATE_ATTEMPTS`] tries); an `AlreadyExists` is
//!   read back and judged by the caller's content test (a commit id, a node
//!   id). An object judged ours is acknowledged only after
//!   [`Store::sync_entry`] made its directory entry durable (visible is not
//!   durable on a local directory whose fsync failed). On a local directory
//!   the earlier try's error already left the key's durability unknown
//!   (`store/durability.rs`), and `sync_entry` refuses it: the outcome is
//!   unknown and the create fails, however a later fsync of the directory
//!   would go. Only a new object (the caller's next number) is trusted again.
//! - A tombstone found present is held to the same rule before the object it
//!   fences is deleted: one whose own create failed is not trusted but
//!   written again in full (deleted, created afresh; the object still exists
//!   meanwhile, so nothing can land at its number), else it is made durable.
//! - Fencing: in a series with tombstones, an object created (or found ours)
//!   is checked against its tombstone, and when one exists the object is a
//!   zombie that no reader considers: it is deleted (best effort) and the
//!   create reports [`Created::Fenced`].
//! - Collection creates the tombstone before it deletes the object, and the
//!   probe sends the HEAD of `{n}`'s tombstone only once the GET of `{n}`
//!   answered ([`ProbeGet::get`] is the only way to a [`ProbeHead`]), so a
//!   number collected meanwhile is always seen as one or the other. Callers
//!   collect in increasing order, which keeps live numbers contiguous and the
//!   probe conclusive.

use std::future::Future;

use bytes::Bytes;

use super::{CreateOutcome, Store, StoreError};
use crate::codec::FormatError;
use crate::layout::Series;

/// How many times a conditional create that reported an error is tried.
pub const CREATE_ATTEMPTS: usize = 3;

/// What a conditional create of object `n` ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The object is ours: created now, or by an earlier try whose answer
    /// was lost (judged by content and made durable).
    Won,
    /// Another writer's object holds the number (its bytes).
    Lost(Bytes),
    /// Our object landed on a number that was already collected: a zombie,
    /// deleted again. The caller retries at a fresh number.
    Fenced,
}

/// Why a sequence-log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SeqError {
    /// The store failed (the outcome of a create may be unknown).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An object found at a contested number could not be judged.
    #[error("object {key} at a contested number is unreadable: {source}")]
    Unreadable {
        /// The key.
        key: String,
        /// Why it did not decode.
        #[source]
        source: FormatError,
    },
}

/// Where [`SeqLog::newest`] starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start<T> {
    /// Object `n`, already read and opened.
    Known(u64, T),
    /// A hint: object `n` may be the newest (0: no hint).
    At(u64),
    /// No hint: list.
    Unknown,
}

/// How a caller turns an object's bytes into its value while probing.
pub trait OpenSeq: Sync {
    /// The value of one object.
    type Item: Send + Sync;
    /// The caller's error (store errors convert into it).
    type Error: From<StoreError> + Send;
    /// Decode and check object `n`; `prev` is the object before it, when
    /// one was opened (to reuse what they share).
    fn open(
        &self,
        n: u64,
        bytes: Bytes,
        prev: Option<&Self::Item>,
    ) -> impl Future<Output = Result<Self::Item, Self::Error>> + Send;
}

/// One series of sequence-numbered objects on one store.
#[derive(Debug, Clone)]
pub struct SeqLog {
    store: Store,
    series: Series,
}

/// What a listing of a series found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Numbers with an object and no tombstone, increasing.
    pub live: Vec<u64>,
    /// Numbers with both an object and a tombstone (fenced zombies,
    /// half-collected objects), increasing.
    pub dead: Vec<u64>,
    /// Numbers with a tombstone, increasing.
    pub tombstones: Vec<u64>,
}

impl SeqLog {
    /// The series `series` on `store`.
    pub fn new(store: Store, series: Series) -> SeqLog {
        SeqLog { store, series }
    }

    /// The series.
    pub fn series(&self) -> &Series {
        &self.series
    }

    /// The key of object `n`.
    pub fn key(&self, n: u64) -> String {
        self.series.key(n)
    }

    /// Object `n` (None: not in the store).
    pub async fn get(&self, n: u64) -> Result<Option<Bytes>, StoreError> {
        self.store.get_opt(&self.series.key(n)).await
    }

    /// Delete object `n` (a missing object is not an error).
    pub async fn delete(&self, n: u64) -> Result<(), StoreError> {
        self.store.delete(&self.series.key(n)).await
    }

    /// Whether object `n + 1` exists (one HEAD): the short check of a reader
    /// that holds `n` and only asks whether it is still the newest.
    pub async fn successor_exists(&self, n: u64) -> Result<bool, StoreError> {
        self.store.exists(&self.series.key(n.saturating_add(1))).await
    }

    /// Whether object `n` is tombstoned (one HEAD; never, without tombstones).
    pub async fn tombstoned(&self, n: u64) -> Result<bool, StoreError> {
        match self.series.tombstone_key(n) {
            Some(key) => self.store.exists(&key).await,
            None => Ok(false),
        }
    }

    /// One LIST of the series' directory.
    pub async fn list(&self) -> Result<Listing, StoreError> {
        let listed = self.store.list(self.series.dir()).await?;
        let mut tombstones: Vec<u64> =
            listed.iter().filter_map(|o| self.series.tombstone_number_of(&o.key)).collect();
        tombstones.sort_unstable();
        let mut out = Listing::default();
        for n in listed.iter().filter_map(|o| self.series.number_of(&o.key)) {
            match tombstones.binary_search(&n) {
                Ok(_) => out.dead.push(n),
                Err(_) => out.live.push(n),
            }
        }
        out.live.sort_unstable();
        out.dead.sort_unstable();
        out.tombstones = tombstones;
        Ok(out)
    }

    // ----- creating -----------------------------------------------------------

    /// Conditional create of object `n` holding `bytes`, its ambiguous
    /// outcomes resolved by `is_ours` (given the bytes found at `n`), then
    /// the fence (see the module invariants).
    pub async fn create(
        &self,
        n: u64,
        bytes: Bytes,
        is_ours: impl Fn(&[u8]) -> Result<bool, FormatError>,
    ) -> Result<Created, SeqError> {
        let key = self.series.key(n);
        if let Some(theirs) = self.create_resolved(&key, bytes, is_ours).await? {
            return Ok(Created::Lost(theirs));
        }
        if !self.tombstoned(n).await? {
            return Ok(Created::Won);
        }
        if let Err(e) = self.store.delete(&key).await {
            tracing::warn!(key, error = %e, "could not remove a fenced object; it leaks until repair");
        }
        Ok(Created::Fenced)
    }

    /// The conditional create, retried on errors. None: ours; else the bytes
    /// of another writer's object.
    async fn create_resolved(
        &self,
        key: &str,
        bytes: Bytes,
        is_ours: impl Fn(&[u8]) -> Result<bool, FormatError>,
    ) -> Result<Option<Bytes>, SeqError> {
        let mut last_err = None;
        for _ in 0..CREATE_ATTEMPTS {
            match self.store.put_if_absent(key, bytes.clone()).await {
                Ok(CreateOutcome::Created) => return Ok(None),
                Ok(CreateOutcome::AlreadyExists) => {
                    let found = self.store.get(key).await?;
                    let ours = is_ours(&found)
                        .map_err(|source| SeqError::Unreadable { key: key.to_owned(), source })?;
                    if !ours {
                        return Ok(Some(found));
                    }
                    // Ours, from a try that reported an error (maybe an
                    // fsync): never trusted before the entry is durable, and
                    // never on a local directory where that try failed
                    // (`sync_entry` refuses it; a second fsync proves nothing).
                    self.store.sync_entry(key).await?;
                    return Ok(None);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err
            .unwrap_or_else(|| StoreError::Config(format!("conditional create of {key} failed")))
            .into())
    }

    /// Collect object `n` (5.3): its tombstone `body` by conditional create
    /// (one already there means collected before), then delete the object.
    /// A series without tombstones only deletes.
    pub async fn collect(&self, n: u64, body: Bytes) -> Result<(), StoreError> {
        if let Some(key) = self.series.tombstone_key(n) {
            self.create_marker(&key, body).await?;
        }
        self.delete(n).await
    }

    /// A conditional create whose existing object is as good as ours (a
    /// tombstone: its existence is all it says), retried on errors.
    async fn create_marker(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        let mut last_err = None;
        for _ in 0..CREATE_ATTEMPTS {
            match self.store.put_if_absent(key, body.clone()).await {
                Ok(CreateOutcome::Created) => return Ok(()),
                // Left by an earlier try whose write failed: no fsync makes
                // it durable now, so it is written again in full. The object
                // it fences still exists (it is deleted only after this
                // returns), so nothing can land at its number meanwhile.
                Ok(CreateOutcome::AlreadyExists) if self.store.durability_unknown(key) => {
                    self.store.delete(key).await?;
                }
                // Collected before: durable before the object goes.
                Ok(CreateOutcome::AlreadyExists) => return self.store.sync_entry(key).await,
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| StoreError::Config(format!("conditional create of {key} failed"))))
    }

    // ----- finding the newest ------------------------------------------------

    /// The probe of the number after `n`, as two steps a caller may
    /// interleave with its own requests (the cold reader sends its reads
    /// beside them): GET `{n+1}`, then — only once that answered — HEAD of
    /// `{n+1}`'s tombstone.
    pub fn probe_after(&self, n: u64) -> ProbeGet {
        ProbeGet { log: self.clone(), n: n.saturating_add(1) }
    }

    /// The newest live object from `start` (5.2): the object at the hint
    /// (listing when there is none or it is gone), then probing `n + 1`
    /// until a number has no object; a tombstoned number makes it list and
    /// jump to the highest live object above it. Returns its number and value.
    pub async fn newest<O: OpenSeq>(
        &self,
        start: Start<O::Item>,
        opener: &O,
    ) -> Result<Option<(u64, O::Item)>, O::Error> {
        let mut best = match start {
            Start::Known(n, item) => Some((n, item)),
            Start::At(n) if n > 0 => self.open(n, None, opener).await?,
            _ => None,
        };
        if best.is_none() {
            if let Some(n) = self.newest_listed(0).await? {
                best = self.open(n, None, opener).await?;
            }
        }
        let Some(mut current) = best else { return Ok(None) };
        loop {
            let (next, head) = self.probe_after(current.0).get().await?;
            let n = head.number();
            let next = match next {
                Some(bytes) => Some(opener.open(n, bytes, Some(&current.1)).await?),
                None => None,
            };
            if !head.tombstoned().await? {
                match next {
                    Some(item) => current = (n, item),
                    None => return Ok(Some(current)),
                }
                continue;
            }
            // `n` was collected (or is a fenced zombie), so newer objects
            // exist: jump to the newest live one by listing.
            let Some(k) = self.newest_listed(n).await? else { return Ok(Some(current)) };
            match self.open(k, Some(&current.1), opener).await? {
                Some(found) => current = found,
                None => return Ok(Some(current)),
            }
        }
    }

    /// Object `n` opened (None: not in the store).
    async fn open<O: OpenSeq>(
        &self,
        n: u64,
        prev: Option<&O::Item>,
        opener: &O,
    ) -> Result<Option<(u64, O::Item)>, O::Error> {
        match self.get(n).await? {
            Some(bytes) => Ok(Some((n, opener.open(n, bytes, prev).await?))),
            None => Ok(None),
        }
    }

    /// The highest live number above `above` (one LIST).
    async fn newest_listed(&self, above: u64) -> Result<Option<u64>, StoreError> {
        Ok(self.list().await?.live.into_iter().rfind(|n| *n > above))
    }
}

/// The first step of a probe: GET the object.
#[derive(Debug)]
pub struct ProbeGet {
    log: SeqLog,
    n: u64,
}

impl ProbeGet {
    /// The number probed.
    pub fn number(&self) -> u64 {
        self.n
    }

    /// GET the object; the tombstone step comes with the answer.
    pub async fn get(self) -> Result<(Option<Bytes>, ProbeHead), StoreError> {
        let found = self.log.get(self.n).await?;
        Ok((found, ProbeHead { log: self.log, n: self.n }))
    }
}

/// The second step of a probe, reachable only from the answered GET: HEAD
/// the tombstone.
#[derive(Debug)]
pub struct ProbeHead {
    log: SeqLog,
    n: u64,
}

impl ProbeHead {
    /// The number probed.
    pub fn number(&self) -> u64 {
        self.n
    }

    /// Whether the number probed is tombstoned (no request in a series
    /// without tombstones).
    pub async fn tombstoned(self) -> Result<bool, StoreError> {
        self.log.tombstoned(self.n).await
    }
}

#[cfg(test)]
#[path = "seqlog_tests.rs"]
mod tests;
