//! Named vector attributes in writes: the values a client sends for an `[N]f32` / `[N]f16`
//! attribute other than `vector` (an array of numbers or a base64 string of little-endian
//! f32) become `Value::Dense` before a request is applied, so the WAL batch stores them in
//! the dense encoding (`format/attrs.rs`, tag 7) and a replay never converts again.
//!
//! Invariants:
//! - An attribute is a named vector when the request's own `schema` says so, else when the
//!   namespace's schema does (an attribute's type never changes, so the two never disagree
//!   on a typed attribute; a disagreement is refused later by the schema merge).
//! - Every converted value has exactly the schema's dimension and finite elements; anything
//!   else is refused with a 400 naming the attribute. Nothing else in the request changes.

use crate::model::VECTOR_ATTR;
use crate::ops::RequestRecord;
use crate::schema::{dense_from, AttrType, Schema};
use crate::state::NsState;

use super::EngineError;

/// The dimension of named vector attribute `attr` (the request's schema first), if it is one.
fn named_dim(state: &NsState, declared: Option<&Schema>, attr: &str) -> Option<usize> {
    if attr == VECTOR_ATTR {
        return None;
    }
    match declared.and_then(|s| s.get(attr)).or_else(|| state.schema.get(attr))?.ty {
        AttrType::Vector { dim, .. } => Some(dim),
        _ => None,
    }
}

/// Converts the named vector values of `record`'s upserts and patches to `Value::Dense`.
pub fn resolve_dense(state: &NsState, record: &mut RequestRecord) -> Result<(), EngineError> {
    let has_named =
        |s: &Schema| s.iter().any(|(k, a)| k != VECTOR_ATTR && matches!(a.ty, AttrType::Vector { .. }));
    let declared = record.settings.schema.as_ref();
    if !has_named(&state.schema) && !declared.is_some_and(has_named) {
        return Ok(());
    }
    for attrs in record.ops.attr_maps_mut() {
        for (name, v) in attrs.iter_mut() {
            let Some(dim) = named_dim(state, declared, name) else { continue };
            if let Some(d) =
                dense_from(name, dim, v).map_err(|e| EngineError::invalid_input(e.to_string()))?
            {
                *v = d;
            }
        }
    }
    Ok(())
}
