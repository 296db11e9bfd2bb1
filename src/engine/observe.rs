//! What the engine reports to the metrics (`crate::metrics`): the
//! scrape-time gauges of its loaded namespaces and cache tiers, and timed
//! compaction runs.
//!
//! Invariants: gathering the gauges reads only what is in memory (the
//! handles' cached snapshots and the disk cache's counters): a scrape never
//! touches the object store or loads a namespace.

use std::sync::Arc;
use std::time::Instant;

use super::{cached, CompactionReport, Engine, EngineError};
use crate::layout::NsPath;
use crate::metrics::{CompactionOutcome, Gauges, Metrics, NamespaceGauge, TierGauge};

impl Engine {
    /// The metrics this engine records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Scrape-time values: every loaded namespace's size and WAL backlog,
    /// and the memory and disk cache tiers.
    pub fn gauges(&self) -> Gauges {
        let mut g = Gauges::default();
        for h in self.all_handles() {
            let Some(snap) = cached(&h) else { continue };
            g.memory.bytes += snap.state.memory_weight();
            let Some(m) = snap.manifest.as_ref().filter(|m| !m.deleted) else { continue };
            g.namespaces.push(NamespaceGauge {
                namespace: h.path.to_string(),
                documents: snap.state.len(),
                logical_bytes: snap.state.logical_bytes,
                wal_batches: m.wal.len() as u64,
                wal_bytes: m.wal.iter().map(|w| w.bytes).sum(),
            });
        }
        let budget = &self.node_memory;
        g.budget = (budget.bytes() != u64::MAX).then(|| crate::metrics::BudgetGauge {
            bytes: budget.bytes(),
            used: budget.used(),
            refusals: budget.refusals(),
        });
        let disk = self.cache.stats();
        g.disk = TierGauge {
            bytes: disk.resident_bytes,
            hits: Some(disk.hits),
            misses: Some(disk.misses),
            evictions: Some(disk.evictions),
        };
        g
    }

    /// Compact a namespace now (`force`: even below the thresholds). Every
    /// run is counted by outcome and timed.
    pub async fn compact(&self, path: &NsPath, force: bool) -> Result<CompactionReport, EngineError> {
        let started = Instant::now();
        let r = self.compact_unobserved(path, force).await;
        let (outcome, bytes) = match &r {
            Ok(rep) if rep.performed => (CompactionOutcome::Compacted, rep.bytes_written),
            Ok(_) => (CompactionOutcome::Noop, 0),
            Err(_) => (CompactionOutcome::Failed, 0),
        };
        self.metrics.observe_compaction(outcome, started.elapsed(), bytes);
        r
    }
}
