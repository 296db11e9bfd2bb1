//! One namespace's part of a sync round: compare the local newest
//! generation and the remote newest generation with the last pair that was
//! in sync ([`SyncRecord`]), then push, pull, or resolve a conflict.
//!
//! | local documents changed since the record | remote changed | action |
//! | --- | --- | --- |
//! | no (maybe compacted) | no | push when the local generation moved (mode push/both), else nothing |
//! | any | no | push (mode push/both) |
//! | no | yes | pull: adopt the remote generation locally |
//! | yes | yes | conflict: `rebase` (re-apply the unsynced WAL batches on the remote's newest, then push) or `branch` (publish ours as `{ns}-conflict-{node}-{gen}`, adopt theirs) |
//!
//! Invariants:
//! - A push uploads every object first, then creates the remote generation
//!   with the commit unit on the base it read (a lost race is a conflict for
//!   the next round, never an overwrite); the record is written after.
//! - A pushed generation carries `origin {node, local_generation}`: after a
//!   crash between the remote commit and the record, the next round sees its
//!   own push and records it instead of calling it a conflict.
//! - A pull raises local refcounts for the objects it needs, downloads
//!   what is missing (verified), then commits locally through
//!   `Engine::adopt_remote`; a failure releases what it raised.
//! - A conflict never drops an acknowledged write: a rebase happens only when
//!   every unsynced WAL batch is still referenced locally or kept by a sync
//!   hold (`meta::sync`: compaction folded it) and every request applies on the remote;
//!   otherwise the node's version is published as a branch before the
//!   remote's is adopted.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::state::{ConflictReport, SyncRecord, MAX_CONFLICTS_REPORTED};
use super::transfer::object_refs;
use super::{OnConflict, Rule, Syncer};
use crate::engine::adopt::Rebase;
use crate::engine::{EngineError, ErrorKind};
use crate::format::manifest::{Lineage, Manifest, Origin, WalRef};
use crate::format::wal::WalBatch;
use crate::layout::NsPath;

/// The two sides of one namespace as a round found them.
pub(super) struct Sides {
    pub(super) local: Option<Arc<Manifest>>,
    pub(super) remote: Option<Manifest>,
    pub(super) rec: SyncRecord,
}

impl Sides {
    fn local_changed(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.content_version() > self.rec.local_generation)
    }
    fn local_moved(&self) -> bool {
        self.local.as_ref().is_some_and(|l| l.generation != self.rec.local_generation)
    }
    fn remote_changed(&self) -> bool {
        self.remote.as_ref().is_some_and(|r| r.generation > self.rec.remote_generation)
    }
}

impl Syncer {
    pub(super) async fn sync_one(&self, path: &NsPath, rule: &Rule) -> Result<(), EngineError> {
        let sides = self.read_sides(path, rule).await?;
        self.report_sides(path, rule, &sides);
        match (sides.remote_changed(), sides.local_changed()) {
            (false, _) if rule.mode.pushes() && sides.local_moved() => self.push(path, rule, &sides).await?,
            (false, _) => {}
            (true, false) => self.pull(path, &sides).await?,
            (true, true) => {
                // In push mode only the lease holder may reconcile (and then push).
                self.lease(path, rule).await?;
                self.resolve(path, rule, &sides).await?
            }
        }
        let now = self.engine.clock().now_ms();
        let after = self.read_sides(path, rule).await?;
        self.report_sides(path, rule, &after);
        self.update(path, rule, |s| {
            s.last_success = Some(now);
            s.last_error = None;
            s.lag_secs = 0;
        });
        Ok(())
    }

    /// Read both sides; recognise our own push that landed without its record.
    /// The local side is reported before the remote is asked (so a dead
    /// uplink still leaves an up-to-date pending count in the status).
    async fn read_sides(&self, path: &NsPath, rule: &Rule) -> Result<Sides, EngineError> {
        let mut rec = self.record(path).await?;
        let local = self.engine.latest_manifest(path).await?;
        self.report_sides(path, rule, &Sides { local: local.clone(), remote: None, rec });
        let hint = (rec.remote_generation > 0).then_some(rec.remote_generation);
        let remote = self.remote_log(path).newest_from((hint, None)).await;
        self.contact(remote.is_ok());
        let remote = remote?;
        match remote.as_ref() {
            None if rec.remote_generation > 0 => {
                tracing::warn!(namespace = %path, "the remote lost this namespace; pushing it again");
                rec = SyncRecord::default();
            }
            Some(r) if r.generation > rec.remote_generation => {
                if let Some(o) = r.origin.as_ref().filter(|o| o.node == self.node) {
                    rec = SyncRecord {
                        local_generation: o.local_generation,
                        remote_generation: r.generation,
                        wal_floor: r.next_wal_seq,
                        synced_at_ms: r.committed_at_ms,
                    };
                    self.save_record(path, rec).await?;
                } else if let Some(l) = local.as_deref().filter(|l| descends(l, r)) {
                    // Our own pull or rebase of `r` whose record was lost in a crash.
                    let extra = l.wal.len() > r.wal.len();
                    rec = SyncRecord {
                        local_generation: l.generation - u64::from(extra),
                        remote_generation: r.generation,
                        wal_floor: r.next_wal_seq,
                        synced_at_ms: l.committed_at_ms,
                    };
                    self.save_record(path, rec).await?;
                }
            }
            _ => {}
        }
        Ok(Sides { local, remote, rec })
    }

