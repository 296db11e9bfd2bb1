//! Query evaluation over one engine snapshot: filters, attribute ordering,
//! scored ranking (dense vectors `ANN`/`kNN`, `BM25` with `Sum`/`Max`/
//! `Product`, `SparseKNN`), paging, `limit.per` diversity, projections,
//! aggregations, multi-query with RRF fusion, `explain` plans and the
//! `_debug/recall` measurement.
//!
//! Invariants:
//! - Results are typed and complete: rows carry the projected document
//!   (the id always) and `$dist` for scored queries; nothing is rendered here.
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
//!   (WAL) rows are always searched and merged (read-your-writes, also under
//!   `eventual` consistency): exhaustively, except BM25, which reads the
//!   overlay's inverted index (`state::text`) when it is current.
//! - Scores do not depend on where a row lives: BM25 statistics (N, avgdl,
//!   df, and a prefix pseudo-term's df and tf under `index_prefixes`: counted
//!   from prefix postings, a term range or a token scan, the same numbers)
//!   are those of the live documents, whatever their segment or the WAL,
//!   and indexed and unindexed rows are scored by the same formula in the
//!   same order of f32 operations; sparse dot products likewise.
//!
//! Layout: this file holds the typed request/result types and the entry
//! points; `scan` filtering and attribute order, `rank` the shared
//! scored-ranking machinery with `vector`, `sparse` and `bm25` on top,
//! `aggregate`, `project` (which parts of a document a row carries), `fuse`,
//! `recall`, `explain`, and `error` ([`QueryError`]). Query reads [`NsState`]
//! and its [`SegmentReader`]s, never imports the engine, and speaks no JSON:
//! `wire::query` parses bodies into [`QueryRequest`]s and renders
//! [`QueryResult`]s.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use crate::filter::Filter;
use crate::format::segment::{SECTION_ANN_INDEX, SECTION_SPARSE_INDEX, SECTION_TEXT_INDEX};
use crate::index::text::{
    fieldnorm_to_id, term_counts, Analyzer, Bm25Params, Bm25Weight, Combine, CorpusStats, FieldQuery,
    NormCache, TermEntry, TextIndex, MAX_PREFIX_EXPANSIONS,
};
use crate::model::{DocId, Document, Value, ID_ATTR, VECTOR_ATTR};
use crate::schema::{AttrType, ScalarType};
use crate::state::{NsState, SegmentReader};

mod aggregate;
mod bm25;
mod bm25_overlay;
mod bm25_search;
mod compute;
mod error;
mod explain;
mod fuse;
mod highlight;
mod multi;
mod named;
mod project;
mod rank;
mod scan;
mod segment_depth;
mod sparse;
#[cfg(test)]
mod tests;
mod vector;

// The submodules are one unit split for size: their items are `pub(super)`
// and gathered here, and each submodule sees its siblings through
// `use super::*`.
use self::aggregate::*;
use self::bm25::*;
use self::bm25_search::text_hits;
use self::compute::{compute_rows, validate_compute};
pub use self::compute::{
    ComputeExpr, ComputedValue, FragmentBy, FragmentOffsets, Highlight, HighlightFragment, OffsetUnit,
    MAX_COMPUTED_ATTRIBUTES, MAX_FRAGMENT_LIMIT,
};
pub use self::error::QueryError;
use self::error::*;
pub use self::explain::explain;
pub use self::fuse::fuse;
use self::multi::*;
pub use self::multi::{multi_vectors_of_doc, multi_vectors_of_row};
use self::named::*;
pub use self::named::{named_vector_of_doc, named_vector_of_row};
use self::rank::*;
pub mod recall;
use self::project::*;
pub use self::recall::recall;
use self::scan::*;
use self::sparse::*;
use self::vector::*;

