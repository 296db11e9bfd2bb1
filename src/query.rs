//! Query evaluation over one engine snapshot: filters, attribute ordering,
//! scored ranking (dense vectors `ANN`/`kNN`, `BM25` with `Sum`/`Max`/
//! `Product`, `SparseKNN`), paging, `limit.per` diversity, projections,
//! aggregations, multi-query with RRF fusion, `explain` plans and the
//! `_debug/recall` measurement.
//!
//! Invariants:
//! - Parsing is total: any JSON yields a [`QueryRequest`] or an
//!   `InvalidInput`/`Unsupported` error naming the offending key.
//! - A query (and every subquery of a multi-query) reads exactly one
//!   [`NsState`]; nothing here touches storage.
//! - Ordering is total and deterministic: the `rank_by` keys (or the
//!   distance ascending / score descending), then id ascending. Missing
//!   values sort last in both directions ("nulls last").
//! - Access paths are only shortcuts: an id range scan, attribute-index
//!   candidate rows and ANN candidate lists are supersets or approximations
//!   of the matches, and the full filter is still applied to every row that
//!   can be returned, so filtered results equal a full scan's (ANN aside,
//!   which is approximate by contract; `kNN` is exact).
//! - A row is searched where it lives: segment rows through their index
//!   sections when present (else exhaustively), rows a segment retired
//!   (deletion set) or the overlay shadows are never returned, and overlay
//!   (WAL) rows are always searched exhaustively and merged (read-your-writes,
//!   also under `eventual` consistency).
//! - Scores do not depend on where a row lives: BM25 statistics (N, avgdl,
//!   df) are those of the live documents, whatever their segment or the WAL,
//!   and indexed and unindexed rows are scored by the same formula in the
//!   same order of f32 operations; sparse dot products likewise.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use crate::engine::EngineError;
use crate::filter::Filter;
use crate::format::segment::{SECTION_ANN_INDEX, SECTION_SPARSE_INDEX, SECTION_TEXT_INDEX};
use crate::index::text::{
    fieldnorm_to_id, search_fields, term_counts, Analyzer, Bm25Params, Bm25Weight, CorpusStats, FieldQuery,
    NormCache, TextIndex, MAX_PREFIX_EXPANSIONS,
};
use crate::model::{DocId, Document, Value, ID_ATTR, VECTOR_ATTR};
use crate::schema::{AttrType, ScalarType};
use crate::state::{NsState, SegmentReader};

/// Rows returned when neither `top_k` nor `limit` is given.
pub const DEFAULT_LIMIT: usize = 10;
/// Largest page (`top_k`/`limit`).
pub const MAX_LIMIT: usize = 10_000;
/// Most subqueries of one multi-query.
pub const MAX_SUBQUERIES: usize = 16;

/// Sort direction of an attribute ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// One `rank_by` attribute ordering key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    /// Attribute (`id` allowed).
    pub attr: String,
    /// Direction.
    pub dir: Direction,
}

/// Which attributes rows carry besides `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Projection {
    /// Only the id (the default).
    IdOnly,
    /// Every attribute, the vector included.
    All,
    /// The listed attributes.
    Only(Vec<String>),
    /// Every attribute except the listed ones.
    AllExcept(Vec<String>),
}

/// How returned vectors are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorEncoding {
    /// JSON floats.
    Float,
    /// Base64 of little-endian f32.
    Base64,
}

/// One aggregate function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Aggregate {
    /// `["Count"]`: matching documents.
    Count,
    /// `["Count", attr]`: matching documents that have the attribute.
    CountAttr(String),
    /// `["Sum", attr]`: sum of a numeric attribute.
    Sum(String),
}

/// One parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The filter.
    pub filters: Option<Filter>,
    /// Lower id bound implied by the filter (access-path hint only).
    pub id_lower: Option<(DocId, bool)>,
    /// Attribute ordering (None: aggregate-only or scored query).
    pub order: Option<Vec<OrderKey>>,
    /// Scored ranking (vector, sparse, BM25); exclusive with `order`.
    pub rank: Option<Rank>,
    /// `limit.per`: at most `limit` rows per distinct value of `attributes`.
    pub per: Option<PerLimit>,
    /// Page size.
    pub limit: usize,
    /// Rows skipped.
    pub offset: usize,
    /// Attributes to return.
    pub projection: Projection,
    /// Vector encoding of returned vectors.
    pub vector_encoding: VectorEncoding,
    /// Named aggregates.
    pub aggregates: Vec<(String, Aggregate)>,
    /// Group-by attributes.
    pub group_by: Vec<String>,
}

/// A parsed query request (single or multi).
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// Strong (default) or eventual consistency.
    pub strong: bool,
    /// Whether the response is the multi-query shape (`results`).
    pub multi: bool,
    /// The queries (one for a single query).
    pub queries: Vec<Query>,
    /// Multi-query fusion (`rerank_by: ["RRF", ...]`).
    pub rerank: Option<Rerank>,
}

/// The result of one query.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Rows (None for an aggregate-only query).
    pub rows: Option<Vec<Json>>,
    /// Ungrouped aggregates.
    pub aggregations: Option<Json>,
    /// Grouped aggregates.
    pub aggregation_groups: Option<Vec<Json>>,
    /// Documents examined.
    pub scanned: u64,
}

impl QueryResult {
    /// The JSON body of this result (without billing/performance).
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        if let Some(rows) = &self.rows {
            m.insert("rows".into(), Json::Array(rows.clone()));
        }
        if let Some(a) = &self.aggregations {
            m.insert("aggregations".into(), a.clone());
        }
        if let Some(g) = &self.aggregation_groups {
            m.insert("aggregation_groups".into(), Json::Array(g.clone()));
        }
        Json::Object(m)
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidInput(msg.into())
}

fn unsupported(msg: impl Into<String>) -> EngineError {
    EngineError::Unsupported(msg.into())
}

// ----- parsing ---------------------------------------------------------------

/// Parse a query body. `multi_hint` is set by `?stainless_overload=multiQuery`;
/// a body with `queries` is a multi-query either way.
pub fn parse_request(body: &Json, multi_hint: bool) -> Result<QueryRequest, EngineError> {
    let obj = body.as_object().ok_or_else(|| invalid("query body must be a JSON object"))?;
    if multi_hint || obj.contains_key("queries") {
        return parse_multi(obj);
    }
    let strong = parse_consistency(obj.get("consistency"))?;
    let query = parse_query(obj, VectorEncoding::Float)?;
    Ok(QueryRequest { strong, multi: false, queries: vec![query], rerank: None })
}

fn parse_multi(obj: &Map<String, Json>) -> Result<QueryRequest, EngineError> {
    let mut enc = VectorEncoding::Float;
    let mut queries_json = None;
    let (mut rerank_json, mut limit, mut offset) = (None, None, None);
    for (k, v) in obj {
        match k.as_str() {
            "queries" => queries_json = Some(v),
            "consistency" => {}
            "vector_encoding" => enc = parse_encoding(v)?,
            "rerank_by" if v.is_null() => {}
            "rerank_by" => rerank_json = Some(v),
            "limit" | "top_k" => limit = Some(parse_limit(v, k)?.0),
            "offset" => {
                let n = v.as_u64().ok_or_else(|| invalid("offset must be a non-negative integer"))?;
                offset = Some(usize::try_from(n).map_err(|_| invalid("offset is too large"))?);
            }
            other => return Err(invalid(format!("unknown multi-query parameter {other:?}"))),
        }
    }
    let rerank = match rerank_json {
        Some(v) => Some(parse_rerank(v, limit, offset)?),
        None if limit.is_some() || offset.is_some() => {
            return Err(invalid("a multi-query's top-level limit and offset only apply to rerank_by"))
        }
        None => None,
    };
    let items = queries_json
        .and_then(Json::as_array)
        .ok_or_else(|| invalid("a multi-query needs \"queries\": an array of query objects"))?;
    if items.is_empty() || items.len() > MAX_SUBQUERIES {
        return Err(invalid(format!(
            "a multi-query takes 1 to {MAX_SUBQUERIES} queries, got {}",
            items.len()
        )));
    }
    let mut queries = Vec::with_capacity(items.len());
    for (i, q) in items.iter().enumerate() {
        let o = q.as_object().ok_or_else(|| invalid(format!("queries[{i}] must be an object")))?;
        queries.push(parse_query(o, enc).map_err(|e| prefix_error(e, &format!("queries[{i}]")))?);
    }
    if let Some(r) = &rerank {
        if !r.weights.is_empty() && r.weights.len() != queries.len() {
            return Err(invalid("rerank_by RRF weights must have one weight per subquery"));
        }
        if queries.iter().any(|q| q.order.is_none() && q.rank.is_none()) {
            return Err(invalid("with rerank_by every subquery needs rank_by"));
        }
    }
    Ok(QueryRequest { strong: parse_consistency(obj.get("consistency"))?, multi: true, queries, rerank })
}

fn prefix_error(e: EngineError, what: &str) -> EngineError {
    match e {
        EngineError::InvalidInput(m) => EngineError::InvalidInput(format!("{what}: {m}")),
        EngineError::Unsupported(m) => EngineError::Unsupported(format!("{what}: {m}")),
        other => other,
    }
}

fn parse_consistency(v: Option<&Json>) -> Result<bool, EngineError> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(true) };
    let level = v.get("level").and_then(Json::as_str);
    let extra = v.as_object().is_some_and(|o| o.keys().any(|k| k != "level" && k != "max_staleness_seconds"));
    match level {
        _ if extra => Err(invalid("consistency takes only level and max_staleness_seconds")),
        Some("strong") | None if v.is_object() => Ok(true),
        Some("eventual") => Ok(false),
        _ => Err(invalid("consistency must be {\"level\": \"strong\"} or {\"level\": \"eventual\"}")),
    }
}

fn parse_encoding(v: &Json) -> Result<VectorEncoding, EngineError> {
    match v.as_str() {
        Some("float") => Ok(VectorEncoding::Float),
        Some("base64") => Ok(VectorEncoding::Base64),
        _ if v.is_null() => Ok(VectorEncoding::Float),
        _ => Err(invalid("vector_encoding must be \"float\" or \"base64\"")),
    }
}

#[derive(Default)]
struct RawQuery<'a> {
    rank_by: Option<&'a Json>,
    top_k: Option<(usize, Option<PerLimit>)>,
    limit: Option<(usize, Option<PerLimit>)>,
    offset: Option<usize>,
    include: Option<&'a Json>,
    exclude: Option<&'a Json>,
}