    fn remote_log(&self, path: &NsPath) -> crate::engine::RemoteLog {
        crate::engine::RemoteLog::new(self.remote.clone(), path.clone())
    }

    /// Upload the local generation's objects, then publish it remotely
    /// (in `push` mode only under this node's lease).
    async fn push(&self, path: &NsPath, rule: &Rule, sides: &Sides) -> Result<(), EngineError> {
        let Some(local) = sides.local.clone() else { return Ok(()) };
        let epoch = self.lease(path, rule).await?;
        let copied = self.up.copy_missing(&object_refs(&local), &remote_keys(sides.remote.as_ref())).await?;
        let base = sides.remote.clone().map(Arc::new);
        let mut m = (*local).clone();
        m.origin = Some(Origin { node: self.node.clone(), local_generation: local.generation, epoch });
        let published = self.remote_log(path).publish_on(base, m, self.engine.next_token()).await?;
        tracing::info!(namespace = %path, local = local.generation, remote = published.generation,
            objects = copied.objects, bytes = copied.bytes, "pushed");
        self.update(path, rule, |s| {
            s.uploaded_objects += copied.objects;
            s.uploaded_bytes += copied.bytes;
        });
        let rec = SyncRecord {
            local_generation: local.generation,
            remote_generation: published.generation,
            wal_floor: local.next_wal_seq,
            synced_at_ms: self.engine.clock().now_ms(),
        };
        self.save_record(path, rec).await?;
        self.give_back_holds(path, &local).await
    }

    /// After the record covers `local`, give back the holds on batches it
    /// contains (folded into its segments, or re-applied by a rebase): the
    /// remote now has their writes.
    async fn give_back_holds(&self, path: &NsPath, local: &Manifest) -> Result<(), EngineError> {
        let holds = self.engine.sync_holds(path).await?;
        let covered: Vec<String> =
            holds.into_iter().filter(|w| w.seq < local.next_wal_seq).map(|w| w.key).collect();
        if covered.is_empty() {
            return Ok(());
        }
        tracing::debug!(namespace = %path, batches = covered.len(), "released synced WAL holds");
        self.engine.release_sync_holds(path, covered).await
    }

    /// Adopt the remote's newest generation locally (optionally rebasing).
    async fn pull(&self, path: &NsPath, sides: &Sides) -> Result<(), EngineError> {
        self.adopt(path, sides, None).await.map(|_| ())
    }

    async fn adopt(
        &self,
        path: &NsPath,
        sides: &Sides,
        rebase: Option<Rebase>,
    ) -> Result<Arc<Manifest>, EngineError> {
        let Some(remote) = sides.remote.as_ref() else {
            return Err(EngineError::internal("no remote generation"));
        };
        let held = self.fetch_objects(path, sides.local.as_deref(), remote).await?;
        let rebasing = rebase.is_some();
        let adopted = self.engine.adopt_remote(path, sides.local.clone(), remote, &held, rebase).await?;
        tracing::info!(namespace = %path, remote = remote.generation, local = adopted.generation, rebasing, "adopted remote generation");
        let rec = SyncRecord {
            // After a rebase the local generation holds writes the remote
            // lacks: record the one before it, so the next step pushes.
            local_generation: if rebasing { adopted.generation - 1 } else { adopted.generation },
            remote_generation: remote.generation,
            wal_floor: remote.next_wal_seq,
            synced_at_ms: self.engine.clock().now_ms(),
        };
        self.save_record(path, rec).await?;
        if let Some(local) = sides.local.as_deref() {
            self.give_back_holds(path, local).await?;
        }
        self.engine.warm_in_background(path);
        Ok(adopted)
    }

