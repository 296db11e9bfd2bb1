//! `compute_attributes`: values computed for each returned row — a vector
//! distance (`VectorDist`), highlighted fragments of a full-text attribute
//! (`Highlight`, see `highlight`), or a rank expression's value.
//!
//! Invariants:
//! - Values are computed on the whole stored document after the page is
//!   chosen and before the projection, so they never depend on
//!   `include_attributes`; they never change which rows a query returns.
//! - A rank expression's value for a row is the score that ranking by it
//!   would give the row: the same compiled statistics (N, avgdl, df of the
//!   live documents) and the same evaluation (`bm25::eval`).
//! - `VectorDist` is the `$dist` a `kNN` ranking reports (the same metric and
//!   kernel); a row without a vector gets `Null`.
//! - Which vector an attribute name denotes, and under which metric, is
//!   decided in one place: [`vector_attr`].
//! - A computed name never shadows a stored attribute, `id`, `vector` or
//!   `$dist` (a 400 naming `compute_attributes.<name>`); at most
//!   [`MAX_COMPUTED_ATTRIBUTES`] per query.

use super::highlight::{fragment_ranges, term_spans, to_unit};
use super::*;
use crate::index::vector::distance::{distance, Metric};

/// Most `compute_attributes` of one query (each may cost a pass over the
/// namespace's BM25 statistics).
pub const MAX_COMPUTED_ATTRIBUTES: usize = 8;

/// Most fragments one `Highlight` returns per row.
pub const MAX_FRAGMENT_LIMIT: usize = 100;

/// One `compute_attributes` expression.
#[derive(Debug, Clone, PartialEq)]
pub enum ComputeExpr {
    /// `[attr, "VectorDist", [f32..]]`: the row's distance to `query`.
    VectorDist {
        /// The vector attribute.
        attr: String,
        /// The vector to measure from.
        query: Vec<f32>,
        /// `[attr, "VectorDist", ["Embed", text]]`: `query` is this text's embedding, which the
        /// engine computes (and names the vector attribute) before evaluation.
        embed: Option<EmbedText>,
    },
    /// `["Embed", text, {model}]`: the text's embedding, the same for every row (`vector` is
    /// filled by the engine before evaluation).
    Embed {
        /// The text and the model override.
        text: EmbedText,
        /// Its embedding.
        vector: Vec<f32>,
    },
    /// `["Highlight", attr, {..}]`.
    Highlight(Highlight),
    /// A rank expression (BM25 and its combinators) as a value.
    Rank(TextExpr),
}

impl ComputeExpr {
    /// Whether computing reads the row's `vector`.
    pub fn reads_vector(&self) -> bool {
        matches!(self, ComputeExpr::VectorDist { attr, .. } if attr == VECTOR_ATTR)
    }

    /// Whether computing reads one of the row's named vector attributes
    /// (which are decoded with its attributes).
    pub fn reads_named_vector(&self) -> bool {
        matches!(self, ComputeExpr::VectorDist { attr, .. } if attr != VECTOR_ATTR)
    }

    /// Whether computing reads the row's attributes.
    pub fn reads_attributes(&self) -> bool {
        !self.reads_vector() && !matches!(self, ComputeExpr::Embed { .. })
    }
}

/// `["Highlight", attr, {fragment_by, fragment_limit, include_offsets, rank_fragments_by}]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Highlight {
    /// The full-text attribute.
    pub attr: String,
    /// How the text is cut into fragments.
    pub fragment_by: FragmentBy,
    /// Most fragments returned (default 3).
    pub fragment_limit: usize,
    /// Report offsets in this unit (None: no offsets).
    pub include_offsets: Option<OffsetUnit>,
    /// Ranks fragments and supplies the terms (None: the query's `rank_by`).
    pub rank_fragments_by: Option<TextExpr>,
}

/// `fragment_by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FragmentBy {
    /// The whole value is one fragment.
    None,
    /// Unicode (UAX #29) sentences.
    Sentence,
    /// Runs of non-blank lines.
    Paragraph,
    /// Each matching word alone.
    Word,
}

/// `include_offsets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetUnit {
    /// UTF-8 bytes.
    Utf8,
    /// UTF-16 code units (JavaScript string indices).
    Utf16,
    /// Unicode scalar values (Python string indices).
    Codepoints,
}

