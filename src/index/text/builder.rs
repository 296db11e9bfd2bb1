//! Building a text index section: postings per term in blocks of 128 rows, bit-packed,
//! with per-block metas for block-max pruning, and under `index_prefixes` the prefix
//! dictionary (`prefixes.rs`). Invariant: the output is canonical for its input rows
//! (terms sorted bytewise, unique); without `index_prefixes` it is version 1, byte for
//! byte as before the prefix dictionary existed.

use super::*;

/// Accumulates rows, then writes the section bytes.
pub struct TextIndexBuilder {
    attr: String,
    analyzer: Analyzer,
    terms: HashMap<Box<str>, u32>,
    postings: Vec<Vec<(u32, u32)>>,
    norms: Vec<u8>,
    num_docs: u64,
    total_tokens: u64,
    doc_tf: HashMap<u32, u32>,
    /// Longest indexed prefix (chars); 0: no prefix dictionary (version 1).
    prefix_chars: u32,
}

impl TextIndexBuilder {
    /// A builder for attribute `attr` with the schema's options.
    pub fn new(attr: &str, opts: &FullTextSearch) -> Self {
        TextIndexBuilder {
            attr: attr.to_owned(),
            analyzer: Analyzer::new(opts),
            terms: HashMap::new(),
            postings: Vec::new(),
            norms: Vec::new(),
            num_docs: 0,
            total_tokens: 0,
            doc_tf: HashMap::new(),
            prefix_chars: if opts.index_prefixes { INDEXED_PREFIX_CHARS } else { 0 },
        }
    }

    /// Adds a row given its text (analyzed with the attribute's analyzer).
    /// Every row of the segment should be added (rows without the attribute as
    /// ""), so that N counts them as tantivy's `max_doc` does. A row may be added
    /// once.
    pub fn add(&mut self, row: u32, text: &str) {
        let mut toks: Vec<String> = Vec::new();
        self.analyzer.for_each_token(text, |t| toks.push(t.to_owned()));
        self.add_tokens(row, toks.iter().map(String::as_str));
    }

