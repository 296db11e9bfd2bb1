//! BM25 full-text ranking (`Sum`/`Max`/`Product` expressions, prefixes),
//! the rank combinators over them (`Attribute`, `Saturate`, `Decay`, `Dist`,
//! filters as 1/0 terms), and the tokens of attribute values that indexing
//! shares.
//!
//! `last_as_prefix` has two meanings, chosen by the attribute's schema (never
//! by where a row lives): without `index_prefixes` the last token expands into
//! at most [`MAX_PREFIX_EXPANSIONS`] dictionary terms, each scored as a term;
//! with it the last token is one prefix pseudo-term (`Leaf::prefix`): tf = the
//! row's tokens starting with it, df = live rows holding one, every such row
//! matched (`index::text` prefix postings on indexed segments, a token scan on
//! unindexed segment rows, the overlay's index or a token scan of it, the
//! same numbers either way).
//!
//! The overlay (WAL rows) is read through its inverted index
//! (`bm25_overlay.rs` over `state::text`) when every clause's attribute is
//! indexed under its current options, else scanned row by row; both give the
//! same statistics, rows and scores.
//!
//! Invariants:
//! - Which rows rank: those matching at least one BM25 clause of the
//!   expression; an expression without BM25 clauses ranks every row that
//!   passes the filters. Combinators are computed in f64 from the row's
//!   attributes and leave pure BM25 expressions (and their f32 order of
//!   operations) untouched.
//! - Statistics (N, avgdl, df) are those of the live documents, wherever
//!   they live, so scores do not depend on where a row is stored.
//! - Work on the overlay follows the postings of the query's terms when
//!   its index serves every clause (`bm25_overlay.rs`); elsewhere it is
//!   linear in the query and the rows: a clause has at most
//!   [`MAX_BM25_TERMS`] distinct terms (checked before any row is read), a
//!   row's tokens are counted in a hash map and each term looked up (no
//!   scan per term), and one pass over the rows gathers the statistics of
//!   every clause, analyzing each attribute of a row at most once per query
//!   whatever the number of `Sum`/`Max` children on it.
//! - Segments are searched (`bm25_search.rs`) largest first, spread over lent helper threads (`crate::fanout`)
//!   when their postings pay for one; each prunes below the k-th best score of the segments
//!   finished before it started, by whichever thread, so the best k are the one thread's
//!   (pruning drops only rows k others outscore).
//! - Long loops over rows stop once the query's deadline expired
//!   ([`deadline::expired`]); the caller then discards the result.

use super::bm25_overlay::{add_overlay_stats, overlay_index};
use super::*;
use crate::deadline;
use crate::index::text::value_tokens;

/// One BM25 clause, compiled against the namespace: analyzed terms and the
/// global statistics of its attribute over every live document.
pub(super) struct Leaf {
    pub(super) attr: String,
    pub(super) analyzer: Analyzer,
    pub(super) params: Bm25Params,
    /// Query terms with repeats (what `FieldQuery::terms` takes).
    pub(super) terms: Vec<String>,
    /// Distinct terms in first-occurrence order.
    pub(super) distinct: Vec<String>,
    /// Query term multiplicities, parallel to `distinct`.
    counts: Vec<u32>,
    /// The prefix pseudo-term (`last_as_prefix` under `index_prefixes`), scored
    /// after `distinct`: its tf and weight sit at index `distinct.len()`.
    pub(super) prefix: Option<String>,
    pub(super) stats: CorpusStats,
    pub(super) cache: NormCache,
    pub(super) weights: Vec<Bm25Weight>,
}

/// A compiled text expression over leaf indexes.
pub(super) enum Node {
    Leaf(usize),
    Sum(Vec<Node>),
    Max(Vec<Node>),
    Product(f32, Box<Node>),
    /// A numeric attribute of the row (0 when missing or not a number).
    Attribute(String),
    Saturate(Box<Node>, Curve),
    Decay(Box<Node>, Curve),
    Dist(Box<Node>, f64),
    /// 1 when the row matches the (canonicalized) filter, else 0.
    Filter(Filter),
}

