//! The WAL batch codec: one immutable object `wal/{seq:020}-{token}.wal`
//! holding the requests of one commit (see `storage-format.md`, "WAL batch").
//!
//! ```text
//! 0        8        10       12              16                24
//! +--------+--------+--------+---------------+-----------------+
//! | magic  | version| flags  | request_count | seq             |
//! | 8 B    | u16    | u16    | u32           | u64             |
//! +--------+--------+--------+---------------+-----------------+
//! 24                32                40           44           48
//! +-----------------+-----------------+------------+------------+
//! | created_at_ms   | body_len        | body_crc32c| header_crc |
//! | u64             | u64             | u32        | u32        |
//! +-----------------+-----------------+------------+------------+
//! 48: body = request_count request records, exactly body_len bytes.
//! ```
//!
//! Invariants:
//! - All integers are little-endian and fixed-width; `header_crc` is the
//!   crc32c of bytes 0..44, `body_crc32c` that of the body; the object ends
//!   exactly at `48 + body_len`.
//! - `magic` and `version` sit at fixed offsets forever; `version` is checked
//!   before anything else is interpreted, so a future layout is refused with
//!   `UnsupportedVersion`, not misread.
//! - The encoding is canonical: `encode(decode(b)) == b` for every accepted
//!   `b` (attribute maps in strictly increasing name order, bools and option
//!   tags exactly 0/1, only known flags), except that filters are re-encoded from
//!   their canonical JSON (`Filter::to_json`).
//! - `decode` accepts everything [`WalBatch::try_encode`] accepts; `encode`
//!   on a batch outside the limits (strings over 16 MiB, vectors over
//!   `MAX_VECTOR_DIM`, string ids outside 1..=64 bytes, nested arrays, a
//!   filter whose JSON does not parse back to itself) produces bytes that
//!   `decode` refuses, so writers use `try_encode`.
//! - Decoding never panics and never allocates from an unchecked length (see
//!   [`super::Reader`]).

use crate::filter::Filter;
use crate::model::{DistanceMetric, DocId, Document, MAX_STRING_ID_BYTES, MAX_VECTOR_DIM};
use crate::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};

pub use super::attrs::MAX_STRING_BYTES;
use super::attrs::{read_attrs, Enc};
use super::{len_u64, FormatError, Reader, Writer, FORMAT_VERSION_V1};

/// The first 8 bytes of every WAL batch object.
pub const WAL_MAGIC: [u8; 8] = *b"TIDE.WAL";
/// The WAL format version this build writes (and the highest it reads).
pub const WAL_FORMAT_VERSION: u16 = FORMAT_VERSION_V1;
/// Flag bit: the batch's requests were applied with `datetime` values and
/// literals as canonical UTC instants (storage-format 3.1, 3.5). Batches
/// without it replay with datetimes compared as the strings sent.
pub const WAL_FLAG_DATETIME_INSTANTS: u16 = 0x0001;
/// Every flag bit this build knows; a batch with any other bit is refused.
pub const WAL_KNOWN_FLAGS: u16 = WAL_FLAG_DATETIME_INSTANTS;
/// Size of the fixed header.
pub const WAL_HEADER_LEN: usize = 48;
/// Largest body accepted (1 GiB); the engine bounds batches well below.
pub const MAX_WAL_BODY_BYTES: u64 = 1 << 30;

// Header field offsets (the layout above, stated once more as constants).
const OFF_VERSION: usize = 8;
const OFF_FLAGS: usize = 10;
const OFF_REQUEST_COUNT: usize = 12;
const OFF_SEQ: usize = 16;
const OFF_CREATED_AT: usize = 24;
const OFF_BODY_LEN: usize = 32;
const OFF_BODY_CRC: usize = 40;
const OFF_HEADER_CRC: usize = 44;
const _: () = assert!(OFF_VERSION == WAL_MAGIC.len());
const _: () = assert!(OFF_FLAGS == OFF_VERSION + 2);
const _: () = assert!(OFF_REQUEST_COUNT == OFF_FLAGS + 2);
const _: () = assert!(OFF_SEQ == OFF_REQUEST_COUNT + 4);
const _: () = assert!(OFF_CREATED_AT == OFF_SEQ + 8);
const _: () = assert!(OFF_BODY_LEN == OFF_CREATED_AT + 8);
const _: () = assert!(OFF_BODY_CRC == OFF_BODY_LEN + 8);
const _: () = assert!(OFF_HEADER_CRC == OFF_BODY_CRC + 4);
const _: () = assert!(WAL_HEADER_LEN == OFF_HEADER_CRC + 4);

