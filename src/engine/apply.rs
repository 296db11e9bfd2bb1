//! Applying write requests to a namespace's in-memory state.
//!
//! The same code runs when a request is committed and when a WAL batch is
//! replayed at load time, so a replay reproduces exactly the state the write
//! was acknowledged against.
//!
//! Invariants:
//! - [`apply_request`] either applies a whole request or returns an error and
//!   leaves the state untouched (it works on a clone; `imbl` maps make that
//!   O(1)).
//! - The namespace's id type, distance metric and vector dimension are set
//!   by the first write that carries them and never change afterwards.
//! - A replay does not check filters against the schema again: it starts
//!   from the manifest's schema, which may already hold later settings.
//! - Conditions see the document as it was before the request; `$ref_new`
//!   sees the incoming document. An upsert of a missing document ignores
//!   `upsert_condition` (there is nothing to compare against).
//! - `uuid` and `datetime` values are stored in canonical spelling and the
//!   literals compared with them are canonicalized the same way, so a
//!   condition or filter compares values, not spellings. A WAL batch written
//!   before datetimes were canonical ([`DatetimeRule::AsSent`]) replays with
//!   the string semantics it was acknowledged under.

use super::request::{MAX_DELETE_BY_FILTER_ROWS, MAX_PATCH_BY_FILTER_ROWS};
use super::EngineError;
use crate::filter::Filter;
use crate::model::{AttrMap, DocId, Document, Value};
use crate::ops::{RequestRecord, RowCounts};
use crate::schema::{canonical_kind, AttrSchema, AttrType, ScalarType};
use crate::state::{NsState, PreparedText};

/// Ids touched by a request (for `return_affected_ids`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AffectedIds {
    /// Upserted ids.
    pub upserted: Vec<DocId>,
    /// Patched ids.
    pub patched: Vec<DocId>,
    /// Deleted ids.
    pub deleted: Vec<DocId>,
}

/// How a request's `datetime` values and literals are read
/// (storage-format 3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatetimeRule {
    /// ISO 8601, stored and compared as canonical UTC milliseconds; a value
    /// that names no instant is refused. Every new request, and WAL batches
    /// flagged `WAL_FLAG_DATETIME_INSTANTS`.
    Instants,
    /// Kept as sent and compared as strings: WAL batches written before
    /// datetimes were canonical replay as they were first applied.
    AsSent,
}

