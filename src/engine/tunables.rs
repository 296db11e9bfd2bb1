//! The settings a running engine changes on a configuration reload
//! (`SIGHUP`): the disk-cache budget, the memory tier's namespace count, the
//! node's memory budget (and the memory tier's share of it) and the
//! compaction thresholds. Everything else an engine was opened with
//! (store, data dir, retention) needs a restart.
//!
//! Invariants:
//! - A change applies to the next decision that reads it (the next write's
//!   backpressure check, the next compaction trigger, the next install into
//!   the cache); nothing in flight is interrupted.
//! - A lower budget is enforced at once: the disk cache evicts and the memory
//!   tier drops least recently used states down to it (pinned ones stay).

use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::{CompactionConfig, Engine};

/// The reloadable settings.
#[derive(Debug, Clone)]
pub struct Tunables {
    /// Disk-cache byte budget.
    pub cache_budget_bytes: u64,
    /// Most loaded namespace states (at least 1).
    pub max_loaded_namespaces: usize,
    /// The node's memory budget (`engine/budget.rs`); the memory tier gets
    /// its share. None: as opened.
    pub memory_budget_bytes: Option<u64>,
    /// Compaction thresholds and backpressure (`auto` is kept as opened).
    pub compaction: CompactionConfig,
}

impl Engine {
    /// The compaction settings in force.
    pub(crate) fn compaction(&self) -> CompactionConfig {
        self.compaction.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Apply reloaded settings to the running engine.
    pub fn reconfigure(&self, t: Tunables) {
        {
            let mut c = self.compaction.write().unwrap_or_else(PoisonError::into_inner);
            let auto = c.auto;
            *c = CompactionConfig { auto, ..t.compaction };
        }
        self.cache.set_budget(t.cache_budget_bytes);
        self.memory.0.store(t.max_loaded_namespaces.max(1), Ordering::Relaxed);
        if let Some(bytes) = t.memory_budget_bytes {
            self.node_memory.set(bytes);
            self.memory.1.store(super::budget::tier_bytes(bytes), Ordering::Relaxed);
        }
        self.enforce_memory_budget();
    }
}