    /// Count (then download when missing) the objects `remote` references that
    /// `local` does not; returns the keys counted.
    async fn fetch_objects(
        &self,
        path: &NsPath,
        local: Option<&Manifest>,
        remote: &Manifest,
    ) -> Result<Vec<String>, EngineError> {
        let have: HashSet<String> = local.map(|l| l.object_keys().into_iter().collect()).unwrap_or_default();
        let refs: Vec<_> = object_refs(remote).into_iter().filter(|r| !have.contains(&r.key)).collect();
        let keys: Vec<String> = refs.iter().map(|r| r.key.clone()).collect();
        self.engine.hold_for_adoption(path, &keys).await?;
        match self.down.copy_missing(&refs, &HashSet::new()).await {
            Ok(copied) => {
                self.count_download(path, copied);
                Ok(keys)
            }
            Err(e) => {
                self.engine.release_held(path, &keys).await;
                Err(e)
            }
        }
    }

    /// Both sides changed: rebase when possible (and asked for), else branch.
    async fn resolve(&self, path: &NsPath, rule: &Rule, sides: &Sides) -> Result<(), EngineError> {
        let (Some(local), Some(remote)) = (sides.local.as_ref(), sides.remote.as_ref()) else {
            return Ok(());
        };
        let at_ms = self.engine.clock().now_ms();
        let mut report = ConflictReport {
            at_ms,
            resolution: String::new(),
            remote_generation: remote.generation,
            local_generation: local.generation,
            detail: String::new(),
        };
        if rule.on_conflict == OnConflict::Rebase && rule.mode.pushes() {
            match self.unsynced_batches(path, local, &sides.rec).await {
                Ok(batches) => {
                    let requests: usize = batches.iter().map(|b| b.requests.len()).sum();
                    match self.adopt(path, sides, Some(Rebase { batches })).await {
                        Ok(_) => {
                            report.resolution = "rebase".into();
                            report.detail = format!(
                                "{requests} request(s) re-applied on remote generation {}",
                                remote.generation
                            );
                            self.record_conflict(path, rule, report);
                            let again = self.read_sides(path, rule).await?;
                            return self.push(path, rule, &again).await;
                        }
                        Err(e) if e.kind() == ErrorKind::Conflict => {
                            report.detail = format!("rebase impossible ({e}); ")
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(why) => report.detail = format!("rebase impossible ({why}); "),
            }
        }
        let branch = self.publish_branch(path, local, remote).await?;
        self.adopt(path, sides, None).await?;
        report.resolution = "branch".into();
        report.detail.push_str(&format!("this node's version published as namespace {}", branch.ns()));
        self.record_conflict(path, rule, report);
        Ok(())
    }

    /// The local WAL batches the remote has not seen, if every one is still
    /// referenced by `local` or kept by a sync hold (compaction folded it).
    async fn unsynced_batches(
        &self,
        path: &NsPath,
        local: &Manifest,
        rec: &SyncRecord,
    ) -> Result<Vec<WalBatch>, String> {
        if rec.local_generation == 0 {
            return Err("the namespace was never in sync with the remote".into());
        }
        let held = self.engine.sync_holds(path).await.map_err(|e| e.to_string())?;
        let mut unsynced: BTreeMap<u64, WalRef> =
            local.wal.iter().filter(|w| w.seq >= rec.wal_floor).map(|w| (w.seq, w.clone())).collect();
        for w in held.into_iter().filter(|w| w.seq >= rec.wal_floor && w.seq < local.next_wal_seq) {
            unsynced.entry(w.seq).or_insert(w);
        }
        let expected = local.next_wal_seq.saturating_sub(rec.wal_floor);
        if unsynced.len() as u64 != expected {
            return Err("unsynced WAL batches are missing locally".into());
        }
        let mut out = Vec::with_capacity(unsynced.len());
        for w in unsynced.values() {
            out.push(self.engine.read_wal(w).await.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    /// Publish `local` in the remote as `{ns}-conflict-{node}-{gen}`.
    async fn publish_branch(
        &self,
        path: &NsPath,
        local: &Manifest,
        remote: &Manifest,
    ) -> Result<NsPath, EngineError> {
        let name = format!("{}-conflict-{}-{}", path.ns(), self.node, local.generation);
        let branch = NsPath::new(path.org(), path.project(), &name)
            .map_err(|e| EngineError::caused_by(ErrorKind::InvalidInput, "conflict branch name", e))?;
        self.up.copy_missing(&object_refs(local), &remote_keys(Some(remote))).await?;
        let log = self.remote_log(&branch);
        let base = log.newest_from((None, None)).await?;
        if base.as_ref().and_then(|b| b.origin.as_ref()).is_some_and(|o| o.node == self.node) {
            return Ok(branch); // published by an earlier attempt of this round
        }
        let mut m = local.clone();
        m.namespace = branch.to_string();
        m.lineage = Some(Lineage { parent: path.to_string(), parent_generation: remote.generation });
        m.origin = Some(Origin { node: self.node.clone(), local_generation: local.generation, epoch: 0 });
        log.publish_on(base.map(Arc::new), m, self.engine.next_token()).await?;
        Ok(branch)
    }

    /// The lease epoch to push under: `push` mode takes or renews the
    /// namespace's lease (and refuses while another node holds it); `both`
    /// mode has several writers by design and pushes with epoch 0.
    async fn lease(&self, path: &NsPath, rule: &Rule) -> Result<u64, EngineError> {
        if rule.mode != super::Mode::Push {
            return Ok(0);
        }
        let ttl_ms =
            u64::try_from(self.cfg.interval.as_millis().saturating_mul(3)).unwrap_or(u64::MAX).max(30_000);
        let now = self.engine.clock().now_ms();
        let held =
            super::lease::acquire(&self.remote, &super::lease::prefix(path), &self.node, now, ttl_ms).await?;
        let (epoch, holder) = match held {
            super::lease::Held::Ours(e) => (Some(e), self.node.clone()),
            super::lease::Held::Theirs(l) => (None, l.node.clone()),
        };
        self.update(path, rule, |s| s.lease_holder = Some(holder.clone()));
        epoch.ok_or_else(|| {
            EngineError::conflict(format!(
                "node {holder} holds the push lease of {} (mode push allows one writer); \
                 this node's writes stay local until the lease expires or the rule changes",
                path.ns()
            ))
        })
    }

    fn count_download(&self, path: &NsPath, copied: super::transfer::Copied) {
        let mut st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = st.namespaces.get_mut(path) {
            s.downloaded_objects += copied.objects;
            s.downloaded_bytes += copied.bytes;
        }
    }

    fn record_conflict(&self, path: &NsPath, rule: &Rule, report: ConflictReport) {
        tracing::warn!(namespace = %path, resolution = %report.resolution, detail = %report.detail, "sync conflict resolved");
        self.update(path, rule, |s| {
            s.conflicts.push(report);
            let excess = s.conflicts.len().saturating_sub(MAX_CONFLICTS_REPORTED);
            s.conflicts.drain(..excess);
        });
    }

    /// Put what `sides` shows in the status: the local generation, the remote one when it was read,
    /// and the objects a push would upload (those neither the remote's newest manifest references
    /// — as read now, else as a round last read it — nor this process uploaded recently).
    pub(super) fn report_sides(&self, path: &NsPath, rule: &Rule, sides: &Sides) {
        let known = match sides.remote.as_ref() {
            Some(r) => self.remember_remote_keys(path, r),
            None => self.remembered_remote_keys(path),
        };
        let pending = sides.local.as_ref().filter(|_| rule.mode.pushes() && sides.local_moved()).map(|l| {
            let refs = object_refs(l);
            let unknown = self.up.unknown(&refs, &known);
            (unknown.len() as u64, unknown.iter().map(|r| r.bytes).sum::<u64>())
        });
        let now = self.engine.clock().now_ms();
        self.update(path, rule, |s| {
            s.local_generation = sides.local.as_ref().map_or(0, |l| l.generation);
            if let Some(r) = &sides.remote {
                s.remote_generation = r.generation;
            }
            (s.pending_objects, s.pending_bytes) = pending.unwrap_or((0, 0));
            if pending.is_some() {
                let since = match sides.rec.synced_at_ms {
                    0 => sides.local.as_ref().map_or(now, |l| l.created_at_ms),
                    t => t,
                };
                s.lag_secs = now.saturating_sub(since) / 1000;
            }
        });
    }
}

/// Whether `local` holds `remote`'s documents plus, maybe, WAL batches after
/// them (what a pull or a rebase of `remote` commits): same segments, and
/// `remote`'s WAL batches (by key) as a prefix of `local`'s.
fn descends(local: &Manifest, remote: &Manifest) -> bool {
    !local.deleted
        && !remote.deleted
        && local.segments == remote.segments
        && local.wal.len() >= remote.wal.len()
        && local.wal.iter().zip(&remote.wal).all(|(a, b)| a.key == b.key)
        && local.schema == remote.schema
}

/// The objects a remote manifest references (certainly in the remote, and
/// safe from the sweep while it is live).
pub(super) fn remote_keys(remote: Option<&Manifest>) -> HashSet<String> {
    remote.map(|m| m.object_keys().into_iter().collect()).unwrap_or_default()
}
