//! The turbopuffer query JSON: request bodies → [`QueryRequest`]/[`Query`]
//! (and `_debug/recall` → [`RecallRequest`]), results → response bodies.
//!
//! Invariants: parsing is total (any JSON yields a request or an
//! `InvalidInput`/`Unsupported` [`QueryError`] naming the offending key) and
//! reads no state; rendering never fails. Every count in a request that
//! drives a loop is capped here, with a message naming the limit: subqueries
//! ([`MAX_SUBQUERIES`]), page and offset, rank nesting ([`MAX_RANK_DEPTH`]),
//! `Sum`/`Max` children ([`MAX_RANK_CHILDREN`]), BM25 clauses
//! ([`MAX_RANK_CLAUSES`], leaf combinator terms included), `SparseKNN`
//! dimensions ([`MAX_SPARSE_QUERY_KEYS`]) and computed attributes
//! (`query::MAX_COMPUTED_ATTRIBUTES`, in `wire::compute`); filters cap their own sizes
//! (`filter::MAX_*`), and distinct BM25 terms are counted after analysis
//! (`query::MAX_BM25_TERMS`).

use base64::Engine as _;
use serde_json::{json, Map, Value as Json};

use super::rank::{parse_rank_by, prefix_error, RankBy};
use crate::engine::QueryAnswer;
use crate::filter::Filter;
use crate::model::{DocId, Value, ID_ATTR, VECTOR_ATTR};
use crate::query::recall::{RecallReport, RecallRequest};
use crate::query::{
    Aggregate, AggregateGroup, AggregateValue, Direction, GroupKey, ModelRerank, OrderKey, PerLimit,
    Projection, Query, QueryError, QueryRequest, QueryResult, Rank, Rerank, Row, VectorEncoding,
    DEFAULT_LIMIT, DIST_ATTR, MAX_LIMIT, MAX_OFFSET, MAX_SUBQUERIES,
};

fn invalid(msg: impl Into<String>) -> QueryError {
    QueryError::InvalidInput(msg.into())
}

fn unsupported(msg: impl Into<String>) -> QueryError {
    QueryError::Unsupported(msg.into())
}

impl QueryResult {
    /// The JSON body of this result (without billing/performance).
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        if let Some(rows) = &self.rows {
            let rows = rows.iter().map(|r| row_json(r, self.vector_encoding)).collect();
            m.insert("rows".into(), Json::Array(rows));
        }
        if let Some(a) = &self.aggregations {
            m.insert("aggregations".into(), aggregates_json(a, Map::new()));
        }
        if let Some(groups) = &self.aggregation_groups {
            m.insert("aggregation_groups".into(), groups.iter().map(group_json).collect());
        }
        Json::Object(m)
    }
}

/// The whole response body of a query request: the results (the
/// multi-query shape `{"results": [...]}` when `multi`), then `billing` and
/// `performance` from the read's typed figures.
pub fn query_response(multi: bool, answer: &QueryAnswer, server_total_ms: u64) -> Json {
    let mut v = if multi {
        json!({"results": answer.results.iter().map(QueryResult::to_json).collect::<Vec<_>>()})
    } else {
        answer.results.first().map(QueryResult::to_json).unwrap_or_else(|| json!({"rows": []}))
    };
    let returned = serde_json::to_vec(&v).map_or(0, |b| b.len());
    v["billing"] = json!({
        "billable_logical_bytes_queried": answer.logical_bytes,
        "billable_logical_bytes_returned": returned,
    });
    v["performance"] = json!({
        "approx_namespace_size": answer.approx_rows,
        "cache_hit_ratio": answer.temperature.hit_ratio,
        "cache_temperature": answer.temperature.level,
        "exhaustive_search_count": answer.results.iter().map(|r| r.scanned).sum::<u64>(),
        "query_execution_ms": u64::try_from(answer.execution.as_millis()).unwrap_or(u64::MAX),
        "server_total_ms": server_total_ms,
    });
    if let Some(e) = &answer.embedding {
        v["performance"]["embedding_ms"] = json!(e.ms_ceil());
        v["performance"]["embedding_tokens"] = json!(e.tokens);
    }
    if let Some(r) = &answer.rerank {
        v["performance"]["rerank_ms"] = json!(r.ms_ceil());
        v["performance"]["rerank_tokens"] = json!(r.tokens);
    }
    v
}

