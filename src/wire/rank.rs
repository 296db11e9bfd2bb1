//! The turbopuffer rank expression JSON, shared by `rank_by`, `_debug/recall`
//! and `compute_attributes`: attribute orderings, `ANN`/`kNN` vectors,
//! `SparseKNN`, BM25 clauses with `Sum`/`Max`/`Product`, and the combinators
//! (`Attribute`, `Saturate`, `Decay`, `Dist`, filters as rank terms).
//!
//! Invariants: parsing is total (any JSON yields an expression or an
//! `InvalidInput`/`Unsupported` [`QueryError`]) and reads no state; nesting
//! is bounded ([`MAX_RANK_DEPTH`]), as are `Sum`/`Max` children
//! ([`MAX_RANK_CHILDREN`]), leaf terms ([`MAX_RANK_CLAUSES`]) and `SparseKNN`
//! dimensions ([`MAX_SPARSE_QUERY_KEYS`]). It sits below `wire::query` and
//! `wire::compute`, which both parse through it.

use serde_json::Value as Json;

use crate::filter::Filter;
use crate::model::VECTOR_ATTR;
use crate::query::{
    Curve, Direction, EmbedText, OrderKey, QueryError, Rank, TextExpr, TextInput, MAX_RANK_CHILDREN,
    MAX_RANK_CLAUSES, MAX_SPARSE_QUERY_KEYS,
};

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidInput(msg.into())
}

/// Deepest nesting of a BM25 rank expression.
pub(crate) const MAX_RANK_DEPTH: usize = 16;

/// A parsed `rank_by`.
pub(crate) enum RankBy {
    Order(Vec<OrderKey>),
    Scored(Rank),
    /// `[attr, "ANN"|"kNN", ["Embed", text, {model}]]`: by the embedding of a text.
    Embed {
        attr: String,
        exact: bool,
        text: EmbedText,
    },
}

/// `["Embed", text]` or `["Embed", text, {"model": name}]`; None when `v` is not an `Embed`.
pub(crate) fn parse_embed(v: &Json) -> Result<Option<EmbedText>, QueryError> {
    let Some(items) = v.as_array().filter(|a| a.first().and_then(Json::as_str) == Some("Embed")) else {
        return Ok(None);
    };
    let shape = || invalid("Embed takes [\"Embed\", text] or [\"Embed\", text, {\"model\": name}]");
    let text =
        items.get(1).and_then(Json::as_str).filter(|_| (2..=3).contains(&items.len())).ok_or_else(shape)?;
    let mut model = None;
    if let Some(params) = items.get(2).filter(|p| !p.is_null()) {
        for (k, val) in params.as_object().ok_or_else(shape)? {
            match (k.as_str(), val) {
                ("model", Json::String(m)) if !m.is_empty() => model = Some(m.clone()),
                ("model", Json::Null) => {}
                ("model", _) => return Err(invalid("Embed's model must be a model name")),
                (other, _) => {
                    return Err(invalid(format!("Embed takes only the parameter model, not {other:?}")))
                }
            }
        }
    }
    Ok(Some(EmbedText { text: text.to_owned(), model }))
}

pub(crate) fn prefix_error(e: QueryError, what: &str) -> QueryError {
    match e {
        QueryError::InvalidInput(m) => QueryError::InvalidInput(format!("{what}: {m}")),
        QueryError::Unsupported(m) => QueryError::Unsupported(format!("{what}: {m}")),
        other => other,
    }
}

pub(crate) fn parse_f32_vector(v: Option<&Json>, what: &str) -> Result<Vec<f32>, QueryError> {
    let items =
        v.and_then(Json::as_array).ok_or_else(|| invalid(format!("{what} needs a vector of numbers")))?;
    if items.iter().any(Json::is_array) {
        return Err(invalid(format!(
            "{what}: a vector holds numbers (a list of query vectors is [[..], ..])"
        )));
    }
    items
        .iter()
        .map(|x| {
            x.as_f64()
                .map(|f| f as f32)
                .filter(|f| f.is_finite())
                .ok_or_else(|| invalid(format!("{what}: vector components must be finite numbers")))
        })
        .collect()
}