/// Parse one query object (a single query or one subquery).
fn parse_query(obj: &Map<String, Json>, default_enc: VectorEncoding) -> Result<Query, EngineError> {
    let mut raw = RawQuery::default();
    let mut q = Query {
        filters: None,
        id_lower: None,
        order: None,
        rank: None,
        per: None,
        limit: DEFAULT_LIMIT,
        offset: 0,
        projection: Projection::IdOnly,
        vector_encoding: default_enc,
        aggregates: Vec::new(),
        group_by: Vec::new(),
    };
    for (k, v) in obj {
        parse_key(&mut q, &mut raw, k, v)?;
    }
    match raw.rank_by.filter(|v| !v.is_null()).map(parse_rank_by).transpose()? {
        Some(RankBy::Order(o)) => q.order = Some(o),
        Some(RankBy::Scored(r)) => q.rank = Some(r),
        None => {}
    }
    let (limit, per) = match (raw.top_k, raw.limit) {
        (Some(a), Some(b)) if a.0 != b.0 => {
            return Err(invalid("top_k and limit disagree; give one of them"))
        }
        (a, b) => a.or(b).unwrap_or((DEFAULT_LIMIT, None)),
    };
    (q.limit, q.per) = (limit, per);
    let ranked = q.order.is_some() || q.rank.is_some();
    if !ranked && q.aggregates.is_empty() {
        return Err(invalid("rank_by is required unless the query only aggregates (aggregate_by)"));
    }
    if q.per.is_some() && !ranked {
        return Err(invalid("limit.per requires rank_by"));
    }
    if raw.offset.is_some() && !ranked {
        return Err(invalid("offset requires rank_by"));
    }
    q.offset = raw.offset.unwrap_or(0);
    if !q.group_by.is_empty() && q.aggregates.is_empty() {
        return Err(invalid("group_by requires aggregate_by"));
    }
    q.projection = parse_projection(raw.include, raw.exclude)?;
    Ok(q)
}

fn parse_key<'a>(q: &mut Query, raw: &mut RawQuery<'a>, k: &str, v: &'a Json) -> Result<(), EngineError> {
    match k {
        "filters" if v.is_null() => {}
        "filters" => {
            q.filters = Some(Filter::parse(v).map_err(|e| invalid(format!("filters: {e}")))?);
            q.id_lower = id_lower_bound(v);
        }
        "rank_by" => raw.rank_by = Some(v),
        "top_k" => raw.top_k = Some(parse_limit(v, "top_k")?),
        "limit" => raw.limit = Some(parse_limit(v, "limit")?),
        "offset" => {
            let n = v.as_u64().ok_or_else(|| invalid("offset must be a non-negative integer"))?;
            raw.offset = Some(usize::try_from(n).map_err(|_| invalid("offset is too large"))?);
        }
        "include_attributes" => raw.include = Some(v),
        "exclude_attributes" => raw.exclude = Some(v),
        "vector_encoding" => q.vector_encoding = parse_encoding(v)?,
        "consistency" => {
            parse_consistency(Some(v))?;
        }
        "distance_metric" => {
            if let Some(s) = v.as_str() {
                crate::model::DistanceMetric::parse(s).map_err(|e| invalid(e.to_string()))?;
            } else if !v.is_null() {
                return Err(invalid("distance_metric must be a string"));
            }
        }
        "aggregate_by" => q.aggregates = parse_aggregates(v)?,
        "group_by" => q.group_by = parse_group_by(v)?,
        "compute_attributes" => {
            return Err(unsupported(
                "compute_attributes is not implemented yet (it arrives with the query engine)",
            ))
        }
        "rerank_by" => {
            return Err(unsupported(
                "rerank_by is not implemented yet (ranking arrives with the query engine)",
            ))
        }
        other => return Err(invalid(format!("unknown query parameter {other:?}"))),
    }
    Ok(())
}

fn parse_limit(v: &Json, key: &str) -> Result<(usize, Option<PerLimit>), EngineError> {
    let mut per = None;
    let n = match v {
        Json::Object(o) => {
            if let Some(p) = o.get("per").filter(|p| !p.is_null()) {
                per = Some(parse_per(p, key)?);
            }
            if let Some(bad) = o.keys().find(|k| *k != "total" && *k != "per") {
                return Err(invalid(format!("{key} has an unknown key {bad:?}")));
            }
            o.get("total")
                .and_then(Json::as_u64)
                .ok_or_else(|| invalid(format!("{key}.total must be an integer")))?
        }
        _ => v.as_u64().ok_or_else(|| invalid(format!("{key} must be a positive integer")))?,
    };
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok((n, per)),
        _ => Err(invalid(format!("{key} must be between 1 and {MAX_LIMIT}, got {n}"))),
    }
}

const RANK_COMBINATORS: &[&str] = &["Saturate", "Decay", "Dist", "Attribute"];
/// Deepest nesting of a BM25 rank expression.
const MAX_RANK_DEPTH: usize = 16;

/// A parsed `rank_by`.
enum RankBy {
    Order(Vec<OrderKey>),
    Scored(Rank),
}

/// A scored ranking (everything but attribute order).
#[derive(Debug, Clone, PartialEq)]
pub enum Rank {
    /// `["vector", "ANN"|"kNN", [f32..]]`: smallest distance first.
    Vector {
        /// Exact (`kNN`) rather than approximate (`ANN`).
        exact: bool,
        /// The query vector.
        query: Vec<f32>,
    },
    /// `[attr, "SparseKNN", {key: weight}]`: largest dot product first.
    Sparse {
        /// The sparse attribute.
        attr: String,
        /// Query weights, sorted by key, keys unique.
        query: Vec<(String, f32)>,
    },
    /// A BM25 expression: largest score first.
    Text(TextExpr),
}

/// A BM25 rank expression.
#[derive(Debug, Clone, PartialEq)]
pub enum TextExpr {
    /// `[attr, "BM25", query, {last_as_prefix}]`.
    Bm25 {
        /// The full-text attribute.
        attr: String,
        /// The query text or pre-split tokens.
        query: TextInput,
        /// Treat the last query token as a prefix.
        last_as_prefix: bool,
    },
    /// `["Sum", [..]]`.
    Sum(Vec<TextExpr>),
    /// `["Max", [..]]`.
    Max(Vec<TextExpr>),
    /// `["Product", w, expr]` (or `[expr, w]`).
    Product(f32, Box<TextExpr>),
}

/// A BM25 query operand.
#[derive(Debug, Clone, PartialEq)]
pub enum TextInput {
    /// Analyzed with the attribute's analyzer.
    Text(String),
    /// A list of strings, each analyzed.
    Tokens(Vec<String>),
}

/// `limit.per`: diversity limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerLimit {
    /// The limit key attributes.
    pub attributes: Vec<String>,
    /// Most rows per key value.
    pub limit: usize,
}

/// Reciprocal-rank fusion of a multi-query's subqueries.
#[derive(Debug, Clone, PartialEq)]
pub struct Rerank {
    /// RRF `k` (default 60).
    pub rank_constant: f64,
    /// Per-subquery weights (empty: all 1).
    pub weights: Vec<f64>,
    /// Rows returned.
    pub limit: usize,
    /// Rows skipped.
    pub offset: usize,
}

fn parse_per(v: &Json, key: &str) -> Result<PerLimit, EngineError> {
    let o = v.as_object().ok_or_else(|| invalid(format!("{key}.per must be {{attributes, limit}}")))?;
    if let Some(bad) = o.keys().find(|k| *k != "attributes" && *k != "limit") {
        return Err(invalid(format!("{key}.per has an unknown key {bad:?}")));
    }
    let attributes = string_list(o.get("attributes").unwrap_or(&Json::Null), "limit.per.attributes")?;
    if attributes.is_empty() {
        return Err(invalid(format!("{key}.per.attributes must not be empty")));
    }
    let limit = o
        .get("limit")
        .and_then(Json::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| invalid(format!("{key}.per.limit must be between 1 and {MAX_LIMIT}")))?;
    Ok(PerLimit { attributes, limit })
}

fn parse_rerank(v: &Json, limit: Option<usize>, offset: Option<usize>) -> Result<Rerank, EngineError> {
    let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.first().and_then(Json::as_str) != Some("RRF") || items.len() > 2 {
        return Err(unsupported("rerank_by supports [\"RRF\", {rank_constant, weights}] only"));
    }
    let mut r = Rerank {
        rank_constant: 60.0,
        weights: Vec::new(),
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        offset: offset.unwrap_or(0),
    };
    if let Some(p) = items.get(1).filter(|p| !p.is_null()) {
        let o = p.as_object().ok_or_else(|| invalid("RRF parameters must be an object"))?;
        for (k, val) in o {
            match k.as_str() {
                "rank_constant" => {
                    r.rank_constant = val
                        .as_f64()
                        .filter(|x| *x > 0.0 && x.is_finite())
                        .ok_or_else(|| invalid("RRF rank_constant must be a positive number"))?
                }
                "weights" => {
                    let ws =
                        val.as_array().ok_or_else(|| invalid("RRF weights must be a list of numbers"))?;
                    r.weights = ws
                        .iter()
                        .map(|w| {
                            w.as_f64()
                                .filter(|x| *x > 0.0 && x.is_finite())
                                .ok_or_else(|| invalid("RRF weights must be positive numbers"))
                        })
                        .collect::<Result<_, _>>()?;
                }
                other => return Err(invalid(format!("unknown RRF parameter {other:?}"))),
            }
        }
    }
    Ok(r)
}

fn parse_f32_vector(v: Option<&Json>, what: &str) -> Result<Vec<f32>, EngineError> {
    let items =
        v.and_then(Json::as_array).ok_or_else(|| invalid(format!("{what} needs a vector of numbers")))?;
    if items.iter().any(Json::is_array) {
        return Err(unsupported("multi-vector queries are not implemented"));
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

/// Parse `rank_by` as an attribute ordering or a scored ranking.
fn parse_rank_by(v: &Json) -> Result<RankBy, EngineError> {
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
                if attr != VECTOR_ATTR {
                    return Err(unsupported(format!(
                        "rank_by {op} on {attr:?}: only the \"vector\" attribute has vector search"
                    )));
                }
                if items.len() != 3 {
                    return Err(invalid(format!("rank_by [\"vector\", \"{op}\", [..]] takes 3 items")));
                }
                let query = parse_f32_vector(items.get(2), "rank_by")?;
                return Ok(RankBy::Scored(Rank::Vector { exact: op == "kNN", query }));
            }
            (Some(attr), Some("SparseKNN")) => {
                let o =
                    items.get(2).and_then(Json::as_object).filter(|_| items.len() == 3).ok_or_else(|| {
                        invalid("rank_by SparseKNN takes [attr, \"SparseKNN\", {key: weight}]")
                    })?;
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
            (Some(h), _) if RANK_COMBINATORS.contains(&h) => {
                return Err(unsupported(format!("rank_by [{h:?}, …] is not implemented yet")));
            }
            (_, Some("BM25")) | (Some("Sum" | "Max" | "Product"), _) => {
                return Ok(RankBy::Scored(Rank::Text(parse_text_expr(v, 1)?)));
            }
            _ => {}
        }
    }
    Err(invalid(
        "rank_by must be [\"attr\", \"asc\"|\"desc\"], a list of such pairs, or a ranking expression",
    ))
}