/// A row: the document as written (`id`, vector, attributes), its vectors (`vector` and
/// the named ones) in the requested encoding, its computed attributes, then `$dist` when scored.
pub fn row_json(r: &Row, enc: VectorEncoding) -> Json {
    let mut row = r.doc.to_json();
    if let (Json::Object(m), VectorEncoding::Base64) = (&mut row, enc) {
        if let Some(v) = &r.doc.vector {
            m.insert(VECTOR_ATTR.into(), encode_vector(v, enc));
        }
        for (k, v) in &r.doc.attrs {
            if let crate::model::Value::Dense(d) = v {
                m.insert(k.clone(), encode_vector(d, enc));
            }
        }
    }
    if let Json::Object(m) = &mut row {
        super::compute::insert_computed(m, &r.computed);
    }
    if let (Json::Object(m), Some(d)) = (&mut row, r.dist) {
        m.insert(DIST_ATTR.into(), json!(d));
    }
    row
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

fn aggregates_json(values: &[(String, AggregateValue)], mut into: Map<String, Json>) -> Json {
    for (name, v) in values {
        let v = match *v {
            AggregateValue::Count(n) => json!(n),
            AggregateValue::Int(i) => json!(i),
            AggregateValue::Float(f) => json!(f),
        };
        into.insert(name.clone(), v);
    }
    Json::Object(into)
}

fn group_json(g: &AggregateGroup) -> Json {
    let key = g.key.iter().map(|(name, v)| (name.clone(), v.as_ref().map_or(Json::Null, Value::to_json)));
    aggregates_json(&g.values, key.collect())
}

/// Parse a `_debug/recall` body.
pub fn parse_recall(body: &Json) -> Result<RecallRequest, QueryError> {
    let mut req = RecallRequest::default();
    let Some(obj) = body.as_object() else { return Ok(req) };
    for (k, v) in obj {
        match k.as_str() {
            "num" if v.is_null() => {}
            "num" => {
                req.num = v
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| invalid("num must be between 1 and 1000"))?
            }
            "top_k" => req.top_k = parse_limit(v, "top_k")?.0,
            "filters" if v.is_null() => {}
            "filters" => req.filters = Some(Filter::parse(v).map_err(|e| invalid(format!("filters: {e}")))?),
            "rank_by" if v.is_null() => {}
            "rank_by" => match parse_rank_by(v)? {
                RankBy::Scored(Rank::Vector { query, .. }) => req.query_vector = Some(query),
                _ => return Err(invalid("recall's rank_by must be [\"vector\", \"ANN\", [..]]")),
            },
            "include_ground_truth" => req.include_ground_truth = v.as_bool().unwrap_or(false),
            other => return Err(invalid(format!("unknown recall parameter {other:?}"))),
        }
    }
    Ok(req)
}

/// The `_debug/recall` response body.
pub fn recall_json(r: &RecallReport) -> Json {
    let segments: Vec<Json> = r
        .segments
        .iter()
        .map(|s| {
            json!({
                "segment": s.segment, "rows": s.rows, "path": s.path, "effort": s.effort,
                "rerank": s.rerank, "target_recall": s.target, "calibrated_recall": s.measured_recall,
                "calibration_queries": s.sampled, "exact_fallback": s.exact_fallback,
            })
        })
        .collect();
    let mut out = json!({
        "avg_recall": r.avg_recall,
        "avg_ann_count": r.avg_ann_count,
        "avg_exhaustive_count": r.avg_exhaustive_count,
        "segments": segments,
    });
    if let Some(truth) = &r.ground_truth {
        let truth = truth
            .iter()
            .map(|t| {
                let nn: Vec<Json> = t
                    .nearest
                    .iter()
                    .map(|(id, dist, v)| {
                        let mut m = Map::new();
                        m.insert(ID_ATTR.into(), id.to_json());
                        m.insert(DIST_ATTR.into(), json!(f64::from(*dist)));
                        if let Some(v) = v {
                            m.insert(VECTOR_ATTR.into(), encode_vector(v, VectorEncoding::Float));
                        }
                        Json::Object(m)
                    })
                    .collect();
                json!({"query_vector": encode_vector(&t.query_vector, VectorEncoding::Float), "nearest_neighbors": nn})
            })
            .collect();
        out["ground_truth"] = Json::Array(truth);
    }
    out
}

/// Parse a query body. `multi_hint` is set by `?stainless_overload=multiQuery`;
/// a body with `queries` is a multi-query either way.
pub fn parse_request(body: &Json, multi_hint: bool) -> Result<QueryRequest, QueryError> {
    let obj = body.as_object().ok_or_else(|| invalid("query body must be a JSON object"))?;
    if multi_hint || obj.contains_key("queries") {
        return parse_multi(obj);
    }
    let consistency = obj.get("consistency");
    let strong = parse_consistency(consistency)?;
    let (query, rerank_by) = parse_query_parts(obj, VectorEncoding::Float)?;
    let rerank_model = match rerank_by {
        Some(v) => Some(parse_model_rerank(v, None)?),
        None => None,
    };
    if let Some(r) = &rerank_model {
        check_rerank_projection(&query, r)?;
    }
    let strong_demanded = names_strong(consistency);
    let disable_cache = parse_disable_cache(obj.get("disable_cache"))?;
    Ok(QueryRequest {
        strong,
        strong_demanded,
        multi: false,
        queries: vec![query],
        rerank: None,
        rerank_model,
        disable_cache,
    })
}