/// Rows returned when neither `top_k` nor `limit` is given.
pub const DEFAULT_LIMIT: usize = 10;
/// Largest page (`top_k`/`limit`).
pub const MAX_LIMIT: usize = 10_000;
/// Largest `offset` of a ranked query: a query keeps `offset + limit`
/// candidates, so both are bounded (deep paging filters on the last id).
pub const MAX_OFFSET: usize = 100_000;
/// Most subqueries of one multi-query.
pub const MAX_SUBQUERIES: usize = 16;
/// Most distinct terms (after analysis) of one BM25 clause.
pub const MAX_BM25_TERMS: usize = 1_024;
/// Most children of one `Sum` or `Max` rank expression.
pub const MAX_RANK_CHILDREN: usize = 32;
/// Most BM25 clauses in one rank expression (a tree of `Sum`/`Max` could
/// otherwise multiply [`MAX_RANK_CHILDREN`] level by level).
pub const MAX_RANK_CLAUSES: usize = 64;
/// Most dimensions of a `SparseKNN` query vector (turbopuffer's per-vector
/// limit).
pub const MAX_SPARSE_QUERY_KEYS: usize = 1_024;

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

impl Projection {
    /// Whether rows carry attribute `name` (the vector is [`VECTOR_ATTR`]).
    pub fn wants(&self, name: &str) -> bool {
        match self {
            Projection::IdOnly => false,
            Projection::All => true,
            Projection::Only(list) => list.iter().any(|n| n == name),
            Projection::AllExcept(list) => !list.iter().any(|n| n == name),
        }
    }

    /// Whether rows carry any attribute besides the id and the vector.
    pub fn wants_attributes(&self) -> bool {
        match self {
            Projection::IdOnly => false,
            Projection::Only(list) => list.iter().any(|n| n != VECTOR_ATTR && n != ID_ATTR),
            Projection::All | Projection::AllExcept(_) => true,
        }
    }
}

/// How returned vectors are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VectorEncoding {
    /// JSON floats.
    #[default]
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
    /// Group-by keys, in request order.
    pub group_by: Vec<GroupKey>,
    /// `ann.target_recall` (tidepool extension): the recall@10 an `ANN` ranking targets; None =
    /// the namespace's setting or the default.
    pub ann_target: Option<f32>,
    /// `compute_attributes`: values computed per returned row, in request order.
    pub compute: Vec<(String, ComputeExpr)>,
    /// `[attr, "ANN", ["Embed", text, {model}]]`: the ranking's query vector is this text's
    /// embedding. The rank is then a [`Rank::NamedVector`] with an empty query vector until the
    /// engine embeds the text and names the vector attribute (`engine/embed_query.rs`).
    pub embed: Option<EmbedText>,
}

/// A text a local model embeds into a query vector (`["Embed", text, {"model": ..}]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedText {
    /// The text.
    pub text: String,
    /// The model overriding the attribute's own (`embed` in its schema).
    pub model: Option<String>,
}

/// A parsed query request (single or multi).
#[derive(Debug, Clone)]
pub struct QueryRequest {
    /// Strong (default) or eventual consistency.
    pub strong: bool,
    /// Whether the caller named `strong` itself (`{"level": "strong"}`), rather
    /// than taking it by default: only such a read refuses a stale answer.
    pub strong_demanded: bool,
    /// Whether the response is the multi-query shape (`results`).
    pub multi: bool,
    /// The queries (one for a single query).
    pub queries: Vec<Query>,
    /// Multi-query fusion (`rerank_by: ["RRF", ...]`).
    pub rerank: Option<Rerank>,
    /// `rerank_by: {attribute, model, query}`: the rows reordered by a local model's scores
    /// (`engine/rerank.rs`); in a multi-query, the subqueries' rows together.
    pub rerank_model: Option<ModelRerank>,
    /// `disable_cache`: answer without using or filling the caches where
    /// the read can (`engine::ReadOptions::disable_cache`).
    pub disable_cache: bool,
}

