//! Adopting a generation that was committed elsewhere (a sync remote) as
//! this node's next local generation, optionally with this node's unsynced
//! writes re-applied on top of it (a rebase). Used by `sync/`.
//!
//! Invariants:
//! - One local commit through the commit unit: the local namespace moves
//!   from `base` straight to "remote content (+ re-applied writes)"; a crash
//!   before the commit leaves `base` (with every unsynced WAL batch it
//!   references), a crash after it leaves the adopted generation. Nothing
//!   acknowledged is ever only in memory.
//! - The objects the remote generation references must be in the local
//!   store and counted (the caller raised them, see `sync::transfer`) before
//!   this is called; on a refused or failed commit they are released.
//! - The derive step refuses any base but the expected one: a local write
//!   that landed meanwhile makes the adoption a conflict for the next round,
//!   never a silent overwrite.
//! - A rebase re-applies each request record with the rule its batch was
//!   written under (conditions and filters re-evaluated on the adopted
//!   state, idempotency keys carried in the records); if any request fails
//!   there, nothing is committed and the caller falls back to a branch.

use std::sync::Arc;

use bytes::Bytes;

use super::commit::{CommitError, Derived, ManifestLog};
use super::{apply, clear_cached, Engine, EngineError};
use crate::engine::ErrorKind;
use crate::format::manifest::{Manifest, WalRef};
use crate::format::wal::{WalBatch, WAL_APPLY_FLAGS, WAL_FLAG_DATETIME_INSTANTS, WAL_FLAG_IN_ANY_ELEMENT};
use crate::layout::NsPath;
use crate::store::Store;

/// What [`Engine::adopt_remote`] re-applies on top of the adopted generation.
pub struct Rebase {
    /// This node's unsynced WAL batches, in seq order.
    pub batches: Vec<WalBatch>,
}

impl Engine {
    /// Commit `remote` (a manifest of the same namespace from another store,
    /// its objects already local and counted as `held`) as the next local
    /// generation after `base`, re-applying `rebase`'s writes on top of it.
    /// Returns the committed local manifest.
    pub async fn adopt_remote(
        &self,
        path: &NsPath,
        base: Option<Arc<Manifest>>,
        remote: &Manifest,
        held: &[String],
        rebase: Option<Rebase>,
    ) -> Result<Arc<Manifest>, EngineError> {
        let h = self.handle(path);
        let _g = h.commit_lock.lock().await;
        let expected = base.as_ref().map(|b| b.generation);
        let mut relabelled = remote.clone();
        relabelled.generation = expected.unwrap_or(0);
        relabelled.origin = None;
        relabelled.data_generation = None;
        let log = self.log(path);
        let (next, mut new_objects) = match rebase.filter(|r| !r.batches.is_empty()) {
            None => (self.adopted(relabelled, base.as_deref()), Vec::new()),
            Some(r) => match self.rebased(path, relabelled, base.as_deref(), r).await {
                Ok(x) => x,
                Err(e) => {
                    log.release(held.to_vec()).await;
                    return Err(e);
                }
            },
        };
        new_objects.extend_from_slice(held);
        let mut next = Some(next);
        let committed = log
            .commit(
                base,
                &new_objects,
                1,
                |_| async {},
                |b| {
                    if b.map(|m| m.generation) != expected {
                        return Ok(Derived::Refuse);
                    }
                    Ok(next.take().map_or(Derived::Refuse, Derived::Commit))
                },
            )
            .await;
        clear_cached(&h);
        match committed {
            Ok(c) => Ok(Arc::new(c.manifest)),
            Err(CommitError::Lost) => Err(EngineError::conflict(format!(
                "namespace {} was written locally while a remote generation was being adopted",
                path.ns()
            ))),
            Err(CommitError::Failed(e)) => Err(e),
        }
    }

    /// `relabelled` (numbered as the base) as the generation after it.
    fn adopted(&self, mut m: Manifest, base: Option<&Manifest>) -> Manifest {
        m.generation = base.map_or(1, |b| b.generation + 1);
        m.previous_generation = base.map(|b| b.generation);
        m.commit_id = self.ids.next_token();
        m.committed_at_ms = self.clock.now_ms();
        m
    }