impl Node {
    /// Whether evaluating reads the row's attributes (not only term counts).
    pub(super) fn reads_doc(&self) -> bool {
        match self {
            Node::Leaf(_) => false,
            Node::Attribute(_) | Node::Filter(_) => true,
            Node::Sum(c) | Node::Max(c) => c.iter().any(Node::reads_doc),
            Node::Product(_, e) | Node::Saturate(e, _) | Node::Decay(e, _) | Node::Dist(e, _) => {
                e.reads_doc()
            }
        }
    }
}

/// A numeric attribute value as f64 (bools as 0/1; anything else 0).
fn numeric_attr(doc: Option<&Document>, attr: &str) -> f64 {
    match doc.and_then(|d| d.attrs.get(attr)) {
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Float(f)) => *f,
        Some(Value::Bool(b)) => f64::from(u8::from(*b)),
        _ => 0.0,
    }
}

/// `x^e / (x^e + m^e)` over `x ≥ 0` (negative inputs count as 0): 0 at 0,
/// 0.5 at the midpoint, towards 1 beyond it.
pub(super) fn saturate(x: f64, c: Curve) -> f64 {
    let xe = x.max(0.0).powf(c.exponent);
    let me = c.midpoint.powf(c.exponent);
    if xe.is_infinite() {
        return 1.0;
    }
    // A midpoint so small that m^e underflows: 0 stays 0, anything above is saturated.
    let den = xe + me;
    if den == 0.0 {
        return 0.0;
    }
    xe / den
}

/// `m^e / (x^e + m^e)` over `x ≥ 0` (negative inputs count as 0): 1 at 0,
/// 0.5 at the midpoint, towards 0 beyond it.
pub(super) fn decay(x: f64, c: Curve) -> f64 {
    1.0 - saturate(x, c)
}

/// One attribute value analyzed once: its token count and per-token counts,
/// so each clause on the attribute looks its terms up instead of scanning.
pub(super) struct ValueTokens {
    len: usize,
    counts: HashMap<String, u32>,
}

impl ValueTokens {
    fn of(analyzer: &Analyzer, d: &Document, attr: &str) -> Self {
        let toks = d.attrs.get(attr).map(|v| value_tokens(analyzer, v)).unwrap_or_default();
        let len = toks.len();
        let mut counts = HashMap::with_capacity(len);
        for t in toks {
            *counts.entry(t).or_insert(0) += 1;
        }
        ValueTokens { len, counts }
    }

    fn tf(&self, term: &str) -> u32 {
        self.counts.get(term).copied().unwrap_or(0)
    }

    /// Tokens starting with `prefix` (bytewise, as the index's prefix postings count).
    fn prefix_tf(&self, prefix: &str) -> u32 {
        self.counts.iter().filter(|(t, _)| t.starts_with(prefix)).map(|(_, c)| *c).sum()
    }

    /// Per scoring unit of `leaf` (its distinct terms, then its prefix), the count in this value.
    fn unit_tfs<'l>(&'l self, leaf: &'l Leaf) -> impl Iterator<Item = u32> + 'l {
        let terms = leaf.distinct.iter().map(|t| self.tf(t));
        terms.chain(leaf.prefix.iter().map(|p| self.prefix_tf(p)))
    }
}

impl Leaf {
    /// Scoring units: the distinct terms, plus one for the prefix pseudo-term.
    pub(super) fn units(&self) -> usize {
        self.distinct.len() + usize::from(self.prefix.is_some())
    }
}

/// The analyzed values of one document, per attribute: a document is
/// tokenized once per query whatever the number of clauses on an attribute
/// (the analyzer is a function of the attribute's schema).
pub(super) struct DocTokens<'d> {
    doc: &'d Document,
    by_attr: Vec<(&'d str, ValueTokens)>,
}

