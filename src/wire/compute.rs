//! The JSON of `compute_attributes` and of the rank combinators
//! (`Attribute`, `Saturate`, `Decay`, `Dist`, filters as rank terms): bodies
//! → [`ComputeExpr`]/[`TextExpr`], computed values → row fields.
//!
//! Invariants: parsing is total — any JSON gives an expression or an
//! `InvalidInput`/`Unsupported` error naming the key
//! (`compute_attributes.<name>`); at most [`MAX_COMPUTED_ATTRIBUTES`] per
//! query; names never collide with `id`, `vector` or `$dist` (collisions with
//! stored attributes are refused by the query layer, which knows the schema).
//! Rendering never fails.

use serde_json::{json, Map, Value as Json};

use super::rank::{parse_embed, parse_f32_vector, parse_rank_by, prefix_error, RankBy};
use crate::model::{ID_ATTR, VECTOR_ATTR};
use crate::query::{
    ComputeExpr, ComputedValue, FragmentBy, Highlight, HighlightFragment, OffsetUnit, QueryError, Rank,
    DIST_ATTR, MAX_COMPUTED_ATTRIBUTES, MAX_FRAGMENT_LIMIT,
};

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidInput(msg.into())
}

/// `compute_attributes: {name: expr}`, in the body's key order.
pub(crate) fn parse_compute_attributes(v: &Json) -> Result<Vec<(String, ComputeExpr)>, QueryError> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let o =
        v.as_object().ok_or_else(|| invalid("compute_attributes must be an object {name: expression}"))?;
    if o.len() > MAX_COMPUTED_ATTRIBUTES {
        return Err(invalid(format!(
            "compute_attributes has {} entries; the limit is {MAX_COMPUTED_ATTRIBUTES} \
             (MAX_COMPUTED_ATTRIBUTES) per query",
            o.len()
        )));
    }
    let mut out = Vec::with_capacity(o.len());
    for (name, e) in o {
        let named = |err: QueryError| prefix_error(err, &format!("compute_attributes.{name}"));
        check_name(name).map_err(named)?;
        out.push((name.clone(), parse_compute_expr(e).map_err(named)?));
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), QueryError> {
    if name.is_empty() || name.len() > 128 {
        return Err(invalid("a computed attribute's name must have 1 to 128 bytes"));
    }
    if [ID_ATTR, VECTOR_ATTR, DIST_ATTR].contains(&name) {
        return Err(invalid(format!("{name:?} is reserved for the row's own field; choose another name")));
    }
    Ok(())
}

fn parse_compute_expr(v: &Json) -> Result<ComputeExpr, QueryError> {
    if v.as_object().is_some_and(|o| o.contains_key("$ref_new")) {
        return Err(invalid("$ref_new refers to a written document; it is valid only in write conditions"));
    }
    let items = v.as_array().ok_or_else(|| invalid("an expression must be an array"))?;
    let head = items.first().and_then(Json::as_str);
    match (head, items.get(1).and_then(Json::as_str)) {
        (Some(attr), Some("VectorDist")) => {
            if items.len() != 3 {
                return Err(invalid("VectorDist takes [attr, \"VectorDist\", [f32..]]"));
            }
            if let Some(text) = items.get(2).map(parse_embed).transpose()?.flatten() {
                return Ok(ComputeExpr::VectorDist { attr: attr.to_owned(), query: Vec::new(), embed: Some(text) });
            }
            let query = parse_f32_vector(items.get(2), "VectorDist")?;
            Ok(ComputeExpr::VectorDist { attr: attr.to_owned(), query, embed: None })
        }
        (Some("Highlight"), _) => parse_highlight(items).map(ComputeExpr::Highlight),
        (Some("Embed"), _) => match parse_embed(v)? {
            Some(text) => Ok(ComputeExpr::Embed { text, vector: Vec::new() }),
            None => Err(invalid("Embed takes [\"Embed\", text] or [\"Embed\", text, {\"model\": name}]")),
        },
        _ => match parse_rank_by(v)? {
            RankBy::Scored(Rank::Text(e)) => Ok(ComputeExpr::Rank(e)),
            RankBy::Scored(Rank::Vector { query, .. }) => {
                Ok(ComputeExpr::VectorDist { attr: VECTOR_ATTR.to_owned(), query, embed: None })
            }
            _ => Err(invalid(
                "an expression must be VectorDist, Highlight, or a rank expression (BM25, Sum, Max, Product, \
                 Attribute, Saturate, Decay, Dist or a filter)",
            )),
        },
    }
}

