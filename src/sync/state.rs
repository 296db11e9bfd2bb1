//! What a node remembers about each synced namespace (`meta.redb` table
//! `sync`, `storage-format.md` 6.1) and what it reports (`GET /v1/sync/status`).
//!
//! Invariants:
//! - A [`SyncRecord`] names a pair of generations that held the same
//!   documents: `local_generation` here and `remote_generation` in the
//!   remote. It is written only after the remote commit (push) or the local
//!   commit (pull) that made them equal, so a crash leaves the previous pair,
//!   and the next round recognises its own landed push by the manifest's
//!   `origin` instead of calling it a conflict.
//! - The record's bytes (41, little-endian, with a crc32c of everything
//!   before it) are `format/sync_record.rs`'s; a record that fails its checks
//!   is treated as absent (the next round starts from scratch, which only
//!   re-uploads).

/// The record's codec lives with the other persisted formats (`format/sync_record.rs`).
pub use crate::format::sync_record::SyncRecord;

/// A conflict met and how it was resolved.
#[derive(Debug, Clone)]
pub struct ConflictReport {
    /// When (ms since the Unix epoch).
    pub at_ms: u64,
    /// `rebase` or `branch`: what was done.
    pub resolution: String,
    /// The remote generation met.
    pub remote_generation: u64,
    /// The local generation that carried the unsynced writes.
    pub local_generation: u64,
    /// Rebase: the requests re-applied; branch: the branch published.
    pub detail: String,
}

/// Conflicts kept per namespace in the status (the oldest are dropped).
pub const MAX_CONFLICTS_REPORTED: usize = 16;

/// One namespace in `GET /v1/sync/status`.
#[derive(Debug, Clone, Default)]
pub struct NamespaceStatus {
    /// `org/project/ns`'s namespace name.
    pub namespace: String,
    /// push | pull | both.
    pub mode: &'static str,
    /// rebase | branch.
    pub on_conflict: &'static str,
    /// The newest local generation seen.
    pub local_generation: u64,
    /// The newest remote generation seen.
    pub remote_generation: u64,
    /// Objects of the local generation not known to be in the remote.
    pub pending_objects: u64,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Seconds since the namespace was last in sync, while it is not (0 when in sync).
    pub lag_secs: u64,
    /// When the last round for this namespace succeeded (ms since the epoch).
    pub last_success: Option<u64>,
    /// The last round's error, if it failed.
    pub last_error: Option<String>,
    /// Conflicts met, newest last.
    pub conflicts: Vec<ConflictReport>,
    /// Objects and bytes this node uploaded for the namespace since it started.
    pub uploaded_objects: u64,
    /// See `uploaded_objects`.
    pub uploaded_bytes: u64,
    /// Objects and bytes this node downloaded for the namespace since it started.
    pub downloaded_objects: u64,
    /// See `downloaded_objects`.
    pub downloaded_bytes: u64,
    /// The node holding the namespace's push lease (None: no lease in use).
    pub lease_holder: Option<String>,
    /// The org/project the namespace belongs to (for scoping by key).
    pub project: String,
}

/// The remote in `GET /v1/sync/status`.
#[derive(Debug, Clone, Default)]
pub struct RemoteStatus {
    /// The remote URL.
    pub url: String,
    /// Whether the last request to it succeeded (None: not tried yet).
    pub reachable: Option<bool>,
    /// When a request to it last succeeded (ms since the epoch).
    pub last_contact: Option<u64>,
}