impl<'d> DocTokens<'d> {
    pub(super) fn new(doc: &'d Document) -> Self {
        DocTokens { doc, by_attr: Vec::new() }
    }

    pub(super) fn of(&mut self, leaf: &'d Leaf) -> &ValueTokens {
        let i = match self.by_attr.iter().position(|(a, _)| *a == leaf.attr) {
            Some(i) => i,
            None => {
                self.by_attr
                    .push((leaf.attr.as_str(), ValueTokens::of(&leaf.analyzer, self.doc, &leaf.attr)));
                self.by_attr.len() - 1
            }
        };
        &self.by_attr[i].1
    }
}

/// Per-leaf (fieldnorm id, per-distinct-term counts) of one row.
#[derive(Clone)]
pub(super) struct RowTf {
    pub(super) norms: Vec<u8>,
    pub(super) tfs: Vec<Vec<u32>>,
}

impl RowTf {
    pub(super) fn new(leaves: &[Leaf]) -> Self {
        RowTf { norms: vec![0; leaves.len()], tfs: leaves.iter().map(|l| vec![0; l.units()]).collect() }
    }

    pub(super) fn any_hit(&self) -> bool {
        self.tfs.iter().flatten().any(|t| *t > 0)
    }

    /// From a decoded document: tokens per leaf attribute (each attribute
    /// analyzed once).
    pub(super) fn of_doc(leaves: &[Leaf], d: &Document) -> Self {
        let mut rt = RowTf::new(leaves);
        let mut toks = DocTokens::new(d);
        for (i, l) in leaves.iter().enumerate().take_while(|_| !deadline::expired()) {
            let vt = toks.of(l);
            rt.norms[i] = fieldnorm_to_id(u32::try_from(vt.len).unwrap_or(u32::MAX));
            for (slot, tf) in rt.tfs[i].iter_mut().zip(vt.unit_tfs(l)) {
                *slot = tf;
            }
        }
        rt
    }
}

/// The score of a row: a leaf is `Σ_terms boost · bm25` in term order (the
/// order and factors `text::search_fields` uses), `Sum` adds left to right,
/// `Max` takes the largest, `Product` scales the boost of its leaves.
/// The combinators (`Attribute`, `Saturate`, `Decay`, `Dist`, filters) are
/// computed in f64 from the row's document and scaled by the boost.
pub(super) fn eval(node: &Node, boost: f32, leaves: &[Leaf], rt: &RowTf, doc: Option<&Document>) -> f32 {
    let shaped = |x: f64| boost * x as f32;
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
                s += eval(n, boost, leaves, rt, doc);
            }
            s
        }
        Node::Max(c) => c.iter().map(|n| eval(n, boost, leaves, rt, doc)).fold(0f32, f32::max),
        Node::Product(w, e) => eval(e, boost * w, leaves, rt, doc),
        Node::Attribute(a) => shaped(numeric_attr(doc, a)),
        Node::Saturate(e, c) => shaped(saturate(f64::from(eval(e, 1.0, leaves, rt, doc)), *c)),
        Node::Decay(e, c) => shaped(decay(f64::from(eval(e, 1.0, leaves, rt, doc)), *c)),
        Node::Dist(e, v) => shaped((f64::from(eval(e, 1.0, leaves, rt, doc)) - v).abs()),
        Node::Filter(f) => shaped(f64::from(u8::from(doc.is_some_and(|d| f.matches(d, None))))),
    }
}

/// Flattens a `Sum`/`Product` tree of leaves with positive weights into
/// (leaf, boost) pairs; false when the expression is not such a sum.
pub(super) fn linear(node: &Node, boost: f32, out: &mut Vec<(usize, f32)>) -> bool {
    match node {
        Node::Leaf(i) => {
            out.push((*i, boost));
            true
        }
        Node::Sum(c) => c.iter().all(|n| linear(n, boost, out)),
        Node::Product(w, e) => *w > 0.0 && linear(e, boost * w, out),
        _ => false,
    }
}