pub(crate) fn parse_multi(obj: &Map<String, Json>) -> Result<QueryRequest, QueryError> {
    let mut enc = VectorEncoding::Float;
    let mut queries_json = None;
    let (mut rerank_json, mut limit, mut offset) = (None, None, None);
    for (k, v) in obj {
        match k.as_str() {
            "queries" => queries_json = Some(v),
            "consistency" | "disable_cache" => {}
            "vector_encoding" => enc = parse_encoding(v)?,
            "rerank_by" if v.is_null() => {}
            "rerank_by" => rerank_json = Some(v),
            "limit" | "top_k" => limit = Some(parse_limit(v, k)?.0),
            "offset" => offset = Some(parse_offset(v)?),
            other => return Err(invalid(format!("unknown multi-query parameter {other:?}"))),
        }
    }
    let mut rerank_model = None;
    let rerank = match rerank_json {
        Some(v) if v.is_object() => {
            rerank_model =
                Some(parse_model_rerank(v, Some((offset.unwrap_or(0), limit.unwrap_or(DEFAULT_LIMIT))))?);
            None
        }
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
    if let Some(r) = &rerank_model {
        for (i, q) in queries.iter().enumerate() {
            check_rerank_projection(q, r).map_err(|e| prefix_error(e, &format!("queries[{i}]")))?;
        }
    }
    if let Some(r) = &rerank {
        if !r.weights.is_empty() && r.weights.len() != queries.len() {
            return Err(invalid("rerank_by RRF weights must have one weight per subquery"));
        }
        let unranked = |q: &Json| q.get("rank_by").is_none_or(Json::is_null);
        if items.iter().any(unranked) {
            return Err(invalid("with rerank_by every subquery needs rank_by"));
        }
    }
    let consistency = obj.get("consistency");
    let strong = parse_consistency(consistency)?;
    // The read is one for the whole request: any subquery that asks for it.
    let mut disable_cache = parse_disable_cache(obj.get("disable_cache"))?;
    for q in items {
        disable_cache |= parse_disable_cache(q.get("disable_cache"))?;
    }
    let strong_demanded = names_strong(consistency);
    Ok(QueryRequest { strong, strong_demanded, multi: true, queries, rerank, rerank_model, disable_cache })
}

/// `rerank_by: {"attribute", "model", "query"}` (all three strings, nothing else).
fn parse_model_rerank(v: &Json, page: Option<(usize, usize)>) -> Result<ModelRerank, QueryError> {
    let o = v.as_object().ok_or_else(|| {
        unsupported(
            "rerank_by takes {\"attribute\", \"model\", \"query\"} (or [\"RRF\", ..] in a multi-query)",
        )
    })?;
    let field = |name: &str| -> Result<String, QueryError> {
        o.get(name)
            .and_then(Json::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("rerank_by.{name} must be a non-empty string")))
    };
    let r =
        ModelRerank { attribute: field("attribute")?, model: field("model")?, query: field("query")?, page };
    if let Some(k) = o.keys().find(|k| !matches!(k.as_str(), "attribute" | "model" | "query")) {
        return Err(invalid(format!("rerank_by takes attribute, model and query, not {k:?}")));
    }
    Ok(r)
}

/// The reranked attribute must be among the attributes a query returns (turbopuffer's rule).
fn check_rerank_projection(q: &Query, r: &ModelRerank) -> Result<(), QueryError> {
    if q.rank.is_none() && q.order.is_none() {
        return Err(invalid("rerank_by reranks the rows a query ranks: it needs rank_by"));
    }
    if !q.projection.wants(&r.attribute) {
        return Err(invalid(format!(
            "rerank_by scores attribute {:?}: include it in include_attributes",
            r.attribute
        )));
    }
    Ok(())
}

/// `disable_cache`: a bool (absent or `null`: false).
fn parse_disable_cache(v: Option<&Json>) -> Result<bool, QueryError> {
    match v {
        None | Some(Json::Null) => Ok(false),
        Some(v) => v.as_bool().ok_or_else(|| invalid("disable_cache must be a bool")),
    }
}

