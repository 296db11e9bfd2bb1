//! Reading the JSON text that WAL batches written before
//! [`super::WAL_FLAG_OWN_ENCODINGS`] hold: each filter or condition as the
//! canonical turbopuffer JSON of its day (`Filter::to_json`), each schema
//! update as the client's schema JSON (storage-format 3.2.3).
//!
//! Invariants:
//! - The text is walked structurally here and the typed values are built
//!   through limit-free constructors ([`Condition::new`], [`AttrSchema::of`]);
//!   no API parser and no API limit is used, so tightening what the API
//!   accepts, or respelling it, never makes an acknowledged batch unreadable.
//! - The spelling read is frozen in this file: operator names
//!   ([`LEGACY_OP_NAMES`]), type names and full-text defaults
//!   ([`legacy_fts_defaults`]) are those of the builds that wrote the text,
//!   not whatever the API uses today.
//! - Everything the old encoder wrote decodes to the value it encoded; the
//!   only bound is structural ([`MAX_FILTER_NESTING`] as a stack guard).

use serde_json::{Map, Value as Json};

use crate::filter::{Condition, Filter, LeafOperand, Op, Operand};
use crate::model::Value;
use crate::schema::Schema;

use super::super::attrs::MAX_STRING_BYTES;
use super::super::filter::MAX_FILTER_NESTING;
use super::super::{FormatError, Reader};

/// Operator names as legacy batches spell them.
pub const LEGACY_OP_NAMES: [(&str, Op); 25] = [
    ("Eq", Op::Eq),
    ("NotEq", Op::NotEq),
    ("In", Op::In),
    ("NotIn", Op::NotIn),
    ("Lt", Op::Lt),
    ("Lte", Op::Lte),
    ("Gt", Op::Gt),
    ("Gte", Op::Gte),
    ("AnyLt", Op::AnyLt),
    ("AnyLte", Op::AnyLte),
    ("AnyGt", Op::AnyGt),
    ("AnyGte", Op::AnyGte),
    ("Contains", Op::Contains),
    ("NotContains", Op::NotContains),
    ("ContainsAny", Op::ContainsAny),
    ("NotContainsAny", Op::NotContainsAny),
    ("Glob", Op::Glob),
    ("NotGlob", Op::NotGlob),
    ("IGlob", Op::IGlob),
    ("NotIGlob", Op::NotIGlob),
    ("Regex", Op::Regex),
    ("Fuzzy", Op::Fuzzy),
    ("ContainsAllTokens", Op::ContainsAllTokens),
    ("ContainsAnyToken", Op::ContainsAnyToken),
    ("ContainsTokenSequence", Op::ContainsTokenSequence),
];

/// The full-text options a legacy `"full_text_search": true` (or an option
/// left out) meant when those batches were written: one definition for
/// legacy WAL batches and legacy manifests alike.
pub use crate::format::schema::legacy_fts_defaults;

fn malformed(what: &str, why: impl std::fmt::Display) -> FormatError {
    FormatError::Malformed(format!("{what}: {why}"))
}

fn parse_text(r: &mut Reader<'_>, what: &'static str) -> Result<Json, FormatError> {
    let text = r.str(what, MAX_STRING_BYTES)?;
    serde_json::from_str(text).map_err(|e| malformed(what, format_args!("not JSON: {e}")))
}

/// Read one length-prefixed legacy filter text.
pub(super) fn read_filter_text(r: &mut Reader<'_>, what: &'static str) -> Result<Filter, FormatError> {
    let json = parse_text(r, what)?;
    filter_node(&json, 1).map_err(|e| malformed(what, e))
}

/// Read one length-prefixed legacy schema text.
pub(super) fn read_schema_text(r: &mut Reader<'_>, what: &'static str) -> Result<Schema, FormatError> {
    let json = parse_text(r, what)?;
    decode_schema_json(&json).map_err(|e| malformed(what, e))
}

/// A filter from the JSON a legacy batch holds.
pub fn decode_filter_json(v: &Json) -> Result<Filter, FormatError> {
    filter_node(v, 1).map_err(|e| malformed("legacy filter", e))
}