/// A `Sum`/`Max`/`Product` tree of leaves with positive weights, over the parts
/// `search_fields_with` hands a row (one per scoring unit, leaf after leaf in the order
/// [`monotone`] flattened them): [`Shape::score`] gives the row's score with [`eval`]'s
/// operations in [`eval`]'s order, so a pruned `Max` scores bit for bit as the exhaustive one.
pub(super) enum Shape {
    /// One leaf's units: a sum in term order, from 0.
    Leaf(std::ops::Range<usize>),
    Sum(Vec<Shape>),
    Max(Vec<Shape>),
}

impl Shape {
    pub(super) fn score(&self, parts: &[f32]) -> f32 {
        match self {
            Shape::Leaf(r) => {
                let mut s = 0f32;
                for &x in &parts[r.clone()] {
                    s += x;
                }
                s
            }
            Shape::Sum(c) => {
                let mut s = 0f32;
                for n in c {
                    s += n.score(parts);
                }
                s
            }
            Shape::Max(c) => c.iter().map(|n| n.score(parts)).fold(0f32, f32::max),
        }
    }
}

/// Flattens a `Sum`/`Max`/`Product` tree of leaves with positive weights into (leaf,
/// boost) pairs and its [`Shape`] (`units` counts the parts flattened so far); None when the
/// expression holds anything else. Its score rises with each part and is at most their sum
/// (parts are never negative), which the pruned search needs of it.
pub(super) fn monotone(
    node: &Node,
    boost: f32,
    leaves: &[Leaf],
    out: &mut Vec<(usize, f32)>,
    units: &mut usize,
) -> Option<Shape> {
    let all = |c: &[Node], out: &mut Vec<(usize, f32)>, units: &mut usize| {
        c.iter().map(|n| monotone(n, boost, leaves, out, units)).collect::<Option<Vec<_>>>()
    };
    match node {
        Node::Leaf(i) => {
            out.push((*i, boost));
            let start = *units;
            *units += leaves[*i].units();
            Some(Shape::Leaf(start..*units))
        }
        Node::Sum(c) => Some(Shape::Sum(all(c, out, units)?)),
        Node::Max(c) => Some(Shape::Max(all(c, out, units)?)),
        Node::Product(w, e) if *w > 0.0 => monotone(e, boost * w, leaves, out, units),
        _ => None,
    }
}

/// Compiles an expression: its leaves' terms, then (one pass over the
/// documents for all leaves) their statistics and weights.
pub(super) fn compile(
    e: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    leaves: &mut Vec<Leaf>,
) -> Result<Node, QueryError> {
    Ok(compile_looked_up(e, state, views, leaves)?.0)
}

/// One leaf's index in one segment, with the leaf's distinct terms looked up in it: found once
/// per query, by the statistics pass, for the search too.
#[derive(Clone)]
pub(super) struct SegLeaf<'a> {
    pub(super) ix: TextIndex<'a>,
    pub(super) found: Vec<Option<TermEntry>>,
}

/// Per view, per leaf: the leaf's [`SegLeaf`] there (None: its attribute is unindexed there).
pub(super) type Lookups<'a> = Vec<Vec<Option<SegLeaf<'a>>>>;

/// [`compile`], also returning the term lookups of every indexed segment.
pub(super) fn compile_looked_up<'a>(
    e: &TextExpr,
    state: &NsState,
    views: &[SegView<'a>],
    leaves: &mut Vec<Leaf>,
) -> Result<(Node, Lookups<'a>), QueryError> {
    let root = compile_terms(e, state, views, leaves)?;
    let lookups = fill_stats(leaves, state, views);
    for l in leaves.iter_mut() {
        l.weights = l.distinct.iter().zip(&l.counts).map(|(t, c)| l.stats.weight(t, *c, l.params)).collect();
        if let Some(p) = &l.prefix {
            l.weights.push(l.stats.prefix_weight(p, l.params));
        }
        l.cache = l.stats.norm_cache(l.params);
    }
    Ok((root, lookups))
}

