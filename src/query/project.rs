//! Projection: which parts of a matched document a row carries.
//!
//! Invariants: the id is always kept; a missing attribute is omitted, never
//! an error; a projection that keeps everything shares the stored document
//! rather than copying it. Encoding rows as JSON is the wire layer's job.

use super::*;

/// The document as `p` projects it.
pub(super) fn project(d: Arc<Document>, p: &Projection) -> Arc<Document> {
    if matches!(p, Projection::All) {
        return d;
    }
    let mut out = Document::new(d.id.clone());
    out.vector = d.vector.clone().filter(|_| p.wants(VECTOR_ATTR));
    out.attrs = d.attrs.iter().filter(|(k, _)| p.wants(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Arc::new(out)
}
