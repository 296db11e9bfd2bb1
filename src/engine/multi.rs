//! Multi-vector (late interaction) attributes in writes: every value a client sends for a
//! `[][N]f32` / `[][N]f16` attribute is checked against the schema's N before a request is
//! applied, so a refusal names the attribute and the offending vector.
//!
//! Invariants:
//! - The schema is the request's own `schema` first, else the namespace's (an attribute's
//!   type never changes, so the two never disagree on a typed attribute).
//! - An accepted value is a [`Value::Multi`] of 1..=`MAX_MULTI_VECTORS` vectors, each of
//!   exactly N finite f32 (the count cap and finiteness are `Value::from_json`'s checks);
//!   anything else is refused with a 400 naming the attribute. Nothing is converted.

use crate::model::Value;
use crate::ops::RequestRecord;
use crate::schema::{AttrType, Schema};
use crate::state::NsState;

use super::EngineError;

/// The dimension of multi-vector attribute `attr` (the request's schema first), if it is one.
fn multi_dim(state: &NsState, declared: Option<&Schema>, attr: &str) -> Option<usize> {
    match declared.and_then(|s| s.get(attr)).or_else(|| state.schema.get(attr))?.ty {
        AttrType::MultiVector { dim, .. } => Some(dim),
        _ => None,
    }
}

/// Why `v` is not a value of a `[][dim]f32` attribute, if it is not.
fn refusal(dim: usize, v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Multi(vs) => vs
            .iter()
            .position(|x| x.len() != dim)
            .map(|i| format!("vector {i} has {} dimensions, the schema says {dim}", vs[i].len())),
        Value::Array(items) if items.is_empty() => {
            Some("holds no vectors (send null to leave it unset)".into())
        }
        other => Some(format!("expected an array of {dim}-dimensional float arrays, got {}", other.kind())),
    }
}

/// Checks the multi-vector values of `record`'s upserts and patches against the schema.
pub fn check_multi(state: &NsState, record: &RequestRecord) -> Result<(), EngineError> {
    let has_multi = |s: &Schema| s.values().any(|a| matches!(a.ty, AttrType::MultiVector { .. }));
    let declared = record.settings.schema.as_ref();
    if !has_multi(&state.schema) && !declared.is_some_and(has_multi) {
        return Ok(());
    }
    for attrs in record.ops.attr_maps() {
        for (name, v) in attrs.iter() {
            let Some(dim) = multi_dim(state, declared, name) else { continue };
            if let Some(why) = refusal(dim, v) {
                return Err(EngineError::invalid_input(format!("attribute {name:?} ([][{dim}]f32): {why}")));
            }
        }
    }
    Ok(())
}