fn compile_terms(
    e: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    leaves: &mut Vec<Leaf>,
) -> Result<Node, QueryError> {
    let all = |c: &[TextExpr], leaves: &mut Vec<Leaf>| {
        c.iter().map(|x| compile_terms(x, state, views, leaves)).collect::<Result<Vec<_>, _>>()
    };
    Ok(match e {
        TextExpr::Sum(c) => Node::Sum(all(c, leaves)?),
        TextExpr::Max(c) => Node::Max(all(c, leaves)?),
        TextExpr::Product(w, x) => Node::Product(*w, Box::new(compile_terms(x, state, views, leaves)?)),
        TextExpr::Bm25 { attr, query, last_as_prefix } => {
            leaves.push(leaf(attr, query, *last_as_prefix, state, views)?);
            Node::Leaf(leaves.len() - 1)
        }
        TextExpr::Attribute(a) => Node::Attribute(numeric_attribute(a, state)?),
        TextExpr::Saturate(x, c) => Node::Saturate(Box::new(compile_terms(x, state, views, leaves)?), *c),
        TextExpr::Decay(x, c) => Node::Decay(Box::new(compile_terms(x, state, views, leaves)?), *c),
        TextExpr::Dist(x, v) => Node::Dist(Box::new(compile_terms(x, state, views, leaves)?), *v),
        TextExpr::Filter(f) => Node::Filter(rank_filter(f, state)?),
    })
}

/// `["Attribute", a]` names a numeric (or bool) attribute, or one the
/// namespace does not know (then every row scores 0).
fn numeric_attribute(a: &str, state: &NsState) -> Result<String, QueryError> {
    match state.schema.get(a).map(|s| s.ty) {
        None
        | Some(AttrType::Scalar(ScalarType::Int | ScalarType::Uint | ScalarType::Float | ScalarType::Bool)) => {
            Ok(a.to_owned())
        }
        Some(_) if a == ID_ATTR => {
            Err(invalid("rank_by [\"Attribute\", \"id\"]: ids are not numbers to rank by"))
        }
        Some(_) => Err(invalid(format!("rank_by [\"Attribute\", {a:?}]: {a:?} is not a numeric attribute"))),
    }
}

/// A filter rank term, validated against the schema and with its literals
/// in stored (canonical) form, as the query's own filters are.
fn rank_filter(f: &Filter, state: &NsState) -> Result<Filter, QueryError> {
    f.validate(&state.schema).map_err(|e| invalid(format!("rank_by filter term: {e}")))?;
    let kind_of = |a: &str| crate::schema::canonical_kind(&state.schema, a);
    let canonical =
        f.with_canonical_literals(&kind_of).map_err(|e| invalid(format!("rank_by filter term: {e}")))?;
    Ok(canonical.unwrap_or_else(|| f.clone()))
}

