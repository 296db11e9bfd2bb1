//! What `GET /v1/sync/status` knows without a round: the local side read at
//! request time, and whether the remote answers now.
//!
//! Invariants:
//! - Pending work is local knowledge: a status request reads each covered
//!   namespace's newest local generation and counts the objects a push would
//!   upload against the remote's newest manifest as the last round read it
//!   (`Syncer::remote_keys`), so a write made after the uplink dropped shows
//!   at once, not at the next round. Nothing here asks the remote for a
//!   namespace; a round (which holds the round lock) stays the only writer of
//!   remote generations and sync records.
//! - Reachability is re-checked by one probe when the last contact is older
//!   than [`PROBE_FRESH`], bounded by [`PROBE_TIMEOUT`]: a silent uplink makes
//!   the status answer `reachable: false` within that bound instead of
//!   repeating the last round's `true`. Concurrent requests share one probe.
//! - A namespace that fails to read locally keeps its previous status (the
//!   next round reports the error); the status request itself never fails.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::reconcile::{remote_keys, Sides};
use super::{namespaces_in, StatusView, Syncer};
use crate::format::manifest::Manifest;
use crate::layout::NsPath;

/// A contact younger than this is trusted without a probe.
pub const PROBE_FRESH: Duration = Duration::from_secs(1);
/// How long a status request waits for the remote to answer its probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

impl Syncer {
    /// The status as of now (see the module invariants), limited to one
    /// `org/project` (None: all).
    pub async fn status_now(&self, project: Option<&str>) -> StatusView {
        self.refresh_local(project).await;
        self.probe_if_stale().await;
        self.status(project)
    }

    async fn refresh_local(&self, project: Option<&str>) {
        let paths = match namespaces_in(&self.engine.sync_local_store()).await {
            Ok(p) => p,
            Err(e) => return tracing::debug!(error = %e, "sync status: local namespaces not listed"),
        };
        for path in paths.into_iter().filter(|p| project.is_none_or(|want| p.project_id() == want)) {
            let Some(rule) = self.rule_for(&path).filter(|r| r.mode.pushes()).cloned() else { continue };
            match self.local_sides(&path).await {
                Ok(sides) => self.report_sides(&path, &rule, &sides),
                Err(e) => tracing::debug!(namespace = %path, error = %e, "sync status: local side not read"),
            }
        }
    }

    async fn local_sides(&self, path: &NsPath) -> Result<Sides, crate::engine::EngineError> {
        let rec = self.record(path).await?;
        let local = self.engine.latest_manifest(path).await?;
        Ok(Sides { local, remote: None, rec })
    }

    async fn probe_if_stale(&self) {
        let _one = self.probe.lock().await;
        if !self.contact_is_stale() {
            return; // another request's probe (or a round) just answered
        }
        let answered =
            tokio::time::timeout(PROBE_TIMEOUT, self.remote.exists(crate::store::health::PROBE_KEY)).await;
        self.contact(matches!(answered, Ok(Ok(_))));
    }

    fn contact_is_stale(&self) -> bool {
        let now = self.engine.clock().now_ms();
        let st = self.status.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = u64::try_from(PROBE_FRESH.as_millis()).unwrap_or(u64::MAX);
        st.remote.reachable != Some(true)
            || st.remote.last_contact.is_none_or(|t| now.saturating_sub(t) >= fresh)
    }

    /// Remember the keys `remote` (the namespace's newest remote manifest) references.
    pub(super) fn remember_remote_keys(&self, path: &NsPath, remote: &Manifest) -> Arc<HashSet<String>> {
        let keys = Arc::new(remote_keys(Some(remote)));
        let mut all = self.remote_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.insert(path.clone(), keys.clone());
        keys
    }

    /// The keys remembered for `path` (empty before a round read its remote).
    pub(super) fn remembered_remote_keys(&self, path: &NsPath) -> Arc<HashSet<String>> {
        let all = self.remote_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.get(path).cloned().unwrap_or_default()
    }
}
