//! Least-recently-used order, the one eviction rule of both cache tiers: the
//! disk tier ([`crate::cache::ObjectCache`]: files) and the engine's memory
//! tier (loaded namespace states). Each tier keeps its own entries and
//! bookkeeping (files and their sizes, states and their weights); this type
//! holds only which evictable key was used least recently.
//!
//! Invariants:
//! - Ticks are strictly increasing, so two uses never share a tick and the
//!   order is total.
//! - Only evictable keys are tracked: a pinned key is absent (its owner does
//!   not track it, or rebuilds the order without it).
//! - Not synchronized: its owner's lock guards it.

use std::collections::BTreeMap;

/// The recency order of an LRU without its values: a use counter and the
/// evictable keys by their last use (tick).
#[derive(Debug, Clone)]
pub struct Recency<K> {
    /// Evictable keys by last use (tick -> key); pinned ones are absent.
    order: BTreeMap<u64, K>,
    tick: u64,
}

impl<K> Default for Recency<K> {
    fn default() -> Self {
        Recency { order: BTreeMap::new(), tick: 0 }
    }
}

impl<K> Recency<K> {
    /// The next use's tick (strictly increasing).
    pub fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Make `k`, last used at `tick`, evictable.
    pub fn track(&mut self, tick: u64, k: K) {
        self.order.insert(tick, k);
    }

    /// Forget the key last used at `tick` (removed, pinned or about to be re-ticked).
    pub fn forget(&mut self, tick: u64) {
        self.order.remove(&tick);
    }

    /// Remove and return the least recently used evictable key.
    pub fn pop_oldest(&mut self) -> Option<K> {
        self.order.pop_first().map(|(_, k)| k)
    }

    /// Replace the evictable set (after pins changed) with `(tick, key)` pairs.
    pub fn rebuild(&mut self, evictable: impl IntoIterator<Item = (u64, K)>) {
        self.order = evictable.into_iter().collect();
    }

    /// Evictable keys tracked.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether no key is evictable.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::Recency;

    #[test]
    fn pops_least_recently_used_first_and_forgets_retouched_keys() {
        let mut r = Recency::default();
        let (a, b, c) = (r.next_tick(), r.next_tick(), r.next_tick());
        r.track(a, "a");
        r.track(b, "b");
        r.track(c, "c");
        // "a" is used again: its old tick is forgotten, its new one is the newest.
        r.forget(a);
        let a2 = r.next_tick();
        r.track(a2, "a");
        assert_eq!(
            (r.pop_oldest(), r.pop_oldest(), r.pop_oldest(), r.pop_oldest()),
            (Some("b"), Some("c"), Some("a"), None)
        );
    }

    #[test]
    fn rebuild_keeps_only_the_evictable_keys_in_tick_order() {
        let mut r = Recency::default();
        r.rebuild([(7, "late"), (3, "early")]);
        assert_eq!(r.len(), 2);
        assert_eq!(r.pop_oldest(), Some("early"));
        r.rebuild(Vec::new());
        assert!(r.is_empty());
    }
}
