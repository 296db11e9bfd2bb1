//! Building a leaf condition from typed parts, without the API's input limits.
//!
//! Invariants:
//! - [`Condition::new`] is the only way a [`Condition`] is built (the JSON
//!   parser and the storage decoders both go through it), so every leaf is
//!   well-formed: the operand has the shape its operator takes (a list for
//!   `In`, a non-null scalar for ranges, ...), literals are finite and arrays
//!   hold non-null scalars, glob patterns are tokenized and regexes compiled.
//! - It applies no API limit (leaf counts, pattern lengths, regex counts,
//!   token-query bytes, fuzzy distance, attribute-name length): those belong
//!   to [`Filter::parse`], so a limit tightened later never makes stored
//!   filters unreadable. The one bound kept is [`REGEX_SIZE_LIMIT`] on a
//!   compiled regex, a memory-safety bound on what one leaf may allocate.
//! - [`Condition::leaf_operand`] gives back exactly the parts `new` took:
//!   `Condition::new(c.attr(), c.op(), c.leaf_operand()) == Ok(c)`.

use super::*;

/// The operand of a leaf condition in typed form: what [`Condition::new`]
/// takes and [`Condition::leaf_operand`] returns.
#[derive(Clone, Debug, PartialEq)]
pub enum LeafOperand {
    /// The operand of a value operator (`Eq` … `AnyGte`, `Contains…`).
    Value(Operand),
    /// The pattern of `Glob`, `NotGlob`, `IGlob`, `NotIGlob` or `Regex`.
    Pattern(String),
    /// `Fuzzy`'s text and options.
    Fuzzy {
        /// The text to compare with.
        text: String,
        /// Largest Levenshtein distance that still matches.
        max_edit_distance: u8,
        /// Whether letter case counts.
        case_sensitive: bool,
    },
    /// A token operator's query as text, tokenized at evaluation.
    TokenText(String),
    /// A token operator's query, already split into tokens.
    Tokens(Vec<String>),
}

impl LeafOperand {
    fn kind(&self) -> &'static str {
        match self {
            LeafOperand::Value(_) => "a value",
            LeafOperand::Pattern(_) => "a pattern",
            LeafOperand::Fuzzy { .. } => "fuzzy options",
            LeafOperand::TokenText(_) | LeafOperand::Tokens(_) => "a token query",
        }
    }
}

impl Condition {
    /// A well-formed leaf `[attr, op, operand]`: checks the operand's shape
    /// and compiles patterns, but applies none of the API's size limits (see
    /// the module doc).
    pub fn new(attr: impl Into<String>, op: Op, operand: LeafOperand) -> Result<Condition, FilterError> {
        let attr = attr.into();
        if attr.is_empty() {
            return err("attribute name must not be empty");
        }
        let pred = pred_of(&attr, op, operand)?;
        let negated = matches!(
            op,
            Op::NotEq | Op::NotIn | Op::NotContains | Op::NotContainsAny | Op::NotGlob | Op::NotIGlob
        );
        Ok(Condition { attr, negated, pred })
    }

    /// The operand in the typed form [`Condition::new`] takes.
    pub fn leaf_operand(&self) -> LeafOperand {
        match &self.pred {
            Pred::Eq(o) | Pred::In(o) | Pred::InScalar(o) | Pred::Contains(o) | Pred::ContainsAny(o) => {
                LeafOperand::Value(o.clone())
            }
            Pred::Range { operand, .. } => LeafOperand::Value(operand.clone()),
            Pred::Glob(g) => LeafOperand::Pattern(g.source.clone()),
            Pred::Regex(r) => LeafOperand::Pattern(r.regex.as_str().to_owned()),
            Pred::Fuzzy(f) => LeafOperand::Fuzzy {
                text: f.text.clone(),
                max_edit_distance: f.max_edit_distance,
                case_sensitive: f.case_sensitive,
            },
            Pred::Tokens(_, TokenQuery::Text(t)) => LeafOperand::TokenText(t.clone()),
            Pred::Tokens(_, TokenQuery::Tokens(ts)) => LeafOperand::Tokens(ts.clone()),
        }
    }
}

