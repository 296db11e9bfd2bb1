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
//!   and empty `And`/`Or`), at most [`MAX_REGEXES`] `Regex` conditions, and
//!   no pattern longer than [`MAX_PATTERN_BYTES`]. Depth is checked while
//!   parsing, so hostile input cannot overflow the stack. Every recursive walk
//!   is bounded by [`MAX_DEPTH`]; a deeper tree can only be built by hand, and
//!   then evaluates its too-deep parts as non-matching and renders them as
//!   `null` (which `parse` rejects) instead of recursing further.
//! - Leaves are only built by `parse`, so every leaf is well-formed (an `In`
//!   operand is a list, a `Regex` is compiled, ...).
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

/// Deepest nesting accepted; the top-level node is level 1.
pub const MAX_DEPTH: usize = 64;
/// Most leaves (conditions and empty `And`/`Or`) in one filter.
pub const MAX_LEAVES: usize = 10_000;
/// Longest `Glob`/`IGlob`/`Regex`/`Fuzzy` pattern, in bytes.
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Longest token-filter operand, in bytes (turbopuffer's full-text query limit).
pub const MAX_TOKEN_QUERY_BYTES: usize = 8192;
/// Most `Regex` conditions in one filter: each may compile to up to
/// [`REGEX_SIZE_LIMIT`] bytes, so this bounds a filter's memory.
pub const MAX_REGEXES: usize = 64;
/// Bound on one compiled regex (program and lazy-DFA cache), in bytes.
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

/// A leaf condition. Its fields are private so that only [`Filter::parse`]
/// builds one, which keeps every leaf well-formed.
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
    In(Operand),
    Contains(Operand),
    ContainsAny(Operand),
    Range { op: RangeOp, any: bool, operand: Operand },
    Glob(GlobPattern),
    Regex(RegexPattern),
    Fuzzy(Fuzzy),
    Tokens(TokenOp, TokenQuery),
}

impl Condition {
    /// The attribute the condition reads (`id` is the document id).
    pub fn attr(&self) -> &str {
        &self.attr
    }

    /// The operator.
    pub fn op(&self) -> Op {
        let n = self.negated;
        match &self.pred {
            Pred::Eq(_) => pick(n, Op::NotEq, Op::Eq),
            Pred::In(_) => pick(n, Op::NotIn, Op::In),
            Pred::Contains(_) => pick(n, Op::NotContains, Op::Contains),
            Pred::ContainsAny(_) => pick(n, Op::NotContainsAny, Op::ContainsAny),
            Pred::Range { op, any, .. } => match (op, any) {
                (RangeOp::Lt, false) => Op::Lt,
                (RangeOp::Lte, false) => Op::Lte,
                (RangeOp::Gt, false) => Op::Gt,
                (RangeOp::Gte, false) => Op::Gte,
                (RangeOp::Lt, true) => Op::AnyLt,
                (RangeOp::Lte, true) => Op::AnyLte,
                (RangeOp::Gt, true) => Op::AnyGt,
                (RangeOp::Gte, true) => Op::AnyGte,
            },
            Pred::Glob(g) => match (g.case_insensitive, n) {
                (false, false) => Op::Glob,
                (false, true) => Op::NotGlob,
                (true, false) => Op::IGlob,
                (true, true) => Op::NotIGlob,
            },
            Pred::Regex(_) => Op::Regex,
            Pred::Fuzzy(_) => Op::Fuzzy,
            Pred::Tokens(TokenOp::All, _) => Op::ContainsAllTokens,
            Pred::Tokens(TokenOp::Any, _) => Op::ContainsAnyToken,
            Pred::Tokens(TokenOp::Sequence, _) => Op::ContainsTokenSequence,
        }
    }

    /// The operand of a value operator (`Eq` … `NotContainsAny`); `None` for
    /// pattern and token operators.
    pub fn operand(&self) -> Option<&Operand> {
        match &self.pred {
            Pred::Eq(o) | Pred::In(o) | Pred::Contains(o) | Pred::ContainsAny(o) => Some(o),
            Pred::Range { operand, .. } => Some(operand),
            _ => None,
        }
    }

    fn to_json(&self) -> Json {
        let operand = match &self.pred {
            Pred::Eq(o) | Pred::In(o) | Pred::Contains(o) | Pred::ContainsAny(o) => o.to_json(),
            Pred::Range { operand, .. } => operand.to_json(),
            Pred::Glob(g) => Json::String(g.source.clone()),
            Pred::Regex(r) => Json::String(r.regex.as_str().to_owned()),
            Pred::Fuzzy(f) => Json::String(f.text.clone()),
            Pred::Tokens(_, TokenQuery::Text(t)) => Json::String(t.clone()),
            Pred::Tokens(_, TokenQuery::Tokens(ts)) => {
                Json::Array(ts.iter().map(|t| Json::String(t.clone())).collect())
            }
        };
        let mut out = vec![Json::String(self.attr.clone()), Json::String(self.op().as_str().into()), operand];
        if let Pred::Fuzzy(f) = &self.pred {
            let mut opts = Map::new();
            opts.insert("max_edit_distance".into(), Json::from(f.max_edit_distance));
            opts.insert("case_sensitive".into(), Json::Bool(f.case_sensitive));
            out.push(Json::Object(opts));
        }
        Json::Array(out)
    }

    fn matches(&self, doc: &Document, new_doc: Option<&Document>) -> bool {
        let value = present(doc, &self.attr);
        self.negated != eval(&self.pred, value.as_deref(), new_doc)
    }

    fn uses_ref_new(&self) -> bool {
        matches!(self.operand(), Some(Operand::RefNew(_)))
    }
}

fn pick(negated: bool, yes: Op, no: Op) -> Op {
    if negated {
        yes
    } else {
        no
    }
}

/// An attribute's value, treating a stored null as missing.
fn present<'a>(doc: &'a Document, attr: &str) -> Option<Cow<'a, Value>> {
    doc.attr(attr).filter(|v| !matches!(v.as_ref(), Value::Null))
}

/// The elements of a value seen as a list: a scalar is a one-element list.
fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

fn any_string(v: &Value, mut f: impl FnMut(&str) -> bool) -> bool {
    elements(v).iter().any(|x| matches!(x, Value::Str(s) if f(s)))
}

/// Evaluates the positive form of a predicate; `attr` is `None` when the
/// document lacks the attribute.
fn eval(pred: &Pred, attr: Option<&Value>, new_doc: Option<&Document>) -> bool {
    match pred {
        Pred::Eq(o) | Pred::In(o) | Pred::Contains(o) | Pred::ContainsAny(o) => {
            let operand = o.resolve(new_doc);
            let (attr, operand) = match (attr, operand.as_ref()) {
                (a, Value::Null) => return a.is_none(),
                (None, _) => return false,
                (Some(a), v) => (a, v),
            };
            match pred {
                Pred::Eq(_) => attr.loosely_equals(operand),
                Pred::In(_) => elements(operand).iter().any(|x| attr.loosely_equals(x)),
                Pred::Contains(_) => elements(attr).iter().any(|x| x.loosely_equals(operand)),
                _ => elements(attr).iter().any(|x| elements(operand).iter().any(|y| x.loosely_equals(y))),
            }
        }
        Pred::Range { op, any, operand } => {
            let operand = operand.resolve(new_doc);
            let Some(attr) = attr else { return false };
            let holds = |x: &Value| x.compare(&operand).is_some_and(|o| op.holds(o));
            if *any {
                elements(attr).iter().any(holds)
            } else {
                holds(attr)
            }
        }
        Pred::Glob(g) => attr.is_some_and(|a| any_string(a, |s| g.is_match(s))),
        Pred::Regex(r) => attr.is_some_and(|a| any_string(a, |s| r.regex.is_match(s))),
        Pred::Fuzzy(f) => attr.is_some_and(|a| any_string(a, |s| f.is_match(s))),
        Pred::Tokens(op, q) => attr.is_some_and(|a| tokens_match(*op, q, a)),
    }
}

