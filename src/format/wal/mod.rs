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
//! - Filters, conditions and schema updates are tidepool's own binary
//!   encodings (`super::filter`, `super::schema_codec`) in batches flagged
//!   [`WAL_FLAG_OWN_ENCODINGS`], which this build sets on every batch it
//!   writes; batches without the flag hold turbopuffer JSON text and are read
//!   by [`legacy`]. Neither path uses an API parser or applies an API limit
//!   (leaf counts, pattern lengths, ...): only structural bounds, so a batch
//!   that was acknowledged stays readable whatever the API accepts later.
//! - [`WalBatch::flags`] holds only the flags that say how requests apply
//!   ([`WAL_APPLY_FLAGS`]); the encoding flag is added by `encode` and
//!   dropped by `decode`.
//! - The encoding is canonical: `encode(decode(b)) == b` for every accepted
//!   `b` with [`WAL_FLAG_OWN_ENCODINGS`] (attribute maps and schema names in
//!   strictly increasing order, bools and option tags exactly 0/1, only known
//!   flags); a legacy batch re-encodes in the own encodings.
//! - `decode` accepts everything [`WalBatch::try_encode`] accepts; `encode`
//!   on a batch outside the limits (strings over 16 MiB, vectors over
//!   `MAX_VECTOR_DIM`, string ids outside 1..=64 bytes, nested arrays, a
//!   filter nested deeper than `MAX_FILTER_NESTING`, schema options nested
//!   deeper than `MAX_JSON_NESTING`) produces bytes that `decode` refuses, so
//!   writers use `try_encode`.
//! - Decoding never panics and never allocates from an unchecked length (see
//!   [`super::Reader`]).

use crate::filter::Filter;
use crate::model::{DistanceMetric, DocId, Document, MAX_STRING_ID_BYTES, MAX_VECTOR_DIM};
use crate::ops::{NamespaceSettings, Patch, PatchByFilter, RequestRecord, RowCounts, WriteOps};
use crate::schema::Schema;

pub use super::attrs::MAX_STRING_BYTES;
use super::attrs::{read_attrs, Enc};
use super::filter::read_filter_blob;
use super::schema_codec::read_schema_blob;
use super::{len_u64, FormatError, Reader, Writer, FORMAT_VERSION_V1};

/// The first 8 bytes of every WAL batch object.
pub const WAL_MAGIC: [u8; 8] = *b"TIDE.WAL";
/// The WAL format version this build writes (and the highest it reads).
pub const WAL_FORMAT_VERSION: u16 = FORMAT_VERSION_V1;
/// Flag bit: the batch's requests were applied with `datetime` values and
/// literals as canonical UTC instants (storage-format 3.1, 3.5). Batches
/// without it replay with datetimes compared as the strings sent.
pub const WAL_FLAG_DATETIME_INSTANTS: u16 = 0x0001;
/// Flag bit: filters, conditions and schema updates are in tidepool's own
/// binary encodings (`format::filter`, `format::schema_codec`; storage-format
/// 3.1, 3.2). Batches without it hold them as turbopuffer JSON text, read by
/// [`legacy`]. A property of the bytes, not of how requests apply: this
/// build sets it on every batch it writes, and [`WalBatch::flags`] never
/// carries it.
pub const WAL_FLAG_OWN_ENCODINGS: u16 = 0x0002;
/// Flag bit: the batch's requests were applied with `In`/`NotIn` on an array attribute
/// testing its elements (storage-format 3.1, 3.4). Batches without it replay with an array
/// never `In` a list, as they were applied (`Filter::with_scalar_in`).
pub const WAL_FLAG_IN_ANY_ELEMENT: u16 = 0x0004;
/// Every flag bit this build knows; a batch with any other bit is refused.
pub const WAL_KNOWN_FLAGS: u16 =
    WAL_FLAG_DATETIME_INSTANTS | WAL_FLAG_OWN_ENCODINGS | WAL_FLAG_IN_ANY_ELEMENT;
