//! Whether the object store currently takes writes, for `/ready`.
//!
//! Invariants:
//! - A failed put (a conditional create that finds the object is not a
//!   failure) marks the store failing with its error; any successful put
//!   clears the mark. Reads never change it.
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
}