fn pred_of(attr: &str, op: Op, operand: LeafOperand) -> Result<Pred, FilterError> {
    let range =
        |op, any, o| Ok(Pred::Range { op, any, operand: shaped(attr, op_of(op, any), o, Shape::Scalar)? });
    match (op, operand) {
        (Op::Eq | Op::NotEq, LeafOperand::Value(o)) => Ok(Pred::Eq(shaped(attr, op, o, Shape::Any)?)),
        (Op::In | Op::NotIn, LeafOperand::Value(o)) => Ok(Pred::In(shaped(attr, op, o, Shape::List)?)),
        (Op::Contains | Op::NotContains, LeafOperand::Value(o)) => {
            Ok(Pred::Contains(shaped(attr, op, o, Shape::Scalar)?))
        }
        (Op::ContainsAny | Op::NotContainsAny, LeafOperand::Value(o)) => {
            Ok(Pred::ContainsAny(shaped(attr, op, o, Shape::List)?))
        }
        (Op::Lt, LeafOperand::Value(o)) => range(RangeOp::Lt, false, o),
        (Op::Lte, LeafOperand::Value(o)) => range(RangeOp::Lte, false, o),
        (Op::Gt, LeafOperand::Value(o)) => range(RangeOp::Gt, false, o),
        (Op::Gte, LeafOperand::Value(o)) => range(RangeOp::Gte, false, o),
        (Op::AnyLt, LeafOperand::Value(o)) => range(RangeOp::Lt, true, o),
        (Op::AnyLte, LeafOperand::Value(o)) => range(RangeOp::Lte, true, o),
        (Op::AnyGt, LeafOperand::Value(o)) => range(RangeOp::Gt, true, o),
        (Op::AnyGte, LeafOperand::Value(o)) => range(RangeOp::Gte, true, o),
        (Op::Glob | Op::NotGlob, LeafOperand::Pattern(p)) => Ok(Pred::Glob(GlobPattern::new(&p, false)?)),
        (Op::IGlob | Op::NotIGlob, LeafOperand::Pattern(p)) => Ok(Pred::Glob(GlobPattern::new(&p, true)?)),
        (Op::Regex, LeafOperand::Pattern(p)) => Ok(Pred::Regex(RegexPattern::new(&p)?)),
        (Op::Fuzzy, LeafOperand::Fuzzy { text, max_edit_distance, case_sensitive }) => {
            Ok(Pred::Fuzzy(Fuzzy { text, max_edit_distance, case_sensitive }))
        }
        (op, LeafOperand::TokenText(t)) if op.is_token_op() => {
            Ok(Pred::Tokens(token_op(op), TokenQuery::Text(t)))
        }
        (op, LeafOperand::Tokens(ts)) if op.is_token_op() => {
            Ok(Pred::Tokens(token_op(op), TokenQuery::Tokens(ts)))
        }
        (op, other) => err(format!("{op} on {attr:?} does not take {}", other.kind())),
    }
}

/// The operator a range predicate is spelled with (`AnyLt` … for array attributes).
pub(super) fn op_of(op: RangeOp, any: bool) -> Op {
    match (op, any) {
        (RangeOp::Lt, false) => Op::Lt,
        (RangeOp::Lte, false) => Op::Lte,
        (RangeOp::Gt, false) => Op::Gt,
        (RangeOp::Gte, false) => Op::Gte,
        (RangeOp::Lt, true) => Op::AnyLt,
        (RangeOp::Lte, true) => Op::AnyLte,
        (RangeOp::Gt, true) => Op::AnyGt,
        (RangeOp::Gte, true) => Op::AnyGte,
    }
}

fn token_op(op: Op) -> TokenOp {
    match op {
        Op::ContainsAllTokens => TokenOp::All,
        Op::ContainsAnyToken => TokenOp::Any,
        _ => TokenOp::Sequence,
    }
}

/// Checks that a value operator's operand has the shape `op` takes, and that
/// a literal is one a JSON filter could spell (no sparse vector, no nested
/// array, no null inside an array, no non-finite float).
fn shaped(attr: &str, op: Op, operand: Operand, shape: Shape) -> Result<Operand, FilterError> {
    let value = match &operand {
        Operand::RefNew(target) if target.is_empty() => {
            return err(format!("{op} on {attr:?}: $ref_new names an empty attribute"))
        }
        Operand::RefNew(_) => return Ok(operand),
        Operand::Value(v) => v,
    };
    check_literal(attr, op, value)?;
    match (shape, value) {
        (Shape::List, Value::Array(_)) | (Shape::Any, _) => Ok(operand),
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
        (Shape::Scalar, _) => Ok(operand),
    }
}

fn check_literal(attr: &str, op: Op, v: &Value) -> Result<(), FilterError> {
    let bad = |why: &str| err(format!("{op} on {attr:?}: {why}"));
    match v {
        Value::Sparse(_) => bad("object operands are not supported (only {\"$ref_new\": \"attr\"})"),
        Value::Float(x) if !x.is_finite() => bad("a float operand must be finite"),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Array(_) | Value::Sparse(_) => return bad("an array operand holds scalars only"),
                    Value::Null => return bad("an array operand must not contain null"),
                    Value::Float(x) if !x.is_finite() => return bad("a float operand must be finite"),
                    _ => {}
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
