//! Whether the object store currently takes writes and answers reads, for
//! `/ready` and namespace metadata.
//!
//! Invariants:
//! - A failed put (a conditional create that finds the object is not a
//!   failure) marks the store failing with its error; any successful put
//!   clears the mark. Reads never change it.
//! - A read (GET, HEAD, LIST) that fails other than with "not found" marks the
//!   store unreachable with its error; any read that gets an answer (a "not
//!   found" included) clears it. A bucket-primary node whose bucket is gone is
//!   then reported as such instead of looking healthy until its next write.
//! - While failing, `Store::check_writable` probes with a put and a delete of
//!   [`PROBE_KEY`], outside every namespace (an "org" with no project), so a
//!   fault that has cleared (space freed, the bucket back) shows at once,
//!   without waiting for a client's write; while healthy it costs nothing.
//! - [`Store::check_ready`] (for `/ready`) answers within its budget whatever
//!   the store does: at once from an open breaker (`store/breaker.rs`) or from
//!   healthy marks; else it probes on a task of its own, one such probe at a
//!   time, and a probe still running when the budget ends is "no answer yet"
//!   (it finishes in the background and its outcome lands in the marks and
//!   the breaker).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::{Store, StoreError};

/// The key `Store::check_writable` probes with.
pub const PROBE_KEY: &str = "_tidepool/ready-probe";

/// The last write outcome of a store.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<String>>,
    unreachable: Mutex<Option<String>>,
    /// A readiness probe runs ([`Store::check_ready`]).
    probing: AtomicBool,
}

impl WriteHealth {
    /// Record a put's outcome (`Some(error)` when it failed).
    pub fn record(&self, failure: Option<String>) {
        let mut f = self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *f = failure;
    }

    /// The error of the last put, if it failed.
    pub fn failing(&self) -> Option<String> {
        self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Record a read's outcome (`Some(error)` when it got no answer).
    pub fn record_read(&self, failure: Option<String>) {
        let mut f = self.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *f = failure;
    }

    /// The error of the last read, if it got no answer.
    pub fn unreachable(&self) -> Option<String> {
        self.unreachable.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Why [`Store::check_ready`] found the store not ready.
#[derive(Debug)]
pub enum NotReady {
    /// Writes fail: the last put failed, and so did a probe put.
    Writes(StoreError),
    /// Reads get no answer: the breaker is open, a probe read failed, or the
    /// probe did not answer within the budget.
    Unreachable(StoreError),
}

/// A store error for a state, not a call (`key` is the probe's).
fn state_error(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Backend {
        key: PROBE_KEY.to_owned(),
        source: object_store::Error::Generic { store: "tidepool", source: cause.into() },
    }
}

/// Clears the probing flag however the probe task ends.
struct ProbeSlot<'a>(&'a AtomicBool);

impl Drop for ProbeSlot<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Store {
    /// `Ok` when the store takes writes and answers reads, decided within
    /// `budget` (see the module doc): an open breaker answers at once, healthy
    /// marks too; otherwise one probe (a put when writes failed, a HEAD when
    /// reads did), on a task of its own so that it ends by the store's own
    /// timeouts even when the budget ends first.
    pub async fn check_ready(&self, budget: Duration) -> Result<(), NotReady> {
        if let Some(open) = self.circuit_open() {
            return Err(NotReady::Unreachable(state_error(open)));
        }
        let known = match (self.health.failing(), self.health.unreachable()) {
            (None, None) => return Ok(()),
            (Some(f), _) => NotReady::Writes(state_error(f)),
            (None, Some(u)) => NotReady::Unreachable(state_error(u)),
        };
        if self.health.probing.swap(true, Ordering::AcqRel) {
            // The running probe will tell; until then the marks are what is known.
            return Err(known);
        }
        let store = self.clone();
        let task = tokio::spawn(async move {
            let _slot = ProbeSlot(&store.health.probing);
            store.check_writable().await.map_err(NotReady::Writes)?;
            store.check_reachable().await.map_err(NotReady::Unreachable)
        });
        match tokio::time::timeout(budget, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => Err(NotReady::Unreachable(state_error(join))),
            Err(_) => Err(NotReady::Unreachable(state_error(format!(
                "no answer within {} ms (the probe goes on in the background)",
                budget.as_millis()
            )))),
        }
    }
}