    /// The adopted state with the batches re-applied, as one new WAL batch
    /// (written and counted) on top of it: the manifest to commit and the
    /// new object.
    async fn rebased(
        &self,
        path: &NsPath,
        relabelled: Manifest,
        base: Option<&Manifest>,
        r: Rebase,
    ) -> Result<(Manifest, Vec<String>), EngineError> {
        // Re-applied now, an older batch's datetimes or `In` on arrays would not do what they did.
        let older = |b: &WalBatch| {
            b.flags & WAL_FLAG_DATETIME_INSTANTS == 0
                || (b.flags & WAL_FLAG_IN_ANY_ELEMENT == 0 && b.requests.iter().any(|r| r.ops.has_in()))
        };
        if r.batches.iter().any(older) {
            return Err(EngineError::conflict("a batch written by an older build cannot be re-applied"));
        }
        let virtual_base = self.materialize(path, Arc::new(relabelled), None).await?;
        let mut state = (*virtual_base.state).clone();
        let mut records = Vec::new();
        for b in &r.batches {
            for req in &b.requests {
                let mut rec = req.clone();
                rec.counts =
                    apply::replay_request(&mut state, req, apply::DatetimeRule::Instants).map_err(|e| {
                        EngineError::conflict(format!(
                            "request of WAL batch {} does not apply on the remote: {e}",
                            b.seq
                        ))
                    })?;
                records.push(rec);
            }
        }
        let seq = virtual_base.manifest.as_ref().map_or(1, |m| m.next_wal_seq.max(1));
        let now = self.clock.now_ms();
        let wal = WalBatch { seq, created_at_ms: now, requests: records, flags: WAL_APPLY_FLAGS };
        let bytes =
            wal.try_encode().map_err(|e| EngineError::caused_by(ErrorKind::Internal, "rebased batch", e))?;
        let key = path.wal_key(seq, &self.ids.next_token());
        let wal_ref = super::write::wal_ref(&key, &wal, &bytes);
        self.store.put(&key, Bytes::from(bytes)).await?;
        let log = self.log(path);
        if let Err(e) = log.raise(std::slice::from_ref(&key)).await {
            self.delete_quietly(std::slice::from_ref(&key)).await;
            return Err(e);
        }
        let mut next =
            super::write::next_manifest(&virtual_base, path, &state, wal_ref, now, self.ids.next_token());
        next.previous_generation = base.map(|b| b.generation);
        next.generation = base.map_or(1, |b| b.generation + 1);
        Ok((next, vec![key]))
    }
}

/// The manifest log of a namespace in a sync remote (the commit unit with no
/// local books: `ManifestLog::remote`).
pub(crate) struct RemoteLog(ManifestLog);

impl RemoteLog {
    /// The log of `path` in `store`.
    pub(crate) fn new(store: Store, path: NsPath) -> Self {
        RemoteLog(ManifestLog::remote(store, path))
    }

    /// The newest live generation at or after the hint (5.2).
    pub(crate) async fn newest_from(
        &self,
        start: (Option<u64>, Option<Manifest>),
    ) -> Result<Option<Manifest>, EngineError> {
        self.0.newest_from(start).await
    }

    /// One generation's manifest as stored, its schema object not read
    /// (what a sweep needs: the keys it references).
    pub(crate) async fn read_keys_only(&self, generation: u64) -> Result<Option<Manifest>, EngineError> {
        self.0.clone().without_schemas().read(generation).await
    }

    /// Publish `m` as the generation after `base` (which must still be the
    /// newest: another writer's generation there is a conflict, never
    /// overwritten). Every object `m` references must be in the store.
    pub(crate) async fn publish_on(
        &self,
        base: Option<Arc<Manifest>>,
        mut m: Manifest,
        commit_id: String,
    ) -> Result<Manifest, EngineError> {
        let expected = base.as_ref().map(|b| b.generation);
        m.generation = expected.map_or(1, |g| g + 1);
        m.previous_generation = expected;
        m.commit_id = commit_id;
        m.data_generation = None;
        let mut m = Some(m);
        let committed = self
            .0
            .commit(
                base,
                &[],
                1,
                |_| async {},
                |b| {
                    if b.map(|b| b.generation) != expected {
                        return Ok(Derived::Refuse);
                    }
                    Ok(m.take().map_or(Derived::Refuse, Derived::Commit))
                },
            )
            .await;
        match committed {
            Ok(c) => Ok(c.manifest),
            Err(CommitError::Lost) => Err(EngineError::conflict(format!(
                "namespace {} advanced in the remote meanwhile; the next round reconciles",
                self.0.path().ns()
            ))),
            Err(CommitError::Failed(e)) => Err(e),
        }
    }
}

impl Engine {
    /// A fresh commit id / token.
    pub(crate) fn next_token(&self) -> String {
        self.ids.next_token()
    }

    /// Count objects a coming [`Engine::adopt_remote`] will reference (before
    /// they are downloaded, so a concurrent release cannot delete them).
    pub(crate) async fn hold_for_adoption(&self, path: &NsPath, keys: &[String]) -> Result<(), EngineError> {
        self.log(path).raise(keys).await
    }

    /// Give back what [`Engine::hold_for_adoption`] counted (delete at zero).
    pub(crate) async fn release_held(&self, path: &NsPath, keys: &[String]) {
        self.log(path).release(keys.to_vec()).await
    }

    /// The WAL batches of `path` that commits dropped while they were not
    /// yet synced, kept by a sync hold (`meta::sync`), in seq order.
    pub(crate) async fn sync_holds(&self, path: &NsPath) -> Result<Vec<WalRef>, EngineError> {
        let (project, prefix) = (path.project_id(), path.prefix());
        let held = super::commit::on_meta(&self.meta, move |m| m.sync_holds(&project, &prefix)).await?;
        Ok(held
            .into_iter()
            .map(|h| WalRef { key: h.key, seq: h.seq, bytes: h.bytes, crc32c: h.crc32c, ..WalRef::default() })
            .collect())
    }

    /// Give sync holds back once the remote has what they kept (delete at zero).
    pub(crate) async fn release_sync_holds(
        &self,
        path: &NsPath,
        keys: Vec<String>,
    ) -> Result<(), EngineError> {
        let project = path.project_id();
        let zeroed =
            super::commit::on_meta(&self.meta, move |m| m.release_sync_holds(&project, &keys)).await?;
        self.log(path).delete_zeroed(zeroed).await;
        Ok(())
    }
}
