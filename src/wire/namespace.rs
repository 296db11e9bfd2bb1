//! Namespace documents of the turbopuffer API: metadata (`GET
//! /v1/namespaces/{ns}/metadata`), the schema document, index status and
//! timestamps.
//!
//! Invariant: rendering reads only the typed values it is given (a manifest,
//! a state's schema, the extras of [`MetadataExtras`]); timestamps are RFC
//! 3339 UTC with milliseconds.

use serde_json::{json, Value as Json};

use crate::engine::branch::ForkOutcome;
use crate::engine::NamespaceMetadata;
use crate::format::manifest::{Lineage, Manifest};
use crate::layout::NsPath;
use crate::state::NsState;

/// What tidepool adds to turbopuffer's metadata document, each after the
/// document's own fields and in this order.
#[derive(Debug, Clone, Default)]
pub struct MetadataExtras {
    /// The store's last read failure (`store: {"reachable": false, ...}`).
    pub store_error: Option<String>,
    /// The branch's parent (`lineage`).
    pub lineage: Option<Lineage>,
    /// The namespace's sync status, rendered by the syncer (`sync`).
    pub sync: Option<Json>,
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
        if m.read_only {
            v["read_only"] = json!(true);
        }
        if self.pinned {
            v["pinning"] = json!({"replicas": 1, "status": {"ready_replicas": 1, "replicas": 1, "utilization": 0.0,
                "updated_at": rfc3339(m.committed_at_ms)}});
        }
        v
    }

    /// The metadata document plus tidepool's extras (`GET .../metadata`).
    pub fn to_json_with(&self, extras: MetadataExtras) -> Json {
        let mut v = self.to_json();
        if let Some(error) = extras.store_error {
            v["store"] = json!({"reachable": false, "error": error});
        }
        if let Some(l) = extras.lineage {
            // A parent is shown by its name within the caller's project.
            let parent = NsPath::parse(&l.parent).map(|p| p.ns().to_owned()).unwrap_or(l.parent);
            v["lineage"] = json!({"parent": parent, "parent_generation": l.parent_generation});
        }
        if let Some(sync) = extras.sync {
            v["sync"] = sync;
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_extras_follow_the_document_in_order() {
        let meta =
            NamespaceMetadata { manifest: Arc::new(Manifest::default()), pinned: false, resident_bytes: 0 };
        let plain = meta.to_json();
        assert_eq!(meta.to_json_with(MetadataExtras::default()), plain);
        let extras = MetadataExtras {
            store_error: Some("timed out".into()),
            lineage: Some(Lineage { parent: "org/proj/parent".into(), parent_generation: 4 }),
            sync: Some(json!({"mode": "push"})),
        };
        let v = meta.to_json_with(extras);
        assert_eq!(v["store"], json!({"reachable": false, "error": "timed out"}));
        // The parent is named within the caller's project.
        assert_eq!(v["lineage"], json!({"parent": "parent", "parent_generation": 4}));
        assert_eq!(v["sync"], json!({"mode": "push"}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys[..plain.as_object().unwrap().len()],
            plain.as_object().unwrap().keys().collect::<Vec<_>>()[..]
        );
        assert_eq!(keys[keys.len() - 3..], ["store", "lineage", "sync"]);
    }

    #[test]
    fn a_lineage_parent_that_is_not_a_path_is_shown_as_recorded() {
        let meta =
            NamespaceMetadata { manifest: Arc::new(Manifest::default()), pinned: false, resident_bytes: 0 };
        let lineage = Some(Lineage { parent: "not a path".into(), parent_generation: 1 });
        let v = meta.to_json_with(MetadataExtras { lineage, ..MetadataExtras::default() });
        assert_eq!(v["lineage"]["parent"], "not a path");
        assert!(v.get("store").is_none() && v.get("sync").is_none());
    }
}
