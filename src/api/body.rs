//! Request bodies in (size-bounded, optionally gzip) and JSON responses out.
//!
//! Invariants:
//! - A body is never buffered beyond `limit` bytes, neither on the wire nor
//!   after gzip decompression (a zip bomb stops at `limit + 1` bytes): 413.
//! - A body whose next chunk does not arrive within the stall timeout, or
//!   that is not complete within the total body deadline (counted from the
//!   start of reading), is abandoned (408), so a slow client — even one that
//!   trickles a byte just before each stall timeout — cannot hold a handler
//!   forever. (`server` closes an HTTP/1 connection after a 408.)
//! - Only `identity` and `gzip` request encodings are accepted (415 else).
//! - A JSON body becomes a tree only after a linear scan has bounded its
//!   number of values (`wire::bounded`), so memory follows the values, not
//!   a compression ratio.
//! - Responses are JSON; they are gzipped only when the client accepts gzip
//!   and the body is large enough to be worth it.

use std::io::{Read, Write};
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY};
use hyper::{HeaderMap, Response, StatusCode};
use serde_json::Value as Json;

use super::error::ApiError;

/// Bodies smaller than this are never gzipped in responses.
const GZIP_MIN_BYTES: usize = 1024;
/// Compressed bodies larger than this are decompressed on a blocking thread.
const INLINE_GUNZIP_BYTES: usize = 64 * 1024;

fn too_large(limit: usize) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body exceeds the {limit}-byte limit"))
}

/// How long a request body may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyTiming {
    /// Longest wait for the next chunk.
    pub stall: Duration,
    /// Longest time for the whole body.
    pub total: Duration,
}

impl BodyTiming {
    /// The instant by which a body read from now must be complete.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.total
    }
}

/// The next frame of a body (None at its end), or a 408 once it stalls or
/// `deadline` passes.
pub async fn next_frame(
    body: &mut Incoming,
    timing: BodyTiming,
    deadline: Instant,
) -> Result<Option<Frame<Bytes>>, ApiError> {
    let stall_at = Instant::now() + timing.stall;
    match tokio::time::timeout_at(stall_at.min(deadline), body.frame()).await {
        Err(_) if stall_at < deadline => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body stalled: no data for {} s", timing.stall.as_secs()),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {} s", timing.total.as_secs()),
        )),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => {
            Err(ApiError::bad_request(format!("could not read the request body: {e}")).with_source(e))
        }
        Ok(Some(Ok(f))) => Ok(Some(f)),
    }
}

/// Read a whole request body, bounded by `limit` and `timing`, and decode
/// its `Content-Encoding`.
pub async fn read_body(
    body: Incoming,
    headers: &HeaderMap,
    limit: usize,
    timing: BodyTiming,
) -> Result<Bytes, ApiError> {
    let gzip =
        match headers.get(CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase()) {
            None => false,
            Some(e) if e.is_empty() || e == "identity" => false,
            Some(e) if e == "gzip" || e == "x-gzip" => true,
            Some(e) => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("unsupported Content-Encoding {e:?}: send identity or gzip"),
                ))
            }
        };
    let declared =
        headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let raw = collect(body, limit, timing).await?;
    if !gzip {
        return Ok(raw);
    }
    if raw.len() <= INLINE_GUNZIP_BYTES {
        return gunzip(&raw, limit);
    }
    tokio::task::spawn_blocking(move || gunzip(&raw, limit))
        .await
        .map_err(|e| ApiError::internal(format!("decompression task failed: {e}")).with_source(e))?
}

/// Read and drop up to `limit` bytes of a body that will not be used, so the
/// client, still sending, reads the answer instead of a reset connection;
/// nothing is kept. Gives up quietly at `limit`, a stall or the deadline.
pub async fn discard(mut body: Incoming, limit: u64, timing: BodyTiming) {
    let (deadline, mut seen) = (timing.deadline(), 0u64);
    while let Ok(Some(frame)) = next_frame(&mut body, timing, deadline).await {
        seen += frame.data_ref().map_or(0, |d| d.len() as u64);
        if seen > limit {
            return;
        }
    }
}

async fn collect(mut body: Incoming, limit: usize, timing: BodyTiming) -> Result<Bytes, ApiError> {
    let deadline = timing.deadline();
    let mut buf = BytesMut::new();
    while let Some(frame) = next_frame(&mut body, timing, deadline).await? {
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Decompress gzip (multi-member), stopping at `limit + 1` bytes.
pub fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::MultiGzDecoder::new(raw)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| ApiError::bad_request(format!("invalid gzip request body: {e}")).with_source(e))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(Bytes::from(out))
}

/// Parse a JSON body of at most `wire::bounded::MAX_JSON_VALUES` values
/// (checked by a linear scan before any tree is built; writes take the
/// row-by-row path of `WriteRequest::from_slice` instead).
pub fn parse_json(bytes: &[u8]) -> Result<Json, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("request body is empty; expected a JSON object"));
    }
    let cap = crate::wire::bounded::MAX_JSON_VALUES;
    if crate::wire::bounded::exceeds_values(bytes, cap) {
        return Err(ApiError::bad_request(format!("request body holds more than {cap} JSON values")));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("malformed JSON body: {e}")).with_source(e))
}

/// Whether the client accepts gzip responses.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| coding_accepted(item, "gzip"))
}

fn coding_accepted(item: &str, name: &str) -> bool {
    let mut parts = item.split(';');
    if !parts.next().unwrap_or("").trim().eq_ignore_ascii_case(name) {
        return false;
    }
    for p in parts {
        let p = p.trim();
        if let Some(q) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
            return q.trim().parse::<f32>().is_ok_and(|q| q > 0.0);
        }
    }
    true
}

/// Build a JSON response (gzipped when `gzip` and large enough).
pub fn json_response(status: StatusCode, body: &Json, gzip: bool) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body)
        .unwrap_or_else(|_| br#"{"status":"error","error":"response encoding failed"}"#.to_vec());
    let (bytes, gzipped) = if gzip && bytes.len() >= GZIP_MIN_BYTES {
        match gzip_bytes(&bytes) {
            Some(z) => (z, true),
            None => (bytes, false),
        }
    } else {
        (bytes, false)
    };
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(VARY, HeaderValue::from_static("accept-encoding"));
    if gzipped {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

fn gzip_bytes(data: &[u8]) -> Option<Vec<u8>> {
    let mut enc =
        flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    enc.write_all(data).ok()?;
    enc.finish().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gunzip_is_bounded() {
        let big = vec![0u8; 100_000];
        let z = gzip_bytes(&big).unwrap();
        assert!(z.len() < 1000);
        assert_eq!(gunzip(&z, 100_000).unwrap().len(), 100_000);
        assert_eq!(gunzip(&z, 99_999).unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(gunzip(b"not gzip", 10).unwrap_err().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn accept_encoding_parsing() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(ACCEPT_ENCODING, v.parse().unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip"));
        assert!(h("deflate, GZIP;q=0.5"));
        assert!(!h("identity"));
        assert!(!h("gzip;q=0"));
        assert!(!h("gzip; q=0.0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn json_bodies() {
        assert!(parse_json(b"  ").is_err());
        assert!(parse_json(b"{nope").unwrap_err().message.contains("malformed JSON"));
        assert_eq!(parse_json(b"{\"a\":1}").unwrap()["a"], 1);
    }
}
