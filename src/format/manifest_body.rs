//! The manifest codec: the envelope around a body (`Manifest::encode`,
//! `try_encode`, `decode`, 4.1) and the serialized form of the body
//! (`storage-format.md` 4.2): the writer's field order, and the reader that
//! takes the schema by the manifest's format version. The manifest's types
//! and sanity checks live in `format/manifest.rs`, which does not depend on
//! this file.
//!
//! Invariants:
//! - The writer writes exactly one of `schema` (the current schema encoding,
//!   `format::schema`) and `schema_ref`, under format version 3.
//! - The reader decodes `schema` by version: versions 1 and 2 hold the
//!   turbopuffer shape (the legacy reader), version 3 the current encoding;
//!   no API parser is involved either way.
//! - [`Manifest`] and the two mirrors here are destructured without `..`, so
//!   a field added to the manifest cannot be forgotten by the codec.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{DistanceMetric, IdType};
use crate::schema::Schema;

use super::manifest::{
    Lineage, Manifest, ManifestStats, ObjectRef, Origin, SegmentRef, WalRef, MANIFEST_FORMAT_VERSION,
    MANIFEST_MAGIC,
};
use super::manifest_envelope::{check_size, envelope, malformed, open_envelope, MAX_MANIFEST_BYTES};
use super::schema::{decode_legacy_schema_text, decode_schema, StoredSchema};
use super::FormatError;

/// The serialized form of a manifest body: the fields of [`Manifest`] in
/// order, `schema` written only without a `schema_ref` and `schema_ref` only
/// with one. Borrowed, so encoding copies nothing.
#[derive(Serialize)]
struct BodyOut<'a> {
    namespace: &'a str,
    generation: u64,
    commit_id: &'a str,
    previous_generation: Option<u64>,
    created_at_ms: u64,
    committed_at_ms: u64,
    deleted: bool,
    id_type: Option<IdType>,
    distance_metric: Option<DistanceMetric>,
    vector_dim: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<StoredSchema<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_ref: Option<&'a ObjectRef>,
    next_wal_seq: u64,
    wal: &'a [WalRef],
    segments: &'a [SegmentRef],
    row_id_hwm: u64,
    lineage: Option<&'a Lineage>,
    stats: ManifestStats,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_generation: Option<u64>,
    #[serde(skip_serializing_if = "is_false")]
    read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a Origin>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl Serialize for Manifest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Manifest {
            namespace,
            generation,
            commit_id,
            previous_generation,
            created_at_ms,
            committed_at_ms,
            deleted,
            id_type,
            distance_metric,
            vector_dim,
            schema,
            schema_ref,
            next_wal_seq,
            wal,
            segments,
            row_id_hwm,
            lineage,
            stats,
            labels,
            data_generation,
            read_only,
            origin,
        } = self;
        BodyOut {
            namespace,
            generation: *generation,
            commit_id,
            previous_generation: *previous_generation,
            created_at_ms: *created_at_ms,
            committed_at_ms: *committed_at_ms,
            deleted: *deleted,
            id_type: *id_type,
            distance_metric: *distance_metric,
            vector_dim: *vector_dim,
            schema: schema_ref.is_none().then_some(StoredSchema(schema)),
            schema_ref: schema_ref.as_ref(),
            next_wal_seq: *next_wal_seq,
            wal,
            segments,
            row_id_hwm: *row_id_hwm,
            lineage: lineage.as_ref(),
            stats: *stats,
            labels,
            data_generation: *data_generation,
            read_only: *read_only,
            origin: origin.as_ref(),
        }
        .serialize(s)
    }
}

/// A manifest body as read: every field of [`Manifest`], the schema still
/// raw (its shape depends on the format version).
#[derive(Deserialize)]
struct BodyIn<'a> {
    namespace: String,
    generation: u64,
    commit_id: String,
    previous_generation: Option<u64>,
    created_at_ms: u64,
    committed_at_ms: u64,
    deleted: bool,
    id_type: Option<IdType>,
    distance_metric: Option<DistanceMetric>,
    vector_dim: Option<u32>,
    #[serde(default, borrow)]
    schema: Option<&'a RawValue>,
    #[serde(default)]
    schema_ref: Option<ObjectRef>,
    next_wal_seq: u64,
    wal: Vec<WalRef>,
    #[serde(default)]
    segments: Vec<SegmentRef>,
    #[serde(default)]
    row_id_hwm: u64,
    #[serde(default)]
    lineage: Option<Lineage>,
    #[serde(default)]
    stats: ManifestStats,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    data_generation: Option<u64>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    origin: Option<Origin>,
}

