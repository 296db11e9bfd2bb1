//! Rows taken into a new text section from an existing one without analysing them again
//! (a compaction merging segments, `engine/indexing.rs`): the source's postings are walked
//! term by term and the kept rows' entries renumbered into the builder.
//!
//! Invariants:
//! - The builder ends up in the state adding the same rows' tokens would leave it in, so
//!   [`TextIndexBuilder::finish`] writes the same bytes: a row's postings `(row, tf)` are the
//!   source's, its length is the sum of its tfs (every token counts once in one term's tf,
//!   and only kept tokens count in a length), a term enters the dictionary only with a kept
//!   row, and every carried row counts in `num_docs` (a row without tokens too).
//! - This is only sound when the source section was built with the analysis options the new
//!   one uses ([`analysis_key`]); the caller checks that, and analyses otherwise.
//! - A source that does not decode gives [`IndexError`]: the builder is then part-filled and
//!   must be dropped (the caller fails the build, as for a row it cannot decode).

use super::*;

/// A source row with no place in the output.
const DROPPED: u32 = u32::MAX;

/// The analysis options a section's tokens depend on, as one string: two sections built
/// under equal keys hold the same tokens for the same text (BM25's `k1`/`b` are scoring
/// parameters and `index_prefixes` only adds the prefix region built from the postings,
/// so neither is part of it). Stored per segment in the manifest (`SegmentRef::text_analysis`),
/// so the string never changes meaning: a new option gets a new field appended.
pub fn analysis_key(opts: &FullTextSearch) -> String {
    format!(
        "t={};l={};s={};sw={};cs={};af={};m={}",
        opts.tokenizer,
        opts.language,
        u8::from(opts.stemming),
        u8::from(opts.remove_stopwords),
        u8::from(opts.case_sensitive),
        u8::from(opts.ascii_folding),
        opts.max_token_length
    )
}

impl TextIndexBuilder {
    /// Adds rows of section `src` as the rows `(src_row, out_row)` of `rows` name them, from
    /// its postings instead of their text. Each output row is added once in all, by this or
    /// [`Self::add_tokens`]; `src` must hold every source row named (its `num_docs` = its rows).
    pub fn carry_rows(&mut self, src: &TextIndex<'_>, rows: &[(u32, u32)]) -> Result<(), IndexError> {
        let slots = slots_by_source_row(src, rows)?;
        let mut lens = vec![0u32; rows.len()];
        let mut kept: Vec<(u32, u32)> = Vec::new();
        let mut blk = DecodedBlock::default();
        for i in 0..src.terms.len {
            kept.clear();
            let postings = src.terms.postings_at(i)?;
            for b in 0..postings.nblocks {
                postings.decode(b, &mut blk)?;
                for (&row, &tf) in blk.rows[..blk.len].iter().zip(&blk.tfs[..blk.len]) {
                    let slot = slots.get(row as usize).copied().unwrap_or(DROPPED);
                    if slot != DROPPED {
                        lens[slot as usize] = lens[slot as usize].saturating_add(tf);
                        kept.push((rows[slot as usize].1, tf));
                    }
                }
            }
            if !kept.is_empty() {
                let key = src.terms.key(i).ok_or(corrupt("term key"))?;
                let term = std::str::from_utf8(key).map_err(|_| corrupt("term not utf-8"))?;
                self.term_list(term).extend_from_slice(&kept);
            }
        }
        for (&(_, out), &len) in rows.iter().zip(&lens) {
            self.set_row_length(out, len);
        }
        Ok(())
    }
}

/// Per source row, its index in `rows` ([`DROPPED`]: not carried).
fn slots_by_source_row(src: &TextIndex<'_>, rows: &[(u32, u32)]) -> Result<Vec<u32>, IndexError> {
    let mut slots = vec![DROPPED; src.norms.len()];
    for (k, &(from, _)) in rows.iter().enumerate() {
        let slot = slots.get_mut(from as usize).ok_or(corrupt("carried row past the section"))?;
        *slot = u32::try_from(k).map_err(|_| corrupt("too many rows"))?;
    }
    Ok(slots)
}