impl QueryRequest {
    /// One strong query (strong by default, not demanded), single-query shaped.
    pub fn single(query: Query) -> Self {
        QueryRequest {
            strong: true,
            strong_demanded: false,
            multi: false,
            queries: vec![query],
            rerank: None,
            rerank_model: None,
            disable_cache: false,
        }
    }
}

/// The result of one query, typed: the wire layer renders it.
#[derive(Debug, Clone, Default)]
pub struct QueryResult {
    /// Rows (None for an aggregate-only query).
    pub rows: Option<Vec<Row>>,
    /// How the rows' vectors are to be encoded.
    pub vector_encoding: VectorEncoding,
    /// Ungrouped aggregates, in request order.
    pub aggregations: Option<Vec<(String, AggregateValue)>>,
    /// Grouped aggregates, ordered by group key.
    pub aggregation_groups: Option<Vec<AggregateGroup>>,
    /// Documents examined.
    pub scanned: u64,
}

/// One returned row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The document holding only what the projection asked for (the id
    /// always; the stored document itself, shared, when everything is).
    pub doc: Arc<Document>,
    /// `$dist`: the distance, score or fused score (scored queries only).
    pub dist: Option<f64>,
    /// The query's `compute_attributes`, in request order.
    pub computed: Vec<(String, ComputedValue)>,
}

/// The value of one aggregate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateValue {
    /// A count.
    Count(u64),
    /// A sum of integers that fits in an i64.
    Int(i64),
    /// Any other sum.
    Float(f64),
}

/// Most group keys one document may yield: `ForEachUnique` keys multiply
/// (a document with 100 tags under two such keys would yield 10,000).
pub const MAX_GROUP_KEYS_PER_DOC: usize = 4_096;

/// One `group_by` key: a plain attribute (`"cat"`), or
/// `{"name": ["ForEachUnique", attr]}`, which puts a document in one group per
/// distinct value of its (array) attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKey {
    /// The key's name in each group of the response.
    pub name: String,
    /// The attribute whose value the key takes.
    pub attr: String,
    /// `ForEachUnique`: one group per distinct element (a scalar is one element).
    pub each_unique: bool,
}

impl GroupKey {
    /// A plain attribute key (its name is the attribute's).
    pub fn attr(attr: &str) -> Self {
        GroupKey { name: attr.to_owned(), attr: attr.to_owned(), each_unique: false }
    }
}

/// One `group_by` group.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateGroup {
    /// Group-by attribute names and this group's values (None: missing).
    pub key: Vec<(String, Option<Value>)>,
    /// The aggregates over the group, in request order.
    pub values: Vec<(String, AggregateValue)>,
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
    /// `[attr, "ANN"|"kNN", [f32..]]` on a named vector attribute (any `[N]f32`/`[N]f16`
    /// attribute but `vector`): smallest distance first, in the attribute's metric.
    NamedVector {
        /// The vector attribute.
        attr: String,
        /// Exact (`kNN`) rather than approximate (`ANN`).
        exact: bool,
        /// The query vector.
        query: Vec<f32>,
    },
    /// `[attr, "ANN"|"kNN", [[f32..], ..]]` on a multi-vector (late interaction) attribute:
    /// smallest `Σ_q min_d dist(q, d)` first, in the attribute's metric.
    MultiVector {
        /// The vector array attribute.
        attr: String,
        /// Exact (`kNN`) rather than approximate (`ANN`, the MUVERA index).
        exact: bool,
        /// The query vectors.
        queries: Vec<Vec<f32>>,
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
    /// `["Attribute", name]`: a numeric attribute's value (0 when missing).
    Attribute(String),
    /// `["Saturate", expr, {midpoint, exponent}]`: `x^e / (x^e + m^e)`.
    Saturate(Box<TextExpr>, Curve),
    /// `["Decay", expr, {midpoint, exponent}]`: `m^e / (x^e + m^e)`.
    Decay(Box<TextExpr>, Curve),
    /// `["Dist", expr, value]`: `|expr - value|`.
    Dist(Box<TextExpr>, f64),
    /// A filter used as a rank term: 1 when the row matches, else 0.
    Filter(Filter),
}

