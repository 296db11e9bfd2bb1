//! Namespace documents of the turbopuffer API: metadata (`GET
//! /v1/namespaces/{ns}/metadata`), the schema document, index status and
//! timestamps.
//!
//! Invariant: rendering reads only the typed values it is given (a manifest,
//! a state's schema); timestamps are RFC 3339 UTC with milliseconds.

use serde_json::{json, Value as Json};

use crate::engine::branch::ForkOutcome;
use crate::engine::{EngineError, NamespaceMetadata};
use crate::format::manifest::Manifest;
use crate::state::NsState;

/// The body of `POST /v1/namespaces/{ns}/schema`: the schema object `{attr: type | {...}}`, parsed
/// with the API's rules (the engine takes it typed).
pub fn parse_schema_update(body: &Json) -> Result<crate::schema::Schema, EngineError> {
    if !body.is_object() {
        return Err(EngineError::invalid_input(
            "the schema update body must be the schema object {attr: type | {...}}",
        ));
    }
    crate::schema::parse_schema(body).map_err(|e| EngineError::invalid_input(e.to_string()))
}

impl NamespaceMetadata {
    /// turbopuffer's metadata document.
    pub fn to_json(&self) -> Json {
        let m = &self.manifest;
        let mut schema = crate::schema::schema_to_json(&m.schema);
        if let (Some(t), Some(o)) = (m.id_type, schema.as_object_mut()) {
            o.insert("id".into(), json!({"type": t.schema_name(), "filterable": true}));
        }
        let mut v = json!({
            "approx_logical_bytes": m.stats.approx_logical_bytes,
            "approx_row_count": m.stats.approx_row_count,
            "created_at": rfc3339(m.created_at_ms),
            "updated_at": rfc3339(m.committed_at_ms),
            "schema": schema,
            "encryption": {"mode": "default"},
            "index": index_status(m),
            "version": m.generation,
            "distance_metric": m.distance_metric.map(|d| d.as_str()),
        });
        v["cache"] = json!({"resident_bytes": self.resident_bytes, "pinned": self.pinned});
        if !m.labels.is_empty() {
            v["labels"] = json!(m.labels);
        }
        if self.pinned {
            v["pinning"] = json!({"replicas": 1, "status": {"ready_replicas": 1, "replicas": 1, "utilization": 0.0,
                "updated_at": rfc3339(m.committed_at_ms)}});
        }
        v
    }
}

/// turbopuffer's `index` object: up-to-date when no WAL awaits compaction.
fn index_status(m: &Manifest) -> Json {
    if m.wal.is_empty() {
        json!({"status": "up-to-date"})
    } else {
        json!({"status": "updating", "unindexed_bytes": m.stats.unindexed_bytes, "unindexed_rows": m.stats.unindexed_rows})
    }
}

/// The turbopuffer schema document of a state (with the `id` type).
pub fn schema_json(s: &NsState) -> Json {
    let mut v = crate::schema::schema_to_json(&s.schema);
    if let (Some(t), Some(o)) = (s.id_type, v.as_object_mut()) {
        o.insert("id".into(), json!({"type": t.schema_name(), "filterable": true}));
    }
    v
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", ms % 1000)
}

impl ForkOutcome {
    /// The admin copy/branch response body.
    pub fn to_json(&self) -> Json {
        json!({
            "status": "OK",
            "namespace": self.manifest.namespace,
            "version": self.manifest.generation,
            "source_version": self.source_generation,
            "objects_shared": self.objects_shared,
            "objects_copied": self.objects_copied,
            "lineage": self.manifest.lineage.as_ref().map(|l| json!({
                "parent": l.parent, "parent_generation": l.parent_generation
            })),
        })
    }
}