impl Manifest {
    /// Encode as an envelope (see the module doc). The manifest should be
    /// valid ([`Manifest::validate`]); writers use [`Manifest::try_encode`].
    pub fn encode(&self) -> Vec<u8> {
        // Serializing this type cannot fail (string map keys, no custom
        // serializers); an empty result would be refused by `decode`.
        serde_json::to_string(self)
            .map(|body| envelope(MANIFEST_MAGIC, self.format_version(), &body))
            .unwrap_or_default()
    }

    /// Validate, then encode.
    pub fn try_encode(&self) -> Result<Vec<u8>, FormatError> {
        self.validate()?;
        let body = serde_json::to_string(self).map_err(|e| malformed("manifest", e))?;
        let out = envelope(MANIFEST_MAGIC, self.format_version(), &body);
        check_size("manifest", &out, MAX_MANIFEST_BYTES)?;
        Ok(out)
    }

    /// Decode and verify a manifest file (versions 1 to 3). A manifest
    /// naming a schema object comes back with its schema unresolved
    /// ([`Manifest::schema_unresolved`]): the reader fetches the schema object.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let (version, body) = open_envelope("manifest", bytes, MANIFEST_MAGIC, MANIFEST_FORMAT_VERSION)?;
        let m = decode_body(version, body)?;
        m.validate()?;
        Ok(m)
    }
}

/// Parse a manifest body of format `version` (1..=3): its fields, then its
/// schema in that version's shape, refusing a body whose `schema` /
/// `schema_ref` do not fit the version (4.3). The caller validates.
pub(crate) fn decode_body(version: u64, body: &str) -> Result<Manifest, FormatError> {
    let b: BodyIn<'_> = serde_json::from_str(body).map_err(|e| malformed("manifest body", e))?;
    let schema = body_schema(version, b.schema, b.schema_ref.is_some())?;
    let BodyIn {
        namespace,
        generation,
        commit_id,
        previous_generation,
        created_at_ms,
        committed_at_ms,
        deleted,
        id_type,
        distance_metric,
        vector_dim,
        schema: _,
        schema_ref,
        next_wal_seq,
        wal,
        segments,
        row_id_hwm,
        lineage,
        stats,
        labels,
        data_generation,
        read_only,
        origin,
    } = b;
    Ok(Manifest {
        namespace,
        generation,
        commit_id,
        previous_generation,
        created_at_ms,
        committed_at_ms,
        deleted,
        id_type,
        distance_metric,
        vector_dim,
        schema,
        schema_ref,
        next_wal_seq,
        wal,
        segments,
        row_id_hwm,
        lineage,
        stats,
        labels,
        data_generation,
        read_only,
        origin,
    })
}

/// The schema a body of `version` carries inline (empty when it names a
/// schema object): version 1, the turbopuffer shape (absent: empty) and no
/// reference; version 2, a reference (an inline schema only if empty);
/// version 3, exactly one of an inline schema in the current encoding and a
/// reference.
fn body_schema(version: u64, raw: Option<&RawValue>, has_ref: bool) -> Result<Schema, FormatError> {
    let refuse = |why: &str| Err(malformed("manifest", why));
    match (version, raw, has_ref) {
        (1, _, true) => refuse("a version 1 manifest has a schema_ref"),
        (1, None, false) => Ok(Schema::new()),
        (1, Some(raw), false) => decode_legacy_schema_text(raw.get()),
        (2, _, false) => refuse("a version 2 manifest has no schema_ref"),
        (2, None, true) => Ok(Schema::new()),
        (2, Some(raw), true) => match decode_legacy_schema_text(raw.get())? {
            s if s.is_empty() => Ok(s),
            _ => refuse("a version 2 manifest carries its schema inline"),
        },
        (_, Some(_), true) => refuse("a version 3 manifest has both schema and schema_ref"),
        (_, None, false) => refuse("a version 3 manifest has neither schema nor schema_ref"),
        (_, None, true) => Ok(Schema::new()),
        (_, Some(raw), false) => decode_schema(raw.get()),
    }
}