/// A computed value of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum ComputedValue {
    /// Nothing to compute from (no vector, no text).
    Null,
    /// A distance or score.
    Number(f64),
    /// Highlighted fragments, best first.
    Fragments(Vec<HighlightFragment>),
    /// A vector (`Embed`).
    Vector(Arc<[f32]>),
}

/// One highlighted fragment.
#[derive(Debug, Clone, PartialEq)]
pub struct HighlightFragment {
    /// The fragment's text.
    pub text: String,
    /// The words that matched a query term, in text order.
    pub highlights: Vec<String>,
    /// For a string-array attribute, the element the fragment is from.
    pub element: Option<usize>,
    /// Offsets in the requested unit (`include_offsets` only).
    pub offsets: Option<FragmentOffsets>,
}

/// A fragment's offsets in the requested unit, relative to the attribute
/// value (the element of an array).
#[derive(Debug, Clone, PartialEq)]
pub struct FragmentOffsets {
    /// Where the fragment starts.
    pub start: usize,
    /// Where it ends (exclusive).
    pub end: usize,
    /// Each highlight's `(start, end)`, parallel to `highlights`.
    pub highlights: Vec<(usize, usize)>,
}

/// A vector attribute as queries see it: its metric and dimension. The one
/// place that maps an attribute name to a row's vector ([`vector_attr`] and
/// [`VectorAttr::of`]).
pub(super) struct VectorAttr {
    /// A named vector attribute (None: the reserved `vector`).
    pub(super) named: Option<String>,
    pub(super) metric: Metric,
    pub(super) dim: Option<usize>,
}

impl VectorAttr {
    /// The row's vector for this attribute (None: the row has none).
    pub(super) fn of<'d>(&self, doc: &'d Document) -> Option<&'d [f32]> {
        let v = match &self.named {
            None => doc.vector.as_deref(),
            Some(attr) => named_vector_of_doc(doc, attr),
        };
        v.filter(|v| self.dim.is_none_or(|d| v.len() == d))
    }
}

/// The vector attribute named `attr`: `vector` (the namespace's metric), or
/// a named vector attribute (its own metric, as a ranking by it uses).
pub(super) fn vector_attr(state: &NsState, attr: &str) -> Result<VectorAttr, QueryError> {
    if attr != VECTOR_ATTR {
        let named =
            named_attr(state, attr).map_err(|_| invalid(format!("{attr:?} is not a vector attribute")))?;
        return Ok(VectorAttr { named: Some(attr.to_owned()), metric: named.metric, dim: Some(named.dim) });
    }
    Ok(VectorAttr {
        named: None,
        metric: state.distance_metric.unwrap_or(Metric::CosineDistance),
        dim: state.vector_dim.map(|d| d as usize),
    })
}

/// Checks each computed attribute against the namespace, errors naming
/// `compute_attributes.<name>`.
pub(super) fn validate_compute(q: &Query, state: &NsState) -> Result<(), QueryError> {
    for (name, e) in &q.compute {
        validate_one(q, state, name, e).map_err(|err| named(err, name))?;
    }
    Ok(())
}

fn named(e: QueryError, name: &str) -> QueryError {
    match e {
        QueryError::InvalidInput(m) => invalid(format!("compute_attributes.{name}: {m}")),
        other => other,
    }
}

