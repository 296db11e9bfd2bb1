//! The memory tier: which namespace states stay loaded, and the
//! `cache_temperature` a query reports.
//!
//! Invariants:
//! - Loaded states are dropped least recently used first, pinned namespaces
//!   and the one used last never, until both the count and the byte budget
//!   hold (or only those are left); a dropped state is
//!   rebuilt on its next access (from mapped segments + WAL), so eviction
//!   never loses data.
//! - A state's weight includes the index sections its segment readers opened.
//! - Under memory pressure (`engine/budget.rs`) every unpinned state but the
//!   one used last is dropped at once ([`Engine::shed_memory_tier`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{cached, clear_cached, Engine, NsHandle};
use crate::cache::lru::Recency;
use crate::layout::NsPath;

impl Engine {
    /// Namespaces whose state is loaded in memory (the memory tier).
    pub fn loaded_namespaces(&self) -> Vec<NsPath> {
        let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out: Vec<NsPath> =
            map.values().filter(|h| cached(h).is_some()).map(|h| h.path.clone()).collect();
        out.sort();
        out
    }

    /// turbopuffer's `cache_temperature` and `cache_hit_ratio` for a query
    /// about to run: `hot` when the namespace's state is loaded in memory,
    /// `warm` when its segment files are on local disk (a local store or the
    /// disk cache), `cold` when some must come from the object store.
    pub async fn cache_temperature(&self, path: &NsPath) -> (&'static str, f64) {
        if self
            .handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            .is_some_and(|h| cached(h).is_some())
        {
            return ("hot", 1.0);
        }
        self.disk_temperature(path).await
    }

    /// [`Engine::cache_temperature`] as if the namespace were not loaded:
    /// `warm` when its segment files are on local disk, else `cold` with the
    /// share that is.
    pub(crate) async fn disk_temperature(&self, path: &NsPath) -> (&'static str, f64) {
        if self.store.local_root().is_some() {
            return ("warm", 1.0);
        }
        let Ok(Some(m)) = self.latest_manifest(path).await else { return ("cold", 0.0) };
        let files: Vec<&str> =
            m.segments.iter().flat_map(|s| s.files.iter().map(|f| f.key.as_str())).collect();
        if files.is_empty() {
            return ("warm", 1.0);
        }
        let cached_files = files.iter().filter(|k| self.cache.is_cached(k)).count();
        #[allow(clippy::cast_precision_loss)]
        let ratio = cached_files as f64 / files.len() as f64;
        (if cached_files == files.len() { "warm" } else { "cold" }, ratio)
    }

    /// Memory tier: drop the loaded states of the least recently used,
    /// unpinned namespaces until the count and byte budgets hold. A dropped
    /// state is rebuilt on its next access (from mapped segments + WAL).
    /// Accesses only bump a handle's tick (no lock on the query path); the
    /// order is built here, when a budget may be exceeded, by the same rule
    /// as the disk tier's ([`Recency`]).
    pub(super) fn enforce_memory_budget(&self) {
        let (max_loaded, max_bytes) =
            (self.memory.0.load(Ordering::Relaxed), self.memory.1.load(Ordering::Relaxed));
        self.evict_down_to(max_loaded, max_bytes);
    }

    /// Drop every unpinned loaded state but the one used last: the node is
    /// short of memory, and a dropped state costs only its rebuild.
    pub(super) fn shed_memory_tier(&self) {
        self.evict_down_to(1, 0);
    }

    fn evict_down_to(&self, max_loaded: usize, max_bytes: u64) {
        let map = self.handles.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let loaded: Vec<(Arc<NsHandle>, u64)> =
            map.values().filter_map(|h| Some((h.clone(), cached(h)?.state.memory_weight()))).collect();
        drop(map);
        let mut count = loaded.len();
        let mut bytes: u64 = loaded.iter().map(|l| l.1).sum();
        if count <= max_loaded && bytes <= max_bytes {
            return;
        }
        let pinned = self.cache.pinned_prefixes();
        let tick = |h: &NsHandle| h.last_access.load(Ordering::Relaxed);
        // The namespace used last is the one being served: dropping it would
        // only make its next request rebuild it (a write stream over a large
        // WAL would rebuild on every request).
        let newest = loaded.iter().max_by_key(|(h, _)| tick(h)).map(|(h, _)| Arc::clone(h));
        let mut order = Recency::default();
        order.rebuild(
            loaded
                .into_iter()
                .filter(|(h, _)| !pinned.iter().any(|p| p == &h.path.prefix()))
                .filter(|(h, _)| !newest.as_ref().is_some_and(|n| Arc::ptr_eq(n, h)))
                .map(|(h, weight)| (tick(&h), (h, weight))),
        );
        while count > max_loaded || bytes > max_bytes {
            let Some((h, weight)) = order.pop_oldest() else { break };
            clear_cached(&h);
            self.metrics.observe_memory_eviction();
            count -= 1;
            bytes = bytes.saturating_sub(weight);
        }
    }
}
