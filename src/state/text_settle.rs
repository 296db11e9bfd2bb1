//! The overlay index's chunk merges taken off a write's commit (issue 39).
//!
//! A group commit applies its requests to a copy of the namespace's state, then writes the
//! WAL object and the manifest, waiting on their syncs, with the next group queued behind it.
//! Merging the overlay's chunks in the apply was nearly half of that serial section's CPU at
//! 1M documents. Instead the apply defers merges ([`OverlayText::defer_merges`]), the commit
//! takes them ([`OverlayText::take_merges`]) and runs them ([`Merges::run`], on a blocking
//! thread) while it waits on storage, and installs the result ([`OverlayText::install`])
//! before the state is published.
//!
//! Invariants:
//! - Deferring changes when chunks are merged, never what the index holds: a state whose
//!   merges were deferred and never run serves every query as the merged one does (its
//!   chunk list is only longer).
//! - [`Merges::run`] replays the rule the apply would have followed: the parts before the
//!   deferral's first seq are kept as they are, and from there on the tail is merged
//!   ([`super::merge_tail`]) after each sealed part, in order.
//! - [`OverlayText::install`] replaces an attribute's parts only when they are still the
//!   very parts the merges started from (the same chunk and dead-row `Arc`s); otherwise it
//!   leaves them: unmerged, and still correct.
//! - [`OverlayText::take_merges`] ends the deferral on every attribute whether or not there is
//!   anything to merge, so a state that is published merges inline again.

use std::sync::Arc;

use super::{first_part_from, merge_tail, OverlayText, Part};

/// The merges a deferred apply left: per attribute, its parts and where the deferral began.
pub struct Merges(Vec<AttrMerge>);

struct AttrMerge {
    /// The attribute's place in the index.
    attr: usize,
    parts: Vec<Part>,
    /// The first part holding a row put while merges were deferred.
    from: usize,
}

/// Merged parts, ready to be installed where they came from.
pub struct Merged(Vec<MergedAttr>);

struct MergedAttr {
    attr: usize,
    /// The parts merged, as they were taken.
    from: Vec<Part>,
    /// What replaces them.
    to: Vec<Part>,
}

impl OverlayText {
    /// Until [`Self::take_merges`], chunks filled or added are not merged.
    pub fn defer_merges(&mut self) {
        if self.0.attrs.is_empty() {
            return;
        }
        let inner = Arc::make_mut(&mut self.0);
        let from = inner.next_seq;
        for a in &mut inner.attrs {
            a.defer_from = Some(from);
        }
    }

    /// Ends the deferral, returning the merges it left (None: nothing to merge).
    pub fn take_merges(&mut self) -> Option<Merges> {
        if self.0.attrs.iter().all(|a| a.defer_from.is_none()) {
            return None;
        }
        let inner = Arc::make_mut(&mut self.0);
        let mut merges = Vec::new();
        for (attr, a) in inner.attrs.iter_mut().enumerate() {
            let Some(seq) = a.defer_from.take() else { continue };
            let from = first_part_from(&a.parts, seq);
            if a.parts[from..].iter().any(|p| !p.chunk.is_open()) {
                merges.push(AttrMerge { attr, parts: a.parts.clone(), from });
            }
        }
        (!merges.is_empty()).then_some(Merges(merges))
    }

    /// Puts merged parts in place of the parts they were merged from, where those are
    /// still this index's.
    pub fn install(&mut self, merged: Merged) {
        let inner = Arc::make_mut(&mut self.0);
        for m in merged.0 {
            if let Some(a) = inner.attrs.get_mut(m.attr).filter(|a| same_parts(&a.parts, &m.from)) {
                a.parts = m.to;
            }
        }
    }
}

impl Merges {
    /// Runs the merges (CPU: call off the async workers).
    pub fn run(self) -> Merged {
        let merged = self.0.into_iter().map(|m| {
            let mut parts = m.parts[..m.from].to_vec();
            for p in &m.parts[m.from..] {
                parts.push(p.clone());
                if !p.chunk.is_open() {
                    merge_tail(&mut parts);
                }
            }
            MergedAttr { attr: m.attr, from: m.parts, to: parts }
        });
        Merged(merged.collect())
    }
}

fn same_parts(a: &[Part], b: &[Part]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(&x.chunk, &y.chunk) && Arc::ptr_eq(&x.dead, &y.dead))
}

#[cfg(test)]
#[path = "text_settle_tests.rs"]
mod tests;
