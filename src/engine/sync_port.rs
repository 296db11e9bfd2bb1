//! What the sync layer (`sync/`) may ask of the local node beyond namespace operations: its node
//! id, the per-namespace sync records, the list of local namespaces, and the local store as the
//! source and target of verified copies. `sync/` reaches the local metadata and store only
//! through these, never through `Engine::meta()` or `Engine::store()`.
//!
//! Invariants:
//! - The node id is created once and kept in `meta.redb` (`storage-format.md` 6.1): a restart
//!   keeps it, so the node recognises its own pushes by `origin`.
//! - A sync record that fails to decode reads as absent (6.1): the next round starts from
//!   scratch, which only re-uploads; it is never guessed.
//! - Metadata calls run on a blocking thread (redb does synchronous I/O).

use super::commit::on_meta;
use super::{Engine, EngineError};
use crate::format::sync_record::SyncRecord;
use crate::layout::NsPath;
use crate::store::Store;

impl Engine {
    /// This node's id: the stored one, or `fresh()` stored now.
    pub async fn sync_node_id(&self, fresh: String) -> Result<String, EngineError> {
        on_meta(self.meta(), move |m| m.node_id(move || fresh)).await
    }

    /// The namespace's last in-sync point (the default — never — when none is kept or it does not
    /// decode).
    pub async fn sync_record(&self, path: &NsPath) -> Result<SyncRecord, EngineError> {
        let ns = path.to_string();
        let bytes = on_meta(self.meta(), move |m| m.sync_record(&ns)).await?;
        Ok(bytes.and_then(|b| SyncRecord::decode(&b).ok()).unwrap_or_default())
    }

    /// Keep the namespace's in-sync point (and with it the floor of WAL batches it still holds).
    pub async fn save_sync_record(&self, path: &NsPath, rec: SyncRecord) -> Result<(), EngineError> {
        let ns = path.to_string();
        on_meta(self.meta(), move |m| m.set_sync_record(&ns, &rec.encode(), rec.wal_floor)).await
    }

    /// The local store as sync's copies see it: the source of pushes and the target of pulls.
    pub fn sync_local_store(&self) -> Store {
        self.store().clone()
    }
}