fn parse_text_expr(v: &Json, depth: usize) -> Result<TextExpr, EngineError> {
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
            let subs = subs.iter().map(|s| parse_text_expr(s, depth + 1)).collect::<Result<Vec<_>, _>>()?;
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
            Ok(TextExpr::Product(w as f32, Box::new(parse_text_expr(e, depth + 1)?)))
        }
        (Some(h), _) if RANK_COMBINATORS.contains(&h) => {
            Err(unsupported(format!("rank_by [{h:?}, …] is not implemented yet")))
        }
        _ => Err(unsupported(
            "this rank expression is not implemented (BM25, Sum, Max and Product are supported)",
        )),
    }
}

fn order_pair(v: &Json) -> Option<OrderKey> {
    let items = v.as_array()?;
    let [attr, dir] = items.as_slice() else { return None };
    let dir = match dir.as_str()? {
        "asc" => Direction::Asc,
        "desc" => Direction::Desc,
        _ => return None,
    };
    Some(OrderKey { attr: attr.as_str()?.to_owned(), dir })
}

fn string_list(v: &Json, key: &str) -> Result<Vec<String>, EngineError> {
    let items =
        v.as_array().ok_or_else(|| invalid(format!("{key} must be true, false or a list of names")))?;
    items
        .iter()
        .map(|i| {
            i.as_str().map(str::to_owned).ok_or_else(|| invalid(format!("{key} must list attribute names")))
        })
        .collect()
}

fn parse_projection(include: Option<&Json>, exclude: Option<&Json>) -> Result<Projection, EngineError> {
    let exclude = match exclude.filter(|v| !v.is_null()) {
        Some(v) => Some(string_list(v, "exclude_attributes")?),
        None => None,
    };
    let include = include.filter(|v| !v.is_null());
    Ok(match (include, exclude) {
        (None | Some(Json::Bool(false)), None) => Projection::IdOnly,
        (Some(Json::Bool(true)), None) => Projection::All,
        (None | Some(Json::Bool(true)), Some(ex)) => Projection::AllExcept(ex),
        (Some(Json::Bool(false)), Some(_)) => {
            return Err(invalid("exclude_attributes cannot be combined with include_attributes: false"))
        }
        (Some(v), None) => Projection::Only(string_list(v, "include_attributes")?),
        (Some(_), Some(_)) => {
            return Err(invalid("give include_attributes as a list or exclude_attributes, not both"))
        }
    })
}

fn parse_aggregates(v: &Json) -> Result<Vec<(String, Aggregate)>, EngineError> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let o =
        v.as_object().ok_or_else(|| invalid("aggregate_by must be an object {name: [\"Count\"], ...}"))?;
    let mut out = Vec::with_capacity(o.len());
    for (name, spec) in o {
        let items = spec.as_array().map(Vec::as_slice).unwrap_or_default();
        let agg =
            match (items.first().and_then(Json::as_str), items.get(1).and_then(Json::as_str), items.len()) {
                (Some("Count"), None, 1) => Aggregate::Count,
                (Some("Count"), Some(a), 2) => Aggregate::CountAttr(a.to_owned()),
                (Some("Sum"), Some(a), 2) => Aggregate::Sum(a.to_owned()),
                (Some(f @ ("Avg" | "Min" | "Max" | "CountDistinct")), _, _) => {
                    return Err(unsupported(format!("aggregate {f} is not implemented yet")))
                }
                _ => {
                    return Err(invalid(format!(
                        "aggregate_by.{name} must be [\"Count\"], [\"Count\", attr] or [\"Sum\", attr]"
                    )))
                }
            };
        out.push((name.clone(), agg));
    }
    Ok(out)
}

fn parse_group_by(v: &Json) -> Result<Vec<String>, EngineError> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let items = v.as_array().ok_or_else(|| invalid("group_by must be a list of attribute names"))?;
    items
        .iter()
        .map(|i| match i {
            Json::String(s) => Ok(s.clone()),
            Json::Object(_) => {
                Err(unsupported("group_by expressions (ForEachUnique) are not implemented yet"))
            }
            _ => Err(invalid("group_by must be a list of attribute names")),
        })
        .collect()
}

/// The lower id bound a filter implies: `["id","Gt"|"Gte"|"Eq",v]`, alone or
/// as a conjunct of a top-level `And`. `bool` = inclusive.
fn id_lower_bound(f: &Json) -> Option<(DocId, bool)> {
    let items = f.as_array()?;
    if items.first().and_then(Json::as_str) == Some("And") {
        return items.get(1)?.as_array()?.iter().filter_map(id_lower_bound).max_by(|a, b| a.0.cmp(&b.0));
    }
    let [attr, op, val] = items.as_slice() else { return None };
    if attr.as_str() != Some(ID_ATTR) {
        return None;
    }
    let inclusive = match op.as_str()? {
        "Gt" => false,
        "Gte" | "Eq" => true,
        _ => return None,
    };
    DocId::from_json(val).ok().map(|id| (id, inclusive))
}

// ----- execution -------------------------------------------------------------

/// Run one query on a state.
pub fn execute(q: &Query, state: &NsState) -> Result<QueryResult, EngineError> {
    validate(q, state)?;
    let mut result = QueryResult::default();
    if let Some(rank) = &q.rank {
        let (docs, exhaustive) = ranked_docs(q, rank, state)?;
        result.rows = Some(
            docs.iter()
                .map(|(d, score)| {
                    let mut row = render(d, &q.projection, q.vector_encoding);
                    if let Json::Object(m) = &mut row {
                        m.insert(DIST_ATTR.into(), json!(f64::from(*score)));
                    }
                    row
                })
                .collect(),
        );
        result.scanned = exhaustive;
    } else if let Some(order) = &q.order {
        let (docs, scanned) = top_docs(q, order, state);
        result.rows = Some(docs.iter().map(|d| render(d, &q.projection, q.vector_encoding)).collect());
        result.scanned = scanned;
    }
    if !q.aggregates.is_empty() {
        let mut scanned = 0;
        let matching = candidates(q, state).filter(|d| {
            scanned += 1;
            matches(q, d)
        });
        if q.group_by.is_empty() {
            result.aggregations = Some(aggregate_all(&q.aggregates, matching));
        } else {
            result.aggregation_groups = Some(aggregate_groups(q, matching));
        }
        result.scanned = result.scanned.max(scanned);
    }
    Ok(result)
}

fn validate(q: &Query, state: &NsState) -> Result<(), EngineError> {
    if let Some(f) = &q.filters {
        f.validate(&state.schema).map_err(|e| invalid(format!("filters: {e}")))?;
    }
    for key in q.order.iter().flatten() {
        if key.attr == VECTOR_ATTR || is_vector_like(state, &key.attr) {
            return Err(invalid(format!(
                "cannot order by the vector attribute {:?}; use rank_by ANN",
                key.attr
            )));
        }
    }
    for (name, agg) in &q.aggregates {
        if let Aggregate::Sum(attr) = agg {
            let numeric = match state.schema.get(attr).map(|s| s.ty) {
                None => true,
                Some(AttrType::Scalar(s)) => {
                    matches!(s, ScalarType::Int | ScalarType::Uint | ScalarType::Float)
                }
                Some(_) => false,
            };
            if !numeric {
                return Err(invalid(format!(
                    "aggregate_by.{name}: Sum needs a numeric attribute, {attr:?} is not"
                )));
            }
        }
    }
    Ok(())
}

fn is_vector_like(state: &NsState, attr: &str) -> bool {
    state.schema.get(attr).is_some_and(|s| matches!(s.ty, AttrType::Vector { .. } | AttrType::Sparse { .. }))
}

fn matches(q: &Query, d: &Document) -> bool {
    q.filters.as_ref().is_none_or(|f| f.matches(d, None))
}

/// Documents in id order, starting at the filter's lower id bound when the
/// bound has the namespace's id kind.
fn candidates<'a>(q: &'a Query, state: &'a NsState) -> Box<dyn Iterator<Item = Arc<Document>> + 'a> {
    let lower = match &q.id_lower {
        Some((id, true)) if Some(id.id_type()) == state.id_type => Bound::Included(id),
        Some((id, false)) if Some(id.id_type()) == state.id_type => Bound::Excluded(id),
        _ => Bound::Unbounded,
    };
    if let Some(docs) = indexed_candidates(q, state, lower) {
        return Box::new(docs.into_iter());
    }
    Box::new(state.iter_from(lower))
}

/// When the attribute indexes narrow the filter in every segment: the
/// narrowed live segment rows plus the overlay's documents (from the lower
/// id bound), in id order. Still a superset: callers apply the filter.
fn indexed_candidates(q: &Query, state: &NsState, lower: Bound<&DocId>) -> Option<Vec<Arc<Document>>> {
    let f = q.filters.as_ref()?;
    if state.segments().is_empty() {
        return None;
    }
    let views = seg_views(state, Some(f));
    let above = |id: &DocId| match lower {
        Bound::Included(l) => id >= l,
        Bound::Excluded(l) => id > l,
        Bound::Unbounded => true,
    };
    let mut docs = Vec::new();
    for v in &views {
        let cand = v.cand.as_ref()?;
        for (row, _) in cand.iter().enumerate().filter(|(r, b)| **b && v.live(*r)) {
            if let Ok(d) = v.ls.seg.doc(row) {
                if above(&d.id) {
                    docs.push(Arc::new(d));
                }
            }
        }
    }
    docs.extend(state.overlay().range((lower.cloned(), Bound::Unbounded)).filter_map(|(_, d)| d.clone()));
    docs.sort_by(|a, b| a.id.cmp(&b.id));
    Some(docs)
}

