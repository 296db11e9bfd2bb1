//! Typed write operations: what one write request asks for, and what a WAL
//! batch records so that it can be re-applied on top of any base generation.
//!
//! Invariants:
//! - Operations of one request apply in a fixed order (see [`WriteOps`]),
//!   atomically: all of a request's effects land in one WAL batch and one
//!   manifest generation, or none do.
//! - Filters and conditions are kept as operations (not as their resolved
//!   ids), so re-applying a batch on another base re-evaluates them there.

use crate::filter::{Filter, Op};
use crate::model::{AttrMap, DistanceMetric, DocId, Document};
use crate::schema::Schema;

/// A partial update of one document: `Value::Null` removes an attribute.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    /// Target id; a missing document is ignored.
    pub id: DocId,
    /// Attributes to set (or remove, with `Value::Null`).
    pub attrs: AttrMap,
}

/// `patch_by_filter`: set attributes on every document matching a filter.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchByFilter {
    /// Which documents.
    pub filter: Filter,
    /// What to set (`Value::Null` removes).
    pub attrs: AttrMap,
}

/// The operations of one write request, applied in this order:
/// 1. `delete_by_filter`;
/// 2. `patch_by_filter`;
/// 3. `upserts` (each gated by `upsert_condition`);
/// 4. `patches` (gated by `patch_condition`);
/// 5. `deletes` (gated by `delete_condition`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteOps {
    /// Whole-document upserts.
    pub upserts: Vec<Document>,
    /// Condition evaluated against the current document (if any) per upsert.
    pub upsert_condition: Option<Filter>,
    /// Partial updates.
    pub patches: Vec<Patch>,
    /// Condition evaluated against the current document per patch.
    pub patch_condition: Option<Filter>,
    /// Deletes by id.
    pub deletes: Vec<DocId>,
    /// Condition evaluated against the current document per delete.
    pub delete_condition: Option<Filter>,
    /// Delete every document matching this filter.
    pub delete_by_filter: Option<Filter>,
    /// Patch every document matching a filter.
    pub patch_by_filter: Option<PatchByFilter>,
}

impl WriteOps {
    /// The attribute maps the request's rows set, in a fixed order: upserts, patches,
    /// `patch_by_filter`.
    pub fn attr_maps(&self) -> impl Iterator<Item = &AttrMap> {
        let upserts = self.upserts.iter().map(|d| &d.attrs);
        upserts
            .chain(self.patches.iter().map(|p| &p.attrs))
            .chain(self.patch_by_filter.iter().map(|p| &p.attrs))
    }

    /// [`WriteOps::attr_maps`], to change the values.
    pub fn attr_maps_mut(&mut self) -> impl Iterator<Item = &mut AttrMap> {
        let upserts = self.upserts.iter_mut().map(|d| &mut d.attrs);
        let patches = self.patches.iter_mut().map(|p| &mut p.attrs);
        upserts.chain(patches).chain(self.patch_by_filter.iter_mut().map(|p| &mut p.attrs))
    }

    /// Number of rows named directly (upserts + patches + deletes).
    pub fn direct_rows(&self) -> usize {
        self.upserts.len() + self.patches.len() + self.deletes.len()
    }

    /// Whether the request changes no documents at all.
    pub fn is_empty(&self) -> bool {
        self.direct_rows() == 0 && self.delete_by_filter.is_none() && self.patch_by_filter.is_none()
    }

    /// Its filters and conditions, `patch_by_filter`'s included.
    fn filters(&self) -> impl Iterator<Item = &Filter> {
        let conditions =
            [&self.upsert_condition, &self.patch_condition, &self.delete_condition, &self.delete_by_filter];
        conditions.into_iter().flatten().chain(self.patch_by_filter.as_ref().map(|p| &p.filter))
    }

    /// Whether a filter or condition has an `In`/`NotIn` leaf (whose meaning on array
    /// attributes changed with `WAL_FLAG_IN_ANY_ELEMENT`).
    pub fn has_in(&self) -> bool {
        self.filters().any(|f| f.conditions().iter().any(|c| matches!(c.op(), Op::In | Op::NotIn)))
    }

    /// Rewrites every filter and condition as a WAL batch written before
    /// `WAL_FLAG_IN_ANY_ELEMENT` applied them ([`Filter::with_scalar_in`]).
    pub fn make_scalar_in(&mut self) {
        let WriteOps {
            upsert_condition,
            patch_condition,
            delete_condition,
            delete_by_filter,
            patch_by_filter,
            ..
        } = self;
        let by_filter = patch_by_filter.as_mut().map(|p| &mut p.filter);
        let conditions = [upsert_condition, patch_condition, delete_condition, delete_by_filter];
        for f in conditions.into_iter().flatten().chain(by_filter) {
            *f = f.with_scalar_in();
        }
    }
}

/// Namespace-level settings a request may carry (first write or updates).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NamespaceSettings {
    /// `distance_metric` (set once, immutable afterwards).
    pub distance_metric: Option<DistanceMetric>,
    /// `schema` updates, typed: each attribute's entry is merged into the
    /// namespace schema (`AttrSchema::merge`). Parsed from the client's JSON
    /// at the API boundary (`wire/`); stored in WAL records by
    /// `format::schema_codec`.
    pub schema: Option<Schema>,
}

/// Counts a request produced when it was applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Documents written by upserts.
    pub upserted: u64,
    /// Documents changed by patches and patch_by_filter.
    pub patched: u64,
    /// Documents removed by deletes and delete_by_filter.
    pub deleted: u64,
}

impl RowCounts {
    /// Total rows affected.
    pub fn affected(&self) -> u64 {
        self.upserted + self.patched + self.deleted
    }
}

/// One request as recorded in a WAL batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestRecord {
    /// The client's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// Namespace settings carried by the request.
    pub settings: NamespaceSettings,
    /// The operations.
    pub ops: WriteOps,
    /// What applying it produced at commit time (informational: a rebase
    /// recomputes it).
    pub counts: RowCounts,
}
