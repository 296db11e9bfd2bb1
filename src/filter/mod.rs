//! Filters: the turbopuffer v2 filter language (`filters`, `*_condition`,
//! `delete_by_filter`, `patch_by_filter`), parsed into a typed AST and
//! evaluated against one document at a time.
//!
//! Invariants:
//! - Canonical round-trip: for every filter `f` returned by [`Filter::parse`],
//!   `Filter::parse(&f.to_json()) == Ok(f)`. The canonical form keeps the
//!   structure as written (no flattening or reordering) and always spells out
//!   `Fuzzy` options.
//! - Bounded size: a parsed filter nests at most [`MAX_DEPTH`] levels (the
//!   top-level node is level 1), has at most [`MAX_LEAVES`] leaves (conditions
//!   and empty `And`/`Or`), at most [`MAX_REGEXES`] `Regex` conditions, no
//!   pattern longer than [`MAX_PATTERN_BYTES`] and at most
//!   [`MAX_PATTERN_TOTAL_BYTES`] of patterns in all. Depth is checked while
//!   parsing, so hostile input cannot overflow the stack. Every recursive walk
//!   is bounded by [`MAX_DEPTH`]; a deeper tree can only be built by hand, and
//!   then evaluates its too-deep parts as non-matching and renders them as
//!   `null` (which `parse` rejects) instead of recursing further.
//! - Leaves are only built by [`Condition::new`] (which `parse` calls after
//!   its limits), so every leaf is well-formed (an `In` operand is a list, a
//!   `Regex` is compiled, ...). `Condition::new` applies no API limit, so
//!   storage decoders rebuild stored filters through it whatever the limits
//!   above become; [`REGEX_SIZE_LIMIT`] is the one bound it keeps, as a
//!   memory-safety bound on a compiled regex.
//! - Null means "missing": `["x","Eq",null]` matches documents without `x`
//!   and `["x","NotEq",null]` those with it. A `{"$ref_new": a}` operand that
//!   resolves to nothing is null, and then `Eq`/`In`/`Contains`/`ContainsAny`
//!   match a missing attribute, their `Not` forms a present one, and range
//!   operators nothing.
//! - Every `Not…` operator is exactly the negation of its positive form on
//!   every document, including documents that lack the attribute.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value as Json};

use crate::model::{Document, Value, ID_ATTR, MAX_ATTRIBUTE_NAME_BYTES, VECTOR_ATTR};
use crate::schema::{AttrType, ScalarType, Schema};

mod eval;
pub use eval::*;
mod leaf;
pub use leaf::*;
mod parse;
use parse::*;
mod pattern;
use pattern::*;

/// Deepest nesting accepted; the top-level node is level 1.
pub const MAX_DEPTH: usize = 64;
/// Most leaves (conditions and empty `And`/`Or`) in one filter.
pub const MAX_LEAVES: usize = 10_000;
/// Longest `Glob`/`IGlob`/`Regex`/`Fuzzy` pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Most bytes of all `Glob`/`IGlob`/`Regex`/`Fuzzy` patterns of one filter
/// together (per-row matching cost grows with the patterns' total length).
pub const MAX_PATTERN_TOTAL_BYTES: usize = 64 * 1024;
/// Longest token-filter operand, in bytes (turbopuffer's full-text query limit).
pub const MAX_TOKEN_QUERY_BYTES: usize = 8192;
/// Most `Regex` conditions in one filter: each may compile to up to
/// [`REGEX_SIZE_LIMIT`] bytes, so this bounds a filter's memory.
pub const MAX_REGEXES: usize = 64;
/// Bound on one compiled regex (program and lazy-DFA cache), in bytes. Not an
/// API limit but a memory-safety bound: [`Condition::new`] keeps it, so it
/// also applies to filters decoded from storage (never lower it).
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Largest `max_edit_distance` of `Fuzzy`.
pub const MAX_FUZZY_DISTANCE: u8 = 2;

/// A bad filter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid filter: {0}")]
pub struct FilterError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, FilterError> {
    Err(FilterError(msg.into()))
}

/// A parsed filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// Every sub-filter matches (an empty `And` matches everything).
    And(Vec<Filter>),
    /// Some sub-filter matches (an empty `Or` matches nothing).
    Or(Vec<Filter>),
    /// The sub-filter does not match.
    Not(Box<Filter>),
    /// A leaf `[attr, op, operand]`.
    Cond(Condition),
}

