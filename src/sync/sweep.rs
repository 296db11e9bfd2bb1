//! The remote sweep: garbage collection of the sync remote by reachability
//! (`storage-format.md` 12.5), run by one node at a time.
//!
//! Invariants:
//! - Only a node holding the sweep lease sweeps; it renews the lease before
//!   each project, so a sweep outliving its lease stops.
//! - Manifest generations are collected as local manifest GC does (5.3,
//!   `engine::repair::collect_manifests`): in increasing order, never the
//!   newest, only once their successor is older than the grace period.
//! - A data object (WAL batch or segment file) is deleted only when no live
//!   manifest of any namespace of its project references it (branches and
//!   conflict branches reference other namespaces' objects) **and** it was
//!   last written more than the grace period ago. A push re-uploads any
//!   object the remote's newest manifest does not reference (see
//!   `transfer`), which refreshes its age, so a push in progress never loses
//!   an object to a concurrent sweep.

use std::collections::HashSet;

use super::lease::{self, Held};
use super::Syncer;
use crate::engine::repair::{collect_manifests, is_data_object, tombstone_generation, Keep};
use crate::engine::{EngineError, RemoteLog};
use crate::layout::{self, NsPath};

/// What a sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Remote manifest generations collected.
    pub manifests_collected: u64,
    /// Unreachable data objects deleted.
    pub objects_deleted: u64,
    /// Their bytes.
    pub bytes_deleted: u64,
}

impl Syncer {
    /// Sweep one `(org, project)` of the remote, or every one in it.
    pub async fn sweep(&self, scope: Option<&(String, String)>) -> Result<SweepReport, EngineError> {
        let mut report = SweepReport::default();
        let projects = match scope {
            Some(p) => vec![p.clone()],
            None => self.remote_projects().await?,
        };
        for (org, project) in projects {
            self.hold_sweep_lease().await?;
            self.sweep_project(&org, &project, &mut report).await?;
        }
        tracing::info!(?report, "remote sweep done");
        Ok(report)
    }

    async fn remote_projects(&self) -> Result<Vec<(String, String)>, EngineError> {
        let mut out = Vec::new();
        for org in self.remote.list_dirs("").await? {
            for project in self.remote.list_dirs(&format!("{org}/")).await? {
                if layout::validate_name("org", &org).is_ok()
                    && layout::validate_name("project", &project).is_ok()
                {
                    out.push((org.clone(), project));
                }
            }
        }
        Ok(out)
    }

    async fn hold_sweep_lease(&self) -> Result<(), EngineError> {
        let ttl_ms = u64::try_from(self.cfg.sweep_grace.as_millis()).unwrap_or(u64::MAX).max(60_000);
        let now = self.engine.clock().now_ms();
        match lease::acquire(&self.remote, lease::SWEEP_PREFIX, &self.node, now, ttl_ms).await? {
            Held::Ours(_) => Ok(()),
            Held::Theirs(l) => Err(EngineError::conflict(format!("node {} is sweeping the remote", l.node))),
        }
    }

    async fn sweep_project(
        &self,
        org: &str,
        project: &str,
        report: &mut SweepReport,
    ) -> Result<(), EngineError> {
        let now = self.engine.clock().now_ms();
        let grace_ms = u64::try_from(self.cfg.sweep_grace.as_millis()).unwrap_or(u64::MAX);
        let prefix = NsPath::project_namespaces_prefix(org, project);
        let paths: Vec<NsPath> = self
            .remote
            .list_dirs(&prefix)
            .await?
            .iter()
            .filter_map(|n| NsPath::new(org, project, n).ok())
            .collect();
        for p in &paths {
            report.manifests_collected +=
                collect_manifests(&self.remote, p, Keep::time(grace_ms), now).await?.generations;
        }
        let reachable = self.reachable(&paths).await?;
        for o in self.remote.list(&prefix).await? {
            let old = o.last_modified_ms.saturating_add(grace_ms) <= now;
            if old && is_data_object(&o.key) && !reachable.contains(&o.key) {
                self.remote.delete(&o.key).await?;
                report.objects_deleted += 1;
                report.bytes_deleted += o.size;
            }
        }
        Ok(())
    }

    /// Every object a live manifest of these namespaces references.
    async fn reachable(&self, paths: &[NsPath]) -> Result<HashSet<String>, EngineError> {
        let mut keys = HashSet::new();
        for p in paths {
            let listed = self.remote.list(&p.manifests_prefix()).await?;
            let tombs: HashSet<u64> = listed.iter().filter_map(|o| tombstone_generation(&o.key)).collect();
            let log = RemoteLog::new(self.remote.clone(), p.clone());
            for g in listed.iter().filter_map(|o| layout::manifest_generation(&o.key)) {
                if tombs.contains(&g) {
                    continue;
                }
                if let Some(m) = log.read_keys_only(g).await? {
                    keys.extend(m.object_keys());
                }
            }
        }
        Ok(keys)
    }
}
