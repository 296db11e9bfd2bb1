//! Repair (refcount rebuild + sweep) and manifest GC for one org/project.
//!
//! Invariants (see `storage-format.md`, "Refcounts, repair and sweep"):
//! - The truth is the manifests. A key's refcount is the number of namespaces
//!   of the project whose newest live generation references it; repair
//!   recomputes exactly that, while holding the project lock exclusively (no
//!   branch/copy/restore raises a count it cannot see), every compaction lock
//!   of the project (no compaction is between its raise and its commit, or
//!   between its commit and the release of what it dropped) and every commit
//!   lock (no write or delete is between its raise and its commit, or its
//!   commit and its release). An object that no manifest references yet but is younger than
//!   the grace period keeps its current count: it may belong to an in-flight
//!   commit that raises its count outside the commit lock (compaction).
//! - The sweep deletes an object only if (a) it is a WAL batch or segment file
//!   or schema object (`wal/`, `segments/`, `schemas/`) under a namespace of the project, (b) no retained
//!   manifest generation of any namespace of the project references it (the
//!   newest and every older generation manifest GC has not collected), (c) it
//!   is older than the grace period or a generation this pass collected
//!   under a byte budget referenced it (a committed object, so no write in flight owns it), and
//!   (d) its refcount is zero after the rebuild. Manifests, tombstones and CURRENT are never swept.
//! - The sweep also removes the local store's staging files (`KEY#N`, which
//!   the store's listing hides) under the project's namespaces once they are
//!   older than the grace period: a crash between writing one and publishing
//!   it leaves it behind for good otherwise (`store/staging.rs`).
//! - Manifest GC runs under every compaction lock of the project (after any
//!   compaction in flight has committed, so it weighs what that compaction
//!   left), and collects generations in increasing order, never the newest,
//!   once they were superseded more than `retention` ago, or — with a byte
//!   budget ([`Keep::max_ratio`]) — while the objects that only superseded
//!   generations reference weigh more than the budget: tombstone
//!   (`.gc`, conditional create; body [`Tombstone`]) first, then the `.json`
//!   delete, both by [`SeqLog::collect`].

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use serde::Serialize;

use super::Engine;
use super::EngineError;
use crate::format::tombstone::Tombstone;
use crate::layout::{self, NsPath};
use crate::store::seqlog::SeqLog;
use crate::store::{ObjectInfo, Store};

/// The generation of a GC tombstone key (`.../manifests/{gen:020}.gc`).
pub(crate) use crate::layout::tombstone_generation;

/// What repair should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepairOptions {
    /// Delete unreferenced objects older than `grace_ms`.
    pub sweep: bool,
    /// Objects younger than this are never swept, nor have their counts dropped.
    pub grace_ms: u64,
    /// Collect manifest generations superseded more than this long ago
    /// (None: keep every generation).
    pub manifest_retention_ms: Option<u64>,
}

/// Default sweep grace period: one hour.
pub const DEFAULT_GRACE_MS: u64 = 3_600_000;
/// Default manifest retention: one day.
pub const DEFAULT_MANIFEST_RETENTION_MS: u64 = 86_400_000;

impl Default for RepairOptions {
    fn default() -> Self {
        RepairOptions { sweep: false, grace_ms: DEFAULT_GRACE_MS, manifest_retention_ms: None }
    }
}

/// What repair found and did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RepairReport {
    /// Namespaces examined.
    pub namespaces: usize,
    /// Retained manifest generations read.
    pub manifests_read: usize,
    /// Manifest generations collected by manifest GC.
    pub manifests_collected: u64,
    /// Keys whose count changed (up or down, including removed rows).
    pub refcounts_changed: usize,
    /// Keys whose count was too high or untracked-but-present and was lowered.
    pub refcounts_lowered: usize,
    /// Keys whose count was too low and was raised (should never happen).
    pub refcounts_raised: usize,
    /// Keys referenced by a namespace's newest live generation whose object is
    /// missing (damage). Older retained generations may reference objects
    /// already reclaimed after a newer generation dropped them; those are not
    /// listed (such a generation is simply no longer readable).
    pub missing_objects: Vec<String>,
    /// Objects deleted by the sweep.
    pub swept: Vec<String>,
    /// Unreferenced objects kept because they are younger than the grace period.
    pub kept_young: usize,
    /// Staging files (`KEY#N`) of the local store older than the grace period
    /// that the sweep removed (left by a crash mid-write).
    pub staging_removed: usize,
}