/// The page of documents and how many documents were examined.
fn top_docs(q: &Query, order: &[OrderKey], state: &NsState) -> (Vec<Arc<Document>>, u64) {
    let mut scanned = 0u64;
    let want = q.offset.saturating_add(q.limit);
    let by_id = |dir| matches!(order, [k] if k.attr == ID_ATTR && k.dir == dir);
    let mut per = PerCounter::new(q.per.as_ref());
    if by_id(Direction::Asc) {
        let page: Vec<_> = candidates(q, state)
            .inspect(|_| scanned += 1)
            .filter(|d| matches(q, d) && per.admit(d))
            .skip(q.offset)
            .take(q.limit)
            .collect();
        return (page, scanned);
    }
    if by_id(Direction::Desc) {
        // The merged segment/WAL view only walks forward; descending id order
        // materializes the candidates (attribute indexes replace this scan).
        let mut all: Vec<_> = candidates(q, state).collect();
        all.reverse();
        let page: Vec<_> = all
            .into_iter()
            .inspect(|_| scanned += 1)
            .filter(|d| matches(q, d) && per.admit(d))
            .skip(q.offset)
            .take(q.limit)
            .collect();
        return (page, scanned);
    }
    let mut all: Vec<Arc<Document>> =
        candidates(q, state).inspect(|_| scanned += 1).filter(|d| matches(q, d)).collect();
    let cmp = |a: &Arc<Document>, b: &Arc<Document>| compare_docs(order, a, b);
    if want == 0 {
        return (Vec::new(), scanned);
    }
    if want < all.len() && q.per.is_none() {
        all.select_nth_unstable_by(want - 1, cmp);
        all.truncate(want);
    }
    all.sort_unstable_by(cmp);
    (all.into_iter().filter(|d| per.admit(d)).skip(q.offset).take(q.limit).collect(), scanned)
}

/// Order by the keys (nulls last in both directions), then id ascending.
fn compare_docs(order: &[OrderKey], a: &Document, b: &Document) -> Ordering {
    for key in order {
        let o = match (a.attr(&key.attr), b.attr(&key.attr)) {
            (Some(x), Some(y)) => {
                let o = x.compare(&y).unwrap_or(Ordering::Equal);
                if key.dir == Direction::Desc {
                    o.reverse()
                } else {
                    o
                }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.id.cmp(&b.id)
}

/// A vector in the requested encoding.
pub fn encode_vector(v: &[f32], enc: VectorEncoding) -> Json {
    match enc {
        VectorEncoding::Float => Json::Array(v.iter().map(|x| json!(f64::from(*x))).collect()),
        VectorEncoding::Base64 => {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            Json::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    }
}

fn render(d: &Document, p: &Projection, enc: VectorEncoding) -> Json {
    let mut m = Map::new();
    m.insert(ID_ATTR.into(), d.id.to_json());
    let wanted = |name: &str| match p {
        Projection::IdOnly => false,
        Projection::All => true,
        Projection::Only(list) => list.iter().any(|n| n == name),
        Projection::AllExcept(list) => !list.iter().any(|n| n == name),
    };
    if let Some(v) = d.vector.as_ref().filter(|_| wanted(VECTOR_ATTR)) {
        m.insert(VECTOR_ATTR.into(), encode_vector(v, enc));
    }
    for (k, v) in &d.attrs {
        if wanted(k) {
            m.insert(k.clone(), v.to_json());
        }
    }
    Json::Object(m)
}

// ----- aggregation -----------------------------------------------------------

#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    count: u64,
    int_sum: i128,
    float_sum: f64,
    any_float: bool,
}

impl Acc {
    fn add(&mut self, agg: &Aggregate, d: &Document) {
        match agg {
            Aggregate::Count => self.count += 1,
            Aggregate::CountAttr(a) => self.count += u64::from(d.attr(a).is_some()),
            Aggregate::Sum(a) => match d.attr(a).as_deref() {
                Some(Value::Int(i)) => self.int_sum = self.int_sum.saturating_add(*i),
                Some(Value::Float(f)) => {
                    self.float_sum += f;
                    self.any_float = true;
                }
                _ => {}
            },
        }
    }

    fn to_json(self, agg: &Aggregate) -> Json {
        match agg {
            Aggregate::Count | Aggregate::CountAttr(_) => json!(self.count),
            Aggregate::Sum(_) => {
                #[allow(clippy::cast_precision_loss)]
                let as_float = self.int_sum as f64 + self.float_sum;
                match (self.any_float, i64::try_from(self.int_sum)) {
                    (false, Ok(i)) => json!(i),
                    _ => json!(as_float),
                }
            }
        }
    }
}

fn aggregate_all(aggs: &[(String, Aggregate)], docs: impl Iterator<Item = Arc<Document>>) -> Json {
    let mut accs = vec![Acc::default(); aggs.len()];
    for d in docs {
        for (acc, (_, agg)) in accs.iter_mut().zip(aggs) {
            acc.add(agg, &d);
        }
    }
    Json::Object(aggs.iter().zip(accs).map(|((name, agg), acc)| (name.clone(), acc.to_json(agg))).collect())
}

struct Group {
    key: Vec<Option<Value>>,
    accs: Vec<Acc>,
}

/// Groups sorted by their key values (missing values last), at most `limit`.
fn aggregate_groups(q: &Query, docs: impl Iterator<Item = Arc<Document>>) -> Vec<Json> {
    let mut groups: HashMap<String, Group> = HashMap::new();
    for d in docs {
        let key: Vec<Option<Value>> =
            q.group_by.iter().map(|a| d.attr(a).map(std::borrow::Cow::into_owned)).collect();
        let id = Json::Array(key.iter().map(|v| v.as_ref().map_or(Json::Null, Value::to_json)).collect())
            .to_string();
        let g =
            groups.entry(id).or_insert_with(|| Group { key, accs: vec![Acc::default(); q.aggregates.len()] });
        for (acc, (_, agg)) in g.accs.iter_mut().zip(&q.aggregates) {
            acc.add(agg, &d);
        }
    }
    let mut groups: Vec<Group> = groups.into_values().collect();
    groups.sort_by(|a, b| compare_keys(&a.key, &b.key));
    groups.truncate(q.limit);
    groups
        .into_iter()
        .map(|g| {
            let mut m = Map::new();
            for (name, v) in q.group_by.iter().zip(&g.key) {
                m.insert(name.clone(), v.as_ref().map_or(Json::Null, Value::to_json));
            }
            for ((name, agg), acc) in q.aggregates.iter().zip(g.accs) {
                m.insert(name.clone(), acc.to_json(agg));
            }
            Json::Object(m)
        })
        .collect()
}

fn compare_keys(a: &[Option<Value>], b: &[Option<Value>]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Some(x), Some(y)) => x.compare(y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

// ----- scored ranking --------------------------------------------------------

/// The row attribute carrying a vector distance or a score.
pub const DIST_ATTR: &str = "$dist";
/// Most candidates one ranked query gathers while filling `limit.per`.
const MAX_FETCH: usize = 100_000;

/// Admits at most `limit` documents per distinct limit-key value.
struct PerCounter<'a> {
    per: Option<&'a PerLimit>,
    seen: HashMap<String, usize>,
}

impl<'a> PerCounter<'a> {
    fn new(per: Option<&'a PerLimit>) -> Self {
        PerCounter { per, seen: HashMap::new() }
    }

    fn admit(&mut self, d: &Document) -> bool {
        let Some(per) = self.per else { return true };
        let key = Json::Array(
            per.attributes.iter().map(|a| d.attr(a).map_or(Json::Null, |v| v.to_json())).collect(),
        )
        .to_string();
        let n = self.seen.entry(key).or_insert(0);
        *n += 1;
        *n <= per.limit
    }
}

/// One segment as a ranked query sees it: which rows are live.
struct SegView<'a> {
    ls: &'a SegmentReader,
    /// Live rows whose id the overlay shadows.
    shadowed: HashSet<usize>,
    /// Rows the attribute indexes allow for the filter (a superset of the
    /// matches); None when the indexes cannot narrow it.
    cand: Option<Vec<bool>>,
}

impl SegView<'_> {
    fn live(&self, row: usize) -> bool {
        !self.ls.deleted.contains(row) && !self.shadowed.contains(&row)
    }

    /// The row's id and attributes (no vector), for filters and scoring.
    fn attrs_doc(&self, row: usize) -> Option<Document> {
        let id = self.ls.seg.try_id(row)?;
        let attrs = self.ls.seg.attrs(row).ok()?;
        Some(Document { id, vector: None, attrs })
    }

    /// Live and matching the query's filter.
    fn passes(&self, row: usize, q: &Query) -> bool {
        if self.cand.as_ref().is_some_and(|c| !c.get(row).copied().unwrap_or(false)) || !self.live(row) {
            return false;
        }
        match &q.filters {
            None => true,
            Some(f) => self.attrs_doc(row).is_some_and(|d| f.matches(&d, None)),
        }
    }

    fn dead_rows(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.ls.seg.len()).filter(|r| !self.live(*r))
    }
}

fn seg_views<'a>(state: &'a NsState, filter: Option<&Filter>) -> Vec<SegView<'a>> {
    state
        .segments()
        .iter()
        .map(|ls| {
            let shadowed = state.overlay().keys().filter_map(|id| ls.find_live(id)).collect();
            let cand = filter.and_then(|f| index_rows(ls, f, 0)).map(|rows| {
                let mut bits = vec![false; ls.seg.len()];
                for r in rows {
                    if let Some(b) = bits.get_mut(r as usize) {
                        *b = true;
                    }
                }
                bits
            });
            SegView { ls, shadowed, cand }
        })
        .collect()
}

