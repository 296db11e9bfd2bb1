//! The typed write request the engine applies: a WAL request record plus the
//! request-level options (`if_version`, `create_namespace`, backpressure,
//! branch/copy sources, label changes). It holds no JSON: the turbopuffer write body is
//! parsed in `wire::write`.
//!
//! Invariant: a request names at most [`MAX_WRITE_ROWS`] rows directly (the
//! parser enforces it; the engine's group commit relies on it).

use crate::ops::{NamespaceSettings, RequestRecord};

/// Most rows one request may name directly (upserts + patches + deletes).
pub const MAX_WRITE_ROWS: usize = 50_000;
/// Most documents one `patch_by_filter` may change.
pub const MAX_PATCH_BY_FILTER_ROWS: usize = 50_000;
/// Most documents one `delete_by_filter` may remove.
pub const MAX_DELETE_BY_FILTER_ROWS: usize = 5_000_000;
/// Longest idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// A parsed write request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteRequest {
    /// What gets recorded in the WAL.
    pub record: RequestRecord,
    /// Apply only if the namespace is at exactly this generation
    /// (0 = the namespace must not exist yet).
    pub if_version: Option<u64>,
    /// `create_namespace`: Some(false) = fail with 404 if missing.
    pub create_namespace: Option<bool>,
    /// Report the affected ids in the response.
    pub return_affected_ids: bool,
    /// Skip backpressure.
    pub disable_backpressure: bool,
    /// `branch_from_namespace` / `copy_from_namespace`: derive this
    /// namespace from another one instead of applying operations.
    pub fork: Option<ForkFrom>,
    /// `labels` (our extension): label changes committed in the same
    /// generation as the request's rows (empty: none). Not in the WAL: labels
    /// live in the manifest (`engine::labels`).
    pub labels: crate::engine::labels::LabelChanges,
    /// The upserts' full-text tokens, analysed before the request queued for its
    /// namespace's commit (`Engine::write`); never in the WAL, and not part of
    /// what the request says (requests compare equal whatever their preparation).
    pub prepared: Preparation,
}

/// A request's preparation ([`crate::state::PreparedText`]): a cache of work the commit
/// would otherwise do, so it compares equal to any other.
#[derive(Clone, Debug, Default)]
pub struct Preparation(pub Option<std::sync::Arc<crate::state::PreparedText>>);

impl PartialEq for Preparation {
    fn eq(&self, _: &Preparation) -> bool {
        true
    }
}

/// How a namespace is derived from another (see `engine::branch`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForkKind {
    /// Copy-on-write, records lineage (`branch_from_namespace`).
    Branch,
    /// Copy-on-write, no lineage (`copy_from_namespace`).
    ShallowCopy,
    /// Duplicates every object under the destination's prefix (admin copy `deep`).
    DeepCopy,
}

/// A parsed `branch_from_namespace` / `copy_from_namespace` parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForkFrom {
    /// The source namespace name (same org/project as the destination).
    pub source: String,
    /// Branch or copy as of this retained generation (None: the newest).
    pub generation: Option<u64>,
    /// Branch, shallow or deep copy.
    pub kind: ForkKind,
}

impl WriteRequest {
    /// A request that only changes namespace settings (e.g. a schema update).
    pub fn settings_only(settings: NamespaceSettings) -> WriteRequest {
        WriteRequest {
            record: RequestRecord { settings, ..RequestRecord::default() },
            ..WriteRequest::default()
        }
    }
}
