//! Refolding: the state a compaction's commit reaches, derived from the
//! states around it instead of replaying the WAL the commit kept.
//!
//! A compaction folds the overlay of a state `C` (at WAL prefix P) into new
//! segments; meanwhile writes may have taken the namespace to a newer state
//! `N` over the same segments (WAL P + S), a clone of `C` with S applied. The
//! committed generation holds the new segments plus WAL S; replaying S on top
//! of the new segments gives, for every id S touched, the document `N` holds,
//! and leaves every other id to the new segments (which hold `C`'s view).
//!
//! Invariants:
//! - Pure: nothing is read or decoded but the segments' id columns.
//! - The ids S touched are the overlay entries of `N` that differ from `C`'s
//!   entry for the same id. `imbl::OrdMap::diff` skips the subtrees `N` still
//!   shares with `C`, so the cost follows S, not the overlay.
//! - Each such id gets the entry a replay's `put`/`remove` would leave: the
//!   document `N` holds; a deletion marker (`None`) where the new segments
//!   still hold a live row for it; nothing otherwise. The documents are
//!   `N`'s own `Arc`s, not copies.
//! - One difference from a replay that no reader sees: a rewrite in S that
//!   left a document equal to `C`'s (the diff compares values) is served from
//!   the new segment, which holds the same document, not from the overlay.
//! - The overlay text index holds exactly the refolded overlay's live
//!   documents, over the committed generation's schema: `N`'s index without
//!   the rows put before `C`'s last one (`OverlayText::carried`: nothing is
//!   tokenized again, so a row written during a round is analysed once), or,
//!   when `N`'s index does not line up so (its options changed during the
//!   round), built afresh from the refolded overlay.
//! - `len` is recounted from the new segments and the refolded entries and
//!   must equal `N`'s; any inconsistency (also a `C` and `N` over different
//!   segments) returns None, and the caller replays the WAL instead.
//! - Idempotency keys: those S added, i.e. `N`'s keys that `C` lacks or holds
//!   with other counts (a key already applied is answered as a duplicate and
//!   never written again, so S cannot repeat one of P's).

use std::sync::Arc;

use imbl::ordmap::DiffItem;

use super::NsState;
use crate::model::{DocId, Document};

impl NsState {
    /// `base` (the new segments, with the committed generation's settings
    /// already set) plus what `newest` changed since `compacted`, or None
    /// when the three states are not related as a compaction leaves them.
    /// `logical_bytes` is left to the caller (the manifest carries it).
    pub fn refold(mut base: NsState, compacted: &NsState, newest: &NsState) -> Option<NsState> {
        if !same_segments(compacted, newest) {
            return None;
        }
        for item in compacted.overlay.diff(&newest.overlay) {
            let (id, now) = match item {
                DiffItem::Add(id, entry) | DiffItem::Update { new: (id, entry), .. } => (id, entry.clone()),
                // No entry in `newest`: the id falls back to the old
                // segments, where a replay's `remove` leaves no entry only
                // when no live row is left.
                DiffItem::Remove(id, _) if newest.segment_live(id) => return None,
                DiffItem::Remove(id, _) => (id, None),
            };
            base.refold_entry(id, now);
        }
        if base.len != newest.len {
            return None;
        }
        base.text = match newest.text.carried(&compacted.text, &base.schema, &base.overlay) {
            Some(text) => text,
            None => {
                let mut text = super::OverlayText::default();
                text.sync(&base.schema, &base.overlay);
                text
            }
        };
        for (key, counts) in newest.idempotency.iter() {
            if compacted.idempotency.get(key) != Some(counts) {
                base.idempotency.insert(key.clone(), *counts);
            }
        }
        Some(base)
    }

    /// Set `id` to `now` (None: deleted) the way a replay's put/remove would.
    fn refold_entry(&mut self, id: &DocId, now: Option<Arc<Document>>) {
        let live_in_segments = self.segment_live(id);
        match now {
            Some(doc) => {
                if !live_in_segments {
                    self.len += 1;
                }
                self.shadow_segment_rows(id);
                self.overlay.insert(id.clone(), Some(doc));
            }
            None if live_in_segments => {
                self.len -= 1;
                self.shadow_segment_rows(id);
                self.overlay.insert(id.clone(), None);
            }
            None => {}
        }
    }

    fn segment_live(&self, id: &DocId) -> bool {
        self.segments.iter().any(|s| s.find_live(id).is_some())
    }
}

/// Whether two states stand on the same segments with the same deletion sets.
fn same_segments(a: &NsState, b: &NsState) -> bool {
    Arc::ptr_eq(&a.segments, &b.segments)
        || a.segments.len() == b.segments.len()
            && a.segments.iter().zip(b.segments.iter()).all(|(x, y)| x.meta == y.meta)
}