/// Sorted, unique rows of a segment that may match `f` (a superset of its
/// matches), from attribute indexes; None when they cannot narrow it.
fn index_rows(ls: &SegmentReader, f: &Filter, depth: usize) -> Option<Vec<u32>> {
    use crate::filter::{Op, Operand};
    use crate::index::attr::{key_of, kind_of};
    if depth > crate::filter::MAX_DEPTH {
        return None;
    }
    let mut rows = match f {
        Filter::And(subs) => {
            let sets: Vec<Vec<u32>> = subs.iter().filter_map(|s| index_rows(ls, s, depth + 1)).collect();
            let mut it = sets.into_iter();
            let first = it.next()?;
            it.fold(first, |acc, s| {
                let set: HashSet<u32> = s.into_iter().collect();
                acc.into_iter().filter(|r| set.contains(r)).collect()
            })
        }
        Filter::Or(subs) if !subs.is_empty() => {
            let mut all = Vec::new();
            for s in subs {
                all.extend(index_rows(ls, s, depth + 1)?);
            }
            all
        }
        Filter::Or(_) | Filter::Not(_) => return None,
        Filter::Cond(c) => {
            let ix = ls.attr_index(c.attr())?;
            let same = |v: &Value| kind_of(v) == Some(ix.kind());
            match (c.op(), c.operand()) {
                (Op::Eq, Some(Operand::Value(v))) if same(v) => {
                    let k = key_of(v)?;
                    ix.range(Some((&k, true)), Some((&k, true)))
                }
                (Op::In, Some(Operand::Value(Value::Array(items)))) if items.iter().all(same) => {
                    let mut out = Vec::new();
                    for v in items {
                        let k = key_of(v)?;
                        out.extend(ix.range(Some((&k, true)), Some((&k, true))));
                    }
                    out
                }
                (op @ (Op::Lt | Op::Lte | Op::Gt | Op::Gte), Some(Operand::Value(v))) if same(v) => {
                    let k = key_of(v)?;
                    match op {
                        Op::Lt => ix.range(None, Some((&k, false))),
                        Op::Lte => ix.range(None, Some((&k, true))),
                        Op::Gt => ix.range(Some((&k, false)), None),
                        _ => ix.range(Some((&k, true)), None),
                    }
                }
                (Op::Glob, _) if ix.kind() == 3 => {
                    let pattern = Filter::Cond(c.clone()).to_json();
                    let pattern = pattern.get(2).and_then(Json::as_str)?;
                    let end = pattern.find(['*', '?', '[', '\\', '{']).unwrap_or(pattern.len());
                    if end == 0 {
                        return None;
                    }
                    ix.prefix(&pattern.as_bytes()[..end])
                }
                _ => return None,
            }
        }
    };
    rows.sort_unstable();
    rows.dedup();
    Some(rows)
}

/// Where a ranked hit lives.
enum Src {
    Seg(usize, u32),
    Over(Arc<Document>),
}

struct Hit {
    id: DocId,
    score: f32,
    src: Src,
}

/// Hits in rank order: ascending (distances) or descending (scores), ties by id.
fn sort_hits(hits: &mut [Hit], ascending: bool) {
    hits.sort_by(|a, b| {
        let o = a.score.total_cmp(&b.score);
        (if ascending { o } else { o.reverse() }).then_with(|| a.id.cmp(&b.id))
    });
}

/// A ranked document and its `$dist`.
type Scored = (Arc<Document>, f32);

/// The ranked page (document, `$dist`) and the rows searched exhaustively.
fn ranked_docs(q: &Query, rank: &Rank, state: &NsState) -> Result<(Vec<Scored>, u64), EngineError> {
    let views = seg_views(state, q.filters.as_ref());
    let want = q.offset.saturating_add(q.limit);
    let mut fetch = want;
    loop {
        let (hits, exhaustive) = rank_hits(q, rank, state, &views, fetch)?;
        let short = hits.len() < fetch;
        let mut per = PerCounter::new(q.per.as_ref());
        let mut out = Vec::with_capacity(want.min(hits.len()));
        for h in hits {
            let doc = match h.src {
                Src::Over(d) => d,
                Src::Seg(si, row) => match views[si].ls.seg.doc(row as usize) {
                    Ok(d) => Arc::new(d),
                    Err(e) => return Err(EngineError::Corrupted(format!("segment row {row}: {e}"))),
                },
            };
            if per.admit(&doc) {
                out.push((doc, h.score));
                if out.len() >= want {
                    break;
                }
            }
        }
        if out.len() >= want || short || q.per.is_none() || fetch >= MAX_FETCH {
            return Ok((out.into_iter().skip(q.offset).collect(), exhaustive));
        }
        fetch = fetch.saturating_mul(4).min(MAX_FETCH);
    }
}

/// The best `k` hits of a scored ranking, in rank order.
fn rank_hits(
    q: &Query,
    rank: &Rank,
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), EngineError> {
    let (mut hits, exhaustive, ascending) = match rank {
        Rank::Vector { exact, query } => {
            let (h, n) = vector_hits(q, *exact, query, state, views, k)?;
            (h, n, true)
        }
        Rank::Sparse { attr, query } => {
            let (h, n) = sparse_hits(q, attr, query, state, views);
            (h, n, false)
        }
        Rank::Text(expr) => {
            let (h, n) = text_hits(q, expr, state, views, k)?;
            (h, n, false)
        }
    };
    sort_hits(&mut hits, ascending);
    hits.truncate(k);
    Ok((hits, exhaustive))
}

/// Filters estimated to pass at least this fraction of a segment's rows use
/// the graph section (when present); narrower ones the IVF section.
const GRAPH_MIN_SELECTIVITY: f64 = 0.5;

/// Dense-vector search: per segment the ANN section (or exact when absent or
/// `exact`), filter-aware; the overlay exhaustively.
fn vector_hits(
    q: &Query,
    exact: bool,
    query: &[f32],
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), EngineError> {
    use crate::index::ann;
    let Some(dim) = state.vector_dim.map(|d| d as usize) else { return Ok((Vec::new(), 0)) };
    if query.len() != dim {
        return Err(invalid(format!("query vector has {} dimensions, the namespace has {dim}", query.len())));
    }
    let metric = state.distance_metric.unwrap_or(crate::model::DistanceMetric::CosineDistance);
    let mut hits = Vec::new();
    for (si, v) in views.iter().enumerate() {
        let seg = &v.ls.seg;
        let Some(vectors) = seg.vectors() else { continue };
        let n = seg.len();
        let need_filter = q.filters.is_some()
            || !v.ls.deleted.is_empty()
            || !v.shadowed.is_empty()
            || (0..n).any(|r| !seg.has_vector(r));
        let f = |row: u32| seg.has_vector(row as usize) && v.passes(row as usize, q);
        let filter: Option<&dyn Fn(u32) -> bool> = if need_filter { Some(&f) } else { None };
        let index = if exact { None } else { v.ls.ann_index() };
        let filter_estimate =
            v.cand.as_ref().map(|c| u32::try_from(c.iter().filter(|b| **b).count()).unwrap_or(u32::MAX));
        // Warm path: the graph section for unfiltered and wide-filter queries.
        let graph = match (&index, exact) {
            (Some(Ok(ix)), false) => {
                let wide = match filter {
                    None => true,
                    Some(f) => {
                        let est =
                            filter_estimate.map_or_else(|| ix.index().estimate_matches(f), |e| e as usize);
                        est as f64 >= GRAPH_MIN_SELECTIVITY * n as f64
                    }
                };
                if wide {
                    match v.ls.graph_index() {
                        Some(Ok(g)) => Some(g),
                        Some(Err(e)) => {
                            tracing::warn!(segment = %v.ls.meta.id, error = %e, "unreadable graph section; IVF");
                            None
                        }
                        None => None,
                    }
                } else {
                    None
                }
            }
            _ => None,
        };
        let found = match (index, graph) {
            (_, Some(g)) => {
                g.search(vectors, query, k, filter, &crate::index::graph::GraphSearchParams::default())
            }
            (Some(Ok(ix)), None) => {
                let params = ann::SearchParams { filter_estimate, ..ann::SearchParams::default() };
                ix.index().search(vectors, query, k, filter, &params)
            }
            (Some(Err(e)), None) => {
                tracing::warn!(segment = %v.ls.meta.id, error = %e, "unreadable ANN section; exact search");
                ann::exact(vectors, dim, metric, query, k, filter)
            }
            (None, None) => ann::exact(vectors, dim, metric, query, k, filter),
        };
        hits.extend(found.into_iter().filter_map(|(row, d)| {
            Some(Hit { id: seg.try_id(row as usize)?, score: d, src: Src::Seg(si, row) })
        }));
    }
    let mut exhaustive = 0u64;
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        let Some(vec) = doc.vector.as_ref().filter(|v| v.len() == dim) else { continue };
        if matches(q, doc) {
            let d = crate::index::distance::distance(metric, query, vec);
            hits.push(Hit { id: id.clone(), score: d, src: Src::Over(doc.clone()) });
        }
    }
    Ok((hits, exhaustive))
}

