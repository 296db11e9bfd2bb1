//! A recording object-store wrapper: every request with its key, kind, bytes
//! read and start/end instants, plus an optional added latency per request
//! (to make an in-process store behave like one across a network).
//!
//! Used by tests and benchmarks to measure what a read path costs in
//! object-store terms: requests, bytes, and **sequential round trips** — the
//! length of the longest chain of requests in which each one started only
//! after the previous one had finished ([`Trace::sequential_round_trips`]).
//! Requests issued together (overlapping in time) count once.
//!
//! Invariant: requests are forwarded unchanged; the wrapper only observes
//! (and, if asked, delays before forwarding).

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// What a request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A whole-object GET.
    Get,
    /// A ranged GET.
    GetRange,
    /// A HEAD.
    Head,
    /// A PUT (plain or conditional).
    Put,
    /// A LIST.
    List,
    /// Anything else (delete, copy, rename, multipart).
    Other,
}

/// One recorded request.
#[derive(Debug, Clone)]
pub struct Event {
    /// Kind.
    pub op: Op,
    /// Object key (or list prefix).
    pub key: String,
    /// Bytes returned (reads) or sent (puts), when known.
    pub bytes: u64,
    /// When it was issued.
    pub start: Instant,
    /// When its response (headers, for reads) arrived.
    pub end: Instant,
}

/// A set of recorded requests.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The requests, in issue order.
    pub events: Vec<Event>,
}

impl Trace {
    /// Number of requests.
    pub fn requests(&self) -> usize {
        self.events.len()
    }

    /// Bytes read by GETs (whole and ranged).
    pub fn bytes_read(&self) -> u64 {
        self.events.iter().filter(|e| matches!(e.op, Op::Get | Op::GetRange)).map(|e| e.bytes).sum()
    }

    /// The longest chain of requests where each started at or after the end
    /// of the one before: how many round trips a caller waited for in turn.
    pub fn sequential_round_trips(&self) -> usize {
        let mut ev: Vec<&Event> = self.events.iter().collect();
        ev.sort_by_key(|e| e.start);
        let mut depth = vec![0usize; ev.len()];
        for i in 0..ev.len() {
            let before = (0..i).filter(|&j| ev[j].end <= ev[i].start).map(|j| depth[j]).max().unwrap_or(0);
            depth[i] = before + 1;
        }
        depth.into_iter().max().unwrap_or(0)
    }

    /// Requests of one kind.
    pub fn count(&self, op: Op) -> usize {
        self.events.iter().filter(|e| e.op == op).count()
    }
}

/// The wrapper.
pub struct TraceStore {
    inner: Arc<dyn ObjectStore>,
    latency: Duration,
    events: Mutex<Vec<Event>>,
}

impl fmt::Debug for TraceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceStore({})", self.inner)
    }
}

impl fmt::Display for TraceStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceStore({})", self.inner)
    }
}

impl TraceStore {
    /// Wrap `inner`, adding `latency` before every request is forwarded.
    pub fn new(inner: Arc<dyn ObjectStore>, latency: Duration) -> Arc<TraceStore> {
        Arc::new(TraceStore { inner, latency, events: Mutex::new(Vec::new()) })
    }

    /// Take the requests recorded so far (and start a new trace).
    pub fn take(&self) -> Trace {
        Trace {
            events: std::mem::take(
                &mut *self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
        }
    }

    fn record(&self, op: Op, key: &str, bytes: u64, start: Instant) {
        let e = Event { op, key: key.to_owned(), bytes, start, end: Instant::now() };
        self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(e);
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait]
impl ObjectStore for TraceStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let start = Instant::now();
        let bytes = payload.content_length() as u64;
        self.delay().await;
        let r = self.inner.put_opts(location, payload, opts).await;
        self.record(Op::Put, location.as_ref(), bytes, start);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let start = Instant::now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.record(Op::Other, location.as_ref(), 0, start);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let start = Instant::now();
        let op = if options.head {
            Op::Head
        } else if options.range.is_some() {
            Op::GetRange
        } else {
            Op::Get
        };
        self.delay().await;
        let r = self.inner.get_opts(location, options).await;
        let bytes = match (&r, op) {
            (Ok(g), Op::Get | Op::GetRange) => g.range.end - g.range.start,
            _ => 0,
        };
        self.record(op, location.as_ref(), bytes, start);
        r
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let start = Instant::now();
        self.delay().await;
        let r = self.inner.get_ranges(location, ranges).await;
        let bytes = r.as_ref().map_or(0, |v| v.iter().map(|b| b.len() as u64).sum());
        self.record(Op::GetRange, location.as_ref(), bytes, start);
        r
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.record(Op::Other, "(delete)", 0, Instant::now());
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.record(Op::List, prefix.map_or("", |p| p.as_ref()), 0, Instant::now());
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.record(Op::List, prefix.map_or("", |p| p.as_ref()), 0, Instant::now());
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let start = Instant::now();
        self.delay().await;
        let r = self.inner.list_with_delimiter(prefix).await;
        self.record(Op::List, prefix.map_or("", |p| p.as_ref()), 0, start);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let start = Instant::now();
        self.delay().await;
        let r = self.inner.copy_opts(from, to, options).await;
        self.record(Op::Other, to.as_ref(), 0, start);
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let start = Instant::now();
        self.delay().await;
        let r = self.inner.rename_opts(from, to, options).await;
        self.record(Op::Other, to.as_ref(), 0, start);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(start_ms: u64, end_ms: u64, base: Instant) -> Event {
        Event {
            op: Op::Get,
            key: String::new(),
            bytes: 0,
            start: base + Duration::from_millis(start_ms),
            end: base + Duration::from_millis(end_ms),
        }
    }

    /// Invariant: overlapping requests count as one round trip; a request
    /// started after another ended adds one.
    #[test]
    fn round_trips_are_the_longest_chain() {
        let b = Instant::now();
        let t =
            Trace { events: vec![ev(0, 10, b), ev(10, 20, b), ev(11, 30, b), ev(12, 25, b), ev(30, 40, b)] };
        assert_eq!(t.sequential_round_trips(), 3); // 0-10, then 10-20 or 11-30, then 30-40
        let parallel = Trace { events: vec![ev(0, 10, b), ev(1, 10, b), ev(2, 12, b)] };
        assert_eq!(parallel.sequential_round_trips(), 1);
        assert_eq!(Trace::default().sequential_round_trips(), 0);
    }
}
