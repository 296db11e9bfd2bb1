//! Parsing the turbopuffer filter JSON into the typed AST, and checking it against a
//! schema. Invariants: depth is checked while parsing (hostile input cannot overflow the
//! stack); every leaf built here is well-formed (operands shaped, patterns compiled).

use super::*;

pub(super) fn validate_condition(c: &Condition, schema: &Schema) -> Result<(), FilterError> {
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
        AttrType::Vector { .. } | AttrType::MultiVector { .. } => {
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
pub(super) fn kind_fits(ty: ScalarType, v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(_) => ty == ScalarType::Bool,
        Value::Int(_) | Value::Float(_) => {
            matches!(ty, ScalarType::Int | ScalarType::Uint | ScalarType::Float)
        }
        Value::Str(_) => matches!(ty, ScalarType::String | ScalarType::Uuid | ScalarType::Datetime),
        Value::Array(items) => items.iter().all(|x| kind_fits(ty, x)),
        Value::Sparse(_) | Value::Dense(_) | Value::Multi(_) => false,
    }
}

// Parsing

pub(super) fn json_kind(v: &Json) -> &'static str {
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
pub(super) enum Shape {
    /// Scalar, array or null (`Eq`, `NotEq`).
    Any,
    /// A non-null scalar.
    Scalar,
    /// An array of scalars.
    List,
}

#[derive(Default)]
pub(super) struct Parser {
    leaves: usize,
    regexes: usize,
    pattern_bytes: usize,
}

impl Parser {
    fn leaf(&mut self) -> Result<(), FilterError> {
        self.leaves += 1;
        if self.leaves > MAX_LEAVES {
            return err(format!("filter has more than {MAX_LEAVES} conditions"));
        }
        Ok(())
    }

    /// Counts a pattern against [`MAX_PATTERN_TOTAL_BYTES`]: matching costs
    /// up to pattern × text per row, so the sum over a filter is bounded too.
    fn pattern_budget(&mut self, operand: &Json) -> Result<(), FilterError> {
        self.pattern_bytes += operand.as_str().map_or(0, str::len);
        if self.pattern_bytes > MAX_PATTERN_TOTAL_BYTES {
            return err(format!(
                "filter patterns (Glob, IGlob, Regex, Fuzzy) total more than {MAX_PATTERN_TOTAL_BYTES} bytes"
            ));
        }
        Ok(())
    }

    /// Parses one node at nesting level `depth`; the check comes before any
    /// recursion, so the stack depth is bounded by [`MAX_DEPTH`].
    pub(super) fn node(&mut self, v: &Json, depth: usize) -> Result<Filter, FilterError> {
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
        if matches!(op, Op::Glob | Op::NotGlob | Op::IGlob | Op::NotIGlob | Op::Regex | Op::Fuzzy) {
            self.pattern_budget(operand)?;
        }
        let leaf = match op {
            Op::Glob | Op::NotGlob | Op::IGlob | Op::NotIGlob => {
                LeafOperand::Pattern(pattern(attr, op, operand)?.to_owned())
            }
            Op::Regex => {
                self.regexes += 1;
                if self.regexes > MAX_REGEXES {
                    return err(format!("filter has more than {MAX_REGEXES} Regex conditions"));
                }
                LeafOperand::Pattern(pattern(attr, op, operand)?.to_owned())
            }
            Op::Fuzzy => fuzzy_operand(attr, operand, options)?,
            op if op.is_token_op() => token_query(attr, op, operand)?,
            op => LeafOperand::Value(parse_operand(attr, op, operand)?),
        };
        Condition::new(attr.clone(), op, leaf).map(Filter::Cond)
    }
}

pub(super) fn check_attr_name(name: &str) -> Result<(), FilterError> {
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

/// A value operator's operand from JSON: `{"$ref_new": attr}` or a literal
/// (its shape is checked by [`Condition::new`]).
pub(super) fn parse_operand(attr: &str, op: Op, v: &Json) -> Result<Operand, FilterError> {
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
    // An `id` literal is kept as sent: whether it is a uuid (compared in
    // canonical spelling) depends on the namespace's id type, which the
    // engine and the query resolve (`engine::ids`, `query::execute`).
    let value = Value::from_json(v).map_err(|e| FilterError(format!("{op} on {attr:?}: {e}")))?;
    if matches!(value, Value::Multi(_)) {
        // A list of arrays reads as a vector array value; no filter compares one.
        return err(format!("{op} on {attr:?}: operands hold scalars only (no nested arrays)"));
    }
    Ok(Operand::Value(value))
}

pub(super) fn pattern<'a>(attr: &str, op: Op, v: &'a Json) -> Result<&'a str, FilterError> {
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

pub(super) fn token_query(attr: &str, op: Op, v: &Json) -> Result<LeafOperand, FilterError> {
    let (query, bytes) = match v {
        Json::String(s) => (LeafOperand::TokenText(s.clone()), s.len()),
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
            (LeafOperand::Tokens(tokens), bytes)
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
