//! Corpus statistics and BM25 weights (Lucene/tantivy formula). Invariant: scores depend
//! only on the corpus statistics passed in, so every segment of a namespace scores on the
//! same scale.

use super::*;

/// Global BM25 statistics of one attribute for one query: N, the token total and
/// the document frequency of each query term, summed over every segment
/// (deleted rows included, as tantivy does until a merge) and the unindexed rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CorpusStats {
    /// Documents (rows) covered: the `N` of the idf.
    pub num_docs: u64,
    /// Tokens over all covered rows (avgdl = total_tokens / num_docs).
    pub total_tokens: u64,
    /// Documents containing each term (only the query's terms need be present).
    pub doc_freq: BTreeMap<String, u64>,
    /// Documents holding a term that starts with each prefix (prefix pseudo-terms,
    /// `index_prefixes`; kept apart from `doc_freq`: a prefix is not a term).
    pub prefix_doc_freq: BTreeMap<String, u64>,
}

impl CorpusStats {
    /// Adds one segment's index: its N, token total and the df of `terms`.
    pub fn add_index(&mut self, index: &TextIndex<'_>, terms: &[String]) {
        self.add_sizes(index);
        for (t, _) in term_counts(terms) {
            self.add_doc_freq(t, u64::from(index.doc_freq(t)));
        }
    }

    fn add_sizes(&mut self, index: &TextIndex<'_>) {
        self.num_docs += index.num_docs();
        self.total_tokens += index.total_tokens();
    }

    fn add_doc_freq(&mut self, term: &str, df: u64) {
        // Keyed once: every segment after the first adds to the entry without a new String.
        match self.doc_freq.get_mut(term) {
            Some(n) => *n += df,
            None => {
                self.doc_freq.insert(term.to_owned(), df);
            }
        }
    }

    /// [`Self::add_index`] for terms already looked up in `index`: `found[i]` is `distinct[i]`'s
    /// entry ([`TextIndex::lookup`]; distinct terms, as [`term_counts`] lists them).
    pub fn add_found(&mut self, index: &TextIndex<'_>, distinct: &[String], found: &[Option<TermEntry>]) {
        self.add_sizes(index);
        for (t, e) in distinct.iter().zip(found) {
            self.add_doc_freq(t, u64::from(e.map_or(0, |e| e.doc_freq)));
        }
    }

    /// Adds one unindexed document given its tokens.
    /// Linear in tokens plus terms (a set of the row's tokens, not a scan per term).
    pub fn add_document_tokens<S: AsRef<str>>(&mut self, tokens: &[S], terms: &[String]) {
        self.num_docs += 1;
        self.total_tokens += tokens.len() as u64;
        let present: HashSet<&str> = tokens.iter().map(AsRef::as_ref).collect();
        let mut counted: HashSet<&str> = HashSet::with_capacity(terms.len());
        for t in terms.iter().map(String::as_str) {
            if present.contains(t) && counted.insert(t) {
                *self.doc_freq.entry(t.to_owned()).or_default() += 1;
            }
        }
    }

    /// Adds one segment's document frequency of the prefix pseudo-term `prefix`
    /// (its N and token total come from [`Self::add_index`]).
    pub fn add_index_prefix(&mut self, index: &TextIndex<'_>, prefix: &str) {
        *self.prefix_doc_freq.entry(prefix.to_owned()).or_default() +=
            u64::from(index.prefix_doc_freq(prefix));
    }

    /// Adds unindexed documents, analyzing each text.
    pub fn add_documents<'d>(
        &mut self,
        analyzer: &Analyzer,
        docs: impl IntoIterator<Item = &'d str>,
        terms: &[String],
    ) {
        for d in docs {
            let toks = analyzer.tokens(d);
            self.add_document_tokens(&toks, terms);
        }
    }

    /// Sums another partial statistic into this one.
    pub fn merge(&mut self, other: &CorpusStats) {
        self.num_docs += other.num_docs;
        self.total_tokens += other.total_tokens;
        for (t, n) in &other.doc_freq {
            *self.doc_freq.entry(t.clone()).or_default() += n;
        }
        for (p, n) in &other.prefix_doc_freq {
            *self.prefix_doc_freq.entry(p.clone()).or_default() += n;
        }
    }

    /// The average document length, as tantivy computes it (f32 division).
    pub fn avgdl(&self) -> f32 {
        if self.num_docs == 0 {
            return 1.0;
        }
        let a = self.total_tokens as f32 / self.num_docs as f32;
        if a > 0.0 {
            a
        } else {
            1.0
        }
    }

    /// The BM25 weight of `term` occurring `count` times in the query.
    pub fn weight(&self, term: &str, count: u32, params: Bm25Params) -> Bm25Weight {
        let df = self.doc_freq.get(term).copied().unwrap_or(0);
        let w = Bm25Weight::new(df, self.num_docs, params);
        Bm25Weight { weight: w.weight * count as f32 }
    }

    /// The BM25 weight of the prefix pseudo-term `prefix` (it occurs once in a query).
    pub fn prefix_weight(&self, prefix: &str, params: Bm25Params) -> Bm25Weight {
        let df = self.prefix_doc_freq.get(prefix).copied().unwrap_or(0);
        Bm25Weight::new(df, self.num_docs, params)
    }

    /// Per-fieldnorm-id normaliser table for this attribute.
    pub fn norm_cache(&self, params: Bm25Params) -> NormCache {
        NormCache::recent(self.avgdl(), params)
    }
}

/// BM25 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Params {
    /// Term-frequency saturation.
    pub k1: f32,
    /// Length normalisation.
    pub b: f32,
}