impl Filter {
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

fn validate_condition(c: &Condition, schema: &Schema) -> Result<(), FilterError> {
    let name = c.attr.as_str();
    if name == ID_ATTR {
        return Ok(());
    }
    if name == VECTOR_ATTR {
        return err(format!("attribute {name:?} is a vector and cannot be filtered"));
    }
    let Some(s) = schema.get(name) else { return Ok(()) };
    let elem = match s.ty {
        AttrType::Scalar(t) | AttrType::Array(t) => t,
        AttrType::Vector { .. } => {
            return err(format!("attribute {name:?} is a vector and cannot be filtered"))
        }
        AttrType::Sparse { .. } => {
            return err(format!("attribute {name:?} is a sparse vector and cannot be filtered"))
        }
    };
    let op = c.op();
    let allowed = s.is_filterable() || (op.is_token_op() && s.full_text_search.is_some());
    if !allowed {
        return if s.full_text_search.is_some() {
            err(format!(
                "attribute {name:?} is not filterable (it has full_text_search; set \"filterable\": true)"
            ))
        } else {
            err(format!("attribute {name:?} is not filterable"))
        };
    }
    let textual = matches!(elem, ScalarType::String | ScalarType::Uuid | ScalarType::Datetime);
    match c.operand() {
        None if !textual => {
            err(format!("{op} needs a string attribute, but {name:?} has type {}", s.ty.name()))
        }
        Some(Operand::Value(v)) if !kind_fits(elem, v) => err(format!(
            "{op} operand {} ({}) can never match attribute {name:?} of type {}",
            v.to_json(),
            v.kind(),
            s.ty.name()
        )),
        _ => Ok(()),
    }
}

/// Whether a literal could ever compare with values of `ty` (null always can:
/// it means "missing").
fn kind_fits(ty: ScalarType, v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(_) => ty == ScalarType::Bool,
        Value::Int(_) | Value::Float(_) => {
            matches!(ty, ScalarType::Int | ScalarType::Uint | ScalarType::Float)
        }
        Value::Str(_) => matches!(ty, ScalarType::String | ScalarType::Uuid | ScalarType::Datetime),
        Value::Array(items) => items.iter().all(|x| kind_fits(ty, x)),
        Value::Sparse(_) => false,
    }
}

// ---------------------------------------------------------------------------
// Parsing

fn json_kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "bool",
        Json::Number(_) => "number",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    }
}

/// What a value operator accepts as a literal operand.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Scalar, array or null (`Eq`, `NotEq`).
    Any,
    /// A non-null scalar.
    Scalar,
    /// An array of scalars.
    List,
}

#[derive(Default)]
struct Parser {
    leaves: usize,
    regexes: usize,
}

impl Parser {
    fn leaf(&mut self) -> Result<(), FilterError> {
        self.leaves += 1;
        if self.leaves > MAX_LEAVES {
            return err(format!("filter has more than {MAX_LEAVES} conditions"));
        }
        Ok(())
    }

    /// Parses one node at nesting level `depth`; the check comes before any
    /// recursion, so the stack depth is bounded by [`MAX_DEPTH`].
    fn node(&mut self, v: &Json, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_DEPTH {
            return err(format!("filter nests deeper than {MAX_DEPTH} levels"));
        }
        let Json::Array(items) = v else {
            return err(format!(
                "a filter must be an array ([attr, op, value], [\"And\", [...]], [\"Or\", [...]] or \
                 [\"Not\", filter]), got {}",
                json_kind(v)
            ));
        };
        match items.as_slice() {
            [Json::String(head), body] if head == "And" || head == "Or" => {
                let Json::Array(children) = body else {
                    return err(format!("{head} takes an array of filters, got {}", json_kind(body)));
                };
                if children.is_empty() {
                    self.leaf()?;
                }
                let fs = children.iter().map(|c| self.node(c, depth + 1)).collect::<Result<Vec<_>, _>>()?;
                Ok(if head == "And" { Filter::And(fs) } else { Filter::Or(fs) })
            }
            [Json::String(head), inner] if head == "Not" => {
                Ok(Filter::Not(Box::new(self.node(inner, depth + 1)?)))
            }
            [Json::String(head), _] => {
                err(format!("unknown filter combinator {head:?} (expected \"And\", \"Or\" or \"Not\")"))
            }
            [attr, op, operand] => self.condition(attr, op, operand, None),
            [attr, op, operand, options] => self.condition(attr, op, operand, Some(options)),
            _ => err(format!(
                "a filter is [attr, op, value], [\"And\", [...]], [\"Or\", [...]] or [\"Not\", filter]; \
                 got an array of {} elements",
                items.len()
            )),
        }
    }

    fn condition(
        &mut self,
        attr: &Json,
        op: &Json,
        operand: &Json,
        options: Option<&Json>,
    ) -> Result<Filter, FilterError> {
        let Json::String(attr) = attr else {
            return err(format!("attribute name must be a string, got {}", json_kind(attr)));
        };
        check_attr_name(attr)?;
        let Json::String(op_name) = op else {
            return err(format!("operator for {attr:?} must be a string, got {}", json_kind(op)));
        };
        let Some(op) = Op::parse(op_name) else {
            return err(format!("unknown filter operator {op_name:?}"));
        };
        if options.is_some() && op != Op::Fuzzy {
            return err(format!("{op} takes [attr, op, value]; only Fuzzy accepts a 4th element (options)"));
        }
        self.leaf()?;
        let value = |shape| parse_operand(attr, op, operand, shape);
        let range = |op, any| Ok::<_, FilterError>(Pred::Range { op, any, operand: value(Shape::Scalar)? });
        let pred = match op {
            Op::Eq | Op::NotEq => Pred::Eq(value(Shape::Any)?),
            Op::In | Op::NotIn => Pred::In(value(Shape::List)?),
            Op::Contains | Op::NotContains => Pred::Contains(value(Shape::Scalar)?),
            Op::ContainsAny | Op::NotContainsAny => Pred::ContainsAny(value(Shape::List)?),
            Op::Lt => range(RangeOp::Lt, false)?,
            Op::Lte => range(RangeOp::Lte, false)?,
            Op::Gt => range(RangeOp::Gt, false)?,
            Op::Gte => range(RangeOp::Gte, false)?,
            Op::AnyLt => range(RangeOp::Lt, true)?,
            Op::AnyLte => range(RangeOp::Lte, true)?,
            Op::AnyGt => range(RangeOp::Gt, true)?,
            Op::AnyGte => range(RangeOp::Gte, true)?,
            Op::Glob | Op::NotGlob => Pred::Glob(GlobPattern::new(pattern(attr, op, operand)?, false)?),
            Op::IGlob | Op::NotIGlob => Pred::Glob(GlobPattern::new(pattern(attr, op, operand)?, true)?),
            Op::Regex => {
                self.regexes += 1;
                if self.regexes > MAX_REGEXES {
                    return err(format!("filter has more than {MAX_REGEXES} Regex conditions"));
                }
                Pred::Regex(RegexPattern::new(pattern(attr, op, operand)?)?)
            }
            Op::Fuzzy => Pred::Fuzzy(Fuzzy::parse(attr, operand, options)?),
            Op::ContainsAllTokens => Pred::Tokens(TokenOp::All, token_query(attr, op, operand)?),
            Op::ContainsAnyToken => Pred::Tokens(TokenOp::Any, token_query(attr, op, operand)?),
            Op::ContainsTokenSequence => Pred::Tokens(TokenOp::Sequence, token_query(attr, op, operand)?),
        };
        let negated = matches!(
            op,
            Op::NotEq | Op::NotIn | Op::NotContains | Op::NotContainsAny | Op::NotGlob | Op::NotIGlob
        );
        Ok(Filter::Cond(Condition { attr: attr.clone(), negated, pred }))
    }
}

fn check_attr_name(name: &str) -> Result<(), FilterError> {
    if name.is_empty() {
        return err("attribute name must not be empty");
    }
    if name.len() > MAX_ATTRIBUTE_NAME_BYTES {
        return err(format!(
            "attribute name of {} bytes is longer than {MAX_ATTRIBUTE_NAME_BYTES}",
            name.len()
        ));
    }
    Ok(())
}

