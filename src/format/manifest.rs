//! The manifest codec (`manifests/{gen:020}.json`, one immutable object per
//! generation) and the CURRENT generation hint codec (see
//! `storage-format.md`, "Manifest" and "CURRENT").
//!
//! A manifest is a JSON envelope whose checksum covers the body's bytes
//! exactly as stored (`format::manifest_envelope`; the body's fields are
//! written and read by `format::manifest_body`):
//!
//! ```text
//! {"magic":"tidepool.manifest","format_version":3,"crc32c":<u32>,"body":{...}}\n
//! ```
//!
//! Invariants:
//! - `crc32c` is the crc32c of the exact bytes of `body` between its opening
//!   `{` and closing `}` inclusive (read with `RawValue`, never re-serialized
//!   before checking).
//! - `magic` is checked first, then `format_version` (unknown versions are
//!   refused), then the size cap and checksum, then the body's fields, then
//!   [`Manifest::validate`].
//! - Unknown fields (in the envelope and in the body) are ignored, for
//!   forward compatibility within a version; they are dropped when a manifest
//!   is re-encoded, so only additive, safe-to-drop information may be added
//!   without a version bump.
//! - [`Manifest::try_encode`] refuses exactly what [`Manifest::decode`]
//!   would refuse (the schema's structural bounds included,
//!   `format::schema::check_schema`), so a writer never publishes an
//!   unreadable generation.
//! - CURRENT is only a hint: readers verify it and fall back to listing.
//! - `schema` is the typed [`Schema`], stored in tidepool's own encoding
//!   (`format::schema`), never parsed by the API's parsers. Every manifest is
//!   written as format version 3; versions 1 and 2 (the schema in
//!   turbopuffer's shape, inline or in a version 1 schema object) are read
//!   forever through the legacy reader of `format::schema`.
//! - A schema whose encoding is larger than [`SCHEMA_INLINE_MAX_BYTES`]
//!   lives in a schema object (4.5) that the manifest names by
//!   [`Manifest::schema_ref`] instead of carrying it. In memory, `schema` is
//!   the resolved schema: [`Manifest::decode`] of such a manifest leaves it
//!   empty until the reader resolves it ([`Manifest::schema_unresolved`]),
//!   and `schema_ref` is only kept while it names exactly `schema`'s encoding
//!   (whoever changes `schema` clears it; the commit unit re-checks). A
//!   manifest carried unresolved may name a version 1 schema object.
//! - The schema object is one of the manifest's objects
//!   ([`Manifest::object_keys`], [`Manifest::object_refs`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{DistanceMetric, IdType, MAX_VECTOR_DIM};
use crate::schema::Schema;

pub use super::manifest_envelope::MAX_MANIFEST_BYTES;
use super::manifest_envelope::{check_size, malformed};
use super::schema::{check_schema, decode_schema_object_body};
pub use super::schema::{encode_schema_object, schema_json, SCHEMA_FORMAT_VERSION, SCHEMA_MAGIC};
use super::{len_u64, FormatError};

/// The `magic` of a manifest envelope.
pub const MANIFEST_MAGIC: &str = "tidepool.manifest";
/// The manifest format version this build writes, and the highest it reads
/// (3: the schema in tidepool's encoding; 1 and 2, the turbopuffer-shaped
/// schema inline or in a schema object, are still read).
pub const MANIFEST_FORMAT_VERSION: u64 = 3;
/// Schemas whose encoding ([`schema_json`]) is at most this long stay inline
/// in the manifest; larger ones get a schema object.
pub const SCHEMA_INLINE_MAX_BYTES: usize = 4096;
/// The `magic` of a CURRENT hint.
pub const CURRENT_MAGIC: &str = "tidepool.current";
/// The CURRENT format version this build writes (and the highest it reads;
/// version 1, the generation alone, is still read and written for manifests
/// too large to embed).
pub const CURRENT_FORMAT_VERSION: u64 = 2;
/// Largest manifest embedded in a CURRENT hint (larger ones: version 1 form).
pub const MAX_EMBEDDED_MANIFEST_BYTES: usize = 256 << 10;
/// Largest CURRENT file accepted.
pub const MAX_CURRENT_BYTES: usize = 4096 + MAX_EMBEDDED_MANIFEST_BYTES;
/// Length of a commit id (lowercase hex digits).
pub const COMMIT_ID_LEN: usize = 32;

