//! Id typing: which kind of ids a namespace holds, and a new request's ids
//! (and the literals its filters compare with `id`) resolved to that kind
//! before the request is applied and its WAL batch encoded.
//!
//! Invariants:
//! - Integer and string ids are inferred (`uint`, `string`); an id is a uuid
//!   only in a namespace whose ids are uuids: declared
//!   (`"schema": {"id": "uuid"}`), or typed so by an earlier build, which
//!   inferred uuids from a string's shape. A string id in a string namespace
//!   is kept byte for byte, whatever it looks like.
//! - In a uuid namespace any spelling of a uuid names the same document: ids
//!   and `id` literals are resolved to the uuid (stored and rendered in
//!   canonical lower case).
//! - Resolution happens once, for a new request, on the state it is applied
//!   to: the WAL batch stores resolved ids and canonical `id` literals in the
//!   encodings it always had, so a replay, and an older build, reads exactly
//!   what was acknowledged (no format change).
//! - A declared id type that contradicts the namespace's is refused, except
//!   `string` on a uuid namespace: an earlier build ignored that declaration
//!   and typed the ids as uuids, and such a namespace keeps behaving as it
//!   did (its ids stay uuids).

use super::EngineError;
use crate::filter::Filter;
use crate::model::{DocId, IdType, ID_ATTR};
use crate::ops::RequestRecord;
use crate::schema::{AttrType, ScalarType};
use crate::state::NsState;

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::invalid_input(msg.into())
}

/// The id type `schema.id` declares in `record`, if it declares one.
pub fn declared_id_type(record: &RequestRecord) -> Result<Option<IdType>, EngineError> {
    let Some(entry) = record.settings.schema.as_ref().and_then(|s| s.get(ID_ATTR)) else {
        return Ok(None);
    };
    match entry.ty {
        AttrType::Scalar(ScalarType::Uint) => Ok(Some(IdType::U64)),
        AttrType::Scalar(ScalarType::Uuid) => Ok(Some(IdType::Uuid)),
        AttrType::Scalar(ScalarType::String) => Ok(Some(IdType::String)),
        other => Err(invalid(format!("schema.id: an id is uint, uuid or string, not {}", other.name()))),
    }
}

/// The id type `record` is applied under on `state`: the namespace's, else
/// the declared one, else the first id's inferred type (`None`: no id at all).
fn effective_id_type(state: &NsState, record: &RequestRecord) -> Result<Option<IdType>, EngineError> {
    let declared = declared_id_type(record)?;
    match (state.id_type, declared) {
        // Kept as an earlier build treated it (module doc).
        (Some(IdType::Uuid), Some(IdType::String)) => Ok(Some(IdType::Uuid)),
        (Some(current), Some(d)) if current != d => Err(invalid(format!(
            "schema.id declares {} ids but this namespace holds {} ids; an id type cannot change",
            d.schema_name(),
            current.schema_name()
        ))),
        (Some(current), _) => Ok(Some(current)),
        (None, Some(d)) => Ok(Some(d)),
        (None, None) => Ok(first_id(record).map(DocId::inferred_type)),
    }
}

fn first_id(record: &RequestRecord) -> Option<&DocId> {
    let ops = &record.ops;
    let upserted = ops.upserts.first().map(|d| &d.id);
    upserted.or_else(|| ops.patches.first().map(|p| &p.id)).or_else(|| ops.deletes.first())
}

/// `record`'s ids as `state`'s namespace holds them, and in a uuid namespace
/// its filters' `id` literals in canonical spelling (module doc).
pub fn resolve_ids(state: &NsState, record: &mut RequestRecord) -> Result<(), EngineError> {
    let Some(ty) = effective_id_type(state, record)? else { return Ok(()) };
    let ops = &mut record.ops;
    for doc in &mut ops.upserts {
        resolve_one(&mut doc.id, ty)?;
    }
    for patch in &mut ops.patches {
        resolve_one(&mut patch.id, ty)?;
    }
    for id in &mut ops.deletes {
        resolve_one(id, ty)?;
    }
    if ty == IdType::Uuid {
        for f in [&mut ops.upsert_condition, &mut ops.patch_condition, &mut ops.delete_condition]
            .into_iter()
            .chain([&mut ops.delete_by_filter])
            .flatten()
        {
            canonical_id_literals(f)?;
        }
        if let Some(p) = &mut ops.patch_by_filter {
            canonical_id_literals(&mut p.filter)?;
        }
    }
    Ok(())
}