/// Rewrite uuid strings in `v` (or its elements) to canonical form; whether
/// anything changed.
pub(crate) fn canonical_uuid_value(v: &mut Value) -> bool {
    match v {
        Value::Array(items) => items.iter_mut().fold(false, |changed, x| canonical_uuid_value(x) | changed),
        other => match other.canonical_uuid() {
            Some(c) => {
                *other = c;
                true
            }
            None => false,
        },
    }
}

/// Rewrite `v` (or its elements) into the canonical spelling of `kind` (see
/// `schema::canonical_kind`); whether anything changed. A string that names
/// no instant is an error for `Datetime`; for `Uuid` a non-uuid string stays
/// as it is (it matches nothing).
pub(crate) fn canonical_value(v: &mut Value, kind: ScalarType) -> Result<bool, FilterError> {
    match (v, kind) {
        (Value::Array(items), _) => {
            let mut changed = false;
            for x in items {
                changed |= canonical_value(x, kind)?;
            }
            Ok(changed)
        }
        (v @ Value::Str(_), ScalarType::Uuid) => Ok(canonical_uuid_value(v)),
        (Value::Str(s), ScalarType::Datetime) => match crate::datetime::canonical(s) {
            Some(c) if c == *s => Ok(false),
            Some(c) => {
                *s = c;
                Ok(true)
            }
            None => err(format!("{s:?} is not an ISO 8601 date or date-time")),
        },
        _ => Ok(false),
    }
}

/// A filter operator, as spelled on the wire.
///
/// Variants are the wire names; their meaning is the turbopuffer reference's
/// and this module's doc, so they carry no per-variant docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum Op {
    Eq,
    NotEq,
    In,
    NotIn,
    Lt,
    Lte,
    Gt,
    Gte,
    AnyLt,
    AnyLte,
    AnyGt,
    AnyGte,
    Contains,
    NotContains,
    ContainsAny,
    NotContainsAny,
    Glob,
    NotGlob,
    IGlob,
    NotIGlob,
    Regex,
    Fuzzy,
    ContainsAllTokens,
    ContainsAnyToken,
    ContainsTokenSequence,
}