/// A WAL batch object referenced by a manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalRef {
    /// Full object key (`.../wal/{seq:020}-{token}.wal`).
    pub key: String,
    /// The batch's WAL sequence number.
    pub seq: u64,
    /// Object size in bytes.
    pub bytes: u64,
    /// crc32c of the whole object.
    pub crc32c: u32,
    /// Requests in the batch.
    pub requests: u32,
    /// Rows named directly by the batch.
    pub rows: u64,
}

/// One file of a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// Full object key.
    pub key: String,
    /// Object size in bytes.
    pub bytes: u64,
    /// crc32c of the whole object.
    pub crc32c: u32,
}

/// An immutable segment (`segments/{id}/data.seg`, see
/// `crate::format::segment`) and the deletion set that retires some of its
/// rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Segment id (unique within the manifest).
    pub id: String,
    /// Its files (one: the data file).
    pub files: Vec<ObjectRef>,
    /// Rows it holds (deleted ones included).
    pub rows: u64,
    /// The deletion set (`deletes-{token}.del`) over its row positions, if any
    /// row is retired. It may live under another namespace's prefix than the
    /// segment (a branch retiring rows of its parent's segment writes its own).
    /// Omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes: Option<ObjectRef>,
    /// Stored size of the segment's files in bytes (the sum of `files[].bytes`;
    /// the deletion set excluded); 0 = not recorded. Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bytes: u64,
    /// Byte ranges of the data file's sections a cold reader fetches directly
    /// (copied from the segment's section table at compaction). Omitted when
    /// empty; readers without it download the whole file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sections: Vec<SectionRef>,
    /// Per full-text attribute whose text section the data file holds, the analysis options
    /// it was built under (`index::text::analysis_key`), written by the compaction that built
    /// it: a later merge takes that section's postings as they are only under equal options.
    /// Omitted when empty (segments written before it existed: their sections are analysed
    /// again when merged).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub text_analysis: BTreeMap<String, String>,
}

/// One section of a segment's data file, as its section table describes it
/// (`storage-format.md` 8.3), plus the length of its head for index sections
/// whose head is verified on its own (the cold IVF section, 11.4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionRef {
    /// Section kind.
    pub kind: u16,
    /// Byte offset in the data file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// crc32c of the whole section.
    pub crc32c: u32,
    /// Length of the section's head (0 = not applicable). Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub head: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where a branch came from (reserved for branching).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The parent namespace, `org/project/ns`.
    pub parent: String,
    /// The parent generation branched from.
    pub parent_generation: u64,
}

/// Approximate statistics of a generation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestStats {
    /// Approximate live rows.
    pub approx_row_count: u64,
    /// Approximate logical bytes of live rows.
    pub approx_logical_bytes: u64,
    /// Rows only in the WAL (not yet in segments).
    pub unindexed_rows: u64,
    /// Bytes only in the WAL.
    pub unindexed_bytes: u64,
}