/// References of a project computed from its manifests.
#[derive(Debug, Clone, Default)]
pub struct ProjectRefs {
    /// key → number of namespaces whose newest live generation references it.
    pub counts: BTreeMap<String, u64>,
    /// Every key referenced by any retained generation of any namespace.
    pub roots: HashSet<String>,
    /// Namespaces examined.
    pub namespaces: usize,
    /// Retained generations read.
    pub manifests_read: usize,
}

impl Engine {
    /// Recompute a project's references from its manifests (read-only).
    pub async fn project_references(&self, org: &str, project: &str) -> Result<ProjectRefs, EngineError> {
        let names = self.store.list_dirs(&NsPath::project_namespaces_prefix(org, project)).await?;
        let paths: Vec<NsPath> = names.iter().filter_map(|n| NsPath::new(org, project, n).ok()).collect();
        self.references_of(&paths).await
    }

    /// References of the given namespaces, computed from their manifests.
    async fn references_of(&self, paths: &[NsPath]) -> Result<ProjectRefs, EngineError> {
        let mut out = ProjectRefs::default();
        for path in paths {
            // A sync hold is a reference (`meta::sync`): an unsynced WAL batch
            // a compaction folded stays until the remote has its writes.
            for held in self.sync_holds(path).await? {
                *out.counts.entry(held.key.clone()).or_default() += 1;
                out.roots.insert(held.key);
            }
            out.namespaces += 1;
            let live = self.retained_generations(path).await?;
            let newest = live.last().copied();
            for g in live {
                // Only the keys matter: the schema objects are not read.
                let Some(m) = self.log(path).without_schemas().read(g).await? else { continue };
                out.manifests_read += 1;
                let keys = m.object_keys();
                if Some(g) == newest && !m.deleted {
                    for k in &keys {
                        *out.counts.entry(k.clone()).or_default() += 1;
                    }
                }
                out.roots.extend(keys);
            }
        }
        Ok(out)
    }

    /// Live (retained, not tombstoned) manifest generations, increasing.
    async fn retained_generations(&self, path: &NsPath) -> Result<Vec<u64>, EngineError> {
        let seq = SeqLog::new(self.store.clone(), path.manifest_series());
        Ok(seq.list().await?.live)
    }

    /// Rebuild a project's refcounts from its manifests and optionally sweep
    /// unreferenced objects (see the module doc for the rules).
    pub async fn repair(
        &self,
        org: &str,
        project: &str,
        opts: RepairOptions,
    ) -> Result<RepairReport, EngineError> {
        let project_id = format!("{org}/{project}");
        let plock = self.project_lock(&project_id);
        let _exclusive = plock.write().await;
        let mut report = RepairReport::default();
        let names = self.store.list_dirs(&NsPath::project_namespaces_prefix(org, project)).await?;
        let paths: Vec<NsPath> = names.iter().filter_map(|n| NsPath::new(org, project, n).ok()).collect();
        let handles: Vec<_> = paths.iter().map(|p| self.handle(p)).collect();
        // Compaction locks first (a compaction releases what its commit
        // dropped after leaving the commit lock, still holding this one),
        // then the commit locks; both in increasing order, as everywhere.
        // Generations are collected under the compaction locks: a pass that
        // waited for a long compaction weighs the generation it committed,
        // not the one before it (an early pass decided before the wait kept a
        // bulk ingest's folded WAL until the next pass).
        let mut compactions = Vec::with_capacity(handles.len());
        for h in &handles {
            compactions.push(h.compact_lock.lock().await);
        }
        let mut released = HashSet::new();
        if let Some(retention) = opts.manifest_retention_ms {
            for p in &paths {
                let c = self.collect_generations(p, retention).await?;
                report.manifests_collected += c.generations;
                released.extend(c.released);
            }
        }
        let now = self.clock.now_ms();
        let young = |o: &ObjectInfo| o.last_modified_ms.saturating_add(opts.grace_ms) > now;
        let project_prefix = NsPath::project_namespaces_prefix(org, project);
        let locked_names: HashSet<&str> = paths.iter().map(NsPath::ns).collect();
        let locked = |key: &str| {
            layout::namespace_of_key(&project_prefix, key).is_some_and(|n| locked_names.contains(n))
        };

        // Rebuild under every commit lock of the project (increasing order).
        let (refs, objects) = {
            let mut guards = Vec::with_capacity(handles.len());
            for h in &handles {
                guards.push(h.commit_lock.lock().await);
            }
            let refs = self.references_of(&paths).await?;
            // Listed after the manifests were read: everything they reference
            // was written before.
            let objects = self.project_objects(org, project).await?;
            let p = project_id.clone();
            let current = self.blocking(move |m| m.refcounts(&p)).await?;
            let mut next = refs.counts.clone();
            for (k, n) in &current {
                // Possibly an in-flight commit's object (young), or one of a
                // namespace created after the listing (not locked, not read).
                if !refs.counts.contains_key(k) && (objects.get(k).is_some_and(&young) || !locked(k)) {
                    next.insert(k.clone(), *n);
                }
            }
            let keys: BTreeSet<&String> = current.keys().chain(next.keys()).collect();
            for k in keys {
                let (a, b) = (current.get(k).copied().unwrap_or(0), next.get(k).copied().unwrap_or(0));
                if a != b {
                    report.refcounts_changed += 1;
                    if b > a {
                        report.refcounts_raised += 1;
                        tracing::warn!(key = %k, was = a, now = b, "repair raised a refcount that was too low");
                    } else {
                        report.refcounts_lowered += 1;
                    }
                }
            }
            let p = project_id.clone();
            self.blocking(move |m| m.replace_refcounts(&p, &next)).await?;
            drop(guards);
            drop(compactions);
            (refs, objects)
        };
        report.namespaces = refs.namespaces;
        report.manifests_read = refs.manifests_read;
        report.missing_objects = refs.counts.keys().filter(|k| !objects.contains_key(*k)).cloned().collect();
        report.missing_objects.sort();

        let p = project_id.clone();
        let counts = self.blocking(move |m| m.refcounts(&p)).await?;
        for (key, info) in &objects {
            if !is_data_object(key) || refs.roots.contains(key) || counts.contains_key(key) || !locked(key) {
                continue;
            }
            if young(info) && !released.contains(key) {
                report.kept_young += 1;
                continue;
            }
            if opts.sweep {
                self.cache.invalidate(key);
                self.store.delete(key).await?;
                report.swept.push(key.clone());
            }
        }
        if opts.sweep {
            let cutoff = now.saturating_sub(opts.grace_ms);
            let staging = self.store.remove_stale_staging(&project_prefix, cutoff, usize::MAX).await?;
            report.staging_removed = staging.removed;
        }
        Ok(report)
    }

