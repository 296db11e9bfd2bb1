//! A generic in-memory LRU bounded by entry count and by byte weight, with
//! pins and single-flight loads. The engine's memory tier (decoded manifests,
//! namespace states) is built on it.
//!
//! Invariants:
//! - After every `insert`/`unpin`/`get_or_load` returns, `len() <= max_entries`
//!   and `weight() <= max_weight`, unless the excess is made of pinned
//!   entries: pinned entries count against both bounds but are never evicted.
//!   Unpinned entries are evicted least-recently-used first (`get`, `insert`
//!   and `get_or_load` hits count as uses). An entry heavier than the whole
//!   budget is evicted at once (it is returned to its caller, never cached).
//! - A pin is by key and may precede the entry: a later insert of that key is
//!   pinned. `remove` drops the value but keeps the pin.
//! - `get_or_load`: concurrent callers for one missing key run one loader at a
//!   time (per-key async gate); the others wait and then find the value. If
//!   the loader fails, its caller gets the error and each waiter retries in
//!   turn with its own loader (no stampede, no cached error). A `remove` of
//!   the key during a load detaches that load: its value goes to its caller
//!   but is not cached (it may predate the removal).
//! - Never blocks across an `.await` while holding the internal (std) mutex.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Counters and sizes of an [`Lru`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LruStats {
    /// Entries held (pinned included).
    pub entries: usize,
    /// Total weight held (pinned included).
    pub weight: u64,
    /// `get`/`get_or_load` calls that found the value.
    pub hits: u64,
    /// `get`/`get_or_load` calls that did not find it.
    pub misses: u64,
    /// Loader runs by `get_or_load`.
    pub loads: u64,
    /// Entries evicted to honour the bounds.
    pub evictions: u64,
}

/// The recency order of an LRU without its values: a use counter and the evictable keys by
/// their last use (tick). Not synchronized: its owner's lock guards it. Shared by [`Lru`] and
/// the object cache (`crate::cache::ObjectCache`), whose entries are files with their own
/// bookkeeping, so that both evict by one rule.
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
}

struct Slot<V> {
    value: V,
    weight: u64,
    tick: u64,
}

type Gate = Arc<tokio::sync::Mutex<()>>;

struct State<K, V> {
    map: HashMap<K, Slot<V>>,
    /// Unpinned entries by last use; pinned ones are absent.
    recency: Recency<K>,
    pins: HashSet<K>,
    inflight: HashMap<K, Gate>,
    weight: u64,
    stats: LruStats,
}

type Weigher<V> = dyn Fn(&V) -> u64 + Send + Sync;

struct Inner<K, V> {
    state: Mutex<State<K, V>>,
    max_entries: usize,
    max_weight: u64,
    weigher: Box<Weigher<V>>,
}

/// The LRU. Cheap to clone (a handle); `Send + Sync` when `K` and `V` are `Send`.
pub struct Lru<K, V> {
    inner: Arc<Inner<K, V>>,
}

impl<K, V> Clone for Lru<K, V> {
    fn clone(&self) -> Self {
        Lru { inner: Arc::clone(&self.inner) }
    }
}