/// [`analysis_key`] of every full-text attribute of `schema`: what a segment built under it
/// records (`SegmentRef::text_analysis`).
pub fn analysis_keys(schema: &crate::schema::Schema) -> BTreeMap<String, String> {
    schema
        .iter()
        .filter_map(|(name, s)| s.full_text_search.as_ref().map(|o| (name.clone(), analysis_key(o))))
        .collect()
}

/// Rows carried into a builder from an inverted index whose rows have `u64` keys (the
/// overlay's seqs, `state/text.rs`): feed it every term's postings ([`Self::list`]), a term
/// possibly in several lists, then [`Self::finish`]. Same invariants as
/// [`TextIndexBuilder::carry_rows`]: the index must hold the carried rows' tokens under the
/// builder's analysis options, and every carried row is counted, with or without tokens.
pub struct KeyedCarry<'b> {
    builder: &'b mut TextIndexBuilder,
    /// `(key, output row)` of each carried row.
    rows: &'b [(u64, u32)],
    /// Key → index in `rows`.
    slots: KeySlots,
    lens: Vec<u32>,
    kept: Vec<(u32, u32)>,
}

/// Key → index in the carried rows: a table over the keys' span when they are dense (the
/// overlay's seqs of one compaction mostly are: a posting then costs an array read, not a
/// hash lookup), a hash map otherwise.
enum KeySlots {
    Dense { first: u64, slots: Vec<u32> },
    Sparse(HashMap<u64, u32, foldhash::fast::FixedState>),
}

impl KeySlots {
    fn new(rows: &[(u64, u32)]) -> KeySlots {
        let (first, last) = rows.iter().fold((u64::MAX, 0), |(lo, hi), &(k, _)| (lo.min(k), hi.max(k)));
        let span = last.saturating_sub(first).saturating_add(1);
        if rows.is_empty() || span > 4 * rows.len() as u64 + 4096 {
            return KeySlots::Sparse(rows.iter().enumerate().map(|(i, &(k, _))| (k, i as u32)).collect());
        }
        let mut slots = vec![DROPPED; span as usize];
        for (i, &(key, _)) in rows.iter().enumerate() {
            slots[(key - first) as usize] = i as u32;
        }
        KeySlots::Dense { first, slots }
    }

    fn get(&self, key: u64) -> Option<u32> {
        match self {
            KeySlots::Dense { first, slots } => {
                let slot = *slots.get(usize::try_from(key.wrapping_sub(*first)).ok()?)?;
                (slot != DROPPED).then_some(slot)
            }
            KeySlots::Sparse(map) => map.get(&key).copied(),
        }
    }
}

impl<'b> KeyedCarry<'b> {
    /// Carry `rows` (`(key, output row)`, each output row added once in all) into `builder`.
    pub fn new(builder: &'b mut TextIndexBuilder, rows: &'b [(u64, u32)]) -> Self {
        KeyedCarry { builder, rows, slots: KeySlots::new(rows), lens: vec![0; rows.len()], kept: Vec::new() }
    }

    /// One list of `term`'s `(key, tf)` postings; keys not carried are skipped.
    pub fn list(&mut self, term: &str, postings: &[(u64, u32)]) {
        self.kept.clear();
        for &(key, tf) in postings {
            if let Some(slot) = self.slots.get(key) {
                self.lens[slot as usize] = self.lens[slot as usize].saturating_add(tf);
                self.kept.push((self.rows[slot as usize].1, tf));
            }
        }
        if !self.kept.is_empty() {
            self.builder.term_list(term).extend_from_slice(&self.kept);
        }
    }

    /// Counts every carried row with its length.
    pub fn finish(self) {
        for (&(_, out), &len) in self.rows.iter().zip(&self.lens) {
            self.builder.set_row_length(out, len);
        }
    }
}
