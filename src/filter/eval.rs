//! Evaluating a filter's leaves against one document: null means missing, and every
//! `Not…` operator is exactly the negation of its positive form (see the parent module doc).

use super::*;

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
            Pred::In(_) | Pred::InScalar(_) => pick(n, Op::NotIn, Op::In),
            Pred::Contains(_) => pick(n, Op::NotContains, Op::Contains),
            Pred::ContainsAny(_) => pick(n, Op::NotContainsAny, Op::ContainsAny),
            Pred::Range { op, any, .. } => super::leaf::op_of(*op, *any),
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
            Pred::Eq(o) | Pred::In(o) | Pred::InScalar(o) | Pred::Contains(o) | Pred::ContainsAny(o) => {
                Some(o)
            }
            Pred::Range { operand, .. } => Some(operand),
            _ => None,
        }
    }

    /// The pattern of a case-sensitive `Glob` (for index prefix scans).
    pub fn glob_pattern(&self) -> Option<&str> {
        match &self.pred {
            Pred::Glob(g) if !g.case_insensitive && !self.negated => Some(&g.source),
            _ => None,
        }
    }

    pub(super) fn to_json(&self) -> Json {
        let operand = match &self.pred {
            Pred::Eq(o) | Pred::In(o) | Pred::InScalar(o) | Pred::Contains(o) | Pred::ContainsAny(o) => {
                o.to_json()
            }
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

    pub(super) fn matches(&self, doc: &Document, new_doc: Option<&Document>) -> bool {
        let value = present(doc, &self.attr);
        self.negated != eval(&self.pred, value.as_deref(), new_doc)
    }

    pub(super) fn uses_ref_new(&self) -> bool {
        matches!(self.operand(), Some(Operand::RefNew(_)))
    }
}

pub(super) fn pick(negated: bool, yes: Op, no: Op) -> Op {
    if negated {
        yes
    } else {
        no
    }
}

/// An attribute's value, treating a stored null as missing.
pub(super) fn present<'a>(doc: &'a Document, attr: &str) -> Option<Cow<'a, Value>> {
    doc.attr(attr).filter(|v| !matches!(v.as_ref(), Value::Null))
}

/// The elements of a value seen as a list: a scalar is a one-element list.
pub(super) fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

pub(super) fn any_string(v: &Value, mut f: impl FnMut(&str) -> bool) -> bool {
    elements(v).iter().any(|x| matches!(x, Value::Str(s) if f(s)))
}

/// Evaluates the positive form of a predicate; `attr` is `None` when the
/// document lacks the attribute.
pub(super) fn eval(pred: &Pred, attr: Option<&Value>, new_doc: Option<&Document>) -> bool {
    match pred {
        Pred::Eq(o) | Pred::In(o) | Pred::InScalar(o) | Pred::Contains(o) | Pred::ContainsAny(o) => {
            let operand = o.resolve(new_doc);
            let (attr, operand) = match (attr, operand.as_ref()) {
                (a, Value::Null) => return a.is_none(),
                (None, _) => return false,
                (Some(a), v) => (a, v),
            };
            match pred {
                Pred::Eq(_) => attr.loosely_equals(operand),
                // An array attribute is in the list when one of its elements is (turbopuffer's
                // rule: its TypeScript SDK's live tests filter `["numbers", "In", [2, 4]]`).
                Pred::In(_) => match attr {
                    Value::Array(items) => {
                        items.iter().any(|x| elements(operand).iter().any(|y| x.loosely_equals(y)))
                    }
                    _ => elements(operand).iter().any(|x| attr.loosely_equals(x)),
                },
                Pred::InScalar(_) => elements(operand).iter().any(|x| attr.loosely_equals(x)),
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

// Tokens

/// The tokenizer for token filters: split on non-alphanumeric characters and
/// lowercase. The one place to swap in the schema's BM25 tokenizer.
pub fn tokenize(text: &str) -> Vec<String> {
    crate::index::text::tokenize_default(text)
}

/// A document value's tokens: a string is tokenized, a string array is
/// tokenized element by element; other kinds have no tokens.
pub(super) fn value_tokens(v: &Value) -> Option<Vec<String>> {
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
pub(super) fn tokens_match(op: TokenOp, query: &TokenQuery, attr: &Value) -> bool {
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