    /// Adds a row given its analyzed tokens (e.g. several values of a string
    /// array, or a `pre_tokenized_array` value).
    pub fn add_tokens<'t>(&mut self, row: u32, tokens: impl IntoIterator<Item = &'t str>) {
        self.doc_tf.clear();
        let mut len: u32 = 0;
        for t in tokens {
            len = len.saturating_add(1);
            let id = match self.terms.get(t) {
                Some(&id) => id,
                None => {
                    let id = self.postings.len() as u32;
                    self.terms.insert(t.into(), id);
                    self.postings.push(Vec::new());
                    id
                }
            };
            *self.doc_tf.entry(id).or_default() += 1;
        }
        for (&id, &tf) in &self.doc_tf {
            self.postings[id as usize].push((row, tf));
        }
        self.set_row_length(row, len);
    }

    /// Counts `row` (in N) with `len` tokens.
    pub(super) fn set_row_length(&mut self, row: u32, len: u32) {
        let r = row as usize;
        if self.norms.len() <= r {
            self.norms.resize(r + 1, 0);
        }
        self.norms[r] = fieldnorm_to_id(len);
        self.num_docs += 1;
        self.total_tokens += u64::from(len);
    }

    /// The postings list of `term`, created empty if new.
    pub(super) fn term_list(&mut self, term: &str) -> &mut Vec<(u32, u32)> {
        let id = match self.terms.get(term) {
            Some(&id) => id,
            None => {
                let id = self.postings.len() as u32;
                self.terms.insert(term.into(), id);
                self.postings.push(Vec::new());
                id
            }
        };
        &mut self.postings[id as usize]
    }

    /// The section bytes.
    pub fn finish(self) -> Vec<u8> {
        let mut terms: Vec<(Box<str>, u32)> = self.terms.into_iter().collect();
        terms.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut postings_in = self.postings;
        let mut term_offsets: Vec<u8> = Vec::with_capacity((terms.len() + 1) * 4);
        let mut term_bytes: Vec<u8> = Vec::new();
        let mut infos: Vec<u8> = Vec::with_capacity(terms.len() * TERM_INFO_LEN);
        let mut postings: Vec<u8> = Vec::new();
        term_offsets.extend_from_slice(&0u32.to_le_bytes());
        let bp = BitPacker4x::new();
        for (term, id) in &terms {
            term_bytes.extend_from_slice(term.as_bytes());
            term_offsets.extend_from_slice(&(term_bytes.len() as u32).to_le_bytes());
            let list = &mut postings_in[*id as usize];
            // A stable sort finds runs: carried lists are sorted runs one after another (one
            // per overlay chunk or merged segment), which it merges instead of sorting anew.
            list.sort_by_key(|p| p.0);
            list.dedup_by(|a, b| {
                if a.0 == b.0 {
                    b.1 += a.1;
                    true
                } else {
                    false
                }
            });
            let list = &*list;
            let start = postings.len();
            encode_postings(&bp, list, &self.norms, &mut postings);
            infos.extend_from_slice(&(start as u64).to_le_bytes());
            infos.extend_from_slice(&((postings.len() - start) as u32).to_le_bytes());
            infos.extend_from_slice(&(list.len() as u32).to_le_bytes());
        }
        let mut prefix_region = Vec::new();
        if self.prefix_chars > 0 {
            let keys: Vec<&str> = terms.iter().map(|(t, _)| &**t).collect();
            let lists: Vec<&[(u32, u32)]> =
                terms.iter().map(|(_, id)| &postings_in[*id as usize][..]).collect();
            write_prefix_region(&keys, &lists, &self.norms, self.prefix_chars, &mut prefix_region);
        }
        let (version, flags) =
            if self.prefix_chars > 0 { (VERSION_PREFIXES, FLAG_PREFIXES) } else { (VERSION, 0) };
        let attr = self.attr.as_bytes();
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + attr.len()
                + self.norms.len()
                + term_offsets.len()
                + infos.len()
                + term_bytes.len()
                + postings.len()
                + prefix_region.len()
                + 4,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&(attr.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.num_docs.to_le_bytes());
        out.extend_from_slice(&self.total_tokens.to_le_bytes());
        out.extend_from_slice(&(self.norms.len() as u32).to_le_bytes());
        out.extend_from_slice(&(terms.len() as u32).to_le_bytes());
        out.extend_from_slice(&(term_bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(&(postings.len() as u64).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(attr);
        out.extend_from_slice(&self.norms);
        out.extend_from_slice(&term_offsets);
        out.extend_from_slice(&infos);
        out.extend_from_slice(&term_bytes);
        out.extend_from_slice(&postings);
        out.extend_from_slice(&prefix_region);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

pub(super) fn put_vint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn encode_postings(bp: &BitPacker4x, list: &[(u32, u32)], norms: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let nblocks = list.len().div_ceil(BLOCK);
    out.resize(start + nblocks * META_LEN, 0);
    let mut prev_last = 0u32;
    let mut rows = [0u32; BLOCK];
    let mut tfs = [0u32; BLOCK];
    let mut packed = [0u8; BLOCK * 4];
    for (b, chunk) in list.chunks(BLOCK).enumerate() {
        let data_off = (out.len() - start) as u32;
        let mut max_tf = 0u32;
        let mut min_norm = u8::MAX;
        for (i, &(row, tf)) in chunk.iter().enumerate() {
            rows[i] = row;
            tfs[i] = tf - 1;
            max_tf = max_tf.max(tf);
            min_norm = min_norm.min(norms.get(row as usize).copied().unwrap_or(0));
        }
        let (mut doc_bits, mut tf_bits) = (0u8, 0u8);
        if chunk.len() == BLOCK {
            doc_bits = bp.num_bits_sorted(prev_last, &rows);
            let n = bp.compress_sorted(prev_last, &rows, &mut packed, doc_bits);
            out.extend_from_slice(&packed[..n]);
            tf_bits = bp.num_bits(&tfs);
            let n = bp.compress(&tfs, &mut packed, tf_bits);
            out.extend_from_slice(&packed[..n]);
        } else {
            let mut p = prev_last;
            for &(row, _) in chunk {
                put_vint(out, row - p);
                p = row;
            }
            for &(_, tf) in chunk {
                put_vint(out, tf - 1);
            }
        }
        let last = chunk[chunk.len() - 1].0;
        let m = start + b * META_LEN;
        out[m..m + 4].copy_from_slice(&last.to_le_bytes());
        out[m + 4..m + 8].copy_from_slice(&data_off.to_le_bytes());
        out[m + 8..m + 12].copy_from_slice(&max_tf.to_le_bytes());
        out[m + 12] = doc_bits;
        out[m + 13] = tf_bits;
        out[m + 14] = min_norm;
        out[m + 15] = chunk.len() as u8;
        prev_last = last;
    }
}

/// Builds the text index section of attribute `attr` from `(row, text)` pairs
/// (rows increasing; pass every row of the segment, "" when absent).
pub fn build<'d>(
    attr: &str,
    docs: impl IntoIterator<Item = (u32, &'d str)>,
    opts: &FullTextSearch,
) -> Vec<u8> {
    let mut b = TextIndexBuilder::new(attr, opts);
    for (row, text) in docs {
        b.add(row, text);
    }
    b.finish()
}
