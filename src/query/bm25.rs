//! BM25 full-text ranking (`Sum`/`Max`/`Product` expressions, prefixes),
//! and the tokens of attribute values that indexing shares.
//!
//! Invariant: statistics (N, avgdl, df) are those of the live documents,
//! wherever they live, so scores do not depend on where a row is stored.

use super::*;
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
}

/// Per-leaf (fieldnorm id, per-distinct-term counts) of one row.
pub(super) struct RowTf {
    pub(super) norms: Vec<u8>,
    pub(super) tfs: Vec<Vec<u32>>,
}

impl RowTf {
    pub(super) fn new(leaves: &[Leaf]) -> Self {
        RowTf {
            norms: vec![0; leaves.len()],
            tfs: leaves.iter().map(|l| vec![0; l.distinct.len()]).collect(),
        }
    }

    pub(super) fn any_hit(&self) -> bool {
        self.tfs.iter().flatten().any(|t| *t > 0)
    }

    /// From a decoded document: tokens per leaf attribute.
    pub(super) fn of_doc(leaves: &[Leaf], d: &Document) -> Self {
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
pub(super) fn eval(node: &Node, boost: f32, leaves: &[Leaf], rt: &RowTf) -> f32 {
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
pub(super) fn linear(node: &Node, boost: f32, out: &mut Vec<(usize, f32)>) -> bool {
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

pub(super) fn compile(
    e: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    leaves: &mut Vec<Leaf>,
) -> Result<Node, QueryError> {
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
pub(super) fn text_stats(
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
pub(super) fn text_hits(
    q: &Query,
    expr: &TextExpr,
    state: &NsState,
    views: &[SegView<'_>],
    k: usize,
) -> Result<(Vec<Hit>, u64), QueryError> {
    let mut leaves = Vec::new();
    let root = compile(expr, state, views, &mut leaves)?;
    let mut flat = Vec::new();
    let is_linear = linear(&root, 1.0, &mut flat);
    let mut hits = Vec::new();
    let mut exhaustive = 0u64;
    let corrupt = |e: crate::index::IndexError| QueryError::Corrupted(format!("text index: {e}"));
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
