//! Streaming bodies: responses produced incrementally (the NDJSON export, a
//! snapshot download) and request bodies consumed incrementally (a snapshot
//! upload to restore).
//!
//! Invariants:
//! - Memory stays bounded: producer and consumer are joined by a fixed-size
//!   in-memory pipe, so a slow client slows the producer down (backpressure)
//!   instead of buffering the namespace.
//! - A producer that fails after the 200 status was sent ends the body with
//!   an error: hyper aborts the connection instead of finishing the chunked
//!   body, so a client can never mistake a truncated stream for a complete one.
//! - A streamed request body (a restore upload) is spooled whole to a
//!   scratch file before anything consumes it, under the same stall timeout
//!   and a total deadline as any body (408 past either); the file is removed
//!   when its guard drops, whatever the outcome.

use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::oneshot;

use super::body::{next_frame, BodyTiming};
use super::error::ApiError;
use crate::engine::snapshot::ScratchFile;
use crate::engine::EngineError;

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body.
pub type ResponseBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Capacity of the pipe between a producer and the connection.
const PIPE_BYTES: usize = 256 * 1024;
/// Largest chunk sent in one frame.
const CHUNK_BYTES: usize = 64 * 1024;

/// What a handler answers: a JSON document or a stream.
#[derive(Debug)]
pub enum Reply {
    /// A JSON response (200).
    Json(Json),
    /// A streamed response (200).
    Stream(StreamReply),
    /// A complete response built by the handler (the console's files).
    Page(Response<http_body_util::Full<Bytes>>),
}

impl From<Json> for Reply {
    fn from(v: Json) -> Self {
        Reply::Json(v)
    }
}

/// A streamed 200 response fed by a producer task.
#[derive(Debug)]
pub struct StreamReply {
    content_type: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
    reader: DuplexStream,
    outcome: oneshot::Receiver<Result<(), String>>,
}

impl StreamReply {
    /// Start `produce` on its own task, writing into the response body.
    pub fn spawn<F, Fut>(
        content_type: &'static str,
        headers: Vec<(HeaderName, HeaderValue)>,
        produce: F,
    ) -> Self
    where
        F: FnOnce(DuplexStream) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), EngineError>> + Send + 'static,
    {
        let (w, reader) = tokio::io::duplex(PIPE_BYTES);
        let (tx, outcome) = oneshot::channel();
        tokio::spawn(async move {
            let r = produce(w).await;
            if let Err(e) = &r {
                tracing::warn!(error = %e, "streamed response failed part-way; aborting the body");
            }
            let _ = tx.send(r.map_err(|e| e.to_string()));
        });
        StreamReply { content_type, headers, reader, outcome }
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<ResponseBody> {
        let StreamReply { content_type, headers, reader, outcome } = self;
        let frames = futures::stream::unfold(Some((reader, outcome)), |st| async move {
            let (mut r, rx) = st?;
            let mut buf = vec![0u8; CHUNK_BYTES];
            match r.read(&mut buf).await {
                Ok(0) => match rx.await {
                    Ok(Ok(())) => None,
                    Ok(Err(msg)) => Some((Err(BoxError::from(msg)), None)),
                    Err(_) => Some((Err(BoxError::from("the producer task ended abnormally")), None)),
                },
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some((r, rx))))
                }
                Err(e) => Some((Err(BoxError::from(e)), None)),
            }
        });
        let mut resp = Response::new(BodyExt::boxed(StreamBody::new(frames)));
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        for (k, v) in headers {
            h.insert(k, v);
        }
        resp
    }
}

/// A fixed response body as a [`ResponseBody`].
pub fn boxed(resp: Response<http_body_util::Full<Bytes>>) -> Response<ResponseBody> {
    resp.map(|b| BodyExt::boxed(b.map_err(|never| match never {})))
}

/// Write the request body to a new file in `dir`, whole within `timing`
/// (408 else) and at most `max_bytes` long (413 else, naming
/// `max_restore_bytes`); the file is removed when the returned guard drops.
pub async fn spool_body(
    mut body: Incoming,
    timing: BodyTiming,
    max_bytes: u64,
    dir: &Path,
) -> Result<ScratchFile, ApiError> {
    let spool = ScratchFile::new_in(dir, "upload");
    let disk = |e: std::io::Error| {
        ApiError::from(EngineError::io(format_args!("cannot spool the upload to {}", dir.display()), e))
    };
    let mut w = tokio::io::BufWriter::with_capacity(
        PIPE_BYTES,
        tokio::fs::File::create(spool.path()).await.map_err(disk)?,
    );
    let deadline = timing.deadline();
    let mut received = 0u64;
    while let Some(frame) = next_frame(&mut body, timing, deadline).await? {
        if let Ok(data) = frame.into_data() {
            received = received.saturating_add(data.len() as u64);
            if received > max_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the snapshot upload exceeds max_restore_bytes ({max_bytes} bytes)"),
                ));
            }
            w.write_all(&data).await.map_err(disk)?;
        }
    }
    w.flush().await.map_err(disk)?;
    Ok(spool)
}
