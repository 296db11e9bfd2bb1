//! The JSON envelope shared by manifests and schema objects
//! (`storage-format.md` 1.3, 4.1, 4.5):
//! `{"magic":M,"format_version":V,"crc32c":C,"body":B}\n`.
//!
//! Invariants:
//! - `C` is the crc32c of the exact bytes of `B` as stored (read through
//!   `RawValue`, never re-serialized before the check).
//! - Opening checks, in order: the size cap, UTF-8, the envelope's JSON,
//!   `magic`, a `format_version` in 1..=max, `crc32c`; only then is the body
//!   handed out (still unparsed).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{len_u64, FormatError};

/// Largest manifest (or schema object) file accepted.
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    magic: Option<String>,
    format_version: Option<u64>,
    crc32c: Option<u32>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

/// A malformed-input error naming what was being read.
pub(crate) fn malformed(what: &str, e: impl std::fmt::Display) -> FormatError {
    FormatError::Malformed(format!("{what}: {e}"))
}

/// Refuse `bytes` longer than `max`.
pub(crate) fn check_size(what: &'static str, bytes: &[u8], max: usize) -> Result<(), FormatError> {
    if bytes.len() > max {
        return Err(FormatError::TooLarge { what, len: len_u64(bytes.len()), max: len_u64(max) });
    }
    Ok(())
}

/// A JSON envelope (1.3): `{"magic":M,"format_version":V,"crc32c":C,"body":B}\n`,
/// C the crc32c of the body's bytes.
pub(crate) fn envelope(magic: &str, version: u64, body: &str) -> Vec<u8> {
    let crc = crc32c::crc32c(body.as_bytes());
    format!("{{\"magic\":\"{magic}\",\"format_version\":{version},\"crc32c\":{crc},\"body\":{body}}}\n")
        .into_bytes()
}

/// Open a JSON envelope: size cap, UTF-8, magic, a version in 1..=`max`,
/// the body's checksum. Returns the version and the raw body.
pub(crate) fn open_envelope<'a>(
    what: &'static str,
    bytes: &'a [u8],
    magic: &str,
    max: u64,
) -> Result<(u64, &'a str), FormatError> {
    check_size(what, bytes, MAX_MANIFEST_BYTES)?;
    let text = std::str::from_utf8(bytes).map_err(|e| malformed(what, e))?;
    let env: EnvelopeIn<'_> = serde_json::from_str(text).map_err(|e| malformed(what, e))?;
    if env.magic.as_deref() != Some(magic) {
        return Err(FormatError::BadMagic { what });
    }
    let version = match env.format_version {
        None => return Err(malformed(what, "missing format_version")),
        Some(v) if v == 0 || v > max => {
            return Err(FormatError::UnsupportedVersion { what, version: v, supported: max })
        }
        Some(v) => v,
    };
    let expected = env.crc32c.ok_or_else(|| malformed(what, "missing crc32c"))?;
    let body = env.body.ok_or_else(|| malformed(what, "missing body"))?;
    let actual = crc32c::crc32c(body.get().as_bytes());
    if actual != expected {
        let what = if what == "manifest" { "manifest body" } else { what };
        return Err(FormatError::ChecksumMismatch { what, expected, actual });
    }
    Ok((version, body.get()))
}
