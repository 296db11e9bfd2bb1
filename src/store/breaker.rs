//! A circuit breaker over an object store, for a bucket behind a link that can
//! go silent (a cellular or satellite uplink whose packets are dropped, not
//! refused). Without it every call waits out the client's timeouts, and every
//! request waits for each of its calls in turn; with it, once one call went
//! unanswered the next ones fail at once and the engine answers from what it
//! knows (the last known generation, or a 503 with `retry-after`).
//!
//! Invariants:
//! - Closed, every call is forwarded unchanged. A call that got **no answer**
//!   ([`unanswered`]: a connect or read timeout anywhere in its error's chain),
//!   also in the middle of a streamed body or listing, opens it. An answer of
//!   any kind — a success, "not found", a 5xx, a refused or reset connection
//!   (those fail fast by themselves) — never opens it.
//! - Open, every call fails at once without reaching the inner store, with an
//!   error whose chain holds [`Unanswered`] (the engine's kind for it is
//!   "unavailable"; [`retry_after`] reads its retry hint). Any answer that a
//!   call still in flight gets closes it.
//! - One probe at a time: opening starts a background task (unless one runs)
//!   that every `probe_interval` sends one HEAD of [`PROBE_KEY`] (bounded by
//!   the inner store's own timeouts) and closes the breaker on the first
//!   answer, then ends. It is aborted when the wrapper is dropped.
//! - Without a tokio runtime to probe on, the breaker never opens (it would
//!   never close again).
//! - Multipart uploads are gated when they start; their parts are not watched.

use std::error::Error as StdError;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::client::{HttpError, HttpErrorKind};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    Result,
};
use tokio::time::Instant;

use super::health::PROBE_KEY;

/// The error an open breaker fails a call with (inside an
/// `object_store::Error::Generic`, so the engine sees a store failure).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the object store has not answered for {} ms ({cause}); failing fast while one probe every {} ms \
     watches for its return",
    silent.as_millis(),
    retry_after.as_millis()
)]
pub struct Unanswered {
    /// How long the breaker has been open.
    pub silent: Duration,
    /// The error of the call that opened it (its text: that error went to its own caller).
    pub cause: String,
    /// When a retry may find it closed (the probe interval).
    pub retry_after: Duration,
}

/// Whether an object-store error means the call got no answer at all: a
/// connect or read timeout (object_store's [`HttpErrorKind::Timeout`], or an
/// `io::ErrorKind::TimedOut`) anywhere in its chain.
pub fn unanswered(e: &object_store::Error) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return h.kind() == HttpErrorKind::Timeout;
        }
        if err.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The retry hint of an error that an open breaker caused (anywhere in its chain).
pub fn retry_after(e: &(dyn StdError + 'static)) -> Option<Duration> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(u) = err.downcast_ref::<Unanswered>() {
            return Some(u.retry_after);
        }
        cur = err.source();
    }
    None
}

/// The breaker's state, shared by the wrapper, its probe and the [`super::Store`]
/// that reports it.
#[derive(Debug)]
pub struct Circuit {
    probe_interval: Duration,
    /// Mirrors `state.open.is_some()`: the per-call check takes no lock.
    is_open: AtomicBool,
    state: Mutex<State>,
    probes: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    open: Option<Opened>,
    probe: Option<tokio::task::AbortHandle>,
}

#[derive(Debug)]
struct Opened {
    since: Instant,
    cause: String,
}