impl<K, V> fmt::Debug for Lru<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lru")
            .field("max_entries", &self.inner.max_entries)
            .field("max_weight", &self.inner.max_weight)
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An LRU holding at most `max_entries` entries and `max_weight` total
    /// weight, where `weight(&v)` is an entry's weight (e.g. its bytes).
    pub fn new(
        max_entries: usize,
        max_weight: u64,
        weight: impl Fn(&V) -> u64 + Send + Sync + 'static,
    ) -> Self {
        Lru {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    map: HashMap::new(),
                    recency: Recency::default(),
                    pins: HashSet::new(),
                    inflight: HashMap::new(),
                    weight: 0,
                    stats: LruStats::default(),
                }),
                max_entries,
                max_weight,
                weigher: Box::new(weight),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<K, V>> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of `k`, marking it most recently used.
    pub fn get(&self, k: &K) -> Option<V> {
        let mut st = self.state();
        let v = st.touch(k);
        if v.is_some() {
            st.stats.hits += 1;
        } else {
            st.stats.misses += 1;
        }
        v
    }

    /// Whether `k` is held (does not count as a use).
    pub fn contains(&self, k: &K) -> bool {
        self.state().map.contains_key(k)
    }

    /// Insert or replace `k`, then evict to the bounds.
    pub fn insert(&self, k: K, v: V) {
        let w = (self.inner.weigher)(&v);
        let mut st = self.state();
        st.put(k, v, w);
        st.evict(self.inner.max_entries, self.inner.max_weight);
    }

    /// Remove `k` (its pin, if any, stays) and detach an in-flight load of it.
    pub fn remove(&self, k: &K) -> Option<V> {
        let mut st = self.state();
        st.inflight.remove(k);
        st.take(k)
    }

    /// Pin `k`: it is never evicted (also if inserted later).
    pub fn pin(&self, k: K) {
        let mut st = self.state();
        if let Some(slot) = st.map.get(&k) {
            let tick = slot.tick;
            st.recency.forget(tick);
        }
        st.pins.insert(k);
    }

    /// Unpin `k`: it becomes evictable again (most recently used), and the
    /// bounds are enforced.
    pub fn unpin(&self, k: &K) {
        let mut st = self.state();
        if !st.pins.remove(k) {
            return;
        }
        let tick = st.recency.next_tick();
        if let Some(slot) = st.map.get_mut(k) {
            slot.tick = tick;
            st.recency.track(tick, k.clone());
        }
        st.evict(self.inner.max_entries, self.inner.max_weight);
    }

    /// Whether `k` is pinned.
    pub fn is_pinned(&self, k: &K) -> bool {
        self.state().pins.contains(k)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.state().map.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total weight held.
    pub fn weight(&self) -> u64 {
        self.state().weight
    }

    /// Counters and sizes.
    pub fn stats(&self) -> LruStats {
        let st = self.state();
        LruStats { entries: st.map.len(), weight: st.weight, ..st.stats }
    }

    /// The value of `k`, loading it with `loader` if absent. Concurrent callers
    /// for one absent key run one loader at a time; see the module invariants.
    pub async fn get_or_load<F, Fut, E>(&self, k: &K, loader: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let gate = {
            let mut st = self.state();
            if let Some(v) = st.touch(k) {
                st.stats.hits += 1;
                return Ok(v);
            }
            Arc::clone(st.inflight.entry(k.clone()).or_default())
        };
        let _turn = gate.lock().await;
        {
            let mut st = self.state();
            if let Some(v) = st.touch(k) {
                st.stats.hits += 1;
                st.retire(k, &gate);
                return Ok(v);
            }
            st.stats.misses += 1;
            st.stats.loads += 1;
        }
        let result = loader().await;
        let mut st = self.state();
        let current = st.inflight.get(k).is_some_and(|g| Arc::ptr_eq(g, &gate));
        st.retire(k, &gate);
        let v = result?;
        if current {
            let w = (self.inner.weigher)(&v);
            st.put(k.clone(), v.clone(), w);
            st.evict(self.inner.max_entries, self.inner.max_weight);
        }
        Ok(v)
    }
}

impl<K: Hash + Eq + Clone, V: Clone> State<K, V> {
    /// Drop `gate` from the in-flight map if it is still there and nobody but
    /// the map and the caller holds it (waiters clone it under this mutex).
    fn retire(&mut self, k: &K, gate: &Gate) {
        if self.inflight.get(k).is_some_and(|g| Arc::ptr_eq(g, gate)) && Arc::strong_count(gate) <= 2 {
            self.inflight.remove(k);
        }
    }

    fn touch(&mut self, k: &K) -> Option<V> {
        let tick = self.recency.next_tick();
        let pinned = self.pins.contains(k);
        let slot = self.map.get_mut(k)?;
        if !pinned {
            self.recency.forget(slot.tick);
            self.recency.track(tick, k.clone());
        }
        slot.tick = tick;
        Some(slot.value.clone())
    }

    fn take(&mut self, k: &K) -> Option<V> {
        let slot = self.map.remove(k)?;
        self.recency.forget(slot.tick);
        self.weight = self.weight.saturating_sub(slot.weight);
        Some(slot.value)
    }