/// Sparse dot-product search: per segment the sparse section of `attr` (or a
/// scan of decoded rows), the overlay exhaustively.
fn sparse_hits(
    q: &Query,
    attr: &str,
    query: &[(String, f32)],
    state: &NsState,
    views: &[SegView<'_>],
) -> (Vec<Hit>, u64) {
    use crate::index::sparse::dot;
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    for (si, v) in views.iter().enumerate() {
        let seg = &v.ls.seg;
        let index = v.ls.sparse_index(attr);
        let found: Vec<(u32, f32)> = match index {
            Some(ix) => ix.scores(query, &|row| v.passes(row as usize, q)),
            None => (0..seg.len())
                .filter(|r| v.live(*r))
                .filter_map(|r| {
                    exhaustive += 1;
                    let d = v.attrs_doc(r)?;
                    if !matches(q, &d) {
                        return None;
                    }
                    match d.attrs.get(attr) {
                        Some(Value::Sparse(sv)) => dot(query, sv).map(|s| (r as u32, s)),
                        _ => None,
                    }
                })
                .collect(),
        };
        hits.extend(found.into_iter().filter_map(|(row, s)| {
            Some(Hit { id: seg.try_id(row as usize)?, score: s, src: Src::Seg(si, row) })
        }));
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        if let Some(Value::Sparse(sv)) = doc.attrs.get(attr) {
            if let Some(s) = dot(query, sv).filter(|_| matches(q, doc)) {
                hits.push(Hit { id: id.clone(), score: s, src: Src::Over(doc.clone()) });
            }
        }
    }
    (hits, exhaustive)
}

/// One BM25 clause, compiled against the namespace: analyzed terms and the
/// global statistics of its attribute over every live document.
struct Leaf {
    attr: String,
    analyzer: Analyzer,
    params: Bm25Params,
    /// Query terms with repeats (what `FieldQuery::terms` takes).
    terms: Vec<String>,
    /// Distinct terms in first-occurrence order.
    distinct: Vec<String>,
    stats: CorpusStats,
    cache: NormCache,
    weights: Vec<Bm25Weight>,
}

/// A compiled text expression over leaf indexes.
enum Node {
    Leaf(usize),
    Sum(Vec<Node>),
    Max(Vec<Node>),
    Product(f32, Box<Node>),
}

/// Per-leaf (fieldnorm id, per-distinct-term counts) of one row.
struct RowTf {
    norms: Vec<u8>,
    tfs: Vec<Vec<u32>>,
}

impl RowTf {
    fn new(leaves: &[Leaf]) -> Self {
        RowTf {
            norms: vec![0; leaves.len()],
            tfs: leaves.iter().map(|l| vec![0; l.distinct.len()]).collect(),
        }
    }

    fn any_hit(&self) -> bool {
        self.tfs.iter().flatten().any(|t| *t > 0)
    }

    /// From a decoded document: tokens per leaf attribute.
    fn of_doc(leaves: &[Leaf], d: &Document) -> Self {
        let mut rt = RowTf::new(leaves);
        for (i, l) in leaves.iter().enumerate() {
            let toks = d.attrs.get(&l.attr).map(|v| value_tokens(&l.analyzer, v)).unwrap_or_default();
            rt.norms[i] = fieldnorm_to_id(u32::try_from(toks.len()).unwrap_or(u32::MAX));
            for t in &toks {
                if let Some(j) = l.distinct.iter().position(|x| x == t) {
                    rt.tfs[i][j] += 1;
                }
            }
        }
        rt
    }
}

/// The score of a row: a leaf is `Σ_terms boost · bm25` in term order (the
/// order and factors `text::search_fields` uses), `Sum` adds left to right,
/// `Max` takes the largest, `Product` scales the boost of its leaves.
fn eval(node: &Node, boost: f32, leaves: &[Leaf], rt: &RowTf) -> f32 {
    match node {
        Node::Leaf(i) => {
            let l = &leaves[*i];
            let mut s = 0f32;
            for (j, w) in l.weights.iter().enumerate() {
                let tf = rt.tfs[*i][j];
                if tf > 0 {
                    s += boost * w.score(&l.cache, rt.norms[*i], tf);
                }
            }
            s
        }
        Node::Sum(c) => {
            let mut s = 0f32;
            for n in c {
                s += eval(n, boost, leaves, rt);
            }
            s
        }
        Node::Max(c) => c.iter().map(|n| eval(n, boost, leaves, rt)).fold(0f32, f32::max),
        Node::Product(w, e) => eval(e, boost * w, leaves, rt),
    }
}

/// Flattens a `Sum`/`Product` tree of leaves with positive weights into
/// (leaf, boost) pairs; false when the expression is not such a sum.
fn linear(node: &Node, boost: f32, out: &mut Vec<(usize, f32)>) -> bool {
    match node {
        Node::Leaf(i) => {
            out.push((*i, boost));
            true
        }
        Node::Sum(c) => c.iter().all(|n| linear(n, boost, out)),
        Node::Max(_) => false,
        Node::Product(w, e) => *w > 0.0 && linear(e, boost * w, out),
    }
}

fn compile(
    e: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    leaves: &mut Vec<Leaf>,
) -> Result<Node, EngineError> {
    Ok(match e {
        TextExpr::Sum(c) => {
            Node::Sum(c.iter().map(|x| compile(x, state, views, leaves)).collect::<Result<_, _>>()?)
        }
        TextExpr::Max(c) => {
            Node::Max(c.iter().map(|x| compile(x, state, views, leaves)).collect::<Result<_, _>>()?)
        }
        TextExpr::Product(w, x) => Node::Product(*w, Box::new(compile(x, state, views, leaves)?)),
        TextExpr::Bm25 { attr, query, last_as_prefix } => {
            let opts = state.schema.get(attr).and_then(|s| s.full_text_search.as_ref()).ok_or_else(|| {
                invalid(format!("rank_by BM25: attribute {attr:?} has no full_text_search"))
            })?;
            let analyzer = Analyzer::new(opts);
            let mut terms = match query {
                TextInput::Text(t) => analyzer.query_terms(t),
                TextInput::Tokens(ts) => ts.iter().flat_map(|t| analyzer.tokens(t)).collect(),
            };
            if *last_as_prefix {
                if let Some(last) = terms.pop() {
                    terms.extend(expand_prefix(&last, attr, &analyzer, state, views));
                }
            }
            let params = Bm25Params::from_options(opts);
            let stats = text_stats(attr, &analyzer, &terms, state, views);
            let counts = term_counts(&terms);
            let distinct: Vec<String> = counts.iter().map(|(t, _)| (*t).to_owned()).collect();
            let weights = counts.iter().map(|(t, c)| stats.weight(t, *c, params)).collect();
            let cache = stats.norm_cache(params);
            leaves.push(Leaf {
                attr: attr.clone(),
                analyzer,
                params,
                terms,
                distinct,
                stats,
                cache,
                weights,
            });
            Node::Leaf(leaves.len() - 1)
        }
    })
}

/// The terms a prefix expands to, over every segment dictionary and the
/// unindexed rows (the same set for every segment, so scores stay global).
fn expand_prefix(
    prefix: &str,
    attr: &str,
    analyzer: &Analyzer,
    state: &NsState,
    views: &[SegView<'_>],
) -> Vec<String> {
    let mut set = std::collections::BTreeSet::new();
    let add = |d: &Document, set: &mut std::collections::BTreeSet<String>| {
        if let Some(v) = d.attrs.get(attr) {
            set.extend(value_tokens(analyzer, v).into_iter().filter(|t| t.starts_with(prefix)));
        }
    };
    for v in views {
        match v.ls.text_index(attr) {
            Some(ix) => set.extend(ix.terms_with_prefix(prefix, MAX_PREFIX_EXPANSIONS)),
            None => {
                for r in (0..v.ls.seg.len()).filter(|r| v.live(*r)) {
                    if let Some(d) = v.attrs_doc(r) {
                        add(&d, &mut set);
                    }
                }
            }
        }
    }
    for d in state.overlay().values().flatten() {
        add(d, &mut set);
    }
    if set.is_empty() {
        return vec![prefix.to_owned()];
    }
    set.into_iter().take(MAX_PREFIX_EXPANSIONS).collect()
}

/// BM25 statistics of `attr` over the live documents: indexed segments
/// minus their dead rows, unindexed segment rows and the overlay.
fn text_stats(
    attr: &str,
    analyzer: &Analyzer,
    terms: &[String],
    state: &NsState,
    views: &[SegView<'_>],
) -> CorpusStats {
    let mut st = CorpusStats::default();
    let toks_of = |d: &Document| d.attrs.get(attr).map(|v| value_tokens(analyzer, v)).unwrap_or_default();
    let counts = term_counts(terms);
    for v in views {
        match v.ls.text_index(attr) {
            Some(ix) => {
                st.add_index(&ix, terms);
                for r in v.dead_rows() {
                    let Some(d) = v.attrs_doc(r) else { continue };
                    let toks = toks_of(&d);
                    st.num_docs = st.num_docs.saturating_sub(1);
                    st.total_tokens = st.total_tokens.saturating_sub(toks.len() as u64);
                    for (t, _) in &counts {
                        if toks.iter().any(|x| x == t) {
                            if let Some(df) = st.doc_freq.get_mut(*t) {
                                *df = df.saturating_sub(1);
                            }
                        }
                    }
                }
            }
            None => {
                for r in (0..v.ls.seg.len()).filter(|r| v.live(*r)) {
                    if let Some(d) = v.attrs_doc(r) {
                        st.add_document_tokens(&toks_of(&d), terms);
                    }
                }
            }
        }
    }
    for d in state.overlay().values().flatten() {
        st.add_document_tokens(&toks_of(d), terms);
    }
    st
}

/// BM25 search: pruned per segment for sums of clauses, exact candidate
/// scoring otherwise; unindexed rows scored with the same formula.
fn text_hits(
    q: &Query,
    expr: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), EngineError> {
    let mut leaves = Vec::new();
    let root = compile(expr, state, views, &mut leaves)?;
    let mut flat = Vec::new();
    let is_linear = linear(&root, 1.0, &mut flat);
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    let corrupt = |e: crate::index::text::IndexError| EngineError::Corrupted(format!("text index: {e}"));
    for (si, v) in views.iter().enumerate() {
        let seg = &v.ls.seg;
        let ixs: Option<Vec<TextIndex<'_>>> = leaves.iter().map(|l| v.ls.text_index(&l.attr)).collect();
        let f = |row: u32| v.passes(row as usize, q);
        let found: Vec<(u32, f32)> = match ixs {
            Some(ixs) if is_linear => {
                let fields: Vec<FieldQuery<'_, '_>> = flat
                    .iter()
                    .map(|(li, boost)| FieldQuery {
                        index: &ixs[*li],
                        terms: &leaves[*li].terms,
                        stats: &leaves[*li].stats,
                        params: leaves[*li].params,
                        boost: *boost,
                    })
                    .collect();
                search_fields(&fields, k, Some(&f)).map_err(corrupt)?
            }
            Some(ixs) => {
                let mut rows: std::collections::BTreeMap<u32, RowTf> = std::collections::BTreeMap::new();
                for (li, (l, ix)) in leaves.iter().zip(&ixs).enumerate() {
                    for (j, t) in l.distinct.iter().enumerate() {
                        for (row, tf) in ix.postings(t).map_err(corrupt)? {
                            rows.entry(row).or_insert_with(|| RowTf::new(&leaves)).tfs[li][j] = tf;
                        }
                    }
                }
                rows.into_iter()
                    .filter(|(row, _)| f(*row))
                    .map(|(row, mut rt)| {
                        for (li, ix) in ixs.iter().enumerate() {
                            rt.norms[li] = ix.fieldnorm_id(row);
                        }
                        (row, eval(&root, 1.0, &leaves, &rt))
                    })
                    .collect()
            }
            None => (0..seg.len())
                .filter(|r| v.live(*r))
                .filter_map(|r| {
                    exhaustive += 1;
                    let d = v.attrs_doc(r).filter(|d| matches(q, d))?;
                    let rt = RowTf::of_doc(&leaves, &d);
                    rt.any_hit().then(|| (r as u32, eval(&root, 1.0, &leaves, &rt)))
                })
                .collect(),
        };
        hits.extend(found.into_iter().filter_map(|(row, s)| {
            Some(Hit { id: seg.try_id(row as usize)?, score: s, src: Src::Seg(si, row) })
        }));
    }
    for (id, doc) in state.overlay() {
        let Some(doc) = doc else { continue };
        exhaustive += 1;
        if !matches(q, doc) {
            continue;
        }
        let rt = RowTf::of_doc(&leaves, doc);
        if rt.any_hit() {
            hits.push(Hit {
                id: id.clone(),
                score: eval(&root, 1.0, &leaves, &rt),
                src: Src::Over(doc.clone()),
            });
        }
    }
    Ok((hits, exhaustive))
}

/// The analyzed tokens of an attribute value: a string is analyzed, a string
/// array element by element (with `pre_tokenized_array`, each element is one
/// token); other values have none. Shared by index building and queries.
pub fn value_tokens(analyzer: &Analyzer, v: &Value) -> Vec<String> {
    match v {
        Value::Str(s) => analyzer.tokens(s),
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                if let Value::Str(s) = item {
                    analyzer.for_each_token(s, |t| out.push(t.to_owned()));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

// ----- multi-query fusion -------------------------------------------------------

/// Fuse subquery results by reciprocal rank: `Σ w_i / (k + rank_i)` (ranks
/// from 1), best first, ties by id; `$dist` is the fused score.
pub fn fuse(r: &Rerank, results: &[QueryResult]) -> QueryResult {
    let mut scores: HashMap<String, (f64, Json, Json)> = HashMap::new();
    for (i, res) in results.iter().enumerate() {
        let w = r.weights.get(i).copied().unwrap_or(1.0);
        for (rank, row) in res.rows.iter().flatten().enumerate() {
            let id = row.get(ID_ATTR).cloned().unwrap_or(Json::Null);
            let e = scores.entry(id.to_string()).or_insert_with(|| (0.0, id, row.clone()));
            e.0 += w / (r.rank_constant + (rank + 1) as f64);
        }
    }
    let mut fused: Vec<(f64, Json, Json)> = scores.into_values().collect();
    fused.sort_by(|a, b| {
        b.0.total_cmp(&a.0).then_with(|| match (DocId::from_json(&a.1), DocId::from_json(&b.1)) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => a.1.to_string().cmp(&b.1.to_string()),
        })
    });
    let rows = fused
        .into_iter()
        .skip(r.offset)
        .take(r.limit)
        .map(|(score, _, mut row)| {
            if let Json::Object(m) = &mut row {
                m.insert(DIST_ATTR.into(), json!(score));
            }
            row
        })
        .collect();
    QueryResult {
        rows: Some(rows),
        aggregations: None,
        aggregation_groups: None,
        scanned: results.iter().map(|x| x.scanned).sum(),
    }
}

/// Run a whole request on one state: each query, then the fusion if any.
pub fn execute_request(req: &QueryRequest, state: &NsState) -> Result<Vec<QueryResult>, EngineError> {
    let results = req.queries.iter().map(|q| execute(q, state)).collect::<Result<Vec<_>, _>>()?;
    Ok(match &req.rerank {
        Some(r) => vec![fuse(r, &results)],
        None => results,
    })
}

// ----- recall ---------------------------------------------------------------------

/// `POST /v1/namespaces/{ns}/_debug/recall`: samples `num` stored vectors
/// (deterministic seed), runs ANN and exact search for each, and reports the
/// average recall (a returned row is a hit when its exact distance is within
/// the exact k-th distance, so ties count).
pub fn recall(body: &Json, state: &NsState) -> Result<Json, EngineError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    let mut num = 25usize;
    let mut top_k = 10usize;
    let mut filters = None;
    let mut given: Option<Vec<f32>> = None;
    let mut ground_truth = false;
    for (k, v) in &obj {
        match k.as_str() {
            "num" if v.is_null() => {}
            "num" => {
                num = v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| invalid("num must be between 1 and 1000"))?
            }
            "top_k" => top_k = parse_limit(v, "top_k")?.0,
            "filters" if v.is_null() => {}
            "filters" => filters = Some(Filter::parse(v).map_err(|e| invalid(format!("filters: {e}")))?),
            "rank_by" if v.is_null() => {}
            "rank_by" => match parse_rank_by(v)? {
                RankBy::Scored(Rank::Vector { query, .. }) => given = Some(query),
                _ => return Err(invalid("recall's rank_by must be [\"vector\", \"ANN\", [..]]")),
            },
            "include_ground_truth" => ground_truth = v.as_bool().unwrap_or(false),
            other => return Err(invalid(format!("unknown recall parameter {other:?}"))),
        }
    }
    let queries: Vec<Vec<f32>> = match given {
        Some(qv) => vec![qv],
        None => {
            let n = state.len() as usize;
            if n == 0 || state.vector_dim.is_none() {
                return Ok(json!({"avg_recall": 1.0, "avg_ann_count": 0.0, "avg_exhaustive_count": 0.0}));
            }
            // Deterministic sample: evenly spaced positions with a fixed offset.
            let step = (n / num.min(n)).max(1);
            let picks: HashSet<usize> = (0..num.min(n)).map(|i| (i * step + step / 2) % n).collect();
            state
                .iter()
                .enumerate()
                .filter(|(i, _)| picks.contains(i))
                .filter_map(|(_, d)| d.vector.clone())
                .collect()
        }
    };
    let base = Query {
        filters,
        id_lower: None,
        order: None,
        rank: None,
        per: None,
        limit: top_k,
        offset: 0,
        projection: Projection::IdOnly,
        vector_encoding: VectorEncoding::Float,
        aggregates: Vec::new(),
        group_by: Vec::new(),
    };
    validate(&base, state)?;
    let views = seg_views(state, base.filters.as_ref());
    let (mut sum_recall, mut sum_ann, mut sum_exact) = (0f64, 0usize, 0usize);
    let mut truth = Vec::new();
    for qv in &queries {
        let ann =
            rank_hits(&base, &Rank::Vector { exact: false, query: qv.clone() }, state, &views, top_k)?.0;
        let exact =
            rank_hits(&base, &Rank::Vector { exact: true, query: qv.clone() }, state, &views, top_k)?.0;
        sum_ann += ann.len();
        sum_exact += exact.len();
        let r = match exact.last() {
            None => 1.0,
            Some(kth) => {
                let bound = kth.score + kth.score.abs() * 1e-5 + 1e-6;
                let hit = ann.iter().filter(|h| h.score <= bound).count();
                hit as f64 / exact.len() as f64
            }
        };
        sum_recall += r;
        if ground_truth {
            let nn: Vec<Json> = exact
                .iter()
                .map(|h| {
                    let v = match &h.src {
                        Src::Over(d) => d.vector.clone(),
                        Src::Seg(si, row) => views[*si].ls.seg.vector(*row as usize).map(<[f32]>::to_vec),
                    };
                    let mut m = Map::new();
                    m.insert(ID_ATTR.into(), h.id.to_json());
                    m.insert(DIST_ATTR.into(), json!(f64::from(h.score)));
                    if let Some(v) = v {
                        m.insert(VECTOR_ATTR.into(), encode_vector(&v, VectorEncoding::Float));
                    }
                    Json::Object(m)
                })
                .collect();
            truth.push(
                json!({"query_vector": encode_vector(qv, VectorEncoding::Float), "nearest_neighbors": nn}),
            );
        }
    }
    let n = queries.len().max(1) as f64;
    let mut out = json!({
        "avg_recall": if queries.is_empty() { 1.0 } else { sum_recall / n },
        "avg_ann_count": sum_ann as f64 / n,
        "avg_exhaustive_count": sum_exact as f64 / n,
    });
    if ground_truth {
        out["ground_truth"] = Json::Array(truth);
    }
    Ok(out)
}

/// Plan lines of a scored ranking: per segment, the index used or the
/// exhaustive scan, with estimated rows; then the overlay.
fn explain_rank(q: &Query, rank: &Rank, state: &NsState, lines: &mut Vec<String>) {
    let (what, kind) = match rank {
        Rank::Vector { exact: false, .. } => {
            ("vector ANN (distance ascending)".to_owned(), SECTION_ANN_INDEX)
        }
        Rank::Vector { exact: true, .. } => ("vector kNN, exact (distance ascending)".to_owned(), 0),
        Rank::Sparse { attr, .. } => {
            (format!("sparse dot product on {attr} (score descending)"), SECTION_SPARSE_INDEX)
        }
        Rank::Text(_) => ("BM25 (score descending)".to_owned(), SECTION_TEXT_INDEX),
    };
    lines.push(format!("rank: {what}, ties by id asc"));
    let views = seg_views(state, q.filters.as_ref());
    for v in &views {
        let seg = &v.ls.seg;
        let live = seg.len().saturating_sub(v.ls.deleted.len()).saturating_sub(v.shadowed.len());
        let has_index = kind != 0 && !seg.sections(kind).is_empty();
        let access = match (rank, has_index) {
            (Rank::Vector { .. }, true) => {
                match crate::index::ann::AnnIndex::open_trusted(
                    seg.section(SECTION_ANN_INDEX).unwrap_or_default(),
                ) {
                    Ok(ix) if q.filters.is_some() => {
                        let f = |row: u32| v.passes(row as usize, q);
                        let est = ix.estimate_matches(&f);
                        let exact =
                            est <= crate::index::ann::SearchParams::default().exact_threshold as usize;
                        format!(
                            "ANN index ({} clusters), filter matches ~{est} rows → {}",
                            ix.nlist(),
                            if exact {
                                "exact search over matching rows"
                            } else {
                                "filter-aware cluster probing"
                            }
                        )
                    }
                    Ok(ix) => format!(
                        "ANN index ({} clusters, {} probed), ~{} rows scored",
                        ix.nlist(),
                        ix.default_nprobe(),
                        (ix.default_nprobe() * ix.rows()).div_ceil(ix.nlist().max(1))
                    ),
                    Err(_) => "unreadable ANN section → exact search".to_owned(),
                }
            }
            (Rank::Vector { .. }, false) => format!("exact search of {live} rows"),
            (_, true) => "postings index".to_owned(),
            (_, false) => format!("exhaustive scan of {live} rows (no index section)"),
        };
        let narrowed = match &v.cand {
            Some(c) => {
                format!(", attribute index narrows the filter to {} rows", c.iter().filter(|b| **b).count())
            }
            None => String::new(),
        };
        lines.push(format!("segment {}: {} rows ({live} live){narrowed}: {access}", v.ls.meta.id, seg.len()));
    }
    let unindexed = state.overlay().values().filter(|d| d.is_some()).count();
    lines.push(format!("unindexed WAL rows: {unindexed}, searched exhaustively"));
}

// ----- explain -----------------------------------------------------------------

/// A short, human-readable plan of a query on a state.
pub fn explain(q: &Query, state: &NsState) -> Result<String, EngineError> {
    validate(q, state)?;
    let n = state.len() as usize;
    let mut lines = Vec::new();
    if let Some(rank) = &q.rank {
        explain_rank(q, rank, state, &mut lines);
    }
    let access = match (&q.id_lower, &q.order) {
        _ if q.rank.is_some() => format!("ranked search over {n} documents"),
        (Some((id, inc)), _) if Some(id.id_type()) == state.id_type => {
            format!("id range scan from id {} {id} (of {n} documents)", if *inc { ">=" } else { ">" })
        }
        (_, Some(o)) if matches!(o.as_slice(), [k] if k.attr == ID_ATTR && k.dir == Direction::Desc) => {
            format!("reverse id scan (of {n} documents)")
        }
        _ => match q.filters.as_ref().filter(|_| !state.segments().is_empty()) {
            Some(f) => {
                let views = seg_views(state, Some(f));
                let narrowed: Option<usize> =
                    views.iter().map(|v| v.cand.as_ref().map(|c| c.iter().filter(|b| **b).count())).sum();
                match narrowed {
                    Some(rows) => format!(
                        "attribute indexes narrow the filter to {rows} segment rows, plus {} unindexed rows \
                         (of {n} documents)",
                        state.overlay().len()
                    ),
                    None => format!("exhaustive scan of {n} documents"),
                }
            }
            None => format!("exhaustive scan of {n} documents"),
        },
    };
    lines.push(format!("access: {access}"));
    lines.push(format!(
        "filter: {}",
        q.filters.as_ref().map_or_else(|| "none".to_owned(), |f| f.to_json().to_string())
    ));
    match &q.order {
        Some(order) => {
            let keys: Vec<String> = order
                .iter()
                .map(|k| format!("{} {}", k.attr, if k.dir == Direction::Asc { "asc" } else { "desc" }))
                .collect();
            lines.push(format!("order: {}, then id asc (missing values last)", keys.join(", ")));
            lines.push(format!("limit: {} offset: {}", q.limit, q.offset));
        }
        None if q.rank.is_some() => lines.push(format!("limit: {} offset: {}", q.limit, q.offset)),
        None => lines.push("order: none (aggregate only)".to_owned()),
    }
    if !q.aggregates.is_empty() {
        let names: Vec<&str> = q.aggregates.iter().map(|(n, _)| n.as_str()).collect();
        let by = if q.group_by.is_empty() {
            String::new()
        } else {
            format!(" grouped by {}", q.group_by.join(", "))
        };
        lines.push(format!("aggregate: {}{by}", names.join(", ")));
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::apply::apply_request;
    use crate::engine::WriteRequest;

    fn state(rows: Json) -> NsState {
        let mut s = NsState::default();
        let req = WriteRequest::from_json(&json!({ "upsert_rows": rows })).unwrap();
        apply_request(&mut s, &req.record, None).unwrap();
        s
    }

    fn run(s: &NsState, body: Json) -> Result<QueryResult, EngineError> {
        let r = parse_request(&body, false)?;
        execute(&r.queries[0], s)
    }

    fn ids(r: &QueryResult) -> Vec<Json> {
        r.rows.as_ref().unwrap().iter().map(|row| row["id"].clone()).collect()
    }

    #[test]
    fn orders_by_attribute_with_nulls_last_and_ties_by_id() {
        let s = state(json!([{"id": 1, "n": 2}, {"id": 2}, {"id": 3, "n": 1}, {"id": 4, "n": 2}, {"id": 5}]));
        let asc = run(&s, json!({"rank_by": ["n", "asc"]})).unwrap();
        assert_eq!(ids(&asc), vec![json!(3), json!(1), json!(4), json!(2), json!(5)]);
        let desc = run(&s, json!({"rank_by": ["n", "desc"], "top_k": 3})).unwrap();
        assert_eq!(ids(&desc), vec![json!(1), json!(4), json!(3)]);
        let paged =
            run(&s, json!({"rank_by": [["n", "asc"], ["id", "desc"]], "limit": 2, "offset": 1})).unwrap();
        assert_eq!(ids(&paged), vec![json!(4), json!(1)]);
    }

    #[test]
    fn id_paging_and_projection() {
        let s = state(
            json!([{"id": 3, "vector": [1.0, 0.5], "a": "x"}, {"id": 1, "vector": [0.0, 1.0]}, {"id": 2, "vector": [2.0, 2.0]}]),
        );
        let r = run(&s, json!({"rank_by": ["id", "asc"], "limit": 2})).unwrap();
        assert_eq!(r.rows.as_ref().unwrap()[0], json!({"id": 1}));
        let r = run(&s, json!({"rank_by": ["id", "desc"], "filters": ["id", "Gte", 2]})).unwrap();
        assert_eq!((ids(&r), r.scanned), (vec![json!(3), json!(2)], 2));
        let r = run(
            &s,
            json!({"rank_by": ["id", "desc"], "include_attributes": true, "vector_encoding": "base64"}),
        )
        .unwrap();
        let first = &r.rows.as_ref().unwrap()[0];
        assert_eq!(first["a"], json!("x"));
        assert_eq!(first["vector"], encode_vector(&[1.0, 0.5], VectorEncoding::Base64));
        let r = run(&s, json!({"rank_by": ["id", "asc"], "exclude_attributes": ["vector"]})).unwrap();
        assert_eq!(r.rows.as_ref().unwrap()[2], json!({"id": 3, "a": "x"}));
        assert_eq!(
            id_lower_bound(&json!(["And", [["a", "Eq", 1], ["id", "Gt", 7]]])),
            Some((DocId::U64(7), false))
        );
    }

    #[test]
    fn aggregations_and_groups() {
        let s = state(
            json!([{"id": 1, "c": "a", "p": 2.5}, {"id": 2, "c": "b", "p": 3}, {"id": 3, "c": "a", "p": 1.0}, {"id": 4}]),
        );
        let r = run(&s, json!({"aggregate_by": {"n": ["Count"], "s": ["Sum", "p"], "hc": ["Count", "c"]}}))
            .unwrap();
        assert!(r.rows.is_none());
        assert_eq!(r.aggregations, Some(json!({"n": 4, "s": 6.5, "hc": 3})));
        let r = run(&s, json!({"aggregate_by": {"n": ["Count"]}, "group_by": ["c"]})).unwrap();
        assert_eq!(
            r.aggregation_groups,
            Some(vec![json!({"c": "a", "n": 2}), json!({"c": "b", "n": 1}), json!({"c": null, "n": 1})])
        );
    }

    #[test]
    fn bad_and_unsupported_queries() {
        let s = state(json!([{"id": 1, "vector": [1.0, 2.0]}]));
        for body in [
            json!({}),
            json!({"rank_by": ["a", "sideways"]}),
            json!({"rank_by": ["id", "asc"], "top_k": 0}),
            json!({"rank_by": ["id", "asc"], "top_k": 10_001}),
            json!({"filters": ["id", "Eq", 1], "offset": 3, "aggregate_by": {"n": ["Count"]}}),
            json!({"rank_by": ["id", "asc"], "bogus": 1}),
            json!({"rank_by": ["vector", "asc"]}),
            json!({"rank_by": ["id", "asc"], "consistency": {"level": "sometimes"}}),
            json!({"rank_by": ["id", "asc"], "include_attributes": ["a"], "exclude_attributes": ["b"]}),
        ] {
            assert!(matches!(run(&s, body.clone()), Err(EngineError::InvalidInput(_))), "{body}");
        }
        for body in [
            json!({"rank_by": ["text", "BM25", "q"]}),
            json!({"rank_by": ["Sum", [["a", "BM25", "x"]]]}),
            json!({"rank_by": ["vector", "ANN", [1.0, 2.0, 3.0]]}),
        ] {
            assert!(matches!(run(&s, body.clone()), Err(EngineError::InvalidInput(_))), "{body}");
        }
        for body in [
            json!({"rank_by": ["Saturate", ["a", "BM25", "x"], {}]}),
            json!({"rank_by": ["vector", "ANN", [[1.0, 2.0]]]}),
            json!({"rank_by": ["other", "ANN", [1.0, 2.0]]}),
        ] {
            assert!(matches!(run(&s, body.clone()), Err(EngineError::Unsupported(_))), "{body}");
        }
        let r = run(&s, json!({"rank_by": ["vector", "ANN", [1.0, 2.0]]})).unwrap();
        assert_eq!(r.rows.unwrap(), vec![json!({"id": 1, "$dist": 0.0})]);
        let multi = parse_request(
            &json!({"queries": [{"rank_by": ["id", "asc"]}, {"aggregate_by": {"n": ["Count"]}}]}),
            true,
        )
        .unwrap();
        assert!(multi.multi && multi.strong && multi.queries.len() == 2);
        assert!(parse_request(&json!({"queries": []}), true).is_err());
        assert!(
            !parse_request(&json!({"rank_by": ["id", "asc"], "consistency": {"level": "eventual"}}), false)
                .unwrap()
                .strong
        );
    }

    /// The reference semantics, written independently: filter by a lower id
    /// bound, sort by (missing last, value in direction, id asc), then page.
    fn naive(
        docs: &[(u64, Option<i64>)],
        lower: Option<u64>,
        desc: bool,
        offset: usize,
        limit: usize,
    ) -> Vec<u64> {
        let mut v: Vec<_> = docs.iter().filter(|(id, _)| lower.is_none_or(|l| *id > l)).copied().collect();
        v.sort_by(|a, b| {
            let by_value = match (a.1, b.1) {
                (Some(x), Some(y)) if desc => y.cmp(&x),
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (None, None) => Ordering::Equal,
            };
            by_value.then(a.0.cmp(&b.0))
        });
        v.into_iter().skip(offset).take(limit).map(|(id, _)| id).collect()
    }

    proptest::proptest! {
        #[test]
        fn ordering_and_paging_match_the_reference(
            docs in proptest::collection::btree_map(0u64..200, proptest::option::of(-5i64..5), 0..60),
            lower in proptest::option::of(0u64..200),
            desc: bool,
            by_id: bool,
            offset in 0usize..20,
            limit in 1usize..30,
        ) {
            let docs: Vec<(u64, Option<i64>)> = docs.into_iter().collect();
            let rows: Vec<Json> = docs.iter().map(|(id, n)| match n {
                Some(n) => json!({"id": id, "n": n}),
                None => json!({"id": id}),
            }).collect();
            let s = if rows.is_empty() { NsState::default() } else { state(Json::Array(rows)) };
            let dir = if desc { "desc" } else { "asc" };
            let mut body = json!({"rank_by": [if by_id { "id" } else { "n" }, dir], "top_k": limit, "offset": offset});
            if let Some(l) = lower {
                body["filters"] = json!(["And", [["id", "Gt", l]]]);
            }
            let got: Vec<u64> = ids(&run(&s, body).unwrap()).iter().map(|v| v.as_u64().unwrap()).collect();
            let reference: Vec<(u64, Option<i64>)> = if by_id {
                docs.iter().map(|(id, _)| (*id, Some(i64::try_from(*id).unwrap()))).collect()
            } else {
                docs.clone()
            };
            proptest::prop_assert_eq!(got, naive(&reference, lower, desc, offset, limit));
        }
    }
}