/// The body of one manifest generation: the complete state of a namespace.
/// Encoded and decoded by `format::manifest_body` (exactly one of `schema`
/// and `schema_ref`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Manifest {
    /// `org/project/ns`.
    pub namespace: String,
    /// This generation (equals the number in the object key).
    pub generation: u64,
    /// Unique per commit attempt (32 lowercase hex digits); resolves
    /// ambiguous conditional creates.
    pub commit_id: String,
    /// The base generation this one was committed on (None for the first).
    pub previous_generation: Option<u64>,
    /// Namespace creation time (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Commit time (ms since the Unix epoch).
    pub committed_at_ms: u64,
    /// A tombstone generation: the namespace was deleted.
    pub deleted: bool,
    /// The id kind, once known.
    pub id_type: Option<IdType>,
    /// The distance metric, once set.
    pub distance_metric: Option<DistanceMetric>,
    /// The dense vector dimension, once known.
    pub vector_dim: Option<u32>,
    /// The typed schema, resolved (see [`Manifest::schema_unresolved`]).
    /// Stored inline in tidepool's encoding (`format::schema`) or in the
    /// object `schema_ref` names.
    pub schema: Schema,
    /// The schema object holding `schema`, when it is too large to store
    /// inline. Names exactly the encoding of `schema` (or, carried
    /// unresolved, an older encoding of it): code that changes `schema` sets
    /// this to None and the commit unit stores it anew.
    pub schema_ref: Option<ObjectRef>,
    /// The sequence number the next WAL batch gets.
    pub next_wal_seq: u64,
    /// WAL batches not yet folded into segments, by increasing seq.
    pub wal: Vec<WalRef>,
    /// Segments (reserved).
    pub segments: Vec<SegmentRef>,
    /// Row id high-water mark (reserved, branch row ids).
    pub row_id_hwm: u64,
    /// Branch lineage (reserved).
    pub lineage: Option<Lineage>,
    /// Approximate statistics.
    pub stats: ManifestStats,
    /// Namespace labels (key → value), kept by every later generation, by
    /// branches, copies and snapshots; absent from the JSON when empty.
    pub labels: BTreeMap<String, String>,
    /// The generation of the last commit that changed documents, schema or
    /// settings, when older than this one: commits that only reorganize
    /// storage (compaction) or change labels keep it, so an `if_version`
    /// read before them still matches. Absent: this generation (4.2).
    pub data_generation: Option<u64>,
    /// The namespace refuses writes, schema changes and its deletion until this is cleared
    /// (`PATCH .../metadata {"read_only": false}`); kept by every later generation, branches and
    /// copies; absent from the JSON when false (4.2).
    pub read_only: bool,
    /// Set only on a generation a sync push published in a remote bucket:
    /// the node that pushed it and the local generation it carries (4.2,
    /// `sync/`). A node recognises its own pushes by it after a crash.
    pub origin: Option<Origin>,
}

/// Who published a pushed generation (see [`Manifest::origin`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The pushing node's id (`[sync] node_id`).
    pub node: String,
    /// The node's local generation this one carries.
    pub local_generation: u64,
    /// The push-lease epoch it was published under (12.4; absent: no lease,
    /// as in `both` mode).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub epoch: u64,
}

impl Manifest {
    /// The version a client's `if_version` may name for this generation's
    /// content (besides the generation itself).
    pub fn content_version(&self) -> u64 {
        self.data_generation.unwrap_or(self.generation)
    }

    /// Whether the schema still has to be read from the schema object
    /// (decoded from a manifest naming a schema object, not resolved yet). A stored schema
    /// is never empty (an empty one is inline), so this is exact.
    pub fn schema_unresolved(&self) -> bool {
        self.schema_ref.is_some() && self.schema.is_empty()
    }

    /// The format version this manifest is written in: always the current
    /// one (versions 1 and 2 are only read).
    pub fn format_version(&self) -> u64 {
        MANIFEST_FORMAT_VERSION
    }
}

#[derive(Deserialize)]
struct CurrentIn<'a> {
    magic: Option<String>,
    format_version: Option<u64>,
    generation: Option<u64>,
    crc32c: Option<u32>,
    #[serde(borrow, default)]
    manifest: Option<&'a RawValue>,
}

fn check_magic_version(
    what: &'static str,
    magic: Option<&str>,
    expected_magic: &str,
    version: Option<u64>,
    supported: u64,
) -> Result<(), FormatError> {
    if magic != Some(expected_magic) {
        return Err(FormatError::BadMagic { what });
    }
    match version {
        None => Err(malformed(what, "missing format_version")),
        Some(v) if v != supported => Err(FormatError::UnsupportedVersion { what, version: v, supported }),
        Some(_) => Ok(()),
    }
}