impl Default for Bm25Params {
    fn default() -> Self {
        Bm25Params { k1: 1.2, b: 0.75 }
    }
}

impl Bm25Params {
    /// The parameters of a schema's full-text options.
    pub fn from_options(opts: &FullTextSearch) -> Self {
        Bm25Params { k1: opts.k1 as f32, b: opts.b as f32 }
    }
}

/// `cache[id] = k1 · (1 − b + b · fieldnorm(id) / avgdl)` (tantivy's tf cache).
#[derive(Clone, Debug)]
pub struct NormCache(std::sync::Arc<[f32; 256]>);

/// Tables [`NormCache::recent`] built last on this thread, with their `(avgdl, k1, b)` bits.
type RecentCaches = [Option<([u32; 3], NormCache)>; RECENT_CACHES];

/// How many tables [`NormCache::recent`] keeps per thread (a query's fields, each searched in
/// every segment).
const RECENT_CACHES: usize = 4;

thread_local! {
    static RECENT: std::cell::RefCell<RecentCaches> = const { std::cell::RefCell::new([const { None }; RECENT_CACHES]) };
}

impl NormCache {
    /// [`NormCache::new`], shared with the last tables built on this thread for the same inputs
    /// (a query builds one per field in each segment: 256 divisions each time).
    pub fn recent(avgdl: f32, p: Bm25Params) -> Self {
        let key = [avgdl.to_bits(), p.k1.to_bits(), p.b.to_bits()];
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            if let Some((_, c)) = r.iter().flatten().find(|(k, _)| *k == key) {
                return c.clone();
            }
            let c = NormCache::new(avgdl, p);
            r.rotate_right(1);
            r[0] = Some((key, c.clone()));
            c
        })
    }

    /// Builds the table.
    pub fn new(avgdl: f32, p: Bm25Params) -> Self {
        let mut c = [0f32; 256];
        for (id, v) in c.iter_mut().enumerate() {
            *v = p.k1 * (1.0 - p.b + p.b * FIELD_NORMS_TABLE[id] as f32 / avgdl);
        }
        NormCache(std::sync::Arc::new(c))
    }
}

/// The idf-dependent part of a term's score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25Weight {
    /// `idf · (1 + k1)`.
    pub weight: f32,
}

/// tantivy's idf: `ln(1 + (N − n + 0.5) / (n + 0.5))`, in f32.
pub fn idf(doc_freq: u64, num_docs: u64) -> f32 {
    let n = doc_freq.min(num_docs);
    let x = ((num_docs - n) as f32 + 0.5) / (n as f32 + 0.5);
    (1.0 + x).ln()
}

impl Bm25Weight {
    /// The weight of a term with `doc_freq` among `num_docs`.
    pub fn new(doc_freq: u64, num_docs: u64, p: Bm25Params) -> Self {
        Bm25Weight { weight: idf(doc_freq, num_docs) * (1.0 + p.k1) }
    }

    /// The score of one occurrence count in a row of fieldnorm `norm_id`.
    #[inline]
    pub fn score(&self, cache: &NormCache, norm_id: u8, tf: u32) -> f32 {
        let tf = tf as f32;
        self.weight * (tf / (tf + cache.0[norm_id as usize]))
    }
}

/// At most this many terms are counted without a hash map ([`term_counts`]).
const SHORT_QUERY: usize = 16;

/// [`term_counts`] without its vector: the same `(term, count)` pairs in the same order. A short
/// query's terms are compared directly, allocating nothing (the rare-word search walks them per
/// segment and field); a longer one goes through [`term_counts`].
pub fn term_counts_iter(terms: &[String]) -> TermCounts<'_> {
    let long = (terms.len() > SHORT_QUERY).then(|| term_counts(terms).into_iter());
    TermCounts { terms, next: 0, long }
}

/// The iterator of [`term_counts_iter`].
pub struct TermCounts<'t> {
    terms: &'t [String],
    next: usize,
    long: Option<std::vec::IntoIter<(&'t str, u32)>>,
}

impl<'t> Iterator for TermCounts<'t> {
    type Item = (&'t str, u32);

    fn next(&mut self) -> Option<(&'t str, u32)> {
        if let Some(long) = self.long.as_mut() {
            return long.next();
        }
        while let Some(t) = self.terms.get(self.next) {
            let (seen, rest) = self.terms.split_at(self.next);
            self.next += 1;
            if !seen.contains(t) {
                let count = rest.iter().filter(|u| *u == t).count();
                return Some((t.as_str(), u32::try_from(count).unwrap_or(u32::MAX)));
            }
        }
        None
    }
}

/// Distinct terms with their multiplicity, in order of first occurrence.
/// Linear: a hash map finds a term's slot (a query may carry thousands); a short query's terms
/// are compared directly (called per segment per field: the map cost more than the search of a
/// rare word).
pub fn term_counts(terms: &[String]) -> Vec<(&str, u32)> {
    let mut out: Vec<(&str, u32)> = Vec::with_capacity(terms.len());
    if terms.len() <= SHORT_QUERY {
        for t in terms {
            match out.iter_mut().find(|(d, _)| *d == t.as_str()) {
                Some(d) => d.1 += 1,
                None => out.push((t.as_str(), 1)),
            }
        }
        return out;
    }
    let mut slot: HashMap<&str, usize> = HashMap::with_capacity(terms.len());
    for t in terms {
        match slot.get(t.as_str()) {
            Some(&i) => out[i].1 += 1,
            None => {
                slot.insert(t.as_str(), out.len());
                out.push((t.as_str(), 1));
            }
        }
    }
    out
}