fn resolve_one(id: &mut DocId, ty: IdType) -> Result<(), EngineError> {
    let resolved = id.clone().resolve(ty).ok_or_else(|| match (&*id, ty) {
        (DocId::Str(s), IdType::Uuid) => {
            invalid(format!("id {s:?} is not a uuid; this namespace's ids are uuids"))
        }
        _ => invalid(format!(
            "id {id} is a {} id but this namespace holds {} ids (one namespace cannot mix id types)",
            id.inferred_type().schema_name(),
            ty.schema_name()
        )),
    })?;
    *id = resolved;
    Ok(())
}

/// Rewrites the literals `f` compares with `id` into canonical uuid spelling.
pub fn canonical_id_literals(f: &mut Filter) -> Result<(), EngineError> {
    let kind = |attr: &str| (attr == ID_ATTR).then_some(ScalarType::Uuid);
    if let Some(c) = f.with_canonical_literals(&kind).map_err(|e| invalid(e.to_string()))? {
        *f = c;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::request::WriteRequest;

    fn record(body: serde_json::Value) -> RequestRecord {
        WriteRequest::from_json(&body).unwrap().record
    }

    fn state_of(ty: Option<IdType>) -> NsState {
        let mut s = NsState::default();
        s.id_type = ty;
        s
    }

    const UPPER: &str = "0A1B2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D";

    #[test]
    fn uuid_shaped_strings_stay_strings_unless_declared() {
        let mut r = record(json!({"upsert_rows": [{"id": UPPER}]}));
        resolve_ids(&state_of(None), &mut r).unwrap();
        assert_eq!(r.ops.upserts[0].id, DocId::Str(UPPER.into()));
        let mut r = record(json!({"upsert_rows": [{"id": UPPER}], "schema": {"id": {"type": "uuid"}}}));
        resolve_ids(&state_of(None), &mut r).unwrap();
        assert_eq!(r.ops.upserts[0].id.to_json(), json!(UPPER.to_lowercase()));
    }

    #[test]
    fn a_uuid_namespace_resolves_ids_and_id_literals() {
        let body = json!({"deletes": [UPPER], "delete_condition": ["id", "In", [UPPER]], "upsert_rows": []});
        let mut r = record(body);
        resolve_ids(&state_of(Some(IdType::Uuid)), &mut r).unwrap();
        assert!(matches!(r.ops.deletes[0], DocId::Uuid(_)));
        let lower = UPPER.to_lowercase();
        assert_eq!(r.ops.delete_condition.unwrap().to_json(), json!(["id", "In", [lower]]));
        let mut bad = record(json!({"deletes": ["not-a-uuid"]}));
        let err = resolve_ids(&state_of(Some(IdType::Uuid)), &mut bad).unwrap_err();
        assert!(err.to_string().contains("not a uuid"), "{err}");
    }

    #[test]
    fn declarations_must_agree_except_string_on_an_inferred_uuid_namespace() {
        let declare = |t: &str| record(json!({"schema": {"id": t}, "upsert_rows": [{"id": UPPER}]}));
        let mut legacy = declare("string");
        resolve_ids(&state_of(Some(IdType::Uuid)), &mut legacy).unwrap();
        assert!(matches!(legacy.ops.upserts[0].id, DocId::Uuid(_)), "kept as before");
        assert!(resolve_ids(&state_of(Some(IdType::String)), &mut declare("uuid")).is_err());
        assert!(resolve_ids(&state_of(Some(IdType::U64)), &mut declare("string")).is_err());
        assert!(resolve_ids(&state_of(None), &mut declare("float")).is_err());
        let mut ints = record(json!({"schema": {"id": "uint"}, "upsert_rows": [{"id": "a"}]}));
        assert!(resolve_ids(&state_of(None), &mut ints).is_err());
    }
}
