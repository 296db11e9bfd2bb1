//! A metering object-store wrapper: every request counted and timed by
//! operation (`get`, `get_range`, `put`, `put_if_absent`, `head`, `list`,
//! `delete`, `other`) into [`Metrics`], failures counted apart.
//!
//! Invariants:
//! - Requests are forwarded unchanged; the wrapper only observes.
//! - A "not found" answer, and "already exists" to a conditional create,
//!   are outcomes the engine relies on, not errors: only other failures
//!   count in `store_errors`.
//! - Streams (list, delete) are timed until they end or are dropped.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

use crate::metrics::{Metrics, StoreOp};

/// The wrapper.
pub struct MeteredStore {
    inner: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
}

impl fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredStore({})", self.inner)
    }
}

impl fmt::Display for MeteredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeteredStore({})", self.inner)
    }
}

impl MeteredStore {
    /// Wrap `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) -> Arc<MeteredStore> {
        Arc::new(MeteredStore { inner, metrics })
    }

    fn record<T>(&self, op: StoreOp, start: Instant, r: &Result<T>) {
        self.metrics.observe_store(op, start.elapsed(), r.as_ref().is_err_and(is_fault));
    }
}

/// Whether an error is a fault rather than an answer the caller expects.
fn is_fault(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
    )
}

/// Records one request per item of a stream (deletes) or one for the whole
/// stream (lists) when the stream ends or is dropped.
struct StreamTimer {
    metrics: Arc<Metrics>,
    op: StoreOp,
    start: Instant,
    failed: bool,
}

impl Drop for StreamTimer {
    fn drop(&mut self) {
        self.metrics.observe_store(self.op, self.start.elapsed(), self.failed);
    }
}

fn timed_list(
    metrics: &Arc<Metrics>,
    inner: BoxStream<'static, Result<ObjectMeta>>,
) -> BoxStream<'static, Result<ObjectMeta>> {
    let mut timer =
        StreamTimer { metrics: metrics.clone(), op: StoreOp::List, start: Instant::now(), failed: false };
    inner
        .map(move |item| {
            // The whole timer moves into the closure: it records when the stream is dropped.
            let timer = &mut timer;
            if item.as_ref().is_err_and(is_fault) {
                timer.failed = true;
            }
            item
        })
        .boxed()
}

#[async_trait]
impl ObjectStore for MeteredStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let op = if matches!(opts.mode, PutMode::Create) { StoreOp::PutIfAbsent } else { StoreOp::Put };
        let start = Instant::now();
        let r = self.inner.put_opts(location, payload, opts).await;
        self.record(op, start, &r);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        let start = Instant::now();
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.record(StoreOp::Other, start, &r);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let op = if options.head {
            StoreOp::Head
        } else if options.range.is_some() {
            StoreOp::GetRange
        } else {
            StoreOp::Get
        };
        let start = Instant::now();
        let r = self.inner.get_opts(location, options).await;
        self.record(op, start, &r);
        r
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let start = Instant::now();
        let r = self.inner.get_ranges(location, ranges).await;
        self.record(StoreOp::GetRange, start, &r);
        r
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        let metrics = self.metrics.clone();
        let start = Instant::now();
        self.inner
            .delete_stream(locations)
            .map(move |item| {
                let failed = item.as_ref().is_err_and(is_fault);
                metrics.observe_store(StoreOp::Delete, start.elapsed(), failed);
                item
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        timed_list(&self.metrics, self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        timed_list(&self.metrics, self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let start = Instant::now();
        let r = self.inner.list_with_delimiter(prefix).await;
        self.record(StoreOp::List, start, &r);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let start = Instant::now();
        let r = self.inner.copy_opts(from, to, options).await;
        self.record(StoreOp::Other, start, &r);
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let start = Instant::now();
        let r = self.inner.rename_opts(from, to, options).await;
        self.record(StoreOp::Other, start, &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Gauges;
    use crate::store::{CreateOutcome, Store};

    fn count(text: &str, prefix: &str) -> u64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |v| v.parse().unwrap())
    }

    /// Invariant: every operation is counted under its own label; expected
    /// answers (not found, already exists) are not errors.
    #[tokio::test]
    async fn operations_are_counted_by_kind() {
        let metrics = Arc::new(Metrics::default());
        let s = Store::memory().metered(metrics.clone());
        let k = "o/p/namespaces/n/wal/1";
        assert_eq!(s.put_if_absent(k, Bytes::from_static(b"one")).await.unwrap(), CreateOutcome::Created);
        assert_eq!(
            s.put_if_absent(k, Bytes::from_static(b"two")).await.unwrap(),
            CreateOutcome::AlreadyExists
        );
        s.put("o/p/x", Bytes::from_static(b"x")).await.unwrap();
        s.get(k).await.unwrap();
        s.get_range(k, 0..2).await.unwrap();
        assert!(s.get_opt("o/p/missing").await.unwrap().is_none());
        assert!(s.exists(k).await.unwrap());
        s.list("o/p/").await.unwrap();
        s.list_dirs("o/").await.unwrap();
        s.delete(k).await.unwrap();
        let text = metrics.render(&Gauges::default(), None);
        let req = |op: &str| count(&text, &format!("tidepool_store_requests_total{{op=\"{op}\"}}"));
        assert_eq!(req("put_if_absent"), 2, "{text}");
        assert_eq!((req("put"), req("get"), req("get_range"), req("head")), (1, 2, 1, 1));
        assert_eq!((req("list"), req("delete")), (2, 1));
        assert_eq!(count(&text, "tidepool_store_errors_total{op=\"get\"}"), 0);
        assert_eq!(count(&text, "tidepool_store_request_duration_seconds_count{op=\"get\"}"), 2);
        assert_eq!(s.description(), "memory://");
    }
}