fn validate_one(q: &Query, state: &NsState, name: &str, e: &ComputeExpr) -> Result<(), QueryError> {
    if state.schema.contains_key(name) {
        return Err(invalid(format!(
            "the name {name:?} is a stored attribute of this namespace; a computed attribute needs a name of its own"
        )));
    }
    match e {
        ComputeExpr::VectorDist { embed: Some(_), .. } | ComputeExpr::Embed { .. }
            if matches!(e, ComputeExpr::Embed { vector, .. } if vector.is_empty())
                || matches!(e, ComputeExpr::VectorDist { query, .. } if query.is_empty()) =>
        {
            Err(QueryError::Internal("an Embed expression reached evaluation unembedded".into()))
        }
        ComputeExpr::Embed { .. } => Ok(()),
        ComputeExpr::VectorDist { attr, query, .. } => {
            let va = vector_attr(state, attr)?;
            match va.dim {
                Some(d) if d != query.len() => Err(invalid(format!(
                    "VectorDist: the vector has {} dimensions, {attr:?} has {d}",
                    query.len()
                ))),
                _ => Ok(()),
            }
        }
        ComputeExpr::Highlight(h) => {
            let fts = state.schema.get(&h.attr).and_then(|s| s.full_text_search.as_ref());
            if fts.is_none() {
                return Err(invalid(format!("Highlight: attribute {:?} has no full_text_search", h.attr)));
            }
            let terms = highlight_terms_expr(q, h)?;
            if !has_clause_on(terms, &h.attr) {
                return Err(invalid(format!(
                    "Highlight on {:?}: rank_fragments_by (or the query's rank_by) needs a BM25 clause on {:?}",
                    h.attr, h.attr
                )));
            }
            Ok(())
        }
        ComputeExpr::Rank(_) => Ok(()),
    }
}

/// The expression whose BM25 clauses on the attribute give the terms.
fn highlight_terms_expr<'q>(q: &'q Query, h: &'q Highlight) -> Result<&'q TextExpr, QueryError> {
    match (&h.rank_fragments_by, &q.rank) {
        (Some(e), _) | (None, Some(Rank::Text(e))) => Ok(e),
        _ => Err(invalid(format!(
            "Highlight on {:?} needs query terms: give rank_fragments_by, or rank_by a BM25 expression",
            h.attr
        ))),
    }
}

fn has_clause_on(e: &TextExpr, attr: &str) -> bool {
    match e {
        TextExpr::Bm25 { attr: a, .. } => a == attr,
        TextExpr::Sum(c) | TextExpr::Max(c) => c.iter().any(|x| has_clause_on(x, attr)),
        TextExpr::Product(_, x) | TextExpr::Saturate(x, _) | TextExpr::Decay(x, _) | TextExpr::Dist(x, _) => {
            has_clause_on(x, attr)
        }
        TextExpr::Attribute(_) | TextExpr::Filter(_) => false,
    }
}

/// A compiled rank expression: its leaves (with global statistics) and root.
struct Compiled {
    leaves: Vec<Leaf>,
    root: Node,
}