/// `["Highlight", attr]` or `["Highlight", attr, {..}]`.
fn parse_highlight(items: &[Json]) -> Result<Highlight, QueryError> {
    let attr = items
        .get(1)
        .and_then(Json::as_str)
        .filter(|_| (2..=3).contains(&items.len()))
        .ok_or_else(|| invalid("Highlight takes [\"Highlight\", attr, {config}]"))?;
    let mut h = Highlight {
        attr: attr.to_owned(),
        fragment_by: FragmentBy::Sentence,
        fragment_limit: 3,
        include_offsets: None,
        rank_fragments_by: None,
    };
    let Some(cfg) = items.get(2).filter(|c| !c.is_null()) else { return Ok(h) };
    let o = cfg.as_object().ok_or_else(|| invalid("Highlight's configuration must be an object"))?;
    for (k, val) in o.iter().filter(|(_, val)| !val.is_null()) {
        match k.as_str() {
            "fragment_by" => h.fragment_by = parse_fragment_by(val)?,
            "fragment_limit" => {
                h.fragment_limit = val
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=MAX_FRAGMENT_LIMIT).contains(n))
                    .ok_or_else(|| {
                        invalid(format!("fragment_limit must be between 1 and {MAX_FRAGMENT_LIMIT}"))
                    })?
            }
            "include_offsets" => h.include_offsets = Some(parse_offset_unit(val)?),
            "rank_fragments_by" => {
                h.rank_fragments_by = Some(match parse_rank_by(val) {
                    Ok(RankBy::Scored(Rank::Text(e))) => e,
                    Ok(_) => return Err(invalid("rank_fragments_by must be a BM25 rank expression")),
                    Err(e) => return Err(prefix_error(e, "rank_fragments_by")),
                })
            }
            other => return Err(invalid(format!("Highlight has an unknown key {other:?}"))),
        }
    }
    Ok(h)
}

fn parse_fragment_by(v: &Json) -> Result<FragmentBy, QueryError> {
    Ok(match v.as_str() {
        Some("none") => FragmentBy::None,
        Some("sentence") => FragmentBy::Sentence,
        Some("paragraph") => FragmentBy::Paragraph,
        Some("word") => FragmentBy::Word,
        _ => return Err(invalid("fragment_by must be \"none\", \"sentence\", \"paragraph\" or \"word\"")),
    })
}

fn parse_offset_unit(v: &Json) -> Result<OffsetUnit, QueryError> {
    Ok(match v.as_str() {
        Some("utf-8") => OffsetUnit::Utf8,
        Some("utf-16") => OffsetUnit::Utf16,
        Some("codepoints") => OffsetUnit::Codepoints,
        _ => return Err(invalid("include_offsets must be \"utf-8\", \"utf-16\" or \"codepoints\"")),
    })
}

/// A row's computed values, added to its JSON object after the stored
/// attributes.
pub(crate) fn insert_computed(row: &mut Map<String, Json>, computed: &[(String, ComputedValue)]) {
    for (name, v) in computed {
        let v = match v {
            ComputedValue::Null => Json::Null,
            ComputedValue::Number(x) => json!(x),
            ComputedValue::Fragments(f) => Json::Array(f.iter().map(fragment_json).collect()),
            ComputedValue::Vector(v) => json!(v.as_ref()),
        };
        row.insert(name.clone(), v);
    }
}

fn fragment_json(f: &HighlightFragment) -> Json {
    let mut m = Map::new();
    m.insert("text".into(), json!(f.text));
    m.insert("highlights".into(), json!(f.highlights));
    if let Some(i) = f.element {
        m.insert("element".into(), json!(i));
    }
    if let Some(o) = &f.offsets {
        m.insert("start".into(), json!(o.start));
        m.insert("end".into(), json!(o.end));
        m.insert("highlight_offsets".into(), o.highlights.iter().map(|(s, e)| json!([s, e])).collect());
    }
    Json::Object(m)
}
