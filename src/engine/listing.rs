//! Namespaces as a whole: delete, listing, metadata and pinning.
//!
//! Invariants:
//! - A namespace is deleted by committing a tombstone generation through the
//!   commit unit, which then releases every object the last live generation
//!   referenced; the local pin and manifest cache are forgotten after.
//! - Listing and metadata read only the newest manifest of each namespace
//!   (no state is materialized).

use std::sync::Arc;

use super::commit::{CommitError, Derived, MAX_COMMIT_ATTEMPTS};
use super::{clear_cached, set_cached, Engine, EngineError, Snapshot};
use crate::format::manifest::Manifest;
use crate::layout::NsPath;

/// A namespace's metadata: the newest generation's manifest plus the state
/// of the local cache.
#[derive(Debug, Clone)]
pub struct NamespaceMetadata {
    /// The newest live manifest.
    pub manifest: Arc<Manifest>,
    /// Whether the namespace is pinned in the local cache.
    pub pinned: bool,
    /// Bytes of its objects resident in the disk cache.
    pub resident_bytes: u64,
}

/// One page of a namespace listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespacePage {
    /// Namespace names, sorted.
    pub namespaces: Vec<String>,
    /// Pass as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

impl Engine {
    /// Delete a namespace: commit a tombstone generation on the newest live
    /// one; the commit unit then releases every object that generation
    /// referenced.
    pub async fn delete_namespace(&self, path: &NsPath) -> Result<(), EngineError> {
        let h = self.handle(path);
        let _g = h.commit_lock.lock().await;
        // Only the manifest chain: a namespace whose data cannot be loaded
        // (a damaged segment) can still be deleted.
        // Nor its schema object (read as stored, 4.5).
        clear_cached(&h);
        let log = self.log(path).without_schemas();
        let base = log.newest_from(log.generation_hint().await?).await?.map(Arc::new);
        let not_found = || EngineError::not_found(format!("namespace {} not found", path.ns()));
        let (now, ids) = (self.clock.now_ms(), &self.ids);
        let committed = log
            .commit(
                base,
                &[],
                MAX_COMMIT_ATTEMPTS,
                |a| self.backoff(a),
                |base| {
                    let live = base.filter(|m| !m.deleted).ok_or_else(not_found)?;
                    if live.read_only {
                        return Err(super::write::read_only_error(path));
                    }
                    Ok(Derived::Commit(tombstone(path, live, now, ids.next_token())))
                },
            )
            .await;
        match committed {
            Ok(c) => {
                let tomb =
                    Snapshot { manifest: Some(Arc::new(c.manifest)), state: Arc::new(self.empty_state()) };
                set_cached(&h, tomb);
                // The pin goes with the namespace: a namespace created later
                // under the same name starts unpinned.
                self.cache.unpin_prefix(&path.prefix());
                let ns = path.to_string();
                self.blocking(move |m| m.forget_namespace(&ns)).await
            }
            Err(CommitError::Lost) => {
                clear_cached(&h);
                Err(EngineError::conflict(format!(
                    "namespace {} is being written concurrently; retry the delete",
                    path.ns()
                )))
            }
            Err(CommitError::Failed(e)) => {
                clear_cached(&h);
                Err(e)
            }
        }
    }

    /// List the live namespaces of a project.
    pub async fn list_namespaces(
        &self,
        org: &str,
        project: &str,
        prefix: Option<&str>,
        cursor: Option<&str>,
        page_size: usize,
    ) -> Result<NamespacePage, EngineError> {
        self.list_labelled_namespaces(org, project, prefix, cursor, page_size, &[]).await
    }