    /// Every object under the project's namespaces, by key.
    async fn project_objects(
        &self,
        org: &str,
        project: &str,
    ) -> Result<BTreeMap<String, ObjectInfo>, EngineError> {
        let listed = self.store.list(&NsPath::project_namespaces_prefix(org, project)).await?;
        Ok(listed.into_iter().map(|o| (o.key.clone(), o)).collect())
    }

    /// Collect the manifest generations of `path` superseded more than
    /// `retention_ms` ago, or beyond this engine's byte budget for retained
    /// generations (see [`collect_manifests`]), on this engine's store.
    pub async fn gc_manifests(&self, path: &NsPath, retention_ms: u64) -> Result<u64, EngineError> {
        Ok(self.collect_generations(path, retention_ms).await?.generations)
    }

    async fn collect_generations(&self, path: &NsPath, retention_ms: u64) -> Result<Collected, EngineError> {
        let (max_ratio, floor_bytes) = self.retention_budget;
        let keep = Keep { ms: retention_ms, max_ratio, floor_bytes };
        collect_manifests(&self.store, path, keep, self.clock.now_ms()).await
    }
}

/// What a manifest GC pass collected.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub generations: u64,
    /// Every object a generation collected under a byte budget referenced
    /// (empty without one): committed objects, so
    /// none belongs to a write in flight (the sweep may take such an object
    /// younger than its grace period once nothing references or counts it).
    pub released: HashSet<String>,
}

/// How long, and how much, superseded generations are kept (9.4).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Keep {
    /// Collect a generation superseded more than this long ago.
    pub ms: u64,
    /// Collect the oldest generations while the bytes that only superseded
    /// generations reference exceed this fraction of the newest generation's
    /// bytes (None: time alone decides) ...
    pub max_ratio: Option<f64>,
    /// ... or this many bytes, whichever is larger: a small namespace keeps
    /// its whole time-travel window.
    pub floor_bytes: u64,
}

impl Keep {
    /// Time alone decides.
    pub fn time(ms: u64) -> Keep {
        Keep { ms, max_ratio: None, floor_bytes: 0 }
    }
}