// Tags.
const OPT_NONE: u8 = 0;
const OPT_SOME: u8 = 1;
const METRIC_NONE: u8 = 0;
const METRIC_COSINE: u8 = 1;
const METRIC_EUCLIDEAN_SQUARED: u8 = 2;
const ID_U64: u8 = 0;
const ID_UUID: u8 = 1;
const ID_STR: u8 = 2;

// Minimum encoded sizes, used to bound counts before allocating.
/// Smallest request record: 3 option/metric tags, 3 counts, 2 tags,
/// 3 list counts and 3 condition tags.
pub const MIN_REQUEST_BYTES: usize = 1 + 1 + 1 + 24 + 1 + 1 + 4 + 1 + 4 + 1 + 4 + 1;
const MIN_ID_BYTES: usize = 1 + 4 + 1; // a 1-byte string id
const MIN_DOC_BYTES: usize = MIN_ID_BYTES + 1 + 4;
const MIN_PATCH_BYTES: usize = MIN_ID_BYTES + 4;

/// The decoded fixed header of a WAL batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalHeader {
    /// Format version (always [`WAL_FORMAT_VERSION`] once decoded).
    pub version: u16,
    /// Flags (a subset of [`WAL_KNOWN_FLAGS`]).
    pub flags: u16,
    /// Number of request records in the body.
    pub request_count: u32,
    /// The batch's WAL sequence number.
    pub seq: u64,
    /// When the batch was written (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// Body length in bytes.
    pub body_len: u64,
    /// crc32c of the body.
    pub body_crc32c: u32,
}

/// One WAL batch: the requests of one commit, in application order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WalBatch {
    /// WAL sequence number (also in the object key).
    pub seq: u64,
    /// When the batch was written (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// The requests, applied in this order.
    pub requests: Vec<RequestRecord>,
    /// Header flags ([`WAL_FLAG_DATETIME_INSTANTS`]): how the requests were
    /// applied, so a replay applies them alike.
    pub flags: u16,
}

impl WalBatch {
    /// Encode. The batch must be within the limits (see the module doc);
    /// writers that cannot guarantee it use [`WalBatch::try_encode`].
    pub fn encode(&self) -> Vec<u8> {
        self.encode_inner().0
    }

    /// Encode, refusing a batch that `decode` would not read back.
    pub fn try_encode(&self) -> Result<Vec<u8>, FormatError> {
        match self.encode_inner() {
            (bytes, None) => Ok(bytes),
            (_, Some(e)) => Err(e),
        }
    }

    /// Decode and verify a whole batch object.
    pub fn decode(bytes: &[u8]) -> Result<WalBatch, FormatError> {
        let header = peek_header(bytes)?;
        let rest = bytes.get(WAL_HEADER_LEN..).unwrap_or_default();
        let available = len_u64(rest.len());
        if header.body_len > available {
            return Err(FormatError::Truncated { what: "wal body", needed: header.body_len, available });
        }
        if header.body_len < available {
            return Err(FormatError::TrailingBytes { what: "wal batch", extra: available - header.body_len });
        }
        let actual = crc32c::crc32c(rest);
        if actual != header.body_crc32c {
            return Err(FormatError::ChecksumMismatch {
                what: "wal body",
                expected: header.body_crc32c,
                actual,
            });
        }
        let mut r = Reader::new(rest);
        let count = usize::try_from(header.request_count).unwrap_or(usize::MAX);
        if count.saturating_mul(MIN_REQUEST_BYTES) > rest.len() {
            return Err(FormatError::Truncated {
                what: "wal requests",
                needed: len_u64(count.saturating_mul(MIN_REQUEST_BYTES)),
                available: len_u64(rest.len()),
            });
        }
        let mut requests = Vec::with_capacity(count);
        for _ in 0..count {
            requests.push(read_request(&mut r)?);
        }
        r.finish("wal body")?;
        Ok(WalBatch { seq: header.seq, created_at_ms: header.created_at_ms, requests, flags: header.flags })
    }

    /// Rows named directly by the batch's requests (upserts + patches +
    /// deletes), for `WalRef::rows`.
    pub fn direct_rows(&self) -> u64 {
        self.requests.iter().map(|r| len_u64(r.ops.direct_rows())).sum()
    }

