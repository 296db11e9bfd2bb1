//! The garbage collector: manifest retention (by time, and by bytes) and the
//! sweep of objects no retained generation references, run every
//! `gc_interval` over every project, and early — for one project — when its
//! compactions dropped more than the retention's byte budget since the last
//! early pass (storage-format.md 9.4).
//!
//! Invariants:
//! - A pass is [`Engine::repair`] with `sweep`: it takes the project lock
//!   exclusively and every compaction and commit lock of the project, so it
//!   never races a commit, and it deletes only what 9.5 allows.
//! - Early passes need a retention, a byte budget and the periodic collector
//!   (`gc_interval` > 0): a node that asked for no background GC gets none.
//! - At most one early pass is in flight; the bytes counted towards the next
//!   one start from zero when one is requested. A request made while a pass
//!   runs is served by the next pass, never dropped.
//! - A pass weighs the generations under the namespace's compaction lock
//!   (`repair`): after a compaction it waited for, it sees what that
//!   compaction committed. Without early passes a bulk ingest
//!   would keep every folded WAL batch (a second copy of the data) until the
//!   next interval, however small the budget.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::{repair, Engine, EngineError};
use crate::layout::NsPath;

/// What the collector keeps between passes.
#[derive(Default)]
pub(super) struct GcState {
    /// The periodic collector runs (early passes are allowed).
    periodic: AtomicBool,
    /// An early pass is in flight.
    running: AtomicBool,
    /// Bytes compactions dropped since the last early pass was requested.
    dropped: AtomicU64,
    /// Projects (org, project) an early pass was requested for and no pass
    /// has started on since.
    pending: Mutex<BTreeSet<(String, String)>>,
}

impl Engine {
    /// Every `interval_ms`, collect manifests beyond the retention and sweep
    /// objects no retained generation references, project by project.
    pub(super) fn spawn_periodic_gc(self: &Arc<Self>, interval_ms: u64) {
        self.gc.periodic.store(true, Ordering::Relaxed);
        let engine = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(engine) = engine.upgrade() else { return };
                if let Err(e) = engine.collect_garbage().await {
                    tracing::warn!(error = %e, "periodic GC failed; it runs again next interval");
                }
            }
        });
    }

    /// One GC pass over every project in the store (see `repair`).
    pub async fn collect_garbage(&self) -> Result<(), EngineError> {
        for org in self.store.list_dirs("").await? {
            for project in self.store.list_dirs(&format!("{org}/")).await? {
                if self.store.list_dirs(&NsPath::project_namespaces_prefix(&org, &project)).await?.is_empty()
                {
                    continue;
                }
                let r = self.repair(&org, &project, self.gc_options()).await?;
                tracing::info!(org, project, ?r, "garbage collected");
            }
        }
        Ok(())
    }

    fn gc_options(&self) -> repair::RepairOptions {
        repair::RepairOptions {
            sweep: true,
            grace_ms: self.gc_grace_ms(),
            manifest_retention_ms: Some(self.retention_ms),
        }
    }

    /// A compaction of `path` committed, dropping `dropped` bytes of objects
    /// (folded WAL batches, merged segments) from a namespace whose newest
    /// generation keeps `kept` bytes: with a byte budget, collect the
    /// project now once the drops since the last early pass exceed it.
    pub(super) fn after_compaction(&self, path: &NsPath, dropped: u64, kept: u64) {
        let (Some(ratio), floor) = self.retention_budget else { return };
        if self.retention_ms == 0 || !self.gc.periodic.load(Ordering::Relaxed) {
            return;
        }
        let total = self.gc.dropped.fetch_add(dropped, Ordering::Relaxed).saturating_add(dropped);
        if total as f64 <= (ratio * kept as f64).max(floor as f64) {
            return;
        }
        self.gc.dropped.store(0, Ordering::Relaxed);
        lock(&self.gc.pending).insert((path.org().to_owned(), path.project().to_owned()));
        // Requested before the flag is tried: a pass in flight that clears
        // the flag after this finds the request (see `early_passes`).
        if self.gc.running.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(engine) = self.me.upgrade() else {
            self.gc.running.store(false, Ordering::Release);
            return;
        };
        tokio::spawn(async move { engine.early_passes().await });
    }

    /// Run the requested early passes, one project at a time, until none is
    /// left. A request that arrives while a pass runs (which may have waited
    /// minutes for a compaction) is served by another pass, never dropped:
    /// the pass in flight may have weighed an older generation.
    async fn early_passes(&self) {
        loop {
            let next = lock(&self.gc.pending).pop_first();
            let Some((org, project)) = next else {
                self.gc.running.store(false, Ordering::Release);
                if lock(&self.gc.pending).is_empty() || self.gc.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            };
            match self.repair(&org, &project, self.gc_options()).await {
                Ok(r) => tracing::info!(org, project, ?r, "garbage collected (retention byte budget)"),
                Err(e) => {
                    tracing::warn!(org, project, error = %e, "early GC failed; the periodic one follows")
                }
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[path = "gc_tests.rs"]
mod tests;