impl Circuit {
    fn new(probe_interval: Duration) -> Circuit {
        Circuit {
            probe_interval,
            is_open: AtomicBool::new(false),
            state: Mutex::default(),
            probes: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When open: the error calls fail with now.
    pub fn open_error(&self) -> Option<Unanswered> {
        if !self.is_open.load(Ordering::Acquire) {
            return None;
        }
        let st = self.state();
        st.open.as_ref().map(|o| Unanswered {
            silent: o.since.elapsed(),
            cause: o.cause.clone(),
            retry_after: self.probe_interval,
        })
    }

    /// Probe requests sent so far.
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Whether a probe task runs now.
    pub fn probing(&self) -> bool {
        self.state().probe.as_ref().is_some_and(|p| !p.is_finished())
    }

    /// Note a call's outcome: no answer opens the breaker (and starts the
    /// probe), any answer closes it.
    fn record(self: &Arc<Self>, inner: &Arc<dyn ObjectStore>, outcome: Result<(), &object_store::Error>) {
        match outcome {
            Err(e) if unanswered(e) => self.trip(inner, e),
            _ => self.close(),
        }
    }

    fn trip(self: &Arc<Self>, inner: &Arc<dyn ObjectStore>, e: &object_store::Error) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let mut st = self.state();
        if st.open.is_none() {
            tracing::warn!(error = %e, probe_ms = self.probe_interval.as_millis() as u64,
                "the object store did not answer; failing its calls fast until a probe gets an answer");
            st.open = Some(Opened { since: Instant::now(), cause: e.to_string() });
            self.is_open.store(true, Ordering::Release);
        }
        if st.probe.as_ref().is_none_or(|p| p.is_finished()) {
            let task = rt.spawn(probe(Arc::clone(inner), Arc::clone(self)));
            st.probe = Some(task.abort_handle());
        }
    }

    fn close(&self) {
        if !self.is_open.load(Ordering::Acquire) {
            return;
        }
        let mut st = self.state();
        if let Some(o) = st.open.take() {
            tracing::info!(
                silent_ms = o.since.elapsed().as_millis() as u64,
                "the object store answers again"
            );
        }
        self.is_open.store(false, Ordering::Release);
    }
}

/// The probe: one HEAD every `probe_interval` until one gets an answer.
async fn probe(inner: Arc<dyn ObjectStore>, circuit: Arc<Circuit>) {
    let key = Path::from(PROBE_KEY);
    loop {
        tokio::time::sleep(circuit.probe_interval).await;
        circuit.probes.fetch_add(1, Ordering::Relaxed);
        let r = inner.head(&key).await;
        if r.as_ref().is_err_and(unanswered) {
            continue;
        }
        let mut st = circuit.state();
        st.probe = None;
        drop(st);
        circuit.close();
        return;
    }
}

/// The wrapper.
pub struct BreakerStore {
    inner: Arc<dyn ObjectStore>,
    circuit: Arc<Circuit>,
}

impl fmt::Debug for BreakerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BreakerStore({})", self.inner)
    }
}

impl fmt::Display for BreakerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BreakerStore({})", self.inner)
    }
}

impl Drop for BreakerStore {
    fn drop(&mut self) {
        if let Some(p) = self.circuit.state().probe.take() {
            p.abort();
        }
    }
}

impl BreakerStore {
    /// Wrap `inner`; an open breaker probes every `probe_interval`.
    pub fn new(inner: Arc<dyn ObjectStore>, probe_interval: Duration) -> Arc<BreakerStore> {
        Arc::new(BreakerStore { inner, circuit: Arc::new(Circuit::new(probe_interval)) })
    }

    /// The breaker's state.
    pub fn circuit(&self) -> &Arc<Circuit> {
        &self.circuit
    }

    /// The error to fail a call with when the breaker is open.
    fn gate(&self) -> Result<()> {
        match self.circuit.open_error() {
            None => Ok(()),
            Some(u) => Err(object_store::Error::Generic { store: "tidepool", source: Box::new(u) }),
        }
    }

    fn record<T>(&self, r: &Result<T>) {
        self.circuit.record(&self.inner, r.as_ref().map(|_| ()));
    }

    /// A stream whose items are recorded as they come (a listing or a body
    /// that goes silent halfway opens the breaker too).
    fn watched<T: Send + 'static>(&self, s: BoxStream<'static, Result<T>>) -> BoxStream<'static, Result<T>> {
        let (inner, circuit) = (Arc::clone(&self.inner), Arc::clone(&self.circuit));
        s.map(move |item| {
            circuit.record(&inner, item.as_ref().map(|_| ()));
            item
        })
        .boxed()
    }

    /// `s` unless the breaker is open, else one error.
    fn gated_stream<T: Send + 'static>(
        &self,
        s: impl FnOnce() -> BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        match self.gate() {
            Ok(()) => self.watched(s()),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }
}