fn parse_operand(attr: &str, op: Op, v: &Json, shape: Shape) -> Result<Operand, FilterError> {
    if let Json::Object(m) = v {
        return match (m.len(), m.get("$ref_new")) {
            (1, Some(Json::String(target))) => {
                check_attr_name(target)?;
                Ok(Operand::RefNew(target.clone()))
            }
            (_, Some(_)) => err(format!(
                "{op} on {attr:?}: $ref_new must be {{\"$ref_new\": \"attr\"}} with a string attribute name"
            )),
            _ => err(format!(
                "{op} on {attr:?}: object operands are not supported (only {{\"$ref_new\": \"attr\"}})"
            )),
        };
    }
    let value = Value::from_json(v).map_err(|e| FilterError(format!("{op} on {attr:?}: {e}")))?;
    match (shape, &value) {
        (Shape::List, Value::Array(_)) | (Shape::Any, _) => Ok(Operand::Value(value)),
        (Shape::List, other) => err(format!("{op} on {attr:?} needs an array operand, got {}", other.kind())),
        (Shape::Scalar, Value::Array(_)) => {
            let hint = if op == Op::Contains || op == Op::NotContains {
                " (use ContainsAny for a list)"
            } else {
                ""
            };
            err(format!("{op} on {attr:?} needs a scalar operand, got array{hint}"))
        }
        (Shape::Scalar, Value::Null) => {
            err(format!("{op} on {attr:?}: null operands are only allowed with Eq and NotEq"))
        }
        (Shape::Scalar, _) => Ok(Operand::Value(value)),
    }
}

fn pattern<'a>(attr: &str, op: Op, v: &'a Json) -> Result<&'a str, FilterError> {
    let Json::String(s) = v else {
        return err(format!("{op} on {attr:?} needs a string pattern, got {}", json_kind(v)));
    };
    if s.len() > MAX_PATTERN_BYTES {
        return err(format!(
            "{op} pattern on {attr:?} is {} bytes; the limit is {MAX_PATTERN_BYTES}",
            s.len()
        ));
    }
    Ok(s)
}

fn token_query(attr: &str, op: Op, v: &Json) -> Result<TokenQuery, FilterError> {
    let (query, bytes) = match v {
        Json::String(s) => (TokenQuery::Text(s.clone()), s.len()),
        Json::Array(items) => {
            let mut tokens = Vec::with_capacity(items.len());
            for item in items {
                let Json::String(t) = item else {
                    return err(format!(
                        "{op} on {attr:?}: a token array holds strings only, got {}",
                        json_kind(item)
                    ));
                };
                tokens.push(t.clone());
            }
            let bytes = tokens.iter().map(String::len).sum();
            (TokenQuery::Tokens(tokens), bytes)
        }
        other => {
            return err(format!(
                "{op} on {attr:?} needs a string or an array of tokens, got {}",
                json_kind(other)
            ))
        }
    };
    if bytes > MAX_TOKEN_QUERY_BYTES {
        return err(format!("{op} query on {attr:?} is {bytes} bytes; the limit is {MAX_TOKEN_QUERY_BYTES}"));
    }
    Ok(query)
}

// ---------------------------------------------------------------------------
// Regex

/// A compiled regex; equality, `Debug` and the JSON form use the pattern text.
#[derive(Clone)]
struct RegexPattern {
    regex: regex::Regex,
}

impl RegexPattern {
    fn new(pattern: &str) -> Result<RegexPattern, FilterError> {
        let regex = regex::RegexBuilder::new(pattern)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| FilterError(format!("bad Regex pattern {pattern:?}: {e}")))?;
        Ok(RegexPattern { regex })
    }
}

impl PartialEq for RegexPattern {
    fn eq(&self, other: &Self) -> bool {
        self.regex.as_str() == other.regex.as_str()
    }
}

impl fmt::Debug for RegexPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Regex({:?})", self.regex.as_str())
    }
}

// ---------------------------------------------------------------------------
// Glob
//
// Our own matcher rather than `globset`: globset has path semantics (`**`,
// `{a,b}` alternation) that Unix glob over plain strings does not, and a
// token list keeps memory linear in the pattern.

#[derive(Clone, Debug, PartialEq)]
enum GlobToken {
    Char(char),
    AnyChar,
    Star,
    Class { negated: bool, ranges: Vec<(char, char)> },
}

/// A Unix glob over a whole string: `*`, `?`, `[abc]`, `[a-z]`, `[!a]`
/// (or `[^a]`), and `\` to escape the next character.
#[derive(Clone, Debug)]
struct GlobPattern {
    source: String,
    case_insensitive: bool,
    tokens: Vec<GlobToken>,
}

impl PartialEq for GlobPattern {
    fn eq(&self, other: &Self) -> bool {
        // Tokens are a function of the source and the flag.
        self.source == other.source && self.case_insensitive == other.case_insensitive
    }
}

/// Simple case folding: a character whose lowercase is one character folds
/// to it; others stay as they are.
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