/// The shape of a `Saturate` or `Decay` curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    /// Where the curve is 0.5 (positive).
    pub midpoint: f64,
    /// Steepness (positive; default 1).
    pub exponent: f64,
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

/// `rerank_by: {"attribute", "model", "query"}`: rows reordered by a model's score of
/// (`query`, the row's `attribute`), highest first; `$dist` becomes that score.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRerank {
    /// The string attribute scored (it must be among the returned attributes).
    pub attribute: String,
    /// The configured model (a cross-encoder, or an embedding model: cosine).
    pub model: String,
    /// The text each row is scored against.
    pub query: String,
    /// A multi-query's top-level (`offset`, `limit`) over the merged rows (a single query
    /// keeps its own rows: `None`).
    pub page: Option<(usize, usize)>,
}

/// The row attribute carrying a vector distance or a score.
pub const DIST_ATTR: &str = "$dist";
// ----- execution -------------------------------------------------------------

/// Run one query on a state.
pub fn execute(q: &Query, state: &NsState) -> Result<QueryResult, QueryError> {
    // Uuid and datetime literals in canonical spelling, as those attributes
    // are stored: the attribute index and the scan then agree whatever case,
    // offset or precision was sent.
    // In a uuid namespace, `id` literals are uuids in any spelling.
    let uuid_ids = state.id_type == Some(crate::model::IdType::Uuid);
    let kind_of = |a: &str| match a {
        ID_ATTR if uuid_ids => Some(ScalarType::Uuid),
        _ => crate::schema::canonical_kind(&state.schema, a),
    };
    let canonical = match &q.filters {
        Some(f) => {
            f.with_canonical_literals(&kind_of).map_err(|e| QueryError::InvalidInput(e.to_string()))?
        }
        None => None,
    };
    let with_canonical;
    let q = match canonical {
        Some(f) => {
            with_canonical = Query { filters: Some(f), ..q.clone() };
            &with_canonical
        }
        None => q,
    };
    validate(q, state)?;
    validate_compute(q, state)?;
    let mut result = QueryResult { vector_encoding: q.vector_encoding, ..QueryResult::default() };
    let scored = if let Some(rank) = &q.rank {
        let (docs, exhaustive) = ranked_docs(q, rank, state)?;
        result.scanned = exhaustive;
        Some(docs.into_iter().map(|(d, score)| (d, Some(f64::from(score)))).collect::<Vec<_>>())
    } else if let Some(order) = &q.order {
        let (docs, scanned) = top_docs(q, order, state);
        result.scanned = scanned;
        Some(docs.into_iter().map(|d| (d, None)).collect())
    } else {
        None
    };
    if let Some(docs) = scored {
        // Computed values read the whole document; the projection applies after.
        let mut computed = compute_rows(q, state, docs.iter().map(|(d, _)| &**d))?.into_iter();
        let row = |(d, dist): (Arc<Document>, Option<f64>)| Row {
            doc: project(d, &q.projection),
            dist,
            computed: computed.next().unwrap_or_default(),
        };
        result.rows = Some(docs.into_iter().map(row).collect());
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
            result.aggregation_groups = Some(aggregate_groups(q, matching)?);
        }
        result.scanned = result.scanned.max(scanned);
    }
    Ok(result)
}

/// Run a whole request on one state: each query, then the fusion if any.
pub fn execute_request(req: &QueryRequest, state: &NsState) -> Result<Vec<QueryResult>, QueryError> {
    let results = req.queries.iter().map(|q| execute(q, state)).collect::<Result<Vec<_>, _>>()?;
    Ok(match &req.rerank {
        Some(r) => vec![fuse(r, &results)],
        None => results,
    })
}