#[async_trait]
impl ObjectStore for BreakerStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.gate()?;
        let r = self.inner.put_opts(location, payload, opts).await;
        self.record(&r);
        r
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.gate()?;
        let r = self.inner.put_multipart_opts(location, opts).await;
        self.record(&r);
        r
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.gate()?;
        let r = self.inner.get_opts(location, options).await;
        self.record(&r);
        let mut got = r?;
        if let GetResultPayload::Stream(body) = got.payload {
            got.payload = GetResultPayload::Stream(self.watched(body));
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.gate()?;
        let r = self.inner.get_ranges(location, ranges).await;
        self.record(&r);
        r
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.gated_stream(|| self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.gated_stream(|| self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.gated_stream(|| self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.gate()?;
        let r = self.inner.list_with_delimiter(prefix).await;
        self.record(&r);
        r
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.gate()?;
        let r = self.inner.copy_opts(from, to, options).await;
        self.record(&r);
        r
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.gate()?;
        let r = self.inner.rename_opts(from, to, options).await;
        self.record(&r);
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU8;

    use super::*;
    use crate::store::{Store, StoreError};

    const ANSWER: u8 = 0;
    const SILENT: u8 = 1;
    const SILENT_BODY: u8 = 2;

    /// An in-memory store whose GETs and HEADs can go silent: they wait
    /// `DELAY`, then fail as object_store's HTTP client does on a read
    /// timeout (or, `SILENT_BODY`, answer and go silent after one chunk).
    #[derive(Debug, Default)]
    struct Silence {
        inner: object_store::memory::InMemory,
        mode: AtomicU8,
        reached: AtomicU64,
        in_flight: AtomicU64,
        most_in_flight: AtomicU64,
    }

    const DELAY: Duration = Duration::from_millis(100);

    fn timeout() -> object_store::Error {
        let io = std::io::Error::from(std::io::ErrorKind::TimedOut);
        object_store::Error::Generic {
            store: "test",
            source: Box::new(HttpError::new(HttpErrorKind::Timeout, io)),
        }
    }

    impl fmt::Display for Silence {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Silence")
        }
    }

    #[async_trait]
    impl ObjectStore for Silence {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }
        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: PutMultipartOptions,
        ) -> Result<Box<dyn MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }
        async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
            self.reached.fetch_add(1, Ordering::SeqCst);
            match self.mode.load(Ordering::SeqCst) {
                SILENT => {
                    let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    self.most_in_flight.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(DELAY).await;
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                    Err(timeout())
                }
                SILENT_BODY => {
                    let mut r = self.inner.get_opts(location, options).await?;
                    let first = futures::stream::once(async { Ok(Bytes::from_static(b"x")) });
                    let then = futures::stream::once(async { Err(timeout()) });
                    r.payload = GetResultPayload::Stream(first.chain(then).boxed());
                    Ok(r)
                }
                _ => self.inner.get_opts(location, options).await,
            }
        }
        fn delete_stream(
            &self,
            locations: BoxStream<'static, Result<Path>>,
        ) -> BoxStream<'static, Result<Path>> {
            self.inner.delete_stream(locations)
        }
        fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
            self.inner.list(prefix)
        }
        async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }
        async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    const PROBE_EVERY: Duration = Duration::from_millis(50);

    fn silent_store() -> (Arc<Silence>, Store) {
        let silence = Arc::new(Silence::default());
        let store = Store::new(silence.clone(), "silence").with_breaker(PROBE_EVERY);
        (silence, store)
    }

    /// Polls `cond` for up to a second.
    async fn eventually(cond: impl Fn() -> bool) -> bool {
        for _ in 0..100 {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cond()
    }

    /// Invariant: one unanswered call opens it; later calls fail at once,
    /// without reaching the store, with an error that carries the retry hint.
    #[tokio::test]
    async fn an_unanswered_call_opens_it_and_later_calls_fail_at_once() {
        let (silence, s) = silent_store();
        s.put("k", Bytes::from_static(b"v")).await.unwrap();
        silence.mode.store(SILENT, Ordering::SeqCst);
        let t = std::time::Instant::now();
        assert!(s.get("k").await.is_err());
        assert!(t.elapsed() >= DELAY);
        assert!(s.circuit_open().is_some(), "one call went unanswered");
        let reached = silence.reached.load(Ordering::SeqCst);
        let t = std::time::Instant::now();
        let e = s.get("k").await.unwrap_err();
        assert!(t.elapsed() < DELAY / 4, "failed fast: {:?}", t.elapsed());
        assert!(s.exists("k").await.is_err() && s.list("").await.is_err());
        assert!(s.put("k2", Bytes::from_static(b"v")).await.is_err(), "writes fail fast too");
        assert!(silence.reached.load(Ordering::SeqCst) <= reached + 1, "only the probe reaches the store");
        assert!(matches!(e, StoreError::Backend { .. }), "a store failure: {e}");
        assert_eq!(retry_after(&e), Some(PROBE_EVERY));
        let engine = crate::engine::EngineError::from(e);
        assert_eq!(engine.kind(), crate::engine::ErrorKind::Unavailable);
        assert_eq!(engine.retry_after_ms(), 50, "{engine}");
        assert!(s.last_read_failure().is_some_and(|m| m.contains("has not answered")));
    }

    /// Invariant: an answer of any kind — not found, a refused connection, a
    /// server error — never opens it.
    #[tokio::test]
    async fn answers_never_open_it() {
        let (_, s) = silent_store();
        assert!(matches!(s.get("missing").await, Err(StoreError::NotFound(_))));
        let circuit = Arc::clone(s.circuit().unwrap());
        let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let refused = HttpError::new(
            HttpErrorKind::Connect,
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        );
        let refused = object_store::Error::Generic { store: "test", source: Box::new(refused) };
        let server =
            object_store::Error::Generic { store: "test", source: "500 Internal Server Error".into() };
        for e in [refused, server] {
            assert!(!unanswered(&e), "{e}");
            circuit.record(&inner, Err(&e));
        }
        assert!(s.circuit_open().is_none());
        assert!(unanswered(&timeout()));
    }

    /// Invariant: one probe at a time while open; its first answer closes it.
    #[tokio::test]
    async fn one_probe_watches_and_its_first_answer_closes_it() {
        let (silence, s) = silent_store();
        silence.mode.store(SILENT, Ordering::SeqCst);
        let calls: Vec<_> = (0..8).map(|i| s.exists(if i % 2 == 0 { "a" } else { "b" })).collect();
        for r in futures::future::join_all(calls).await {
            assert!(r.is_err());
        }
        let circuit = Arc::clone(s.circuit().unwrap());
        assert!(circuit.probing());
        tokio::time::sleep(4 * (PROBE_EVERY + DELAY)).await;
        assert!(s.circuit_open().is_some(), "still silent, still open");
        assert!(circuit.probes() >= 2, "the probe keeps watching: {}", circuit.probes());
        silence.most_in_flight.store(0, Ordering::SeqCst);
        tokio::time::sleep(2 * (PROBE_EVERY + DELAY)).await;
        assert_eq!(silence.most_in_flight.load(Ordering::SeqCst), 1, "one probe at a time");
        silence.mode.store(ANSWER, Ordering::SeqCst);
        assert!(eventually(|| s.circuit_open().is_none()).await, "the probe's answer closes it");
        assert!(!circuit.probing(), "and the probe ends");
        assert!(!s.exists("a").await.unwrap(), "calls reach the store again");
    }

    /// Invariant: the probe ends when the wrapper is dropped (it holds the
    /// inner store only while it runs).
    #[tokio::test]
    async fn the_probe_ends_when_the_store_is_dropped() {
        let (silence, s) = silent_store();
        silence.mode.store(SILENT, Ordering::SeqCst);
        assert!(s.exists("a").await.is_err());
        let circuit = Arc::clone(s.circuit().unwrap());
        assert!(circuit.probing());
        drop(s);
        assert!(eventually(|| Arc::strong_count(&silence) == 1).await, "the probe let go of the store");
        let probes = circuit.probes();
        tokio::time::sleep(3 * (PROBE_EVERY + DELAY)).await;
        assert_eq!(circuit.probes(), probes, "no probe after the drop");
    }

    /// Invariant: a body that goes silent halfway opens it too.
    #[tokio::test]
    async fn a_body_that_goes_silent_halfway_opens_it() {
        let (silence, s) = silent_store();
        s.put("k", Bytes::from_static(b"vv")).await.unwrap();
        silence.mode.store(SILENT_BODY, Ordering::SeqCst);
        assert!(s.get("k").await.is_err());
        assert!(s.circuit_open().is_some());
    }
}