/// Whether `consistency` names `{"level": "strong"}` (not strong by default).
fn names_strong(consistency: Option<&Json>) -> bool {
    consistency.and_then(|c| c.get("level")).and_then(Json::as_str) == Some("strong")
}

pub(crate) fn parse_consistency(v: Option<&Json>) -> Result<bool, QueryError> {
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

pub(crate) fn parse_encoding(v: &Json) -> Result<VectorEncoding, QueryError> {
    match v.as_str() {
        Some("float") => Ok(VectorEncoding::Float),
        Some("base64") => Ok(VectorEncoding::Base64),
        _ if v.is_null() => Ok(VectorEncoding::Float),
        _ => Err(invalid("vector_encoding must be \"float\" or \"base64\"")),
    }
}

#[derive(Default)]
pub(crate) struct RawQuery<'a> {
    pub(crate) rank_by: Option<&'a Json>,
    pub(crate) top_k: Option<(usize, Option<PerLimit>)>,
    pub(crate) limit: Option<(usize, Option<PerLimit>)>,
    pub(crate) offset: Option<usize>,
    pub(crate) include: Option<&'a Json>,
    pub(crate) exclude: Option<&'a Json>,
    pub(crate) rerank_by: Option<&'a Json>,
}

/// Parse one query object (a single query or one subquery).
pub(crate) fn parse_query(obj: &Map<String, Json>, default_enc: VectorEncoding) -> Result<Query, QueryError> {
    match parse_query_parts(obj, default_enc)? {
        (_, Some(_)) => Err(invalid("rerank_by belongs to the whole request, not to a subquery")),
        (q, None) => Ok(q),
    }
}

/// One query object and its `rerank_by`, which only a single query's body may hold.
fn parse_query_parts(
    obj: &Map<String, Json>,
    default_enc: VectorEncoding,
) -> Result<(Query, Option<&Json>), QueryError> {
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
        ann_target: None,
        embed: None,
        compute: Vec::new(),
    };
    for (k, v) in obj {
        parse_key(&mut q, &mut raw, k, v)?;
    }
    match raw.rank_by.filter(|v| !v.is_null()).map(parse_rank_by).transpose()? {
        Some(RankBy::Order(o)) => q.order = Some(o),
        Some(RankBy::Scored(r)) => q.rank = Some(r),
        Some(RankBy::Embed { attr, exact, text }) => {
            q.rank = Some(Rank::NamedVector { attr, exact, query: Vec::new() });
            q.embed = Some(text);
        }
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
        // A lookup (`{"filters": ["id", "In", [..]], "limit": N}`, what
        // langchain's get_by_ids sends): the matching documents by id ascending.
        q.order = Some(vec![OrderKey { attr: ID_ATTR.to_owned(), dir: Direction::Asc }]);
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
    Ok((q, raw.rerank_by.filter(|v| !v.is_null())))
}

/// `offset`: a non-negative integer up to [`MAX_OFFSET`] (it sizes the
/// candidate set a ranked query keeps: `offset + limit`).
fn parse_offset(v: &Json) -> Result<usize, QueryError> {
    match v.as_u64() {
        Some(n) if n <= MAX_OFFSET as u64 => Ok(n as usize),
        Some(n) => Err(invalid(format!(
            "offset must be at most {MAX_OFFSET}, got {n}; page deeper with a filter on the last id instead"
        ))),
        None => Err(invalid("offset must be a non-negative integer")),
    }
}