fn upper(c: char) -> char {
    let mut up = c.to_uppercase();
    match (up.next(), up.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

impl GlobPattern {
    fn new(source: &str, case_insensitive: bool) -> Result<GlobPattern, FilterError> {
        let bad = |why: &str| FilterError(format!("bad glob pattern {source:?}: {why}"));
        let mut tokens = Vec::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&GlobToken::Star) {
                        continue;
                    }
                    GlobToken::Star
                }
                '?' => GlobToken::AnyChar,
                '\\' => GlobToken::Char(chars.next().ok_or_else(|| bad("it ends with a lone '\\'"))?),
                '[' => {
                    let negated = chars.next_if(|c| *c == '!' || *c == '^').is_some();
                    let mut ranges = Vec::new();
                    loop {
                        let c = chars.next().ok_or_else(|| bad("unclosed character class '['"))?;
                        // A ']' right after '[' or '[!' is a member, not the end.
                        if c == ']' && !ranges.is_empty() {
                            break;
                        }
                        let lo =
                            if c == '\\' { chars.next().ok_or_else(|| bad("unclosed '['"))? } else { c };
                        let mut ahead = chars.clone();
                        let is_range = ahead.next() == Some('-') && ahead.next().is_some_and(|n| n != ']');
                        let hi = if is_range {
                            chars.next();
                            let h = chars.next().ok_or_else(|| bad("unclosed '['"))?;
                            let h =
                                if h == '\\' { chars.next().ok_or_else(|| bad("unclosed '['"))? } else { h };
                            if h < lo {
                                return Err(bad(&format!("reversed range {lo}-{h}")));
                            }
                            h
                        } else {
                            lo
                        };
                        ranges.push((lo, hi));
                    }
                    GlobToken::Class { negated, ranges }
                }
                c => GlobToken::Char(c),
            };
            tokens.push(token);
        }
        Ok(GlobPattern { source: source.to_owned(), case_insensitive, tokens })
    }

    fn token_matches(&self, token: &GlobToken, c: char) -> bool {
        match token {
            GlobToken::Char(p) => *p == c || (self.case_insensitive && fold(*p) == fold(c)),
            GlobToken::AnyChar => true,
            GlobToken::Star => false,
            GlobToken::Class { negated, ranges } => {
                let within = |x: char| ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&x));
                let hit = within(c) || (self.case_insensitive && (within(fold(c)) || within(upper(c))));
                hit != *negated
            }
        }
    }

    /// Greedy matching that backtracks only to the last `*`: every other
    /// token consumes exactly one character, so this is exact, allocation
    /// free and O(pattern × text) in the worst case.
    fn is_match(&self, text: &str) -> bool {
        let next_char = |t: usize| text.get(t..).and_then(|s| s.chars().next());
        let (mut p, mut t) = (0usize, 0usize);
        let mut star: Option<(usize, usize)> = None;
        while let Some(c) = next_char(t) {
            match self.tokens.get(p) {
                Some(GlobToken::Star) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(token) if self.token_matches(token, c) => {
                    p += 1;
                    t += c.len_utf8();
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last star swallow one more character.
            let Some((sp, st)) = star else { return false };
            let Some(sc) = next_char(st) else { return false };
            star = Some((sp, st + sc.len_utf8()));
            p = sp + 1;
            t = st + sc.len_utf8();
        }
        self.tokens.get(p..).is_some_and(|rest| rest.iter().all(|tok| *tok == GlobToken::Star))
    }
}

// ---------------------------------------------------------------------------
// Fuzzy

impl Fuzzy {
    fn parse(attr: &str, operand: &Json, options: Option<&Json>) -> Result<Fuzzy, FilterError> {
        let text = pattern(attr, Op::Fuzzy, operand)?.to_owned();
        let mut fuzzy = Fuzzy { text, max_edit_distance: 1, case_sensitive: true };
        let Some(options) = options else { return Ok(fuzzy) };
        let Json::Object(m) = options else {
            return err(format!("Fuzzy options on {attr:?} must be an object, got {}", json_kind(options)));
        };
        for (k, v) in m {
            match k.as_str() {
                "max_edit_distance" => {
                    fuzzy.max_edit_distance = v
                        .as_u64()
                        .and_then(|n| u8::try_from(n).ok())
                        .filter(|n| *n <= MAX_FUZZY_DISTANCE)
                        .ok_or_else(|| {
                            FilterError(format!(
                                "Fuzzy max_edit_distance on {attr:?} must be an integer 0..={MAX_FUZZY_DISTANCE}, \
                                 got {v}"
                            ))
                        })?;
                }
                "case_sensitive" => {
                    fuzzy.case_sensitive = v.as_bool().ok_or_else(|| {
                        FilterError(format!("Fuzzy case_sensitive on {attr:?} must be a bool, got {v}"))
                    })?;
                }
                other => {
                    return err(format!(
                    "unknown Fuzzy option {other:?} (expected \"max_edit_distance\" or \"case_sensitive\")"
                ))
                }
            }
        }
        Ok(fuzzy)
    }

    fn is_match(&self, s: &str) -> bool {
        let k = usize::from(self.max_edit_distance);
        if self.case_sensitive {
            within_edit_distance(&self.text.chars().collect::<Vec<_>>(), &s.chars().collect::<Vec<_>>(), k)
        } else {
            let a: Vec<char> = self.text.chars().map(fold).collect();
            let b: Vec<char> = s.chars().map(fold).collect();
            within_edit_distance(&a, &b, k)
        }
    }
}

/// Whether the Levenshtein distance between `a` and `b` is at most `k`.
/// Only the diagonal band of width 2k+1 can hold values ≤ k, so this costs
/// O(len × k) instead of O(len²) (attribute strings may be long).
fn within_edit_distance(a: &[char], b: &[char], k: usize) -> bool {
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > k {
        return false;
    }
    let cap = k + 1; // "more than k": saturate so band edges stay cheap
    let mut prev: Vec<usize> = (0..=m).map(|j| j.min(cap)).collect();
    let mut cur = vec![cap; m + 1];
    for (i, ca) in a.iter().enumerate().map(|(i, c)| (i + 1, c)) {
        let lo = i.saturating_sub(k).max(1);
        let hi = (i + k).min(m);
        if let Some(first) = cur.first_mut() {
            *first = i.min(cap);
        }
        if lo > 1 {
            if let Some(x) = cur.get_mut(lo - 1) {
                *x = cap;
            }
        }
        let mut row_min = i.min(cap);
        for j in lo..=hi {
            let (Some(&diag), Some(&up), Some(&left), Some(cb)) =
                (prev.get(j - 1), prev.get(j), cur.get(j - 1), b.get(j - 1))
            else {
                return false;
            };
            let v = (diag + usize::from(ca != cb)).min(up + 1).min(left + 1).min(cap);
            if let Some(x) = cur.get_mut(j) {
                *x = v;
            }
            row_min = row_min.min(v);
        }
        if let Some(x) = cur.get_mut(hi + 1) {
            *x = cap;
        }
        if row_min > k {
            return false;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.get(m).is_some_and(|d| *d <= k)
}

// ---------------------------------------------------------------------------
// Tokens

/// The tokenizer for token filters: split on non-alphanumeric characters and
/// lowercase. The one place to swap in the schema's BM25 tokenizer.
pub fn tokenize(text: &str) -> Vec<String> {
    crate::index::text::tokenize_default(text)
}

/// A document value's tokens: a string is tokenized, a string array is
/// tokenized element by element; other kinds have no tokens.
fn value_tokens(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Str(s) => Some(tokenize(s)),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if let Value::Str(s) = item {
                    out.extend(tokenize(s));
                }
            }
            Some(out)
        }
        _ => None,
    }
}