    fn encode_inner(&self) -> (Vec<u8>, Option<FormatError>) {
        let mut e = Enc { w: Writer::with_capacity(WAL_HEADER_LEN + 256), violation: None };
        e.w.bytes(&WAL_MAGIC);
        e.w.u16(WAL_FORMAT_VERSION);
        e.w.u16(self.flags);
        let count = e.count("wal requests", self.requests.len(), usize::MAX);
        e.w.u32(count);
        e.w.u64(self.seq);
        e.w.u64(self.created_at_ms);
        e.w.u64(0); // body_len, patched below
        e.w.u32(0); // body_crc32c, patched below
        e.w.u32(0); // header_crc32c, patched below
        for req in &self.requests {
            e.request(req);
        }
        let body_len = len_u64(e.w.len() - WAL_HEADER_LEN);
        if body_len > MAX_WAL_BODY_BYTES {
            e.violate(FormatError::TooLarge { what: "wal body", len: body_len, max: MAX_WAL_BODY_BYTES });
        }
        let body_crc = crc32c::crc32c(e.w.as_slice().get(WAL_HEADER_LEN..).unwrap_or_default());
        e.w.patch_u64(OFF_BODY_LEN, body_len);
        e.w.patch_u32(OFF_BODY_CRC, body_crc);
        let header_crc = crc32c::crc32c(e.w.as_slice().get(..OFF_HEADER_CRC).unwrap_or_default());
        e.w.patch_u32(OFF_HEADER_CRC, header_crc);
        (e.w.into_inner(), e.violation)
    }
}

/// Decode and verify only the fixed header (the first [`WAL_HEADER_LEN`]
/// bytes; `bytes` may be longer). Checks magic, version, header crc and flags.
pub fn peek_header(bytes: &[u8]) -> Result<WalHeader, FormatError> {
    let mut r = Reader::new(bytes);
    let magic: [u8; 8] = r.array("wal magic")?;
    if magic != WAL_MAGIC {
        return Err(FormatError::BadMagic { what: "wal batch" });
    }
    let version = r.u16("wal version")?;
    if version != WAL_FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: "wal batch",
            version: u64::from(version),
            supported: u64::from(WAL_FORMAT_VERSION),
        });
    }
    let header = bytes.get(..WAL_HEADER_LEN).ok_or(FormatError::Truncated {
        what: "wal header",
        needed: len_u64(WAL_HEADER_LEN),
        available: len_u64(bytes.len()),
    })?;
    let flags = r.u16("wal flags")?;
    let request_count = r.u32("wal request count")?;
    let seq = r.u64("wal seq")?;
    let created_at_ms = r.u64("wal created_at_ms")?;
    let body_len = r.u64("wal body_len")?;
    let body_crc32c = r.u32("wal body crc32c")?;
    let stored = r.u32("wal header crc32c")?;
    let actual = crc32c::crc32c(header.get(..OFF_HEADER_CRC).unwrap_or_default());
    if stored != actual {
        return Err(FormatError::ChecksumMismatch { what: "wal header", expected: stored, actual });
    }
    if flags & !WAL_KNOWN_FLAGS != 0 {
        return Err(FormatError::Malformed(format!("wal header: unknown flags {flags:#06x}")));
    }
    if body_len > MAX_WAL_BODY_BYTES {
        return Err(FormatError::TooLarge { what: "wal body", len: body_len, max: MAX_WAL_BODY_BYTES });
    }
    Ok(WalHeader { version, flags, request_count, seq, created_at_ms, body_len, body_crc32c })
}

// ---------------------------------------------------------------- encoding

/// The WAL-only parts of the limit-checking encoder (the attribute codec is in `super::attrs`).
impl Enc {
    fn opt_str(&mut self, what: &'static str, s: Option<&str>) {
        match s {
            None => self.w.u8(OPT_NONE),
            Some(s) => {
                self.w.u8(OPT_SOME);
                self.str(what, s);
            }
        }
    }

    fn filter(&mut self, what: &'static str, f: &Filter) {
        let json = f.to_json();
        if Filter::parse(&json).as_ref() != Ok(f) {
            self.violate(FormatError::Malformed(format!(
                "{what}: filter does not round-trip through its JSON form {json}"
            )));
        }
        self.str(what, &json.to_string());
    }

    fn opt_filter(&mut self, what: &'static str, f: Option<&Filter>) {
        match f {
            None => self.w.u8(OPT_NONE),
            Some(f) => {
                self.w.u8(OPT_SOME);
                self.filter(what, f);
            }
        }
    }

    fn id(&mut self, id: &DocId) {
        match id {
            DocId::U64(n) => {
                self.w.u8(ID_U64);
                self.w.u64(*n);
            }
            DocId::Uuid(u) => {
                self.w.u8(ID_UUID);
                self.w.bytes(u.as_bytes());
            }
            DocId::Str(s) => {
                if s.is_empty() || s.len() > MAX_STRING_ID_BYTES {
                    self.violate(FormatError::Malformed(format!(
                        "string id of {} bytes is outside 1..={MAX_STRING_ID_BYTES}",
                        s.len()
                    )));
                }
                self.w.u8(ID_STR);
                self.str("string id", s);
            }
        }
    }