impl Manifest {
    /// The sanity checks `decode` applies after the checksum.
    pub fn validate(&self) -> Result<(), FormatError> {
        let bad = |why: String| Err(FormatError::Malformed(format!("manifest: {why}")));
        if let Err(e) = crate::layout::NsPath::parse(&self.namespace) {
            return bad(e.to_string());
        }
        if self.commit_id.len() != COMMIT_ID_LEN
            || !self.commit_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return bad(format!(
                "commit_id {:?} is not {COMMIT_ID_LEN} lowercase hex digits",
                self.commit_id
            ));
        }
        if let Some(p) = self.previous_generation {
            if p >= self.generation {
                return bad(format!("previous_generation {p} is not below generation {}", self.generation));
            }
        }
        if let Some(d) = self.vector_dim {
            if d == 0 || usize::try_from(d).map_or(true, |d| d > MAX_VECTOR_DIM) {
                return bad(format!("vector_dim {d} is outside 1..={MAX_VECTOR_DIM}"));
            }
        }
        if self.deleted && (!self.wal.is_empty() || !self.segments.is_empty()) {
            return bad("a deleted (tombstone) generation references objects".into());
        }
        let mut last_seq: Option<u64> = None;
        for w in &self.wal {
            if w.key.is_empty() {
                return bad("a WAL reference has an empty key".into());
            }
            if last_seq.is_some_and(|l| l >= w.seq) {
                return bad(format!("WAL seqs are not strictly increasing at {}", w.seq));
            }
            if w.seq >= self.next_wal_seq {
                return bad(format!("WAL seq {} is not below next_wal_seq {}", w.seq, self.next_wal_seq));
            }
            last_seq = Some(w.seq);
        }
        let mut ids = std::collections::BTreeSet::new();
        for s in &self.segments {
            if s.id.is_empty() || !ids.insert(s.id.as_str()) {
                return bad(format!("segment id {:?} is empty or duplicated", s.id));
            }
            if s.files.is_empty() {
                return bad(format!("segment {:?} has no files", s.id));
            }
            if s.files.iter().any(|f| f.key.is_empty())
                || s.deletes.as_ref().is_some_and(|d| d.key.is_empty())
            {
                return bad(format!("segment {:?} has a file with an empty key", s.id));
            }
            let file_bytes = s.files.iter().fold(0u64, |n, f| n.saturating_add(f.bytes));
            if s.bytes != 0 && s.bytes != file_bytes {
                return bad(format!(
                    "segment {:?} says it is {} bytes; its files are {file_bytes} bytes",
                    s.id, s.bytes
                ));
            }
            let data_bytes = s.files.first().map_or(0, |f| f.bytes);
            for r in &s.sections {
                if r.offset.checked_add(r.len).is_none_or(|end| end > data_bytes) || r.head > r.len {
                    return bad(format!(
                        "segment {:?} names section kind {} at {}+{} (head {}) outside its {data_bytes}-byte file",
                        s.id, r.kind, r.offset, r.len, r.head
                    ));
                }
            }
        }
        if self.schema_ref.as_ref().is_some_and(|r| r.key.is_empty()) {
            return bad("schema_ref has an empty key".into());
        }
        let mut keys = std::collections::BTreeSet::new();
        for k in self
            .wal
            .iter()
            .map(|w| &w.key)
            .chain(self.segments.iter().flat_map(segment_keys))
            .chain(self.schema_ref.iter().map(|r| &r.key))
        {
            if !keys.insert(k.as_str()) {
                return bad(format!("object key {k:?} is referenced twice"));
            }
        }
        check_schema(&self.schema)?;
        if let Some(l) = &self.lineage {
            if l.parent.is_empty() {
                return bad("lineage.parent is empty".into());
            }
        }
        if self.origin.as_ref().is_some_and(|o| o.node.is_empty()) {
            return bad("origin.node is empty".into());
        }
        Ok(())
    }

    /// Every object key this generation references (WAL batches, then for
    /// each segment its files and its deletion set, then the schema object),
    /// each once, in manifest order.
    pub fn object_keys(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.wal
            .iter()
            .map(|w| &w.key)
            .chain(self.segments.iter().flat_map(segment_keys))
            .chain(self.schema_ref.iter().map(|r| &r.key))
            .filter(|k| seen.insert(k.as_str()))
            .cloned()
            .collect()
    }

    /// The objects of [`Manifest::object_keys`] with their recorded length
    /// and crc32c, in the same order.
    pub fn object_refs(&self) -> Vec<ObjectRef> {
        let mut seen = std::collections::HashSet::new();
        let wal = self.wal.iter().map(|w| ObjectRef { key: w.key.clone(), bytes: w.bytes, crc32c: w.crc32c });
        let segs =
            self.segments.iter().flat_map(|s| s.files.iter().cloned().chain(s.deletes.iter().cloned()));
        wal.chain(segs)
            .chain(self.schema_ref.iter().cloned())
            .filter(|r| seen.insert(r.key.clone()))
            .collect()
    }
}

/// A segment's object keys: its files, then its deletion set.
fn segment_keys(s: &SegmentRef) -> impl Iterator<Item = &String> {
    s.files.iter().map(|f| &f.key).chain(s.deletes.iter().map(|d| &d.key))
}

/// The reference a manifest records for the schema object `bytes` at `key`.
pub fn schema_object_ref(key: String, bytes: &[u8]) -> ObjectRef {
    ObjectRef { key, bytes: len_u64(bytes.len()), crc32c: crc32c::crc32c(bytes) }
}