/// One clause's analyzed terms (statistics still empty). At most
/// [`MAX_BM25_TERMS`] distinct terms: checked before any document is read.
fn leaf(
    attr: &str,
    query: &TextInput,
    last_as_prefix: bool,
    state: &NsState,
    views: &[SegView<'_>],
) -> Result<Leaf, QueryError> {
    let opts = state
        .schema
        .get(attr)
        .and_then(|s| s.full_text_search.as_ref())
        .ok_or_else(|| invalid(format!("rank_by BM25: attribute {attr:?} has no full_text_search")))?;
    let analyzer = Analyzer::new(opts);
    let mut terms = match query {
        // Its documents were split by the writer: a query must come split the same way.
        TextInput::Text(_) if analyzer.is_pre_tokenized() => {
            return Err(invalid(format!(
                "rank_by BM25: for rank_by field {attr:?}, expecting []string (its tokenizer is pre_tokenized_array: \
                 a query is an array of tokens), got a string"
            )))
        }
        TextInput::Text(t) => analyzer.query_terms(t),
        TextInput::Tokens(ts) => ts.iter().flat_map(|t| analyzer.tokens(t)).collect(),
    };
    let distinct_terms = term_counts(&terms).len();
    if distinct_terms > MAX_BM25_TERMS {
        return Err(invalid(format!(
            "BM25 query on {attr:?} has {distinct_terms} distinct terms; the limit is {MAX_BM25_TERMS} \
             distinct terms per BM25 clause"
        )));
    }
    let mut prefix = None;
    if last_as_prefix {
        if let Some(last) = terms.pop() {
            if opts.index_prefixes {
                prefix = Some(last);
            } else {
                terms.extend(expand_prefix(&last, attr, &analyzer, state, views));
            }
        }
    }
    let (distinct, counts) = term_counts(&terms).into_iter().map(|(t, c)| (t.to_owned(), c)).unzip();
    let params = Bm25Params::from_options(opts);
    let stats = CorpusStats::default();
    let cache = stats.norm_cache(params);
    Ok(Leaf {
        attr: attr.to_owned(),
        analyzer,
        params,
        terms,
        distinct,
        counts,
        prefix,
        stats,
        cache,
        weights: Vec::new(),
    })
}

/// The terms a prefix expands to, over every segment dictionary and the
/// unindexed rows (the same set for every segment, so scores stay global).
pub(super) fn expand_prefix(
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
                for r in (0..v.ls.seg.len()).filter(|r| v.live(*r)).take_while(|_| !deadline::expired()) {
                    if let Some(d) = v.attrs_doc(r) {
                        add(&d, &mut set);
                    }
                }
            }
        }
    }
    match state.overlay_text(attr) {
        // The index's terms are the live overlay rows' tokens: what the scan adds.
        Some(ix) => {
            set.extend(ix.terms_with_prefix(prefix, MAX_PREFIX_EXPANSIONS).into_iter().map(str::to_owned))
        }
        None => {
            for d in state.overlay().values().flatten().take_while(|_| !deadline::expired()) {
                add(d, &mut set);
            }
        }
    }
    if set.is_empty() {
        return vec![prefix.to_owned()];
    }
    set.into_iter().take(MAX_PREFIX_EXPANSIONS).collect()
}

/// BM25 statistics of every leaf's attribute over the live documents:
/// indexed segments minus their dead rows, unindexed segment rows and the
/// overlay. One pass over the rows for all leaves, each row decoded and
/// each of its attributes analyzed at most once.
fn fill_stats<'a>(leaves: &mut [Leaf], state: &NsState, views: &[SegView<'a>]) -> Lookups<'a> {
    let mut stats: Vec<CorpusStats> = vec![CorpusStats::default(); leaves.len()];
    let mut lookups = Vec::with_capacity(views.len());
    for v in views {
        let found: Vec<Option<SegLeaf<'a>>> = leaves
            .iter()
            .zip(stats.iter_mut())
            .map(|(l, st)| v.ls.text_index(&l.attr).map(|ix| add_index(st, l, ix)))
            .collect();
        let every_indexed = found.iter().all(Option::is_some);
        if every_indexed {
            lookups.push(found);
            // Every clause's index counted every row: only the dead rows (deleted, or shadowed
            // by the overlay) are taken back out, so visit them alone, not every row.
            remove_dead_rows(&mut stats, leaves, v);
            continue;
        }
        let indexed: Vec<bool> = found.iter().map(Option::is_some).collect();
        lookups.push(found);
        for r in (0..v.ls.seg.len()).take_while(|_| !deadline::expired()) {
            let live = v.live(r);
            // Live rows count where the attribute is unindexed; dead rows are
            // taken back out where the index counted them.
            let wanted = |i: usize| indexed[i] != live;
            if !(0..leaves.len()).any(wanted) {
                continue;
            }
            let Some(d) = v.attrs_doc(r) else { continue };
            let mut toks = DocTokens::new(&d);
            let due = leaves.iter().enumerate().filter(|(i, _)| wanted(*i));
            for (i, l) in due.take_while(|_| !deadline::expired()) {
                let vt = toks.of(l);
                if live {
                    add_row(&mut stats[i], l, vt);
                } else {
                    remove_row(&mut stats[i], l, vt);
                }
            }
        }
    }
    match overlay_index(leaves, state) {
        Some(ix) => add_overlay_stats(&mut stats, leaves, &ix),
        None => {
            for d in state.overlay().values().flatten().take_while(|_| !deadline::expired()) {
                let mut toks = DocTokens::new(d);
                for (st, l) in stats.iter_mut().zip(leaves.iter()).take_while(|_| !deadline::expired()) {
                    add_row(st, l, toks.of(l));
                }
            }
        }
    }
    for (l, st) in leaves.iter_mut().zip(stats) {
        l.stats = st;
    }
    lookups
}