    fn put(&mut self, k: K, value: V, weight: u64) {
        self.take(&k);
        let tick = self.recency.next_tick();
        if !self.pins.contains(&k) {
            self.recency.track(tick, k.clone());
        }
        self.weight = self.weight.saturating_add(weight);
        self.map.insert(k, Slot { value, weight, tick });
    }

    fn evict(&mut self, max_entries: usize, max_weight: u64) {
        while self.map.len() > max_entries || self.weight > max_weight {
            let Some(k) = self.recency.pop_oldest() else { break };
            if let Some(slot) = self.map.remove(&k) {
                self.weight = self.weight.saturating_sub(slot.weight);
                self.stats.evictions += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn lru(entries: usize, weight: u64) -> Lru<&'static str, Arc<Vec<u8>>> {
        Lru::new(entries, weight, |v: &Arc<Vec<u8>>| v.len() as u64)
    }

    fn val(n: usize) -> Arc<Vec<u8>> {
        Arc::new(vec![0; n])
    }

    #[test]
    fn evicts_least_recently_used_by_count() {
        let l = lru(2, u64::MAX);
        l.insert("a", val(1));
        l.insert("b", val(1));
        assert!(l.get(&"a").is_some()); // a is now newer than b
        l.insert("c", val(1));
        assert!(l.contains(&"a") && l.contains(&"c") && !l.contains(&"b"));
        assert_eq!(l.stats().evictions, 1);
    }

    #[test]
    fn evicts_by_weight_and_never_pinned() {
        let l = lru(100, 10);
        l.pin("p");
        l.insert("p", val(6));
        l.insert("a", val(3));
        l.insert("b", val(3)); // 12 > 10: a goes
        assert!(!l.contains(&"a") && l.contains(&"b") && l.contains(&"p"));
        assert_eq!(l.weight(), 9);
        l.insert("big", val(20)); // heavier than the budget: b goes, then big itself
        assert!(!l.contains(&"big") && !l.contains(&"b") && l.contains(&"p"));
        l.insert("q", val(5)); // 11 > 10 but only the pinned p could go... q goes
        assert!(l.contains(&"p"));
        assert!(l.weight() <= 10);
        l.unpin(&"p");
        l.insert("r", val(5));
        assert!(!l.contains(&"p") && l.contains(&"r"), "unpinned entries are evictable again");
    }

    #[test]
    fn pinned_entries_exceed_the_budget_rather_than_being_evicted() {
        let l = lru(1, 1);
        l.pin("a");
        l.pin("b");
        l.insert("a", val(5));
        l.insert("b", val(5));
        assert_eq!((l.len(), l.weight()), (2, 10));
        assert!(l.remove(&"a").is_some());
        assert!(l.is_pinned(&"a"), "remove keeps the pin");
        l.unpin(&"b");
        assert!(l.is_empty());
    }

    #[tokio::test]
    async fn get_or_load_is_single_flight() {
        let l = lru(10, u64::MAX);
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let l = l.clone();
            let loads = Arc::clone(&loads);
            tasks.push(tokio::spawn(async move {
                l.get_or_load(&"k", || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Ok::<_, String>(val(3))
                })
                .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().len(), 3);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(l.stats().loads, 1);
    }

    #[tokio::test]
    async fn a_failed_load_is_not_cached_and_a_removed_load_is_detached() {
        let l = lru(10, u64::MAX);
        let r = l.get_or_load(&"k", || async { Err::<Arc<Vec<u8>>, _>("boom") }).await;
        assert_eq!(r.unwrap_err(), "boom");
        assert!(!l.contains(&"k"));
        let v = l.get_or_load(&"k", || async { Ok::<_, &str>(val(2)) }).await.unwrap();
        assert_eq!(v.len(), 2);
        assert!(l.contains(&"k"));

        let l2 = l.clone();
        let slow = tokio::spawn(async move {
            l2.get_or_load(&"x", || async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, &str>(val(7))
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        l.remove(&"x");
        assert_eq!(slow.await.unwrap().unwrap().len(), 7);
        assert!(!l.contains(&"x"), "a load that raced a remove is not cached");
    }
}