/// Collect the manifest generations of `path` in `store` superseded more
/// than `keep.ms` before `now`, then — with a byte budget — the oldest ones
/// while superseded generations alone hold more than the budget; in
/// increasing order, never the newest (5.3: tombstone first, then delete).
/// Returns what was collected. Also removes `.json` files left next to
/// their `.gc` tombstone. Works on any store (the node's own, or a sync
/// remote).
pub(crate) async fn collect_manifests(
    store: &Store,
    path: &NsPath,
    keep: Keep,
    now: u64,
) -> Result<Collected, EngineError> {
    let seq = SeqLog::new(store.clone(), path.manifest_series());
    let listing = seq.list().await?;
    for g in listing.dead {
        seq.delete(g).await?; // fenced or half-collected
    }
    let log = super::commit::ManifestLog::remote(store.clone(), path.clone()).without_schemas();
    let mut due = 0;
    for pair in listing.live.windows(2) {
        let Some(successor) = log.read(pair[1]).await? else { break };
        if successor.committed_at_ms.saturating_add(keep.ms) > now {
            break; // later generations were superseded even more recently
        }
        due += 1;
    }
    if let Some(ratio) = keep.max_ratio {
        due += over_budget(&log, &listing.live[due..], ratio, keep.floor_bytes).await?;
    }
    let mut out = Collected::default();
    for &g in &listing.live[..due] {
        // Only a byte budget collects generations whose objects may still be
        // young; time alone (a sync remote's sweep) needs no extra read.
        if keep.max_ratio.is_some() {
            if let Some(m) = log.read(g).await? {
                out.released.extend(m.object_keys());
            }
        }
        let body = Tombstone { generation: g, collected_at_ms: now }.encode();
        seq.collect(g, Bytes::from(body)).await?;
        out.generations += 1;
    }
    Ok(out)
}

/// Superseded generations a pass weighs at most, newest first: a namespace
/// written ten times a second holds 36,000 within an hour's retention, and
/// a pass must not read them all. Older ones are left to the retention time.
const MAX_WEIGHED: usize = 1024;

/// How many of the oldest of `live` (increasing, the newest last) must go
/// so that the objects only the superseded ones reference weigh at most
/// `ratio` times the newest generation's objects, or `floor` bytes if more
/// (bytes as the manifests record them). Objects the newest references are
/// never counted: they stay whatever is collected. Only the newest
/// [`MAX_WEIGHED`] superseded generations are read.
async fn over_budget(
    log: &super::commit::ManifestLog,
    live: &[u64],
    ratio: f64,
    floor: u64,
) -> Result<usize, EngineError> {
    let Some((&newest, older)) = live.split_last() else { return Ok(0) };
    let Some(top) = log.read(newest).await? else {
        tracing::debug!(newest, "the newest generation vanished while weighing the retention budget");
        return Ok(0);
    };
    let current: HashSet<String> = top.object_refs().into_iter().map(|r| r.key).collect();
    let newest_bytes: u64 = top.object_refs().iter().map(|r| r.bytes).sum();
    let budget = ((newest_bytes as f64 * ratio.max(0.0)) as u64).max(floor);
    // Newest first: `held` is what generations `i..` alone reference.
    let (mut seen, mut held) = (HashSet::new(), 0u64);
    for (i, &g) in older.iter().enumerate().rev().take(MAX_WEIGHED) {
        let Some(m) = log.read(g).await? else { continue };
        for r in m.object_refs() {
            if !current.contains(&r.key) && seen.insert(r.key) {
                held += r.bytes;
            }
        }
        if held > budget {
            tracing::debug!(
                newest,
                newest_bytes,
                budget,
                held,
                collect = i + 1,
                "retention byte budget exceeded"
            );
            return Ok(i + 1);
        }
    }
    tracing::debug!(
        newest,
        newest_bytes,
        budget,
        held,
        weighed = older.len().min(MAX_WEIGHED),
        "within the retention byte budget"
    );
    Ok(0)
}

/// Whether a key is a data object (WAL batch, segment file or schema object) of a namespace.
pub(crate) fn is_data_object(key: &str) -> bool {
    // {org}/{project}/namespaces/{ns}/{kind}/...
    let mut parts = key.splitn(6, '/');
    let (_, _, ns_dir, _, kind) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next());
    ns_dir == Some("namespaces")
        && matches!(kind, Some("wal" | "segments" | "schemas"))
        && parts.next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wal_and_segment_objects_are_sweepable() {
        assert!(is_data_object("o/p/namespaces/n/wal/00000000000000000001-a.wal"));
        assert!(is_data_object("o/p/namespaces/n/segments/s/data.seg"));
        assert!(is_data_object("o/p/namespaces/n/schemas/00000000000000000001-c.json"));
        assert!(!is_data_object("o/p/namespaces/n/manifests/00000000000000000001.json"));
        assert!(!is_data_object("o/p/namespaces/n/CURRENT"));
        assert!(!is_data_object("o/p/namespaces/n/wal"));
        assert_eq!(tombstone_generation("o/p/namespaces/n/manifests/00000000000000000007.gc"), Some(7));
        assert_eq!(tombstone_generation("o/p/namespaces/n/manifests/00000000000000000007.json"), None);
    }
}