impl Op {
    /// Every operator.
    pub const ALL: [Op; 25] = [
        Op::Eq,
        Op::NotEq,
        Op::In,
        Op::NotIn,
        Op::Lt,
        Op::Lte,
        Op::Gt,
        Op::Gte,
        Op::AnyLt,
        Op::AnyLte,
        Op::AnyGt,
        Op::AnyGte,
        Op::Contains,
        Op::NotContains,
        Op::ContainsAny,
        Op::NotContainsAny,
        Op::Glob,
        Op::NotGlob,
        Op::IGlob,
        Op::NotIGlob,
        Op::Regex,
        Op::Fuzzy,
        Op::ContainsAllTokens,
        Op::ContainsAnyToken,
        Op::ContainsTokenSequence,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "Eq",
            Op::NotEq => "NotEq",
            Op::In => "In",
            Op::NotIn => "NotIn",
            Op::Lt => "Lt",
            Op::Lte => "Lte",
            Op::Gt => "Gt",
            Op::Gte => "Gte",
            Op::AnyLt => "AnyLt",
            Op::AnyLte => "AnyLte",
            Op::AnyGt => "AnyGt",
            Op::AnyGte => "AnyGte",
            Op::Contains => "Contains",
            Op::NotContains => "NotContains",
            Op::ContainsAny => "ContainsAny",
            Op::NotContainsAny => "NotContainsAny",
            Op::Glob => "Glob",
            Op::NotGlob => "NotGlob",
            Op::IGlob => "IGlob",
            Op::NotIGlob => "NotIGlob",
            Op::Regex => "Regex",
            Op::Fuzzy => "Fuzzy",
            Op::ContainsAllTokens => "ContainsAllTokens",
            Op::ContainsAnyToken => "ContainsAnyToken",
            Op::ContainsTokenSequence => "ContainsTokenSequence",
        }
    }

    /// Parse a wire name (case-sensitive).
    pub fn parse(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Whether this is a full-text token operator (allowed on
    /// `full_text_search` attributes that are not filterable).
    pub fn is_token_op(self) -> bool {
        matches!(self, Op::ContainsAllTokens | Op::ContainsAnyToken | Op::ContainsTokenSequence)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operand of a value operator (`Eq` … `NotContainsAny`).
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A literal (`Value::Null` only for `Eq`/`NotEq`).
    Value(Value),
    /// `{"$ref_new": attr}`: the incoming document's value of `attr`.
    RefNew(String),
}

impl Operand {
    fn to_json(&self) -> Json {
        match self {
            Operand::Value(v) => v.to_json(),
            Operand::RefNew(a) => {
                let mut m = Map::new();
                m.insert("$ref_new".into(), Json::String(a.clone()));
                Json::Object(m)
            }
        }
    }

    fn resolve<'a>(&'a self, new_doc: Option<&'a Document>) -> Cow<'a, Value> {
        match self {
            Operand::Value(v) => Cow::Borrowed(v),
            Operand::RefNew(a) => new_doc.and_then(|d| present(d, a)).unwrap_or(Cow::Owned(Value::Null)),
        }
    }
}

/// A leaf condition. Its fields are private so that only
/// [`Condition::new`] builds one, which keeps every leaf well-formed.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    attr: String,
    /// Set for the `Not…` operators; `pred` is then the positive form.
    negated: bool,
    pred: Pred,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RangeOp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl RangeOp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            RangeOp::Lt => o == Ordering::Less,
            RangeOp::Lte => o != Ordering::Greater,
            RangeOp::Gt => o == Ordering::Greater,
            RangeOp::Gte => o != Ordering::Less,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenOp {
    All,
    Any,
    Sequence,
}

#[derive(Clone, Debug, PartialEq)]
enum TokenQuery {
    /// Tokenized at evaluation (the tokenizer may depend on the schema).
    Text(String),
    /// Already tokenized by the client; used verbatim.
    Tokens(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
struct Fuzzy {
    text: String,
    max_edit_distance: u8,
    case_sensitive: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Pred {
    Eq(Operand),
    /// `In`: the value, or for an array attribute one of its elements, is in the list.
    In(Operand),
    /// `In` as WAL batches written before `WAL_FLAG_IN_ANY_ELEMENT` evaluated it: an array
    /// attribute never matches. Made only by [`Filter::with_scalar_in`] for replaying such a
    /// batch; it reads, renders and encodes as `In`.
    InScalar(Operand),
    Contains(Operand),
    ContainsAny(Operand),
    Range {
        op: RangeOp,
        any: bool,
        operand: Operand,
    },
    Glob(GlobPattern),
    Regex(RegexPattern),
    Fuzzy(Fuzzy),
    Tokens(TokenOp, TokenQuery),
}

impl Filter {
    /// This filter with the literals compared against `uuid` and `datetime`
    /// attributes in their canonical spelling (`kind_of`, usually
    /// `schema::canonical_kind`), or `None` when nothing changes. Stored
    /// values are canonical (storage-format 3.4, 3.5), so neither the letter
    /// case of a uuid nor the offset or precision of a datetime decides a
    /// match, on either the attribute index or the scan path. A literal
    /// compared with a datetime attribute that names no instant is an error.
    pub fn with_canonical_literals(
        &self,
        kind_of: &dyn Fn(&str) -> Option<ScalarType>,
    ) -> Result<Option<Filter>, FilterError> {
        let mut out = self.clone();
        Ok(out.canonicalize_literals(kind_of)?.then_some(out))
    }

    fn canonicalize_literals(
        &mut self,
        kind_of: &dyn Fn(&str) -> Option<ScalarType>,
    ) -> Result<bool, FilterError> {
        match self {
            Filter::And(subs) | Filter::Or(subs) => {
                let mut changed = false;
                for f in subs {
                    changed |= f.canonicalize_literals(kind_of)?;
                }
                Ok(changed)
            }
            Filter::Not(f) => f.canonicalize_literals(kind_of),
            Filter::Cond(c) => {
                let Some(kind) = kind_of(&c.attr) else { return Ok(false) };
                match &mut c.pred {
                    Pred::Eq(Operand::Value(v))
                    | Pred::In(Operand::Value(v))
                    | Pred::InScalar(Operand::Value(v))
                    | Pred::Contains(Operand::Value(v))
                    | Pred::ContainsAny(Operand::Value(v))
                    | Pred::Range { operand: Operand::Value(v), .. } => canonical_value(v, kind)
                        .map_err(|e| FilterError(format!("filter on {:?}: {}", c.attr, e.0))),
                    _ => Ok(false),
                }
            }
        }
    }

    /// This filter as a WAL batch written before `WAL_FLAG_IN_ANY_ELEMENT` evaluated it: every
    /// `In`/`NotIn` leaf ignores array attributes' elements (an array never matched then), so a
    /// replay of such a batch does what the acknowledged write did.
    pub fn with_scalar_in(&self) -> Filter {
        match self {
            Filter::And(subs) => Filter::And(subs.iter().map(Filter::with_scalar_in).collect()),
            Filter::Or(subs) => Filter::Or(subs.iter().map(Filter::with_scalar_in).collect()),
            Filter::Not(f) => Filter::Not(Box::new(f.with_scalar_in())),
            Filter::Cond(c) => {
                let mut c = c.clone();
                if let Pred::In(o) = &c.pred {
                    c.pred = Pred::InScalar(o.clone());
                }
                Filter::Cond(c)
            }
        }
    }

    /// The filter that matches every document (`["And", []]`).
    pub fn match_all() -> Filter {
        Filter::And(Vec::new())
    }

    /// Parse the turbopuffer JSON form.
    pub fn parse(v: &Json) -> Result<Filter, FilterError> {
        Parser::default().node(v, 1)
    }

    /// The canonical JSON form (`parse(to_json(f)) == f`).
    pub fn to_json(&self) -> Json {
        self.to_json_at(1)
    }

    fn to_json_at(&self, depth: usize) -> Json {
        if depth > MAX_DEPTH {
            // Only a hand-built filter gets here; `null` makes parse reject
            // it rather than silently round-trip something else.
            return Json::Null;
        }
        let list = |name: &str, fs: &[Filter]| {
            Json::Array(vec![
                Json::String(name.into()),
                Json::Array(fs.iter().map(|f| f.to_json_at(depth + 1)).collect()),
            ])
        };
        match self {
            Filter::And(fs) => list("And", fs),
            Filter::Or(fs) => list("Or", fs),
            Filter::Not(f) => Json::Array(vec![Json::String("Not".into()), f.to_json_at(depth + 1)]),
            Filter::Cond(c) => c.to_json(),
        }
    }

    /// Evaluate against a document; `new_doc` resolves `$ref_new`.
    pub fn matches(&self, doc: &Document, new_doc: Option<&Document>) -> bool {
        self.matches_at(doc, new_doc, 1)
    }

    fn matches_at(&self, doc: &Document, new_doc: Option<&Document>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        match self {
            Filter::And(fs) => fs.iter().all(|f| f.matches_at(doc, new_doc, depth + 1)),
            Filter::Or(fs) => fs.iter().any(|f| f.matches_at(doc, new_doc, depth + 1)),
            Filter::Not(f) => !f.matches_at(doc, new_doc, depth + 1),
            Filter::Cond(c) => c.matches(doc, new_doc),
        }
    }

    /// Every leaf condition, in document order (an iterative walk, so any
    /// depth is safe).
    pub fn conditions(&self) -> Vec<&Condition> {
        let mut out = Vec::new();
        let mut stack = vec![self];
        while let Some(f) = stack.pop() {
            match f {
                Filter::And(fs) | Filter::Or(fs) => stack.extend(fs.iter().rev()),
                Filter::Not(f) => stack.push(f),
                Filter::Cond(c) => out.push(c),
            }
        }
        out
    }

    /// The attributes the filter reads, without duplicates, in order of
    /// first appearance (`$ref_new` targets are not included).
    pub fn attributes(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        self.conditions().into_iter().map(|c| c.attr.as_str()).filter(|a| seen.insert(*a)).collect()
    }

    /// Whether some operand is `{"$ref_new": ...}`.
    pub fn uses_ref_new(&self) -> bool {
        self.conditions().iter().any(|c| c.uses_ref_new())
    }

    /// Check the filter against a namespace schema: referenced attributes
    /// must be filterable (token operators also accept `full_text_search`
    /// attributes), vectors cannot be filtered, and literal operands must be
    /// of a kind that can ever equal or order against the attribute's type.
    /// Attributes absent from the schema are allowed (they are missing on
    /// every document).
    pub fn validate(&self, schema: &Schema) -> Result<(), FilterError> {
        for c in self.conditions() {
            validate_condition(c, schema)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