impl Compiled {
    fn new(e: &TextExpr, state: &NsState, views: &[SegView<'_>]) -> Result<Self, QueryError> {
        let mut leaves = Vec::new();
        let root = compile(e, state, views, &mut leaves)?;
        Ok(Compiled { leaves, root })
    }

    /// The score ranking by this expression gives `doc`.
    fn score(&self, doc: &Document) -> f32 {
        let rt = RowTf::of_doc(&self.leaves, doc);
        eval(&self.root, 1.0, &self.leaves, &rt, Some(doc))
    }
}

/// One computed attribute, ready to evaluate row by row.
enum Plan<'q> {
    VectorDist(VectorAttr, &'q [f32]),
    Constant(ComputedValue),
    Rank(Compiled),
    Highlight(&'q Highlight, Compiled),
}

/// The computed attributes of each document, in `docs` order (empty when the
/// query computes none).
pub(super) fn compute_rows<'d>(
    q: &Query,
    state: &NsState,
    docs: impl Iterator<Item = &'d Document>,
) -> Result<Vec<Vec<(String, ComputedValue)>>, QueryError> {
    if q.compute.is_empty() {
        return Ok(Vec::new());
    }
    // Only rank expressions and highlights need statistics over the rows.
    let views =
        if q.compute.iter().any(|(_, e)| e.reads_attributes()) { seg_views(state, None) } else { Vec::new() };
    let plans = q
        .compute
        .iter()
        .map(|(name, e)| plan(q, state, &views, e).map_err(|err| named(err, name)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(docs
        .map(|d| q.compute.iter().zip(&plans).map(|((name, _), p)| (name.clone(), value(p, d))).collect())
        .collect())
}

fn plan<'q>(
    q: &'q Query,
    state: &NsState,
    views: &[SegView<'_>],
    e: &'q ComputeExpr,
) -> Result<Plan<'q>, QueryError> {
    Ok(match e {
        ComputeExpr::VectorDist { attr, query, .. } => Plan::VectorDist(vector_attr(state, attr)?, query),
        ComputeExpr::Embed { vector, .. } => Plan::Constant(ComputedValue::Vector(vector.as_slice().into())),
        ComputeExpr::Rank(x) => Plan::Rank(Compiled::new(x, state, views)?),
        ComputeExpr::Highlight(h) => {
            Plan::Highlight(h, Compiled::new(highlight_terms_expr(q, h)?, state, views)?)
        }
    })
}

fn value(p: &Plan<'_>, d: &Document) -> ComputedValue {
    match p {
        Plan::VectorDist(va, query) => match va.of(d) {
            Some(v) if v.len() == query.len() => {
                ComputedValue::Number(f64::from(distance(va.metric, query, v)))
            }
            _ => ComputedValue::Null,
        },
        Plan::Rank(c) => ComputedValue::Number(f64::from(c.score(d))),
        Plan::Constant(v) => v.clone(),
        Plan::Highlight(h, c) => highlight(h, c, d),
    }
}

/// The row's best fragments of `h.attr` (Null when the row has no text
/// there; an empty list when nothing matched).
fn highlight(h: &Highlight, c: &Compiled, d: &Document) -> ComputedValue {
    let texts: Vec<(Option<usize>, &str)> = match d.attrs.get(&h.attr) {
        Some(Value::Str(s)) => vec![(None, s.as_str())],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| if let Value::Str(s) = v { Some((Some(i), s.as_str())) } else { None })
            .collect(),
        _ => return ComputedValue::Null,
    };
    let on_attr: Vec<usize> = (0..c.leaves.len()).filter(|i| c.leaves[*i].attr == h.attr).collect();
    let Some(analyzer) = on_attr.first().map(|i| &c.leaves[*i].analyzer) else {
        return ComputedValue::Fragments(Vec::new());
    };
    let terms: HashSet<&str> =
        on_attr.iter().flat_map(|i| c.leaves[*i].distinct.iter().map(String::as_str)).collect();
    // The row's own term counts, analyzed once; each fragment replaces those of `attr`.
    let row_tf = RowTf::of_doc(&c.leaves, d);
    // (score, element, start byte, fragment)
    let mut found: Vec<(f32, usize, usize, HighlightFragment)> = Vec::new();
    for (element, text) in texts {
        let spans = term_spans(analyzer, text, &terms);
        for frag in fragment_ranges(text, h.fragment_by, &spans) {
            let inside: Vec<&std::ops::Range<usize>> =
                spans.iter().filter(|s| s.start >= frag.start && s.end <= frag.end).collect();
            if inside.is_empty() {
                continue;
            }
            let score = fragment_score(c, &row_tf, &on_attr, &text[frag.clone()], d);
            let offsets = h.include_offsets.map(|u| {
                let at = |b: usize| to_unit(text, b, u);
                FragmentOffsets {
                    start: at(frag.start),
                    end: at(frag.end),
                    highlights: inside.iter().map(|s| (at(s.start), at(s.end))).collect(),
                }
            });
            let fragment = HighlightFragment {
                text: text[frag.clone()].to_owned(),
                highlights: inside.iter().map(|s| text[(*s).clone()].to_owned()).collect(),
                element,
                offsets,
            };
            found.push((score, element.unwrap_or(0), frag.start, fragment));
        }
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    ComputedValue::Fragments(found.into_iter().take(h.fragment_limit).map(|f| f.3).collect())
}

/// The fragment scored by the expression as if it were the attribute's whole
/// text (the other attributes of the row as they are).
fn fragment_score(c: &Compiled, row_tf: &RowTf, on_attr: &[usize], fragment: &str, d: &Document) -> f32 {
    let mut rt = row_tf.clone();
    for &i in on_attr {
        let l = &c.leaves[i];
        let tokens = l.analyzer.tokens(fragment);
        rt.norms[i] = fieldnorm_to_id(u32::try_from(tokens.len()).unwrap_or(u32::MAX));
        for (j, t) in l.distinct.iter().enumerate() {
            rt.tfs[i][j] = u32::try_from(tokens.iter().filter(|x| *x == t).count()).unwrap_or(u32::MAX);
        }
    }
    eval(&c.root, 1.0, &c.leaves, &rt, Some(d))
}