/// The query vectors of a multi-vector ranking (`[[f32..], ..]`), or None when the
/// operand is not a list of lists (a single vector). 1..=`MAX_MULTI_VECTORS` vectors of
/// one dimension, finite numbers.
fn parse_multi_query(v: Option<&Json>) -> Result<Option<Vec<Vec<f32>>>, QueryError> {
    let Some(items) = v.and_then(Json::as_array).filter(|a| a.first().is_some_and(Json::is_array)) else {
        return Ok(None);
    };
    let max = crate::model::MAX_MULTI_VECTORS;
    if items.len() > max {
        return Err(invalid(format!("rank_by: {} query vectors; the limit is {max}", items.len())));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if item.as_array().is_some_and(|a| a.iter().any(Json::is_array)) {
            return Err(invalid("rank_by: query vectors must be arrays of numbers"));
        }
        let q = parse_f32_vector(Some(item), "rank_by")?;
        if q.is_empty() || out.first().is_some_and(|f: &Vec<f32>| f.len() != q.len()) {
            return Err(invalid(format!("rank_by: query vector {i} is empty or of another dimension")));
        }
        out.push(q);
    }
    Ok(Some(out))
}

/// Parse `rank_by` as an attribute ordering or a scored ranking.
pub(crate) fn parse_rank_by(v: &Json) -> Result<RankBy, QueryError> {
    if let Some(key) = order_pair(v) {
        return Ok(RankBy::Order(vec![key]));
    }
    if let Some(items) = v.as_array() {
        if !items.is_empty() && items.iter().all(|i| order_pair(i).is_some()) {
            return Ok(RankBy::Order(items.iter().filter_map(order_pair).collect()));
        }
        let op = items.get(1).and_then(Json::as_str);
        let head = items.first().and_then(Json::as_str);
        match (head, op) {
            (Some(attr), Some(op @ ("ANN" | "kNN"))) => {
                if items.len() != 3 {
                    return Err(invalid(format!("rank_by [{attr:?}, \"{op}\", [..]] takes 3 items")));
                }
                let exact = op == "kNN";
                if let Some(text) = items.get(2).map(parse_embed).transpose()?.flatten() {
                    return Ok(RankBy::Embed { attr: attr.to_owned(), exact, text });
                }
                if let Some(queries) = parse_multi_query(items.get(2))? {
                    if attr == VECTOR_ATTR {
                        return Err(invalid("rank_by on \"vector\" takes one query vector, not a list"));
                    }
                    return Ok(RankBy::Scored(Rank::MultiVector { attr: attr.to_owned(), exact, queries }));
                }
                let query = parse_f32_vector(items.get(2), "rank_by")?;
                // Whether a named attribute is a vector is the query layer's check (schema).
                return Ok(RankBy::Scored(if attr == VECTOR_ATTR {
                    Rank::Vector { exact, query }
                } else {
                    Rank::NamedVector { attr: attr.to_owned(), exact, query }
                }));
            }
            (Some(attr), Some("SparseKNN")) => {
                let o =
                    items.get(2).and_then(Json::as_object).filter(|_| items.len() == 3).ok_or_else(|| {
                        invalid("rank_by SparseKNN takes [attr, \"SparseKNN\", {key: weight}]")
                    })?;
                if o.len() > MAX_SPARSE_QUERY_KEYS {
                    return Err(invalid(format!(
                        "rank_by SparseKNN has {} dimensions; the limit is {MAX_SPARSE_QUERY_KEYS}",
                        o.len()
                    )));
                }
                let mut query = Vec::with_capacity(o.len());
                for (k, w) in o {
                    let w = w
                        .as_f64()
                        .map(|f| f as f32)
                        .filter(|f| f.is_finite())
                        .ok_or_else(|| invalid("SparseKNN weights must be finite numbers"))?;
                    query.push((k.clone(), w));
                }
                query.sort_by(|a, b| a.0.cmp(&b.0));
                return Ok(RankBy::Scored(Rank::Sparse { attr: attr.to_owned(), query }));
            }
            _ if is_combinator(items) => {
                return Ok(RankBy::Scored(Rank::Text(parse_text_expr(v, 1, &mut 0)?)));
            }
            (_, Some("BM25")) | (Some("Sum" | "Max" | "Product"), _) => {
                return Ok(RankBy::Scored(Rank::Text(parse_text_expr(v, 1, &mut 0)?)));
            }
            _ => {}
        }
    }
    Err(invalid(
        "rank_by must be [\"attr\", \"asc\"|\"desc\"], a list of such pairs, or a ranking expression",
    ))
}

