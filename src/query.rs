//! Query evaluation over one engine snapshot: filters, attribute ordering,
//! paging, projections and aggregations. Ranking (vector ANN/kNN, BM25,
//! sparse, rank expressions, rerank) is not implemented yet and is reported
//! as [`EngineError::Unsupported`] (HTTP 501).
//!
//! Invariants:
//! - Parsing is total: any JSON yields a [`QueryRequest`] or an
//!   `InvalidInput`/`Unsupported` error naming the offending key.
//! - A query (and every subquery of a multi-query) reads exactly one
//!   [`NsState`]; nothing here touches storage.
//! - Ordering is total and deterministic: the `rank_by` keys, then id
//!   ascending. Missing values sort last in both directions ("nulls last").
//! - An id range scan is only an access-path shortcut: the full filter is
//!   still applied to every candidate, so results equal a full scan's.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use crate::engine::{EngineError, NsState};
use crate::filter::Filter;
use crate::model::{DocId, Document, Value, ID_ATTR, VECTOR_ATTR};
use crate::schema::{AttrType, ScalarType};

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
    /// Attribute ordering (None: aggregate-only query).
    pub order: Option<Vec<OrderKey>>,
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
    Ok(QueryRequest { strong, multi: false, queries: vec![query] })
}

fn parse_multi(obj: &Map<String, Json>) -> Result<QueryRequest, EngineError> {
    let mut enc = VectorEncoding::Float;
    let mut queries_json = None;
    for (k, v) in obj {
        match k.as_str() {
            "queries" => queries_json = Some(v),
            "consistency" => {}
            "vector_encoding" => enc = parse_encoding(v)?,
            "rerank_by" => {
                return Err(unsupported(
                    "rerank_by is not implemented yet (ranking arrives with the query engine)",
                ))
            }
            "limit" | "offset" | "top_k" => {
                return Err(invalid(format!("a multi-query's top-level {k} only applies to rerank_by")))
            }
            other => return Err(invalid(format!("unknown multi-query parameter {other:?}"))),
        }
    }
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
    Ok(QueryRequest { strong: parse_consistency(obj.get("consistency"))?, multi: true, queries })
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
    top_k: Option<usize>,
    limit: Option<usize>,
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
    q.order = match raw.rank_by.filter(|v| !v.is_null()) {
        Some(v) => Some(parse_rank_by(v)?),
        None => None,
    };
    q.limit = match (raw.top_k, raw.limit) {
        (Some(a), Some(b)) if a != b => return Err(invalid("top_k and limit disagree; give one of them")),
        (a, b) => a.or(b).unwrap_or(DEFAULT_LIMIT),
    };
    if q.order.is_none() && q.aggregates.is_empty() {
        return Err(invalid("rank_by is required unless the query only aggregates (aggregate_by)"));
    }
    if raw.offset.is_some() && q.order.is_none() {
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

fn parse_limit(v: &Json, key: &str) -> Result<usize, EngineError> {
    let n = match v {
        Json::Object(o) => {
            if o.get("per").is_some_and(|p| !p.is_null()) {
                return Err(unsupported(format!("{key}.per (diversity limits) is not implemented yet")));
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
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(invalid(format!("{key} must be between 1 and {MAX_LIMIT}, got {n}"))),
    }
}

const RANK_OPERATORS: &[&str] = &["ANN", "kNN", "BM25", "SparseKNN"];
const RANK_COMBINATORS: &[&str] = &["Sum", "Max", "Product", "Saturate", "Decay", "Dist", "Attribute"];

/// Parse `rank_by` as an attribute ordering, or report ranking as 501.
fn parse_rank_by(v: &Json) -> Result<Vec<OrderKey>, EngineError> {
    if let Some(key) = order_pair(v) {
        return Ok(vec![key]);
    }
    if let Some(items) = v.as_array() {
        if !items.is_empty() && items.iter().all(|i| order_pair(i).is_some()) {
            return Ok(items.iter().filter_map(order_pair).collect());
        }
        let op = items.get(1).and_then(Json::as_str);
        let head = items.first().and_then(Json::as_str);
        if op.is_some_and(|o| RANK_OPERATORS.contains(&o))
            || head.is_some_and(|h| RANK_COMBINATORS.contains(&h))
        {
            let summary = match (head, op) {
                (Some(h), Some(o)) => format!("[{h:?},{o:?},…]"),
                (Some(h), None) => format!("[{h:?},…]"),
                _ => "[…]".to_owned(),
            };
            return Err(unsupported(format!(
                "rank_by {summary} is not implemented yet (ranking arrives with the query engine)"
            )));
        }
    }
    Err(invalid(
        "rank_by must be [\"attr\", \"asc\"|\"desc\"], a list of such pairs, or a ranking expression",
    ))
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
    if let Some(order) = &q.order {
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
fn candidates<'a>(q: &'a Query, state: &'a NsState) -> impl Iterator<Item = Arc<Document>> + 'a {
    let lower = match &q.id_lower {
        Some((id, true)) if Some(id.id_type()) == state.id_type => Bound::Included(id),
        Some((id, false)) if Some(id.id_type()) == state.id_type => Bound::Excluded(id),
        _ => Bound::Unbounded,
    };
    state.iter_from(lower)
}

/// The page of documents and how many documents were examined.
fn top_docs(q: &Query, order: &[OrderKey], state: &NsState) -> (Vec<Arc<Document>>, u64) {
    let mut scanned = 0u64;
    let want = q.offset.saturating_add(q.limit);
    let by_id = |dir| matches!(order, [k] if k.attr == ID_ATTR && k.dir == dir);
    if by_id(Direction::Asc) {
        let page: Vec<_> = candidates(q, state)
            .inspect(|_| scanned += 1)
            .filter(|d| matches(q, d))
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
            .filter(|d| matches(q, d))
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
    if want < all.len() {
        all.select_nth_unstable_by(want - 1, cmp);
        all.truncate(want);
    }
    all.sort_unstable_by(cmp);
    (all.into_iter().skip(q.offset).collect(), scanned)
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

// ----- explain -----------------------------------------------------------------

/// A short, human-readable plan of a query on a state.
pub fn explain(q: &Query, state: &NsState) -> Result<String, EngineError> {
    validate(q, state)?;
    let n = state.len() as usize;
    let mut lines = Vec::new();
    let access = match (&q.id_lower, &q.order) {
        (Some((id, inc)), _) if Some(id.id_type()) == state.id_type => {
            format!("id range scan from id {} {id} (of {n} documents)", if *inc { ">=" } else { ">" })
        }
        (_, Some(o)) if matches!(o.as_slice(), [k] if k.attr == ID_ATTR && k.dir == Direction::Desc) => {
            format!("reverse id scan (of {n} documents)")
        }
        _ => format!("exhaustive scan of {n} documents"),
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
            json!({"rank_by": ["vector", "ANN", [1.0, 2.0]]}),
            json!({"rank_by": ["text", "BM25", "q"]}),
            json!({"rank_by": ["Sum", [["a", "BM25", "x"]]]}),
            json!({"rank_by": ["id", "asc"], "limit": {"total": 5, "per": {"attributes": ["a"], "limit": 1}}}),
        ] {
            assert!(matches!(run(&s, body.clone()), Err(EngineError::Unsupported(_))), "{body}");
        }
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