/// Decode a schema object (either version, `format::schema`), first checking
/// it is the object `r` names (length and whole-object crc32c).
pub fn decode_schema_object(r: &ObjectRef, bytes: &[u8]) -> Result<Schema, FormatError> {
    let actual = crc32c::crc32c(bytes);
    if len_u64(bytes.len()) != r.bytes || actual != r.crc32c {
        return Err(FormatError::ChecksumMismatch { what: "schema object", expected: r.crc32c, actual });
    }
    decode_schema_object_body(bytes)
}

fn current_crc(generation: u64) -> u32 {
    crc32c::crc32c(&generation.to_le_bytes())
}

/// Encode the version-1 CURRENT hint (the generation alone):
/// `{"magic":"tidepool.current","format_version":1,"generation":N,"crc32c":C}\n`
/// where C is the crc32c of N as 8 little-endian bytes.
pub fn encode_current(generation: u64) -> Vec<u8> {
    let crc = current_crc(generation);
    format!("{{\"magic\":\"{CURRENT_MAGIC}\",\"format_version\":1,\"generation\":{generation},\"crc32c\":{crc}}}\n")
        .into_bytes()
}

/// Encode the CURRENT hint for `m`: version 2, embedding `m`'s envelope so a
/// reader with nothing cached gets the manifest in one read
/// (`{..."format_version":2,"generation":N,"crc32c":C,"manifest":{envelope}}`),
/// or version 1 when the envelope exceeds [`MAX_EMBEDDED_MANIFEST_BYTES`].
pub fn encode_current_with_manifest(m: &Manifest) -> Vec<u8> {
    let envelope = m.encode();
    let envelope = envelope.strip_suffix(b"\n").unwrap_or(&envelope);
    if envelope.len() > MAX_EMBEDDED_MANIFEST_BYTES {
        return encode_current(m.generation);
    }
    let generation = m.generation;
    let crc = current_crc(generation);
    let mut out = format!(
        "{{\"magic\":\"{CURRENT_MAGIC}\",\"format_version\":2,\"generation\":{generation},\"crc32c\":{crc},\"manifest\":"
    )
    .into_bytes();
    out.extend_from_slice(envelope);
    out.extend_from_slice(b"}\n");
    out
}

/// Decode and verify the CURRENT hint; returns the generation.
pub fn decode_current(bytes: &[u8]) -> Result<u64, FormatError> {
    decode_current_full(bytes).map(|(g, _)| g)
}

/// Decode and verify the CURRENT hint: the generation and, for version 2, the
/// embedded manifest (its own checksum verified, its generation equal to the
/// hint's).
pub fn decode_current_full(bytes: &[u8]) -> Result<(u64, Option<Manifest>), FormatError> {
    check_size("CURRENT", bytes, MAX_CURRENT_BYTES)?;
    let c: CurrentIn<'_> = serde_json::from_slice(bytes).map_err(|e| malformed("CURRENT", e))?;
    let version = match c.format_version {
        Some(1) => 1,
        v => {
            check_magic_version("CURRENT", c.magic.as_deref(), CURRENT_MAGIC, v, CURRENT_FORMAT_VERSION)?;
            2
        }
    };
    if c.magic.as_deref() != Some(CURRENT_MAGIC) {
        return Err(FormatError::BadMagic { what: "CURRENT" });
    }
    let generation = c.generation.ok_or_else(|| malformed("CURRENT", "missing generation"))?;
    let expected = c.crc32c.ok_or_else(|| malformed("CURRENT", "missing crc32c"))?;
    let actual = current_crc(generation);
    if actual != expected {
        return Err(FormatError::ChecksumMismatch { what: "CURRENT", expected, actual });
    }
    let manifest = match (version, c.manifest) {
        (1, None) => None,
        (1, Some(_)) => return Err(malformed("CURRENT", "a version 1 hint embeds no manifest")),
        (_, None) => return Err(malformed("CURRENT", "version 2 without its manifest")),
        (_, Some(raw)) => {
            let m = Manifest::decode(raw.get().as_bytes())?;
            if m.generation != generation {
                return Err(malformed("CURRENT", "the embedded manifest is of another generation"));
            }
            Some(m)
        }
    };
    Ok((generation, manifest))
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