/// Parses a BM25 rank expression at nesting level `depth`; `clauses` counts
/// the BM25 clauses (and leaf combinator terms: attributes, filters) seen so
/// far (bounded by [`MAX_RANK_CLAUSES`]).
pub(crate) fn parse_text_expr(v: &Json, depth: usize, clauses: &mut usize) -> Result<TextExpr, QueryError> {
    if depth > MAX_RANK_DEPTH {
        return Err(invalid(format!("rank_by nests deeper than {MAX_RANK_DEPTH} levels")));
    }
    let items = v.as_array().ok_or_else(|| invalid("a rank expression must be an array"))?;
    let head = items.first().and_then(Json::as_str);
    let op = items.get(1).and_then(Json::as_str);
    match (head, op) {
        (Some(attr), Some("BM25")) => {
            if !(3..=4).contains(&items.len()) {
                return Err(invalid("BM25 takes [attr, \"BM25\", query, {last_as_prefix}]"));
            }
            *clauses += 1;
            if *clauses > MAX_RANK_CLAUSES {
                return Err(invalid(format!(
                    "rank_by has more than {MAX_RANK_CLAUSES} BM25 clauses (the limit per rank expression)"
                )));
            }
            let query = match &items[2] {
                Json::String(s) => TextInput::Text(s.clone()),
                Json::Array(a) => TextInput::Tokens(
                    a.iter()
                        .map(|t| {
                            t.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| invalid("BM25 tokens must be strings"))
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(invalid("a BM25 query must be a string or a list of strings")),
            };
            let mut last_as_prefix = false;
            if let Some(p) = items.get(3).filter(|p| !p.is_null()) {
                let o = p.as_object().ok_or_else(|| invalid("BM25 parameters must be an object"))?;
                for (k, val) in o {
                    match k.as_str() {
                        "last_as_prefix" => {
                            last_as_prefix =
                                val.as_bool().ok_or_else(|| invalid("last_as_prefix must be a bool"))?
                        }
                        other => return Err(invalid(format!("unknown BM25 parameter {other:?}"))),
                    }
                }
            }
            Ok(TextExpr::Bm25 { attr: attr.to_owned(), query, last_as_prefix })
        }
        (Some(c @ ("Sum" | "Max")), _) => {
            let subs = items
                .get(1)
                .and_then(Json::as_array)
                .filter(|s| items.len() == 2 && !s.is_empty())
                .ok_or_else(|| invalid(format!("{c} takes a non-empty list of expressions")))?;
            if subs.len() > MAX_RANK_CHILDREN {
                return Err(invalid(format!(
                    "{c} has {} children; the limit is {MAX_RANK_CHILDREN} children per Sum/Max",
                    subs.len()
                )));
            }
            let subs =
                subs.iter().map(|s| parse_text_expr(s, depth + 1, clauses)).collect::<Result<Vec<_>, _>>()?;
            Ok(if c == "Sum" { TextExpr::Sum(subs) } else { TextExpr::Max(subs) })
        }
        (Some("Product"), _) if items.len() == 3 => {
            let (w, e) = match (items[1].as_f64(), items[2].as_f64()) {
                (Some(w), _) => (w, &items[2]),
                (None, Some(w)) => (w, &items[1]),
                _ => return Err(invalid("Product takes a number and an expression")),
            };
            if !w.is_finite() {
                return Err(invalid("Product weight must be finite"));
            }
            Ok(TextExpr::Product(w as f32, Box::new(parse_text_expr(e, depth + 1, clauses)?)))
        }
        _ if is_combinator(items) => {
            if !matches!(head, Some("Saturate" | "Decay" | "Dist")) {
                // A leaf term: counted with the BM25 clauses.
                *clauses += 1;
                if *clauses > MAX_RANK_CLAUSES {
                    return Err(invalid(format!(
                        "rank_by has more than {MAX_RANK_CLAUSES} BM25 clauses and terms (the limit per rank expression)"
                    )));
                }
            }
            parse_combinator(v, items, depth, clauses)
        }
        _ => Err(invalid(
            "unknown rank expression: expected BM25, Sum, Max, Product, Attribute, Saturate, Decay, Dist or a filter",
        )),
    }
}

pub(crate) fn order_pair(v: &Json) -> Option<OrderKey> {
    let items = v.as_array()?;
    let [attr, dir] = items.as_slice() else { return None };
    let dir = match dir.as_str()? {
        "asc" => Direction::Asc,
        "desc" => Direction::Desc,
        _ => return None,
    };
    Some(OrderKey { attr: attr.as_str()?.to_owned(), dir })
}

/// Whether a rank expression's head names a combinator or a filter (which
/// [`parse_combinator`] then parses).
pub(crate) fn is_combinator(items: &[Json]) -> bool {
    let head = items.first().and_then(Json::as_str);
    let op = items.get(1).and_then(Json::as_str);
    matches!(head, Some("Attribute" | "Saturate" | "Decay" | "Dist" | "And" | "Or" | "Not"))
        || op.is_some_and(|o| crate::filter::Op::parse(o).is_some())
}

/// `Attribute`, `Saturate`, `Decay`, `Dist` or a filter term, at nesting
/// `depth`; `terms` counts leaf terms against the expression's bound.
pub(crate) fn parse_combinator(
    v: &Json,
    items: &[Json],
    depth: usize,
    terms: &mut usize,
) -> Result<TextExpr, QueryError> {
    let mut inner = |e: &Json| parse_text_expr(e, depth + 1, terms);
    match items.first().and_then(Json::as_str) {
        Some("Attribute") => match items {
            [_, Json::String(a)] => Ok(TextExpr::Attribute(a.clone())),
            _ => Err(invalid("Attribute takes [\"Attribute\", name]")),
        },
        Some(c @ ("Saturate" | "Decay")) => {
            let [_, e, p] = items else {
                return Err(invalid(format!("{c} takes [\"{c}\", expr, {{midpoint, exponent}}]")));
            };
            let curve = parse_curve(p, c)?;
            let e = Box::new(inner(e)?);
            Ok(if c == "Saturate" { TextExpr::Saturate(e, curve) } else { TextExpr::Decay(e, curve) })
        }
        Some("Dist") => {
            let [_, e, x] = items else { return Err(invalid("Dist takes [\"Dist\", expr, number]")) };
            let x = x
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| invalid("Dist's value must be a number"))?;
            Ok(TextExpr::Dist(Box::new(inner(e)?), x))
        }
        _ => Filter::parse(v).map(TextExpr::Filter).map_err(|e| invalid(format!("filter rank term: {e}"))),
    }
}

/// `{midpoint, exponent}`: midpoint required and positive, exponent positive (default 1).
fn parse_curve(p: &Json, c: &str) -> Result<Curve, QueryError> {
    let o =
        p.as_object().ok_or_else(|| invalid(format!("{c}'s parameters must be {{midpoint, exponent}}")))?;
    let positive = |k: &str| -> Result<Option<f64>, QueryError> {
        match o.get(k).filter(|x| !x.is_null()) {
            None => Ok(None),
            Some(x) => x
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(Some)
                .ok_or_else(|| invalid(format!("{c}.{k} must be a positive number"))),
        }
    };
    if let Some(bad) = o.keys().find(|k| *k != "midpoint" && *k != "exponent") {
        return Err(invalid(format!("{c} has an unknown parameter {bad:?}")));
    }
    let midpoint = positive("midpoint")?.ok_or_else(|| invalid(format!("{c} needs a midpoint")))?;
    Ok(Curve { midpoint, exponent: positive("exponent")?.unwrap_or(1.0) })
}