/// An empty query (no tokens) matches nothing, like an empty BM25 query.
fn tokens_match(op: TokenOp, query: &TokenQuery, attr: &Value) -> bool {
    let query: Cow<'_, [String]> = match query {
        TokenQuery::Text(t) => Cow::Owned(tokenize(t)),
        TokenQuery::Tokens(ts) => Cow::Borrowed(ts),
    };
    let Some(doc) = value_tokens(attr) else { return false };
    if query.is_empty() {
        return false;
    }
    match op {
        TokenOp::All => query.iter().all(|q| doc.contains(q)),
        TokenOp::Any => query.iter().any(|q| doc.contains(q)),
        TokenOp::Sequence => doc.windows(query.len()).any(|w| w == query.as_ref()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::model::DocId;
    use crate::schema::{parse_schema, AttrSchema};

    fn doc(attrs: Json) -> Document {
        let mut d = Document::new(DocId::U64(7));
        if let Json::Object(m) = attrs {
            for (k, v) in m {
                d.attrs.insert(k, Value::from_json(&v).unwrap());
            }
        }
        d
    }

    fn f(v: Json) -> Filter {
        Filter::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn m(filter: Json, d: &Document) -> bool {
        f(filter).matches(d, None)
    }

    fn parse_err(v: Json) -> String {
        match Filter::parse(&v) {
            Err(e) => e.to_string(),
            Ok(x) => panic!("{v} parsed as {x:?}"),
        }
    }

    /// `op` and its `Not` form on one document: exactly one may hold.
    fn check_pair(pos: &str, neg: &str, attr: &str, operand: Json, d: &Document, expect: bool) {
        assert_eq!(m(json!([attr, pos, operand.clone()]), d), expect, "{attr} {pos} {operand}");
        assert_eq!(m(json!([attr, neg, operand.clone()]), d), !expect, "{attr} {neg} {operand}");
    }

    fn sample() -> Document {
        doc(json!({
            "n": 5, "x": 2.5, "s": "Hello World", "b": true,
            "tags": ["a", "b", "c"], "nums": [1, 5, 9], "fl": [1.5, 2.0],
            "body": "The quick brown fox jumps over the lazy dog",
        }))
    }

    #[test]
    fn error_message_prefix() {
        assert!(parse_err(json!(5)).starts_with("invalid filter: "));
    }

    #[test]
    fn eq_and_not_eq() {
        let d = sample();
        check_pair("Eq", "NotEq", "n", json!(5), &d, true);
        check_pair("Eq", "NotEq", "n", json!(6), &d, false);
        check_pair("Eq", "NotEq", "n", json!(5.0), &d, true);
        check_pair("Eq", "NotEq", "x", json!(2.5), &d, true);
        check_pair("Eq", "NotEq", "s", json!("Hello World"), &d, true);
        check_pair("Eq", "NotEq", "s", json!("hello world"), &d, false);
        check_pair("Eq", "NotEq", "b", json!(true), &d, true);
        check_pair("Eq", "NotEq", "b", json!(false), &d, false);
        // Incomparable kinds: Eq false, NotEq true.
        check_pair("Eq", "NotEq", "n", json!("5"), &d, false);
        check_pair("Eq", "NotEq", "b", json!(1), &d, false);
        // Arrays compare as a whole.
        check_pair("Eq", "NotEq", "tags", json!(["a", "b", "c"]), &d, true);
        check_pair("Eq", "NotEq", "tags", json!(["a", "b"]), &d, false);
        check_pair("Eq", "NotEq", "tags", json!("a"), &d, false);
        check_pair("Eq", "NotEq", "fl", json!([1.5, 2]), &d, true);
        // The id.
        check_pair("Eq", "NotEq", "id", json!(7), &d, true);
        check_pair("Eq", "NotEq", "id", json!(8), &d, false);
    }

    #[test]
    fn null_means_missing() {
        let d = sample();
        check_pair("Eq", "NotEq", "missing", json!(null), &d, true);
        check_pair("Eq", "NotEq", "n", json!(null), &d, false);
        check_pair("Eq", "NotEq", "id", json!(null), &d, false);
        // A missing attribute: Eq(non-null) false, NotEq true, ranges false.
        check_pair("Eq", "NotEq", "missing", json!(1), &d, false);
        check_pair("In", "NotIn", "missing", json!([1]), &d, false);
        check_pair("Contains", "NotContains", "missing", json!(1), &d, false);
        check_pair("ContainsAny", "NotContainsAny", "missing", json!([1]), &d, false);
        check_pair("Glob", "NotGlob", "missing", json!("*"), &d, false);
        for op in ["Lt", "Lte", "Gt", "Gte", "AnyLt", "AnyLte", "AnyGt", "AnyGte"] {
            assert!(!m(json!(["missing", op, 1]), &d), "{op}");
        }
        for op in ["Regex", "Fuzzy", "ContainsAllTokens", "ContainsAnyToken", "ContainsTokenSequence"] {
            assert!(!m(json!(["missing", op, "x"]), &d), "{op}");
        }
        // A stored null (should not happen) still counts as missing.
        let mut odd = Document::new(DocId::U64(1));
        odd.attrs.insert("z".into(), Value::Null);
        assert!(m(json!(["z", "Eq", null]), &odd));
        assert!(!m(json!(["z", "NotEq", null]), &odd));
    }

    #[test]
    fn in_and_not_in() {
        let d = sample();
        check_pair("In", "NotIn", "n", json!([1, 5]), &d, true);
        check_pair("In", "NotIn", "n", json!([1, 2]), &d, false);
        check_pair("In", "NotIn", "n", json!([5.0]), &d, true);
        check_pair("In", "NotIn", "n", json!([]), &d, false);
        check_pair("In", "NotIn", "s", json!(["x", "Hello World"]), &d, true);
        check_pair("In", "NotIn", "id", json!([6, 7]), &d, true);
        // An array attribute is never equal to a scalar list element.
        check_pair("In", "NotIn", "tags", json!(["a"]), &d, false);
    }

    #[test]
    fn contains_family() {
        let d = sample();
        check_pair("Contains", "NotContains", "tags", json!("b"), &d, true);
        check_pair("Contains", "NotContains", "tags", json!("z"), &d, false);
        check_pair("Contains", "NotContains", "nums", json!(9.0), &d, true);
        // On a scalar attribute Contains is Eq.
        check_pair("Contains", "NotContains", "n", json!(5), &d, true);
        check_pair("Contains", "NotContains", "n", json!(4), &d, false);
        check_pair("ContainsAny", "NotContainsAny", "tags", json!(["z", "c"]), &d, true);
        check_pair("ContainsAny", "NotContainsAny", "tags", json!(["z", "y"]), &d, false);
        check_pair("ContainsAny", "NotContainsAny", "tags", json!([]), &d, false);
        check_pair("ContainsAny", "NotContainsAny", "nums", json!([2, 5.0]), &d, true);
        check_pair("ContainsAny", "NotContainsAny", "n", json!([4, 5]), &d, true);
        check_pair("ContainsAny", "NotContainsAny", "n", json!([4]), &d, false);
    }

    #[test]
    fn ranges() {
        let d = sample();
        let cases: &[(&str, Json, bool)] = &[
            ("Lt", json!(6), true),
            ("Lt", json!(5), false),
            ("Lte", json!(5), true),
            ("Lte", json!(4.9), false),
            ("Gt", json!(4.5), true),
            ("Gt", json!(5), false),
            ("Gte", json!(5.0), true),
            ("Gte", json!(6), false),
        ];
        for (op, v, want) in cases {
            assert_eq!(m(json!(["n", op, v]), &d), *want, "n {op} {v}");
        }
        assert!(m(json!(["x", "Gt", 2]), &d));
        assert!(!m(json!(["x", "Gt", 3]), &d));
        assert!(m(json!(["s", "Gt", "Hello"]), &d));
        assert!(!m(json!(["s", "Lt", "A"]), &d));
        assert!(m(json!(["id", "Gte", 7]), &d));
        assert!(!m(json!(["id", "Gt", 7]), &d));
        // Incomparable kinds are false both ways.
        assert!(!m(json!(["n", "Lt", "z"]), &d));
        assert!(!m(json!(["n", "Gte", "z"]), &d));
        // A plain range on an array attribute is false; Any* look inside.
        assert!(!m(json!(["nums", "Gt", 0]), &d));
        let any: &[(&str, Json, bool)] = &[
            ("AnyLt", json!(2), true),
            ("AnyLt", json!(1), false),
            ("AnyLte", json!(1.0), true),
            ("AnyLte", json!(0.5), false),
            ("AnyGt", json!(8.5), true),
            ("AnyGt", json!(9), false),
            ("AnyGte", json!(9), true),
            ("AnyGte", json!(10), false),
        ];
        for (op, v, want) in any {
            assert_eq!(m(json!(["nums", op, v]), &d), *want, "nums {op} {v}");
        }
        // On a scalar attribute Any* is the plain comparison.
        assert!(m(json!(["n", "AnyGt", 4]), &d));
        assert!(!m(json!(["n", "AnyGt", 5]), &d));
    }

    #[test]
    fn int_float_edges() {
        let d = doc(json!({"big": u64::MAX, "neg": -3}));
        assert!(m(json!(["big", "Eq", u64::MAX]), &d));
        assert!(m(json!(["big", "Gt", i64::MAX]), &d));
        assert!(m(json!(["neg", "Lt", -2.5]), &d));
        assert!(m(json!(["neg", "Eq", -3.0]), &d));
    }

    #[test]
    fn combinators() {
        let d = sample();
        assert!(m(json!(["And", []]), &d));
        assert!(!m(json!(["Or", []]), &d));
        assert!(m(json!(["Not", ["Or", []]]), &d));
        assert!(m(json!(["And", [["n", "Eq", 5], ["b", "Eq", true]]]), &d));
        assert!(!m(json!(["And", [["n", "Eq", 5], ["b", "Eq", false]]]), &d));
        assert!(m(json!(["Or", [["n", "Eq", 4], ["b", "Eq", true]]]), &d));
        assert!(!m(json!(["Or", [["n", "Eq", 4], ["b", "Eq", false]]]), &d));
        assert!(m(json!(["Not", ["n", "Eq", 4]]), &d));
        assert!(!m(json!(["Not", ["n", "Eq", 5]]), &d));
        assert!(m(json!(["And", [["And", []], ["Not", ["Not", ["n", "Eq", 5]]]]]), &d));
        assert!(Filter::match_all().matches(&d, None));
        // An attribute named like a combinator is still a leaf at arity 3.
        let odd = doc(json!({"And": 1}));
        assert!(m(json!(["And", "Eq", 1]), &odd));
    }

    #[test]
    fn ref_new() {
        let cur = doc(json!({"version": 3, "owner": "ann"}));
        let newer = doc(json!({"version": 4, "owner": "bob"}));
        let older = doc(json!({"version": 2}));
        let cond = f(json!(["version", "Lt", {"$ref_new": "version"}]));
        assert!(cond.uses_ref_new());
        assert!(cond.matches(&cur, Some(&newer)));
        assert!(!cond.matches(&cur, Some(&older)));
        // Missing new_doc or attribute resolves to null: ranges are false.
        assert!(!cond.matches(&cur, None));
        let owner = f(json!(["owner", "Eq", {"$ref_new": "owner"}]));
        assert!(!owner.matches(&cur, Some(&newer)));
        assert!(!owner.matches(&cur, Some(&older)));
        let not_owner = f(json!(["owner", "NotEq", {"$ref_new": "owner"}]));
        assert!(not_owner.matches(&cur, Some(&older)));
        // Null from $ref_new behaves as Eq null.
        let bare = doc(json!({}));
        assert!(owner.matches(&bare, Some(&older)));
        assert!(f(json!(["owner", "In", {"$ref_new": "owner"}])).matches(&bare, None));
        assert!(f(json!(["owner", "NotIn", {"$ref_new": "owner"}])).matches(&cur, None));
        // $ref_new to the id, and to an array used as a list.
        assert!(f(json!(["id", "Eq", {"$ref_new": "id"}])).matches(&cur, Some(&newer)));
        let list = doc(json!({"allowed": ["ann", "cy"]}));
        let is_in = f(json!(["owner", "In", {"$ref_new": "allowed"}]));
        assert!(is_in.matches(&cur, Some(&list)));
        assert!(!is_in.matches(&newer, Some(&list)));
        // A scalar resolved for a list operator is a one-element list.
        assert!(f(json!(["owner", "In", {"$ref_new": "owner"}])).matches(&cur, Some(&cur)));
        assert!(!f(json!(["n", "Eq", 1])).uses_ref_new());
    }

    #[test]
    fn glob_and_iglob() {
        let d = sample();
        check_pair("Glob", "NotGlob", "s", json!("Hello*"), &d, true);
        check_pair("Glob", "NotGlob", "s", json!("hello*"), &d, false);
        check_pair("Glob", "NotGlob", "s", json!("*World"), &d, true);
        check_pair("Glob", "NotGlob", "s", json!("Hello"), &d, false);
        check_pair("Glob", "NotGlob", "s", json!("H?llo W*"), &d, true);
        check_pair("Glob", "NotGlob", "s", json!("[GH]ello*"), &d, true);
        check_pair("Glob", "NotGlob", "s", json!("[!H]ello*"), &d, false);
        check_pair("Glob", "NotGlob", "s", json!("[A-Z]ello*"), &d, true);
        check_pair("Glob", "NotGlob", "tags", json!("[bc]"), &d, true);
        check_pair("Glob", "NotGlob", "tags", json!("d*"), &d, false);
        check_pair("Glob", "NotGlob", "n", json!("*"), &d, false);
        check_pair("IGlob", "NotIGlob", "s", json!("hello*"), &d, true);
        check_pair("IGlob", "NotIGlob", "s", json!("[h]ELLO wORLD"), &d, true);
        check_pair("IGlob", "NotIGlob", "s", json!("[a-z]ello*"), &d, true);
        check_pair("IGlob", "NotIGlob", "s", json!("[!h]ello*"), &d, false);
        check_pair("IGlob", "NotIGlob", "s", json!("goodbye*"), &d, false);
    }

    #[test]
    fn glob_matcher_edges() {
        let g = |p: &str| GlobPattern::new(p, false).unwrap();
        assert!(g("").is_match(""));
        assert!(!g("").is_match("a"));
        assert!(g("*").is_match(""));
        assert!(g("**").is_match("a/b"));
        assert!(g("a*b*c").is_match("aXbYbZc"));
        assert!(!g("a*b*c").is_match("aXbYbZ"));
        assert!(g("\\*").is_match("*"));
        assert!(!g("\\*").is_match("x"));
        assert!(g("[]]").is_match("]"));
        assert!(g("[!]]").is_match("x"));
        assert!(!g("[!]]").is_match("]"));
        assert!(g("[a-]").is_match("-"));
        assert!(g("[\\]]").is_match("]"));
        assert!(g("?").is_match("é"));
        assert!(g("*é").is_match("café"));
        assert!(g("{a,b}").is_match("{a,b}"));
        assert!(GlobPattern::new("É*", true).unwrap().is_match("école"));
        for bad in ["[abc", "[", "x\\", "[z-a]"] {
            assert!(GlobPattern::new(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn regex() {
        let d = sample();
        assert!(m(json!(["s", "Regex", "^Hel+o"]), &d));
        assert!(m(json!(["s", "Regex", "World$"]), &d));
        assert!(!m(json!(["s", "Regex", "^World"]), &d));
        assert!(m(json!(["s", "Regex", "(?i)hello"]), &d));
        assert!(m(json!(["tags", "Regex", "^c$"]), &d));
        assert!(!m(json!(["n", "Regex", "5"]), &d));
        assert!(parse_err(json!(["s", "Regex", "("])).contains("bad Regex pattern"));
        assert!(parse_err(json!(["s", "Regex", "a".repeat(MAX_PATTERN_BYTES + 1)])).contains("limit"));
        // Compiled size is bounded.
        assert!(parse_err(json!(["s", "Regex", "(\\w{1000}){1000}"])).contains("bad Regex pattern"));
        assert!(Filter::parse(&json!(["s", "Regex", "a".repeat(MAX_PATTERN_BYTES)])).is_ok());
        let many: Vec<Json> = (0..=MAX_REGEXES).map(|i| json!(["s", "Regex", format!("x{i}")])).collect();
        assert!(parse_err(json!(["Or", many])).contains("Regex conditions"));
    }

    #[test]
    fn fuzzy() {
        let d = doc(json!({"name": "Kitten", "names": ["sitting", "mitten"]}));
        assert!(m(json!(["name", "Fuzzy", "Kitten"]), &d));
        assert!(m(json!(["name", "Fuzzy", "Kiten"]), &d));
        assert!(m(json!(["name", "Fuzzy", "Kittens"]), &d));
        assert!(m(json!(["name", "Fuzzy", "Sitten"]), &d));
        assert!(!m(json!(["name", "Fuzzy", "Sittin"]), &d));
        assert!(m(json!(["name", "Fuzzy", "kitten"]), &d)); // one substitution
        assert!(m(json!(["name", "Fuzzy", "sittin", {"max_edit_distance": 2}]), &d));
        assert!(!m(json!(["name", "Fuzzy", "sittin", {"max_edit_distance": 1}]), &d));
        assert!(!m(json!(["name", "Fuzzy", "Kiten", {"max_edit_distance": 0}]), &d));
        assert!(!m(json!(["name", "Fuzzy", "KITTEN", {"max_edit_distance": 1}]), &d));
        assert!(m(json!(["name", "Fuzzy", "KITTEN", {"case_sensitive": false}]), &d));
        assert!(m(json!(["name", "Fuzzy", "KITTN", {"case_sensitive": false, "max_edit_distance": 1}]), &d));
        assert!(m(json!(["names", "Fuzzy", "sittin"]), &d));
        assert!(!m(json!(["names", "Fuzzy", "bitte"]), &d));
        for bad in [
            json!(["name", "Fuzzy", "x", {"max_edit_distance": 3}]),
            json!(["name", "Fuzzy", "x", {"max_edit_distance": -1}]),
            json!(["name", "Fuzzy", "x", {"case_sensitive": "no"}]),
            json!(["name", "Fuzzy", "x", {"other": 1}]),
            json!(["name", "Fuzzy", "x", 2]),
            json!(["name", "Fuzzy", 5]),
        ] {
            assert!(Filter::parse(&bad).is_err(), "{bad}");
        }
    }

    fn levenshtein(a: &[char], b: &[char]) -> usize {
        let mut prev: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.iter().enumerate() {
            let mut cur = vec![i + 1];
            for (j, cb) in b.iter().enumerate() {
                cur.push((prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
            }
            prev = cur;
        }
        prev[b.len()]
    }

    #[test]
    fn tokens() {
        let d = sample();
        assert_eq!(tokenize("Hello, wORLD-42!"), ["hello", "world", "42"]);
        assert!(m(json!(["body", "ContainsAllTokens", "LAZY fox"]), &d));
        assert!(!m(json!(["body", "ContainsAllTokens", "lazy cat"]), &d));
        assert!(m(json!(["body", "ContainsAnyToken", "lazy cat"]), &d));
        assert!(!m(json!(["body", "ContainsAnyToken", "cat mouse"]), &d));
        assert!(m(json!(["body", "ContainsTokenSequence", "quick brown fox"]), &d));
        assert!(!m(json!(["body", "ContainsTokenSequence", "brown quick fox"]), &d));
        assert!(!m(json!(["body", "ContainsTokenSequence", "quick fox"]), &d));
        // Arrays are already tokenized: used verbatim.
        assert!(m(json!(["body", "ContainsAllTokens", ["quick", "dog"]]), &d));
        assert!(!m(json!(["body", "ContainsAllTokens", ["Quick"]]), &d));
        assert!(m(json!(["body", "ContainsTokenSequence", ["lazy", "dog"]]), &d));
        // No query tokens: matches nothing.
        assert!(!m(json!(["body", "ContainsAllTokens", "  ,"]), &d));
        assert!(!m(json!(["body", "ContainsAnyToken", []]), &d));
        assert!(!m(json!(["body", "ContainsTokenSequence", ""]), &d));
        // String arrays are tokenized per element; other kinds have no tokens.
        assert!(m(json!(["tags", "ContainsAllTokens", "a c"]), &d));
        assert!(!m(json!(["n", "ContainsAnyToken", "5"]), &d));
        assert!(Filter::parse(&json!(["body", "ContainsAnyToken", ["a", 1]])).is_err());
        assert!(Filter::parse(&json!(["body", "ContainsAnyToken", 1])).is_err());
        assert!(Filter::parse(&json!(["body", "ContainsAnyToken", "a".repeat(MAX_TOKEN_QUERY_BYTES + 1)]))
            .is_err());
    }

    #[test]
    fn every_operator_parses_and_round_trips() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Some(op));
            let operand = match op {
                Op::In | Op::NotIn | Op::ContainsAny | Op::NotContainsAny => json!(["a"]),
                _ => json!("a"),
            };
            let filter = f(json!(["s", op.as_str(), operand]));
            let Filter::Cond(c) = &filter else { panic!("{filter:?}") };
            assert_eq!(c.op(), op);
            assert_eq!(c.attr(), "s");
            assert_eq!(Filter::parse(&filter.to_json()), Ok(filter.clone()));
        }
        assert_eq!(
            f(json!(["s", "Fuzzy", "a"])).to_json(),
            json!(["s", "Fuzzy", "a", {"max_edit_distance": 1, "case_sensitive": true}])
        );
    }

    #[test]
    fn parse_errors() {
        let cases: &[(Json, &str)] = &[
            (json!(null), "must be an array"),
            (json!({"a": 1}), "must be an array"),
            (json!("Eq"), "must be an array"),
            (json!([]), "0 elements"),
            (json!(["a"]), "1 elements"),
            (json!(["a", "Eq", 1, {}, 5]), "5 elements"),
            (json!(["Xor", []]), "unknown filter combinator \"Xor\""),
            (json!([1, []]), "2 elements"),
            (json!(["And", {}]), "And takes an array"),
            (json!(["Or", [1]]), "must be an array"),
            (json!(["Not", []]), "0 elements"),
            (json!([1, "Eq", 1]), "attribute name must be a string, got number"),
            (json!([null, "Eq", 1]), "attribute name must be a string"),
            (json!(["", "Eq", 1]), "must not be empty"),
            (json!(["a".repeat(129), "Eq", 1]), "longer than"),
            (json!(["a", 5, 1]), "operator for \"a\" must be a string"),
            (json!(["a", "Equals", 1]), "unknown filter operator \"Equals\""),
            (json!(["a", "eq", 1]), "unknown filter operator \"eq\""),
            (json!(["a", "Eq", 1, {}]), "only Fuzzy accepts a 4th"),
            (json!(["a", "In", 1]), "In on \"a\" needs an array operand, got int"),
            (json!(["a", "NotIn", "x"]), "needs an array operand"),
            (json!(["a", "In", null]), "needs an array operand, got null"),
            (json!(["a", "ContainsAny", 1]), "needs an array operand"),
            (json!(["a", "Contains", [1]]), "use ContainsAny"),
            (json!(["a", "Lt", [1]]), "needs a scalar operand"),
            (json!(["a", "Lt", null]), "null operands are only allowed"),
            (json!(["a", "Eq", [[1]]]), "nested arrays"),
            (json!(["a", "In", [1, null]]), "must not contain null"),
            (json!(["a", "Eq", {"k": 1}]), "object operands are not supported"),
            (json!(["a", "Eq", {"$ref_new": 1}]), "$ref_new must be"),
            (json!(["a", "Eq", {"$ref_new": "b", "x": 1}]), "$ref_new must be"),
            (json!(["a", "Eq", {"$ref_new": ""}]), "must not be empty"),
            (json!(["a", "Glob", 1]), "needs a string pattern"),
            (json!(["a", "Glob", "[ab"]), "unclosed"),
            (json!(["a", "IGlob", "a".repeat(4097)]), "limit is 4096"),
            (json!(["a", "Regex", "a)"]), "bad Regex pattern"),
            (json!(["a", "ContainsAllTokens", {}]), "string or an array of tokens"),
        ];
        for (input, want) in cases {
            let e = parse_err(input.clone());
            assert!(e.contains(want), "{input}: {e:?} lacks {want:?}");
        }
    }

    /// `depth` nested `Not` around a leaf, built and torn down iteratively
    /// (serde_json's recursive drop would overflow the stack otherwise).
    fn nested_not(depth: usize) -> Json {
        let mut v = json!(["n", "Eq", 5]);
        for _ in 0..depth {
            v = Json::Array(vec![json!("Not"), v]); // json!(v) would re-serialise `v` recursively
        }
        v
    }

    fn drop_deep(mut v: Json) {
        while let Json::Array(items) = &mut v {
            let Some(inner) = items.pop() else { break };
            v = inner;
        }
    }

    #[test]
    fn depth_is_bounded() {
        let d = sample();
        // 63 combinators plus the leaf = 64 levels: accepted.
        let ok = nested_not(MAX_DEPTH - 1);
        let parsed = Filter::parse(&ok).unwrap();
        assert!(!parsed.matches(&d, None)); // an odd number of Nots over a true leaf
        assert_eq!(Filter::parse(&parsed.to_json()), Ok(parsed));
        assert!(parse_err(nested_not(MAX_DEPTH)).contains("deeper than 64"));
        // No clone or plain drop of `deep`: serde_json would recurse.
        let deep = nested_not(100_000);
        let e = Filter::parse(&deep).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("deeper than 64"), "{e}");
        drop_deep(deep);
        let mut deep_and = json!(["And", []]);
        for _ in 0..100_000 {
            deep_and = Json::Array(vec![json!("And"), Json::Array(vec![deep_and])]);
        }
        assert!(Filter::parse(&deep_and).is_err());
        drop_deep(deep_and);
    }

    #[test]
    fn hand_built_deep_filters_stay_bounded() {
        let mut deep = Filter::Cond(match f(json!(["n", "Eq", 5])) {
            Filter::Cond(c) => c,
            other => panic!("{other:?}"),
        });
        for _ in 0..(MAX_DEPTH + 10) {
            deep = Filter::And(vec![deep]);
        }
        assert!(!deep.matches(&sample(), None));
        assert!(Filter::parse(&deep.to_json()).is_err());
        assert_eq!(deep.attributes(), ["n"]);
    }

    #[test]
    fn leaf_count_is_bounded() {
        let leaves: Vec<Json> = (0..MAX_LEAVES).map(|i| json!(["n", "Eq", i])).collect();
        assert!(Filter::parse(&json!(["Or", leaves.clone()])).is_ok());
        let mut more = leaves;
        more.push(json!(["And", []]));
        assert!(parse_err(json!(["Or", more])).contains("more than 10000 conditions"));
        let empties: Vec<Json> = (0..=MAX_LEAVES).map(|_| json!(["Or", []])).collect();
        assert!(Filter::parse(&json!(["And", empties])).is_err());
    }

    #[test]
    fn attributes_in_order() {
        let filter =
            f(json!(["And", [["b", "Eq", 1], ["Not", ["a", "Eq", {"$ref_new": "z"}]], ["b", "Gt", 0]]]));
        assert_eq!(filter.attributes(), ["b", "a"]);
        assert_eq!(filter.conditions().len(), 3);
    }

    fn schema() -> Schema {
        let mut s = parse_schema(&json!({
            "n": "int", "tags": "[]string", "s": "string", "u": "uuid", "flag": "bool",
            "body": {"type": "string", "full_text_search": true},
            "title": {"type": "string", "full_text_search": true, "filterable": true},
            "hidden": {"type": "string", "filterable": false},
            "sp": "{}f32",
        }))
        .unwrap();
        s.insert("emb".into(), AttrSchema::of(AttrType::Vector { dim: 3, f16: false }));
        s
    }

    #[test]
    fn validate_filterability() {
        let s = schema();
        let ok = |v: Json| f(v.clone()).validate(&s).unwrap_or_else(|e| panic!("{v}: {e}"));
        let bad = |v: Json| match f(v.clone()).validate(&s) {
            Err(e) => e.to_string(),
            Ok(()) => panic!("{v} validated"),
        };
        ok(json!(["n", "Eq", 1]));
        ok(json!(["n", "Lt", 2.5]));
        ok(json!(["id", "Eq", "whatever"]));
        ok(json!(["unknown", "Eq", "x"]));
        ok(json!(["title", "Eq", "x"]));
        ok(json!(["tags", "ContainsAny", ["a"]]));
        ok(json!(["u", "Glob", "0b4a*"]));
        ok(json!(["n", "Eq", null]));
        ok(json!(["n", "Eq", {"$ref_new": "s"}]));
        ok(json!(["body", "ContainsAllTokens", "fox"]));
        ok(json!(["body", "ContainsTokenSequence", ["a", "b"]]));
        ok(json!(["title", "ContainsAnyToken", "fox"]));
        assert_eq!(
            bad(json!(["Not", ["body", "Eq", "x"]])),
            "invalid filter: attribute \"body\" is not filterable (it has full_text_search; set \
             \"filterable\": true)"
        );
        assert!(bad(json!(["hidden", "Eq", "x"])).contains("\"hidden\" is not filterable"));
        assert!(bad(json!(["hidden", "ContainsAnyToken", "x"])).contains("not filterable"));
        assert!(bad(json!(["vector", "Eq", 1])).contains("vector"));
        assert!(bad(json!(["emb", "Eq", 1])).contains("vector"));
        assert!(bad(json!(["sp", "Eq", 1])).contains("sparse vector"));
        assert!(bad(json!(["n", "Eq", "x"])).contains("can never match"));
        assert!(bad(json!(["flag", "In", [1]])).contains("can never match"));
        assert!(bad(json!(["tags", "ContainsAny", [1]])).contains("can never match"));
        assert!(bad(json!(["n", "Glob", "1*"])).contains("needs a string attribute"));
        assert!(bad(json!(["Or", [["n", "Eq", 1], ["body", "Glob", "x"]]])).contains("body"));
        assert!(Filter::match_all().validate(&BTreeMap::new()).is_ok());
    }

    // -- property tests ----------------------------------------------------

    fn scalar() -> impl Strategy<Value = Json> {
        prop_oneof![
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            (-1e9f64..1e9).prop_map(Json::from),
            "[a-c]{0,3}".prop_map(Json::from),
        ]
    }

    fn operand(op: Op) -> BoxedStrategy<Json> {
        let list = prop::collection::vec(scalar(), 0..4).prop_map(Json::Array);
        let ref_new = "[a-c]{1,2}".prop_map(|a| json!({ "$ref_new": a }));
        match op {
            Op::Eq | Op::NotEq => prop_oneof![scalar(), list, Just(Json::Null), ref_new].boxed(),
            Op::In | Op::NotIn | Op::ContainsAny | Op::NotContainsAny => prop_oneof![list, ref_new].boxed(),
            Op::Glob | Op::NotGlob | Op::IGlob | Op::NotIGlob => {
                "[ab*?]{0,4}(\\[!?[a-c]\\])?".prop_map(Json::from).boxed()
            }
            Op::Regex => "[a-c]{0,3}(\\.\\*)?".prop_map(Json::from).boxed(),
            Op::Fuzzy => "[a-c]{0,4}".prop_map(Json::from).boxed(),
            Op::ContainsAllTokens | Op::ContainsAnyToken | Op::ContainsTokenSequence => prop_oneof![
                "[a-c ]{0,6}".prop_map(Json::from),
                prop::collection::vec("[a-c]{1,2}", 0..3).prop_map(|v| json!(v)),
            ]
            .boxed(),
            _ => prop_oneof![scalar(), ref_new].boxed(),
        }
    }

    fn leaf() -> impl Strategy<Value = Json> {
        (prop::sample::select(Op::ALL.to_vec()), prop::sample::select(vec!["a", "b", "c", "id", "And"]))
            .prop_flat_map(|(op, attr)| {
                let fuzzy_opts = (any::<Option<u8>>(), any::<Option<bool>>()).prop_map(|(d, cs)| {
                    let mut m = Map::new();
                    if let Some(d) = d {
                        m.insert("max_edit_distance".into(), json!(d % 3));
                    }
                    if let Some(cs) = cs {
                        m.insert("case_sensitive".into(), json!(cs));
                    }
                    m
                });
                (operand(op), prop::option::of(fuzzy_opts)).prop_map(move |(v, opts)| match opts {
                    Some(o) if op == Op::Fuzzy => json!([attr, op.as_str(), v, o]),
                    _ => json!([attr, op.as_str(), v]),
                })
            })
    }

    fn filter_json() -> impl Strategy<Value = Json> {
        leaf().prop_recursive(5, 48, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!(["And", v])),
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!(["Or", v])),
                inner.prop_map(|v| json!(["Not", v])),
            ]
        })
    }

    fn doc_strategy() -> impl Strategy<Value = Document> {
        let value = prop_oneof![scalar(), prop::collection::vec(scalar(), 0..3).prop_map(Json::Array)];
        prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c"]), value, 0..3).prop_map(|m| {
            let mut d = Document::new(DocId::U64(3));
            for (k, v) in m {
                if let Ok(v) = Value::from_json(&v) {
                    d.attrs.insert(k.to_owned(), v);
                }
            }
            d
        })
    }

    proptest! {
        #[test]
        fn round_trips_through_json(v in filter_json()) {
            let parsed = Filter::parse(&v).map_err(|e| TestCaseError::fail(format!("{v}: {e}")))?;
            let canonical = parsed.to_json();
            prop_assert_eq!(Filter::parse(&canonical), Ok(parsed.clone()));
            // The canonical form is a fixed point.
            prop_assert_eq!(Filter::parse(&canonical).map(|f| f.to_json()), Ok(canonical));
        }

        #[test]
        fn not_is_negation(v in filter_json(), d in doc_strategy(), n in doc_strategy()) {
            let parsed = Filter::parse(&v).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let negated = Filter::parse(&json!(["Not", v])).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(negated.matches(&d, Some(&n)), !parsed.matches(&d, Some(&n)));
        }

        #[test]
        fn not_ops_negate_positive_ops(l in leaf(), d in doc_strategy(), n in doc_strategy()) {
            let pairs = [("Eq", "NotEq"), ("In", "NotIn"), ("Contains", "NotContains"),
                ("ContainsAny", "NotContainsAny"), ("Glob", "NotGlob"), ("IGlob", "NotIGlob")];
            let Json::Array(mut items) = l else { return Err(TestCaseError::fail("leaf")) };
            let Some(op) = items.get(1).and_then(Json::as_str).map(str::to_owned) else {
                return Err(TestCaseError::fail("op"));
            };
            if let Some((pos, neg)) = pairs.iter().find(|(p, _)| *p == op) {
                let p = Filter::parse(&Json::Array(items.clone())).map_err(|e| TestCaseError::fail(e.to_string()))?;
                items[1] = json!(neg);
                let q = Filter::parse(&Json::Array(items)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(p.matches(&d, Some(&n)), !q.matches(&d, Some(&n)), "{} vs {}", pos, neg);
            }
        }

        #[test]
        fn fuzzy_band_agrees_with_full_levenshtein(a in "[ab]{0,7}", b in "[ab]{0,7}", k in 0usize..3) {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            prop_assert_eq!(within_edit_distance(&a, &b, k), levenshtein(&a, &b) <= k);
        }

        #[test]
        fn glob_agrees_with_globset(p in "([ab?]|\\*|\\[!?[a-c]-?[a-c]?\\]){0,5}", t in "[abc]{0,6}", ci in any::<bool>()) {
            prop_assume!(!p.contains("**"));
            let ours = GlobPattern::new(&p, ci).map(|g| g.is_match(&t));
            let theirs = globset::GlobBuilder::new(&p)
                .literal_separator(false)
                .case_insensitive(ci)
                .build()
                .map(|g| g.compile_matcher().is_match(&t));
            if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                prop_assert_eq!(ours, theirs, "pattern {:?} text {:?}", p, t);
            }
        }

        #[test]
        fn parse_never_panics(v in filter_json(), junk in prop::collection::vec(scalar(), 0..4)) {
            let _ = Filter::parse(&v);
            let _ = Filter::parse(&Json::Array(junk));
        }
    }
}
