//! A write's full-text values analysed before it queues for its namespace's
//! group commit (`state/text_prepared.rs` says why and how they are used).
//!
//! Invariants:
//! - Preparation is an optimisation only: it reads the namespace's cached
//!   snapshot without waiting for anything, and a request it cannot prepare
//!   (too few upserts, no cached state, no full-text attribute, settings that
//!   would not apply) queues as it came; the commit analyses what was not
//!   prepared, or was prepared under other options.
//! - The analysis runs on a blocking thread, never on an async worker: it is
//!   CPU work in proportion to the request's text (up to 50,000 rows).
//! - The request's rows are moved to that thread and back, not copied.

use std::sync::Arc;

use super::request::Preparation;
use super::{cached, Engine, WriteRequest};
use crate::layout::NsPath;
use crate::state::text::full_text_attrs;
use crate::state::PreparedText;

/// Fewest upserts worth a blocking thread's hand-off (a few tens of microseconds).
const PREPARE_MIN_ROWS: usize = 16;

impl Engine {
    /// Analyses `req`'s upserts under the schema its namespace will have
    /// after the request's own settings, as far as the cached snapshot says.
    pub(super) async fn prepare_text(&self, path: &NsPath, req: &mut WriteRequest) {
        if req.record.ops.upserts.len() < PREPARE_MIN_ROWS {
            return;
        }
        let Some(base) = cached(&self.handle(path)) else { return };
        let Some(schema) = super::apply::schema_after(&base.state, &req.record) else { return };
        if full_text_attrs(&schema).next().is_none() {
            return;
        }
        let docs = std::mem::take(&mut req.record.ops.upserts);
        let (docs, prepared) = tokio::task::spawn_blocking(move || {
            let prepared = PreparedText::analyze(&schema, &docs);
            (docs, prepared)
        })
        .await
        // A panic inside stays a panic here, as it would be inline.
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        req.record.ops.upserts = docs;
        req.prepared = Preparation(Some(Arc::new(prepared)));
    }
}