    fn document(&mut self, d: &Document) {
        self.id(&d.id);
        match &d.vector {
            None => self.w.u8(OPT_NONE),
            Some(v) => {
                self.w.u8(OPT_SOME);
                let n = self.count("vector dimension", v.len(), MAX_VECTOR_DIM);
                self.w.u32(n);
                for x in v {
                    self.w.f32(*x);
                }
            }
        }
        self.attrs(&d.attrs);
    }

    fn request(&mut self, req: &RequestRecord) {
        self.opt_str("idempotency key", req.idempotency_key.as_deref());
        self.w.u8(match req.settings.distance_metric {
            None => METRIC_NONE,
            Some(DistanceMetric::CosineDistance) => METRIC_COSINE,
            Some(DistanceMetric::EuclideanSquared) => METRIC_EUCLIDEAN_SQUARED,
        });
        self.opt_str("schema json", req.settings.schema_json.as_deref());
        self.w.u64(req.counts.upserted);
        self.w.u64(req.counts.patched);
        self.w.u64(req.counts.deleted);
        let ops = &req.ops;
        self.opt_filter("delete_by_filter", ops.delete_by_filter.as_ref());
        match &ops.patch_by_filter {
            None => self.w.u8(OPT_NONE),
            Some(p) => {
                self.w.u8(OPT_SOME);
                self.filter("patch_by_filter", &p.filter);
                self.attrs(&p.attrs);
            }
        }
        let n = self.count("upserts", ops.upserts.len(), usize::MAX);
        self.w.u32(n);
        for d in &ops.upserts {
            self.document(d);
        }
        self.opt_filter("upsert_condition", ops.upsert_condition.as_ref());
        let n = self.count("patches", ops.patches.len(), usize::MAX);
        self.w.u32(n);
        for p in &ops.patches {
            self.id(&p.id);
            self.attrs(&p.attrs);
        }
        self.opt_filter("patch_condition", ops.patch_condition.as_ref());
        let n = self.count("deletes", ops.deletes.len(), usize::MAX);
        self.w.u32(n);
        for id in &ops.deletes {
            self.id(id);
        }
        self.opt_filter("delete_condition", ops.delete_condition.as_ref());
    }
}

// ---------------------------------------------------------------- decoding

fn read_present(r: &mut Reader<'_>, what: &'static str) -> Result<bool, FormatError> {
    match r.u8(what)? {
        OPT_NONE => Ok(false),
        OPT_SOME => Ok(true),
        t => Err(FormatError::Malformed(format!("{what}: option tag {t} is neither 0 nor 1"))),
    }
}

fn read_opt_string(r: &mut Reader<'_>, what: &'static str) -> Result<Option<String>, FormatError> {
    Ok(if read_present(r, what)? { Some(r.str(what, MAX_STRING_BYTES)?.to_owned()) } else { None })
}

fn read_filter(r: &mut Reader<'_>, what: &'static str) -> Result<Filter, FormatError> {
    let text = r.str(what, MAX_STRING_BYTES)?;
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| FormatError::Malformed(format!("{what}: filter is not JSON: {e}")))?;
    Filter::parse(&json).map_err(|e| FormatError::Malformed(format!("{what}: {e}")))
}

fn read_opt_filter(r: &mut Reader<'_>, what: &'static str) -> Result<Option<Filter>, FormatError> {
    Ok(if read_present(r, what)? { Some(read_filter(r, what)?) } else { None })
}

fn read_id(r: &mut Reader<'_>) -> Result<DocId, FormatError> {
    match r.u8("id tag")? {
        ID_U64 => Ok(DocId::U64(r.u64("u64 id")?)),
        ID_UUID => Ok(DocId::Uuid(uuid::Uuid::from_bytes(r.array("uuid id")?))),
        ID_STR => {
            let s = r.str("string id", MAX_STRING_ID_BYTES)?;
            if s.is_empty() {
                return Err(FormatError::Malformed("string id is empty".into()));
            }
            Ok(DocId::Str(s.to_owned()))
        }
        t => Err(FormatError::Malformed(format!("unknown id tag {t}"))),
    }
}

fn read_document(r: &mut Reader<'_>) -> Result<Document, FormatError> {
    let id = read_id(r)?;
    let vector = if read_present(r, "vector")? {
        let dim = r.count("vector dimension", 4, MAX_VECTOR_DIM)?;
        let mut v = Vec::with_capacity(dim);
        for _ in 0..dim {
            v.push(r.f32("vector element")?);
        }
        Some(v)
    } else {
        None
    };
    let attrs = read_attrs(r)?;
    Ok(Document { id, vector, attrs })
}