impl DatetimeRule {
    /// The rule a WAL batch's requests were applied under.
    pub fn of_wal_flags(flags: u16) -> DatetimeRule {
        if flags & crate::format::wal::WAL_FLAG_DATETIME_INSTANTS != 0 {
            DatetimeRule::Instants
        } else {
            DatetimeRule::AsSent
        }
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::invalid_input(msg.into())
}

impl NsState {
    fn check_id(&mut self, id: &DocId) -> Result<(), EngineError> {
        match self.id_type {
            None => self.id_type = Some(id.id_type()),
            Some(t) if t != id.id_type() => {
                return Err(invalid(format!(
                    "id {id} is a {} id but this namespace holds {} ids (one namespace cannot mix id types)",
                    id.id_type().schema_name(),
                    t.schema_name()
                )))
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn check_vector(&mut self, doc: &Document) -> Result<(), EngineError> {
        match (&doc.vector, self.vector_dim) {
            (Some(v), None) => {
                self.vector_dim = Some(u32::try_from(v.len()).map_err(|_| invalid("vector too long"))?);
                self.schema.entry(crate::model::VECTOR_ATTR.into()).or_insert_with(|| {
                    AttrSchema::of(AttrType::Vector { dim: v.len(), f16: false })
                });
            }
            (Some(v), Some(d)) if v.len() != d as usize => {
                return Err(invalid(format!(
                    "vector dimension mismatch for id {}: the namespace's vectors have {d} dimensions, this one has {}",
                    doc.id,
                    v.len()
                )))
            }
            (None, Some(d)) => {
                return Err(invalid(format!("document {} has no vector; this namespace's documents carry {d}-dimensional vectors", doc.id)))
            }
            _ => {}
        }
        Ok(())
    }

    /// The canonical spelling attribute `attr` stores under `rule`.
    fn canonical_kind(&self, attr: &str, rule: DatetimeRule) -> Option<ScalarType> {
        canonical_kind(&self.schema, attr)
            .filter(|k| *k != ScalarType::Datetime || rule == DatetimeRule::Instants)
    }

    /// `doc` with the values of `uuid` and `datetime` attributes in canonical
    /// spelling (lower-case uuids, UTC-millisecond datetimes), so equality,
    /// `In`, ranges and ordering never depend on how a client spelled them
    /// (storage-format 3.4, 3.5). Values were type-checked before.
    fn canonical_values(&self, mut doc: Document, rule: DatetimeRule) -> Document {
        for (k, v) in doc.attrs.iter_mut() {
            if let Some(kind) = self.canonical_kind(k, rule) {
                let _ = crate::filter::canonical_value(v, kind);
            }
        }
        doc
    }

    fn check_attr(&mut self, name: &str, v: &Value, rule: DatetimeRule) -> Result<(), EngineError> {
        if matches!(v, Value::Null) {
            return Ok(());
        }
        match self.schema.get(name) {
            Some(s) if !accepts(s.ty, v, rule) => Err(EngineError::invalid_input(
                crate::model::ModelError::TypeMismatch {
                    attr: name.into(),
                    expected: s.ty.name(),
                    got: v.kind().into(),
                }
                .to_string(),
            )),
            Some(_) => Ok(()),
            None => {
                let ty = AttrType::infer(v).ok_or_else(|| {
                    invalid(format!("cannot infer a type for attribute {name:?} from {}", v.kind()))
                })?;
                self.schema.insert(name.into(), AttrSchema::of(ty));
                Ok(())
            }
        }
    }

    fn apply_settings(&mut self, req: &RequestRecord, origin: Origin) -> Result<(), EngineError> {
        // A new request's declared id type types an untyped namespace (it was
        // checked against a typed one by `ids::resolve_ids`). A replay takes
        // the id type from the manifest: earlier builds ignored declarations.
        if origin == Origin::New && self.id_type.is_none() {
            self.id_type = super::ids::declared_id_type(req)?;
        }
        if let Some(m) = req.settings.distance_metric {
            match self.distance_metric {
                Some(cur) if cur != m => {
                    return Err(invalid(format!(
                        "distance_metric is {} for this namespace and cannot change to {}",
                        cur.as_str(),
                        m.as_str()
                    )))
                }
                _ => self.distance_metric = Some(m),
            }
        }
        if let Some(schema) = &req.settings.schema {
            for (name, update) in schema.clone() {
                if name == crate::model::ID_ATTR {
                    continue;
                }
                if let AttrType::Vector { dim, .. } = update.ty {
                    if name == crate::model::VECTOR_ATTR {
                        match self.vector_dim {
                            Some(d) if d as usize != dim => {
                                return Err(invalid(format!(
                                    "schema gives vector dimension {dim} but the namespace has {d}"
                                )))
                            }
                            _ => self.vector_dim = u32::try_from(dim).ok(),
                        }
                    }
                }
                match self.schema.get_mut(&name) {
                    Some(cur) => cur.merge(&name, update).map_err(|e| invalid(e.to_string()))?,
                    None => {
                        let update = self.with_pinned_metric(&name, update.settled());
                        self.schema.insert(name, update);
                    }
                }
            }
        }
        Ok(())
    }
}

impl NsState {
    /// A new named vector attribute keeps the metric it was created with: the one its
    /// `ann.distance_metric` gives, else the namespace's, else cosine distance, written into
    /// its schema so that a later namespace `distance_metric` never changes its distances
    /// (nor the meaning of an index already built).
    fn with_pinned_metric(&self, name: &str, mut update: AttrSchema) -> AttrSchema {
        if name == crate::model::VECTOR_ATTR || update.ann_metric().is_some() {
            return update;
        }
        let m = self.distance_metric.unwrap_or(crate::model::DistanceMetric::CosineDistance);
        if matches!(update.ty, AttrType::MultiVector { .. }) {
            // Only a MUVERA index depends on the metric; its `ann` object gains it.
            if let Some(serde_json::Value::Object(ann)) = update.extra.get_mut("ann").filter(|_| update.ann) {
                ann.insert("distance_metric".into(), m.as_str().into());
            }
            return update;
        }
        if !matches!(update.ty, AttrType::Vector { .. }) {
            return update;
        }
        update.ann = true;
        update.extra.insert("ann".into(), serde_json::json!({"distance_metric": m.as_str()}));
        update
    }
}

/// Whether `ty` accepts `v` under `rule`: before datetimes were canonical, a
/// datetime attribute took any string.
fn accepts(ty: AttrType, v: &Value, rule: DatetimeRule) -> bool {
    let as_sent = |t: ScalarType| if t == ScalarType::Datetime { ScalarType::String } else { t };
    let ty = match (rule, ty) {
        (DatetimeRule::AsSent, AttrType::Scalar(t)) => AttrType::Scalar(as_sent(t)),
        (DatetimeRule::AsSent, AttrType::Array(t)) => AttrType::Array(as_sent(t)),
        (_, ty) => ty,
    };
    ty.accepts(v)
}

/// Apply one new request to `state`. On error `state` is unchanged.
pub fn apply_request(
    state: &mut NsState,
    req: &RequestRecord,
    affected: Option<&mut AffectedIds>,
) -> Result<RowCounts, EngineError> {
    apply_with(state, req, None, affected, Origin::New)
}

/// [`apply_request`] with the upserts' full-text tokens analysed before the
/// commit (`state/text_prepared.rs`; rows they do not match are analysed here).
pub fn apply_prepared(
    state: &mut NsState,
    req: &RequestRecord,
    prepared: Option<&PreparedText>,
    affected: Option<&mut AffectedIds>,
) -> Result<RowCounts, EngineError> {
    apply_with(state, req, prepared, affected, Origin::New)
}

/// Where a request comes from: limits that did not exist when a WAL batch
/// was written must not make its replay fail.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    New,
    Replay(DatetimeRule),
}

/// A new request may not take the namespace past the attribute-name cap; a
/// namespace that grew past it under an older build still replays and
/// serves, it just cannot add names.
fn check_attribute_cap(before: &NsState, after: &NsState) -> Result<(), EngineError> {
    let count = |s: &NsState| {
        s.schema.keys().filter(|k| *k != crate::model::ID_ATTR && *k != crate::model::VECTOR_ATTR).count()
    };
    let n = count(after);
    if n > crate::model::MAX_ATTRIBUTES_PER_NAMESPACE && n > count(before) {
        return Err(invalid(format!(
            "a namespace may have at most {} attributes; this write would make it {n}",
            crate::model::MAX_ATTRIBUTES_PER_NAMESPACE
        )));
    }
    Ok(())
}

/// The schema `state` has once `req`'s settings are applied as a new request's
/// would be; None when they would be refused (the request will fail anyway).
/// A request without settings leaves it as it is (no copy of the state).
pub(super) fn schema_after(state: &NsState, req: &RequestRecord) -> Option<crate::schema::Schema> {
    if req.settings == crate::ops::NamespaceSettings::default() {
        return Some(state.schema.clone());
    }
    let mut s = state.clone();
    s.apply_settings(req, Origin::New).ok()?;
    Some(s.schema)
}

/// Replay one request of a WAL batch under the rule it was first applied
/// with. On error `state` is unchanged.
pub fn replay_request(
    state: &mut NsState,
    req: &RequestRecord,
    rule: DatetimeRule,
) -> Result<RowCounts, EngineError> {
    apply_with(state, req, None, None, Origin::Replay(rule))
}

fn apply_with(
    state: &mut NsState,
    req: &RequestRecord,
    prepared: Option<&PreparedText>,
    mut affected: Option<&mut AffectedIds>,
    origin: Origin,
) -> Result<RowCounts, EngineError> {
    let rule = match origin {
        Origin::New => DatetimeRule::Instants,
        Origin::Replay(rule) => rule,
    };
    let mut s = state.clone();
    let mut counts = RowCounts::default();
    s.apply_settings(req, origin)?;
    let ops = &req.ops;
    // A replay starts from the schema of the manifest, which already holds
    // the settings of later requests (an attribute made full-text, so no
    // longer filterable): filters were checked when the request was
    // acknowledged and are not checked again against a schema they never saw.
    let validated = origin == Origin::New;
    for f in [&ops.upsert_condition, &ops.patch_condition, &ops.delete_condition, &ops.delete_by_filter]
        .into_iter()
        .flatten()
        .filter(|_| validated)
    {
        f.validate(&s.schema).map_err(|e| invalid(e.to_string()))?;
    }
    // Literals compared with uuid and datetime attributes in canonical
    // spelling (as stored).
    let canonical = |f: &Option<Filter>| -> Result<Option<Filter>, EngineError> {
        let kind_of = |a: &str| s.canonical_kind(a, rule);
        let Some(f) = f else { return Ok(None) };
        let c = f.with_canonical_literals(&kind_of).map_err(|e| invalid(e.to_string()))?;
        Ok(Some(c.unwrap_or_else(|| f.clone())))
    };
    let (upsert_condition, patch_condition, delete_condition, delete_by_filter) = (
        canonical(&ops.upsert_condition)?,
        canonical(&ops.patch_condition)?,
        canonical(&ops.delete_condition)?,
        canonical(&ops.delete_by_filter)?,
    );
    let patch_by_filter_filter = canonical(&ops.patch_by_filter.as_ref().map(|p| p.filter.clone()))?;
    if let Some(f) = &delete_by_filter {
        let ids = matching_ids(&s, f, MAX_DELETE_BY_FILTER_ROWS, "delete_by_filter")?;
        for id in ids {
            s.remove(&id);
            counts.deleted += 1;
            if let Some(a) = affected.as_deref_mut() {
                a.deleted.push(id);
            }
        }
    }
    if let (Some(pbf), Some(filter)) = (&ops.patch_by_filter, &patch_by_filter_filter) {
        if validated {
            pbf.filter.validate(&s.schema).map_err(|e| invalid(e.to_string()))?;
        }
        let ids = matching_ids(&s, filter, MAX_PATCH_BY_FILTER_ROWS, "patch_by_filter")?;
        for id in ids {
            patch_one(&mut s, &id, &pbf.attrs, None, rule)?;
            counts.patched += 1;
            if let Some(a) = affected.as_deref_mut() {
                a.patched.push(id);
            }
        }
    }
    let prepared = prepared.filter(|p| p.rows() == ops.upserts.len());
    for (i, doc) in ops.upserts.iter().enumerate() {
        s.check_id(&doc.id)?;
        s.check_vector(doc)?;
        for (k, v) in &doc.attrs {
            s.check_attr(k, v, rule)?;
        }
        let doc = s.canonical_values(doc.clone(), rule);
        if let (Some(cond), Some(cur)) = (&upsert_condition, s.get(&doc.id)) {
            if !cond.matches(&cur, Some(&doc)) {
                continue;
            }
        }
        if let Some(a) = affected.as_deref_mut() {
            a.upserted.push(doc.id.clone());
        }
        s.put_prepared(doc, prepared.map(|p| p.row(i)));
        counts.upserted += 1;
    }
    for p in &ops.patches {
        s.check_id(&p.id)?;
        if patch_one(&mut s, &p.id, &p.attrs, patch_condition.as_ref(), rule)? {
            counts.patched += 1;
            if let Some(a) = affected.as_deref_mut() {
                a.patched.push(p.id.clone());
            }
        }
    }
    for id in &ops.deletes {
        s.check_id(id)?;
        let Some(cur) = s.get(id) else { continue };
        if delete_condition.as_ref().is_some_and(|c| !c.matches(&cur, None)) {
            continue;
        }
        s.remove(id);
        counts.deleted += 1;
        if let Some(a) = affected.as_deref_mut() {
            a.deleted.push(id.clone());
        }
    }
    if let Some(k) = &req.idempotency_key {
        s.idempotency.insert(k.clone(), counts);
    }
    if origin == Origin::New {
        check_attribute_cap(state, &s)?;
    }
    // A request that changed only the schema leaves no put to re-index with.
    s.sync_text_index();
    *state = s;
    Ok(counts)
}

fn matching_ids(s: &NsState, f: &Filter, cap: usize, what: &str) -> Result<Vec<DocId>, EngineError> {
    let ids: Vec<DocId> =
        s.iter().filter(|d| f.matches(d, None)).map(|d| d.id.clone()).take(cap + 1).collect();
    if ids.len() > cap {
        return Err(invalid(format!("{what} matches more than {cap} documents; narrow the filter")));
    }
    Ok(ids)
}

/// Patch one document; returns false when it is missing or its condition fails.
fn patch_one(
    s: &mut NsState,
    id: &DocId,
    attrs: &AttrMap,
    cond: Option<&Filter>,
    rule: DatetimeRule,
) -> Result<bool, EngineError> {
    let Some(cur) = s.get(id) else { return Ok(false) };
    let mut next = (*cur).clone();
    for (k, v) in attrs {
        s.check_attr(k, v, rule)?;
        if matches!(v, Value::Null) {
            next.attrs.remove(k);
        } else {
            next.attrs.insert(k.clone(), v.clone());
        }
    }
    let next = s.canonical_values(next, rule);
    if cond.is_some_and(|c| !c.matches(&cur, Some(&next))) {
        return Ok(false);
    }
    s.put(next);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::request::WriteRequest;
    use serde_json::json;

    fn apply(s: &mut NsState, body: serde_json::Value) -> Result<RowCounts, EngineError> {
        let req = WriteRequest::from_json(&body)?;
        apply_request(s, &req.record, None)
    }

    #[test]
    fn datetimes_are_instants_but_old_wal_batches_replay_as_sent() {
        let body = json!({
            "schema": {"ts": "datetime"},
            "upsert_rows": [{"id": 1, "ts": "2015-01-20T12:34:56-04:00"}, {"id": 2, "ts": "2015-01-20T12:40:00Z"}],
        });
        let req = WriteRequest::from_json(&body).unwrap();
        let ts = |s: &NsState, id: u64| s.get(&DocId::U64(id)).unwrap().attrs["ts"].clone();
        let later = json!({"delete_by_filter": ["ts", "Gt", "2015-01-20T16:00:00+00:00"]});
        let later = WriteRequest::from_json(&later).unwrap();

        // New requests: canonical UTC instants, compared as instants.
        let mut s = NsState::default();
        apply_request(&mut s, &req.record, None).unwrap();
        assert_eq!(ts(&s, 1), Value::Str("2015-01-20T16:34:56.000Z".into()));
        assert_eq!(apply_request(&mut s, &later.record, None).unwrap().deleted, 1, "16:34:56Z > 16:00Z");

        // A batch written before (no flag): the strings as sent, compared as
        // strings, exactly as the write was acknowledged.
        let mut old = NsState::default();
        replay_request(&mut old, &req.record, DatetimeRule::of_wal_flags(0)).unwrap();
        assert_eq!(ts(&old, 1), Value::Str("2015-01-20T12:34:56-04:00".into()));
        assert_eq!(replay_request(&mut old, &later.record, DatetimeRule::AsSent).unwrap().deleted, 0);
        let loose = json!({"upsert_rows": [{"id": 3, "ts": "not a date"}]});
        let loose = WriteRequest::from_json(&loose).unwrap();
        replay_request(&mut old, &loose.record, DatetimeRule::AsSent).unwrap();
        let err = apply_request(&mut old, &loose.record, None).unwrap_err();
        assert!(err.to_string().contains("datetime"), "{err}");
    }

    #[test]
    fn failed_request_leaves_state_untouched() {
        let mut s = NsState::default();
        apply(&mut s, json!({"upsert_rows": [{"id": 1, "vector": [1.0, 2.0], "n": 1}]})).unwrap();
        let err = apply(
            &mut s,
            json!({"upsert_rows": [{"id": 2, "vector": [1.0, 2.0]}, {"id": 3, "vector": [1.0]}]}),
        );
        assert!(err.unwrap_err().to_string().contains("dimension mismatch"));
        assert_eq!(s.len(), 1);
        assert!(
            apply(&mut s, json!({"upsert_rows": [{"id": "x", "vector": [1.0, 2.0]}]})).is_err(),
            "mixed id types"
        );
        assert!(
            apply(&mut s, json!({"upsert_rows": [{"id": 4, "vector": [1.0, 2.0], "n": "str"}]})).is_err(),
            "type mismatch"
        );
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn patch_null_removes_and_missing_ids_are_ignored() {
        let mut s = NsState::default();
        apply(&mut s, json!({"upsert_rows": [{"id": 1, "a": 1, "b": "x"}]})).unwrap();
        let c = apply(&mut s, json!({"patch_rows": [{"id": 1, "a": null, "c": true}, {"id": 9, "a": 2}]}))
            .unwrap();
        assert_eq!(c.patched, 1);
        let d = s.get(&DocId::U64(1)).unwrap();
        assert!(!d.attrs.contains_key("a"));
        assert_eq!(d.attrs.get("c"), Some(&Value::Bool(true)));
        assert!(!s.contains(&DocId::U64(9)));
    }

    #[test]
    fn a_replay_does_not_check_filters_against_a_schema_they_never_saw() {
        let reqs = [
            json!({"upsert_rows": [{"id": 1, "b": "x"}, {"id": 2, "b": "y"}]}),
            json!({"deletes": [1, 2], "delete_condition": ["b", "Eq", "x"]}),
            json!({"schema": {"b": {"type": "string", "full_text_search": true}}}),
        ]
        .map(|b| WriteRequest::from_json(&b).unwrap().record);
        let mut live = NsState::default();
        for r in &reqs {
            apply_request(&mut live, r, None).unwrap();
        }
        assert!(apply_request(&mut live.clone(), &reqs[1], None).is_err(), "b is not filterable any more");
        // A load starts from the manifest's schema (the newest) and replays
        // the WAL: the acknowledged condition still applies as it did.
        let mut replayed = NsState::default();
        replayed.schema = live.schema.clone();
        for r in &reqs {
            replay_request(&mut replayed, r, DatetimeRule::Instants).unwrap();
        }
        assert_eq!(replayed.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), vec![DocId::U64(2)]);
        assert_eq!(replayed.len(), live.len());
    }

    #[test]
    fn metric_is_immutable_once_set() {
        let mut s = NsState::default();
        apply(&mut s, json!({"distance_metric": "cosine_distance", "upsert_rows": [{"id": 1}]})).unwrap();
        apply(&mut s, json!({"distance_metric": "cosine_distance", "upsert_rows": [{"id": 2}]})).unwrap();
        assert!(apply(&mut s, json!({"distance_metric": "euclidean_squared", "upsert_rows": [{"id": 3}]}))
            .is_err());
    }
}
