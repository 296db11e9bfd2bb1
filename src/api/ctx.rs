//! The context of one authenticated request: the daemon's state, the caller's
//! org/project, the query parameters and the start time.
//!
//! Invariant: every namespace a handler touches is resolved through
//! [`Ctx::ns`], inside the caller's own org/project (tenant isolation).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::auth::Principal;
use super::error::ApiError;
use super::AppState;
use crate::layout::NsPath;

/// Everything a handler needs besides the body.
pub(super) struct Ctx {
    pub(super) state: Arc<AppState>,
    pub(super) principal: Principal,
    pub(super) params: HashMap<String, String>,
    pub(super) started: Instant,
}

impl Ctx {
    pub(super) fn ns(&self, ns: &str) -> Result<NsPath, ApiError> {
        Ok(NsPath::new(&self.principal.org, &self.principal.project, ns)?)
    }

    pub(super) fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