/// Take the rows of `v` that are not live out of every clause's statistics (the indexes counted
/// them): O(dead rows), not O(rows).
fn remove_dead_rows(stats: &mut [CorpusStats], leaves: &[Leaf], v: &SegView<'_>) {
    // Listing the deleted rows walks the whole deletion bitmap: not when there are none.
    if v.ls.deleted.is_empty() && v.shadowed.is_empty() {
        return;
    }
    let dead: std::collections::BTreeSet<usize> =
        v.ls.deleted.iter().chain(v.shadowed.iter().copied()).collect();
    for r in dead.into_iter().take_while(|_| !deadline::expired()) {
        let Some(d) = v.attrs_doc(r) else { continue };
        let mut toks = DocTokens::new(&d);
        for (st, l) in stats.iter_mut().zip(leaves.iter()).take_while(|_| !deadline::expired()) {
            remove_row(st, l, toks.of(l));
        }
    }
}

/// Adds a segment's index to a leaf's statistics; returns the leaf's terms looked up there.
fn add_index<'a>(st: &mut CorpusStats, l: &Leaf, ix: TextIndex<'a>) -> SegLeaf<'a> {
    let found: Vec<Option<TermEntry>> = l.distinct.iter().map(|t| ix.lookup(t)).collect();
    st.add_found(&ix, &l.distinct, &found);
    if let Some(p) = &l.prefix {
        st.add_index_prefix(&ix, p);
    }
    SegLeaf { ix, found }
}

fn add_row(st: &mut CorpusStats, l: &Leaf, vt: &ValueTokens) {
    st.num_docs += 1;
    st.total_tokens += vt.len as u64;
    for t in l.distinct.iter().filter(|t| vt.tf(t) > 0) {
        *st.doc_freq.entry(t.clone()).or_default() += 1;
    }
    if let Some(p) = l.prefix.as_ref().filter(|p| vt.prefix_tf(p) > 0) {
        *st.prefix_doc_freq.entry(p.clone()).or_default() += 1;
    }
}

fn remove_row(st: &mut CorpusStats, l: &Leaf, vt: &ValueTokens) {
    st.num_docs = st.num_docs.saturating_sub(1);
    st.total_tokens = st.total_tokens.saturating_sub(vt.len as u64);
    for t in l.distinct.iter().filter(|t| vt.tf(t) > 0) {
        if let Some(df) = st.doc_freq.get_mut(t) {
            *df = df.saturating_sub(1);
        }
    }
    if let Some(p) = l.prefix.as_ref().filter(|p| vt.prefix_tf(p) > 0) {
        if let Some(df) = st.prefix_doc_freq.get_mut(p) {
            *df = df.saturating_sub(1);
        }
    }
}