pub(crate) fn parse_key<'a>(
    q: &mut Query,
    raw: &mut RawQuery<'a>,
    k: &str,
    v: &'a Json,
) -> Result<(), QueryError> {
    match k {
        "filters" if v.is_null() => {}
        "filters" => {
            q.filters = Some(Filter::parse(v).map_err(|e| invalid(format!("filters: {e}")))?);
            q.id_lower = id_lower_bound(v);
        }
        "rank_by" => raw.rank_by = Some(v),
        "top_k" => raw.top_k = Some(parse_limit(v, "top_k")?),
        "limit" => raw.limit = Some(parse_limit(v, "limit")?),
        "offset" => raw.offset = Some(parse_offset(v)?),
        "include_attributes" => raw.include = Some(v),
        "exclude_attributes" => raw.exclude = Some(v),
        "vector_encoding" => q.vector_encoding = parse_encoding(v)?,
        "consistency" => {
            parse_consistency(Some(v))?;
        }
        "disable_cache" => {
            parse_disable_cache(Some(v))?;
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
        "ann" => q.ann_target = parse_ann(v)?,
        "compute_attributes" => q.compute = super::compute::parse_compute_attributes(v)?,
        "rerank_by" => raw.rerank_by = Some(v),
        other => return Err(invalid(format!("unknown query parameter {other:?}"))),
    }
    Ok(())
}

pub(crate) fn parse_limit(v: &Json, key: &str) -> Result<(usize, Option<PerLimit>), QueryError> {
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

pub(crate) fn parse_per(v: &Json, key: &str) -> Result<PerLimit, QueryError> {
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

pub(crate) fn parse_rerank(
    v: &Json,
    limit: Option<usize>,
    offset: Option<usize>,
) -> Result<Rerank, QueryError> {
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

pub(crate) fn string_list(v: &Json, key: &str) -> Result<Vec<String>, QueryError> {
    let items =
        v.as_array().ok_or_else(|| invalid(format!("{key} must be true, false or a list of names")))?;
    items
        .iter()
        .map(|i| {
            i.as_str().map(str::to_owned).ok_or_else(|| invalid(format!("{key} must list attribute names")))
        })
        .collect()
}

pub(crate) fn parse_projection(
    include: Option<&Json>,
    exclude: Option<&Json>,
) -> Result<Projection, QueryError> {
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

pub(crate) fn parse_aggregates(v: &Json) -> Result<Vec<(String, Aggregate)>, QueryError> {
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

/// `ann` (tidepool extension): `{"target_recall": 0.5..=1.0}`, the recall@10 an `ANN`
/// ranking targets (see `query::vector::target_recall`).
fn parse_ann(v: &Json) -> Result<Option<f32>, QueryError> {
    let Some(m) = v.as_object() else {
        return Err(invalid("ann must be an object like {\"target_recall\": 0.9}"));
    };
    let mut target = None;
    for (k, val) in m {
        match k.as_str() {
            "target_recall" => {
                target = Some(crate::schema::parse_target_recall(val, "ann.target_recall").map_err(invalid)?)
            }
            other => return Err(invalid(format!("ann has an unknown key {other:?}"))),
        }
    }
    Ok(target)
}

pub(crate) fn parse_group_by(v: &Json) -> Result<Vec<GroupKey>, QueryError> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    let bad = || {
        invalid("group_by must be a list of attribute names or {\"name\": [\"ForEachUnique\", attr]} objects")
    };
    let items = v.as_array().ok_or_else(bad)?;
    let mut keys: Vec<GroupKey> = Vec::with_capacity(items.len());
    for item in items {
        let key = match item {
            Json::String(s) => GroupKey::attr(s),
            Json::Object(o) if o.len() == 1 => {
                let (name, f) = o.iter().next().ok_or_else(bad)?;
                match f.as_array().map(Vec::as_slice) {
                    Some([Json::String(op), Json::String(attr)]) if op == "ForEachUnique" => {
                        GroupKey { name: name.clone(), attr: attr.clone(), each_unique: true }
                    }
                    _ => {
                        return Err(invalid(format!(
                            "group_by.{name} must be [\"ForEachUnique\", attr] (the only group_by function)"
                        )))
                    }
                }
            }
            _ => return Err(bad()),
        };
        if keys.iter().any(|k| k.name == key.name) {
            return Err(invalid(format!("group_by names {:?} twice", key.name)));
        }
        keys.push(key);
    }
    Ok(keys)
}

/// The lower id bound a filter implies: `["id","Gt"|"Gte"|"Eq",v]`, alone or
/// as a conjunct of a top-level `And`. `bool` = inclusive.
pub(crate) fn id_lower_bound(f: &Json) -> Option<(DocId, bool)> {
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parse_request;

    /// (strong, strong_demanded) of a body.
    fn consistency(body: serde_json::Value, multi: bool) -> (bool, bool) {
        let r = parse_request(&body, multi).unwrap();
        (r.strong, r.strong_demanded)
    }

    #[test]
    fn only_a_named_strong_level_is_demanded() {
        let q = json!({"rank_by": ["id", "asc"]});
        assert_eq!(consistency(q.clone(), false), (true, false));
        let with = |c| {
            let mut b = q.clone();
            b["consistency"] = c;
            b
        };
        assert_eq!(consistency(with(json!({})), false), (true, false));
        assert_eq!(consistency(with(json!(null)), false), (true, false));
        assert_eq!(consistency(with(json!({"level": "strong"})), false), (true, true));
        assert_eq!(consistency(with(json!({"level": "eventual"})), false), (false, false));
        let multi = json!({"queries": [q], "consistency": {"level": "strong"}});
        assert_eq!(consistency(multi, true), (true, true));
        assert_eq!(consistency(json!({"queries": [{"rank_by": ["id", "asc"]}]}), true), (true, false));
    }
}