fn filter_node(v: &Json, depth: usize) -> Result<Filter, String> {
    if depth > MAX_FILTER_NESTING {
        return Err(format!("filter nests deeper than {MAX_FILTER_NESTING} levels"));
    }
    let Json::Array(items) = v else { return Err(format!("a filter node must be an array, got {v}")) };
    match items.as_slice() {
        [Json::String(head), Json::Array(children)] if head == "And" || head == "Or" => {
            let subs = children.iter().map(|c| filter_node(c, depth + 1)).collect::<Result<Vec<_>, _>>()?;
            Ok(if head == "And" { Filter::And(subs) } else { Filter::Or(subs) })
        }
        [Json::String(head), inner] if head == "Not" => {
            Ok(Filter::Not(Box::new(filter_node(inner, depth + 1)?)))
        }
        [Json::String(attr), Json::String(op), operand] => condition(attr, op, operand, None),
        [Json::String(attr), Json::String(op), operand, options] => {
            condition(attr, op, operand, Some(options))
        }
        _ => Err(format!("unrecognized filter node {v}")),
    }
}

fn condition(attr: &str, op_name: &str, operand: &Json, options: Option<&Json>) -> Result<Filter, String> {
    let op = LEGACY_OP_NAMES
        .iter()
        .find(|(name, _)| *name == op_name)
        .map(|(_, op)| *op)
        .ok_or_else(|| format!("unknown operator {op_name:?}"))?;
    if options.is_some() && op != Op::Fuzzy {
        return Err(format!("{op_name} has a 4th element"));
    }
    let leaf = match op {
        Op::Glob | Op::NotGlob | Op::IGlob | Op::NotIGlob | Op::Regex => {
            LeafOperand::Pattern(string(operand)?)
        }
        Op::Fuzzy => fuzzy(operand, options)?,
        op if op.is_token_op() => tokens(operand)?,
        _ => LeafOperand::Value(value_operand(operand)?),
    };
    Condition::new(attr, op, leaf).map(Filter::Cond).map_err(|e| e.to_string())
}

fn string(v: &Json) -> Result<String, String> {
    v.as_str().map(str::to_owned).ok_or_else(|| format!("expected a string, got {v}"))
}

fn fuzzy(operand: &Json, options: Option<&Json>) -> Result<LeafOperand, String> {
    let text = string(operand)?;
    let (mut max_edit_distance, mut case_sensitive) = (1u8, true);
    let empty = Map::new();
    let options = match options {
        None => &empty,
        Some(Json::Object(m)) => m,
        Some(other) => return Err(format!("Fuzzy options must be an object, got {other}")),
    };
    for (k, v) in options {
        match k.as_str() {
            "max_edit_distance" => {
                max_edit_distance = v
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(|| format!("Fuzzy max_edit_distance {v} is not a small integer"))?;
            }
            "case_sensitive" => {
                case_sensitive =
                    v.as_bool().ok_or_else(|| format!("Fuzzy case_sensitive {v} is not a bool"))?;
            }
            other => return Err(format!("unknown Fuzzy option {other:?}")),
        }
    }
    Ok(LeafOperand::Fuzzy { text, max_edit_distance, case_sensitive })
}

fn tokens(v: &Json) -> Result<LeafOperand, String> {
    match v {
        Json::String(s) => Ok(LeafOperand::TokenText(s.clone())),
        Json::Array(items) => {
            items.iter().map(string).collect::<Result<Vec<_>, _>>().map(LeafOperand::Tokens)
        }
        other => Err(format!("a token query is a string or an array of strings, got {other}")),
    }
}

fn value_operand(v: &Json) -> Result<Operand, String> {
    match v {
        Json::Object(m) => match (m.len(), m.get("$ref_new")) {
            (1, Some(Json::String(target))) => Ok(Operand::RefNew(target.clone())),
            _ => Err(format!("an object operand must be {{\"$ref_new\": attr}}, got {v}")),
        },
        Json::Array(items) => {
            items.iter().map(scalar).collect::<Result<Vec<_>, _>>().map(|xs| Operand::Value(Value::Array(xs)))
        }
        other => scalar(other).map(Operand::Value),
    }
}

fn scalar(v: &Json) -> Result<Value, String> {
    Ok(match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Value::Int(i128::from(i)),
            (None, Some(u), _) => Value::Int(i128::from(u)),
            (None, None, Some(f)) if f.is_finite() => Value::Float(f),
            _ => return Err(format!("number {n} is not finite")),
        },
        Json::String(s) => Value::Str(s.clone()),
        other => return Err(format!("expected a scalar, got {other}")),
    })
}

// ------------------------------------------------------------------ schema

/// A schema update from the client JSON a legacy batch holds
/// (`{"attr": "type" | {...}}`): the same structural reader as a legacy
/// manifest's schema (`format::schema::decode_legacy_schema`; the old code
/// parsed both with one function), no API rule applied.
pub fn decode_schema_json(v: &Json) -> Result<Schema, FormatError> {
    crate::format::schema::decode_legacy_schema(v)
}