fn read_request(r: &mut Reader<'_>) -> Result<RequestRecord, FormatError> {
    let idempotency_key = read_opt_string(r, "idempotency key")?;
    let distance_metric = match r.u8("distance metric")? {
        METRIC_NONE => None,
        METRIC_COSINE => Some(DistanceMetric::CosineDistance),
        METRIC_EUCLIDEAN_SQUARED => Some(DistanceMetric::EuclideanSquared),
        t => return Err(FormatError::Malformed(format!("unknown distance metric tag {t}"))),
    };
    let schema_json = read_opt_string(r, "schema json")?;
    let counts =
        RowCounts { upserted: r.u64("upserted")?, patched: r.u64("patched")?, deleted: r.u64("deleted")? };
    let delete_by_filter = read_opt_filter(r, "delete_by_filter")?;
    let patch_by_filter = if read_present(r, "patch_by_filter")? {
        let filter = read_filter(r, "patch_by_filter")?;
        Some(PatchByFilter { filter, attrs: read_attrs(r)? })
    } else {
        None
    };
    let n = r.count("upserts", MIN_DOC_BYTES, usize::MAX)?;
    let mut upserts = Vec::with_capacity(n);
    for _ in 0..n {
        upserts.push(read_document(r)?);
    }
    let upsert_condition = read_opt_filter(r, "upsert_condition")?;
    let n = r.count("patches", MIN_PATCH_BYTES, usize::MAX)?;
    let mut patches = Vec::with_capacity(n);
    for _ in 0..n {
        let id = read_id(r)?;
        patches.push(Patch { id, attrs: read_attrs(r)? });
    }
    let patch_condition = read_opt_filter(r, "patch_condition")?;
    let n = r.count("deletes", MIN_ID_BYTES, usize::MAX)?;
    let mut deletes = Vec::with_capacity(n);
    for _ in 0..n {
        deletes.push(read_id(r)?);
    }
    let delete_condition = read_opt_filter(r, "delete_condition")?;
    Ok(RequestRecord {
        idempotency_key,
        settings: NamespaceSettings { distance_metric, schema_json },
        ops: WriteOps {
            upserts,
            upsert_condition,
            patches,
            patch_condition,
            deletes,
            delete_condition,
            delete_by_filter,
            patch_by_filter,
        },
        counts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Value;
    use proptest::prelude::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn filter(v: serde_json::Value) -> Filter {
        Filter::parse(&v).unwrap()
    }

    fn attrs(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }

    /// A batch with every value kind, every id kind and every op.
    fn full_batch() -> WalBatch {
        let doc = Document {
            id: DocId::U64(1),
            vector: Some(vec![0.5, -1.25, 3.0]),
            attrs: attrs(&[
                ("b", Value::Bool(true)),
                ("f", Value::Float(-2.5)),
                ("i", Value::Int(i128::from(u64::MAX))),
                ("n", Value::Int(-7)),
                ("s", Value::Str("héllo".into())),
                ("sp", Value::Sparse(vec![("k1".into(), 0.25), ("k2".into(), 1.0)])),
                ("t", Value::Array(vec![Value::Str("x".into()), Value::Str("y".into())])),
                ("u", Value::Array(vec![Value::Int(1), Value::Float(2.5), Value::Bool(false)])),
            ]),
        };
        let uuid = uuid::Uuid::from_u128(0x0b4a_2f8e_6c3d_4c53_9c49_4f0b_6a3e_2a11);
        let doc2 = Document { id: DocId::Uuid(uuid), vector: None, attrs: BTreeMap::new() };
        let doc3 = Document::new(DocId::Str("doc-3".into()));
        let full = RequestRecord {
            idempotency_key: Some("idem-1".into()),
            settings: NamespaceSettings {
                distance_metric: Some(DistanceMetric::CosineDistance),
                schema_json: Some(r#"{"s":"string"}"#.into()),
            },
            ops: WriteOps {
                upserts: vec![doc, doc2, doc3],
                upsert_condition: Some(filter(json!(["v", "Lt", 3]))),
                patches: vec![Patch {
                    id: DocId::U64(9),
                    attrs: attrs(&[("gone", Value::Null), ("s", Value::Str("new".into()))]),
                }],
                patch_condition: Some(filter(json!(["s", "Eq", "old"]))),
                deletes: vec![DocId::U64(2), DocId::Str("z".into()), DocId::Uuid(uuid)],
                delete_condition: Some(filter(json!(["b", "Eq", true]))),
                delete_by_filter: Some(filter(json!(["n", "Gt", 100]))),
                patch_by_filter: Some(PatchByFilter {
                    filter: filter(json!(["a", "Eq", 1])),
                    attrs: attrs(&[("flag", Value::Bool(true))]),
                }),
            },
            counts: RowCounts { upserted: 3, patched: 1, deleted: 3 },
        };
        let second = RequestRecord {
            settings: NamespaceSettings {
                distance_metric: Some(DistanceMetric::EuclideanSquared),
                schema_json: None,
            },
            ..RequestRecord::default()
        };
        WalBatch {
            seq: 42,
            created_at_ms: 1_700_000_000_000,
            requests: vec![full, second, RequestRecord::default()],
            flags: WAL_FLAG_DATETIME_INSTANTS,
        }
    }

    fn small_batch() -> WalBatch {
        let mut req = RequestRecord::default();
        req.ops.upserts.push(Document {
            id: DocId::U64(7),
            vector: Some(vec![1.0]),
            attrs: attrs(&[("a", Value::Int(1)), ("t", Value::Array(vec![Value::Str("x".into())]))]),
        });
        req.ops.deletes.push(DocId::Str("d".into()));
        WalBatch { seq: 3, created_at_ms: 5, requests: vec![req], flags: 0 }
    }

    /// Re-seal arbitrary body bytes with a valid header (for tests that need
    /// a structurally bad body behind good checksums).
    fn seal(request_count: u32, body: &[u8]) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(&WAL_MAGIC);
        w.u16(WAL_FORMAT_VERSION);
        w.u16(0);
        w.u32(request_count);
        w.u64(1);
        w.u64(2);
        w.u64(len_u64(body.len()));
        w.u32(crc32c::crc32c(body));
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.bytes(body);
        w.into_inner()
    }

    fn empty_request_body() -> Vec<u8> {
        let b = WalBatch { requests: vec![RequestRecord::default()], ..WalBatch::default() }.encode();
        b[WAL_HEADER_LEN..].to_vec()
    }

    #[test]
    fn every_value_kind_and_every_op_round_trips() {
        let b = full_batch();
        let bytes = b.try_encode().unwrap();
        assert_eq!(WalBatch::decode(&bytes).unwrap(), b);
        assert_eq!(bytes, b.encode());
    }

    #[test]
    fn encoding_is_canonical() {
        let bytes = full_batch().encode();
        assert_eq!(WalBatch::decode(&bytes).unwrap().encode(), bytes);
    }

    #[test]
    fn empty_request_has_the_minimum_size() {
        assert_eq!(empty_request_body().len(), MIN_REQUEST_BYTES);
        let empty = WalBatch::default().encode();
        assert_eq!(empty.len(), WAL_HEADER_LEN);
        assert_eq!(WalBatch::decode(&empty).unwrap(), WalBatch::default());
    }

    #[test]
    fn header_is_peekable_without_the_body() {
        let b = full_batch();
        let bytes = b.encode();
        let h = peek_header(&bytes[..WAL_HEADER_LEN]).unwrap();
        assert_eq!(h.seq, 42);
        assert_eq!(h.created_at_ms, 1_700_000_000_000);
        assert_eq!(h.request_count, 3);
        assert_eq!(h.body_len, len_u64(bytes.len() - WAL_HEADER_LEN));
        assert_eq!(h.body_crc32c, crc32c::crc32c(&bytes[WAL_HEADER_LEN..]));
        assert_eq!(b.direct_rows(), 7);
    }

    #[test]
    fn truncation_at_every_prefix_length_is_an_error() {
        let bytes = full_batch().encode();
        for n in 0..bytes.len() {
            assert!(WalBatch::decode(&bytes[..n]).is_err(), "prefix of {n} bytes decoded");
        }
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = small_batch().encode();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            assert!(WalBatch::decode(&b).is_err(), "flip of bit {i} went unnoticed");
        }
    }

    #[test]
    fn unknown_versions_are_refused_before_anything_else() {
        let mut bytes = small_batch().encode();
        bytes[OFF_VERSION..OFF_VERSION + 2].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            WalBatch::decode(&bytes),
            Err(FormatError::UnsupportedVersion { what: "wal batch", version: 2, supported: 1 })
        );
        // Even with a different (future) header size.
        assert!(matches!(peek_header(&bytes[..10]), Err(FormatError::UnsupportedVersion { .. })));
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut bytes = small_batch().encode();
        bytes[0] = b'X';
        assert_eq!(WalBatch::decode(&bytes), Err(FormatError::BadMagic { what: "wal batch" }));
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = small_batch().encode();
        bytes.push(0);
        assert_eq!(WalBatch::decode(&bytes), Err(FormatError::TrailingBytes { what: "wal batch", extra: 1 }));
        // Also inside the body: a correctly sealed body with an extra byte.
        let mut body = empty_request_body();
        body.push(0);
        assert_eq!(
            WalBatch::decode(&seal(1, &body)),
            Err(FormatError::TrailingBytes { what: "wal body", extra: 1 })
        );
    }

    #[test]
    fn unknown_flags_are_refused() {
        let mut w = Writer::new();
        let bytes = small_batch().encode();
        w.bytes(&bytes[..OFF_FLAGS]);
        w.u16(0x0002);
        w.bytes(&bytes[OFF_REQUEST_COUNT..OFF_HEADER_CRC]);
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        w.bytes(&bytes[WAL_HEADER_LEN..]);
        assert!(matches!(WalBatch::decode(&w.into_inner()), Err(FormatError::Malformed(_))));
    }

    #[test]
    fn huge_declared_lengths_fail_fast_without_allocating() {
        // A request count of u32::MAX over a tiny body.
        assert!(matches!(
            WalBatch::decode(&seal(u32::MAX, &empty_request_body())),
            Err(FormatError::Truncated { what: "wal requests", .. })
        ));
        // An idempotency key declaring 4 GiB - 1 bytes.
        // (Bodies are padded to MIN_REQUEST_BYTES so the request count passes.)
        let pad = |mut b: Vec<u8>| {
            b.resize(MIN_REQUEST_BYTES, 0);
            b
        };
        let body = pad([&[OPT_SOME][..], &u32::MAX.to_le_bytes()].concat());
        assert!(matches!(
            WalBatch::decode(&seal(1, &body)),
            Err(FormatError::TooLarge { what: "idempotency key", max, .. }) if max == len_u64(MAX_STRING_BYTES)
        ));
        // An idempotency key declaring 1 MiB in 8 bytes.
        let body = pad([&[OPT_SOME][..], &(1u32 << 20).to_le_bytes(), b"abc"].concat());
        assert!(matches!(
            WalBatch::decode(&seal(1, &body)),
            Err(FormatError::Truncated { what: "idempotency key", .. })
        ));
        // A body_len of u64::MAX in the header.
        let mut w = Writer::new();
        let bytes = small_batch().encode();
        w.bytes(&bytes[..OFF_BODY_LEN]);
        w.u64(u64::MAX);
        w.bytes(&bytes[OFF_BODY_CRC..OFF_HEADER_CRC]);
        let crc = crc32c::crc32c(w.as_slice());
        w.u32(crc);
        assert!(matches!(
            WalBatch::decode(&w.into_inner()),
            Err(FormatError::TooLarge { what: "wal body", .. })
        ));
        // A list count of u32::MAX.
        let mut body = empty_request_body();
        let upserts_at = 1 + 1 + 1 + 24 + 1 + 1;
        body[upserts_at..upserts_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            WalBatch::decode(&seal(1, &body)),
            Err(FormatError::Truncated { what: "upserts", .. })
        ));
    }

    #[test]
    fn vectors_over_the_dimension_cap_are_refused() {
        let mut b = small_batch();
        b.requests[0].ops.upserts[0].vector = Some(vec![0.0; MAX_VECTOR_DIM + 1]);
        assert!(matches!(b.try_encode(), Err(FormatError::TooLarge { what: "vector dimension", .. })));
        assert!(matches!(
            WalBatch::decode(&b.encode()),
            Err(FormatError::TooLarge { what: "vector dimension", .. })
        ));
        b.requests[0].ops.upserts[0].vector = Some(vec![0.0; MAX_VECTOR_DIM]);
        assert_eq!(WalBatch::decode(&b.try_encode().unwrap()).unwrap(), b);
    }

    #[test]
    fn nested_arrays_are_refused_on_encode_and_decode() {
        let mut b = small_batch();
        b.requests[0].ops.upserts[0]
            .attrs
            .insert("deep".into(), Value::Array(vec![Value::Array(vec![Value::Int(1)])]));
        assert!(matches!(b.try_encode(), Err(FormatError::Malformed(_))));
        assert!(matches!(WalBatch::decode(&b.encode()), Err(FormatError::Malformed(_))));
        let mut b = small_batch();
        b.requests[0].ops.upserts[0].attrs.insert("deep".into(), Value::Array(vec![Value::Sparse(vec![])]));
        assert!(matches!(WalBatch::decode(&b.encode()), Err(FormatError::Malformed(_))));
    }

    #[test]
    fn string_ids_outside_the_model_limits_are_refused() {
        for bad in [String::new(), "x".repeat(MAX_STRING_ID_BYTES + 1)] {
            let mut b = small_batch();
            b.requests[0].ops.deletes = vec![DocId::Str(bad)];
            assert!(b.try_encode().is_err());
            assert!(WalBatch::decode(&b.encode()).is_err());
        }
    }

    #[test]
    fn unknown_tags_are_refused() {
        for (offset, tag) in [(0, 2u8), (1, 3), (2, 7)] {
            let mut body = empty_request_body();
            body[offset] = tag;
            assert!(matches!(WalBatch::decode(&seal(1, &body)), Err(FormatError::Malformed(_))), "{offset}");
        }
    }

    #[test]
    fn out_of_order_attribute_names_are_refused() {
        let b = small_batch();
        let bytes = b.encode();
        let mut body = bytes[WAL_HEADER_LEN..].to_vec();
        // Rename attribute "t" to "a" (same length): now "a", "a".
        let pos = body.windows(5).position(|w| w == [1, 0, 0, 0, b't']).unwrap();
        body[pos + 4] = b'a';
        assert!(matches!(WalBatch::decode(&seal(1, &body)), Err(FormatError::Malformed(_))));
    }

    // ------------------------------------------------------------ proptest

    fn arb_id() -> impl Strategy<Value = DocId> {
        prop_oneof![
            any::<u64>().prop_map(DocId::U64),
            any::<u128>().prop_map(|u| DocId::Uuid(uuid::Uuid::from_u128(u))),
            "[a-z0-9_-]{1,64}".prop_map(DocId::Str),
        ]
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO,
            Just(f64::MAX),
            Just(f64::MIN_POSITIVE),
        ]
    }

    fn arb_scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Int(i128::from(i))),
            any::<u64>().prop_map(|i| Value::Int(i128::from(i))),
            arb_f64().prop_map(Value::Float),
            ".{0,12}".prop_map(Value::Str),
        ]
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => arb_scalar(),
            1 => proptest::collection::vec(arb_scalar(), 0..4).prop_map(Value::Array),
            1 => proptest::collection::vec((".{0,6}", -1e30f32..1e30f32), 0..4).prop_map(Value::Sparse),
        ]
    }

    fn arb_attrs() -> impl Strategy<Value = BTreeMap<String, Value>> {
        proptest::collection::btree_map(".{0,8}", arb_value(), 0..5)
    }

    fn arb_filter() -> impl Strategy<Value = Option<Filter>> {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(filter(json!(["a", "Eq", 1])))),
            1 => Just(Some(filter(json!(["s", "NotEq", "x"])))),
        ]
    }

    fn arb_doc() -> impl Strategy<Value = Document> {
        (arb_id(), proptest::option::of(proptest::collection::vec(-1e6f32..1e6f32, 0..8)), arb_attrs())
            .prop_map(|(id, vector, attrs)| Document { id, vector, attrs })
    }

    fn arb_request() -> impl Strategy<Value = RequestRecord> {
        let settings = (
            proptest::option::of(".{0,20}"),
            prop_oneof![
                Just(None),
                Just(Some(DistanceMetric::CosineDistance)),
                Just(Some(DistanceMetric::EuclideanSquared))
            ],
            proptest::option::of(".{0,20}"),
            any::<(u64, u64, u64)>(),
        );
        let ops = (
            proptest::collection::vec(arb_doc(), 0..3),
            arb_filter(),
            proptest::collection::vec(
                (arb_id(), arb_attrs()).prop_map(|(id, attrs)| Patch { id, attrs }),
                0..3,
            ),
            arb_filter(),
            proptest::collection::vec(arb_id(), 0..4),
            arb_filter(),
            arb_filter(),
            proptest::option::of((arb_filter(), arb_attrs())),
        );
        (settings, ops).prop_map(|((key, metric, schema, counts), ops)| {
            let (upserts, uc, patches, pc, deletes, dc, dbf, pbf) = ops;
            RequestRecord {
                idempotency_key: key,
                settings: NamespaceSettings { distance_metric: metric, schema_json: schema },
                ops: WriteOps {
                    upserts,
                    upsert_condition: uc,
                    patches,
                    patch_condition: pc,
                    deletes,
                    delete_condition: dc,
                    delete_by_filter: dbf,
                    patch_by_filter: pbf.map(|(f, attrs)| PatchByFilter {
                        filter: f.unwrap_or_else(|| filter(json!(["a", "Eq", 1]))),
                        attrs,
                    }),
                },
                counts: RowCounts { upserted: counts.0, patched: counts.1, deleted: counts.2 },
            }
        })
    }

    proptest! {
        #[test]
        fn any_batch_within_limits_round_trips(
            seq in any::<u64>(),
            created_at_ms in any::<u64>(),
            requests in proptest::collection::vec(arb_request(), 0..4),
            flags in 0..=WAL_KNOWN_FLAGS,
        ) {
            let b = WalBatch { seq, created_at_ms, requests, flags };
            let bytes = b.try_encode().unwrap();
            prop_assert_eq!(WalBatch::decode(&bytes).unwrap(), b);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = WalBatch::decode(&bytes);
            let _ = peek_header(&bytes);
        }
    }
}
