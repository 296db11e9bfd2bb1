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

use std::sync::Mutex;

/// The key `Store::check_writable` probes with.
pub const PROBE_KEY: &str = "_tidepool/ready-probe";

/// The last write outcome of a store.
#[derive(Debug, Default)]
pub struct WriteHealth {
    failing: Mutex<Option<String>>,
    unreachable: Mutex<Option<String>>,
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