/// The flags that say how a batch's requests apply (kept in
/// [`WalBatch::flags`]); the others describe the encoding. This build applies every request
/// with all of them, and sets them on every batch it writes.
pub const WAL_APPLY_FLAGS: u16 = WAL_FLAG_DATETIME_INSTANTS | WAL_FLAG_IN_ANY_ELEMENT;
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
    /// Header flags that say how the requests were applied
    /// ([`WAL_APPLY_FLAGS`]: [`WAL_FLAG_DATETIME_INSTANTS`]), so a replay
    /// applies them alike. The encoding flag [`WAL_FLAG_OWN_ENCODINGS`] is
    /// added by `encode` and removed by `decode`.
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
        let encoding = Encoding::of_flags(header.flags);
        let mut requests = Vec::with_capacity(count);
        for _ in 0..count {
            requests.push(read_request(&mut r, encoding)?);
        }
        r.finish("wal body")?;
        let flags = header.flags & WAL_APPLY_FLAGS;
        Ok(WalBatch { seq: header.seq, created_at_ms: header.created_at_ms, requests, flags })
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
        e.w.u16(self.flags | WAL_FLAG_OWN_ENCODINGS);
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

    fn opt_filter(&mut self, what: &'static str, f: Option<&Filter>) {
        match f {
            None => self.w.u8(OPT_NONE),
            Some(f) => {
                self.w.u8(OPT_SOME);
                self.filter_blob(what, f);
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
                for x in v.iter() {
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
        match &req.settings.schema {
            None => self.w.u8(OPT_NONE),
            Some(schema) => {
                self.w.u8(OPT_SOME);
                self.schema_blob("schema update", schema);
            }
        }
        self.w.u64(req.counts.upserted);
        self.w.u64(req.counts.patched);
        self.w.u64(req.counts.deleted);
        let ops = &req.ops;
        self.opt_filter("delete_by_filter", ops.delete_by_filter.as_ref());
        match &ops.patch_by_filter {
            None => self.w.u8(OPT_NONE),
            Some(p) => {
                self.w.u8(OPT_SOME);
                self.filter_blob("patch_by_filter", &p.filter);
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

/// How a batch's filters and schema updates are encoded (header flag
/// [`WAL_FLAG_OWN_ENCODINGS`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// tidepool's binary codecs (`format::filter`, `format::schema_codec`).
    Own,
    /// turbopuffer JSON text, as every batch before the flag ([`legacy`]).
    LegacyJson,
}

impl Encoding {
    fn of_flags(flags: u16) -> Encoding {
        if flags & WAL_FLAG_OWN_ENCODINGS != 0 {
            Encoding::Own
        } else {
            Encoding::LegacyJson
        }
    }
}

fn read_filter(r: &mut Reader<'_>, what: &'static str, enc: Encoding) -> Result<Filter, FormatError> {
    match enc {
        Encoding::Own => read_filter_blob(r, what),
        Encoding::LegacyJson => legacy::read_filter_text(r, what),
    }
}

fn read_opt_filter(
    r: &mut Reader<'_>,
    what: &'static str,
    enc: Encoding,
) -> Result<Option<Filter>, FormatError> {
    Ok(if read_present(r, what)? { Some(read_filter(r, what, enc)?) } else { None })
}

fn read_opt_schema(r: &mut Reader<'_>, enc: Encoding) -> Result<Option<Schema>, FormatError> {
    if !read_present(r, "schema update")? {
        return Ok(None);
    }
    match enc {
        Encoding::Own => read_schema_blob(r, "schema update").map(Some),
        Encoding::LegacyJson => legacy::read_schema_text(r, "schema json").map(Some),
    }
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
    Ok(Document { id, vector: vector.map(Into::into), attrs })
}

fn read_request(r: &mut Reader<'_>, enc: Encoding) -> Result<RequestRecord, FormatError> {
    let idempotency_key = read_opt_string(r, "idempotency key")?;
    let distance_metric = match r.u8("distance metric")? {
        METRIC_NONE => None,
        METRIC_COSINE => Some(DistanceMetric::CosineDistance),
        METRIC_EUCLIDEAN_SQUARED => Some(DistanceMetric::EuclideanSquared),
        t => return Err(FormatError::Malformed(format!("unknown distance metric tag {t}"))),
    };
    let schema = read_opt_schema(r, enc)?;
    let counts =
        RowCounts { upserted: r.u64("upserted")?, patched: r.u64("patched")?, deleted: r.u64("deleted")? };
    let delete_by_filter = read_opt_filter(r, "delete_by_filter", enc)?;
    let patch_by_filter = if read_present(r, "patch_by_filter")? {
        let filter = read_filter(r, "patch_by_filter", enc)?;
        Some(PatchByFilter { filter, attrs: read_attrs(r)? })
    } else {
        None
    };
    let n = r.count("upserts", MIN_DOC_BYTES, usize::MAX)?;
    let mut upserts = Vec::with_capacity(n);
    for _ in 0..n {
        upserts.push(read_document(r)?);
    }
    let upsert_condition = read_opt_filter(r, "upsert_condition", enc)?;
    let n = r.count("patches", MIN_PATCH_BYTES, usize::MAX)?;
    let mut patches = Vec::with_capacity(n);
    for _ in 0..n {
        let id = read_id(r)?;
        patches.push(Patch { id, attrs: read_attrs(r)? });
    }
    let patch_condition = read_opt_filter(r, "patch_condition", enc)?;
    let n = r.count("deletes", MIN_ID_BYTES, usize::MAX)?;
    let mut deletes = Vec::with_capacity(n);
    for _ in 0..n {
        deletes.push(read_id(r)?);
    }
    let delete_condition = read_opt_filter(r, "delete_condition", enc)?;
    Ok(RequestRecord {
        idempotency_key,
        settings: NamespaceSettings { distance_metric, schema },
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

pub mod legacy;

#[cfg(test)]
mod legacy_tests;
#[cfg(test)]
mod tests;