    /// List the live namespaces of a project that carry every `key:value`
    /// label of `labels` (see `engine::labels`).
    pub async fn list_labelled_namespaces(
        &self,
        org: &str,
        project: &str,
        prefix: Option<&str>,
        cursor: Option<&str>,
        page_size: usize,
        labels: &[(String, String)],
    ) -> Result<NamespacePage, EngineError> {
        let page_size = page_size.clamp(1, 1000);
        let names = self.store.list_dirs(&NsPath::project_namespaces_prefix(org, project)).await?;
        let mut out = Vec::new();
        let mut next_cursor = None;
        for name in names {
            if prefix.is_some_and(|p| !name.starts_with(p)) || cursor.is_some_and(|c| name.as_str() <= c) {
                continue;
            }
            let Ok(path) = NsPath::new(org, project, &name) else { continue };
            if self
                .latest_manifest(&path)
                .await?
                .is_none_or(|m| m.deleted || !super::labels::matches(&m, labels))
            {
                continue;
            }
            if out.len() == page_size {
                next_cursor = out.last().cloned();
                break;
            }
            out.push(name);
        }
        Ok(NamespacePage { namespaces: out, next_cursor })
    }

    /// A namespace's metadata: its newest manifest and its local cache state
    /// (rendered as turbopuffer's metadata document by `wire::namespace`).
    pub async fn metadata(&self, path: &NsPath) -> Result<NamespaceMetadata, EngineError> {
        let manifest = self
            .latest_manifest(path)
            .await?
            .filter(|m| !m.deleted)
            .ok_or_else(|| EngineError::not_found(format!("namespace {} not found", path.ns())))?;
        let ns = path.to_string();
        let pinned = self.blocking(move |meta| meta.is_pinned(&ns)).await?;
        Ok(NamespaceMetadata { manifest, pinned, resident_bytes: self.cache.resident_bytes(&path.prefix()) })
    }

    /// [`Engine::metadata`] from the last generation this node knew, without
    /// asking the store (for when it is unreachable; see `offline_snapshot`).
    pub async fn offline_metadata(&self, path: &NsPath) -> Result<NamespaceMetadata, EngineError> {
        let manifest = self
            .offline_snapshot(path)
            .await?
            .manifest
            .filter(|m| !m.deleted)
            .ok_or_else(|| EngineError::not_found(format!("namespace {} not found", path.ns())))?;
        let ns = path.to_string();
        let pinned = self.blocking(move |meta| meta.is_pinned(&ns)).await?;
        Ok(NamespaceMetadata { manifest, pinned, resident_bytes: self.cache.resident_bytes(&path.prefix()) })
    }

    /// Why the store looks unreachable (its last read got no answer), if it does.
    pub fn store_unreachable(&self) -> Option<String> {
        self.store.last_read_failure()
    }

    /// Pin or unpin a namespace (persisted in the local pin set).
    pub async fn set_pinned(&self, path: &NsPath, pinned: bool) -> Result<(), EngineError> {
        if self.latest_manifest(path).await?.is_none_or(|m| m.deleted) {
            return Err(EngineError::not_found(format!("namespace {} not found", path.ns())));
        }
        let ns = path.to_string();
        let now = self.clock.now_ms();
        self.blocking(move |m| m.set_pinned(&ns, pinned, now)).await?;
        if pinned {
            self.cache.pin_prefix(&path.prefix());
            if let Some(engine) = self.me.upgrade() {
                engine.warm_in_background(path);
            }
        } else {
            self.cache.unpin_prefix(&path.prefix());
        }
        Ok(())
    }
}

/// The tombstone generation that deletes a namespace whose newest live
/// generation is `live`.
fn tombstone(path: &NsPath, live: &Manifest, now: u64, commit_id: String) -> Manifest {
    Manifest {
        namespace: path.to_string(),
        generation: live.generation + 1,
        commit_id,
        previous_generation: Some(live.generation),
        created_at_ms: live.created_at_ms,
        committed_at_ms: now,
        deleted: true,
        next_wal_seq: live.next_wal_seq,
        row_id_hwm: live.row_id_hwm,
        ..Manifest::default()
    }
}
